//! `prox validate`: a refiner measured on held-out annotated examples (`prox-refine`'s
//! `validate` module holds the row format and the measures).

use std::io::Write;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{bail, Context};
use prox_io::AtomicFile;
use prox_program::Stage;
use prox_refine::validate::{validate, Example, ValidateOptions};
use prox_refine::{Backend, EmbeddedBackend, OpenAiBackend};

use crate::commands::apply::stage_parser;
use crate::commands::Completion;
use crate::engine_args::EngineArgs;

#[derive(Debug, clap::Args)]
#[command(after_help = VALIDATE_AFTER_HELP)]
pub struct ValidateArgs {
    /// The stage the refiner serves: `doc` (keep/drop F1) or `chunk` (line-wise F1).
    #[arg(long, value_parser = stage_parser())]
    pub stage: Stage,

    /// The refiner: a model folder, a `.gguf` file or a hub id (run here), or with
    /// --endpoint the model name the server serves.
    #[arg(long)]
    pub model: Option<String>,

    /// An OpenAI-compatible server (`http://HOST:PORT`) that serves the refiner.
    #[arg(long)]
    pub endpoint: Option<String>,

    /// With --endpoint: the tokenizer of the prompts (a folder or tokenizer file); default:
    /// the --model folder or hub-cache entry.
    #[arg(long)]
    pub tokenizer: Option<PathBuf>,

    /// Held-out examples: JSON lines (or Parquet) in the SFT format `prox annotate` writes.
    #[arg(long)]
    pub data: PathBuf,

    /// Where to write the measures as JSON.
    #[arg(long, default_value = "validation.json")]
    pub output: PathBuf,

    /// The most tokens of a predicted program (default: 2000 at the document stage, as
    /// `prox refine`; 256 at the chunk stage).
    #[arg(long)]
    pub max_new_tokens: Option<usize>,

    /// Examples sent to the model at a time.
    #[arg(long, default_value_t = 16, value_parser = clap::value_parser!(u64).range(1..))]
    pub batch_size: u64,

    #[command(flatten)]
    pub engine: EngineArgs,
}

const VALIDATE_AFTER_HELP: &str = "\
Each row of --data is one example: `id`, `stage`, `prompt` (the refiner's prompt),
`target` (the program it should write), optionally `prompt_ids` (used as they are) and
`text` (for the kept-token ratio), and at the chunk stage `lines` (the chunk's line count)
and `first_line` (its first line's number, default 0): `prox annotate`'s sft.jsonl. Rows of
the other stage are skipped; a row that is not an example stops the run, naming its file,
line and id.

Document stage: drop is the positive class. Chunk stage: every line of every chunk is one
decision, removed (by a remove_lines range, or remove_lines(all=True)) or not; normalize()
removes nothing; the counts are summed over chunks before precision, recall and F1
(micro-average). A prediction the strict parser rejects is counted as invalid and scored as
no drop, no removal. A measure with a zero denominator is `null` (n/a).

The table goes to stdout, the JSON to --output. Exit status: 0 when every example was
answered, 1 when the model could not answer some (they are listed in the JSON, not scored),
2 on an error that stopped the run.";

pub fn run(args: &ValidateArgs) -> anyhow::Result<Completion> {
    let stage = args.stage;
    let examples = read_examples(args, stage)?;
    if examples.is_empty() {
        bail!(
            "{} holds no example of the {} stage",
            args.data.display(),
            stage.as_str()
        );
    }
    let backend = backend(args)?;
    let options = ValidateOptions {
        max_new_tokens: args.max_new_tokens.unwrap_or(match stage {
            Stage::Doc => 2000,
            Stage::Chunk => 256,
        }),
        batch_size: usize::try_from(args.batch_size).unwrap_or(usize::MAX),
    };
    let total = examples.len();
    let validation = validate(backend.as_ref(), &examples, &options, &mut |done| {
        tracing::info!(done, total, "examples validated");
    })?;

    let mut json = serde_json::to_string_pretty(&validation)?;
    json.push('\n');
    let mut file = AtomicFile::create(&args.output)?;
    file.write_all(json.as_bytes())
        .with_context(|| format!("cannot write {}", args.output.display()))?;
    file.commit()?;
    print!("{}", validation.table());
    for unanswered in &validation.unanswered {
        tracing::warn!(id = %unanswered.id, reason = %unanswered.reason, "not answered");
    }
    Ok(if validation.unanswered.is_empty() {
        Completion::Clean
    } else {
        Completion::SomeDocumentsFailed
    })
}

/// The examples of the stage, in file order.
fn read_examples(args: &ValidateArgs, stage: Stage) -> anyhow::Result<Vec<Example>> {
    let mut examples = Vec::new();
    for item in prox_io::open_records(&args.data)? {
        let record = match item? {
            Ok(record) => record,
            Err(bad) => bail!("{}: {}", bad.location, bad.reason),
        };
        if record.fields.get("stage").and_then(|s| s.as_str()) != Some(stage.as_str())
            && record.fields.get("stage").is_some_and(|s| s.is_string())
        {
            continue;
        }
        examples.push(Example::from_row(
            &record.fields,
            &record.location.to_string(),
        )?);
    }
    Ok(examples)
}

fn backend(args: &ValidateArgs) -> anyhow::Result<Arc<dyn Backend>> {
    match (&args.model, &args.endpoint) {
        (Some(model), None) => {
            let loaded = args.engine.load(model, None)?;
            let batch = usize::try_from(args.batch_size).unwrap_or(usize::MAX);
            // The document stage scores drop_doc()/keep_doc() after one prefill: the same
            // answers as free decoding, as `prox refine` does.
            Ok(Arc::new(EmbeddedBackend::new(loaded, batch, true)?))
        }
        (model, Some(endpoint)) => {
            let tokenizer_path = match (&args.tokenizer, model) {
                (Some(path), _) => path.clone(),
                (None, Some(model)) => {
                    prox_engine::resolve_model(model, None).with_context(|| {
                        format!("the prompts for {model} need its tokenizer: give --tokenizer")
                    })?
                }
                (None, None) => {
                    bail!("--endpoint needs --tokenizer (or --model naming a local model)")
                }
            };
            let tokenizer =
                prox_tokenizer::Tokenizer::from_path(&tokenizer_path).with_context(|| {
                    format!("cannot load the tokenizer {}", tokenizer_path.display())
                })?;
            let client = prox_client::Client::connect(prox_client::ClientOptions {
                endpoint: endpoint.clone(),
                model: model.clone(),
                request_timeout: Duration::from_secs(600),
                ..prox_client::ClientOptions::default()
            })
            .with_context(|| format!("cannot use the server at {endpoint}"))?;
            Ok(Arc::new(OpenAiBackend::new(Arc::new(client), tokenizer)))
        }
        (None, None) => bail!("give --model (run here) or --endpoint (a server)"),
    }
}
