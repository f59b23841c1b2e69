//! `prox train` end to end: the real binary trains the tiny fixture model on the packed
//! fixture, writes checkpoints that `prox generate` loads, a metrics log and a loss curve,
//! and refuses to overwrite a run unless resuming.

use crate::support::{path_str, read_rows, tiny_llama, TestCommand};

/// `prox ARGS` logging at the info level, where training reports its steps.
fn prox(args: &[&str]) -> TestCommand {
    crate::support::prox(args).env("PROX_LOG", "info")
}

#[test]
fn train_checkpoints_a_model_that_generate_loads_and_resume_continues() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("run");
    let packed = prox_test::fixture("packed");
    let model = tiny_llama();
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
    let run = |extra: &[&str]| prox(&common).args(extra);
    let stderr = run(&["--max-steps", "3"]).success_stderr();
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
    let refused = run(&["--max-steps", "3"]).exit_code(2);
    assert!(refused.contains("--resume"), "{refused}");

    // A changed recipe cannot resume; the same one continues where the checkpoint ends.
    let changed = run(&["--max-steps", "3", "--resume", "--seed", "7"]).exit_code(2);
    assert!(changed.contains("seed"), "{changed}");
    let stderr = run(&["--max-steps", "3", "--resume"]).success_stderr();
    assert!(stderr.contains("resuming from"), "{stderr}");

    let metrics = read_rows(out.join("metrics.jsonl"));
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
    prox(&[
        "generate",
        "--model",
        path_str(&step3),
        "--input",
        path_str(&prompts),
    ])
    .args(["--output", path_str(&generated), "--max-new-tokens", "4"])
    .success();
    assert_eq!(read_rows(&generated)[0]["generated_tokens"], 4);
}

#[test]
fn a_sequence_longer_than_the_context_is_refused_before_training() {
    let dir = tempfile::tempdir().unwrap();
    let packed = prox_test::fixture("packed");
    let run = dir.path().join("run");
    let stderr = prox(&[
        "train",
        "--data",
        path_str(&packed),
        "--out",
        path_str(&run),
    ])
    .args(["--init-from", path_str(&tiny_llama())])
    .args(["--seq-len", "4096", "--max-steps", "1"])
    .exit_code(2);
    assert!(
        stderr.contains("exceeds the model's context of 2048"),
        "{stderr}"
    );
    assert!(!dir.path().join("run/metrics.jsonl").exists());
}

#[test]
fn a_config_file_gives_its_data_entries_and_an_unknown_key_is_refused_naming_it() {
    let dir = tempfile::tempdir().unwrap();
    let packed = prox_test::fixture("packed");
    let config = dir.path().join("train.yaml");
    let run = dir.path().join("run");
    let train = || {
        prox(&[
            "train",
            "--config",
            path_str(&config),
            "--out",
            path_str(&run),
        ])
    };
    // The entry's prefix reaches the reader: no file of the fixture starts with it.
    std::fs::write(
        &config,
        format!(
            "data: [{{dir: '{}', prefix: nomatch_, weight: 2}}]\nmax_steps: 1\n",
            packed.display()
        ),
    )
    .unwrap();
    let stderr = train().exit_code(2);
    assert!(stderr.contains("nomatch_*.bin"), "{stderr}");

    std::fs::write(&config, "learning_rate: 1\n").unwrap();
    let stderr = train().args(["--data", path_str(&packed)]).exit_code(2);
    assert!(
        stderr.contains("train.yaml") && stderr.contains("--learning-rate"),
        "{stderr}"
    );
    assert!(!run.join("metrics.jsonl").exists());
}
