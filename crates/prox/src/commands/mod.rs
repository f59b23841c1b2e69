//! One module per subcommand.

pub mod annotate;
pub mod apply;
pub mod convert;
pub mod download;
pub mod eval;
pub mod finetune;
pub mod generate;
pub mod math_eval;
pub mod prompts;
pub mod refine;
pub mod report;
pub mod serve;
pub mod show;
pub mod slurm;
pub mod status;
pub mod tokenize;
pub mod train;
pub mod validate;

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
    if matches!(
        command,
        Command::Status(_) | Command::Report(_) | Command::Show(_)
    ) {
        quiet_on_closed_pipe();
    }
    match command {
        Command::Refine(args) => refine::run(&args),
        Command::Apply(args) => apply::run(&args),
        Command::Prompts(args) => prompts::run(&args),
        Command::Generate(args) => generate::run(&args),
        Command::Serve(args) => serve::run(&args),
        Command::Tokenize(args) => tokenize::run(&args),
        Command::Train(args) => train::run(&args),
        Command::Annotate(args) => annotate::run(&args),
        Command::Finetune(args) => finetune::run(&args),
        Command::Validate(args) => validate::run(&args),
        Command::Eval(args) => eval::run(&args),
        Command::MathEval(args) => math_eval::run(&args),
        Command::Slurm(args) => slurm::run(&args),
        Command::Status(args) => status::run(&args),
        Command::Report(args) => report::run(&args),
        Command::Show(args) => show::run(&args),
        Command::Convert(args) => convert::run(&args),
        Command::Download(args) => download::run(&args),
    }
}

/// Lets a command that prints for people end quietly when its reader goes away
/// (`prox show RUN | head`), as Unix tools do, where `println!` would panic. Only those
/// commands: elsewhere a closed pipe must stay an error that names what was being written.
fn quiet_on_closed_pipe() {
    #[cfg(unix)]
    {
        use nix::sys::signal::{signal, SigHandler, Signal};
        // SAFETY: restoring the default disposition installs no handler, and runs before any
        // thread of ours exists.
        #[allow(unsafe_code)]
        let _ = unsafe { signal(Signal::SIGPIPE, SigHandler::SigDfl) };
    }
}
