//! A model's answer to a math question and a ground truth, both any text: extracting the
//! prediction and grading it (`math_equal`, whose LaTeX and Python-expression parsers read
//! model output) never panic and keep to the time budget.
//!
//! Input layout: one byte choosing the dataset, then the completion, a NUL byte, and the
//! ground truth.
#![no_main]

use std::time::{Duration, Instant};

use libfuzzer_sys::fuzz_target;
use prox_math::equal::math_equal;
use prox_math::{predict, Dataset};

/// The grading budget here; the harness gives 3 seconds.
const BUDGET: Duration = Duration::from_millis(500);
/// How far past its budget a grading may run: the budget is checked between steps, and the
/// sanitizer slows every step down.
const SLACK: Duration = Duration::from_secs(5);

// The init compiles the lazily built patterns (dozens of regexes, slow under the sanitizer)
// before the fuzzer's per-input timeout starts counting.
fuzz_target!(init: warm_up(), |data: &[u8]| grade(data));

fn warm_up() {
    for dataset in Dataset::ALL {
        let pred = predict(
            "So $x = \\boxed{\\frac{1}{2}}$ cm. The answer is (A) 1/2.",
            dataset,
        );
        math_equal(pred.as_deref(), "\\sqrt{2}x^2 + \\pi", BUDGET);
    }
}

fn grade(data: &[u8]) {
    let Some((&choice, rest)) = data.split_first() else {
        return;
    };
    let dataset = Dataset::ALL[usize::from(choice) % Dataset::ALL.len()];
    let (completion, gt) = match rest.iter().position(|&b| b == 0) {
        Some(nul) => (&rest[..nul], &rest[nul + 1..]),
        None => (rest, &b""[..]),
    };
    let completion = String::from_utf8_lossy(completion);
    let gt = String::from_utf8_lossy(gt);

    let pred = predict(&completion, dataset);
    let started = Instant::now();
    let verdict = math_equal(pred.as_deref(), &gt, BUDGET);
    assert!(
        started.elapsed() < BUDGET + SLACK,
        "graded in {:?} against a budget of {BUDGET:?} ({verdict:?})",
        started.elapsed()
    );
    // A completion graded as the prediction itself, as `prox math-eval grade` grades rows that
    // have no completion.
    let started = Instant::now();
    math_equal(Some(&completion), &gt, BUDGET);
    assert!(started.elapsed() < BUDGET + SLACK);
}
