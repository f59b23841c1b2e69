//! End to end: documents through a scripted chat server on 127.0.0.1 into SFT examples,
//! rejections, failures and stats.

mod fake_server;

use std::path::Path;
use std::time::Duration;

use fake_server::{FakeChatServer, Reply};
use prox_annotate::{
    annotate, AnnotateOptions, ChatError, ChatModel, ChatRequest, ClientChat, Prompts, Sample,
    Stats,
};
use prox_client::{ClientOptions, Completion};
use prox_prompt::{Prompter, Stage};
use prox_tokenizer::Tokenizer;
use serde_json::Value;

const MODEL: &str = "annotator";

fn tokenizer() -> Tokenizer {
    let path = prox_test::fixture("llama2-tokenizer");
    Tokenizer::from_path(&path)
        .unwrap_or_else(|e| panic!("the test tokenizer {}: {e}", path.display()))
}

fn options(server: &FakeChatServer, model: &str) -> ClientOptions {
    ClientOptions {
        endpoint: server.endpoint.clone(),
        model: Some(model.to_owned()),
        max_in_flight: 4,
        max_retries: 2,
        backoff: Duration::from_millis(5),
        max_backoff: Duration::from_millis(20),
        ..ClientOptions::default()
    }
}

fn chat(server: &FakeChatServer) -> ClientChat {
    ClientChat::connect(options(server, MODEL)).expect("the fake server answers /v1/models")
}

fn rows(path: &Path) -> Vec<Value> {
    std::fs::read_to_string(path)
        .unwrap_or_else(|e| panic!("{}: {e}", path.display()))
        .lines()
        .map(|line| serde_json::from_str(line).expect("a JSON line"))
        .collect()
}

fn by_id<'a>(rows: &'a [Value], id: &str) -> &'a Value {
    rows.iter()
        .find(|row| row["id"] == id)
        .unwrap_or_else(|| panic!("no row {id} in {rows:#?}"))
}

/// The document stage's script: a document's scores are written in it (`edu=3 fmt=4`);
/// `flaky` fails once with a 500, `down` always does; `mute` and `wild` answer badly.
fn doc_script(prompt: &str, before: usize) -> Reply {
    let educational = prompt.contains("Educational score: <points>");
    let find = |key: &str| {
        prompt
            .split_whitespace()
            .find_map(|word| word.strip_prefix(key))
            .unwrap_or("0")
            .to_owned()
    };
    if prompt.contains("down") {
        return Reply::status(500);
    }
    if prompt.contains("flaky") && before == 0 {
        return Reply::status(503);
    }
    if prompt.contains("mute") && educational {
        return Reply::ok("A fine page, I think.");
    }
    if prompt.contains("wild") && !educational {
        return Reply::ok("Very clean.\nFormat score: 9");
    }
    if educational {
        Reply::ok(format!(
            "Explains rivers.\nEducational score: {}",
            find("edu=")
        ))
    } else {
        Reply::ok(format!("Reads well.\n**Format score:** {}/5", find("fmt=")))
    }
}

fn write_docs(dir: &Path) -> std::path::PathBuf {
    let docs = dir.join("docs.jsonl");
    std::fs::write(
        &docs,
        [
            r#"{"id": "keep3", "text": "A page about rivers. edu=3 fmt=1"}"#,
            r#"{"id": "keep2", "text": "A page about lakes. edu=2 fmt=4"}"#,
            r#"{"id": "drop2", "text": "A page about seas. edu=2 fmt=3"}"#,
            r#"{"id": "mute", "text": "A page about ponds, mute. edu=4 fmt=4"}"#,
            r#"{"id": "wild", "text": "A page about brooks, wild. edu=4 fmt=4"}"#,
            r#"{"id": "flaky", "text": "A page about springs, flaky. edu=5 fmt=5"}"#,
            r#"{"id": "down", "text": "A page about wells, down. edu=5 fmt=5"}"#,
            r#"{"id": "empty", "text": "  "}"#,
            r#"{"id": "untexted", "body": "no text field"}"#,
            "not json at all",
        ]
        .join("\n")
            + "\n",
    )
    .expect("write the documents");
    docs
}

