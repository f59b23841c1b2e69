//! `prox prompts`: write the prompts the refining models see, as text and token ids, one JSON
//! line per input document.

use std::path::{Path, PathBuf};

use anyhow::{bail, Context};
use clap::builder::{PossibleValuesParser, TypedValueParser as _};
use prox_io::{string_field, Failure, JsonlWriter, Record};
use prox_program::Stages;
use prox_prompt::{ChatTemplate, PromptBudget, PromptMode, Prompter};
use prox_tokenizer::Tokenizer;
use serde_json::{Map, Value};

use crate::commands::Completion;

#[derive(Debug, clap::Args)]
#[command(after_help = PROMPTS_AFTER_HELP)]
pub struct PromptsArgs {
    /// The refiner's tokenizer: a model folder (its tokenizer.json, else its tokenizer.model),
    /// or a tokenizer.json or tokenizer.model file.
    #[arg(long)]
    pub tokenizer: PathBuf,

    /// A JSON-lines file (.jsonl, .jsonl.gz, .jsonl.zst) or a Parquet file of documents
    /// (objects with a `text` field, and an optional `id`).
    #[arg(long)]
    pub input: PathBuf,

    /// Where to write one JSON line per document. Lines that fail go to
    /// `<name>.failures.jsonl` beside it.
    #[arg(long)]
    pub output: PathBuf,

    /// Which stage's prompts to write: `doc` (`doc_prompt_ids`), `chunk` (`chunks`,
    /// `chunk_prompts`, `chunk_prompt_ids`) or `both`.
    #[arg(long, default_value = "both", value_parser = PossibleValuesParser::new(["doc", "chunk", "both"])
        .try_map(|name| match name.as_str() {
            "both" => Ok(Stages::BOTH),
            name => name.parse().map(Stages::only),
        }))]
    pub stage: Stages,

    /// `faithful` reproduces the reference's prompts exactly, quirks included; `robust`
    /// keeps `<s>` and `</s>` in documents as text and shortens long documents so that
    /// document-stage prompts always end with ` [/INST]`.
    #[arg(long, value_enum, default_value_t = ModeArg::Faithful)]
    pub mode: ModeArg,

    /// The chat template: `llama2` (built in; the reference's), `tokenizer` (the
    /// `chat_template` of the tokenizer_config.json beside the tokenizer), or a file holding
    /// a Jinja chat template.
    #[arg(long, default_value = "llama2")]
    pub chat_template: String,

    /// Most tokens of numbered lines in one chunk, each line counted with a BOS.
    #[arg(long, default_value_t = PromptBudget::default().chunk_tokens)]
    pub chunk_tokens: usize,

    /// Most token ids of a document-stage prompt.
    #[arg(long, default_value_t = PromptBudget::default().doc_tokens)]
    pub doc_tokens: usize,

    /// The field holding the document text.
    #[arg(long, default_value = "text")]
    pub text_field: String,
}

const PROMPTS_AFTER_HELP: &str = "\
Each output line has the fields of the golden prompt vectors: `chunks` (line-numbered chunk
strings), `chunk_prompts` (rendered chat prompts), `chunk_prompt_ids` (the ids the engine sees,
starting with two BOS in faithful mode) and `doc_prompt_ids` (the document-stage ids), only
those of the chosen stages, and the input's `id` when it has one.

A line that is not a JSON object, or has no string `text`, is reported with its file and line,
written to the failures file and skipped; the output is written under a temporary name and
renamed when complete. Exit status: 0 when every line was written, 1 when some failed, 2 on an
error that stopped the run.";

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum ModeArg {
    Faithful,
    Robust,
}

impl From<ModeArg> for PromptMode {
    fn from(mode: ModeArg) -> Self {
        match mode {
            ModeArg::Faithful => PromptMode::Faithful,
            ModeArg::Robust => PromptMode::Robust,
        }
    }
}

