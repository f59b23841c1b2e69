//! How a golden test fails: with every mismatch listed, one a line, so that one run shows all
//! that differs from the reference rather than the first difference.

/// Fails, listing `mismatches`, when there is any; `total` counts what was compared and
/// `what` names it ("vectors", "pairs", "documents").
pub fn assert_none(mismatches: &[String], total: usize, what: &str) {
    assert!(
        mismatches.is_empty(),
        "{} mismatches in {total} {what}:\n{}",
        mismatches.len(),
        mismatches.join("\n")
    );
}
