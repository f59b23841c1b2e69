//! Greedy decoding over a batch of prompts of different lengths.
//!
//! All prompts are prefilled together in packed forward calls (bounded by a token budget),
//! then every unfinished sequence advances one token per step in one packed call. Each
//! sequence has its own preallocated cache sized to what it may still need, so a finished
//! sequence simply leaves the batch.

use prox_tokenizer::Tokenizer;

use crate::error::{Error, RequestError, Result};
use crate::model::{KvCache, Llama, LogitsAt};
use crate::stop::{StopMatcher, StopText};

/// Why a generation ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FinishReason {
    /// An end-of-sequence token was generated (the last of the ids), or a stop string
    /// appeared in the text ([`generate_text`]).
    Stop,
    /// The token limit, or the model's context, was reached.
    Length,
}

impl FinishReason {
    /// The name OpenAI-compatible servers use (`"stop"`, `"length"`).
    pub fn as_str(self) -> &'static str {
        match self {
            FinishReason::Stop => "stop",
            FinishReason::Length => "length",
        }
    }
}

/// One prompt to continue.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Request {
    pub prompt_ids: Vec<u32>,
    pub max_new_tokens: usize,
}

impl Request {
    /// One request per prompt, each for at most `max_new_tokens` new tokens.
    pub fn batch<P: AsRef<[u32]>>(
        prompts: impl IntoIterator<Item = P>,
        max_new_tokens: usize,
    ) -> Vec<Request> {
        prompts
            .into_iter()
            .map(|p| Request {
                prompt_ids: p.as_ref().to_vec(),
                max_new_tokens,
            })
            .collect()
    }
}

/// One prompt to continue until a stop string ([`generate_text`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TextRequest {
    pub request: Request,
    /// Strings that end the generation when they appear in its decoded text (special
    /// tokens skipped); the text stops before the first of them. None may be empty. An empty
    /// list: the generation ends at the end-of-sequence token or the limit only.
    pub stop: Vec<String>,
}

/// The greedy continuation of one prompt as ids and text ([`generate_text`]).
#[derive(Debug, Clone, PartialEq)]
pub struct TextGeneration {
    /// Every generated id, those of the stop string included (as vLLM's `token_ids`);
    /// `finish_reason` is [`FinishReason::Stop`] when a stop string ended it.
    pub generation: Generation,
    /// The decoded text (special tokens skipped), cut before the stop string.
    pub text: String,
    /// The stop string that ended the generation (vLLM's `stop_reason`), if one did.
    pub stop: Option<String>,
}

/// The greedy continuation of one prompt.
#[derive(Debug, Clone, PartialEq)]
pub struct Generation {
    /// New tokens, ending with the end-of-sequence token when one stopped them (as
    /// transformers' `generate` and vLLM's `token_ids` do; decoding with special tokens
    /// skipped leaves it out of the text).
    pub ids: Vec<u32>,
    pub finish_reason: FinishReason,
    /// For each new token, the top-1 minus top-2 logit: how decisive the choice was.
    pub margins: Vec<f32>,
}

/// Settings of [`generate`].
#[derive(Debug, Clone)]
pub struct GenerateOptions {
    /// Tokens that end a generation. `None`: the model's own (`eos_token_id`); an empty
    /// list never stops before the token limit.
    pub eos_token_ids: Option<Vec<u32>>,
    /// At most this many prompt tokens per prefill call (bounds activation memory); a
    /// longer prompt is prefilled in one call of its own.
    pub prefill_tokens: usize,
}

impl Default for GenerateOptions {
    fn default() -> Self {
        GenerateOptions {
            eos_token_ids: None,
            prefill_tokens: 4096,
        }
    }
}

/// The index of the largest value (the first one on ties, as `torch.argmax`) and the
/// margin to the second largest.
pub fn argmax_with_margin(row: &[f32]) -> (u32, f32) {
    let mut best = (0usize, f32::NEG_INFINITY);
    let mut second = f32::NEG_INFINITY;
    for (i, &v) in row.iter().enumerate() {
        if v > best.1 {
            second = best.1;
            best = (i, v);
        } else if v > second {
            second = v;
        }
    }
    (best.0 as u32, best.1 - second)
}

/// Checks a prompt against the model: not empty, only known token ids, and room left in the
/// context for `room` more tokens.
pub(crate) fn check_prompt(
    model: &Llama,
    prompt: &[u32],
    room: usize,
) -> std::result::Result<(), RequestError> {
    let cfg = model.config();
    if prompt.is_empty() {
        return Err(RequestError::EmptyPrompt);
    }
    if prompt.len().saturating_add(room) > cfg.max_position_embeddings {
        return Err(RequestError::PromptTooLong {
            prompt_tokens: prompt.len(),
            context: cfg.max_position_embeddings.saturating_sub(room),
        });
    }
    if let Some((position, &id)) = prompt
        .iter()
        .enumerate()
        .find(|(_, &id)| id as usize >= cfg.vocab_size)
    {
        return Err(RequestError::TokenOutOfRange {
            id,
            position,
            vocab_size: cfg.vocab_size,
        });
    }
    Ok(())
}

