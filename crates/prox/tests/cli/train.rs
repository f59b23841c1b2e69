//! `prox train` end to end: the real binary trains the tiny fixture model on the packed
//! fixture, writes checkpoints that `prox generate` loads, a metrics log and a loss curve,
//! and refuses to overwrite a run unless resuming.

#![allow(clippy::unwrap_used)] // test helpers: a failure is a test failure

use std::path::Path;
use std::process::{Command, Output};

use serde_json::Value;

fn prox(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_prox"))
        .args(args)
        .env("PROX_LOG", "info")
        .output()
        .expect("the prox binary runs")
}

fn lines(path: &Path) -> Vec<Value> {
    std::fs::read_to_string(path)
        .unwrap_or_else(|e| panic!("{}: {e}", path.display()))
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect()
}

#[test]
fn train_checkpoints_a_model_that_generate_loads_and_resume_continues() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("run");
    let packed = prox_test::fixture("packed");
    let model = prox_test::fixture("tiny-llama");
    let config = model.join("config.json");
    let common = [
        "train",
        "--data",
        packed.to_str().unwrap(),
        "--val-data",
        packed.to_str().unwrap(),
        "--out",
        out.to_str().unwrap(),
        "--model-config",
        config.to_str().unwrap(),
        "--tokenizer",
        model.to_str().unwrap(),
        "--seq-len",
        "64",
        "--micro-batch",
        "2",
        "--global-batch",
        "4",
        "--warmup",
        "2",
        "--lr",
        "3e-3",
        "--save-interval",
        "3",
        "--eval-interval",
        "3",
        "--eval-iters",
        "2",
    ];
    let run = |extra: &[&str]| {
        let args: Vec<&str> = common.iter().chain(extra).copied().collect();
        prox(&args)
    };
    let result = run(&["--max-steps", "3"]);
    let stderr = String::from_utf8_lossy(&result.stderr);
    assert_eq!(result.status.code(), Some(0), "{stderr}");
    assert!(
        stderr.contains("step 3/3") && stderr.contains("tokens/s"),
        "{stderr}"
    );

    let step3 = out.join("checkpoints/step-00000003");
    for file in [
        "config.json",
        "model.safetensors",
        "tokenizer.json",
        "tokenizer_config.json",
        "optimizer.safetensors",
        "trainer_state.json",
    ] {
        assert!(step3.join(file).is_file(), "{file}");
    }
    let svg = std::fs::read_to_string(out.join("loss.svg")).unwrap();
    assert!(svg.starts_with("<svg"));

    // Without --resume a run folder with checkpoints is left alone.
    let refused = run(&["--max-steps", "3"]);
    assert_eq!(refused.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&refused.stderr).contains("--resume"));

    // A changed recipe cannot resume; the same one continues where the checkpoint ends.
    let changed = run(&["--max-steps", "3", "--resume", "--seed", "7"]);
    assert_eq!(changed.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&changed.stderr).contains("seed"));
    let resumed = run(&["--max-steps", "3", "--resume"]);
    let stderr = String::from_utf8_lossy(&resumed.stderr);
    assert_eq!(resumed.status.code(), Some(0), "{stderr}");
    assert!(stderr.contains("resuming from"), "{stderr}");

    let metrics = lines(&out.join("metrics.jsonl"));
    let steps: Vec<u64> = metrics
        .iter()
        .filter(|m| m.get("loss").is_some())
        .map(|m| m["step"].as_u64().unwrap())
        .collect();
    assert_eq!(steps, [1, 2, 3]);
    for m in metrics.iter().filter(|m| m.get("loss").is_some()) {
        for key in ["lr", "grad_norm", "tokens", "tokens_per_s", "eta_s"] {
            assert!(m[key].is_number(), "{key} in {m}");
        }
    }
    assert_eq!(metrics[0]["lr"], 0.0, "warm-up starts at zero");
    assert!(metrics.iter().any(|m| m.get("val_loss").is_some()));

    // The checkpoint is a Hugging Face folder the engine serves.
    let prompts = dir.path().join("prompts.jsonl");
    std::fs::write(&prompts, "{\"prompt\": \"The refined corpus\"}\n").unwrap();
    let generated = dir.path().join("generated.jsonl");
    let result = prox(&[
        "generate",
        "--model",
        step3.to_str().unwrap(),
        "--input",
        prompts.to_str().unwrap(),
        "--output",
        generated.to_str().unwrap(),
        "--max-new-tokens",
        "4",
    ]);
    assert_eq!(
        result.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&result.stderr)
    );
    assert_eq!(lines(&generated)[0]["generated_tokens"], 4);
}

#[test]
fn a_sequence_longer_than_the_context_is_refused_before_training() {
    let dir = tempfile::tempdir().unwrap();
    let packed = prox_test::fixture("packed");
    let model = prox_test::fixture("tiny-llama");
    let result = prox(&[
        "train",
        "--data",
        packed.to_str().unwrap(),
        "--out",
        dir.path().join("run").to_str().unwrap(),
        "--init-from",
        model.to_str().unwrap(),
        "--seq-len",
        "4096",
        "--max-steps",
        "1",
    ]);
    assert_eq!(result.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&result.stderr);
    assert!(
        stderr.contains("exceeds the model's context of 2048"),
        "{stderr}"
    );
    assert!(!dir.path().join("run/metrics.jsonl").exists());
}
