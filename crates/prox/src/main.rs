//! `prox`: the ProX-rs command line. Each subcommand lives in `commands/`; the work itself is
//! done by the library crates.

mod cli;
mod commands;
mod config_file;
mod engine_args;
mod env_vars;
mod logging;
mod progress;

use std::process::ExitCode;

use clap::Parser;

use crate::cli::Cli;
use crate::commands::Completion;
use crate::env_vars::{PROX_FLOAT_GEMM, PROX_Q8_KERNEL};

// Refining allocates and frees a string per field of every document, and large buffers per
// batch: glibc's allocator returns those to the kernel and faults them back in, batch after
// batch (about 7% of `prox apply`'s time); mimalloc keeps them.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() -> ExitCode {
    let cli = Cli::parse();
    logging::init(cli.verbose, cli.quiet);
    // Refused before any work, rather than ignored deep in the engine.
    if let Err(error) = prox_engine::q8::Kernel::cap_from_env() {
        eprintln!("error: {error}");
        eprintln!("hint: unset {PROX_Q8_KERNEL} to use the fastest kernel this CPU runs");
        return ExitCode::from(2);
    }
    if let Err(error) = prox_engine::float_gemm::FloatGemm::chosen() {
        eprintln!("error: {error}");
        eprintln!("hint: unset {PROX_FLOAT_GEMM} to use the kernels measured fastest on this CPU");
        return ExitCode::from(2);
    }
    tracing::debug!("CPU kernels: {}", prox_engine::CpuKernels::detect());
    match commands::run(cli.command) {
        Ok(Completion::Clean) => ExitCode::SUCCESS,
        Ok(Completion::SomeDocumentsFailed) => ExitCode::from(1),
        Err(error) => {
            eprintln!("error: {error}");
            for cause in error.chain().skip(1) {
                eprintln!("  caused by: {cause}");
            }
            ExitCode::from(2)
        }
    }
}
