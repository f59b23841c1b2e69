//! One model's whole evaluation: every task prepared before anything is scored, the documents
//! scored in batches, the details written, and the results summarized.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Instant;

use prox_engine::Model;
use prox_io::JsonlWriter;

use crate::error::{Error, Result};
use crate::evaluate::{prepare_task, score_plan, summarize, RequestBuilder, Summary, TaskPlan};
use crate::results::EvalResults;
use crate::score::{ScoreOptions, ScoringPath};
use crate::tasks::Task;

/// What to evaluate, and how.
#[derive(Debug, Clone)]
pub struct EvalSettings {
    /// The evaluation data folder ([`crate::load_split`]).
    pub data: PathBuf,
    pub tasks: Vec<Task>,
    /// Task name → the split scored instead of ProX's.
    pub splits: BTreeMap<String, String>,
    /// Documents per task: the first N of lighteval's shuffle; every row when `None`.
    pub max_samples: Option<usize>,
    /// Documents scored together.
    pub batch_size: usize,
    /// Model inputs are cut to their last N tokens; the model's context when `None` (and at
    /// most that).
    pub max_length: Option<usize>,
    pub scoring: ScoringPath,
}

impl EvalSettings {
    /// The split scored for `task`.
    pub fn split_of<'a>(&'a self, task: &'a Task) -> &'a str {
        self.splits
            .get(task.name.as_str())
            .map_or(task.prox_split, String::as_str)
    }
}

/// Progress of an evaluation; every method has a no-op default.
pub trait Reporter {
    /// Every task is prepared: `documents` to score with `model`.
    fn started(&mut self, _model: &Path, _documents: usize) {}
    /// Scoring of `task` starts.
    fn task_started(&mut self, _task: &str) {}
    /// `documents` more documents are scored.
    fn scored(&mut self, _documents: usize) {}
    /// Every document is scored.
    fn finished(&mut self) {}
}

/// A reporter that ignores everything.
pub struct Silent;
impl Reporter for Silent {}

/// What an evaluation found.
#[derive(Debug, Clone)]
pub struct Evaluation {
    pub summary: Summary,
    pub results: EvalResults,
    /// Documents scored.
    pub documents: usize,
}

/// Evaluates `model` on `settings.tasks`. Every task's data is read and tokenized before any
/// scoring, so a missing split stops the run at once, not hours in. When `details` is given,
/// one JSON line per document is written there (atomically, once every task is scored).
pub fn evaluate(
    model: &Model,
    settings: &EvalSettings,
    details: Option<&Path>,
    reporter: &mut dyn Reporter,
) -> Result<Evaluation> {
    let context = model.llama.config().max_position_embeddings;
    let max_length = settings.max_length.unwrap_or(context).min(context);
    if max_length == 0 {
        return Err(Error::Model(
            "the model input length must be positive".into(),
        ));
    }
    let builder = RequestBuilder::for_model(model, max_length)?;
    let plans = settings
        .tasks
        .iter()
        .map(|task| {
            prepare_task(
                &settings.data,
                task,
                settings.split_of(task),
                settings.max_samples,
                &builder,
            )
        })
        .collect::<Result<Vec<TaskPlan>>>()?;
    let documents: usize = plans.iter().map(|p| p.docs.len()).sum();
    reporter.started(&model.source, documents);

    let options = ScoreOptions {
        path: settings.scoring,
        max_length,
        ..ScoreOptions::for_model(&model.llama)
    };
    let mut writer = details.map(JsonlWriter::create).transpose()?;
    let started = Instant::now();
    let mut outcomes = Vec::with_capacity(plans.len());
    for plan in &plans {
        reporter.task_started(&plan.task.name);
        let results = score_plan(&model.llama, plan, &options, settings.batch_size, reporter)?;
        if let Some(writer) = writer.as_mut() {
            for result in &results {
                writer.write(result)?;
            }
        }
        outcomes.push((
            plan.task.clone(),
            plan.split.clone(),
            results.into_iter().map(|r| r.outcome).collect::<Vec<_>>(),
        ));
    }
    let seconds = started.elapsed().as_secs_f64();
    reporter.finished();
    if let Some(writer) = writer {
        writer.finish()?;
    }
    let summary = summarize(&outcomes);
    let results = EvalResults::new(
        &model.source,
        &settings.data,
        settings.max_samples,
        max_length,
        &plans,
        &summary,
        seconds,
    );
    Ok(Evaluation {
        summary,
        results,
        documents,
    })
}
