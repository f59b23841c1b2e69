//! prox-hub's integration tests, one binary: downloads from a stand-in hub on loopback
//! (`prox_test::hub`), and the environment variables `huggingface_hub` reads.

#![allow(clippy::unwrap_used)] // test code: a failure is a test failure

mod download;
mod env;
