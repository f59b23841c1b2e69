//! `prox serve` against the engine driven directly (what `prox generate --batch-size C`
//! does) on the full ProX refiner shape with random weights: generated tokens/s at
//! concurrency 1, 8 and 32, and the server's overhead.
//!
//!     cargo run --release -p prox-serve --example bench -- \
//!         [--prompt 32] [--new-tokens 8] [--concurrency 1,8,32] [--rounds 2]
//!
//! Each concurrency C sends C × rounds prompts: directly, `rounds` batches of C; through the
//! server, a client with C requests in flight over loopback HTTP. The tokenizer (only used to
//! decode) is the tiny fixture's, which has the refiner's vocabulary.

use std::time::Instant;

use prox_client::{Client, ClientOptions, CompletionRequest};
use prox_engine::{generate, Config, DType, Device, GenerateOptions, Llama, Model, Request};
use prox_serve::{ServeOptions, Server};

type AnyResult<T> = Result<T, Box<dyn std::error::Error>>;

fn main() -> AnyResult<()> {
    let mut prompt_len = 32usize;
    let mut new_tokens = 8usize;
    let mut concurrency = vec![1usize, 8, 32];
    let mut rounds = 2usize;
    let mut it = std::env::args().skip(1);
    while let Some(flag) = it.next() {
        let value = it.next().ok_or(format!("{flag} needs a value"))?;
        match flag.as_str() {
            "--prompt" => prompt_len = value.parse()?,
            "--new-tokens" => new_tokens = value.parse()?,
            "--rounds" => rounds = value.parse()?,
            "--concurrency" => {
                concurrency = value.split(',').map(str::parse).collect::<Result<_, _>>()?
            }
            other => return Err(format!("unknown flag {other}").into()),
        }
    }
    let llama = Llama::random(&Config::prox_refiner(), DType::F32, &Device::Cpu, 1)?;
    let tokenizer_dir = prox_test::fixture("tiny-llama");
    let model = Model {
        llama: llama.clone(),
        tokenizer: Some(prox_tokenizer::Tokenizer::from_dir(&tokenizer_dir)?),
        chat_template: None,
        source: tokenizer_dir,
    };
    let max_batch = concurrency.iter().copied().max().unwrap_or(1);
    let server = Server::bind(
        model,
        ServeOptions {
            addr: ([127, 0, 0, 1], 0).into(),
            max_batch,
            ..ServeOptions::default()
        },
    )?;
    let endpoint = format!("http://{}", server.local_addr()?);
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let serving = std::thread::spawn(move || {
        server.run(async {
            let _ = stopped.await;
        })
    });

    println!("concurrency\tprompts\tgenerated\tdirect_tok_s\tserve_tok_s\toverhead_pct");
    for &c in &concurrency {
        let prompts: Vec<Vec<u32>> = (0..c * rounds)
            .map(|i| {
                (0..prompt_len)
                    .map(|t| 3 + ((t * 7919 + i * 104_729) % 31_000) as u32)
                    .collect()
            })
            .collect();
        let started = Instant::now();
        let mut direct_tokens = 0;
        for batch in prompts.chunks(c) {
            let requests: Vec<Request> = batch
                .iter()
                .map(|p| Request {
                    prompt_ids: p.clone(),
                    max_new_tokens: new_tokens,
                })
                .collect();
            for generation in generate(&llama, &requests, &GenerateOptions::default())? {
                direct_tokens += generation?.ids.len();
            }
        }
        let direct = direct_tokens as f64 / started.elapsed().as_secs_f64();

        let client = Client::connect(ClientOptions {
            endpoint: endpoint.clone(),
            max_in_flight: c,
            ..ClientOptions::default()
        })?;
        let requests: Vec<CompletionRequest> = prompts
            .iter()
            .map(|p| CompletionRequest {
                prompt_ids: p.clone(),
                max_tokens: new_tokens,
                ..CompletionRequest::default()
            })
            .collect();
        let started = Instant::now();
        let mut served_tokens = 0;
        for completion in client.complete(&requests) {
            served_tokens += completion?.completion_tokens.unwrap_or(0);
        }
        let served = served_tokens as f64 / started.elapsed().as_secs_f64();
        println!(
            "{c}\t{}\t{direct_tokens}\t{direct:.1}\t{served:.1}\t{:.1}",
            prompts.len(),
            100.0 * (1.0 - served / direct)
        );
    }
    let _ = stop.send(());
    serving.join().map_err(|_| "the server thread panicked")??;
    Ok(())
}
