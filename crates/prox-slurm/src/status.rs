//! The state of each task of a run, from its completion markers and what Slurm says.

use std::collections::HashMap;

use crate::cluster::{AccountedTask, QueuedTask};
use crate::run_dir::{JobStage, JobsFile, StageDir};

/// Where a task stands.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TaskState {
    /// Its completion marker exists.
    Completed,
    /// Slurm runs it (or is finishing it).
    Running { job_id: String },
    /// Slurm has it queued; `reason` says why it waits (`Dependency`, `Resources`, …).
    Pending { job_id: String, reason: String },
    /// It was submitted, is no longer queued, and has no completion marker: it failed, was
    /// cancelled, timed out or lost its node. `slurm_state` is what `sacct` says, when
    /// accounting is on.
    Failed {
        job_id: String,
        slurm_state: Option<String>,
    },
    /// Never submitted.
    NotSubmitted,
}

impl TaskState {
    /// Whether Slurm still holds the task (it must not be submitted again).
    pub fn is_active(&self) -> bool {
        matches!(self, TaskState::Running { .. } | TaskState::Pending { .. })
    }
}

/// What Slurm said about a run's jobs, fetched before the markers are read (a task writes
/// its marker before it leaves the queue, so this order never mistakes a completing task for
/// a failed one).
#[derive(Debug, Clone, Default)]
pub struct SlurmView {
    pub queued: Vec<QueuedTask>,
    /// `None` when accounting is off.
    pub accounted: Option<Vec<AccountedTask>>,
}

/// The state of tasks `0..tasks` of one stage.
pub fn task_states(
    stage: &StageDir,
    tasks: u32,
    jobs: &JobsFile,
    slurm: &SlurmView,
) -> Vec<TaskState> {
    let stage_jobs: Vec<_> = jobs
        .jobs
        .iter()
        .filter(|job| job.stage == stage.stage())
        .collect();
    let offsets: HashMap<&str, u32> = stage_jobs
        .iter()
        .map(|job| (job.job_id.as_str(), job.offset))
        .collect();
    let mut queued: HashMap<u32, &QueuedTask> = HashMap::new();
    for task in &slurm.queued {
        if let (Some(offset), Some(index)) = (offsets.get(task.job_id.as_str()), task.index) {
            queued.insert(offset + index, task);
        }
    }
    // The latest submission of each rank, and what accounting says about it.
    let mut last_job: HashMap<u32, &str> = HashMap::new();
    for job in &stage_jobs {
        for rank in &job.ranks {
            last_job.insert(*rank, job.job_id.as_str());
        }
    }
    let mut accounted: HashMap<(&str, u32), &str> = HashMap::new();
    for task in slurm.accounted.iter().flatten() {
        if let Some(offset) = offsets.get(task.job_id.as_str()) {
            accounted.insert((task.job_id.as_str(), offset + task.index), &task.state);
        }
    }
    (0..tasks)
        .map(|rank| {
            if stage.layout().is_done(rank as usize) {
                return TaskState::Completed;
            }
            if let Some(task) = queued.get(&rank) {
                return if task.state == "PENDING" {
                    TaskState::Pending {
                        job_id: task.job_id.clone(),
                        reason: task.reason.clone(),
                    }
                } else {
                    TaskState::Running {
                        job_id: task.job_id.clone(),
                    }
                };
            }
            match last_job.get(&rank) {
                Some(job_id) => TaskState::Failed {
                    job_id: (*job_id).to_owned(),
                    slurm_state: accounted.get(&(*job_id, rank)).map(|s| (*s).to_owned()),
                },
                None => TaskState::NotSubmitted,
            }
        })
        .collect()
}

/// The stages a run's tasks go through.
pub fn stages(separate_stages: bool) -> &'static [JobStage] {
    if separate_stages {
        &[JobStage::Doc, JobStage::Chunk]
    } else {
        &[JobStage::All]
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::run_dir::JobRecord;

    fn job(id: &str, stage: JobStage, offset: u32, ranks: &[u32]) -> JobRecord {
        JobRecord {
            job_id: id.into(),
            stage,
            array: String::new(),
            offset,
            ranks: ranks.to_vec(),
            after: Vec::new(),
            submitted_at: 0,
            command: Vec::new(),
        }
    }

    fn queued(id: &str, index: u32, state: &str, reason: &str) -> QueuedTask {
        QueuedTask {
            job_id: id.into(),
            index: Some(index),
            state: state.into(),
            reason: reason.into(),
        }
    }

    #[test]
    fn states_come_from_markers_then_the_queue_then_the_submissions() {
        let dir = tempfile::tempdir().unwrap();
        let stage = StageDir::new(dir.path(), JobStage::All);
        std::fs::create_dir_all(stage.layout().done_dir()).unwrap();
        std::fs::write(stage.layout().done_marker(0), "{}").unwrap();
        // Rank 1001 ran in the second block of a split array, then was resubmitted alone.
        let jobs = JobsFile {
            jobs: vec![
                job("10", JobStage::All, 0, &[0, 1, 2, 3]),
                job("11", JobStage::All, 1000, &[1000, 1001]),
                job("12", JobStage::All, 1000, &[1001]),
            ],
        };
        let slurm = SlurmView {
            queued: vec![
                queued("10", 1, "RUNNING", "None"),
                queued("10", 2, "PENDING", "Resources"),
                queued("12", 1, "PENDING", "Priority"),
                queued("99", 3, "RUNNING", "None"),
            ],
            accounted: Some(vec![AccountedTask {
                job_id: "10".into(),
                index: 3,
                state: "TIMEOUT".into(),
                exit_code: "0:0".into(),
            }]),
        };
        let states = task_states(&stage, 1002, &jobs, &slurm);
        assert_eq!(states[0], TaskState::Completed);
        assert_eq!(
            states[1],
            TaskState::Running {
                job_id: "10".into()
            }
        );
        assert_eq!(
            states[2],
            TaskState::Pending {
                job_id: "10".into(),
                reason: "Resources".into()
            }
        );
        assert_eq!(
            states[3],
            TaskState::Failed {
                job_id: "10".into(),
                slurm_state: Some("TIMEOUT".into())
            }
        );
        assert_eq!(states[4], TaskState::NotSubmitted);
        assert_eq!(
            states[1000],
            TaskState::Failed {
                job_id: "11".into(),
                slurm_state: None
            }
        );
        assert!(states[1001].is_active());
    }

    #[test]
    fn jobs_of_another_stage_do_not_count() {
        let dir = tempfile::tempdir().unwrap();
        let chunk = StageDir::new(dir.path(), JobStage::Chunk);
        let jobs = JobsFile {
            jobs: vec![job("10", JobStage::Doc, 0, &[0])],
        };
        let slurm = SlurmView {
            queued: vec![queued("10", 0, "RUNNING", "None")],
            accounted: None,
        };
        assert_eq!(
            task_states(&chunk, 1, &jobs, &slurm),
            vec![TaskState::NotSubmitted]
        );
    }
}
