//! Throughput of the executor over every reference vector, one thread: documents per second
//! and megabytes of input text per second, faithful and strict.
//!
//! Baseline: the reference (Python) runs about 25,000 to 38,000 documents/s (30 to 44 MB/s) on
//! one core of a 2-core build machine, over these same vectors.
//!
//! `cargo bench -p prox-program`

use std::sync::LazyLock;

use divan::counter::{BytesCount, ItemsCount};
use divan::{black_box, Bencher};
use prox_program::{parse, Executor, Mode, Thresholds};

fn main() {
    divan::main();
}

struct Case {
    chunk: bool,
    text: String,
    program: String,
    thresholds: Thresholds,
}

static CASES: LazyLock<Vec<Case>> = LazyLock::new(|| {
    prox_test::read_jsonl(prox_test::fixture("executor/vectors.jsonl"))
        .into_iter()
        .map(|(_, value)| {
            let string = |name: &str| value[name].as_str().unwrap_or_default().to_owned();
            let defaults = Thresholds::default();
            Case {
                chunk: value["kind"] == "chunk",
                text: string("text"),
                program: string("program"),
                thresholds: Thresholds {
                    threshold_1: value["threshold_1"]
                        .as_f64()
                        .unwrap_or(defaults.threshold_1),
                    threshold_2: value["threshold_2"]
                        .as_f64()
                        .unwrap_or(defaults.threshold_2),
                    error_op: value["error_op"]
                        .as_u64()
                        .map_or(defaults.error_op, |n| n as usize),
                    ..defaults
                },
            }
        })
        .collect()
});

/// Documents, and bytes of their texts.
fn counters(cases: &[&Case]) -> (ItemsCount, BytesCount) {
    let bytes: usize = cases.iter().map(|case| case.text.len()).sum();
    (ItemsCount::new(cases.len()), BytesCount::new(bytes))
}

/// Every vector, document and chunk programs, as `prox apply` would run them.
#[divan::bench(args = [Mode::Faithful, Mode::Strict])]
fn all_vectors(bencher: Bencher, mode: Mode) {
    let cases: Vec<&Case> = CASES.iter().collect();
    let executors: Vec<Executor> = cases
        .iter()
        .map(|case| Executor::new(mode, case.thresholds))
        .collect();
    let (documents, bytes) = counters(&cases);
    bencher.counter(documents).counter(bytes).bench(|| {
        for (case, executor) in cases.iter().zip(&executors) {
            if case.chunk {
                black_box(executor.run_chunk(&case.text, &case.program));
            } else {
                black_box(executor.run_doc(&case.program).verdict(&case.text));
            }
        }
    });
}

/// Only the chunk vectors: parsing, normalizing, removing lines, counting words.
#[divan::bench(args = [Mode::Faithful, Mode::Strict])]
fn chunk_vectors(bencher: Bencher, mode: Mode) {
    let cases: Vec<&Case> = CASES.iter().filter(|case| case.chunk).collect();
    let (documents, bytes) = counters(&cases);
    bencher.counter(documents).counter(bytes).bench(|| {
        for case in &cases {
            let executor = Executor::new(mode, case.thresholds);
            black_box(executor.run_chunk(&case.text, &case.program));
        }
    });
}

/// Only parsing the chunk programs (bytes counted are the texts', for comparison).
#[divan::bench(args = [Mode::Faithful, Mode::Strict])]
fn parse_chunk_programs(bencher: Bencher, mode: Mode) {
    let cases: Vec<&Case> = CASES.iter().filter(|case| case.chunk).collect();
    let (documents, bytes) = counters(&cases);
    bencher.counter(documents).counter(bytes).bench(|| {
        for case in &cases {
            black_box(parse(&case.program, mode));
        }
    });
}

/// Only counting words (Python's `len(text.split())`) of every text.
#[divan::bench]
fn count_words(bencher: Bencher) {
    let cases: Vec<&Case> = CASES.iter().collect();
    let (documents, bytes) = counters(&cases);
    bencher.counter(documents).counter(bytes).bench(|| {
        for case in &cases {
            black_box(prox_program::count_words(&case.text));
        }
    });
}
