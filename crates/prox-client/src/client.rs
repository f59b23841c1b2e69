//! The client: options, connecting (the health check), and concurrent requests with retries.

use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use reqwest::header::{HeaderMap, HeaderValue, AUTHORIZATION, CONTENT_TYPE, RETRY_AFTER};
use tokio::sync::Semaphore;

use crate::error::{error_chain, quote_body, retryable_status, ClientError};
use crate::metrics::{Metrics, Recorder};
use crate::wire::{
    ChatBody, ChatResponse, CompletionBody, CompletionResponse, ModelList, PromptField,
};

/// The environment variable read for the API key unless told otherwise.
pub const DEFAULT_API_KEY_ENV: &str = "OPENAI_API_KEY";

/// Which form of the prompt a request sends.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum PromptFormat {
    /// `prompt` is the list of token ids (vLLM, SGLang, `prox serve`).
    #[default]
    TokenIds,
    /// `prompt` is the text (servers that only take text).
    Text,
}

/// How to reach a server and how hard to try.
#[derive(Debug, Clone)]
pub struct ClientOptions {
    /// The server's base URL, e.g. `http://127.0.0.1:8000` (a trailing `/v1` is accepted).
    pub endpoint: String,
    /// The model to ask for; `None`: the first one `/v1/models` lists.
    pub model: Option<String>,
    /// The environment variable holding the API key (sent as a bearer token when set).
    pub api_key_env: String,
    /// The most requests started and not finished, across every thread using the client.
    pub max_in_flight: usize,
    /// The limit on one attempt, from connecting to the last byte of the answer.
    pub request_timeout: Duration,
    /// Attempts after the first for a retryable failure.
    pub max_retries: u32,
    /// The wait before the first retry; it doubles with each retry, with jitter.
    pub backoff: Duration,
    /// The longest wait between two attempts.
    pub max_backoff: Duration,
    pub prompt_format: PromptFormat,
    /// Threads of the client's runtime (HTTP, JSON).
    pub threads: usize,
}

impl Default for ClientOptions {
    fn default() -> Self {
        ClientOptions {
            endpoint: "http://127.0.0.1:8000".to_owned(),
            model: None,
            api_key_env: DEFAULT_API_KEY_ENV.to_owned(),
            // Enough to keep a GPU server's continuous batching full.
            max_in_flight: 256,
            request_timeout: Duration::from_secs(600),
            max_retries: 8,
            backoff: Duration::from_millis(200),
            max_backoff: Duration::from_secs(20),
            prompt_format: PromptFormat::TokenIds,
            threads: 2,
        }
    }
}

/// One completion to ask for. Only the prompt form chosen by
/// [`ClientOptions::prompt_format`] is sent; the other may be left empty.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct CompletionRequest {
    pub prompt_ids: Vec<u32>,
    pub prompt_text: String,
    pub max_tokens: usize,
    /// Stop strings (OpenAI's `stop`): the server ends the completion at the first one and
    /// leaves it out of the text. Sent only when not empty.
    pub stop: Vec<String>,
}

/// One message of a chat conversation.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct ChatMessage {
    /// `system`, `user` or `assistant`.
    pub role: String,
    pub content: String,
}

impl ChatMessage {
    pub fn new(role: impl Into<String>, content: impl Into<String>) -> Self {
        ChatMessage {
            role: role.into(),
            content: content.into(),
        }
    }
}

/// One chat completion to ask for (`POST /v1/chat/completions`): the server renders the
/// messages with its model's chat template.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ChatRequest {
    pub messages: Vec<ChatMessage>,
    pub max_tokens: usize,
    /// As [`CompletionRequest::stop`].
    pub stop: Vec<String>,
}

/// A server's answer to one request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Completion {
    /// `choices[0].text`, or for a chat request `choices[0].message.content`.
    pub text: String,
    /// `stop`, `length`, or what the server said; `unknown` when it said nothing.
    pub finish_reason: String,
    pub prompt_tokens: Option<u64>,
    pub completion_tokens: Option<u64>,
}

/// A connected client. `Send + Sync`: share it between threads in an `Arc`.
pub struct Client {
    runtime: tokio::runtime::Runtime,
    shared: Arc<Shared>,
}

/// What every request task needs.
struct Shared {
    http: reqwest::Client,
    completions_url: String,
    chat_url: String,
    model: String,
    options: ClientOptions,
    slots: Arc<Semaphore>,
    recorder: Recorder,
}

