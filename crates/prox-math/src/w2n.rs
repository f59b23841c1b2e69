//! A literal port of PyPI `word2number` 1.1 (`w2n.word_to_num`), which the harness's
//! `strip_string` applies to every answer. Its quirks are the behaviour: every word that is not
//! a number word is ignored, `and` included, and a grouping bug turns `two million three
//! thousand` into 2004003.

use crate::python;

/// What `word_to_num` returns: a Python `int` or, with a decimal part, a `float`.
#[derive(Debug, Clone, PartialEq)]
pub enum Number {
    /// An `int`, as the decimal text Python's `str()` gives (all-digit input can be longer than
    /// any machine integer).
    Int(String),
    Float(f64),
}

impl Number {
    /// Python's `str()` of the number.
    pub fn to_python_str(&self) -> String {
        match self {
            Number::Int(text) => text.clone(),
            Number::Float(x) => python::float_repr(*x),
        }
    }
}

fn word_value(word: &str) -> Option<Value> {
    let n = match word {
        "zero" => 0,
        "one" => 1,
        "two" => 2,
        "three" => 3,
        "four" => 4,
        "five" => 5,
        "six" => 6,
        "seven" => 7,
        "eight" => 8,
        "nine" => 9,
        "ten" => 10,
        "eleven" => 11,
        "twelve" => 12,
        "thirteen" => 13,
        "fourteen" => 14,
        "fifteen" => 15,
        "sixteen" => 16,
        "seventeen" => 17,
        "eighteen" => 18,
        "nineteen" => 19,
        "twenty" => 20,
        "thirty" => 30,
        "forty" => 40,
        "fifty" => 50,
        "sixty" => 60,
        "seventy" => 70,
        "eighty" => 80,
        "ninety" => 90,
        "hundred" => 100,
        "thousand" => 1000,
        "million" => 1_000_000,
        "billion" => 1_000_000_000,
        "point" => return Some(Value::Point),
        _ => return None,
    };
    Some(Value::Int(n))
}

/// A value of w2n's `american_number_system`: a number, or `'.'` for `point`.
#[derive(Debug, Clone, Copy, PartialEq)]
enum Value {
    Int(i128),
    Point,
}

/// Why `word_to_num` raised; the harness catches every one of them and keeps the text.
#[derive(Debug, Clone, PartialEq)]
pub struct NotANumber;

const DECIMAL_WORDS: [&str; 10] = [
    "zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine",
];

/// `number_formation`: 4 words `a*b + c + d`, 3 words `a*b + c`, 2 words `a*b` when one is
/// `hundred` else `a + b`, otherwise the first word alone. An empty slice raises (`IndexError`).
fn number_formation(words: &[&str]) -> Result<i128, NotANumber> {
    let numbers = words
        .iter()
        .map(|w| match word_value(w) {
            Some(Value::Int(n)) => Ok(n),
            // `'.'` in arithmetic raises TypeError in Python; `point` never gets here.
            _ => Err(NotANumber),
        })
        .collect::<Result<Vec<i128>, NotANumber>>()?;
    Ok(match numbers.as_slice() {
        [a, b, c, d] => a * b + c + d,
        [a, b, c] => a * b + c,
        [a, b] if *a == 100 || *b == 100 => a * b,
        [a, b] => a + b,
        [a, ..] => *a,
        [] => return Err(NotANumber),
    })
}

/// `get_decimal_sum`: the digit words after `point` as a fraction, or 0 when one of them is
/// not a digit word.
fn decimal_sum(words: &[&str]) -> Result<Option<f64>, NotANumber> {
    let mut text = String::from("0.");
    for word in words {
        match DECIMAL_WORDS.iter().position(|d| d == word) {
            Some(digit) => text.push_str(&digit.to_string()),
            None => return Ok(None),
        }
    }
    python::parse_float(&text).map(Some).ok_or(NotANumber)
}

