//! The client's own ceiling: requests/s against a server that answers instantly, so that
//! what is measured is the client (HTTP, JSON, concurrency, retries bookkeeping).
//!
//!     cargo run --release -p prox-client --example bench -- \
//!         [--requests 50000] [--in-flight 256] [--client-threads 2] [--server-threads 1] \
//!         [--prompt-tokens 512] [--endpoint URL]
//!
//! Without --endpoint it starts the instant server in-process (axum, its own runtime and
//! threads) on a loopback port; with --endpoint it measures against that server instead.

use std::time::Instant;

use axum::routing::{get, post};
use axum::Router;
use prox_client::{Client, ClientOptions, CompletionRequest};

type AnyResult<T> = Result<T, Box<dyn std::error::Error>>;

struct Args {
    requests: usize,
    in_flight: usize,
    client_threads: usize,
    server_threads: usize,
    prompt_tokens: usize,
    endpoint: Option<String>,
}

fn parse_args() -> AnyResult<Args> {
    let mut args = Args {
        requests: 50_000,
        in_flight: 256,
        client_threads: 2,
        server_threads: 1,
        prompt_tokens: 512,
        endpoint: None,
    };
    let mut it = std::env::args().skip(1);
    while let Some(flag) = it.next() {
        let value = it.next().ok_or(format!("{flag} needs a value"))?;
        match flag.as_str() {
            "--requests" => args.requests = value.parse()?,
            "--in-flight" => args.in_flight = value.parse()?,
            "--client-threads" => args.client_threads = value.parse()?,
            "--server-threads" => args.server_threads = value.parse()?,
            "--prompt-tokens" => args.prompt_tokens = value.parse()?,
            "--endpoint" => args.endpoint = Some(value),
            other => return Err(format!("unknown flag {other}").into()),
        }
    }
    Ok(args)
}

/// An OpenAI-shaped answer, the same for every request.
const ANSWER: &str = r#"{"id":"cmpl-0","object":"text_completion","created":0,"model":"bench","choices":[{"index":0,"text":" keep_doc()","logprobs":null,"finish_reason":"stop"}],"usage":{"prompt_tokens":512,"completion_tokens":5,"total_tokens":517}}"#;
const MODELS: &str = r#"{"object":"list","data":[{"id":"bench","object":"model"}]}"#;

fn json_response(body: &'static str) -> axum::response::Response {
    axum::response::Response::builder()
        .header("content-type", "application/json")
        .body(axum::body::Body::from(body))
        .unwrap_or_default()
}

/// Starts the instant server on its own runtime; returns its base URL.
fn start_instant_server(threads: usize) -> AnyResult<String> {
    let listener = std::net::TcpListener::bind("127.0.0.1:0")?;
    listener.set_nonblocking(true)?;
    let addr = listener.local_addr()?;
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(threads.max(1))
        .enable_all()
        .build()?;
    std::thread::spawn(move || {
        runtime.block_on(async move {
            let router = Router::new()
                .route("/v1/models", get(|| async { json_response(MODELS) }))
                // The body is read (as a real server must) and ignored.
                .route(
                    "/v1/completions",
                    post(|_body: bytes::Bytes| async { json_response(ANSWER) }),
                );
            match tokio::net::TcpListener::from_std(listener) {
                Ok(listener) => {
                    if let Err(error) = axum::serve(listener, router).await {
                        eprintln!("instant server: {error}");
                    }
                }
                Err(error) => eprintln!("instant server: {error}"),
            }
        });
    });
    Ok(format!("http://{addr}"))
}

fn main() -> AnyResult<()> {
    let args = parse_args()?;
    let endpoint = match &args.endpoint {
        Some(endpoint) => endpoint.clone(),
        None => start_instant_server(args.server_threads)?,
    };
    let client = Client::connect(ClientOptions {
        endpoint,
        max_in_flight: args.in_flight,
        threads: args.client_threads,
        ..ClientOptions::default()
    })?;
    // A ProX-sized prompt: the body is about 3 KB of token ids, as in a real run.
    let requests: Vec<CompletionRequest> = (0..args.requests)
        .map(|i| CompletionRequest {
            prompt_ids: (0..args.prompt_tokens)
                .map(|t| 3 + ((t * 7919 + i * 104_729) % 31_000) as u32)
                .collect(),
            prompt_text: String::new(),
            max_tokens: 16,
            stop: Vec::new(),
        })
        .collect();
    // Warm the connection pool.
    client.complete(&requests[..args.in_flight.min(requests.len())]);
    let started = Instant::now();
    let results = client.complete(&requests);
    let seconds = started.elapsed().as_secs_f64();
    let failed = results.iter().filter(|r| r.is_err()).count();
    if let Some(Err(error)) = results.iter().find(|r| r.is_err()) {
        eprintln!("first failure: {error}");
    }
    println!(
        "requests={} in_flight={} client_threads={} server_threads={} prompt_tokens={} seconds={seconds:.3} requests_per_s={:.0} failed={failed}",
        args.requests,
        args.in_flight,
        args.client_threads,
        args.server_threads,
        args.prompt_tokens,
        args.requests as f64 / seconds
    );
    println!("{}", serde_json::to_string(&client.metrics())?);
    Ok(())
}
