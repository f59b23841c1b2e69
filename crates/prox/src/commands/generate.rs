//! `prox generate`: greedy continuations of prompts with the embedded engine.

use std::path::PathBuf;

use anyhow::Context;
use prox_engine::{GenerateOptions, Model, Request};
use prox_io::{Failure, JsonlWriter, Record};
use serde_json::{json, Value};

use crate::commands::Completion;
use crate::engine_args::ModelArgs;

#[derive(Debug, clap::Args)]
#[command(after_help = GENERATE_AFTER_HELP)]
pub struct GenerateArgs {
    #[command(flatten)]
    pub model: ModelArgs,

    /// A JSON-lines file (.jsonl, .jsonl.gz, .jsonl.zst) or a Parquet file; each record has
    /// `prompt` (text) or `prompt_ids` (token ids).
    #[arg(long)]
    pub input: PathBuf,

    /// Where to write the records with their generations (JSON lines). Records that could
    /// not be served go to `<name>.failures.jsonl` beside it.
    #[arg(long)]
    pub output: PathBuf,

    /// The most tokens to generate per prompt (the model's context may allow fewer).
    #[arg(long, default_value_t = 256)]
    pub max_new_tokens: usize,

    /// Prompts decoded together.
    #[arg(long, default_value_t = 8, value_parser = clap::value_parser!(u64).range(1..))]
    pub batch_size: u64,
}

const GENERATE_AFTER_HELP: &str = "\
A `prompt` is tokenized as inference engines do: special tokens written in the text (`<s>`,
`<|im_start|>`) are recognised, and the tokenizer's BOS is added if it adds one. Each output
record is the input record with `generated_ids`, `generated_text` (special tokens skipped),
`finish_reason` (`stop` or `length`), `prompt_tokens` and `generated_tokens` added.
Decoding is greedy and does not depend on --batch-size.

