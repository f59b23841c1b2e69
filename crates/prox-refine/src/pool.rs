//! The tasks of one process: which ranks run here, and a pool of workers that share the
//! loaded models and take the next task as each one ends.

use std::sync::atomic::{AtomicUsize, Ordering};

use crate::error::{Error, Result};
use crate::plan::Plan;
use crate::refiner::Refiner;
use crate::run::RunFolder;
use crate::task::{run_task, Reporter, TaskOptions, TaskReport};

/// The environment variables that give a process its rank in a job array or indexed job, in
/// the order they are looked at.
pub const RANK_VARIABLES: [&str; 3] = [
    "SLURM_ARRAY_TASK_ID",
    "SLURM_PROCID",
    "JOB_COMPLETION_INDEX",
];

/// Added to the rank: the first index of an array split past Slurm's `MaxArraySize`.
pub const RANK_OFFSET_VARIABLE: &str = "PROX_RANK_OFFSET";

/// The rank of this process in a job array or indexed job, if it is in one.
pub fn rank_from_environment() -> Result<Option<usize>> {
    rank_from(|name| std::env::var(name).ok())
}

fn rank_from(var: impl Fn(&str) -> Option<String>) -> Result<Option<usize>> {
    let number = |name: &str, value: &str, what: &str| {
        value
            .trim()
            .parse::<usize>()
            .map_err(|_| Error::Invalid(format!("{name}={value:?} is not {what}")))
    };
    for name in RANK_VARIABLES {
        if let Some(value) = var(name) {
            let rank = number(name, &value, "a task number")?;
            let offset = match var(RANK_OFFSET_VARIABLE) {
                Some(offset) => number(RANK_OFFSET_VARIABLE, &offset, "a number")?,
                None => 0,
            };
            return Ok(Some(rank + offset));
        }
    }
    Ok(None)
}

/// Runs the tasks `ranks` of the plan on `workers` threads, each taking the next rank as its
/// task ends. The first error stops the workers at their next task and is returned.
pub fn run_tasks(
    folder: &RunFolder,
    plan: &Plan,
    ranks: &[usize],
    workers: usize,
    refiner: &Refiner,
    options: &TaskOptions,
    reporter: &dyn Reporter,
) -> Result<Vec<TaskReport>> {
    let next = AtomicUsize::new(0);
    let failed = std::sync::atomic::AtomicBool::new(false);
    let results: Vec<Result<Vec<TaskReport>>> = std::thread::scope(|scope| {
        let handles: Vec<_> = (0..workers.clamp(1, ranks.len().max(1)))
            .map(|_| {
                scope.spawn(|| -> Result<Vec<TaskReport>> {
                    let mut reports = Vec::new();
                    while !failed.load(Ordering::Relaxed) {
                        let Some(&rank) = ranks.get(next.fetch_add(1, Ordering::Relaxed)) else {
                            break;
                        };
                        let report = run_task(folder, plan, rank, refiner, options, reporter)
                            .map_err(|source| {
                                failed.store(true, Ordering::Relaxed);
                                Error::TaskStopped {
                                    rank,
                                    source: Box::new(source),
                                }
                            })?;
                        reporter.task_done(&report);
                        reports.push(report);
                    }
                    Ok(reports)
                })
            })
            .collect();
        handles
            .into_iter()
            .map(|handle| handle.join().unwrap_or(Err(Error::WorkerPanicked)))
            .collect()
    });
    let mut reports = Vec::new();
    for result in results {
        reports.extend(result?);
    }
    reports.sort_by_key(|report| report.rank);
    Ok(reports)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rank(vars: &[(&str, &str)]) -> Result<Option<usize>> {
        rank_from(|name| {
            vars.iter()
                .find(|(key, _)| *key == name)
                .map(|(_, value)| (*value).to_owned())
        })
    }

    #[test]
    fn the_rank_comes_from_the_array_index_plus_the_offset() {
        assert_eq!(rank(&[]).unwrap(), None);
        assert_eq!(rank(&[("SLURM_PROCID", "3")]).unwrap(), Some(3));
        assert_eq!(
            rank(&[
                ("SLURM_PROCID", "3"),
                ("SLURM_ARRAY_TASK_ID", "7"),
                ("PROX_RANK_OFFSET", "1000")
            ])
            .unwrap(),
            Some(1007)
        );
        let error = rank(&[("JOB_COMPLETION_INDEX", "x")]).unwrap_err();
        assert!(
            error.to_string().contains("JOB_COMPLETION_INDEX"),
            "{error}"
        );
        assert!(rank(&[("SLURM_PROCID", "1"), ("PROX_RANK_OFFSET", "-1")]).is_err());
    }
}
