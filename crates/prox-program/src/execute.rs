//! Running a typed chunk program on a text, and the reference's keep-or-drop decision.
//!
//! Both modes run through here; they differ only in how they read the program.

use std::borrow::Cow;

use crate::outcome::{DropReason, ProgramError, Verdict};
use crate::program::{Call, LineKind, ProgramLine};
use crate::words::count_words;
use crate::{ChunkOutcome, Limits, Thresholds};

/// The state of one chunk program as its lines run.
pub(crate) struct ChunkRun<'t> {
    original: &'t str,
    /// The text after the normalizations so far; borrowed until one changes something.
    text: Cow<'t, str>,
    /// `remove_lines` ranges as written, for the reference's error count.
    ranges: Vec<(i64, i64)>,
    remove_all: bool,
    errors: Vec<ProgramError>,
    normalizations: usize,
    /// Bytes that normalize calls may still read and write.
    budget: usize,
    budget_spent: bool,
}

impl<'t> ChunkRun<'t> {
    pub(crate) fn new(text: &'t str, limits: Limits) -> Self {
        Self {
            original: text,
            text: Cow::Borrowed(text),
            ranges: Vec::new(),
            remove_all: false,
            errors: Vec::new(),
            normalizations: 0,
            budget: limits.max_normalize_bytes,
            budget_spent: false,
        }
    }

    pub(crate) fn apply(&mut self, line: &ProgramLine) {
        self.errors
            .extend(line.errors.iter().map(|reason| ProgramError {
                line: Some(line.line),
                reason: reason.clone(),
            }));
        let LineKind::Call(call) = &line.kind else {
            return;
        };
        match call {
            Call::RemoveLines { start, end } => self.ranges.push((*start, *end)),
            Call::RemoveAllLines => self.remove_all = true,
            Call::Normalize { source, target } => {
                self.normalize(line.line, source, target.as_deref().unwrap_or(""));
            }
            Call::DropDoc => self.errors.push(ProgramError {
                line: Some(line.line),
                reason: "drop_doc() belongs to the document stage".to_owned(),
            }),
            Call::KeepDoc => {}
        }
    }

    /// Replaces every occurrence of `source` in the whole current text, as `str.replace`.
    ///
    /// Each call reads the whole text, so a program of many normalize calls on a long text
    /// costs their product; the budget bounds that (and a text that `a` → `aa` calls would
    /// double again and again). Once spent, this and every later normalize call is skipped,
    /// with one error.
    fn normalize(&mut self, line: usize, source: &str, target: &str) {
        if source.is_empty() || self.budget_spent {
            return;
        }
        let Some(budget) = self.budget.checked_sub(self.text.len()) else {
            self.spend_budget(line);
            return;
        };
        self.budget = budget;
        match replace_within(&self.text, source, target, self.budget) {
            Replaced::Nothing => {}
            Replaced::Text { text, count } => {
                self.budget -= text.len();
                self.normalizations += count;
                self.text = Cow::Owned(text);
            }
            Replaced::OverBudget => self.spend_budget(line),
        }
    }

    fn spend_budget(&mut self, line: usize) {
        self.budget_spent = true;
        self.errors.push(ProgramError {
            line: Some(line),
            reason: "normalize budget spent: this and later normalize calls are skipped".to_owned(),
        });
    }

    pub(crate) fn finish(mut self, thresholds: &Thresholds) -> ChunkOutcome {
        let line_count = if self.ranges.is_empty() && !self.remove_all {
            0
        } else {
            line_count(&self.text)
        };
        if !self.ranges.is_empty() {
            self.count_range_errors(line_count);
        }
        let (edited, lines_removed) = if self.remove_all {
            (Cow::Borrowed(""), line_count)
        } else {
            remove_lines(&self.text, &self.ranges)
        };
        let words_before = count_words(self.original);
        let unchanged = matches!(edited, Cow::Borrowed(e) if std::ptr::eq(e, self.original));
        let words_after = if unchanged {
            words_before
        } else {
            count_words(&edited)
        };
        let verdict = decide(
            self.original,
            &edited,
            words_before,
            words_after,
            self.errors.len(),
            thresholds,
        );
        ChunkOutcome {
            program_ignored: matches!(verdict, Verdict::Ignored { .. }),
            verdict,
            errors: self.errors,
            lines_removed,
            normalizations: self.normalizations,
            words_before,
            words_after,
        }
    }

