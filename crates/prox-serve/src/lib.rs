//! `prox serve`: an OpenAI-compatible HTTP server over the embedded engine, so that several
//! pipeline workers (or any OpenAI client) share one loaded model.
//!
//! - `GET /health`: `200 {"status":"ok"}`; `503` once shutting down.
//! - `GET /v1/models`: the one model, `{"object":"list","data":[{"id":…,"object":"model",
//!   "owned_by":"prox-rs","max_model_len":…}]}`.
//! - `POST /v1/completions`: `model` (optional; when given it must be the served name),
//!   `prompt` (a string, a list of token ids, a list of strings, or a list of lists of token
//!   ids), `max_tokens` (default 16, as OpenAI's). Decoding is greedy: `temperature` must be
//!   absent or 0, and what would change greedy output (`n` or `best_of` above 1,
//!   penalties, `logprobs`, `echo`, `suffix`, `stream`, `ignore_eos`) is refused with `400` rather than
//!   ignored. A text prompt is tokenized as `prox generate` does (special tokens recognised,
//!   the tokenizer's BOS added); token ids are taken as they are. The answer is OpenAI's
//!   `text_completion` object, one choice per prompt in order, each with `text` (special
//!   tokens skipped), `finish_reason` (`stop` or `length`) and `token_ids` (vLLM's name for
//!   the generated ids), and `usage`.
//! - `stop` (both endpoints, default none): a string or a list of strings, as vLLM takes it. A generation
//!   ends at the token that completes the first stop string in its decoded text (special
//!   tokens skipped; a stop string may span tokens); `text` is what comes before it,
//!   `finish_reason` is `stop` and `stop_reason` the stop string (`null` when the
//!   end-of-sequence token or the limit ended it). `token_ids` hold every generated id, those
//!   of the stop string included, and `usage` counts them. An empty stop string is refused;
//!   so is vLLM's `include_stop_str_in_output: true`, and `stop_token_ids`. When two stop
//!   strings complete at the same token, the one that starts first in the text wins (vLLM
//!   takes the first in the list's order).
//! - `POST /v1/chat/completions`: `messages` (`role` and `content`, a string or a list of
//!   `{"type": "text", "text": …}` parts, joined with newlines as vLLM joins them) are
//!   rendered with the model's chat template (`tokenizer_config.json`'s `chat_template`, or
//!   the GGUF's `tokenizer.chat_template`) with the generation prompt, tokenized without
//!   adding a BOS (the template writes its own), and continued greedily with `max_tokens`
//!   (`max_completion_tokens` too; default 16, as for completions) and `stop`; the same
//!   parameters are refused, and `tools`, `functions`, `response_format` other than text,
//!   `logprobs: true` and `top_logprobs` too. The answer is OpenAI's `chat.completion`
//!   object: `choices[0].message` `{"role": "assistant", "content": …}`, `finish_reason`,
//!   `stop_reason`, and `usage`. A model without a chat template answers `400`.
//!
//! Requests are queued to one engine thread, which batches them dynamically: when a sequence
//! arrives it waits up to [`ServeOptions::batch_wait`] for more, up to
//! [`ServeOptions::max_batch`] sequences, then decodes them together (greedy output does not
//! depend on the batch). Requests that arrive meanwhile wait for the next batch; with
//! [`ServeOptions::max_queue`] requests waiting, more are refused with `503`. Bodies over
//! [`ServeOptions::max_body_bytes`] get `413`.
//!
//! On shutdown (the future given to [`Server::run`], e.g. [`shutdown_signal`]) the server
//! stops accepting connections, the batch being decoded finishes and is answered, requests
//! still queued are answered `503` ("the server is shutting down"), and [`Server::run`]
//! returns once every connection is closed.

mod api;
mod engine;
mod request;

use std::future::Future;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use prox_engine::Model;
use prox_prompt::{JinjaTemplate, TemplateTokens};

use crate::engine::{EngineThread, Job};

/// How to serve.
#[derive(Debug, Clone)]
pub struct ServeOptions {
    /// The name `/v1/models` lists and requests may ask for.
    pub model_name: String,
    /// Where to listen; loopback unless told otherwise.
    pub addr: SocketAddr,
    /// The most sequences decoded together.
    pub max_batch: usize,
    /// How long a batch waits for more sequences once it has one.
    pub batch_wait: Duration,
    /// The most requests waiting for the engine; more are refused with 503.
    pub max_queue: usize,
    /// The largest request body; larger ones are refused with 413.
    pub max_body_bytes: usize,
    /// The most prompts in one request.
    pub max_prompts_per_request: usize,
    /// Threads answering HTTP (parsing, tokenizing, decoding); the engine has its own.
    pub http_threads: usize,
}

impl Default for ServeOptions {
    fn default() -> Self {
        ServeOptions {
            model_name: "prox".to_owned(),
            addr: SocketAddr::from(([127, 0, 0, 1], 8000)),
            max_batch: 32,
            batch_wait: Duration::from_millis(5),
            max_queue: 1024,
            max_body_bytes: 16 << 20,
            max_prompts_per_request: 256,
            http_threads: 2,
        }
    }
}

/// Why the server could not start or stopped.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ServeError {
    #[error("invalid options: {0}")]
    InvalidOptions(String),
    #[error("the model {0} has no tokenizer; the server needs one to decode what it generates")]
    NoTokenizer(String),
    #[error("cannot start the server's runtime")]
    Runtime(#[source] std::io::Error),
    #[error("cannot listen on {addr}")]
    Bind {
        addr: SocketAddr,
        #[source]
        source: std::io::Error,
    },
    #[error("the HTTP server failed")]
    Http(#[source] std::io::Error),
    #[error("the engine thread could not be started")]
    EngineThread(#[source] std::io::Error),
    #[error("the engine thread panicked")]
    EnginePanicked,
}

/// What a server did, counted when it stops.
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize)]
pub struct ServeSummary {
    pub requests: u64,
    pub batches: u64,
    pub sequences: u64,
    pub generated_tokens: u64,
    /// Sequences answered 503 because the server was shutting down.
    pub refused_at_shutdown: u64,
}

