//! `prox math-eval`: ProX's math evaluation (GAIR-NLP's math-evaluation-harness), over
//! `prox-math`: `prompts` and `grade` without a model, `run` with the embedded engine or an
//! OpenAI-compatible server.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::Context;
use prox_eval::series::{self, MathSeries};
use prox_eval::EngineGenerator;
use prox_io::{Failure, JsonlWriter};
use prox_math::{Dataset, GenerationParams, Generator, Harness, Metrics, Reporter, RunOptions};
use serde_json::json;

use crate::commands::eval::{write_series_chart, SeriesLog};
use crate::commands::Completion;
use crate::engine_args::{BackendKind, ModelArgs};
use crate::progress::Progress;

/// The nine datasets, in the harness's order.
const ALL_TASKS: &str = "gsm8k,minerva_math,svamp,asdiv,mawps,tabmwp,mathqa,mmlu_stem,sat_math";

#[derive(Debug, clap::Args)]
pub struct MathEvalArgs {
    #[command(subcommand)]
    pub command: MathEvalCommand,
}

#[derive(Debug, clap::Subcommand)]
pub enum MathEvalCommand {
    /// Generate with a model, grade, and write the harness's output layout, per dataset:
    /// `<name>/test_cot_-1_seed0_t0.0_s0_e-1.jsonl` and `…_cot_metrics.json`, then
    /// `results.json` and the accuracy table. Resumable: the same command again skips the
    /// samples already generated.
    #[command(after_help = RUN_AFTER_HELP)]
    Run(MathRunArgs),
    /// Write the harness's prompt and ground truth for every example: `dataset`, `idx`,
    /// `prompt`, `gt_cot`, `gt`.
    Prompts(MathPromptsArgs),
    /// Grade stored completions: rows with `dataset`, `output` (or `pred`) and `gt` get
    /// `pred` and `score`; other fields are kept.
    #[command(after_help = GRADE_AFTER_HELP)]
    Grade(MathGradeArgs),
}

/// The harness and the datasets taken from it, for `run` and `prompts`.
#[derive(Debug, clap::Args)]
pub struct HarnessArgs {
    /// A checkout of GAIR-NLP/math-evaluation-harness (`data/<name>/test.jsonl`,
    /// `prompts/cot/*.md`).
    #[arg(long)]
    pub data: PathBuf,

    /// Datasets, comma-separated, in the order run.
    #[arg(long, default_value = ALL_TASKS)]
    pub tasks: String,
}

impl HarnessArgs {
    /// The datasets of --tasks and the harness of --data (the names checked first).
    fn open(&self) -> anyhow::Result<(Vec<Dataset>, Harness)> {
        let datasets = parse_tasks(&self.tasks)?;
        Ok((datasets, Harness::open(&self.data)?))
    }
}

#[derive(Debug, clap::Args)]
pub struct MathRunArgs {
    #[command(flatten)]
    pub model: ModelArgs,

    #[command(flatten)]
    pub harness: HarnessArgs,

    /// The output folder: one folder per dataset, and `results.json`.
    #[arg(long)]
    pub output: PathBuf,

    /// The first N examples (by idx) of each dataset; all by default.
    #[arg(long)]
    pub max_samples: Option<usize>,

    /// The most tokens generated per sample.
    #[arg(long, default_value_t = 1024)]
    pub max_new_tokens: usize,

    /// Prompts generated together; each batch is stored when it finishes.
    #[arg(long, default_value_t = 16, value_parser = clap::value_parser!(u64).range(1..))]
    pub batch_size: u64,

    /// The embedded engine, or an OpenAI-compatible server (vLLM, `prox serve`) at
    /// --endpoint; then --model is a name for the results only (the server's model is used).
    #[arg(long, value_enum, default_value_t = BackendKind::Embedded)]
    pub backend: BackendKind,

    /// --backend openai: the server's base URL (e.g. http://127.0.0.1:8000).
    #[arg(long, required_if_eq("backend", "openai"))]
    pub endpoint: Option<String>,

    /// --backend openai: the environment variable holding the API key.
    #[arg(long, default_value = prox_client::DEFAULT_API_KEY_ENV)]
    pub api_key_env: String,

    /// Evaluate these checkpoints of the series in --model (comma-separated: N of `{N}B/`,
    /// or the step of `step-NNNNNNNN/`); all of them when --model is a folder of checkpoints
    /// and --steps is not given. Embedded backend only.
    #[arg(long, value_delimiter = ',')]
    pub steps: Vec<u64>,
}

#[derive(Debug, clap::Args)]
pub struct MathPromptsArgs {
    #[command(flatten)]
    pub harness: HarnessArgs,

    /// Where to write the rows (JSON lines).
    #[arg(long)]
    pub output: PathBuf,
}

