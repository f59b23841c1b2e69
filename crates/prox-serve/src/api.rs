//! The HTTP side: routes, request validation, OpenAI-shaped answers and errors.

use std::sync::atomic::Ordering;
use std::sync::mpsc::TrySendError;
use std::sync::Arc;
use std::time::{SystemTime, UNIX_EPOCH};

use axum::extract::{DefaultBodyLimit, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::Router;
use bytes::Bytes;
use prox_engine::{Request, TextGeneration, TextRequest};
use serde_json::{json, Value};
use tokio::sync::oneshot;

use crate::engine::{Sequence, SequenceError};
use crate::AppState;

/// OpenAI's default when `max_tokens` is absent.
const DEFAULT_MAX_TOKENS: usize = 16;

pub(crate) fn router(state: Arc<AppState>) -> Router {
    let limit = state.options.max_body_bytes;
    Router::new()
        .route("/health", get(health))
        .route("/v1/models", get(models))
        .route("/v1/completions", post(completions))
        .route("/v1/chat/completions", post(chat_completions))
        .layer(DefaultBodyLimit::max(limit))
        .with_state(state)
}

/// An error answer in OpenAI's shape: `{"error": {"message", "type", "code"}}`.
struct ApiError {
    status: StatusCode,
    message: String,
}

impl ApiError {
    fn new(status: StatusCode, message: impl Into<String>) -> Self {
        ApiError {
            status,
            message: message.into(),
        }
    }

    fn bad_request(message: impl Into<String>) -> Self {
        ApiError::new(StatusCode::BAD_REQUEST, message)
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let kind = match self.status.as_u16() {
            400..=499 => "invalid_request_error",
            503 => "service_unavailable",
            _ => "server_error",
        };
        let body = json!({"error": {
            "message": self.message,
            "type": kind,
            "code": self.status.as_u16(),
        }});
        (self.status, axum::Json(body)).into_response()
    }
}

fn unix_seconds() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

async fn health(State(state): State<Arc<AppState>>) -> Response {
    if state.shutting_down.load(Ordering::SeqCst) {
        ApiError::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "the server is shutting down",
        )
        .into_response()
    } else {
        axum::Json(json!({"status": "ok"})).into_response()
    }
}

async fn models(State(state): State<Arc<AppState>>) -> Response {
    axum::Json(json!({
        "object": "list",
        "data": [{
            "id": state.options.model_name,
            "object": "model",
            "created": unix_seconds(),
            "owned_by": "prox-rs",
            "max_model_len": state.context,
        }],
    }))
    .into_response()
}

async fn completions(State(state): State<Arc<AppState>>, body: Bytes) -> Response {
    answer(complete(&state, &body).await)
}

async fn chat_completions(State(state): State<Arc<AppState>>, body: Bytes) -> Response {
    answer(chat(&state, &body).await)
}

fn answer(result: Result<Value, ApiError>) -> Response {
    match result {
        Ok(answer) => axum::Json(answer).into_response(),
        Err(error) => {
            tracing::debug!(status = %error.status, message = %error.message, "request refused");
            error.into_response()
        }
    }
}

/// The two endpoints, where their parameters differ.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Endpoint {
    Completions,
    Chat,
}

/// What both endpoints read alike from a request.
struct Common {
    /// The request's number, for its id.
    number: u64,
    params: serde_json::Map<String, Value>,
    max_tokens: usize,
    stop: Vec<String>,
}

/// Parses the body and checks what both endpoints check: not shutting down, the model's
/// name, parameters greedy decoding cannot honour, `max_tokens` and `stop`.
fn common(state: &AppState, body: &[u8], endpoint: Endpoint) -> Result<Common, ApiError> {
    if state.shutting_down.load(Ordering::SeqCst) {
        return Err(ApiError::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "the server is shutting down",
        ));
    }
    let number = state.requests.fetch_add(1, Ordering::Relaxed);
    let params: Value = serde_json::from_slice(body)
        .map_err(|e| ApiError::bad_request(format!("the body is not JSON: {e}")))?;
    let Value::Object(params) = params else {
        return Err(ApiError::bad_request("the body is not a JSON object"));
    };
    if let Some(model) = params.get("model").filter(|m| !m.is_null()) {
        if model.as_str() != Some(state.options.model_name.as_str()) {
            return Err(ApiError::new(
                StatusCode::NOT_FOUND,
                format!(
                    "the model {model} does not exist; this server serves `{}`",
                    state.options.model_name
                ),
            ));
        }
    }
    refuse_what_greedy_cannot_honour(&params, endpoint)?;
    // The chat API's newer name wins over the older one, as in OpenAI's and vLLM's servers.
    let max_tokens = match endpoint {
        Endpoint::Chat => ["max_completion_tokens", "max_tokens"]
            .into_iter()
            .find_map(|name| given(&params, name).map(|v| (name, v))),
        Endpoint::Completions => given(&params, "max_tokens").map(|v| ("max_tokens", v)),
    };
    let max_tokens = match max_tokens {
        None => DEFAULT_MAX_TOKENS,
        Some((name, value)) => value
            .as_u64()
            .and_then(|n| usize::try_from(n).ok())
            .ok_or_else(|| {
                ApiError::bad_request(format!(
                    "`{name}` must be a non-negative integer, not {value}"
                ))
            })?,
    };
    let stop = stop_strings(params.get("stop"))?;
    Ok(Common {
        number,
        params,
        max_tokens,
        stop,
    })
}

