//! Evaluation over a checkpoint series, as ProX's `scripts/eval/base_evaluation.py
//! --model_step_list` runs it: the checkpoints of a training run found in a folder, some of
//! them selected by step, each evaluated into its own output folder unless already done, and
//! one row per checkpoint gathered into a CSV.
//!
//! ```text
//! OUT/<checkpoint>/results.json   the checkpoint's results (written last, atomically)
//! OUT/<checkpoint>/…              its details (prox eval) or the harness's files (math)
//! OUT/series.csv                  model_step, one column per task, the average, tokens
//! ```
//!
//! Two layouts are read: `{N}B/` folders (`prox convert litgpt`, as `batch_model_conversion.py`
//! names them: N billion training tokens, `model_step` N), and `step-NNNNNNNN/` folders
//! (`prox train`'s `checkpoints/`, given directly or through the run folder: `model_step` the
//! optimiser step, the tokens from `trainer_state.json`). A folder that is itself a model is a
//! series of one.
//!
//! The CSV follows `base_evaluation.py`'s summary:
//! - the header is `model_step`, then the tasks under lighteval's names
//!   (`custom|arc:challenge|0` … `lighteval|sciq|0`) in ProX's column order, and only the
//!   tasks evaluated (the reference always writes all ten);
//! - values are Python's `str(float)` of the results' number, unrounded, as the reference
//!   writes `f"{results[task][metric]}"`; `N/A` where a checkpoint has no value;
//! - `--metric acc_norm` by default, `acc` on request.
//!
//! It differs where the reference is accidental or has no data: rows are in step order (the
//! reference's follow `os.walk`), the file is written whole and atomically (the reference
//! appends, so a second run repeats the header), and two columns are added after the
//! reference's: the average (`prox_average`, the plain mean of ProX's ten columns, `N/A`
//! unless all ten were scored; `avg` for the math harness) and `tokens`, the training tokens
//! of the checkpoint (the chart's x axis). The math evaluation's columns are the harness's
//! dataset names and its `avg`, in percent as its `results.json` holds them.

use std::path::{Path, PathBuf};

use prox_engine::{LoadOptions, Model};
use prox_math::{python::float_repr, Dataset, Harness, MathResults, RunOptions};

use crate::error::{Error, Result};
use crate::math::EngineGenerator;
use crate::results::{EvalResults, Metric};
use crate::run::{evaluate, EvalSettings, Reporter as EvalReporter};
use crate::tasks::{MMLU_AVERAGE, PROX_COLUMNS};

/// Each checkpoint's results, in its output folder.
pub const RESULTS_FILE: &str = "results.json";
/// `prox eval`'s per-document details, beside the results.
pub const DETAILS_FILE: &str = "details.jsonl";
/// The series summary, in the output folder.
pub const CSV_FILE: &str = "series.csv";
/// What the CSV writes for a missing value, as `base_evaluation.py` does.
pub const MISSING: &str = "N/A";

/// A checkpoint of a series.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Checkpoint {
    /// The folder's name, also the name of its output folder.
    pub name: String,
    pub path: PathBuf,
    /// `model_step`: N of `{N}B`, or the optimiser step of `step-NNNNNNNN`; `None` for a lone
    /// model folder named otherwise.
    pub step: Option<u64>,
    /// Training tokens seen, when known.
    pub tokens: Option<u64>,
}

/// The two layouts of checkpoint folders.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Layout {
    /// `{N}B`: N billion tokens.
    Billions,
    /// `step-NNNNNNNN`.
    Steps,
}

/// A name of either layout, with its step.
fn parse_name(name: &str) -> Option<(Layout, u64)> {
    let digits = |s: &str| !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit());
    if let Some(n) = name.strip_suffix('B').filter(|n| digits(n)) {
        return n.parse().ok().map(|n| (Layout::Billions, n));
    }
    name.strip_prefix("step-")
        .filter(|n| digits(n))
        .and_then(|n| n.parse().ok())
        .map(|n| (Layout::Steps, n))
}

