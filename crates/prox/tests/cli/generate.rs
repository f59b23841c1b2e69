//! `prox generate` end to end: the real binary on the tiny fixture model, against the
//! reference's greedy tokens (`fixtures/tiny-llama/golden.json`).

use std::path::Path;

use serde_json::{json, Value};

use crate::support::{
    path_str, prox_without_hub_env, read_rows, tiny_llama, tiny_llama_golden_cases as golden_cases,
    TestCommand,
};

/// `prox generate` of the prompts in `input` into `output`, with `model`, and none of the
/// caller's Hugging Face settings.
fn generate(model: &str, input: &str, output: &str) -> TestCommand {
    prox_without_hub_env(&["generate", "--model", model])
        .args(["--input", input, "--output", output])
}

/// [`generate`] with the tiny model.
fn generate_tiny(input: &str, output: &str) -> TestCommand {
    generate(path_str(&tiny_llama()), input, output)
}

/// The ids a row generated.
fn generated_ids(row: &Value) -> Vec<u64> {
    row["generated_ids"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_u64().unwrap())
        .collect()
}

/// Reference tokens up to the first step whose margin is below 1e-3.
fn decisive_prefix(case: &Value) -> Vec<u64> {
    let margins = case["greedy_step_margins"].as_array().unwrap();
    let n = margins
        .iter()
        .position(|m| m.as_f64().unwrap() < 1e-3)
        .unwrap_or(margins.len());
    case["greedy_new_ids"].as_array().unwrap()[..n]
        .iter()
        .map(|v| v.as_u64().unwrap())
        .collect()
}

#[test]
fn generate_serves_text_and_id_prompts_and_reports_bad_lines() {
    let dir = tempfile::tempdir().unwrap();
    let cases = golden_cases();
    let input = dir.path().join("prompts.jsonl");
    let mut lines = vec![
        // The prompt text starts with `<s>`: tokenized with the BOS the engine adds, as vLLM
        // would, the model sees two BOS tokens; the ids form gives the reference's ids.
        json!({"id": "ids-0", "prompt_ids": cases[0]["prompt_ids"]}).to_string(),
        json!({"id": "ids-1", "prompt_ids": cases[1]["prompt_ids"]}).to_string(),
        json!({"id": "text", "prompt": "Hello world"}).to_string(),
        json!({"id": "neither"}).to_string(),
        "{not json".to_owned(),
        json!({"id": "bad-ids", "prompt_ids": [1, -5]}).to_string(),
        json!({"id": "ids-2", "prompt_ids": cases[2]["prompt_ids"]}).to_string(),
    ];
    lines.push(String::new());
    std::fs::write(&input, lines.join("\n")).unwrap();
    let output = dir.path().join("out.jsonl");
    generate_tiny(path_str(&input), path_str(&output))
        .args(["--max-new-tokens", "24", "--batch-size", "2"])
        .exit_code(1);

    let rows = read_rows(&output);
    let ids: Vec<&str> = rows.iter().map(|r| r["id"].as_str().unwrap()).collect();
    assert_eq!(ids, ["ids-0", "ids-1", "text", "ids-2"]);
    for (row, case) in [
        (&rows[0], &cases[0]),
        (&rows[1], &cases[1]),
        (&rows[3], &cases[2]),
    ] {
        let generated = generated_ids(row);
        let expected = decisive_prefix(case);
        assert_eq!(generated[..expected.len()], expected[..], "{}", row["id"]);
        assert_eq!(row["finish_reason"], "length");
        assert_eq!(row["generated_tokens"], 24);
        assert_eq!(
            row["prompt_tokens"],
            case["prompt_ids"].as_array().unwrap().len()
        );
        assert!(row["generated_text"].is_string());
    }
    // "Hello world" with the BOS added: <s> ▁Hello ▁world.
    assert_eq!(rows[2]["prompt_tokens"], 3);

    let failures = read_rows(dir.path().join("out.failures.jsonl"));
    let lines: Vec<u64> = failures
        .iter()
        .map(|f| f["line"].as_u64().unwrap())
        .collect();
    assert_eq!(lines, [4, 5, 6]);
    assert!(failures[0]["error"].as_str().unwrap().contains("neither"));
    assert!(failures[2]["error"]
        .as_str()
        .unwrap()
        .contains("prompt_ids"));
}

#[test]
fn a_missing_model_is_an_error_that_names_it() {
    let dir = tempfile::tempdir().unwrap();
    let input = dir.path().join("in.jsonl");
    std::fs::write(&input, "{\"prompt_ids\": [1]}\n").unwrap();
    let output = dir.path().join("out.jsonl");
    let stderr = generate("no/such/model", path_str(&input), path_str(&output)).exit_code(2);
    assert!(stderr.contains("no/such/model"), "{stderr}");
}

