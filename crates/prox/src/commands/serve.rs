//! `prox serve`: an OpenAI-compatible server over the embedded engine.

use std::io::Write;
use std::net::{IpAddr, SocketAddr};
use std::time::Duration;

use anyhow::Context;
use prox_engine::DeviceSpec;
use prox_serve::{ServeOptions, Server};

use crate::commands::generate::{ComputeDtype, Quantization, DEVICE_HELP, DEVICE_VALUES};
use crate::commands::Completion;

#[derive(Debug, clap::Args)]
#[command(after_help = SERVE_AFTER_HELP)]
pub struct ServeArgs {
    /// A Hugging Face model folder (`config.json` + safetensors), a `.gguf` file, or a hub
    /// id (`org/name`) already in the local Hugging Face cache.
    #[arg(long)]
    pub model: String,

    /// The hub revision (branch, tag or commit) of a hub id.
    #[arg(long)]
    pub revision: Option<String>,

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

    /// The compute dtype.
    #[arg(long, value_enum, default_value_t = ComputeDtype::F32)]
    pub dtype: ComputeDtype,

    /// Quantize the weight matrices when loading.
    #[arg(long, value_enum)]
    pub quantize: Option<Quantization>,

    /// Where the model runs.
    #[arg(
        long,
        default_value_t = DeviceSpec::Cpu,
        value_name = DEVICE_VALUES,
        long_help = DEVICE_HELP
    )]
    pub device: DeviceSpec,
}

const SERVE_AFTER_HELP: &str = "\
Endpoints: GET /health, GET /v1/models, POST /v1/completions with `prompt` as text, token
ids, or a list of either; `max_tokens` (default 16). Decoding is greedy, as `prox generate`:
`temperature` must be 0 or absent, and parameters that would change greedy output (`stop`,
`n`, penalties, `logprobs`, `stream`) are refused with 400. Each choice carries `text`,
`finish_reason` and `token_ids`.

Concurrent requests are batched on one engine thread (up to --max-batch sequences, waiting at
most --batch-wait-ms for them). With --max-queue requests waiting, more get 503; a body over
--max-body-bytes gets 413.

When it listens, the server prints `listening on http://ADDR` on standard output. On SIGTERM
or ctrl-c it stops accepting, finishes the batch being decoded, answers queued requests 503
and exits with status 0.";

pub fn run(args: &ServeArgs) -> anyhow::Result<Completion> {
    let options = crate::commands::generate::load_options(args.dtype, args.quantize, args.device)?;
    let model =
        crate::commands::generate::load_model(&args.model, args.revision.as_deref(), &options)?;

    let to_usize = |n: u64| usize::try_from(n).unwrap_or(usize::MAX);
    let serve_options = ServeOptions {
        model_name: args
            .served_model_name
            .clone()
            .unwrap_or_else(|| args.model.clone()),
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
