//! `prox apply` end to end: the real binary on real files in a temporary folder.

use std::path::Path;

use serde_json::Value;

use crate::support::{apply, read_json, read_rows, web_sample, CHUNK_STAGE};

fn ids(rows: &[Value]) -> Vec<&str> {
    rows.iter().map(|row| row["id"].as_str().unwrap()).collect()
}

fn summary(dir: &Path, name: &str) -> Value {
    read_json(dir.join(name))
}

fn assert_balanced(summary: &Value) {
    let n = |key: &str| summary[key].as_u64().unwrap();
    assert_eq!(
        n("documents_in"),
        n("kept_unchanged") + n("modified") + n("dropped_total") + n("failed"),
        "{summary:#}"
    );
}

#[test]
fn chunk_programs_of_the_example_route_every_document_to_one_place() {
    let dir = tempfile::tempdir().unwrap();
    let output = dir.path().join("refined.jsonl");
    apply(&CHUNK_STAGE, &web_sample(), &output).success();

    let kept = read_rows(&output);
    assert_eq!(ids(&kept), ["web-0001", "web-0002", "web-0004", "web-0007"]);
    // Lines 0-1 (navigation) and 6-7 (share links, copyright) removed.
    let first = kept[0]["text"].as_str().unwrap();
    assert!(first.starts_with("The city council approved"), "{first}");
    assert!(first.ends_with("signs during the works."), "{first}");
    assert_eq!(first.lines().count(), 4);
    // Every input field is carried through.
    assert_eq!(kept[0]["metadata"]["doc_program"], "keep_doc()");
    assert!(kept[0]["raw_content"]
        .as_str()
        .unwrap()
        .starts_with("Home | News"));
    // The normalization removed the call to action.
    assert!(!kept[1]["text"].as_str().unwrap().contains("Click here"));
    // Two errors (a positional remove_lines, a call without parentheses): program ignored.
    assert_eq!(kept[3]["text"], kept[3]["doc_content"]);

    let dropped = read_rows(dir.path().join("refined.dropped.jsonl"));
    let reasons: Vec<_> = dropped
        .iter()
        .map(|row| {
            (
                row["id"].as_str().unwrap(),
                row["prox_drop"]["reason"].as_str().unwrap(),
            )
        })
        .collect();
    assert_eq!(
        reasons,
        [
            ("web-0003", "no_words"),
            ("web-0005", "few_words"),
            ("web-0006", "low_ratio")
        ]
    );
    assert!(dropped
        .iter()
        .all(|row| row["prox_drop"]["stage"] == "chunk"));

    let summary = summary(dir.path(), "refined.summary.json");
    assert_balanced(&summary);
    assert_eq!(summary["documents_in"], 7);
    assert_eq!(summary["kept_unchanged"], 2);
    assert_eq!(summary["modified"], 2);
    assert_eq!(summary["programs_ignored"], 1);
    assert_eq!(summary["failed"], 0);
    assert_eq!(
        read_rows(dir.path().join("refined.failures.jsonl")).len(),
        0
    );
    // Only the four result files: no temporary file is left behind.
    assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 4);
}

#[test]
fn strict_mode_reads_positional_arguments_that_faithful_mode_rejects() {
    let dir = tempfile::tempdir().unwrap();
    let output = dir.path().join("strict.jsonl");
    apply(&CHUNK_STAGE, &web_sample(), &output)
        .args(["--mode", "strict"])
        .success();
    let kept = read_rows(&output);
    let printing = kept.iter().find(|row| row["id"] == "web-0007").unwrap();
    // `remove_lines(0, 1)` is valid Python: the first two lines go.
    assert!(printing["text"]
        .as_str()
        .unwrap()
        .starts_with("Within fifty years"));
    assert_eq!(summary(dir.path(), "strict.summary.json")["mode"], "strict");
}

#[test]
fn document_programs_with_keep_dropped_keep_the_reference_layout() {
    let dir = tempfile::tempdir().unwrap();
    let output = dir.path().join("doc.jsonl");
    let args = [
        "--stage",
        "doc",
        "--text-field",
        "raw_content",
        "--keep-dropped",
    ];
    apply(&args, &web_sample(), &output).success();
    let rows = read_rows(&output);
    assert_eq!(rows.len(), 7);
    for row in &rows {
        let expected = if row["id"] == "web-0003" {
            ""
        } else {
            row["raw_content"].as_str().unwrap()
        };
        assert_eq!(row["text"], expected, "{}", row["id"]);
    }
    assert!(!dir.path().join("doc.dropped.jsonl").exists());
    let summary = summary(dir.path(), "doc.summary.json");
    assert_balanced(&summary);
    assert_eq!(summary["dropped"]["doc_program"], 1);
}

