//! `run_task` over a scripted backend: parts committed into the run folder with a checkpoint
//! after each, a task that died resumed to exactly what an uninterrupted run writes, a task
//! already done skipped, and counts that add up over tasks.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

use prox_refine::{
    run_task, Backend, BackendKind, OutputFormat, Plan, Progress, Refiner, RefinerOptions,
    RunConfig, RunFolder, SplitPolicy, Stages, Stats, TaskOptions, TaskReport,
};
use prox_run::PARTS;
use serde_json::{json, Value};
use tempfile::TempDir;

use crate::scripted::{backend, Scripted, LONG};

/// Documents of every fate, by their number: modified, dropped by either stage, failed, and
/// unchanged.
fn text_of(i: usize) -> String {
    match i % 6 {
        0 => format!("noise line {i}\n{LONG}"),
        1 => format!("DROPME {i} {LONG}"),
        2 => format!("teh start {i}\n{LONG}"),
        3 => format!("FAILME {i} {LONG}"),
        4 => format!("{LONG}\nmore words {i}"),
        _ => format!("too short {i}"),
    }
}

/// Documents in the two input files, and an unreadable line in the first.
const DOCUMENTS: [usize; 2] = [20, 11];
/// The input files' records: their documents and the unreadable line.
const RECORDS: u64 = 32;

/// The inputs of every run here: `a.jsonl` (documents 0 to 19, and a line that is not JSON
/// after the seventh) and `b.jsonl` (documents 20 to 30).
fn inputs() -> (TempDir, Vec<PathBuf>) {
    let dir = tempfile::tempdir().unwrap();
    let mut files = Vec::new();
    let mut next = 0;
    for (name, count) in ["a.jsonl", "b.jsonl"].into_iter().zip(DOCUMENTS) {
        let mut lines = Vec::new();
        for i in next..next + count {
            lines.push(
                json!({"text": text_of(i), "url": format!("https://example.org/{i}")}).to_string(),
            );
            if i == 7 {
                lines.push("{\"text\": not json".to_owned());
            }
        }
        next += count;
        let path = dir.path().join(name);
        std::fs::write(&path, lines.join("\n") + "\n").unwrap();
        files.push(path);
    }
    (dir, files)
}

/// A run folder at `root` for `inputs`, one shard a file, shared by `tasks` tasks.
fn prepare(root: &Path, inputs: &[PathBuf], tasks: usize) -> (RunFolder, Plan) {
    let config = RunConfig {
        inputs: inputs.to_vec(),
        tasks,
        stages: Stages {
            doc: true,
            chunk: true,
        },
        text_field: "text".to_owned(),
        id_field: None,
        doc_model: None,
        chunk_model: None,
        backend: BackendKind::Embedded,
        endpoint: None,
        refiner: RefinerOptions::default().settings(),
        output_format: OutputFormat::JsonlGz,
        split: SplitPolicy::Never,
        limit: None,
    };
    RunFolder::prepare(root, &config, false, Plan::for_run).unwrap()
}

/// The inputs, and a run folder for them shared by `tasks` tasks; the folders go when it does.
struct Fixture {
    _inputs: TempDir,
    files: Vec<PathBuf>,
    _root: TempDir,
    folder: RunFolder,
    plan: Plan,
}

fn fixture(tasks: usize) -> Fixture {
    let (inputs, files) = inputs();
    let root = tempfile::tempdir().unwrap();
    let (folder, plan) = prepare(root.path(), &files, tasks);
    Fixture {
        _inputs: inputs,
        files,
        _root: root,
        folder,
        plan,
    }
}

/// Batches of 3 documents, a commit every 6: parts rotate by count alone, never by time or
/// size, so that where a run commits does not depend on how fast it goes.
fn options() -> TaskOptions {
    TaskOptions {
        batch_docs: 3,
        commit_docs: 6,
        commit_interval: Duration::from_secs(3600),
        part_bytes: usize::MAX,
        output_format: "jsonl.gz".to_owned(),
        ..TaskOptions::default()
    }
}

fn refiner(backend: Arc<dyn Backend>) -> Refiner {
    Refiner::new(
        Some(Arc::clone(&backend)),
        Some(backend),
        RefinerOptions::default(),
    )
    .unwrap()
}

/// Task `rank` run to its end with `backend`.
fn run(
    folder: &RunFolder,
    plan: &Plan,
    rank: usize,
    backend: Arc<dyn Backend>,
) -> prox_refine::Result<TaskReport> {
    run_counted(folder, plan, rank, backend, &Progress::default())
}

