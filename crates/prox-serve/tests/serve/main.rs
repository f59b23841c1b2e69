//! prox-serve's integration tests, one binary: `stop` and chat completions over real HTTP with
//! the tiny fixture model, and the official `openai` Python client against SmolLM2.

#![allow(clippy::unwrap_used)] // test helpers: a failure is a test failure

mod engine;
mod openai_python;
mod stop_and_chat;
