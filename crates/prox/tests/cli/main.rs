//! The `prox` binary end to end, one test binary: each module runs one subcommand (or a
//! family of them) as a real process on real files in temporary folders, against the golden
//! fixtures, a stand-in hub, a local Slurm or the evaluation data where the command needs them.

#![allow(clippy::unwrap_used)] // test helpers: a failure is a test failure

mod apply;
mod convert;
mod download;
mod eval;
mod eval_series;
mod formats;
mod generate;
mod math_eval;
mod prompts;
mod refine;
mod report;
mod serve;
mod slurm;
mod support;
mod tokenize;
mod train;
mod validate;
