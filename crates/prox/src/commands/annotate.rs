//! `prox annotate`: label documents with an OpenAI-compatible chat model, making SFT data
//! for a document-stage or chunk-stage refiner.

use std::path::PathBuf;
use std::time::Duration;

use anyhow::Context;
use prox_annotate::{annotate, AnnotateOptions, ClientChat, Prompts, Sample};
use prox_client::ClientOptions;
use prox_prompt::{PromptMode, Prompter, Stage};
use prox_tokenizer::Tokenizer;
use serde_json::json;

use crate::commands::apply::stage_parser;
use crate::commands::prompts::ModeArg;
use crate::commands::Completion;

#[derive(Debug, clap::Args)]
#[command(after_help = ANNOTATE_AFTER_HELP)]
pub struct AnnotateArgs {
    /// Which refiner the examples teach: `doc` (keep_doc()/drop_doc() from two rubric
    /// scores) or `chunk` (line programs from one prompt per noise type).
    #[arg(long, value_parser = stage_parser())]
    pub stage: Stage,

    /// Documents: JSON-lines files (plain, .gz, .zst), Parquet files, or folders of them.
    #[arg(long, required = true, num_args = 1..)]
    pub input: Vec<PathBuf>,

    /// The output folder (created; a folder holding this run is resumed).
    #[arg(long)]
    pub output: PathBuf,

    /// The annotator's OpenAI-compatible server, e.g. http://127.0.0.1:8000 (vLLM, SGLang,
    /// llama.cpp, `prox serve`, a hosted API); its /v1/chat/completions is used.
    #[arg(long)]
    pub endpoint: String,

    /// The annotator model, as the server's /v1/models lists it.
    #[arg(long)]
    pub model: String,

    /// The refiner's tokenizer (a model folder or a tokenizer file): the examples' prompts
    /// and chunks are built with it, exactly as the refiner will see them.
    #[arg(long)]
    pub tokenizer: PathBuf,

    /// A folder of prompt templates replacing the built-in ones: doc/educational_value.jinja
    /// and doc/format_quality.jinja, and chunk/<noise>.jinja, one per noise type.
    #[arg(long)]
    pub prompts: Option<PathBuf>,

    /// Annotate a sample of this many documents, drawn reproducibly with --seed.
    #[arg(long)]
    pub sample: Option<usize>,

    /// The seed of --sample.
    #[arg(long, default_value_t = 0, requires = "sample")]
    pub seed: u64,

    /// Requests to the annotator at once.
    #[arg(long, default_value_t = 16, value_parser = clap::value_parser!(u64).range(1..))]
    pub max_in_flight: u64,

    /// Chunk stage: the most of a chunk's lines a merged program may remove; an annotation
    /// removing more is rejected.
    #[arg(long, default_value_t = 0.5)]
    pub max_removal_ratio: f64,

    /// Documents between two checkpoints: a killed run loses at most this many.
    #[arg(long, default_value_t = 64, value_parser = clap::value_parser!(u64).range(1..))]
    pub checkpoint_every: u64,

    /// The most tokens of one annotator answer.
    #[arg(long, default_value_t = 1024)]
    pub max_tokens: usize,

    /// How the refiner's prompts are built, as `prox refine --prompt-mode`.
    #[arg(long, value_enum, default_value_t = ModeArg::Faithful)]
    pub prompt_mode: ModeArg,

    /// The field holding the document text.
    #[arg(long, default_value = "text")]
    pub text_field: String,

    /// The field naming each document (else `file:line`).
    #[arg(long, default_value = "id")]
    pub id_field: String,

    /// The environment variable holding the API key, sent as a bearer token when set.
    #[arg(long, default_value = "OPENAI_API_KEY")]
    pub api_key_env: String,

    /// Retries of a request that failed with a connection error, a timeout, 408, 429 or 5xx.
    #[arg(long, default_value_t = 5)]
    pub max_retries: u32,

    /// The limit on one attempt of a request, in seconds.
    #[arg(long, default_value_t = 600)]
    pub request_timeout: u64,
}

const ANNOTATE_AFTER_HELP: &str = "\
The output folder holds sft.jsonl (one example per document or chunk: `id`, `stage`, `prompt`,
`target`, `prompt_ids`, `text`, ...; the prompt is the refiner's, as `prox prompts` builds it),
answers.jsonl (every raw annotator answer), rejected.jsonl (annotations not used, with
`reason`: empty_document, no_score, score_out_of_range, no_code_block, outside_grammar,
line_outside_chunk, normalize_not_in_chunk, removal_ratio_over_cap), failures.jsonl (unreadable
records, requests that failed after their retries) and stats.json, whose document counts add
up: input = with_examples + rejected + failed.

The same command again resumes after the last checkpoint; other settings in the same folder
are refused. Exit status: 0 when nothing failed, 1 when some documents or requests went to
failures.jsonl, 2 on an error that stopped the run.";

pub fn run(args: &AnnotateArgs) -> anyhow::Result<Completion> {
    let stage = args.stage;
    let prompts = match &args.prompts {
        Some(dir) => Prompts::from_dir(dir, stage)?,
        None => Prompts::builtin(stage)?,
    };
    let tokenizer = Tokenizer::from_path(&args.tokenizer)
        .with_context(|| format!("cannot load the tokenizer {}", args.tokenizer.display()))?;
    let prompt_mode: PromptMode = args.prompt_mode.into();
    let prompter = Prompter::new(&tokenizer).with_mode(prompt_mode);

    let chat_options = ClientOptions {
        endpoint: args.endpoint.clone(),
        model: Some(args.model.clone()),
        api_key_env: args.api_key_env.clone(),
        max_in_flight: usize::try_from(args.max_in_flight).unwrap_or(usize::MAX),
        max_retries: args.max_retries,
        request_timeout: Duration::from_secs(args.request_timeout),
        ..ClientOptions::default()
    };
    let chat = ClientChat::connect(chat_options).with_context(|| {
        format!(
            "cannot use the annotator\nhint: is a server with a /v1/chat/completions endpoint \
             serving `{}` at {}?",
            args.model, args.endpoint
        )
    })?;

    let mut options = AnnotateOptions::new(stage, args.input.clone(), args.output.clone());
    options.text_field = args.text_field.clone();
    options.id_field = args.id_field.clone();
    options.sample = args.sample.map(|count| Sample {
        count,
        seed: args.seed,
    });
    options.max_removal_ratio = args.max_removal_ratio;
    options.checkpoint_every = usize::try_from(args.checkpoint_every).unwrap_or(usize::MAX);
    options.max_tokens = args.max_tokens;
    for (key, value) in [
        ("model", json!(args.model)),
        ("tokenizer", json!(args.tokenizer.display().to_string())),
        ("prompt_mode", json!(prompt_mode.to_string())),
    ] {
        options.identity.insert(key.to_owned(), value);
    }

    let stats = annotate(&options, &prompts, &prompter, &chat)
        .with_context(|| format!("annotating into {}", args.output.display()))?;
    tracing::info!(
        "{} documents: {} with examples, {} rejected, {} failed; {} examples in {}",
        stats.documents.input,
        stats.documents.with_examples,
        stats.documents.rejected,
        stats.documents.failed,
        stats.examples,
        args.output.join(prox_annotate::EXAMPLES_FILE).display()
    );
    if stats.failed > 0 {
        tracing::warn!(
            "failures: {}",
            args.output.join(prox_annotate::FAILURES_FILE).display()
        );
        return Ok(Completion::SomeDocumentsFailed);
    }
    Ok(Completion::Clean)
}