    /// The reference merges the ranges as written (reversed ones too) and counts one error
    /// per merged range that starts past the last line, or else ends past it.
    fn count_range_errors(&mut self, line_count: usize) {
        let mut ranges = self.ranges.clone();
        // Stable, by start only, like Python's `sort(key=lambda x: x[0])`.
        ranges.sort_by_key(|&(start, _)| start);
        let mut merged: Vec<(i64, i64)> = Vec::new();
        for (start, end) in ranges {
            match merged.last_mut() {
                Some(last) if start <= last.1.saturating_add(1) => last.1 = last.1.max(end),
                _ => merged.push((start, end)),
            }
        }
        let lines = i64::try_from(line_count).unwrap_or(i64::MAX);
        for (start, end) in merged {
            let reason = if start >= lines {
                format!("lines {start}..={end}: the text has {line_count} lines")
            } else if end >= lines {
                format!("lines {start}..={end} end past the last line ({line_count} lines)")
            } else {
                continue;
            };
            self.errors.push(ProgramError { line: None, reason });
        }
    }
}

/// `len(text.split("\n"))`.
fn line_count(text: &str) -> usize {
    // Byte counts in u8 per block vectorize well; a memchr call per short line does not.
    let newlines: usize = text
        .as_bytes()
        .chunks(128)
        .map(|block| usize::from(block.iter().fold(0u8, |n, &b| n + u8::from(b == b'\n'))))
        .sum();
    newlines + 1
}

enum Replaced {
    Nothing,
    Text { text: String, count: usize },
    OverBudget,
}

/// `text.replace(source, target)`, giving up once the result would pass `max_len` bytes.
fn replace_within(text: &str, source: &str, target: &str, max_len: usize) -> Replaced {
    let mut matches = memchr::memmem::find_iter(text.as_bytes(), source.as_bytes()).peekable();
    if matches.peek().is_none() {
        return Replaced::Nothing;
    }
    let mut out = String::new();
    let mut count = 0;
    let mut copied = 0;
    for at in matches {
        if out.len() + (at - copied) + target.len() > max_len {
            return Replaced::OverBudget;
        }
        if out.capacity() == 0 {
            out.reserve(text.len().min(max_len));
        }
        out.push_str(&text[copied..at]);
        out.push_str(target);
        copied = at + source.len();
        count += 1;
    }
    if out.len() + (text.len() - copied) > max_len {
        return Replaced::OverBudget;
    }
    out.push_str(&text[copied..]);
    Replaced::Text { text: out, count }
}

/// The text without the lines the ranges cover, and how many lines that removed. A line is
/// removed when some range `start..=end` holds its 0-based index; negative and past-the-end
/// parts remove nothing. Ranges are merged arithmetically, never expanded line by line.
fn remove_lines<'a>(text: &'a str, ranges: &[(i64, i64)]) -> (Cow<'a, str>, usize) {
    let mut spans: Vec<(u64, u64)> = ranges
        .iter()
        .filter(|&&(start, end)| start <= end && end >= 0)
        .map(|&(start, end)| (start.max(0).unsigned_abs(), end.unsigned_abs()))
        .collect();
    if spans.is_empty() {
        return (Cow::Borrowed(text), 0);
    }
    spans.sort_unstable();
    let mut merged: Vec<(u64, u64)> = Vec::with_capacity(spans.len());
    for (start, end) in spans {
        match merged.last_mut() {
            Some(last) if start <= last.1.saturating_add(1) => last.1 = last.1.max(end),
            _ => merged.push((start, end)),
        }
    }

    // Whole runs of kept lines are copied at once: only span boundaries need line offsets.
    let mut starts = LineStarts::new(text);
    let mut kept_runs: Vec<&str> = Vec::new();
    let mut removed = 0u64;
    let mut kept_from = Some((0u64, 0usize));
    for (start, end) in merged {
        let Some((first_kept, kept_offset)) = kept_from else {
            break;
        };
        let Some(removed_offset) = starts.start_of(start) else {
            break;
        };
        if start > first_kept {
            // The kept run ends before the `\n` that precedes the first removed line.
            kept_runs.push(&text[kept_offset..removed_offset - 1]);
        }
        let after = end.saturating_add(1);
        kept_from = starts.start_of(after).map(|offset| (after, offset));
        removed += match kept_from {
            Some(_) => after - start,
            None => starts.line_count() - start,
        };
    }
    if removed == 0 {
        return (Cow::Borrowed(text), 0);
    }
    if let Some((_, offset)) = kept_from {
        kept_runs.push(&text[offset..]);
    }
    let removed = usize::try_from(removed).unwrap_or(usize::MAX);
    (Cow::Owned(kept_runs.join("\n")), removed)
}

/// The byte offsets at which the lines of a text start, found front to back as asked for.
struct LineStarts<'a> {
    newlines: memchr::Memchr<'a>,
    line: u64,
    offset: usize,
    exhausted: bool,
}

impl<'a> LineStarts<'a> {
    fn new(text: &'a str) -> Self {
        Self {
            newlines: memchr::memchr_iter(b'\n', text.as_bytes()),
            line: 0,
            offset: 0,
            exhausted: false,
        }
    }

