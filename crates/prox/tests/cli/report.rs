//! `prox report` and `prox show` end to end, on run folders laid out as `prox refine` writes
//! them (built here by the contract, with the real executor deciding each document).

#[path = "../../../prox-report/tests/report/support.rs"]
#[allow(dead_code)] // prox-report's own tests use the rest
mod run_folders;

use std::path::Path;
use std::process::Stdio;

use run_folders::{doc, mixed_docs, stats_for, words, write_run, PartFormat};

use crate::support::{path_str, TestCommand, PROX};

/// `prox ARGS` with the colour the terminal settings of the caller would not decide.
fn prox(args: &[&str]) -> TestCommand {
    ["CLICOLOR_FORCE", "CLICOLOR", "NO_COLOR"]
        .iter()
        .fold(crate::support::prox(args), |command, var| {
            command.env_remove(var)
        })
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
    let sample = ["--sample", "9", "--seed", "4"];
    prox(&["report", path_str(&run), "--output", path_str(&output)])
        .args(sample)
        .success();
    let html = std::fs::read_to_string(&output).unwrap();
    assert!(html.starts_with("<!DOCTYPE html>"));
    assert_eq!(html.matches("<article class=\"doc\"").count(), 9);
    // Seven outcomes: nine documents give two to the first two and one to the others.
    assert_eq!(html.matches("data-outcome=\"unchanged\"").count(), 2);
    assert_eq!(html.matches("data-outcome=\"dropped-no_words\"").count(), 1);

    // The same seed writes the same bytes.
    let again = dir.path().join("again.html");
    prox(&["report", path_str(&run), "-o", path_str(&again)])
        .args(sample)
        .success();
    assert_eq!(std::fs::read(&again).unwrap(), html.into_bytes());
}

#[test]
fn show_prints_the_diff_plain_when_piped_and_in_colour_when_forced() {
    let dir = tempfile::tempdir().unwrap();
    run_folder(dir.path());
    let run = dir.path().to_str().unwrap();

    let text = prox(&["show", run, "--id", "edited-1"]).success();
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

    let coloured = prox(&["show", run, "--id", "edited-1"])
        .env("CLICOLOR_FORCE", "1")
        .success();
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
        // At the default log level: any line that speaks of an error shows.
        let mut child = TestCommand::new(PROX)
            .args(&args)
            .env_remove("PROX_LOG")
            .spawn(Stdio::piped(), Stdio::piped());
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
    let text = prox(&["show", path_str(dir.path()), "--id", "escape"])
        .env("CLICOLOR_FORCE", "1")
        .success();
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
    let stderr = prox(&["show", path_str(dir.path()), "--id", "nope"]).exit_code(2);
    assert!(stderr.contains("no document `nope`"), "{stderr}");

    let empty = tempfile::tempdir().unwrap();
    let output = empty.path().join("r.html");
    let stderr = prox(&["report", path_str(empty.path()), "-o", path_str(&output)]).exit_code(2);
    assert!(stderr.contains("is not a run folder"), "{stderr}");
    assert!(!output.exists());
}
