//! `prox report`: one self-contained HTML file that shows what a refinement run did.

use std::io::Write;
use std::path::PathBuf;

use anyhow::Context;
use prox_io::AtomicFile;
use prox_report::{Report, ReportOptions, RunFolder};

use crate::commands::Completion;

#[derive(Debug, clap::Args)]
#[command(after_help = REPORT_AFTER_HELP)]
pub struct ReportArgs {
    /// The run folder of `prox refine` (output/, dropped/, failures/, stats.json).
    pub run_dir: PathBuf,

    /// Where to write the HTML report.
    #[arg(long, short)]
    pub output: PathBuf,

    /// Documents in the sample, shared out evenly over the outcomes (unchanged, modified,
    /// ignored, and dropped by each reason).
    #[arg(long, default_value_t = ReportOptions::default().sample)]
    pub sample: usize,

    /// Seeds the sample: the same run and seed give the same documents.
    #[arg(long, default_value_t = ReportOptions::default().seed)]
    pub seed: u64,
}

const REPORT_AFTER_HELP: &str = "\
The report holds a summary (documents in, kept, modified, dropped by stage and reason, failed;
tokens per stage; program errors), charts (kept-word ratio, calls per program by kind, document
length before and after) and a sample of documents: each shows the text as the chunk-stage model
saw it, with removed lines struck through beside the program line that removed them and
normalize replacements as source → target, its programs, and the reason for a drop. The sample
is filtered by outcome and searched in the page.

Chunk programs are executed again (faithful mode, the reference's thresholds) to draw the
diffs; where that disagrees with what the run stored, the document says so.

The file loads nothing from anywhere: style, script and charts are inline, and its
Content-Security-Policy allows only its own style and script.";

pub fn run(args: &ReportArgs) -> anyhow::Result<Completion> {
    let run = RunFolder::open(&args.run_dir)?;
    let options = ReportOptions {
        sample: args.sample,
        seed: args.seed,
        ..ReportOptions::default()
    };
    let report = Report::build(&run, options)
        .with_context(|| format!("cannot read the run folder {}", args.run_dir.display()))?;
    let html = report.to_html()?;
    let mut file = AtomicFile::create(&args.output)?;
    file.write_all(html.as_bytes())
        .with_context(|| format!("cannot write {}", args.output.display()))?;
    file.commit()?;
    tracing::info!(
        output = %args.output.display(),
        sampled = report.sample.len(),
        problems = report.problems_total,
        "report written"
    );
    if report.problems_total > 0 {
        tracing::warn!(
            "{} rows or files of the run could not be read; the report lists them",
            report.problems_total
        );
    }
    Ok(Completion::Clean)
}
