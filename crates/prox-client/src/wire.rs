//! The JSON of `/v1/models` and `/v1/completions`: exactly the fields the crate documentation
//! lists.

use serde::{Deserialize, Serialize};

#[derive(Serialize)]
pub(crate) struct CompletionBody<'a> {
    pub model: &'a str,
    pub prompt: PromptField<'a>,
    pub max_tokens: usize,
    pub temperature: f32,
    /// Sent only when there are stop strings, so that a request without keeps the body
    /// every server takes.
    #[serde(skip_serializing_if = "<[String]>::is_empty")]
    pub stop: &'a [String],
}

#[derive(Serialize)]
pub(crate) struct ChatBody<'a> {
    pub model: &'a str,
    pub messages: &'a [crate::ChatMessage],
    pub max_tokens: usize,
    pub temperature: f32,
    #[serde(skip_serializing_if = "<[String]>::is_empty")]
    pub stop: &'a [String],
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
pub(crate) struct ChatResponse {
    pub choices: Vec<ChatChoice>,
    #[serde(default)]
    pub usage: Option<Usage>,
}

#[derive(Deserialize)]
pub(crate) struct ChatChoice {
    pub message: ChatReply,
    #[serde(default)]
    pub finish_reason: Option<String>,
}

#[derive(Deserialize)]
pub(crate) struct ChatReply {
    /// `null` when a server answers with tool calls instead; read as empty.
    #[serde(default)]
    pub content: Option<String>,
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
            stop: &[],
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
    fn stop_strings_and_chat_messages_are_sent_as_openai_names_them() {
        let stop = ["\n\nQuestion:".to_owned(), "</s>".to_owned()];
        let body = CompletionBody {
            model: "m",
            prompt: PromptField::Text("Hi"),
            max_tokens: 8,
            temperature: 0.0,
            stop: &stop,
        };
        assert_eq!(
            serde_json::to_string(&body).unwrap(),
            r#"{"model":"m","prompt":"Hi","max_tokens":8,"temperature":0.0,"stop":["\n\nQuestion:","</s>"]}"#
        );
        let messages = [crate::ChatMessage::new("user", "Hi")];
        let body = ChatBody {
            model: "m",
            messages: &messages,
            max_tokens: 8,
            temperature: 0.0,
            stop: &[],
        };
        assert_eq!(
            serde_json::to_string(&body).unwrap(),
            r#"{"model":"m","messages":[{"role":"user","content":"Hi"}],"max_tokens":8,"temperature":0.0}"#
        );
    }

    #[test]
    fn a_chat_answer_reads_and_a_null_content_is_empty() {
        let answer = r#"{"id":"chatcmpl-1","object":"chat.completion","created":1,"model":"m",
            "choices":[{"index":0,"message":{"role":"assistant","content":"Hello"},
            "finish_reason":"stop","stop_reason":"\n"}],
            "usage":{"prompt_tokens":9,"total_tokens":11,"completion_tokens":2}}"#;
        let response: ChatResponse = serde_json::from_str(answer).unwrap();
        assert_eq!(
            response.choices[0].message.content.as_deref(),
            Some("Hello")
        );
        assert_eq!(response.choices[0].finish_reason.as_deref(), Some("stop"));
        let answer = r#"{"choices":[{"message":{"role":"assistant","content":null}}]}"#;
        let response: ChatResponse = serde_json::from_str(answer).unwrap();
        assert_eq!(response.choices[0].message.content, None);
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
