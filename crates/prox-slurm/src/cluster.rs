//! Talking to Slurm through its commands (`sbatch`, `squeue`, `sacct`, `scontrol`,
//! `scancel`), found on `PATH`.

use std::process::Command;

use crate::Error;

/// A task of a job array as `squeue` lists it: pending, running, completing.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct QueuedTask {
    /// The array's job id (`%F`).
    pub job_id: String,
    /// The array index (`%K`); `None` for a job that is not an array.
    pub index: Option<u32>,
    /// `PENDING`, `RUNNING`, `COMPLETING`, …
    pub state: String,
    /// Why it is pending (`Dependency`, `Resources`, `None`).
    pub reason: String,
}

/// A task of a job array as `sacct` accounts for it, finished or not.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AccountedTask {
    pub job_id: String,
    pub index: u32,
    /// `COMPLETED`, `FAILED`, `TIMEOUT`, `CANCELLED`, `NODE_FAIL`, `OUT_OF_MEMORY`, …
    pub state: String,
    /// `status:signal`.
    pub exit_code: String,
}

/// What this crate asks of Slurm: submission, the queue, accounting, the array-size limit and
/// cancelling. [`Cluster`] runs the real commands; tests give a fake.
pub trait SlurmCommands {
    /// The cluster's `MaxArraySize`: array indices must be below it.
    fn max_array_size(&self) -> Result<u32, Error>;

    /// Submits with `sbatch --parsable ARGS…` and returns the job id.
    fn submit(&self, args: &[String]) -> Result<String, Error>;

    /// The queued tasks (pending, running, completing) of the given jobs.
    fn queued(&self, job_ids: &[String]) -> Result<Vec<QueuedTask>, Error>;

    /// The accounted tasks of the given jobs, or `None` where accounting is off or `sacct`
    /// is missing (then job state comes from `squeue` and the run folder alone).
    fn accounting(&self, job_ids: &[String]) -> Option<Vec<AccountedTask>>;

    /// Cancels a job (all its tasks).
    fn cancel(&self, job_id: &str) -> Result<(), Error>;
}

/// The Slurm commands on `PATH`.
#[derive(Debug, Clone, Default)]
pub struct Cluster;

impl SlurmCommands for Cluster {
    fn max_array_size(&self) -> Result<u32, Error> {
        let output = run("scontrol", &["show", "config"])?;
        parse_max_array_size(&output).ok_or_else(|| Error::Output {
            command: "scontrol show config".into(),
            output: "no MaxArraySize line".into(),
        })
    }

    fn submit(&self, args: &[String]) -> Result<String, Error> {
        let mut all: Vec<&str> = vec!["--parsable"];
        all.extend(args.iter().map(String::as_str));
        let output = run("sbatch", &all)?;
        parse_job_id(&output).ok_or_else(|| Error::Output {
            command: "sbatch --parsable".into(),
            output,
        })
    }

    fn queued(&self, job_ids: &[String]) -> Result<Vec<QueuedTask>, Error> {
        if job_ids.is_empty() {
            return Ok(Vec::new());
        }
        // All of this user's jobs, filtered here: `squeue --jobs` fails outright when one of
        // the ids has left the controller's memory.
        let output = run(
            "squeue",
            &["--me", "--array", "--noheader", "--format=%F|%K|%T|%r"],
        )?;
        Ok(parse_squeue(&output)
            .into_iter()
            .filter(|task| job_ids.contains(&task.job_id))
            .collect())
    }

    fn accounting(&self, job_ids: &[String]) -> Option<Vec<AccountedTask>> {
        if job_ids.is_empty() {
            return Some(Vec::new());
        }
        let jobs = format!("--jobs={}", job_ids.join(","));
        let output = run(
            "sacct",
            &[
                &jobs,
                "--noheader",
                "--parsable2",
                "--format=JobID,State,ExitCode",
            ],
        )
        .ok()?;
        Some(parse_sacct(&output))
    }

    fn cancel(&self, job_id: &str) -> Result<(), Error> {
        run("scancel", &[job_id]).map(drop)
    }
}

