//! `math_equal`: the harness's answer grading (`MATH-EVAL-SPEC.md` §8), its symbolic equality
//! included, without Python.
//!
//! Steps 1–8 are string and number rules, reproduced exactly. Step 9, `symbolic_equal`, is sympy
//! in the harness (`parse_latex`, `parse_expr`, `simplify(a - b) == 0`, `N()`); here it is a
//! parser for the grammar of sympy's `parse_latex` ([`latex`]), one for the Python expressions
//! `parse_expr` reads ([`plain`]), an expression tree evaluated exactly where it is rational and
//! in complex floating point elsewhere ([`expr`]), and the harness's checks over it
//! ([`symbolic`]).
//!
//! ```
//! use std::time::Duration;
//! use prox_math::equal::{math_equal, Verdict};
//!
//! let budget = Duration::from_secs(3);
//! assert_eq!(math_equal(Some("0.5"), "\\frac{1}{2}", budget), Verdict::Equal);
//! assert_eq!(math_equal(Some("(2,5]"), "[2,5)", budget), Verdict::Equal);
//! assert_eq!(math_equal(Some("x^2-1"), "(x-1)(x+1)", budget), Verdict::Equal);
//! assert_eq!(math_equal(None, "3", budget), Verdict::NotEqual);
//! ```

mod budget;
mod expr;
mod latex;
mod number;
mod plain;
mod structure;
mod symbolic;

use std::time::Duration;

use crate::python::strip;
use budget::{Budget, OutOfTime};

/// The grade of one answer.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Verdict {
    Equal,
    NotEqual,
    /// The time budget ran out first; the harness scores this false and counts it in
    /// `timeout_samples`.
    Timeout,
}

impl Verdict {
    /// The score the harness records: only [`Verdict::Equal`] is true.
    pub fn is_equal(self) -> bool {
        self == Verdict::Equal
    }
}

/// The harness's `math_equal(pred, gt)`: whether the predicted answer equals the ground truth,
/// decided within `budget` (the harness gives each sample 3 seconds).
///
/// `pred` is `None` where the harness's prediction is Python `None` (an empty completion); it
/// then equals only the ground truth `"None"`, as `str(None)` does.
pub fn math_equal(pred: Option<&str>, gt: &str, budget: Duration) -> Verdict {
    let budget = Budget::new(budget);
    match equal(pred, gt, &budget) {
        Ok(true) => Verdict::Equal,
        Ok(false) => Verdict::NotEqual,
        Err(OutOfTime) => Verdict::Timeout,
    }
}

/// Steps 1–9 of §8; `pred` is `None` for Python `None`.
fn equal(pred: Option<&str>, gt: &str, budget: &Budget) -> Result<bool, OutOfTime> {
    budget.check()?;
    let pred_text = pred.unwrap_or("None");
    // 1. str(pred) == str(gt)
    if pred_text == gt {
        return Ok(true);
    }
    // 2. both numbers: compared with isclose against gt/100, gt and gt*100, and decided here.
    if let (Some(p), Some(g)) = (number::parse_digits(pred_text), number::parse_digits(gt)) {
        return Ok([g / 100.0, g, g * 100.0]
            .into_iter()
            .any(|item| number::isclose(item, p)));
    }
    // 3. `not prediction`: None and "" are false.
    let Some(pred) = pred.filter(|p| !p.is_empty()) else {
        return Ok(false);
    };
    let mut reference = strip(gt).to_owned();
    let prediction = strip(pred);
    // 4. a matrix predicted for a ground truth written as `{a,b}` sets.
    if prediction.contains("pmatrix") && !reference.contains("pmatrix") {
        reference = structure::str_to_pmatrix(&reference);
    }
    let reference = reference.as_str();
    // 5. equal once brackets and braces are dropped, case-insensitively.
    if structure::equal_without_brackets(prediction, reference) {
        return Ok(true);
    }
    // 6. tuples and intervals, element by element.
    if structure::is_bracketed(prediction) && structure::is_bracketed(reference) {
        let pred_parts: Vec<&str> = structure::inner(prediction).split(',').collect();
        let ref_parts: Vec<&str> = structure::inner(reference).split(',').collect();
        if pred_parts.len() == ref_parts.len() && all_equal(&pred_parts, &ref_parts, budget)? {
            return Ok(true);
        }
    }
    // 7. matrices, cell by cell.
    if let (Some(pred_rows), Some(ref_rows)) = (
        structure::matrix_rows(prediction),
        structure::matrix_rows(reference),
    ) {
        if pred_rows.len() == ref_rows.len() {
            let mut matched = true;
            for (pred_row, ref_row) in pred_rows.iter().zip(&ref_rows) {
                let pred_cells: Vec<&str> = pred_row.split('&').collect();
                let ref_cells: Vec<&str> = ref_row.split('&').collect();
                if pred_cells.len() != ref_cells.len()
                    || !all_equal(&pred_cells, &ref_cells, budget)?
                {
                    matched = false;
                    break;
                }
            }
            if matched {
                return Ok(true);
            }
        }
    }
    // 8. equations: `L - (R)` on both sides, either sign; or `x = value` against a value.
    let pred_eqs = prediction.matches('=').count();
    let ref_eqs = reference.matches('=').count();
    if pred_eqs == 1 && ref_eqs == 1 {
        let pred_difference = structure::equation_difference(prediction);
        let ref_difference = structure::equation_difference(reference);
        if symbolic::symbolic_equal(&pred_difference, &ref_difference, budget)?
            || symbolic::symbolic_equal(&format!("-({pred_difference})"), &ref_difference, budget)?
        {
            return Ok(true);
        }
    } else if pred_eqs == 1 && structure::short_left_side(prediction) && ref_eqs == 0 {
        if equal(Some(structure::right_side(prediction)), reference, budget)? {
            return Ok(true);
        }
    } else if ref_eqs == 1
        && structure::short_left_side(reference)
        && pred_eqs == 0
        && equal(Some(prediction), structure::right_side(reference), budget)?
    {
        return Ok(true);
    }
    // 9. symbolic equality.
    symbolic::symbolic_equal(prediction, reference, budget)
}