pub fn run(args: &PromptsArgs) -> anyhow::Result<Completion> {
    let tokenizer = Tokenizer::from_path(&args.tokenizer)
        .with_context(|| format!("cannot load the tokenizer {}", args.tokenizer.display()))?;
    if let Err(reason) = tokenizer.fast_path() {
        tracing::warn!(
            "{}: not a SentencePiece-style BPE tokenizer ({reason}); encoding with the tokenizers crate",
            args.tokenizer.display()
        );
    }
    let template = chat_template(&args.chat_template, &tokenizer)?;
    let prompter = Prompter::new(&tokenizer)
        .with_template(template)
        .with_mode(args.mode.into())
        .with_budget(PromptBudget {
            chunk_tokens: args.chunk_tokens,
            doc_tokens: args.doc_tokens,
        });

    let reader = prox_io::open_records(&args.input)
        .with_context(|| format!("cannot read {}", args.input.display()))?;
    let mut writer = JsonlWriter::create(&args.output)
        .with_context(|| format!("cannot write {}", args.output.display()))?;
    let failures_path = prox_io::beside(&args.output, "failures.jsonl");
    let mut failures = JsonlWriter::create(&failures_path)?;
    for item in reader {
        let failure = match item {
            Ok(Ok(record)) => match prompts_of(&record, &prompter, args) {
                Ok(out) => {
                    writer.write(&out)?;
                    continue;
                }
                Err(reason) => Failure::of_record(&record.location, reason),
            },
            Ok(Err(bad_record)) => Failure::from(&bad_record),
            Err(read_error) => Failure::of_file(&read_error),
        };
        tracing::warn!(
            "{}:{}: {}",
            failure.file,
            failure.line.unwrap_or(0),
            failure.error
        );
        failures.write(&failure)?;
    }
    let written = writer.finish()?;
    let failed = failures.finish()?;
    tracing::info!(
        "wrote the prompts of {written} documents to {}; {failed} input lines failed",
        args.output.display()
    );
    if failed > 0 {
        tracing::warn!("failures: {}", failures_path.display());
        return Ok(Completion::SomeDocumentsFailed);
    }
    Ok(Completion::Clean)
}

/// `llama2`, `tokenizer`, or a template file.
fn chat_template(choice: &str, tokenizer: &Tokenizer) -> anyhow::Result<ChatTemplate> {
    match choice {
        "llama2" => Ok(ChatTemplate::Llama2),
        "tokenizer" => {
            let Some(source) = tokenizer.config().chat_template.clone() else {
                bail!(
                    "no chat_template in a tokenizer_config.json beside {}\n\
                     hint: pass `--chat-template llama2` or a template file",
                    tokenizer.source().display()
                );
            };
            ChatTemplate::jinja(source).context("the tokenizer's chat template")
        }
        path => {
            let path = Path::new(path);
            let source = std::fs::read_to_string(path)
                .with_context(|| format!("cannot read the chat template {}", path.display()))?;
            ChatTemplate::jinja(source)
                .with_context(|| format!("the chat template {}", path.display()))
        }
    }
}

/// The output line of one document, or why there is none.
fn prompts_of(
    record: &Record,
    prompter: &Prompter<'_>,
    args: &PromptsArgs,
) -> Result<Map<String, Value>, String> {
    let text = string_field(&record.fields, &args.text_field).map_err(|e| e.to_string())?;
    let mut out = Map::new();
    if let Some(id) = record.fields.get("id") {
        out.insert("id".into(), id.clone());
    }
    if args.stage.chunk {
        let chunks = prompter.chunk_prompts(text).map_err(|e| e.to_string())?;
        let (mut texts, mut prompts, mut ids) = (Vec::new(), Vec::new(), Vec::new());
        for chunk in chunks {
            texts.push(Value::from(chunk.chunk.text));
            prompts.push(Value::from(chunk.prompt));
            ids.push(Value::from(chunk.ids));
        }
        out.insert("chunks".into(), Value::from(texts));
        out.insert("chunk_prompts".into(), Value::from(prompts));
        out.insert("chunk_prompt_ids".into(), Value::from(ids));
    }
    if args.stage.doc {
        let ids = prompter.doc_prompt_ids(text).map_err(|e| e.to_string())?;
        out.insert("doc_prompt_ids".into(), Value::from(ids));
    }
    Ok(out)
}
