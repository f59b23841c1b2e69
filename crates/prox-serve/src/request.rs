//! Request bodies of `/v1/completions` and `/v1/chat/completions`: the JSON parsed and checked
//! into a [`RequestBody`] before anything reaches the tokenizer or the engine.
//!
//! This file uses nothing but `std` and `serde_json`: the fuzz target `serve_request`
//! (`fuzz/fuzz_targets/serve_request.rs`) compiles it on its own, so that fuzzing the server's
//! request parsing does not build the engine.

use serde_json::{json, Map, Value};

/// OpenAI's default when `max_tokens` is absent.
const DEFAULT_MAX_TOKENS: usize = 16;

/// The two endpoints, where their parameters differ.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Endpoint {
    Completions,
    Chat,
}

/// What the server checks a body against.
#[derive(Debug, Clone, Copy)]
pub struct Rules<'a> {
    /// The served model's name; a request naming another is refused.
    pub model_name: &'a str,
    /// The most prompts in one completions request.
    pub max_prompts_per_request: usize,
    /// Why chat requests cannot be served (no chat template), if they cannot.
    pub chat_unavailable: Option<&'a str>,
}

/// Why a body is refused.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RequestError {
    pub kind: RequestErrorKind,
    pub message: String,
}

/// The HTTP answer a refusal gets.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RequestErrorKind {
    /// `400`: the body is malformed or asks for what this server does not do.
    BadRequest,
    /// `404`: the body names a model this server does not serve.
    UnknownModel,
}

impl RequestError {
    fn bad_request(message: impl Into<String>) -> Self {
        RequestError {
            kind: RequestErrorKind::BadRequest,
            message: message.into(),
        }
    }
}

/// A checked request: what both endpoints share, and what is to be continued: the prompts of
/// a completions request (at least one, at most the rules' limit), or a [`Chat`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RequestBody<I> {
    pub max_tokens: usize,
    /// Stop strings, none empty.
    pub stop: Vec<String>,
    pub input: I,
}

/// A chat request's messages as `(role, content)`, at least one.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Chat {
    pub messages: Vec<(String, String)>,
    pub add_generation_prompt: bool,
}

/// One prompt of a completions request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Prompt {
    /// Text, to be tokenized as `prox generate` does.
    Text(String),
    /// Token ids, taken as they are.
    Ids(Vec<u32>),
}

/// Parses a `/v1/completions` body and checks it against `rules`, in this order: the body is
/// a JSON object, the model's name, parameters greedy decoding cannot honour, `max_tokens`,
/// `stop`, the prompts.
pub fn parse_completions(
    body: &[u8],
    rules: &Rules<'_>,
) -> Result<RequestBody<Vec<Prompt>>, RequestError> {
    let common = common(body, Endpoint::Completions, rules)?;
    Ok(RequestBody {
        input: prompts(common.input.get("prompt"), rules)?,
        max_tokens: common.max_tokens,
        stop: common.stop,
    })
}

/// Parses a `/v1/chat/completions` body and checks it against `rules`: what
/// [`parse_completions`] checks up to `stop`, then whether chat is served, the messages and
/// `add_generation_prompt`.
pub fn parse_chat(body: &[u8], rules: &Rules<'_>) -> Result<RequestBody<Chat>, RequestError> {
    let RequestBody {
        max_tokens,
        stop,
        input: params,
    } = common(body, Endpoint::Chat, rules)?;
    if let Some(reason) = rules.chat_unavailable {
        return Err(RequestError::bad_request(reason));
    }
    let messages = messages(params.get("messages"))?;
    let add_generation_prompt = match given(&params, "add_generation_prompt") {
        None => true,
        Some(Value::Bool(add)) => *add,
        Some(other) => {
            return Err(RequestError::bad_request(format!(
                "`add_generation_prompt` must be a boolean, not {other}"
            )))
        }
    };
    Ok(RequestBody {
        max_tokens,
        stop,
        input: Chat {
            messages,
            add_generation_prompt,
        },
    })
}

