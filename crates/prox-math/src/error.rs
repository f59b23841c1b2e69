//! The math evaluation's error type: what went wrong, with the file, line, dataset or sample it
//! concerns.

use std::path::PathBuf;

use crate::Dataset;

/// An error from reading the harness, building prompts, grading or writing results.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    #[error("harness folder {} does not exist\nhint: --data takes a checkout of GAIR-NLP/math-evaluation-harness (with data/ and prompts/cot/)", path.display())]
    HarnessNotFound { path: PathBuf },
    #[error("unknown dataset `{name}`; known: gsm8k, minerva_math, svamp, asdiv, mawps, tabmwp, mathqa, mmlu_stem, sat_math")]
    UnknownDataset { name: String },
    #[error("{dataset}: data file {} does not exist", path.display())]
    DataMissing { dataset: Dataset, path: PathBuf },
    #[error("{dataset}: prompt file {} does not exist (nor prompts/cot.md beside it)", path.display())]
    PromptMissing { dataset: Dataset, path: PathBuf },
    #[error("cannot read {}", path.display())]
    Read {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("cannot write {}", path.display())]
    Write {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    /// A line of a data, generation or grading file that cannot be used.
    #[error("{}:{line}: {reason}", path.display())]
    Record {
        path: PathBuf,
        line: usize,
        reason: String,
    },
    /// A JSON file (results, metrics) that is not whole or not of its kind.
    #[error("{} is not a complete results file", path.display())]
    Json {
        path: PathBuf,
        #[source]
        source: serde_json::Error,
    },
    /// The generator failed on a sample.
    #[error("{dataset}: generation for idx {idx} failed: {message}")]
    Generation {
        dataset: Dataset,
        idx: i64,
        message: String,
    },
    #[error(transparent)]
    Output(#[from] prox_io::Error),
}

pub type Result<T, E = Error> = std::result::Result<T, E>;