    /// Where line `line` starts (never before the last line asked for), or `None` when the
    /// text has no such line.
    fn start_of(&mut self, line: u64) -> Option<usize> {
        while self.line < line {
            match self.newlines.next() {
                Some(newline) => {
                    self.line += 1;
                    self.offset = newline + 1;
                }
                None => {
                    self.exhausted = true;
                    return None;
                }
            }
        }
        Some(self.offset)
    }

    /// The number of lines, once [`start_of`](Self::start_of) has run past the last one.
    fn line_count(&self) -> u64 {
        debug_assert!(self.exhausted);
        self.line + 1
    }
}

/// The reference's decision (`execute_meta_operations`), in its order.
fn decide(
    original: &str,
    edited: &str,
    words_before: usize,
    words_after: usize,
    errors: usize,
    thresholds: &Thresholds,
) -> Verdict {
    if words_before == 0 {
        // The reference divides by zero here.
        return Verdict::Dropped(DropReason::NoWords);
    }
    // Word counts are far below 2^53: both convert exactly, and the quotient rounds as
    // Python's int / int does.
    let ratio = words_after as f64 / words_before as f64;
    let few_errors = errors < thresholds.error_op;
    if ratio <= 1.0 - thresholds.threshold_2 && few_errors {
        Verdict::Dropped(DropReason::LowRatio)
    } else if words_after <= thresholds.min_words {
        Verdict::Dropped(DropReason::FewWords)
    } else if ratio >= thresholds.threshold_1 && few_errors {
        Verdict::Kept {
            modified: edited != original,
            text: edited.to_owned(),
        }
    } else {
        Verdict::Ignored {
            text: original.to_owned(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    /// The reference's removal, index by index: `[l for i, l in enumerate(lines) if i not in marked]`.
    fn remove_lines_naively(text: &str, ranges: &[(i64, i64)]) -> (String, usize) {
        let lines: Vec<&str> = text.split('\n').collect();
        let marked = |i: usize| {
            let i = i as i64;
            ranges.iter().any(|&(start, end)| start <= i && i <= end)
        };
        let kept: Vec<&str> = (0..lines.len())
            .filter(|&i| !marked(i))
            .map(|i| lines[i])
            .collect();
        (kept.join("\n"), lines.len() - kept.len())
    }

    proptest! {
        #[test]
        fn removing_lines_by_runs_equals_removing_them_one_by_one(
            lines in proptest::collection::vec("[ab]{0,3}", 1..12),
            ranges in proptest::collection::vec((-3i64..14, -3i64..14), 0..5),
        ) {
            let text = lines.join("\n");
            let (fast, removed) = remove_lines(&text, &ranges);
            let (naive, naive_removed) = remove_lines_naively(&text, &ranges);
            prop_assert_eq!(fast.as_ref(), naive.as_str());
            prop_assert_eq!(removed, naive_removed);
        }

        #[test]
        fn replacing_equals_str_replace(text in "[ab\n]{0,20}", source in "[ab]{1,3}", target in "[xa]{0,2}") {
            let expected = text.replace(&source, &target);
            match replace_within(&text, &source, &target, usize::MAX) {
                Replaced::Text { text: replaced, count } => {
                    prop_assert_eq!(replaced, expected);
                    prop_assert_eq!(count, text.matches(source.as_str()).count());
                }
                Replaced::Nothing => prop_assert!(!text.contains(source.as_str())),
                Replaced::OverBudget => prop_assert!(false, "no budget was set"),
            }
        }
    }

    #[test]
    fn replaces_like_python() {
        let replaced = |text, from, to| match replace_within(text, from, to, usize::MAX) {
            Replaced::Text { text, count } => Some((text, count)),
            _ => None,
        };
        assert_eq!(replaced("aaa", "aa", "b"), Some(("ba".into(), 1)));
        assert_eq!(replaced("abcabc", "bc", ""), Some(("aa".into(), 2)));
        assert_eq!(replaced("abc", "x", "y"), None);
    }

    #[test]
    fn replacing_stops_at_the_budget() {
        assert!(matches!(
            replace_within("aaaa", "a", "aaaa", 15),
            Replaced::OverBudget
        ));
        assert!(matches!(
            replace_within("aaaa", "a", "aaaa", 16),
            Replaced::Text { count: 4, .. }
        ));
    }

    #[test]
    fn removes_merged_ranges_without_expanding_them() {
        let text = "0\n1\n2\n3\n4";
        let ranges = [(3, i64::MAX), (-5, 0), (2, 1), (i64::MIN, i64::MIN)];
        assert_eq!(remove_lines(text, &ranges), (Cow::Borrowed("1\n2"), 3));
        assert_eq!(remove_lines(text, &[(9, 12)]), (Cow::Borrowed(text), 0));
        assert_eq!(remove_lines(text, &[(0, 4)]), (Cow::Borrowed(""), 5));
    }
}