#[test]
fn doc_stage_labels_rejects_and_fails_every_document_and_the_counts_add_up() {
    let dir = tempfile::tempdir().expect("temp dir");
    let docs = write_docs(dir.path());
    let server = FakeChatServer::start(MODEL, doc_script);
    let tokenizer = tokenizer();
    let prompter = Prompter::new(&tokenizer);
    let prompts = Prompts::builtin(Stage::Doc).expect("built-in prompts");
    let out = dir.path().join("out");
    let mut options = AnnotateOptions::new(Stage::Doc, vec![docs], out.clone());
    options.checkpoint_every = 3;
    let stats = annotate(&options, &prompts, &prompter, &chat(&server)).expect("the run completes");

    let examples = rows(&out.join("sft.jsonl"));
    let targets: Vec<(&str, &str)> = examples
        .iter()
        .map(|row| {
            (
                row["id"].as_str().expect("id"),
                row["target"].as_str().expect("target"),
            )
        })
        .collect();
    assert_eq!(
        targets,
        [
            ("keep3", "keep_doc()"),
            ("keep2", "keep_doc()"),
            ("drop2", "drop_doc()"),
            ("flaky", "keep_doc()"),
        ]
    );
    let keep3 = by_id(&examples, "keep3");
    let expected = prompter
        .doc_prompt("A page about rivers. edu=3 fmt=1")
        .expect("a prompt");
    assert_eq!(keep3["prompt"], expected.prompt.as_str());
    assert_eq!(keep3["prompt_ids"], serde_json::json!(expected.ids));
    assert_eq!(keep3["stage"], "doc");
    assert_eq!(
        keep3["scores"],
        serde_json::json!({"educational_value": 3, "format_quality": 1})
    );
    assert_eq!(
        examples[0]
            .as_object()
            .expect("object")
            .keys()
            .take(4)
            .collect::<Vec<_>>(),
        ["id", "stage", "prompt", "target"]
    );

    let rejected = rows(&out.join("rejected.jsonl"));
    assert_eq!(by_id(&rejected, "mute")["reason"], "no_score");
    assert_eq!(by_id(&rejected, "wild")["reason"], "score_out_of_range");
    assert!(by_id(&rejected, "wild")["detail"]
        .as_str()
        .expect("detail")
        .starts_with("format_quality: "));
    assert_eq!(by_id(&rejected, "empty")["reason"], "empty_document");
    assert_eq!(rejected.len(), 3);

    let failures = rows(&out.join("failures.jsonl"));
    assert_eq!(failures.len(), 3, "{failures:#?}");
    assert!(by_id(&failures, "down")["error"]
        .as_str()
        .expect("error")
        .contains("500"));
    assert!(by_id(&failures, "untexted")["error"]
        .as_str()
        .expect("error")
        .contains("`text`"));
    assert!(failures
        .iter()
        .any(|f| f["line"] == 10 && f["id"].as_str().expect("id").ends_with(":10")));

    let answers = rows(&out.join("answers.jsonl"));
    assert_eq!(
        answers.len(),
        7 * 2,
        "two rubric answers per prompted document"
    );
    assert_eq!(
        answers
            .iter()
            .filter(|a| a["id"] == "down" && a["error"].is_string())
            .count(),
        2
    );

    assert_eq!(stats.documents.input, 10);
    assert_eq!(
        (
            stats.documents.with_examples,
            stats.documents.rejected,
            stats.documents.failed
        ),
        (4, 3, 3)
    );
    assert_eq!((stats.examples, stats.rejected, stats.failed), (4, 3, 3));
    assert_eq!(stats.targets["keep_doc()"], 3);
    assert_eq!(stats.targets["drop_doc()"], 1);
    assert_eq!(stats.requests.sent, 14);
    assert_eq!(stats.requests.failed, 2);
    // flaky: one retry per rubric; down: two retries per rubric.
    assert_eq!(stats.requests.retries, 2 + 4);
    assert!(stats.adds_up() && stats.complete);
    let on_disk: Stats =
        serde_json::from_str(&std::fs::read_to_string(out.join("stats.json")).expect("stats.json"))
            .expect("stats.json reads back");
    assert_eq!(on_disk, stats);

    // The same command again: nothing more is asked, the files stay as they are.
    let before = (
        server.requests(),
        std::fs::read(out.join("sft.jsonl")).expect("sft"),
    );
    let again = annotate(&options, &prompts, &prompter, &chat(&server)).expect("rerun");
    assert_eq!(again, stats);
    assert_eq!(
        (
            server.requests(),
            std::fs::read(out.join("sft.jsonl")).expect("sft")
        ),
        before
    );
}

/// A model that answers like the doc script and panics at a given request, as a killed
/// process stops: what it answered before never reaches the files of its batch.
struct DiesAt {
    at: usize,
    asked: std::sync::atomic::AtomicUsize,
}

impl ChatModel for DiesAt {
    fn chat(&self, requests: &[ChatRequest]) -> Vec<Result<Completion, ChatError>> {
        requests
            .iter()
            .map(|request| {
                let n = self.asked.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
                assert!(n < self.at, "killed");
                let reply = doc_script(&request.prompt, 1);
                if reply.status != 200 {
                    return Err(ChatError(format!("answered {}", reply.status)));
                }
                Ok(Completion {
                    text: reply.content,
                    finish_reason: "stop".to_owned(),
                    prompt_tokens: None,
                    completion_tokens: None,
                })
            })
            .collect()
    }
}

