//! The few Python behaviours the harness's output depends on: `str.strip`, `str()` and `repr()`
//! of JSON values, float `repr`, `int()`/`float()` of text, `json.dumps`, and numpy's rounding.

use std::sync::LazyLock;

use regex::Regex;
use serde_json::Value;

/// Python's `str.isspace`: Unicode `White_Space` plus the four ASCII separators U+001C–U+001F,
/// which Rust's `char::is_whitespace` leaves out.
pub fn is_space(c: char) -> bool {
    c.is_whitespace() || ('\u{1c}'..='\u{1f}').contains(&c)
}

/// Python's `str.strip()`.
pub fn strip(s: &str) -> &str {
    s.trim_matches(is_space)
}

/// Python's `str.split()` without arguments.
pub fn split_whitespace(s: &str) -> impl Iterator<Item = &str> {
    s.split(is_space).filter(|w| !w.is_empty())
}

/// Python's `repr(float)` (also `str(float)` and `json.dumps` of a finite float): the shortest
/// digits that read back as the same value, in exponent form when the decimal point would sit
/// more than 16 places right of the first digit or 4 or more places left of it (`1e+16`,
/// `1e-05`), otherwise positional with at least one fractional digit (`145.0`).
pub fn float_repr(x: f64) -> String {
    if x.is_nan() {
        return "nan".to_owned();
    }
    if x.is_infinite() {
        return if x > 0.0 { "inf" } else { "-inf" }.to_owned();
    }
    let sign = if x.is_sign_negative() { "-" } else { "" };
    if x == 0.0 {
        return format!("{sign}0.0");
    }
    // Rust's `{:e}` prints the same shortest round-trip digits as Python's repr.
    let scientific = format!("{:e}", x.abs());
    let (mantissa, exponent) = scientific
        .split_once('e')
        .expect("`{:e}` of a finite float has an exponent");
    let exponent: i32 = exponent.parse().expect("`{:e}` exponents are integers");
    let digits: String = mantissa.chars().filter(|&c| c != '.').collect();
    // Python's `decpt`: the value is 0.DIGITS × 10^decpt.
    let decpt = exponent + 1;
    if decpt > 16 || decpt <= -4 {
        let (first, rest) = digits.split_at(1);
        let fraction = if rest.is_empty() {
            String::new()
        } else {
            format!(".{rest}")
        };
        let exp_sign = if exponent < 0 { '-' } else { '+' };
        return format!("{sign}{first}{fraction}e{exp_sign}{:02}", exponent.abs());
    }
    let len = digits.len() as i32;
    if decpt <= 0 {
        format!("{sign}0.{}{digits}", "0".repeat((-decpt) as usize))
    } else if decpt >= len {
        format!("{sign}{digits}{}.0", "0".repeat((decpt - len) as usize))
    } else {
        let (int, frac) = digits.split_at(decpt as usize);
        format!("{sign}{int}.{frac}")
    }
}

/// Python's `str()` of a value read from JSON (`None`, `True`, `145.0`, `['a', 'b']`).
pub fn str_of(value: &Value) -> String {
    match value {
        Value::String(s) => s.clone(),
        other => repr_of(other),
    }
}

/// Python's `repr()` of a value read from JSON.
pub fn repr_of(value: &Value) -> String {
    match value {
        Value::Null => "None".to_owned(),
        Value::Bool(true) => "True".to_owned(),
        Value::Bool(false) => "False".to_owned(),
        Value::Number(n) => number_text(n),
        Value::String(s) => repr_str(s),
        Value::Array(items) => {
            let items: Vec<String> = items.iter().map(repr_of).collect();
            format!("[{}]", items.join(", "))
        }
        Value::Object(map) => {
            let items: Vec<String> = map
                .iter()
                .map(|(k, v)| format!("{}: {}", repr_str(k), repr_of(v)))
                .collect();
            format!("{{{}}}", items.join(", "))
        }
    }
}

fn number_text(n: &serde_json::Number) -> String {
    if n.is_f64() {
        float_repr(n.as_f64().expect("an f64 number has an f64 value"))
    } else {
        n.to_string()
    }
}

