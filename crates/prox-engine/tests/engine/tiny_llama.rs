//! The engine against the PyTorch float32 reference on the tiny ProX-shaped Llama
//! (`fixtures/tiny-llama/golden.json`): last-position logits within 1e-3, greedy tokens
//! equal up to the first step whose margin is below 1e-3, and batching that changes nothing.

use prox_engine::{
    generate, FinishReason, GenerateOptions, LoadOptions, LogitsAt, Model, Request, RequestError,
};
use prox_test::json::u32s;
use serde_json::Value;

use crate::common::{
    f32s, generate_ok, golden_cases, last_logits, max_abs_diff, tiny_llama, GoldenCase,
};

const LOGIT_TOLERANCE: f32 = 1e-3;
const NEW_TOKENS: usize = 24;

fn cases() -> Vec<GoldenCase> {
    golden_cases("tiny-llama/golden.json")
}

/// The reference's last-position logits of a case: the five largest (ids, values) and the
/// sum of all.
fn reference_last_logits(case: &GoldenCase) -> (Vec<u32>, Vec<f32>, f32) {
    (
        u32s(&case.raw["last_logits_top5_ids"]),
        f32s(&case.raw["last_logits_top5"]),
        case.raw["last_logits_sum"].as_f64().unwrap() as f32,
    )
}

/// Greedy ids must equal the reference's up to the first step whose reference margin is
/// below `tolerance` (there a rounding difference may pick the other token). Returns the
/// number of steps compared.
fn assert_greedy_matches(
    case: usize,
    got: &[u32],
    expected: &[u32],
    margins: &[f32],
    tolerance: f32,
) -> usize {
    let decisive = margins
        .iter()
        .position(|&m| m < tolerance)
        .unwrap_or(margins.len());
    let n = decisive.min(expected.len());
    assert!(
        got.len() >= n,
        "case {case}: only {} tokens, expected at least {n}",
        got.len()
    );
    assert_eq!(
        &got[..n],
        &expected[..n],
        "case {case}: greedy tokens differ before step {n}"
    );
    n
}

#[test]
fn last_position_logits_match_the_reference() {
    let model = tiny_llama();
    let mut mismatches = Vec::new();
    for (i, case) in cases().iter().enumerate() {
        let row = last_logits(&model.llama, &case.prompt_ids);
        let (top5_ids, top5_logits, logit_sum) = reference_last_logits(case);
        for (id, expected) in top5_ids.iter().zip(&top5_logits) {
            let got = row[*id as usize];
            if (got - expected).abs() > LOGIT_TOLERANCE {
                mismatches.push(format!(
                    "case {i}: logit[{id}] = {got}, expected {expected}"
                ));
            }
        }
        let mut order: Vec<usize> = (0..row.len()).collect();
        order.sort_by(|&a, &b| row[b].total_cmp(&row[a]));
        let top5: Vec<u32> = order[..5].iter().map(|&i| i as u32).collect();
        if top5 != top5_ids {
            mismatches.push(format!("case {i}: top-5 {top5:?}, expected {top5_ids:?}"));
        }
        // 32000 logits each within float rounding: the sum is held to a looser bound.
        let sum: f32 = row.iter().sum();
        if (sum - logit_sum).abs() > 1e-2 {
            mismatches.push(format!("case {i}: logit sum {sum}, expected {logit_sum}"));
        }
    }
    assert!(mismatches.is_empty(), "{}", mismatches.join("\n"));
}

#[test]
fn the_differentiable_path_gives_the_same_logits() {
    let model = tiny_llama();
    let case = &cases()[1];
    let all = model
        .llama
        .forward_uncached(&[&case.prompt_ids], &LogitsAt::All)
        .unwrap();
    assert_eq!(all.dims(), &[case.prompt_ids.len(), 32000]);
    let last = all
        .get(case.prompt_ids.len() - 1)
        .unwrap()
        .to_vec1::<f32>()
        .unwrap();
    let (top5_ids, top5_logits, _) = reference_last_logits(case);
    for (id, expected) in top5_ids.iter().zip(&top5_logits) {
        assert!((last[*id as usize] - expected).abs() < LOGIT_TOLERANCE);
    }
}

