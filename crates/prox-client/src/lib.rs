//! A client for the `/v1/completions` and `/v1/chat/completions` endpoints of
//! OpenAI-compatible inference servers: vLLM, SGLang, llama.cpp's server and `prox serve`.
//!
//! The refine pipeline is synchronous and thread-based, so the API is blocking:
//! [`Client::connect`] checks the server, [`Client::complete`] sends a slice of requests
//! concurrently and returns one result per request, in request order. Any number of threads
//! may share one [`Client`] (it is `Send + Sync`; wrap it in an `Arc`): the bound on requests
//! in flight, the connection pool and the [`Metrics`] are shared. The client runs its own
//! small tokio runtime; do not call it from inside an async runtime.
//!
//! # What goes over the wire
//!
//! At [`Client::connect`]: `GET {endpoint}/v1/models`. The answer must be `200` with JSON
//! `{"data": [{"id": "…"}, …]}`; only `data[].id` is read. Without
//! [`ClientOptions::model`], the first id is the model; with it, it must be among the ids.
//!
//! Each [`CompletionRequest`] is one `POST {endpoint}/v1/completions` with the JSON body
//!
//! ```json
//! {"model": "<model>", "prompt": [1, 3923, 338], "max_tokens": 512, "temperature": 0.0}
//! ```
//!
//! (plus `"stop": [...]` when [`CompletionRequest::stop`] is not empty) and nothing else:
//! `prompt` is the token ids ([`PromptFormat::TokenIds`], the default:
//! vLLM and SGLang take a list of ints as one pre-tokenized prompt and add no BOS, so the
//! model sees exactly the ids ProX-rs built) or the text ([`PromptFormat::Text`], for servers
//! that only take text; the server tokenizes it and usually adds its BOS). `temperature: 0`
//! is greedy decoding. The answer must be `200` with JSON holding exactly one choice; the
//! fields read are `choices[0].text`, `choices[0].finish_reason` (`null` or absent reads as
//! `"unknown"`), and `usage.prompt_tokens` and `usage.completion_tokens` (both optional).
//! Every other field is ignored.
//!
//! [`Client::chat`] sends each [`ChatRequest`] as `POST {endpoint}/v1/chat/completions` with
//! `{"model", "messages": [{"role", "content"}, …], "max_tokens", "temperature": 0.0}` (and
//! `stop` when given), and reads `choices[0].message.content` (`null` reads as empty),
//! `choices[0].finish_reason` and `usage` the same way, into the same [`Completion`].
//!
//! With the environment variable named by [`ClientOptions::api_key_env`] set and not empty,
//! every request carries `Authorization: Bearer <its value>`.
//!
//! # Failures and retries
//!
//! A connection error, a timeout (per attempt, [`ClientOptions::request_timeout`]), a broken
//! connection, or an answer `408`, `429` or `5xx` is retried up to
//! [`ClientOptions::max_retries`] times, after an exponential backoff with jitter (starting at
//! [`ClientOptions::backoff`], doubling, at most [`ClientOptions::max_backoff`]; a
//! `Retry-After` header in seconds is honoured within that cap). Any other answer, and a `200`
//! whose body is not the JSON above ([`ClientError::Malformed`], with the body quoted,
//! shortened), fails the request at once. A request that still fails is an `Err` in its slot
//! of the results: never dropped, never silently replaced.

mod client;
mod error;
mod metrics;
mod wire;

pub use crate::client::{
    ChatMessage, ChatRequest, Client, ClientOptions, Completion, CompletionRequest, PromptFormat,
    DEFAULT_API_KEY_ENV,
};
pub use crate::error::ClientError;
pub use crate::metrics::Metrics;