/// Checks a request against the model; `Ok` holds how many tokens its cache needs.
fn admit(model: &Llama, request: &Request) -> std::result::Result<usize, RequestError> {
    check_prompt(model, &request.prompt_ids, 0)?;
    // The last generated token is never fed back, so the cache holds prompt + new - 1
    // tokens; prompt + new may not exceed the context either (as vLLM's max_model_len).
    let prompt = request.prompt_ids.len();
    Ok((prompt + request.max_new_tokens.saturating_sub(1))
        .min(model.config().max_position_embeddings))
}

/// Greedily continues every request. A request the model cannot take (empty, longer than
/// the context, unknown token ids) gets its own error; the others are served. The result is
/// the same whichever requests share the batch.
pub fn generate(
    model: &Llama,
    requests: &[Request],
    options: &GenerateOptions,
) -> Result<Vec<std::result::Result<Generation, RequestError>>> {
    let requests: Vec<&Request> = requests.iter().collect();
    let results = decode(model, &requests, None, options)?;
    Ok(results
        .into_iter()
        .map(|result| result.map(|(generation, _)| generation))
        .collect())
}

/// Greedily continues every request as [`generate`] does, and also ends a generation at
/// the first of its stop strings, found in its text as it is decoded token by token with
/// `tokenizer` (the model's own; see [`StopMatcher`]). A request's text is cut before the
/// stop string, which may span tokens; requests without stop strings get the same ids as
/// from [`generate`] and `tokenizer.decode(ids, true)` as text. Each request is decoded on
/// its own: the result is the same whichever requests share the batch. A request with an
/// empty stop string gets [`RequestError::EmptyStopString`].
pub fn generate_text(
    model: &Llama,
    tokenizer: &Tokenizer,
    requests: &[TextRequest],
    options: &GenerateOptions,
) -> Result<Vec<std::result::Result<TextGeneration, RequestError>>> {
    let plain: Vec<&Request> = requests.iter().map(|r| &r.request).collect();
    let stops: Vec<&[String]> = requests.iter().map(|r| r.stop.as_slice()).collect();
    let results = decode(model, &plain, Some((tokenizer, &stops)), options)?;
    Ok(results
        .into_iter()
        .zip(requests)
        .map(|(result, request)| {
            result.map(|(generation, text)| {
                let text = text.expect("a text is decoded for every request with a tokenizer");
                TextGeneration {
                    generation,
                    stop: text.matched.map(|i| request.stop[i].clone()),
                    text: text.text,
                }
            })
        })
        .collect())
}

type Decoded = std::result::Result<(Generation, Option<StopText>), RequestError>;

