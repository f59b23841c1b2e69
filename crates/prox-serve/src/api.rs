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
use prox_engine::Request;
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
    match complete(&state, &body).await {
        Ok(answer) => axum::Json(answer).into_response(),
        Err(error) => {
            tracing::debug!(status = %error.status, message = %error.message, "request refused");
            error.into_response()
        }
    }
}

async fn complete(state: &AppState, body: &[u8]) -> Result<Value, ApiError> {
    if state.shutting_down.load(Ordering::SeqCst) {
        return Err(ApiError::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "the server is shutting down",
        ));
    }
    let number = state.requests.fetch_add(1, Ordering::Relaxed);
    let params: Value = serde_json::from_slice(body)
        .map_err(|e| ApiError::bad_request(format!("the body is not JSON: {e}")))?;
    let params = params
        .as_object()
        .ok_or_else(|| ApiError::bad_request("the body is not a JSON object"))?;
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
    refuse_what_greedy_cannot_honour(params)?;
    let max_tokens = match params.get("max_tokens") {
        None | Some(Value::Null) => DEFAULT_MAX_TOKENS,
        Some(value) => value
            .as_u64()
            .and_then(|n| usize::try_from(n).ok())
            .ok_or_else(|| {
                ApiError::bad_request(format!(
                    "`max_tokens` must be a non-negative integer, not {value}"
                ))
            })?,
    };
    let prompts = prompts(state, params.get("prompt"))?;

    let mut replies = Vec::with_capacity(prompts.len());
    let mut job = Vec::with_capacity(prompts.len());
    let prompt_tokens: usize = prompts.iter().map(Vec::len).sum();
    for prompt_ids in prompts {
        let (reply, answer) = oneshot::channel();
        replies.push(answer);
        job.push(Sequence {
            request: Request {
                prompt_ids,
                max_new_tokens: max_tokens,
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

    let mut choices = Vec::with_capacity(replies.len());
    let mut completion_tokens = 0;
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
        let text = state.tokenizer.decode(&generation.ids, true).map_err(|e| {
            ApiError::new(
                StatusCode::INTERNAL_SERVER_ERROR,
                format!("cannot decode the generated ids: {e}"),
            )
        })?;
        completion_tokens += generation.ids.len();
        choices.push(json!({
            "index": index,
            "text": text,
            "logprobs": null,
            "finish_reason": generation.finish_reason.as_str(),
            "token_ids": generation.ids,
        }));
    }
    Ok(json!({
        "id": format!("cmpl-{number}"),
        "object": "text_completion",
        "created": unix_seconds(),
        "model": state.options.model_name,
        "choices": choices,
        "usage": {
            "prompt_tokens": prompt_tokens,
            "completion_tokens": completion_tokens,
            "total_tokens": prompt_tokens + completion_tokens,
        },
    }))
}

/// Sampling parameters this server cannot honour: refused, because ignoring them would
/// silently return something other than what was asked.
fn refuse_what_greedy_cannot_honour(
    params: &serde_json::Map<String, Value>,
) -> Result<(), ApiError> {
    let given = |name: &str| params.get(name).filter(|v| !v.is_null());
    let number_is =
        |name: &str, neutral: f64| given(name).is_none_or(|v| v.as_f64() == Some(neutral));
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
    ] {
        if !number_is(name, neutral) {
            return Err(ApiError::bad_request(format!(
                "`{name}` other than {neutral} is not supported"
            )));
        }
    }
    if given("stream").is_some_and(|v| v != &Value::Bool(false)) {
        return Err(ApiError::bad_request("streaming is not supported"));
    }
    if given("echo").is_some_and(|v| v != &Value::Bool(false)) {
        return Err(ApiError::bad_request("`echo` is not supported"));
    }
    for name in ["logprobs", "suffix"] {
        if given(name).is_some() {
            return Err(ApiError::bad_request(format!("`{name}` is not supported")));
        }
    }
    if given("stop").is_some_and(|v| !(v.as_array().is_some_and(Vec::is_empty))) {
        return Err(ApiError::bad_request(
            "`stop` is not supported: generation stops at the model's end-of-sequence token",
        ));
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
