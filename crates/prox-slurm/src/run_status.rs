//! Where every task of a run stands, stage by stage, with the failed tasks' last log lines and
//! the run's stats: what `prox status` prints, as text or as JSON.

use std::path::{Path, PathBuf};

use prox_run::{read_json_if_present, DocumentCounts, Stats};
use serde::{Serialize, Serializer};
use serde_json::Value;

use crate::cluster::SlurmCommands;
use crate::run_dir::{tail_lines, JobStage, SlurmDir, StageDir};
use crate::status::{stages, task_states, SlurmView, TaskState};
use crate::Error;

/// A run's state. Its JSON form is the contract of `prox status --json`: the field order is the
/// order printed.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct RunStatus {
    pub run_dir: PathBuf,
    pub tasks: u32,
    pub stages: Vec<StageStatus>,
    /// The run's merged stats: the last stage's (the chunk stage's with separate stages).
    pub stats: Option<Value>,
    /// What could not be learned, and what that means for the states shown.
    pub notes: Vec<String>,
}

/// The tasks of one stage, by state.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct StageStatus {
    pub stage: JobStage,
    pub folder: PathBuf,
    pub completed: Vec<usize>,
    pub running: Vec<RunningTask>,
    pub pending: Vec<PendingTask>,
    pub failed: Vec<FailedTask>,
    pub not_submitted: Vec<usize>,
    /// What the tasks committed so far, from their markers and progress files (`{}` before
    /// any commit).
    #[serde(serialize_with = "counts_or_empty_object")]
    pub documents_so_far: Option<DocumentCounts>,
    /// The stage's merged `stats.json` as written, once the last task has ended; kept as the
    /// file has it so that what the run recorded is shown whole.
    pub stats: Option<Value>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct RunningTask {
    pub rank: usize,
    pub job: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct PendingTask {
    pub rank: usize,
    pub job: String,
    /// Why Slurm holds it (`Dependency`, `Resources`, …).
    pub reason: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct FailedTask {
    pub rank: usize,
    pub job: String,
    /// What `sacct` says (`TIMEOUT`, `CANCELLED`, …), where accounting is on.
    pub slurm_state: Option<String>,
    pub log: PathBuf,
    /// The last lines of its log; empty when it never started.
    pub log_tail: String,
}

fn counts_or_empty_object<S: Serializer>(
    counts: &Option<DocumentCounts>,
    serializer: S,
) -> Result<S::Ok, S::Error> {
    match counts {
        Some(counts) => counts.serialize(serializer),
        None => serde_json::Map::new().serialize(serializer),
    }
}

impl RunStatus {
    /// The state of the run in `run_dir` (absolute). `tasks` is needed only for a run that
    /// `submit` did not record and whose `run.json` does not say; `log_lines` of each failed
    /// task's log are kept.
    pub fn collect(
        run_dir: &Path,
        tasks: Option<u32>,
        log_lines: usize,
        slurm: &dyn SlurmCommands,
    ) -> Result<RunStatus, Error> {
        let slurm_dir = SlurmDir::new(run_dir);
        let settings = slurm_dir.settings()?;
        let jobs = slurm_dir.jobs()?;
        let tasks = match (tasks, &settings) {
            (Some(tasks), _) => tasks,
            (None, Some(settings)) => settings.tasks,
            (None, None) => tasks_of_run_json(run_dir)?,
        };
        let separate_stages = settings.as_ref().is_some_and(|s| s.separate_stages);

        // Slurm first, the markers after: a task writes its marker before it leaves the queue.
        let job_ids: Vec<String> = jobs.jobs.iter().map(|job| job.job_id.clone()).collect();
        let mut notes = Vec::new();
        let view = if job_ids.is_empty() {
            SlurmView::default()
        } else {
            let queued = slurm.queued(&job_ids).unwrap_or_else(|error| {
                notes.push(format!(
                    "squeue is not available ({}): running and pending tasks show as failed",
                    prox_io::error_chain(&error)
                ));
                Vec::new()
            });
            let accounted = slurm.accounting(&job_ids);
            SlurmView { queued, accounted }
        };

        let stages = stages(separate_stages)
            .iter()
            .map(|&stage| {
                let stage_dir = StageDir::new(run_dir, stage);
                let states = task_states(&stage_dir, tasks, &jobs, &view);
                StageStatus::collect(&stage_dir, &states, log_lines)
            })
            .collect::<Result<Vec<_>, Error>>()?;
        let stats = stages.last().and_then(|stage| stage.stats.clone());
        Ok(RunStatus {
            run_dir: run_dir.to_owned(),
            tasks,
            stages,
            stats,
            notes,
        })
    }
}

impl StageStatus {
    fn collect(stage: &StageDir, states: &[TaskState], log_lines: usize) -> Result<Self, Error> {
        let layout = stage.layout();
        let mut status = StageStatus {
            stage: stage.stage(),
            folder: stage.root().to_owned(),
            completed: Vec::new(),
            running: Vec::new(),
            pending: Vec::new(),
            failed: Vec::new(),
            not_submitted: Vec::new(),
            documents_so_far: None,
            stats: read_json_if_present(&layout.stats_json())?,
        };
        let mut so_far: Option<Stats> = None;
        for (rank, state) in states.iter().enumerate() {
            match state {
                TaskState::Completed => status.completed.push(rank),
                TaskState::Running { job_id } => status.running.push(RunningTask {
                    rank,
                    job: job_id.clone(),
                }),
                TaskState::Pending { job_id, reason } => status.pending.push(PendingTask {
                    rank,
                    job: job_id.clone(),
                    reason: reason.clone(),
                }),
                TaskState::Failed {
                    job_id,
                    slurm_state,
                } => status.failed.push(FailedTask {
                    rank,
                    job: job_id.clone(),
                    slurm_state: slurm_state.clone(),
                    log: layout.task_log(rank),
                    log_tail: tail_lines(&layout.task_log(rank), log_lines),
                }),
                TaskState::NotSubmitted => status.not_submitted.push(rank),
            }
            if let Some(stats) = layout.task_stats(rank)? {
                so_far.get_or_insert_with(Stats::default).add(&stats);
            }
        }
        status.documents_so_far = so_far.map(|stats| stats.documents);
        Ok(status)
    }
}

/// The number of tasks from run.json (`tasks`), for runs not submitted by `prox slurm`.
fn tasks_of_run_json(run_dir: &Path) -> Result<u32, Error> {
    let run_json: Option<Value> = read_json_if_present(&run_dir.join("run.json"))?;
    run_json
        .as_ref()
        .and_then(|run| run.get("tasks"))
        .and_then(Value::as_u64)
        .and_then(|tasks| u32::try_from(tasks).ok())
        .ok_or_else(|| Error::UnknownTaskCount {
            run_dir: run_dir.to_owned(),
        })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::fake::FakeSlurm;
    use crate::run_dir::{JobRecord, JobsFile};

    /// A run folder whose tasks `ranks` were submitted as job 7.
    fn submitted_as_job_7(ranks: &[u32]) -> tempfile::TempDir {
        let dir = tempfile::tempdir().unwrap();
        let slurm_dir = SlurmDir::new(dir.path());
        std::fs::create_dir_all(slurm_dir.root()).unwrap();
        let job = JobRecord {
            job_id: "7".into(),
            stage: JobStage::All,
            array: crate::index_ranges(ranks),
            offset: 0,
            ranks: ranks.to_vec(),
            after: Vec::new(),
            submitted_at: 0,
            command: Vec::new(),
        };
        slurm_dir.write_jobs(&JobsFile { jobs: vec![job] }).unwrap();
        dir
    }

    #[test]
    fn a_run_without_records_takes_its_task_count_from_run_json() {
        let dir = tempfile::tempdir().unwrap();
        let error = RunStatus::collect(dir.path(), None, 5, &FakeSlurm::default()).unwrap_err();
        assert!(matches!(error, Error::UnknownTaskCount { .. }), "{error}");
        std::fs::write(dir.path().join("run.json"), r#"{"tasks": 3}"#).unwrap();
        let status = RunStatus::collect(dir.path(), None, 5, &FakeSlurm::default()).unwrap();
        assert_eq!(status.tasks, 3);
        assert_eq!(status.stages[0].not_submitted, [0, 1, 2]);
        assert_eq!(status.stats, None);
    }

    #[test]
    fn the_json_keeps_the_field_order_and_shapes_of_prox_status() {
        let dir = submitted_as_job_7(&[0, 1]);
        let slurm = FakeSlurm::default();
        slurm.queue("7", 1, "PENDING", "Resources");
        let status = RunStatus::collect(dir.path(), Some(3), 5, &slurm).unwrap();
        let json = serde_json::to_value(&status).unwrap();
        let keys: Vec<&str> = json
            .as_object()
            .unwrap()
            .keys()
            .map(String::as_str)
            .collect();
        assert_eq!(keys, ["run_dir", "tasks", "stages", "stats", "notes"]);
        let stage = &json["stages"][0];
        let keys: Vec<&str> = stage
            .as_object()
            .unwrap()
            .keys()
            .map(String::as_str)
            .collect();
        assert_eq!(
            keys,
            [
                "stage",
                "folder",
                "completed",
                "running",
                "pending",
                "failed",
                "not_submitted",
                "documents_so_far",
                "stats"
            ]
        );
        assert_eq!(stage["stage"], "all");
        assert_eq!(
            stage["pending"],
            serde_json::json!([{"rank": 1, "job": "7", "reason": "Resources"}])
        );
        assert_eq!(stage["failed"][0]["rank"], 0);
        assert_eq!(stage["failed"][0]["slurm_state"], Value::Null);
        assert_eq!(stage["failed"][0]["log_tail"], "");
        assert_eq!(stage["not_submitted"], serde_json::json!([2]));
        assert_eq!(stage["documents_so_far"], serde_json::json!({}));
        assert_eq!(json["stats"], Value::Null);
    }

    #[test]
    fn a_missing_squeue_becomes_a_note() {
        let dir = submitted_as_job_7(&[0]);
        let slurm = FakeSlurm::default();
        slurm.break_squeue();
        let status = RunStatus::collect(dir.path(), Some(1), 5, &slurm).unwrap();
        assert_eq!(status.notes.len(), 1, "{:?}", status.notes);
        assert!(status.notes[0].starts_with("squeue is not available"));
        assert_eq!(status.stages[0].failed.len(), 1);
    }
}
