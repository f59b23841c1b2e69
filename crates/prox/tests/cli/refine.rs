//! `prox refine` end to end: the real binary, the tiny fixture model as both stage models, a
//! generated corpus in every input format, sharding, and `kill -9` followed by a rerun.

#![allow(clippy::unwrap_used)] // test helpers: a failure is a test failure

use std::collections::BTreeMap;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::Duration;

use serde_json::{json, Value};

fn prox_command(args: &[&str]) -> Command {
    let mut command = Command::new(env!("CARGO_BIN_EXE_prox"));
    command.args(args).env("PROX_LOG", "warn");
    for var in [
        "SLURM_ARRAY_TASK_ID",
        "SLURM_PROCID",
        "JOB_COMPLETION_INDEX",
        "PROX_RANK_OFFSET",
    ] {
        command.env_remove(var);
    }
    command
}

fn prox(args: &[&str]) -> Output {
    prox_command(args).output().expect("the prox binary runs")
}

fn tiny_model() -> String {
    prox_test::fixture("tiny-llama").display().to_string()
}

/// Documents of a few lines each: some long enough to be kept, some of ten words or fewer,
/// one empty, with an `extra` field to carry through.
fn corpus(documents: usize) -> Vec<Value> {
    let words = [
        "river", "stone", "lamp", "orbit", "maple", "copper", "signal", "harbor", "violet",
        "engine", "garden", "winter",
    ];
    (0..documents)
        .map(|i| {
            let lines: Vec<String> = (0..(1 + i % 5))
                .map(|l| {
                    let n = 2 + (i * 7 + l * 3) % 9;
                    (0..n)
                        .map(|w| words[(i + l + w) % words.len()])
                        .collect::<Vec<_>>()
                        .join(" ")
                })
                .collect();
            let text = if i == 5 {
                String::new()
            } else {
                lines.join("\n")
            };
            json!({"text": text, "extra": {"n": i, "source": "test"}})
        })
        .collect()
}

fn jsonl(records: &[Value]) -> String {
    records.iter().map(|r| format!("{r}\n")).collect()
}

fn write_corpus(dir: &Path, name: &str, records: &[Value]) -> PathBuf {
    let path = dir.join(name);
    let text = jsonl(records);
    if name.ends_with(".jsonl.gz") {
        let mut encoder = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
        encoder.write_all(text.as_bytes()).unwrap();
        std::fs::write(&path, encoder.finish().unwrap()).unwrap();
    } else if name.ends_with(".jsonl.zst") {
        std::fs::write(&path, zstd::stream::encode_all(text.as_bytes(), 3).unwrap()).unwrap();
    } else if name.ends_with(".parquet") {
        let mut writer = prox_io::ParquetWriter::create(&path).unwrap();
        for record in records {
            writer.write(record).unwrap();
        }
        writer.finish().unwrap();
    } else {
        std::fs::write(&path, text).unwrap();
    }
    path
}

const SMALL_MODEL_ARGS: [&str; 4] = ["--doc-max-new-tokens", "8", "--chunk-max-new-tokens", "12"];

fn refine(input: &[&Path], run: &Path, extra: &[&str]) -> Output {
    let model = tiny_model();
    let mut args = vec!["refine", "--doc-model", &model, "--chunk-model", &model];
    args.extend(SMALL_MODEL_ARGS);
    args.push("--input");
    let inputs: Vec<String> = input.iter().map(|p| p.display().to_string()).collect();
    args.extend(inputs.iter().map(String::as_str));
    let run = run.display().to_string();
    args.extend(["--output", &run]);
    args.extend(extra);
    prox(&args)
}

