//! Where each file of a run folder is (`docs/run-folder.md`). `R` is a task's rank and `S` a
//! part's sequence number within its task, both as five digits.

use std::path::{Path, PathBuf};

use serde::de::DeserializeOwned;
use serde_json::Value;

use crate::error::{Error, Result};
use crate::stats::Stats;

/// The folder of kept documents.
pub const OUTPUT: &str = "output";
/// The folder of dropped documents.
pub const DROPPED: &str = "dropped";
/// The folder of failure rows.
pub const FAILURES: &str = "failures";
/// The folders of parts (`part-R-S.EXT`).
pub const PARTS: [&str; 3] = [OUTPUT, DROPPED, FAILURES];

/// The files of one run folder.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RunLayout {
    root: PathBuf,
}

/// Where a run's stats came from.
#[derive(Debug, Clone, PartialEq)]
pub enum StatsSource {
    /// `stats.json`: the run ended.
    Final(PathBuf),
    /// The `done/task-R.json` markers of the tasks that ended (the run has not ended, or its
    /// last task did not write `stats.json`).
    DoneTasks(Vec<PathBuf>),
}

impl RunLayout {
    pub fn new(root: impl Into<PathBuf>) -> Self {
        Self { root: root.into() }
    }

    pub fn root(&self) -> &Path {
        &self.root
    }

    /// `run.json`: the resolved configuration.
    pub fn run_json(&self) -> PathBuf {
        self.root.join("run.json")
    }

    /// `plan.json`: the shard plan.
    pub fn plan_json(&self) -> PathBuf {
        self.root.join("plan.json")
    }

    /// `stats.json`: the merged stats of all tasks.
    pub fn stats_json(&self) -> PathBuf {
        self.root.join("stats.json")
    }

    /// A folder of parts: `kind` is one of [`PARTS`].
    pub fn parts_dir(&self, kind: &str) -> PathBuf {
        self.root.join(kind)
    }

    /// `KIND/part-R-S.EXTENSION`.
    pub fn part(&self, kind: &str, rank: usize, seq: u64, extension: &str) -> PathBuf {
        self.parts_dir(kind)
            .join(format!("part-{rank:05}-{seq:05}.{extension}"))
    }

    pub fn progress_dir(&self) -> PathBuf {
        self.root.join("progress")
    }

    /// `progress/task-R.json`: a task's last checkpoint, with its stats so far under `stats`.
    pub fn progress(&self, rank: usize) -> PathBuf {
        self.progress_dir().join(task_file(rank, "json"))
    }

    pub fn done_dir(&self) -> PathBuf {
        self.root.join("done")
    }

    /// `done/task-R.json`: written when the task's parts are all closed; holds its stats.
    pub fn done_marker(&self, rank: usize) -> PathBuf {
        self.done_dir().join(task_file(rank, "json"))
    }

    pub fn logs_dir(&self) -> PathBuf {
        self.root.join("logs")
    }

    /// `logs/task-R.log`.
    pub fn task_log(&self, rank: usize) -> PathBuf {
        self.logs_dir().join(task_file(rank, "log"))
    }

    /// Whether task `rank` completed (its marker exists).
    pub fn is_done(&self, rank: usize) -> bool {
        self.done_marker(rank).is_file()
    }

    /// The complete parts of one kind, in run order (by task, then sequence); temporary files
    /// ([`prox_io::temporary_path`]) are left out.
    pub fn parts(&self, kind: &str) -> Result<Vec<PathBuf>> {
        let mut parts: Vec<PathBuf> = self
            .entries(&self.parts_dir(kind))?
            .into_iter()
            .filter(|(name, path)| name.starts_with("part-") && path.is_file())
            .map(|(_, path)| path)
            .collect();
        parts.sort();
        Ok(parts)
    }

    /// What an interrupted attempt of task `rank` left after its last checkpoint: its parts
    /// numbered `next_seq` or later, and its temporary files.
    pub fn uncommitted_parts(&self, rank: usize, next_seq: u64) -> Result<Vec<PathBuf>> {
        let prefix = format!("part-{rank:05}-");
        let mut found = Vec::new();
        for kind in PARTS {
            for (name, path) in self.entries(&self.parts_dir(kind))? {
                let temporary = prox_io::temporary_target(&name)
                    .is_some_and(|(target, _)| target.starts_with(&prefix));
                let stale = name.strip_prefix(&prefix).is_some_and(|rest| {
                    rest.split('.')
                        .next()
                        .and_then(|seq| seq.parse::<u64>().ok())
                        .is_some_and(|seq| seq >= next_seq)
                });
                if temporary || stale {
                    found.push(path);
                }
            }
        }
        found.sort();
        Ok(found)
    }