/// Python's `repr(str)`: single quotes unless the text has a `'` and no `"`; backslash,
/// the quote, `\n`, `\r`, `\t` escaped; other non-printable characters as `\xNN`, `\uNNNN`
/// or `\UNNNNNNNN`.
pub fn repr_str(s: &str) -> String {
    let quote = if s.contains('\'') && !s.contains('"') {
        '"'
    } else {
        '\''
    };
    let mut out = String::with_capacity(s.len() + 2);
    out.push(quote);
    for c in s.chars() {
        match c {
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            c if c == quote => {
                out.push('\\');
                out.push(c);
            }
            c if is_printable(c) => out.push(c),
            c if (c as u32) < 0x100 => out.push_str(&format!("\\x{:02x}", c as u32)),
            c if (c as u32) < 0x10000 => out.push_str(&format!("\\u{:04x}", c as u32)),
            c => out.push_str(&format!("\\U{:08x}", c as u32)),
        }
    }
    out.push(quote);
    out
}

/// Python's `str.isprintable` for one character: not a control, format, separator (other than
/// the space) or private-use character.
fn is_printable(c: char) -> bool {
    static NON_PRINTABLE: LazyLock<Regex> = LazyLock::new(|| {
        Regex::new(r"^[\p{Cc}\p{Cf}\p{Co}\p{Zl}\p{Zp}\p{Zs}\p{Cn}]$")
            .expect("the non-printable class compiles")
    });
    if c == ' ' {
        return true;
    }
    if c.is_ascii() {
        return !c.is_ascii_control();
    }
    let mut buffer = [0u8; 4];
    !NON_PRINTABLE.is_match(c.encode_utf8(&mut buffer))
}

/// The value of a Unicode decimal digit (category Nd), as Python's `int()` reads it.
fn decimal_digit(c: char) -> Option<u32> {
    static ND: LazyLock<Regex> =
        LazyLock::new(|| Regex::new(r"^\p{Nd}$").expect("the Nd class compiles"));
    if c.is_ascii_digit() {
        return c.to_digit(10);
    }
    let is_nd = |c: char| {
        let mut buffer = [0u8; 4];
        ND.is_match(c.encode_utf8(&mut buffer))
    };
    if !is_nd(c) {
        return None;
    }
    // Unicode keeps every set of decimal digits contiguous, 0 to 9, so the distance from the
    // start of the run of Nd characters gives the value.
    let mut start = c as u32;
    while let Some(previous) = start.checked_sub(1).and_then(char::from_u32) {
        if !is_nd(previous) {
            break;
        }
        start -= 1;
    }
    Some((c as u32 - start) % 10)
}

/// Digits (any Unicode Nd) with single underscores between them, as Python's `int()` and
/// `float()` accept them, made ASCII; `None` when the text breaks the underscore rule or has
/// another character.
fn ascii_digits(s: &str) -> Option<String> {
    let mut out = String::with_capacity(s.len());
    let mut previous_was_digit = false;
    let mut chars = s.chars().peekable();
    while let Some(c) = chars.next() {
        if c == '_' {
            let next_is_digit = chars.peek().and_then(|&n| decimal_digit(n)).is_some();
            if !previous_was_digit || !next_is_digit {
                return None;
            }
            previous_was_digit = false;
            continue;
        }
        let digit = decimal_digit(c)?;
        out.push(char::from_digit(digit, 10).expect("a decimal digit is below 10"));
        previous_was_digit = true;
    }
    Some(out)
}

/// Python's `int(text)` for base 10, as a decimal string without leading zeros (`-0` is `0`);
/// `None` where Python raises `ValueError`.
pub fn int_text(text: &str) -> Option<String> {
    let s = strip(text);
    let (negative, body) = match s.strip_prefix('-') {
        Some(rest) => (true, rest),
        None => (false, s.strip_prefix('+').unwrap_or(s)),
    };
    if body.is_empty() {
        return None;
    }
    let digits = ascii_digits(body)?;
    if digits.is_empty() || digits.len() > MAX_INT_DIGITS {
        return None;
    }
    let trimmed = digits.trim_start_matches('0');
    Some(match (trimmed.is_empty(), negative) {
        (true, _) => "0".to_owned(),
        (false, true) => format!("-{trimmed}"),
        (false, false) => trimmed.to_owned(),
    })
}

/// Python 3.11's limit on the digits `int()` converts from text.
const MAX_INT_DIGITS: usize = 4300;

/// Python's `int(text)` where it fits an `i128`.
pub fn parse_int(text: &str) -> Option<i128> {
    int_text(text)?.parse().ok()
}

