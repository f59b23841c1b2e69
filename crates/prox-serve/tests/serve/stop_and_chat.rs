//! `stop` in `/v1/completions` and `/v1/chat/completions`, over real HTTP on loopback with
//! the tiny fixture model (and the Llama-2 chat template for the chat endpoint): the server
//! answers what the engine's `generate_text` gives, in OpenAI's shapes, and refuses what it
//! cannot honour.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::sync::OnceLock;
use std::time::Duration;

use prox_engine::{LoadOptions, Model, TextGeneration};
use prox_prompt::{JinjaTemplate, TemplateTokens, LLAMA2_CHAT_TEMPLATE};
use serde_json::{json, Value};

use crate::engine::{generate, serve};

const PROMPT: &str = "The quick brown fox jumps over the lazy dog.";

fn load(chat_template: Option<&str>) -> Model {
    let mut model =
        Model::load(&prox_test::fixture("tiny-llama"), &LoadOptions::default()).unwrap();
    model.chat_template = chat_template.map(str::to_owned);
    model
}

/// The model the expectations are computed with, apart from the served one.
fn reference() -> &'static Model {
    static MODEL: OnceLock<Model> = OnceLock::new();
    MODEL.get_or_init(|| load(None))
}

/// The tiny model served as `tiny`, with `chat_template`.
fn server(chat_template: Option<&str>) -> SocketAddr {
    serve(load(chat_template), "tiny")
}

fn with_chat() -> SocketAddr {
    static ADDR: OnceLock<SocketAddr> = OnceLock::new();
    *ADDR.get_or_init(|| server(Some(LLAMA2_CHAT_TEMPLATE)))
}

