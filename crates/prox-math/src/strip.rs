//! `strip_string`: the harness's normalisation of answers and ground truths (spec §7), step by
//! step, quirks included (`candy` loses its `and`, `info` becomes `\inftyo`).
//!
//! Patterns are written for Python's `re`: its `\w` is `str.isalnum()` or `_` (letters and
//! every numeric character, `²` and `½` included, combining marks not), which is spelled
//! `[\p{L}\p{N}_]` here because Rust's `\w` differs; `\d` (Unicode Nd) and `.` (anything but
//! `\n`) mean the same in both.

use std::sync::LazyLock;

use regex::{NoExpand, Regex};

use crate::{python, w2n};

/// Python's `\W`.
const NOT_WORD: &str = r"[^\p{L}\p{N}_]";

/// The harness's `unit_texts`, in its order (typos and repeats included).
const UNIT_TEXTS: [&str; 132] = [
    "east",
    "degree",
    "mph",
    "kmph",
    "ft",
    "m sqaure",
    " m east",
    "sq m",
    "deg",
    "mile",
    "q .",
    "monkey",
    "prime",
    "ratio",
    "profit of rs",
    "rd",
    "o",
    "gm",
    "p . m",
    "lb",
    "tile",
    "per",
    "dm",
    "lt",
    "gain",
    "ab",
    "way",
    "west",
    "a .",
    "b .",
    "c .",
    "d .",
    "e .",
    "f .",
    "g .",
    "h .",
    "t",
    "a",
    "h",
    "no change",
    "men",
    "soldier",
    "pie",
    "bc",
    "excess",
    "st",
    "inches",
    "noon",
    "percent",
    "by",
    "gal",
    "kmh",
    "c",
    "acre",
    "rise",
    "a . m",
    "th",
    "π r 2",
    "sq",
    "mark",
    "l",
    "toy",
    "coin",
    "sq . m",
    "gallon",
    "° f",
    "profit",
    "minw",
    "yr",
    "women",
    "feet",
    "am",
    "pm",
    "hr",
    "cu cm",
    "square",
    "v â € ™",
    "are",
    "rupee",
    "rounds",
    "cubic",
    "cc",
    "mtr",
    "s",
    "ohm",
    "number",
    "kmph",
    "day",
    "hour",
    "minute",
    "min",
    "second",
    "man",
    "woman",
    "sec",
    "cube",
    "mt",
    "sq inch",
    "mp",
    "∏ cm ³",
    "hectare",
    "more",
    "sec",
    "unit",
    "cu . m",
    "cm 2",
    "rs .",
    "rs",
    "kg",
    "g",
    "month",
    "km",
    "m",
    "cm",
    "mm",
    "apple",
    "liter",
    "loss",
    "yard",
    "pure",
    "year",
    "increase",
    "decrease",
    "d",
    "less",
    "Surface",
    "litre",
    "pi sq m",
    "s .",
    "metre",
    "meter",
    "inch",
];

fn pattern(source: &str) -> Regex {
    Regex::new(source).expect("the harness's patterns compile")
}

/// A unit pattern and the literal pieces between its wildcards, each of which a text must
/// contain for the pattern to match: a cheap test that skips most of the 264 patterns.
struct Unit {
    pieces: Vec<String>,
    pattern: Regex,
}

/// The 264 unit patterns: each unit, then each unit + `s`. A unit is used unescaped in the
/// harness, so its `.` stays a wildcard; nothing else in the list is a metacharacter.
static UNITS: LazyLock<Vec<Unit>> = LazyLock::new(|| {
    let units = UNIT_TEXTS
        .iter()
        .map(|u| u.to_string())
        .chain(UNIT_TEXTS.iter().map(|u| format!("{u}s")));
    units
        .map(|unit| {
            let pieces: Vec<String> = unit
                .split('.')
                .filter(|p| !p.is_empty())
                .map(str::to_owned)
                .collect();
            let body: String = unit
                .split('.')
                .map(regex::escape)
                .collect::<Vec<_>>()
                .join(".");
            Unit {
                pieces,
                pattern: pattern(&format!("(^|{NOT_WORD}){body}($|{NOT_WORD})")),
            }
        })
        .collect()
});

