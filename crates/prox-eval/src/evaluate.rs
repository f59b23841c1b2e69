//! A whole evaluation: each task's split read and sampled, its documents built and
//! tokenized, scored in batches, and the scores aggregated as ProX reports them.

use std::path::Path;

use prox_engine::{Llama, Model};
use prox_tokenizer::Tokenizer;
use serde::Serialize;

use crate::data::load_split;
use crate::error::{Error, Result};
use crate::metrics::{doc_outcome, DocOutcome, TaskScore};
use crate::request::{tokenize_request, TokenizedRequest};
use crate::run::Reporter;
use crate::sample::sample_indices;
use crate::score::{check_request, score_docs, ChoiceScore, ScoreOptions};
use crate::tasks::{Doc, Task, MMLU_AVERAGE, PROX_COLUMNS};

/// One document ready to score.
#[derive(Debug, Clone)]
pub struct PreparedDoc {
    /// The 0-based row in the split's files.
    pub row_index: usize,
    pub doc: Doc,
    /// One per choice.
    pub requests: Vec<TokenizedRequest>,
}

/// A task's documents, in the order lighteval evaluates them.
#[derive(Debug, Clone)]
pub struct TaskPlan {
    pub task: Task,
    pub split: String,
    /// Rows in the split.
    pub split_rows: usize,
    pub docs: Vec<PreparedDoc>,
}

/// What turns documents into requests the model can score.
#[derive(Debug, Clone, Copy)]
pub struct RequestBuilder<'a> {
    pub tokenizer: &'a Tokenizer,
    /// The context of a request whose context is empty.
    pub eos_id: u32,
    /// The model input's length limit ([`ScoreOptions::max_length`]).
    pub max_length: usize,
}

impl<'a> RequestBuilder<'a> {
    /// The model's tokenizer and end-of-sequence token (the tokenizer's, else the
    /// config's).
    pub fn for_model(model: &'a Model, max_length: usize) -> Result<Self> {
        let tokenizer = model.tokenizer.as_ref().ok_or_else(|| {
            Error::Model(format!(
                "the model {} has no tokenizer (tokenizer.json or tokenizer.model beside it)",
                model.source.display()
            ))
        })?;
        let eos_id = tokenizer
            .eos_id()
            .or_else(|| model.llama.config().eos_token_ids.first().copied())
            .ok_or_else(|| {
                Error::Model(format!(
                    "the model {} has no end-of-sequence token (needed for empty contexts)",
                    model.source.display()
                ))
            })?;
        Ok(RequestBuilder {
            tokenizer,
            eos_id,
            max_length,
        })
    }
}

/// Reads `task`'s `split` from `data`, keeps the rows lighteval's `max_samples` keeps, and
/// builds and tokenizes their requests. A request the model could not score (a
/// continuation longer than `max_length`) is an error naming the row.
pub fn prepare_task(
    data: &Path,
    task: &Task,
    split: &str,
    max_samples: Option<usize>,
    builder: &RequestBuilder,
) -> Result<TaskPlan> {
    let rows = load_split(data, task, split)?;
    let RequestBuilder {
        tokenizer,
        eos_id,
        max_length,
    } = *builder;
    let mut docs = Vec::new();
    for row_index in sample_indices(rows.rows.len(), max_samples) {
        let doc = task
            .doc(&rows.rows[row_index])
            .map_err(|reason| Error::Row {
                task: task.name.clone(),
                split: split.to_owned(),
                row_index,
                reason,
            })?;
        let requests = doc
            .choices
            .iter()
            .map(|choice| tokenize_request(tokenizer, eos_id, &doc.query, choice))
            .collect::<std::result::Result<Vec<_>, _>>()
            .map_err(|source| Error::Tokenize {
                task: task.name.clone(),
                row_index,
                source,
            })?;
        if let Some(reason) = requests.iter().find_map(|r| check_request(r, max_length)) {
            return Err(Error::Request {
                task: task.name.clone(),
                row_index,
                reason,
            });
        }
        docs.push(PreparedDoc {
            row_index,
            doc,
            requests,
        });
    }
    Ok(TaskPlan {
        task: task.clone(),
        split: split.to_owned(),
        split_rows: rows.rows.len(),
        docs,
    })
}

