//! The annotator: any OpenAI-compatible `/v1/chat/completions` endpoint, through
//! `prox-client`.
//!
//! The run talks to the annotator through the [`ChatModel`] trait, so the transport is this
//! one module: [`ClientChat`] over [`prox_client::Client::chat`] (bounded requests in flight,
//! retries with backoff on connection errors, timeouts, 408, 429 and 5xx), a scripted
//! stand-in in tests.

use prox_client::{ChatMessage, Client, ClientOptions, Completion};

use crate::Error;

/// One question to the annotator: a single user message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ChatRequest {
    pub prompt: String,
    pub max_tokens: usize,
}

/// A request that failed for good (after its retries), with its causes.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct ChatError(pub String);

/// Something that answers chat requests.
pub trait ChatModel: Sync {
    /// Answers every request (as many at once as the transport allows); one result per
    /// request, in request order: the answer's text, why it stopped, and its token counts.
    fn chat(&self, requests: &[ChatRequest]) -> Vec<Result<Completion, ChatError>>;

    /// Attempts beyond the first so far, over every request (0 when the transport does not
    /// retry).
    fn retries(&self) -> u64 {
        0
    }
}

/// The chat endpoint of an OpenAI-compatible server, through `prox-client`.
pub struct ClientChat {
    client: Client,
}

impl ClientChat {
    /// Connects (`GET /v1/models`, which must list the model). `options.model` must be set:
    /// an annotator is chosen, not whatever the server serves first.
    pub fn connect(options: ClientOptions) -> Result<Self, Error> {
        let url = options.endpoint.clone();
        if options.model.is_none() {
            return Err(Error::Connect {
                url,
                reason: "no annotator model named".to_owned(),
            });
        }
        let client = Client::connect(options).map_err(|e| Error::Connect {
            url,
            reason: prox_io::error_chain(&e),
        })?;
        Ok(Self { client })
    }

    /// The client's own counts (requests, retries, tokens, rates).
    pub fn metrics(&self) -> prox_client::Metrics {
        self.client.metrics()
    }
}

impl ChatModel for ClientChat {
    fn chat(&self, requests: &[ChatRequest]) -> Vec<Result<Completion, ChatError>> {
        let requests: Vec<prox_client::ChatRequest> = requests
            .iter()
            .map(|request| prox_client::ChatRequest {
                messages: vec![ChatMessage::new("user", request.prompt.clone())],
                max_tokens: request.max_tokens,
                stop: Vec::new(),
            })
            .collect();
        self.client
            .chat(&requests)
            .into_iter()
            .map(|result| result.map_err(|e| ChatError(prox_io::error_chain(&e))))
            .collect()
    }

    fn retries(&self) -> u64 {
        self.client.metrics().retries
    }
}
