//! The run folder (`docs/run-folder.md`): configuration, plan, parts, checkpoints, markers.

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};
use crate::plan::{Plan, SplitPolicy};
use crate::refiner::Stages;
use crate::stats::Stats;

/// What a run is: a rerun in the same folder must be the same run.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RunConfig {
    /// The inputs as given, made absolute.
    pub inputs: Vec<PathBuf>,
    pub tasks: usize,
    pub stages: Stages,
    pub text_field: String,
    pub id_field: Option<String>,
    pub doc_model: Option<String>,
    pub chunk_model: Option<String>,
    /// `embedded` or `openai`; may differ between tasks and reruns.
    pub backend: String,
    /// The server's URL, for the `openai` backend; may differ between tasks and reruns.
    pub endpoint: Option<String>,
    /// The refiner's settings ([`RefinerOptions::to_json`](crate::RefinerOptions::to_json)).
    pub refiner: serde_json::Value,
    /// `parquet` or `jsonl.gz`.
    pub output_format: String,
    pub split: SplitPolicy,
    /// At most this many documents per task.
    pub limit: Option<u64>,
}

impl RunConfig {
    /// The first difference that makes `other` another run, if any. Where the model runs
    /// (backend, endpoint) does not change the run.
    fn difference(&self, other: &RunConfig) -> Option<String> {
        let mut mine = serde_json::to_value(self).ok()?;
        let mut theirs = serde_json::to_value(other).ok()?;
        for value in [&mut mine, &mut theirs] {
            if let Some(object) = value.as_object_mut() {
                object.remove("backend");
                object.remove("endpoint");
            }
        }
        let (mine, theirs) = (mine.as_object()?, theirs.as_object()?);
        mine.iter()
            .find(|(key, value)| theirs.get(*key) != Some(value))
            .map(|(key, value)| {
                let before = theirs
                    .get(key)
                    .map_or("nothing".to_owned(), ToString::to_string);
                format!("`{key}` was {before}, now {value}")
            })
    }
}

/// A run folder.
#[derive(Debug, Clone)]
pub struct RunFolder {
    root: PathBuf,
}

const PARTS: [&str; 3] = ["output", "dropped", "failures"];

impl RunFolder {
    /// An existing run folder, for reading.
    pub fn open(root: &Path) -> Result<Self> {
        if !root.join("run.json").is_file() {
            return Err(Error::path(root, "not a run folder (it has no run.json)"));
        }
        Ok(Self {
            root: root.to_owned(),
        })
    }

    /// Creates the run folder, or checks that an existing one was made for this run, and
    /// returns its plan. `force` starts the run over: its outputs, checkpoints and markers are
    /// removed and the configuration replaced.
    pub fn prepare(root: &Path, config: &RunConfig, force: bool) -> Result<(Self, Plan)> {
        let folder = Self {
            root: root.to_owned(),
        };
        let run_json = folder.root.join("run.json");
        let plan_json = folder.root.join("plan.json");
        if run_json.is_file() && !force {
            let existing: RunConfig = read_json(&run_json)?;
            if let Some(difference) = config.difference(&existing) {
                return Err(Error::ConfigMismatch {
                    path: root.to_owned(),
                    message: difference,
                });
            }
            if plan_json.is_file() {
                let plan: Plan = read_json(&plan_json)?;
                return Ok((folder, plan));
            }
        }
        if force {
            folder.clear()?;
        }
        std::fs::create_dir_all(&folder.root).map_err(|e| Error::path(root, e))?;
        let plan = Plan::new(&config.inputs, config.tasks, config.split)?;
        prox_io::write_json(&plan_json, &plan)?;
        prox_io::write_json(&run_json, config)?;
        Ok((folder, plan))
    }

    fn clear(&self) -> Result<()> {
        for name in PARTS.iter().chain(&["progress", "done"]) {
            let path = self.root.join(name);
            if path.exists() {
                std::fs::remove_dir_all(&path).map_err(|e| Error::path(&path, e))?;
            }
        }
        let stats = self.stats_path();
        if stats.exists() {
            std::fs::remove_file(&stats).map_err(|e| Error::path(&stats, e))?;
        }
        Ok(())
    }

    pub fn root(&self) -> &Path {
        &self.root
    }

    pub fn config(&self) -> Result<RunConfig> {
        read_json(&self.root.join("run.json"))
    }

    pub fn plan(&self) -> Result<Plan> {
        read_json(&self.root.join("plan.json"))
    }

