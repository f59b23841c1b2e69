//! What a chunk program did to a document, line by line: which lines it removed (and which
//! program line asked for it) and which strings its `normalize` calls replaced.
//!
//! The program is parsed once with [`prox_program::parse`] and executed with
//! [`Executor::run_chunk`] for the verdict and errors; the diff itself replays the same calls
//! line by line. That is exact because a program line can hold no line break, so neither a
//! normalize source nor its target spans lines: replacing in each line is replacing in the
//! whole text, and line numbers never move.

use prox_program::{Call, ChunkOutcome, Executor, LineKind, Mode, ProgramLine, Thresholds};

/// A piece of a document line: unchanged text, or text that normalize calls rewrote.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Segment {
    /// The text before the program ran.
    pub before: String,
    /// The text after the normalize calls.
    pub after: String,
    /// The program lines (1-based) whose normalize calls rewrote it; empty when unchanged.
    pub normalized_by: Vec<usize>,
}

impl Segment {
    fn same(text: &str) -> Self {
        Self {
            before: text.to_owned(),
            after: text.to_owned(),
            normalized_by: Vec::new(),
        }
    }

    pub fn is_changed(&self) -> bool {
        !self.normalized_by.is_empty()
    }
}

/// One line of the document as the model saw it (`[NNN]` is its 0-based number).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DiffLine {
    /// 0-based line number, as in the prompt.
    pub index: usize,
    pub segments: Vec<Segment>,
    /// The program line (1-based) whose `remove_lines` call removed it.
    pub removed_by: Option<usize>,
}

impl DiffLine {
    /// The line's number as the model saw it: `[007]`, `[1234]`.
    pub fn label(&self) -> String {
        format!("[{:03}]", self.index)
    }

    pub fn before(&self) -> String {
        self.segments.iter().map(|s| s.before.as_str()).collect()
    }

    pub fn after(&self) -> String {
        self.segments.iter().map(|s| s.after.as_str()).collect()
    }
}

/// What one program line is, for people.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProgramLineView {
    /// 1-based line number in the program.
    pub number: usize,
    /// The line as the model wrote it.
    pub text: String,
    /// `remove_lines`, `normalize`, `no-op`, `comment`, `blank`, `ignored` or `error`.
    pub kind: &'static str,
    /// Why the line was ignored, its errors, or why its call was skipped.
    pub notes: Vec<String>,
}

/// A chunk program's effect on one document.
#[derive(Debug, Clone, PartialEq)]
pub struct DocumentDiff {
    pub lines: Vec<DiffLine>,
    pub program: Vec<ProgramLineView>,
    /// The executor's result: verdict, errors, counts.
    pub outcome: ChunkOutcome,
}

impl DocumentDiff {
    /// Runs `program` on `text` the way `prox refine` does (faithful mode, the reference's
    /// thresholds) and lays out what it did.
    pub fn compute(text: &str, program: &str) -> Self {
        Self::compute_with(
            &Executor::new(Mode::Faithful, Thresholds::default()),
            text,
            program,
        )
    }

    /// As [`compute`](Self::compute), with another executor.
    pub fn compute_with(executor: &Executor, text: &str, program: &str) -> Self {
        let parsed = prox_program::parse(program, executor.mode());
        let outcome = executor.run_chunk_program(text, &parsed);
        // Once the normalize budget is spent, that call and every later one are skipped.
        let budget_spent_at = outcome
            .errors
            .iter()
            .filter(|error| error.reason.starts_with("normalize budget spent"))
            .find_map(|error| error.line);

        let mut lines: Vec<DiffLine> = text
            .split('\n')
            .enumerate()
            .map(|(index, line)| DiffLine {
                index,
                segments: vec![Segment::same(line)],
                removed_by: None,
            })
            .collect();
        let mut skipped = Vec::new();
        for line in &parsed.lines {
            match line.call() {
                Some(Call::Normalize { source, target }) => {
                    if budget_spent_at.is_some_and(|spent| line.line >= spent) {
                        skipped.push(line.line);
                        continue;
                    }
                    if source.is_empty() {
                        continue;
                    }
                    let target = target.as_deref().unwrap_or("");
                    for diff_line in &mut lines {
                        normalize(&mut diff_line.segments, source, target, line.line);
                    }
                }
                Some(Call::RemoveLines { start, end }) => {
                    let (start, end) = (*start, *end);
                    if start > end || end < 0 {
                        continue;
                    }
                    let first = usize::try_from(start.max(0)).unwrap_or(usize::MAX);
                    let last = usize::try_from(end).unwrap_or(usize::MAX);
                    for diff_line in lines.iter_mut().skip(first) {
                        if diff_line.index > last {
                            break;
                        }
                        diff_line.removed_by.get_or_insert(line.line);
                    }
                }
                Some(Call::RemoveAllLines) => {
                    for diff_line in &mut lines {
                        diff_line.removed_by.get_or_insert(line.line);
                    }
                }
                Some(Call::DropDoc | Call::KeepDoc) | None => {}
            }
        }
        let program = program_views(program, &parsed.lines, &skipped);
        Self {
            lines,
            program,
            outcome,
        }
    }

