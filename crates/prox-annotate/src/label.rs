//! From the annotator's answers to the refiner's target program: the document stage's label
//! rule, and the chunk stage's merge of the per-noise programs with its checks.

use prox_program::{parse, Call, LineKind, Mode};
use serde::Serialize;

use crate::answer::{extract_code_block, shorten, RejectKind, Rejection};

/// The document stage's target.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum DocLabel {
    Keep,
    Drop,
}

impl DocLabel {
    /// The program the refiner is taught to write.
    pub fn program(self) -> &'static str {
        match self {
            DocLabel::Keep => "keep_doc()",
            DocLabel::Drop => "drop_doc()",
        }
    }
}

/// The paper's rule: keep a document of educational value 3 or more, or of value 2 when its
/// format scores 4 or more; drop the rest.
pub fn doc_label(educational_value: u8, format_quality: u8) -> DocLabel {
    if educational_value >= 3 || (educational_value == 2 && format_quality >= 4) {
        DocLabel::Keep
    } else {
        DocLabel::Drop
    }
}

/// The chunk an answer was written for.
#[derive(Debug, Clone, Copy)]
pub struct ChunkLines<'a> {
    /// The global number of the chunk's first line.
    pub first_line: usize,
    /// The chunk's lines without their numbers.
    pub lines: &'a [&'a str],
}

/// One noise type's answer for a chunk.
#[derive(Debug, Clone, Copy)]
pub struct NoiseAnswer<'a> {
    /// The template (noise type) that asked.
    pub noise: &'a str,
    pub answer: &'a str,
}

/// The merged program of a chunk.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ChunkProgram {
    /// One call per line, each call once, top to bottom (by the first line each touches),
    /// whatever the order of the noise types; `untouch_doc()` alone when no noise type found
    /// anything.
    pub program: String,
    /// The calls of the program.
    pub calls: Vec<Call>,
    /// How many of the chunk's lines it removes.
    pub lines_removed: usize,
}

