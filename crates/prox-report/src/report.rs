//! Gathering a report: one pass over the run's rows for counts and charts, a stratified
//! sample, and a diff for each sampled document.

use std::collections::BTreeMap;

use prox_run::{Stats, StatsSource};

use crate::charts::ChartData;
use crate::diff::DocumentDiff;
use crate::run::{DocumentRow, DroppedAt, Execution, FailureRow, Item, Outcome, RunFolder};
use crate::sample::StratifiedSample;
use crate::Error;

/// What to put in a report.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ReportOptions {
    /// Documents in the sample, shared out over the outcomes.
    pub sample: usize,
    /// Seeds the sample: the same seed and run give the same sample.
    pub seed: u64,
    /// Failure rows listed (all are counted).
    pub failures_listed: usize,
}

impl Default for ReportOptions {
    fn default() -> Self {
        Self {
            sample: 60,
            seed: 0,
            failures_listed: 50,
        }
    }
}

/// Problems (unreadable rows or files) listed in a report; all are counted.
const PROBLEMS_LISTED: usize = 50;

/// A sampled document with what its chunk program did.
#[derive(Debug, Clone, PartialEq)]
pub struct SampledDocument {
    pub row: DocumentRow,
    /// The chunk program's diff, when the chunk stage saw the document.
    pub diff: Option<DocumentDiff>,
    /// Where re-executing the program disagrees with what the run stored.
    pub disagreements: Vec<String>,
    /// The thresholds the program was re-executed with (the run's).
    pub thresholds: prox_program::Thresholds,
}

impl SampledDocument {
    /// Re-executes the document's chunk program as the run did (`execution`) and checks the
    /// result against the row.
    pub fn new(row: DocumentRow, execution: &Execution) -> Self {
        let chunk_stage_saw_it = !matches!(
            row.outcome,
            Outcome::Dropped {
                stage: DroppedAt::DOC,
                ..
            }
        );
        let diff =
            match (row.base_text(), row.chunk_program.as_deref()) {
                (Some(text), Some(program)) if chunk_stage_saw_it => Some(
                    DocumentDiff::compute_with(&execution.executor(), text, program),
                ),
                _ => None,
            };
        let disagreements = diff
            .as_ref()
            .map(|diff| disagreements(&row, diff))
            .unwrap_or_default();
        Self {
            row,
            diff,
            disagreements,
            thresholds: execution.thresholds,
        }
    }
}

fn disagreements(row: &DocumentRow, diff: &DocumentDiff) -> Vec<String> {
    let outcome = &diff.outcome;
    let mut found = Vec::new();
    let executed = match (&outcome.verdict, outcome.program_ignored) {
        (prox_program::Verdict::Dropped(reason), _) => format!("dropped: {reason}"),
        (_, true) => "ignored".to_owned(),
        (prox_program::Verdict::Kept { modified: true, .. }, _) => "modified".to_owned(),
        _ => "unchanged".to_owned(),
    };
    if executed != row.outcome.label() {
        found.push(format!(
            "re-executing the program gives `{executed}`, the run stored `{}`",
            row.outcome.label()
        ));
    } else if !matches!(row.outcome, Outcome::Dropped { .. }) && outcome.verdict.text() != row.text
    {
        found.push("re-executing the program gives another text than the run stored".to_owned());
    }
    let counts = [
        ("lines removed", row.lines_removed, outcome.lines_removed),
        ("normalizations", row.normalizations, outcome.normalizations),
        ("program errors", row.program_errors, outcome.errors.len()),
    ];
    for (what, stored, executed) in counts {
        if let Some(stored) = stored {
            if stored != executed as u64 {
                found.push(format!(
                    "{what}: the run stored {stored}, re-executing gives {executed}"
                ));
            }
        }
    }
    found
}

/// Everything a report shows.
#[derive(Debug, Clone)]
pub struct Report {
    /// The run folder, as given.
    pub run_dir: String,
    /// The run's stats and where they came from; `None` when no task has ended.
    pub stats: Option<(Stats, StatsSource)>,
    /// Documents per outcome, counted from the rows of `output/` and `dropped/`.
    pub rows_by_outcome: BTreeMap<Outcome, u64>,
    pub failures_total: u64,
    /// The first failure rows.
    pub failures: Vec<FailureRow>,
    pub charts: ChartData,
    /// The sample, grouped by outcome.
    pub sample: Vec<SampledDocument>,
    pub options: ReportOptions,
    pub problems_total: u64,
    /// The first problems met while reading (rows or files that could not be read).
    pub problems: Vec<String>,
}

impl Report {
    /// Reads the run folder once and gathers the report.
    pub fn build(run: &RunFolder, options: ReportOptions) -> Result<Self, Error> {
        let stats = run.stats()?;
        let mut rows_by_outcome = BTreeMap::new();
        let mut charts = ChartData::new(run.execution().mode);
        let mut sampler = StratifiedSample::new(options.seed, options.sample);
        let mut problems = Vec::new();
        let mut problems_total = 0;
        let mut problem = |message: String| {
            problems_total += 1;
            if problems.len() < PROBLEMS_LISTED {
                problems.push(message);
            }
        };
        for item in run.documents()? {
            match item {
                Item::Row(row) => {
                    *rows_by_outcome.entry(row.outcome.clone()).or_insert(0) += 1;
                    charts.add(&row);
                    let id = row.id.clone();
                    sampler.offer(row.outcome.clone(), &id, || row);
                }
                Item::Problem(message) => problem(message),
            }
        }
        let mut failures = Vec::new();
        let mut failures_total = 0;
        for item in run.failures()? {
            match item {
                Item::Row(row) => {
                    failures_total += 1;
                    if failures.len() < options.failures_listed {
                        failures.push(row);
                    }
                }
                Item::Problem(message) => problem(message),
            }
        }
        let sample = sampler
            .take(options.sample)
            .into_iter()
            .map(|(_, row)| SampledDocument::new(row, &run.execution()))
            .collect();
        Ok(Self {
            run_dir: run.root().display().to_string(),
            stats,
            rows_by_outcome,
            failures_total,
            failures,
            charts,
            sample,
            options,
            problems_total,
            problems,
        })
    }
}
