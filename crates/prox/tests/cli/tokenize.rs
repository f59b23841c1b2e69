//! `prox tokenize` end to end, as a real process.

use std::path::{Path, PathBuf};

use crate::support::{path_str, prox, read_json, read_rows, TestCommand};

fn tokenizer() -> String {
    prox_test::fixture("llama2-tokenizer").display().to_string()
}

/// `prox tokenize` of `input` into the folder `output` with `tokenizer`, in chunks of
/// `chunk_size` tokens.
fn tokenize(tokenizer: &str, input: &Path, output: &Path, chunk_size: &str) -> TestCommand {
    prox(["tokenize", "--tokenizer", tokenizer])
        .args(["--input", path_str(input), "--output", path_str(output)])
        .args(["--chunk-size", chunk_size])
}

/// Packs the packing fixture's documents as the reference did (`train_web_0`, chunks of
/// 4096) with `tokenizer` into `out`, and checks that it wrote the reference's files, byte
/// for byte, and no other; its stdout.
fn pack_like_the_reference(tokenizer: &str, out: &Path) -> String {
    let stdout = tokenize(
        tokenizer,
        &prox_test::fixture("packed/input.jsonl"),
        out,
        "4096",
    )
    .args(["--prefix", "train_web_0"])
    .success();
    let fixtures = prox_test::fixture("packed");
    let expected = bin_names(&fixtures);
    assert_eq!(expected.len(), 14);
    assert_eq!(bin_names(out), expected, "no missing and no extra file");
    let differing: Vec<&String> = expected
        .iter()
        .filter(|n| std::fs::read(out.join(n)).unwrap() != std::fs::read(fixtures.join(n)).unwrap())
        .collect();
    assert!(
        differing.is_empty(),
        "files differing from the reference: {differing:?}"
    );
    stdout
}

fn bin_names(dir: &Path) -> Vec<String> {
    let mut names: Vec<String> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|n| n.ends_with(".bin"))
        .collect();
    names.sort();
    names
}

fn summary(dir: &Path) -> serde_json::Value {
    read_json(dir.join("summary.json"))
}

#[test]
fn tokenizing_the_fixture_reproduces_the_reference_files_byte_for_byte() {
    let out = tempfile::tempdir().unwrap();
    let stdout = pack_like_the_reference(&tokenizer(), out.path());

    let reference = read_json(prox_test::fixture("packed/expected.json"));
    let s = summary(out.path());
    assert_eq!(s["tokens"], reference["total_tokens_added"]);
    assert_eq!(s["files_written"], reference["files_written"]);
    assert_eq!(
        s["tokens_discarded"],
        reference["tokens_discarded_in_final_partial_chunk"]
    );
    assert_eq!(s["documents"], 200);
    assert_eq!(s["documents_empty"], 38);
    assert_eq!(s["documents_failed"], 0);
    assert!(
        stdout.contains("200 documents: 162 packed, 38 empty (skipped), 0 failed"),
        "{stdout}"
    );
}

#[test]
fn bad_records_are_counted_written_to_failures_and_the_run_goes_on() {
    let dir = tempfile::tempdir().unwrap();
    let input = dir.path().join("in");
    std::fs::create_dir(&input).unwrap();
    let mut first = Vec::new();
    first.extend_from_slice(b"{\"text\": \"The first document.\"}\n");
    first.extend_from_slice(b"{\"text\": \"\"}\n");
    first.extend_from_slice(b"not json at all\n");
    first.extend_from_slice(b"{\"text\": \"bad \xff\xfe utf-8\"}\n");
    first.extend_from_slice(b"{\"content\": \"no text field\"}\n");
    first.extend_from_slice(b"{\"text\": 42}\n");
    first.extend_from_slice(b"{\"text\": null}\n");
    first.extend_from_slice(b"[\"an array\"]\n");
    first.extend_from_slice(b"{\"text\": \"   \"}\n");
    std::fs::write(input.join("a.jsonl"), first).unwrap();
    std::fs::write(
        input.join("b.jsonl"),
        "{\"text\": \"Another one, in the second file.\"}\n",
    )
    .unwrap();
    let out = dir.path().join("out");

    tokenize(&tokenizer(), &input, &out, "8")
        .arg("--write-remainder")
        .exit_code(1);

    let s = summary(&out);
    assert_eq!(s["documents"], 10);
    assert_eq!(
        s["documents_packed"], 3,
        "whitespace is a text, not an empty one"
    );
    assert_eq!(s["documents_empty"], 1);
    assert_eq!(s["documents_failed"], 6);
    let failures = read_rows(out.join("failures.jsonl"));
    let lines: Vec<u64> = failures
        .iter()
        .map(|f| f["line"].as_u64().unwrap())
        .collect();
    assert_eq!(lines, [3, 4, 5, 6, 7, 8]);
    assert!(failures
        .iter()
        .all(|f| f["file"].as_str().unwrap().ends_with("a.jsonl")));
    assert!(failures[1]["error"].as_str().unwrap().contains("UTF-8"));
    assert!(failures[2]["error"]
        .as_str()
        .unwrap()
        .contains("no field `text`"));
    assert!(failures[3]["error"]
        .as_str()
        .unwrap()
        .contains("not a string"));

    // The default prefix with one worker is the reference's first process's.
    let names = bin_names(&out);
    assert_eq!(
        names.first().map(String::as_str),
        Some("train_web_0_0000000000.bin")
    );
    let tokens = s["tokens"].as_u64().unwrap();
    assert_eq!(s["tokens_written"].as_u64().unwrap(), tokens);
    assert_eq!(names.len() as u64, tokens.div_ceil(8));
    let padding = s["padding_tokens"].as_u64().unwrap();
    assert_eq!(padding, names.len() as u64 * 8 - tokens);

    let last = out.join(names.last().unwrap());
    let report = prox(["tokenize", "--inspect", path_str(&last)]).success();
    assert!(report.contains("dtype:      uint16 (code 8)"), "{report}");
    assert!(report.contains("tokens:     8\n"), "{report}");
    assert!(
        report.contains(&format!("separator:  {padding} ")),
        "{report}"
    );
    assert!(report.contains("eos:        1 "), "{report}");
}

