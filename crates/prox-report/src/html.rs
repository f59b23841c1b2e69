//! The report as one self-contained HTML file: inline CSS and script allowed by their hashes
//! in a Content-Security-Policy (nothing else may load or run, nothing is fetched from another
//! host), inline SVG charts, and every string from the run escaped by the template engine.

use base64::Engine as _;
use minijinja::Environment;
use prox_run::{Stats, StatsSource};
use serde::Serialize;
use sha2::{Digest, Sha256};

use crate::charts::Charts;
use crate::report::{Report, SampledDocument};
use crate::run::{DroppedAt, FailureRow, Outcome, Stage};
use crate::Error;

/// Every page's start, up to its `<body>`: the policy, the style, `title`.
const HEAD: &str = include_str!("../assets/head.html");
const TEMPLATE: &str = include_str!("../assets/report.html");
pub(crate) const CSS: &str = include_str!("../assets/report.css");
const SCRIPT: &str = include_str!("../assets/report.js");

/// Lines of one document shown; the rest are counted.
pub const MAX_LINES_SHOWN: usize = 2000;

/// The Content-Security-Policy of the report: only its own inline style and script, by hash.
pub fn content_security_policy() -> String {
    format!(
        "default-src 'none'; style-src '{}'; script-src '{}'; img-src 'none'; \
         base-uri 'none'; form-action 'none'",
        sha256_source(CSS),
        sha256_source(SCRIPT)
    )
}

fn sha256_source(content: &str) -> String {
    let digest = Sha256::digest(content.as_bytes());
    format!(
        "sha256-{}",
        base64::engine::general_purpose::STANDARD.encode(digest)
    )
}

impl Report {
    /// The report as a complete HTML document.
    pub fn to_html(&self) -> Result<String, Error> {
        let charts = self.charts.render()?;
        render_page("report.html", TEMPLATE, &Page::new(self, charts))
    }
}

/// A whole page: [`HEAD`], then `body` (the template named `name`), both rendered with `page`,
/// which gives `csp`, `css` and `title` to the head.
pub(crate) fn render_page(name: &str, body: &str, page: &impl Serialize) -> Result<String, Error> {
    let mut environment = Environment::new();
    // The names' `.html` turns auto-escaping on for every value.
    environment.add_template("head.html", HEAD)?;
    environment.add_template(name, body)?;
    let render = |name: &str| -> Result<String, minijinja::Error> {
        environment
            .get_template(name)?
            .render(minijinja::value::Serde(page))
    };
    // A template loses its last newline when rendered: the one that ends the head's `<body>`.
    Ok(format!("{}\n{}", render("head.html")?, render(name)?))
}

#[derive(Serialize)]
struct Page<'a> {
    csp: String,
    css: &'static str,
    js: &'static str,
    title: String,
    run_dir: &'a str,
    stats_source: String,
    documents: Vec<CountRow>,
    stages: Vec<StageRow>,
    totals: Vec<TotalRow>,
    problems_total: u64,
    problems: &'a [String],
    charts: Charts,
    without_words: u64,
    programs: u64,
    seed: u64,
    strata: Vec<StratumView>,
    dropped_strata: usize,
    sample: Vec<DocumentView>,
    failures_total: u64,
    failures: Vec<FailureView<'a>>,
}

#[derive(Serialize)]
struct CountRow {
    label: String,
    stats: String,
    rows: String,
}

#[derive(Serialize)]
struct StageRow {
    name: &'static str,
    documents: String,
    prompts: String,
    prompt_tokens: String,
    generated_tokens: String,
    truncated_prompts: String,
    seconds: String,
}

#[derive(Serialize)]
struct TotalRow {
    label: &'static str,
    value: String,
}

#[derive(Serialize)]
struct StratumView {
    key: String,
    label: String,
    sampled: usize,
    total: u64,
}

#[derive(Serialize)]
struct DocumentView {
    id: String,
    key: String,
    label: String,
    badge: &'static str,
    location: String,
    words_before: u64,
    words_after: u64,
    ratio: Option<String>,
    counts: Option<String>,
    verdict: Option<String>,
    disagreements: Vec<String>,
    text_title: &'static str,
    lines: Vec<LineView>,
    omitted_lines: usize,
    doc_program: Option<String>,
    chunk_program: Option<String>,
    program: Vec<ProgramLineRow>,
    errors: Vec<String>,
}

#[derive(Serialize)]
struct LineView {
    label: String,
    removed_by: Option<usize>,
    segments: Vec<SegmentView>,
}

#[derive(Serialize)]
struct SegmentView {
    before: String,
    after: String,
    changed: bool,
    by: String,
}