#[test]
fn a_run_killed_mid_batch_resumes_to_the_same_files_as_a_clean_run() {
    let dir = tempfile::tempdir().expect("temp dir");
    let docs = write_docs(dir.path());
    let tokenizer = tokenizer();
    let prompter = Prompter::new(&tokenizer);
    let prompts = Prompts::builtin(Stage::Doc).expect("built-in prompts");
    let run = |out: &Path, model: &DiesAt| {
        let mut options = AnnotateOptions::new(Stage::Doc, vec![docs.clone()], out.to_owned());
        options.checkpoint_every = 3;
        annotate(&options, &prompts, &prompter, model)
    };
    let clean = dir.path().join("clean");
    let healthy = || DiesAt {
        at: usize::MAX,
        asked: 0.into(),
    };
    let clean_stats = run(&clean, &healthy()).expect("clean run");

    let killed = dir.path().join("killed");
    // Two full batches (3 + 3 documents, 12 requests), then death inside the third.
    let dying = DiesAt {
        at: 13,
        asked: 0.into(),
    };
    let died = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| run(&killed, &dying)));
    assert!(died.is_err(), "the model died mid-run");
    // A torn line, as a write cut off by kill -9 leaves it.
    let mut torn = std::fs::read(killed.join("sft.jsonl")).expect("sft");
    torn.extend_from_slice(b"{\"id\": \"half");
    std::fs::write(killed.join("sft.jsonl"), torn).expect("tear");

    let model = healthy();
    let resumed_stats = run(&killed, &model).expect("resumed run");
    assert_eq!(resumed_stats, clean_stats);
    assert_eq!(
        model.asked.load(std::sync::atomic::Ordering::SeqCst),
        2,
        // Only `down` of the last batch (down, empty, untexted) is asked, then the last one
        // (not JSON) needs no request.
        "only the documents after the last checkpoint are asked again"
    );
    for file in [
        "sft.jsonl",
        "answers.jsonl",
        "rejected.jsonl",
        "failures.jsonl",
        "stats.json",
    ] {
        assert_eq!(
            std::fs::read(killed.join(file)).expect("resumed file"),
            std::fs::read(clean.join(file)).expect("clean file"),
            "{file}"
        );
    }
}

#[test]
fn a_rerun_with_other_settings_is_refused() {
    let dir = tempfile::tempdir().expect("temp dir");
    let docs = write_docs(dir.path());
    let tokenizer = tokenizer();
    let prompter = Prompter::new(&tokenizer);
    let prompts = Prompts::builtin(Stage::Doc).expect("built-in prompts");
    let out = dir.path().join("out");
    let model = DiesAt {
        at: usize::MAX,
        asked: 0.into(),
    };
    let mut options = AnnotateOptions::new(Stage::Doc, vec![docs], out);
    annotate(&options, &prompts, &prompter, &model).expect("first run");
    options.sample = Some(Sample { count: 3, seed: 1 });
    let error = annotate(&options, &prompts, &prompter, &model).expect_err("other settings");
    assert!(error.to_string().contains("sample: was null"), "{error}");
}

