//! `prox refine`: the refining pipeline over a corpus, into a resumable run folder.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{bail, Context};
use clap::builder::TypedValueParser as _;
use prox_program::Mode;
use prox_prompt::{PromptBudget, PromptMode, Stage};
use prox_refine::{
    rank_from_environment, run_tasks, Backend, EmbeddedBackend, Models, OpenAiBackend, Plan,
    Preset, Progress, Refiner, RefinerOptions, Reporter, RunConfig, RunFolder, SplitPolicy, Stages,
    Stats, TaskOptions, TaskReport,
};

use crate::commands::apply::ThresholdArgs;
use crate::commands::Completion;
use crate::engine_args::{BackendKind, EngineArgs};

#[derive(Debug, Clone, clap::Args)]
#[command(after_help = REFINE_AFTER_HELP)]
pub struct RefineArgs {
    /// Input files (.jsonl, .jsonl.gz, .jsonl.zst, .parquet), folders of them, or glob patterns
    /// (quoted, e.g. 'data/*.parquet'). Required, here or in --config.
    #[arg(long, num_args = 1..)]
    pub input: Vec<PathBuf>,

    /// The run folder: outputs, dropped documents, failures, checkpoints, stats. Running the
    /// same command again resumes the run. Required, here or in --config.
    #[arg(long)]
    pub output: Option<PathBuf>,

    /// A YAML file with the same keys as these flags (`doc-model: …` or `doc_model: …`);
    /// flags given on the command line win.
    #[arg(long)]
    pub config: Option<PathBuf>,

