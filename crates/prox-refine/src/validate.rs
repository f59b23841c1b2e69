//! Measuring a refiner on held-out annotated examples, as the ProX paper selects refiners:
//! the document stage by keep/drop F1, the chunk stage by line-wise F1.
//!
//! # The example rows (SFT format)
//!
//! One JSON object per example, as `prox annotate` writes `sft.jsonl`:
//!
//! | field | | meaning |
//! |---|---|---|
//! | `id` | required | string or number, named in every message about the row |
//! | `stage` | required | `"doc"` or `"chunk"` |
//! | `prompt` | required | the refiner's prompt, as `prox prompts` writes it |
//! | `target` | required | the program the refiner should write (it must pass the strict parser) |
//! | `prompt_ids` | optional | the prompt's token ids; used as they are when present, else `prompt` is tokenized (special tokens recognised, no BOS added: the prompt writes its own) |
//! | `lines` | chunk stage | how many lines the chunk holds |
//! | `first_line` | chunk stage, default 0 | the document-wide number of the chunk's first line (`[012]`) |
//! | `text` | optional | the document, or the chunk's lines without their numbers joined by `\n`; needed for the kept-token ratio |
//!
//! Other fields are ignored.
//!
//! # The measures
//!
//! - **Document stage:** a program drops the document when the strict executor says so
//!   (`drop_doc()` without `keep_doc()`). *Drop is the positive class*: a true positive is a
//!   dropped document the target drops too.
//! - **Chunk stage:** the lines a program removes are the chunk's lines (`first_line ..
//!   first_line + lines`) inside its `remove_lines(start=, end=)` ranges (end inclusive), or
//!   all of them for `remove_lines(all=True)`; `normalize()` removes nothing. Each line of
//!   each chunk is one decision; true positives, false positives and false negatives are summed
//!   over all chunks (micro-average) before precision, recall and F1 are computed.
//! - precision = TP / (TP + FP), recall = TP / (TP + FN), F1 = 2·TP / (2·TP + FP + FN); a
//!   measure whose denominator is 0 is undefined (`null`), never silently 0 or 1.
//! - A prediction the strict parser rejects is counted as invalid and scored as the executor
//!   would run nothing of it: the document kept, no line removed.
//! - **Kept-token ratio** (when every row has `text`): tokens of what the predicted programs
//!   keep over tokens of all the texts (whole documents at the document stage; kept lines at
//!   the chunk stage, each line counted on its own), beside the same ratio for the targets.

use std::collections::BTreeSet;
use std::fmt::Write as _;

use prox_program::{Call, Executor, Mode, Stage, Thresholds};
use serde::Serialize;
use serde_json::{Map, Value};

use crate::backend::{Backend, GenRequest};

/// Why an example row or a validation cannot be used.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ValidateError {
    /// A row that is not an example of the documented format.
    #[error("{location}{}: {reason}", id.as_ref().map(|id| format!(" (id {id})")).unwrap_or_default())]
    Example {
        /// Where the row is (file and line).
        location: String,
        id: Option<String>,
        reason: String,
    },
    /// The model failed as a whole (not one request).
    #[error(transparent)]
    Backend(#[from] crate::Error),
}

/// One held-out example (see the module documentation for the row format).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Example {
    pub id: String,
    pub stage: Stage,
    pub prompt: String,
    pub prompt_ids: Option<Vec<u32>>,
    pub target: String,
    pub text: Option<String>,
    /// Chunk stage: the chunk's first line, document-wide.
    pub first_line: usize,
    /// Chunk stage: how many lines the chunk holds (0 at the document stage).
    pub lines: usize,
}