#[derive(Serialize)]
struct ProgramLineRow {
    number: usize,
    text: String,
    kind: &'static str,
    notes: Vec<String>,
}

#[derive(Serialize)]
struct FailureView<'a> {
    file: &'a str,
    line: String,
    stage: &'a str,
    id: &'a str,
    error: &'a str,
    excerpt: &'a str,
}

impl<'a> Page<'a> {
    fn new(report: &'a Report, charts: Charts) -> Self {
        let stats = report.stats.as_ref().map(|(stats, _)| stats);
        let stats_source = match &report.stats {
            Some((_, StatsSource::Final(_))) => "stats from stats.json".to_owned(),
            Some((_, StatsSource::DoneTasks(tasks))) => format!(
                "stats summed over the {} tasks that ended (no stats.json yet)",
                tasks.len()
            ),
            None => "no stats yet (no task has ended): counts come from the rows".to_owned(),
        };
        let mut strata: Vec<StratumView> = report
            .rows_by_outcome
            .iter()
            .map(|(outcome, total)| StratumView {
                key: outcome.key(),
                label: outcome.label(),
                sampled: 0,
                total: *total,
            })
            .collect();
        for document in &report.sample {
            let key = document.row.outcome.key();
            if let Some(stratum) = strata.iter_mut().find(|s| s.key == key) {
                stratum.sampled += 1;
            }
        }
        Self {
            csp: content_security_policy(),
            css: CSS,
            js: SCRIPT,
            title: format!("ProX report: {}", report.run_dir),
            run_dir: &report.run_dir,
            stats_source,
            documents: document_counts(report, stats),
            stages: stats.map(stage_rows).unwrap_or_default(),
            totals: stats.map(total_rows).unwrap_or_default(),
            problems_total: report.problems_total,
            problems: &report.problems,
            charts,
            without_words: report.charts.without_words,
            programs: report.charts.programs,
            seed: report.options.seed,
            dropped_strata: report
                .rows_by_outcome
                .keys()
                .filter(|o| matches!(o, Outcome::Dropped { .. }))
                .count(),
            strata,
            sample: report.sample.iter().map(DocumentView::new).collect(),
            failures_total: report.failures_total,
            failures: report.failures.iter().map(FailureView::new).collect(),
        }
    }
}

fn document_counts(report: &Report, stats: Option<&Stats>) -> Vec<CountRow> {
    let rows = |wanted: &dyn Fn(&Outcome) -> bool| -> u64 {
        report
            .rows_by_outcome
            .iter()
            .filter(|(outcome, _)| wanted(outcome))
            .map(|(_, count)| count)
            .sum()
    };
    let dropped_for = |reason: &'static str| move |outcome: &Outcome| matches!(outcome, Outcome::Dropped { reason: r, .. } if r == reason);
    let kept = rows(&|o| !matches!(o, Outcome::Dropped { .. }));
    let dropped = rows(&|o| matches!(o, Outcome::Dropped { .. }));
    let stat = |pick: &dyn Fn(&Stats) -> u64| stats.map_or("—".to_owned(), |s| grouped(pick(s)));
    let mut counts = vec![
        CountRow {
            label: "in".into(),
            stats: stat(&|s| s.documents.input),
            rows: grouped(kept + dropped + report.failures_total),
        },
        CountRow {
            label: "kept".into(),
            stats: stat(&|s| s.documents.output),
            rows: grouped(kept),
        },
        CountRow {
            label: "· unchanged".into(),
            stats: stat(&|s| s.documents.unchanged),
            rows: grouped(rows(&|o| *o == Outcome::Unchanged)),
        },
        CountRow {
            label: "· modified".into(),
            stats: stat(&|s| s.documents.modified),
            rows: grouped(rows(&|o| *o == Outcome::Modified)),
        },
        CountRow {
            label: "· program ignored (kept as it was)".into(),
            stats: stat(&|s| s.documents.ignored),
            rows: grouped(rows(&|o| *o == Outcome::Ignored)),
        },
        CountRow {
            label: "dropped".into(),
            stats: stat(&|s| s.documents.dropped),
            rows: grouped(dropped),
        },
    ];
    let reasons = [
        (DroppedAt::Read, "empty"),
        (DroppedAt::DOC, "doc_program"),
        (DroppedAt::Stage(Stage::Chunk), "low_ratio"),
        (DroppedAt::Stage(Stage::Chunk), "few_words"),
        (DroppedAt::Stage(Stage::Chunk), "no_words"),
    ];
    for (stage, reason) in reasons {
        counts.push(CountRow {
            label: drop_label(stage, reason),
            stats: stat(&|s| s.dropped_for(reason)),
            rows: grouped(rows(&dropped_for(reason))),
        });
    }
    // Reasons outside the contract still show up.
    for (outcome, count) in &report.rows_by_outcome {
        if let Outcome::Dropped { stage, reason } = outcome {
            if !reasons.iter().any(|(_, known)| known == reason) {
                counts.push(CountRow {
                    label: drop_label(*stage, reason),
                    stats: "—".into(),
                    rows: grouped(*count),
                });
            }
        }
    }
    counts.push(CountRow {
        label: "failed".into(),
        stats: stat(&|s| s.documents.failed),
        rows: grouped(report.failures_total),
    });
    counts
}

