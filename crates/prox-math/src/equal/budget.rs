//! The per-sample time budget: the harness gives `math_equal` 3 seconds in a worker process and
//! scores a sample false when they run out; here every loop of the grader asks the budget.

use std::time::{Duration, Instant};

/// The budget ran out; the sample is a timeout.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct OutOfTime;

/// A deadline, asked at every step of parsing and evaluation.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Budget {
    deadline: Option<Instant>,
}

impl Budget {
    /// A budget of `duration` from now; one too large to represent never runs out.
    pub(crate) fn new(duration: Duration) -> Budget {
        Budget {
            deadline: Instant::now().checked_add(duration),
        }
    }

    /// `Err(OutOfTime)` once the deadline has passed.
    pub(crate) fn check(&self) -> Result<(), OutOfTime> {
        match self.deadline {
            Some(deadline) if Instant::now() >= deadline => Err(OutOfTime),
            _ => Ok(()),
        }
    }
}