/// Python's `float(text)`; `None` where Python raises `ValueError`.
pub fn parse_float(text: &str) -> Option<f64> {
    let s = strip(text);
    let (sign, body) = match s.strip_prefix('-') {
        Some(rest) => ("-", rest),
        None => ("", s.strip_prefix('+').unwrap_or(s)),
    };
    let lower = body.to_ascii_lowercase();
    if matches!(lower.as_str(), "inf" | "infinity" | "nan") {
        return format!("{sign}{lower}").parse().ok();
    }
    // Mantissa digits, an optional fraction, an optional exponent; digit groups may hold
    // underscores between digits.
    let (mantissa, exponent) = match body.find(['e', 'E']) {
        Some(at) => (&body[..at], Some(&body[at + 1..])),
        None => (body, None),
    };
    let (int_part, frac_part) = match mantissa.split_once('.') {
        Some((i, f)) => (i, Some(f)),
        None => (mantissa, None),
    };
    let digits_or_empty = |part: &str| {
        if part.is_empty() {
            Some(String::new())
        } else {
            ascii_digits(part)
        }
    };
    let int_digits = digits_or_empty(int_part)?;
    let frac_digits = match frac_part {
        Some(f) => Some(digits_or_empty(f)?),
        None => None,
    };
    if int_digits.is_empty() && frac_digits.as_deref().is_none_or(str::is_empty) {
        return None;
    }
    let mut normal = format!("{sign}{int_digits}");
    if let Some(frac) = frac_digits {
        normal.push('.');
        normal.push_str(&frac);
    }
    if let Some(exponent) = exponent {
        let (exp_sign, exp_body) = match exponent.strip_prefix('-') {
            Some(rest) => ("-", rest),
            None => ("", exponent.strip_prefix('+').unwrap_or(exponent)),
        };
        if exp_body.is_empty() {
            return None;
        }
        normal.push('e');
        normal.push_str(exp_sign);
        normal.push_str(&ascii_digits(exp_body)?);
    }
    normal.parse().ok()
}

/// `eval()` of a Python list of string literals (`['a ) 1', "b ) 2"]`), the only literal the
/// harness evaluates; `None` for anything else.
pub fn parse_str_list(text: &str) -> Option<Vec<String>> {
    let mut chars = text.trim_matches(is_space).chars().peekable();
    let skip_space = |chars: &mut std::iter::Peekable<std::str::Chars<'_>>| {
        while chars.next_if(|&c| is_space(c)).is_some() {}
    };
    if chars.next()? != '[' {
        return None;
    }
    let mut items = Vec::new();
    loop {
        skip_space(&mut chars);
        match chars.next()? {
            ']' => break,
            quote @ ('\'' | '"') => {
                let mut item = String::new();
                loop {
                    match chars.next()? {
                        c if c == quote => break,
                        '\\' => match chars.next()? {
                            'n' => item.push('\n'),
                            't' => item.push('\t'),
                            'r' => item.push('\r'),
                            '0' => item.push('\0'),
                            '\n' => {}
                            c @ ('\\' | '\'' | '"') => item.push(c),
                            'x' => {
                                let hex: String = (0..2).filter_map(|_| chars.next()).collect();
                                item.push(char::from_u32(u32::from_str_radix(&hex, 16).ok()?)?);
                            }
                            'u' => {
                                let hex: String = (0..4).filter_map(|_| chars.next()).collect();
                                item.push(char::from_u32(u32::from_str_radix(&hex, 16).ok()?)?);
                            }
                            // Python keeps the backslash of an unknown escape.
                            c => {
                                item.push('\\');
                                item.push(c);
                            }
                        },
                        '\n' => return None,
                        c => item.push(c),
                    }
                }
                items.push(item);
                skip_space(&mut chars);
                match chars.next()? {
                    ',' => {}
                    ']' => break,
                    _ => return None,
                }
            }
            _ => return None,
        }
    }
    skip_space(&mut chars);
    chars.next().is_none().then_some(items)
}

/// numpy's `round(x, 1)`: `rint(x * 10) / 10`, halves to even.
pub fn round1(x: f64) -> f64 {
    (x * 10.0).round_ties_even() / 10.0
}

/// Python's `json.dumps(value)`: `", "` and `": "` separators, non-ASCII escaped.
pub fn json_dumps(value: &Value) -> String {
    let mut out = String::new();
    write_json(&mut out, value, None, 0);
    out
}

