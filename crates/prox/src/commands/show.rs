//! `prox show`: what refinement did to one document, in the terminal.

use std::path::PathBuf;

use anyhow::Context;
use prox_report::{Found, RunFolder, SampledDocument};

use crate::commands::Completion;

#[derive(Debug, clap::Args)]
#[command(after_help = SHOW_AFTER_HELP)]
pub struct ShowArgs {
    /// The run folder of `prox refine`.
    pub run_dir: PathBuf,

    /// The document's id (the `id` column of its row).
    #[arg(long)]
    pub id: String,
}

const SHOW_AFTER_HELP: &str = "\
Prints the document as the chunk-stage model saw it, each line with its [NNN] number: a removed
line starts with `-` and names the program line that removed it; a normalize replacement reads
[-source-]{+target+}. Then its programs, each line with what the executor made of it. Colour is
used when standard output is a terminal (NO_COLOR turns it off, CLICOLOR_FORCE on).";

pub fn run(args: &ShowArgs) -> anyhow::Result<Completion> {
    let run = RunFolder::open(&args.run_dir)?;
    let found = run
        .find(&args.id)
        .with_context(|| format!("cannot read the run folder {}", args.run_dir.display()))?;
    // Strips the styles when standard output is not a terminal.
    let mut out = anstream::stdout().lock();
    match found {
        Some(Found::Document(row)) => {
            prox_report::write_document(&mut out, &SampledDocument::new(*row, &run.execution()))
        }
        Some(Found::Failure(failure)) => prox_report::write_failure(&mut out, &failure),
        None => anyhow::bail!(
            "no document `{}` in {} (looked in output/, dropped/ and failures/)",
            args.id,
            args.run_dir.display()
        ),
    }
    .context("cannot write to standard output")?;
    Ok(Completion::Clean)
}
