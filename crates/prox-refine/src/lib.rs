//! The ProX refining pipeline, as a library.
//!
//! A run reads documents from input files, asks a document-stage model whether to keep each
//! one, asks a chunk-stage model for a program per chunk of each kept document, executes the
//! programs, and writes every document to exactly one place: the output, the dropped files
//! (with stage and reason) or the failures files (with the error). The layout of the run
//! folder is fixed in `docs/run-folder.md`.
//!
//! - [`Plan`] splits the inputs into shards and assigns them to tasks, deterministically.
//! - [`Backend`] is the model side: [`EmbeddedBackend`] runs a model in this process,
//!   [`OpenAiBackend`] sends the prompts to an OpenAI-compatible server.
//! - [`Refiner`] takes a batch of [`Document`]s through the stages and returns where each
//!   one ends ([`Destination`]).
//! - [`RunFolder`] and [`run_task`] make a task resumable: outputs are committed in parts,
//!   each followed by a progress checkpoint; a rerun continues from the last checkpoint.
//!   [`run_tasks`] runs a process's tasks on a pool of workers and tells a [`Reporter`].
//! - [`Preset`] names the released refiners; [`Models`] are a run's, the preset's by default.
//! - [`Stats`] (from `prox-run`, which holds the run folder's contract) counts everything, and
//!   the counts add up.
//! - [`validate`] measures a refiner on held-out annotated examples: keep/drop F1 of the
//!   document stage, line-wise F1 of the chunk stage, and the kept-token ratio.

mod backend;
mod document;
mod error;
mod openai;
mod plan;
mod pool;
mod preset;
mod refiner;
mod run;
mod task;
pub mod validate;

pub use backend::{Backend, EmbeddedBackend, GenRequest, GenResult};
pub use document::{Document, DocumentSource};
pub use error::{Error, Result};
pub use openai::OpenAiBackend;
pub use plan::{Plan, Shard, SplitPolicy};
pub use pool::{rank_from_environment, run_tasks, RANK_OFFSET_VARIABLE, RANK_VARIABLES};
pub use preset::{Models, Preset};
pub use prox_run::Stats;
pub use refiner::{Destination, Refiner, RefinerOptions, Stages};
pub use run::{BackendKind, OutputFormat, RefinerSettings, RunConfig, RunFolder};
pub use task::{run_task, Progress, Reporter, Silent, TaskOptions, TaskReport};
