//! The few Python string operations the prompt functions and request formation rely on,
//! with Python's exact semantics.

/// Python's `str.isspace` for one character: Unicode White_Space, plus the four separators
/// U+001C to U+001F that Python also counts.
pub fn python_isspace(c: char) -> bool {
    c.is_whitespace() || ('\u{1c}'..='\u{1f}').contains(&c)
}

/// Python's `str.strip()`.
pub fn python_strip(text: &str) -> &str {
    text.trim_matches(python_isspace)
}

/// Python's `str.rstrip()`.
pub fn python_rstrip(text: &str) -> &str {
    text.trim_end_matches(python_isspace)
}

/// Python's `str.capitalize()` (3.8 and later): the first character in title case, all the
/// others in lower case.
pub fn python_capitalize(text: &str) -> String {
    let mut chars = text.chars();
    let Some(first) = chars.next() else {
        return String::new();
    };
    let mut out = titlecase(first);
    out.push_str(&chars.as_str().to_lowercase());
    out
}

/// The title case of a character where it differs from the upper case (digraphs, `ß`, Latin
/// ligatures), else its upper case.
fn titlecase(c: char) -> String {
    match c {
        '\u{1c4}'..='\u{1c6}' => "\u{1c5}".into(),
        '\u{1c7}'..='\u{1c9}' => "\u{1c8}".into(),
        '\u{1ca}'..='\u{1cc}' => "\u{1cb}".into(),
        '\u{1f1}'..='\u{1f3}' => "\u{1f2}".into(),
        'ß' => "Ss".into(),
        '\u{fb00}' => "Ff".into(),
        '\u{fb01}' => "Fi".into(),
        '\u{fb02}' => "Fl".into(),
        '\u{fb03}' => "Ffi".into(),
        '\u{fb04}' => "Ffl".into(),
        '\u{fb05}' | '\u{fb06}' => "St".into(),
        _ => c.to_uppercase().collect(),
    }
}

/// lighteval's `hellaswag_preprocess` (defaults): every ` [title]` becomes `. `, every
/// bracketed span (`re.sub(r"\[.*?\]", "")`: the shortest, no newline inside) is deleted, then
/// one left-to-right pass turns each double space into one.
pub fn hellaswag_preprocess(text: &str) -> String {
    let text = text.replace(" [title]", ". ");
    let mut out = String::with_capacity(text.len());
    let mut rest = text.as_str();
    while let Some(open) = rest.find('[') {
        let after = &rest[open + 1..];
        let close = after.find(']');
        let newline = after.find('\n');
        match close {
            Some(close) if newline.is_none_or(|n| n > close) => {
                out.push_str(&rest[..open]);
                rest = &after[close + 1..];
            }
            _ => {
                // No match starting here: keep the `[` and look again after it.
                out.push_str(&rest[..=open]);
                rest = after;
            }
        }
    }
    out.push_str(rest);
    out.replace("  ", " ")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn capitalize_lowers_the_rest() {
        assert_eq!(python_capitalize("hELLO World"), "Hello world");
        assert_eq!(python_capitalize("ǆemal"), "ǅemal");
        assert_eq!(python_capitalize(""), "");
    }

    #[test]
    fn hellaswag_cleanup_follows_the_regex() {
        assert_eq!(
            hellaswag_preprocess("How to x [title] Do y. [step] Then z."),
            "How to x. Do y. Then z."
        );
        assert_eq!(hellaswag_preprocess("a [b\n] c [d[e] f"), "a [b\n] c f");
        assert_eq!(hellaswag_preprocess("a   b"), "a  b");
    }

    #[test]
    fn python_whitespace_includes_the_information_separators() {
        assert_eq!(python_rstrip("x \u{1f}\n"), "x");
        assert_eq!(python_strip("\u{a0} y \u{3000}"), "y");
    }
}