/// Runs a Slurm command and returns its standard output, or an error with its standard error.
fn run(program: &str, args: &[&str]) -> Result<String, Error> {
    let output = Command::new(program)
        .args(args)
        .output()
        .map_err(|source| Error::Spawn {
            program: program.to_owned(),
            source,
        })?;
    if !output.status.success() {
        return Err(Error::Command {
            command: format!("{program} {}", args.join(" ")),
            status: output.status.to_string(),
            stderr: String::from_utf8_lossy(&output.stderr).trim().to_owned(),
        });
    }
    Ok(String::from_utf8_lossy(&output.stdout).into_owned())
}

/// `MaxArraySize = 1001` from `scontrol show config`.
pub fn parse_max_array_size(config: &str) -> Option<u32> {
    config.lines().find_map(|line| {
        let (key, value) = line.split_once('=')?;
        (key.trim() == "MaxArraySize")
            .then(|| value.trim().parse().ok())
            .flatten()
    })
}

/// `sbatch --parsable` prints `JOBID` or `JOBID;CLUSTER`.
pub fn parse_job_id(output: &str) -> Option<String> {
    let id = output.trim().split(';').next()?.trim();
    (!id.is_empty() && id.chars().all(|c| c.is_ascii_digit())).then(|| id.to_owned())
}

/// Lines of `squeue --array --format=%F|%K|%T|%r`.
pub fn parse_squeue(output: &str) -> Vec<QueuedTask> {
    output
        .lines()
        .filter_map(|line| {
            let mut fields = line.trim().split('|');
            let job_id = fields.next()?.trim().to_owned();
            let index = fields.next()?.trim().parse().ok();
            let state = fields.next()?.trim().to_owned();
            let reason = fields.next().unwrap_or("").trim().to_owned();
            (!job_id.is_empty()).then_some(QueuedTask {
                job_id,
                index,
                state,
                reason,
            })
        })
        .collect()
}

/// Lines of `sacct --parsable2 --format=JobID,State,ExitCode`: array tasks (`12_3`) only,
/// not their steps (`12_3.batch`) nor pending ranges (`12_[4-7]`).
pub fn parse_sacct(output: &str) -> Vec<AccountedTask> {
    output
        .lines()
        .filter_map(|line| {
            let mut fields = line.trim().split('|');
            let id = fields.next()?;
            let state = fields.next()?;
            let exit_code = fields.next().unwrap_or("");
            let (job_id, index) = id.split_once('_')?;
            let index = index.parse().ok()?;
            Some(AccountedTask {
                job_id: job_id.to_owned(),
                index,
                // `CANCELLED by 0` names who cancelled it.
                state: state.split_whitespace().next().unwrap_or("").to_owned(),
                exit_code: exit_code.to_owned(),
            })
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn max_array_size_is_read_from_the_config() {
        let config = "JobCompType             = jobcomp/none\nMaxArraySize            = 1001\nMaxJobCount = 10000\n";
        assert_eq!(parse_max_array_size(config), Some(1001));
        assert_eq!(parse_max_array_size("MaxJobCount = 3\n"), None);
    }

    #[test]
    fn job_ids_come_with_or_without_a_cluster() {
        assert_eq!(parse_job_id("1234\n"), Some("1234".into()));
        assert_eq!(parse_job_id("1234;cluster\n"), Some("1234".into()));
        assert_eq!(parse_job_id("sbatch: error\n"), None);
        assert_eq!(parse_job_id(""), None);
    }

    #[test]
    fn squeue_lines_give_array_tasks() {
        let tasks =
            parse_squeue("12|3|RUNNING|None\n12|5|PENDING|Resources\n14|N/A|PENDING|Dependency\n");
        assert_eq!(
            tasks[0],
            QueuedTask {
                job_id: "12".into(),
                index: Some(3),
                state: "RUNNING".into(),
                reason: "None".into()
            }
        );
        assert_eq!(tasks[1].reason, "Resources");
        assert_eq!(tasks[2].index, None);
    }

    #[test]
    fn sacct_lines_give_tasks_without_steps() {
        let tasks = parse_sacct(
            "12_0|COMPLETED|0:0\n12_0.batch|COMPLETED|0:0\n12_1|CANCELLED by 0|0:15\n12_[2-3]|PENDING|0:0\n",
        );
        assert_eq!(tasks.len(), 2);
        assert_eq!(tasks[1].state, "CANCELLED");
        assert_eq!(tasks[1].index, 1);
        assert_eq!(tasks[1].exit_code, "0:15");
    }
}