/// A scored document.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct DocResult {
    pub task: String,
    pub split: String,
    pub row_index: usize,
    pub logprob_sums: Vec<f64>,
    pub gold_index: usize,
    #[serde(flatten)]
    pub outcome: DocOutcome,
    /// Per choice, the ids cut from the front of the model input.
    #[serde(skip)]
    pub scores: Vec<ChoiceScore>,
}

/// Scores a plan's documents, `batch_size` documents at a time; `reporter` hears how many
/// documents each batch finished.
pub fn score_plan(
    model: &Llama,
    plan: &TaskPlan,
    options: &ScoreOptions,
    batch_size: usize,
    reporter: &mut dyn Reporter,
) -> Result<Vec<DocResult>> {
    let mut results = Vec::with_capacity(plan.docs.len());
    for batch in plan.docs.chunks(batch_size.max(1)) {
        let requests: Vec<&[TokenizedRequest]> =
            batch.iter().map(|d| d.requests.as_slice()).collect();
        let scores = score_docs(model, &requests, options)?;
        for (prepared, scores) in batch.iter().zip(scores) {
            let sums: Vec<f64> = scores.iter().map(|s| s.logprob_sum).collect();
            let outcome = doc_outcome(
                &sums,
                &prepared.doc.choices,
                prepared.doc.gold_index,
                plan.task.norm_counts_leading_space(),
            );
            results.push(DocResult {
                task: plan.task.name.clone(),
                split: plan.split.clone(),
                row_index: prepared.row_index,
                logprob_sums: sums,
                gold_index: prepared.doc.gold_index,
                outcome,
                scores,
            });
        }
        reporter.scored(batch.len());
    }
    Ok(results)
}

/// One row of the results: a task, or an average of tasks.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ScoreRow {
    pub name: String,
    /// The split scored (`None` for averages).
    pub split: Option<String>,
    /// The split ProX evaluates, when it differs from the one scored.
    pub prox_split: Option<String>,
    #[serde(flatten)]
    pub score: TaskScore,
    /// For averages: the tasks averaged.
    pub n_tasks: Option<usize>,
}

/// The aggregated results of a run.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Summary {
    /// Each task, then `mmlu:_average` when MMLU subjects were scored.
    pub tasks: Vec<ScoreRow>,
    /// The plain mean of ProX's ten columns, when all ten were scored.
    pub prox_average: Option<ScoreRow>,
    /// ProX columns scored on another split than ProX's (their average is then not
    /// comparable with ProX's numbers).
    pub off_prox_splits: Vec<String>,
}

/// Aggregates per-task document outcomes (`(task, split, outcomes)`, in run order).
pub fn summarize(tasks: &[(Task, String, Vec<DocOutcome>)]) -> Summary {
    let mut rows: Vec<ScoreRow> = tasks
        .iter()
        .map(|(task, split, outcomes)| ScoreRow {
            name: task.name.clone(),
            split: Some(split.clone()),
            prox_split: (split != task.prox_split).then(|| task.prox_split.to_owned()),
            score: TaskScore::of(outcomes),
            n_tasks: None,
        })
        .collect();
    let subjects: Vec<TaskScore> = rows
        .iter()
        .filter(|r| r.name.starts_with("mmlu:"))
        .map(|r| r.score)
        .collect();
    if !subjects.is_empty() {
        rows.push(ScoreRow {
            name: MMLU_AVERAGE.to_owned(),
            split: None,
            prox_split: None,
            score: TaskScore::average(&subjects),
            n_tasks: Some(subjects.len()),
        });
    }
    let columns: Vec<&ScoreRow> = PROX_COLUMNS
        .iter()
        .filter_map(|c| rows.iter().find(|r| r.name == *c))
        .collect();
    let prox_average = (columns.len() == PROX_COLUMNS.len()).then(|| ScoreRow {
        name: "prox_average".to_owned(),
        split: None,
        prox_split: None,
        score: TaskScore::average(&columns.iter().map(|r| r.score).collect::<Vec<_>>()),
        n_tasks: Some(columns.len()),
    });
    let off_prox_splits = rows
        .iter()
        .filter(|r| r.prox_split.is_some())
        .map(|r| r.name.clone())
        .collect();
    Summary {
        tasks: rows,
        prox_average,
        off_prox_splits,
    }
}
