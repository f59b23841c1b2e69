//! The annotator: any OpenAI-compatible `/v1/chat/completions` endpoint.
//!
//! The run talks to the annotator through the [`ChatModel`] trait, so the transport is this
//! one module: [`HttpChat`] (blocking, over `ureq`) here, a scripted stand-in in tests.
//! `prox-client` speaks `/v1/completions` only, with token-id prompts; a chat API there would
//! replace [`HttpChat`] without touching the rest of the crate.
//!
//! Each request is `POST {endpoint}/v1/chat/completions` with
//! `{"model", "messages": [{"role": "user", "content": …}], "max_tokens", "temperature": 0}`;
//! the fields read from the answer are `choices[0].message.content`,
//! `choices[0].finish_reason` and `usage.prompt_tokens`/`usage.completion_tokens`.
//! A connection error, a timeout or an answer `408`, `429` or `5xx` is retried with
//! exponential backoff (and the server's `Retry-After`, within the cap); any other answer, and
//! a `200` that is not such JSON, fails the request at once.

use std::time::Duration;

use serde_json::{json, Value};

use crate::answer::shorten;
use crate::Error;

/// One question to the annotator: a single user message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ChatRequest {
    pub prompt: String,
    pub max_tokens: usize,
}

/// The annotator's answer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ChatAnswer {
    pub content: String,
    /// `stop`, `length`, or what the server said; `unknown` when it said nothing.
    pub finish_reason: String,
    pub prompt_tokens: Option<u64>,
    pub completion_tokens: Option<u64>,
    /// Attempts it took, 1 when the first one answered.
    pub attempts: u32,
}

/// A request that failed for good.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{message} (after {attempts} attempt(s))")]
pub struct ChatError {
    pub message: String,
    pub attempts: u32,
}

/// Something that answers chat requests. Called from several threads at once.
pub trait ChatModel: Sync {
    fn chat(&self, request: &ChatRequest) -> Result<ChatAnswer, ChatError>;
}

/// Where the annotator is and how hard to try.
#[derive(Debug, Clone)]
pub struct ChatOptions {
    /// The server's base URL, e.g. `http://127.0.0.1:8000` (a trailing `/v1` is accepted).
    pub endpoint: String,
    /// The model to ask for; it must be among those `/v1/models` lists.
    pub model: String,
    /// Sent as `Authorization: Bearer …` when set.
    pub api_key: Option<String>,
    /// The limit on one attempt.
    pub request_timeout: Duration,
    /// Attempts after the first for a retryable failure.
    pub max_retries: u32,
    /// The wait before the first retry; it doubles with each retry, with jitter.
    pub backoff: Duration,
    /// The longest wait between two attempts.
    pub max_backoff: Duration,
}

impl ChatOptions {
    pub fn new(endpoint: impl Into<String>, model: impl Into<String>) -> Self {
        Self {
            endpoint: endpoint.into(),
            model: model.into(),
            api_key: None,
            request_timeout: Duration::from_secs(600),
            max_retries: 5,
            backoff: Duration::from_millis(500),
            max_backoff: Duration::from_secs(30),
        }
    }
}

/// The chat endpoint of an OpenAI-compatible server.
pub struct HttpChat {
    agent: ureq::Agent,
    url: String,
    options: ChatOptions,
}

/// One failed attempt: why, whether another may succeed, and the server's `Retry-After`.
struct Attempt {
    message: String,
    retryable: bool,
    retry_after: Option<Duration>,
}

impl HttpChat {
    /// Checks that the server answers `GET /v1/models` and serves the model.
    pub fn connect(options: ChatOptions) -> Result<Self, Error> {
        let base = base_url(&options.endpoint);
        let agent = ureq::AgentBuilder::new()
            .timeout(options.request_timeout)
            .build();
        let models_url = format!("{base}/v1/models");
        let connect_error = |reason: String| Error::Connect {
            url: models_url.clone(),
            reason,
        };
        let response = authorize(agent.get(&models_url), &options)
            .call()
            .map_err(|e| connect_error(describe_ureq_error(e)))?;
        let body: Value = response
            .into_string()
            .map_err(|e| e.to_string())
            .and_then(|text| serde_json::from_str(&text).map_err(|e| e.to_string()))
            .map_err(|e| connect_error(format!("the model list is not JSON: {e}")))?;
        let served: Vec<&str> = body["data"]
            .as_array()
            .map(|models| models.iter().filter_map(|m| m["id"].as_str()).collect())
            .unwrap_or_default();
        if !served.contains(&options.model.as_str()) {
            return Err(connect_error(format!(
                "the server does not serve `{}` (it serves: {})",
                options.model,
                if served.is_empty() {
                    "nothing".to_owned()
                } else {
                    served.join(", ")
                }
            )));
        }
        tracing::info!(endpoint = %base, model = %options.model, "connected to the annotator");
        Ok(Self {
            agent,
            url: format!("{base}/v1/chat/completions"),
            options,
        })
    }

