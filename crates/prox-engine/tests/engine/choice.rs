//! Constrained choice between fixed continuations (the document stage's `drop_doc()` /
//! `keep_doc()`): it must agree with free greedy decoding whenever that decoding produces
//! one of the candidates, and its log-probabilities must be those of a plain forward pass.

use prox_engine::{choose, ChooseOptions, Config, DType, Device, Llama, LogitsAt, RequestError};

use crate::common::{greedy_no_eos, tiny_llama, tiny_llama_prompts};

/// Free greedy decoding of `n` tokens, no stop token.
fn free_greedy(model: &Llama, prompts: &[Vec<u32>], n: usize) -> Vec<Vec<u32>> {
    greedy_no_eos(model, prompts, n)
        .into_iter()
        .map(|g| g.ids)
        .collect()
}

/// log P(candidate | prompt) from the differentiable path, one sequence at a time.
fn reference_logprob(model: &Llama, prompt: &[u32], candidate: &[u32]) -> f32 {
    let seq = [prompt, candidate].concat();
    let logits = model.forward_uncached(&[&seq], &LogitsAt::All).unwrap();
    let logp = candle_nn::ops::log_softmax(&logits, 1)
        .unwrap()
        .to_vec2::<f32>()
        .unwrap();
    candidate
        .iter()
        .enumerate()
        .map(|(t, &id)| logp[prompt.len() - 1 + t][id as usize])
        .sum()
}

/// Checks every choice against free decoding and the reference log-probabilities.
fn assert_agrees(model: &Llama, prompts: &[Vec<u32>], candidates: &[Vec<u32>]) {
    let longest = candidates.iter().map(Vec::len).max().unwrap();
    let free = free_greedy(model, prompts, longest);
    let choices = choose(model, prompts, candidates, &ChooseOptions::default()).unwrap();
    for (p, (choice, decoded)) in choices.iter().zip(&free).enumerate() {
        let choice = choice.as_ref().unwrap();
        for (c, candidate) in candidates.iter().enumerate() {
            let produced = decoded[..candidate.len()] == candidate[..];
            assert_eq!(choice.greedy[c], produced, "prompt {p} candidate {c}");
            let expected = reference_logprob(model, &prompts[p], candidate);
            let got = choice.logprobs[c];
            assert!(
                (got - expected).abs() < 1e-3,
                "prompt {p} candidate {c}: logprob {got}, reference {expected}"
            );
        }
        // Free decoding produces every greedy candidate; when one is a prefix of another,
        // the longer one is the answer.
        if let Some(c) = (0..candidates.len())
            .filter(|&c| choice.greedy[c])
            .max_by_key(|&c| (candidates[c].len(), std::cmp::Reverse(c)))
        {
            assert_eq!(choice.index, c, "prompt {p}: free decoding produced {c}");
        } else {
            let best = choice.logprobs.iter().enumerate().fold(0, |b, (c, &lp)| {
                if lp > choice.logprobs[b] {
                    c
                } else {
                    b
                }
            });
            assert_eq!(choice.index, best, "prompt {p}");
        }
    }
}

/// The candidate pairs of a prompt: its greedy continuation's first `k` tokens, and the same
/// with token `at` replaced (so they share `at` tokens).
fn greedy_and_variant(greedy: &[u32], k: usize, at: usize, vocab: u32) -> [Vec<u32>; 2] {
    let a = greedy[..k].to_vec();
    let mut b = a.clone();
    b[at] = (b[at] + 1) % vocab;
    [a, b]
}

#[test]
fn the_choice_is_the_free_greedy_continuation_on_the_tiny_model() {
    let model = tiny_llama();
    let prompts = tiny_llama_prompts();
    let free = free_greedy(&model.llama, &prompts, 6);
    for (p, greedy) in free.iter().enumerate() {
        let one = std::slice::from_ref(&prompts[p]);
        // Differing at the first token (as `▁drop` / `▁keep`), at a later one, and
        // candidates of different lengths, in both orders.
        for at in [0, 2, 3] {
            let [a, b] = greedy_and_variant(greedy, 4, at, 32000);
            assert_agrees(&model.llama, one, &[a.clone(), b.clone()]);
            assert_agrees(&model.llama, one, &[b, a]);
        }
        assert_agrees(
            &model.llama,
            one,
            &[greedy[..2].to_vec(), greedy[..5].to_vec()],
        );
        // Neither candidate greedy: the likelier wins.
        let [_, b] = greedy_and_variant(greedy, 3, 0, 32000);
        let [_, c] = greedy_and_variant(greedy, 3, 1, 32000);
        assert_agrees(&model.llama, one, &[b, c]);
    }
}