#[derive(Debug, clap::Args)]
pub struct MathGradeArgs {
    /// Rows to grade: JSON lines (plain, .gz, .zst) or Parquet.
    #[arg(long)]
    pub input: PathBuf,

    /// Where to write the graded rows (JSON lines). Rows that cannot be graded go to
    /// `<name>.failures.jsonl` beside it.
    #[arg(long)]
    pub output: PathBuf,
}

const RUN_AFTER_HELP: &str = "\
Decoding is greedy, at most --max-new-tokens, and ends at the end-of-sequence token or the
first of the stop strings `</s>`, `\\n\\nQuestion:`, `\\n\\nProblem:` (not part of the output),
as the harness runs vLLM. Each dataset folder also holds generations.jsonl, the completions
stored batch by batch (synced to disk): a run killed at any moment and started again loses at
most the batch in flight. A dataset whose data file is missing is an error unless --tasks
leaves it out (TabMWP's file is often absent from copies of the harness).

A checkpoint series: --model names a folder of checkpoints (the {N}B/ folders of prox convert
litgpt, or prox train's output folder or its checkpoints/step-NNNNNNNN/), --steps picks some
(a step that is not there is an error listing those that are), and --output holds:
  OUT/<checkpoint>/...            the layout above, for each checkpoint
  OUT/series.csv                  model_step, each dataset's acc (percent), avg, tokens
  OUT/series.svg, series.html     the accuracies against training tokens (against
                                  model_step when the tokens are not known)
A checkpoint whose results.json holds exactly these datasets is not evaluated again; another
is run again, resuming from the generations it stored.

Exit status: 0 when every dataset was evaluated, 2 on an error.";

const GRADE_AFTER_HELP: &str = "\
`pred` is extracted from `output` as the harness extracts it from a completion; a row with
`pred` and no `output` is graded as given. `gt` is compared as given (the harness's scoring
ground truth, as `prox math-eval prompts` and the harness's output files hold it), with
`math_equal` under a 3-second budget per row; a timeout scores false.

Exit status: 0 when every row was graded, 1 when some went to the failures file, 2 on an
error that stopped the run.";

pub fn run(args: &MathEvalArgs) -> anyhow::Result<Completion> {
    match &args.command {
        MathEvalCommand::Run(args) => run_eval(args),
        MathEvalCommand::Prompts(args) => prompts(args),
        MathEvalCommand::Grade(args) => grade(args),
    }
}

fn parse_tasks(tasks: &str) -> anyhow::Result<Vec<Dataset>> {
    tasks
        .split(',')
        .map(str::trim)
        .filter(|t| !t.is_empty())
        .map(|t| Dataset::from_name(t).map_err(anyhow::Error::from))
        .collect()
}

fn prompts(args: &MathPromptsArgs) -> anyhow::Result<Completion> {
    let (datasets, harness) = args.harness.open()?;
    let mut output = JsonlWriter::create(&args.output)?;
    for dataset in datasets {
        let demo = harness.demo(dataset)?;
        for example in harness.examples(dataset)? {
            output.write(&json!({
                "dataset": dataset.name(),
                "idx": example.idx,
                "prompt": prox_math::prompt(&demo, &example),
                "gt_cot": example.gt_cot,
                "gt": example.gt,
            }))?;
        }
    }
    let written = output.finish()?;
    tracing::info!(written, "prompts written");
    Ok(Completion::Clean)
}

fn grade(args: &MathGradeArgs) -> anyhow::Result<Completion> {
    let mut output = JsonlWriter::create(&args.output)?;
    let mut failures = JsonlWriter::create(&prox_io::beside(&args.output, "failures.jsonl"))?;
    // Per dataset: rows graded and rows correct, for the summary.
    let mut tally: BTreeMap<String, (usize, usize)> = BTreeMap::new();
    let mut failed = 0u64;
    for item in prox_io::open_records(&args.input)? {
        match item? {
            Err(bad) => {
                failed += 1;
                failures.write(&Failure::from(&bad))?;
            }
            Ok(mut record) => match prox_math::grade_row(&mut record.fields) {
                Ok(verdict) => {
                    let name = record
                        .fields
                        .get("dataset")
                        .and_then(|d| d.as_str())
                        .unwrap_or_default();
                    let entry = tally.entry(name.to_owned()).or_default();
                    entry.0 += 1;
                    entry.1 += usize::from(verdict.is_equal());
                    output.write(&record.fields)?;
                }
                Err(reason) => {
                    failed += 1;
                    failures.write(&Failure::of_record(&record.location, reason))?;
                }
            },
        }
    }
    output.finish()?;
    failures.finish()?;
    for (name, (n, correct)) in &tally {
        println!("{name}\t{n}\t{:.1}", prox_math::percent(*correct, *n));
    }
    Ok(if failed == 0 {
        Completion::Clean
    } else {
        Completion::SomeDocumentsFailed
    })
}

fn run_eval(args: &MathRunArgs) -> anyhow::Result<Completion> {
    let (datasets, harness) = args.harness.open()?;
    let options = RunOptions {
        max_samples: args.max_samples,
        batch_size: usize::try_from(args.batch_size).unwrap_or(usize::MAX),
        params: GenerationParams {
            max_new_tokens: args.max_new_tokens,
            ..GenerationParams::default()
        },
    };
    let folder = Path::new(&args.model.model);
    let embedded = args.backend == BackendKind::Embedded;
    if !args.steps.is_empty() || (embedded && series::is_series(folder)) {
        anyhow::ensure!(embedded, "a checkpoint series runs on --backend embedded");
        let checkpoints = series::select(&series::discover(folder)?, &args.steps)?;
        let load = args.model.engine.load_options()?;
        let mut bars = Bars::default();
        let mut evaluator = MathSeries::new(&harness, &datasets, &options, &load, &mut bars);
        let table = series::run(&checkpoints, &args.output, &mut evaluator, &mut SeriesLog)?;
        let title = format!("prox math-eval: {}", folder.display());
        write_series_chart(&table, &args.output, &title)?;
        print!("{}", table.to_csv());
        return Ok(Completion::Clean);
    }
    let mut generator: Box<dyn Generator> = match args.backend {
        BackendKind::Embedded => Box::new(EngineGenerator::new(args.model.load()?)?),
        BackendKind::Openai => {
            let endpoint = args
                .endpoint
                .clone()
                .context("--backend openai needs --endpoint")?;
            let client = prox_client::Client::connect(prox_client::ClientOptions {
                endpoint,
                api_key_env: args.api_key_env.clone(),
                prompt_format: prox_client::PromptFormat::Text,
                request_timeout: Duration::from_secs(1800),
                ..prox_client::ClientOptions::default()
            })
            .context("cannot reach the server")?;
            Box::new(ServerGenerator { client })
        }
    };
    let mut reporter = Bars::default();
    let results = prox_math::run(
        &harness,
        &datasets,
        &args.output,
        generator.as_mut(),
        &options,
        &mut reporter,
    )?;
    print!("{}", prox_math::results_table(&results));
    Ok(Completion::Clean)
}

/// Generation on an OpenAI-compatible server, which stops at the stop strings (`stop`); the
/// text is also cut here before the first one, for servers that ignore `stop`.
struct ServerGenerator {
    client: prox_client::Client,
}

impl Generator for ServerGenerator {
    fn complete(
        &mut self,
        prompts: &[String],
        params: &GenerationParams,
    ) -> Vec<Result<String, String>> {
        let requests: Vec<prox_client::CompletionRequest> = prompts
            .iter()
            .map(|prompt| prox_client::CompletionRequest {
                prompt_text: prompt.clone(),
                max_tokens: params.max_new_tokens,
                stop: params.stop.clone(),
                ..prox_client::CompletionRequest::default()
            })
            .collect();
        self.client
            .complete(&requests)
            .into_iter()
            .map(|result| {
                result
                    .map(|c| prox_math::before_stop(&c.text, &params.stop).to_owned())
                    .map_err(|e| e.to_string())
            })
            .collect()
    }
}

/// A progress bar per dataset on a terminal; log lines otherwise, one per batch stored.
#[derive(Default)]
struct Bars {
    progress: Option<Progress>,
}

impl Reporter for Bars {
    fn dataset_started(&mut self, dataset: Dataset, total: usize, done: usize) {
        tracing::info!(%dataset, total, done, "dataset started");
        let template = format!(
            "{:>12} {{wide_bar}} {{pos}}/{{len}} samples {{per_sec}} eta {{eta}}",
            dataset.name()
        );
        let progress = Progress::new(total as u64, &template, None);
        progress.start_at(done as u64);
        self.progress = Some(progress);
    }

    fn generated(&mut self, dataset: Dataset, count: usize) {
        if let Some(progress) = &self.progress {
            progress.inc(count as u64);
            progress.unless_drawn(|| {
                let (done, total) = (progress.position(), progress.length());
                tracing::info!(%dataset, count, done, total, "batch generated");
            });
        }
    }

    fn dataset_finished(&mut self, dataset: Dataset, metrics: &Metrics) {
        if let Some(progress) = self.progress.take() {
            progress.finish();
        }
        tracing::info!(%dataset, acc = metrics.acc, samples = metrics.num_samples, "dataset done");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tasks_parse_in_order_and_unknown_names_are_refused() {
        assert_eq!(
            parse_tasks("svamp, gsm8k").unwrap_or_default(),
            vec![Dataset::Svamp, Dataset::Gsm8k]
        );
        assert_eq!(parse_tasks(ALL_TASKS).map(|t| t.len()).ok(), Some(9));
        let error = parse_tasks("gsm8k,math").expect_err("math is not a dataset");
        assert!(error.to_string().contains("known: gsm8k"), "{error}");
    }
}
