//! A backend that answers from what the prompt says, without a model: `DROPME` documents are
//! dropped by the document stage, `FAILME` chunks fail, a chunk with `noise` loses its first
//! line and `teh` is normalized. It can be told to stop answering, as a server that goes away.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

use prox_refine::{Backend, Error, GenRequest, GenResult};
use prox_tokenizer::Tokenizer;

/// Long enough, at eleven words, for a document to be kept.
pub const LONG: &str = "eleven words are here so that the document is long enough to keep";

pub struct Scripted {
    tokenizer: Tokenizer,
    /// Model calls so far, of either stage.
    calls: AtomicUsize,
    /// The model call (from 0) from which every call fails.
    fail_from_call: Option<usize>,
}

impl Scripted {
    pub fn new() -> Self {
        Scripted {
            tokenizer: Tokenizer::from_dir(&prox_test::fixture("llama2-tokenizer")).unwrap(),
            calls: AtomicUsize::new(0),
            fail_from_call: None,
        }
    }

    /// A backend whose model call `call` (from 0, counting both stages' calls) and every
    /// later one fail, as when the server goes away in the middle of a task.
    pub fn failing_from_call(call: usize) -> Self {
        Scripted {
            fail_from_call: Some(call),
            ..Scripted::new()
        }
    }

    /// `answer` for the prompt of each request, unless this call is one that fails.
    fn answer_each(
        &self,
        requests: &[GenRequest],
        answer: impl Fn(&str) -> Result<GenResult, String>,
    ) -> prox_refine::Result<Vec<Result<GenResult, String>>> {
        let call = self.calls.fetch_add(1, Ordering::SeqCst);
        if self.fail_from_call.is_some_and(|first| call >= first) {
            return Err(Error::Backend("the server went away".to_owned()));
        }
        Ok(requests
            .iter()
            .map(|request| answer(&self.tokenizer.decode(&request.prompt_ids, false).unwrap()))
            .collect())
    }
}

impl Backend for Scripted {
    fn describe(&self) -> String {
        "scripted".to_owned()
    }

    fn tokenizer(&self) -> &Tokenizer {
        &self.tokenizer
    }

    fn generate(
        &self,
        requests: &[GenRequest],
    ) -> prox_refine::Result<Vec<Result<GenResult, String>>> {
        self.answer_each(requests, |prompt| {
            if prompt.contains("FAILME") {
                return Err("the server answered 500".to_owned());
            }
            let mut program = Vec::new();
            if prompt.contains("noise") {
                program.push("remove_lines(start=0, end=0)".to_owned());
            }
            if prompt.contains("teh") {
                program.push("normalize(source_str=\"teh\", target_str=\"the\")".to_owned());
            }
            if program.is_empty() {
                program.push("untouch_doc()".to_owned());
            }
            Ok(GenResult {
                text: format!(" {} ", program.join("\n")),
                generated_tokens: program.len() * 10,
            })
        })
    }

    fn decide_doc(
        &self,
        requests: &[GenRequest],
    ) -> prox_refine::Result<Vec<Result<GenResult, String>>> {
        self.answer_each(requests, |prompt| {
            let text = if prompt.contains("DROPME") {
                "drop_doc()"
            } else {
                "keep_doc()"
            };
            Ok(GenResult {
                text: text.to_owned(),
                generated_tokens: 4,
            })
        })
    }
}

/// A [`Scripted`] backend that always answers.
pub fn backend() -> Arc<dyn Backend> {
    Arc::new(Scripted::new())
}