fn requests(cases: &[GoldenCase], max_new_tokens: usize) -> Vec<Request> {
    Request::batch(cases.iter().map(|c| &c.prompt_ids), max_new_tokens)
}

#[test]
fn greedy_tokens_match_the_reference_one_prompt_at_a_time() {
    let model = tiny_llama();
    for (i, case) in cases().iter().enumerate() {
        let out = generate_ok(
            &model.llama,
            &requests(std::slice::from_ref(case), NEW_TOKENS),
            &GenerateOptions::default(),
        );
        assert_greedy_matches(i, &out[0].ids, &case.greedy, &case.margins, LOGIT_TOLERANCE);
        for (step, (got, expected)) in out[0].margins.iter().zip(&case.margins).enumerate() {
            if step < case.greedy.len() && out[0].ids.get(..=step) == case.greedy.get(..=step) {
                assert!(
                    (got - expected).abs() < 2.0 * LOGIT_TOLERANCE,
                    "case {i} step {step}"
                );
            }
        }
    }
}

#[test]
fn a_batch_of_different_lengths_equals_each_prompt_alone() {
    let model = tiny_llama();
    let cases = cases();
    let options = GenerateOptions::default();
    let batched = generate_ok(&model.llama, &requests(&cases, NEW_TOKENS), &options);
    for (i, case) in cases.iter().enumerate() {
        let alone = generate_ok(
            &model.llama,
            &requests(std::slice::from_ref(case), NEW_TOKENS),
            &options,
        );
        assert_eq!(batched[i].ids, alone[0].ids, "case {i}");
        assert_eq!(batched[i].finish_reason, alone[0].finish_reason, "case {i}");
        for (a, b) in batched[i].margins.iter().zip(&alone[0].margins) {
            assert!((a - b).abs() < 1e-4, "case {i}: margins {a} vs {b}");
        }
        assert_greedy_matches(
            i,
            &batched[i].ids,
            &case.greedy,
            &case.margins,
            LOGIT_TOLERANCE,
        );
    }
    // A small prefill budget splits the prompts over several prefill calls: same result.
    let split = generate_ok(
        &model.llama,
        &requests(&cases, NEW_TOKENS),
        &GenerateOptions {
            prefill_tokens: 64,
            ..GenerateOptions::default()
        },
    );
    for (a, b) in split.iter().zip(&batched) {
        assert_eq!(a.ids, b.ids);
    }
}

#[test]
fn the_token_limit_ends_with_length_and_eos_ends_with_stop() {
    let model = tiny_llama();
    let cases = cases();
    let case = &cases[0];
    let out = generate_ok(
        &model.llama,
        &requests(std::slice::from_ref(case), 5),
        &GenerateOptions::default(),
    );
    assert_eq!(out[0].finish_reason, FinishReason::Length);
    assert_eq!(out[0].ids, case.greedy[..5]);

    // Pretend the fourth greedy token ends the sequence: it is the last output token.
    let stop = GenerateOptions {
        eos_token_ids: Some(vec![case.greedy[3]]),
        ..GenerateOptions::default()
    };
    let out = generate_ok(
        &model.llama,
        &requests(std::slice::from_ref(case), NEW_TOKENS),
        &stop,
    );
    assert_eq!(out[0].finish_reason, FinishReason::Stop);
    assert_eq!(out[0].ids, case.greedy[..4]);
    assert_eq!(out[0].margins.len(), 4);

    let zero = generate_ok(
        &model.llama,
        &requests(std::slice::from_ref(case), 0),
        &GenerateOptions::default(),
    );
    assert_eq!(zero[0].ids, Vec::<u32>::new());
    assert_eq!(zero[0].finish_reason, FinishReason::Length);
}

