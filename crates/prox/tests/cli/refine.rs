//! `prox refine` end to end: the real binary, the tiny fixture model as both stage models, a
//! generated corpus in every input format, sharding, and `kill -9` followed by a rerun.

use std::collections::BTreeMap;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;

use serde_json::{json, Value};

use crate::support::{
    apply, path_str, read_json, read_rows, run_rows as rows, tiny_llama, ServerProcess,
    TestCommand, CHUNK_STAGE,
};

/// `prox ARGS` as one task of its own: none of the variables by which a job array or a
/// Kubernetes indexed job would give it a rank.
fn prox(args: &[&str]) -> TestCommand {
    [
        "SLURM_ARRAY_TASK_ID",
        "SLURM_PROCID",
        "JOB_COMPLETION_INDEX",
        "PROX_RANK_OFFSET",
    ]
    .iter()
    .fold(crate::support::prox(args), |command, var| {
        command.env_remove(var)
    })
}

fn tiny_model() -> String {
    tiny_llama().display().to_string()
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

/// `prox refine` of `input` into the run folder `run` with the tiny model as both stages'
/// model, then `extra`.
fn refine(input: &[&Path], run: &Path, extra: &[&str]) -> TestCommand {
    let model = tiny_model();
    prox(&["refine", "--doc-model", &model, "--chunk-model", &model])
        .args(SMALL_MODEL_ARGS)
        .arg("--input")
        .args(input)
        .arg("--output")
        .arg(run)
        .args(extra)
}

fn stats(run: &Path) -> Value {
    read_json(run.join("stats.json"))
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
        refine(&[&input], &run, &[]).success();
        let stats = stats(&run);
        assert_balanced(&stats);
        assert_eq!(stats["documents"]["input"], 14, "{name}");
        assert_eq!(stats["dropped"]["empty"], 1, "{name}");
        if name == "c.jsonl" {
            // The empty document's row (`prox.stage` `read`) is one the report can read.
            let page = dir.path().join("report.html");
            crate::support::prox(["report", path_str(&run), "-o", path_str(&page)]).success();
            let html = std::fs::read_to_string(&page).unwrap();
            assert!(!html.contains("could not be read"), "{html}");
            assert!(html.contains("when read: empty"));
        }
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
    refine(&[&input], &run, &["--output-format", "jsonl.gz"]).success();
    let output = rows(&run, "output");
    assert!(!output.is_empty());
    let applied = dir.path().join("applied.jsonl");
    apply(&CHUNK_STAGE, &run.join("output"), &applied).success();
    let again = read_rows(&applied);
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
    refine(&[&a, &b], &one, &[]).success();
    let three = dir.path().join("three");
    // Small split size: a.jsonl becomes several byte ranges.
    let split = ["--tasks", "3", "--workers", "2", "--split-size", "300"];
    refine(&[&a, &b], &three, &split).success();
    let plan = read_json(three.join("plan.json"));
    assert!(plan["shards"].as_array().unwrap().len() > 3, "{plan}");
    // Each completion marker is its task's stats (docs/run-folder.md); together they count
    // every document.
    let marked: u64 = (0..3)
        .map(|rank| {
            let marker = read_json(three.join(format!("done/task-0000{rank}.json")));
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
    refine(&[&a], &single, &["--tasks", "3"])
        .env("SLURM_ARRAY_TASK_ID", "1")
        .success();
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
    let printed = refine(&[&input], &run, &["--dry-run", "--tasks", "2"]).success();
    assert!(
        printed.contains("task 0:") && printed.contains("task 1:"),
        "{printed}"
    );
    assert!(!run.exists(), "--dry-run wrote the run folder");

    refine(&[&input], &run, &[]).success();
    let message = refine(&[&input], &run, &["--tasks", "2"]).exit_code(2);
    assert!(
        message.contains("tasks") && message.contains("--force"),
        "{message}"
    );
    // The same command again is a resume of a finished run: nothing to do.
    refine(&[&input], &run, &[]).success();
    refine(&[&input], &run, &["--tasks", "2", "--force"]).success();
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
    prox(&[
        "refine",
        "--config",
        path_str(&config),
        "--output",
        path_str(&run),
    ])
    .args(["--tasks", "2"])
    .success();
    let run_json = read_json(run.join("run.json"));
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
    refine(&[&good, &cut, &corrupt], &run, &[]).exit_code(1);
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
    refine(&[&input], &clean, &small_commits).success();
    let expected = (
        rows(&clean, "output"),
        rows(&clean, "dropped"),
        stats(&clean)["documents"].clone(),
    );

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
        let mut command = refine(&[&input], &run, &small_commits);
        for &(committed, extra_ms) in kills {
            let mut child = command.spawn(Stdio::null(), Stdio::null());
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
        command.success();
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

#[test]
fn refining_through_a_server_writes_what_the_embedded_engine_writes() {
    let dir = tempfile::tempdir().unwrap();
    let input = write_corpus(dir.path(), "c.jsonl", &corpus(12));
    let embedded = dir.path().join("embedded");
    // Document stage decoded freely here, scored by `choose` in the embedded run above: the
    // answers must agree.
    refine(&[&input], &embedded, &[]).success();
    let server = ServerProcess::start(&["--model", &tiny_model(), "--port", "0"]);
    let served = dir.path().join("served");
    let endpoint = server.endpoint();
    let backend = ["--backend", "openai", "--endpoint", &endpoint];
    refine(&[&input], &served, &backend)
        .args(["--max-in-flight", "8"])
        .success();
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
    let stderr = refine(
        &[&input],
        &gone,
        &["--backend", "openai", "--endpoint", "http://127.0.0.1:9"],
    )
    .exit_code(2);
    assert!(stderr.contains("127.0.0.1:9"), "{stderr}");
}

#[test]
fn report_and_show_read_a_real_run_folder() {
    let dir = tempfile::tempdir().unwrap();
    let input = write_corpus(dir.path(), "c.jsonl", &corpus(10));
    let run = dir.path().join("run");
    refine(&[&input], &run, &[]).success();
    let report = dir.path().join("report.html");
    prox(&["report", path_str(&run), "--output", path_str(&report)]).success();
    let html = std::fs::read_to_string(&report).unwrap();
    assert!(html.contains("c.jsonl:1"), "the sample names the documents");
    let kept = rows(&run, "output");
    let id = kept[0]["id"].as_str().unwrap();
    let text = prox(&["show", path_str(&run), "--id", id]).success();
    assert!(text.contains(id), "{text}");
}

#[test]
fn the_stages_run_as_two_chained_runs_give_the_rows_of_one_run() {
    let dir = tempfile::tempdir().unwrap();
    let input = write_corpus(dir.path(), "c.jsonl", &corpus(12));
    let both = dir.path().join("both");
    refine(&[&input], &both, &[]).success();
    let doc = dir.path().join("doc");
    refine(&[&input], &doc, &["--stages", "doc"]).success();
    let chunk = dir.path().join("chunk");
    refine(&[&doc.join("output")], &chunk, &["--stages", "chunk"]).success();
    assert_eq!(rows(&chunk, "output"), rows(&both, "output"));
    let mut dropped = rows(&doc, "dropped");
    dropped.extend(rows(&chunk, "dropped"));
    assert_eq!(dropped.len(), rows(&both, "dropped").len());
}
