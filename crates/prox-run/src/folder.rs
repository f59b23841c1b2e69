//! A run folder as a whole: made (or checked) for a run by `prox refine`, read by `prox report`,
//! `prox show` and `prox status`.

use std::path::{Path, PathBuf};

use prox_io::Format;
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::config::{Execution, RunConfig};
use crate::error::{Error, Result};
use crate::layout::{read_json, read_json_if_present, RunLayout, StatsSource};
use crate::rows::{rows_of, DocumentRow, FailureRow, Found, Item};
use crate::stats::Stats;
use crate::{DROPPED, FAILURES, OUTPUT, PARTS};

/// A run folder of `prox refine`: where its files are ([`RunLayout`]), how the run executed its
/// programs, its stats and its rows.
#[derive(Debug, Clone)]
pub struct RunFolder {
    layout: RunLayout,
    execution: Execution,
}

/// The part of `run.json` a reader needs; a folder written to the contract by another tool may
/// record nothing else.
#[derive(Deserialize)]
struct RecordedExecution {
    #[serde(default)]
    refiner: Execution,
}

impl RunFolder {
    /// Opens a run folder to read; it must hold at least one of the contract's outputs. The
    /// mode and thresholds are `run.json`'s, the reference's where it records none.
    pub fn open(root: &Path) -> Result<Self> {
        let layout = RunLayout::new(root);
        let outputs = PARTS
            .iter()
            .map(|kind| layout.parts_dir(kind))
            .chain([layout.stats_json(), layout.done_dir()]);
        if !outputs.into_iter().any(|path| path.exists()) {
            return Err(Error::NotARunFolder {
                path: root.to_owned(),
            });
        }
        let run_json = layout.run_json();
        let execution = match read_json_if_present::<RecordedExecution>(&run_json) {
            Ok(recorded) => recorded.map(|run| run.refiner).unwrap_or_default(),
            Err(Error::Io(prox_io::Error::Decode { source, .. })) => {
                return Err(Error::RunConfig {
                    path: run_json,
                    message: source.to_string(),
                })
            }
            Err(Error::Io(prox_io::Error::Open { source, .. })) => {
                return Err(Error::RunConfig {
                    path: run_json,
                    message: source.to_string(),
                })
            }
            Err(other) => return Err(other),
        };
        Ok(Self { layout, execution })
    }

    /// Creates the run folder, or checks that an existing one was made for this run, and
    /// returns its plan: `plan.json`'s, else one `make_plan` makes (written with `run.json`).
    /// `force` starts the run over: its outputs, checkpoints and markers are removed and the
    /// configuration replaced.
    pub fn prepare<P, E>(
        root: &Path,
        config: &RunConfig,
        force: bool,
        make_plan: impl FnOnce(&RunConfig) -> Result<P, E>,
    ) -> Result<(Self, P), E>
    where
        P: Serialize + DeserializeOwned,
        E: From<Error>,
    {
        let folder = Self {
            layout: RunLayout::new(root),
            execution: config.refiner.execution,
        };
        let run_json = folder.layout.run_json();
        let plan_json = folder.layout.plan_json();
        if run_json.is_file() && !force {
            let recorded: Value = read_json(&run_json)?;
            if let Some(difference) = config.difference(&recorded) {
                return Err(Error::ConfigMismatch {
                    path: root.to_owned(),
                    message: difference,
                }
                .into());
            }
            if plan_json.is_file() {
                let plan = read_json(&plan_json)?;
                return Ok((folder, plan));
            }
        }
        if force {
            folder.clear()?;
        }
        std::fs::create_dir_all(root).map_err(|source| Error::Create {
            path: root.to_owned(),
            source,
        })?;
        let plan = make_plan(config)?;
        prox_io::write_json(&plan_json, &plan).map_err(Error::from)?;
        prox_io::write_json(&run_json, config).map_err(Error::from)?;
        Ok((folder, plan))
    }

    /// Removes the run's outputs, checkpoints, markers and stats.
    fn clear(&self) -> Result<()> {
        let layout = &self.layout;
        let folders = PARTS
            .iter()
            .map(|kind| layout.parts_dir(kind))
            .chain([layout.progress_dir(), layout.done_dir()]);
        for path in folders {
            if path.exists() {
                std::fs::remove_dir_all(&path).map_err(|source| Error::Remove {
                    path: path.clone(),
                    source,
                })?;
            }
        }
        let stats = layout.stats_json();
        if stats.exists() {
            std::fs::remove_file(&stats).map_err(|source| Error::Remove {
                path: stats.clone(),
                source,
            })?;
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

    /// The run's configuration, as `run.json` records it.
    pub fn config(&self) -> Result<RunConfig> {
        read_json(&self.layout.run_json())
    }

    /// The mode and thresholds the run executed its programs with.
    pub fn execution(&self) -> Execution {
        self.execution
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
        self.layout.done_stats(rank)
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
    pub fn remove_uncommitted(&self, rank: usize, next_seq: u64) -> Result<()> {
        for path in self.layout.uncommitted_parts(rank, next_seq)? {
            tracing::debug!(path = %path.display(), "removing an uncommitted part");
            std::fs::remove_file(&path).map_err(|source| Error::Remove {
                path: path.clone(),
                source,
            })?;
        }
        Ok(())
    }

    /// The run's stats: `stats.json`, else the sum of the `done/` markers, else `None`.
    pub fn stats(&self) -> Result<Option<(Stats, StatsSource)>> {
        self.layout.stats()
    }

    /// The complete part files of a folder (`output`, `dropped`, `failures`) in run order, in
    /// the formats rows are read from.
    pub fn parts(&self, folder: &str) -> Result<Vec<PathBuf>> {
        let mut parts = self.layout.parts(folder)?;
        parts.retain(|path| Format::of_path(path).is_some());
        Ok(parts)
    }

    /// Every document row, kept ones (`output/`) first, then dropped ones, each in run order.
    pub fn documents(&self) -> Result<impl Iterator<Item = Item<DocumentRow>>> {
        let kept = self.parts(OUTPUT)?.into_iter().map(|path| (path, false));
        let dropped = self.parts(DROPPED)?.into_iter().map(|path| (path, true));
        Ok(kept.chain(dropped).flat_map(|(path, dropped)| {
            rows_of(&path, move |record| {
                DocumentRow::from_record(&record, dropped)
            })
        }))
    }

    /// The rows of `failures/`, in run order.
    pub fn failures(&self) -> Result<impl Iterator<Item = Item<FailureRow>>> {
        let parts = self.parts(FAILURES)?;
        Ok(parts.into_iter().flat_map(|path| {
            rows_of(&path, |record| {
                serde_json::from_value(Value::Object(record.fields))
                    .map_err(|error| format!("not a failure row: {error}"))
            })
        }))
    }

    /// The row of the document `id`, or its failure row when it failed.
    pub fn find(&self, id: &str) -> Result<Option<Found>> {
        for item in self.documents()? {
            if let Item::Row(row) = item {
                if row.id == id {
                    return Ok(Some(Found::Document(Box::new(row))));
                }
            }
        }
        for item in self.failures()? {
            if let Item::Row(row) = item {
                if row.id.as_deref() == Some(id) {
                    return Ok(Some(Found::Failure(row)));
                }
            }
        }
        Ok(None)
    }
}
