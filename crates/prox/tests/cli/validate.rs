//! `prox validate` end to end with the tiny fixture model: a table on stdout and the JSON
//! report, every line of every chunk counted, rows of the other stage skipped, and a row
//! that is not an example named by file and line.

use std::path::Path;

use serde_json::{json, Value};

use crate::support::{path_str, prox, read_json, tiny_llama, write_rows, TestCommand};

/// `prox validate` of the tiny model's `stage` programs on the examples in `data`, the report
/// written to `output`.
fn validate(stage: &str, data: &Path, output: &Path) -> TestCommand {
    let model = tiny_llama();
    prox(["validate", "--stage", stage, "--model", path_str(&model)]).args([
        "--data",
        path_str(data),
        "--output",
        path_str(output),
    ])
}

fn chunk_row(id: usize, first_line: usize, text: &str, target: &str) -> Value {
    let numbered: Vec<String> = text
        .split('\n')
        .enumerate()
        .map(|(i, line)| format!("[{:03}]{line}", first_line + i))
        .collect();
    json!({
        "id": format!("doc#{id}"), "stage": "chunk",
        "prompt": format!("<s>[INST] Clean this:\n{} [/INST]", numbered.join("\n")),
        "target": target, "text": text, "first_line": first_line,
        "lines": text.split('\n').count(),
    })
}

#[test]
fn validate_reports_line_wise_f1_over_every_chunk_line() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("heldout.jsonl");
    let rows = [
        chunk_row(
            0,
            0,
            "Home | About\nA real sentence here.",
            "remove_lines(start=0, end=0)",
        ),
        json!({"id": "d", "stage": "doc", "prompt": "<s>[INST] x [/INST]", "target": "drop_doc()"}),
        chunk_row(
            1,
            2,
            "More text.\nCopyright 2024\nLinks",
            "remove_lines(start=3, end=4)",
        ),
    ];
    write_rows(&data, &rows);
    let output = dir.path().join("validation.json");
    let table = validate("chunk", &data, &output)
        .args(["--max-new-tokens", "6"])
        .success();
    assert!(table.contains("F1"), "{table}");
    assert!(table.contains("removed line"), "{table}");
    let report = read_json(&output);
    assert_eq!(report["stage"], "chunk");
    assert_eq!(report["examples"], 2, "the document row is skipped");
    let counts = &report["counts"];
    let total: u64 = [
        "true_positives",
        "false_positives",
        "false_negatives",
        "true_negatives",
    ]
    .iter()
    .map(|k| counts[k].as_u64().unwrap())
    .sum();
    assert_eq!(total, 5, "two chunks of 2 and 3 lines: {report}");
    // The targets remove 3 of the 5 lines; whatever the random model wrote, its
    // predictions are scored against them.
    assert_eq!(
        counts["true_positives"].as_u64().unwrap() + counts["false_negatives"].as_u64().unwrap(),
        3
    );
    assert!(report["target_kept_token_ratio"].as_f64().unwrap() < 1.0);
}

#[test]
fn a_row_that_is_not_an_example_stops_validate_with_its_location() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("heldout.jsonl");
    write_rows(
        &data,
        &[
            json!({"id": "a", "stage": "doc", "prompt": "<s>[INST] x [/INST]", "target": "keep_doc()"}),
            json!({"id": "b", "stage": "doc", "prompt": "<s>[INST] y [/INST]"}),
        ],
    );
    let stderr = validate("doc", &data, &dir.path().join("v.json")).exit_code(2);
    assert!(stderr.contains("heldout.jsonl:2"), "{stderr}");
    assert!(stderr.contains("(id b)"), "{stderr}");
    assert!(stderr.contains("`target` is missing"), "{stderr}");
}

/// `prox validate --endpoint` against a live `prox serve` of SmolLM2-135M-Instruct (the GGUF
/// file of `scripts/fetch-smollm2.sh`): the JSON report counts every held-out example, skips
/// the other stage's rows, and holds the measures that validating the same model embedded
/// gives, since both decode greedily.
mod through_a_server {
    use std::path::Path;

