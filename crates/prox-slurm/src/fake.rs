//! A cluster in memory for tests: `sbatch` hands out job ids and queues the array's tasks as
//! pending, and a test moves tasks along by hand.

use std::cell::{Cell, RefCell};

use crate::cluster::{AccountedTask, QueuedTask, SlurmCommands};
use crate::Error;

#[derive(Debug)]
pub struct FakeSlurm {
    pub max_array_size: u32,
    pub next_job_id: Cell<u32>,
    /// Every `sbatch` call's arguments, in order.
    pub submitted: RefCell<Vec<Vec<String>>>,
    pub queue: RefCell<Vec<QueuedTask>>,
    pub cancelled: RefCell<Vec<String>>,
    pub squeue_broken: Cell<bool>,
}

impl Default for FakeSlurm {
    fn default() -> Self {
        Self {
            max_array_size: 1001,
            next_job_id: Cell::new(100),
            submitted: RefCell::default(),
            queue: RefCell::default(),
            cancelled: RefCell::default(),
            squeue_broken: Cell::new(false),
        }
    }
}

impl FakeSlurm {
    pub fn queue(&self, job_id: &str, index: u32, state: &str, reason: &str) {
        self.queue.borrow_mut().push(QueuedTask {
            job_id: job_id.into(),
            index: Some(index),
            state: state.into(),
            reason: reason.into(),
        });
    }

    /// Every task leaves the queue (ended, failed or cancelled).
    pub fn drain(&self) {
        self.queue.borrow_mut().clear();
    }

    pub fn break_squeue(&self) {
        self.squeue_broken.set(true);
    }
}

/// The array indices of `--array=SPEC[%P]`: `0-3`, `1,4-5`.
fn array_indices(args: &[String]) -> Vec<u32> {
    let Some(spec) = args.iter().find_map(|arg| arg.strip_prefix("--array=")) else {
        return Vec::new();
    };
    let spec = spec.split('%').next().unwrap_or_default();
    spec.split(',')
        .flat_map(|range| {
            let (start, end) = range.split_once('-').unwrap_or((range, range));
            let (start, end): (u32, u32) = (start.parse().unwrap(), end.parse().unwrap());
            start..=end
        })
        .collect()
}

impl SlurmCommands for FakeSlurm {
    fn max_array_size(&self) -> Result<u32, Error> {
        Ok(self.max_array_size)
    }

    fn submit(&self, args: &[String]) -> Result<String, Error> {
        let job_id = self.next_job_id.get();
        self.next_job_id.set(job_id + 1);
        let job_id = job_id.to_string();
        for index in array_indices(args) {
            self.queue(&job_id, index, "PENDING", "Priority");
        }
        self.submitted.borrow_mut().push(args.to_vec());
        Ok(job_id)
    }

    fn queued(&self, job_ids: &[String]) -> Result<Vec<QueuedTask>, Error> {
        if self.squeue_broken.get() {
            return Err(Error::Command {
                command: "squeue".into(),
                status: "exit status: 1".into(),
                stderr: "slurm_load_jobs error: Unable to contact slurm controller".into(),
            });
        }
        Ok(self
            .queue
            .borrow()
            .iter()
            .filter(|task| job_ids.contains(&task.job_id))
            .cloned()
            .collect())
    }

    fn accounting(&self, _job_ids: &[String]) -> Option<Vec<AccountedTask>> {
        None
    }

    fn cancel(&self, job_id: &str) -> Result<(), Error> {
        self.queue.borrow_mut().retain(|task| task.job_id != job_id);
        self.cancelled.borrow_mut().push(job_id.to_owned());
        Ok(())
    }
}