/// What both endpoints read alike: `max_tokens` and `stop`, with all the parameters as input.
fn common(
    body: &[u8],
    endpoint: Endpoint,
    rules: &Rules<'_>,
) -> Result<RequestBody<Map<String, Value>>, RequestError> {
    let params: Value = serde_json::from_slice(body)
        .map_err(|e| RequestError::bad_request(format!("the body is not JSON: {e}")))?;
    let Value::Object(params) = params else {
        return Err(RequestError::bad_request("the body is not a JSON object"));
    };
    if let Some(model) = params.get("model").filter(|m| !m.is_null()) {
        if model.as_str() != Some(rules.model_name) {
            return Err(RequestError {
                kind: RequestErrorKind::UnknownModel,
                message: format!(
                    "the model {model} does not exist; this server serves `{}`",
                    rules.model_name
                ),
            });
        }
    }
    refuse_what_greedy_cannot_honour(&params, endpoint)?;
    // The chat API's newer name wins over the older one, as in OpenAI's and vLLM's servers.
    let max_tokens = match endpoint {
        Endpoint::Chat => ["max_completion_tokens", "max_tokens"]
            .into_iter()
            .find_map(|name| given(&params, name).map(|v| (name, v))),
        Endpoint::Completions => given(&params, "max_tokens").map(|v| ("max_tokens", v)),
    };
    let max_tokens = match max_tokens {
        None => DEFAULT_MAX_TOKENS,
        Some((name, value)) => value
            .as_u64()
            .and_then(|n| usize::try_from(n).ok())
            .ok_or_else(|| {
                RequestError::bad_request(format!(
                    "`{name}` must be a non-negative integer, not {value}"
                ))
            })?,
    };
    let stop = stop_strings(params.get("stop"))?;
    Ok(RequestBody {
        max_tokens,
        stop,
        input: params,
    })
}

/// A parameter that is present and not `null`.
fn given<'p>(params: &'p Map<String, Value>, name: &str) -> Option<&'p Value> {
    params.get(name).filter(|v| !v.is_null())
}

/// `stop` as vLLM takes it: absent, `null`, a string, or a list of strings, none empty.
fn stop_strings(stop: Option<&Value>) -> Result<Vec<String>, RequestError> {
    const SHAPE: &str = "`stop` must be a string or a list of strings";
    let stop = match stop {
        None | Some(Value::Null) => Vec::new(),
        Some(Value::String(one)) => vec![one.clone()],
        Some(Value::Array(items)) => items
            .iter()
            .map(|item| match item {
                Value::String(text) => Ok(text.clone()),
                other => Err(RequestError::bad_request(format!(
                    "{SHAPE}; {other} is not a string"
                ))),
            })
            .collect::<Result<_, _>>()?,
        Some(other) => return Err(RequestError::bad_request(format!("{SHAPE}, not {other}"))),
    };
    if stop.iter().any(String::is_empty) {
        return Err(RequestError::bad_request(
            "`stop` cannot contain an empty string",
        ));
    }
    Ok(stop)
}

/// A chat request's `messages` as `(role, content)`: content a string, a list of text
/// parts (joined with newlines, as vLLM joins them), or `null` (an empty string).
fn messages(messages: Option<&Value>) -> Result<Vec<(String, String)>, RequestError> {
    let items = match messages {
        Some(Value::Array(items)) if !items.is_empty() => items,
        Some(Value::Array(_)) => return Err(RequestError::bad_request("`messages` is empty")),
        None | Some(Value::Null) => return Err(RequestError::bad_request("`messages` is missing")),
        Some(_) => return Err(RequestError::bad_request("`messages` must be a list")),
    };
    items
        .iter()
        .enumerate()
        .map(|(index, message)| {
            let bad = |what: &str| RequestError::bad_request(format!("messages[{index}]: {what}"));
            let role = message
                .get("role")
                .and_then(Value::as_str)
                .ok_or_else(|| bad("`role` must be a string"))?;
            let content = match message.get("content") {
                None | Some(Value::Null) => String::new(),
                Some(Value::String(text)) => text.clone(),
                Some(Value::Array(parts)) => parts
                    .iter()
                    .map(|part| match (part.get("type").and_then(Value::as_str), part.get("text")) {
                        (Some("text"), Some(Value::String(text))) => Ok(text.as_str()),
                        _ => Err(bad("only text content parts (`{\"type\": \"text\", \"text\": …}`) are supported")),
                    })
                    .collect::<Result<Vec<&str>, _>>()?
                    .join("\n"),
                Some(_) => return Err(bad("`content` must be a string or a list of text parts")),
            };
            Ok((role.to_owned(), content))
        })
        .collect()
}

