//! Python's `int(s)` on a string, base 10: what the reference reads line numbers with.

use crate::words::is_py_space;

/// CPython (3.11 and later, 3.10.7 and later) refuses to convert a string of more digits.
const MAX_STR_DIGITS: usize = 4300;

/// `int(s)` as Python computes it, or `None` where Python raises `ValueError`.
///
/// Python accepts surrounding whitespace (its own definition), one sign, single underscores
/// between digits, and any Unicode decimal digit (`int("٣")` is 3). Python's integers are
/// unbounded; here a value beyond `i64` saturates to `i64::MIN` or `i64::MAX`. Only
/// comparisons with line counts follow, so this changes nothing unless two different values
/// beyond ±9.2e18 meet in one program (and a range that long would never finish in Python).
pub(crate) fn py_int(s: &str) -> Option<i64> {
    let s = s.trim_matches(is_py_space);
    let (negative, digits) = match s.as_bytes().first() {
        Some(b'-') => (true, &s[1..]),
        Some(b'+') => (false, &s[1..]),
        _ => (false, s),
    };
    let mut magnitude: u64 = 0;
    let mut count = 0usize;
    // Starting as if after an underscore rejects a leading one.
    let mut after_underscore = true;
    for c in digits.chars() {
        if c == '_' {
            if after_underscore {
                return None;
            }
            after_underscore = true;
            continue;
        }
        let digit = decimal_value(c)?;
        after_underscore = false;
        count += 1;
        magnitude = magnitude
            .saturating_mul(10)
            .saturating_add(u64::from(digit));
    }
    if count == 0 || after_underscore || count > MAX_STR_DIGITS {
        return None;
    }
    Some(if negative {
        0i64.checked_sub_unsigned(magnitude).unwrap_or(i64::MIN)
    } else {
        i64::try_from(magnitude).unwrap_or(i64::MAX)
    })
}

/// The value of a character with the Unicode `Nd` (decimal digit) property.
fn decimal_value(c: char) -> Option<u32> {
    if let Some(digit) = c.to_digit(10) {
        return Some(digit);
    }
    let c = u32::from(c);
    let index = DECIMAL_RANGES.partition_point(|&(_, last)| last < c);
    let &(first, last) = DECIMAL_RANGES.get(index)?;
    (first..=last).contains(&c).then(|| (c - first) % 10)
}

/// Runs of decimal digits, each starting at a zero (Unicode 14.0, as in Python 3.11;
/// `U+1D7CE..=U+1D7FF` is five runs of mathematical digits back to back).
const DECIMAL_RANGES: [(u32, u32); 62] = [
    (0x30, 0x39),
    (0x660, 0x669),
    (0x6f0, 0x6f9),
    (0x7c0, 0x7c9),
    (0x966, 0x96f),
    (0x9e6, 0x9ef),
    (0xa66, 0xa6f),
    (0xae6, 0xaef),
    (0xb66, 0xb6f),
    (0xbe6, 0xbef),
    (0xc66, 0xc6f),
    (0xce6, 0xcef),
    (0xd66, 0xd6f),
    (0xde6, 0xdef),
    (0xe50, 0xe59),
    (0xed0, 0xed9),
    (0xf20, 0xf29),
    (0x1040, 0x1049),
    (0x1090, 0x1099),
    (0x17e0, 0x17e9),
    (0x1810, 0x1819),
    (0x1946, 0x194f),
    (0x19d0, 0x19d9),
    (0x1a80, 0x1a89),
    (0x1a90, 0x1a99),
    (0x1b50, 0x1b59),
    (0x1bb0, 0x1bb9),
    (0x1c40, 0x1c49),
    (0x1c50, 0x1c59),
    (0xa620, 0xa629),
    (0xa8d0, 0xa8d9),
    (0xa900, 0xa909),
    (0xa9d0, 0xa9d9),
    (0xa9f0, 0xa9f9),
    (0xaa50, 0xaa59),
    (0xabf0, 0xabf9),
    (0xff10, 0xff19),
    (0x104a0, 0x104a9),
    (0x10d30, 0x10d39),
    (0x11066, 0x1106f),
    (0x110f0, 0x110f9),
    (0x11136, 0x1113f),
    (0x111d0, 0x111d9),
    (0x112f0, 0x112f9),
    (0x11450, 0x11459),
    (0x114d0, 0x114d9),
    (0x11650, 0x11659),
    (0x116c0, 0x116c9),
    (0x11730, 0x11739),
    (0x118e0, 0x118e9),
    (0x11950, 0x11959),
    (0x11c50, 0x11c59),
    (0x11d50, 0x11d59),
    (0x11da0, 0x11da9),
    (0x16a60, 0x16a69),
    (0x16ac0, 0x16ac9),
    (0x16b50, 0x16b59),
    (0x1d7ce, 0x1d7ff),
    (0x1e140, 0x1e149),
    (0x1e2f0, 0x1e2f9),
    (0x1e950, 0x1e959),
    (0x1fbf0, 0x1fbf9),
];

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_what_python_int_reads() {
        let cases = [
            ("3", Some(3)),
            (" 7 ", Some(7)),
            ("\t-2\n", Some(-2)),
            ("+5", Some(5)),
            ("00012", Some(12)),
            ("1_000", Some(1000)),
            ("0_1", Some(1)),
            ("٣_٣", Some(33)),
            ("１２", Some(12)),
            ("1\u{a0}", Some(1)),
            ("\x1c4\x1f", Some(4)),
            ("𝟗", Some(9)),
        ];
        for (text, expected) in cases {
            assert_eq!(py_int(text), expected, "{text:?}");
        }
    }

    #[test]
    fn refuses_what_python_int_refuses() {
        for text in [
            "", " ", "-", "+", "- 1", "+-1", "_1", "1_", "1__0", "+_1", "3.0", "0x10", "1e3", "²",
            "1 2", "\"3\"", "3)", "\u{0}1",
        ] {
            assert_eq!(py_int(text), None, "{text:?}");
        }
    }

    #[test]
    fn saturates_beyond_i64() {
        assert_eq!(py_int("99999999999999999999999"), Some(i64::MAX));
        assert_eq!(py_int("-99999999999999999999999"), Some(i64::MIN));
        assert_eq!(py_int("-9223372036854775808"), Some(i64::MIN));
        assert_eq!(py_int("9223372036854775807"), Some(i64::MAX));
    }

    #[test]
    fn refuses_more_digits_than_python_converts() {
        assert_eq!(py_int(&"1".repeat(4300)), Some(i64::MAX));
        assert_eq!(py_int(&"1".repeat(4301)), None);
        let underscored = format!("{}1", "1_".repeat(4299));
        assert_eq!(py_int(&underscored), Some(i64::MAX));
    }

    #[test]
    fn decimal_ranges_are_sorted_runs_of_tens() {
        for pair in DECIMAL_RANGES.windows(2) {
            assert!(pair[0].1 < pair[1].0);
        }
        for (first, last) in DECIMAL_RANGES {
            assert_eq!((last - first + 1) % 10, 0);
        }
    }
}