#[test]
fn a_batch_of_prompts_equals_each_prompt_alone() {
    let model = tiny_llama();
    let prompts = tiny_llama_prompts();
    // The document stage's two answers, as the Llama-2 tokenizer writes them after `[/INST]`:
    // ▁drop _ doc () </s> and ▁keep _ doc () </s>.
    let candidates = [
        vec![5768, 29918, 1514, 580, 2],
        vec![3013, 29918, 1514, 580, 2],
    ];
    let batched = choose(
        &model.llama,
        &prompts,
        &candidates,
        &ChooseOptions::default(),
    )
    .unwrap();
    let small_budget = ChooseOptions { prefill_tokens: 40 };
    let split = choose(&model.llama, &prompts, &candidates, &small_budget).unwrap();
    for (p, prompt) in prompts.iter().enumerate() {
        let alone = choose(
            &model.llama,
            std::slice::from_ref(prompt),
            &candidates,
            &ChooseOptions::default(),
        )
        .unwrap();
        for other in [&batched[p], &split[p]] {
            let (a, b) = (alone[0].as_ref().unwrap(), other.as_ref().unwrap());
            assert_eq!(a.index, b.index, "prompt {p}");
            for (x, y) in a.logprobs.iter().zip(&b.logprobs) {
                assert!((x - y).abs() < 1e-4, "prompt {p}: {x} vs {y}");
            }
        }
    }
    assert_agrees(&model.llama, &prompts, &candidates);
}

#[test]
fn the_choice_agrees_with_free_decoding_on_random_models() {
    let cfg = Config {
        hidden_size: 32,
        intermediate_size: 48,
        num_layers: 2,
        num_heads: 4,
        num_kv_heads: 1,
        head_dim: 8,
        vocab_size: 64,
        rms_norm_eps: 1e-5,
        rope_theta: 10_000.0,
        max_position_embeddings: 64,
        tie_word_embeddings: false,
        rope_interleaved: false,
        bos_token_id: Some(1),
        eos_token_ids: vec![2],
    };
    for seed in 0..6u64 {
        let model = Llama::random(&cfg, DType::F32, &Device::Cpu, seed).unwrap();
        let prompts: Vec<Vec<u32>> = (0..4u64)
            .map(|p| {
                let len = 3 + (seed * 7 + p * 5) as usize % 11;
                (0..len as u64)
                    .map(|i| ((seed * 31 + p * 17 + i * 13) % 64) as u32)
                    .collect()
            })
            .collect();
        let free = free_greedy(&model, &prompts, 5);
        for (p, greedy) in free.iter().enumerate() {
            let one = std::slice::from_ref(&prompts[p]);
            let at = (seed as usize + p) % 4;
            let [a, b] = greedy_and_variant(greedy, 4, at, 64);
            assert_agrees(&model, one, &[a, b]);
        }
        // All prompts at once, with the first prompt's pair.
        let [a, b] = greedy_and_variant(&free[0], 3, 1, 64);
        assert_agrees(&model, &prompts, &[a, b]);
    }
}

#[test]
fn a_prompt_without_room_for_the_candidates_is_refused_alone() {
    let model = tiny_llama();
    let candidates = [vec![5768, 29918], vec![3013]];
    let prompts = vec![vec![1; 2047], Vec::new(), vec![1, 5, 7]];
    let out = choose(
        &model.llama,
        &prompts,
        &candidates,
        &ChooseOptions::default(),
    )
    .unwrap();
    assert!(matches!(out[0], Err(RequestError::PromptTooLong { .. })));
    assert_eq!(out[1], Err(RequestError::EmptyPrompt));
    assert!(out[2].is_ok());
    let empty = choose(&model.llama, &prompts, &[vec![]], &ChooseOptions::default());
    assert!(empty.is_err());
}
