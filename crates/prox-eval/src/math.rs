//! The embedded engine as the math harness's [`Generator`]: greedy decoding, stop strings
//! matched on the decoded text.

use prox_engine::{GenerateOptions, Model, Request, TextRequest};
use prox_math::{GenerationParams, Generator};

use crate::error::{Error, Result};

/// Generation with the embedded engine for `prox math-eval run`.
pub struct EngineGenerator {
    model: Model,
}

impl EngineGenerator {
    /// A generator over `model`, which must have a tokenizer (the harness's prompts are text).
    pub fn new(model: Model) -> Result<EngineGenerator> {
        if model.tokenizer.is_none() {
            return Err(Error::Model(format!(
                "the model {} has no tokenizer; math-eval prompts are text",
                model.source.display()
            )));
        }
        Ok(EngineGenerator { model })
    }
}

impl Generator for EngineGenerator {
    fn complete(
        &mut self,
        prompts: &[String],
        params: &GenerationParams,
    ) -> Vec<std::result::Result<String, String>> {
        let tokenizer = self
            .model
            .tokenizer
            .as_ref()
            .expect("checked when the generator was made");
        let mut results: Vec<std::result::Result<String, String>> =
            vec![Ok(String::new()); prompts.len()];
        let mut requests = Vec::with_capacity(prompts.len());
        let mut positions = Vec::with_capacity(prompts.len());
        for (i, prompt) in prompts.iter().enumerate() {
            match tokenizer.encode(prompt, true) {
                Ok(prompt_ids) => {
                    requests.push(TextRequest {
                        request: Request {
                            prompt_ids,
                            max_new_tokens: params.max_new_tokens,
                        },
                        stop: params.stop.clone(),
                    });
                    positions.push(i);
                }
                Err(e) => results[i] = Err(format!("cannot tokenize the prompt: {e}")),
            }
        }
        match prox_engine::generate_text(
            &self.model.llama,
            tokenizer,
            &requests,
            &GenerateOptions::default(),
        ) {
            Ok(generations) => {
                for (i, generation) in positions.into_iter().zip(generations) {
                    results[i] = generation.map(|g| g.text).map_err(|e| e.to_string());
                }
            }
            Err(e) => {
                for i in positions {
                    results[i] = Err(format!("generation failed: {e}"));
                }
            }
        }
        results
    }
}
