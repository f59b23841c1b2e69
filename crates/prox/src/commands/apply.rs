//! `prox apply`: execute the programs stored with each document again, without a model.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use anyhow::Context;
use prox_io::{set_field, string_field, Failure, JsonlWriter, Record, RecordWriter};
use prox_program::{DropReason, Executor, Mode, Thresholds, Verdict};
use serde::Serialize;
use serde_json::{json, Value};

use crate::commands::Completion;

#[derive(Debug, clap::Args)]
#[command(after_help = APPLY_AFTER_HELP)]
pub struct ApplyArgs {
    /// Which programs to run: `doc` (keep or drop the document) or `chunk` (remove lines,
    /// normalize strings).
    #[arg(long, value_enum)]
    pub stage: Stage,

    /// JSON-lines files (.jsonl, .jsonl.gz, .jsonl.zst) or Parquet files, or folders of them
    /// (read in sorted order).
    #[arg(long, required = true, num_args = 1..)]
    pub input: Vec<PathBuf>,

    /// Where to write the documents that are kept: `.jsonl` (also `.jsonl.gz`, `.jsonl.zst`) or
    /// `.parquet`. Beside it go `<name>.dropped.<same format>`, `<name>.failures.jsonl` and
    /// `<name>.summary.json`.
    #[arg(long)]
    pub output: PathBuf,

    /// `faithful` reproduces the reference executor exactly, quirks included; `strict` parses
    /// programs as Python calls (see the prox-program docs for every difference).
    #[arg(long, default_value_t = Mode::Faithful)]
    pub mode: Mode,

    #[command(flatten)]
    pub thresholds: ThresholdArgs,

    /// The field holding the program [default: metadata.doc_program or metadata.chunk_program,
    /// by stage]. A dotted name reaches into nested objects.
    #[arg(long)]
    pub program_field: Option<String>,

    /// The field holding the text the program runs on. The refined text is written to `text`.
    #[arg(long, default_value = "text")]
    pub text_field: String,

    /// Keep dropped documents in the output with `text: ""`, as the reference lays its output
    /// out, instead of moving them to the dropped file.
    #[arg(long)]
    pub keep_dropped: bool,
}

/// The thresholds of the chunk stage's decision (PROX-SPEC §5), as flags.
#[derive(Debug, Clone, clap::Args)]
pub struct ThresholdArgs {
    /// Keep an edit only if the kept-word ratio is at least this (reference: 0.0).
    #[arg(long, default_value_t = Thresholds::default().threshold_1)]
    pub threshold_1: f64,

    /// Drop the document if the edit removes more than this share of its words (reference: 0.95).
    #[arg(long, default_value_t = Thresholds::default().threshold_2)]
    pub threshold_2: f64,

    /// Ignore a program with this many errors or more and keep the original text (reference: 2).
    #[arg(long, default_value_t = Thresholds::default().error_op)]
    pub error_op: usize,

    /// Drop a refined document with this many words or fewer (reference: 10).
    #[arg(long, default_value_t = Thresholds::default().min_words)]
    pub min_words: usize,
}

impl ThresholdArgs {
    pub fn thresholds(&self) -> Thresholds {
        Thresholds {
            threshold_1: self.threshold_1,
            threshold_2: self.threshold_2,
            error_op: self.error_op,
            min_words: self.min_words,
        }
    }
}

const APPLY_AFTER_HELP: &str = "\
Every input record ends in exactly one place: the output, the dropped file (with the stage and
the reason), or the failures file (with the file, line and error). The summary counts them:
documents in = kept unchanged + modified + dropped + failed.

For rows of the ProX datasets, run the document programs on `raw_content` and the chunk programs
on `doc_content`:
  prox apply --stage doc --text-field raw_content --input data/ --output doc.jsonl
  prox apply --stage chunk --text-field doc_content --input data/ --output chunk.jsonl

Exit status: 0 when every record was processed, 1 when some went to the failures file, 2 on an
error that stopped the run.";

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Stage {
    Doc,
    Chunk,
}

impl Stage {
    fn name(self) -> &'static str {
        match self {
            Stage::Doc => "doc",
            Stage::Chunk => "chunk",
        }
    }

    fn default_program_field(self) -> &'static str {
        match self {
            Stage::Doc => "metadata.doc_program",
            Stage::Chunk => "metadata.chunk_program",
        }
    }
}

