//! One module per subcommand.

pub mod apply;
pub mod eval;
pub mod generate;
pub mod prompts;
pub mod refine;
pub mod report;
pub mod serve;
pub mod show;
pub mod slurm;
pub mod status;
pub mod tokenize;
pub mod train;

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
        Command::Refine(args) => refine::run(&args),
        Command::Apply(args) => apply::run(&args),
        Command::Prompts(args) => prompts::run(&args),
        Command::Generate(args) => generate::run(&args),
        Command::Serve(args) => serve::run(&args),
        Command::Tokenize(args) => tokenize::run(&args),
        Command::Train(args) => train::run(&args),
        Command::Eval(args) => eval::run(&args),
        Command::Slurm(args) => slurm::run(&args),
        Command::Status(args) => status::run(&args),
        Command::Report(args) => report::run(&args),
        Command::Show(args) => show::run(&args),
    }
}
