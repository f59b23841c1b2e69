//! `prox apply`: execute the programs stored with each document again, without a model.

use std::path::PathBuf;

use clap::builder::{PossibleValuesParser, TypedValueParser};
use prox_apply::{ApplyOptions, ApplySummary, OutputPaths, Reporter, Stage};
use prox_io::Failure;
use prox_program::{Mode, Thresholds};

use crate::commands::Completion;

#[derive(Debug, clap::Args)]
#[command(after_help = APPLY_AFTER_HELP)]
pub struct ApplyArgs {
    /// Which programs to run: `doc` (keep or drop the document) or `chunk` (remove lines,
    /// normalize strings).
    #[arg(long, value_parser = stage_parser())]
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

/// The values of a `--stage` flag, `doc` or `chunk`, listed in the help and in the error for
/// any other value.
pub fn stage_parser() -> impl TypedValueParser<Value = Stage> {
    PossibleValuesParser::new(Stage::ALL.map(Stage::as_str)).try_map(|name| name.parse::<Stage>())
}

pub fn run(args: &ApplyArgs) -> anyhow::Result<Completion> {
    let options = ApplyOptions {
        stage: args.stage,
        mode: args.mode,
        thresholds: args.thresholds.thresholds(),
        program_field: args.program_field.clone(),
        text_field: args.text_field.clone(),
        keep_dropped: args.keep_dropped,
    };
    let summary = prox_apply::apply(&args.input, &args.output, &options, &LogReporter(&options))?;
    print_summary(&summary, &OutputPaths::beside(&args.output));
    Ok(if summary.has_failures() {
        Completion::SomeDocumentsFailed
    } else {
        Completion::Clean
    })
}

/// Log lines: the start, and each input file that could not be read to its end.
struct LogReporter<'a>(&'a ApplyOptions);

impl Reporter for LogReporter<'_> {
    fn started(&self, files: usize) {
        tracing::info!(
            files,
            stage = self.0.stage.as_str(),
            mode = %self.0.mode,
            "applying stored programs"
        );
    }

    fn file_failed(&self, failure: &Failure) {
        tracing::warn!("{}", failure.error);
    }
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
