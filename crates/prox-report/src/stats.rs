//! The stats of a run (`stats.json`, or the `done/task-R.json` markers of the tasks that ended),
//! as the run-folder contract lays them out.

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::Error;

/// Document counts: `input = output + dropped + failed`, `output = unchanged + modified + ignored`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
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

/// Dropped documents by reason.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct DroppedCounts {
    pub doc_program: u64,
    pub low_ratio: u64,
    pub few_words: u64,
    pub no_words: u64,
}

/// The work of one model stage.
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct StageStats {
    pub documents: u64,
    pub prompts: u64,
    pub prompt_tokens: u64,
    pub generated_tokens: u64,
    pub truncated_prompts: u64,
    pub seconds: f64,
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct Stages {
    pub doc: StageStats,
    pub chunk: StageStats,
}

/// Calls in the programs, by function.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct CallCounts {
    pub drop_doc: u64,
    pub keep_doc: u64,
    pub remove_lines: u64,
    pub normalize: u64,
    pub untouch_doc: u64,
    pub other: u64,
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct ProgramCounts {
    pub calls: CallCounts,
    pub parse_errors: u64,
    pub ignored: u64,
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct TokenCounts {
    pub input: u64,
    pub output: u64,
    pub kept_ratio: f64,
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct WordCounts {
    pub input: u64,
    pub output: u64,
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct Seconds {
    pub total: f64,
    pub model: f64,
    pub io: f64,
}

/// The stats of a run or of one task. Fields a file lacks read as zero.
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct RunStats {
    pub documents: DocumentCounts,
    pub dropped: DroppedCounts,
    pub stages: Stages,
    pub programs: ProgramCounts,
    pub tokens: TokenCounts,
    pub words: WordCounts,
    pub seconds: Seconds,
}

impl RunStats {
    /// Reads one stats file.
    pub fn read(path: &Path) -> Result<Self, Error> {
        let bytes = std::fs::read(path).map_err(|source| Error::Read {
            path: path.to_owned(),
            source,
        })?;
        serde_json::from_slice(&bytes).map_err(|source| Error::Stats {
            path: path.to_owned(),
            source,
        })
    }

    /// Adds another task's stats to these. Counts and seconds add up (seconds are task
    /// seconds, summed across tasks); the kept-token ratio is computed again from the sums.
    pub fn add(&mut self, other: &RunStats) {
        let d = &mut self.documents;
        let o = &other.documents;
        d.input += o.input;
        d.output += o.output;
        d.unchanged += o.unchanged;
        d.modified += o.modified;
        d.ignored += o.ignored;
        d.dropped += o.dropped;
        d.failed += o.failed;
        self.dropped.doc_program += other.dropped.doc_program;
        self.dropped.low_ratio += other.dropped.low_ratio;
        self.dropped.few_words += other.dropped.few_words;
        self.dropped.no_words += other.dropped.no_words;
        add_stage(&mut self.stages.doc, &other.stages.doc);
        add_stage(&mut self.stages.chunk, &other.stages.chunk);
        let c = &mut self.programs.calls;
        let oc = &other.programs.calls;
        c.drop_doc += oc.drop_doc;
        c.keep_doc += oc.keep_doc;
        c.remove_lines += oc.remove_lines;
        c.normalize += oc.normalize;
        c.untouch_doc += oc.untouch_doc;
        c.other += oc.other;
        self.programs.parse_errors += other.programs.parse_errors;
        self.programs.ignored += other.programs.ignored;
        self.tokens.input += other.tokens.input;
        self.tokens.output += other.tokens.output;
        self.tokens.kept_ratio = ratio(self.tokens.output, self.tokens.input);
        self.words.input += other.words.input;
        self.words.output += other.words.output;
        self.seconds.total += other.seconds.total;
        self.seconds.model += other.seconds.model;
        self.seconds.io += other.seconds.io;
    }
}

fn add_stage(stage: &mut StageStats, other: &StageStats) {
    stage.documents += other.documents;
    stage.prompts += other.prompts;
    stage.prompt_tokens += other.prompt_tokens;
    stage.generated_tokens += other.generated_tokens;
    stage.truncated_prompts += other.truncated_prompts;
    stage.seconds += other.seconds;
}

/// `part / whole`, 0 for an empty whole.
pub(crate) fn ratio(part: u64, whole: u64) -> f64 {
    if whole == 0 {
        0.0
    } else {
        part as f64 / whole as f64
    }
}

/// Where a run's stats came from.
#[derive(Debug, Clone, PartialEq)]
pub enum StatsSource {
    /// `stats.json`: the run ended.
    Final(PathBuf),
    /// The `done/task-R.json` markers of the tasks that ended (the run has not ended, or its
    /// last task did not write `stats.json`).
    DoneTasks(Vec<PathBuf>),
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn missing_fields_read_as_zero_and_tasks_add_up() {
        let one: RunStats = serde_json::from_str(
            r#"{"documents": {"input": 10, "output": 7, "modified": 3, "unchanged": 4,
                "dropped": 2, "failed": 1}, "tokens": {"input": 100, "output": 30, "kept_ratio": 0.3},
                "programs": {"calls": {"normalize": 2}}, "future_field": 1}"#,
        )
        .unwrap();
        let two: RunStats = serde_json::from_str(
            r#"{"documents": {"input": 5, "output": 5, "unchanged": 5},
                "tokens": {"input": 100, "output": 70, "kept_ratio": 0.7}}"#,
        )
        .unwrap();
        let mut total = RunStats::default();
        total.add(&one);
        total.add(&two);
        assert_eq!(total.documents.input, 15);
        assert_eq!(total.documents.unchanged, 9);
        assert_eq!(total.programs.calls.normalize, 2);
        assert_eq!(total.tokens.kept_ratio, 0.5);
    }
}