impl Example {
    /// Reads a row; `location` (file and line) goes into every error.
    pub fn from_row(row: &Map<String, Value>, location: &str) -> Result<Self, ValidateError> {
        let id = match row.get("id") {
            Some(Value::String(id)) => Some(id.clone()),
            Some(Value::Number(id)) => Some(id.to_string()),
            _ => None,
        };
        let fail = |reason: String| ValidateError::Example {
            location: location.to_owned(),
            id: id.clone(),
            reason,
        };
        let id_value = id
            .clone()
            .ok_or_else(|| fail("`id` must be a string or a number".to_owned()))?;
        let string = |name: &str| match row.get(name) {
            Some(Value::String(s)) => Ok(s.clone()),
            Some(other) => Err(fail(format!("`{name}` must be a string, not {other}"))),
            None => Err(fail(format!("`{name}` is missing"))),
        };
        let count = |name: &str| -> Result<Option<usize>, ValidateError> {
            match row.get(name) {
                None | Some(Value::Null) => Ok(None),
                Some(value) => value
                    .as_u64()
                    .and_then(|n| usize::try_from(n).ok())
                    .map(Some)
                    .ok_or_else(|| {
                        fail(format!(
                            "`{name}` must be a non-negative integer, not {value}"
                        ))
                    }),
            }
        };
        let stage: Stage = string("stage")?
            .parse()
            .map_err(|error: prox_program::ParseStageError| fail(error.to_string()))?;
        let prompt = string("prompt")?;
        let target = string("target")?;
        let prompt_ids = match row.get("prompt_ids") {
            None | Some(Value::Null) => None,
            Some(Value::Array(items)) => Some(
                items
                    .iter()
                    .map(|v| v.as_u64().and_then(|n| u32::try_from(n).ok()))
                    .collect::<Option<Vec<u32>>>()
                    .ok_or_else(|| fail("`prompt_ids` must be a list of token ids".to_owned()))?,
            ),
            Some(other) => return Err(fail(format!("`prompt_ids` must be a list, not {other}"))),
        };
        let text = match row.get("text") {
            None | Some(Value::Null) => None,
            Some(_) => Some(string("text")?),
        };
        let (first_line, lines) = match stage {
            Stage::Doc => (0, 0),
            Stage::Chunk => (
                count("first_line")?.unwrap_or(0),
                count("lines")?.ok_or_else(|| {
                    fail("`lines` (the chunk's line count) is missing".to_owned())
                })?,
            ),
        };
        let example = Example {
            id: id_value,
            stage,
            prompt,
            prompt_ids,
            target,
            text,
            first_line,
            lines,
        };
        // The target is the reference: it must say something the measures can read.
        example
            .decision(&example.target)
            .map_err(|reason| fail(format!("the target is not a valid program: {reason}")))?;
        if let (Stage::Chunk, Some(text)) = (stage, &example.text) {
            let in_text = text.split('\n').count();
            if in_text != example.lines {
                return Err(fail(format!(
                    "`text` has {in_text} lines, `lines` says {}",
                    example.lines
                )));
            }
        }
        Ok(example)
    }

    /// What a program decides for this example, or why the strict parser rejects it.
    pub fn decision(&self, program: &str) -> Result<Decision, String> {
        match self.stage {
            Stage::Doc => doc_drops(program).map(Decision::Drop),
            Stage::Chunk => {
                removed_lines(program, self.first_line, self.lines).map(Decision::Remove)
            }
        }
    }
}

/// What a program decides: drop the document or not, or which lines of the chunk go.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Decision {
    Drop(bool),
    Remove(BTreeSet<usize>),
}

/// Whether a document program drops the document, by the strict executor; `Err` with the
/// parser's complaints when it is not a valid program.
pub fn doc_drops(program: &str) -> Result<bool, String> {
    let outcome = Executor::new(Mode::Strict, Thresholds::default()).run_doc(program);
    if outcome.errors.is_empty() {
        Ok(!outcome.keep)
    } else {
        Err(outcome
            .errors
            .iter()
            .map(ToString::to_string)
            .collect::<Vec<_>>()
            .join("; "))
    }
}

