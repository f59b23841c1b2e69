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
use crate::request::{
    parse_chat, parse_completions, Chat, Prompt, RequestBody, RequestError, RequestErrorKind, Rules,
};
use crate::AppState;

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

impl From<RequestError> for ApiError {
    fn from(error: RequestError) -> Self {
        let status = match error.kind {
            RequestErrorKind::BadRequest => StatusCode::BAD_REQUEST,
            RequestErrorKind::UnknownModel => StatusCode::NOT_FOUND,
        };
        ApiError::new(status, error.message)
    }
}

/// Refuses requests once shutting down, numbers the request (for its id) and parses its body.
fn accept<I>(
    state: &AppState,
    body: &[u8],
    parse: fn(&[u8], &Rules<'_>) -> Result<RequestBody<I>, RequestError>,
) -> Result<(u64, RequestBody<I>), ApiError> {
    if state.shutting_down.load(Ordering::SeqCst) {
        return Err(ApiError::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "the server is shutting down",
        ));
    }
    let number = state.requests.fetch_add(1, Ordering::Relaxed);
    let rules = Rules {
        model_name: &state.options.model_name,
        max_prompts_per_request: state.options.max_prompts_per_request,
        chat_unavailable: state.chat.as_ref().err().map(String::as_str),
    };
    Ok((number, parse(body, &rules)?))
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
    let (number, request) = accept(state, body, parse_completions)?;
    let prompts = request
        .input
        .into_iter()
        .map(|prompt| prompt_ids(state, prompt))
        .collect::<Result<Vec<_>, _>>()?;
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
        "id": format!("cmpl-{number}"),
        "object": "text_completion",
        "created": unix_seconds(),
        "model": state.options.model_name,
        "choices": choices,
        "usage": usage(prompt_tokens, completion_tokens),
    }))
}

async fn chat(state: &AppState, body: &[u8]) -> Result<Value, ApiError> {
    let (number, request) = accept(state, body, parse_chat)?;
    let Chat {
        messages,
        add_generation_prompt,
    } = request.input;
    let (template, tokens) = state
        .chat
        .as_ref()
        .map_err(|reason| ApiError::bad_request(reason.clone()))?;
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
        "id": format!("chatcmpl-{number}"),
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

/// A prompt as token ids: text tokenized as `prox generate` does, ids as they are.
fn prompt_ids(state: &AppState, prompt: Prompt) -> Result<Vec<u32>, ApiError> {
    match prompt {
        Prompt::Text(text) => state
            .tokenizer
            .encode(&text, true)
            .map_err(|e| ApiError::bad_request(format!("cannot tokenize the prompt: {e}"))),
        Prompt::Ids(ids) => Ok(ids),
    }
}
