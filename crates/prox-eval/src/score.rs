//! Scoring requests with the engine: the sum of the log-probabilities of each continuation's
//! ids given what precedes them.
//!
//! Two paths give the same numbers (up to float rounding):
//! - [`ScoringPath::SharedContext`] (the default): the choices of a document share their
//!   context, so it is prefilled once (one packed call for a whole batch of documents,
//!   giving each choice's first-token distribution), its KV cache is cloned for each choice,
//!   and all choices' remaining tokens of the batch run in one packed call on top of it.
//!   A document whose input must be truncated (the window start would differ per choice)
//!   is scored per choice.
//! - [`ScoringPath::PerChoice`]: one full forward pass per choice, as lighteval does (still
//!   packed into few calls); kept for the benchmark comparison.
//!
//! Only the continuation positions' logits are computed (the head runs on those rows), and
//! log-softmax and the gather of the target ids run on the device, so what comes back is
//! one number per scored token.

use candle_core::{Tensor, D};
use prox_engine::{KvCache, Llama, LogitsAt};

use crate::error::{Error, Result};
use crate::request::TokenizedRequest;

/// How documents are run through the model.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum ScoringPath {
    /// Prefill each document's context once and score every choice on top of it.
    #[default]
    SharedContext,
    /// One forward pass over context and continuation for every choice.
    PerChoice,
}

/// Settings of [`score_docs`].
#[derive(Debug, Clone)]
pub struct ScoreOptions {
    pub path: ScoringPath,
    /// The model input is cut to its last `max_length` ids (lighteval's `max_length`: the
    /// config's `max_position_embeddings`, 2048 for ProX's models).
    pub max_length: usize,
    /// At most this many tokens per forward call (bounds activation memory); a longer
    /// sequence gets a call of its own.
    pub tokens_per_call: usize,
}

impl ScoreOptions {
    /// The defaults for `model`: the shared-context path, its whole context.
    pub fn for_model(model: &Llama) -> Self {
        ScoreOptions {
            path: ScoringPath::default(),
            max_length: model.config().max_position_embeddings,
            tokens_per_call: 2048,
        }
    }
}

/// The score of one request.
#[derive(Debug, Clone, PartialEq)]
pub struct ChoiceScore {
    /// The sum of `token_logprobs` (accumulated in f64).
    pub logprob_sum: f64,
    /// The log-probability of each continuation id.
    pub token_logprobs: Vec<f32>,
    /// Ids cut from the front of the model input to fit `max_length`.
    pub truncated_tokens: usize,
}

/// Why a request cannot be scored, if it cannot: no continuation ids, or more than the
/// model input can hold.
pub fn check_request(request: &TokenizedRequest, max_length: usize) -> Option<String> {
    let n = request.continuation_ids.len();
    if n == 0 {
        return Some("the continuation has no tokens of its own".to_owned());
    }
    if n > max_length {
        return Some(format!(
            "the continuation has {n} tokens, more than the model input of {max_length}"
        ));
    }
    None
}

/// One sequence of a packed call: its new tokens, its cache, the rows (indices into
/// `tokens`) whose next-token distribution is read, and the id read at each row.
struct Piece<'a> {
    tokens: &'a [u32],
    cache: KvCache,
    rows: Vec<usize>,
    targets: Vec<u32>,
}

/// What both ways of scoring read: the model, every document's requests (`docs[d][c]`) and
/// the options, `max_length` capped to the model's.
#[derive(Clone, Copy)]
struct Scoring<'a> {
    model: &'a Llama,
    docs: &'a [&'a [TokenizedRequest]],
    options: &'a ScoreOptions,
}

/// One document's scores by choice, filled in by whichever way scores it.
type Slot = Vec<Option<ChoiceScore>>;

/// Scores every request of every document (`docs[d][c]`: document `d`, choice `c`). Each
/// request must pass [`check_request`].
pub fn score_docs(
    model: &Llama,
    docs: &[&[TokenizedRequest]],
    options: &ScoreOptions,
) -> Result<Vec<Vec<ChoiceScore>>> {
    let options = &ScoreOptions {
        max_length: options
            .max_length
            .min(model.config().max_position_embeddings),
        ..options.clone()
    };
    for request in docs.iter().flat_map(|d| d.iter()) {
        if let Some(reason) = check_request(request, options.max_length) {
            return Err(Error::Model(format!("cannot score a request: {reason}")));
        }
    }
    let mut results: Vec<Slot> = docs.iter().map(|d| vec![None; d.len()]).collect();
    let scoring = Scoring {
        model,
        docs,
        options,
    };
    let (shared, per_choice): (Vec<usize>, Vec<usize>) = (0..docs.len()).partition(|&d| {
        options.path == ScoringPath::SharedContext && shares_context(docs[d], options.max_length)
    });
    if !shared.is_empty() {
        score_shared(scoring, &shared, &mut results)?;
    }
    if !per_choice.is_empty() {
        score_per_choice(scoring, &per_choice, &mut results)?;
    }
    results
        .into_iter()
        .map(|doc| {
            doc.into_iter()
                .map(|s| s.ok_or_else(|| Error::Model("a request was left unscored".to_owned())))
                .collect()
        })
        .collect()
}

/// Whether all choices have the same context ids and none needs truncation.
fn shares_context(requests: &[TokenizedRequest], max_length: usize) -> bool {
    requests.first().is_some_and(|first| {
        requests
            .iter()
            .all(|r| r.context_ids == first.context_ids && r.fits(max_length))
    })
}

