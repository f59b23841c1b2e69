//! Answer extraction (spec §6): the predicted answer in a model's completion.

use std::sync::LazyLock;

use regex::Regex;

use crate::strip::strip_string;
use crate::{python, Dataset};

static CHOICE: LazyLock<Regex> = LazyLock::new(|| {
    Regex::new(r"answer is \(?([abcde])\)?").expect("the choice pattern compiles")
});
// Python's `\d` is Unicode Nd, as Rust's is.
static NUMBER: LazyLock<Regex> =
    LazyLock::new(|| Regex::new(r"-?\d*\.?\d+").expect("the number pattern compiles"));
// Python's `\s` adds U+001C–U+001F to Unicode White_Space.
static LINE_BREAK: LazyLock<Regex> =
    LazyLock::new(|| Regex::new(r"\n[\s\x1C-\x1F]*").expect("the line-break pattern compiles"));

/// The harness's `pred` for a sample whose stripped completion is `code`: `None` for an empty
/// completion, else `strip_string(extract_answer(code))`.
pub fn predict(code: &str, dataset: Dataset) -> Option<String> {
    if code.is_empty() {
        return None;
    }
    Some(strip_string(&extract_answer(code, dataset)))
}

/// The harness's `code` for a completion: what follows the prompt in `prompt + output.rstrip()`,
/// stripped. That is the stripped completion unless the completion repeats the prompt.
pub fn code_of(prompt: &str, output: &str) -> String {
    let whole = format!("{prompt}{}", output.trim_end_matches(python::is_space));
    let last = whole
        .split(prompt)
        .last()
        .expect("split yields at least one piece");
    python::strip(last).to_owned()
}

/// `extract_answer(text, dataset)`: a choice letter for the multiple-choice sets, else the
/// boxed, stated or last number answer, passed through `strip_string` once.
pub fn extract_answer(text: &str, dataset: Dataset) -> String {
    if dataset.is_multiple_choice() {
        return extract_choice(text);
    }
    let answer = if let Some(stated) = minerva_answer(text) {
        stated
    } else if text.contains("boxed") {
        let after = text.split("boxed").last().unwrap_or_default();
        if after.is_empty() {
            return String::new();
        }
        boxed_content(after)
    } else if text.contains("he answer is") {
        last_after(text, "he answer is")
    } else if text.contains("final answer is") {
        last_after(text, "final answer is")
    } else {
        let without_commas = text.replace(',', "");
        NUMBER
            .find_iter(&without_commas)
            .last()
            .map_or_else(String::new, |m| m.as_str().to_owned())
    };
    let mut answer = LINE_BREAK.replace_all(&answer, "").into_owned();
    if answer.starts_with(':') {
        answer.remove(0);
    }
    if answer.ends_with('.') {
        answer.pop();
    }
    if answer.ends_with('/') {
        answer.pop();
    }
    strip_string(&answer)
}

/// Minerva's `Final Answer: The final answer is $X$. I hope it is correct.`
fn minerva_answer(text: &str) -> Option<String> {
    if !(text.contains("final answer is $") && text.contains("$. I hope")) {
        return None;
    }
    let (_, after) = text.split_once("final answer is $")?;
    let stated = after
        .split_once("$. I hope")
        .map_or(after, |(before, _)| before);
    Some(python::strip(stated).to_owned())
}

/// The text of `\boxed{...}` up to its matching brace (all of it when unclosed), or, without a
/// brace, up to the first `$`.
fn boxed_content(after: &str) -> String {
    let Some(inner) = after.strip_prefix('{') else {
        let before_dollar = after.split('$').next().unwrap_or_default();
        return python::strip(before_dollar).to_owned();
    };
    let mut depth = 1usize;
    let mut content = String::new();
    for c in inner.chars() {
        match c {
            '{' => depth += 1,
            '}' => {
                depth -= 1;
                if depth == 0 {
                    break;
                }
            }
            _ => {}
        }
        content.push(c);
    }
    content
}

fn last_after(text: &str, marker: &str) -> String {
    python::strip(text.split(marker).last().unwrap_or_default()).to_owned()
}

/// `extract_multi_choice_answer`: the letter after the first `answer is` (or `choice is`)
/// before any `Problem:`, upper-cased, else `placeholder`.
fn extract_choice(text: &str) -> String {
    let text = text
        .split_once("Problem:")
        .map_or(text, |(before, _)| before);
    let text = text.replace("choice is", "answer is").to_lowercase();
    CHOICE
        .captures(&text)
        .and_then(|c| c.get(1))
        .map_or_else(|| "placeholder".to_owned(), |m| m.as_str().to_uppercase())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn extraction_takes_each_answer_form_in_the_harness_order() {
        let gsm = Dataset::Gsm8k;
        let cases = [
            ("So 3 + 4 = 7. The answer is 7.", "7"),
            (
                "Final Answer: The final answer is $\\frac{1}{2}$. I hope it is correct.",
                "\\frac{1}{2}",
            ),
            (
                "we get \\boxed{\\frac{3}{4}} and the answer is 2",
                "\\frac{3}{4}",
            ),
            ("\\boxed{1{2}3", "1{2}3"),
            ("\\boxed 5$ done", "5"),
            ("ends with boxed", ""),
            ("It costs 1,234 dollars and then 5.5", "5.5"),
            ("no numbers here", ""),
            ("The answer is:\n  42.", "42"),
            ("the final answer is 12/", "12"),
        ];
        let wrong: Vec<String> = cases
            .iter()
            .filter(|(text, want)| extract_answer(text, gsm) != *want)
            .map(|(text, want)| format!("{text:?}: {:?} != {want:?}", extract_answer(text, gsm)))
            .collect();
        assert!(wrong.is_empty(), "{wrong:#?}");
    }

    #[test]
    fn choices_are_read_before_the_next_problem_without_word_boundaries() {
        let mc = Dataset::MathQa;
        assert_eq!(extract_answer("The answer is (C).", mc), "C");
        assert_eq!(extract_answer("the correct choice is b", mc), "B");
        assert_eq!(extract_answer("The answer is about 5", mc), "A");
        assert_eq!(
            extract_answer("No idea.\nProblem: the answer is (D)", mc),
            "placeholder"
        );
        assert_eq!(extract_answer("The Choice is (E)", mc), "placeholder");
    }

    #[test]
    fn empty_completions_have_no_prediction() {
        assert_eq!(predict("", Dataset::Gsm8k), None);
        assert_eq!(
            predict("The answer is 3.", Dataset::Gsm8k),
            Some("3".into())
        );
    }

    #[test]
    fn code_is_the_completion_after_the_prompt_stripped() {
        assert_eq!(
            code_of("Q: 1\nA:", " The answer is 1.\n\n"),
            "The answer is 1."
        );
        assert_eq!(code_of("P", "xPy "), "y");
    }

    proptest::proptest! {
        #[test]
        fn extraction_never_panics(text in "\\PC{0,80}", mc in proptest::bool::ANY) {
            let dataset = if mc { Dataset::SatMath } else { Dataset::MinervaMath };
            let _ = predict(&text, dataset);
        }
    }
}
