//! `results.json`, the file `prox eval --output` writes: each task's `acc` and `acc_norm` with
//! standard errors, `mmlu:_average`, the ProX average and the settings of the run, typed so
//! that it is written and read through one definition.
//!
//! The field names, their order and which fields are left out when empty are the file's since
//! its first version: files written before this type existed read back the same.

use std::path::Path;

use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};
use crate::evaluate::{ScoreRow, Summary, TaskPlan};
use crate::metrics::TaskScore;
use crate::tasks::PROX_COLUMNS;

/// The name of the ProX average in `results.json` and in the terminal table.
pub const PROX_AVERAGE: &str = "prox_average";

/// Everything `prox eval` reports about one model.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct EvalResults {
    /// The model folder or file scored.
    pub model: String,
    /// The evaluation data folder.
    pub data: String,
    /// Documents per task (`None`: every row).
    pub max_samples: Option<usize>,
    /// Model inputs were cut to their last `max_length` tokens.
    pub max_length: usize,
    pub metrics: MetricNames,
    /// Each task in run order, then `mmlu:_average` when MMLU subjects were scored (a JSON
    /// object whose keys keep this order).
    #[serde(with = "ordered_map")]
    pub tasks: Vec<(String, TaskResult)>,
    /// The plain mean of ProX's ten columns, when all ten were scored.
    pub prox_average: Option<AverageResult>,
    /// Tasks scored on another split than ProX's.
    pub not_on_prox_split: Vec<String>,
    /// Scoring time.
    pub seconds: f64,
}

/// lighteval's names of the two metrics.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct MetricNames {
    pub acc: String,
    pub acc_norm: String,
}

impl Default for MetricNames {
    fn default() -> Self {
        MetricNames {
            acc: "loglikelihood_acc".to_owned(),
            acc_norm: "loglikelihood_acc_norm_nospace".to_owned(),
        }
    }
}

/// One task's (or `mmlu:_average`'s) entry in [`EvalResults::tasks`].
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TaskResult {
    /// The split scored (absent for `mmlu:_average`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub split: Option<String>,
    /// ProX's split, present only when another one was scored.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub prox_split: Option<String>,
    /// `false` when another split than ProX's was scored; absent otherwise.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub comparable_with_prox: Option<bool>,
    /// For averages: the tasks averaged.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub n_tasks: Option<usize>,
    /// For tasks: the documents scored.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub n_docs: Option<usize>,
    #[serde(flatten)]
    pub scores: MetricValues,
    /// Rows in the split (absent for averages).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub split_rows: Option<usize>,
}

/// `acc` and `acc_norm` with their standard errors (`null` for fewer than two documents).
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct MetricValues {
    pub acc: f64,
    pub acc_stderr: Option<f64>,
    pub acc_norm: f64,
    pub acc_norm_stderr: Option<f64>,
}

impl MetricValues {
    fn of(score: &TaskScore) -> MetricValues {
        MetricValues {
            acc: score.acc.value,
            acc_stderr: score.acc.stderr,
            acc_norm: score.acc_norm.value,
            acc_norm_stderr: score.acc_norm.stderr,
        }
    }

    /// The value of `metric`.
    pub fn get(&self, metric: Metric) -> f64 {
        match metric {
            Metric::Acc => self.acc,
            Metric::AccNorm => self.acc_norm,
        }
    }
}

/// The ProX average's entry.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct AverageResult {
    pub n_tasks: usize,
    #[serde(flatten)]
    pub scores: MetricValues,
    /// The columns averaged, in ProX's order.
    pub columns: Vec<String>,
    /// Whether every column was scored on ProX's split.
    pub comparable_with_prox: bool,
}

/// Which of the two accuracies a summary reports.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Metric {
    Acc,
    /// ProX's tables and `base_evaluation.py`'s default.
    #[default]
    AccNorm,
}

impl Metric {
    pub fn name(self) -> &'static str {
        match self {
            Metric::Acc => "acc",
            Metric::AccNorm => "acc_norm",
        }
    }
}

