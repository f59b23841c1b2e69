//! The model side of the pipeline.

use std::time::Instant;

use prox_engine::{ChooseOptions, GenerateOptions, Model, Request};
use prox_tokenizer::Tokenizer;

use crate::error::{Error, Result};

/// One prompt to continue greedily.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GenRequest {
    pub prompt_ids: Vec<u32>,
    pub max_new_tokens: usize,
}

/// A greedy continuation, as text.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GenResult {
    /// The generated text, special tokens left out.
    pub text: String,
    pub generated_tokens: usize,
}

/// A per-request outcome: the continuation, or why this request could not be served (the
/// document goes to the failures files with that message).
pub type GenOutcome = std::result::Result<GenResult, String>;

/// Something that continues prompts greedily: the embedded engine, or a client of an
/// inference server. An `Err` stops the task (the model is gone); a per-request error is
/// the document's failure.
pub trait Backend: Send + Sync {
    /// What it is, for logs and the run configuration.
    fn describe(&self) -> String;

    /// The tokenizer the prompts are built with.
    fn tokenizer(&self) -> &Tokenizer;

    /// Greedy continuations, one per request, in order.
    fn generate(&self, requests: &[GenRequest]) -> Result<Vec<GenOutcome>>;

    /// Document-stage answers. The model only ever answers `drop_doc()` or `keep_doc()`, so a
    /// backend may score those two instead of decoding freely, provided that it returns what
    /// free greedy decoding would.
    fn decide_doc(&self, requests: &[GenRequest]) -> Result<Vec<GenOutcome>> {
        self.generate(requests)
    }
}

/// The answers the document stage chooses between.
const DOC_ANSWERS: [&str; 2] = ["drop_doc()", "keep_doc()"];

/// A model loaded in this process.
pub struct EmbeddedBackend {
    model: Model,
    tokenizer: Tokenizer,
    /// Prompts decoded together (bounds the KV caches' memory).
    batch_size: usize,
    /// Score `drop_doc()`/`keep_doc()` after one prefill instead of decoding.
    choose_doc: bool,
    /// The token ids of each document-stage answer as the model generates it, ended by EOS
    /// (so that a candidate is greedy only if free decoding would stop right after it).
    answer_candidates: Vec<Vec<u32>>,
}

impl EmbeddedBackend {
    /// Wraps a loaded model; it must have come with a tokenizer.
    pub fn new(mut model: Model, batch_size: usize, choose_doc: bool) -> Result<Self> {
        let tokenizer = model.tokenizer.take().ok_or_else(|| {
            Error::path(
                &model.source,
                "the model has no tokenizer (tokenizer.json or tokenizer.model)",
            )
        })?;
        let eos = model.llama.config().eos_token_ids.first().copied();
        let answer_candidates = DOC_ANSWERS
            .iter()
            .map(|answer| {
                let mut ids = tokenizer
                    .encode(answer, false)
                    .map_err(|e| Error::Backend(format!("cannot encode {answer}: {e}")))?;
                ids.extend(eos);
                Ok(ids)
            })
            .collect::<Result<_>>()?;
        Ok(Self {
            model,
            tokenizer,
            batch_size: batch_size.max(1),
            choose_doc,
            answer_candidates,
        })
    }

    fn decode(&self, ids: &[u32]) -> GenOutcome {
        self.tokenizer
            .decode(ids, true)
            .map(|text| GenResult {
                text,
                generated_tokens: ids.len(),
            })
            .map_err(|e| format!("cannot decode the generated tokens: {e}"))
    }
}

impl Backend for EmbeddedBackend {
    fn describe(&self) -> String {
        format!("embedded {}", self.model.source.display())
    }

    fn tokenizer(&self) -> &Tokenizer {
        &self.tokenizer
    }

    fn generate(&self, requests: &[GenRequest]) -> Result<Vec<GenOutcome>> {
        let mut outcomes = Vec::with_capacity(requests.len());
        for batch in requests.chunks(self.batch_size) {
            let engine_requests: Vec<Request> = batch
                .iter()
                .map(|r| Request {
                    prompt_ids: r.prompt_ids.clone(),
                    max_new_tokens: r.max_new_tokens,
                })
                .collect();
            let started = Instant::now();
            let generations = prox_engine::generate(
                &self.model.llama,
                &engine_requests,
                &GenerateOptions::default(),
            )
            .map_err(|e| Error::Backend(e.to_string()))?;
            tracing::debug!(
                prompts = batch.len(),
                seconds = started.elapsed().as_secs_f64(),
                "generated"
            );
            outcomes.extend(generations.into_iter().map(|generation| match generation {
                Ok(generation) => self.decode(&generation.ids),
                Err(refused) => Err(refused.to_string()),
            }));
        }
        Ok(outcomes)
    }

    fn decide_doc(&self, requests: &[GenRequest]) -> Result<Vec<GenOutcome>> {
        let candidates = &self.answer_candidates;
        let longest = candidates.iter().map(Vec::len).max().unwrap_or(0);
        // With fewer new tokens than an answer has, decoding would stop inside it.
        if !self.choose_doc || requests.iter().any(|r| r.max_new_tokens < longest) {
            return self.generate(requests);
        }
        let mut outcomes: Vec<Option<GenOutcome>> = vec![None; requests.len()];
        let mut undecided = Vec::new();
        for (batch_index, batch) in requests.chunks(self.batch_size).enumerate() {
            let prompts: Vec<Vec<u32>> = batch.iter().map(|r| r.prompt_ids.clone()).collect();
            let choices = prox_engine::choose(
                &self.model.llama,
                &prompts,
                candidates,
                &ChooseOptions::default(),
            )
            .map_err(|e| Error::Backend(e.to_string()))?;
            for (offset, choice) in choices.into_iter().enumerate() {
                let index = batch_index * self.batch_size + offset;
                match choice {
                    // Free decoding produces the chosen answer only when it is greedy; when
                    // neither is, decode freely so that the result is what decoding gives.
                    Ok(choice) if choice.greedy[choice.index] => {
                        let ids = &candidates[choice.index];
                        outcomes[index] = Some(Ok(GenResult {
                            text: DOC_ANSWERS[choice.index].to_owned(),
                            generated_tokens: ids.len(),
                        }));
                    }
                    Ok(_) => undecided.push(index),
                    Err(refused) => outcomes[index] = Some(Err(refused.to_string())),
                }
            }
        }
        if !undecided.is_empty() {
            let free: Vec<GenRequest> = undecided.iter().map(|&i| requests[i].clone()).collect();
            for (index, outcome) in undecided.into_iter().zip(self.generate(&free)?) {
                outcomes[index] = Some(outcome);
            }
        }
        Ok(outcomes
            .into_iter()
            .map(|outcome| outcome.unwrap_or_else(|| Err("no answer was computed".to_owned())))
            .collect())
    }
}
