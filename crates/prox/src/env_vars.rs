//! Every environment variable `prox` reads, in one place: `prox --help` prints this list, and
//! a test fails when a crate of the workspace reads a variable the list does not name.

/// Log filter in `tracing` syntax (`info`, `prox=debug`), overriding `-v`/`-q`.
pub const PROX_LOG: &str = "PROX_LOG";

/// Caps the engine's Q8_0 kernel, to run or benchmark a lower path on a richer CPU; an
/// unknown value is an error.
pub const PROX_Q8_KERNEL: &str = prox_engine::q8::KERNEL_ENV;

/// Picks the float GEMM's kernels (AVX2 or AVX-512) for the engine's weight products; an
/// unknown value is an error.
pub const PROX_FLOAT_GEMM: &str = prox_engine::float_gemm::FLOAT_GEMM_ENV;

/// Each variable with what it changes, in the order `prox --help` lists them.
const ENVIRONMENT: &[(&str, &str)] = &[
    (
        PROX_LOG,
        "log filter in tracing syntax (`info`, `prox=debug`); overrides -v and -q",
    ),
    (
        PROX_Q8_KERNEL,
        "caps the Q8_0 kernel the engine picks (`portable`, `avx2`, `avxvnni`, `avx512vnni`, \
         up to the fastest this CPU runs; `prox -v` logs the choice); an unknown value is an \
         error",
    ),
    (
        PROX_FLOAT_GEMM,
        "the float GEMM's kernels for the weight products: `avx2` (AVX2 and FMA only) or \
         `avx512f` (AVX-512 wherever the CPU has it; by default every CPU with it but AMD's), \
         for products of 24 tokens or more, the smaller ones taking AVX2 either way; `prox -v` \
         logs the choice; an unknown value is an error",
    ),
    (
        "SLURM_ARRAY_TASK_ID",
        "`prox refine`: the task's rank in a Slurm job array (when --rank is not given)",
    ),
    (
        "SLURM_PROCID",
        "`prox refine`: the task's rank in a Slurm step (when neither --rank nor an array \
         index is given)",
    ),
    (
        "JOB_COMPLETION_INDEX",
        "`prox refine`: the task's rank in a Kubernetes indexed job",
    ),
    (
        "PROX_RANK_OFFSET",
        "`prox refine`: added to the rank from the environment (`prox slurm` sets it when an \
         array is split past MaxArraySize)",
    ),
    (
        "HF_HUB_CACHE",
        "the Hugging Face hub cache that models and downloads use (older name: \
         HUGGINGFACE_HUB_CACHE); default $HF_HOME/hub",
    ),
    (
        "HUGGINGFACE_HUB_CACHE",
        "the older name of HF_HUB_CACHE, read when that is unset",
    ),
    (
        "HF_HOME",
        "the Hugging Face home (cache and token); default $XDG_CACHE_HOME/huggingface, else \
         $HOME/.cache/huggingface",
    ),
    ("XDG_CACHE_HOME", "where HF_HOME is by default"),
    ("HOME", "where HF_HOME is when XDG_CACHE_HOME is unset"),
    (
        "HF_ENDPOINT",
        "the hub's address (default https://huggingface.co), for `prox download` and model \
         downloads",
    ),
    (
        "HF_TOKEN",
        "the hub token for gated repositories (older name: HUGGING_FACE_HUB_TOKEN); else the \
         file `huggingface-cli login` writes",
    ),
    (
        "HUGGING_FACE_HUB_TOKEN",
        "the older name of HF_TOKEN, read when that is unset",
    ),
    (
        "HF_TOKEN_PATH",
        "the token file read when no token variable is set (default $HF_HOME/token)",
    ),
    (
        "HF_HUB_OFFLINE",
        "`1`: never download a model that is not in the cache (an error says how to get it)",
    ),
    (
        prox_client::DEFAULT_API_KEY_ENV,
        "the API key sent to OpenAI-compatible servers (another variable: --api-key-env)",
    ),
    (
        "NO_COLOR",
        "`prox show` prints without colour on a terminal",
    ),
    ("CLICOLOR_FORCE", "`prox show` prints in colour into a pipe"),
];

