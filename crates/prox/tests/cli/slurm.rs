//! `prox slurm submit` and `prox status` on a real single-node Slurm (`scripts/slurm-local.sh
//! start`, which `.ci/run` calls): a 4-task array refines a small corpus with the tiny fixture
//! model and gives the output of the same run on one worker; a task cancelled mid-run is the
//! only one a second `submit` runs again, and nothing is lost or duplicated.
//!
//! These tests fail, rather than skip, when Slurm is missing or not up.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use serde_json::Value;

use crate::support::{path_str, prox, read_json, run_rows as rows, tiny_llama, TestCommand, PROX};

/// The tests share the cluster's two CPUs: one at a time.
static CLUSTER: Mutex<()> = Mutex::new(());

const TASKS: u32 = 4;
/// A task's generous limit on a loaded 2-core machine (the runs take seconds).
const RUN_TIMEOUT: Duration = Duration::from_secs(120);

/// Panics with the way to start Slurm when it is not installed or not up.
fn require_cluster() {
    let help = "the Slurm tests need a running single-node Slurm: run \
                `scripts/slurm-local.sh start` (as .ci/run does) and try again";
    match Command::new("sbatch").arg("--version").output() {
        Ok(output) if output.status.success() => {}
        Ok(output) => panic!(
            "`sbatch --version` failed: {}; {help}",
            String::from_utf8_lossy(&output.stderr)
        ),
        Err(error) => panic!("sbatch is not installed ({error}); {help}"),
    }
    let sinfo = Command::new("sinfo")
        .args(["--noheader", "--format=%T"])
        .output()
        .unwrap();
    let states = String::from_utf8_lossy(&sinfo.stdout).into_owned();
    let up = sinfo.status.success()
        && states
            .lines()
            .any(|s| ["idle", "mixed", "allocated"].contains(&s.trim_end_matches('*')));
    assert!(
        up,
        "the Slurm cluster is not up (sinfo: {:?} {}); {help}",
        states.trim(),
        String::from_utf8_lossy(&sinfo.stderr).trim()
    );
}

/// A corpus folder of one file per task, `per_file` documents each, from the packing
/// fixture's texts cut short (the tiny model's prompts stay small), each with an `id`.
fn write_corpus(dir: &Path, per_file: usize) -> PathBuf {
    let source = std::fs::read_to_string(prox_test::fixture("packed/input.jsonl")).unwrap();
    let mut texts = source.lines().map(|line| {
        let record: Value = serde_json::from_str(line).unwrap();
        record["text"]
            .as_str()
            .unwrap()
            .chars()
            .take(400)
            .collect::<String>()
    });
    let corpus = dir.join("corpus");
    std::fs::create_dir_all(&corpus).unwrap();
    let mut n = 0;
    for file in 0..TASKS {
        let mut lines = String::new();
        for _ in 0..per_file {
            let record =
                serde_json::json!({"id": format!("doc-{n:04}"), "text": texts.next().unwrap()});
            lines.push_str(&record.to_string());
            lines.push('\n');
            n += 1;
        }
        std::fs::write(corpus.join(format!("part-{file}.jsonl")), lines).unwrap();
    }
    corpus
}

/// The refine arguments of every run here: the tiny fixture model for both stages.
fn refine_args(corpus: &Path) -> Vec<String> {
    let model = tiny_llama().display().to_string();
    [
        "--input",
        path_str(corpus),
        "--id-field",
        "id",
        "--doc-model",
        &model,
        "--chunk-model",
        &model,
        "--doc-max-new-tokens",
        "8",
        "--chunk-max-new-tokens",
        "16",
    ]
    .map(str::to_owned)
    .to_vec()
}

fn submit_command(run_dir: &Path) -> TestCommand {
    prox(["slurm", "submit", "--output", path_str(run_dir)])
}

/// The first `prox slurm submit` of a run: a task a corpus file, `extra` (before `--`), the
/// refine arguments; its stdout.
fn submit(run_dir: &Path, corpus: &Path, extra: &[&str]) -> String {
    submit_command(run_dir)
        .args(["--tasks", &TASKS.to_string(), "--cpus-per-task", "1"])
        .args(extra)
        .arg("--")
        .args(refine_args(corpus))
        .success()
}