#[test]
fn several_workers_write_their_own_prefixes_deterministically() {
    let dir = tempfile::tempdir().unwrap();
    let input = dir.path().join("in");
    std::fs::create_dir(&input).unwrap();
    let texts = prox_test::read_jsonl(prox_test::fixture("packed/input.jsonl"));
    for (i, part) in texts.chunks(70).enumerate() {
        let lines: String = part.iter().map(|(_, row)| format!("{row}\n")).collect();
        std::fs::write(input.join(format!("part{i}.jsonl")), lines).unwrap();
    }
    let tokenizer = tokenizer();
    let run = |out: &PathBuf, extra: &[&str]| {
        tokenize(&tokenizer, &input, out, "1000")
            .args(["--workers", "2"])
            .args(extra)
            .success();
    };
    let first = dir.path().join("first");
    let second = dir.path().join("second");
    run(&first, &[]);
    run(&second, &[]);
    let names = bin_names(&first);
    assert_eq!(names, bin_names(&second));
    for name in &names {
        assert_eq!(
            std::fs::read(first.join(name)).unwrap(),
            std::fs::read(second.join(name)).unwrap()
        );
    }
    // Three files in two runs: the first worker packs two files, the second one.
    assert!(names.iter().any(|n| n.starts_with("train_web_0_")));
    assert!(names.iter().any(|n| n.starts_with("train_web_1_")));
    assert_eq!(
        summary(&first)["prefixes"],
        serde_json::json!(["train_web_0", "train_web_1"])
    );

    let named = dir.path().join("named");
    run(&named, &["--prefix", "valid"]);
    assert!(bin_names(&named)
        .iter()
        .all(|n| n.starts_with("valid_0_") || n.starts_with("valid_1_")));

    // Worker 1 alone, with one worker, writes what it wrote among two.
    let alone = dir.path().join("alone");
    tokenize(&tokenizer, &input.join("part2.jsonl"), &alone, "1000")
        .args(["--prefix", "train_web_1"])
        .success();
    for name in bin_names(&alone) {
        assert_eq!(
            std::fs::read(alone.join(&name)).unwrap(),
            std::fs::read(first.join(&name)).unwrap()
        );
    }
}

#[test]
fn a_rerun_into_the_same_folder_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let input = dir.path().join("in.jsonl");
    std::fs::write(
        &input,
        "{\"text\": \"one two three four five six\"}\n".repeat(10),
    )
    .unwrap();
    let tokenizer = tokenizer();
    let into_dir = || tokenize(&tokenizer, &input, dir.path(), "4");
    into_dir().success();
    let stderr = into_dir().exit_code(2);
    assert!(stderr.contains("hint:"), "{stderr}");
}

#[test]
fn inspect_decodes_a_range_and_refuses_a_corrupt_file() {
    let file = prox_test::fixture("packed/train_web_0_0000000000.bin");
    let report = prox(["tokenize", "--inspect", path_str(&file)])
        .args(["--tokenizer", &tokenizer(), "--range", "0..12"])
        .success();
    assert!(report.contains("chunk size: 4096 tokens"), "{report}");
    assert!(report.contains("range:      0..12"), "{report}");
    assert!(
        report.contains("text:\nas it by Your modification"),
        "{report}"
    );

    let dir = tempfile::tempdir().unwrap();
    let bad = dir.path().join("bad.bin");
    let mut bytes = std::fs::read(&file).unwrap();
    bytes[15] = 42;
    std::fs::write(&bad, &bytes).unwrap();
    let stderr = prox(["tokenize", "--inspect", path_str(&bad)]).exit_code(2);
    assert!(stderr.contains("bad.bin has dtype code 42"), "{stderr}");
}

#[test]
fn a_model_folder_with_only_tokenizer_model_packs_the_same_files() {
    let dir = tempfile::tempdir().unwrap();
    let model = dir.path().join("model");
    std::fs::create_dir(&model).unwrap();
    for name in ["tokenizer.model", "tokenizer_config.json"] {
        std::fs::copy(
            prox_test::fixture("llama2-tokenizer").join(name),
            model.join(name),
        )
        .unwrap();
    }
    pack_like_the_reference(path_str(&model), &dir.path().join("out"));
}
