//! Request formation, as lighteval's `BaseModel.loglikelihood` builds its inputs: one
//! request per choice, the whitespace ending the context moved to the front of the
//! continuation, the continuation's ids cut from the joint encoding of context and
//! continuation (not encoded alone).

use prox_tokenizer::Tokenizer;

use crate::text::python_rstrip;

/// One (context, continuation) pair as token ids.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TokenizedRequest {
    /// The strings the tokenizer saw, after the whitespace move.
    pub tokenizer_context: String,
    pub tokenizer_continuation: String,
    /// `encode(tokenizer_context)` with the tokenizer's BOS (or `[EOS]` for an empty
    /// context).
    pub context_ids: Vec<u32>,
    /// The ids scored: `encode(context + continuation)` minus its first
    /// `context_ids.len()` ids.
    pub continuation_ids: Vec<u32>,
}

/// Builds the request for one choice. `eos_id` stands in for an empty context.
pub fn tokenize_request(
    tokenizer: &Tokenizer,
    eos_id: u32,
    context: &str,
    continuation: &str,
) -> Result<TokenizedRequest, prox_tokenizer::Error> {
    if context.is_empty() {
        return Ok(TokenizedRequest {
            tokenizer_context: String::new(),
            tokenizer_continuation: continuation.to_owned(),
            context_ids: vec![eos_id],
            continuation_ids: tokenizer.encode(continuation, true)?,
        });
    }
    let stripped = python_rstrip(context);
    let moved = &context[stripped.len()..];
    let tokenizer_continuation = format!("{moved}{continuation}");
    let whole = tokenizer.encode(&format!("{stripped}{tokenizer_continuation}"), true)?;
    let context_ids = tokenizer.encode(stripped, true)?;
    let continuation_ids = whole.get(context_ids.len()..).unwrap_or_default().to_vec();
    Ok(TokenizedRequest {
        tokenizer_context: stripped.to_owned(),
        tokenizer_continuation,
        context_ids,
        continuation_ids,
    })
}

impl TokenizedRequest {
    /// The model input for scoring: context and continuation without the last id, keeping
    /// the last `max_length` ids; and how many ids were cut from the front.
    pub fn model_input(&self, max_length: usize) -> (Vec<u32>, usize) {
        let mut ids = Vec::with_capacity(self.context_ids.len() + self.continuation_ids.len());
        ids.extend_from_slice(&self.context_ids);
        ids.extend_from_slice(&self.continuation_ids);
        ids.pop();
        let cut = ids.len().saturating_sub(max_length);
        ids.drain(..cut);
        (ids, cut)
    }

    /// Whether the model input needs no truncation.
    pub fn fits(&self, max_length: usize) -> bool {
        (self.context_ids.len() + self.continuation_ids.len()).saturating_sub(1) <= max_length
    }
}