/// `· doc stage: doc_program`, or `· when read: empty`.
fn drop_label(stage: DroppedAt, reason: &str) -> String {
    match stage {
        DroppedAt::Read => format!("· when read: {reason}"),
        DroppedAt::Stage(stage) => format!("· {stage} stage: {reason}"),
    }
}

fn stage_rows(stats: &Stats) -> Vec<StageRow> {
    Stage::ALL
        .into_iter()
        .map(|stage| {
            let counts = stats.stages.of(stage);
            StageRow {
                name: stage.as_str(),
                documents: grouped(counts.documents),
                prompts: grouped(counts.prompts),
                prompt_tokens: grouped(counts.prompt_tokens),
                generated_tokens: grouped(counts.generated_tokens),
                truncated_prompts: grouped(counts.truncated_prompts),
                seconds: format!("{:.1}", counts.seconds),
            }
        })
        .collect()
}

fn total_rows(stats: &Stats) -> Vec<TotalRow> {
    let row = |label, value| TotalRow { label, value };
    let calls = |name| grouped(stats.calls_of(name));
    vec![
        row("tokens in", grouped(stats.tokens.input)),
        row("tokens out", grouped(stats.tokens.output)),
        row(
            "kept-token ratio",
            format!("{:.4}", stats.tokens.kept_ratio),
        ),
        row("words in", grouped(stats.words.input)),
        row("words out", grouped(stats.words.output)),
        row("program parse errors", grouped(stats.programs.parse_errors)),
        row("programs ignored", grouped(stats.programs.ignored)),
        row("calls: drop_doc", calls("drop_doc")),
        row("calls: keep_doc", calls("keep_doc")),
        row("calls: remove_lines", calls("remove_lines")),
        row("calls: normalize", calls("normalize")),
        row("calls: untouch_doc", calls("untouch_doc")),
        row("calls: other", calls("other")),
        row("seconds (total)", format!("{:.1}", stats.seconds.total)),
        row("seconds (model)", format!("{:.1}", stats.seconds.model)),
        row("seconds (I/O)", format!("{:.1}", stats.seconds.io)),
    ]
}

impl DocumentView {
    fn new(document: &SampledDocument) -> Self {
        let row = &document.row;
        let badge = match row.outcome {
            Outcome::Unchanged => "unchanged",
            Outcome::Modified => "modified",
            Outcome::Ignored => "ignored",
            Outcome::Dropped { .. } => "dropped",
        };
        let (lines, omitted_lines, text_title) = match &document.diff {
            Some(diff) => (
                diff.lines
                    .iter()
                    .take(MAX_LINES_SHOWN)
                    .map(|line| LineView {
                        label: line.label(),
                        removed_by: line.removed_by,
                        segments: line
                            .segments
                            .iter()
                            .map(|segment| SegmentView {
                                before: segment.before.clone(),
                                after: segment.after.clone(),
                                changed: segment.is_changed(),
                                by: join_numbers(&segment.normalized_by),
                            })
                            .collect(),
                    })
                    .collect(),
                diff.lines.len().saturating_sub(MAX_LINES_SHOWN),
                "the text as the chunk-stage model saw it",
            ),
            None => {
                let text = row.shown_text();
                let all: Vec<&str> = text.split('\n').collect();
                let shown = all
                    .iter()
                    .take(MAX_LINES_SHOWN)
                    .enumerate()
                    .map(|(index, line)| LineView {
                        label: format!("[{index:03}]"),
                        removed_by: None,
                        segments: vec![SegmentView {
                            before: (*line).to_owned(),
                            after: (*line).to_owned(),
                            changed: false,
                            by: String::new(),
                        }],
                    })
                    .collect();
                let title = if matches!(
                    row.outcome,
                    Outcome::Dropped {
                        stage: DroppedAt::DOC,
                        ..
                    }
                ) {
                    "the input text (the chunk stage did not see it)"
                } else {
                    "the text (no chunk program to show)"
                };
                (shown, all.len().saturating_sub(MAX_LINES_SHOWN), title)
            }
        };
        let (counts, errors) = match &document.diff {
            Some(diff) => (
                Some(format!(
                    "{} lines removed · {} normalizations · {} program errors",
                    diff.outcome.lines_removed,
                    diff.outcome.normalizations,
                    diff.outcome.errors.len()
                )),
                diff.outcome
                    .errors
                    .iter()
                    .map(ToString::to_string)
                    .collect(),
            ),
            None => (None, Vec::new()),
        };
        Self {
            id: row.id.clone(),
            key: row.outcome.key(),
            label: row.outcome.label(),
            badge,
            location: row.location.clone(),
            words_before: row.words_before,
            words_after: row.words_after,
            ratio: row.kept_word_ratio().map(|ratio| format!("{ratio:.2}")),
            counts,
            verdict: verdict_note(document),
            disagreements: document.disagreements.clone(),
            text_title,
            lines,
            omitted_lines,
            doc_program: row.doc_program.clone(),
            chunk_program: row.chunk_program.clone(),
            program: document
                .diff
                .as_ref()
                .map(|diff| {
                    diff.program
                        .iter()
                        .map(|line| ProgramLineRow {
                            number: line.number,
                            text: line.text.clone(),
                            kind: line.kind,
                            notes: line.notes.clone(),
                        })
                        .collect()
                })
                .unwrap_or_default(),
            errors,
        }
    }
}