    /// A part file: `kind` is `output`, `dropped` or `failures`.
    pub fn part_path(&self, kind: &str, rank: usize, seq: u64, extension: &str) -> PathBuf {
        self.root
            .join(kind)
            .join(format!("part-{rank:05}-{seq:05}.{extension}"))
    }

    pub fn progress_path(&self, rank: usize) -> PathBuf {
        self.root
            .join("progress")
            .join(format!("task-{rank:05}.json"))
    }

    pub fn done_path(&self, rank: usize) -> PathBuf {
        self.root.join("done").join(format!("task-{rank:05}.json"))
    }

    pub fn log_path(&self, rank: usize) -> PathBuf {
        self.root.join("logs").join(format!("task-{rank:05}.log"))
    }

    pub fn stats_path(&self) -> PathBuf {
        self.root.join("stats.json")
    }

    /// Whether task `rank` completed (its marker exists).
    pub fn is_done(&self, rank: usize) -> bool {
        self.done_path(rank).is_file()
    }

    /// The stats in task `rank`'s completion marker (the marker is the task's stats).
    pub fn done_stats(&self, rank: usize) -> Result<Option<Stats>> {
        let path = self.done_path(rank);
        if !path.is_file() {
            return Ok(None);
        }
        read_json(&path).map(Some)
    }

    /// The stats of the tasks that are done, added up, and how many tasks that is.
    pub fn finished_stats(&self, tasks: usize) -> Result<(Stats, usize)> {
        let mut total = Stats::default();
        let mut done = 0;
        for rank in 0..tasks {
            if let Some(stats) = self.done_stats(rank)? {
                total.add(&stats);
                done += 1;
            }
        }
        Ok((total, done))
    }

    /// Writes `stats.json` when every task is done; returns the merged stats then.
    pub fn merge_stats(&self, tasks: usize) -> Result<Option<Stats>> {
        let (total, done) = self.finished_stats(tasks)?;
        if done < tasks {
            return Ok(None);
        }
        prox_io::write_json(&self.stats_path(), &total)?;
        Ok(Some(total))
    }

    /// The part files of every task, kind by kind, in run order (by task, then sequence).
    pub fn parts(&self, kind: &str) -> Result<Vec<PathBuf>> {
        let dir = self.root.join(kind);
        if !dir.is_dir() {
            return Ok(Vec::new());
        }
        let mut parts: Vec<PathBuf> = std::fs::read_dir(&dir)
            .map_err(|e| Error::path(&dir, e))?
            .filter_map(|entry| entry.ok().map(|e| e.path()))
            .filter(|path| {
                path.file_name()
                    .and_then(|n| n.to_str())
                    .is_some_and(|n| n.starts_with("part-"))
            })
            .collect();
        parts.sort();
        Ok(parts)
    }

    /// Removes what an interrupted attempt of task `rank` left after its last checkpoint:
    /// parts numbered `next_seq` or later, and temporary files.
    pub(crate) fn remove_uncommitted(&self, rank: usize, next_seq: u64) -> Result<()> {
        let prefix = format!("part-{rank:05}-");
        for kind in PARTS {
            let dir = self.root.join(kind);
            let Ok(entries) = std::fs::read_dir(&dir) else {
                continue;
            };
            for entry in entries.filter_map(std::result::Result::ok) {
                let name = entry.file_name().to_string_lossy().into_owned();
                let temporary = name
                    .strip_prefix('.')
                    .is_some_and(|rest| rest.starts_with(&prefix) && rest.contains(".tmp-"));
                let stale = name.strip_prefix(&prefix).is_some_and(|rest| {
                    rest.split('.')
                        .next()
                        .and_then(|seq| seq.parse::<u64>().ok())
                        .is_some_and(|seq| seq >= next_seq)
                });
                if temporary || stale {
                    let path = entry.path();
                    tracing::debug!(path = %path.display(), "removing an uncommitted part");
                    std::fs::remove_file(&path).map_err(|e| Error::path(&path, e))?;
                }
            }
        }
        Ok(())
    }
}

pub(crate) fn read_json<T: serde::de::DeserializeOwned>(path: &Path) -> Result<T> {
    let bytes = std::fs::read(path).map_err(|e| Error::path(path, e))?;
    serde_json::from_slice(&bytes).map_err(|e| Error::path(path, format!("not valid JSON: {e}")))
}
