//! Reports of run folders written by the contract, hostile documents included.

use std::collections::BTreeMap;

use prox_program::{Executor, Mode, Thresholds};
use prox_report::{Found, Outcome, Report, ReportOptions, RunFolder, SampledDocument};

use crate::support::{
    doc, mixed_docs, report_of, stats_for, write_mixed_run, write_run, write_run_with, PartFormat,
};

fn mixed_run(format: PartFormat) -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    write_mixed_run(
        dir.path(),
        3,
        format,
        serde_json::json!({"file": "in/a.jsonl", "line": 9, "error": "invalid JSON </script>",
                           "excerpt": "{\"text\": <script>", "stage": "read"}),
    );
    dir
}

fn counts(report: &Report) -> BTreeMap<String, u64> {
    report
        .rows_by_outcome
        .iter()
        .map(|(outcome, count)| (outcome.key(), *count))
        .collect()
}

/// Re-executing each sampled document's programs gives what the run stored.
fn assert_no_disagreements(report: &Report, context: &str) {
    for document in &report.sample {
        assert_eq!(
            document.disagreements,
            Vec::<String>::new(),
            "{context} {}",
            document.row.id
        );
    }
}

#[test]
fn every_outcome_is_counted_and_sampled_from_parquet_and_jsonl_gz_parts() {
    for format in [PartFormat::Parquet, PartFormat::JsonlGz] {
        let dir = mixed_run(format);
        let report = report_of(dir.path(), 16, 3);
        assert_eq!(report.problems, Vec::<String>::new(), "{format:?}");
        let expected: BTreeMap<String, u64> = [
            ("unchanged", 3),
            ("modified", 6),
            ("ignored", 3),
            ("dropped-doc_program", 3),
            ("dropped-few_words", 3),
            ("dropped-low_ratio", 3),
            ("dropped-no_words", 3),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_owned(), v))
        .collect();
        assert_eq!(counts(&report), expected, "{format:?}");
        assert_eq!(report.failures_total, 1);
        // 16 over 7 strata: two each, and the two left to the first strata in order.
        let mut sampled = BTreeMap::<String, usize>::new();
        for document in &report.sample {
            *sampled.entry(document.row.outcome.key()).or_default() += 1;
        }
        assert_eq!(sampled.values().sum::<usize>(), 16);
        assert_eq!(sampled["unchanged"], 3);
        assert_eq!(sampled["modified"], 3);
        assert!(sampled.values().all(|&n| n >= 2), "{sampled:?}");
        // Re-executing every sampled program agrees with what the run stored.
        assert_no_disagreements(&report, "");
    }
}

#[test]
fn the_diff_shows_removed_lines_and_replacements_in_place() {
    let dir = mixed_run(PartFormat::Parquet);
    let run = RunFolder::open(dir.path()).unwrap();
    let Some(Found::Document(row)) = run.find("edited-1").unwrap() else {
        panic!("edited-1 not found");
    };
    assert_eq!(row.outcome, Outcome::Modified);
    let document = SampledDocument::new(*row, &run.execution());
    let diff = document.diff.as_ref().unwrap();
    let removed: Vec<_> = diff.lines.iter().map(|line| line.removed_by).collect();
    assert_eq!(removed, [Some(1), None, None, Some(3)]);
    let replaced: Vec<_> = diff.lines[2]
        .segments
        .iter()
        .filter(|s| s.is_changed())
        .map(|s| (s.before.as_str(), s.after.as_str(), s.normalized_by.clone()))
        .collect();
    assert_eq!(replaced, [("Click here", "Tap", vec![2])]);
    assert_eq!(diff.edited_text(), document.row.text);
}

#[test]
fn a_document_dropped_by_the_document_stage_shows_its_input_and_program() {
    let dir = mixed_run(PartFormat::JsonlGz);
    let run = RunFolder::open(dir.path()).unwrap();
    let Some(Found::Document(row)) = run.find("spam-0").unwrap() else {
        panic!("spam-0 not found");
    };
    let document = SampledDocument::new(*row, &run.execution());
    assert!(document.diff.is_none());
    assert!(document.row.shown_text().starts_with("BUY NOW"));
    assert_eq!(document.row.doc_program.as_deref(), Some("drop_doc()"));
    let mut out = Vec::new();
    prox_report::write_document(&mut out, &document).unwrap();
    let out = String::from_utf8(out).unwrap();
    assert!(
        out.contains("Dropped by the document-stage program."),
        "{out}"
    );
}

#[test]
fn the_same_seed_gives_the_same_report_and_another_seed_another_sample() {
    let dir = mixed_run(PartFormat::Parquet);
    let build = |seed| report_of(dir.path(), 7, seed);
    let ids = |report: &Report| -> Vec<String> {
        report.sample.iter().map(|d| d.row.id.clone()).collect()
    };
    assert_eq!(build(1).to_html().unwrap(), build(1).to_html().unwrap());
    let samples: std::collections::BTreeSet<Vec<String>> =
        (0..6).map(|seed| ids(&build(seed))).collect();
    assert!(samples.len() > 1, "six seeds gave one sample: {samples:?}");
}