/// `prox slurm submit` of a run submitted before: the tasks not complete again; its stdout.
fn resubmit(run_dir: &Path) -> String {
    submit_command(run_dir).success()
}

fn status_json(run_dir: &Path) -> Value {
    serde_json::from_str(&prox(["status", "--json", path_str(run_dir)]).success()).unwrap()
}

fn ranks(stage: &Value, key: &str) -> Vec<u64> {
    stage[key]
        .as_array()
        .unwrap()
        .iter()
        .map(|task| task.get("rank").unwrap_or(task).as_u64().unwrap())
        .collect()
}

/// Polls `prox status` until no task is queued or running; returns every status seen.
fn wait_for_run(run_dir: &Path) -> Vec<Value> {
    let started = Instant::now();
    let mut seen = Vec::new();
    loop {
        let status = status_json(run_dir);
        let stage = &status["stages"][0];
        let active = ranks(stage, "running").len() + ranks(stage, "pending").len();
        seen.push(status.clone());
        if active == 0 {
            return seen;
        }
        assert!(
            started.elapsed() < RUN_TIMEOUT,
            "the run did not end within {RUN_TIMEOUT:?}: {status:#}\n{}",
            squeue()
        );
        std::thread::sleep(Duration::from_millis(300));
    }
}

fn max_array_size() -> u32 {
    let output = Command::new("scontrol")
        .args(["show", "config"])
        .output()
        .unwrap();
    String::from_utf8_lossy(&output.stdout)
        .lines()
        .find_map(|line| {
            let (key, value) = line.split_once('=')?;
            (key.trim() == "MaxArraySize").then(|| value.trim().parse().unwrap())
        })
        .unwrap()
}

fn squeue() -> String {
    let output = Command::new("squeue").arg("--array").output().unwrap();
    String::from_utf8_lossy(&output.stdout).into_owned()
}

fn job_ids(run_dir: &Path) -> Vec<String> {
    let jobs = read_json(run_dir.join("slurm/jobs.json"));
    jobs["jobs"]
        .as_array()
        .unwrap()
        .iter()
        .map(|job| job["job_id"].as_str().unwrap().to_owned())
        .collect()
}

/// The merged stats' counts, without timings and rates (which differ between any two runs).
fn stats_counts(run_dir: &Path) -> Value {
    let stats = read_json(run_dir.join("stats.json"));
    let mut counts = serde_json::Map::new();
    for key in [
        "documents",
        "dropped",
        "programs",
        "tokens",
        "words",
        "stages",
    ] {
        counts.insert(key.to_owned(), stats[key].clone());
    }
    for stage in counts["stages"].as_object_mut().unwrap().values_mut() {
        stage.as_object_mut().unwrap().remove("seconds");
    }
    Value::Object(counts)
}

/// The same run on this machine, one worker, no Slurm.
fn local_run(dir: &Path, corpus: &Path) -> PathBuf {
    let local = dir.join("local");
    prox([
        "refine",
        "--output",
        path_str(&local),
        "--tasks",
        &TASKS.to_string(),
    ])
    .args(["--workers", "1"])
    .args(refine_args(corpus))
    .success();
    local
}

fn assert_same_run(slurm_run: &Path, local_run: &Path) {
    for folder in ["output", "dropped", "failures"] {
        let (got, want) = (rows(slurm_run, folder), rows(local_run, folder));
        assert_eq!(got.len(), want.len(), "{folder}: row counts differ");
        assert!(
            got == want,
            "{folder}: the rows differ from the local run's"
        );
    }
    assert_eq!(stats_counts(slurm_run), stats_counts(local_run));
}

/// How many times each task started, from the lines the sbatch script writes to its log.
fn starts(run_dir: &Path, rank: u32) -> usize {
    let log = std::fs::read_to_string(run_dir.join(format!("logs/task-{rank:05}.log")))
        .unwrap_or_default();
    log.lines()
        .filter(|line| line.starts_with(&format!("prox slurm: task {rank} started")))
        .count()
}