    /// The released refiners: `web` (gair-prox/web-doc-refining-lm and
    /// gair-prox/web-chunk-refining-lm) or `math` (the two math-… models).
    #[arg(long, default_value = "web", value_parser = clap::builder::PossibleValuesParser::new(["web", "math"])
        .try_map(|name| name.parse::<Preset>()))]
    pub preset: Preset,

    /// The document-stage model (a folder, a .gguf file or a hub id) [default: the preset's].
    #[arg(long)]
    pub doc_model: Option<String>,

    /// The chunk-stage model [default: the preset's].
    #[arg(long)]
    pub chunk_model: Option<String>,

    /// The stages to run, in order: `doc,chunk`, `doc` or `chunk`.
    #[arg(long, default_value = "doc,chunk", value_parser = |value: &str| value.parse::<Stages>())]
    pub stages: Stages,

    /// Where the models run: `embedded` (in this process) or `openai` (an OpenAI-compatible
    /// server such as vLLM, at --endpoint).
    #[arg(long, value_enum, default_value_t = BackendKind::Embedded)]
    pub backend: BackendKind,

    /// The server's base URL for --backend openai (e.g. http://127.0.0.1:8000); the model
    /// asked for is the stage's model name (--doc-model / --chunk-model).
    #[arg(long)]
    pub endpoint: Option<String>,

    /// The document-stage server, when the stages are served separately [default: --endpoint].
    #[arg(long)]
    pub doc_endpoint: Option<String>,

    /// The chunk-stage server [default: --endpoint].
    #[arg(long)]
    pub chunk_endpoint: Option<String>,

    /// --backend openai: the tokenizer the prompts are built with (a model folder or a
    /// tokenizer file) [default: the stage model's, found as a local folder or in the hub
    /// cache].
    #[arg(long)]
    pub tokenizer: Option<PathBuf>,

    /// --backend openai: the environment variable holding the API key.
    #[arg(long, default_value = prox_client::DEFAULT_API_KEY_ENV)]
    pub api_key_env: String,

    /// --backend openai: requests in flight at most, per server.
    #[arg(long, default_value_t = 256)]
    pub max_in_flight: usize,

    /// --backend openai: seconds one request may take before it is retried.
    #[arg(long, default_value_t = 600)]
    pub request_timeout: u64,

    /// --backend openai: retries of a request that failed for a transient reason.
    #[arg(long, default_value_t = 8)]
    pub max_retries: u32,

    /// How chunk programs are parsed: `faithful` (the reference, quirks included) or `strict`.
    #[arg(long, default_value_t = Mode::Faithful)]
    pub mode: Mode,

    /// `faithful` prompts recognise special tokens written in documents, as the reference;
    /// `robust` prompts keep document text literal and shorten long documents by whole text.
    #[arg(long, value_enum, default_value_t = PromptModeArg::Faithful)]
    pub prompt_mode: PromptModeArg,

    /// Split the run into this many tasks [default: --workers, else 1].
    #[arg(long, value_parser = clap::value_parser!(u64).range(1..))]
    pub tasks: Option<u64>,

    /// Run only this task. Without it, the rank comes from SLURM_ARRAY_TASK_ID, SLURM_PROCID
    /// or JOB_COMPLETION_INDEX; with none of those, every task runs here.
    #[arg(long)]
    pub rank: Option<u64>,

    /// Tasks run at the same time in this process, sharing the loaded models.
    #[arg(long, default_value_t = 1, value_parser = clap::value_parser!(u64).range(1..))]
    pub workers: u64,

    /// At most this many documents per task (to try a run on a sample).
    #[arg(long)]
    pub limit: Option<u64>,

    /// Print the resolved configuration and the shard plan, and do nothing.
    #[arg(long)]
    pub dry_run: bool,

    /// Start over in a run folder made for another configuration: its outputs, checkpoints and
    /// markers are removed.
    #[arg(long)]
    pub force: bool,

    /// The field holding the text (e.g. `raw_content` for RedPajama-V2).
    #[arg(long, default_value = "text")]
    pub text_field: String,

    /// The field holding a document id [default: the record's `id`, else `<file>:<line or
    /// row>`].
    #[arg(long)]
    pub id_field: Option<String>,

    /// `parquet` (zstd) or `jsonl.gz` for the output and dropped parts.
    #[arg(long, value_enum, default_value_t = OutputFormat::Parquet)]
    pub output_format: OutputFormat,

    /// Documents refined together (the batch handed to the model).
    #[arg(long, default_value_t = 64, value_parser = clap::value_parser!(u64).range(1..))]
    pub batch_size: u64,

    /// Embedded backend: prompts decoded together (bounds KV-cache memory).
    #[arg(long, default_value_t = 16, value_parser = clap::value_parser!(u64).range(1..))]
    pub engine_batch: u64,

    /// Embedded backend, document stage: `choose` scores drop_doc()/keep_doc() after one
    /// prefill and decodes freely only when neither is the greedy answer (same result as
    /// `generate`, which always decodes freely).
    #[arg(long, value_enum, default_value_t = DocDecoding::Choose)]
    pub doc_decoding: DocDecoding,

    /// New tokens at most per document-stage answer (reference: 2000).
    #[arg(long, default_value_t = 2000)]
    pub doc_max_new_tokens: usize,

    /// New tokens at most per chunk program (reference: 256).
    #[arg(long, default_value_t = 256)]
    pub chunk_max_new_tokens: usize,

    #[command(flatten)]
    pub engine: EngineArgs,

    #[command(flatten)]
    pub thresholds: ThresholdArgs,

    /// Split large plain JSON-lines and Parquet files into pieces of about this many bytes
    /// (`auto`: total / (4 × tasks), at least 64 MiB; `never`).
    #[arg(long, default_value = "auto", value_parser = parse_split)]
    pub split_size: SplitPolicy,

    /// Commit (close the parts and checkpoint) after this many documents…
    #[arg(long, default_value_t = 10_000)]
    pub commit_docs: u64,

    /// …or after this many seconds…
    #[arg(long, default_value_t = 300)]
    pub commit_seconds: u64,

    /// …or when the open output part holds about this many MiB.
    #[arg(long, default_value_t = 64)]
    pub part_mib: usize,

    /// Seconds between progress lines when standard error is not a terminal (under Slurm).
    #[arg(long, default_value_t = 30)]
    pub progress_seconds: u64,
}

const REFINE_AFTER_HELP: &str = "\
Every input document ends in exactly one place of the run folder: output/ (kept, unchanged or
modified), dropped/ (with the stage and reason) or failures/ (with file, line and error); the
stats count them and the counts add up. The layout is documented in docs/run-folder.md.