fn score_shared(scoring: Scoring, selected: &[usize], results: &mut [Slot]) -> Result<()> {
    let (model, docs, options) = (scoring.model, scoring.docs, scoring.options);
    // 1. Prefill each context; its last row gives every choice's first token.
    let mut prefill = Vec::with_capacity(selected.len());
    for &d in selected {
        let context = &docs[d][0].context_ids;
        let longest = docs[d]
            .iter()
            .map(|r| r.continuation_ids.len())
            .max()
            .unwrap_or(1);
        prefill.push(Piece {
            tokens: context,
            cache: KvCache::new(model, context.len() + longest - 1)?,
            rows: vec![context.len() - 1; docs[d].len()],
            targets: docs[d].iter().map(|r| r.continuation_ids[0]).collect(),
        });
    }
    let first_logprobs = run_pieces(model, &mut prefill, options.tokens_per_call)?;

    // 2. Every choice's other tokens, on its own copy of the document's cache.
    let mut branches = Vec::new();
    let mut owners = Vec::new();
    for (piece, &d) in prefill.into_iter().zip(selected) {
        let needing: Vec<usize> = (0..docs[d].len())
            .filter(|&c| docs[d][c].continuation_ids.len() > 1)
            .collect();
        let mut original = Some(piece.cache);
        for (n, &c) in needing.iter().enumerate() {
            let cache = if n + 1 == needing.len() {
                // The last branch takes the original: one copy fewer.
                original.take()
            } else {
                original.as_ref().map(KvCache::try_clone).transpose()?
            }
            .ok_or_else(|| Error::Model("a document's cache was used up".to_owned()))?;
            let ids = &docs[d][c].continuation_ids;
            branches.push(Piece {
                tokens: &ids[..ids.len() - 1],
                cache,
                rows: (0..ids.len() - 1).collect(),
                targets: ids[1..].to_vec(),
            });
            owners.push((d, c));
        }
    }
    let rest_logprobs = run_pieces(model, &mut branches, options.tokens_per_call)?;

    for (firsts, &d) in first_logprobs.into_iter().zip(selected) {
        for (c, first) in firsts.into_iter().enumerate() {
            results[d][c] = Some(ChoiceScore {
                logprob_sum: f64::from(first),
                token_logprobs: vec![first],
                truncated_tokens: 0,
            });
        }
    }
    for (rest, (d, c)) in rest_logprobs.into_iter().zip(owners) {
        if let Some(score) = results[d][c].as_mut() {
            score.token_logprobs.extend(rest);
            score.logprob_sum = score.token_logprobs.iter().map(|&v| f64::from(v)).sum();
        }
    }
    Ok(())
}

fn score_per_choice(scoring: Scoring, selected: &[usize], results: &mut [Slot]) -> Result<()> {
    let (model, docs, options) = (scoring.model, scoring.docs, scoring.options);
    let mut inputs = Vec::new();
    let mut owners = Vec::new();
    for &d in selected {
        for (c, request) in docs[d].iter().enumerate() {
            inputs.push(request.model_input(options.max_length));
            owners.push((d, c));
        }
    }
    let mut pieces = Vec::with_capacity(inputs.len());
    for ((ids, _), &(d, c)) in inputs.iter().zip(&owners) {
        let continuation = &docs[d][c].continuation_ids;
        // The last input position predicts the last continuation id.
        let first_row = ids.len() - continuation.len();
        pieces.push(Piece {
            tokens: ids,
            cache: KvCache::new(model, ids.len())?,
            rows: (first_row..ids.len()).collect(),
            targets: continuation.clone(),
        });
    }
    let logprobs = run_pieces(model, &mut pieces, options.tokens_per_call)?;
    for ((token_logprobs, (_, cut)), (d, c)) in logprobs.into_iter().zip(&inputs).zip(owners) {
        results[d][c] = Some(ChoiceScore {
            logprob_sum: token_logprobs.iter().map(|&v| f64::from(v)).sum(),
            token_logprobs,
            truncated_tokens: *cut,
        });
    }
    Ok(())
}

/// Runs the pieces in packed calls of at most `tokens_per_call` tokens; returns each piece's
/// target log-probabilities, in order.
fn run_pieces(
    model: &Llama,
    pieces: &mut [Piece],
    tokens_per_call: usize,
) -> Result<Vec<Vec<f32>>> {
    let mut out = Vec::with_capacity(pieces.len());
    let mut start = 0;
    while start < pieces.len() {
        let mut end = start;
        let mut tokens = 0;
        while end < pieces.len() {
            let len = pieces[end].tokens.len();
            if end > start && tokens + len > tokens_per_call {
                break;
            }
            tokens += len;
            end += 1;
        }
        out.extend(run_call(model, &mut pieces[start..end])?);
        start = end;
    }
    Ok(out)
}

fn run_call(model: &Llama, pieces: &mut [Piece]) -> Result<Vec<Vec<f32>>> {
    let mut rows = Vec::new();
    let mut targets = Vec::new();
    let mut offset = 0;
    for piece in pieces.iter() {
        rows.extend(piece.rows.iter().map(|r| offset + r));
        targets.extend_from_slice(&piece.targets);
        offset += piece.tokens.len();
    }
    let sequences: Vec<&[u32]> = pieces.iter().map(|p| p.tokens).collect();
    let mut caches: Vec<&mut KvCache> = pieces.iter_mut().map(|p| &mut p.cache).collect();
    let n = targets.len();
    let logits = model.forward(&sequences, &mut caches, &LogitsAt::Rows(rows))?;
    let log_probs = candle_nn::ops::log_softmax(&logits, D::Minus1)?;
    let targets = Tensor::from_vec(targets, (n, 1), log_probs.device())?;
    let picked = log_probs
        .gather(&targets, 1)?
        .squeeze(1)?
        .to_vec1::<f32>()?;
    let mut picked = picked.into_iter();
    Ok(pieces
        .iter()
        .map(|p| picked.by_ref().take(p.targets.len()).collect())
        .collect())
}