/// [`run`], counting into `progress`.
fn run_counted(
    folder: &RunFolder,
    plan: &Plan,
    rank: usize,
    backend: Arc<dyn Backend>,
    progress: &Progress,
) -> prox_refine::Result<TaskReport> {
    run_task(folder, plan, rank, &refiner(backend), &options(), progress)
}

/// Every complete part of the run folder by its path inside the folder, with its bytes.
fn parts(folder: &RunFolder) -> BTreeMap<String, Vec<u8>> {
    let mut found = BTreeMap::new();
    for kind in PARTS {
        for path in folder.layout().parts(kind).unwrap() {
            let name = path.strip_prefix(folder.root()).unwrap();
            found.insert(name.display().to_string(), std::fs::read(&path).unwrap());
        }
    }
    found
}

/// The rows of every complete part of `kind`, in run order.
fn rows(folder: &RunFolder, kind: &str) -> Vec<serde_json::Map<String, Value>> {
    let files = folder.layout().parts(kind).unwrap();
    prox_io::open_all_records(&files)
        .map(|record| record.unwrap().unwrap().fields)
        .collect()
}

/// The counts of `stats`: without the timings, which differ from run to run, and the token
/// ratio, a float that a trip through JSON may move by a unit in the last place (the counts
/// it is computed from stay).
fn counts(stats: &Stats) -> Stats {
    let mut counts = stats.clone();
    counts.seconds = Default::default();
    counts.throughput = Default::default();
    counts.stages.doc.seconds = 0.0;
    counts.stages.chunk.seconds = 0.0;
    counts.tokens.kept_ratio = 0.0;
    counts
}

/// The run's `stats.json`, written when its last task is done.
fn run_stats(folder: &RunFolder) -> Stats {
    serde_json::from_value(prox_test::json::read(folder.layout().stats_json())).unwrap()
}

/// Task `rank`'s checkpoint, as the task wrote it.
fn checkpoint(folder: &RunFolder, rank: usize) -> Value {
    prox_test::json::read(folder.progress_path(rank))
}

#[test]
fn a_task_commits_every_document_to_one_part_with_checkpoints_and_marks_itself_done() {
    let Fixture { folder, plan, .. } = &fixture(1);

    let report = run(folder, plan, 0, backend()).unwrap();

    assert!(!report.already_done);
    let stats = &report.stats;
    assert!(stats.is_balanced(), "{stats:?}");
    assert_eq!(stats.documents.input, RECORDS);
    assert_eq!(
        (
            stats.documents.output,
            stats.documents.dropped,
            stats.documents.failed
        ),
        (16, 10, 6),
        "16 kept; 5 dropped by each stage; 5 failed chunks and the unreadable line"
    );
    // Every document is a row of exactly one part: outputs, drops and failures.
    let output = rows(folder, "output");
    let dropped = rows(folder, "dropped");
    let failures = rows(folder, "failures");
    assert_eq!(output.len() as u64, stats.documents.output);
    assert_eq!(dropped.len() as u64, stats.documents.dropped);
    assert_eq!(failures.len() as u64, stats.documents.failed);
    let urls: Vec<&str> = output
        .iter()
        .map(|row| row["url"].as_str().unwrap())
        .collect();
    let kept: Vec<String> = (0..31)
        .filter(|i| [0, 2, 4].contains(&(i % 6)))
        .map(|i| format!("https://example.org/{i}"))
        .collect();
    assert_eq!(urls, kept, "the outputs, in input order");
    assert_eq!(
        failures.iter().filter(|row| row["stage"] == "read").count(),
        1
    );

    // A commit every 6 documents: parts 0 to 5 for 32 records, each complete, none open.
    let output_parts = folder.layout().parts("output").unwrap();
    let names: Vec<String> = output_parts
        .iter()
        .map(|p| p.file_name().unwrap().to_string_lossy().into_owned())
        .collect();
    assert_eq!(
        names,
        (0..6)
            .map(|seq| format!("part-00000-{seq:05}.jsonl.gz"))
            .collect::<Vec<_>>()
    );
    let checkpoint = checkpoint(folder, 0);
    assert_eq!(checkpoint["next_part"], 6);
    assert_eq!(checkpoint["shard"], 2, "past both shards");
    assert!(folder.layout().uncommitted_parts(0, 6).unwrap().is_empty());

    // The marker holds the task's stats; the only task's are the run's.
    assert!(folder.is_done(0));
    let marker = folder.done_stats(0).unwrap().expect("a done marker");
    assert_eq!(counts(&marker), counts(stats));
    assert_eq!(counts(&run_stats(folder)), counts(stats));
}

