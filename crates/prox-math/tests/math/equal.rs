//! `math_equal` against the harness: every pair of `math-eval/equal.jsonl` and every answer of
//! `math-eval/answers.jsonl` must get the harness's verdict; all mismatches are listed by line.
//! Plus properties: no panic, no stack overflow and no overrun of the budget on any text.

use std::time::{Duration, Instant};

use proptest::prelude::*;
use prox_math::equal::{math_equal, Verdict};

const BUDGET: Duration = Duration::from_secs(3);

/// Grades the `rows` rows of a fixture and fails listing every row whose verdict differs
/// from `score`. A row the harness timed out on scores false, and may here be `NotEqual` or
/// `Timeout`.
fn assert_every_row_gets_the_harness_verdict(file: &str, rows: usize, what: &str) {
    let golden = prox_test::read_jsonl(prox_test::fixture(file));
    assert_eq!(golden.len(), rows, "{file} holds {rows} {what}");
    let mut wrong = Vec::new();
    for (line, row) in &golden {
        let pred = row["pred"].as_str();
        let gt = row["gt"]
            .as_str()
            .unwrap_or_else(|| panic!("{file}:{line}: `gt` is not a string"));
        let score = row["score"]
            .as_bool()
            .unwrap_or_else(|| panic!("{file}:{line}: `score` is not a boolean"));
        let verdict = math_equal(pred, gt, BUDGET);
        if verdict.is_equal() != score {
            wrong.push(format!(
                "{file}:{line}: pred {pred:?}, gt {gt:?}: harness {score}, here {verdict:?}"
            ));
        }
    }
    prox_test::mismatch::assert_none(&wrong, rows, what);
}

#[test]
fn every_golden_pair_gets_the_harness_verdict() {
    assert_every_row_gets_the_harness_verdict("math-eval/equal.jsonl", 1462, "pairs");
}

#[test]
fn every_recorded_answer_gets_the_harness_score() {
    assert_every_row_gets_the_harness_verdict("math-eval/answers.jsonl", 872, "answers");
}

#[test]
fn deeply_nested_input_fails_to_parse_instead_of_overflowing_the_stack() {
    let depth = 100_000;
    for (open, close) in [
        ("(", ")"),
        ("{", "}"),
        ("\\sqrt{", "}"),
        ("2^{", "}"),
        ("-", ""),
        ("[", "]"),
    ] {
        let text = format!("{}1{}", open.repeat(depth), close.repeat(depth));
        assert_eq!(
            math_equal(Some(&text), "2", BUDGET),
            Verdict::NotEqual,
            "{open}"
        );
    }
    let chain = format!("2{}", "^2".repeat(depth));
    assert_eq!(math_equal(Some(&chain), "4", BUDGET), Verdict::NotEqual);
    let bangs = format!("3{}", "!".repeat(depth));
    assert_eq!(math_equal(Some(&bangs), "6", BUDGET), Verdict::NotEqual);
}

#[test]
fn huge_powers_and_factorials_end_within_the_budget() {
    let start = Instant::now();
    for (pred, gt) in [
        ("2^{10^{10}}", "2^{10^{10}}+1"),
        ("10^{100000}!", "1"),
        ("\\frac{1}{0}", "\\frac{2}{0}"),
        ("(10^{400})^{1/3}", "10^{133}"),
    ] {
        let verdict = math_equal(Some(pred), gt, BUDGET);
        assert_ne!(verdict, Verdict::Timeout, "{pred} vs {gt}");
    }
    assert!(start.elapsed() < BUDGET, "took {:?}", start.elapsed());
}

/// Texts like answers: digits, letters, LaTeX commands, brackets and operators.
fn latex_like() -> impl Strategy<Value = String> {
    let pieces = prop::sample::select(vec![
        "1",
        "2",
        "0",
        "9",
        ".",
        ",",
        "x",
        "y",
        "d",
        "e",
        "i",
        "+",
        "-",
        "*",
        "/",
        "^",
        "_",
        "!",
        "=",
        "<",
        "|",
        "(",
        ")",
        "[",
        "]",
        "{",
        "}",
        "\\{",
        "\\}",
        "\\frac",
        "\\sqrt",
        "\\pi",
        "\\infty",
        "\\sin",
        "\\log",
        "\\cdot",
        "\\times",
        "\\left",
        "\\right",
        "\\\\",
        "\\",
        "&",
        "%",
        "$",
        " ",
        "\\begin{pmatrix}",
        "\\end{pmatrix}",
        "\\binom",
        "\\mathit",
        "'",
        "**",
        "sqrt",
        "pi",
        "\\lfloor",
        "\\rfloor",
        "\\int",
        "\\frac{d}{dx}",
        "j",
        "1e5",
        "é",
    ]);
    prop::collection::vec(pieces, 0..24).prop_map(|pieces| pieces.concat())
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(2000))]

    #[test]
    fn grading_arbitrary_text_never_panics_and_keeps_to_the_budget(
        pred in proptest::option::of(".{0,40}"),
        gt in ".{0,40}",
    ) {
        let start = Instant::now();
        let _ = math_equal(pred.as_deref(), &gt, Duration::from_millis(200));
        prop_assert!(start.elapsed() < Duration::from_millis(400));
    }

    #[test]
    fn grading_latex_like_text_never_panics_and_keeps_to_the_budget(
        pred in latex_like(),
        gt in latex_like(),
    ) {
        let start = Instant::now();
        let verdict = math_equal(Some(&pred), &gt, Duration::from_millis(200));
        prop_assert!(start.elapsed() < Duration::from_millis(400));
        // Every text equals itself, by step 1.
        prop_assert_eq!(math_equal(Some(&pred), &pred, BUDGET), Verdict::Equal);
        let _ = verdict;
    }

    #[test]
    fn the_verdict_is_the_same_however_the_arguments_repeat(
        pred in latex_like(),
        gt in latex_like(),
    ) {
        prop_assert_eq!(
            math_equal(Some(&pred), &gt, BUDGET),
            math_equal(Some(&pred), &gt, BUDGET)
        );
    }
}
