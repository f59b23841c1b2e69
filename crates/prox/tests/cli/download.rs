//! `prox download`, and `prox refine --preset web`'s model download, end to end: the real
//! binary against a stand-in hub on loopback (`prox_test::hub`) named by `HF_ENDPOINT`.

use std::path::Path;

use prox_test::hub::{HubRepo, StandInHub};

use crate::support::{prox_without_hub_env, read_json, web_sample, TestCommand};

/// `prox ARGS` with the hub at `hub`, the cache in `home`, and no token.
fn prox(args: &[&str], hub: &StandInHub, home: &Path) -> TestCommand {
    prox_without_hub_env(args)
        .env("HF_ENDPOINT", hub.endpoint())
        .env("HF_HOME", home)
}

fn dataset() -> HubRepo {
    HubRepo::dataset("gair-prox/RedPajama-pro")
        .file("README.md", "# RedPajama-pro\n")
        .lfs_file("data/part-0.parquet", vec![7u8; 40_000])
        .lfs_file("data/part-1.parquet", vec![9u8; 30_000])
}

#[test]
fn download_fills_the_cache_prints_the_snapshot_and_fetches_nothing_the_second_time() {
    let hub = StandInHub::start();
    let commit = hub.add(dataset());
    let home = tempfile::tempdir().unwrap();
    let args = [
        "download",
        "gair-prox/RedPajama-pro",
        "--repo-type",
        "dataset",
        "--include",
        "*.parquet",
    ];

    let stdout = prox(&args, &hub, home.path()).success();

    let snapshot = home
        .path()
        .join("hub/datasets--gair-prox--RedPajama-pro/snapshots")
        .join(&commit);
    assert_eq!(stdout.trim(), snapshot.display().to_string());
    assert_eq!(
        std::fs::read(snapshot.join("data/part-0.parquet")).unwrap(),
        vec![7u8; 40_000]
    );
    assert!(!snapshot.join("README.md").exists());
    hub.clear_log();

    prox(&args, &hub, home.path()).success();
    assert!(hub.transfers().is_empty(), "{:#?}", hub.transfers());
}

#[test]
fn a_gated_repository_needs_hf_token_and_the_error_says_so() {
    let hub = StandInHub::start();
    hub.add(dataset().gated("hf_secret"));
    let home = tempfile::tempdir().unwrap();
    let local = home.path().join("plain");
    let local_arg = local.display().to_string();
    let args = [
        "download",
        "gair-prox/RedPajama-pro",
        "--repo-type",
        "dataset",
        "--local-dir",
        &local_arg,
    ];

    let stderr = prox(&args, &hub, home.path()).exit_code(2);
    assert!(stderr.contains("HTTP 401"), "{stderr}");
    assert!(
        stderr.contains("hint: the repository is gated or private"),
        "{stderr}"
    );
    assert!(stderr.contains("set HF_TOKEN"), "{stderr}");

    let stdout = prox(&args, &hub, home.path())
        .env("HF_TOKEN", "hf_secret")
        .success();
    assert_eq!(stdout.trim(), local.display().to_string());
    assert_eq!(
        std::fs::read(local.join("data/part-1.parquet")).unwrap(),
        vec![9u8; 30_000]
    );
}

/// The web preset names two models on the hub; the stand-in serves the tiny fixture model
/// under both names, so that the download `prox refine --preset web` makes on a fresh machine
/// runs, then the refinement with what it fetched.
#[test]
fn refine_preset_web_downloads_its_models_from_the_hub_and_runs() {
    let hub = StandInHub::start();
    let fixture = prox_test::fixture("tiny-llama");
    let lfs = |name: &str| name.ends_with(".safetensors") || name.ends_with(".model");
    let mut commits = Vec::new();
    for name in [
        "gair-prox/web-doc-refining-lm",
        "gair-prox/web-chunk-refining-lm",
    ] {
        commits.push(hub.add(HubRepo::model(name).folder(&fixture, lfs).unwrap()));
    }
    let home = tempfile::tempdir().unwrap();
    let run = home.path().join("run");
    let input = web_sample();
    let args = [
        "refine",
        "--preset",
        "web",
        "--input",
        input.to_str().unwrap(),
        "--output",
        run.to_str().unwrap(),
        "--text-field",
        "raw_content",
        "--limit",
        "2",
        "--doc-max-new-tokens",
        "8",
        "--chunk-max-new-tokens",
        "12",
    ];

    prox(&args, &hub, home.path()).success();

    for (name, commit) in [
        ("models--gair-prox--web-doc-refining-lm", &commits[0]),
        ("models--gair-prox--web-chunk-refining-lm", &commits[1]),
    ] {
        let snapshot = home
            .path()
            .join("hub")
            .join(name)
            .join("snapshots")
            .join(commit);
        assert_eq!(
            std::fs::read(snapshot.join("model.safetensors")).unwrap(),
            std::fs::read(fixture.join("model.safetensors")).unwrap(),
            "{name}"
        );
    }
    let stats = read_json(run.join("stats.json"));
    let documents = &stats["documents"];
    assert_eq!(documents["input"], 2, "{stats:#}");
    assert_eq!(
        documents["input"].as_u64(),
        Some(
            documents["output"].as_u64().unwrap()
                + documents["dropped"].as_u64().unwrap()
                + documents["failed"].as_u64().unwrap()
        ),
        "{stats:#}"
    );
}
