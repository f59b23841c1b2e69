//! `prox prompts` end to end: the golden prompt vectors from the fixture tokenizer, bad input
//! lines reported and skipped, setup errors with exit status 2.

use std::path::Path;

use crate::support::{prox, read_rows, TestCommand};

/// `prox prompts` of the documents in `input` into `output`, with `tokenizer`.
fn prompts(tokenizer: &Path, input: &Path, output: &Path) -> TestCommand {
    prox(["prompts", "--tokenizer"])
        .arg(tokenizer)
        .arg("--input")
        .arg(input)
        .arg("--output")
        .arg(output)
}

#[test]
fn prompts_of_the_golden_documents_match_for_json_and_model_tokenizers() {
    let dir = tempfile::tempdir().unwrap();
    let vectors = prox_test::fixture("prompts/vectors.jsonl");
    let expected = prox_test::read_jsonl(&vectors);
    // Inputs with ids, so the output can be matched line by line.
    let input = dir.path().join("docs.jsonl");
    let lines: Vec<String> = expected
        .iter()
        .map(|(line, doc)| serde_json::json!({"id": line, "text": doc["text"]}).to_string())
        .collect();
    std::fs::write(&input, lines.join("\n")).unwrap();

    // A model folder that ships only tokenizer.model, like the released refiners.
    let model_dir = dir.path().join("refiner");
    std::fs::create_dir(&model_dir).unwrap();
    std::fs::copy(
        prox_test::fixture("llama2-tokenizer/tokenizer.model"),
        model_dir.join("tokenizer.model"),
    )
    .unwrap();

    for tokenizer in [
        prox_test::fixture("llama2-tokenizer/tokenizer.json"),
        model_dir.clone(),
    ] {
        let output = dir.path().join("prompts.jsonl");
        prompts(&tokenizer, &input, &output).success();
        let got = read_rows(&output);
        assert_eq!(got.len(), expected.len());
        for ((line, want), got) in expected.iter().zip(&got) {
            assert_eq!(got["id"], *line as u64);
            for field in [
                "chunks",
                "chunk_prompts",
                "chunk_prompt_ids",
                "doc_prompt_ids",
            ] {
                assert_eq!(got[field], want[field], "line {line}: {field}");
            }
        }
    }
}

#[test]
fn one_stage_writes_only_its_fields() {
    let dir = tempfile::tempdir().unwrap();
    let input = dir.path().join("in.jsonl");
    std::fs::write(&input, "{\"text\": \"a\\nb\"}\n").unwrap();
    let output = dir.path().join("out.jsonl");
    let tokenizer = prox_test::fixture("llama2-tokenizer");
    for (stage, fields) in [
        ("doc", vec!["doc_prompt_ids"]),
        ("chunk", vec!["chunks", "chunk_prompts", "chunk_prompt_ids"]),
    ] {
        prompts(&tokenizer, &input, &output)
            .args(["--stage", stage, "--mode", "robust"])
            .success();
        let got = read_rows(&output);
        let keys: Vec<&str> = got[0]
            .as_object()
            .unwrap()
            .keys()
            .map(String::as_str)
            .collect();
        assert_eq!(keys, fields);
    }
}

#[test]
fn bad_lines_are_reported_with_file_and_line_and_skipped() {
    let dir = tempfile::tempdir().unwrap();
    let input = dir.path().join("in.jsonl");
    std::fs::write(
        &input,
        "{\"text\": \"fine\"}\nnot json\n{\"text\": \"\\ud800 lone surrogate\"}\n{\"id\": 4}\n{\"text\": 5}\n{\"text\": \"also \\u0000 fine\"}\n",
    )
    .unwrap();
    let output = dir.path().join("out.jsonl");
    let tokenizer = prox_test::fixture("llama2-tokenizer/tokenizer.json");
    let stderr = prompts(&tokenizer, &input, &output).exit_code(1);
    for line in [2, 3, 4, 5] {
        assert!(
            stderr.contains(&format!("in.jsonl:{line}")),
            "line {line} not reported:\n{stderr}"
        );
    }
    assert_eq!(read_rows(&output).len(), 2);
    let failures = read_rows(dir.path().join("out.failures.jsonl"));
    let lines: Vec<u64> = failures
        .iter()
        .map(|f| f["line"].as_u64().unwrap())
        .collect();
    assert_eq!(lines, [2, 3, 4, 5]);
}

#[test]
fn setup_errors_exit_with_2_and_say_what_is_wrong() {
    let dir = tempfile::tempdir().unwrap();
    let input = dir.path().join("in.jsonl");
    std::fs::write(&input, "{\"text\": \"x\"}\n").unwrap();
    let output = dir.path().join("out.jsonl");

    let stderr = prompts(dir.path(), &input, &output).exit_code(2);
    assert!(
        stderr.contains("no tokenizer.json or tokenizer.model"),
        "{stderr}"
    );

    let corrupt = dir.path().join("tokenizer.model");
    std::fs::write(&corrupt, b"\x0a\xff\xff\xff").unwrap();
    let stderr = prompts(&corrupt, &input, &output).exit_code(2);
    assert!(
        stderr.contains("not a valid SentencePiece model"),
        "{stderr}"
    );
    assert!(
        !output.exists(),
        "no output is left behind on a setup error"
    );

    let tokenizer = prox_test::fixture("llama2-tokenizer");
    let stderr = prompts(&tokenizer, &input, &output)
        .args(["--chat-template", "tokenizer"])
        .exit_code(2);
    assert!(stderr.contains("no chat_template"), "{stderr}");
}