fn assert_ok(output: &Output) {
    assert!(
        output.status.success(),
        "status {:?}\nstdout: {}\nstderr: {}",
        output.status,
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
}

/// Every row of one kind of part (`output`, `dropped`, `failures`), in run order.
fn rows(run: &Path, kind: &str) -> Vec<Value> {
    let dir = run.join(kind);
    let Ok(entries) = std::fs::read_dir(&dir) else {
        return Vec::new();
    };
    let mut parts: Vec<PathBuf> = entries
        .map(|e| e.unwrap().path())
        .filter(|p| {
            p.file_name()
                .unwrap()
                .to_string_lossy()
                .starts_with("part-")
        })
        .collect();
    parts.sort();
    parts
        .iter()
        .flat_map(|part| prox_io::open_records(part).unwrap())
        .map(|item| Value::Object(item.unwrap().unwrap().fields))
        .collect()
}

fn stats(run: &Path) -> Value {
    serde_json::from_str(&std::fs::read_to_string(run.join("stats.json")).unwrap()).unwrap()
}

fn assert_balanced(stats: &Value) {
    let d = &stats["documents"];
    let n = |k: &str| d[k].as_u64().unwrap();
    assert_eq!(n("input"), n("output") + n("dropped") + n("failed"), "{d}");
    assert_eq!(
        n("output"),
        n("unchanged") + n("modified") + n("ignored"),
        "{d}"
    );
    let dropped: u64 = stats["dropped"]
        .as_object()
        .unwrap()
        .values()
        .map(|v| v.as_u64().unwrap())
        .sum();
    assert_eq!(dropped, n("dropped"));
}

/// The rows that do not depend on file names: text, programs, outcome.
fn contents(rows: &[Value]) -> Vec<Value> {
    rows.iter()
        .map(|row| {
            json!({
                "text": row["text"], "raw_content": row["raw_content"],
                "doc_content": row["doc_content"], "metadata": row["metadata"],
                "prox": row["prox"], "extra": row["extra"],
            })
        })
        .collect()
}

#[test]
fn every_input_format_refines_to_the_same_rows_and_every_document_is_accounted_for() {
    let dir = tempfile::tempdir().unwrap();
    let records = corpus(14);
    let mut results = Vec::new();
    for name in ["c.jsonl", "c.jsonl.gz", "c.jsonl.zst", "c.parquet"] {
        let input = write_corpus(dir.path(), name, &records);
        let run = dir.path().join(format!("run-{name}"));
        assert_ok(&refine(&[&input], &run, &[]));
        let stats = stats(&run);
        assert_balanced(&stats);
        assert_eq!(stats["documents"]["input"], 14, "{name}");
        assert_eq!(stats["dropped"]["empty"], 1, "{name}");
        let output = rows(&run, "output");
        let dropped = rows(&run, "dropped");
        assert_eq!(output.len() + dropped.len(), 14, "{name}");
        // Ids name the file and line; carried fields come through untouched.
        let mut ids: Vec<String> = output
            .iter()
            .chain(&dropped)
            .map(|r| r["id"].as_str().unwrap().to_owned())
            .collect();
        ids.sort_by_key(|id| id.rsplit(':').next().unwrap().parse::<u64>().unwrap());
        let expected: Vec<String> = (1..=14).map(|line| format!("{name}:{line}")).collect();
        assert_eq!(ids, expected);
        for row in &output {
            let line: usize = row["id"]
                .as_str()
                .unwrap()
                .rsplit(':')
                .next()
                .unwrap()
                .parse()
                .unwrap();
            assert_eq!(row["extra"], records[line - 1]["extra"]);
            assert_eq!(row["raw_content"], records[line - 1]["text"]);
            assert!(row["metadata"]["doc_program"].is_string());
            assert!(row["metadata"]["chunk_program"].is_string());
        }
        results.push((contents(&output), contents(&dropped)));
    }
    for other in &results[1..] {
        assert_eq!(other, &results[0]);
    }
}

#[test]
fn the_output_is_what_prox_apply_makes_of_the_stored_programs() {
    let dir = tempfile::tempdir().unwrap();
    let input = write_corpus(dir.path(), "c.jsonl", &corpus(14));
    let run = dir.path().join("run");
    assert_ok(&refine(&[&input], &run, &["--output-format", "jsonl.gz"]));
    let output = rows(&run, "output");
    assert!(!output.is_empty());
    let applied = dir.path().join("applied.jsonl");
    let parts = run.join("output").display().to_string();
    let result = prox(&[
        "apply",
        "--stage",
        "chunk",
        "--text-field",
        "doc_content",
        "--input",
        &parts,
        "--output",
        &applied.display().to_string(),
    ]);
    assert_ok(&result);
    let again: Vec<Value> = std::fs::read_to_string(&applied)
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(again.len(), output.len());
    for (refined, applied) in output.iter().zip(&again) {
        assert_eq!(refined["text"], applied["text"], "{}", refined["id"]);
    }
}

#[test]
fn tasks_split_the_corpus_and_together_write_what_one_task_writes() {
    let dir = tempfile::tempdir().unwrap();
    let records = corpus(20);
    let a = write_corpus(dir.path(), "a.jsonl", &records[..12]);
    let b = write_corpus(dir.path(), "b.parquet", &records[12..]);
    let one = dir.path().join("one");
    assert_ok(&refine(&[&a, &b], &one, &[]));
    let three = dir.path().join("three");
    // Small split size: a.jsonl becomes several byte ranges.
    assert_ok(&refine(
        &[&a, &b],
        &three,
        &["--tasks", "3", "--workers", "2", "--split-size", "300"],
    ));
    let plan: Value =
        serde_json::from_str(&std::fs::read_to_string(three.join("plan.json")).unwrap()).unwrap();
    assert!(plan["shards"].as_array().unwrap().len() > 3, "{plan}");
    // Each completion marker is its task's stats (docs/run-folder.md); together they count
    // every document.
    let marked: u64 = (0..3)
        .map(|rank| {
            let marker =
                std::fs::read_to_string(three.join(format!("done/task-0000{rank}.json"))).unwrap();
            let marker: Value = serde_json::from_str(&marker).unwrap();
            marker["documents"]["input"].as_u64().unwrap()
        })
        .sum();
    assert_eq!(marked, 20);
    let by_id = |rows: Vec<Value>| -> BTreeMap<String, Value> {
        rows.into_iter()
            .map(|r| (r["id"].as_str().unwrap().to_owned(), r))
            .collect()
    };
    assert_eq!(by_id(rows(&one, "output")), by_id(rows(&three, "output")));
    assert_eq!(by_id(rows(&one, "dropped")), by_id(rows(&three, "dropped")));
    assert_eq!(stats(&one)["documents"], stats(&three)["documents"]);

    // One task of the three, as a job array runs it.
    let single = dir.path().join("single");
    let model = tiny_model();
    let output = prox_command(&[
        "refine",
        "--doc-model",
        &model,
        "--chunk-model",
        &model,
        "--doc-max-new-tokens",
        "8",
        "--chunk-max-new-tokens",
        "12",
        "--input",
        &a.display().to_string(),
        "--output",
        &single.display().to_string(),
        "--tasks",
        "3",
    ])
    .env("SLURM_ARRAY_TASK_ID", "1")
    .output()
    .unwrap();
    assert_ok(&output);
    assert!(single.join("done/task-00001.json").is_file());
    assert!(!single.join("done/task-00000.json").exists());
    assert!(
        !single.join("stats.json").exists(),
        "stats.json before every task is done"
    );
}

#[test]
fn a_rerun_with_another_configuration_is_refused_and_dry_run_does_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let input = write_corpus(dir.path(), "c.jsonl", &corpus(6));
    let run = dir.path().join("run");
    let dry = refine(&[&input], &run, &["--dry-run", "--tasks", "2"]);
    assert_ok(&dry);
    let printed = String::from_utf8_lossy(&dry.stdout);
    assert!(
        printed.contains("task 0:") && printed.contains("task 1:"),
        "{printed}"
    );
    assert!(!run.exists(), "--dry-run wrote the run folder");

    assert_ok(&refine(&[&input], &run, &[]));
    let refused = refine(&[&input], &run, &["--tasks", "2"]);
    assert_eq!(refused.status.code(), Some(2));
    let message = String::from_utf8_lossy(&refused.stderr);
    assert!(
        message.contains("tasks") && message.contains("--force"),
        "{message}"
    );
    // The same command again is a resume of a finished run: nothing to do.
    assert_ok(&refine(&[&input], &run, &[]));
    assert_ok(&refine(&[&input], &run, &["--tasks", "2", "--force"]));
    assert!(run.join("done/task-00001.json").is_file());
}

