//! `prox serve` over real HTTP on loopback with the tiny fixture model: the client against it
//! equals `prox generate`; a server killed and restarted mid-run loses and duplicates
//! nothing; SIGTERM finishes or refuses every request explicitly; bad requests get
//! OpenAI-shaped errors.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::sync::Arc;
use std::time::{Duration, Instant};

use prox_client::{Client, ClientError, ClientOptions, CompletionRequest, PromptFormat};
use serde_json::{json, Value};

use crate::support::{
    path_str, prox, read_rows, tiny_llama, tiny_llama_golden_cases, write_rows, ServerProcess,
};

/// `prox serve` of the tiny model, named `tiny`, on `port` (0: any free one), then `extra`.
fn serve_tiny(port: u16, extra: &[&str]) -> ServerProcess {
    let model = tiny_llama();
    let port = port.to_string();
    let mut args = vec![
        "--model",
        path_str(&model),
        "--served-model-name",
        "tiny",
        "--port",
        &port,
    ];
    args.extend_from_slice(extra);
    ServerProcess::start(&args)
}

fn golden_prompts() -> Vec<Vec<u32>> {
    tiny_llama_golden_cases()
        .iter()
        .map(|case| {
            case["prompt_ids"]
                .as_array()
                .unwrap()
                .iter()
                .map(|v| v.as_u64().unwrap() as u32)
                .collect()
        })
        .collect()
}

fn client(endpoint: String, format: PromptFormat, in_flight: usize) -> Client {
    Client::connect(ClientOptions {
        endpoint,
        prompt_format: format,
        max_in_flight: in_flight,
        request_timeout: Duration::from_secs(30),
        // About 20 s of retries: enough for a restart on a loaded machine.
        max_retries: 50,
        backoff: Duration::from_millis(50),
        max_backoff: Duration::from_millis(400),
        ..ClientOptions::default()
    })
    .unwrap()
}

#[test]
fn the_client_against_prox_serve_equals_prox_generate() {
    let dir = tempfile::tempdir().unwrap();
    let ids = golden_prompts();
    let texts = [
        "Hello world",
        "The capital of France is",
        "<s>[INST] Hi [/INST]",
    ];
    let input = dir.path().join("prompts.jsonl");
    let prompts: Vec<Value> = ids
        .iter()
        .map(|p| json!({"prompt_ids": p}))
        .chain(texts.iter().map(|t| json!({"prompt": t})))
        .collect();
    write_rows(&input, &prompts);
    let output = dir.path().join("generated.jsonl");
    let model = tiny_llama();
    prox(["generate", "--model", path_str(&model)])
        .args(["--input", path_str(&input), "--output", path_str(&output)])
        .args(["--max-new-tokens", "24", "--batch-size", "3"])
        .success();
    let expected = read_rows(&output);

    let server = serve_tiny(0, &["--max-batch", "4"]);
    let by_ids = client(server.endpoint(), PromptFormat::TokenIds, 8);
    assert_eq!(by_ids.model(), "tiny");
    let id_requests: Vec<CompletionRequest> = ids
        .iter()
        .map(|p| CompletionRequest {
            prompt_ids: p.clone(),
            max_tokens: 24,
            ..CompletionRequest::default()
        })
        .collect();
    let by_text = client(server.endpoint(), PromptFormat::Text, 8);
    let text_requests: Vec<CompletionRequest> = texts
        .iter()
        .map(|t| CompletionRequest {
            prompt_text: (*t).to_owned(),
            max_tokens: 24,
            ..CompletionRequest::default()
        })
        .collect();
    let results: Vec<_> = by_ids
        .complete(&id_requests)
        .into_iter()
        .chain(by_text.complete(&text_requests))
        .collect();
    assert_eq!(results.len(), expected.len());
    for (result, row) in results.iter().zip(&expected) {
        let completion = result.as_ref().unwrap();
        assert_eq!(completion.text, row["generated_text"].as_str().unwrap());
        assert_eq!(
            completion.finish_reason,
            row["finish_reason"].as_str().unwrap()
        );
        assert_eq!(
            completion.completion_tokens,
            row["generated_tokens"].as_u64()
        );
        assert_eq!(completion.prompt_tokens, row["prompt_tokens"].as_u64());
    }
    let metrics = by_ids.metrics();
    assert_eq!((metrics.succeeded, metrics.failed), (5, 0));
    assert_eq!(metrics.generated_tokens, 5 * 24);
}

