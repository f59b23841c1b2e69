//! Golden: 872 recorded TinyLlama completions (`fixtures/math-eval/answers.jsonl`) with the
//! harness's extracted `pred` and its `score`; every one must match.

use prox_math::{grade_row, predict, python, Dataset};
use prox_test::mismatch::assert_none;
use prox_test::{fixture, read_jsonl};
use serde_json::Value;

fn rows() -> Vec<(usize, serde_json::Map<String, Value>)> {
    let rows = read_jsonl(fixture("math-eval/answers.jsonl"));
    assert_eq!(rows.len(), 872);
    rows.into_iter()
        .map(|(line, v)| match v {
            Value::Object(map) => (line, map),
            other => panic!("line {line}: not an object: {other}"),
        })
        .collect()
}

#[test]
fn every_recorded_prediction_is_extracted_exactly() {
    let mut mismatches = Vec::new();
    for (line, row) in rows() {
        let dataset = Dataset::from_name(row["dataset"].as_str().expect("dataset")).expect("known");
        let output = row["output"].as_str().expect("output is a string");
        let ours = predict(python::strip(output), dataset);
        let want = row["pred"].as_str().map(str::to_owned);
        if ours != want {
            mismatches.push(format!(
                "line {line} ({dataset} idx {}): {ours:?} != {want:?}",
                row["idx"]
            ));
        }
    }
    assert_none(&mismatches, 872, "answers");
}

#[test]
fn every_recorded_score_is_reproduced_by_grading_the_row() {
    let mut mismatches = Vec::new();
    for (line, mut row) in rows() {
        let want_pred = row["pred"].clone();
        let want = row["score"].as_bool().expect("score is a bool");
        grade_row(&mut row).unwrap_or_else(|e| panic!("line {line}: {e}"));
        if row["pred"] != want_pred || row["score"] != Value::Bool(want) {
            mismatches.push(format!(
                "line {line} ({} idx {}): pred {} score {} != {want_pred} {want} (gt {})",
                row["dataset"], row["idx"], row["pred"], row["score"], row["gt"]
            ));
        }
    }
    assert_none(&mismatches, 872, "answers");
}
