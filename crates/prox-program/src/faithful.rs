//! The reference's reader: string splitting, not Python parsing, with every quirk kept.
//!
//! Each rule below is what `execute_operations` in the reference's `utils/chunk_utils.py`
//! does; `tests/faithful.rs` pins them one by one.

use crate::program::{Call, LineKind, ProgramLine};
use crate::pyint::py_int;

/// The document stage of the reference: `"drop" in program`, a substring test.
///
/// This one is not read through [`lines`]: `undrop` or `# do not drop` drop the document
/// too, and a single line can hold both a `remove_lines` call and the word `drop`, so no
/// typed reading of the lines can reproduce the test.
pub(crate) fn doc_drops(program: &str) -> bool {
    program.contains("drop")
}

/// The lines of a chunk program as the reference reads them.
pub(crate) fn lines(program: &str) -> impl Iterator<Item = ProgramLine> + '_ {
    // Only spaces are stripped, and only from the ends of the whole program: the first line
    // loses its indentation, later lines keep theirs.
    program
        .trim_matches(' ')
        .split('\n')
        .enumerate()
        .map(|(index, line)| read_line(index + 1, line))
}

fn read_line(number: usize, line: &str) -> ProgramLine {
    if line.starts_with("remove_lines") {
        // `all=True` anywhere on the line wins, even inside a comment.
        if line.contains("all=True") {
            ProgramLine::new(number, LineKind::Call(Call::RemoveAllLines))
        } else {
            remove_lines(number, line)
        }
    } else if line.starts_with("normalize") {
        normalize(number, line)
    } else {
        ProgramLine::new(number, other_line(line))
    }
}

fn other_line(line: &str) -> LineKind {
    let trimmed = line.trim();
    if trimmed.is_empty() || trimmed.starts_with("```") {
        LineKind::Blank
    } else if line.starts_with('#') {
        LineKind::Comment
    } else if trimmed.starts_with("remove_lines") || trimmed.starts_with("normalize") {
        LineKind::Ignored("indented: the reference only reads lines that start with a call")
    } else {
        LineKind::Ignored("not remove_lines or normalize")
    }
}

/// The text between the first `(` and the first `)`, by the reference's slicing rules, or
/// `None` when there is no `(`. A missing `)` is an error, yet the line goes on with
/// everything after `(` except the line's last character.
fn arguments<'a>(line: &'a str, errors: &mut Vec<String>) -> Option<&'a str> {
    let Some(open) = line.find('(') else {
        errors.push("no `(`".to_owned());
        return None;
    };
    let from = open + 1;
    let to = match line.find(')') {
        Some(close) => close,
        None => {
            errors.push("no `)`".to_owned());
            line.char_indices().next_back().map_or(0, |(last, _)| last)
        }
    };
    // Python slices backwards to the empty string: `normalize)(` has no arguments.
    Some(line.get(from..to).unwrap_or(""))
}

/// `part.split("=")[1]`: between the first `=` and the next one, or `None` without `=`.
fn after_equals(part: &str) -> Option<&str> {
    part.split('=').nth(1)
}

fn remove_lines(number: usize, line: &str) -> ProgramLine {
    let mut errors = Vec::new();
    let kind = match arguments(line, &mut errors) {
        None => LineKind::Error,
        Some(inside) => {
            let mut parts = inside.split(',');
            let start = parts.next().and_then(after_equals).and_then(py_int);
            let end = parts.next().and_then(after_equals).and_then(py_int);
            match (start, end) {
                (Some(start), Some(end)) => LineKind::Call(Call::RemoveLines { start, end }),
                _ => {
                    errors.push(
                        "remove_lines needs `start=<int>, end=<int>` as its first two arguments"
                            .to_owned(),
                    );
                    LineKind::Error
                }
            }
        }
    };
    ProgramLine {
        line: number,
        kind,
        errors,
    }
}

fn normalize(number: usize, line: &str) -> ProgramLine {
    let mut errors = Vec::new();
    let kind = match arguments(line, &mut errors) {
        None => LineKind::Error,
        Some(inside) => normalize_arguments(inside, &mut errors),
    };
    ProgramLine {
        line: number,
        kind,
        errors,
    }
}

fn normalize_arguments(inside: &str, errors: &mut Vec<String>) -> LineKind {
    let string = |part: &str| after_equals(part).map(|value| value.trim_matches('"').to_owned());
    let mut parts = inside.split(',');
    let first = parts.next().unwrap_or("");
    let second = parts.next();
    if parts.next().is_some() {
        // A comma inside a string splits it into three parts or more: the reference has no
        // branch for that, so the line passes silently.
        return LineKind::Ignored("normalize with a comma in a string: the reference skips it");
    }
    let missing_equals = |errors: &mut Vec<String>| {
        errors.push("normalize needs `source_str=\"…\"` (no `=` found)".to_owned());
        LineKind::Error
    };
    match second {
        None => match string(first) {
            // The one-argument form deletes, even a single space.
            Some(source) => LineKind::Call(Call::Normalize {
                source,
                target: None,
            }),
            None => missing_equals(errors),
        },
        Some(second) => match (string(first), string(second)) {
            (Some(source), Some(_)) if source.is_empty() || source == " " => {
                LineKind::Ignored("normalize of \"\" or \" \": the reference skips it")
            }
            (Some(source), Some(target)) => LineKind::Call(Call::Normalize {
                source,
                target: Some(target),
            }),
            _ => missing_equals(errors),
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn read(line: &str) -> ProgramLine {
        read_line(1, line)
    }

    fn call(line: &str) -> Option<Call> {
        read(line).call().cloned()
    }

    #[test]
    fn arguments_end_one_character_early_without_a_closing_parenthesis() {
        let mut errors = Vec::new();
        assert_eq!(arguments("f(ab", &mut errors), Some("a"));
        assert_eq!(arguments("f(aé", &mut errors), Some("a"));
        assert_eq!(arguments("f(", &mut errors), Some(""));
        assert_eq!(errors.len(), 3);
    }

    #[test]
    fn arguments_are_empty_when_the_parenthesis_closes_before_it_opens() {
        let mut errors = Vec::new();
        assert_eq!(arguments("f)(a)", &mut errors), Some(""));
        assert!(errors.is_empty());
    }

    #[test]
    fn remove_lines_reads_after_the_first_equals_sign() {
        assert_eq!(
            call("remove_lines(line_start=2, line_end=4)"),
            Some(Call::RemoveLines { start: 2, end: 4 })
        );
        assert_eq!(
            call("remove_lines(a=b=2, c=3)"),
            None,
            "`b` is between the first two `=`"
        );
        assert_eq!(
            call("remove_lines(x=1, y=2, z=3)"),
            Some(Call::RemoveLines { start: 1, end: 2 })
        );
    }

    #[test]
    fn normalize_strips_every_double_quote_at_both_ends() {
        assert_eq!(
            call(r#"normalize(source_str=""a"", target_str="b")"#),
            Some(Call::Normalize {
                source: "a".into(),
                target: Some("b".into())
            })
        );
        assert_eq!(
            call(r#"normalize(source_str = "a", target_str="b")"#),
            Some(Call::Normalize {
                source: " \"a".into(),
                target: Some("b".into())
            }),
            "a space before the quote keeps the quote"
        );
    }
}
