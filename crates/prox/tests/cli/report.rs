//! `prox report` and `prox show` end to end, on run folders laid out as `prox refine` writes
//! them (built here by the contract, with the real executor deciding each document).

#![allow(clippy::unwrap_used)] // test helpers: a failure is a test failure

#[path = "../../prox-report/tests/support/mod.rs"]
mod support;

use std::path::Path;
use std::process::{Command, Output};

use support::{doc, mixed_docs, stats_for, words, write_run, PartFormat};

fn prox(args: &[&str], env: &[(&str, &str)]) -> Output {
    let mut command = Command::new(env!("CARGO_BIN_EXE_prox"));
    command.args(args).env("PROX_LOG", "warn");
    for var in ["CLICOLOR_FORCE", "CLICOLOR", "NO_COLOR"] {
        command.env_remove(var);
    }
    command.envs(env.iter().copied());
    command.output().expect("the prox binary runs")
}

fn run_folder(dir: &Path) {
    let docs = mixed_docs(2);
    write_run(dir, &docs, PartFormat::Parquet);
    std::fs::write(
        dir.join("stats.json"),
        serde_json::to_string(&stats_for(&docs, 0)).unwrap(),
    )
    .unwrap();
}

#[test]
fn report_writes_one_page_with_the_asked_sample() {
    let dir = tempfile::tempdir().unwrap();
    let run = dir.path().join("run");
    run_folder(&run);
    let output = dir.path().join("out").join("report.html");
    let result = prox(
        &[
            "report",
            run.to_str().unwrap(),
            "--output",
            output.to_str().unwrap(),
            "--sample",
            "9",
            "--seed",
            "4",
        ],
        &[],
    );
    assert!(
        result.status.success(),
        "{}",
        String::from_utf8_lossy(&result.stderr)
    );
    let html = std::fs::read_to_string(&output).unwrap();
    assert!(html.starts_with("<!DOCTYPE html>"));
    assert_eq!(html.matches("<article class=\"doc\"").count(), 9);
    // Seven outcomes: nine documents give two to the first two and one to the others.
    assert_eq!(html.matches("data-outcome=\"unchanged\"").count(), 2);
    assert_eq!(html.matches("data-outcome=\"dropped-no_words\"").count(), 1);

    // The same seed writes the same bytes.
    let again = dir.path().join("again.html");
    let result = prox(
        &[
            "report",
            run.to_str().unwrap(),
            "-o",
            again.to_str().unwrap(),
            "--sample",
            "9",
            "--seed",
            "4",
        ],
        &[],
    );
    assert!(result.status.success());
    assert_eq!(std::fs::read(&again).unwrap(), html.into_bytes());
}

#[test]
fn show_prints_the_diff_plain_when_piped_and_in_colour_when_forced() {
    let dir = tempfile::tempdir().unwrap();
    run_folder(dir.path());
    let run = dir.path().to_str().unwrap();

    let plain = prox(&["show", run, "--id", "edited-1"], &[]);
    assert!(
        plain.status.success(),
        "{}",
        String::from_utf8_lossy(&plain.stderr)
    );
    let text = String::from_utf8(plain.stdout).unwrap();
    assert!(!text.contains('\u{1b}'), "no colour when piped: {text}");
    let lines: Vec<&str> = text.lines().collect();
    assert_eq!(lines[0], "edited-1  modified");
    assert!(
        lines.contains(&"[000] - Home | About | Contact  (removed by program line 1)"),
        "{text}"
    );
    assert!(
        text.contains(&format!(
            "[002]   [-Click here-]{{+Tap+}} to subscribe and read {}",
            words("tale", 6)
        )),
        "{text}"
    );
    assert!(
        text.contains("[003] - Share on Twitter  (removed by program line 3)"),
        "{text}"
    );
    assert!(
        text.contains("   2 normalize(source_str=\"Click here\", target_str=\"Tap\")"),
        "{text}"
    );

    let coloured = prox(
        &["show", run, "--id", "edited-1"],
        &[("CLICOLOR_FORCE", "1")],
    );
    let coloured = String::from_utf8(coloured.stdout).unwrap();
    assert!(coloured.contains("\u{1b}["), "colour when forced");
}

#[test]
fn show_and_status_into_a_closed_pipe_end_quietly() {
    let dir = tempfile::tempdir().unwrap();
    run_folder(dir.path());
    let run = dir.path().to_str().unwrap();
    for args in [
        vec!["show", run, "--id", "edited-1"],
        vec!["status", run, "--tasks", "2"],
    ] {
        let mut child = Command::new(env!("CARGO_BIN_EXE_prox"))
            .args(&args)
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .unwrap();
        // The reader goes away before `prox` has read the run, as `| head` does after its lines.
        drop(child.stdout.take());
        let output = child.wait_with_output().unwrap();
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert!(
            !stderr.contains("panicked") && !stderr.contains("error"),
            "{args:?}: {stderr}"
        );
    }
}

#[test]
fn show_makes_a_hostile_document_harmless_to_the_terminal() {
    let dir = tempfile::tempdir().unwrap();
    let raw = format!("\u{1b}]0;owned\u{7}\u{1b}[2J{}", words("calm", 15));
    write_run(
        dir.path(),
        &[doc("escape", &raw, "keep_doc()", "untouch_doc()")],
        PartFormat::JsonlGz,
    );
    let result = prox(
        &["show", dir.path().to_str().unwrap(), "--id", "escape"],
        &[("CLICOLOR_FORCE", "1")],
    );
    let text = String::from_utf8(result.stdout).unwrap();
    assert!(
        text.contains("\\u{1b}]0;owned\\u{7}\\u{1b}[2Jcalm0"),
        "{text}"
    );
    assert!(!text.contains("\u{1b}]0;"), "{text}");
}

#[test]
fn an_unknown_id_or_a_folder_that_is_no_run_is_an_error() {
    let dir = tempfile::tempdir().unwrap();
    run_folder(dir.path());
    let result = prox(&["show", dir.path().to_str().unwrap(), "--id", "nope"], &[]);
    assert_eq!(result.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&result.stderr);
    assert!(stderr.contains("no document `nope`"), "{stderr}");

    let empty = tempfile::tempdir().unwrap();
    let output = empty.path().join("r.html");
    let result = prox(
        &[
            "report",
            empty.path().to_str().unwrap(),
            "-o",
            output.to_str().unwrap(),
        ],
        &[],
    );
    assert_eq!(result.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&result.stderr).contains("is not a run folder"));
    assert!(!output.exists());
}