/// A parameter that is present and not `null`.
fn given<'p>(params: &'p serde_json::Map<String, Value>, name: &str) -> Option<&'p Value> {
    params.get(name).filter(|v| !v.is_null())
}

/// `stop` as vLLM takes it: absent, `null`, a string, or a list of strings, none empty.
fn stop_strings(stop: Option<&Value>) -> Result<Vec<String>, ApiError> {
    const SHAPE: &str = "`stop` must be a string or a list of strings";
    let stop = match stop {
        None | Some(Value::Null) => Vec::new(),
        Some(Value::String(one)) => vec![one.clone()],
        Some(Value::Array(items)) => items
            .iter()
            .map(|item| match item {
                Value::String(text) => Ok(text.clone()),
                other => Err(ApiError::bad_request(format!(
                    "{SHAPE}; {other} is not a string"
                ))),
            })
            .collect::<Result<_, _>>()?,
        Some(other) => return Err(ApiError::bad_request(format!("{SHAPE}, not {other}"))),
    };
    if stop.iter().any(String::is_empty) {
        return Err(ApiError::bad_request(
            "`stop` cannot contain an empty string",
        ));
    }
    Ok(stop)
}

/// Queues the prompts as one job and waits for their generations, in order.
async fn generate(
    state: &AppState,
    prompts: Vec<Vec<u32>>,
    max_tokens: usize,
    stop: &[String],
) -> Result<Vec<TextGeneration>, ApiError> {
    let mut replies = Vec::with_capacity(prompts.len());
    let mut job = Vec::with_capacity(prompts.len());
    for prompt_ids in prompts {
        let (reply, answer) = oneshot::channel();
        replies.push(answer);
        job.push(Sequence {
            request: TextRequest {
                request: Request {
                    prompt_ids,
                    max_new_tokens: max_tokens,
                },
                stop: stop.to_vec(),
            },
            reply,
        });
    }
    state.jobs.try_send(job).map_err(|e| {
        let reason = match e {
            TrySendError::Full(_) => format!(
                "the queue is full ({} requests waiting); try again later",
                state.options.max_queue
            ),
            TrySendError::Disconnected(_) => "the engine has stopped".to_owned(),
        };
        ApiError::new(StatusCode::SERVICE_UNAVAILABLE, reason)
    })?;

    let mut generations = Vec::with_capacity(replies.len());
    for (index, answer) in replies.into_iter().enumerate() {
        let generation = answer
            .await
            .map_err(|_| {
                ApiError::new(
                    StatusCode::INTERNAL_SERVER_ERROR,
                    "the engine stopped before answering",
                )
            })?
            .map_err(|error| {
                let status = match error {
                    SequenceError::Request(_) => StatusCode::BAD_REQUEST,
                    SequenceError::Engine(_) => StatusCode::INTERNAL_SERVER_ERROR,
                    SequenceError::ShuttingDown => StatusCode::SERVICE_UNAVAILABLE,
                };
                ApiError::new(status, format!("prompt {index}: {error}"))
            })?;
        generations.push(generation);
    }
    Ok(generations)
}

fn usage(prompt_tokens: usize, completion_tokens: usize) -> Value {
    json!({
        "prompt_tokens": prompt_tokens,
        "completion_tokens": completion_tokens,
        "total_tokens": prompt_tokens + completion_tokens,
    })
}