    /// The stats in task `rank`'s completion marker; `None` while the task has not completed.
    pub fn done_stats(&self, rank: usize) -> Result<Option<Stats>> {
        read_json_if_present(&self.done_marker(rank))
    }

    /// The stats task `rank` committed so far: its marker's, else its checkpoint's; `None`
    /// when it has neither.
    pub fn task_stats(&self, rank: usize) -> Result<Option<Stats>> {
        if let Some(done) = self.done_stats(rank)? {
            return Ok(Some(done));
        }
        let path = self.progress(rank);
        let Some(mut progress) = read_json_if_present::<Value>(&path)? else {
            return Ok(None);
        };
        progress
            .get_mut("stats")
            .map(|stats| serde_json::from_value(stats.take()))
            .transpose()
            .map_err(|source| Error::Json { path, source })
    }

    /// The stats of tasks `0..tasks` that are done, added up, and how many tasks that is.
    pub fn finished_stats(&self, tasks: usize) -> Result<(Stats, usize)> {
        let mut total = Stats::default();
        let mut done = 0;
        for rank in 0..tasks {
            if let Some(stats) = self.done_stats(rank)? {
                total += &stats;
                done += 1;
            }
        }
        Ok((total, done))
    }

    /// The completion markers present (`done/task-*.json`), in rank order.
    pub fn done_markers(&self) -> Result<Vec<PathBuf>> {
        let mut markers: Vec<PathBuf> = self
            .entries(&self.done_dir())?
            .into_iter()
            .filter(|(name, _)| name.starts_with("task-") && name.ends_with(".json"))
            .map(|(_, path)| path)
            .collect();
        markers.sort();
        Ok(markers)
    }

    /// The run's stats, for a reader that does not know the task count: `stats.json`, else
    /// the sum of the completion markers present, else `None`.
    pub fn stats(&self) -> Result<Option<(Stats, StatsSource)>> {
        let merged = self.stats_json();
        if let Some(stats) = read_json_if_present(&merged)? {
            return Ok(Some((stats, StatsSource::Final(merged))));
        }
        let markers = self.done_markers()?;
        if markers.is_empty() {
            return Ok(None);
        }
        let mut total = Stats::default();
        for marker in &markers {
            total += &read_json::<Stats>(marker)?;
        }
        Ok(Some((total, StatsSource::DoneTasks(markers))))
    }

    /// The names and paths in `dir`; none when it does not exist.
    fn entries(&self, dir: &Path) -> Result<Vec<(String, PathBuf)>> {
        let list_error = |source| Error::List {
            path: dir.to_owned(),
            source,
        };
        let entries = match std::fs::read_dir(dir) {
            Ok(entries) => entries,
            Err(error) if error.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
            Err(error) => return Err(list_error(error)),
        };
        entries
            .map(|entry| {
                let entry = entry.map_err(list_error)?;
                Ok((
                    entry.file_name().to_string_lossy().into_owned(),
                    entry.path(),
                ))
            })
            .collect()
    }
}

/// `task-R.EXTENSION`.
fn task_file(rank: usize, extension: &str) -> String {
    format!("task-{rank:05}.{extension}")
}

/// The JSON value in `path` ([`prox_io::read_json`]).
pub fn read_json<T: DeserializeOwned>(path: &Path) -> Result<T> {
    Ok(prox_io::read_json(path)?)
}

