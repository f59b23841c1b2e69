//! Submitting the tasks of a run that have no completion marker and are not queued: the
//! first submission and every repair after a failure, a timeout or a cancel.

use std::path::Path;
use std::time::{SystemTime, UNIX_EPOCH};

use crate::array::split_ranks;
use crate::cluster::Cluster;
use crate::run_dir::{JobRecord, SlurmDir, Stage, StageDir, SubmitSettings};
use crate::script::{slurm_output_pattern, TaskScript, Word, RANK_OFFSET_VAR};
use crate::status::{stages, task_states, SlurmView, TaskState};
use crate::Error;

/// `squeue`'s reason for a job whose dependency failed.
const NEVER_SATISFIED: &str = "DependencyNeverSatisfied";

/// What `submit` did for one stage.
#[derive(Debug, Clone)]
pub struct StageSubmission {
    pub stage: Stage,
    pub completed: u32,
    /// Ranks Slurm still held (queued or running), left alone.
    pub active: Vec<u32>,
    /// The new jobs, with the ranks each runs.
    pub jobs: Vec<JobRecord>,
}

/// Writes each stage's script to `RUN_DIR/slurm/STAGE.sbatch` and submits, as job arrays, the
/// tasks that are neither complete nor held by Slurm. `words(stage)` is the command each task
/// of the stage runs after `program`. With separate stages, the chunk jobs wait for every
/// document job still queued or submitted now (`--dependency=afterok`). The job ids are
/// appended to `RUN_DIR/slurm/jobs.json` as each is submitted.
pub fn submit(
    run_dir: &Path,
    settings: &SubmitSettings,
    program: &Path,
    words: impl Fn(Stage) -> Vec<Word>,
    cluster: &Cluster,
) -> Result<Vec<StageSubmission>, Error> {
    let slurm_dir = SlurmDir::new(run_dir);
    let mut jobs = slurm_dir.jobs()?;
    let job_ids: Vec<String> = jobs.jobs.iter().map(|job| job.job_id.clone()).collect();
    let view = SlurmView {
        queued: cluster.queued(&job_ids)?,
        accounted: None,
    };
    let max_array_size = cluster.max_array_size()?;
    let run_name = run_dir
        .file_name()
        .map(|name| name.to_string_lossy().into_owned())
        .unwrap_or_else(|| "run".to_owned());

    let mut submissions = Vec::new();
    // Jobs a chunk job must wait for: document jobs queued before, or submitted now.
    let mut doc_jobs: Vec<String> = Vec::new();
    let mut cancelled: Vec<String> = Vec::new();
    for &stage in stages(settings.separate_stages) {
        let stage_dir = StageDir::new(run_dir, stage);
        let states = task_states(&stage_dir, settings.tasks, &jobs, &view);
        let mut completed = 0;
        let mut active = Vec::new();
        let mut missing = Vec::new();
        for (rank, state) in (0..settings.tasks).zip(&states) {
            match state {
                TaskState::Completed => completed += 1,
                // Waits for a job that failed: Slurm cancels it (`--kill-on-invalid-dep`), but
                // only at its next scheduling pass; cancelled now, it is submitted again now.
                TaskState::Pending { job_id, reason } if reason == NEVER_SATISFIED => {
                    if !cancelled.contains(job_id) {
                        cluster.cancel(job_id)?;
                        cancelled.push(job_id.clone());
                    }
                    missing.push(rank);
                }
                TaskState::Running { job_id } | TaskState::Pending { job_id, .. } => {
                    active.push(rank);
                    if stage == Stage::Doc && !doc_jobs.contains(job_id) {
                        doc_jobs.push(job_id.clone());
                    }
                }
                TaskState::Failed { .. } | TaskState::NotSubmitted => missing.push(rank),
            }
        }
        let mut submission = StageSubmission {
            stage,
            completed,
            active,
            jobs: Vec::new(),
        };
        if !missing.is_empty() {
            let script_path = slurm_dir.script(stage);
            let job_name = match stage {
                Stage::All => format!("prox-{run_name}"),
                _ => format!("prox-{run_name}-{}", stage.name()),
            };
            let script = TaskScript {
                job_name: &job_name,
                stage: &stage_dir,
                resources: &settings.resources,
                program,
                words: &words(stage),
            }
            .render();
            write_script(&script_path, &script)?;
            create_dir(&stage_dir.layout().logs_dir())?;
            create_dir(&slurm_dir.root().join("logs"))?;
            let after = if stage == Stage::Chunk {
                doc_jobs.clone()
            } else {
                Vec::new()
            };
            for array in split_ranks(&missing, max_array_size) {
                let mut command = vec![
                    format!("--array={}", array.array_spec(settings.max_parallel)),
                    format!(
                        "--output={}",
                        slurm_output_pattern(&stage_dir, slurm_dir.root(), array.offset).display()
                    ),
                    format!("--export=ALL,{RANK_OFFSET_VAR}={}", array.offset),
                ];
                if !after.is_empty() {
                    command.push(format!("--dependency=afterok:{}", after.join(":")));
                }
                command.push(script_path.to_string_lossy().into_owned());
                let job_id = cluster.submit(&command)?;
                tracing::info!(
                    job_id,
                    stage = stage.name(),
                    array = array.array_spec(settings.max_parallel),
                    "submitted"
                );
                if stage == Stage::Doc {
                    doc_jobs.push(job_id.clone());
                }
                let mut full_command = vec!["sbatch".to_owned(), "--parsable".to_owned()];
                full_command.extend(command);
                let record = JobRecord {
                    job_id,
                    stage,
                    array: array.array_spec(settings.max_parallel),
                    offset: array.offset,
                    ranks: array.ranks(),
                    after: after.clone(),
                    submitted_at: SystemTime::now()
                        .duration_since(UNIX_EPOCH)
                        .map(|d| d.as_secs())
                        .unwrap_or(0),
                    command: full_command,
                };
                jobs.jobs.push(record.clone());
                // Recorded at once: a later failure must not lose the id of a submitted job.
                slurm_dir.write_jobs(&jobs)?;
                submission.jobs.push(record);
            }
        }
        submissions.push(submission);
    }
    Ok(submissions)
}

fn create_dir(path: &Path) -> Result<(), Error> {
    std::fs::create_dir_all(path).map_err(|source| Error::Create {
        path: path.to_owned(),
        source,
    })
}

fn write_script(path: &Path, script: &str) -> Result<(), Error> {
    let mut file = prox_io::AtomicFile::create(path)?;
    std::io::Write::write_all(&mut file, script.as_bytes()).map_err(|source| Error::Create {
        path: path.to_owned(),
        source,
    })?;
    file.commit()?;
    Ok(())
}