/// What the HTTP handlers share.
pub(crate) struct AppState {
    pub options: ServeOptions,
    pub tokenizer: Arc<prox_tokenizer::Tokenizer>,
    /// The chat template and the special tokens it may use, or why chat is unavailable.
    pub chat: Result<(JinjaTemplate, TemplateTokens), String>,
    pub context: usize,
    pub jobs: std::sync::mpsc::SyncSender<Job>,
    pub shutting_down: Arc<AtomicBool>,
    pub requests: AtomicU64,
}

/// A bound server, ready to [`run`](Server::run).
pub struct Server {
    runtime: tokio::runtime::Runtime,
    listener: tokio::net::TcpListener,
    state: Arc<AppState>,
    engine: EngineThread,
}

impl Server {
    /// Starts the engine thread and binds the address (port 0 picks a free one; see
    /// [`Server::local_addr`]).
    pub fn bind(model: Model, options: ServeOptions) -> Result<Server, ServeError> {
        if options.max_batch == 0 || options.max_queue == 0 || options.max_prompts_per_request == 0
        {
            return Err(ServeError::InvalidOptions(
                "max_batch, max_queue and max_prompts_per_request must be at least 1".to_owned(),
            ));
        }
        let Model {
            llama,
            tokenizer,
            chat_template,
            source,
        } = model;
        let tokenizer = Arc::new(
            tokenizer.ok_or_else(|| ServeError::NoTokenizer(source.display().to_string()))?,
        );
        let chat = chat_template_of(chat_template, &tokenizer, &source);
        if let Err(reason) = &chat {
            tracing::info!(%reason, "/v1/chat/completions is unavailable");
        }
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(options.http_threads.max(1))
            .thread_name("prox-serve-http")
            .enable_all()
            .build()
            .map_err(ServeError::Runtime)?;
        let listener = runtime
            .block_on(tokio::net::TcpListener::bind(options.addr))
            .map_err(|source| ServeError::Bind {
                addr: options.addr,
                source,
            })?;
        let context = llama.config().max_position_embeddings;
        let shutting_down = Arc::new(AtomicBool::new(false));
        let (jobs, engine) = EngineThread::start(
            llama,
            Arc::clone(&tokenizer),
            options.max_queue,
            options.max_batch,
            options.batch_wait,
            Arc::clone(&shutting_down),
        )
        .map_err(ServeError::EngineThread)?;
        Ok(Server {
            runtime,
            listener,
            state: Arc::new(AppState {
                options,
                tokenizer,
                chat,
                context,
                jobs,
                shutting_down,
                requests: AtomicU64::new(0),
            }),
            engine,
        })
    }

    /// The address the server listens on.
    pub fn local_addr(&self) -> Result<SocketAddr, ServeError> {
        self.listener.local_addr().map_err(ServeError::Http)
    }

    /// Serves until `shutdown` completes, then shuts down as the crate documentation says.
    pub fn run(
        self,
        shutdown: impl Future<Output = ()> + Send + 'static,
    ) -> Result<ServeSummary, ServeError> {
        let Server {
            runtime,
            listener,
            state,
            engine,
        } = self;
        let router = api::router(Arc::clone(&state));
        let shutting_down = Arc::clone(&state.shutting_down);
        let served = runtime.block_on(async move {
            axum::serve(listener, router)
                .with_graceful_shutdown(async move {
                    shutdown.await;
                    tracing::info!("shutting down: finishing the running batch");
                    shutting_down.store(true, Ordering::SeqCst);
                })
                .await
        });
        let requests = state.requests.load(Ordering::Relaxed);
        // The last sender goes with the state: the engine thread answers what is left and
        // ends.
        drop(state);
        let mut summary = engine.join()?;
        summary.requests = requests;
        // Handlers still blocked on tokenizing would keep the runtime's threads; do not wait.
        runtime.shutdown_timeout(Duration::from_secs(1));
        served.map_err(ServeError::Http)?;
        tracing::info!(?summary, "server stopped");
        Ok(summary)
    }
}

/// The model's chat template, compiled, with the special tokens templates use; or why
/// there is none.
fn chat_template_of(
    source: Option<String>,
    tokenizer: &prox_tokenizer::Tokenizer,
    model: &std::path::Path,
) -> Result<(JinjaTemplate, TemplateTokens), String> {
    let source = source.ok_or_else(|| {
        format!(
            "the model {} has no chat template (neither `chat_template` in its \
             tokenizer_config.json nor `tokenizer.chat_template` in its GGUF metadata)",
            model.display()
        )
    })?;
    let template = JinjaTemplate::new(source).map_err(|e| {
        format!(
            "the chat template of {} does not compile: {e}",
            model.display()
        )
    })?;
    let tokens = TemplateTokens {
        bos_token: tokenizer.bos_token().unwrap_or_default().to_owned(),
        eos_token: tokenizer.eos_token().unwrap_or_default().to_owned(),
    };
    Ok((template, tokens))
}

/// Completes on SIGTERM or ctrl-c (SIGINT).
pub async fn shutdown_signal() {
    let interrupt = async {
        if tokio::signal::ctrl_c().await.is_err() {
            std::future::pending::<()>().await;
        }
    };
    #[cfg(unix)]
    let terminate = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut signal) => {
                signal.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let terminate = std::future::pending::<()>();
    tokio::select! {
        () = interrupt => {}
        () = terminate => {}
    }
}