/// `POST path` with a JSON body; the status and the JSON answer.
fn post(addr: SocketAddr, path: &str, body: &Value) -> (u16, Value) {
    let body = body.to_string();
    let mut stream = TcpStream::connect(addr).unwrap();
    stream
        .set_read_timeout(Some(Duration::from_secs(120)))
        .unwrap();
    write!(
        stream,
        "POST {path} HTTP/1.1\r\nHost: {addr}\r\nContent-Type: application/json\r\n\
         Content-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    )
    .unwrap();
    let mut answer = String::new();
    stream.read_to_string(&mut answer).unwrap();
    let (head, body) = answer.split_once("\r\n\r\n").unwrap();
    let status = head.split(' ').nth(1).unwrap().parse().unwrap();
    (status, serde_json::from_str(body).unwrap())
}

fn expected(prompt_ids: Vec<u32>, max_new_tokens: usize, stop: &[&str]) -> TextGeneration {
    generate(reference(), prompt_ids, max_new_tokens, stop)
}

/// `messages` in the Llama-2 chat template, as the server renders them for the tiny model.
fn llama2_chat(messages: &[(&str, &str)]) -> String {
    JinjaTemplate::new(LLAMA2_CHAT_TEMPLATE)
        .unwrap()
        .render_messages(
            messages,
            &TemplateTokens {
                bos_token: "<s>".to_owned(),
                eos_token: "</s>".to_owned(),
            },
            true,
        )
        .unwrap()
}

fn prompt_ids(text: &str, bos: bool) -> Vec<u32> {
    reference()
        .tokenizer
        .as_ref()
        .unwrap()
        .encode(text, bos)
        .unwrap()
}

/// A stop string from the middle of `text`, spanning a few characters.
fn stop_inside(text: &str) -> String {
    let chars: Vec<char> = text.chars().collect();
    assert!(chars.len() > 12, "{text:?} is too short");
    chars[chars.len() / 2..chars.len() / 2 + 3].iter().collect()
}

#[test]
fn a_completion_ends_before_the_first_stop_string_as_vllm_answers() {
    let addr = with_chat();
    let free = post(
        addr,
        "/v1/completions",
        &json!({"model": "tiny", "prompt": PROMPT, "max_tokens": 40}),
    );
    assert_eq!(free.0, 200, "{}", free.1);
    let free_text = free.1["choices"][0]["text"].as_str().unwrap().to_owned();
    assert_eq!(free.1["choices"][0]["stop_reason"], Value::Null);
    let stop = stop_inside(&free_text);
    let want = expected(prompt_ids(PROMPT, true), 40, &[&stop]);
    assert_eq!(want.text, free_text[..free_text.find(&stop).unwrap()]);

    // A string and a one-element list are the same request.
    for stop_field in [json!(stop), json!([stop])] {
        let (status, answer) = post(
            addr,
            "/v1/completions",
            &json!({"prompt": PROMPT, "max_tokens": 40, "stop": stop_field}),
        );
        assert_eq!(status, 200, "{answer}");
        let choice = &answer["choices"][0];
        assert_eq!(choice["text"], json!(want.text));
        assert_eq!(choice["finish_reason"], "stop");
        assert_eq!(choice["stop_reason"], json!(stop));
        assert_eq!(choice["token_ids"], json!(want.generation.ids));
        assert_eq!(
            answer["usage"]["completion_tokens"],
            json!(want.generation.ids.len())
        );
        let free_ids = free.1["choices"][0]["token_ids"].as_array().unwrap();
        assert!(want.generation.ids.len() < free_ids.len());
    }
}

#[test]
fn each_prompt_of_a_request_stops_on_its_own() {
    let addr = with_chat();
    let prompts = [PROMPT, "Question: what is two plus two?\nAnswer:"];
    let free = post(
        addr,
        "/v1/completions",
        &json!({"prompt": prompts, "max_tokens": 30}),
    );
    let first = free.1["choices"][0]["text"].as_str().unwrap();
    let stop = stop_inside(first);
    let (status, answer) = post(
        addr,
        "/v1/completions",
        &json!({"prompt": prompts, "max_tokens": 30, "stop": [stop, "\u{1}never"]}),
    );
    assert_eq!(status, 200, "{answer}");
    for (index, prompt) in prompts.iter().enumerate() {
        let want = expected(prompt_ids(prompt, true), 30, &[&stop, "\u{1}never"]);
        let choice = &answer["choices"][index];
        assert_eq!(choice["text"], json!(want.text), "prompt {index}");
        assert_eq!(
            choice["finish_reason"],
            json!(want.generation.finish_reason.as_str())
        );
        assert_eq!(choice["stop_reason"], json!(want.stop));
    }
    assert_eq!(answer["choices"][0]["finish_reason"], "stop");
}

#[test]
fn a_chat_completion_renders_the_messages_with_the_chat_template() {
    let addr = with_chat();
    let messages = json!([
        {"role": "system", "content": "You are terse."},
        {"role": "user", "content": [{"type": "text", "text": "Hello"}, {"type": "text", "text": "there"}]},
    ]);
    let (status, answer) = post(
        addr,
        "/v1/chat/completions",
        &json!({"model": "tiny", "messages": messages, "max_tokens": 12, "temperature": 0}),
    );
    assert_eq!(status, 200, "{answer}");
    let rendered = llama2_chat(&[("system", "You are terse."), ("user", "Hello\nthere")]);
    assert!(rendered.starts_with("<s>[INST] <<SYS>>\nYou are terse."));
    let ids = prompt_ids(&rendered, false);
    assert_eq!(ids[0], 1, "one BOS, from the template");
    assert_ne!(ids[1], 1);
    let want = expected(ids.clone(), 12, &[]);
    assert_eq!(answer["object"], "chat.completion");
    assert_eq!(answer["choices"][0]["message"]["role"], "assistant");
    assert_eq!(answer["choices"][0]["message"]["content"], json!(want.text));
    assert_eq!(answer["choices"][0]["finish_reason"], "length");
    assert_eq!(answer["usage"]["prompt_tokens"], json!(ids.len()));
    assert_eq!(answer["usage"]["completion_tokens"], json!(12));
    assert_eq!(answer["usage"]["total_tokens"], json!(ids.len() + 12));

    // `stop` and `max_completion_tokens` (which wins over `max_tokens`).
    let stop = stop_inside(&want.text);
    let want = expected(ids, 12, &[&stop]);
    let (status, answer) = post(
        addr,
        "/v1/chat/completions",
        &json!({"messages": messages, "max_tokens": 2, "max_completion_tokens": 12,
                "stop": stop, "logprobs": false}),
    );
    assert_eq!(status, 200, "{answer}");
    assert_eq!(answer["choices"][0]["message"]["content"], json!(want.text));
    assert_eq!(answer["choices"][0]["finish_reason"], "stop");
    assert_eq!(answer["choices"][0]["stop_reason"], json!(stop));
}

#[test]
fn what_greedy_decoding_cannot_honour_is_refused_with_400() {
    let addr = with_chat();
    let messages = json!([{"role": "user", "content": "hi"}]);
    let refused = [
        ("/v1/completions", json!({"prompt": "a", "stop": ""})),
        ("/v1/completions", json!({"prompt": "a", "stop": ["x", ""]})),
        ("/v1/completions", json!({"prompt": "a", "stop": 5})),
        ("/v1/completions", json!({"prompt": "a", "stop": ["x", 5]})),
        (
            "/v1/completions",
            json!({"prompt": "a", "stop": "x", "include_stop_str_in_output": true}),
        ),
        (
            "/v1/completions",
            json!({"prompt": "a", "stop_token_ids": [2]}),
        ),
        (
            "/v1/completions",
            json!({"prompt": "a", "ignore_eos": true}),
        ),
        (
            "/v1/chat/completions",
            json!({"messages": messages, "temperature": 0.7}),
        ),
        (
            "/v1/chat/completions",
            json!({"messages": messages, "stop": [""]}),
        ),
        (
            "/v1/chat/completions",
            json!({"messages": messages, "n": 2}),
        ),
        (
            "/v1/chat/completions",
            json!({"messages": messages, "stream": true}),
        ),
        (
            "/v1/chat/completions",
            json!({"messages": messages, "logprobs": true}),
        ),
        (
            "/v1/chat/completions",
            json!({"messages": messages, "top_logprobs": 2}),
        ),
        (
            "/v1/chat/completions",
            json!({"messages": messages, "tools": [{"type": "function"}]}),
        ),
        (
            "/v1/chat/completions",
            json!({"messages": messages, "response_format": {"type": "json_object"}}),
        ),
        ("/v1/chat/completions", json!({"messages": []})),
        ("/v1/chat/completions", json!({"prompt": "a"})),
        (
            "/v1/chat/completions",
            json!({"messages": [{"content": "no role"}]}),
        ),
        (
            "/v1/chat/completions",
            json!({"messages": [{"role": "user", "content": [{"type": "image_url"}]}]}),
        ),
        (
            "/v1/chat/completions",
            json!({"messages": messages, "max_completion_tokens": -1}),
        ),
        // The Llama-2 template raises on roles that do not alternate.
        (
            "/v1/chat/completions",
            json!({"messages": [{"role": "assistant", "content": "x"}]}),
        ),
    ];
    let mut wrong = Vec::new();
    for (path, body) in &refused {
        let (status, answer) = post(addr, path, body);
        let message = answer["error"]["message"].as_str().unwrap_or_default();
        if status != 400 || message.is_empty() {
            wrong.push(format!("{path} {body}: {status} {answer}"));
        }
    }
    assert!(wrong.is_empty(), "not refused:\n{}", wrong.join("\n"));
    // Neutral values of the same parameters are accepted.
    let (status, answer) = post(
        addr,
        "/v1/completions",
        &json!({"prompt": "a", "max_tokens": 2, "stop": [], "include_stop_str_in_output": false,
                "stop_token_ids": [], "ignore_eos": false}),
    );
    assert_eq!(status, 200, "{answer}");
}

#[test]
fn a_model_without_a_chat_template_refuses_chat_and_still_completes() {
    let addr = server(None);
    let (status, answer) = post(
        addr,
        "/v1/chat/completions",
        &json!({"messages": [{"role": "user", "content": "hi"}]}),
    );
    assert_eq!(status, 400);
    let message = answer["error"]["message"].as_str().unwrap();
    assert!(message.contains("no chat template"), "{message}");
    let (status, _) = post(
        addr,
        "/v1/completions",
        &json!({"prompt": "a", "max_tokens": 1}),
    );
    assert_eq!(status, 200);
}

#[test]
fn prox_client_sends_stop_and_chat_requests_that_the_server_answers() {
    use prox_client::{ChatMessage, ChatRequest, Client, ClientOptions, CompletionRequest};

    let addr = with_chat();
    let client = Client::connect(ClientOptions {
        endpoint: format!("http://{addr}"),
        max_retries: 0,
        ..ClientOptions::default()
    })
    .unwrap();
    let ids = prompt_ids(PROMPT, true);
    let free = expected(ids.clone(), 30, &[]);
    let stop = stop_inside(&free.text);
    let want = expected(ids.clone(), 30, &[&stop]);
    let completion = client
        .complete(&[CompletionRequest {
            prompt_ids: ids,
            max_tokens: 30,
            stop: vec![stop],
            ..CompletionRequest::default()
        }])
        .remove(0)
        .unwrap();
    assert_eq!(completion.text, want.text);
    assert_eq!(completion.finish_reason, "stop");

    let chat = client
        .chat(&[ChatRequest {
            messages: vec![ChatMessage::new("user", "Hello")],
            max_tokens: 6,
            stop: Vec::new(),
        }])
        .remove(0)
        .unwrap();
    let rendered = llama2_chat(&[("user", "Hello")]);
    let want = expected(prompt_ids(&rendered, false), 6, &[]);
    assert_eq!(chat.text, want.text);
    assert_eq!(chat.completion_tokens, Some(6));
}