fn is_model(dir: &Path) -> bool {
    dir.join("config.json").is_file()
}

/// The checkpoint in `dir`, named `name`.
fn checkpoint(dir: PathBuf, name: String) -> Checkpoint {
    let parsed = parse_name(&name);
    let tokens = match parsed {
        Some((Layout::Billions, n)) => n.checked_mul(1_000_000_000),
        Some((Layout::Steps, _)) => trained_tokens(&dir),
        None => None,
    };
    Checkpoint {
        step: parsed.map(|(_, step)| step),
        tokens,
        name,
        path: dir,
    }
}

/// Tokens trained on by a `prox train` checkpoint: blocks drawn × sequence length, from its
/// `trainer_state.json` (a fine-tuning checkpoint has none of these).
fn trained_tokens(dir: &Path) -> Option<u64> {
    #[derive(serde::Deserialize)]
    struct State {
        blocks_drawn: u64,
        recipe: Recipe,
    }
    #[derive(serde::Deserialize)]
    struct Recipe {
        seq_len: u64,
    }
    let text = std::fs::read_to_string(dir.join("trainer_state.json")).ok()?;
    let state: State = serde_json::from_str(&text).ok()?;
    state.blocks_drawn.checked_mul(state.recipe.seq_len)
}

/// Whether `folder` holds checkpoints (rather than being a model itself).
pub fn is_series(folder: &Path) -> bool {
    !is_model(folder) && discover(folder).is_ok()
}

/// The checkpoints in `folder`, in step order; `folder` may also be `prox train`'s run
/// folder (its `checkpoints/` is read) or a model (a series of one). Folders of neither
/// layout, or without a `config.json` (never a complete checkpoint), are passed over.
pub fn discover(folder: &Path) -> Result<Vec<Checkpoint>> {
    if is_model(folder) {
        let name = folder
            .canonicalize()
            .ok()
            .and_then(|p| p.file_name().map(|n| n.to_string_lossy().into_owned()))
            .unwrap_or_else(|| "model".to_owned());
        return Ok(vec![checkpoint(folder.to_owned(), name)]);
    }
    let nested = folder.join("checkpoints");
    let dir = if nested.is_dir() {
        nested
    } else {
        folder.to_owned()
    };
    let entries = std::fs::read_dir(&dir).map_err(|source| Error::Read {
        path: dir.clone(),
        source,
    })?;
    let mut found: Vec<(Layout, Checkpoint)> = Vec::new();
    for entry in entries {
        let entry = entry.map_err(|source| Error::Read {
            path: dir.clone(),
            source,
        })?;
        let Some(name) = entry.file_name().to_str().map(str::to_owned) else {
            continue;
        };
        let Some((layout, _)) = parse_name(&name) else {
            continue;
        };
        if is_model(&entry.path()) {
            found.push((layout, checkpoint(entry.path(), name)));
        }
    }
    if found.is_empty() {
        return Err(Error::Series(format!(
            "{} holds no checkpoints: expected model folders named {{N}}B (prox convert \
             litgpt) or step-NNNNNNNN (prox train's checkpoints/), or a model folder",
            folder.display()
        )));
    }
    if found.iter().any(|(l, _)| *l != found[0].0) {
        return Err(Error::Series(format!(
            "{} mixes {{N}}B and step-NNNNNNNN checkpoints; give a folder of one kind",
            dir.display()
        )));
    }
    let mut checkpoints: Vec<Checkpoint> = found.into_iter().map(|(_, c)| c).collect();
    checkpoints.sort_by_key(|c| c.step);
    if let Some(pair) = checkpoints.windows(2).find(|w| w[0].step == w[1].step) {
        return Err(Error::Series(format!(
            "{} and {} are the same step",
            pair[0].path.display(),
            pair[1].path.display()
        )));
    }
    Ok(checkpoints)
}