/// The batched greedy loop; with a tokenizer, each sequence's text is followed for its
/// stop strings and returned.
fn decode(
    model: &Llama,
    requests: &[&Request],
    stops: Option<(&Tokenizer, &[&[String]])>,
    options: &GenerateOptions,
) -> Result<Vec<Decoded>> {
    let context = model.config().max_position_embeddings;
    let eos: &[u32] = options
        .eos_token_ids
        .as_deref()
        .unwrap_or(&model.config().eos_token_ids);

    struct Running<'t> {
        index: usize,
        cache: KvCache,
        ids: Vec<u32>,
        margins: Vec<f32>,
        /// The most new tokens this sequence may produce.
        limit: usize,
        finish: Option<FinishReason>,
        stop: Option<StopMatcher<'t>>,
    }

    let matcher =
        |index: usize| stops.map(|(tokenizer, stops)| StopMatcher::new(tokenizer, stops[index]));
    let tokenizer_error = |e: prox_tokenizer::Error| Error::Tokenizer {
        path: stops.map_or_else(Default::default, |(t, _)| t.source().to_path_buf()),
        reason: crate::load::error_chain(&e),
    };
    // A finished sequence's text: what its matcher followed, with what it still held back.
    let finish = |mut generation: Generation, stop: Option<StopMatcher>| -> Result<Decoded> {
        let text = match stop {
            Some(matcher) => {
                let text = matcher.finish(&generation.ids).map_err(tokenizer_error)?;
                // Held-back text can complete a stop string only once the ids have ended.
                if text.matched.is_some() {
                    generation.finish_reason = FinishReason::Stop;
                }
                Some(text)
            }
            None => None,
        };
        Ok(Ok((generation, text)))
    };

    let mut results: Vec<Option<Decoded>> = vec![None; requests.len()];
    let mut running = Vec::new();
    for (index, request) in requests.iter().enumerate() {
        let empty_stop =
            stops.and_then(|(_, stops)| stops[index].iter().position(String::is_empty));
        match admit(model, request) {
            Err(e) => results[index] = Some(Err(e)),
            Ok(_) if empty_stop.is_some() => {
                results[index] = Some(Err(RequestError::EmptyStopString {
                    index: empty_stop.unwrap_or_default(),
                }));
            }
            Ok(_) if request.max_new_tokens == 0 || request.prompt_ids.len() == context => {
                // Nothing may be generated: no forward pass is needed.
                let nothing = Generation {
                    ids: Vec::new(),
                    finish_reason: FinishReason::Length,
                    margins: Vec::new(),
                };
                results[index] = Some(finish(nothing, matcher(index))?);
            }
            Ok(capacity) => running.push(Running {
                index,
                cache: KvCache::new(model, capacity)?,
                ids: Vec::new(),
                margins: Vec::new(),
                limit: request
                    .max_new_tokens
                    .min(context - request.prompt_ids.len()),
                finish: None,
                stop: matcher(index),
            }),
        }
    }

    // vLLM's order: the end-of-sequence token, then the stop strings, then the limit.
    let record = |seq: &mut Running, row: &[f32]| -> Result<()> {
        let (token, margin) = argmax_with_margin(row);
        seq.margins.push(margin);
        seq.ids.push(token);
        let stopped = match &mut seq.stop {
            Some(matcher) if !eos.contains(&token) => {
                matcher.push(&seq.ids).map_err(tokenizer_error)?
            }
            _ => false,
        };
        if eos.contains(&token) || stopped {
            seq.finish = Some(FinishReason::Stop);
        } else if seq.ids.len() >= seq.limit {
            seq.finish = Some(FinishReason::Length);
        }
        Ok(())
    };

    // Prefill in groups of whole prompts, up to the token budget per call.
    let mut start = 0;
    while start < running.len() {
        let mut end = start;
        let mut tokens = 0;
        while end < running.len() {
            let len = requests[running[end].index].prompt_ids.len();
            if end > start && tokens + len > options.prefill_tokens {
                break;
            }
            tokens += len;
            end += 1;
        }
        let group = &mut running[start..end];
        let prompts: Vec<&[u32]> = group
            .iter()
            .map(|s| requests[s.index].prompt_ids.as_slice())
            .collect();
        let mut caches: Vec<&mut KvCache> = group.iter_mut().map(|s| &mut s.cache).collect();
        let logits = model.forward(&prompts, &mut caches, &LogitsAt::Last)?;
        drop(caches);
        let rows = logits.to_vec2::<f32>()?;
        for (seq, row) in group.iter_mut().zip(&rows) {
            record(seq, row)?;
        }
        start = end;
    }

    // Decode: every unfinished sequence feeds back its last token.
    loop {
        let (active, done): (Vec<Running>, Vec<Running>) =
            running.into_iter().partition(|s| s.finish.is_none());
        for seq in done {
            let generation = Generation {
                ids: seq.ids,
                finish_reason: seq.finish.unwrap_or(FinishReason::Length),
                margins: seq.margins,
            };
            results[seq.index] = Some(finish(generation, seq.stop)?);
        }
        running = active;
        if running.is_empty() {
            break;
        }
        let last: Vec<[u32; 1]> = running
            .iter()
            .map(|s| [*s.ids.last().expect("an unfinished sequence has a token")])
            .collect();
        let inputs: Vec<&[u32]> = last.iter().map(|t| t.as_slice()).collect();
        let mut caches: Vec<&mut KvCache> = running.iter_mut().map(|s| &mut s.cache).collect();
        let logits = model.forward(&inputs, &mut caches, &LogitsAt::Last)?;
        drop(caches);
        let rows = logits.to_vec2::<f32>()?;
        for (seq, row) in running.iter_mut().zip(&rows) {
            record(seq, row)?;
        }
    }

    Ok(results
        .into_iter()
        .map(|r| r.expect("every request gets a result"))
        .collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn argmax_takes_the_first_of_equal_values() {
        assert_eq!(argmax_with_margin(&[1.0, 3.0, 3.0, 2.0]), (1, 0.0));
        assert_eq!(argmax_with_margin(&[5.0, 3.0, 1.0]), (0, 2.0));
        assert_eq!(argmax_with_margin(&[1.0, 2.0, 4.0]), (2, 2.0));
    }
}
