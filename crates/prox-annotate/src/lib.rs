//! Annotating documents with any OpenAI-compatible chat model, to make supervised
//! fine-tuning (SFT) data for ProX refiners, as the ProX paper's appendix A describes.
//!
//! - **Document stage**: the annotator scores each document on two additive 0–5 rubrics,
//!   educational value and format/extraction quality, each answered as a short critique and a
//!   last line with the score ([`parse_score`]). The label ([`doc_label`]) is `keep_doc()` when
//!   the educational value is 3 or more, or 2 with a format score of 4 or more; else
//!   `drop_doc()`.
//! - **Chunk stage**: each document is split into the chunks the chunk refiner sees
//!   (`prox-prompt`: `[000]` line numbers, ~1500-token chunks); for each chunk the annotator
//!   answers one few-shot prompt per noise type (navigation, links, footers by default) with a
//!   code block of `untouch_doc()`, `remove_lines(start=, end=)` and
//!   `normalize(source_str=, target_str=)` calls ([`extract_code_block`]). The programs are
//!   merged and checked: the strict parser of `prox-program`, line numbers within the chunk,
//!   and a cap on the share of lines removed ([`merge_chunk_programs`]).
//!
//! The prompts are minijinja templates ([`Prompts`]): built in, or from a folder. The
//! examples ([`annotate`]) are the refiner's own prompts (`prox-prompt`'s, exactly as
//! `prox prompts` writes them) with the program as the target. Every document ends as
//! examples, a rejection with its reason, or a failure, and [`Stats`] counts them.
//!
//! ```no_run
//! use prox_annotate::{annotate, AnnotateOptions, ClientChat, Prompts};
//! use prox_client::ClientOptions;
//! use prox_prompt::{Prompter, Stage};
//! use prox_tokenizer::Tokenizer;
//!
//! let tokenizer = Tokenizer::from_path("models/web-chunk-refining-lm".as_ref())?;
//! let prompter = Prompter::new(&tokenizer);
//! let chat = ClientChat::connect(ClientOptions {
//!     endpoint: "http://127.0.0.1:8000".to_owned(),
//!     model: Some("llama-3-70b".to_owned()),
//!     ..ClientOptions::default()
//! })?;
//! let options = AnnotateOptions::new(Stage::Chunk, vec!["docs.jsonl".into()], "sft".into());
//! let stats = annotate(&options, &Prompts::builtin(Stage::Chunk)?, &prompter, &chat)?;
//! assert!(stats.adds_up());
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```

mod answer;
mod chat;
mod error;
mod label;
mod prompts;
mod run;

pub use crate::answer::{extract_code_block, parse_score, RejectKind, Rejection, MAX_SCORE};
pub use crate::chat::{ChatError, ChatModel, ChatRequest, ClientChat};
pub use crate::error::Error;
pub use crate::label::{
    doc_label, merge_chunk_programs, ChunkLines, ChunkProgram, DocLabel, NoiseAnswer,
};
pub use crate::prompts::{ChunkView, Prompts, Template, EDUCATIONAL_VALUE, FORMAT_QUALITY};
pub use crate::run::{
    annotate, AnnotateOptions, DocumentCounts, RequestCounts, Sample, Stats, ANSWERS_FILE,
    CHECKPOINT_FILE, EXAMPLES_FILE, FAILURES_FILE, REJECTED_FILE, STATS_FILE,
};