static ARRAY_BEGIN: LazyLock<Regex> = LazyLock::new(|| pattern(r"\\begin\{array\}\{.*?\}"));
static TRAILING_TEXT: LazyLock<Regex> = LazyLock::new(|| pattern(r"\\text\{.*?\}$"));
static TEXT: LazyLock<Regex> = LazyLock::new(|| pattern(r"\\text\{(.*?)\}"));
static MBOX: LazyLock<Regex> = LazyLock::new(|| pattern(r"\\mbox\{.*?\}"));
static ZEROS_BEFORE: LazyLock<Regex> = LazyLock::new(|| pattern(r"(\d+)\.0*([^\d])"));
static ZEROS_AT_END: LazyLock<Regex> = LazyLock::new(|| pattern(r"(\d+)\.0*$"));
static SQRT: LazyLock<Regex> = LazyLock::new(|| pattern(r"\\sqrt([\p{L}\p{N}_]+)"));

/// The harness's `strip_string(x)` for `str(x)` = `text`.
pub fn strip_string(text: &str) -> String {
    // 1. Outer space, line breaks, trailing full stops, negative thin spaces.
    let mut s = python::strip(text)
        .replace('\n', "")
        .trim_end_matches('.')
        .replace("\\!", "");

    // 2. Matrices and fractions spelled one way; no \left, \right; \{ \} as braces.
    s = ARRAY_BEGIN
        .replace_all(&s, NoExpand("\\begin{pmatrix}"))
        .into_owned();
    s = s
        .replace("\\end{array}", "\\end{pmatrix}")
        .replace("bmatrix", "pmatrix")
        .replace("tfrac", "frac")
        .replace("dfrac", "frac")
        .replace("\\left", "")
        .replace("\\right", "")
        .replace("\\{", "{")
        .replace("\\}", "}");

    // 3. A trailing \text{...} (a unit), unless nothing else is left.
    let without_text = python::strip(&TRAILING_TEXT.replace_all(&s, "")).to_owned();
    if !without_text.is_empty() && without_text != s {
        s = without_text;
    }

    // 4. Unit words, twice over, unless a removal leaves nothing.
    for _ in 0..2 {
        for unit in UNITS.iter() {
            if !unit.pieces.iter().all(|piece| s.contains(piece.as_str())) {
                continue;
            }
            let replaced = unit.pattern.replace_all(&s, "${1}${2}");
            if !replaced.is_empty() {
                s = replaced.into_owned();
            }
        }
    }

    // 5. Degrees and dollars.
    s = s
        .replace("^{\\circ}", "")
        .replace("^\\circ", "")
        .replace("\\$", "")
        .replace('$', "");

    // 6. Number words.
    if let Ok(number) = w2n::word_to_num(&s) {
        s = number.to_python_str();
    }

    // 7. \text{...} unwrapped, variable names, sets, percentages.
    s = TEXT.replace_all(&s, "${1}").into_owned();
    for key in [
        "x=", "y=", "z=", "x\\in", "y\\in", "z\\in", "x\\to", "y\\to", "z\\to",
    ] {
        s = s.replace(key, "");
    }
    s = s
        .replace("\\emptyset", "{}")
        .replace("(-\\infty,\\infty)", "\\mathbb{R}")
        .replace("\\%", "")
        .replace('%', "");

    // 8. Leading zeros for bare decimals. (The harness's bracket strip here needs `{`…`}` text
    // that is also alphanumeric, so it never applies.)
    s = s.replace(" .", " 0.").replace("{.", "{0.");

    // 9. Infinity, `and`, bold, \mbox{...}.
    s = s.replace("infinity", "\\infty");
    if !s.contains("\\infty") {
        s = s.replace("inf", "\\infty");
    }
    s = s
        .replace("+\\inity", "\\infty")
        .replace("and", "")
        .replace("\\mathbf", "");
    s = MBOX.replace_all(&s, "").into_owned();

    // 10. j as the imaginary unit when there is no i.
    if s.contains('j') && !s.contains('i') {
        s = s.replace('j', "i");
    }

    // 11. Zero fractional parts.
    s = ZEROS_BEFORE.replace_all(&s, "${1}${2}").into_owned();
    s = ZEROS_AT_END.replace_all(&s, "${1}").into_owned();

    // 12. Empty, leading `.`, a short left side of one `=`.
    if s.is_empty() {
        return s;
    }
    if s.starts_with('.') {
        s.insert(0, '0');
    }
    if let Some((left, right)) = s.split_once('=') {
        if !right.contains('=') && left.chars().count() <= 2 {
            s = right.to_owned();
        }
    }

    // 13. \sqrt2 → \sqrt{2}; no spaces.
    s = SQRT.replace_all(&s, "\\sqrt{${1}}").into_owned();
    s = s.replace(' ', "");

    // 14–15. \frac12 → \frac{1}{2}; a/b → \frac{a}{b}.
    let s = fix_fracs(&s);
    fix_a_slash_b(&s)
}

