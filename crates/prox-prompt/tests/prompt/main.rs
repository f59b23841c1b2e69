//! prox-prompt's integration tests, one binary: the reference's prompt vectors, properties of
//! chunking and budgets, and other models' chat templates. `tests/large.rs` stays a binary of
//! its own: it reads the process's peak memory.

#![allow(clippy::unwrap_used)] // test helpers: a failure is a test failure

mod golden;
mod properties;
mod templates;