#[test]
fn a_sample_is_the_same_for_the_same_seed_and_in_input_order() {
    let dir = tempfile::tempdir().expect("temp dir");
    let docs = dir.path().join("many.jsonl");
    let lines: Vec<String> = (0..200)
        .map(|i| format!(r#"{{"id": "d{i:03}", "text": "Document {i}. edu=3 fmt=3"}}"#))
        .collect();
    std::fs::write(&docs, lines.join("\n")).expect("write");
    let tokenizer = tokenizer();
    let prompter = Prompter::new(&tokenizer);
    let prompts = Prompts::builtin(Stage::Doc).expect("built-in prompts");
    let ids = |out: &str, seed: u64| {
        let out = dir.path().join(out);
        let mut options = AnnotateOptions::new(Stage::Doc, vec![docs.clone()], out.clone());
        options.sample = Some(Sample { count: 10, seed });
        let model = DiesAt {
            at: usize::MAX,
            asked: 0.into(),
        };
        annotate(&options, &prompts, &prompter, &model).expect("run");
        rows(&out.join("sft.jsonl"))
            .iter()
            .map(|row| row["id"].as_str().expect("id").to_owned())
            .collect::<Vec<_>>()
    };
    let first = ids("a", 7);
    assert_eq!(first.len(), 10);
    assert_eq!(first, ids("b", 7));
    assert_ne!(first, ids("c", 8));
    let mut sorted = first.clone();
    sorted.sort();
    assert_eq!(first, sorted);
}

/// The chunk stage's script, by noise type: navigation removes line 0, footers the last line
/// of a document that ends with a copyright line, links finds nothing; documents marked
/// `prose` get no code block from the links prompt, `greedy` a removal beyond the chunk.
fn chunk_script(prompt: &str, _before: usize) -> Reply {
    let text = prompt.rsplit("The text:\n").next().unwrap_or("");
    let block = |program: &str| Reply::ok(format!("Found this.\n```python\n{program}\n```"));
    if prompt.contains("navigation bars") {
        if text.contains("greedy") {
            return block("remove_lines(start=0, end=40)");
        }
        return block("remove_lines(start=0, end=0)");
    }
    if prompt.contains("bare URLs") {
        if text.contains("prose") {
            return Reply::ok("Nothing to remove here.");
        }
        return block("untouch_doc()");
    }
    match text.lines().last() {
        Some(last) if last.contains('©') => {
            let number: String = last[1..].chars().take_while(char::is_ascii_digit).collect();
            let number: usize = number.parse().expect("a line number");
            block(&format!(
                "# the footer\nremove_lines(start={number}, end={number})"
            ))
        }
        _ => block("untouch_doc()"),
    }
}

#[test]
fn chunk_stage_merges_noise_programs_into_examples_of_the_refiners_prompts() {
    let dir = tempfile::tempdir().expect("temp dir");
    let docs = dir.path().join("docs.jsonl");
    let body = "Home | Shop | Blog\nRivers carve valleys over millions of years, slowly.\nThe Colorado cut the Grand Canyon.\nErosion is faster on steep slopes.\n© 2024 Rivers Inc.";
    std::fs::write(
        &docs,
        [
            serde_json::json!({"id": "clean", "text": body}).to_string(),
            serde_json::json!({"id": "prose", "text": format!("{body} prose")}).to_string(),
            serde_json::json!({"id": "greedy", "text": format!("Menu greedy\n{body}")}).to_string(),
        ]
        .join("\n"),
    )
    .expect("write");
    let server = FakeChatServer::start(MODEL, chunk_script);
    let tokenizer = tokenizer();
    let prompter = Prompter::new(&tokenizer);
    let prompts = Prompts::builtin(Stage::Chunk).expect("built-in prompts");
    let out = dir.path().join("out");
    let options = AnnotateOptions::new(Stage::Chunk, vec![docs], out.clone());
    let stats = annotate(&options, &prompts, &prompter, &chat(&server)).expect("the run completes");

    let examples = rows(&out.join("sft.jsonl"));
    assert_eq!(examples.len(), 1, "{examples:#?}");
    let example = &examples[0];
    assert_eq!(example["id"], "clean#0");
    assert_eq!(
        example["target"],
        "remove_lines(start=0, end=0)\nremove_lines(start=4, end=4)"
    );
    let expected = &prompter.chunk_prompts(body).expect("chunk prompts")[0];
    assert_eq!(example["prompt"], expected.prompt.as_str());
    assert_eq!(example["prompt_ids"], serde_json::json!(expected.ids));
    assert_eq!(example["text"], body);
    assert_eq!(example["lines_removed"], 2);

    let rejected = rows(&out.join("rejected.jsonl"));
    assert_eq!(by_id(&rejected, "prose#0")["reason"], "no_code_block");
    assert!(by_id(&rejected, "prose#0")["detail"]
        .as_str()
        .expect("detail")
        .starts_with("links: "));
    assert_eq!(by_id(&rejected, "greedy#0")["reason"], "line_outside_chunk");
    assert_eq!(stats.rejections["no_code_block"], 1);
    assert_eq!(stats.rejections["line_outside_chunk"], 1);
    assert_eq!(stats.targets["remove_lines()"], 2);
    assert_eq!(stats.requests.sent, 9);
    assert_eq!(
        (
            stats.documents.with_examples,
            stats.documents.rejected,
            stats.documents.failed
        ),
        (1, 2, 0)
    );
    assert!(stats.adds_up());
    assert_eq!(rows(&out.join("answers.jsonl")).len(), 9);
}

#[test]
fn a_server_that_does_not_serve_the_model_stops_the_run_before_any_work() {
    let server = FakeChatServer::start(MODEL, doc_script);
    let error = ClientChat::connect(options(&server, "another-model"))
        .err()
        .expect("refused");
    let message = error.to_string();
    assert!(
        message.contains("another-model") && message.contains(MODEL),
        "{message}"
    );
}
