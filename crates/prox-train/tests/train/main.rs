//! prox-train's integration tests, one binary: AdamW steps against the reference,
//! pre-training killed and resumed, and supervised fine-tuning of the tiny fixture model.

#![allow(clippy::unwrap_used)] // test helpers: a failure is a test failure

mod golden;
mod harness;
mod resume;
mod sft;