#[test]
fn a_job_array_gives_the_output_of_one_worker_and_status_follows_it() {
    let _cluster = CLUSTER.lock().unwrap_or_else(|e| e.into_inner());
    require_cluster();
    let dir = tempfile::tempdir().unwrap();
    let corpus = write_corpus(dir.path(), 6);
    let run_dir = dir.path().join("run");

    let submitted = submit(&run_dir, &corpus, &[]);
    assert!(submitted.contains("submitted job"), "{submitted}");
    // The test cluster's MaxArraySize (3, scripts/slurm-local.sh) splits the array in two.
    if max_array_size() < TASKS {
        assert!(submitted.contains("(array 0-2, 3 tasks)"), "{submitted}");
        assert!(submitted.contains("(array 0, 1 tasks)"), "{submitted}");
    } else {
        assert!(submitted.contains("(array 0-3, 4 tasks)"), "{submitted}");
    }
    let script = std::fs::read_to_string(run_dir.join("slurm/all.sbatch")).unwrap();
    assert!(script.contains(PROX), "{script}");

    // During the run: every task is accounted for, none failed.
    let seen = wait_for_run(&run_dir);
    let first = &seen[0]["stages"][0];
    assert!(
        ranks(first, "completed").len() < TASKS as usize,
        "the run ended before the first status: {first:#}"
    );
    for status in &seen {
        let stage = &status["stages"][0];
        let accounted: usize = ["completed", "running", "pending"]
            .iter()
            .map(|key| ranks(stage, key).len())
            .sum();
        assert_eq!(accounted, TASKS as usize, "{status:#}");
        assert!(ranks(stage, "failed").is_empty(), "{status:#}");
    }

    // After: all complete, the merged stats are there, and the text says so.
    let after = status_json(&run_dir);
    assert_eq!(ranks(&after["stages"][0], "completed"), vec![0, 1, 2, 3]);
    assert_eq!(after["stats"]["documents"]["input"], 24);
    let text = prox(["status", path_str(&run_dir)]).success();
    assert!(
        text.contains("4 completed, 0 running, 0 pending, 0 failed"),
        "{text}"
    );
    assert!(text.contains("/stats.json):"), "{text}");
    for rank in 0..TASKS {
        assert_eq!(starts(&run_dir, rank), 1, "task {rank}");
    }

    // Submitting a complete run submits nothing.
    let jobs = job_ids(&run_dir);
    let again = resubmit(&run_dir);
    assert!(again.contains("nothing to submit"), "{again}");
    assert_eq!(job_ids(&run_dir), jobs);

    let local = local_run(dir.path(), &corpus);
    assert_same_run(&run_dir, &local);
}