async fn complete(state: &AppState, body: &[u8]) -> Result<Value, ApiError> {
    let request = common(state, body, Endpoint::Completions)?;
    let prompts = prompts(state, request.params.get("prompt"))?;
    let prompt_tokens: usize = prompts.iter().map(Vec::len).sum();
    let generations = generate(state, prompts, request.max_tokens, &request.stop).await?;
    let completion_tokens = generations.iter().map(|g| g.generation.ids.len()).sum();
    let choices: Vec<Value> = generations
        .into_iter()
        .enumerate()
        .map(|(index, g)| {
            json!({
                "index": index,
                "text": g.text,
                "logprobs": null,
                "finish_reason": g.generation.finish_reason.as_str(),
                "stop_reason": g.stop,
                "token_ids": g.generation.ids,
            })
        })
        .collect();
    Ok(json!({
        "id": format!("cmpl-{}", request.number),
        "object": "text_completion",
        "created": unix_seconds(),
        "model": state.options.model_name,
        "choices": choices,
        "usage": usage(prompt_tokens, completion_tokens),
    }))
}

async fn chat(state: &AppState, body: &[u8]) -> Result<Value, ApiError> {
    let request = common(state, body, Endpoint::Chat)?;
    let (template, tokens) = state
        .chat
        .as_ref()
        .map_err(|reason| ApiError::bad_request(reason.clone()))?;
    let messages = messages(request.params.get("messages"))?;
    let add_generation_prompt = match given(&request.params, "add_generation_prompt") {
        None => true,
        Some(Value::Bool(add)) => *add,
        Some(other) => {
            return Err(ApiError::bad_request(format!(
                "`add_generation_prompt` must be a boolean, not {other}"
            )))
        }
    };
    let pairs: Vec<(&str, &str)> = messages
        .iter()
        .map(|(role, content)| (role.as_str(), content.as_str()))
        .collect();
    let text = template
        .render_messages(&pairs, tokens, add_generation_prompt)
        .map_err(|e| ApiError::bad_request(format!("cannot render the messages: {e}")))?;
    // The template writes the BOS it wants; the tokenizer adds none (as vLLM's chat).
    let prompt_ids = state
        .tokenizer
        .encode(&text, false)
        .map_err(|e| ApiError::bad_request(format!("cannot tokenize the prompt: {e}")))?;
    let prompt_tokens = prompt_ids.len();
    let generation = generate(state, vec![prompt_ids], request.max_tokens, &request.stop)
        .await?
        .remove(0);
    Ok(json!({
        "id": format!("chatcmpl-{}", request.number),
        "object": "chat.completion",
        "created": unix_seconds(),
        "model": state.options.model_name,
        "choices": [{
            "index": 0,
            "message": {"role": "assistant", "content": generation.text},
            "logprobs": null,
            "finish_reason": generation.generation.finish_reason.as_str(),
            "stop_reason": generation.stop,
        }],
        "usage": usage(prompt_tokens, generation.generation.ids.len()),
    }))
}

/// A chat request's `messages` as `(role, content)`: content a string, a list of text
/// parts (joined with newlines, as vLLM joins them), or `null` (an empty string).
fn messages(messages: Option<&Value>) -> Result<Vec<(String, String)>, ApiError> {
    let items = match messages {
        Some(Value::Array(items)) if !items.is_empty() => items,
        Some(Value::Array(_)) => return Err(ApiError::bad_request("`messages` is empty")),
        None | Some(Value::Null) => return Err(ApiError::bad_request("`messages` is missing")),
        Some(_) => return Err(ApiError::bad_request("`messages` must be a list")),
    };
    items
        .iter()
        .enumerate()
        .map(|(index, message)| {
            let bad = |what: &str| ApiError::bad_request(format!("messages[{index}]: {what}"));
            let role = message
                .get("role")
                .and_then(Value::as_str)
                .ok_or_else(|| bad("`role` must be a string"))?;
            let content = match message.get("content") {
                None | Some(Value::Null) => String::new(),
                Some(Value::String(text)) => text.clone(),
                Some(Value::Array(parts)) => parts
                    .iter()
                    .map(|part| match (part.get("type").and_then(Value::as_str), part.get("text")) {
                        (Some("text"), Some(Value::String(text))) => Ok(text.as_str()),
                        _ => Err(bad("only text content parts (`{\"type\": \"text\", \"text\": …}`) are supported")),
                    })
                    .collect::<Result<Vec<&str>, _>>()?
                    .join("\n"),
                Some(_) => return Err(bad("`content` must be a string or a list of text parts")),
            };
            Ok((role.to_owned(), content))
        })
        .collect()
}