--model resolves like the Hugging Face tools: an existing local path, else a hub id looked up
in $HF_HUB_CACHE, else $HF_HOME/hub, else ~/.cache/huggingface/hub (models--org--name/, at
refs/<revision> or snapshots/<revision>); a hub id not in the cache is downloaded into it
(config, tokenizer and safetensors files, or the repository's one .gguf file) unless
HF_HUB_OFFLINE=1.

--quantize q8_0 or q4_k computes the projections with 8-bit (or 4-bit k-quant) weights and
8-bit activations; the rows of every weight must be a multiple of 32 (q8_0) or 256 (q4_k)
values. With q8_0 (and Q8_0 .gguf files), a prompt of 128 tokens or more is prefilled with
the weights dequantized to f32, which is faster where the CPU lacks 8-bit dot products (VNNI);
decoding always uses the 8-bit kernel. On a .gguf file it requantizes the dequantized weights.
Without --quantize, a .gguf file on the CPU keeps its Q8_0 and float weights and requantizes
the others (Q4_0, Q4_1, Q5_*, K-quants) to q8_0, whose kernel is several times faster than
candle's kernels for them; --quantize keep computes with the file's own blocks (less memory).

Exit status: 0 when every record was served, 1 when some went to the failures file, 2 on an
error that stopped the run.";

/// A record waiting for its batch.
struct Pending {
    record: Record,
    prompt_ids: Vec<u32>,
}

pub fn run(args: &GenerateArgs) -> anyhow::Result<Completion> {
    let model = args.model.load()?;

    let mut output = JsonlWriter::create(&args.output)?;
    let mut failures = JsonlWriter::create(&prox_io::beside(&args.output, "failures.jsonl"))?;
    let reader = prox_io::open_records(&args.input)?;
    let batch_size = usize::try_from(args.batch_size).unwrap_or(usize::MAX);
    let mut batch: Vec<Pending> = Vec::with_capacity(batch_size);
    let mut failed = 0u64;

    for item in reader {
        match item? {
            Err(bad) => {
                failed += 1;
                failures.write(&Failure::from(&bad))?;
            }
            Ok(record) => match prompt_ids(&model, &record) {
                Ok(prompt_ids) => {
                    batch.push(Pending { record, prompt_ids });
                    if batch.len() >= batch_size {
                        failed += serve(&model, args, &mut batch, &mut output, &mut failures)?;
                    }
                }
                Err(reason) => {
                    failed += 1;
                    failures.write(&Failure::of_record(&record.location, reason))?;
                }
            },
        }
    }
    failed += serve(&model, args, &mut batch, &mut output, &mut failures)?;
    let written = output.finish()?;
    failures.finish()?;
    tracing::info!(written, failed, "generation done");
    Ok(if failed == 0 {
        Completion::Clean
    } else {
        Completion::SomeDocumentsFailed
    })
}

/// The record's prompt as token ids, or why it has none.
fn prompt_ids(model: &Model, record: &Record) -> Result<Vec<u32>, String> {
    match (record.fields.get("prompt_ids"), record.fields.get("prompt")) {
        (Some(ids), _) => {
            let ids = ids.as_array().ok_or("`prompt_ids` is not an array")?;
            ids.iter()
                .map(|v| {
                    v.as_u64()
                        .and_then(|n| u32::try_from(n).ok())
                        .ok_or_else(|| format!("`prompt_ids` holds {v}, not a token id"))
                })
                .collect()
        }
        (None, Some(Value::String(text))) => {
            let tokenizer = model
                .tokenizer
                .as_ref()
                .ok_or("the model has no tokenizer: give `prompt_ids` instead of `prompt`")?;
            tokenizer
                .encode(text, true)
                .map_err(|e| format!("cannot tokenize `prompt`: {e}"))
        }
        (None, Some(_)) => Err("`prompt` is not a string".to_owned()),
        (None, None) => Err("the record has neither `prompt` nor `prompt_ids`".to_owned()),
    }
}

/// Generates for every pending record, writes the results, empties the batch, and returns
/// the number of records that failed.
fn serve(
    model: &Model,
    args: &GenerateArgs,
    batch: &mut Vec<Pending>,
    output: &mut JsonlWriter,
    failures: &mut JsonlWriter,
) -> anyhow::Result<u64> {
    if batch.is_empty() {
        return Ok(0);
    }
    let requests: Vec<Request> = batch
        .iter()
        .map(|p| Request {
            prompt_ids: p.prompt_ids.clone(),
            max_new_tokens: args.max_new_tokens,
        })
        .collect();
    let results = prox_engine::generate(&model.llama, &requests, &GenerateOptions::default())
        .context("generation failed")?;
    let mut failed = 0;
    for (pending, result) in batch.drain(..).zip(results) {
        match result {
            Ok(generation) => {
                let text = match &model.tokenizer {
                    Some(tokenizer) => Value::String(
                        tokenizer
                            .decode(&generation.ids, true)
                            .context("cannot decode the generated ids")?,
                    ),
                    None => Value::Null,
                };
                let mut fields = pending.record.fields;
                fields.insert("generated_ids".into(), json!(generation.ids));
                fields.insert("generated_text".into(), text);
                fields.insert(
                    "finish_reason".into(),
                    json!(generation.finish_reason.as_str()),
                );
                fields.insert("prompt_tokens".into(), json!(pending.prompt_ids.len()));
                fields.insert("generated_tokens".into(), json!(generation.ids.len()));
                output.write(&fields)?;
            }
            Err(error) => {
                failed += 1;
                failures.write(&Failure::of_record(
                    &pending.record.location,
                    error.to_string(),
                ))?;
            }
        }
    }
    Ok(failed)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_zero_batch_size_is_refused() {
        use clap::Parser;
        #[derive(Parser)]
        struct Cli {
            #[command(flatten)]
            args: GenerateArgs,
        }
        let parse = |size: &str| {
            Cli::try_parse_from([
                "x",
                "--model",
                "m",
                "--input",
                "i",
                "--output",
                "o",
                "--batch-size",
                size,
            ])
        };
        assert!(parse("0").is_err());
        assert!(parse("2").is_ok());
    }
}