#[test]
fn a_config_file_gives_the_flags_and_the_command_line_wins() {
    let dir = tempfile::tempdir().unwrap();
    let input = write_corpus(dir.path(), "c.jsonl", &corpus(6));
    let model = tiny_model();
    let config = dir.path().join("run.yaml");
    std::fs::write(
        &config,
        format!(
            "input: [{}]\ndoc-model: {model}\nchunk_model: {model}\ndoc-max-new-tokens: 8\nchunk-max-new-tokens: 12\ntasks: 3\n",
            input.display()
        ),
    )
    .unwrap();
    let run = dir.path().join("run");
    let output = prox(&[
        "refine",
        "--config",
        &config.display().to_string(),
        "--output",
        &run.display().to_string(),
        "--tasks",
        "2",
    ]);
    assert_ok(&output);
    let run_json: Value =
        serde_json::from_str(&std::fs::read_to_string(run.join("run.json")).unwrap()).unwrap();
    assert_eq!(run_json["tasks"], 2);
    assert_eq!(run_json["refiner"]["doc_max_new_tokens"], 8);
}

#[test]
fn bad_input_is_accounted_as_failures_naming_file_and_line() {
    let dir = tempfile::tempdir().unwrap();
    let records = corpus(8);
    let mut text = jsonl(&records);
    text.insert_str(0, "{broken json\n");
    let good = dir.path().join("good.jsonl");
    std::fs::write(&good, &text).unwrap();
    // A gzip stream cut in the middle, and a file that claims to be Parquet.
    let mut encoder = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
    encoder.write_all(jsonl(&corpus(300)).as_bytes()).unwrap();
    let gz = encoder.finish().unwrap();
    let cut = dir.path().join("cut.jsonl.gz");
    std::fs::write(&cut, &gz[..gz.len() / 2]).unwrap();
    let corrupt = dir.path().join("corrupt.parquet");
    std::fs::write(&corrupt, b"PAR1 this is not parquet").unwrap();

    let run = dir.path().join("run");
    let output = refine(&[&good, &cut, &corrupt], &run, &[]);
    assert_eq!(
        output.status.code(),
        Some(1),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let stats = stats(&run);
    assert_balanced(&stats);
    assert_eq!(stats["files"]["failed"], 2);
    let failures = rows(&run, "failures");
    let broken = failures
        .iter()
        .find(|f| f["file"].as_str().unwrap().ends_with("good.jsonl"))
        .unwrap();
    assert_eq!(broken["line"], 1);
    assert_eq!(broken["stage"], "read");
    assert!(failures
        .iter()
        .any(|f| f["file"].as_str().unwrap().ends_with("cut.jsonl.gz")
            && f["error"].as_str().unwrap().contains("cut.jsonl.gz")));
    assert!(failures
        .iter()
        .any(|f| f["file"].as_str().unwrap().ends_with("corrupt.parquet")));
    // The readable part of the cut file was refined.
    let read_from_cut = rows(&run, "output")
        .iter()
        .chain(&rows(&run, "dropped"))
        .filter(|r| r["id"].as_str().unwrap().starts_with("cut.jsonl.gz:"))
        .count();
    assert!(read_from_cut > 0);
}

/// Items the task has committed so far (0 before its first checkpoint).
fn committed_items(run: &Path) -> u64 {
    std::fs::read_to_string(run.join("progress/task-00000.json"))
        .ok()
        .and_then(|text| serde_json::from_str::<Value>(&text).ok())
        .map_or(0, |progress| {
            progress["stats"]["documents"]["input"]
                .as_u64()
                .unwrap_or(0)
        })
}

#[test]
fn kill_9_at_any_moment_then_rerun_gives_the_uninterrupted_output() {
    let dir = tempfile::tempdir().unwrap();
    let input = write_corpus(dir.path(), "c.jsonl", &corpus(30));
    let small_commits = ["--batch-size", "2", "--commit-docs", "3"];
    let clean = dir.path().join("clean");
    assert_ok(&refine(&[&input], &clean, &small_commits));
    let expected = (
        rows(&clean, "output"),
        rows(&clean, "dropped"),
        stats(&clean)["documents"].clone(),
    );

    let model = tiny_model();
    // Each kill waits until the run has committed at least this many documents, then a few
    // more milliseconds, so kills land at different points of the run: between commits,
    // while parts are being written, while the checkpoint is being written.
    for (attempt, kills) in [
        [(0u64, 0u64), (9, 37)],
        [(3, 5), (21, 0)],
        [(12, 80), (15, 11)],
    ]
    .iter()
    .enumerate()
    {
        let run = dir.path().join(format!("killed-{attempt}"));
        let run_arg = run.display().to_string();
        let input_arg = input.display().to_string();
        let mut args = vec![
            "refine",
            "--doc-model",
            &model,
            "--chunk-model",
            &model,
            "--input",
            &input_arg,
            "--output",
            &run_arg,
        ];
        args.extend(SMALL_MODEL_ARGS);
        args.extend(small_commits);
        for &(committed, extra_ms) in kills {
            let mut child = prox_command(&args)
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .spawn()
                .unwrap();
            let deadline = std::time::Instant::now() + Duration::from_secs(120);
            while committed_items(&run) < committed
                && child.try_wait().unwrap().is_none()
                && std::time::Instant::now() < deadline
            {
                std::thread::sleep(Duration::from_millis(5));
            }
            std::thread::sleep(Duration::from_millis(extra_ms));
            // SIGKILL: no chance to clean up.
            let _ = child.kill();
            let _ = child.wait();
            assert!(
                !run.join("done/task-00000.json").exists(),
                "attempt {attempt}: the run finished before the kill"
            );
        }
        assert_ok(&prox(&args));
        assert_eq!(rows(&run, "output"), expected.0, "attempt {attempt}");
        assert_eq!(rows(&run, "dropped"), expected.1, "attempt {attempt}");
        assert_eq!(stats(&run)["documents"], expected.2, "attempt {attempt}");
        let leftovers: Vec<_> = ["output", "dropped", "failures"]
            .iter()
            .flat_map(|kind| std::fs::read_dir(run.join(kind)).into_iter().flatten())
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .filter(|name| name.starts_with('.'))
            .collect();
        assert!(leftovers.is_empty(), "temporary files left: {leftovers:?}");
    }
}

/// A running `prox serve` on a free port, killed when dropped.
struct Server(std::process::Child, String);

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn serve_tiny_model() -> Server {
    use std::io::BufRead;
    let model = tiny_model();
    let mut child = prox_command(&["serve", "--model", &model, "--port", "0"])
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .unwrap();
    let mut line = String::new();
    std::io::BufReader::new(child.stdout.take().unwrap())
        .read_line(&mut line)
        .unwrap();
    let address = line
        .trim()
        .strip_prefix("listening on ")
        .unwrap_or_else(|| panic!("{line:?}"));
    Server(child, address.to_owned())
}

#[test]
fn refining_through_a_server_writes_what_the_embedded_engine_writes() {
    let dir = tempfile::tempdir().unwrap();
    let input = write_corpus(dir.path(), "c.jsonl", &corpus(12));
    let embedded = dir.path().join("embedded");
    // Document stage decoded freely here, scored by `choose` in the embedded run above: the
    // answers must agree.
    assert_ok(&refine(&[&input], &embedded, &[]));
    let server = serve_tiny_model();
    let served = dir.path().join("served");
    assert_ok(&refine(
        &[&input],
        &served,
        &[
            "--backend",
            "openai",
            "--endpoint",
            &server.1,
            "--max-in-flight",
            "8",
        ],
    ));
    assert_eq!(rows(&served, "output"), rows(&embedded, "output"));
    assert_eq!(rows(&served, "dropped"), rows(&embedded, "dropped"));
    let stats = stats(&served);
    assert_balanced(&stats);
    assert_eq!(
        stats["stages"]["chunk"]["prompts"],
        self::stats(&embedded)["stages"]["chunk"]["prompts"]
    );

    // A server that is not there is an error naming it, before any document is touched.
    drop(server);
    let gone = dir.path().join("gone");
    let output = refine(
        &[&input],
        &gone,
        &["--backend", "openai", "--endpoint", "http://127.0.0.1:9"],
    );
    assert_eq!(output.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&output.stderr).contains("127.0.0.1:9"));
}

