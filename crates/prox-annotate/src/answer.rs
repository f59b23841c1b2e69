//! Reading the annotator's answers: the score on the last line, the code block.
//!
//! Chat models rarely follow a format to the letter, so both readers accept the usual
//! variations (markdown emphasis, `3/5`, `Score: 3 (good)`, a ```` ```py ```` fence with
//! prose around it) and reject, with the reason, what cannot be read without guessing.

use std::fmt;

use serde::Serialize;

/// Why an annotation was not turned into an example.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "snake_case")]
#[non_exhaustive]
pub enum RejectKind {
    /// The document has no text: there is nothing to annotate.
    EmptyDocument,
    /// The last line of a rubric answer holds no whole number.
    NoScore,
    /// The score is outside 0–5.
    ScoreOutOfRange,
    /// A chunk answer without a closed ```` ``` ```` code block.
    NoCodeBlock,
    /// A line of the program that is not one of the chunk stage's calls, as the strict
    /// parser reads them, or that the reference's reader would read otherwise.
    OutsideGrammar,
    /// `remove_lines` over lines that are not in the chunk, or with start after end.
    LineOutsideChunk,
    /// `normalize` of a string that the chunk does not hold.
    NormalizeNotInChunk,
    /// The merged program removes more of the chunk's lines than the cap allows.
    RemovalRatioOverCap,
}

impl RejectKind {
    pub const ALL: [RejectKind; 8] = [
        RejectKind::EmptyDocument,
        RejectKind::NoScore,
        RejectKind::ScoreOutOfRange,
        RejectKind::NoCodeBlock,
        RejectKind::OutsideGrammar,
        RejectKind::LineOutsideChunk,
        RejectKind::NormalizeNotInChunk,
        RejectKind::RemovalRatioOverCap,
    ];

    /// The name used in the rejections file and the stats.
    pub fn as_str(self) -> &'static str {
        match self {
            RejectKind::EmptyDocument => "empty_document",
            RejectKind::NoScore => "no_score",
            RejectKind::ScoreOutOfRange => "score_out_of_range",
            RejectKind::NoCodeBlock => "no_code_block",
            RejectKind::OutsideGrammar => "outside_grammar",
            RejectKind::LineOutsideChunk => "line_outside_chunk",
            RejectKind::NormalizeNotInChunk => "normalize_not_in_chunk",
            RejectKind::RemovalRatioOverCap => "removal_ratio_over_cap",
        }
    }
}

impl fmt::Display for RejectKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A rejected annotation: the kind, and what exactly was wrong.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rejection {
    pub kind: RejectKind,
    pub detail: String,
}

impl Rejection {
    pub fn new(kind: RejectKind, detail: impl Into<String>) -> Self {
        Self {
            kind,
            detail: detail.into(),
        }
    }
}

impl fmt::Display for Rejection {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.kind, self.detail)
    }
}

/// The highest score of the rubrics.
pub const MAX_SCORE: u8 = 5;

/// Reads the score from the last non-blank line of a rubric answer.
///
/// The number read is the first one after the line's last `:` or `=` (so `Educational
/// score: 3/5` and `Total: 1+1+1 = 3` read 3), or the first one of the line when it has
/// neither. `3.0` reads as 3; `3.5` is no score; `-1` and `7` are out of range.
pub fn parse_score(answer: &str) -> Result<u8, Rejection> {
    let Some(line) = answer.lines().map(str::trim).rfind(|line| !line.is_empty()) else {
        return Err(Rejection::new(RejectKind::NoScore, "the answer is empty"));
    };
    let tail = line.rfind([':', '=']).map_or(line, |at| &line[at + 1..]);
    let Some(number) = first_number(tail) else {
        return Err(Rejection::new(
            RejectKind::NoScore,
            format!("no number on the last line `{}`", shorten(line, 120)),
        ));
    };
    if number.fraction.chars().any(|c| c != '0') {
        return Err(Rejection::new(
            RejectKind::NoScore,
            format!("`{}` is not a whole number", number.text),
        ));
    }
    let significant = number.digits.trim_start_matches('0');
    // More than two significant digits is out of range whatever they are; no overflow to mind.
    let value = if significant.len() > 2 {
        None
    } else {
        Some(significant.parse::<u8>().unwrap_or(0))
    };
    match value {
        Some(value) if !number.negative && value <= MAX_SCORE => Ok(value),
        _ => Err(Rejection::new(
            RejectKind::ScoreOutOfRange,
            format!("score `{}` is outside 0-{MAX_SCORE}", number.text),
        )),
    }
}

/// A number as written: sign, integer digits, fraction digits.
struct Number<'a> {
    text: &'a str,
    negative: bool,
    digits: &'a str,
    fraction: &'a str,
}

fn first_number(text: &str) -> Option<Number<'_>> {
    let bytes = text.as_bytes();
    let start = bytes.iter().position(u8::is_ascii_digit)?;
    let negative = start > 0 && bytes[start - 1] == b'-';
    let mut end = start;
    while end < bytes.len() && bytes[end].is_ascii_digit() {
        end += 1;
    }
    let digits = &text[start..end];
    let mut fraction = "";
    if end + 1 < bytes.len() && bytes[end] == b'.' && bytes[end + 1].is_ascii_digit() {
        let fraction_start = end + 1;
        end = fraction_start;
        while end < bytes.len() && bytes[end].is_ascii_digit() {
            end += 1;
        }
        fraction = &text[fraction_start..end];
    }
    // Every index above is at an ASCII byte or the end, so these are char boundaries.
    let text_start = if negative { start - 1 } else { start };
    Some(Number {
        text: &text[text_start..end],
        negative,
        digits,
        fraction,
    })
}

