//! `prox validate` end to end with the tiny fixture model: a table on stdout and the JSON
//! report, every line of every chunk counted, rows of the other stage skipped, and a row
//! that is not an example named by file and line.

use std::path::Path;

use serde_json::{json, Value};

use crate::support::{path_str, prox, read_json, tiny_llama, write_rows, TestCommand};

/// `prox validate` of the tiny model's `stage` programs on the examples in `data`, the report
/// written to `output`.
fn validate(stage: &str, data: &Path, output: &Path) -> TestCommand {
    let model = tiny_llama();
    prox(["validate", "--stage", stage, "--model", path_str(&model)]).args([
        "--data",
        path_str(data),
        "--output",
        path_str(output),
    ])
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
    let table = validate("chunk", &data, &output)
        .args(["--max-new-tokens", "6"])
        .success();
    assert!(table.contains("F1"), "{table}");
    assert!(table.contains("removed line"), "{table}");
    let report = read_json(&output);
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
    let stderr = validate("doc", &data, &dir.path().join("v.json")).exit_code(2);
    assert!(stderr.contains("heldout.jsonl:2"), "{stderr}");
    assert!(stderr.contains("(id b)"), "{stderr}");
    assert!(stderr.contains("`target` is missing"), "{stderr}");
}
