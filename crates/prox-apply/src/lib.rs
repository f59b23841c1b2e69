//! Running the programs stored with each document again, without a model (`prox apply`).
//!
//! Each record holds a text and the program a refiner wrote for it (ProX's datasets store
//! them as `metadata.doc_program` and `metadata.chunk_program`). [`apply`] executes the
//! programs of one stage with [`prox_program::Executor`] and sends every record to exactly one
//! place: the kept output, the dropped file (with the stage and reason) or the failures file
//! (with its file, line and error). The [`ApplySummary`] counts them, and the counts add up.
//!
//! ```
//! use prox_apply::{apply, ApplyOptions, Silent, Stage};
//! # let dir = tempfile::tempdir().unwrap();
//! let input = dir.path().join("in.jsonl");
//! std::fs::write(&input, r#"{"text": "spam", "metadata": {"doc_program": "drop_doc()"}}"#)?;
//! let options = ApplyOptions::new(Stage::Doc);
//! let summary = apply(&[input], &dir.path().join("out.jsonl"), &options, &Silent)?;
//! assert_eq!(summary.dropped_total, 1);
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```

mod error;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use prox_io::{set_field, string_field, Failure, JsonlWriter, Record, RecordWriter};
use prox_program::{DropReason, Executor, Mode, Thresholds, Verdict};
use serde::Serialize;
use serde_json::{json, Value};

pub use error::Error;
/// Which programs run, by stage.
pub use prox_program::Stage;

/// Where ProX's datasets keep the stage's program.
pub fn default_program_field(stage: Stage) -> &'static str {
    match stage {
        Stage::Doc => "metadata.doc_program",
        Stage::Chunk => "metadata.chunk_program",
    }
}

/// How to apply.
#[derive(Debug, Clone)]
pub struct ApplyOptions {
    pub stage: Stage,
    pub mode: Mode,
    pub thresholds: Thresholds,
    /// The field holding the program [default: the stage's [`default_program_field`]];
    /// dotted names reach into nested objects.
    pub program_field: Option<String>,
    /// The field holding the text the program runs on; the refined text goes to `text`.
    pub text_field: String,
    /// Keep dropped documents in the output with `text: ""`, as the reference lays its output
    /// out, instead of moving them to the dropped file.
    pub keep_dropped: bool,
}

impl ApplyOptions {
    /// The reference's settings for `stage`.
    pub fn new(stage: Stage) -> Self {
        ApplyOptions {
            stage,
            mode: Mode::Faithful,
            thresholds: Thresholds::default(),
            program_field: None,
            text_field: "text".to_owned(),
            keep_dropped: false,
        }
    }
}

/// What an apply run tells as it goes. Every method has a no-op default.
pub trait Reporter {
    /// The run starts on `files` input files.
    fn started(&self, _files: usize) {}
    /// An input file could not be read to its end (the error is also in the failures file).
    fn file_failed(&self, _failure: &Failure) {}
}

/// A reporter that says nothing.
pub struct Silent;

impl Reporter for Silent {}

/// The files one run writes, named after the output.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OutputPaths {
    pub kept: PathBuf,
    /// `<name>.dropped.<same format>`.
    pub dropped: PathBuf,
    /// `<name>.failures.jsonl`.
    pub failures: PathBuf,
    /// `<name>.summary.json`.
    pub summary: PathBuf,
}

impl OutputPaths {
    pub fn beside(output: &Path) -> Self {
        Self {
            kept: output.to_owned(),
            dropped: prox_io::beside(
                output,
                &format!("dropped.{}", prox_io::format_ending(output)),
            ),
            failures: prox_io::beside(output, "failures.jsonl"),
            summary: prox_io::beside(output, "summary.json"),
        }
    }
}

/// What happened to the documents of a run. The counts always add up:
/// `documents_in = kept_unchanged + modified + dropped_total + failed`.
#[derive(Debug, Default, Serialize)]
pub struct ApplySummary {
    pub stage: Option<Stage>,
    pub mode: String,
    pub documents_in: u64,
    pub kept_unchanged: u64,
    pub modified: u64,
    pub dropped_total: u64,
    pub dropped: BTreeMap<&'static str, u64>,
    pub failed: u64,
    /// Programs with `error_op` errors or more, whose documents were kept unchanged.
    pub programs_ignored: u64,
    /// Program lines that did not parse or ranges outside the document, over all documents.
    pub program_errors: u64,
    pub lines_removed: u64,
    pub normalizations: u64,
    /// Input files that could not be read to their end (their error is in the failures file).
    pub files_failed: u64,
    pub bytes_in: u64,
}

impl ApplySummary {
    pub fn is_balanced(&self) -> bool {
        self.documents_in == self.kept_unchanged + self.modified + self.dropped_total + self.failed
            && self.dropped_total == self.dropped.values().sum::<u64>()
    }

    /// Whether some record or file went to the failures file.
    pub fn has_failures(&self) -> bool {
        self.failed > 0 || self.files_failed > 0
    }
}

/// The three places a document can end in.
struct Sinks {
    kept: RecordWriter,
    dropped: Option<RecordWriter>,
    failures: JsonlWriter,
}

/// Applies the stored programs of `inputs` (files, folders of them, or glob patterns) and
/// writes the [`OutputPaths`] beside `output`, the summary included.
pub fn apply(
    inputs: &[PathBuf],
    output: &Path,
    options: &ApplyOptions,
    reporter: &dyn Reporter,
) -> Result<ApplySummary, Error> {
    let executor = Executor::new(options.mode, options.thresholds);
    let paths = OutputPaths::beside(output);
    let files = prox_io::input_files(inputs).map_err(Error::ListInputs)?;
    reporter.started(files.len());

    let mut sinks = Sinks {
        kept: RecordWriter::create(&paths.kept)?,
        dropped: if options.keep_dropped {
            None
        } else {
            Some(RecordWriter::create(&paths.dropped)?)
        },
        failures: JsonlWriter::create(&paths.failures)?,
    };
    let mut summary = ApplySummary {
        stage: Some(options.stage),
        mode: options.mode.to_string(),
        ..ApplySummary::default()
    };

    // Reading (decompression, JSON parsing) runs on its own thread, ahead of the programs.
    let records = prox_io::read_ahead(256, 8, move |emit| {
        for item in prox_io::open_all_records(&files) {
            if emit(item).is_break() {
                return;
            }
        }
    });
    for item in records {
        match item {
            Ok(Ok(record)) => {
                summary.documents_in += 1;
                summary.bytes_in += record.bytes as u64;
                apply_to_record(record, options, &executor, &mut sinks, &mut summary)?;
            }
            Ok(Err(bad_record)) => {
                summary.documents_in += 1;
                summary.failed += 1;
                sinks.failures.write(&Failure::from(&bad_record))?;
            }
            Err(read_error) => {
                let failure = Failure::of_file(&read_error);
                reporter.file_failed(&failure);
                summary.files_failed += 1;
                sinks.failures.write(&failure)?;
            }
        }
    }

    if !summary.is_balanced() {
        return Err(Error::Unbalanced(format!("{summary:?}")));
    }
    sinks.kept.finish()?;
    if let Some(dropped) = sinks.dropped {
        dropped.finish()?;
    }
    sinks.failures.finish()?;
    prox_io::write_json(&paths.summary, &summary)?;
    Ok(summary)
}

fn apply_to_record(
    record: Record,
    options: &ApplyOptions,
    executor: &Executor,
    sinks: &mut Sinks,
    summary: &mut ApplySummary,
) -> Result<(), Error> {
    let program_field = options
        .program_field
        .as_deref()
        .unwrap_or_else(|| default_program_field(options.stage));
    let (text, program) = match (
        string_field(&record.fields, &options.text_field),
        string_field(&record.fields, program_field),
    ) {
        (Ok(text), Ok(program)) => (text, program),
        (Err(error), _) | (_, Err(error)) => {
            summary.failed += 1;
            sinks
                .failures
                .write(&Failure::of_record(&record.location, error.to_string()))?;
            return Ok(());
        }
    };

    let verdict = match options.stage {
        Stage::Doc => executor.run_doc(program).verdict(text),
        Stage::Chunk => {
            let outcome = executor.run_chunk(text, program);
            summary.program_errors += outcome.errors.len() as u64;
            summary.lines_removed += outcome.lines_removed as u64;
            summary.normalizations += outcome.normalizations as u64;
            outcome.verdict
        }
    };

    let mut output = record.fields;
    match verdict {
        Verdict::Kept { text, modified } => {
            if modified {
                summary.modified += 1;
            } else {
                summary.kept_unchanged += 1;
            }
            output.insert("text".to_owned(), Value::String(text));
            sinks.kept.write_fields(output)?;
        }
        Verdict::Ignored { text } => {
            summary.kept_unchanged += 1;
            summary.programs_ignored += 1;
            output.insert("text".to_owned(), Value::String(text));
            sinks.kept.write_fields(output)?;
        }
        Verdict::Dropped(reason) => {
            summary.dropped_total += 1;
            *summary.dropped.entry(reason.as_str()).or_default() += 1;
            match &mut sinks.dropped {
                Some(dropped) => {
                    let _ = set_field(&mut output, "prox_drop", drop_info(options.stage, reason));
                    dropped.write_fields(output)?;
                }
                None => {
                    output.insert("text".to_owned(), Value::String(String::new()));
                    sinks.kept.write_fields(output)?;
                }
            }
        }
    }
    Ok(())
}

fn drop_info(stage: Stage, reason: DropReason) -> Value {
    json!({ "stage": stage.as_str(), "reason": reason.as_str() })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_record_ends_in_one_place() {
        let dir = tempfile::tempdir().unwrap();
        let input = dir.path().join("in.jsonl");
        std::fs::write(
            &input,
            concat!(
                "{\"text\": \"a\\nb\", \"metadata\": {\"chunk_program\": \"remove_lines(line_start=0, line_end=0)\"}}\n",
                "{\"text\": \"kept as it is\", \"metadata\": {\"chunk_program\": \"keep_chunk()\"}}\n",
                "{\"text\": \"no program\"}\n",
                "not json\n",
            ),
        )
        .unwrap();
        let output = dir.path().join("out.jsonl");
        let options = ApplyOptions {
            thresholds: Thresholds {
                min_words: 0,
                ..Thresholds::default()
            },
            ..ApplyOptions::new(Stage::Chunk)
        };
        let summary = apply(&[input], &output, &options, &Silent).unwrap();
        assert_eq!(summary.documents_in, 4);
        assert_eq!(summary.failed, 2);
        assert!(summary.is_balanced() && summary.has_failures());
        assert_eq!(summary.kept_unchanged + summary.modified, 2);
        let paths = OutputPaths::beside(&output);
        let failures = std::fs::read_to_string(&paths.failures).unwrap();
        assert_eq!(failures.lines().count(), 2, "{failures}");
        assert!(paths.summary.is_file());
    }

    #[test]
    fn kept_dropped_documents_stay_in_the_output_with_no_text() {
        let dir = tempfile::tempdir().unwrap();
        let input = dir.path().join("in.jsonl");
        std::fs::write(
            &input,
            "{\"text\": \"spam\", \"metadata\": {\"doc_program\": \"drop_doc()\"}}\n",
        )
        .unwrap();
        let output = dir.path().join("out.jsonl");
        let options = ApplyOptions {
            keep_dropped: true,
            ..ApplyOptions::new(Stage::Doc)
        };
        let summary = apply(&[input], &output, &options, &Silent).unwrap();
        assert_eq!(summary.dropped_total, 1);
        let kept = std::fs::read_to_string(&output).unwrap();
        assert!(kept.contains("\"text\":\"\""), "{kept}");
        assert!(!OutputPaths::beside(&output).dropped.exists());
    }

    #[test]
    fn stages_parse_by_name() {
        assert_eq!("chunk".parse::<Stage>(), Ok(Stage::Chunk));
        assert!("both".parse::<Stage>().is_err());
    }
}