/// `_fix_fracs`: braces for one-character numerators and denominators after `\frac`.
fn fix_fracs(s: &str) -> String {
    let mut pieces = s.split("\\frac");
    let mut out = pieces.next().unwrap_or_default().to_owned();
    for piece in pieces {
        out.push_str("\\frac");
        if piece.starts_with('{') {
            out.push_str(piece);
            continue;
        }
        let mut chars = piece.chars();
        let (Some(a), Some(b)) = (chars.next(), chars.next()) else {
            return s.to_owned();
        };
        let rest = chars.as_str();
        if b == '{' {
            out.push_str(&format!("{{{a}}}{b}{rest}"));
        } else {
            out.push_str(&format!("{{{a}}}{{{b}}}{rest}"));
        }
    }
    out
}

/// `_fix_a_slash_b`: `a/b` with both sides plain integers (or holding `sqrt`) → `\frac{a}{b}`.
fn fix_a_slash_b(s: &str) -> String {
    let Some((a, b)) = s.split_once('/') else {
        return s.to_owned();
    };
    if b.contains('/') {
        return s.to_owned();
    }
    // Python's int() is lenient (`01`, `+1`, ` 1`), but the text must then read back as
    // `{a}/{b}`, so only canonical integers pass.
    let canonical =
        |side: &str| side.contains("sqrt") || python::int_text(side).as_deref() == Some(side);
    if canonical(a) && canonical(b) {
        format!("\\frac{{{a}}}{{{b}}}")
    } else {
        s.to_owned()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn strip_string_reproduces_the_spec_examples() {
        let cases = [
            ("a + b", "b"),
            ("\\frac{a}{b}", "\\frac{}{b}"),
            ("10 m/s", "10/"),
            ("1 \\pm \\sqrt{19}", "1\\\\sqrt{19}"),
            ("\\text{east}", ""),
            ("864 \\mbox{ inches}^2", "864^2"),
            ("x = 5", "5"),
            ("145.0", "145"),
            ("3:30 p.m.", "3:30p."),
            ("3:30p.", "3:30p"),
            ("\\frac12", "\\frac{1}{2}"),
            ("\\frac1{72}", "\\frac{1}{72}"),
            ("-1/2", "\\frac{-1}{2}"),
            ("01/2", "01/2"),
            ("+1/2", "+1/2"),
            ("0.5/2", "0.5/2"),
            ("\\sqrt2/2", "\\frac{\\sqrt{2}}{2}"),
            ("one hundred and twenty", "120"),
            ("candy", "cy"),
            ("info", "\\inftyo"),
            ("12.50", "12.50"),
            ("5.x", "5x"),
            ("5.000", "5"),
            (".5", "0.5"),
            ("\\dfrac{1}{2}", "\\frac{1}{2}"),
            ("\\left( 1, 2 \\right)", "(1,2)"),
            ("\\$ 5", "5"),
            ("50\\%", "50"),
            ("3 + 2j", "3+2i"),
            (
                "\\begin{array}{cc} 1 & 2 \\end{array}",
                "\\begin{pmatrix}1&2\\end{pmatrix}",
            ),
            ("5 \\text{ cm}", "5"),
            ("90^\\circ", "90"),
            ("(-\\infty,\\infty)", "\\mathbb{R}"),
            ("\\emptyset", "{}"),
        ];
        let wrong: Vec<String> = cases
            .iter()
            .filter(|(input, want)| strip_string(input) != *want)
            .map(|(input, want)| format!("{input:?}: {:?} != {want:?}", strip_string(input)))
            .collect();
        assert!(wrong.is_empty(), "{wrong:#?}");
    }

    #[test]
    fn units_match_at_python_word_boundaries() {
        // `²` is a word character to Python, so `m²` keeps its `m`; a combining mark is not.
        assert_eq!(strip_string("5 m²"), "5m²");
        assert_eq!(strip_string("5 m"), "5");
        assert_eq!(strip_string("5 cm"), "5");
        // Matches do not overlap: the first removal consumes the space the second `g` needs,
        // and the second pass takes it.
        assert_eq!(strip_string("7 g g"), "7");
    }

    proptest::proptest! {
        #[test]
        fn strip_string_never_panics(s in "\\PC{0,60}") {
            let _ = strip_string(&s);
        }

        #[test]
        fn strip_string_never_panics_on_latex_like_text(s in "[\\\\{}()\\[\\]a-z0-9 .,/=^_$%-]{0,40}") {
            let _ = strip_string(&s);
        }
    }
}
