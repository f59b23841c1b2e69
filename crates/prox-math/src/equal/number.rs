//! Step 2 of §8: answers that Python's `float()` reads, and `math.isclose`.

use crate::python::parse_float;

/// The harness's `parse_digits`: commas deleted, then Python `float()`; failing that, a trailing
/// `%` (maybe after a `\`) divides by 100.
pub(crate) fn parse_digits(text: &str) -> Option<f64> {
    let text = text.replace(',', "");
    if let Some(value) = parse_float(&text) {
        return Some(value);
    }
    let body = text.strip_suffix('%')?;
    let body = body.strip_suffix('\\').unwrap_or(body);
    parse_float(body).map(|value| value / 100.0)
}

/// Python's `math.isclose(reference, prediction, rel_tol=1e-4)` (the harness's
/// `numeric_equal`): equal values (infinities included) or a difference within 1e-4 of the
/// larger magnitude; NaN is close to nothing.
pub(crate) fn isclose(reference: f64, prediction: f64) -> bool {
    const REL_TOL: f64 = 1e-4;
    if reference == prediction {
        return true;
    }
    if reference.is_infinite() || prediction.is_infinite() {
        return false;
    }
    let difference = (prediction - reference).abs();
    difference <= (REL_TOL * prediction).abs() || difference <= (REL_TOL * reference).abs()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn digits_read_python_float_syntax_commas_and_percentages() {
        assert_eq!(parse_digits("1,000"), Some(1000.0));
        assert_eq!(parse_digits(" 1_0 "), Some(10.0));
        assert_eq!(parse_digits("1e3"), Some(1000.0));
        assert_eq!(parse_digits("-inf"), Some(f64::NEG_INFINITY));
        assert_eq!(parse_digits("50%"), Some(0.5));
        assert_eq!(parse_digits("50\\%"), Some(0.5));
        assert!(parse_digits("nan").is_some_and(f64::is_nan));
        assert_eq!(parse_digits("1__0"), None);
        assert_eq!(parse_digits("5%%"), None);
        assert_eq!(parse_digits("\\frac{1}{2}"), None);
    }

    #[test]
    fn isclose_is_relative_and_never_true_for_nan() {
        assert!(isclose(100.0, 100.009));
        assert!(!isclose(100.0, 100.02));
        assert!(!isclose(0.0, 1e-300));
        assert!(isclose(f64::INFINITY, f64::INFINITY));
        assert!(!isclose(f64::INFINITY, f64::NEG_INFINITY));
        assert!(!isclose(f64::NAN, f64::NAN));
    }
}
