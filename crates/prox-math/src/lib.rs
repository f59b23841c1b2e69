//! ProX's math evaluation, exact to GAIR-NLP's math-evaluation-harness (`MATH-EVAL-SPEC.md`):
//! the nine benchmarks' questions and ground truths read from a harness checkout, few-shot
//! chain-of-thought prompts, answer extraction and `strip_string`, grading, and the harness's
//! output files.
//!
//! ```no_run
//! use prox_math::{prompt, Dataset, Harness};
//!
//! let harness = Harness::open("math-evaluation-harness".as_ref())?;
//! let demo = harness.demo(Dataset::Gsm8k)?;
//! for example in harness.examples(Dataset::Gsm8k)? {
//!     let text = prompt(&demo, &example);
//!     let pred = prox_math::predict("… The answer is 18.", Dataset::Gsm8k);
//! #   let _ = (text, pred);
//! }
//! # Ok::<(), prox_math::Error>(())
//! ```

mod data;
pub mod equal;
mod error;
mod extract;
mod grade;
mod output;
pub mod python;
mod run;
mod strip;
mod w2n;

pub use data::{prompt, Dataset, Example, Harness, KEPT_FIELDS};
pub use error::{Error, Result};
pub use extract::{code_of, extract_answer, predict};
pub use grade::{grade, grade_row, GRADE_BUDGET};
pub use output::{minutes_seconds, percent, Metrics, Scored, METRICS_FILE, SAMPLES_FILE};
pub use run::{
    average, before_stop, results_json, results_table, run, DatasetResult, GenerationParams,
    Generator, MathResults, Reporter, RunOptions, Silent, GENERATIONS_FILE, STOP_STRINGS,
};
pub use strip::strip_string;
pub use w2n::{word_to_num, NotANumber, Number};