/// The body of the last closed ```` ``` ```` code block of an answer (any info string:
/// `python`, `py`, none), without its fences.
pub fn extract_code_block(answer: &str) -> Result<&str, Rejection> {
    let mut last = None;
    let mut open: Option<usize> = None;
    let mut offset = 0;
    for line in answer.split_inclusive('\n') {
        let line_end = offset + line.len();
        if line.trim_start().starts_with("```") {
            match open.take() {
                Some(body_start) => last = Some(&answer[body_start..offset]),
                None => open = Some(line_end),
            }
        }
        offset = line_end;
    }
    match (last, open) {
        (Some(body), None) => Ok(body.strip_suffix('\n').unwrap_or(body)),
        // A block opened after the last closed one: the answer was cut short mid-program.
        (_, Some(_)) => Err(Rejection::new(
            RejectKind::NoCodeBlock,
            "the last code block is not closed (was the answer cut short?)",
        )),
        (None, None) => Err(Rejection::new(
            RejectKind::NoCodeBlock,
            "the answer holds no ``` code block",
        )),
    }
}

/// At most `max` characters of `text`, with `…` when cut.
pub(crate) fn shorten(text: &str, max: usize) -> String {
    match text.char_indices().nth(max) {
        Some((cut, _)) => format!("{}…", &text[..cut]),
        None => text.to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn score(answer: &str) -> Result<u8, RejectKind> {
        parse_score(answer).map_err(|r| r.kind)
    }

    #[test]
    fn the_score_is_read_from_the_last_line_in_its_usual_spellings() {
        assert_eq!(score("Good text.\nEducational score: 3"), Ok(3));
        assert_eq!(score("Critique.\n\n**Format score:** 4\n\n"), Ok(4));
        assert_eq!(score("Score: 2/5"), Ok(2));
        assert_eq!(score("Educational score: 5 (outstanding)"), Ok(5));
        assert_eq!(score("Points: 1 + 1 + 0 = 2"), Ok(2));
        assert_eq!(score("I would give it 1 point"), Ok(1));
        assert_eq!(score("Score: 0"), Ok(0));
        assert_eq!(score("Score: 4.0"), Ok(4));
        assert_eq!(score("Score: 03"), Ok(3));
    }

    #[test]
    fn a_score_only_earlier_in_the_answer_is_no_score() {
        assert_eq!(
            score("Educational score: 3\nThat is my answer."),
            Err(RejectKind::NoScore)
        );
        assert_eq!(score(""), Err(RejectKind::NoScore));
        assert_eq!(score("  \n \n"), Err(RejectKind::NoScore));
        assert_eq!(score("Score: three"), Err(RejectKind::NoScore));
        assert_eq!(score("Score: 3.5"), Err(RejectKind::NoScore));
    }

    #[test]
    fn scores_outside_zero_to_five_are_out_of_range() {
        assert_eq!(score("Score: 6"), Err(RejectKind::ScoreOutOfRange));
        assert_eq!(score("Score: -1"), Err(RejectKind::ScoreOutOfRange));
        assert_eq!(score("Score: 10/10"), Err(RejectKind::ScoreOutOfRange));
        assert_eq!(
            score("Score: 99999999999999999999999999"),
            Err(RejectKind::ScoreOutOfRange)
        );
    }

    #[test]
    fn the_last_closed_code_block_is_the_program() {
        let answer = "Lines 0-1 are a menu.\n```python\nremove_lines(start=0, end=1)\n```\nDone.";
        assert_eq!(
            extract_code_block(answer),
            Ok("remove_lines(start=0, end=1)")
        );
        let two = "Like this:\n```\nuntouch_doc()\n```\nSo:\n```py\nremove_lines(start=2, end=2)\nuntouch_doc()\n```";
        assert_eq!(
            extract_code_block(two),
            Ok("remove_lines(start=2, end=2)\nuntouch_doc()")
        );
        assert_eq!(extract_code_block("```\n```"), Ok(""));
    }

    #[test]
    fn an_answer_without_a_closed_block_is_rejected() {
        fn kind(answer: &str) -> Result<&str, RejectKind> {
            extract_code_block(answer).map_err(|r| r.kind)
        }
        assert_eq!(
            kind("remove_lines(start=0, end=1)"),
            Err(RejectKind::NoCodeBlock)
        );
        assert_eq!(
            kind("```python\nremove_lines(start=0, end=1)"),
            Err(RejectKind::NoCodeBlock)
        );
        assert_eq!(
            kind("```\nuntouch_doc()\n```\n```python\nremove_li"),
            Err(RejectKind::NoCodeBlock)
        );
    }

    proptest! {
        #[test]
        fn answer_readers_never_panic(answer in "(\\PC|\n|`|:|=|-|\\.|[0-9])*") {
            let _ = parse_score(&answer);
            let _ = extract_code_block(&answer);
        }

        #[test]
        fn a_written_score_reads_back(critique in "[a-zA-Z ,.\n]*", value in 0u8..=5) {
            let answer = format!("{critique}\nScore: {value}");
            prop_assert_eq!(parse_score(&answer), Ok(value));
        }
    }
}