/// Why the document ended as it did, in words; `None` for plain kept documents.
pub(crate) fn verdict_note(document: &SampledDocument) -> Option<String> {
    let thresholds = document.thresholds;
    let row = &document.row;
    let (before, after) = match &document.diff {
        Some(diff) => (diff.outcome.words_before, diff.outcome.words_after),
        None => (row.words_before as usize, row.words_after as usize),
    };
    match &row.outcome {
        Outcome::Unchanged | Outcome::Modified => None,
        Outcome::Ignored => {
            Some(format!(
            "The chunk program was ignored: it has {} errors ({} or more ignore a program), so \
             the text is kept as it was.",
            document
                .diff
                .as_ref()
                .map_or(row.program_errors.unwrap_or(0) as usize, |d| d.outcome.errors.len()),
            thresholds.error_op
        ))
        }
        Outcome::Dropped { reason, .. } => Some(match reason.as_str() {
            "doc_program" => "Dropped by the document-stage program.".to_owned(),
            "low_ratio" => format!(
                "Dropped at the chunk stage: the program's edit keeps {after} of {before} words, \
                 a ratio of {:.2} or less.",
                1.0 - thresholds.threshold_2
            ),
            "few_words" => format!(
                "Dropped at the chunk stage: {after} words left, {} or fewer.",
                thresholds.min_words
            ),
            "no_words" => "Dropped: the document has no words.".to_owned(),
            "empty" => {
                "Dropped when read: the text is empty or blank, so no model saw it.".to_owned()
            }
            other => format!("Dropped: {other}."),
        }),
    }
}

fn join_numbers(numbers: &[usize]) -> String {
    numbers
        .iter()
        .map(ToString::to_string)
        .collect::<Vec<_>>()
        .join(", ")
}

impl<'a> FailureView<'a> {
    fn new(failure: &'a FailureRow) -> Self {
        Self {
            file: &failure.file,
            line: failure
                .line
                .map(|line| line.to_string())
                .unwrap_or_default(),
            stage: failure.stage.as_deref().unwrap_or(""),
            id: failure.id.as_deref().unwrap_or(""),
            error: &failure.error,
            excerpt: failure.excerpt.as_deref().unwrap_or(""),
        }
    }
}

/// `1234567` as `1,234,567`.
fn grouped(n: u64) -> String {
    let digits = n.to_string();
    let first = match digits.len() % 3 {
        0 => 3.min(digits.len()),
        partial => partial,
    };
    let mut out = digits[..first].to_owned();
    let mut at = first;
    while at < digits.len() {
        out.push(',');
        out.push_str(&digits[at..at + 3]);
        at += 3;
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn numbers_are_grouped_by_thousands() {
        assert_eq!(
            [0, 999, 1000, 1234567].map(grouped),
            ["0", "999", "1,000", "1,234,567"]
        );
    }

    #[test]
    fn the_policy_allows_exactly_the_report_s_own_style_and_script() {
        let policy = content_security_policy();
        assert!(policy.starts_with("default-src 'none'"));
        assert!(policy.contains(&sha256_source(CSS)));
        assert!(policy.contains(&sha256_source(SCRIPT)));
        assert!(!policy.contains("unsafe"));
        // Known value: sha256 of the empty string.
        assert_eq!(
            sha256_source(""),
            "sha256-47DEQpj8HBSa+/TImW+5JCeuQeRkm5NMpJWZG3hSuFU="
        );
    }
}