/// The document-wide numbers of the chunk's lines (`first_line .. first_line + lines`) that
/// a chunk program removes; `Err` with the parser's complaints when it is not a valid
/// program.
pub fn removed_lines(
    program: &str,
    first_line: usize,
    lines: usize,
) -> Result<BTreeSet<usize>, String> {
    let parsed = prox_program::parse(program, Mode::Strict);
    let errors: Vec<String> = parsed
        .lines
        .iter()
        .flat_map(|line| {
            line.errors
                .iter()
                .map(move |e| format!("line {}: {e}", line.line))
        })
        .collect();
    if !errors.is_empty() {
        return Err(errors.join("; "));
    }
    let chunk = first_line..first_line + lines;
    let mut removed = BTreeSet::new();
    for (_, call) in parsed.calls() {
        match call {
            Call::RemoveLines { start, end } => {
                let start = usize::try_from((*start).max(0)).unwrap_or(usize::MAX);
                // `end` is inclusive; a negative one removes nothing.
                if let Ok(end) = usize::try_from(*end) {
                    removed.extend(start.max(chunk.start)..end.saturating_add(1).min(chunk.end));
                }
            }
            Call::RemoveAllLines => removed.extend(chunk.clone()),
            Call::DropDoc | Call::KeepDoc | Call::Normalize { .. } => {}
        }
    }
    Ok(removed)
}

/// Counts of a binary decision, the positive class being "drop" or "removed".
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct Counts {
    pub true_positives: u64,
    pub false_positives: u64,
    pub false_negatives: u64,
    pub true_negatives: u64,
}

impl Counts {
    /// Counts one decision.
    pub fn add(&mut self, predicted: bool, target: bool) {
        match (predicted, target) {
            (true, true) => self.true_positives += 1,
            (true, false) => self.false_positives += 1,
            (false, true) => self.false_negatives += 1,
            (false, false) => self.true_negatives += 1,
        }
    }

    /// TP / (TP + FP); `None` when nothing was predicted positive.
    pub fn precision(&self) -> Option<f64> {
        ratio(
            self.true_positives,
            self.true_positives + self.false_positives,
        )
    }

    /// TP / (TP + FN); `None` when nothing is positive in the targets.
    pub fn recall(&self) -> Option<f64> {
        ratio(
            self.true_positives,
            self.true_positives + self.false_negatives,
        )
    }

    /// 2·TP / (2·TP + FP + FN): the harmonic mean of precision and recall where both are
    /// defined, 0 when one of them is 0, `None` when there is no positive at all.
    pub fn f1(&self) -> Option<f64> {
        ratio(
            2 * self.true_positives,
            2 * self.true_positives + self.false_positives + self.false_negatives,
        )
    }
}

fn ratio(numerator: u64, denominator: u64) -> Option<f64> {
    (denominator > 0).then(|| numerator as f64 / denominator as f64)
}

/// A request the model could not answer.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Unanswered {
    pub id: String,
    pub reason: String,
}

/// Accumulates the measures over examples and their predictions.
#[derive(Debug, Clone)]
pub struct Scorer {
    stage: Stage,
    counts: Counts,
    examples: u64,
    invalid_predictions: u64,
    exact_matches: u64,
    unanswered: Vec<Unanswered>,
    /// (kept by the predictions, kept by the targets, all), while every text is known.
    tokens: Option<(u64, u64, u64)>,
}

impl Scorer {
    pub fn new(stage: Stage) -> Self {
        Scorer {
            stage,
            counts: Counts::default(),
            examples: 0,
            invalid_predictions: 0,
            exact_matches: 0,
            unanswered: Vec::new(),
            tokens: Some((0, 0, 0)),
        }
    }

    /// Scores one example's predicted program; `tokens` counts the tokens of a text.
    pub fn add(&mut self, example: &Example, predicted: &str, tokens: &dyn Fn(&str) -> usize) {
        self.examples += 1;
        if predicted.trim() == example.target.trim() {
            self.exact_matches += 1;
        }
        let target = example
            .decision(&example.target)
            .expect("targets are checked when examples are read");
        let prediction = example.decision(predicted).unwrap_or_else(|_| {
            self.invalid_predictions += 1;
            // As the executor runs nothing of an unreadable program.
            match self.stage {
                Stage::Doc => Decision::Drop(false),
                Stage::Chunk => Decision::Remove(BTreeSet::new()),
            }
        });
        let text = example.text.as_deref();
        match (prediction, target) {
            (Decision::Drop(predicted), Decision::Drop(target)) => {
                self.counts.add(predicted, target);
                if let (Some(text), Some(sums)) = (text, self.tokens.as_mut()) {
                    let n = tokens(text) as u64;
                    sums.0 += if predicted { 0 } else { n };
                    sums.1 += if target { 0 } else { n };
                    sums.2 += n;
                }
            }
            (Decision::Remove(predicted), Decision::Remove(target)) => {
                for line in example.first_line..example.first_line + example.lines {
                    self.counts
                        .add(predicted.contains(&line), target.contains(&line));
                }
                if let (Some(text), Some(sums)) = (text, self.tokens.as_mut()) {
                    for (offset, line) in text.split('\n').enumerate() {
                        let number = example.first_line + offset;
                        let n = tokens(line) as u64;
                        sums.0 += if predicted.contains(&number) { 0 } else { n };
                        sums.1 += if target.contains(&number) { 0 } else { n };
                        sums.2 += n;
                    }
                }
            }
            _ => unreachable!("an example's decisions are of its stage"),
        }
        if text.is_none() {
            self.tokens = None;
        }
    }

