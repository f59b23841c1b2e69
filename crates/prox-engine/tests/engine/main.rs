//! prox-engine's integration tests, one binary: the engine against the golden fixtures (the
//! tiny fixture Llama and a real SmolLM2 GGUF file), loading and its failures, the Q8_0
//! kernels, constrained choice, stop strings, hub ids, and (feature `cuda`) the GPU against
//! the CPU.

#![allow(clippy::unwrap_used)] // test helpers: a failure is a test failure

mod choice;
mod common;
#[cfg(feature = "cuda")]
mod cuda;
mod hub;
mod hub_download;
mod load;
mod q8;
mod smollm2;
mod stop;
mod tiny_llama;
