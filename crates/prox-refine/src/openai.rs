//! The model behind an OpenAI-compatible server (vLLM, SGLang, llama.cpp, `prox serve`).

use std::sync::Arc;

use prox_client::{Client, CompletionRequest};
use prox_tokenizer::Tokenizer;

use crate::backend::{Backend, GenOutcome, GenRequest, GenResult};
use crate::error::Result;

/// Sends the prompts, as token ids, to a server's `/v1/completions`; the prompts are built
/// here with the model's tokenizer, so the server sees exactly the faithful prompt.
pub struct OpenAiBackend {
    client: Arc<Client>,
    tokenizer: Tokenizer,
}

impl OpenAiBackend {
    pub fn new(client: Arc<Client>, tokenizer: Tokenizer) -> Self {
        Self { client, tokenizer }
    }

    pub fn client(&self) -> &Client {
        &self.client
    }
}

impl Backend for OpenAiBackend {
    fn describe(&self) -> String {
        format!("openai {}", self.client.model())
    }

    fn tokenizer(&self) -> &Tokenizer {
        &self.tokenizer
    }

    fn generate(&self, requests: &[GenRequest]) -> Result<Vec<GenOutcome>> {
        let wire: Vec<CompletionRequest> = requests
            .iter()
            .map(|request| CompletionRequest {
                prompt_ids: request.prompt_ids.clone(),
                // For servers that only take text; the ids are what was meant.
                prompt_text: self
                    .tokenizer
                    .decode(&request.prompt_ids, false)
                    .unwrap_or_default(),
                max_tokens: request.max_new_tokens,
                stop: Vec::new(),
            })
            .collect();
        Ok(self
            .client
            .complete(&wire)
            .into_iter()
            .map(|answer| match answer {
                Ok(completion) => Ok(GenResult {
                    generated_tokens: completion
                        .completion_tokens
                        .and_then(|n| usize::try_from(n).ok())
                        .unwrap_or(0),
                    text: completion.text,
                }),
                Err(error) => Err(prox_io::error_chain(&error)),
            })
            .collect())
    }
}