/// Sampling parameters this server cannot honour: refused, because ignoring them would
/// silently return something other than what was asked.
fn refuse_what_greedy_cannot_honour(
    params: &Map<String, Value>,
    endpoint: Endpoint,
) -> Result<(), RequestError> {
    let given = |name: &str| given(params, name);
    let number_is =
        |name: &str, neutral: f64| given(name).is_none_or(|v| v.as_f64() == Some(neutral));
    let is_true = |name: &str| given(name).is_some_and(|v| v != &Value::Bool(false));
    if !number_is("temperature", 0.0) {
        return Err(RequestError::bad_request(
            "only greedy decoding is served: `temperature` must be 0 or absent",
        ));
    }
    for (name, neutral) in [
        ("n", 1.0),
        ("best_of", 1.0),
        ("presence_penalty", 0.0),
        ("frequency_penalty", 0.0),
        ("repetition_penalty", 1.0),
        ("min_tokens", 0.0),
    ] {
        if !number_is(name, neutral) {
            return Err(RequestError::bad_request(format!(
                "`{name}` other than {neutral} is not supported"
            )));
        }
    }
    if is_true("stream") {
        return Err(RequestError::bad_request("streaming is not supported"));
    }
    for name in ["echo", "ignore_eos", "include_stop_str_in_output"] {
        if is_true(name) {
            return Err(RequestError::bad_request(format!(
                "`{name}` is not supported"
            )));
        }
    }
    if given("stop_token_ids").is_some_and(|v| !v.as_array().is_some_and(Vec::is_empty)) {
        return Err(RequestError::bad_request(
            "`stop_token_ids` is not supported; use `stop` strings",
        ));
    }
    match endpoint {
        Endpoint::Completions => {
            for name in ["logprobs", "suffix"] {
                if given(name).is_some() {
                    return Err(RequestError::bad_request(format!(
                        "`{name}` is not supported"
                    )));
                }
            }
        }
        Endpoint::Chat => {
            // In the chat API `logprobs` is a flag.
            if is_true("logprobs") {
                return Err(RequestError::bad_request("`logprobs` is not supported"));
            }
            for name in ["top_logprobs", "functions", "function_call", "logit_bias"] {
                if given(name).is_some() {
                    return Err(RequestError::bad_request(format!(
                        "`{name}` is not supported"
                    )));
                }
            }
            if given("tools").is_some_and(|v| !v.as_array().is_some_and(Vec::is_empty)) {
                return Err(RequestError::bad_request("`tools` are not supported"));
            }
            if given("response_format").is_some_and(|v| v != &json!({"type": "text"})) {
                return Err(RequestError::bad_request(
                    "`response_format` other than {\"type\": \"text\"} is not supported",
                ));
            }
        }
    }
    Ok(())
}

/// A completions request's `prompt`: a string, a list of token ids, a list of strings or a list
/// of lists of token ids, with no more prompts than the rules allow.
fn prompts(prompt: Option<&Value>, rules: &Rules<'_>) -> Result<Vec<Prompt>, RequestError> {
    const SHAPE: &str =
        "`prompt` must be a string, a list of token ids, a list of strings or a list of lists of token ids";
    let token_ids = |items: &[Value]| -> Result<Prompt, RequestError> {
        items
            .iter()
            .map(|v| {
                v.as_u64()
                    .and_then(|n| u32::try_from(n).ok())
                    .ok_or_else(|| {
                        RequestError::bad_request(format!("{SHAPE}; {v} is not a token id"))
                    })
            })
            .collect::<Result<_, _>>()
            .map(Prompt::Ids)
    };
    let prompts = match prompt {
        Some(Value::String(text)) => vec![Prompt::Text(text.clone())],
        Some(Value::Array(items)) => match items.first() {
            None => return Err(RequestError::bad_request("`prompt` is an empty list")),
            Some(Value::Number(_)) => vec![token_ids(items)?],
            Some(Value::String(_)) => items
                .iter()
                .map(|item| match item {
                    Value::String(text) => Ok(Prompt::Text(text.clone())),
                    _ => Err(RequestError::bad_request(SHAPE)),
                })
                .collect::<Result<_, _>>()?,
            Some(Value::Array(_)) => items
                .iter()
                .map(|item| match item {
                    Value::Array(ids) => token_ids(ids),
                    _ => Err(RequestError::bad_request(SHAPE)),
                })
                .collect::<Result<_, _>>()?,
            Some(_) => return Err(RequestError::bad_request(SHAPE)),
        },
        None | Some(Value::Null) => return Err(RequestError::bad_request("`prompt` is missing")),
        Some(_) => return Err(RequestError::bad_request(SHAPE)),
    };
    if prompts.len() > rules.max_prompts_per_request {
        return Err(RequestError::bad_request(format!(
            "{} prompts in one request; at most {} are accepted",
            prompts.len(),
            rules.max_prompts_per_request
        )));
    }
    Ok(prompts)
}

