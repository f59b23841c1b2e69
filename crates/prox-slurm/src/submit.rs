//! Submitting the tasks of a run that have no completion marker and are not queued: the
//! first submission and every repair after a failure, a timeout or a cancel.

use std::path::Path;
use std::time::{SystemTime, UNIX_EPOCH};

use crate::array::split_ranks;
use crate::cluster::SlurmCommands;
use crate::run_dir::{JobRecord, JobStage, SlurmDir, StageDir, SubmitSettings};
use crate::script::{slurm_output_pattern, TaskScript, Word, RANK_OFFSET_VAR};
use crate::status::{stages, task_states, SlurmView, TaskState};
use crate::Error;

/// `squeue`'s reason for a job whose dependency failed.
const NEVER_SATISFIED: &str = "DependencyNeverSatisfied";

/// What `submit` did for one stage.
#[derive(Debug, Clone)]
pub struct StageSubmission {
    pub stage: JobStage,
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
    words: impl Fn(JobStage) -> Vec<Word>,
    cluster: &dyn SlurmCommands,
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
                    if stage == JobStage::Doc && !doc_jobs.contains(job_id) {
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
                JobStage::All => format!("prox-{run_name}"),
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
            let after = if stage == JobStage::Chunk {
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
                if stage == JobStage::Doc {
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::fake::FakeSlurm;
    use crate::script::Resources;

    fn settings(tasks: u32, separate_stages: bool) -> SubmitSettings {
        SubmitSettings {
            tasks,
            refine_args: vec!["--input".into(), "x".into()],
            separate_stages,
            max_parallel: None,
            launch_server: None,
            server_ready_seconds: None,
            resources: Resources::default(),
        }
    }

    fn submit_to(
        run_dir: &Path,
        settings: &SubmitSettings,
        slurm: &FakeSlurm,
    ) -> Vec<StageSubmission> {
        submit(
            run_dir,
            settings,
            Path::new("/bin/prox"),
            |stage| vec![Word::literal("refine"), Word::literal(stage.name())],
            slurm,
        )
        .unwrap()
    }

    fn finish(run_dir: &Path, stage: JobStage, rank: usize) {
        let layout = StageDir::new(run_dir, stage).layout().clone();
        std::fs::create_dir_all(layout.done_dir()).unwrap();
        std::fs::write(layout.done_marker(rank), "{}").unwrap();
    }

    #[test]
    fn the_first_submission_writes_the_script_and_records_the_job() {
        let dir = tempfile::tempdir().unwrap();
        let slurm = FakeSlurm::default();
        let submissions = submit_to(dir.path(), &settings(3, false), &slurm);
        assert_eq!(submissions.len(), 1);
        assert_eq!(submissions[0].jobs[0].ranks, [0, 1, 2]);
        let submitted = slurm.submitted.borrow();
        assert_eq!(submitted.len(), 1);
        assert!(
            submitted[0].contains(&"--array=0-2".to_owned()),
            "{submitted:?}"
        );
        let slurm_dir = SlurmDir::new(dir.path());
        let script = std::fs::read_to_string(slurm_dir.script(JobStage::All)).unwrap();
        assert!(script.contains("refine"), "{script}");
        assert_eq!(slurm_dir.jobs().unwrap().jobs, submissions[0].jobs);
    }

    #[test]
    fn a_resubmission_submits_only_the_tasks_that_neither_finished_nor_wait() {
        let dir = tempfile::tempdir().unwrap();
        let slurm = FakeSlurm::default();
        let settings = settings(4, false);
        submit_to(dir.path(), &settings, &slurm);
        // While Slurm holds every task, submitting again does nothing.
        let again = submit_to(dir.path(), &settings, &slurm);
        assert_eq!(again[0].active, [0, 1, 2, 3]);
        assert!(again[0].jobs.is_empty());
        // Task 0 finished, task 3 still runs, tasks 1 and 2 were lost with their node.
        finish(dir.path(), JobStage::All, 0);
        slurm.drain();
        slurm.queue("100", 3, "RUNNING", "None");
        let repair = submit_to(dir.path(), &settings, &slurm);
        assert_eq!(repair[0].completed, 1);
        assert_eq!(repair[0].active, [3]);
        assert_eq!(repair[0].jobs.len(), 1);
        assert_eq!(repair[0].jobs[0].ranks, [1, 2]);
        assert_eq!(repair[0].jobs[0].array, "1-2");
        assert_eq!(SlurmDir::new(dir.path()).jobs().unwrap().jobs.len(), 2);
    }

    #[test]
    fn chunk_jobs_wait_for_the_document_jobs_and_dead_dependencies_are_replaced() {
        let dir = tempfile::tempdir().unwrap();
        let slurm = FakeSlurm::default();
        let settings = settings(2, true);
        let first = submit_to(dir.path(), &settings, &slurm);
        let (doc_job, chunk_job) = (&first[0].jobs[0], &first[1].jobs[0]);
        assert_eq!(chunk_job.after, std::slice::from_ref(&doc_job.job_id));
        assert!(slurm.submitted.borrow()[1]
            .contains(&format!("--dependency=afterok:{}", doc_job.job_id)));
        // The document job failed; its chunk job can never start.
        slurm.drain();
        slurm.queue(&chunk_job.job_id, 0, "PENDING", NEVER_SATISFIED);
        slurm.queue(&chunk_job.job_id, 1, "PENDING", NEVER_SATISFIED);
        let repair = submit_to(dir.path(), &settings, &slurm);
        assert_eq!(
            *slurm.cancelled.borrow(),
            std::slice::from_ref(&chunk_job.job_id)
        );
        assert_eq!(repair[0].jobs[0].ranks, [0, 1]);
        assert_eq!(repair[1].jobs[0].ranks, [0, 1]);
        assert_eq!(repair[1].jobs[0].after, [repair[0].jobs[0].job_id.clone()]);
    }

    #[test]
    fn arrays_past_the_cluster_limit_are_split_with_an_offset() {
        let dir = tempfile::tempdir().unwrap();
        let slurm = FakeSlurm {
            max_array_size: 2,
            ..FakeSlurm::default()
        };
        let submissions = submit_to(dir.path(), &settings(5, false), &slurm);
        let offsets: Vec<u32> = submissions[0].jobs.iter().map(|job| job.offset).collect();
        assert_eq!(offsets, [0, 2, 4]);
        assert!(slurm.submitted.borrow()[2].contains(&format!("--export=ALL,{RANK_OFFSET_VAR}=4")));
    }
}