/// Sampling parameters this server cannot honour: refused, because ignoring them would
/// silently return something other than what was asked.
fn refuse_what_greedy_cannot_honour(
    params: &serde_json::Map<String, Value>,
    endpoint: Endpoint,
) -> Result<(), ApiError> {
    let given = |name: &str| given(params, name);
    let number_is =
        |name: &str, neutral: f64| given(name).is_none_or(|v| v.as_f64() == Some(neutral));
    let is_true = |name: &str| given(name).is_some_and(|v| v != &Value::Bool(false));
    if !number_is("temperature", 0.0) {
        return Err(ApiError::bad_request(
            "only greedy decoding is served: `temperature` must be 0 or absent",
        ));
    }
    for (name, neutral) in [
        ("n", 1.0),
        ("best_of", 1.0),
        ("presence_penalty", 0.0),
        ("frequency_penalty", 0.0),
        ("repetition_penalty", 1.0),
        ("min_tokens", 0.0),
    ] {
        if !number_is(name, neutral) {
            return Err(ApiError::bad_request(format!(
                "`{name}` other than {neutral} is not supported"
            )));
        }
    }
    if is_true("stream") {
        return Err(ApiError::bad_request("streaming is not supported"));
    }
    for name in ["echo", "ignore_eos", "include_stop_str_in_output"] {
        if is_true(name) {
            return Err(ApiError::bad_request(format!("`{name}` is not supported")));
        }
    }
    if given("stop_token_ids").is_some_and(|v| !v.as_array().is_some_and(Vec::is_empty)) {
        return Err(ApiError::bad_request(
            "`stop_token_ids` is not supported; use `stop` strings",
        ));
    }
    match endpoint {
        Endpoint::Completions => {
            for name in ["logprobs", "suffix"] {
                if given(name).is_some() {
                    return Err(ApiError::bad_request(format!("`{name}` is not supported")));
                }
            }
        }
        Endpoint::Chat => {
            // In the chat API `logprobs` is a flag.
            if is_true("logprobs") {
                return Err(ApiError::bad_request("`logprobs` is not supported"));
            }
            for name in ["top_logprobs", "functions", "function_call", "logit_bias"] {
                if given(name).is_some() {
                    return Err(ApiError::bad_request(format!("`{name}` is not supported")));
                }
            }
            if given("tools").is_some_and(|v| !v.as_array().is_some_and(Vec::is_empty)) {
                return Err(ApiError::bad_request("`tools` are not supported"));
            }
            if given("response_format").is_some_and(|v| v != &json!({"type": "text"})) {
                return Err(ApiError::bad_request(
                    "`response_format` other than {\"type\": \"text\"} is not supported",
                ));
            }
        }
    }
    Ok(())
}

/// The prompts of a request as token ids, text prompts tokenized as `prox generate` does.
fn prompts(state: &AppState, prompt: Option<&Value>) -> Result<Vec<Vec<u32>>, ApiError> {
    const SHAPE: &str =
        "`prompt` must be a string, a list of token ids, a list of strings or a list of lists of token ids";
    let tokenize = |text: &str| {
        state
            .tokenizer
            .encode(text, true)
            .map_err(|e| ApiError::bad_request(format!("cannot tokenize the prompt: {e}")))
    };
    let token_ids = |items: &[Value]| -> Result<Vec<u32>, ApiError> {
        items
            .iter()
            .map(|v| {
                v.as_u64()
                    .and_then(|n| u32::try_from(n).ok())
                    .ok_or_else(|| ApiError::bad_request(format!("{SHAPE}; {v} is not a token id")))
            })
            .collect()
    };
    let prompts = match prompt {
        Some(Value::String(text)) => vec![tokenize(text)?],
        Some(Value::Array(items)) => match items.first() {
            None => return Err(ApiError::bad_request("`prompt` is an empty list")),
            Some(Value::Number(_)) => vec![token_ids(items)?],
            Some(Value::String(_)) => items
                .iter()
                .map(|item| match item {
                    Value::String(text) => tokenize(text),
                    _ => Err(ApiError::bad_request(SHAPE)),
                })
                .collect::<Result<_, _>>()?,
            Some(Value::Array(_)) => items
                .iter()
                .map(|item| match item {
                    Value::Array(ids) => token_ids(ids),
                    _ => Err(ApiError::bad_request(SHAPE)),
                })
                .collect::<Result<_, _>>()?,
            Some(_) => return Err(ApiError::bad_request(SHAPE)),
        },
        None | Some(Value::Null) => return Err(ApiError::bad_request("`prompt` is missing")),
        Some(_) => return Err(ApiError::bad_request(SHAPE)),
    };
    if prompts.len() > state.options.max_prompts_per_request {
        return Err(ApiError::bad_request(format!(
            "{} prompts in one request; at most {} are accepted",
            prompts.len(),
            state.options.max_prompts_per_request
        )));
    }
    Ok(prompts)
}
