//! Hub ids resolved in a Hugging Face cache laid out as `huggingface_hub` writes it, built
//! from the tiny fixture model in a temporary folder.

use std::path::{Path, PathBuf};

use prox_engine::{resolve_model_in, Error, LoadOptions, Model};

const MAIN: &str = "0123456789abcdef0123456789abcdef01234567";
const OLD: &str = "fedcba9876543210fedcba9876543210fedcba98";

/// `models--gair-prox--tiny/` with `refs/main` → `MAIN`, a tag `v1` → `OLD`, and both
/// snapshots holding the fixture's files (as links, like the cache's links to `blobs/`).
fn cache_with_tiny_llama() -> (tempfile::TempDir, PathBuf) {
    let cache = tempfile::tempdir().unwrap();
    let repo = cache.path().join("models--gair-prox--tiny");
    std::fs::create_dir_all(repo.join("refs")).unwrap();
    std::fs::write(repo.join("refs/main"), MAIN).unwrap();
    std::fs::write(repo.join("refs/v1"), format!("{OLD}\n")).unwrap();
    let fixture = prox_test::fixture("tiny-llama");
    for commit in [MAIN, OLD] {
        let snapshot = repo.join("snapshots").join(commit);
        std::fs::create_dir_all(&snapshot).unwrap();
        for name in [
            "config.json",
            "model.safetensors",
            "tokenizer.json",
            "tokenizer_config.json",
        ] {
            link(&fixture.join(name), &snapshot.join(name));
        }
    }
    (cache, repo)
}

#[cfg(unix)]
fn link(from: &Path, to: &Path) {
    std::os::unix::fs::symlink(from, to).unwrap();
}

#[cfg(not(unix))]
fn link(from: &Path, to: &Path) {
    std::fs::copy(from, to).unwrap();
}

#[test]
fn a_hub_id_resolves_to_the_snapshot_refs_main_names() {
    let (cache, repo) = cache_with_tiny_llama();
    let path = resolve_model_in("gair-prox/tiny", None, cache.path()).unwrap();
    assert_eq!(path, repo.join("snapshots").join(MAIN));
    let model = Model::load(&path, &LoadOptions::default()).unwrap();
    assert_eq!(model.llama.config().hidden_size, 64);
    assert!(model.tokenizer.is_some());
}

#[test]
fn a_revision_is_a_ref_name_or_a_commit() {
    let (cache, repo) = cache_with_tiny_llama();
    for revision in ["v1", OLD] {
        let path = resolve_model_in("gair-prox/tiny", Some(revision), cache.path()).unwrap();
        assert_eq!(path, repo.join("snapshots").join(OLD), "{revision}");
    }
    let main = resolve_model_in("gair-prox/tiny", Some("main"), cache.path()).unwrap();
    assert_eq!(main, repo.join("snapshots").join(MAIN));
}

#[test]
fn a_snapshot_with_one_gguf_file_resolves_to_the_file() {
    let cache = tempfile::tempdir().unwrap();
    let snapshot = cache.path().join("models--org--quant/snapshots").join(MAIN);
    std::fs::create_dir_all(&snapshot).unwrap();
    std::fs::create_dir_all(cache.path().join("models--org--quant/refs")).unwrap();
    std::fs::write(cache.path().join("models--org--quant/refs/main"), MAIN).unwrap();
    std::fs::write(snapshot.join("model.Q8_0.gguf"), b"").unwrap();
    let path = resolve_model_in("org/quant", None, cache.path()).unwrap();
    assert_eq!(path, snapshot.join("model.Q8_0.gguf"));

    std::fs::write(snapshot.join("model.Q4_K_M.gguf"), b"").unwrap();
    let error = resolve_model_in("org/quant", None, cache.path()).unwrap_err();
    let text = error.to_string();
    assert!(
        text.contains("model.Q4_K_M.gguf, model.Q8_0.gguf"),
        "{text}"
    );
}

#[test]
fn a_local_path_wins_over_the_cache() {
    let fixture = prox_test::fixture("tiny-llama");
    let name = fixture.to_str().unwrap();
    let path = resolve_model_in(name, None, Path::new("/nonexistent")).unwrap();
    assert_eq!(path, fixture);
}

#[test]
fn an_absent_model_names_the_cache_path_and_how_to_get_it() {
    let (cache, repo) = cache_with_tiny_llama();
    let error = resolve_model_in("gair-prox/web-doc-refining-lm", None, cache.path()).unwrap_err();
    assert!(matches!(error, Error::NotInHubCache { .. }), "{error:?}");
    let text = error.to_string();
    let looked_in = cache.path().join("models--gair-prox--web-doc-refining-lm");
    assert!(text.contains(&looked_in.display().to_string()), "{text}");
    assert!(
        text.contains("run `prox download gair-prox/web-doc-refining-lm`")
            && text.contains("`huggingface-cli download gair-prox/web-doc-refining-lm`"),
        "{text}"
    );

    // A known repository without the revision asked for names the missing ref.
    let error = resolve_model_in("gair-prox/tiny", Some("v2"), cache.path()).unwrap_err();
    let text = error.to_string();
    assert!(
        text.contains(&repo.join("refs/v2").display().to_string()),
        "{text}"
    );
    assert!(text.contains("revision `v2`"), "{text}");
}