/// A failed attempt, and whether it is worth another.
struct AttemptError {
    error: ClientError,
    /// The server's `Retry-After`, when it sent one.
    retry_after: Option<Duration>,
}

impl From<ClientError> for AttemptError {
    fn from(error: ClientError) -> Self {
        AttemptError {
            error,
            retry_after: None,
        }
    }
}

impl Client {
    /// Checks the server (`GET /v1/models`) and settles the model. Errors name the URL and
    /// what answered.
    pub fn connect(options: ClientOptions) -> Result<Client, ClientError> {
        if options.max_in_flight == 0 {
            return Err(ClientError::InvalidOptions(
                "max_in_flight must be at least 1".to_owned(),
            ));
        }
        let base = base_url(&options.endpoint)?;
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(options.threads.max(1))
            .thread_name("prox-client")
            .enable_all()
            .build()
            .map_err(ClientError::Runtime)?;

        let mut headers = HeaderMap::new();
        headers.insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
        if let Some(key) = std::env::var(&options.api_key_env)
            .ok()
            .filter(|key| !key.is_empty())
        {
            let mut value = HeaderValue::from_str(&format!("Bearer {key}")).map_err(|_| {
                ClientError::InvalidOptions(format!(
                    "the API key in ${} is not a valid HTTP header value",
                    options.api_key_env
                ))
            })?;
            value.set_sensitive(true);
            headers.insert(AUTHORIZATION, value);
        }
        let http = reqwest::Client::builder()
            .default_headers(headers)
            .tcp_nodelay(true)
            .pool_idle_timeout(Duration::from_secs(60))
            .build()
            .map_err(|e| ClientError::InvalidOptions(error_chain(&e)))?;

        let models_url = format!("{base}/v1/models");
        let served = runtime.block_on(list_models(&http, &models_url, options.request_timeout))?;
        let model = match &options.model {
            Some(model) if served.contains(model) => model.clone(),
            Some(model) => {
                return Err(ClientError::ModelNotServed {
                    url: models_url,
                    model: model.clone(),
                    served: served.join(", "),
                })
            }
            None => served
                .into_iter()
                .next()
                .ok_or(ClientError::NoModel { url: models_url })?,
        };
        tracing::info!(endpoint = %base, %model, "connected to the inference server");
        let slots = Arc::new(Semaphore::new(options.max_in_flight));
        Ok(Client {
            runtime,
            shared: Arc::new(Shared {
                http,
                completions_url: format!("{base}/v1/completions"),
                chat_url: format!("{base}/v1/chat/completions"),
                model,
                options,
                slots,
                recorder: Recorder::new(),
            }),
        })
    }

    /// The model the requests ask for.
    pub fn model(&self) -> &str {
        &self.shared.model
    }

    /// Sends every request, at most [`ClientOptions::max_in_flight`] at a time (shared with
    /// other threads' calls), retrying as the crate documentation says. The results are in
    /// request order, one per request.
    pub fn complete(&self, requests: &[CompletionRequest]) -> Vec<Result<Completion, ClientError>> {
        self.send_all(requests, Endpoint::Completions, |request| {
            self.shared.body(request)
        })
    }

    /// Sends every chat request to `/v1/chat/completions`, as [`Client::complete`] sends
    /// completions: bounded, retried, results in request order.
    pub fn chat(&self, requests: &[ChatRequest]) -> Vec<Result<Completion, ClientError>> {
        self.send_all(requests, Endpoint::Chat, |request| {
            self.shared.chat_body(request)
        })
    }

    fn send_all<R>(
        &self,
        requests: &[R],
        endpoint: Endpoint,
        body: impl Fn(&R) -> Bytes,
    ) -> Vec<Result<Completion, ClientError>> {
        self.runtime.block_on(async {
            let mut tasks = Vec::with_capacity(requests.len());
            for request in requests {
                // The slot is taken before the task exists, so that however many requests
                // the caller passes, at most max_in_flight bodies and tasks are alive.
                let slot = self.shared.slots.clone().acquire_owned().await;
                let body = body(request);
                let shared = Arc::clone(&self.shared);
                tasks.push(tokio::spawn(async move {
                    let _slot = slot.map_err(|e| ClientError::Lost(e.to_string()))?;
                    shared.send(body, endpoint).await
                }));
            }
            let mut results = Vec::with_capacity(tasks.len());
            for task in tasks {
                results.push(
                    task.await
                        .unwrap_or_else(|e| Err(ClientError::Lost(e.to_string()))),
                );
            }
            results
        })
    }

