//! The command line: what each subcommand accepts. Parsing only; `commands/` does the work.

use clap::{Parser, Subcommand};

use crate::commands::apply::ApplyArgs;
use crate::commands::generate::GenerateArgs;
use crate::commands::prompts::PromptsArgs;
use crate::commands::tokenize::TokenizeArgs;

/// ProX-rs refines pre-training corpora the way ProX does: a small language model writes a
/// program for every document (`drop_doc()`, `remove_lines(start=3, end=7)`,
/// `normalize(source_str="…", target_str="")`) and ProX-rs executes it.
#[derive(Debug, Parser)]
#[command(name = "prox", version, about, max_term_width = 100)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,

    /// More log output on standard error (-v debug, -vv trace).
    #[arg(short, long, global = true, action = clap::ArgAction::Count, display_order = 1000)]
    pub verbose: u8,

    /// Only warnings and errors on standard error.
    #[arg(
        short,
        long,
        global = true,
        conflicts_with = "verbose",
        display_order = 1001
    )]
    pub quiet: bool,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Execute stored programs again, without a model: re-run the `doc_program` or
    /// `chunk_program` of each record, with other thresholds or the strict parser.
    Apply(ApplyArgs),
    /// Show exactly what the refining models see: the document-stage and chunk-stage prompts
    /// of each document, as text and token ids.
    Prompts(PromptsArgs),
    /// Greedy continuations of prompts with the embedded engine (a model folder or a
    /// `.gguf` file): generated ids and text, finish reason, token counts.
    Generate(GenerateArgs),
    /// Pack documents into training data in litgpt's packed format, as the reference's
    /// `prepare_web` does; `--inspect` reads a packed file back.
    Tokenize(TokenizeArgs),
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::CommandFactory;

    #[test]
    fn the_command_line_definition_is_consistent() {
        Cli::command().debug_assert();
    }
}
