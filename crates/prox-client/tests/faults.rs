//! The client against small servers written here that misbehave on purpose: errors, hangs,
//! garbage, refused connections. Every request must end in a result or a recorded failure,
//! within its timeout, and in request order.

#![allow(clippy::unwrap_used)] // test helpers: a failure is a test failure

use std::collections::HashMap;
use std::io::{Read, Write};
use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::http::{HeaderMap, StatusCode};
use axum::response::IntoResponse;
use axum::routing::{get, post};
use axum::Router;
use prox_client::{
    ChatMessage, ChatRequest, Client, ClientError, ClientOptions, CompletionRequest, PromptFormat,
};
use serde_json::{json, Value};

/// Serves `router` on a loopback port from a thread of its own.
fn serve(router: Router) -> SocketAddr {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    listener.set_nonblocking(true).unwrap();
    let addr = listener.local_addr().unwrap();
    std::thread::spawn(move || {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        runtime.block_on(async move {
            let listener = tokio::net::TcpListener::from_std(listener).unwrap();
            axum::serve(listener, router).await.unwrap();
        });
    });
    addr
}

fn models_route(router: Router) -> Router {
    router.route(
        "/v1/models",
        get(|| async { axum::Json(json!({"object": "list", "data": [{"id": "m"}]})) }),
    )
}

fn answer(text: &str) -> Value {
    json!({
        "choices": [{"index": 0, "text": text, "finish_reason": "stop"}],
        "usage": {"prompt_tokens": 3, "completion_tokens": 2},
    })
}

fn options(addr: SocketAddr) -> ClientOptions {
    ClientOptions {
        endpoint: format!("http://{addr}"),
        request_timeout: Duration::from_secs(5),
        max_retries: 3,
        backoff: Duration::from_millis(5),
        max_backoff: Duration::from_millis(50),
        ..ClientOptions::default()
    }
}

fn text_requests(n: usize) -> Vec<CompletionRequest> {
    (0..n)
        .map(|i| CompletionRequest {
            prompt_ids: vec![1, i as u32],
            prompt_text: format!("p{i}"),
            max_tokens: 4,
            stop: Vec::new(),
        })
        .collect()
}

fn prompt_of(body: &[u8]) -> String {
    let body: Value = serde_json::from_slice(body).unwrap();
    body["prompt"].to_string()
}

#[test]
fn transient_failures_are_retried_and_results_keep_request_order() {
    // Each prompt is answered 500, then 429 (with Retry-After: 0), then served; later
    // prompts are answered sooner, so completion order differs from request order.
    let attempts: Arc<Mutex<HashMap<String, usize>>> = Arc::default();
    let router = models_route(Router::new()).route(
        "/v1/completions",
        post(move |body: bytes::Bytes| {
            let attempts = Arc::clone(&attempts);
            async move {
                let prompt = prompt_of(&body);
                let attempt = {
                    let mut attempts = attempts.lock().unwrap();
                    let n = attempts.entry(prompt.clone()).or_default();
                    *n += 1;
                    *n
                };
                match attempt {
                    1 => (StatusCode::INTERNAL_SERVER_ERROR, "boom").into_response(),
                    2 => (
                        StatusCode::TOO_MANY_REQUESTS,
                        [("retry-after", "0")],
                        "slow down",
                    )
                        .into_response(),
                    _ => {
                        let index: u64 = prompt.trim_matches('"')[1..].parse().unwrap();
                        tokio::time::sleep(Duration::from_millis(40 - index)).await;
                        axum::Json(answer(&format!("echo {prompt}"))).into_response()
                    }
                }
            }
        }),
    );
    let addr = serve(router);
    let client = Client::connect(ClientOptions {
        prompt_format: PromptFormat::Text,
        max_in_flight: 8,
        ..options(addr)
    })
    .unwrap();
    assert_eq!(client.model(), "m");
    let results = client.complete(&text_requests(40));
    assert_eq!(results.len(), 40);
    for (i, result) in results.iter().enumerate() {
        let completion = result.as_ref().unwrap();
        assert_eq!(completion.text, format!("echo \"p{i}\""));
        assert_eq!(completion.finish_reason, "stop");
        assert_eq!(completion.prompt_tokens, Some(3));
    }
    let metrics = client.metrics();
    assert_eq!(
        (
            metrics.requests,
            metrics.succeeded,
            metrics.failed,
            metrics.retries
        ),
        (40, 40, 0, 80)
    );
    assert_eq!((metrics.prompt_tokens, metrics.generated_tokens), (120, 80));
    assert_eq!(metrics.in_flight, 0);
    assert!(metrics.latency_p95_ms.unwrap() >= metrics.latency_p50_ms.unwrap());
}