/// The "Environment" section of `prox --help`, wrapped here with a hanging indent (clap would
/// wrap the long lines back to the margin).
pub fn help() -> String {
    const WIDTH: usize = 100;
    let name_width = ENVIRONMENT
        .iter()
        .map(|(name, _)| name.len())
        .max()
        .unwrap_or(0);
    let indent = 2 + name_width + 2;
    let mut text = String::from("Environment:\n");
    for (name, meaning) in ENVIRONMENT {
        let mut line = format!("  {name:<name_width$} ");
        for word in meaning.split_whitespace() {
            if line.len() + 1 + word.len() > WIDTH && line.len() > indent {
                text.push_str(&line);
                text.push('\n');
                line = " ".repeat(indent - 1);
            }
            line.push(' ');
            line.push_str(word);
        }
        text.push_str(&line);
        text.push('\n');
    }
    text
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeSet;
    use std::path::{Path, PathBuf};

    use super::ENVIRONMENT;

    /// The calls and declarations through which the workspace's crates read a variable: the
    /// name follows as a string literal.
    const READ_MARKERS: [&str; 4] = ["var(\"", "var_os(\"", " env(\"", "_ENV: &str = \""];

    fn rust_files(dir: &Path, found: &mut Vec<PathBuf>) {
        let entries = std::fs::read_dir(dir).unwrap_or_else(|e| panic!("{}: {e}", dir.display()));
        for entry in entries {
            let path = entry.expect("a directory entry").path();
            if path.is_dir() {
                rust_files(&path, found);
            } else if path.extension().is_some_and(|e| e == "rs") {
                found.push(path);
            }
        }
    }

    fn names_read_in(source: &str) -> Vec<String> {
        let mut names = Vec::new();
        for marker in READ_MARKERS {
            for (at, _) in source.match_indices(marker) {
                let name: String = source[at + marker.len()..]
                    .chars()
                    .take_while(|c| c.is_ascii_uppercase() || c.is_ascii_digit() || *c == '_')
                    .collect();
                if !name.is_empty() {
                    names.push(name);
                }
            }
        }
        names
    }

    #[test]
    fn the_scanner_finds_the_ways_crates_read_variables() {
        let source = r#"std::env::var("A_B") env::var_os("C") let x = env("HF_D"); pub const KERNEL_ENV: &str = "E_1";"#;
        assert_eq!(names_read_in(source), ["A_B", "C", "HF_D", "E_1"]);
    }

    #[test]
    fn every_variable_a_crate_reads_is_listed() {
        let crates = Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
        let mut files = Vec::new();
        for entry in std::fs::read_dir(&crates).expect("the crates folder") {
            let dir = entry.expect("a directory entry").path();
            // The dev-only test crate reads the test suite's own variables.
            if dir.join("src").is_dir() && !dir.ends_with("prox-test") {
                rust_files(&dir.join("src"), &mut files);
            }
        }
        assert!(files.len() > 50, "found only {} source files", files.len());
        let listed: BTreeSet<&str> = ENVIRONMENT.iter().map(|(name, _)| *name).collect();
        let mut unlisted = BTreeSet::new();
        for file in &files {
            let source = std::fs::read_to_string(file).expect("a source file");
            // This file's own examples and test are not reads.
            if file.ends_with("prox/src/env_vars.rs") {
                continue;
            }
            for name in names_read_in(&source) {
                if !listed.contains(name.as_str()) {
                    unlisted.insert(format!("{name} ({})", file.display()));
                }
            }
        }
        assert!(
            unlisted.is_empty(),
            "read but not listed in env_vars.rs: {unlisted:?}"
        );
    }

    #[test]
    fn help_lists_every_variable_once() {
        let help = super::help();
        for (name, _) in ENVIRONMENT {
            assert_eq!(
                help.matches(&format!("  {name} ")).count(),
                1,
                "{name} in\n{help}"
            );
        }
        assert!(help.lines().all(|line| line.len() <= 100), "{help}");
    }
}
