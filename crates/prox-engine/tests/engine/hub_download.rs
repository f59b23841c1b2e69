//! The model download `prox refine --preset web` and `prox generate --model org/name` make
//! when the model is not in the cache, run against a stand-in hub on loopback that serves the
//! tiny fixture model under the web refiner's name, found through `HF_ENDPOINT`.
//!
//! It sets process-wide environment variables (`HF_ENDPOINT`, `HF_HUB_CACHE`, `HF_HUB_OFFLINE`,
//! the token's): only [`resolve_model`] reads them, and no other test of this binary calls it
//! (the cache tests in `hub.rs` name their cache through `resolve_model_in`).

use prox_engine::{resolve_model, LoadOptions, Model};
use prox_test::hub::{HubRepo, StandInHub};

const NAME: &str = "gair-prox/web-doc-refining-lm";

#[test]
fn a_model_absent_from_the_cache_is_downloaded_from_hf_endpoint_and_loads() {
    let hub = StandInHub::start();
    let fixture = prox_test::fixture("tiny-llama");
    let repo = HubRepo::model(NAME)
        .folder(&fixture, |name| {
            name.ends_with(".safetensors") || name.ends_with(".model")
        })
        .unwrap()
        .file("README.md", "# web-doc-refining-lm\n")
        .lfs_file("pytorch_model.bin", vec![0u8; 1000]);
    let commit = hub.add(repo.clone());
    let cache = tempfile::tempdir().unwrap();
    std::env::set_var("HF_ENDPOINT", hub.endpoint());
    std::env::set_var("HF_HUB_CACHE", cache.path());
    std::env::remove_var("HF_HUB_OFFLINE");
    std::env::remove_var("HF_TOKEN");
    std::env::remove_var("HUGGING_FACE_HUB_TOKEN");
    std::env::set_var("HF_TOKEN_PATH", cache.path().join("no-token"));

    let path = resolve_model(NAME, None).unwrap();

    let snapshot = cache
        .path()
        .join("models--gair-prox--web-doc-refining-lm/snapshots")
        .join(&commit);
    assert_eq!(path, snapshot);
    let mut fetched: Vec<String> = std::fs::read_dir(&snapshot)
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .collect();
    fetched.sort();
    assert_eq!(
        fetched,
        [
            "config.json",
            "generation_config.json",
            "golden.json",
            "model.safetensors",
            "special_tokens_map.json",
            "tokenizer.json",
            "tokenizer.model",
            "tokenizer_config.json"
        ],
        "what loading needs, and not README.md or pytorch_model.bin"
    );
    for name in &fetched {
        assert_eq!(
            std::fs::read(snapshot.join(name)).unwrap(),
            std::fs::read(fixture.join(name)).unwrap(),
            "{name}"
        );
    }
    let model = Model::load(&path, &LoadOptions::default()).unwrap();
    assert_eq!(model.llama.config().hidden_size, 64);
    assert!(model.tokenizer.is_some());

    // The second time the cache answers, without a request.
    hub.clear_log();
    assert_eq!(resolve_model(NAME, None).unwrap(), snapshot);
    assert!(hub.requests().is_empty(), "{:#?}", hub.requests());

    // Offline and absent: an error naming the cache, and no request.
    std::env::set_var("HF_HUB_OFFLINE", "1");
    let error = resolve_model("gair-prox/web-chunk-refining-lm", None).unwrap_err();
    assert!(
        error
            .to_string()
            .contains("models--gair-prox--web-chunk-refining-lm"),
        "{error}"
    );
    assert!(hub.requests().is_empty());
}
