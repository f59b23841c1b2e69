//! What the server tests share: a server on loopback, and what the engine generates on its
//! own for the same request, which the server's answers must equal.

use std::net::SocketAddr;

use prox_engine::{generate_text, GenerateOptions, Model, Request, TextGeneration, TextRequest};
use prox_serve::{ServeOptions, Server};

/// Serves `model` as `model_name` on a free loopback port until the test process ends.
pub fn serve(model: Model, model_name: &str) -> SocketAddr {
    let server = Server::bind(
        model,
        ServeOptions {
            model_name: model_name.to_owned(),
            addr: ([127, 0, 0, 1], 0).into(),
            ..ServeOptions::default()
        },
    )
    .unwrap();
    let addr = server.local_addr().unwrap();
    std::thread::spawn(move || server.run(std::future::pending::<()>()));
    addr
}

/// The engine's greedy generation from `prompt_ids`, `max_new_tokens` at most, ended early by
/// any of `stop`.
pub fn generate(
    model: &Model,
    prompt_ids: Vec<u32>,
    max_new_tokens: usize,
    stop: &[&str],
) -> TextGeneration {
    generate_text(
        &model.llama,
        model.tokenizer.as_ref().unwrap(),
        &[TextRequest {
            request: Request {
                prompt_ids,
                max_new_tokens,
            },
            stop: stop.iter().map(|s| (*s).to_owned()).collect(),
        }],
        &GenerateOptions::default(),
    )
    .unwrap()
    .remove(0)
    .unwrap()
}