#[test]
fn persistent_server_errors_end_in_a_recorded_failure_quoting_the_body() {
    let router = models_route(Router::new()).route(
        "/v1/completions",
        post(|| async { (StatusCode::BAD_GATEWAY, "upstream exploded") }),
    );
    let client = Client::connect(ClientOptions {
        max_retries: 2,
        ..options(serve(router))
    })
    .unwrap();
    let started = Instant::now();
    let results = client.complete(&text_requests(5));
    assert!(started.elapsed() < Duration::from_secs(3));
    for result in &results {
        let error = result.as_ref().unwrap_err();
        assert!(
            matches!(error, ClientError::GaveUp { attempts: 3, .. }),
            "{error}"
        );
        let message = error.to_string();
        assert!(message.contains("HTTP 502"), "{message}");
        assert!(message.contains("upstream exploded"), "{message}");
    }
    let metrics = client.metrics();
    assert_eq!((metrics.failed, metrics.retries), (5, 10));
}

#[test]
fn a_client_error_status_is_not_retried() {
    let calls = Arc::new(AtomicUsize::new(0));
    let counted = Arc::clone(&calls);
    let router = models_route(Router::new()).route(
        "/v1/completions",
        post(move || {
            counted.fetch_add(1, Ordering::SeqCst);
            async { (StatusCode::BAD_REQUEST, "the prompt is empty") }
        }),
    );
    let client = Client::connect(options(serve(router))).unwrap();
    let results = client.complete(&text_requests(2));
    for result in &results {
        let error = result.as_ref().unwrap_err();
        assert!(
            matches!(error, ClientError::Status { status: 400, .. }),
            "{error}"
        );
    }
    assert_eq!(calls.load(Ordering::SeqCst), 2);
}

#[test]
fn a_hanging_server_times_out_and_each_request_fails_within_its_limit() {
    let router = models_route(Router::new()).route(
        "/v1/completions",
        post(|| async {
            tokio::time::sleep(Duration::from_secs(3600)).await;
            "never"
        }),
    );
    let client = Client::connect(ClientOptions {
        request_timeout: Duration::from_millis(200),
        max_retries: 1,
        ..options(serve(router))
    })
    .unwrap();
    let started = Instant::now();
    let results = client.complete(&text_requests(4));
    let elapsed = started.elapsed();
    // Two attempts of 200 ms and one short backoff each, all four at once.
    assert!(elapsed < Duration::from_secs(2), "{elapsed:?}");
    for result in &results {
        let error = result.as_ref().unwrap_err();
        let ClientError::GaveUp { last, .. } = error else {
            panic!("{error}")
        };
        assert!(matches!(**last, ClientError::Timeout { .. }), "{last}");
    }
}

#[test]
fn a_malformed_answer_is_an_error_quoting_it_and_is_not_retried() {
    let router = models_route(Router::new())
        .route(
            "/v1/completions",
            post(|| async { "<html>Bad gateway page from some proxy</html>" }),
        )
        .route(
            "/two/v1/completions",
            post(|| async { axum::Json(json!({"choices": [{"text": "a"}, {"text": "b"}]})) }),
        )
        .route(
            "/two/v1/models",
            get(|| async { axum::Json(json!({"data": [{"id": "m"}]})) }),
        );
    let addr = serve(router);
    let client = Client::connect(options(addr)).unwrap();
    let results = client.complete(&text_requests(1));
    let error = results[0].as_ref().unwrap_err();
    assert!(matches!(error, ClientError::Malformed { .. }), "{error}");
    assert!(error.to_string().contains("Bad gateway page"), "{error}");
    assert_eq!(client.metrics().retries, 0);

    let client = Client::connect(ClientOptions {
        endpoint: format!("http://{addr}/two/v1"),
        ..options(addr)
    })
    .unwrap();
    let error = client.complete(&text_requests(1)).remove(0).unwrap_err();
    assert!(
        error.to_string().contains("2 choices, expected 1"),
        "{error}"
    );
}