#[test]
fn a_task_that_died_resumes_to_exactly_what_an_uninterrupted_run_writes() {
    let uninterrupted = fixture(1);
    let clean = &uninterrupted.folder;
    let clean_report = run(clean, &uninterrupted.plan, 0, backend()).unwrap();

    // Two model calls a batch: the server goes away in the sixth batch, after the fourth
    // batch's commit (parts 0 and 1) and the fifth's rows were written to the open part 2.
    let root = tempfile::tempdir().unwrap();
    let (folder, plan) = &prepare(root.path(), &uninterrupted.files, 1);
    let error = run(folder, plan, 0, Arc::new(Scripted::failing_from_call(11))).unwrap_err();
    assert!(
        error.to_string().contains("the server went away"),
        "{error}"
    );
    assert!(!folder.is_done(0));
    assert_eq!(checkpoint(folder, 0)["next_part"], 2);
    let committed: Vec<String> = parts(folder).into_keys().collect();
    assert_eq!(
        committed
            .iter()
            .filter(|p| p.starts_with("output/"))
            .count(),
        2,
        "{committed:?}"
    );
    // What an attempt that died between renaming a part and writing its checkpoint leaves.
    std::fs::write(
        folder.part_path("output", 0, 2, "jsonl.gz"),
        "not the rows of part 2",
    )
    .unwrap();

    let resumed = run(folder, plan, 0, backend()).unwrap();

    assert!(!resumed.already_done);
    assert_eq!(counts(&resumed.stats), counts(&clean_report.stats));
    let (written, expected) = (parts(folder), parts(clean));
    assert_eq!(
        written.keys().collect::<Vec<_>>(),
        expected.keys().collect::<Vec<_>>()
    );
    for (name, bytes) in &expected {
        assert!(
            &written[name] == bytes,
            "{name} differs from the uninterrupted run's"
        );
    }
    assert_eq!(counts(&run_stats(folder)), counts(&run_stats(clean)));
}

#[test]
fn a_task_already_done_is_skipped_without_asking_the_model() {
    let Fixture { folder, plan, .. } = &fixture(1);
    let first = run(folder, plan, 0, backend()).unwrap();
    let written = parts(folder);

    let again = run(folder, plan, 0, Arc::new(Scripted::failing_from_call(0))).unwrap();

    assert!(again.already_done);
    assert_eq!(Some(&again.stats), folder.done_stats(0).unwrap().as_ref());
    assert_eq!(counts(&again.stats), counts(&first.stats));
    assert!(parts(folder) == written, "the parts are left as they were");
}

#[test]
fn the_tasks_counts_add_up_to_the_runs() {
    let Fixture { folder, plan, .. } = &fixture(2);
    let progress = Progress::default();

    let first = run_counted(folder, plan, 0, backend(), &progress).unwrap();
    assert!(
        !folder.layout().stats_json().exists(),
        "no run stats while a task is left"
    );
    let second = run_counted(folder, plan, 1, backend(), &progress).unwrap();

    assert!(first.stats.is_balanced() && second.stats.is_balanced());
    assert_eq!(
        (first.stats.documents.input, second.stats.documents.input),
        (DOCUMENTS[0] as u64 + 1, DOCUMENTS[1] as u64)
    );
    let mut sum = first.stats.clone();
    sum.add(&second.stats);
    let total = run_stats(folder);
    assert!(total.is_balanced(), "{total:?}");
    assert_eq!(counts(&total), counts(&sum));
    assert_eq!(total.documents.input, RECORDS);
    // The progress display saw every document once.
    let seen = |counter: &std::sync::atomic::AtomicU64| counter.load(Ordering::Relaxed);
    assert_eq!(
        [
            seen(&progress.documents),
            seen(&progress.output),
            seen(&progress.dropped),
            seen(&progress.failed)
        ],
        [
            total.documents.input,
            total.documents.output,
            total.documents.dropped,
            total.documents.failed
        ]
    );
    assert_eq!(seen(&progress.bytes), total.bytes_in);
}

#[test]
fn a_task_the_plan_does_not_have_is_an_error() {
    let Fixture { folder, plan, .. } = &fixture(2);
    let error = run(folder, plan, 2, backend()).unwrap_err().to_string();
    assert!(
        error.contains("task 2 does not exist: the run has 2 tasks (0 to 1)"),
        "{error}"
    );
}