/// Every raw `<` in the page starts a tag the report itself writes: nothing from a document
/// became markup. Returns the tag names in order.
fn tags(html: &str) -> Vec<String> {
    const ALLOWED: &[&str] = &[
        "!DOCTYPE",
        "html",
        "head",
        "meta",
        "title",
        "style",
        "body",
        "h1",
        "h2",
        "div",
        "code",
        "table",
        "tr",
        "th",
        "td",
        "p",
        "ul",
        "li",
        "figure",
        "figcaption",
        "svg",
        "rect",
        "text",
        "line",
        "polyline",
        "path",
        "circle",
        "g",
        "polygon",
        "label",
        "select",
        "option",
        "input",
        "span",
        "article",
        "header",
        "del",
        "ins",
        "pre",
        "ol",
        "script",
    ];
    let mut names = Vec::new();
    let mut rest = html;
    while let Some(at) = rest.find('<') {
        rest = &rest[at + 1..];
        let end = rest.find('>').expect("every tag closes");
        let tag = &rest[..end];
        let tag = tag.strip_prefix('/').unwrap_or(tag);
        let name: String = tag
            .chars()
            .take_while(|c| c.is_ascii_alphanumeric() || *c == '!')
            .collect();
        assert!(ALLOWED.contains(&name.as_str()), "unexpected tag <{tag}>");
        let lower = tag.to_ascii_lowercase();
        for attribute in [
            " src=",
            " href=",
            " xlink:href=",
            " action=",
            " style=",
            " on",
        ] {
            assert!(
                !lower.contains(attribute),
                "attribute `{attribute}` in <{tag}>"
            );
        }
        names.push(name);
        rest = &rest[end + 1..];
    }
    names
}

#[test]
fn nothing_from_a_document_becomes_markup_or_script() {
    let dir = mixed_run(PartFormat::Parquet);
    let report = report_of(dir.path(), 100, 0);
    assert_eq!(report.sample.len(), 24, "the whole run is in the sample");
    let html = report.to_html().unwrap();

    let names = tags(&html);
    assert_eq!(
        names.iter().filter(|n| *n == "script").count(),
        2,
        "one script element"
    );
    assert_eq!(
        names.iter().filter(|n| *n == "style").count(),
        2,
        "one style element"
    );
    assert_eq!(names.iter().filter(|n| *n == "article").count(), 48);
    // The hostile text is there, as text.
    assert!(
        html.contains("&lt;&#x2f;script&gt;&lt;script&gt;window.__pwned = 1&lt;&#x2f;script&gt;")
    );
    assert!(html.contains("&lt;img src=x onerror=&quot;window.__pwned = 2&quot;&gt;"));
    assert!(html.contains("hostile-0&lt;b&gt;bold&lt;&#x2f;b&gt;"));
    // The normalize call that writes `</script><iframe …` is shown as a replacement (the
    // faithful reader ends the target at its second `=`).
    assert!(html.contains(
        "<del>&lt;style&gt;</del><span class=\"arrow\"> → </span><ins>&lt;&#x2f;script&gt;&lt;iframe src</ins>"
    ));
    // The very long line is whole.
    assert!(html.contains(&"long ".repeat(40_000)));
    // The script is the report's own, and the policy allows only it.
    let policy = html
        .split("<meta http-equiv=\"Content-Security-Policy\" content=\"")
        .nth(1)
        .and_then(|rest| rest.split('"').next())
        .unwrap()
        .replace("&#x27;", "'")
        .replace("&#x2f;", "/");
    assert_eq!(policy, prox_report::content_security_policy());
    assert!(!html.contains("http://") || only_svg_namespaces(&html));
    assert!(!html.contains("https://example.com>"));
    // Failures are listed, escaped too.
    assert!(html.contains("invalid JSON &lt;&#x2f;script&gt;"));
}

fn only_svg_namespaces(html: &str) -> bool {
    html.match_indices("http://").all(|(at, _)| {
        html[at..].starts_with("http://www.w3.org/2000/svg")
            || html[at..].starts_with("http://www.w3.org/1999/xlink")
    })
}

#[test]
fn a_run_without_stats_reports_counts_from_its_rows_and_unreadable_rows_as_problems() {
    let dir = tempfile::tempdir().unwrap();
    write_run(dir.path(), &mixed_docs(1), PartFormat::JsonlGz);
    // A row that breaks the contract, in a part of its own.
    std::fs::write(
        dir.path().join("output").join("part-00001-00000.jsonl"),
        "{\"id\": \"x\", \"text\": \"t\"}\nnot json\n",
    )
    .unwrap();
    // A temporary file is not a part.
    std::fs::write(
        dir.path()
            .join("output")
            .join(".part-00002-00000.jsonl.tmp-1"),
        "junk",
    )
    .unwrap();
    let run = RunFolder::open(dir.path()).unwrap();
    let report = Report::build(&run, ReportOptions::default()).unwrap();
    assert!(report.stats.is_none());
    assert_eq!(report.problems_total, 2, "{:?}", report.problems);
    assert!(
        report.problems[0].contains("no `prox.outcome`"),
        "{:?}",
        report.problems
    );
    assert_eq!(report.rows_by_outcome.values().sum::<u64>(), 8);
    let html = report.to_html().unwrap();
    assert!(html.contains("no stats yet"));
}

