//! Golden: the harness's prompts, `gt_cot` and `gt` for 200 examples of eight datasets
//! (`fixtures/math-eval/prompts.jsonl`), every one exactly.

use std::collections::HashMap;

use prox_math::{prompt, Dataset, Harness};
use prox_test::{fixture, read_jsonl};

use crate::fixture_harness;

#[test]
fn every_golden_prompt_and_ground_truth_is_reproduced_exactly() {
    let harness = fixture_harness();
    let golden = read_jsonl(fixture("math-eval/prompts.jsonl"));
    assert_eq!(golden.len(), 200);
    let mut built: HashMap<Dataset, (String, HashMap<i64, prox_math::Example>)> = HashMap::new();
    let mut mismatches = Vec::new();
    for (line, row) in &golden {
        let dataset = Dataset::from_name(row["dataset"].as_str().expect("dataset is a string"))
            .expect("golden datasets are known");
        let (demo, examples) = built.entry(dataset).or_insert_with(|| {
            let demo = harness.demo(dataset).expect("the demo file exists");
            let examples = harness.examples(dataset).expect("the data file reads");
            (demo, examples.into_iter().map(|e| (e.idx, e)).collect())
        });
        let idx = row["idx"].as_i64().expect("idx is an integer");
        let Some(example) = examples.get(&idx) else {
            mismatches.push(format!("line {line}: {dataset} idx {idx} not found"));
            continue;
        };
        for (field, ours) in [
            ("prompt", prompt(demo, example)),
            ("gt_cot", example.gt_cot.clone()),
            ("gt", example.gt.clone()),
        ] {
            let want = row[field].as_str().expect("golden fields are strings");
            if ours != want {
                mismatches.push(format!(
                    "line {line}: {dataset} idx {idx} {field}:\n  ours: {:?}\n  want: {:?}",
                    tail(&ours),
                    tail(want)
                ));
            }
        }
    }
    prox_test::mismatch::assert_none(&mismatches, golden.len() * 3, "golden fields");
}

/// The end of a long prompt, where the question is.
fn tail(s: &str) -> &str {
    let start = s.char_indices().rev().nth(400).map_or(0, |(i, _)| i);
    &s[start..]
}

#[test]
fn dataset_sizes_and_order_follow_the_harness() {
    let harness = fixture_harness();
    let sizes = [
        (Dataset::Gsm8k, 1319),
        (Dataset::MinervaMath, 500),
        (Dataset::Svamp, 1000),
        (Dataset::Asdiv, 2215),
        (Dataset::Mawps, 2065),
        (Dataset::MathQa, 1000),
        (Dataset::MmluStem, 3018),
        (Dataset::SatMath, 32),
    ];
    for (dataset, n) in sizes {
        let examples = harness.examples(dataset).expect("the data file reads");
        assert_eq!(examples.len(), n, "{dataset}");
        assert!(
            examples.windows(2).all(|w| w[0].idx <= w[1].idx),
            "{dataset} sorted"
        );
    }
    let asdiv = harness.examples(Dataset::Asdiv).expect("asdiv reads");
    let by_idx = |i: i64| asdiv.iter().find(|e| e.idx == i).expect("idx present");
    // `3:30 p.m.` → `3:30p.` at prompt time, `3:30p` when scored: outputs hold the latter.
    assert!(by_idx(165).gt.ends_with('p'), "{:?}", by_idx(165).gt);
}

#[test]
fn a_missing_data_file_is_an_error_naming_it() {
    let harness = fixture_harness();
    let error = harness
        .examples(Dataset::Tabmwp)
        .expect_err("tabmwp is absent");
    let message = error.to_string();
    assert!(message.contains("data/tabmwp/test.jsonl"), "{message}");
    let error = Dataset::from_name("gsm9k").expect_err("unknown");
    assert!(error.to_string().contains("gsm8k, minerva_math"), "{error}");
    let error = Harness::open("/nonexistent/harness".as_ref()).expect_err("missing folder");
    assert!(
        error.to_string().contains("/nonexistent/harness"),
        "{error}"
    );
}

#[test]
fn a_malformed_data_line_names_the_file_and_line() {
    let dir = tempfile::tempdir().expect("temp dir");
    let data = dir.path().join("data/gsm8k");
    std::fs::create_dir_all(&data).expect("mkdir");
    std::fs::write(
        data.join("test.jsonl"),
        "{\"question\": \"q\", \"answer\": \"a #### 1\", \"idx\": 0}\n{\"question\": 3\n",
    )
    .expect("write");
    let harness = Harness::open(dir.path()).expect("opens");
    let message = harness
        .examples(Dataset::Gsm8k)
        .expect_err("bad line")
        .to_string();
    assert!(message.contains("test.jsonl:2:"), "{message}");
    let message = harness
        .demo(Dataset::Gsm8k)
        .expect_err("no prompt")
        .to_string();
    assert!(message.contains("prompts/cot/gsm8k.md"), "{message}");
}