#[test]
fn garbage_instead_of_http_is_retried_then_recorded() {
    // A raw TCP "server": a proper answer to `GET /v1/models`, bytes that are not HTTP to
    // anything else.
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    std::thread::spawn(move || {
        for stream in listener.incoming() {
            let Ok(mut stream) = stream else { continue };
            let mut buffer = [0u8; 4096];
            let n = stream.read(&mut buffer).unwrap_or(0);
            if buffer[..n].starts_with(b"GET /v1/models") {
                let body = r#"{"data":[{"id":"m"}]}"#;
                let head = format!(
                    "HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: {}\r\nconnection: close\r\n\r\n",
                    body.len()
                );
                let _ = stream.write_all(head.as_bytes());
                let _ = stream.write_all(body.as_bytes());
            } else {
                let _ = stream.write_all(b"\x00\x01garbage, not HTTP\r\n\r\n");
            }
        }
    });
    let client = Client::connect(ClientOptions {
        max_retries: 2,
        ..options(addr)
    })
    .unwrap();
    let started = Instant::now();
    let results = client.complete(&text_requests(3));
    assert!(started.elapsed() < Duration::from_secs(3));
    for result in &results {
        let error = result.as_ref().unwrap_err();
        let ClientError::GaveUp { attempts: 3, last } = error else {
            panic!("{error}")
        };
        assert!(matches!(**last, ClientError::Transport { .. }), "{last}");
        assert!(error.to_string().contains(&addr.to_string()), "{error}");
    }
    assert_eq!(client.metrics().failed, 3);
}

#[test]
fn the_health_check_names_the_url_and_what_answered() {
    // Nothing listening.
    let free = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = free.local_addr().unwrap();
    drop(free);
    let error = Client::connect(options(addr)).err().unwrap();
    let message = error.to_string();
    assert!(
        matches!(error, ClientError::Unreachable { .. }),
        "{message}"
    );
    assert!(
        message.contains(&format!("http://{addr}/v1/models")),
        "{message}"
    );

    // Something else answering.
    let router = Router::new().route("/", get(|| async { "hello" }));
    let addr = serve(router);
    let error = Client::connect(options(addr)).err().unwrap();
    let message = error.to_string();
    assert!(message.contains("answered HTTP 404"), "{message}");
    assert!(message.contains("/v1/models"), "{message}");

    // A model that is not served.
    let addr = serve(models_route(Router::new()));
    let error = Client::connect(ClientOptions {
        model: Some("other".to_owned()),
        ..options(addr)
    })
    .err()
    .unwrap();
    assert!(error.to_string().contains("serves: m"), "{error}");

    // A list without models.
    let router = Router::new().route(
        "/v1/models",
        get(|| async { axum::Json(json!({"data": []})) }),
    );
    let error = Client::connect(options(serve(router))).err().unwrap();
    assert!(matches!(error, ClientError::NoModel { .. }), "{error}");
}

#[test]
fn the_request_is_the_documented_one_with_the_api_key() {
    // (Authorization header, JSON body) of each request.
    type Seen = Vec<(Option<String>, Value)>;
    let seen: Arc<Mutex<Seen>> = Arc::default();
    let recorded = Arc::clone(&seen);
    let router = models_route(Router::new()).route(
        "/v1/completions",
        post(move |headers: HeaderMap, body: bytes::Bytes| {
            let recorded = Arc::clone(&recorded);
            async move {
                let auth = headers
                    .get("authorization")
                    .map(|v| v.to_str().unwrap().to_owned());
                recorded
                    .lock()
                    .unwrap()
                    .push((auth, serde_json::from_slice(&body).unwrap()));
                axum::Json(json!({"choices": [{"text": "x", "finish_reason": null}]}))
            }
        }),
    );
    let addr = serve(router);
    std::env::set_var("PROX_CLIENT_TEST_KEY", "secret-123");
    let request = CompletionRequest {
        prompt_ids: vec![1, 3923, 338],
        prompt_text: "Hello".to_owned(),
        max_tokens: 7,
        stop: Vec::new(),
    };
    for format in [PromptFormat::TokenIds, PromptFormat::Text] {
        let client = Client::connect(ClientOptions {
            api_key_env: "PROX_CLIENT_TEST_KEY".to_owned(),
            prompt_format: format,
            ..options(addr)
        })
        .unwrap();
        let completion = client
            .complete(std::slice::from_ref(&request))
            .remove(0)
            .unwrap();
        assert_eq!(completion.finish_reason, "unknown");
        assert_eq!(completion.prompt_tokens, None);
    }
    let seen = seen.lock().unwrap();
    assert_eq!(seen[0].0.as_deref(), Some("Bearer secret-123"));
    assert_eq!(
        seen[0].1,
        json!({"model": "m", "prompt": [1, 3923, 338], "max_tokens": 7, "temperature": 0.0})
    );
    assert_eq!(
        seen[1].1,
        json!({"model": "m", "prompt": "Hello", "max_tokens": 7, "temperature": 0.0})
    );
}