    /// The text with the program's edit applied (what a kept, modified document holds),
    /// whatever the verdict.
    pub fn edited_text(&self) -> String {
        let kept: Vec<String> = self
            .lines
            .iter()
            .filter(|line| line.removed_by.is_none())
            .map(DiffLine::after)
            .collect();
        kept.join("\n")
    }
}

/// Replaces every occurrence of `source` in the line's current text, as Python's
/// `str.replace` does (left to right, without overlaps), keeping each replaced piece beside
/// the text it came from. A match that touches text an earlier call rewrote absorbs that
/// whole piece, so `before` always joins to the original line and `after` to the new one.
fn normalize(segments: &mut Vec<Segment>, source: &str, target: &str, program_line: usize) {
    let current: String = segments.iter().map(|s| s.after.as_str()).collect();
    let matches: Vec<(usize, usize)> = current
        .match_indices(source)
        .map(|(at, found)| (at, at + found.len()))
        .collect();
    if matches.is_empty() {
        return;
    }
    let pieces = split_unchanged_at(segments, &matches);

    // Each piece's span in the current text, and the matches it overlaps.
    let mut rebuilt: Vec<Segment> = Vec::with_capacity(pieces.len() + matches.len());
    let mut group: Option<Group> = None;
    let mut offset = 0;
    for piece in pieces {
        let (start, end) = (offset, offset + piece.after.len());
        offset = end;
        let touched = touched_matches(&matches, start, end);
        match (touched, group.as_mut()) {
            (Some((first, last)), Some(open)) if first <= open.last_match => {
                open.last_match = open.last_match.max(last);
                open.end = end;
                open.pieces.push(piece);
            }
            (Some((first, last)), _) => {
                if let Some(done) = group.take() {
                    rebuilt.push(done.into_segment(&current, &matches, target, program_line));
                }
                group = Some(Group {
                    start,
                    end,
                    first_match: first,
                    last_match: last,
                    pieces: vec![piece],
                });
            }
            (None, _) => {
                if let Some(done) = group.take() {
                    rebuilt.push(done.into_segment(&current, &matches, target, program_line));
                }
                rebuilt.push(piece);
            }
        }
    }
    if let Some(done) = group.take() {
        rebuilt.push(done.into_segment(&current, &matches, target, program_line));
    }
    *segments = rebuilt;
}

/// Consecutive pieces that matches of one call rewrite together.
struct Group {
    start: usize,
    end: usize,
    first_match: usize,
    last_match: usize,
    pieces: Vec<Segment>,
}

impl Group {
    fn into_segment(
        self,
        current: &str,
        matches: &[(usize, usize)],
        target: &str,
        program_line: usize,
    ) -> Segment {
        let mut after = String::new();
        let mut copied = self.start;
        for &(at, end) in &matches[self.first_match..=self.last_match] {
            after.push_str(&current[copied..at]);
            after.push_str(target);
            copied = end;
        }
        after.push_str(&current[copied..self.end]);
        let mut normalized_by: Vec<usize> = self
            .pieces
            .iter()
            .flat_map(|piece| piece.normalized_by.iter().copied())
            .collect();
        normalized_by.push(program_line);
        normalized_by.dedup();
        Segment {
            before: self.pieces.iter().map(|p| p.before.as_str()).collect(),
            after,
            normalized_by,
        }
    }
}

/// The first and last match that the span `start..end` of the current text overlaps. An
/// empty span (text a call deleted) overlaps a match only strictly inside it.
fn touched_matches(matches: &[(usize, usize)], start: usize, end: usize) -> Option<(usize, usize)> {
    let overlaps = |&(at, stop): &(usize, usize)| {
        if start == end {
            at < start && start < stop
        } else {
            start < stop && at < end
        }
    };
    let first = matches.iter().position(overlaps)?;
    let count = matches[first..].iter().take_while(|m| overlaps(m)).count();
    Some((first, first + count - 1))
}

/// The segments, with unchanged ones cut at every match boundary inside them, so that a match
/// covers unchanged text only in whole pieces.
fn split_unchanged_at(segments: &mut Vec<Segment>, matches: &[(usize, usize)]) -> Vec<Segment> {
    let mut cuts: Vec<usize> = matches.iter().flat_map(|&(at, end)| [at, end]).collect();
    cuts.dedup();
    let mut pieces = Vec::with_capacity(segments.len() + cuts.len());
    let mut offset = 0;
    for segment in segments.drain(..) {
        let (start, end) = (offset, offset + segment.after.len());
        offset = end;
        if segment.is_changed() {
            pieces.push(segment);
            continue;
        }
        let mut from = start;
        for &cut in cuts.iter().filter(|&&cut| start < cut && cut < end) {
            pieces.push(Segment::same(&segment.after[from - start..cut - start]));
            from = cut;
        }
        pieces.push(Segment::same(&segment.after[from - start..]));
    }
    pieces
}