/// The JSON value in `path`, or `None` when there is no such file.
pub fn read_json_if_present<T: DeserializeOwned>(path: &Path) -> Result<Option<T>> {
    Ok(prox_io::read_json_if_present(path)?)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn write(path: &Path, text: &str) {
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(path, text).unwrap();
    }

    #[test]
    fn every_path_follows_the_run_folder_contract() {
        let run = RunLayout::new("/r");
        assert_eq!(run.run_json(), Path::new("/r/run.json"));
        assert_eq!(run.plan_json(), Path::new("/r/plan.json"));
        assert_eq!(run.stats_json(), Path::new("/r/stats.json"));
        assert_eq!(
            run.part(DROPPED, 2, 10, "jsonl.gz"),
            Path::new("/r/dropped/part-00002-00010.jsonl.gz")
        );
        assert_eq!(run.progress(0), Path::new("/r/progress/task-00000.json"));
        assert_eq!(run.done_marker(3), Path::new("/r/done/task-00003.json"));
        assert_eq!(run.task_log(12), Path::new("/r/logs/task-00012.log"));
    }

    #[test]
    fn parts_are_listed_by_task_then_sequence_without_temporary_files() {
        let dir = tempfile::tempdir().unwrap();
        let run = RunLayout::new(dir.path());
        assert!(run.parts(OUTPUT).unwrap().is_empty());
        for (rank, seq) in [(1, 0), (0, 11), (0, 2)] {
            write(&run.part(OUTPUT, rank, seq, "parquet"), "");
        }
        write(
            &run.parts_dir(OUTPUT)
                .join(".part-00001-00001.parquet.tmp-7"),
            "",
        );
        let names: Vec<String> = run
            .parts(OUTPUT)
            .unwrap()
            .iter()
            .map(|p| p.file_name().unwrap().to_string_lossy().into_owned())
            .collect();
        assert_eq!(
            names,
            [
                "part-00000-00002.parquet",
                "part-00000-00011.parquet",
                "part-00001-00000.parquet"
            ]
        );
    }

    #[test]
    fn uncommitted_parts_are_the_task_s_later_parts_and_temporary_files() {
        let dir = tempfile::tempdir().unwrap();
        let run = RunLayout::new(dir.path());
        let kept = [
            run.part(OUTPUT, 0, 1, "parquet"),
            run.part(OUTPUT, 1, 5, "parquet"),
        ];
        let stale = [
            run.part(OUTPUT, 0, 2, "parquet"),
            run.part(FAILURES, 0, 3, "jsonl"),
            run.parts_dir(DROPPED)
                .join(".part-00000-00002.parquet.tmp-42"),
        ];
        for path in kept.iter().chain(&stale) {
            write(path, "");
        }
        let mut expected = stale.to_vec();
        expected.sort();
        assert_eq!(run.uncommitted_parts(0, 2).unwrap(), expected);
    }

    #[test]
    fn task_stats_prefer_the_marker_and_fall_back_to_progress() {
        let dir = tempfile::tempdir().unwrap();
        let run = RunLayout::new(dir.path());
        assert_eq!(run.task_stats(0).unwrap(), None);
        write(
            &run.progress(0),
            r#"{"shard": 0, "stats": {"documents": {"input": 5}}}"#,
        );
        assert_eq!(run.task_stats(0).unwrap().unwrap().documents.input, 5);
        assert!(!run.is_done(0));
        write(&run.done_marker(0), r#"{"documents": {"input": 9}}"#);
        assert!(run.is_done(0));
        assert_eq!(run.task_stats(0).unwrap().unwrap().documents.input, 9);
    }

    #[test]
    fn run_stats_come_from_stats_json_else_from_the_markers() {
        let dir = tempfile::tempdir().unwrap();
        let run = RunLayout::new(dir.path());
        assert_eq!(run.stats().unwrap(), None);
        write(&run.done_marker(0), r#"{"documents": {"input": 2}}"#);
        write(&run.done_marker(2), r#"{"documents": {"input": 3}}"#);
        write(&run.done_dir().join(".task-00001.json.tmp-1"), "{");
        let (stats, source) = run.stats().unwrap().unwrap();
        assert_eq!(stats.documents.input, 5);
        assert_eq!(
            source,
            StatsSource::DoneTasks(vec![run.done_marker(0), run.done_marker(2)])
        );
        assert_eq!(run.finished_stats(3).unwrap().1, 2);
        write(&run.stats_json(), r#"{"documents": {"input": 7}}"#);
        let (stats, source) = run.stats().unwrap().unwrap();
        assert_eq!(stats.documents.input, 7);
        assert_eq!(source, StatsSource::Final(run.stats_json()));
    }

    #[test]
    fn a_broken_marker_is_an_error_that_names_it() {
        let dir = tempfile::tempdir().unwrap();
        let run = RunLayout::new(dir.path());
        write(&run.done_marker(4), "{");
        let error = run.done_stats(4).unwrap_err().to_string();
        assert!(error.contains("task-00004.json"), "{error}");
    }
}
