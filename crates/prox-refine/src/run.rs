//! The run folder (`docs/run-folder.md`): configuration, plan, parts, checkpoints, markers.

use std::path::{Path, PathBuf};

use prox_run::{RunLayout, Stats, PARTS};
use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};
use crate::plan::{Plan, SplitPolicy};
use crate::refiner::Stages;

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

/// A run folder, as `prox refine` writes it; its layout and stats are [`prox_run`]'s.
#[derive(Debug, Clone)]
pub struct RunFolder {
    layout: RunLayout,
}

impl RunFolder {
    /// An existing run folder, for reading.
    pub fn open(root: &Path) -> Result<Self> {
        let layout = RunLayout::new(root);
        if !layout.run_json().is_file() {
            return Err(Error::path(root, "not a run folder (it has no run.json)"));
        }
        Ok(Self { layout })
    }

    /// Creates the run folder, or checks that an existing one was made for this run, and
    /// returns its plan. `force` starts the run over: its outputs, checkpoints and markers are
    /// removed and the configuration replaced.
    pub fn prepare(root: &Path, config: &RunConfig, force: bool) -> Result<(Self, Plan)> {
        let folder = Self {
            layout: RunLayout::new(root),
        };
        let run_json = folder.layout.run_json();
        let plan_json = folder.layout.plan_json();
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
        std::fs::create_dir_all(root).map_err(|e| Error::path(root, e))?;
        let plan = Plan::new(&config.inputs, config.tasks, config.split)?;
        prox_io::write_json(&plan_json, &plan)?;
        prox_io::write_json(&run_json, config)?;
        Ok((folder, plan))
    }

    fn clear(&self) -> Result<()> {
        let layout = &self.layout;
        let folders = PARTS
            .iter()
            .map(|kind| layout.parts_dir(kind))
            .chain([layout.progress_dir(), layout.done_dir()]);
        for path in folders {
            if path.exists() {
                std::fs::remove_dir_all(&path).map_err(|e| Error::path(&path, e))?;
            }
        }
        let stats = layout.stats_json();
        if stats.exists() {
            std::fs::remove_file(&stats).map_err(|e| Error::path(&stats, e))?;
        }
        Ok(())
    }

    pub fn root(&self) -> &Path {
        self.layout.root()
    }

    /// Where each file of the folder is.
    pub fn layout(&self) -> &RunLayout {
        &self.layout
    }

    pub fn config(&self) -> Result<RunConfig> {
        read_json(&self.layout.run_json())
    }

    pub fn plan(&self) -> Result<Plan> {
        read_json(&self.layout.plan_json())
    }

    /// A part file: `kind` is `output`, `dropped` or `failures`.
    pub fn part_path(&self, kind: &str, rank: usize, seq: u64, extension: &str) -> PathBuf {
        self.layout.part(kind, rank, seq, extension)
    }

    pub fn progress_path(&self, rank: usize) -> PathBuf {
        self.layout.progress(rank)
    }

    pub fn done_path(&self, rank: usize) -> PathBuf {
        self.layout.done_marker(rank)
    }

    /// Whether task `rank` completed (its marker exists).
    pub fn is_done(&self, rank: usize) -> bool {
        self.layout.is_done(rank)
    }

    /// The stats in task `rank`'s completion marker (the marker is the task's stats).
    pub fn done_stats(&self, rank: usize) -> Result<Option<Stats>> {
        Ok(self.layout.done_stats(rank)?)
    }

    /// Writes `stats.json` when every task is done; returns the merged stats then.
    pub fn merge_stats(&self, tasks: usize) -> Result<Option<Stats>> {
        let (total, done) = self.layout.finished_stats(tasks)?;
        if done < tasks {
            return Ok(None);
        }
        prox_io::write_json(&self.layout.stats_json(), &total)?;
        Ok(Some(total))
    }

    /// Removes what an interrupted attempt of task `rank` left after its last checkpoint:
    /// parts numbered `next_seq` or later, and temporary files.
    pub(crate) fn remove_uncommitted(&self, rank: usize, next_seq: u64) -> Result<()> {
        for path in self.layout.uncommitted_parts(rank, next_seq)? {
            tracing::debug!(path = %path.display(), "removing an uncommitted part");
            std::fs::remove_file(&path).map_err(|e| Error::path(&path, e))?;
        }
        Ok(())
    }
}

pub(crate) fn read_json<T: serde::de::DeserializeOwned>(path: &Path) -> Result<T> {
    Ok(prox_run::read_json(path)?)
}
