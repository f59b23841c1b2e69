//! Scale-out of ProX-rs runs on Slurm.
//!
//! A run of `N` tasks becomes a job array (one task per array index) whose sbatch script this
//! crate writes into the run folder; arrays past the cluster's `MaxArraySize` are split into
//! several submissions whose tasks add an offset to their index. Submitting again submits only
//! the tasks without a completion marker that Slurm no longer holds, which repairs a run after
//! a node failure, a timeout or a cancel. [`RunStatus`] tells where every task stands, and
//! [`Server`] supervises the inference server a task starts on a GPU node.
//!
//! The run folder's layout is the contract of `docs/run-folder.md`; what each task runs is
//! given by the caller, so this crate knows nothing of the command line.

mod array;
mod cluster;
mod error;
#[cfg(test)]
mod fake;
mod refine_args;
mod run_dir;
mod run_status;
mod script;
mod server;
mod status;
mod submit;

pub use array::{index_ranges, split_ranks, ArraySubmission};
pub use cluster::{AccountedTask, Cluster, QueuedTask, SlurmCommands};
pub use error::Error;
pub use prox_run::read_json_if_present;
pub use refine_args::RefineInvocation;
pub use run_dir::{
    tail_lines, FixedSetting, JobRecord, JobStage, JobsFile, SlurmDir, StageDir, SubmitRequest,
    SubmitSettings,
};
pub use run_status::{FailedTask, PendingTask, RunStatus, RunningTask, StageStatus};
pub use script::{
    shell_quote, slurm_output_pattern, Resources, TaskScript, Word, RANK_OFFSET_VAR,
    TASK_START_MARK,
};
pub use server::{run_beside_server, Server, ServerOptions};
pub use status::{stages, task_states, SlurmView, TaskState};
pub use submit::{submit, StageSubmission};
