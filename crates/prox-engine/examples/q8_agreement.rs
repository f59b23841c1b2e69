//! How often 8-bit weights (Q8_0) change greedy output, on a real model over ProX prompts:
//! SmolLM2-135M-Instruct (the GGUF of `scripts/fetch-smollm2.sh`, dequantized to f32 as the
//! reference), the chunk-stage prompts of `prompts/vectors.jsonl` in the golden fixtures
//! (`../shared/fixtures`, or `$PROX_FIXTURES`)
//! (re-tokenized with SmolLM2's tokenizer), greedy decoding of `--new-tokens` tokens.
//!
//!     cargo run --release -p prox-engine --example q8_agreement -- \
//!         [--gguf PATH] [--prompts N] [--new-tokens N]
//!
//! For Q8_0 through our kernel and through candle's, prints the share of prompts whose
//! generated tokens equal f32's exactly, and the mean length of the common prefix.

#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

use std::path::PathBuf;

use prox_engine::{
    generate, GenerateOptions, GgmlDType, Llama, LoadOptions, Model, Q8Kernel, Request,
};

type AnyResult<T> = Result<T, Box<dyn std::error::Error>>;

fn main() -> AnyResult<()> {
    let mut gguf = PathBuf::from(std::env::var("HOME").unwrap_or_default())
        .join(".cache/prox/smollm2/SmolLM2-135M-Instruct.Q4_1.gguf");
    let mut prompts_wanted = 24usize;
    let mut new_tokens = 32usize;
    let mut args = std::env::args().skip(1);
    while let Some(flag) = args.next() {
        let value = args.next().ok_or(format!("{flag} needs a value"))?;
        match flag.as_str() {
            "--gguf" => gguf = PathBuf::from(value),
            "--prompts" => prompts_wanted = value.parse()?,
            "--new-tokens" => new_tokens = value.parse()?,
            other => return Err(format!("unknown flag {other}").into()),
        }
    }
    let model = Model::load(
        &gguf,
        &LoadOptions {
            dequantize: true,
            ..LoadOptions::default()
        },
    )?;
    let tokenizer = model
        .tokenizer
        .as_ref()
        .ok_or("the GGUF file has no tokenizer")?;

    let vectors = std::fs::read_to_string(prox_test::fixture("prompts/vectors.jsonl"))?;
    let mut prompts: Vec<Vec<u32>> = Vec::new();
    for line in vectors.lines() {
        let row: serde_json::Value = serde_json::from_str(line)?;
        for prompt in row["chunk_prompts"].as_array().into_iter().flatten() {
            let text = prompt.as_str().ok_or("a chunk prompt is not a string")?;
            let ids = tokenizer.encode(text, false)?;
            // Room for the answer within SmolLM2's context.
            if ids.len() + new_tokens <= 2048 && prompts.len() < prompts_wanted {
                prompts.push(ids);
            }
        }
    }
    let tokens: usize = prompts.iter().map(Vec::len).sum();
    println!(
        "# {} ProX chunk prompts ({tokens} tokens, SmolLM2 tokenizer), {new_tokens} greedy tokens each",
        prompts.len()
    );

    let greedy = |llama: &Llama| -> AnyResult<Vec<Vec<u32>>> {
        let requests = Request::batch(&prompts, new_tokens);
        generate(llama, &requests, &GenerateOptions::default())?
            .into_iter()
            .map(|g| Ok(g?.ids))
            .collect()
    };
    let reference = greedy(&model.llama)?;
    for (name, kernel) in [
        ("q8_0 (prox kernel)", Q8Kernel::Engine),
        ("q8_0 (candle kernel)", Q8Kernel::Candle),
    ] {
        let mut quantized = model.llama.clone();
        quantized.quantize_with(GgmlDType::Q8_0, kernel)?;
        let outputs = greedy(&quantized)?;
        let same = outputs
            .iter()
            .zip(&reference)
            .filter(|(a, b)| a == b)
            .count();
        let prefix: usize = outputs
            .iter()
            .zip(&reference)
            .map(|(a, b)| a.iter().zip(b).take_while(|(x, y)| x == y).count())
            .sum();
        println!(
            "{name}: {same}/{} prompts generate exactly f32's tokens ({:.0}%); common prefix {:.1} of {new_tokens} tokens on average",
            prompts.len(),
            100.0 * same as f64 / prompts.len() as f64,
            prefix as f64 / prompts.len() as f64
        );
    }
    Ok(())
}