#[test]
fn stats_are_summed_over_done_markers_when_stats_json_is_missing() {
    let dir = tempfile::tempdir().unwrap();
    let docs = mixed_docs(1);
    write_run(dir.path(), &docs, PartFormat::Parquet);
    std::fs::create_dir_all(dir.path().join("done")).unwrap();
    for task in 0..2 {
        std::fs::write(
            dir.path()
                .join("done")
                .join(format!("task-0000{task}.json")),
            serde_json::to_string(&stats_for(&docs, 0)).unwrap(),
        )
        .unwrap();
    }
    let run = RunFolder::open(dir.path()).unwrap();
    let (stats, source) = run.stats().unwrap().unwrap();
    assert!(matches!(source, prox_report::StatsSource::DoneTasks(ref t) if t.len() == 2));
    assert_eq!(stats.documents.input, 16);
    assert_eq!(stats.tokens.kept_ratio, 0.3);
}

#[test]
fn a_folder_that_is_not_a_run_is_an_error_naming_it() {
    let dir = tempfile::tempdir().unwrap();
    let error = RunFolder::open(dir.path()).unwrap_err();
    assert!(error
        .to_string()
        .contains(&dir.path().display().to_string()));
}

/// A run made with other settings than the reference's: the report re-executes its programs
/// with the mode and thresholds its run.json records, so it finds no disagreement, explains
/// drops with the run's numbers, and counts calls as the run's mode reads them.
#[test]
fn a_report_re_executes_programs_with_the_runs_recorded_settings() {
    let thresholds = Thresholds {
        threshold_2: 0.5,
        min_words: 3,
        ..Thresholds::default()
    };
    let executor = Executor::new(Mode::Strict, thresholds);
    // Five words: kept with min_words 3, dropped (few_words) with the reference's 10.
    let short = doc(
        "short",
        "one two three four five",
        "keep_doc()",
        "untouch_doc()",
    );
    // Four of six lines removed, a third of the words kept: dropped (low_ratio) with
    // threshold_2 0.5, kept (modified) with the reference's 0.95.
    let lines: Vec<String> = (0..6)
        .map(|i| crate::support::words(&format!("l{i}w"), 4))
        .collect();
    let halved = doc(
        "halved",
        &lines.join("\n"),
        "keep_doc()",
        "remove_lines(start=0, end=3)",
    );
    let docs = [short, halved];
    for format in [PartFormat::Parquet, PartFormat::JsonlGz] {
        let dir = tempfile::tempdir().unwrap();
        write_run_with(dir.path(), &docs, format, &executor);
        std::fs::write(
            dir.path().join("run.json"),
            serde_json::json!({"refiner": {"mode": "strict", "threshold_1": 0.0,
                "threshold_2": 0.5, "error_op": 2, "min_words": 3}})
            .to_string(),
        )
        .unwrap();
        let run = RunFolder::open(dir.path()).unwrap();
        assert_eq!(run.execution().mode, Mode::Strict);
        assert_eq!(run.execution().thresholds, thresholds);
        let report = Report::build(&run, ReportOptions::default()).unwrap();
        assert_eq!(report.sample.len(), 2, "{format:?}");
        assert_no_disagreements(&report, &format!("{format:?}"));
        let Some(Found::Document(row)) = run.find("short").unwrap() else {
            panic!("short not found");
        };
        assert_eq!(row.outcome, Outcome::Unchanged);
        // With the reference's settings the same row would disagree with its re-execution.
        let reference = SampledDocument::new(*row, &prox_report::Execution::default());
        assert!(
            !reference.disagreements.is_empty(),
            "the reference's min_words would drop `short`"
        );
        let Some(Found::Document(row)) = run.find("halved").unwrap() else {
            panic!("halved not found");
        };
        assert_eq!(row.outcome.key(), "dropped-low_ratio");
        let mut out = Vec::new();
        prox_report::write_document(&mut out, &SampledDocument::new(*row, &run.execution()))
            .unwrap();
        let out = String::from_utf8(out).unwrap();
        assert!(out.contains("a ratio of 0.50 or less"), "{out}");
    }
}

#[test]
fn a_run_json_with_a_malformed_setting_is_an_error_naming_it() {
    let dir = mixed_run(PartFormat::JsonlGz);
    std::fs::write(
        dir.path().join("run.json"),
        r#"{"refiner": {"mode": "loose"}}"#,
    )
    .unwrap();
    let error = RunFolder::open(dir.path()).unwrap_err().to_string();
    assert!(
        error.contains("run.json") && error.contains("loose"),
        "{error}"
    );
}
