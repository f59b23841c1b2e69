//! The run folder (`docs/run-folder.md`): its configuration, layout, stats and rows are
//! [`prox_run`]'s; this crate writes its parts, checkpoints and markers.

pub(crate) use prox_run::read_json;
pub use prox_run::{BackendKind, OutputFormat, RefinerSettings, RunConfig, RunFolder};

use crate::refiner::RefinerOptions;

impl RefinerOptions {
    /// The settings as the run configuration records them.
    pub fn settings(&self) -> RefinerSettings {
        RefinerSettings {
            execution: prox_run::Execution {
                mode: self.mode,
                thresholds: self.thresholds,
            },
            prompt_mode: self.prompt_mode,
            chunk_tokens: self.budget.chunk_tokens,
            doc_tokens: self.budget.doc_tokens,
            doc_max_new_tokens: self.doc_max_new_tokens,
            chunk_max_new_tokens: self.chunk_max_new_tokens,
        }
    }
}