    /// An example the model could not answer: listed, not scored.
    pub fn unanswered(&mut self, example: &Example, reason: String) {
        self.unanswered.push(Unanswered {
            id: example.id.clone(),
            reason,
        });
    }

    pub fn finish(self) -> Validation {
        let (kept_token_ratio, target_kept_token_ratio) = match self.tokens {
            Some((predicted, target, all)) if self.examples > 0 => {
                (ratio(predicted, all), ratio(target, all))
            }
            _ => (None, None),
        };
        Validation {
            stage: self.stage,
            unit: match self.stage {
                Stage::Doc => "documents",
                Stage::Chunk => "lines",
            },
            examples: self.examples,
            unanswered: self.unanswered,
            invalid_predictions: self.invalid_predictions,
            exact_matches: self.exact_matches,
            precision: self.counts.precision(),
            recall: self.counts.recall(),
            f1: self.counts.f1(),
            counts: self.counts,
            kept_token_ratio,
            target_kept_token_ratio,
        }
    }
}

/// The measures of a validation, as the JSON report holds them.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Validation {
    pub stage: Stage,
    /// What the counts count: `documents` or `lines`.
    pub unit: &'static str,
    /// Examples scored.
    pub examples: u64,
    /// Examples the model could not answer (not scored).
    pub unanswered: Vec<Unanswered>,
    /// Predictions the strict parser rejected (scored as no drop, no removal).
    pub invalid_predictions: u64,
    /// Predictions equal to the target (surrounding whitespace aside).
    pub exact_matches: u64,
    pub precision: Option<f64>,
    pub recall: Option<f64>,
    pub f1: Option<f64>,
    pub counts: Counts,
    /// Tokens the predictions keep over all tokens; `None` unless every row has `text`.
    pub kept_token_ratio: Option<f64>,
    /// The same for the targets.
    pub target_kept_token_ratio: Option<f64>,
}

impl Validation {
    /// The measures as a small aligned table.
    pub fn table(&self) -> String {
        let number =
            |value: Option<f64>| value.map_or_else(|| "n/a".to_owned(), |v| format!("{v:.4}"));
        let positive = match self.stage {
            Stage::Doc => "drop",
            Stage::Chunk => "removed line",
        };
        let rows = [
            ("stage", self.stage.as_str().to_owned()),
            ("examples", self.examples.to_string()),
            ("unanswered", self.unanswered.len().to_string()),
            ("invalid predictions", self.invalid_predictions.to_string()),
            ("exact matches", self.exact_matches.to_string()),
            (
                "positive class",
                format!("{positive} ({} counted)", self.unit),
            ),
            ("TP / FP / FN / TN", {
                let c = &self.counts;
                format!(
                    "{} / {} / {} / {}",
                    c.true_positives, c.false_positives, c.false_negatives, c.true_negatives
                )
            }),
            ("precision", number(self.precision)),
            ("recall", number(self.recall)),
            ("F1", number(self.f1)),
            ("kept-token ratio", number(self.kept_token_ratio)),
            (
                "target kept-token ratio",
                number(self.target_kept_token_ratio),
            ),
        ];
        let width = rows.iter().map(|(k, _)| k.len()).max().unwrap_or(0);
        let mut out = String::new();
        for (key, value) in rows {
            let _ = writeln!(out, "{key:<width$}  {value}");
        }
        out
    }
}