#[test]
fn an_unknown_kernel_setting_is_refused_before_any_work() {
    let dir = tempfile::tempdir().unwrap();
    let (input, output) = one_prompt(dir.path());
    for (variable, refusal) in [
        ("PROX_FLOAT_GEMM", "names no float GEMM path"),
        ("PROX_Q8_KERNEL", "names no Q8_0 kernel"),
    ] {
        let stderr = generate_tiny(&input, &output)
            .env(variable, "sse")
            .exit_code(2);
        assert!(
            stderr.contains(&format!("{variable}=\"sse\" {refusal}")),
            "{stderr}"
        );
        assert!(
            stderr.contains(&format!("hint: unset {variable}")),
            "{stderr}"
        );
        assert!(!Path::new(&output).exists(), "nothing is written");
    }
}

/// Writes the first golden prompt as an ids record; returns (input, output) paths.
fn one_prompt(dir: &Path) -> (String, String) {
    let input = dir.join("in.jsonl");
    let case = &golden_cases()[0];
    std::fs::write(
        &input,
        format!("{}\n", json!({"prompt_ids": case["prompt_ids"]})),
    )
    .unwrap();
    let output = dir.join("out.jsonl");
    (
        input.to_str().unwrap().to_owned(),
        output.to_str().unwrap().to_owned(),
    )
}

#[test]
fn a_hub_id_is_found_in_the_hugging_face_cache() {
    let dir = tempfile::tempdir().unwrap();
    let home = dir.path().join("hf");
    let commit = "0123456789abcdef0123456789abcdef01234567";
    let repo = home.join("hub/models--gair-prox--tiny-llama");
    let snapshot = repo.join("snapshots").join(commit);
    std::fs::create_dir_all(&snapshot).unwrap();
    std::fs::create_dir_all(repo.join("refs")).unwrap();
    std::fs::write(repo.join("refs/main"), commit).unwrap();
    let fixture = prox_test::fixture("tiny-llama");
    for name in [
        "config.json",
        "model.safetensors",
        "tokenizer.json",
        "tokenizer_config.json",
    ] {
        std::fs::copy(fixture.join(name), snapshot.join(name)).unwrap();
    }
    let (input, output) = one_prompt(dir.path());
    let cached = || {
        generate("gair-prox/tiny-llama", &input, &output)
            .args(["--max-new-tokens", "4"])
            .env("HF_HOME", &home)
    };
    cached().success();
    let expected = decisive_prefix(&golden_cases()[0]);
    let got = generated_ids(&read_rows(&output)[0]);
    let n = expected.len().min(4);
    assert_eq!(got[..n], expected[..n]);

    // With --revision set to a commit that is not there: the error names where it looked.
    let stderr = cached().args(["--revision", "v9"]).exit_code(2);
    assert!(
        stderr.contains(&repo.join("refs/v9").display().to_string()),
        "{stderr}"
    );
}

#[test]
fn an_uncached_hub_id_names_the_cache_and_says_how_to_download() {
    let dir = tempfile::tempdir().unwrap();
    let cache = dir.path().join("hub-cache");
    let (input, output) = one_prompt(dir.path());
    let stderr = generate("gair-prox/web-doc-refining-lm", &input, &output)
        .env("HF_HUB_CACHE", &cache)
        .env("HF_HUB_OFFLINE", "1")
        .exit_code(2);
    let looked_in = cache.join("models--gair-prox--web-doc-refining-lm");
    assert!(
        stderr.contains(&looked_in.display().to_string()),
        "{stderr}"
    );
    assert!(
        stderr.contains("huggingface-cli download gair-prox/web-doc-refining-lm"),
        "{stderr}"
    );
    assert!(stderr.contains("HF_HUB_OFFLINE=1"), "{stderr}");
}

#[test]
fn quantized_generation_runs_and_refuses_shapes_the_type_cannot_hold() {
    let dir = tempfile::tempdir().unwrap();
    let (input, output) = one_prompt(dir.path());
    let quantized = |quantize: &str| {
        generate_tiny(&input, &output).args(["--max-new-tokens", "8", "--quantize", quantize])
    };
    quantized("q8_0").success();
    let rows = read_rows(&output);
    assert_eq!(rows[0]["generated_tokens"], 8);

    // The tiny model's rows of 64 values do not fill a 256-value Q4_K block.
    let stderr = quantized("q4_k").exit_code(2);
    assert!(
        stderr.contains("not a multiple of the 256-value block"),
        "{stderr}"
    );
}

#[test]
fn the_device_flag_takes_cpu_and_refuses_what_this_build_cannot_run() {
    let dir = tempfile::tempdir().unwrap();
    let (input, output) = one_prompt(dir.path());
    let run = |extra: &[&str]| {
        generate_tiny(&input, &output)
            .args(["--max-new-tokens", "4"])
            .args(extra)
    };
    for extra in [
        &["--device", "cpu"][..],
        &["--device", "cpu", "--dtype", "f16"],
    ] {
        run(extra).success();
        assert_eq!(read_rows(&output)[0]["generated_tokens"], 4);
    }

    let stderr = run(&["--device", "gpu"]).exit_code(2);
    assert!(
        stderr.contains("expected `cpu`, `cuda` or `cuda:N`"),
        "{stderr}"
    );

    if !prox_engine::CUDA_BUILD {
        let stderr = run(&["--device", "cuda:1"]).exit_code(2);
        assert!(
            stderr.contains("built without the `cuda` feature; rebuild with `--features cuda`"),
            "{stderr}"
        );
    }
}