impl TaskResult {
    fn of(row: &ScoreRow, split_rows: Option<usize>) -> TaskResult {
        TaskResult {
            split: row.split.clone(),
            prox_split: row.prox_split.clone(),
            comparable_with_prox: row.prox_split.as_ref().map(|_| false),
            n_tasks: row.n_tasks,
            n_docs: row.n_tasks.is_none().then_some(row.score.n_docs),
            scores: MetricValues::of(&row.score),
            split_rows,
        }
    }
}

impl EvalResults {
    /// The results of a run: `summary` of `plans`, scored in `seconds`.
    pub fn new(
        model: &Path,
        data: &Path,
        max_samples: Option<usize>,
        max_length: usize,
        plans: &[TaskPlan],
        summary: &Summary,
        seconds: f64,
    ) -> EvalResults {
        let tasks = summary
            .tasks
            .iter()
            .map(|row| {
                let split_rows = plans
                    .iter()
                    .find(|p| p.task.name == row.name)
                    .map(|p| p.split_rows);
                (row.name.clone(), TaskResult::of(row, split_rows))
            })
            .collect();
        EvalResults {
            model: model.display().to_string(),
            data: data.display().to_string(),
            max_samples,
            max_length,
            metrics: MetricNames::default(),
            tasks,
            prox_average: summary.prox_average.as_ref().map(|row| AverageResult {
                n_tasks: row.n_tasks.unwrap_or(PROX_COLUMNS.len()),
                scores: MetricValues::of(&row.score),
                columns: PROX_COLUMNS.iter().map(|c| c.to_string()).collect(),
                comparable_with_prox: summary.off_prox_splits.is_empty(),
            }),
            not_on_prox_split: summary.off_prox_splits.clone(),
            seconds,
        }
    }

    /// The entry of task `name` (a task or `mmlu:_average`).
    pub fn task(&self, name: &str) -> Option<&TaskResult> {
        self.tasks.iter().find(|(n, _)| n == name).map(|(_, t)| t)
    }

    /// Reads a results file; a file that is not a whole `results.json` (cut short, or of
    /// another kind) is an error naming it.
    pub fn read(path: &Path) -> Result<EvalResults> {
        let text = std::fs::read_to_string(path).map_err(|source| Error::Read {
            path: path.to_owned(),
            source,
        })?;
        serde_json::from_str(&text).map_err(|source| Error::Results {
            path: path.to_owned(),
            source,
        })
    }

    /// Writes the file atomically: a reader, or a rerun after a crash, finds the whole file
    /// or none.
    pub fn write(&self, path: &Path) -> Result<()> {
        Ok(prox_io::write_json(path, self)?)
    }
}

/// A list of named entries as a JSON object, keys in list order.
mod ordered_map {
    use std::fmt;

    use serde::de::{Deserialize, Deserializer, MapAccess, Visitor};
    use serde::ser::{Serialize, SerializeMap, Serializer};

    pub fn serialize<S: Serializer, T: Serialize>(
        entries: &[(String, T)],
        serializer: S,
    ) -> Result<S::Ok, S::Error> {
        let mut map = serializer.serialize_map(Some(entries.len()))?;
        for (key, value) in entries {
            map.serialize_entry(key, value)?;
        }
        map.end()
    }

    pub fn deserialize<'de, D: Deserializer<'de>, T: Deserialize<'de>>(
        deserializer: D,
    ) -> Result<Vec<(String, T)>, D::Error> {
        struct Entries<T>(std::marker::PhantomData<T>);
        impl<'de, T: Deserialize<'de>> Visitor<'de> for Entries<T> {
            type Value = Vec<(String, T)>;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("an object")
            }
            fn visit_map<A: MapAccess<'de>>(self, mut access: A) -> Result<Self::Value, A::Error> {
                let mut entries = Vec::with_capacity(access.size_hint().unwrap_or(0));
                while let Some(entry) = access.next_entry()? {
                    entries.push(entry);
                }
                Ok(entries)
            }
        }
        deserializer.deserialize_map(Entries(std::marker::PhantomData))
    }
}
