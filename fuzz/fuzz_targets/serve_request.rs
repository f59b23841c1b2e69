//! Any body for `prox serve`'s `/v1/completions` and `/v1/chat/completions`: parsing never
//! panics, a refusal says why, an accepted request holds what the server relies on (prompts
//! within the limit, no empty stop string, some messages), and written back as a body it parses
//! to the same request.
//!
//! prox-serve's own parsing (`crates/prox-serve/src/request.rs`, which the server's handlers
//! call) is compiled here as a module: it needs only serde_json, and fuzzing it this way does
//! not build the engine the rest of prox-serve needs.
//!
//! Input layout: one byte of settings (endpoint, whether chat is served, the prompt limit),
//! then the body.
#![no_main]

#[path = "../../crates/prox-serve/src/request.rs"]
#[allow(dead_code)]
mod request;

use libfuzzer_sys::fuzz_target;
use request::{parse_chat, parse_completions, Chat, Prompt, RequestBody, RequestError, Rules};
use serde_json::{json, Value};

fuzz_target!(|data: &[u8]| {
    let Some((&settings, body)) = data.split_first() else {
        return;
    };
    let rules = Rules {
        model_name: "prox",
        max_prompts_per_request: 1 + usize::from(settings >> 2 & 3),
        chat_unavailable: (settings & 2 != 0).then_some("the model has no chat template"),
    };
    if settings & 1 == 0 {
        if let Some(request) = accepted(parse_completions(body, &rules)) {
            assert!((1..=rules.max_prompts_per_request).contains(&request.input.len()));
            let prompts: Vec<Value> = request
                .input
                .iter()
                .map(|prompt| match prompt {
                    Prompt::Text(text) => json!(text),
                    Prompt::Ids(ids) => json!(ids),
                })
                .collect();
            let again = written_back(&request, "prompt", json!(prompts));
            assert_eq!(parse_completions(&again, &rules), Ok(request));
        }
    } else if let Some(request) = accepted(parse_chat(body, &rules)) {
        assert!(rules.chat_unavailable.is_none());
        let Chat {
            messages,
            add_generation_prompt,
        } = &request.input;
        assert!(!messages.is_empty());
        let messages: Vec<Value> = messages
            .iter()
            .map(|(role, content)| json!({"role": role, "content": content}))
            .collect();
        let mut again: Value =
            serde_json::from_slice(&written_back(&request, "messages", json!(messages)))
                .expect("written as JSON");
        again["add_generation_prompt"] = json!(add_generation_prompt);
        let again = serde_json::to_vec(&again).expect("a JSON value");
        assert_eq!(parse_chat(&again, &rules), Ok(request));
    }
});

/// The request, or `None` after checking that the refusal says why.
fn accepted<I>(parsed: Result<RequestBody<I>, RequestError>) -> Option<RequestBody<I>> {
    match parsed {
        Ok(request) => {
            assert!(request.stop.iter().all(|stop| !stop.is_empty()));
            Some(request)
        }
        Err(error) => {
            assert!(!error.message.is_empty());
            None
        }
    }
}

/// A body asking for `request` again, its prompts or messages under `name`.
fn written_back<I>(request: &RequestBody<I>, name: &str, input: Value) -> Vec<u8> {
    let body = json!({
        "model": "prox",
        name: input,
        "max_tokens": request.max_tokens,
        "stop": request.stop,
    });
    serde_json::to_vec(&body).expect("a JSON value")
}
