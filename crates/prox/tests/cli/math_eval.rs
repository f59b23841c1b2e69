//! `prox math-eval` end to end: the real binary on the fixture harness, the golden prompts and
//! answers, bad input, and `run` with the tiny fixture model (a random model: junk answers,
//! but the whole pipeline), resumed.

use std::collections::HashMap;
use std::path::Path;

use prox_test::{fixture, read_jsonl};
use serde_json::Value;

use crate::support::{path_str, prox, read_json, read_rows, tiny_llama, TestCommand};

const AVAILABLE: &str = "gsm8k,minerva_math,svamp,asdiv,mawps,mathqa,mmlu_stem,sat_math";
const SAMPLES: &str = "test_cot_-1_seed0_t0.0_s0_e-1.jsonl";
const METRICS: &str = "test_cot_-1_seed0_t0.0_s0_e-1_cot_metrics.json";

/// `prox math-eval SUBCOMMAND`, offline: a model is never fetched from the hub here.
fn math_eval(subcommand: &str) -> TestCommand {
    prox(["math-eval", subcommand]).env("HF_HUB_OFFLINE", "1")
}

/// `prox math-eval prompts` of the harness at `data` into `output`.
fn prompts(data: &str, output: &Path) -> TestCommand {
    math_eval("prompts").args(["--data", data, "--output", path_str(output)])
}

/// `prox math-eval grade` of `input` into `output`.
fn grade(input: &Path, output: &Path) -> TestCommand {
    math_eval("grade").args(["--input", path_str(input), "--output", path_str(output)])
}

fn text(path: &Path) -> String {
    std::fs::read_to_string(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

fn harness() -> String {
    fixture("math-eval/harness").display().to_string()
}

fn key(row: &Value) -> (String, i64) {
    (
        row["dataset"].as_str().unwrap().to_owned(),
        row["idx"].as_i64().unwrap(),
    )
}

#[test]
fn prompts_reproduces_every_golden_prompt_and_ground_truth() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("prompts.jsonl");
    prompts(&harness(), &out)
        .args(["--tasks", AVAILABLE])
        .success();
    let ours: HashMap<(String, i64), Value> =
        read_rows(&out).into_iter().map(|r| (key(&r), r)).collect();
    assert_eq!(
        ours.len(),
        1319 + 500 + 1000 + 2215 + 2065 + 1000 + 3018 + 32
    );
    let mut mismatches = Vec::new();
    for (line, want) in read_jsonl(fixture("math-eval/prompts.jsonl")) {
        let Some(row) = ours.get(&key(&want)) else {
            mismatches.push(format!("line {line}: {:?} missing", key(&want)));
            continue;
        };
        let fields: Vec<&String> = row.as_object().unwrap().keys().collect();
        assert_eq!(fields, ["dataset", "idx", "prompt", "gt_cot", "gt"]);
        for field in ["prompt", "gt_cot", "gt"] {
            if row[field] != want[field] {
                mismatches.push(format!("line {line}: {:?} {field} differs", key(&want)));
            }
        }
    }
    assert!(mismatches.is_empty(), "{}", mismatches.join("\n"));
}

#[test]
fn grade_reproduces_every_golden_prediction_and_score_and_keeps_other_fields() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("graded.jsonl");
    let golden = fixture("math-eval/answers.jsonl");
    let stdout = grade(&golden, &out).success();
    let ours = read_rows(&out);
    let want = read_jsonl(&golden);
    assert_eq!(ours.len(), want.len());
    let mut mismatches = Vec::new();
    for (row, (line, want)) in ours.iter().zip(&want) {
        assert_eq!(
            row["recorded_pred"], want["recorded_pred"],
            "other fields are kept"
        );
        if row["pred"] != want["pred"] || row["score"] != want["score"] {
            mismatches.push(format!(
                "line {line}: {} {} != {} {}",
                row["pred"], row["score"], want["pred"], want["score"]
            ));
        }
    }
    assert!(mismatches.is_empty(), "{}", mismatches.join("\n"));
    // A per-dataset summary on stdout.
    assert!(
        stdout.lines().any(|l| l.starts_with("gsm8k\t120\t")),
        "{stdout}"
    );
}

