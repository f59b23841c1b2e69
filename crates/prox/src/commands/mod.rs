//! One module per subcommand.

pub mod apply;
pub mod generate;
pub mod prompts;
pub mod tokenize;

use crate::cli::Command;

/// How a command that did not fail outright ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Completion {
    /// Every document was processed.
    Clean,
    /// The run completed, but some documents went to the failures file (exit code 1).
    SomeDocumentsFailed,
}

pub fn run(command: Command) -> anyhow::Result<Completion> {
    match command {
        Command::Apply(args) => apply::run(&args),
        Command::Prompts(args) => prompts::run(&args),
        Command::Generate(args) => generate::run(&args),
        Command::Tokenize(args) => tokenize::run(&args),
    }
}