#[test]
fn bad_records_go_to_the_failures_file_with_file_and_line_and_the_run_goes_on() {
    let dir = tempfile::tempdir().unwrap();
    let input = dir.path().join("bad.jsonl");
    let mut content = Vec::new();
    content.extend_from_slice(b"{\"text\": \"one two three four five six seven eight nine ten eleven twelve\", \"metadata\": {\"chunk_program\": \"untouch_doc()\"}}\n");
    content.extend_from_slice(b"{\"text\": \"broken\n");
    content
        .extend_from_slice(b"{\"text\": \"caf\xe9\", \"metadata\": {\"chunk_program\": \"\"}}\n");
    content.extend_from_slice(b"{\"text\": \"no program here\"}\n");
    content.extend_from_slice(b"{\"text\": 42, \"metadata\": {\"chunk_program\": \"\"}}\n");
    content.extend_from_slice(b"[\"not\", \"an\", \"object\"]\n");
    std::fs::write(&input, content).unwrap();
    let output = dir.path().join("out.jsonl");

    let run = apply(&["--stage", "chunk"], &input, &output).run();
    assert_eq!(
        run.status.code(),
        Some(1),
        "some documents failed: exit status 1"
    );

    let failures = read_rows(dir.path().join("out.failures.jsonl"));
    let lines: Vec<u64> = failures
        .iter()
        .map(|f| f["line"].as_u64().unwrap())
        .collect();
    assert_eq!(lines, [2, 3, 4, 5, 6]);
    assert!(failures
        .iter()
        .all(|f| f["file"] == input.to_str().unwrap()));
    let errors: Vec<&str> = failures
        .iter()
        .map(|f| f["error"].as_str().unwrap())
        .collect();
    assert!(errors[0].starts_with("invalid JSON"), "{errors:?}");
    assert!(errors[1].contains("invalid UTF-8"), "{errors:?}");
    assert!(errors[2].contains("metadata.chunk_program"), "{errors:?}");
    assert!(errors[3].contains("not a string"), "{errors:?}");
    assert!(errors[4].contains("JSON object"), "{errors:?}");

    let summary = summary(dir.path(), "out.summary.json");
    assert_balanced(&summary);
    assert_eq!(summary["documents_in"], 6);
    assert_eq!(summary["failed"], 5);
    assert_eq!(read_rows(&output).len(), 1);
    assert!(String::from_utf8_lossy(&run.stdout).contains("5 failed"));
}

#[test]
fn folders_are_read_in_sorted_order_with_custom_fields() {
    let dir = tempfile::tempdir().unwrap();
    let inputs = dir.path().join("in");
    std::fs::create_dir(&inputs).unwrap();
    let row = |id: &str| {
        format!(
            "{{\"id\": \"{id}\", \"body\": \"{}\", \"prog\": \"drop_doc()\"}}\n",
            "word ".repeat(20)
        )
    };
    std::fs::write(inputs.join("b.jsonl"), row("b")).unwrap();
    std::fs::write(inputs.join("a.jsonl"), row("a") + &row("a2")).unwrap();
    let output = dir.path().join("out.jsonl");
    let args = [
        "--stage",
        "doc",
        "--program-field",
        "prog",
        "--text-field",
        "body",
    ];
    apply(&args, &inputs, &output).success();
    assert!(read_rows(&output).is_empty());
    assert_eq!(
        ids(&read_rows(dir.path().join("out.dropped.jsonl"))),
        ["a", "a2", "b"]
    );
}

#[test]
fn a_missing_input_stops_the_run_with_its_name_and_status_2() {
    let dir = tempfile::tempdir().unwrap();
    let output = dir.path().join("out.jsonl");
    let stderr = apply(
        &["--stage", "doc"],
        Path::new("/no/such/input.jsonl"),
        &output,
    )
    .exit_code(2);
    assert!(stderr.contains("/no/such/input.jsonl"), "{stderr}");
    assert!(!output.exists());
}

#[test]
fn thresholds_are_parameters() {
    let dir = tempfile::tempdir().unwrap();
    let output = dir.path().join("out.jsonl");
    // With a floor of 5 words, the 7-word "page not found" document is kept.
    apply(&CHUNK_STAGE, &web_sample(), &output)
        .args(["--min-words", "5"])
        .success();
    assert!(ids(&read_rows(&output)).contains(&"web-0005"));
}

#[test]
fn a_file_that_cannot_be_opened_is_a_failure_and_the_other_files_are_still_read() {
    let dir = tempfile::tempdir().unwrap();
    let inputs = dir.path().join("in");
    std::fs::create_dir(&inputs).unwrap();
    std::fs::write(inputs.join("a.parquet"), b"not a parquet file").unwrap();
    std::fs::copy(web_sample(), inputs.join("b.jsonl")).unwrap();
    let output = dir.path().join("out.jsonl");
    apply(
        &["--stage", "doc", "--text-field", "raw_content"],
        &inputs,
        &output,
    )
    .exit_code(1);
    let failures = read_rows(dir.path().join("out.failures.jsonl"));
    assert_eq!(failures.len(), 1);
    assert!(failures[0]["file"].as_str().unwrap().ends_with("a.parquet"));
    assert_eq!(read_rows(&output).len(), 6);
    let summary = summary(dir.path(), "out.summary.json");
    assert_balanced(&summary);
    assert_eq!(summary["files_failed"], 1);
    assert_eq!(summary["documents_in"], 7);
}