#[test]
fn grade_takes_a_given_prediction_and_reports_rows_it_cannot_grade() {
    let dir = tempfile::tempdir().unwrap();
    let input = dir.path().join("rows.jsonl");
    std::fs::write(
        &input,
        "{\"dataset\": \"minerva_math\", \"idx\": 1, \"pred\": \"0.5\", \"gt\": \"\\\\frac{1}{2}\"}\n\
         {\"dataset\": \"gsm9k\", \"idx\": 2, \"output\": \"The answer is 3.\", \"gt\": \"3\"}\n",
    )
    .unwrap();
    let out = dir.path().join("graded.jsonl");
    grade(&input, &out).exit_code(1);
    let graded = read_rows(&out);
    assert_eq!(graded.len(), 1);
    assert_eq!(graded[0]["score"], Value::Bool(true));
    let failures = read_rows(dir.path().join("graded.failures.jsonl"));
    assert_eq!(failures.len(), 1);
    assert_eq!(failures[0]["line"], 2);
    assert!(
        failures[0]["error"].as_str().unwrap().contains("gsm9k"),
        "{}",
        failures[0]
    );
}

#[test]
fn a_missing_harness_or_an_unknown_task_is_a_clear_error() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("p.jsonl");
    let missing = dir.path().join("no-harness");
    let stderr = prompts(path_str(&missing), &out)
        .args(["--tasks", "gsm8k"])
        .exit_code(2);
    assert!(
        stderr.contains("no-harness") && stderr.contains("does not exist"),
        "{stderr}"
    );

    let stderr = prompts(&harness(), &out)
        .args(["--tasks", "gsm8k,math"])
        .exit_code(2);
    assert!(
        stderr.contains("unknown dataset `math`") && stderr.contains("sat_math"),
        "{stderr}"
    );

    // TabMWP is asked for by default and absent from the fixture harness.
    let stderr = prompts(&harness(), &out).exit_code(2);
    assert!(stderr.contains("data/tabmwp/test.jsonl"), "{stderr}");
    assert!(!out.exists(), "no partial output");
}

#[test]
fn run_writes_the_harness_layout_and_a_repeated_run_changes_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("out");
    let model = tiny_llama();
    let run = || {
        math_eval("run")
            .args(["--model", path_str(&model), "--data", &harness()])
            .args(["--output", path_str(&out), "--tasks", AVAILABLE])
            .args([
                "--max-samples",
                "2",
                "--max-new-tokens",
                "12",
                "--batch-size",
                "2",
            ])
    };
    let stdout = run().success();
    assert!(
        stdout.starts_with("gsm8k       \tminerva_math\t"),
        "{stdout}"
    );
    assert!(
        stdout.lines().next().unwrap().trim_end().ends_with("avg"),
        "{stdout}"
    );

    let mut files = vec![out.join("results.json")];
    for name in AVAILABLE.split(',') {
        let samples = read_rows(out.join(name).join(SAMPLES));
        assert_eq!(samples.len(), 2, "{name}");
        assert!(samples
            .iter()
            .all(|s| s["code"].as_array().unwrap().len() == 1));
        let metrics = read_json(out.join(name).join(METRICS));
        assert_eq!(metrics["num_samples"], 2, "{name}");
        files.push(out.join(name).join(SAMPLES));
        files.push(out.join(name).join(METRICS));
        files.push(out.join(name).join("generations.jsonl"));
    }
    let before: Vec<String> = files.iter().map(|f| text(f)).collect();

    assert_eq!(run().success(), stdout);
    let after: Vec<String> = files.iter().map(|f| text(f)).collect();
    assert_eq!(
        before, after,
        "the repeated run generates nothing and writes the same files"
    );
}

/// `prox math-eval run` killed with SIGKILL mid-run (after some batches are stored in
/// generations.jsonl) and started again with the same command ends with the outputs of an
/// uninterrupted run, keeping the stored generations instead of generating them again. The
/// tiny fixture model, one sample per batch and enough samples to be killed between batches.
mod killed {
    use std::path::Path;
    use std::process::Stdio;
    use std::time::{Duration, Instant};

