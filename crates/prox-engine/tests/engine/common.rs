//! What the modules share: the tiny fixture model and golden values out of the fixtures, greedy decoding with every
//! request's result unwrapped, and last-position logits.

use prox_engine::{
    generate, GenerateOptions, Generation, KvCache, Llama, LoadOptions, LogitsAt, Model, Request,
};
use serde_json::Value;

/// The tiny fixture Llama (`fixtures/tiny-llama`) as loading gives it by default.
pub fn tiny_llama() -> Model {
    Model::load(&prox_test::fixture("tiny-llama"), &LoadOptions::default()).unwrap()
}

/// An array of floats (logits, margins) of a golden file.
pub fn f32s(value: &Value) -> Vec<f32> {
    value
        .as_array()
        .unwrap()
        .iter()
        .map(|x| x.as_f64().unwrap() as f32)
        .collect()
}

/// A case of a model's golden file (`tiny-llama/golden.json`, `smollm2/golden.json`): the
/// prompt, its ids, the reference's greedy new ids and the top-1/top-2 logit margin at each
/// of their steps; `raw` is the whole case, for the fields one file has.
pub struct GoldenCase {
    pub prompt: String,
    pub prompt_ids: Vec<u32>,
    pub greedy: Vec<u32>,
    pub margins: Vec<f32>,
    pub raw: Value,
}

/// The cases of a golden file, `relative` to the fixtures folder.
pub fn golden_cases(relative: &str) -> Vec<GoldenCase> {
    let golden = prox_test::json::read(prox_test::fixture(relative));
    golden["cases"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| GoldenCase {
            prompt: c["prompt"].as_str().unwrap().to_owned(),
            prompt_ids: prox_test::json::u32s(&c["prompt_ids"]),
            greedy: prox_test::json::u32s(&c["greedy_new_ids"]),
            margins: f32s(&c["greedy_step_margins"]),
            raw: c.clone(),
        })
        .collect()
}

/// The prompt ids of the tiny model's golden cases.
pub fn tiny_llama_prompts() -> Vec<Vec<u32>> {
    golden_cases("tiny-llama/golden.json")
        .into_iter()
        .map(|c| c.prompt_ids)
        .collect()
}

/// [`generate`], every request's result unwrapped.
pub fn generate_ok(
    llama: &Llama,
    requests: &[Request],
    options: &GenerateOptions,
) -> Vec<Generation> {
    generate(llama, requests, options)
        .unwrap()
        .into_iter()
        .map(|g| g.unwrap())
        .collect()
}

/// Greedy decoding of exactly `new_tokens` tokens per prompt: no end-of-sequence token.
pub fn greedy_no_eos(llama: &Llama, prompts: &[Vec<u32>], new_tokens: usize) -> Vec<Generation> {
    let options = GenerateOptions {
        eos_token_ids: Some(Vec::new()),
        ..GenerateOptions::default()
    };
    generate_ok(llama, &Request::batch(prompts, new_tokens), &options)
}

/// The logits of the position after `prompt_ids`, from one cached forward pass.
pub fn last_logits(llama: &Llama, prompt_ids: &[u32]) -> Vec<f32> {
    let mut cache = KvCache::new(llama, prompt_ids.len()).unwrap();
    llama
        .forward(&[prompt_ids], &mut [&mut cache], &LogitsAt::Last)
        .unwrap()
        .squeeze(0)
        .unwrap()
        .to_vec1::<f32>()
        .unwrap()
}

/// The largest |a - b| over two equally long rows.
pub fn max_abs_diff(a: &[f32], b: &[f32]) -> f32 {
    assert_eq!(a.len(), b.len());
    a.iter()
        .zip(b)
        .map(|(x, y)| (x - y).abs())
        .fold(0.0, f32::max)
}
