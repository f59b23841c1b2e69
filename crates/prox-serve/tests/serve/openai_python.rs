//! The official `openai` Python package (PyPI) against a live `prox serve` of
//! SmolLM2-135M-Instruct (its ChatML template and byte-level tokenizer from the GGUF file):
//! chat and text completions with `stop` read back exactly what the engine generates, and a
//! refused parameter reaches the client as its `BadRequestError`.
//!
//! The package is installed by `scripts/fetch-openai.sh` (its python: `$PROX_OPENAI_PYTHON`
//! or the script's default cache folder); the GGUF file by `scripts/fetch-smollm2.sh`
//! (`$PROX_SMOLLM2_GGUF`). Either missing fails the test with the command to run; only a
//! machine without `python3` at all skips it, saying so.

use std::process::Command;

use prox_engine::{LoadOptions, Model};
use prox_prompt::{JinjaTemplate, TemplateTokens};
use prox_test::fetched;
use serde_json::Value;

use crate::engine::{generate, serve};

const SCRIPT: &str = r#"
import json, sys
import openai

client = openai.OpenAI(base_url=sys.argv[1], api_key="unused", max_retries=0)
out = {}
chat = client.chat.completions.create(
    model="smollm2",
    messages=[{"role": "system", "content": "You are a helpful assistant."},
              {"role": "user", "content": "List three colours, one per line."}],
    max_tokens=40, temperature=0, stop=["\n- Blue"],
)
out["chat"] = {"content": chat.choices[0].message.content, "role": chat.choices[0].message.role,
               "finish_reason": chat.choices[0].finish_reason,
               "usage": [chat.usage.prompt_tokens, chat.usage.completion_tokens]}
free = client.chat.completions.create(
    model="smollm2", messages=[{"role": "user", "content": "Say hello."}], max_tokens=8,
)
out["free"] = {"content": free.choices[0].message.content,
               "finish_reason": free.choices[0].finish_reason}
text = client.completions.create(
    model="smollm2", prompt="The capital of France is", max_tokens=24, stop="\n\n", temperature=0,
)
out["text"] = {"text": text.choices[0].text, "finish_reason": text.choices[0].finish_reason}
try:
    client.completions.create(model="smollm2", prompt="x", max_tokens=4, stop=[""])
    out["refused"] = None
except openai.BadRequestError as e:
    out["refused"] = e.status_code
print(json.dumps(out))
"#;

fn python3_present() -> bool {
    Command::new("python3")
        .arg("--version")
        .output()
        .is_ok_and(|o| o.status.success())
}

#[test]
fn the_openai_python_client_chats_and_completes_with_stop() {
    if !python3_present() {
        eprintln!("SKIPPED: python3 is not installed; the openai package test needs it");
        return;
    }
    let python = fetched::openai_python();
    let gguf = fetched::smollm2_gguf();
    let served = Model::load(&gguf, &LoadOptions::default()).unwrap();
    let reference = Model::load(&gguf, &LoadOptions::default()).unwrap();
    let base_url = format!("http://{}/v1", serve(served, "smollm2"));

    let output = Command::new(&python)
        .args(["-c", SCRIPT, &base_url])
        .output()
        .unwrap();
    assert!(
        output.status.success(),
        "the openai script failed:\n{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let got: Value = serde_json::from_slice(&output.stdout).unwrap();

    // What the engine generates for the same requests.
    let tokenizer = reference.tokenizer.as_ref().unwrap();
    let template = JinjaTemplate::new(reference.chat_template.clone().unwrap()).unwrap();
    let tokens = TemplateTokens {
        bos_token: tokenizer.bos_token().unwrap_or_default().to_owned(),
        eos_token: tokenizer.eos_token().unwrap_or_default().to_owned(),
    };
    let chat_prompt = template
        .render_messages(
            &[
                ("system", "You are a helpful assistant."),
                ("user", "List three colours, one per line."),
            ],
            &tokens,
            true,
        )
        .unwrap();
    assert!(
        chat_prompt.contains("<|im_start|>assistant\n"),
        "{chat_prompt:?}"
    );
    let chat_ids = tokenizer.encode(&chat_prompt, false).unwrap();
    let chat = generate(&reference, chat_ids.clone(), 40, &["\n- Blue"]);
    assert_eq!(got["chat"]["content"], chat.text.as_str());
    assert_eq!(got["chat"]["role"], "assistant");
    assert_eq!(
        got["chat"]["finish_reason"],
        chat.generation.finish_reason.as_str()
    );
    assert_eq!(
        got["chat"]["usage"],
        serde_json::json!([chat_ids.len(), chat.generation.ids.len()])
    );

    let free_prompt = template
        .render_messages(&[("user", "Say hello.")], &tokens, true)
        .unwrap();
    let free = generate(
        &reference,
        tokenizer.encode(&free_prompt, false).unwrap(),
        8,
        &[],
    );
    assert_eq!(got["free"]["content"], free.text.as_str());
    assert_eq!(
        got["free"]["finish_reason"],
        free.generation.finish_reason.as_str()
    );

    let text = generate(
        &reference,
        tokenizer.encode("The capital of France is", true).unwrap(),
        24,
        &["\n\n"],
    );
    assert_eq!(got["text"]["text"], text.text.as_str());
    assert_eq!(
        got["text"]["finish_reason"],
        text.generation.finish_reason.as_str()
    );
    assert_eq!(got["refused"], 400);
    // The stop strings were chosen, from SmolLM2's free answers, to be met: the test must
    // exercise them, not the end-of-sequence token.
    assert_eq!(text.stop.as_deref(), Some("\n\n"), "{got}");
    assert_eq!(chat.stop.as_deref(), Some("\n- Blue"), "{got}");
}
