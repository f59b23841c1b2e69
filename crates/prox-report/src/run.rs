//! The run folder a report reads: its rows, stats and recorded execution are [`prox_run`]'s.

pub use prox_run::{
    DocumentRow, DroppedAt, Execution, FailureRow, Found, Item, Outcome, RunFolder, Stage,
};
