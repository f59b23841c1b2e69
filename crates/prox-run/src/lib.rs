//! The run folder of `prox refine`: the contract (`docs/run-folder.md`) between the crates
//! that write it (`prox-refine`) and those that read it (`prox-slurm`, `prox-report`).
//!
//! - [`RunConfig`] is `run.json`: what the run is (a rerun in the same folder must be the same
//!   run), with the refiner's settings ([`RefinerSettings`]) and how it executed its programs
//!   ([`Execution`]).
//! - [`RunFolder`] makes a folder for a run or checks that it was made for it, merges the
//!   tasks' stats, and reads the rows of its parts ([`DocumentRow`], [`FailureRow`]).
//! - [`RunLayout`] names every file of a run folder, lists its parts in run order, and reads
//!   the tasks' completion markers and checkpoints.
//! - [`Stats`] is what a task counts; the stats of tasks add up to the run's, and files that
//!   lack a field (written by an older `prox`) read it as zero.
//!
//! Parts, checkpoints and markers are written by `prox-refine`, atomically through `prox-io`.
//!
//! ```
//! use std::path::Path;
//! use prox_run::RunLayout;
//!
//! let run = RunLayout::new("runs/web");
//! assert_eq!(run.done_marker(3), Path::new("runs/web/done/task-00003.json"));
//! assert_eq!(
//!     run.part("output", 3, 1, "parquet"),
//!     Path::new("runs/web/output/part-00003-00001.parquet")
//! );
//! ```

mod config;
mod error;
mod folder;
mod layout;
mod rows;
mod stats;

pub use config::{BackendKind, Execution, OutputFormat, RefinerSettings, RunConfig, SplitPolicy};
/// The one stage vocabulary of run folders: the stage a document was dropped at, the stages a
/// run runs.
pub use prox_program::{Stage, Stages};

pub use error::{Error, Result};
pub use folder::RunFolder;
pub use layout::{
    read_json, read_json_if_present, RunLayout, StatsSource, DROPPED, FAILURES, OUTPUT, PARTS,
};
pub use rows::{DocumentRow, DroppedAt, FailureRow, Found, Item, Outcome};
pub use stats::{
    DocumentCounts, FileCounts, ProgramCounts, Seconds, StageCounts, StageStats, Stats, Throughput,
    TokenCounts, WordCounts,
};