    /// What the client has done since it connected.
    pub fn metrics(&self) -> Metrics {
        let free = self.shared.slots.available_permits();
        let in_flight = self.shared.options.max_in_flight.saturating_sub(free) as u64;
        self.shared.recorder.snapshot(in_flight)
    }
}

impl Shared {
    fn body(&self, request: &CompletionRequest) -> Bytes {
        let prompt = match self.options.prompt_format {
            PromptFormat::TokenIds => PromptField::TokenIds(&request.prompt_ids),
            PromptFormat::Text => PromptField::Text(&request.prompt_text),
        };
        let body = CompletionBody {
            model: &self.model,
            prompt,
            max_tokens: request.max_tokens,
            temperature: 0.0,
            stop: &request.stop,
        };
        // Serializing strings and integers into a Vec cannot fail.
        Bytes::from(serde_json::to_vec(&body).unwrap_or_default())
    }

    fn chat_body(&self, request: &ChatRequest) -> Bytes {
        let body = ChatBody {
            model: &self.model,
            messages: &request.messages,
            max_tokens: request.max_tokens,
            temperature: 0.0,
            stop: &request.stop,
        };
        Bytes::from(serde_json::to_vec(&body).unwrap_or_default())
    }

    /// One request through its retries; the metrics record how it ended.
    async fn send(&self, body: Bytes, endpoint: Endpoint) -> Result<Completion, ClientError> {
        let started = Instant::now();
        let mut retries = 0u32;
        loop {
            match self.attempt(body.clone(), endpoint).await {
                Ok(completion) => {
                    self.recorder.success(
                        started.elapsed(),
                        completion.prompt_tokens,
                        completion.completion_tokens,
                    );
                    return Ok(completion);
                }
                Err(failed)
                    if failed.error.is_retryable() && retries < self.options.max_retries =>
                {
                    let wait = self.backoff(retries, failed.retry_after);
                    tracing::debug!(error = %failed.error, ?wait, "retrying");
                    self.recorder.retry();
                    retries += 1;
                    tokio::time::sleep(wait).await;
                }
                Err(failed) => {
                    self.recorder.failure();
                    return Err(if retries == 0 {
                        failed.error
                    } else {
                        ClientError::GaveUp {
                            attempts: retries + 1,
                            last: Box::new(failed.error),
                        }
                    });
                }
            }
        }
    }

    /// Exponential backoff with jitter (between half and all of the doubled wait), so that
    /// many requests failing together do not return together; a server's `Retry-After`
    /// within the cap wins.
    fn backoff(&self, retries: u32, retry_after: Option<Duration>) -> Duration {
        let cap = self.options.max_backoff;
        let doubled = self
            .options
            .backoff
            .saturating_mul(1u32.checked_shl(retries.min(20)).unwrap_or(u32::MAX))
            .min(cap);
        let jittered = doubled.mul_f64(0.5 + 0.5 * fastrand::f64());
        match retry_after {
            Some(after) => after.min(cap).max(jittered),
            None => jittered,
        }
    }

