//! Constrained decoding for closed answers: score a few fixed continuations of each prompt
//! (the document stage only ever answers `drop_doc()` or `keep_doc()`) instead of decoding
//! freely.
//!
//! Each prompt is prefilled once, together with the tokens all candidates share; the cache is
//! then cloned for every candidate but the last, and the remaining candidate tokens of all
//! prompts run in one packed forward call. Two forward calls in all, whatever the number of
//! prompts, where free decoding needs one call per generated token.
//!
//! The choice agrees with free greedy decoding: a candidate is *greedy* when each of its
//! tokens is the argmax (first index on ties, as [`generate`](crate::generate)) of the
//! distribution before it, and exactly then free decoding produces it. The logits come from a
//! multi-token call rather than token by token, so a step whose top-1/top-2 margin is within
//! float rounding (about 1e-5) may be read differently; the golden tests hold decoding to the
//! same rule.

use crate::error::{Error, RequestError, Result};
use crate::generate::{argmax_with_margin, check_prompt};
use crate::model::{KvCache, Llama, LogitsAt};

/// The scores of the candidates after one prompt.
#[derive(Debug, Clone, PartialEq)]
pub struct Choice {
    /// The chosen candidate: the one free greedy decoding produces (the longest, if one
    /// greedy candidate is a prefix of another), else the most likely.
    pub index: usize,
    /// Per candidate, the sum of its tokens' log-probabilities given the prompt.
    pub logprobs: Vec<f32>,
    /// Per candidate, whether free greedy decoding produces it (every token the argmax).
    pub greedy: Vec<bool>,
}

/// Settings of [`choose`].
#[derive(Debug, Clone)]
pub struct ChooseOptions {
    /// At most this many prompt tokens per prefill call; a longer prompt gets a call of its
    /// own.
    pub prefill_tokens: usize,
}

impl Default for ChooseOptions {
    fn default() -> Self {
        ChooseOptions {
            prefill_tokens: 4096,
        }
    }
}

/// Scores every candidate continuation (token ids, as the model would generate them, e.g.
/// `▁drop _ doc ()`) after every prompt. A prompt the model cannot take gets its own error;
/// the others are served, each independently of its batch companions.
pub fn choose(
    model: &Llama,
    prompts: &[Vec<u32>],
    candidates: &[Vec<u32>],
    options: &ChooseOptions,
) -> Result<Vec<std::result::Result<Choice, RequestError>>> {
    let cfg = model.config();
    if candidates.is_empty() || candidates.iter().any(|c| c.is_empty()) {
        return Err(Error::Invalid(
            "choose needs at least one candidate, none of them empty".to_owned(),
        ));
    }
    if let Some(&bad) = candidates
        .iter()
        .flatten()
        .find(|&&id| id as usize >= cfg.vocab_size)
    {
        return Err(Error::Invalid(format!(
            "candidate token {bad} is outside the vocabulary of {}",
            cfg.vocab_size
        )));
    }
    let longest = candidates.iter().map(Vec::len).max().unwrap_or(0);
    // Tokens every candidate starts with, fed with the prompt; at least one token of the
    // longest candidate is left to score from the prefill's logits.
    let shared = common_prefix(candidates).min(longest - 1);
    let prefix = &candidates[0][..shared];

    let mut results: Vec<Option<std::result::Result<Choice, RequestError>>> =
        vec![None; prompts.len()];
    let mut admitted = Vec::new();
    for (index, prompt) in prompts.iter().enumerate() {
        // Free decoding could not produce the longest candidate beyond the context either.
        match check_prompt(model, prompt, longest) {
            Ok(()) => admitted.push(index),
            Err(e) => results[index] = Some(Err(e)),
        }
    }

    let mut start = 0;
    while start < admitted.len() {
        let mut end = start;
        let mut tokens = 0;
        while end < admitted.len() {
            let len = prompts[admitted[end]].len() + shared;
            if end > start && tokens + len > options.prefill_tokens {
                break;
            }
            tokens += len;
            end += 1;
        }
        let group = &admitted[start..end];
        for (&index, choice) in group
            .iter()
            .zip(score_group(model, prompts, group, candidates, prefix)?)
        {
            results[index] = Some(Ok(choice));
        }
        start = end;
    }
    Ok(results
        .into_iter()
        .map(|r| r.expect("every prompt gets a result"))
        .collect())
}

fn common_prefix(candidates: &[Vec<u32>]) -> usize {
    let first = &candidates[0];
    candidates[1..].iter().fold(first.len(), |n, c| {
        n.min(first.iter().zip(c).take_while(|(a, b)| a == b).count())
    })
}

/// Log-softmax and argmax of one logits row.
struct Row {
    logits: Vec<f32>,
    log_total: f32,
    argmax: u32,
}

impl Row {
    fn new(logits: Vec<f32>) -> Self {
        let max = logits.iter().copied().fold(f32::NEG_INFINITY, f32::max);
        let sum: f64 = logits.iter().map(|&x| f64::from(x - max).exp()).sum();
        let (argmax, _) = argmax_with_margin(&logits);
        Row {
            log_total: max + sum.ln() as f32,
            logits,
            argmax,
        }
    }

    fn logprob(&self, id: u32) -> f32 {
        self.logits[id as usize] - self.log_total
    }
}