/// `all(math_equal(p, r) for p, r in zip(...))`, stopping at the first unequal pair (the
/// harness evaluates them all, which changes only how long it takes).
fn all_equal(preds: &[&str], refs: &[&str], budget: &Budget) -> Result<bool, OutOfTime> {
    for (pred, reference) in preds.iter().zip(refs) {
        if !equal(Some(pred), reference, budget)? {
            return Ok(false);
        }
    }
    Ok(true)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn grade(pred: &str, gt: &str) -> Verdict {
        math_equal(Some(pred), gt, Duration::from_secs(3))
    }

    #[test]
    fn numbers_match_within_a_relative_tolerance_and_as_percentages() {
        assert_eq!(grade("18", "1800"), Verdict::Equal);
        assert_eq!(grade("1,2", "12"), Verdict::Equal);
        assert_eq!(grade("3.14159", "3.1416"), Verdict::Equal);
        assert_eq!(grade("50\\%", "0.5"), Verdict::Equal);
        assert_eq!(grade("3.2", "3.3"), Verdict::NotEqual);
        assert_eq!(grade("nan", "nan"), Verdict::Equal, "step 1: equal strings");
        assert_eq!(grade("nan", "NaN"), Verdict::NotEqual, "NaN is never close");
    }

    #[test]
    fn a_missing_prediction_equals_only_the_text_none() {
        assert_eq!(
            math_equal(None, "None", Duration::from_secs(1)),
            Verdict::Equal
        );
        assert_eq!(
            math_equal(None, "0", Duration::from_secs(1)),
            Verdict::NotEqual
        );
        assert_eq!(grade("", "x"), Verdict::NotEqual);
    }

    #[test]
    fn intervals_compare_elementwise_whatever_their_brackets() {
        assert_eq!(grade("(2,5]", "[2,5)"), Verdict::Equal);
        assert_eq!(
            grade("(0.6,2.6667]", "(\\frac{3}{5},\\frac{8}{3}]"),
            Verdict::Equal
        );
        assert_eq!(grade("(1,2)", "(1,3)"), Verdict::NotEqual);
    }

    #[test]
    fn matrices_compare_cell_by_cell() {
        assert_eq!(
            grade(
                "\\begin{pmatrix}0.5&1\\\\2&3\\end{pmatrix}",
                "\\begin{pmatrix}\\frac{1}{2}&1\\\\2&3\\end{bmatrix}"
            ),
            Verdict::Equal
        );
        assert_eq!(
            grade(
                "\\begin{pmatrix}0.5&1\\\\2&3\\end{pmatrix}",
                "\\begin{bmatrix}\\frac{1}{2}&1\\\\2&3\\end{bmatrix}"
            ),
            Verdict::NotEqual,
            "a ground truth without `pmatrix` is rewritten by step 4 first, to nothing here"
        );
        assert_eq!(
            grade(
                "\\begin{pmatrix}1\\\\2\\end{pmatrix}",
                "\\begin{pmatrix}1\\\\3\\end{pmatrix}"
            ),
            Verdict::NotEqual
        );
    }

    #[test]
    fn equations_equal_up_to_sign_and_assignments_equal_their_value() {
        assert_eq!(
            grade("-34x-45y+20z-100=0", "34x+45y-20z+100=0"),
            Verdict::Equal
        );
        assert_eq!(grade("y=2x+1", "2x+1"), Verdict::Equal);
        assert_eq!(grade("x=3", "4"), Verdict::NotEqual);
    }

    #[test]
    fn an_exhausted_budget_is_a_timeout() {
        assert_eq!(math_equal(Some("x"), "y", Duration::ZERO), Verdict::Timeout);
    }
}