#[test]
fn a_server_killed_and_restarted_mid_run_loses_and_duplicates_nothing() {
    let golden = golden_prompts();
    // Distinct prompts, so that a result given to the wrong request would show.
    let requests: Vec<CompletionRequest> = (0..24)
        .map(|i| {
            let base = &golden[i % golden.len()];
            CompletionRequest {
                prompt_ids: base[..base.len().min(10 + i)].to_vec(),
                max_tokens: 32,
                ..CompletionRequest::default()
            }
        })
        .collect();
    let server = serve_tiny(0, &["--max-batch", "4"]);
    let port = server.addr.port();
    let client = Arc::new(client(server.endpoint(), PromptFormat::TokenIds, 4));
    let clean = client.complete(&requests);
    let clean: Vec<String> = clean.into_iter().map(|r| r.unwrap().text).collect();
    let done_before = client.metrics().requests;

    let running = {
        let client = Arc::clone(&client);
        let requests = requests.clone();
        std::thread::spawn(move || client.complete(&requests))
    };
    let started = Instant::now();
    while client.metrics().requests < done_before + 4 {
        assert!(started.elapsed() < Duration::from_secs(30));
        std::thread::sleep(Duration::from_millis(2));
    }
    server.signal("KILL");
    drop(server);
    std::thread::sleep(Duration::from_millis(200));
    let _restarted = serve_tiny(port, &["--max-batch", "4"]);
    let results = running.join().unwrap();
    let texts: Vec<String> = results
        .into_iter()
        .map(|r| r.unwrap_or_else(|e| panic!("{e}")).text)
        .collect();
    assert_eq!(texts, clean);
    let metrics = client.metrics();
    assert!(metrics.retries > 0, "{metrics:?}");
    assert_eq!(metrics.failed, 0);
    assert_eq!(metrics.requests, 2 * requests.len() as u64);
}

#[test]
fn sigterm_finishes_the_running_batch_refuses_the_queue_and_exits_cleanly() {
    let server = serve_tiny(0, &["--max-batch", "2"]);
    let client = Arc::new(
        Client::connect(ClientOptions {
            endpoint: server.endpoint(),
            max_in_flight: 12,
            max_retries: 0,
            ..ClientOptions::default()
        })
        .unwrap(),
    );
    let golden = golden_prompts();
    let requests: Vec<CompletionRequest> = (0..12)
        .map(|i| CompletionRequest {
            prompt_ids: golden[i % golden.len()].clone(),
            max_tokens: 120,
            ..CompletionRequest::default()
        })
        .collect();
    let running = {
        let client = Arc::clone(&client);
        std::thread::spawn(move || client.complete(&requests))
    };
    let started = Instant::now();
    while client.metrics().requests < 1 {
        assert!(started.elapsed() < Duration::from_secs(30));
        std::thread::sleep(Duration::from_millis(2));
    }
    server.signal("TERM");
    let results = running.join().unwrap();
    assert_eq!(server.wait(Duration::from_secs(30)), Some(0));
    let (mut served, mut refused) = (0, 0);
    for result in &results {
        match result {
            Ok(completion) => {
                assert_eq!(completion.completion_tokens, Some(120));
                served += 1;
            }
            Err(ClientError::Status {
                status: 503, body, ..
            }) => {
                assert!(body.contains("shutting down"), "{body}");
                refused += 1;
            }
            Err(other) => panic!("neither served nor refused: {other}"),
        }
    }
    assert!(
        served >= 1 && refused >= 1,
        "{served} served, {refused} refused"
    );
}

/// One HTTP/1.1 exchange over a fresh connection: the status and the body.
fn http(addr: SocketAddr, method: &str, path: &str, body: &str) -> (u16, String) {
    let mut stream = TcpStream::connect(addr).unwrap();
    write!(
        stream,
        "{method} {path} HTTP/1.1\r\nhost: test\r\ncontent-type: application/json\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{body}",
        body.len()
    )
    .unwrap();
    let mut answer = Vec::new();
    // A server refusing a large body may reset the connection after answering.
    let _ = stream.read_to_end(&mut answer);
    let answer = String::from_utf8(answer).unwrap();
    let status = answer
        .split(' ')
        .nth(1)
        .unwrap_or_else(|| panic!("no status in {answer:?}"))
        .parse()
        .unwrap();
    let body = answer
        .split_once("\r\n\r\n")
        .map(|(_, body)| body.to_owned())
        .unwrap_or_default();
    (status, body)
}

