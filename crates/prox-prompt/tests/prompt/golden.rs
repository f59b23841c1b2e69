//! Every field of every document of `prompts/vectors.jsonl`, built from the fixture
//! `tokenizer.json` and from `tokenizer.model` converted in Rust; all mismatches listed.

use std::path::PathBuf;

use prox_prompt::{number_lines, ChatTemplate, PromptMode, Prompter, LLAMA2_CHAT_TEMPLATE};
use prox_test::json::{strings, u32s};
use prox_test::mismatch::assert_none;
use prox_tokenizer::Tokenizer;
use serde_json::Value;

fn tokenizers() -> Vec<(&'static str, Tokenizer)> {
    let dir: PathBuf = prox_test::fixture("llama2-tokenizer");
    vec![
        (
            "tokenizer.json",
            Tokenizer::from_file(&dir.join("tokenizer.json")).unwrap(),
        ),
        (
            "tokenizer.model",
            Tokenizer::from_sentencepiece(&dir.join("tokenizer.model")).unwrap(),
        ),
    ]
}

fn vectors() -> Vec<(usize, Value)> {
    prox_test::read_jsonl(prox_test::fixture("prompts/vectors.jsonl"))
}

/// Compares every field of every document; returns the mismatches, by tokenizer and line.
fn mismatches(prompter: &Prompter, name: &str) -> Vec<String> {
    let mut found = Vec::new();
    for (line, doc) in vectors() {
        let text = doc["text"].as_str().unwrap();
        let mut report = |field: &str, detail: String| {
            found.push(format!("{name}: line {line}: {field}: {detail}"));
        };
        let chunks = prompter.chunk_prompts(text).unwrap();
        let expected_chunks = strings(&doc["chunks"]);
        let got_chunks: Vec<String> = chunks.iter().map(|c| c.chunk.text.clone()).collect();
        if got_chunks != expected_chunks {
            report(
                "chunks",
                format!(
                    "{} chunks, expected {}",
                    got_chunks.len(),
                    expected_chunks.len()
                ),
            );
        }
        let expected_prompts = strings(&doc["chunk_prompts"]);
        let got_prompts: Vec<String> = chunks.iter().map(|c| c.prompt.clone()).collect();
        if got_prompts != expected_prompts {
            report("chunk_prompts", "differ".into());
        }
        let expected_ids: Vec<Vec<u32>> = doc["chunk_prompt_ids"]
            .as_array()
            .unwrap()
            .iter()
            .map(u32s)
            .collect();
        for (i, expected) in expected_ids.iter().enumerate() {
            match chunks.get(i) {
                Some(chunk) if &chunk.ids == expected => {}
                Some(chunk) => {
                    let at = chunk.ids.iter().zip(expected).position(|(a, b)| a != b);
                    report(
                        "chunk_prompt_ids",
                        format!(
                            "chunk {i}: first difference at {at:?}, lengths {} vs {}",
                            chunk.ids.len(),
                            expected.len()
                        ),
                    );
                }
                None => report("chunk_prompt_ids", format!("chunk {i} missing")),
            }
        }
        let expected_doc = u32s(&doc["doc_prompt_ids"]);
        let got_doc = prompter.doc_prompt_ids(text).unwrap();
        if got_doc != expected_doc {
            let at = got_doc.iter().zip(&expected_doc).position(|(a, b)| a != b);
            report(
                "doc_prompt_ids",
                format!(
                    "first difference at {at:?}, lengths {} vs {}",
                    got_doc.len(),
                    expected_doc.len()
                ),
            );
        }
    }
    found
}

#[test]
fn faithful_prompts_match_the_reference_for_both_tokenizers() {
    let mut all = Vec::new();
    for (name, tokenizer) in tokenizers() {
        all.extend(mismatches(&Prompter::new(&tokenizer), name));
    }
    assert_none(
        &all,
        vectors().len(),
        "documents, each with both tokenizers",
    );
}

#[test]
fn the_jinja_llama2_template_gives_the_same_prompts() {
    let (_, tokenizer) = tokenizers().remove(0);
    let template = ChatTemplate::jinja(LLAMA2_CHAT_TEMPLATE).unwrap();
    let prompter = Prompter::new(&tokenizer).with_template(template);
    let found = mismatches(&prompter, "jinja");
    assert_none(&found, vectors().len(), "documents");
}

#[test]
fn fixture_chunks_are_the_numbered_lines() {
    for (line, doc) in vectors() {
        let numbered: Vec<String> = number_lines(doc["text"].as_str().unwrap()).collect();
        let from_chunks: Vec<String> = strings(&doc["chunks"])
            .iter()
            .flat_map(|c| c.split('\n').map(String::from).collect::<Vec<_>>())
            .collect();
        assert_eq!(numbered, from_chunks, "line {line}");
    }
}

#[test]
fn robust_prompts_keep_document_text_literal_and_end_with_inst() {
    let (_, tokenizer) = tokenizers().remove(0);
    let prompter = Prompter::new(&tokenizer).with_mode(PromptMode::Robust);
    // "▁[/INST]": the fast tokenizer puts the ▁ in front.
    let close = tokenizer.encode("[/INST]", false).unwrap();
    for (line, doc) in vectors() {
        let text = doc["text"].as_str().unwrap();
        let doc_prompt = prompter.doc_prompt(text).unwrap();
        assert!(doc_prompt.ids.len() <= 2000, "line {line}");
        assert!(
            doc_prompt.ids.ends_with(&close),
            "line {line}: {:?}",
            &doc_prompt.ids[doc_prompt.ids.len() - 5..]
        );
        assert_eq!(
            doc_prompt
                .ids
                .iter()
                .filter(|&&id| id == 1 || id == 2)
                .count(),
            1,
            "line {line}"
        );
        if !doc_prompt.truncated {
            // Same as faithful, except that special tokens in the text stay text.
            if !text.contains("<s>") && !text.contains("</s>") && !text.contains("<unk>") {
                assert_eq!(doc_prompt.ids, u32s(&doc["doc_prompt_ids"]), "line {line}");
            }
        }
        for chunk in prompter.chunk_prompts(text).unwrap() {
            assert_eq!(chunk.ids[..2], [1, 1]);
            assert!(
                !chunk.ids[2..].iter().any(|&id| id == 1 || id == 2),
                "line {line}"
            );
        }
    }
}