    async fn attempt(&self, body: Bytes, endpoint: Endpoint) -> Result<Completion, AttemptError> {
        let url = match endpoint {
            Endpoint::Completions => &self.completions_url,
            Endpoint::Chat => &self.chat_url,
        };
        let timeout = self.options.request_timeout;
        let response = self
            .http
            .post(url)
            .timeout(timeout)
            .body(body)
            .send()
            .await
            .map_err(|e| transport_error(url, timeout, &e))?;
        let status = response.status().as_u16();
        let retry_after = response
            .headers()
            .get(RETRY_AFTER)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.trim().parse::<u64>().ok())
            .map(Duration::from_secs);
        let bytes = response
            .bytes()
            .await
            .map_err(|e| transport_error(url, timeout, &e))?;
        if !(200..300).contains(&status) {
            return Err(AttemptError {
                error: ClientError::Status {
                    url: url.clone(),
                    status,
                    body: quote_body(&bytes),
                },
                retry_after: retry_after.filter(|_| retryable_status(status)),
            });
        }
        let malformed = |reason: String| ClientError::Malformed {
            url: url.clone(),
            reason,
            body: quote_body(&bytes),
        };
        let (choices, usage) = match endpoint {
            Endpoint::Completions => {
                let parsed: CompletionResponse =
                    serde_json::from_slice(&bytes).map_err(|e| malformed(e.to_string()))?;
                let choices: Vec<(String, Option<String>)> = parsed
                    .choices
                    .into_iter()
                    .map(|c| (c.text, c.finish_reason))
                    .collect();
                (choices, parsed.usage)
            }
            Endpoint::Chat => {
                let parsed: ChatResponse =
                    serde_json::from_slice(&bytes).map_err(|e| malformed(e.to_string()))?;
                let choices: Vec<(String, Option<String>)> = parsed
                    .choices
                    .into_iter()
                    .map(|c| (c.message.content.unwrap_or_default(), c.finish_reason))
                    .collect();
                (choices, parsed.usage)
            }
        };
        let count = choices.len();
        let (text, finish_reason) = choices
            .into_iter()
            .next()
            .filter(|_| count == 1)
            .ok_or_else(|| malformed(format!("{count} choices, expected 1")))?;
        Ok(Completion {
            text,
            finish_reason: finish_reason.unwrap_or_else(|| "unknown".to_owned()),
            prompt_tokens: usage.as_ref().and_then(|u| u.prompt_tokens),
            completion_tokens: usage.as_ref().and_then(|u| u.completion_tokens),
        })
    }
}

/// Which of the two endpoints a request goes to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Endpoint {
    Completions,
    Chat,
}

/// A reqwest error as one of ours: timeout, no connection, or a broken one.
fn transport_error(url: &str, timeout: Duration, error: &reqwest::Error) -> AttemptError {
    let url = url.to_owned();
    AttemptError::from(if error.is_timeout() {
        ClientError::Timeout {
            url,
            after: timeout,
        }
    } else if error.is_connect() {
        ClientError::Unreachable {
            url,
            reason: error_chain(error),
        }
    } else {
        ClientError::Transport {
            url,
            reason: error_chain(error),
        }
    })
}

/// `GET /v1/models`: the ids the server lists.
async fn list_models(
    http: &reqwest::Client,
    url: &str,
    timeout: Duration,
) -> Result<Vec<String>, ClientError> {
    let response = http
        .get(url)
        .timeout(timeout)
        .send()
        .await
        .map_err(|e| transport_error(url, timeout, &e).error)?;
    let status = response.status().as_u16();
    let bytes = response
        .bytes()
        .await
        .map_err(|e| transport_error(url, timeout, &e).error)?;
    if status != 200 {
        return Err(ClientError::Status {
            url: url.to_owned(),
            status,
            body: quote_body(&bytes),
        });
    }
    let list: ModelList = serde_json::from_slice(&bytes).map_err(|e| ClientError::Malformed {
        url: url.to_owned(),
        reason: format!("not a model list: {e}"),
        body: quote_body(&bytes),
    })?;
    Ok(list.data.into_iter().map(|m| m.id).collect())
}

/// The endpoint without a trailing `/` or `/v1`, checked to be an http(s) URL.
fn base_url(endpoint: &str) -> Result<String, ClientError> {
    let trimmed = endpoint.trim().trim_end_matches('/');
    let trimmed = trimmed.strip_suffix("/v1").unwrap_or(trimmed);
    let parsed = reqwest::Url::parse(trimmed).map_err(|e| {
        ClientError::InvalidOptions(format!("the endpoint `{endpoint}` is not a URL: {e}"))
    })?;
    if !matches!(parsed.scheme(), "http" | "https") || parsed.host_str().is_none() {
        return Err(ClientError::InvalidOptions(format!(
            "the endpoint `{endpoint}` is not an http:// or https:// URL with a host"
        )));
    }
    Ok(trimmed.to_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn endpoints_are_normalized() {
        assert_eq!(base_url("http://h:8000").unwrap(), "http://h:8000");
        assert_eq!(base_url("http://h:8000/").unwrap(), "http://h:8000");
        assert_eq!(base_url("http://h:8000/v1/").unwrap(), "http://h:8000");
        assert_eq!(base_url("https://h/api").unwrap(), "https://h/api");
        assert!(base_url("h:8000").is_err());
        assert!(base_url("ftp://h").is_err());
        assert!(base_url("").is_err());
    }

    #[test]
    fn the_client_is_shareable() {
        fn send_sync<T: Send + Sync>() {}
        send_sync::<Client>();
    }
}