/// `w2n.word_to_num(sentence)`.
pub fn word_to_num(sentence: &str) -> Result<Number, NotANumber> {
    let sentence = sentence.replace('-', " ").to_lowercase();
    if !sentence.is_empty()
        && sentence
            .chars()
            .all(|c| python::int_text(&c.to_string()).is_some())
    {
        // `str.isdigit()` then `int()`; digits that are not decimal (`²`) make `int()` raise,
        // which is also what the word path below ends in for them.
        return python::int_text(&sentence)
            .map(Number::Int)
            .ok_or(NotANumber);
    }
    let mut numbers: Vec<&str> = python::split_whitespace(&sentence)
        .filter(|w| word_value(w).is_some())
        .collect();
    if numbers.is_empty() {
        return Err(NotANumber);
    }
    let count = |numbers: &[&str], word: &str| numbers.iter().filter(|w| **w == word).count();
    if ["thousand", "million", "billion", "point"]
        .iter()
        .any(|w| count(&numbers, w) > 1)
    {
        return Err(NotANumber);
    }
    let mut decimals: Vec<&str> = Vec::new();
    if let Some(point) = numbers.iter().position(|w| *w == "point") {
        decimals = numbers[point + 1..].to_vec();
        numbers.truncate(point);
    }
    let index = |word: &str| numbers.iter().position(|w| *w == word).map(|i| i as i64);
    let billion = index("billion").unwrap_or(-1);
    let million = index("million").unwrap_or(-1);
    let thousand = index("thousand").unwrap_or(-1);
    if (thousand > -1 && (thousand < million || thousand < billion))
        || (million > -1 && million < billion)
    {
        return Err(NotANumber);
    }
    let slice = |from: i64, to: i64| -> &[&str] {
        let (from, to) = (from.max(0) as usize, to.max(0) as usize);
        if from >= to {
            &[]
        } else {
            &numbers[from..to]
        }
    };
    let last = numbers.len() as i64 - 1;
    let mut total: i128 = 0;
    if numbers.len() == 1 {
        match word_value(numbers[0]) {
            Some(Value::Int(n)) => total += n,
            _ => return Err(NotANumber),
        }
    } else if numbers.len() > 1 {
        if billion > -1 {
            total += number_formation(slice(0, billion))? * 1_000_000_000;
        }
        if million > -1 {
            let multiplier = if billion > -1 {
                number_formation(slice(billion + 1, million))?
            } else {
                number_formation(slice(0, million))?
            };
            total += multiplier * 1_000_000;
        }
        if thousand > -1 {
            let multiplier = if million > -1 {
                number_formation(slice(million + 1, thousand))?
            } else if billion > -1 {
                number_formation(slice(billion + 1, thousand))?
            } else {
                number_formation(slice(0, thousand))?
            };
            total += multiplier * 1000;
        }
        let hundreds = if thousand > -1 && thousand != last {
            number_formation(slice(thousand + 1, last + 1))?
        } else if million > -1 && million != last {
            number_formation(slice(million + 1, last + 1))?
        } else if billion > -1 && billion != last {
            number_formation(slice(billion + 1, last + 1))?
        } else if thousand == -1 && million == -1 && billion == -1 {
            number_formation(&numbers)?
        } else {
            0
        };
        total += hundreds;
    }
    if !decimals.is_empty() {
        if let Some(fraction) = decimal_sum(&decimals)? {
            return Ok(Number::Float(total as f64 + fraction));
        }
    }
    Ok(Number::Int(total.to_string()))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn num(s: &str) -> Option<String> {
        word_to_num(s).ok().map(|n| n.to_python_str())
    }

    #[test]
    fn word_to_num_reproduces_word2number_including_its_quirks() {
        let cases: [(&str, Option<&str>); 18] = [
            ("one hundred and twenty", Some("120")),
            ("007", Some("7")),
            ("point (1,2)", Some("0")),
            ("five point five", Some("5.5")),
            ("two million three thousand", Some("2004003")),
            (
                "two million twenty three thousand and forty nine",
                Some("2023049"),
            ),
            ("Twenty-Five", Some("25")),
            ("thousand", Some("1000")),
            ("point five", Some("0.5")),
            ("five point", Some("5")),
            ("five point x", Some("5")),
            ("the answer is 12", None),
            ("-5", None),
            ("thousand thousand", None),
            ("thousand million", None),
            ("thousand five", None),
            ("²", None),
            ("", None),
        ];
        let wrong: Vec<String> = cases
            .iter()
            .filter(|(input, want)| num(input).as_deref() != *want)
            .map(|(input, want)| format!("{input:?}: {:?} != {want:?}", num(input)))
            .collect();
        assert!(wrong.is_empty(), "{wrong:#?}");
    }

    #[test]
    fn number_formation_keeps_the_first_word_of_long_groups() {
        // Five words fall to the "else" branch: only the first counts.
        assert_eq!(num("one two three four five"), Some("1".into()));
        assert_eq!(num("one hundred twenty three"), Some("123".into()));
        assert_eq!(num("nine hundred"), Some("900".into()));
        assert_eq!(num("twenty three"), Some("23".into()));
    }

    proptest::proptest! {
        #[test]
        fn word_to_num_never_panics(s in "\\PC{0,40}") {
            let _ = word_to_num(&s);
        }
    }
}
