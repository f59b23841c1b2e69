//! `run` over a scripted generator: the harness layout, resume after a failed batch or a torn
//! line, and a repeated run that generates nothing and writes the same files.

use std::path::Path;

use prox_math::{
    run, Dataset, DatasetResult, GenerationParams, Generator, RunOptions, Silent, GENERATIONS_FILE,
    METRICS_FILE, SAMPLES_FILE,
};
use serde_json::Value;

use crate::fixture_harness;

/// Answers "The answer is 5." to every prompt, after `fail_after` prompts fails the rest.
struct Scripted {
    calls: usize,
    prompts_seen: usize,
    fail_after: Option<usize>,
}

impl Scripted {
    fn new(fail_after: Option<usize>) -> Self {
        Scripted {
            calls: 0,
            prompts_seen: 0,
            fail_after,
        }
    }
}

impl Generator for Scripted {
    fn complete(
        &mut self,
        prompts: &[String],
        params: &GenerationParams,
    ) -> Vec<Result<String, String>> {
        assert_eq!(params.stop, ["</s>", "\n\nQuestion:", "\n\nProblem:"]);
        self.calls += 1;
        prompts
            .iter()
            .map(|_| {
                self.prompts_seen += 1;
                match self.fail_after {
                    Some(n) if self.prompts_seen > n => Err("the server went away".to_owned()),
                    _ => Ok(" The answer is 5.\n".to_owned()),
                }
            })
            .collect()
    }
}

fn options() -> RunOptions {
    RunOptions {
        max_samples: Some(5),
        batch_size: 2,
        ..RunOptions::default()
    }
}

fn read(path: &Path) -> String {
    std::fs::read_to_string(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

const DATASETS: [Dataset; 2] = [Dataset::Gsm8k, Dataset::MathQa];

/// `run` of the fixture harness over `datasets` into `out`: 5 samples each, batches of 2.
fn run_scripted(
    datasets: &[Dataset],
    out: &Path,
    generator: &mut Scripted,
) -> prox_math::Result<Vec<DatasetResult>> {
    run(
        &fixture_harness(),
        datasets,
        out,
        generator,
        &options(),
        &mut Silent,
    )
}

#[test]
fn a_run_writes_the_harness_layout_and_a_repeated_run_changes_nothing() {
    let out = tempfile::tempdir().expect("temp dir");
    let mut generator = Scripted::new(None);
    let results = run_scripted(&DATASETS, out.path(), &mut generator).expect("the run succeeds");
    assert_eq!(generator.prompts_seen, 10);
    assert_eq!(generator.calls, 6, "batches of 2 over 5 samples, twice");
    assert_eq!(results.len(), 2);
    let gsm = out.path().join("gsm8k");
    let samples: Vec<Value> = read(&gsm.join(SAMPLES_FILE))
        .lines()
        .map(|l| serde_json::from_str(l).expect("a JSON line"))
        .collect();
    assert_eq!(samples.len(), 5);
    let keys: Vec<&String> = samples[0].as_object().expect("an object").keys().collect();
    assert_eq!(
        keys,
        ["idx", "question", "gt_cot", "gt", "answer", "code", "pred", "report", "score"]
    );
    assert_eq!(samples[0]["code"], serde_json::json!(["The answer is 5."]));
    assert_eq!(samples[0]["pred"], serde_json::json!(["5"]));
    let metrics: Value =
        serde_json::from_str(&read(&gsm.join(METRICS_FILE))).expect("metrics JSON");
    assert_eq!(metrics["num_samples"], 5);
    let mathqa: Value = serde_json::from_str(&read(&out.path().join("mathqa").join(METRICS_FILE)))
        .expect("metrics");
    assert!(mathqa["type_acc"].is_object(), "{mathqa}");
    assert_eq!(mathqa["empty_samples"], 0, "`placeholder` is not empty");
    let results_json: Value =
        serde_json::from_str(&read(&out.path().join("results.json"))).expect("results JSON");
    assert!(results_json["avg"].is_number());

    let before: Vec<String> = files(out.path()).iter().map(|p| read(p)).collect();
    let mut again = Scripted::new(None);
    run_scripted(&DATASETS, out.path(), &mut again).expect("rerun");
    assert_eq!(again.prompts_seen, 0, "nothing is generated twice");
    let after: Vec<String> = files(out.path()).iter().map(|p| read(p)).collect();
    assert_eq!(before, after);
}

fn files(dir: &Path) -> Vec<std::path::PathBuf> {
    let mut files = vec![dir.join("results.json")];
    for dataset in DATASETS {
        for name in [SAMPLES_FILE, METRICS_FILE, GENERATIONS_FILE] {
            files.push(dir.join(dataset.name()).join(name));
        }
    }
    files
}

#[test]
fn a_failed_batch_keeps_the_finished_ones_and_the_rerun_does_the_rest() {
    let out = tempfile::tempdir().expect("temp dir");
    let mut failing = Scripted::new(Some(3));
    let error =
        run_scripted(&[Dataset::Gsm8k], out.path(), &mut failing).expect_err("the generator fails");
    assert!(
        error.to_string().contains("the server went away"),
        "{error}"
    );
    let store = out.path().join("gsm8k").join(GENERATIONS_FILE);
    assert_eq!(
        read(&store).lines().count(),
        3,
        "two full batches, then one of the third"
    );
    assert!(!out.path().join("gsm8k").join(SAMPLES_FILE).exists());

    // A torn line, as a kill in the middle of a write leaves.
    let mut text = read(&store);
    text.push_str("{\"idx\": 99, \"outp");
    std::fs::write(&store, text).expect("write");

    let mut rest = Scripted::new(None);
    run_scripted(&[Dataset::Gsm8k], out.path(), &mut rest).expect("rerun");
    assert_eq!(rest.prompts_seen, 2);
    assert_eq!(read(&store).lines().count(), 5);
    assert_eq!(
        read(&out.path().join("gsm8k").join(SAMPLES_FILE))
            .lines()
            .count(),
        5
    );
}

#[test]
fn a_missing_dataset_file_stops_the_run_before_anything_is_generated() {
    let out = tempfile::tempdir().expect("temp dir");
    let mut generator = Scripted::new(None);
    let error = run_scripted(
        &[Dataset::Gsm8k, Dataset::Tabmwp],
        out.path(),
        &mut generator,
    )
    .expect_err("tabmwp's file is absent");
    assert!(
        error.to_string().contains("data/tabmwp/test.jsonl"),
        "{error}"
    );
    assert_eq!(generator.calls, 0);
}
