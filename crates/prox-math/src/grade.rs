//! Grading stored completions, as the harness's `evaluate.py` grades a samples file.

use std::time::Duration;

use serde_json::{Map, Value};

use crate::equal::{math_equal, Verdict};
use crate::{extract, python, Dataset};

/// The harness's per-sample grading timeout.
pub const GRADE_BUDGET: Duration = Duration::from_secs(3);

/// Grades a prediction against a (scoring) ground truth within [`GRADE_BUDGET`].
pub fn grade(pred: Option<&str>, gt: &str) -> Verdict {
    math_equal(pred, gt, GRADE_BUDGET)
}

/// Grades one row of `prox math-eval grade`'s input in place: from `output` (the completion)
/// when present, setting `pred`, else from the row's own `pred`; then sets `score`. Other
/// fields stay as they are. Returns the verdict, or why the row cannot be graded.
pub fn grade_row(row: &mut Map<String, Value>) -> Result<Verdict, String> {
    let dataset = match row.get("dataset") {
        Some(Value::String(name)) => Dataset::from_name(name).map_err(|e| e.to_string())?,
        Some(_) => return Err("`dataset` is not a string".into()),
        None => return Err("no field `dataset`".into()),
    };
    let gt = match row.get("gt") {
        Some(Value::String(gt)) => gt.clone(),
        Some(Value::Null) | None => return Err("no field `gt`".into()),
        Some(other) => python::str_of(other),
    };
    let pred = match row.get("output") {
        Some(Value::String(output)) => {
            let pred = extract::predict(python::strip(output), dataset);
            row.insert("pred".into(), pred.clone().map_or(Value::Null, Value::from));
            pred
        }
        Some(_) => return Err("`output` is not a string".into()),
        None => match row.get("pred") {
            Some(Value::String(pred)) => Some(pred.clone()),
            Some(Value::Null) => None,
            Some(_) => return Err("`pred` is not a string or null".into()),
            None => return Err("neither `output` nor `pred`".into()),
        },
    };
    let verdict = grade(pred.as_deref(), &gt);
    row.insert("score".into(), Value::Bool(verdict.is_equal()));
    Ok(verdict)
}