#[cfg(test)]
mod tests {
    use super::*;

    const RULES: Rules<'static> = Rules {
        model_name: "prox",
        max_prompts_per_request: 2,
        chat_unavailable: None,
    };

    fn refusal<I: std::fmt::Debug>(parsed: Result<RequestBody<I>, RequestError>) -> String {
        parsed.unwrap_err().message
    }

    #[test]
    fn every_prompt_shape_parses_and_defaults_apply() {
        let parsed = parse_completions(br#"{"prompt": ["a", "b"], "stop": "x"}"#, &RULES).unwrap();
        assert_eq!(parsed.max_tokens, DEFAULT_MAX_TOKENS);
        assert_eq!(parsed.stop, ["x"]);
        assert_eq!(
            parsed.input,
            [Prompt::Text("a".into()), Prompt::Text("b".into())]
        );
        let parsed =
            parse_completions(br#"{"prompt": [[1, 2], []], "max_tokens": 3}"#, &RULES).unwrap();
        assert_eq!(parsed.max_tokens, 3);
        assert_eq!(parsed.input, [Prompt::Ids(vec![1, 2]), Prompt::Ids(vec![])]);
        let parsed = parse_completions(br#"{"prompt": [7], "model": "prox"}"#, &RULES).unwrap();
        assert_eq!(parsed.input, [Prompt::Ids(vec![7])]);
    }

    #[test]
    fn refusals_come_in_the_documented_order() {
        let wrong_model = br#"{"model": "gpt", "temperature": 1, "prompt": 3}"#;
        let error = parse_completions(wrong_model, &RULES).unwrap_err();
        assert_eq!(error.kind, RequestErrorKind::UnknownModel);
        assert!(refusal(parse_completions(
            br#"{"temperature": 1, "stop": ""}"#,
            &RULES
        ))
        .contains("temperature"));
        assert!(refusal(parse_completions(br#"{"stop": [""]}"#, &RULES)).contains("empty"));
        assert!(
            refusal(parse_completions(br#"{"prompt": ["a", "b", "c"]}"#, &RULES))
                .contains("3 prompts")
        );
        assert!(
            refusal(parse_completions(br#"{"prompt": [4294967296]}"#, &RULES))
                .contains("not a token id")
        );
    }

    #[test]
    fn chat_checks_the_template_after_the_common_parameters() {
        let rules = Rules {
            chat_unavailable: Some("no template"),
            ..RULES
        };
        assert!(refusal(parse_chat(br#"{"stop": 1}"#, &rules)).contains("`stop`"));
        assert_eq!(
            refusal(parse_chat(br#"{"messages": 1}"#, &rules)),
            "no template"
        );
        let body = br#"{"messages": [{"role": "user", "content": [{"type": "text", "text": "a"},
            {"type": "text", "text": "b"}]}, {"role": "system"}], "max_completion_tokens": 5,
            "max_tokens": 9, "add_generation_prompt": false}"#;
        let parsed = parse_chat(body, &RULES).unwrap();
        assert_eq!(parsed.max_tokens, 5);
        assert_eq!(
            parsed.input,
            Chat {
                messages: vec![
                    ("user".into(), "a\nb".into()),
                    ("system".into(), String::new())
                ],
                add_generation_prompt: false,
            }
        );
    }
}