fn error_message(body: &str) -> String {
    let value: Value = serde_json::from_str(body).unwrap();
    value["error"]["message"].as_str().unwrap().to_owned()
}

#[test]
fn the_endpoints_answer_as_openai_servers_do_and_refuse_bad_requests() {
    let server = serve_tiny(0, &["--max-body-bytes", "4096"]);
    let addr = server.addr;
    let (status, body) = http(addr, "GET", "/health", "");
    assert_eq!((status, body.as_str()), (200, r#"{"status":"ok"}"#));
    let (status, body) = http(addr, "GET", "/v1/models", "");
    assert_eq!(status, 200);
    let models: Value = serde_json::from_str(&body).unwrap();
    assert_eq!(models["data"][0]["id"], "tiny");
    assert_eq!(models["data"][0]["max_model_len"], 2048);

    // A list of prompts, text and ids alike, answered in order.
    let golden = golden_prompts();
    let request = json!({"model": "tiny", "prompt": [golden[0], golden[1]], "max_tokens": 5, "temperature": 0});
    let (status, body) = http(addr, "POST", "/v1/completions", &request.to_string());
    assert_eq!(status, 200, "{body}");
    let answer: Value = serde_json::from_str(&body).unwrap();
    assert_eq!(answer["object"], "text_completion");
    let choices = answer["choices"].as_array().unwrap();
    assert_eq!(choices.len(), 2);
    assert_eq!(choices[1]["index"], 1);
    assert_eq!(choices[0]["token_ids"].as_array().unwrap().len(), 5);
    assert_eq!(
        answer["usage"]["prompt_tokens"],
        golden[0].len() + golden[1].len()
    );
    assert_eq!(answer["usage"]["completion_tokens"], 10);
    let request = json!({"prompt": ["Hello", "world"], "max_tokens": 2});
    let (status, body) = http(addr, "POST", "/v1/completions", &request.to_string());
    assert_eq!(status, 200, "{body}");

    for (request, status, expected) in [
        ("{not json".to_owned(), 400, "not JSON"),
        (
            json!({"prompt": "x", "temperature": 0.7}).to_string(),
            400,
            "greedy",
        ),
        (
            json!({"prompt": "x", "stream": true}).to_string(),
            400,
            "streaming",
        ),
        (
            json!({"prompt": "x", "stop": ["\n", ""]}).to_string(),
            400,
            "`stop` cannot contain an empty string",
        ),
        (json!({"prompt": "x", "n": 2}).to_string(), 400, "`n`"),
        (
            json!({"prompt": [1, -5]}).to_string(),
            400,
            "not a token id",
        ),
        (
            json!({"prompt": [1, 99999]}).to_string(),
            400,
            "outside the vocabulary",
        ),
        (json!({"prompt": []}).to_string(), 400, "empty list"),
        (json!({"max_tokens": 3}).to_string(), 400, "missing"),
        (
            json!({"prompt": "x", "max_tokens": -1}).to_string(),
            400,
            "max_tokens",
        ),
        (
            json!({"prompt": "x", "model": "other"}).to_string(),
            404,
            "does not exist",
        ),
    ] {
        let (got, body) = http(addr, "POST", "/v1/completions", &request);
        assert_eq!(got, status, "{request}: {body}");
        assert!(error_message(&body).contains(expected), "{request}: {body}");
    }
    let large = json!({"prompt": "x".repeat(5000)}).to_string();
    let (status, _) = http(addr, "POST", "/v1/completions", &large);
    assert_eq!(status, 413);
}

#[test]
fn a_full_queue_is_answered_503() {
    let server = serve_tiny(0, &["--max-queue", "1", "--max-batch", "1"]);
    let addr = server.addr;
    let golden = golden_prompts();
    let request = json!({"prompt": golden[3], "max_tokens": 150}).to_string();
    let threads: Vec<_> = (0..8)
        .map(|_| {
            let request = request.clone();
            std::thread::spawn(move || http(addr, "POST", "/v1/completions", &request))
        })
        .collect();
    let answers: Vec<(u16, String)> = threads.into_iter().map(|t| t.join().unwrap()).collect();
    let full = answers.iter().filter(|(status, _)| *status == 503).count();
    let served = answers.iter().filter(|(status, _)| *status == 200).count();
    assert_eq!(full + served, 8, "{answers:?}");
    assert!(full >= 1 && served >= 1, "{answers:?}");
    for (_, body) in answers.iter().filter(|(status, _)| *status == 503) {
        assert!(error_message(body).contains("queue is full"), "{body}");
    }
}