Rerun = resume: the same command in the same folder skips finished tasks and continues the
others from their last commit. A run folder refuses another configuration unless --force.

Examples:
  prox refine --input data/ --output runs/web                           # the web preset
  prox refine --input data/ --output runs/web --doc-model ./doc-lm --chunk-model ./chunk-lm
  prox refine --input data/ --output runs/web --backend openai --endpoint http://127.0.0.1:8000 \\
      --doc-model gair-prox/web-doc-refining-lm --chunk-model gair-prox/web-chunk-refining-lm
  prox refine --input 'data/*.parquet' --output runs/web --tasks 64     # under a Slurm array

Exit status: 0 when every document was processed, 1 when some went to the failures files, 2 on
an error that stopped the run.";

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum PromptModeArg {
    Faithful,
    Robust,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum OutputFormat {
    Parquet,
    #[value(name = "jsonl.gz")]
    JsonlGz,
}

impl OutputFormat {
    fn extension(self) -> &'static str {
        match self {
            OutputFormat::Parquet => "parquet",
            OutputFormat::JsonlGz => "jsonl.gz",
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum DocDecoding {
    Choose,
    Generate,
}

fn parse_split(value: &str) -> Result<SplitPolicy, String> {
    match value {
        "auto" => Ok(SplitPolicy::Auto),
        "never" => Ok(SplitPolicy::Never),
        bytes => bytes
            .parse::<u64>()
            .map(SplitPolicy::Bytes)
            .map_err(|_| format!("expected auto, never or a number of bytes, not {value:?}")),
    }
}

pub fn run(args: &RefineArgs) -> anyhow::Result<Completion> {
    match &args.config {
        Some(config) => run_resolved(&crate::config_file::with_config_file(
            "prox-refine",
            config,
        )?),
        None => run_resolved(args),
    }
}

fn run_resolved(args: &RefineArgs) -> anyhow::Result<Completion> {
    anyhow::ensure!(
        !args.input.is_empty(),
        "no input: give --input (or `input:` in --config)"
    );
    let Some(output) = &args.output else {
        bail!("no run folder: give --output (or `output:` in --config)");
    };
    let tasks = usize::try_from(args.tasks.unwrap_or(args.workers))?;
    let rank = match args.rank {
        Some(rank) => Some(usize::try_from(rank)?),
        None => rank_from_environment()?,
    };
    let Models {
        doc: doc_model,
        chunk: chunk_model,
    } = Models::new(
        args.preset,
        args.doc_model.as_deref(),
        args.chunk_model.as_deref(),
        args.stages,
    );
    let refiner_options = RefinerOptions {
        mode: args.mode,
        thresholds: args.thresholds.thresholds(),
        prompt_mode: match args.prompt_mode {
            PromptModeArg::Faithful => PromptMode::Faithful,
            PromptModeArg::Robust => PromptMode::Robust,
        },
        budget: PromptBudget::default(),
        doc_max_new_tokens: args.doc_max_new_tokens,
        chunk_max_new_tokens: args.chunk_max_new_tokens,
    };
    let inputs = args
        .input
        .iter()
        .map(|input| std::path::absolute(input).unwrap_or_else(|_| input.clone()))
        .collect();
    let config = RunConfig {
        inputs,
        tasks,
        stages: args.stages,
        text_field: args.text_field.clone(),
        id_field: args.id_field.clone(),
        doc_model: doc_model.clone(),
        chunk_model: chunk_model.clone(),
        backend: args.backend.into(),
        endpoint: args.endpoint.clone(),
        refiner: refiner_options.settings(),
        output_format: match args.output_format {
            OutputFormat::Parquet => prox_refine::OutputFormat::Parquet,
            OutputFormat::JsonlGz => prox_refine::OutputFormat::JsonlGz,
        },
        split: args.split_size,
        limit: args.limit,
    };
    if let Some(rank) = rank {
        anyhow::ensure!(
            rank < tasks,
            "task {rank} does not exist: the run has {tasks} tasks (--tasks)"
        );
    }

    if args.dry_run {
        let plan = Plan::new(&config.inputs, tasks, config.split)?;
        print_dry_run(&config, &plan, rank)?;
        return Ok(Completion::Clean);
    }

    let (folder, plan) = RunFolder::prepare(output, &config, args.force, Plan::for_run)?;
    let ranks: Vec<usize> = match rank {
        Some(rank) => vec![rank],
        None => (0..tasks).collect(),
    };
    if ranks.iter().all(|&rank| folder.is_done(rank)) {
        tracing::info!(run = %output.display(), "every task of this process is already done");
        return finish(&folder, tasks, &ranks);
    }

    let doc_backend = doc_model
        .as_deref()
        .map(|model| load_backend(model, Stage::Doc, args))
        .transpose()?;
    let same_server = args.backend == BackendKind::Embedded
        || args.doc_endpoint.is_none() && args.chunk_endpoint.is_none();
    let chunk_backend = match (&chunk_model, &doc_backend) {
        (Some(chunk), Some(doc)) if Some(chunk) == doc_model.as_ref() && same_server => {
            Some(Arc::clone(doc))
        }
        (Some(chunk), _) => Some(load_backend(chunk, Stage::Chunk, args)?),
        (None, _) => None,
    };
    let refiner = Refiner::new(doc_backend, chunk_backend, refiner_options)?;
    let task_options = TaskOptions {
        batch_docs: usize::try_from(args.batch_size)?,
        commit_docs: args.commit_docs.max(1),
        commit_interval: Duration::from_secs(args.commit_seconds.max(1)),
        part_bytes: args.part_mib.max(1) << 20,
        limit: args.limit,
        output_format: args.output_format.extension().to_owned(),
        text_field: args.text_field.clone(),
        id_field: args.id_field.clone(),
    };

    let total_bytes: u64 = ranks.iter().map(|&r| plan.bytes_of(r)).sum();
    let workers = usize::try_from(args.workers)?.clamp(1, ranks.len());
    tracing::info!(
        run = %output.display(),
        tasks,
        here = ranks.len(),
        workers,
        stages = ?args.stages.names(),
        "refining"
    );
    let reporter = RefineReporter {
        totals: Progress::default(),
        started: Instant::now(),
        bar: crate::progress::Progress::new(
            total_bytes,
            "{bar:30} {bytes}/{total_bytes} {msg} ETA {eta}",
            Some(Duration::from_secs(args.progress_seconds.max(1))),
        ),
    };
    let result = run_tasks(
        &folder,
        &plan,
        &ranks,
        workers,
        &refiner,
        &task_options,
        &reporter,
    );
    reporter.bar.finish();
    result?;
    finish(&folder, tasks, &ranks)
}

fn load_backend(model: &str, stage: Stage, args: &RefineArgs) -> anyhow::Result<Arc<dyn Backend>> {
    match args.backend {
        BackendKind::Embedded => {
            let loaded = args.engine.load(model, None)?;
            let backend = EmbeddedBackend::new(
                loaded,
                usize::try_from(args.engine_batch)?,
                args.doc_decoding == DocDecoding::Choose,
            )?;
            Ok(Arc::new(backend))
        }
        BackendKind::Openai => {
            let endpoint = match stage {
                Stage::Doc => &args.doc_endpoint,
                Stage::Chunk => &args.chunk_endpoint,
            };
            let Some(endpoint) = endpoint.as_ref().or(args.endpoint.as_ref()) else {
                bail!("--backend openai needs --endpoint URL (the server's base URL)");
            };
            let tokenizer = openai_tokenizer(model, args.tokenizer.as_deref())?;
            let options = prox_client::ClientOptions {
                endpoint: endpoint.clone(),
                model: Some(model.to_owned()),
                api_key_env: args.api_key_env.clone(),
                max_in_flight: args.max_in_flight.max(1),
                request_timeout: Duration::from_secs(args.request_timeout.max(1)),
                max_retries: args.max_retries,
                ..prox_client::ClientOptions::default()
            };
            let client = prox_client::Client::connect(options)
                .with_context(|| format!("cannot use the server at {endpoint}"))?;
            tracing::info!(endpoint = %endpoint, model = client.model(), "server answered");
            Ok(Arc::new(OpenAiBackend::new(Arc::new(client), tokenizer)))
        }
    }
}

/// The tokenizer for prompts sent to a server: --tokenizer, else the model's own files when
/// the model is a local folder or in the hub cache.
fn openai_tokenizer(
    model: &str,
    given: Option<&Path>,
) -> anyhow::Result<prox_tokenizer::Tokenizer> {
    let path = match given {
        Some(path) => path.to_owned(),
        None => prox_engine::resolve_model(model, None).with_context(|| {
            format!("the prompts for {model} need its tokenizer: give --tokenizer (a model folder or tokenizer file)")
        })?,
    };
    prox_tokenizer::Tokenizer::from_path(&path)
        .with_context(|| format!("cannot load the tokenizer {}", path.display()))
}

fn print_dry_run(config: &RunConfig, plan: &Plan, rank: Option<usize>) -> anyhow::Result<()> {
    let mut out = serde_json::to_string_pretty(config)?;
    out.push('\n');
    for task in 0..plan.tasks {
        if rank.is_some_and(|r| r != task) {
            continue;
        }
        out.push_str(&format!(
            "task {task}: {} shards, {} bytes\n",
            plan.shards_of(task).count(),
            plan.bytes_of(task)
        ));
        for (index, shard) in plan.shards_of(task) {
            let slice = serde_json::to_string(&shard.slice)?;
            out.push_str(&format!(
                "  shard {index}: {} {slice}\n",
                shard.file.display()
            ));
        }
    }
    print!("{out}");
    Ok(())
}

/// Prints the run's state and tells whether documents failed.
fn finish(folder: &RunFolder, tasks: usize, ranks: &[usize]) -> anyhow::Result<Completion> {
    let mut stats = Stats::default();
    for &rank in ranks {
        if let Some(task_stats) = folder.done_stats(rank)? {
            stats.add(&task_stats);
        }
    }
    let done = (0..tasks).filter(|&rank| folder.is_done(rank)).count();
    let d = &stats.documents;
    println!(
        "{} documents: {} kept ({} unchanged, {} modified, {} program ignored), {} dropped, {} failed; {} of {} tasks done; run folder {}",
        d.input,
        d.output,
        d.unchanged,
        d.modified,
        d.ignored,
        d.dropped,
        d.failed,
        done,
        tasks,
        folder.root().display()
    );
    Ok(if d.failed > 0 || stats.files.failed > 0 {
        Completion::SomeDocumentsFailed
    } else {
        Completion::Clean
    })
}

/// A bar of input bytes on a terminal, a log line every --progress-seconds otherwise, and a
/// line per task done.
struct RefineReporter {
    totals: Progress,
    started: Instant,
    bar: crate::progress::Progress,
}

impl Reporter for RefineReporter {
    fn batch_done(&self, _rank: usize, before: &Stats, after: &Stats) {
        self.totals.add(before, after);
        let totals = &self.totals;
        let load = |counter: &std::sync::atomic::AtomicU64| {
            counter.load(std::sync::atomic::Ordering::Relaxed)
        };
        self.bar.set_position(load(&totals.bytes));
        self.bar.message(|| {
            let seconds = self.started.elapsed().as_secs_f64().max(1e-9);
            let documents = load(&totals.documents);
            let tokens = load(&totals.prompt_tokens) + load(&totals.generated_tokens);
            format!(
                "{documents} docs ({:.1}/s), {:.0} tokens/s, kept {} dropped {} failed {}",
                documents as f64 / seconds,
                tokens as f64 / seconds,
                load(&totals.output),
                load(&totals.dropped),
                load(&totals.failed),
            )
        });
    }

    fn task_done(&self, report: &TaskReport) {
        if !report.already_done {
            let documents = &report.stats.documents;
            self.bar.suspend(|| {
                tracing::info!(
                    rank = report.rank,
                    documents = documents.input,
                    output = documents.output,
                    dropped = documents.dropped,
                    failed = documents.failed,
                    "task done"
                )
            });
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_refine_arguments_are_consistent() {
        use clap::Args;
        RefineArgs::augment_args(clap::Command::new("refine")).debug_assert();
    }
}