/// Each line of the program text, with what the parser made of it.
fn program_views(program: &str, parsed: &[ProgramLine], skipped: &[usize]) -> Vec<ProgramLineView> {
    // The faithful reader strips spaces at the program's two ends before splitting; that never
    // removes a line break, so line numbers agree with the raw text's.
    program
        .trim_matches(' ')
        .split('\n')
        .enumerate()
        .map(|(offset, text)| {
            let number = offset + 1;
            let line = parsed.iter().find(|line| line.line == number);
            let (kind, mut notes) = match line.map(|line| (&line.kind, &line.errors)) {
                Some((LineKind::Call(call), errors)) => (call.name(), errors.clone()),
                Some((LineKind::NoOp(_), errors)) => ("no-op", errors.clone()),
                Some((LineKind::Comment, errors)) => ("comment", errors.clone()),
                Some((LineKind::Blank, errors)) => ("blank", errors.clone()),
                Some((LineKind::Ignored(why), errors)) => {
                    let mut notes = vec![format!("ignored: {why}")];
                    notes.extend(errors.iter().cloned());
                    ("ignored", notes)
                }
                Some((LineKind::Error, errors)) => ("error", errors.clone()),
                None => ("blank", Vec::new()),
            };
            if skipped.contains(&number) {
                notes.push("skipped: the normalize budget was spent".to_owned());
            }
            ProgramLineView {
                number,
                text: text.to_owned(),
                kind,
                notes,
            }
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use prox_program::Verdict;

    fn words(n: usize) -> String {
        (0..n)
            .map(|i| format!("w{i}"))
            .collect::<Vec<_>>()
            .join(" ")
    }

    #[test]
    fn removed_lines_name_the_call_that_removed_them() {
        let text = format!("menu\n{}\n{}\nfooter", words(8), words(9));
        let diff = DocumentDiff::compute(
            &text,
            "remove_lines(start=0, end=0)\nuntouch_doc()\nremove_lines(start=3, end=3)",
        );
        let removed: Vec<_> = diff.lines.iter().map(|l| l.removed_by).collect();
        assert_eq!(removed, [Some(1), None, None, Some(3)]);
        assert_eq!(diff.edited_text(), diff.outcome.verdict.text());
        assert_eq!(diff.lines[3].label(), "[003]");
        let kinds: Vec<_> = diff.program.iter().map(|l| l.kind).collect();
        assert_eq!(kinds, ["remove_lines", "ignored", "remove_lines"]);
    }

    #[test]
    fn normalizations_keep_source_beside_target() {
        let text = format!("Click here to {}\nand Click here", words(12));
        let diff = DocumentDiff::compute(
            &text,
            "normalize(source_str=\"Click here\", target_str=\"Tap\")",
        );
        let first = &diff.lines[0].segments;
        assert_eq!(first[0].before, "Click here");
        assert_eq!(first[0].after, "Tap");
        assert_eq!(first[0].normalized_by, [1]);
        assert!(!first[1].is_changed());
        assert_eq!(diff.edited_text(), diff.outcome.verdict.text());
    }

    #[test]
    fn a_later_call_that_rewrites_an_earlier_replacement_absorbs_it() {
        let mut segments = vec![Segment::same("xaby")];
        normalize(&mut segments, "a", "c", 1);
        normalize(&mut segments, "cb", "d", 2);
        assert_eq!(
            segments,
            [
                Segment::same("x"),
                Segment {
                    before: "ab".into(),
                    after: "d".into(),
                    normalized_by: vec![1, 2]
                },
                Segment::same("y"),
            ]
        );
    }

    proptest! {
        /// The diff's text is exactly what the executor produces, and its "before" side is
        /// exactly the input, for any mix of calls.
        #[test]
        fn the_diff_replays_the_executor_exactly(
            lines in proptest::collection::vec("[ab ]{0,8}", 1..8),
            calls in proptest::collection::vec(
                prop_oneof![
                    ("[ab ]{0,3}", "[abc]{0,2}").prop_map(|(s, t)| format!("normalize(source_str=\"{s}\", target_str=\"{t}\")")),
                    "[ab ]{0,3}".prop_map(|s| format!("normalize(source_str=\"{s}\")")),
                    (-2i64..9, -2i64..9).prop_map(|(s, e)| format!("remove_lines(start={s}, end={e})")),
                    Just("remove_lines(all=True)".to_owned()),
                    Just("untouch_doc()".to_owned()),
                ],
                0..6,
            ),
        ) {
            // Enough words that most outcomes keep the edit.
            let text = format!("{}\n{}", lines.join("\n"), words(30));
            let program = calls.join("\n");
            let executor = Executor::new(Mode::Faithful, Thresholds { min_words: 0, threshold_2: 1.5, ..Thresholds::default() });
            let diff = DocumentDiff::compute_with(&executor, &text, &program);
            let before: Vec<String> = diff.lines.iter().map(DiffLine::before).collect();
            prop_assert_eq!(before.join("\n"), text.clone());
            if let Verdict::Kept { text: kept, .. } = &diff.outcome.verdict {
                prop_assert_eq!(&diff.edited_text(), kept);
            }
            let removed = diff.lines.iter().filter(|l| l.removed_by.is_some()).count();
            prop_assert_eq!(removed, diff.outcome.lines_removed);
        }
    }
}
