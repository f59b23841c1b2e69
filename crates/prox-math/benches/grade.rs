//! Grading speed: every pair of `equal.jsonl` and every answer of `answers.jsonl` through
//! `math_equal`, on one core. The goal is the whole set under one second (the harness spends up
//! to three seconds per sample in a process pool).
//!
//!     cargo bench -p prox-math --bench grade

use std::time::Duration;

use prox_math::equal::{math_equal, Verdict};

fn main() {
    divan::main();
}

/// `(pred, gt)` of both golden files.
fn pairs() -> Vec<(Option<String>, String)> {
    let mut pairs = Vec::new();
    for file in ["math-eval/equal.jsonl", "math-eval/answers.jsonl"] {
        for (_, row) in prox_test::read_jsonl(prox_test::fixture(file)) {
            let pred = row["pred"].as_str().map(str::to_owned);
            let gt = row["gt"].as_str().unwrap_or_default().to_owned();
            pairs.push((pred, gt));
        }
    }
    pairs
}

#[divan::bench(sample_count = 10)]
fn all_golden_pairs(bencher: divan::Bencher) {
    let pairs = pairs();
    bencher.bench(|| {
        pairs
            .iter()
            .filter(|(pred, gt)| {
                math_equal(pred.as_deref(), gt, Duration::from_secs(3)) == Verdict::Equal
            })
            .count()
    });
}