/// Python's `json.dump(value, f, indent=N)`: one member per line, `","` at line ends, no
/// final newline.
pub fn json_dumps_indented(value: &Value, indent: usize) -> String {
    let mut out = String::new();
    write_json(&mut out, value, Some(indent), 0);
    out
}

fn write_json(out: &mut String, value: &Value, indent: Option<usize>, depth: usize) {
    match value {
        Value::Null => out.push_str("null"),
        Value::Bool(b) => out.push_str(if *b { "true" } else { "false" }),
        Value::Number(n) => out.push_str(&json_number(n)),
        Value::String(s) => write_json_str(out, s),
        Value::Array(items) if items.is_empty() => out.push_str("[]"),
        Value::Object(map) if map.is_empty() => out.push_str("{}"),
        Value::Array(items) => {
            out.push('[');
            for (i, item) in items.iter().enumerate() {
                separate(out, i, indent, depth + 1);
                write_json(out, item, indent, depth + 1);
            }
            close(out, indent, depth);
            out.push(']');
        }
        Value::Object(map) => {
            out.push('{');
            for (i, (key, item)) in map.iter().enumerate() {
                separate(out, i, indent, depth + 1);
                write_json_str(out, key);
                out.push_str(": ");
                write_json(out, item, indent, depth + 1);
            }
            close(out, indent, depth);
            out.push('}');
        }
    }
}

fn separate(out: &mut String, i: usize, indent: Option<usize>, depth: usize) {
    match indent {
        None if i > 0 => out.push_str(", "),
        None => {}
        Some(width) => {
            if i > 0 {
                out.push(',');
            }
            out.push('\n');
            out.push_str(&" ".repeat(width * depth));
        }
    }
}

fn close(out: &mut String, indent: Option<usize>, depth: usize) {
    if let Some(width) = indent {
        out.push('\n');
        out.push_str(&" ".repeat(width * depth));
    }
}

fn json_number(n: &serde_json::Number) -> String {
    match n.as_f64() {
        Some(x) if n.is_f64() && x.is_infinite() => {
            if x > 0.0 { "Infinity" } else { "-Infinity" }.to_owned()
        }
        _ => number_text(n),
    }
}

