//! The counts of a task or a run, as `docs/run-folder.md` lays them out. A field a file lacks
//! (one written by an older `prox`) reads as zero; fields it does not know are ignored.

use std::collections::BTreeMap;
use std::ops::AddAssign;

use prox_program::Stage;
use serde::{Deserialize, Serialize};

/// Where the documents went. `input = output + dropped + failed` and
/// `output = unchanged + modified + ignored`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct DocumentCounts {
    pub input: u64,
    pub output: u64,
    pub unchanged: u64,
    pub modified: u64,
    pub ignored: u64,
    pub dropped: u64,
    pub failed: u64,
}

/// The model work of one stage.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct StageCounts {
    /// Documents that reached the stage.
    pub documents: u64,
    pub prompts: u64,
    pub prompt_tokens: u64,
    pub generated_tokens: u64,
    /// Document-stage prompts cut to the token budget.
    pub truncated_prompts: u64,
    /// Time spent waiting for the model.
    pub seconds: f64,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct StageStats {
    pub doc: StageCounts,
    pub chunk: StageCounts,
}

impl StageStats {
    pub fn of(&self, stage: Stage) -> &StageCounts {
        match stage {
            Stage::Doc => &self.doc,
            Stage::Chunk => &self.chunk,
        }
    }
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct ProgramCounts {
    /// Calls by function name (`drop_doc`, `keep_doc`, `remove_lines`, `normalize`,
    /// `untouch_doc`, `other` for any other no-op).
    pub calls: BTreeMap<String, u64>,
    /// Program lines with errors, over all programs.
    pub parse_errors: u64,
    /// Chunk programs ignored for having too many errors.
    pub ignored: u64,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct TokenCounts {
    pub input: u64,
    pub output: u64,
    /// `output / input`.
    pub kept_ratio: f64,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct WordCounts {
    pub input: u64,
    pub output: u64,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct Seconds {
    pub total: f64,
    /// Waiting for a model.
    pub model: f64,
    /// Everything else: reading, prompts, programs, writing.
    pub io: f64,
}

/// Rates per second of task time (summed over tasks, so a run's rates are per task).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct Throughput {
    pub documents_per_second: f64,
    pub input_mb_per_second: f64,
    pub prompt_tokens_per_second: f64,
    pub generated_tokens_per_second: f64,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct FileCounts {
    /// Input files (or slices of them) that could not be opened or read to their end; their
    /// documents that were read are counted, the error is in the failures files.
    pub failed: u64,
}

/// Everything a task counts; tasks' stats add up to the run's.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct Stats {
    pub documents: DocumentCounts,
    /// Dropped documents by reason: `empty`, `doc_program`, `low_ratio`, `few_words`,
    /// `no_words`.
    pub dropped: BTreeMap<String, u64>,
    pub stages: StageStats,
    pub programs: ProgramCounts,
    pub tokens: TokenCounts,
    pub words: WordCounts,
    pub files: FileCounts,
    pub seconds: Seconds,
    pub throughput: Throughput,
    /// Input bytes read (as JSON), for throughput.
    pub bytes_in: u64,
}

impl Stats {
    /// Whether every document is in exactly one place.
    pub fn is_balanced(&self) -> bool {
        let d = &self.documents;
        d.input == d.output + d.dropped + d.failed
            && d.output == d.unchanged + d.modified + d.ignored
            && d.dropped == self.dropped.values().sum::<u64>()
    }

    /// Documents dropped for `reason`.
    pub fn dropped_for(&self, reason: &str) -> u64 {
        self.dropped.get(reason).copied().unwrap_or(0)
    }

    /// Calls of the program function `name`.
    pub fn calls_of(&self, name: &str) -> u64 {
        self.programs.calls.get(name).copied().unwrap_or(0)
    }

    /// Adds another task's counts to these; ratios and rates are computed again from the
    /// sums.
    pub fn add(&mut self, other: &Stats) {
        *self += other;
    }

    /// Counts a dropped document.
    pub fn count_drop(&mut self, reason: &str) {
        self.documents.dropped += 1;
        *self.dropped.entry(reason.to_owned()).or_default() += 1;
    }

    /// Counts a call of a program function.
    pub fn count_call(&mut self, name: &str) {
        *self.programs.calls.entry(name.to_owned()).or_default() += 1;
    }

    /// Computes the ratios, I/O seconds and rates again from the counts.
    pub fn update_ratios(&mut self) {
        self.tokens.kept_ratio = if self.tokens.input == 0 {
            0.0
        } else {
            self.tokens.output as f64 / self.tokens.input as f64
        };
        self.seconds.io = (self.seconds.total - self.seconds.model).max(0.0);
        let per_second = |count: u64| {
            if self.seconds.total > 0.0 {
                count as f64 / self.seconds.total
            } else {
                0.0
            }
        };
        let stages = [&self.stages.doc, &self.stages.chunk];
        self.throughput = Throughput {
            documents_per_second: per_second(self.documents.input),
            input_mb_per_second: per_second(self.bytes_in) / 1e6,
            prompt_tokens_per_second: per_second(stages.iter().map(|s| s.prompt_tokens).sum()),
            generated_tokens_per_second: per_second(
                stages.iter().map(|s| s.generated_tokens).sum(),
            ),
        };
    }
}

fn add_map(into: &mut BTreeMap<String, u64>, from: &BTreeMap<String, u64>) {
    for (key, count) in from {
        *into.entry(key.clone()).or_default() += count;
    }
}

/// `AddAssign<&Self>` adding up the listed fields one by one, so that a part's sum names each
/// field once, where the part is declared.
macro_rules! add_fields {
    ($($part:ty { $($field:ident),* $(,)? })*) => {$(
        impl AddAssign<&$part> for $part {
            fn add_assign(&mut self, other: &$part) {
                $(self.$field += &other.$field;)*
            }
        }
    )*};
}

add_fields! {
    DocumentCounts { input, output, unchanged, modified, ignored, dropped, failed }
    StageCounts { documents, prompts, prompt_tokens, generated_tokens, truncated_prompts, seconds }
    StageStats { doc, chunk }
    // `kept_ratio` is not a count: `Stats` computes it again from the sums.
    TokenCounts { input, output }
    WordCounts { input, output }
    FileCounts { failed }
    // `io` is computed again from `total` and `model`.
    Seconds { total, model }
}

impl AddAssign<&ProgramCounts> for ProgramCounts {
    fn add_assign(&mut self, other: &ProgramCounts) {
        add_map(&mut self.calls, &other.calls);
        self.parse_errors += other.parse_errors;
        self.ignored += other.ignored;
    }
}

/// Adds another task's counts; ratios and rates are computed again from the sums.
impl AddAssign<&Stats> for Stats {
    fn add_assign(&mut self, other: &Stats) {
        self.documents += &other.documents;
        add_map(&mut self.dropped, &other.dropped);
        self.stages += &other.stages;
        self.programs += &other.programs;
        self.tokens += &other.tokens;
        self.words += &other.words;
        self.files += &other.files;
        self.seconds += &other.seconds;
        self.bytes_in += other.bytes_in;
        self.update_ratios();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn adding_stats_keeps_them_balanced_and_sums_every_count() {
        let mut a = Stats::default();
        a.documents.input = 3;
        a.documents.output = 2;
        a.documents.modified = 2;
        a.count_drop("low_ratio");
        a.tokens.input = 10;
        a.tokens.output = 4;
        let mut b = a.clone();
        b.count_drop("doc_program");
        b.documents.input += 1;
        assert!(a.is_balanced() && b.is_balanced());
        a.add(&b);
        assert!(a.is_balanced());
        assert_eq!(a.documents.input, 7);
        assert_eq!(a.dropped["low_ratio"], 2);
        assert_eq!(a.dropped["doc_program"], 1);
        assert!((a.tokens.kept_ratio - 0.4).abs() < 1e-12);
        a.documents.failed += 1;
        assert!(!a.is_balanced());
    }

    #[test]
    fn every_count_of_every_part_adds_up() {
        let mut one: Stats = serde_json::from_str(
            r#"{"stages": {"doc": {"prompts": 2, "seconds": 1.5}, "chunk": {"truncated_prompts": 1}},
                "programs": {"calls": {"normalize": 1}, "parse_errors": 3, "ignored": 1},
                "words": {"input": 8, "output": 6}, "files": {"failed": 1},
                "seconds": {"total": 4.0, "model": 3.0}, "bytes_in": 100}"#,
        )
        .unwrap();
        let other = one.clone();
        one += &other;
        assert_eq!(one.stages.doc.prompts, 4);
        assert_eq!(one.stages.doc.seconds, 3.0);
        assert_eq!(one.stages.chunk.truncated_prompts, 2);
        assert_eq!(one.calls_of("normalize"), 2);
        assert_eq!((one.programs.parse_errors, one.programs.ignored), (6, 2));
        assert_eq!(
            (one.words.input, one.words.output, one.files.failed),
            (16, 12, 2)
        );
        assert_eq!(
            (one.seconds.total, one.seconds.model, one.seconds.io),
            (8.0, 6.0, 2.0)
        );
        assert_eq!(one.throughput.input_mb_per_second, 200.0 / 8.0 / 1e6);
    }

    #[test]
    fn missing_fields_read_as_zero_and_unknown_ones_are_ignored() {
        let one: Stats = serde_json::from_str(
            r#"{"documents": {"input": 10, "output": 7, "modified": 3, "unchanged": 4,
                "dropped": 2, "failed": 1}, "dropped": {"low_ratio": 2},
                "tokens": {"input": 100, "output": 30, "kept_ratio": 0.3},
                "programs": {"calls": {"normalize": 2}}, "future_field": 1}"#,
        )
        .unwrap();
        let two: Stats = serde_json::from_str(
            r#"{"documents": {"input": 5, "output": 5, "unchanged": 5},
                "tokens": {"input": 100, "output": 70, "kept_ratio": 0.7}}"#,
        )
        .unwrap();
        assert!(one.is_balanced() && two.is_balanced());
        let mut total = Stats::default();
        total.add(&one);
        total.add(&two);
        assert_eq!(total.documents.input, 15);
        assert_eq!(total.documents.unchanged, 9);
        assert_eq!(total.calls_of("normalize"), 2);
        assert_eq!(total.calls_of("drop_doc"), 0);
        assert_eq!(total.dropped_for("low_ratio"), 2);
        assert_eq!(total.tokens.kept_ratio, 0.5);
    }
}