#[test]
fn requests_in_flight_never_exceed_the_bound_across_threads() {
    let current = Arc::new(AtomicUsize::new(0));
    let most = Arc::new(AtomicUsize::new(0));
    let (c, m) = (Arc::clone(&current), Arc::clone(&most));
    let router = models_route(Router::new()).route(
        "/v1/completions",
        post(move || {
            let (c, m) = (Arc::clone(&c), Arc::clone(&m));
            async move {
                let now = c.fetch_add(1, Ordering::SeqCst) + 1;
                m.fetch_max(now, Ordering::SeqCst);
                tokio::time::sleep(Duration::from_millis(10)).await;
                c.fetch_sub(1, Ordering::SeqCst);
                axum::Json(answer("ok"))
            }
        }),
    );
    let client = Arc::new(
        Client::connect(ClientOptions {
            max_in_flight: 3,
            ..options(serve(router))
        })
        .unwrap(),
    );
    let threads: Vec<_> = (0..3)
        .map(|_| {
            let client = Arc::clone(&client);
            std::thread::spawn(move || client.complete(&text_requests(12)))
        })
        .collect();
    for thread in threads {
        assert!(thread.join().unwrap().iter().all(Result::is_ok));
    }
    assert_eq!(most.load(Ordering::SeqCst), 3);
    assert_eq!(client.metrics().requests, 36);
}

#[test]
fn a_chat_request_is_sent_retried_and_read_like_a_completion() {
    let seen: Arc<Mutex<Vec<Value>>> = Arc::default();
    let recorded = Arc::clone(&seen);
    let router = models_route(Router::new()).route(
        "/v1/chat/completions",
        post(move |body: bytes::Bytes| {
            let recorded = Arc::clone(&recorded);
            async move {
                let mut recorded = recorded.lock().unwrap();
                recorded.push(serde_json::from_slice(&body).unwrap());
                // The first attempt fails as an overloaded server does; the retry succeeds.
                if recorded.len() == 1 {
                    return StatusCode::SERVICE_UNAVAILABLE.into_response();
                }
                axum::Json(json!({
                    "choices": [{"index": 0, "message": {"role": "assistant", "content": "Hi!"},
                                 "finish_reason": "stop", "stop_reason": "\n"}],
                    "usage": {"prompt_tokens": 9, "completion_tokens": 2},
                }))
                .into_response()
            }
        }),
    );
    let client = Client::connect(options(serve(router))).unwrap();
    let request = ChatRequest {
        messages: vec![
            ChatMessage::new("system", "Be brief."),
            ChatMessage::new("user", "Hello"),
        ],
        max_tokens: 5,
        stop: vec!["\n".to_owned()],
    };
    let completion = client.chat(&[request]).remove(0).unwrap();
    assert_eq!(completion.text, "Hi!");
    assert_eq!(completion.finish_reason, "stop");
    assert_eq!(
        (completion.prompt_tokens, completion.completion_tokens),
        (Some(9), Some(2))
    );
    assert_eq!(client.metrics().retries, 1);
    let seen = seen.lock().unwrap();
    assert_eq!(seen.len(), 2);
    assert_eq!(
        seen[1],
        json!({"model": "m", "messages": [{"role": "system", "content": "Be brief."},
               {"role": "user", "content": "Hello"}],
               "max_tokens": 5, "temperature": 0.0, "stop": ["\n"]})
    );
}