fn write_json_str(out: &mut String, s: &str) {
    out.push('"');
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            '\u{8}' => out.push_str("\\b"),
            '\u{c}' => out.push_str("\\f"),
            c if (' '..='\u{7e}').contains(&c) || c == '\u{7f}' => out.push(c),
            c => {
                let mut units = [0u16; 2];
                for unit in c.encode_utf16(&mut units) {
                    out.push_str(&format!("\\u{unit:04x}"));
                }
            }
        }
    }
    out.push('"');
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn float_repr_follows_python_for_every_exponent_range() {
        let cases = [
            (145.0, "145.0"),
            (3.0 / 14.0, "0.21428571428571427"),
            (0.1, "0.1"),
            (1e16, "1e+16"),
            (1234567890123456.0, "1234567890123456.0"),
            (1.5e16, "1.5e+16"),
            (0.0001, "0.0001"),
            (0.00001, "1e-05"),
            (1.25e-7, "1.25e-07"),
            (-2.5, "-2.5"),
            (-0.0, "-0.0"),
            (0.0, "0.0"),
            (1e100, "1e+100"),
            (5e-324, "5e-324"),
            (f64::MAX, "1.7976931348623157e+308"),
            (f64::INFINITY, "inf"),
            (f64::NAN, "nan"),
            (100.0, "100.0"),
            (123456.789, "123456.789"),
        ];
        let wrong: Vec<String> = cases
            .iter()
            .filter(|(x, want)| float_repr(*x) != *want)
            .map(|(x, want)| format!("{x:?}: {} != {want}", float_repr(*x)))
            .collect();
        assert!(wrong.is_empty(), "{wrong:#?}");
    }

    #[test]
    fn strip_removes_the_ascii_separators_python_counts_as_space() {
        assert_eq!(strip("\u{1c} a b\u{a0}\u{3000}"), "a b");
        assert_eq!(strip("\u{200b}x"), "\u{200b}x");
    }

    #[test]
    fn repr_of_lists_quotes_like_python() {
        assert_eq!(repr_of(&json!(["yes", "no"])), "['yes', 'no']");
        assert_eq!(repr_of(&json!(["it's"])), "[\"it's\"]");
        assert_eq!(repr_of(&json!(["a'b\"c"])), "['a\\'b\"c']");
        assert_eq!(
            repr_of(&json!(["tab\there", "é", "\u{7f}"])),
            "['tab\\there', 'é', '\\x7f']"
        );
        assert_eq!(
            repr_of(&json!([1, 2.0, null, true])),
            "[1, 2.0, None, True]"
        );
    }

    #[test]
    fn int_and_float_accept_what_python_accepts() {
        assert_eq!(int_text(" 007 "), Some("7".into()));
        assert_eq!(int_text("-0"), Some("0".into()));
        assert_eq!(int_text("1_000"), Some("1000".into()));
        assert_eq!(int_text("\u{661}\u{662}"), Some("12".into()));
        assert_eq!(int_text("1__0"), None);
        assert_eq!(int_text("_1"), None);
        assert_eq!(int_text("1.0"), None);
        assert_eq!(int_text("²"), None);
        assert_eq!(int_text(""), None);
        assert_eq!(parse_float(" 1_0"), Some(10.0));
        assert_eq!(parse_float("1e3"), Some(1000.0));
        assert_eq!(parse_float(".5"), Some(0.5));
        assert_eq!(parse_float("5."), Some(5.0));
        assert_eq!(parse_float("-Infinity"), Some(f64::NEG_INFINITY));
        assert!(parse_float("nan").is_some_and(f64::is_nan));
        assert_eq!(parse_float("."), None);
        assert_eq!(parse_float("1e"), None);
        assert_eq!(parse_float("1_.5"), None);
        assert_eq!(parse_float("0x10"), None);
        assert_eq!(parse_float("1,000"), None);
    }

    #[test]
    fn python_string_lists_are_read_as_eval_reads_them() {
        assert_eq!(
            parse_str_list("['a ) 1', \"b ) it's\", 'c\\'d' , ]"),
            Some(vec![
                "a ) 1".to_owned(),
                "b ) it's".to_owned(),
                "c'd".to_owned()
            ])
        );
        assert_eq!(parse_str_list("[]"), Some(vec![]));
        assert_eq!(parse_str_list("['a', 1]"), None);
        assert_eq!(parse_str_list("['a'] x"), None);
        assert_eq!(parse_str_list("['a'"), None);
    }

    #[test]
    fn rounding_goes_half_to_even_on_the_binary_value() {
        assert_eq!(round1(0.25), 0.2);
        // 0.35 is just below 0.35, but × 10 rounds to exactly 3.5, which goes to 4: numpy
        // gives 0.4 where Python's round() gives 0.3.
        assert_eq!(round1(0.35), 0.4);
        assert_eq!(round1(0.45), 0.4);
        assert_eq!(round1(12.5 / 10.0 * 10.0), 12.5);
        assert_eq!(round1(2.0 / 3.0 * 100.0), 66.7);
        assert_eq!(round1(0.45 * 100.0), 45.0);
    }

    #[test]
    fn json_dumps_escapes_like_python() {
        let value = json!({"idx": 3, "q": "é\n\"x\"\u{1}😀", "l": [1.0, null, true], "e": {}});
        assert_eq!(
            json_dumps(&value),
            r#"{"idx": 3, "q": "\u00e9\n\"x\"\u0001\ud83d\ude00", "l": [1.0, null, true], "e": {}}"#
        );
    }

    #[test]
    fn indented_json_matches_pythons_layout() {
        let value = json!({"a": 1, "b": {"x": 2.5}, "c": []});
        assert_eq!(
            json_dumps_indented(&value, 4),
            "{\n    \"a\": 1,\n    \"b\": {\n        \"x\": 2.5\n    },\n    \"c\": []\n}"
        );
    }

    proptest::proptest! {
        #[test]
        fn float_repr_reads_back_as_the_same_float(bits in proptest::num::u64::ANY) {
            let x = f64::from_bits(bits);
            proptest::prop_assume!(x.is_finite());
            let text = float_repr(x);
            proptest::prop_assert_eq!(text.parse::<f64>().ok().map(f64::to_bits), Some(x.to_bits()));
            proptest::prop_assert_eq!(parse_float(&text).map(f64::to_bits), Some(x.to_bits()));
        }
    }
}
