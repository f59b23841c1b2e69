//! `Hub::from_env` reads the variables `huggingface_hub` reads. The test sets process-wide
//! environment variables, yet shares the binary with the download tests: only `Hub::from_env`
//! reads them, which no other test calls (they build their `Hub` with an explicit endpoint and
//! cache), and no other test sets any.

use prox_hub::{DownloadRequest, Hub, NoReporter, RepoType};
use prox_test::hub::{HubRepo, StandInHub};

#[test]
fn hf_endpoint_hf_token_and_the_cache_variables_are_honoured() {
    let hub = StandInHub::start();
    let commit = hub.add(
        HubRepo::model("org/private")
            .file("config.json", "{}")
            .gated("hf_from_env"),
    );
    let home = tempfile::tempdir().unwrap();
    for name in [
        "HF_HUB_CACHE",
        "HUGGINGFACE_HUB_CACHE",
        "HF_TOKEN",
        "HUGGING_FACE_HUB_TOKEN",
        "HF_TOKEN_PATH",
    ] {
        std::env::remove_var(name);
    }
    std::env::set_var("HF_ENDPOINT", format!("{}/", hub.endpoint()));
    std::env::set_var("HF_HOME", home.path());
    let request = DownloadRequest::new("org/private", RepoType::Model);

    // `huggingface-cli login` writes the token to $HF_HOME/token.
    std::fs::write(home.path().join("token"), "hf_from_env\n").unwrap();
    let from_file = Hub::from_env();
    assert_eq!(from_file.endpoint(), hub.endpoint());
    assert_eq!(from_file.cache_dir(), home.path().join("hub"));
    let download = from_file.download(&request, &NoReporter).unwrap();
    assert_eq!(
        download.folder,
        home.path()
            .join("hub/models--org--private/snapshots")
            .join(&commit)
    );

    // HF_TOKEN wins over the file; HF_HUB_CACHE over HF_HOME.
    std::env::set_var("HF_TOKEN", "hf_other");
    std::env::set_var("HF_HUB_CACHE", home.path().join("elsewhere"));
    let from_vars = Hub::from_env();
    assert_eq!(from_vars.cache_dir(), home.path().join("elsewhere"));
    let error = from_vars.download(&request, &NoReporter).unwrap_err();
    assert!(error.to_string().contains("HTTP 403"), "{error}");
    let sent: Vec<_> = hub
        .requests()
        .into_iter()
        .filter_map(|r| r.authorization)
        .collect();
    assert!(sent.contains(&"Bearer hf_from_env".to_owned()), "{sent:?}");
    assert!(sent.contains(&"Bearer hf_other".to_owned()), "{sent:?}");
}
