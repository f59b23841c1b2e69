//! The stages with a scripted backend: every destination, row layout and count, without a
//! model.

use std::sync::Arc;

use prox_io::{Record, RecordLocation};
use prox_refine::{Destination, DocumentSource, Refiner, RefinerOptions, Stats};
use serde_json::json;

use crate::scripted::{backend, LONG};

fn documents(texts: &[&str]) -> Vec<prox_refine::Document> {
    let source = DocumentSource {
        name: Arc::from("in.jsonl"),
        text_field: "text".to_owned(),
        id_field: None,
    };
    texts
        .iter()
        .enumerate()
        .map(|(i, text)| {
            let mut fields = serde_json::Map::new();
            fields.insert("text".to_owned(), json!(text));
            fields.insert("url".to_owned(), json!(format!("https://example.org/{i}")));
            fields.insert("metadata".to_owned(), json!({"lang": "en"}));
            let record = Record {
                location: RecordLocation {
                    file: Arc::from(std::path::Path::new("in.jsonl")),
                    line: i as u64 + 1,
                },
                fields,
                bytes: text.len(),
            };
            source.document(record).unwrap()
        })
        .collect()
}

#[test]
fn each_document_ends_in_one_place_with_the_columns_of_the_run_folder() {
    let backend = backend();
    let refiner = Refiner::new(
        Some(Arc::clone(&backend)),
        Some(backend),
        RefinerOptions::default(),
    )
    .unwrap();
    let texts = [
        format!("noise line\n{LONG}"),
        format!("DROPME {LONG}"),
        format!("teh start\n{LONG}"),
        format!("FAILME {LONG}"),
        format!("{LONG}\nmore words"),
        "too short".to_owned(),
    ];
    let texts: Vec<&str> = texts.iter().map(String::as_str).collect();
    let mut stats = Stats::default();
    let ends = refiner.refine(documents(&texts), &mut stats).unwrap();
    assert_eq!(ends.len(), 6);

    let Destination::Output(removed) = &ends[0] else {
        panic!("{:?}", ends[0])
    };
    assert_eq!(removed["text"], LONG);
    assert_eq!(removed["raw_content"], texts[0]);
    assert_eq!(removed["doc_content"], texts[0]);
    assert_eq!(removed["metadata"]["doc_program"], "keep_doc()");
    assert_eq!(
        removed["metadata"]["chunk_program"],
        "remove_lines(start=0, end=0)"
    );
    assert_eq!(
        removed["metadata"]["lang"], "en",
        "the input's metadata is kept"
    );
    assert_eq!(removed["url"], "https://example.org/0");
    assert_eq!(removed["prox"]["outcome"], "modified");
    assert_eq!(removed["prox"]["lines_removed"], 1);
    let keys: Vec<&str> = removed.keys().map(String::as_str).collect();
    assert_eq!(
        keys,
        [
            "id",
            "text",
            "raw_content",
            "doc_content",
            "url",
            "metadata",
            "prox"
        ]
    );
    assert_eq!(removed["id"], "in.jsonl:1");

    let Destination::Dropped(dropped) = &ends[1] else {
        panic!("{:?}", ends[1])
    };
    assert_eq!(dropped["prox"]["stage"], "doc");
    assert_eq!(dropped["prox"]["reason"], "doc_program");
    assert_eq!(dropped["text"], "");
    assert!(dropped.get("doc_content").is_none());

    let Destination::Output(normalized) = &ends[2] else {
        panic!("{:?}", ends[2])
    };
    assert_eq!(normalized["text"], format!("the start\n{LONG}"));
    assert_eq!(normalized["prox"]["normalizations"], 1);

    let Destination::Failed(failed) = &ends[3] else {
        panic!("{:?}", ends[3])
    };
    assert_eq!(failed["stage"], "chunk");
    assert_eq!(failed["line"], 4);
    assert!(failed["error"].as_str().unwrap().contains("500"));

    let Destination::Output(untouched) = &ends[4] else {
        panic!("{:?}", ends[4])
    };
    assert_eq!(untouched["prox"]["outcome"], "unchanged");
    assert_eq!(untouched["text"], texts[4]);

    let Destination::Dropped(short) = &ends[5] else {
        panic!("{:?}", ends[5])
    };
    assert_eq!(short["prox"]["stage"], "chunk");
    assert_eq!(short["prox"]["reason"], "few_words");

    assert!(stats.is_balanced(), "{stats:?}");
    assert_eq!(stats.documents.input, 6);
    assert_eq!(
        (
            stats.documents.modified,
            stats.documents.unchanged,
            stats.documents.failed
        ),
        (2, 1, 1)
    );
    assert_eq!(stats.dropped["doc_program"], 1);
    assert_eq!(stats.dropped["few_words"], 1);
    assert_eq!(stats.stages.doc.documents, 6);
    assert_eq!(stats.stages.chunk.documents, 5);
    assert_eq!(stats.programs.calls["remove_lines"], 1);
    assert_eq!(stats.programs.calls["normalize"], 1);
    assert_eq!(stats.programs.calls["drop_doc"], 1);
    assert!(stats.tokens.output < stats.tokens.input);
    assert!(stats.stages.chunk.prompt_tokens > 0);
}

#[test]
fn with_only_the_document_stage_kept_documents_are_unchanged() {
    let refiner = Refiner::new(Some(backend()), None, RefinerOptions::default()).unwrap();
    let mut stats = Stats::default();
    let ends = refiner
        .refine(documents(&["short but kept", "DROPME now"]), &mut stats)
        .unwrap();
    let Destination::Output(kept) = &ends[0] else {
        panic!("{:?}", ends[0])
    };
    assert_eq!(kept["text"], "short but kept");
    assert_eq!(kept["doc_content"], "short but kept");
    assert!(kept["metadata"].get("chunk_program").is_none());
    assert!(
        matches!(&ends[1], Destination::Dropped(row) if row["prox"]["reason"] == "doc_program")
    );
    assert!(stats.is_balanced());
}
