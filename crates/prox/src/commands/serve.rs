//! `prox serve`: an OpenAI-compatible server over the embedded engine.

use std::io::Write;
use std::net::{IpAddr, SocketAddr};
use std::time::Duration;

use anyhow::Context;
use prox_serve::{ServeOptions, Server};

use crate::commands::Completion;
use crate::engine_args::ModelArgs;

#[derive(Debug, clap::Args)]
#[command(after_help = SERVE_AFTER_HELP)]
pub struct ServeArgs {
    #[command(flatten)]
    pub model: ModelArgs,

    /// The model name `/v1/models` lists and requests may ask for (default: --model as
    /// given).
    #[arg(long)]
    pub served_model_name: Option<String>,

    /// The address to listen on; anything but loopback exposes the model to the network.
    #[arg(long, default_value = "127.0.0.1")]
    pub host: IpAddr,

    /// The port to listen on (0: any free port; the line on standard output says which).
    #[arg(long, default_value_t = 8000)]
    pub port: u16,

    /// The most sequences decoded together.
    #[arg(long, default_value_t = 32, value_parser = clap::value_parser!(u64).range(1..))]
    pub max_batch: u64,

    /// How long a batch waits for more sequences once it has one, in milliseconds.
    #[arg(long, default_value_t = 5)]
    pub batch_wait_ms: u64,

    /// The most requests waiting for the engine; more are answered 503.
    #[arg(long, default_value_t = 1024, value_parser = clap::value_parser!(u64).range(1..))]
    pub max_queue: u64,

    /// The largest request body in bytes; larger ones are answered 413.
    #[arg(long, default_value_t = 16 << 20)]
    pub max_body_bytes: usize,

    /// The most prompts in one request.
    #[arg(long, default_value_t = 256, value_parser = clap::value_parser!(u64).range(1..))]
    pub max_prompts_per_request: u64,
}

const SERVE_AFTER_HELP: &str = "\
Endpoints: GET /health, GET /v1/models, POST /v1/completions with `prompt` as text, token
ids, or a list of either, and POST /v1/chat/completions with `messages` (rendered with the
model's chat template, from tokenizer_config.json or the GGUF metadata); `max_tokens`
(default 16) and `stop` (a string or a list; generation ends before the first one, which is
not returned). Decoding is greedy, as `prox generate`: `temperature` must be 0 or absent, and
parameters that would change greedy output (`n`, penalties, `logprobs`, `stream`,
`stop_token_ids`, tools) are refused with 400. Each completion choice carries `text`,
`finish_reason` and `token_ids`.

Concurrent requests are batched on one engine thread (up to --max-batch sequences, waiting at
most --batch-wait-ms for them). With --max-queue requests waiting, more get 503; a body over
--max-body-bytes gets 413.

When it listens, the server prints `listening on http://ADDR` on standard output. On SIGTERM
or ctrl-c it stops accepting, finishes the batch being decoded, answers queued requests 503
and exits with status 0.";

pub fn run(args: &ServeArgs) -> anyhow::Result<Completion> {
    let model = args.model.load()?;

    let to_usize = |n: u64| usize::try_from(n).unwrap_or(usize::MAX);
    let serve_options = ServeOptions {
        model_name: args
            .served_model_name
            .clone()
            .unwrap_or_else(|| args.model.model.clone()),
        addr: SocketAddr::new(args.host, args.port),
        max_batch: to_usize(args.max_batch),
        batch_wait: Duration::from_millis(args.batch_wait_ms),
        max_queue: to_usize(args.max_queue),
        max_body_bytes: args.max_body_bytes,
        max_prompts_per_request: to_usize(args.max_prompts_per_request),
        ..ServeOptions::default()
    };
    let server = Server::bind(model, serve_options).context("cannot start the server")?;
    let addr = server.local_addr()?;
    // Scripts and tests wait for this line to know the server is up (and its port).
    let mut stdout = std::io::stdout().lock();
    writeln!(stdout, "listening on http://{addr}")?;
    stdout.flush()?;
    drop(stdout);
    tracing::info!(%addr, "serving");
    let summary = server
        .run(prox_serve::shutdown_signal())
        .context("the server failed")?;
    tracing::info!(
        requests = summary.requests,
        batches = summary.batches,
        sequences = summary.sequences,
        generated_tokens = summary.generated_tokens,
        refused_at_shutdown = summary.refused_at_shutdown,
        "server stopped"
    );
    Ok(Completion::Clean)
}