/// The checkpoints of `steps` (every one when `steps` is empty), in step order. A step with
/// no checkpoint is an error listing those there are.
pub fn select(checkpoints: &[Checkpoint], steps: &[u64]) -> Result<Vec<Checkpoint>> {
    if steps.is_empty() {
        return Ok(checkpoints.to_vec());
    }
    let missing: Vec<String> = steps
        .iter()
        .filter(|s| !checkpoints.iter().any(|c| c.step == Some(**s)))
        .map(u64::to_string)
        .collect();
    if !missing.is_empty() {
        let available: Vec<String> = checkpoints
            .iter()
            .map(|c| c.step.map_or_else(|| c.name.clone(), |s| s.to_string()))
            .collect();
        return Err(Error::Series(format!(
            "no checkpoint for step {}; the steps there are: {}",
            missing.join(", "),
            available.join(", ")
        )));
    }
    Ok(checkpoints
        .iter()
        .filter(|c| c.step.is_some_and(|s| steps.contains(&s)))
        .cloned()
        .collect())
}

/// A checkpoint's scores: one per column of its evaluator (`None`: not scored), and the
/// average.
#[derive(Debug, Clone, PartialEq)]
pub struct Scores {
    pub values: Vec<Option<f64>>,
    pub average: Option<f64>,
}

/// An evaluation run on every checkpoint of a series.
pub trait Evaluator {
    /// The CSV's task columns, in order.
    fn columns(&self) -> &[String];
    /// The name of the average's column.
    fn average_column(&self) -> &str;
    /// What the scores are ("acc_norm", "acc (%)"), for the chart's axis.
    fn metric_label(&self) -> &str;
    /// The scores of the complete evaluation in `dir`, or `None` when there is none (no
    /// results file, or one cut short).
    fn finished(&self, dir: &Path) -> Result<Option<Scores>>;
    /// Evaluates `checkpoint` into `dir`, its results file written last.
    fn evaluate(&mut self, checkpoint: &Checkpoint, dir: &Path) -> Result<Scores>;
}

/// Progress over the series; every method has a no-op default.
pub trait Reporter {
    /// `checkpoint`, the `position`-th (from 1) of `total`, is being evaluated.
    fn checkpoint_started(&mut self, _checkpoint: &Checkpoint, _position: usize, _total: usize) {}
    /// `checkpoint` was evaluated by an earlier run.
    fn checkpoint_skipped(&mut self, _checkpoint: &Checkpoint) {}
    /// `checkpoint` is evaluated.
    fn checkpoint_finished(&mut self, _checkpoint: &Checkpoint, _scores: &Scores) {}
}

/// A reporter that ignores everything.
pub struct Silent;
impl Reporter for Silent {}

/// The gathered series: a row per checkpoint.
#[derive(Debug, Clone, PartialEq)]
pub struct SeriesTable {
    pub columns: Vec<String>,
    pub average_column: String,
    pub metric_label: String,
    pub rows: Vec<(Checkpoint, Scores)>,
}

/// Evaluates `checkpoints` in order into `out/<name>/`, skipping those already done, then
/// writes `out/series.csv` (atomically) and returns its table.
pub fn run(
    checkpoints: &[Checkpoint],
    out: &Path,
    evaluator: &mut dyn Evaluator,
    reporter: &mut dyn Reporter,
) -> Result<SeriesTable> {
    let mut rows = Vec::with_capacity(checkpoints.len());
    for (i, checkpoint) in checkpoints.iter().enumerate() {
        let dir = out.join(&checkpoint.name);
        let scores = match evaluator.finished(&dir)? {
            Some(scores) => {
                reporter.checkpoint_skipped(checkpoint);
                scores
            }
            None => {
                reporter.checkpoint_started(checkpoint, i + 1, checkpoints.len());
                let scores = evaluator.evaluate(checkpoint, &dir)?;
                reporter.checkpoint_finished(checkpoint, &scores);
                scores
            }
        };
        rows.push((checkpoint.clone(), scores));
    }
    let table = SeriesTable {
        columns: evaluator.columns().to_vec(),
        average_column: evaluator.average_column().to_owned(),
        metric_label: evaluator.metric_label().to_owned(),
        rows,
    };
    write_text(&out.join(CSV_FILE), &table.to_csv())?;
    Ok(table)
}

