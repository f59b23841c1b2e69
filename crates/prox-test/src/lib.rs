//! Test support shared by the ProX-rs crates: locating the golden fixtures produced by the
//! reference implementation, reading their JSON-lines files, and (feature `hub`) a stand-in
//! for the Hugging Face hub on loopback.
//! [`command::TestCommand`] runs a binary under test and explains a run that ends otherwise.
//!
//! The fixtures live outside the repository (`../shared/fixtures` from the workspace root);
//! `PROX_FIXTURES` overrides the location.

use std::path::{Path, PathBuf};

pub mod command;
pub mod fetched;
#[cfg(feature = "hub")]
pub mod hub;
pub mod json;
pub mod mismatch;

/// The environment variable that overrides where the golden fixtures are.
pub const FIXTURES_ENV: &str = "PROX_FIXTURES";

/// The fixtures folder: `$PROX_FIXTURES`, or `../shared/fixtures` beside the workspace.
///
/// Panics with a message that says how to fix it when the folder does not exist: a test that
/// cannot find its golden data must fail loudly, never pass by skipping.
pub fn fixtures_dir() -> PathBuf {
    let dir = match std::env::var_os(FIXTURES_ENV) {
        Some(dir) => PathBuf::from(dir),
        None => workspace_root().join("../shared/fixtures"),
    };
    assert!(
        dir.is_dir(),
        "golden fixtures not found at {}\nhint: set {FIXTURES_ENV} to the folder holding the ProX reference fixtures",
        dir.display()
    );
    dir
}

/// A file or folder inside the fixtures folder, which must exist.
pub fn fixture(relative: impl AsRef<Path>) -> PathBuf {
    let path = fixtures_dir().join(relative);
    assert!(path.exists(), "fixture missing: {}", path.display());
    path
}

/// The root of this Cargo workspace: the nearest folder with a `Cargo.lock` above the crate
/// under test.
pub fn workspace_root() -> PathBuf {
    // Cargo names the tested crate's folder at run time too. That one is preferred over this
    // crate's folder at build time: a build reused from another checkout of the workspace
    // (one CARGO_TARGET_DIR shared by two clones) would point into that other checkout.
    let built_in = Path::new(env!("CARGO_MANIFEST_DIR"));
    let start =
        std::env::var_os("CARGO_MANIFEST_DIR").map_or_else(|| built_in.to_owned(), PathBuf::from);
    start
        .ancestors()
        .find(|dir| dir.join("Cargo.lock").is_file())
        .map_or_else(|| built_in.join("../.."), Path::to_path_buf)
}

/// Every line of a JSON-lines fixture, parsed, with its 1-based line number.
pub fn read_jsonl(path: impl AsRef<Path>) -> Vec<(usize, serde_json::Value)> {
    let path = path.as_ref();
    let text = std::fs::read_to_string(path)
        .unwrap_or_else(|e| panic!("cannot read {}: {e}", path.display()));
    text.lines()
        .enumerate()
        .filter(|(_, line)| !line.trim().is_empty())
        .map(|(i, line)| {
            let value = serde_json::from_str(line)
                .unwrap_or_else(|e| panic!("{}:{}: bad JSON: {e}", path.display(), i + 1));
            (i + 1, value)
        })
        .collect()
}

/// `n` deterministic values in [-1, 1) from `seed` (xorshift64*), for test inputs that must
/// be the same on every run and machine.
pub fn pseudo_random(n: usize, seed: u64) -> Vec<f32> {
    let mut state = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
    (0..n)
        .map(|_| {
            state ^= state >> 12;
            state ^= state << 25;
            state ^= state >> 27;
            let r = state.wrapping_mul(0x2545_F491_4F6C_DD1D) >> 40;
            r as f32 / (1u64 << 24) as f32 * 2.0 - 1.0
        })
        .collect()
}