/// Merges the programs of a chunk's noise-type answers into one, and checks it:
///
/// - every answer has a closed code block ([`RejectKind::NoCodeBlock`]);
/// - every line of it is a blank line, a comment, a no-op such as `untouch_doc()`,
///   `remove_lines(start=I, end=J)` or `normalize(source_str=…, target_str=…)` as the
///   strict parser reads them; `remove_lines(all=True)` and document calls are not chunk
///   annotations ([`RejectKind::OutsideGrammar`]);
/// - `remove_lines` stays within the chunk's lines, start ≤ end
///   ([`RejectKind::LineOutsideChunk`]);
/// - `normalize` replaces a string the chunk holds ([`RejectKind::NormalizeNotInChunk`]);
/// - the merged program reads the same to the reference's reader as to the strict one, so
///   that a refiner trained on it is executed as it was taught ([`RejectKind::OutsideGrammar`]);
/// - it removes at most `max_removal_ratio` of the chunk's lines
///   ([`RejectKind::RemovalRatioOverCap`]).
///
/// The first problem found rejects the chunk, its detail naming the noise type.
pub fn merge_chunk_programs(
    chunk: ChunkLines<'_>,
    answers: &[NoiseAnswer<'_>],
    max_removal_ratio: f64,
) -> Result<ChunkProgram, Rejection> {
    let last_line = chunk.first_line + chunk.lines.len().saturating_sub(1);
    let mut calls: Vec<Call> = Vec::new();
    for noise in answers {
        let in_noise = |rejection: Rejection| Rejection {
            detail: format!("{}: {}", noise.noise, rejection.detail),
            ..rejection
        };
        let code = extract_code_block(noise.answer).map_err(in_noise)?;
        let code_lines: Vec<&str> = code.split('\n').collect();
        for line in parse(code, Mode::Strict).lines {
            let text = code_lines
                .get(line.line.saturating_sub(1))
                .map_or(String::new(), |text| shorten(text.trim(), 120));
            let reject =
                |kind, why: String| in_noise(Rejection::new(kind, format!("line `{text}`: {why}")));
            if let Some(error) = line.errors.first() {
                return Err(reject(RejectKind::OutsideGrammar, error.clone()));
            }
            match line.kind {
                LineKind::Blank | LineKind::Comment | LineKind::NoOp(_) => {}
                LineKind::Call(call) => {
                    check_call(&call, chunk, last_line).map_err(|(kind, why)| reject(kind, why))?;
                    if !calls.contains(&call) {
                        calls.push(call);
                    }
                }
                LineKind::Ignored(why) => {
                    return Err(reject(RejectKind::OutsideGrammar, why.to_owned()))
                }
                LineKind::Error => {
                    return Err(reject(RejectKind::OutsideGrammar, "unreadable".to_owned()))
                }
            }
        }
    }

    // Top to bottom, as a reader of the chunk would list them; stable, so ties keep the
    // noise types' order.
    calls.sort_by_key(|call| match call {
        Call::RemoveLines { start, .. } => *start,
        Call::Normalize { source, .. } => chunk
            .lines
            .iter()
            .position(|line| line.contains(source.as_str()))
            .map_or(i64::MAX, |at| (chunk.first_line + at) as i64),
        _ => i64::MAX,
    });
    let program = if calls.is_empty() {
        "untouch_doc()".to_owned()
    } else {
        calls.iter().map(render_call).collect::<Vec<_>>().join("\n")
    };
    let faithful: Vec<Call> = parse(&program, Mode::Faithful)
        .calls()
        .map(|(_, call)| call.clone())
        .collect();
    if faithful != calls {
        return Err(Rejection::new(
            RejectKind::OutsideGrammar,
            format!(
                "the reference's reader reads the merged program otherwise (quotes, commas, \
                 `)`, `=` or backslashes in a string): `{}`",
                shorten(&program, 200)
            ),
        ));
    }

    let mut removed = vec![false; chunk.lines.len()];
    for call in &calls {
        if let Call::RemoveLines { start, end } = call {
            // check_call keeps both within the chunk, so these are small and in order.
            let from =
                usize::try_from(*start).expect("checked to be in the chunk") - chunk.first_line;
            let to = usize::try_from(*end).expect("checked to be in the chunk") - chunk.first_line;
            removed[from..=to].iter_mut().for_each(|line| *line = true);
        }
    }
    let lines_removed = removed.iter().filter(|&&line| line).count();
    let ratio = lines_removed as f64 / chunk.lines.len().max(1) as f64;
    if ratio > max_removal_ratio {
        return Err(Rejection::new(
            RejectKind::RemovalRatioOverCap,
            format!(
                "removes {lines_removed} of {} lines ({ratio:.2}), over the cap of {max_removal_ratio}",
                chunk.lines.len()
            ),
        ));
    }
    Ok(ChunkProgram {
        program,
        calls,
        lines_removed,
    })
}

fn check_call(
    call: &Call,
    chunk: ChunkLines<'_>,
    last_line: usize,
) -> Result<(), (RejectKind, String)> {
    match call {
        Call::RemoveLines { start, end } => {
            let inside = |n: i64| {
                usize::try_from(n).is_ok_and(|n| (chunk.first_line..=last_line).contains(&n))
            };
            if start > end {
                Err((
                    RejectKind::LineOutsideChunk,
                    format!("start {start} is after end {end}"),
                ))
            } else if !inside(*start) || !inside(*end) {
                Err((
                    RejectKind::LineOutsideChunk,
                    format!(
                        "lines {start} to {end} are not all in the chunk's lines {} to {last_line}",
                        chunk.first_line
                    ),
                ))
            } else {
                Ok(())
            }
        }
        Call::Normalize { source, .. } => {
            if chunk
                .lines
                .iter()
                .any(|line| line.contains(source.as_str()))
            {
                Ok(())
            } else {
                Err((
                    RejectKind::NormalizeNotInChunk,
                    format!("no line of the chunk holds `{}`", shorten(source, 80)),
                ))
            }
        }
        Call::RemoveAllLines | Call::DropDoc | Call::KeepDoc => Err((
            RejectKind::OutsideGrammar,
            format!("{}() is not a chunk annotation", call.name()),
        )),
    }
}

/// A call as the refiners write it.
fn render_call(call: &Call) -> String {
    match call {
        Call::RemoveLines { start, end } => format!("remove_lines(start={start}, end={end})"),
        Call::Normalize { source, target } => format!(
            "normalize(source_str=\"{source}\", target_str=\"{}\")",
            target.as_deref().unwrap_or("")
        ),
        Call::RemoveAllLines => "remove_lines(all=True)".to_owned(),
        Call::DropDoc => "drop_doc()".to_owned(),
        Call::KeepDoc => "keep_doc()".to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_label_rule_keeps_edu_three_or_edu_two_with_format_four() {
        for edu in 0..=5u8 {
            for format in 0..=5u8 {
                let expected = if edu >= 3 || (edu == 2 && format >= 4) {
                    DocLabel::Keep
                } else {
                    DocLabel::Drop
                };
                assert_eq!(
                    doc_label(edu, format),
                    expected,
                    "edu {edu} format {format}"
                );
            }
        }
        assert_eq!(doc_label(2, 3), DocLabel::Drop);
        assert_eq!(doc_label(2, 4), DocLabel::Keep);
        assert_eq!(doc_label(1, 5), DocLabel::Drop);
        assert_eq!(doc_label(3, 0), DocLabel::Keep);
        assert_eq!(DocLabel::Keep.program(), "keep_doc()");
        assert_eq!(DocLabel::Drop.program(), "drop_doc()");
    }

    const LINES: [&str; 6] = [
        "Home | About | Contact",
        "Rivers carve valleys over millions of years.",
        "The Colorado River cut the Grand Canyon (read more).",
        "https://example.org/rivers",
        "© 2024 Rivers Inc.",
        "Erosion is faster where the slope is steep.",
    ];

    fn chunk() -> ChunkLines<'static> {
        ChunkLines {
            first_line: 10,
            lines: &LINES,
        }
    }

    fn block(program: &str) -> String {
        format!("Here is what I found.\n```python\n{program}\n```\n")
    }

    fn merge(answers: &[(&str, String)], cap: f64) -> Result<ChunkProgram, Rejection> {
        let answers: Vec<_> = answers
            .iter()
            .map(|(noise, answer)| NoiseAnswer { noise, answer })
            .collect();
        merge_chunk_programs(chunk(), &answers, cap)
    }

    #[test]
    fn noise_programs_merge_top_to_bottom_each_call_once_without_no_ops() {
        let merged = merge(
            &[
                ("navigation", block("remove_lines(start=10, end=10)")),
                (
                    "links",
                    block("# the URL line\nremove_lines(start=13, end=13)\nnormalize(source_str=\"Colorado River\", target_str=\"Colorado\")"),
                ),
                ("footer", block("remove_lines(start=10, end=10)\nuntouch_doc()")),
            ],
            0.5,
        )
        .expect("a valid annotation");
        assert_eq!(
            merged.program,
            "remove_lines(start=10, end=10)\nnormalize(source_str=\"Colorado River\", target_str=\"Colorado\")\nremove_lines(start=13, end=13)"
        );
        assert_eq!(merged.lines_removed, 2);
    }

    #[test]
    fn answers_that_find_nothing_merge_to_untouch_doc() {
        let merged = merge(
            &[
                ("a", block("untouch_doc()")),
                ("b", block("untouch_doc()\n")),
            ],
            0.5,
        )
        .expect("valid");
        assert_eq!(merged.program, "untouch_doc()");
        assert_eq!(merged.lines_removed, 0);
        assert!(merged.calls.is_empty());
    }

    fn rejected(answers: &[(&str, String)], cap: f64) -> Rejection {
        merge(answers, cap).expect_err("rejected")
    }

    #[test]
    fn each_bad_answer_is_rejected_with_its_kind_and_noise_type() {
        let cases = [
            (
                "no fence: remove_lines(start=10, end=10)".to_owned(),
                RejectKind::NoCodeBlock,
            ),
            (block("remove_lines(10, 10"), RejectKind::OutsideGrammar),
            (block("delete_line(10)"), RejectKind::OutsideGrammar),
            (block("remove_lines(all=True)"), RejectKind::OutsideGrammar),
            (block("drop_doc()"), RejectKind::OutsideGrammar),
            (
                block("remove_lines(start=9, end=10)"),
                RejectKind::LineOutsideChunk,
            ),
            (
                block("remove_lines(start=15, end=16)"),
                RejectKind::LineOutsideChunk,
            ),
            (
                block("remove_lines(start=12, end=11)"),
                RejectKind::LineOutsideChunk,
            ),
            (
                block("normalize(source_str=\"not there\", target_str=\"\")"),
                RejectKind::NormalizeNotInChunk,
            ),
            (
                block("normalize(source_str=\"Home | About\", target_str=\"a, b\")"),
                RejectKind::OutsideGrammar,
            ),
            (
                block("normalize(source_str=\"(read more)\", target_str=\"\")"),
                RejectKind::OutsideGrammar,
            ),
            (
                block("remove_lines(start=10, end=13)"),
                RejectKind::RemovalRatioOverCap,
            ),
        ];
        for (answer, kind) in cases {
            let rejection = rejected(
                &[("fine", block("untouch_doc()")), ("links", answer.clone())],
                0.5,
            );
            assert_eq!(rejection.kind, kind, "{answer}: {rejection}");
            assert!(
                rejection.detail.starts_with("links: ")
                    || kind == RejectKind::OutsideGrammar
                    || kind == RejectKind::RemovalRatioOverCap,
                "{rejection}"
            );
        }
    }

    #[test]
    fn the_cap_counts_lines_removed_by_overlapping_calls_once() {
        // Lines 10-12 twice over: 3 of 6 lines, exactly the cap.
        let merged = merge(
            &[
                ("a", block("remove_lines(start=10, end=11)")),
                ("b", block("remove_lines(start=11, end=12)")),
            ],
            0.5,
        )
        .expect("at the cap is allowed");
        assert_eq!(merged.lines_removed, 3);
        let over = rejected(
            &[
                ("a", block("remove_lines(start=10, end=11)")),
                ("b", block("remove_lines(start=11, end=13)")),
            ],
            0.5,
        );
        assert_eq!(over.kind, RejectKind::RemovalRatioOverCap);
        assert!(over.detail.contains("removes 4 of 6 lines"), "{over}");
    }
}