#[test]
fn report_and_show_read_a_real_run_folder() {
    let dir = tempfile::tempdir().unwrap();
    let input = write_corpus(dir.path(), "c.jsonl", &corpus(10));
    let run = dir.path().join("run");
    assert_ok(&refine(&[&input], &run, &[]));
    let report = dir.path().join("report.html");
    assert_ok(&prox(&[
        "report",
        &run.display().to_string(),
        "--output",
        &report.display().to_string(),
    ]));
    let html = std::fs::read_to_string(&report).unwrap();
    assert!(html.contains("c.jsonl:1"), "the sample names the documents");
    let kept = rows(&run, "output");
    let id = kept[0]["id"].as_str().unwrap();
    let shown = prox(&["show", &run.display().to_string(), "--id", id]);
    assert_ok(&shown);
    let text = String::from_utf8_lossy(&shown.stdout);
    assert!(text.contains(id), "{text}");
}

#[test]
fn the_stages_run_as_two_chained_runs_give_the_rows_of_one_run() {
    let dir = tempfile::tempdir().unwrap();
    let input = write_corpus(dir.path(), "c.jsonl", &corpus(12));
    let both = dir.path().join("both");
    assert_ok(&refine(&[&input], &both, &[]));
    let doc = dir.path().join("doc");
    assert_ok(&refine(&[&input], &doc, &["--stages", "doc"]));
    let chunk = dir.path().join("chunk");
    assert_ok(&refine(
        &[&doc.join("output")],
        &chunk,
        &["--stages", "chunk"],
    ));
    assert_eq!(rows(&chunk, "output"), rows(&both, "output"));
    let mut dropped = rows(&doc, "dropped");
    dropped.extend(rows(&chunk, "dropped"));
    assert_eq!(dropped.len(), rows(&both, "dropped").len());
}