fn score_group(
    model: &Llama,
    prompts: &[Vec<u32>],
    group: &[usize],
    candidates: &[Vec<u32>],
    prefix: &[u32],
) -> Result<Vec<Choice>> {
    let shared = prefix.len();
    let longest = candidates.iter().map(Vec::len).max().unwrap_or(0);

    // 1. Prefill prompt + shared prefix; rows for the last prompt token and each prefix token.
    let inputs: Vec<Vec<u32>> = group
        .iter()
        .map(|&i| [prompts[i].as_slice(), prefix].concat())
        .collect();
    let mut caches = group
        .iter()
        .map(|&i| KvCache::new(model, prompts[i].len() + longest - 1))
        .collect::<candle_core::Result<Vec<_>>>()?;
    let mut rows = Vec::new();
    let mut end = 0;
    for input in &inputs {
        end += input.len();
        rows.extend(end - 1 - shared..end);
    }
    let seqs: Vec<&[u32]> = inputs.iter().map(Vec::as_slice).collect();
    let mut refs: Vec<&mut KvCache> = caches.iter_mut().collect();
    let logits = model.forward(&seqs, &mut refs, &LogitsAt::Rows(rows))?;
    drop(refs);
    let mut prefill_rows = logits.to_vec2::<f32>()?.into_iter().map(Row::new);
    // Per prompt, the distributions of candidate tokens 0..=shared.
    let heads: Vec<Vec<Row>> = group
        .iter()
        .map(|_| prefill_rows.by_ref().take(shared + 1).collect())
        .collect();

    // 2. The candidates' remaining tokens (all but each one's last), every (prompt,
    //    candidate) branch on its own copy of the prompt's cache, in one packed call.
    let tails: Vec<&[u32]> = candidates
        .iter()
        .map(|c| {
            if c.len() > shared + 1 {
                &c[shared..c.len() - 1]
            } else {
                &[][..]
            }
        })
        .collect();
    let mut branch_caches = Vec::new();
    let mut branch_seqs: Vec<&[u32]> = Vec::new();
    let needing: Vec<usize> = (0..candidates.len())
        .filter(|&c| !tails[c].is_empty())
        .collect();
    for cache in caches {
        let mut original = Some(cache);
        for (n, &c) in needing.iter().enumerate() {
            let branch = if n + 1 == needing.len() {
                // The last branch takes the original: one copy fewer.
                original.take().expect("taken once, by the last branch")
            } else {
                original
                    .as_ref()
                    .expect("the original is kept until the last branch")
                    .try_clone()?
            };
            branch_caches.push(branch);
            branch_seqs.push(tails[c]);
        }
    }
    let tail_rows: Vec<Row> = if branch_seqs.is_empty() {
        Vec::new()
    } else {
        let mut refs: Vec<&mut KvCache> = branch_caches.iter_mut().collect();
        let logits = model.forward(&branch_seqs, &mut refs, &LogitsAt::All)?;
        logits.to_vec2::<f32>()?.into_iter().map(Row::new).collect()
    };

    // 3. Sum each candidate's log-probabilities and check it against the argmax.
    let mut tail_rows = tail_rows.into_iter();
    let mut choices = Vec::with_capacity(group.len());
    for head in heads {
        let mut logprobs = Vec::with_capacity(candidates.len());
        let mut greedy = Vec::with_capacity(candidates.len());
        let mut own_rows: Vec<Vec<Row>> = Vec::with_capacity(candidates.len());
        for tail in &tails {
            own_rows.push(tail_rows.by_ref().take(tail.len()).collect());
        }
        for (candidate, own) in candidates.iter().zip(&own_rows) {
            let mut lp = 0.0f32;
            let mut is_greedy = true;
            for (t, &id) in candidate.iter().enumerate() {
                // Token t's distribution: from the prefill up to the shared prefix, then
                // from this candidate's own branch.
                let row = if t <= shared {
                    &head[t]
                } else {
                    &own[t - shared - 1]
                };
                lp += row.logprob(id);
                is_greedy &= row.argmax == id;
            }
            logprobs.push(lp);
            greedy.push(is_greedy);
        }
        let index = pick(candidates, &logprobs, &greedy);
        choices.push(Choice {
            index,
            logprobs,
            greedy,
        });
    }
    Ok(choices)
}

/// The longest greedy candidate, else the most likely (the first on ties).
fn pick(candidates: &[Vec<u32>], logprobs: &[f32], greedy: &[bool]) -> usize {
    let longest_greedy = (0..candidates.len())
        .filter(|&c| greedy[c])
        .max_by_key(|&c| (candidates[c].len(), std::cmp::Reverse(c)));
    longest_greedy.unwrap_or_else(|| {
        let mut best = 0;
        for (c, &lp) in logprobs.iter().enumerate() {
            if lp > logprobs[best] {
                best = c;
            }
        }
        best
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_shared_prefix_stops_at_the_first_difference() {
        assert_eq!(common_prefix(&[vec![1, 2, 3], vec![1, 2, 4]]), 2);
        assert_eq!(common_prefix(&[vec![5, 2], vec![6, 2]]), 0);
        assert_eq!(common_prefix(&[vec![1, 2], vec![1, 2, 3]]), 2);
    }

    #[test]
    fn a_greedy_candidate_wins_over_a_likelier_one() {
        let c = [vec![1, 2], vec![1, 2, 3], vec![4]];
        assert_eq!(pick(&c, &[-1.0, -2.0, -0.5], &[true, true, false]), 1);
        assert_eq!(pick(&c, &[-1.0, -2.0, -0.5], &[false, false, false]), 2);
    }
}