/// Writes `text` to `path` atomically (the whole file or none).
pub fn write_text(path: &Path, text: &str) -> Result<()> {
    let mut file = prox_io::AtomicFile::create(path)?;
    std::io::Write::write_all(&mut file, text.as_bytes()).map_err(|source| {
        prox_io::Error::Write {
            path: path.to_owned(),
            source,
        }
    })?;
    Ok(file.commit()?)
}

impl SeriesTable {
    /// The CSV's header: `model_step`, the task columns, the average, `tokens`.
    pub fn header(&self) -> Vec<String> {
        let mut header = vec!["model_step".to_owned()];
        header.extend(self.columns.iter().cloned());
        header.push(self.average_column.clone());
        header.push("tokens".to_owned());
        header
    }

    /// The CSV's rows, a field per column of [`header`](Self::header), unquoted.
    pub fn records(&self) -> Vec<Vec<String>> {
        let cell = |value: Option<f64>| match value {
            Some(v) if v.is_finite() => float_repr(v),
            _ => MISSING.to_owned(),
        };
        self.rows
            .iter()
            .map(|(checkpoint, scores)| {
                let mut fields = vec![checkpoint
                    .step
                    .map_or_else(|| checkpoint.name.clone(), |s| s.to_string())];
                fields.extend(scores.values.iter().map(|v| cell(*v)));
                fields.push(cell(scores.average));
                fields.push(
                    checkpoint
                        .tokens
                        .map_or_else(|| MISSING.to_owned(), |t| t.to_string()),
                );
                fields
            })
            .collect()
    }

    /// The CSV (see the [module documentation](self)).
    pub fn to_csv(&self) -> String {
        std::iter::once(self.header())
            .chain(self.records())
            .map(|fields| {
                let fields: Vec<String> = fields.iter().map(|f| csv_field(f)).collect();
                fields.join(",") + "\n"
            })
            .collect()
    }

    /// The chart's x axis: training tokens when every checkpoint's are known, else
    /// `model_step`; its label and a value per row.
    pub fn x_axis(&self) -> (&'static str, Vec<f64>) {
        if self.rows.iter().all(|(c, _)| c.tokens.is_some()) {
            let x = self.rows.iter().map(|(c, _)| c.tokens.unwrap_or(0) as f64);
            ("training tokens", x.collect())
        } else {
            let x = self.rows.iter().enumerate();
            let x = x.map(|(i, (c, _))| c.step.map_or(i as f64, |s| s as f64));
            ("model_step", x.collect())
        }
    }

    /// One line per column with a value, then the average's: its name and (x, score) points
    /// of the rows that have a value.
    pub fn lines(&self) -> Vec<(String, Vec<(f64, f64)>)> {
        let (_, x) = self.x_axis();
        let names = self.columns.iter().chain([&self.average_column]);
        names
            .enumerate()
            .map(|(column, name)| {
                let points = self
                    .rows
                    .iter()
                    .zip(&x)
                    .filter_map(|((_, scores), &x)| {
                        let value = if column < scores.values.len() {
                            scores.values[column]
                        } else {
                            scores.average
                        };
                        value.filter(|v| v.is_finite()).map(|v| (x, v))
                    })
                    .collect();
                (name.clone(), points)
            })
            .filter(|(_, points): &(String, Vec<(f64, f64)>)| !points.is_empty())
            .collect()
    }
}