    use serde_json::{json, Value};

    use crate::support::{path_str, prox, read_json, write_rows, ServerProcess};

    /// A ChatML prompt (SmolLM2's template) asking for `answer`, so that some predictions
    /// may be valid programs; what the model writes does not change what is asserted.
    fn doc_row(id: &str, answer: &str, target: &str) -> Value {
        let prompt = format!(
            "<|im_start|>user\nReply with exactly `{answer}` and nothing else.<|im_end|>\n\
             <|im_start|>assistant\n"
        );
        json!({"id": id, "stage": "doc", "prompt": prompt, "target": target,
               "text": format!("The text of document {id}.")})
    }

    /// The arguments shared by both runs: the held-out rows and where the report goes.
    fn common<'a>(data: &'a Path, output: &'a Path) -> [&'a str; 8] {
        [
            "--stage",
            "doc",
            "--data",
            path_str(data),
            "--output",
            path_str(output),
            "--max-new-tokens",
            "12",
        ]
    }

    #[test]
    fn validate_through_prox_serve_reports_what_the_embedded_engine_reports() {
        let gguf = prox_test::fetched::smollm2_gguf();
        let dir = tempfile::tempdir().unwrap();

        // With --endpoint the prompts are tokenized here, from a tokenizer file: the GGUF's
        // own, written out.
        let model = prox_engine::Model::load(&gguf, &prox_engine::LoadOptions::default()).unwrap();
        let tokenizer = dir.path().join("tokenizer.json");
        model
            .tokenizer
            .as_ref()
            .expect("the GGUF file has a tokenizer")
            .inner()
            .save(&tokenizer, false)
            .unwrap();
        drop(model);

        let data = dir.path().join("heldout.jsonl");
        write_rows(
            &data,
            &[
                doc_row("a", "drop_doc()", "drop_doc()"),
                doc_row("b", "keep_doc()", "keep_doc()"),
                json!({"id": "c", "stage": "chunk", "prompt": "x", "target": "untouch_doc()",
                       "lines": 1}),
                doc_row("d", "drop_doc()", "keep_doc()"),
                doc_row("e", "keep_doc()", "drop_doc()"),
            ],
        );

        let server = ServerProcess::start(&[
            "--model",
            path_str(&gguf),
            "--served-model-name",
            "smollm2",
            "--port",
            "0",
        ]);
        let served = dir.path().join("served.json");
        let table = prox(["validate", "--endpoint", &server.endpoint()])
            .args(["--model", "smollm2", "--tokenizer", path_str(&tokenizer)])
            .args(common(&data, &served))
            .success();
        assert!(table.contains("F1"), "{table}");
        drop(server);

        let served = read_json(&served);
        assert_eq!(served["stage"], "doc");
        assert_eq!(served["unit"], "documents");
        assert_eq!(served["examples"], 4, "the chunk row is skipped: {served}");
        assert_eq!(served["unanswered"], json!([]), "{served}");
        let count = |key: &str| served["counts"][key].as_u64().unwrap();
        assert_eq!(
            count("true_positives")
                + count("false_positives")
                + count("false_negatives")
                + count("true_negatives"),
            4,
            "one keep/drop decision per document: {served}"
        );
        assert_eq!(
            count("true_positives") + count("false_negatives"),
            2,
            "two targets drop: {served}"
        );
        assert!(served["invalid_predictions"].as_u64().unwrap() <= 4);
        // The targets keep two of four documents of the same length.
        let target_kept = served["target_kept_token_ratio"].as_f64().unwrap();
        assert!((target_kept - 0.5).abs() < 0.1, "{served}");

        let embedded = dir.path().join("embedded.json");
        prox(["validate", "--model", path_str(&gguf)])
            .args(common(&data, &embedded))
            .success();
        let embedded = read_json(&embedded);
        for key in [
            "examples",
            "invalid_predictions",
            "exact_matches",
            "counts",
            "precision",
            "recall",
            "f1",
            "kept_token_ratio",
        ] {
            assert_eq!(served[key], embedded[key], "{key}: {served} vs {embedded}");
        }
    }
}