/// Settings of [`validate`].
#[derive(Debug, Clone)]
pub struct ValidateOptions {
    /// The most tokens a prediction may have.
    pub max_new_tokens: usize,
    /// Examples sent to the backend at a time.
    pub batch_size: usize,
}

/// Runs the refiner behind `backend` over every example (all of one stage) and scores its
/// predictions; `progress` hears how many examples are done.
pub fn validate(
    backend: &dyn Backend,
    examples: &[Example],
    options: &ValidateOptions,
    progress: &mut dyn FnMut(usize),
) -> Result<Validation, ValidateError> {
    let stage = examples.first().map_or(Stage::Doc, |e| e.stage);
    if let Some(other) = examples.iter().find(|e| e.stage != stage) {
        return Err(ValidateError::Example {
            location: "the examples".to_owned(),
            id: Some(other.id.clone()),
            reason: format!(
                "stage {} among examples of stage {}; validate one stage at a time",
                other.stage.as_str(),
                stage.as_str()
            ),
        });
    }
    let tokenizer = backend.tokenizer();
    let count = |text: &str| tokenizer.encode(text, false).map_or(0, |ids| ids.len());
    let mut scorer = Scorer::new(stage);
    let mut done = 0;
    for batch in examples.chunks(options.batch_size.max(1)) {
        let requests = batch
            .iter()
            .map(|example| {
                let prompt_ids = match &example.prompt_ids {
                    Some(ids) => ids.clone(),
                    None => tokenizer.encode(&example.prompt, false).map_err(|e| {
                        ValidateError::Example {
                            location: "the examples".to_owned(),
                            id: Some(example.id.clone()),
                            reason: format!("cannot tokenize the prompt: {e}"),
                        }
                    })?,
                };
                Ok(GenRequest {
                    prompt_ids,
                    max_new_tokens: options.max_new_tokens,
                })
            })
            .collect::<Result<Vec<_>, ValidateError>>()?;
        let outcomes = match stage {
            Stage::Doc => backend.decide_doc(&requests)?,
            Stage::Chunk => backend.generate(&requests)?,
        };
        for (example, outcome) in batch.iter().zip(outcomes) {
            match outcome {
                Ok(result) => scorer.add(example, &result.text, &count),
                Err(reason) => scorer.unanswered(example, reason),
            }
        }
        done += batch.len();
        progress(done);
    }
    Ok(scorer.finish())
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)] // a failure is a test failure

    use serde_json::json;

    use super::*;

    fn example(row: Value) -> Example {
        Example::from_row(row.as_object().unwrap(), "held-out.jsonl:1").unwrap()
    }

    fn chunk(first_line: usize, lines: usize, target: &str, text: Option<&str>) -> Example {
        let mut row = json!({"id": "c", "stage": "chunk", "prompt": "p", "target": target,
                             "first_line": first_line, "lines": lines});
        if let Some(text) = text {
            row["text"] = json!(text);
        }
        example(row)
    }

    fn doc(target: &str, text: &str) -> Example {
        example(json!({"id": 1, "stage": "doc", "prompt": "p", "target": target, "text": text}))
    }

    /// One token per word, for hand-counted ratios.
    fn words(text: &str) -> usize {
        text.split_whitespace().count()
    }

    fn close(a: Option<f64>, b: f64) -> bool {
        a.is_some_and(|a| (a - b).abs() < 1e-12)
    }

    #[test]
    fn document_f1_takes_drop_as_the_positive_class() {
        // Targets: drop, drop, keep, keep, drop. Predictions: drop, keep, drop, keep, drop.
        // TP = 2 (1st, 5th), FN = 1 (2nd), FP = 1 (3rd), TN = 1 (4th).
        let cases = [
            ("drop_doc()", "drop_doc()", "a b"),
            ("drop_doc()", "keep_doc()", "c d e"),
            ("keep_doc()", "drop_doc()", "f"),
            ("keep_doc()", "keep_doc()", "g h i j"),
            ("drop_doc()", "drop_doc()", "k"),
        ];
        let mut scorer = Scorer::new(Stage::Doc);
        for (target, predicted, text) in cases {
            scorer.add(&doc(target, text), predicted, &words);
        }
        let v = scorer.finish();
        assert_eq!(
            v.counts,
            Counts {
                true_positives: 2,
                false_positives: 1,
                false_negatives: 1,
                true_negatives: 1
            }
        );
        assert!(close(v.precision, 2.0 / 3.0));
        assert!(close(v.recall, 2.0 / 3.0));
        assert!(close(v.f1, 2.0 / 3.0));
        // 11 words; predictions keep "c d e" and "g h i j" (7); targets keep "f", "g h i j" (5).
        assert!(close(v.kept_token_ratio, 7.0 / 11.0));
        assert!(close(v.target_kept_token_ratio, 5.0 / 11.0));
        assert_eq!(v.exact_matches, 3);
    }

    #[test]
    fn chunk_f1_is_micro_averaged_over_the_lines_of_all_chunks() {
        // Chunk A, lines 10..15 (5 lines): target removes 10-11, prediction 11-12.
        //   TP {11}, FP {12}, FN {10}, TN {13, 14}.
        // Chunk B, lines 0..4: target removes 3, prediction removes all (remove_lines(all=True)).
        //   TP {3}, FP {0, 1, 2}.
        // Chunk C, lines 4..6: target untouched, prediction normalizes: nothing removed.
        //   TN {4, 5}.
        // Sums: TP 2, FP 4, FN 1, TN 4. P = 2/6, R = 2/3, F1 = 4/9. (A macro-average of the
        // chunks' F1 would be (1/2 + 2/5 + undefined)/… : not what is reported.)
        let a = chunk(
            10,
            5,
            "remove_lines(start=10, end=11)",
            Some("x\nx\nx\nx\nx"),
        );
        let b = chunk(0, 4, "remove_lines(start=3, end=3)", Some("a\nb\nc\nd"));
        let c = chunk(4, 2, "untouch_doc()", Some("e f\ng"));
        let mut scorer = Scorer::new(Stage::Chunk);
        scorer.add(&a, "remove_lines(start=11, end=12)", &words);
        scorer.add(&b, "remove_lines(all=True)", &words);
        scorer.add(&c, "normalize(source_str=\"e\", target_str=\"\")", &words);
        let v = scorer.finish();
        assert_eq!(
            v.counts,
            Counts {
                true_positives: 2,
                false_positives: 4,
                false_negatives: 1,
                true_negatives: 4
            }
        );
        assert!(close(v.precision, 2.0 / 6.0));
        assert!(close(v.recall, 2.0 / 3.0));
        assert!(close(v.f1, 4.0 / 9.0));
        // 12 words: predictions keep 10, 13, 14 of A (3) and all of C (3): 6. Targets keep
        // 12, 13, 14 of A (3), a b c of B (3), C (3): 9.
        assert!(close(v.kept_token_ratio, 6.0 / 12.0));
        assert!(close(v.target_kept_token_ratio, 9.0 / 12.0));
    }

    #[test]
    fn removals_outside_the_chunk_or_reversed_remove_nothing_there() {
        assert_eq!(
            removed_lines("remove_lines(start=8, end=12)", 10, 5).unwrap(),
            BTreeSet::from([10, 11, 12])
        );
        assert_eq!(
            removed_lines("remove_lines(start=13, end=40)", 10, 5).unwrap(),
            BTreeSet::from([13, 14])
        );
        assert!(removed_lines("remove_lines(start=20, end=30)", 10, 5)
            .unwrap()
            .is_empty());
        assert!(removed_lines("remove_lines(start=12, end=11)", 10, 5)
            .unwrap()
            .is_empty());
        assert!(removed_lines("remove_lines(start=0, end=3)", 0, 0)
            .unwrap()
            .is_empty());
    }

    #[test]
    fn an_invalid_prediction_is_counted_and_removes_nothing() {
        let a = chunk(0, 3, "remove_lines(start=0, end=1)", None);
        let mut scorer = Scorer::new(Stage::Chunk);
        scorer.add(&a, "remove_lines(0, 1", &words);
        let v = scorer.finish();
        assert_eq!(v.invalid_predictions, 1);
        assert_eq!(
            (
                v.counts.true_positives,
                v.counts.false_negatives,
                v.counts.true_negatives
            ),
            (0, 2, 1)
        );
        assert!(close(v.f1, 0.0));
        assert_eq!(v.precision, None, "nothing was predicted removed");
        assert_eq!(v.kept_token_ratio, None, "no text, no ratio");
    }

    #[test]
    fn measures_without_any_positive_are_undefined_not_zero() {
        let mut scorer = Scorer::new(Stage::Doc);
        scorer.add(&doc("keep_doc()", "a"), "keep_doc()", &words);
        let v = scorer.finish();
        assert_eq!((v.precision, v.recall, v.f1), (None, None, None));
        assert!(v.table().contains("F1"));
        assert!(v.table().contains("n/a"));
    }

    #[test]
    fn rows_that_are_not_examples_are_refused_with_their_location_and_id() {
        let cases = [
            (
                json!({"stage": "doc", "prompt": "p", "target": "drop_doc()"}),
                "`id`",
            ),
            (
                json!({"id": "x", "stage": "both", "prompt": "p", "target": "drop_doc()"}),
                "unknown stage",
            ),
            (
                json!({"id": "x", "stage": "doc", "target": "drop_doc()"}),
                "`prompt` is missing",
            ),
            (
                json!({"id": "x", "stage": "chunk", "prompt": "p", "target": "untouch_doc()"}),
                "`lines`",
            ),
            (
                json!({"id": "x", "stage": "chunk", "prompt": "p", "target": "delete_lines(start=1)", "lines": 3}),
                "target is not a valid program",
            ),
            (
                json!({"id": "x", "stage": "chunk", "prompt": "p", "target": "untouch_doc()", "lines": 3, "text": "a"}),
                "`text` has 1 lines",
            ),
            (
                json!({"id": "x", "stage": "doc", "prompt": "p", "target": "keep_doc()", "prompt_ids": [1, -2]}),
                "`prompt_ids`",
            ),
        ];
        for (row, expected) in cases {
            let error = Example::from_row(row.as_object().unwrap(), "h.jsonl:7")
                .unwrap_err()
                .to_string();
            assert!(error.starts_with("h.jsonl:7"), "{error}");
            assert!(error.contains(expected), "{error} lacks {expected}");
        }
        let error = Example::from_row(
            json!({"id": 5, "stage": "doc", "target": "drop_doc()"})
                .as_object()
                .unwrap(),
            "h.jsonl:2",
        )
        .unwrap_err()
        .to_string();
        assert!(error.contains("(id 5)"), "{error}");
    }

    #[test]
    fn an_sft_row_of_prox_annotate_reads() {
        let e = example(
            json!({"id": "doc-3#1", "stage": "chunk", "prompt": "<s>[INST] …",
            "target": "remove_lines(start=12, end=13)", "prompt_ids": [1, 518],
            "text": "a\nb\nc", "doc_id": "doc-3", "chunk": 1, "first_line": 12, "lines": 3,
            "lines_removed": 2, "source": "in.jsonl:4"}),
        );
        assert_eq!((e.first_line, e.lines), (12, 3));
        assert_eq!(e.prompt_ids, Some(vec![1, 518]));
        assert_eq!(
            e.decision(&e.target).unwrap(),
            Decision::Remove(BTreeSet::from([12, 13]))
        );
    }

    /// F1 from the counts is the harmonic mean of precision and recall whenever both are
    /// defined and not both 0, lies between 0 and 1, and is undefined only without any
    /// positive: checked on every count up to 12.
    #[test]
    fn f1_is_the_harmonic_mean_of_precision_and_recall() {
        for tp in 0..12u64 {
            for fp in 0..12u64 {
                for fn_ in 0..12u64 {
                    let c = Counts {
                        true_positives: tp,
                        false_positives: fp,
                        false_negatives: fn_,
                        true_negatives: 3,
                    };
                    if let (Some(p), Some(r)) = (c.precision(), c.recall()) {
                        if p + r > 0.0 {
                            assert!((c.f1().unwrap() - 2.0 * p * r / (p + r)).abs() < 1e-12);
                        }
                    }
                    if let Some(f1) = c.f1() {
                        assert!((0.0..=1.0).contains(&f1));
                    }
                    assert_eq!(c.f1().is_none(), tp + fp + fn_ == 0);
                }
            }
        }
    }

    /// Whatever a model writes, it is scored: every line of the chunk counted once.
    #[test]
    fn any_prediction_is_scored_on_every_line() {
        let a = chunk(3, 4, "remove_lines(start=3, end=4)", Some("a\nb\nc\nd"));
        for program in [
            "",
            "remove_lines(start=-5, end=99999999999999999999)",
            "remove_lines(start=9223372036854775807, end=9223372036854775807)",
            "remove_lines(start=4, end=-1)",
            "drop_doc()\nremove_lines(start=3, end=3)",
            "```python\nremove_lines(start=5, end=6)\n```",
            "remove_lines(all=True)\nremove_lines(all=True)",
            "normalize(source_str=\"a\", target_str=\"\")",
            "\u{0}\u{fffd}(((",
            "remove_lines(start=3, end=4",
        ] {
            let mut scorer = Scorer::new(Stage::Chunk);
            scorer.add(&a, program, &words);
            let c = scorer.finish().counts;
            let total = c.true_positives + c.false_positives + c.false_negatives + c.true_negatives;
            assert_eq!(total, 4, "{program:?}");
        }
    }

    /// Answers each prompt with the program scripted for its first token id.
    struct Scripted {
        tokenizer: prox_tokenizer::Tokenizer,
        answers: Vec<Result<&'static str, &'static str>>,
    }

    impl Backend for Scripted {
        fn describe(&self) -> String {
            "scripted".to_owned()
        }

        fn tokenizer(&self) -> &prox_tokenizer::Tokenizer {
            &self.tokenizer
        }

        fn generate(
            &self,
            requests: &[GenRequest],
        ) -> crate::Result<Vec<crate::backend::GenOutcome>> {
            Ok(requests
                .iter()
                .map(|r| match self.answers[r.prompt_ids[0] as usize] {
                    Ok(text) => Ok(crate::GenResult {
                        text: text.to_owned(),
                        generated_tokens: 1,
                    }),
                    Err(reason) => Err(reason.to_owned()),
                })
                .collect())
        }
    }

    #[test]
    fn validate_sends_every_example_and_lists_the_unanswered() {
        let backend = Scripted {
            tokenizer: prox_tokenizer::Tokenizer::from_path(&prox_test::fixture(
                "llama2-tokenizer",
            ))
            .unwrap(),
            answers: vec![
                Ok("remove_lines(start=0, end=0)"),
                Err("the server gave up"),
                Ok("untouch_doc()"),
            ],
        };
        let examples: Vec<Example> = (0..3u32)
            .map(|i| {
                example(
                    json!({"id": i, "stage": "chunk", "prompt": "p", "prompt_ids": [i, 5],
                    "target": "remove_lines(start=0, end=1)", "lines": 2, "text": "a b\nc"}),
                )
            })
            .collect();
        let mut seen = Vec::new();
        let options = ValidateOptions {
            max_new_tokens: 8,
            batch_size: 2,
        };
        let v = validate(&backend, &examples, &options, &mut |done| seen.push(done)).unwrap();
        assert_eq!(seen, vec![2, 3], "progress after each batch");
        assert_eq!(v.examples, 2);
        assert_eq!(
            v.unanswered,
            vec![Unanswered {
                id: "1".to_owned(),
                reason: "the server gave up".to_owned()
            }]
        );
        // Example 0: TP {0}, FN {1}; example 2: FN {0, 1}.
        assert_eq!(
            (
                v.counts.true_positives,
                v.counts.false_negatives,
                v.counts.false_positives
            ),
            (1, 3, 0)
        );
        assert!(close(v.recall, 0.25));
        assert!(close(v.precision, 1.0));

        let mixed = vec![examples[0].clone(), doc("drop_doc()", "x")];
        let error = validate(&backend, &mixed, &options, &mut |_| {}).unwrap_err();
        assert!(error.to_string().contains("one stage at a time"), "{error}");
    }
}
