//! `prox validate` end to end with the tiny fixture model: a table on stdout and the JSON
//! report, every line of every chunk counted, rows of the other stage skipped, and a row
//! that is not an example named by file and line.

#![allow(clippy::unwrap_used)] // test helpers: a failure is a test failure

use std::path::Path;
use std::process::{Command, Output};

use serde_json::{json, Value};

fn prox(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_prox"))
        .args(args)
        .env("PROX_LOG", "warn")
        .output()
        .unwrap()
}

fn write_rows(path: &Path, rows: &[Value]) {
    let text: String = rows.iter().map(|r| format!("{r}\n")).collect();
    std::fs::write(path, text).unwrap();
}

fn chunk_row(id: usize, first_line: usize, text: &str, target: &str) -> Value {
    let numbered: Vec<String> = text
        .split('\n')
        .enumerate()
        .map(|(i, line)| format!("[{:03}]{line}", first_line + i))
        .collect();
    json!({
        "id": format!("doc#{id}"), "stage": "chunk",
        "prompt": format!("<s>[INST] Clean this:\n{} [/INST]", numbered.join("\n")),
        "target": target, "text": text, "first_line": first_line,
        "lines": text.split('\n').count(),
    })
}

#[test]
fn validate_reports_line_wise_f1_over_every_chunk_line() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("heldout.jsonl");
    let rows = [
        chunk_row(
            0,
            0,
            "Home | About\nA real sentence here.",
            "remove_lines(start=0, end=0)",
        ),
        json!({"id": "d", "stage": "doc", "prompt": "<s>[INST] x [/INST]", "target": "drop_doc()"}),
        chunk_row(
            1,
            2,
            "More text.\nCopyright 2024\nLinks",
            "remove_lines(start=3, end=4)",
        ),
    ];
    write_rows(&data, &rows);
    let output = dir.path().join("validation.json");
    let model = prox_test::fixture("tiny-llama");
    let run = prox(&[
        "validate",
        "--stage",
        "chunk",
        "--model",
        model.to_str().unwrap(),
        "--data",
        data.to_str().unwrap(),
        "--output",
        output.to_str().unwrap(),
        "--max-new-tokens",
        "6",
    ]);
    assert!(run.status.success(), "{run:?}");
    let table = String::from_utf8(run.stdout).unwrap();
    assert!(table.contains("F1"), "{table}");
    assert!(table.contains("removed line"), "{table}");
    let report: Value = serde_json::from_str(&std::fs::read_to_string(&output).unwrap()).unwrap();
    assert_eq!(report["stage"], "chunk");
    assert_eq!(report["examples"], 2, "the document row is skipped");
    let counts = &report["counts"];
    let total: u64 = [
        "true_positives",
        "false_positives",
        "false_negatives",
        "true_negatives",
    ]
    .iter()
    .map(|k| counts[k].as_u64().unwrap())
    .sum();
    assert_eq!(total, 5, "two chunks of 2 and 3 lines: {report}");
    // The targets remove 3 of the 5 lines; whatever the random model wrote, its
    // predictions are scored against them.
    assert_eq!(
        counts["true_positives"].as_u64().unwrap() + counts["false_negatives"].as_u64().unwrap(),
        3
    );
    assert!(report["target_kept_token_ratio"].as_f64().unwrap() < 1.0);
}

#[test]
fn a_row_that_is_not_an_example_stops_validate_with_its_location() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("heldout.jsonl");
    write_rows(
        &data,
        &[
            json!({"id": "a", "stage": "doc", "prompt": "<s>[INST] x [/INST]", "target": "keep_doc()"}),
            json!({"id": "b", "stage": "doc", "prompt": "<s>[INST] y [/INST]"}),
        ],
    );
    let model = prox_test::fixture("tiny-llama");
    let run = prox(&[
        "validate",
        "--stage",
        "doc",
        "--model",
        model.to_str().unwrap(),
        "--data",
        data.to_str().unwrap(),
        "--output",
        dir.path().join("v.json").to_str().unwrap(),
    ]);
    assert_eq!(run.status.code(), Some(2), "{run:?}");
    let stderr = String::from_utf8(run.stderr).unwrap();
    assert!(stderr.contains("heldout.jsonl:2"), "{stderr}");
    assert!(stderr.contains("(id b)"), "{stderr}");
    assert!(stderr.contains("`target` is missing"), "{stderr}");
}
