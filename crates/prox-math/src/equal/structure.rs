//! Steps 4–8 of §8: the harness's string rules for sets, tuples, intervals, matrices and
//! equations, with Python's string semantics (code points, `str.strip`, `str.lower`).

use crate::python::strip;

const BEGIN_MATRIX: [&str; 2] = ["\\begin{pmatrix}", "\\begin{bmatrix}"];
const END_MATRIX: [&str; 2] = ["\\end{pmatrix}", "\\end{bmatrix}"];

/// The harness's `str_to_pmatrix`: each match of `\{.*,.*\}` (within a line), stripped of `{`
/// and `}` at both ends, its commas turned into `\`, as a `pmatrix`; joined by `, `.
pub(crate) fn str_to_pmatrix(text: &str) -> String {
    let matrices: Vec<String> = strip(text)
        .split('\n')
        .filter_map(braced_list)
        .map(|m| {
            let body = m.trim_matches(['{', '}']).replace(',', "\\");
            format!("\\begin{{pmatrix}}{body}\\end{{pmatrix}}")
        })
        .collect();
    matrices.join(", ")
}

/// The match of `\{.*,.*\}` in one line: from the first `{` to the last `}`, when a comma
/// lies between them. (A later `{` cannot match where the first does not, and the greedy
/// `.*` always ends at the line's last `}`.)
fn braced_list(line: &str) -> Option<&str> {
    let open = line.find('{')?;
    let close = line.rfind('}')?;
    let comma = line[open..].find(',')? + open;
    (comma < close).then(|| &line[open..=close])
}

/// Step 5: with `[]()` stripped from both ends of both sides when the prediction is bracketed
/// (and the reference does not open with the other bracket), then every `{}()` deleted, the
/// two are equal ignoring case.
pub(crate) fn equal_without_brackets(prediction: &str, reference: &str) -> bool {
    let strip_ends =
        (prediction.starts_with('[') && prediction.ends_with(']') && !reference.starts_with('('))
            || (prediction.starts_with('(')
                && prediction.ends_with(')')
                && !reference.starts_with('['));
    let (mut pred, mut refr) = (prediction, reference);
    if strip_ends {
        const BRACKETS: [char; 4] = ['[', ']', '(', ')'];
        pred = pred.trim_matches(BRACKETS);
        refr = refr.trim_matches(BRACKETS);
    }
    let unbraced = |s: &str| -> String {
        s.chars()
            .filter(|c| !matches!(c, '{' | '}' | '(' | ')'))
            .collect::<String>()
            .to_lowercase()
    };
    unbraced(pred) == unbraced(refr)
}

/// Step 6's `regex.match(r'(\(|\[).+(\)|\])', s)`: an opening `(` or `[`, then a `)` or `]`
/// at least two characters on, within the first line.
pub(crate) fn is_bracketed(s: &str) -> bool {
    let first_line = s.split('\n').next().unwrap_or_default();
    let mut chars = first_line.chars();
    matches!(chars.next(), Some('(' | '[')) && chars.skip(1).any(|c| matches!(c, ')' | ']'))
}

/// Python's `s[1:-1]`.
pub(crate) fn inner(s: &str) -> &str {
    let mut chars = s.char_indices();
    let start = match chars.next() {
        Some((_, c)) => c.len_utf8(),
        None => return "",
    };
    match chars.next_back() {
        Some((end, _)) if end >= start => &s[start..end],
        _ => "",
    }
}

/// Step 7: the rows of a `pmatrix`/`bmatrix` (cut 15 characters at the start and 13 at the
/// end, split on `\\`, stripped, empty rows dropped); `None` if `s` is not one.
pub(crate) fn matrix_rows(s: &str) -> Option<Vec<&str>> {
    if !BEGIN_MATRIX.iter().any(|b| s.starts_with(b)) || !END_MATRIX.iter().any(|e| s.ends_with(e))
    {
        return None;
    }
    // Both prefixes are 15 bytes and both suffixes 13, and they cannot overlap.
    let body = &s[BEGIN_MATRIX[0].len()..s.len() - END_MATRIX[0].len()];
    Some(
        body.split("\\\\")
            .map(strip)
            .filter(|row| !row.is_empty())
            .collect(),
    )
}

/// Step 8: `L - (R)` of an equation with one `=`, both sides stripped.
pub(crate) fn equation_difference(equation: &str) -> String {
    let (left, right) = equation.split_once('=').unwrap_or((equation, ""));
    format!("{} - ({})", strip(left), strip(right))
}

/// Step 8: whether the left side of the (one) `=`, stripped, has at most 2 characters.
pub(crate) fn short_left_side(equation: &str) -> bool {
    let left = equation.split_once('=').map_or(equation, |(left, _)| left);
    strip(left).chars().count() <= 2
}

/// Step 8: the text right of the (one) `=`, as is.
pub(crate) fn right_side(equation: &str) -> &str {
    equation.split_once('=').map_or("", |(_, right)| right)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sets_become_pmatrices_like_the_harness_regex_finds_them() {
        assert_eq!(
            str_to_pmatrix("{1,2}"),
            "\\begin{pmatrix}1\\2\\end{pmatrix}"
        );
        assert_eq!(
            str_to_pmatrix("\\{3,4\\}"),
            "\\begin{pmatrix}3\\4\\\\end{pmatrix}",
            "the match runs from the first brace to the last"
        );
        assert_eq!(str_to_pmatrix("{1}{2}"), "");
        assert_eq!(str_to_pmatrix("5"), "");
    }

    #[test]
    fn brackets_count_when_a_closing_one_follows_two_characters_on() {
        assert!(is_bracketed("(1,2)"));
        assert!(is_bracketed("[a]"));
        assert!(!is_bracketed("()"));
        assert!(!is_bracketed("(1\n)"));
        assert!(!is_bracketed("1,2)"));
    }

    #[test]
    fn inner_drops_one_character_at_each_end() {
        assert_eq!(inner("(1,2]"), "1,2");
        assert_eq!(inner("(é)"), "é");
        assert_eq!(inner("()"), "");
        assert_eq!(inner("("), "");
    }

    #[test]
    fn matrix_rows_split_on_double_backslashes() {
        assert_eq!(
            matrix_rows("\\begin{pmatrix}1&2\\\\ 3&4 \\\\\\end{bmatrix}"),
            Some(vec!["1&2", "3&4"])
        );
        assert_eq!(matrix_rows("\\begin{pmatrix}1"), None);
    }

    #[test]
    fn equations_become_differences() {
        assert_eq!(equation_difference(" y = 2x+1"), "y - (2x+1)");
        assert!(short_left_side("xy =3"));
        assert!(!short_left_side("abc=3"));
        assert_eq!(right_side("x= 3"), " 3");
    }
}