    fn attempt(&self, body: &str) -> Result<ChatAnswer, Attempt> {
        let response = authorize(self.agent.post(&self.url), &self.options)
            .set("Content-Type", "application/json")
            .send_string(body);
        let response = match response {
            Ok(response) => response,
            Err(ureq::Error::Status(status, response)) => {
                let retry_after = response
                    .header("Retry-After")
                    .and_then(|s| s.trim().parse::<u64>().ok())
                    .map(Duration::from_secs);
                let text = response.into_string().unwrap_or_default();
                return Err(Attempt {
                    message: format!("{} answered {status}: {}", self.url, shorten(&text, 300)),
                    retryable: status == 408 || status == 429 || status >= 500,
                    retry_after,
                });
            }
            Err(error) => {
                return Err(Attempt {
                    message: format!("{}: {}", self.url, describe_ureq_error(error)),
                    retryable: true,
                    retry_after: None,
                })
            }
        };
        let text = response.into_string().map_err(|e| Attempt {
            message: format!("{}: the answer broke off: {e}", self.url),
            retryable: true,
            retry_after: None,
        })?;
        read_answer(&text).ok_or_else(|| Attempt {
            message: format!(
                "{}: the answer is not a chat completion: {}",
                self.url,
                shorten(&text, 300)
            ),
            retryable: false,
            retry_after: None,
        })
    }
}

impl ChatModel for HttpChat {
    fn chat(&self, request: &ChatRequest) -> Result<ChatAnswer, ChatError> {
        let body = json!({
            "model": self.options.model,
            "messages": [{"role": "user", "content": request.prompt}],
            "max_tokens": request.max_tokens,
            "temperature": 0.0,
        })
        .to_string();
        let mut attempts = 0;
        loop {
            attempts += 1;
            match self.attempt(&body) {
                Ok(answer) => return Ok(ChatAnswer { attempts, ..answer }),
                Err(failed) if failed.retryable && attempts <= self.options.max_retries => {
                    let wait = backoff(&self.options, attempts, failed.retry_after);
                    tracing::debug!("{}; retrying in {wait:?}", failed.message);
                    std::thread::sleep(wait);
                }
                Err(failed) => {
                    return Err(ChatError {
                        message: failed.message,
                        attempts,
                    })
                }
            }
        }
    }
}

/// The wait before attempt `attempts + 1`: the backoff doubled per retry, with up to half of
/// it again as jitter so that many threads do not retry in step, or the server's wish; capped.
fn backoff(options: &ChatOptions, attempts: u32, retry_after: Option<Duration>) -> Duration {
    let doubled = options
        .backoff
        .saturating_mul(1u32 << attempts.saturating_sub(1).min(20));
    let jitter = doubled.mul_f64(fastrand::f64() * 0.5);
    retry_after
        .unwrap_or(doubled + jitter)
        .min(options.max_backoff)
}

fn read_answer(text: &str) -> Option<ChatAnswer> {
    let body: Value = serde_json::from_str(text).ok()?;
    let choice = body["choices"].as_array()?.first()?;
    let content = choice["message"]["content"].as_str()?.to_owned();
    Some(ChatAnswer {
        content,
        finish_reason: choice["finish_reason"]
            .as_str()
            .unwrap_or("unknown")
            .to_owned(),
        prompt_tokens: body["usage"]["prompt_tokens"].as_u64(),
        completion_tokens: body["usage"]["completion_tokens"].as_u64(),
        attempts: 1,
    })
}

fn authorize(request: ureq::Request, options: &ChatOptions) -> ureq::Request {
    match &options.api_key {
        Some(key) => request.set("Authorization", &format!("Bearer {key}")),
        None => request,
    }
}

fn base_url(endpoint: &str) -> String {
    let base = endpoint.trim_end_matches('/');
    base.strip_suffix("/v1").unwrap_or(base).to_owned()
}

fn describe_ureq_error(error: ureq::Error) -> String {
    match error {
        ureq::Error::Status(status, response) => {
            let text = response.into_string().unwrap_or_default();
            format!("answered {status}: {}", shorten(&text, 300))
        }
        ureq::Error::Transport(transport) => transport.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_chat_completion_is_read_from_its_first_choice() {
        let answer = read_answer(
            r#"{"choices":[{"message":{"role":"assistant","content":"Score: 3"},"finish_reason":"stop"}],
                "usage":{"prompt_tokens":12,"completion_tokens":4}}"#,
        )
        .expect("a chat completion");
        assert_eq!(answer.content, "Score: 3");
        assert_eq!(answer.finish_reason, "stop");
        assert_eq!(
            (answer.prompt_tokens, answer.completion_tokens),
            (Some(12), Some(4))
        );
        assert_eq!(read_answer(r#"{"choices":[]}"#), None);
        assert_eq!(
            read_answer(r#"{"choices":[{"text":"a completion, not a chat"}]}"#),
            None
        );
        assert_eq!(read_answer("<html>"), None);
    }

    #[test]
    fn endpoints_are_accepted_with_or_without_v1() {
        assert_eq!(base_url("http://h:1/v1/"), "http://h:1");
        assert_eq!(base_url("http://h:1"), "http://h:1");
    }

    #[test]
    fn backoff_doubles_and_is_capped_by_the_maximum_and_retry_after() {
        let mut options = ChatOptions::new("http://h", "m");
        options.backoff = Duration::from_millis(100);
        options.max_backoff = Duration::from_secs(1);
        let first = backoff(&options, 1, None);
        assert!(first >= Duration::from_millis(100) && first <= Duration::from_millis(150));
        let third = backoff(&options, 3, None);
        assert!(third >= Duration::from_millis(400) && third <= Duration::from_millis(600));
        assert_eq!(backoff(&options, 30, None), Duration::from_secs(1));
        assert_eq!(
            backoff(&options, 1, Some(Duration::from_secs(60))),
            Duration::from_secs(1)
        );
    }
}