/// The fixture model with a shorter context, in a temporary folder.
fn model_with_context(context: usize) -> (tempfile::TempDir, Model) {
    let dir = tempfile::tempdir().unwrap();
    let source = prox_test::fixture("tiny-llama");
    let config = std::fs::read_to_string(source.join("config.json")).unwrap();
    let mut config: Value = serde_json::from_str(&config).unwrap();
    config["max_position_embeddings"] = Value::from(context);
    std::fs::write(dir.path().join("config.json"), config.to_string()).unwrap();
    std::fs::copy(
        source.join("model.safetensors"),
        dir.path().join("model.safetensors"),
    )
    .unwrap();
    let model = Model::load(dir.path(), &LoadOptions::default()).unwrap();
    (dir, model)
}

#[test]
fn the_context_limit_gives_length_or_a_per_request_error() {
    let cases = cases();
    // Prompts of 34 and 59 tokens; a context of 40.
    let (_dir, model) = model_with_context(40);
    let mut reqs = requests(&cases[..2], NEW_TOKENS);
    let exact: Vec<u32> = cases[1].prompt_ids[..40].to_vec();
    reqs.push(Request {
        prompt_ids: exact,
        max_new_tokens: NEW_TOKENS,
    });
    reqs.push(Request {
        prompt_ids: Vec::new(),
        max_new_tokens: NEW_TOKENS,
    });
    let out = generate(&model.llama, &reqs, &GenerateOptions::default()).unwrap();
    let first = out[0].as_ref().unwrap();
    assert_eq!(first.finish_reason, FinishReason::Length);
    assert_eq!(first.ids, cases[0].greedy[..6], "34 prompt + 6 new = 40");
    assert_eq!(
        out[1],
        Err(RequestError::PromptTooLong {
            prompt_tokens: 59,
            context: 40
        })
    );
    let full = out[2].as_ref().unwrap();
    assert_eq!(
        (full.ids.len(), full.finish_reason),
        (0, FinishReason::Length)
    );
    assert_eq!(out[3], Err(RequestError::EmptyPrompt));
}

#[test]
fn the_folder_tokenizer_reproduces_the_prompt_ids() {
    let model = tiny_llama();
    let tokenizer = model
        .tokenizer
        .as_ref()
        .expect("the fixture has a tokenizer");
    for case in cases() {
        // What engines do with a prompt string: special tokens parsed, BOS added.
        let ids = tokenizer.encode(&case.prompt, true).unwrap();
        assert_eq!(
            &ids[1..],
            &case.prompt_ids[..],
            "the rendered prompt starts with <s>"
        );
    }
}

#[test]
fn q8_0_weights_stay_close_to_f32_and_generate() {
    let f32_model = tiny_llama();
    let options = LoadOptions {
        quantize: Some(prox_engine::GgmlDType::Q8_0),
        ..LoadOptions::default()
    };
    let q8 = Model::load(&prox_test::fixture("tiny-llama"), &options).unwrap();
    let cases = cases();
    // Q8_0 rounds weights and activations to 8 bits per 32-value block. On this random
    // model, whose top logits are about 5, the logits move by up to 0.19 (measured over the
    // five prompts: 0.14 to 0.19); the bound leaves a little room above that.
    const Q8_TOLERANCE: f32 = 0.25;
    for (i, case) in cases.iter().enumerate() {
        let diff = max_abs_diff(
            &last_logits(&f32_model.llama, &case.prompt_ids),
            &last_logits(&q8.llama, &case.prompt_ids),
        );
        assert!(
            diff < Q8_TOLERANCE,
            "case {i}: max |q8_0 - f32| logit {diff}"
        );
    }
    // Greedy decoding runs, and follows f32 while f32's margins are above the tolerance.
    let q8_out = generate_ok(&q8.llama, &requests(&cases, 8), &GenerateOptions::default());
    for (i, (out, case)) in q8_out.iter().zip(&cases).enumerate() {
        assert_eq!(out.ids.len(), 8);
        assert_greedy_matches(i, &out.ids, &case.greedy, &case.margins, 2.0 * Q8_TOLERANCE);
    }
}