/// A CSV field, quoted when it holds a comma, a quote or a line break.
fn csv_field(text: &str) -> String {
    if text.contains([',', '"', '\n', '\r']) {
        format!("\"{}\"", text.replace('"', "\"\""))
    } else {
        text.to_owned()
    }
}

/// lighteval's name of a task in its results (`base_evaluation.py`'s columns): SciQ is
/// lighteval's own task, the others ProX's custom ones, all zero-shot.
pub fn lighteval_name(task: &str) -> String {
    let suite = if task == "sciq" {
        "lighteval"
    } else {
        "custom"
    };
    format!("{suite}|{task}|0")
}

/// `prox eval` on each checkpoint: `OUT/<checkpoint>/results.json` and `details.jsonl`.
pub struct EvalSeries<'a> {
    settings: &'a EvalSettings,
    load: &'a LoadOptions,
    metric: Metric,
    /// ProX's columns evaluated, and their CSV names.
    tasks: Vec<&'static str>,
    columns: Vec<String>,
    reporter: &'a mut dyn EvalReporter,
}

impl<'a> EvalSeries<'a> {
    pub fn new(
        settings: &'a EvalSettings,
        load: &'a LoadOptions,
        metric: Metric,
        reporter: &'a mut dyn EvalReporter,
    ) -> Self {
        let evaluated = |column: &str| {
            settings.tasks.iter().any(|t| {
                t.name == column || (column == MMLU_AVERAGE && t.name.starts_with("mmlu:"))
            })
        };
        let tasks: Vec<&'static str> = PROX_COLUMNS
            .iter()
            .copied()
            .filter(|c| evaluated(c))
            .collect();
        let columns = tasks.iter().map(|t| lighteval_name(t)).collect();
        EvalSeries {
            settings,
            load,
            metric,
            tasks,
            columns,
            reporter,
        }
    }

    fn scores(&self, results: &EvalResults) -> Scores {
        Scores {
            values: self
                .tasks
                .iter()
                .map(|t| results.task(t).map(|r| r.scores.get(self.metric)))
                .collect(),
            average: results
                .prox_average
                .as_ref()
                .map(|a| a.scores.get(self.metric)),
        }
    }

    /// Whether `results` were made with these settings: the same tasks on the same splits,
    /// the same documents per task.
    fn same_settings(&self, results: &EvalResults) -> bool {
        let scored: Vec<(&str, Option<&str>)> = results
            .tasks
            .iter()
            .filter(|(_, t)| t.n_docs.is_some())
            .map(|(name, t)| (name.as_str(), t.split.as_deref()))
            .collect();
        let wanted: Vec<(&str, Option<&str>)> = self
            .settings
            .tasks
            .iter()
            .map(|t| (t.name.as_str(), Some(self.settings.split_of(t))))
            .collect();
        results.max_samples == self.settings.max_samples && scored == wanted
    }
}

impl Evaluator for EvalSeries<'_> {
    fn columns(&self) -> &[String] {
        &self.columns
    }

    fn average_column(&self) -> &str {
        crate::results::PROX_AVERAGE
    }

    fn metric_label(&self) -> &str {
        self.metric.name()
    }

    fn finished(&self, dir: &Path) -> Result<Option<Scores>> {
        let path = dir.join(RESULTS_FILE);
        if !path.exists() {
            return Ok(None);
        }
        let results = match EvalResults::read(&path) {
            Ok(results) => results,
            // Cut short (not by us: ours is renamed into place whole): evaluated again.
            Err(Error::Results { .. }) => return Ok(None),
            Err(e) => return Err(e),
        };
        if !self.same_settings(&results) {
            return Err(Error::Series(format!(
                "{} holds an evaluation with other settings (tasks, splits or documents per \
                 task); remove it, or give another output folder",
                path.display()
            )));
        }
        Ok(Some(self.scores(&results)))
    }

    fn evaluate(&mut self, checkpoint: &Checkpoint, dir: &Path) -> Result<Scores> {
        let model = load(checkpoint, self.load)?;
        let evaluation = evaluate(
            &model,
            self.settings,
            Some(&dir.join(DETAILS_FILE)),
            &mut *self.reporter,
        )?;
        evaluation.results.write(&dir.join(RESULTS_FILE))?;
        Ok(self.scores(&evaluation.results))
    }
}