#[test]
fn a_cancelled_task_is_the_only_one_submitted_again() {
    let _cluster = CLUSTER.lock().unwrap_or_else(|e| e.into_inner());
    require_cluster();
    let dir = tempfile::tempdir().unwrap();
    let per_file = 6;
    let documents = per_file * TASKS as usize;
    let corpus = write_corpus(dir.path(), per_file);
    let run_dir = dir.path().join("run");
    let victim = 1u32;

    submit(&run_dir, &corpus, &[]);
    let job = job_ids(&run_dir)[0].clone();
    let task = format!("{job}_{victim}");
    // Cancels the task as soon as it has started (its model is not even loaded then), so that
    // it is cancelled mid-run whatever the machine's speed.
    let started = Instant::now();
    while starts(&run_dir, victim) == 0 {
        assert!(
            started.elapsed() < RUN_TIMEOUT,
            "task {victim} never started"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    let during = status_json(&run_dir);
    assert!(
        ranks(&during["stages"][0], "running").contains(&u64::from(victim)),
        "{during:#}"
    );
    let cancel = Command::new("scancel").arg(&task).output().unwrap();
    assert!(cancel.status.success());
    std::thread::sleep(Duration::from_millis(500));
    assert!(
        !run_dir.join(format!("done/task-{victim:05}.json")).exists(),
        "task {victim} completed before it could be cancelled"
    );

    wait_for_run(&run_dir);
    let broken = status_json(&run_dir);
    let stage = &broken["stages"][0];
    assert_eq!(
        ranks(stage, "failed"),
        vec![u64::from(victim)],
        "{broken:#}"
    );
    assert_eq!(ranks(stage, "completed"), vec![0, 2, 3]);
    let text = prox(["status", path_str(&run_dir)]).success();
    assert!(
        text.contains(&format!("failed: task {victim} (job {job}")),
        "{text}"
    );
    assert!(
        text.contains("CANCELLED"),
        "Slurm's cancel message is in the log tail: {text}"
    );
    let markers_before: Vec<_> = [0, 2, 3]
        .iter()
        .map(|rank| {
            std::fs::metadata(run_dir.join(format!("done/task-{rank:05}.json")))
                .unwrap()
                .modified()
                .unwrap()
        })
        .collect();

    // Repair: only the cancelled task runs again.
    let repaired = resubmit(&run_dir);
    assert!(
        repaired.contains(&format!("array {victim}, 1 tasks")),
        "{repaired}"
    );
    wait_for_run(&run_dir);
    let after = status_json(&run_dir);
    assert_eq!(ranks(&after["stages"][0], "completed"), vec![0, 1, 2, 3]);
    assert_eq!(starts(&run_dir, victim), 2);
    for (rank, before) in [0u32, 2, 3].into_iter().zip(markers_before) {
        assert_eq!(starts(&run_dir, rank), 1, "task {rank} ran again");
        let now = std::fs::metadata(run_dir.join(format!("done/task-{rank:05}.json")))
            .unwrap()
            .modified()
            .unwrap();
        assert_eq!(now, before, "task {rank}'s marker was rewritten");
    }

    // Nothing lost or duplicated: every input id is in exactly one place.
    let mut ids: Vec<String> = ["output", "dropped"]
        .iter()
        .flat_map(|folder| rows(&run_dir, folder))
        .chain(rows(&run_dir, "failures"))
        .map(|row| row["id"].as_str().unwrap().to_owned())
        .collect();
    ids.sort();
    let expected: Vec<String> = (0..documents).map(|n| format!("doc-{n:04}")).collect();
    assert_eq!(ids, expected);
    let local = local_run(dir.path(), &corpus);
    assert_same_run(&run_dir, &local);
}

#[test]
fn each_task_serves_its_model_with_a_launched_server() {
    let _cluster = CLUSTER.lock().unwrap_or_else(|e| e.into_inner());
    require_cluster();
    let dir = tempfile::tempdir().unwrap();
    let corpus = write_corpus(dir.path(), 2);
    let run_dir = dir.path().join("run");
    // `prox serve` stands in for vLLM: the same OpenAI-compatible `/v1/models` and completions.
    let server = format!("{PROX} serve --model {{model}} --port {{port}}");
    let launch = ["--server-ready-timeout", "120", "--launch-server", &server];
    submit(&run_dir, &corpus, &launch);
    wait_for_run(&run_dir);
    let status = status_json(&run_dir);
    assert_eq!(
        ranks(&status["stages"][0], "completed"),
        vec![0, 1, 2, 3],
        "{status:#}"
    );
    assert_eq!(status["stats"]["documents"]["input"], 2 * TASKS);
    // A task is complete once its marker is written; its server stops just after.
    let jobs = job_ids(&run_dir).join(",");
    let started = Instant::now();
    loop {
        let queue = Command::new("squeue")
            .args(["--noheader", "--jobs", &jobs])
            .output()
            .unwrap();
        if queue.stdout.is_empty() {
            break;
        }
        assert!(
            started.elapsed() < RUN_TIMEOUT,
            "the jobs {jobs} never left the queue"
        );
        std::thread::sleep(Duration::from_millis(200));
    }
    for rank in 0..TASKS {
        let server_log =
            std::fs::read_to_string(run_dir.join(format!("logs/server-{rank:05}.log"))).unwrap();
        assert!(
            server_log.contains("listening on http://127.0.0.1:"),
            "{server_log}"
        );
        // Stopped when its task ended: nothing answers on its port any more.
        let port: u16 = server_log
            .split("listening on http://127.0.0.1:")
            .nth(1)
            .unwrap()
            .split_whitespace()
            .next()
            .unwrap()
            .parse()
            .unwrap();
        assert!(
            std::net::TcpStream::connect(("127.0.0.1", port)).is_err(),
            "task {rank}'s server still listens on port {port}"
        );
    }
}
