//! The JSON of `/v1/models` and `/v1/completions`: exactly the fields the crate documentation
//! lists.

use serde::{Deserialize, Serialize};

#[derive(Serialize)]
pub(crate) struct CompletionBody<'a> {
    pub model: &'a str,
    pub prompt: PromptField<'a>,
    pub max_tokens: usize,
    pub temperature: f32,
}

#[derive(Serialize)]
#[serde(untagged)]
pub(crate) enum PromptField<'a> {
    TokenIds(&'a [u32]),
    Text(&'a str),
}

#[derive(Deserialize)]
pub(crate) struct CompletionResponse {
    pub choices: Vec<Choice>,
    #[serde(default)]
    pub usage: Option<Usage>,
}

#[derive(Deserialize)]
pub(crate) struct Choice {
    pub text: String,
    #[serde(default)]
    pub finish_reason: Option<String>,
}

#[derive(Deserialize)]
pub(crate) struct Usage {
    #[serde(default)]
    pub prompt_tokens: Option<u64>,
    #[serde(default)]
    pub completion_tokens: Option<u64>,
}

#[derive(Deserialize)]
pub(crate) struct ModelList {
    pub data: Vec<ModelEntry>,
}

#[derive(Deserialize)]
pub(crate) struct ModelEntry {
    pub id: String,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_body_is_the_documented_one() {
        let ids = [1u32, 3923, 338];
        let body = CompletionBody {
            model: "m",
            prompt: PromptField::TokenIds(&ids),
            max_tokens: 512,
            temperature: 0.0,
        };
        assert_eq!(
            serde_json::to_string(&body).unwrap(),
            r#"{"model":"m","prompt":[1,3923,338],"max_tokens":512,"temperature":0.0}"#
        );
        let body = CompletionBody {
            prompt: PromptField::Text("Hi"),
            ..body
        };
        assert_eq!(
            serde_json::to_string(&body).unwrap(),
            r#"{"model":"m","prompt":"Hi","max_tokens":512,"temperature":0.0}"#
        );
    }

    #[test]
    fn a_vllm_answer_reads() {
        // vLLM 0.6's answer to a token-id prompt, `logprobs` and `stop_reason` ignored.
        let answer = r#"{"id":"cmpl-1","object":"text_completion","created":1,"model":"m",
            "choices":[{"index":0,"text":" drop_doc()","logprobs":null,"finish_reason":"stop","stop_reason":null}],
            "usage":{"prompt_tokens":3,"total_tokens":8,"completion_tokens":5}}"#;
        let response: CompletionResponse = serde_json::from_str(answer).unwrap();
        assert_eq!(response.choices[0].text, " drop_doc()");
        assert_eq!(response.choices[0].finish_reason.as_deref(), Some("stop"));
        let usage = response.usage.unwrap();
        assert_eq!(
            (usage.prompt_tokens, usage.completion_tokens),
            (Some(3), Some(5))
        );
    }
}