    use serde_json::Value;

    use super::{math_eval, METRICS, SAMPLES};
    use crate::support::{path_str, read_json, tiny_llama, TestCommand};

    const TOTAL: usize = 40;

    fn run(model: &Path, out: &Path) -> TestCommand {
        let harness = prox_test::fixture("math-eval/harness");
        math_eval("run").args([
            "--model",
            path_str(model),
            "--data",
            path_str(&harness),
            "--output",
            path_str(out),
            "--tasks",
            "gsm8k",
            "--max-samples",
            &TOTAL.to_string(),
            "--max-new-tokens",
            "32",
            "--batch-size",
            "1",
        ])
    }

    /// The complete rows of a JSON-lines file being written (a torn last line left out).
    fn stored(path: &Path) -> Vec<Value> {
        std::fs::read_to_string(path)
            .unwrap_or_default()
            .lines()
            .filter_map(|line| serde_json::from_str(line).ok())
            .collect()
    }

    /// A JSON file without its timing fields, which differ between any two runs.
    fn untimed(path: &Path) -> Value {
        fn strip(value: &mut Value) {
            match value {
                Value::Object(map) => {
                    map.retain(|key, _| !key.starts_with("time_use"));
                    map.values_mut().for_each(strip);
                }
                Value::Array(items) => items.iter_mut().for_each(strip),
                _ => {}
            }
        }
        let mut value = read_json(path);
        strip(&mut value);
        value
    }

    /// The stored completions by sample, without the seconds each took.
    fn completions(path: &Path) -> Vec<(i64, String)> {
        let mut rows: Vec<(i64, String)> = stored(path)
            .iter()
            .map(|r| {
                (
                    r["idx"].as_i64().unwrap(),
                    r["output"].as_str().unwrap().to_owned(),
                )
            })
            .collect();
        rows.sort();
        rows
    }

    #[test]
    fn a_run_killed_mid_way_and_started_again_ends_as_an_uninterrupted_run() {
        let model = tiny_llama();
        let dir = tempfile::tempdir().unwrap();
        let whole = dir.path().join("whole");
        let table = run(&model, &whole).success();

        let resumed = dir.path().join("resumed");
        let generations = resumed.join("gsm8k/generations.jsonl");
        let mut child = run(&model, &resumed).spawn(Stdio::null(), Stdio::null());
        let started = Instant::now();
        while stored(&generations).len() < 2 {
            assert!(
                child.try_wait().unwrap().is_none(),
                "the run ended before it could be killed"
            );
            assert!(
                started.elapsed() < Duration::from_secs(300),
                "no batch stored"
            );
            std::thread::sleep(Duration::from_millis(20));
        }
        // SIGKILL: no handler runs, as in a crash or an out-of-memory kill.
        child.kill().unwrap();
        child.wait().unwrap();
        let before = stored(&generations);
        assert!(
            before.len() < TOTAL,
            "killed after {} of {TOTAL} samples: not mid-way",
            before.len()
        );
        assert!(
            !resumed.join("results.json").exists(),
            "a killed run writes no results"
        );

        assert_eq!(run(&model, &resumed).success(), table, "the accuracy table");
        let after = stored(&generations);
        assert_eq!(after.len(), TOTAL, "each sample stored once: {after:?}");
        for row in &before {
            // A stored row keeps its seconds: it was not generated again.
            assert!(after.contains(row), "{row} was generated again");
        }
        assert_eq!(
            completions(&generations),
            completions(&whole.join("gsm8k/generations.jsonl"))
        );
        assert_eq!(
            std::fs::read_to_string(resumed.join("gsm8k").join(SAMPLES)).unwrap(),
            std::fs::read_to_string(whole.join("gsm8k").join(SAMPLES)).unwrap()
        );
        assert_eq!(
            untimed(&resumed.join("gsm8k").join(METRICS)),
            untimed(&whole.join("gsm8k").join(METRICS))
        );
        assert_eq!(
            untimed(&resumed.join("results.json")),
            untimed(&whole.join("results.json"))
        );
    }
}