/// The files one run writes, named after `--output`.
struct OutputPaths {
    kept: PathBuf,
    dropped: PathBuf,
    failures: PathBuf,
    summary: PathBuf,
}

impl OutputPaths {
    fn beside(output: &Path) -> Self {
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
    fn is_balanced(&self) -> bool {
        self.documents_in == self.kept_unchanged + self.modified + self.dropped_total + self.failed
            && self.dropped_total == self.dropped.values().sum::<u64>()
    }
}

/// The three places a document can end in.
struct Sinks {
    kept: RecordWriter,
    dropped: Option<RecordWriter>,
    failures: JsonlWriter,
}

pub fn run(args: &ApplyArgs) -> anyhow::Result<Completion> {
    let thresholds = args.thresholds.thresholds();
    let executor = Executor::new(args.mode, thresholds);
    let program_field = args
        .program_field
        .as_deref()
        .unwrap_or_else(|| args.stage.default_program_field());
    let paths = OutputPaths::beside(&args.output);
    let files = prox_io::input_files(&args.input).context("cannot list the inputs")?;
    tracing::info!(
        files = files.len(),
        stage = args.stage.name(),
        mode = %args.mode,
        "applying stored programs"
    );

    let mut sinks = Sinks {
        kept: RecordWriter::create(&paths.kept)?,
        dropped: if args.keep_dropped {
            None
        } else {
            Some(RecordWriter::create(&paths.dropped)?)
        },
        failures: JsonlWriter::create(&paths.failures)?,
    };
    let mut summary = ApplySummary {
        stage: Some(args.stage),
        mode: args.mode.to_string(),
        ..ApplySummary::default()
    };
    let fields = FieldNames {
        text: &args.text_field,
        program: program_field,
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
                apply_to_record(record, &fields, args, &executor, &mut sinks, &mut summary)?;
            }
            Ok(Err(bad_record)) => {
                summary.documents_in += 1;
                summary.failed += 1;
                sinks.failures.write(&Failure::from(&bad_record))?;
            }
            Err(read_error) => {
                let failure = Failure::of_file(&read_error);
                tracing::warn!("{}", failure.error);
                summary.files_failed += 1;
                sinks.failures.write(&failure)?;
            }
        }
    }

    anyhow::ensure!(
        summary.is_balanced(),
        "internal error: the document counts do not add up: {summary:?}"
    );
    sinks.kept.finish()?;
    if let Some(dropped) = sinks.dropped {
        dropped.finish()?;
    }
    sinks.failures.finish()?;
    prox_io::write_json(&paths.summary, &summary)?;
    print_summary(&summary, &paths);

    Ok(if summary.failed > 0 || summary.files_failed > 0 {
        Completion::SomeDocumentsFailed
    } else {
        Completion::Clean
    })
}

struct FieldNames<'a> {
    text: &'a str,
    program: &'a str,
}

fn apply_to_record(
    record: Record,
    fields: &FieldNames,
    args: &ApplyArgs,
    executor: &Executor,
    sinks: &mut Sinks,
    summary: &mut ApplySummary,
) -> anyhow::Result<()> {
    let (text, program) = match (
        string_field(&record.fields, fields.text),
        string_field(&record.fields, fields.program),
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

    let verdict = match args.stage {
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
                    let _ = set_field(&mut output, "prox_drop", drop_info(args.stage, reason));
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
    json!({ "stage": stage.name(), "reason": reason.as_str() })
}

fn print_summary(summary: &ApplySummary, paths: &OutputPaths) {
    let dropped: Vec<String> = summary
        .dropped
        .iter()
        .map(|(reason, count)| format!("{reason} {count}"))
        .collect();
    println!(
        "{} documents: {} kept unchanged, {} modified, {} dropped{}, {} failed",
        summary.documents_in,
        summary.kept_unchanged,
        summary.modified,
        summary.dropped_total,
        if dropped.is_empty() {
            String::new()
        } else {
            format!(" ({})", dropped.join(", "))
        },
        summary.failed,
    );
    if summary.programs_ignored > 0 {
        println!(
            "{} programs ignored for too many errors ({} errors in all)",
            summary.programs_ignored, summary.program_errors
        );
    }
    println!("output:   {}", paths.kept.display());
    if summary.dropped_total > 0 && paths.dropped.exists() {
        println!("dropped:  {}", paths.dropped.display());
    }
    if summary.failed > 0 || summary.files_failed > 0 {
        println!("failures: {}", paths.failures.display());
    }
    println!("summary:  {}", paths.summary.display());
}
