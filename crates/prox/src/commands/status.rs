//! `prox status`: where every task of a run stands (completed, running, pending, failed),
//! the last lines of the failed tasks' logs, and the run's stats.

use std::path::PathBuf;

use anyhow::Context;
use prox_refine::Stats;
use prox_slurm::{
    read_json_if_present, tail_lines, task_states, Cluster, SlurmDir, SlurmView, StageDir,
    TaskState,
};
use serde_json::{json, Value};

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
    let slurm_dir = SlurmDir::new(&run_dir);
    let settings = slurm_dir.settings()?;
    let jobs = slurm_dir.jobs()?;
    let tasks = match (args.tasks, &settings) {
        (Some(tasks), _) => tasks,
        (None, Some(settings)) => settings.tasks,
        (None, None) => tasks_of_run_json(&run_dir)?,
    };
    let separate_stages = settings.as_ref().is_some_and(|s| s.separate_stages);

    // Slurm first, the markers after: a task writes its marker before it leaves the queue.
    let job_ids: Vec<String> = jobs.jobs.iter().map(|job| job.job_id.clone()).collect();
    let mut notes = Vec::new();
    let view = if job_ids.is_empty() {
        SlurmView::default()
    } else {
        let queued = match Cluster.queued(&job_ids) {
            Ok(queued) => queued,
            Err(error) => {
                notes.push(format!(
                    "squeue is not available ({}): running and pending tasks show as failed",
                    prox_io::error_chain(&error)
                ));
                Vec::new()
            }
        };
        let accounted = Cluster.accounting(&job_ids);
        SlurmView { queued, accounted }
    };

    let mut stage_reports = Vec::new();
    for &stage in prox_slurm::stages(separate_stages) {
        let stage_dir = StageDir::new(&run_dir, stage);
        let states = task_states(&stage_dir, tasks, &jobs, &view);
        stage_reports.push(stage_report(&stage_dir, &states, args.log_lines)?);
    }
    // The run's stats are the last stage's (the chunk stage's with separate stages).
    let stats = stage_reports
        .last()
        .map_or(Value::Null, |stage| stage["stats"].clone());
    let report = json!({
        "run_dir": run_dir,
        "tasks": tasks,
        "stages": stage_reports,
        "stats": stats,
        "notes": notes,
    });
    if args.json {
        println!("{}", serde_json::to_string_pretty(&report)?);
    } else {
        print_text(&report);
    }
    Ok(Completion::Clean)
}

/// The number of tasks from run.json (`tasks`), for runs not submitted by `prox slurm`.
fn tasks_of_run_json(run_dir: &std::path::Path) -> anyhow::Result<u32> {
    let run_json: Option<Value> = read_json_if_present(&run_dir.join("run.json"))?;
    run_json
        .as_ref()
        .and_then(|run| run.get("tasks"))
        .and_then(Value::as_u64)
        .and_then(|tasks| u32::try_from(tasks).ok())
        .with_context(|| {
            format!(
                "cannot tell how many tasks {} has: it has no slurm/submit.json and its \
                 run.json gives no `tasks`; give --tasks",
                run_dir.display()
            )
        })
}

