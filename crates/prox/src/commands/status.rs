//! `prox status`: where every task of a run stands (completed, running, pending, failed),
//! the last lines of the failed tasks' logs, and the run's stats.

use std::path::PathBuf;

use anyhow::Context;
use prox_slurm::{Cluster, RunStatus};
use serde_json::Value;

use crate::commands::Completion;

#[derive(Debug, clap::Args)]
#[command(after_help = STATUS_AFTER_HELP)]
pub struct StatusArgs {
    /// The run folder.
    pub run_dir: PathBuf,

    /// The number of tasks, for a run not submitted by `prox slurm submit` whose run.json
    /// does not say.
    #[arg(long, value_parser = clap::value_parser!(u32).range(1..))]
    pub tasks: Option<u32>,

    /// Lines of each failed task's log to show.
    #[arg(long, default_value_t = 10)]
    pub log_lines: usize,

    /// Print one JSON object instead of text.
    #[arg(long)]
    pub json: bool,
}

const STATUS_AFTER_HELP: &str = "\
A task is completed when its completion marker (done/task-R.json) exists; running or pending
while Slurm holds it (squeue); failed when it was submitted, Slurm no longer holds it, and it
has no marker (sacct's state, such as TIMEOUT or CANCELLED, is shown where accounting is on).
`prox slurm submit` on the same run folder submits the failed tasks again.";

pub fn run(args: &StatusArgs) -> anyhow::Result<Completion> {
    let run_dir = std::path::absolute(&args.run_dir)
        .with_context(|| format!("cannot resolve {}", args.run_dir.display()))?;
    if !run_dir.is_dir() {
        anyhow::bail!("{} is not a run folder", run_dir.display());
    }
    let status =
        RunStatus::collect(&run_dir, args.tasks, args.log_lines, &Cluster).map_err(|error| {
            match error {
                prox_slurm::Error::UnknownTaskCount { .. } => {
                    anyhow::anyhow!("{error}; give --tasks")
                }
                error => error.into(),
            }
        })?;
    if args.json {
        println!("{}", serde_json::to_string_pretty(&status)?);
    } else {
        print_text(&status);
    }
    Ok(Completion::Clean)
}

fn ranks(ranks: impl Iterator<Item = usize>) -> String {
    ranks
        .map(|rank| rank.to_string())
        .collect::<Vec<_>>()
        .join(" ")
}

fn print_text(status: &RunStatus) {
    println!("run folder: {}", status.run_dir.display());
    for note in &status.notes {
        println!("note: {note}");
    }
    for stage in &status.stages {
        println!(
            "{} ({}): {} tasks: {} completed, {} running, {} pending, {} failed, {} not submitted",
            stage.stage.name(),
            stage.folder.display(),
            status.tasks,
            stage.completed.len(),
            stage.running.len(),
            stage.pending.len(),
            stage.failed.len(),
            stage.not_submitted.len(),
        );
        for (name, list) in [
            ("running", ranks(stage.running.iter().map(|task| task.rank))),
            ("pending", ranks(stage.pending.iter().map(|task| task.rank))),
            ("not submitted", ranks(stage.not_submitted.iter().copied())),
        ] {
            if !list.is_empty() {
                println!("  {name}: {list}");
            }
        }
        for task in &stage.failed {
            let state = task
                .slurm_state
                .as_ref()
                .map_or_else(String::new, |state| format!(", {state}"));
            let head = format!("  failed: task {} (job {}{state})", task.rank, task.job);
            if task.log_tail.is_empty() {
                println!("{head}; it never started (cancelled while pending, or a job it waited for failed)");
                continue;
            }
            println!("{head}; last lines of {}:", task.log.display());
            for line in task.log_tail.lines() {
                println!("    {line}");
            }
        }
        if let Some(Value::Object(documents)) = stage
            .documents_so_far
            .as_ref()
            .and_then(|counts| serde_json::to_value(counts).ok())
        {
            let counts: Vec<String> = documents
                .iter()
                .map(|(name, count)| format!("{name} {count}"))
                .collect();
            println!("  documents so far: {}", counts.join(", "));
        }
        match stage.stats.as_ref().and_then(Value::as_object) {
            Some(stats) => {
                println!("  merged stats ({}/stats.json):", stage.folder.display());
                for (name, value) in stats {
                    println!("    {name}: {value}");
                }
            }
            None => {
                println!("  merged stats: not yet (stats.json is written when the last task ends)")
            }
        }
    }
}