fn load(checkpoint: &Checkpoint, options: &LoadOptions) -> Result<Model> {
    Model::load(&checkpoint.path, options).map_err(|source| Error::Load {
        path: checkpoint.path.clone(),
        source: Box::new(source),
    })
}

/// `prox math-eval run` on each checkpoint: the harness's layout in `OUT/<checkpoint>/`. A
/// checkpoint is done when its `results.json` holds exactly these datasets; otherwise its run
/// is started again, and resumes from the generations it stored.
pub struct MathSeries<'a> {
    harness: &'a Harness,
    datasets: &'a [Dataset],
    options: &'a RunOptions,
    load: &'a LoadOptions,
    columns: Vec<String>,
    reporter: &'a mut dyn prox_math::Reporter,
}

impl<'a> MathSeries<'a> {
    pub fn new(
        harness: &'a Harness,
        datasets: &'a [Dataset],
        options: &'a RunOptions,
        load: &'a LoadOptions,
        reporter: &'a mut dyn prox_math::Reporter,
    ) -> Self {
        MathSeries {
            harness,
            datasets,
            options,
            load,
            columns: datasets.iter().map(|d| d.name().to_owned()).collect(),
            reporter,
        }
    }
}

impl Evaluator for MathSeries<'_> {
    fn columns(&self) -> &[String] {
        &self.columns
    }

    fn average_column(&self) -> &str {
        "avg"
    }

    fn metric_label(&self) -> &str {
        "acc (%)"
    }

    fn finished(&self, dir: &Path) -> Result<Option<Scores>> {
        let path = dir.join(RESULTS_FILE);
        if !path.exists() {
            return Ok(None);
        }
        let results = match MathResults::read(&path) {
            Ok(results) => results,
            Err(prox_math::Error::Json { .. } | prox_math::Error::Record { .. }) => {
                return Ok(None)
            }
            Err(e) => return Err(e.into()),
        };
        let names: Vec<&str> = results.accs.iter().map(|(n, _)| n.as_str()).collect();
        if names != self.columns {
            return Ok(None);
        }
        Ok(Some(Scores {
            values: results.accs.iter().map(|(_, acc)| Some(*acc)).collect(),
            average: Some(results.avg),
        }))
    }

    fn evaluate(&mut self, checkpoint: &Checkpoint, dir: &Path) -> Result<Scores> {
        let mut generator = EngineGenerator::new(load(checkpoint, self.load)?)?;
        let results = prox_math::run(
            self.harness,
            self.datasets,
            dir,
            &mut generator,
            self.options,
            &mut *self.reporter,
        )?;
        Ok(Scores {
            values: results.iter().map(|r| Some(r.metrics.acc)).collect(),
            average: Some(prox_math::average(&results)),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_of_both_layouts_parse_and_others_do_not() {
        assert_eq!(parse_name("25B"), Some((Layout::Billions, 25)));
        assert_eq!(parse_name("step-00000010"), Some((Layout::Steps, 10)));
        for name in ["B", "2.5B", "step-", "step-1x", ".5B.partial", "latest"] {
            assert_eq!(parse_name(name), None, "{name}");
        }
    }

    #[test]
    fn csv_fields_are_quoted_only_when_needed() {
        assert_eq!(csv_field("custom|arc:easy|0"), "custom|arc:easy|0");
        assert_eq!(csv_field("a,\"b\""), "\"a,\"\"b\"\"\"");
    }
}