fn stage_report(stage: &StageDir, states: &[TaskState], log_lines: usize) -> anyhow::Result<Value> {
    let mut completed = Vec::new();
    let mut running = Vec::new();
    let mut pending = Vec::new();
    let mut failed = Vec::new();
    let mut not_submitted = Vec::new();
    let layout = stage.layout();
    // What the tasks committed so far, from their markers and progress files.
    let mut so_far: Option<Stats> = None;
    for (rank, state) in (0usize..).zip(states) {
        match state {
            TaskState::Completed => completed.push(json!(rank)),
            TaskState::Running { job_id } => running.push(json!({"rank": rank, "job": job_id})),
            TaskState::Pending { job_id, reason } => {
                pending.push(json!({"rank": rank, "job": job_id, "reason": reason}));
            }
            TaskState::Failed {
                job_id,
                slurm_state,
            } => failed.push(json!({
                "rank": rank,
                "job": job_id,
                "slurm_state": slurm_state,
                "log": layout.task_log(rank),
                "log_tail": tail_lines(&layout.task_log(rank), log_lines),
            })),
            TaskState::NotSubmitted => not_submitted.push(json!(rank)),
        }
        if let Some(stats) = layout.task_stats(rank)? {
            so_far.get_or_insert_with(Stats::default).add(&stats);
        }
    }
    Ok(json!({
        "stage": stage.name(),
        "folder": stage.root(),
        "completed": completed,
        "running": running,
        "pending": pending,
        "failed": failed,
        "not_submitted": not_submitted,
        "documents_so_far": so_far.map_or_else(|| json!({}), |stats| json!(stats.documents)),
        "stats": read_json_if_present::<Value>(&layout.stats_json())?,
    }))
}

fn count(value: &Value) -> usize {
    value.as_array().map_or(0, Vec::len)
}

fn ranks(list: &Value) -> String {
    list.as_array()
        .into_iter()
        .flatten()
        .map(|task| {
            task.get("rank")
                .unwrap_or(task)
                .as_u64()
                .map_or_else(String::new, |rank| rank.to_string())
        })
        .collect::<Vec<_>>()
        .join(" ")
}

fn print_text(report: &Value) {
    println!("run folder: {}", report["run_dir"].as_str().unwrap_or(""));
    for note in report["notes"].as_array().into_iter().flatten() {
        println!("note: {}", note.as_str().unwrap_or(""));
    }
    let tasks = report["tasks"].as_u64().unwrap_or(0);
    for stage in report["stages"].as_array().into_iter().flatten() {
        println!(
            "{} ({}): {tasks} tasks: {} completed, {} running, {} pending, {} failed, {} not submitted",
            stage["stage"].as_str().unwrap_or(""),
            stage["folder"].as_str().unwrap_or(""),
            count(&stage["completed"]),
            count(&stage["running"]),
            count(&stage["pending"]),
            count(&stage["failed"]),
            count(&stage["not_submitted"]),
        );
        for (name, key) in [
            ("running", "running"),
            ("pending", "pending"),
            ("not submitted", "not_submitted"),
        ] {
            if count(&stage[key]) > 0 {
                println!("  {name}: {}", ranks(&stage[key]));
            }
        }
        for task in stage["failed"].as_array().into_iter().flatten() {
            let state = task["slurm_state"]
                .as_str()
                .map_or_else(String::new, |state| format!(", {state}"));
            let tail = task["log_tail"].as_str().unwrap_or("");
            let head = format!(
                "  failed: task {} (job {}{state})",
                task["rank"],
                task["job"].as_str().unwrap_or("")
            );
            if tail.is_empty() {
                println!("{head}; it never started (cancelled while pending, or a job it waited for failed)");
                continue;
            }
            println!(
                "{head}; last lines of {}:",
                task["log"].as_str().unwrap_or("")
            );
            for line in tail.lines() {
                println!("    {line}");
            }
        }
        if let Some(documents) = stage["documents_so_far"]
            .as_object()
            .filter(|d| !d.is_empty())
        {
            let counts: Vec<String> = documents
                .iter()
                .map(|(name, count)| format!("{name} {count}"))
                .collect();
            println!("  documents so far: {}", counts.join(", "));
        }
        print_stats(stage);
    }
}

fn print_stats(stage: &Value) {
    match stage["stats"].as_object() {
        Some(stats) => {
            println!(
                "  merged stats ({}/stats.json):",
                stage["folder"].as_str().unwrap_or("")
            );
            for (name, value) in stats {
                println!("    {name}: {value}");
            }
        }
        None => println!("  merged stats: not yet (stats.json is written when the last task ends)"),
    }
}
