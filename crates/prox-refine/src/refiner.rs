//! The stages: a batch of documents in, the place each one ends out.

use std::sync::Arc;
use std::time::Instant;

use prox_program::{parse, Executor, LineKind, Mode, Thresholds, Verdict};
use prox_prompt::{PromptBudget, PromptMode, Prompter};
use prox_run::{Stage, StageCounts, Stats};
use rayon::prelude::*;
use serde_json::{json, Map, Value};

use crate::backend::{Backend, GenOutcome, GenRequest};
use crate::document::{Document, NotADocument};
use crate::error::{Error, Result};

pub use prox_run::Stages;

/// How the stages prompt, decode and execute.
#[derive(Debug, Clone, PartialEq)]
pub struct RefinerOptions {
    /// How programs are parsed (faithful to the reference, or strict).
    pub mode: Mode,
    pub thresholds: Thresholds,
    /// Faithful prompts (special tokens in documents recognised, as the reference) or robust.
    pub prompt_mode: PromptMode,
    pub budget: PromptBudget,
    /// Reference: 2000.
    pub doc_max_new_tokens: usize,
    /// Reference: 256.
    pub chunk_max_new_tokens: usize,
}

impl Default for RefinerOptions {
    fn default() -> Self {
        Self {
            mode: Mode::Faithful,
            thresholds: Thresholds::default(),
            prompt_mode: PromptMode::Faithful,
            budget: PromptBudget::default(),
            doc_max_new_tokens: 2000,
            chunk_max_new_tokens: 256,
        }
    }
}

/// Where one input record ends, with the row written there.
#[derive(Debug, Clone, PartialEq)]
pub enum Destination {
    Output(Map<String, Value>),
    Dropped(Map<String, Value>),
    Failed(Map<String, Value>),
}

/// Runs the stages over batches of documents.
pub struct Refiner {
    doc_backend: Option<Arc<dyn Backend>>,
    chunk_backend: Option<Arc<dyn Backend>>,
    executor: Executor,
    options: RefinerOptions,
}

/// A document between stages.
struct InFlight {
    doc: Document,
    doc_program: Option<String>,
    input_tokens: usize,
    end: Option<Destination>,
}

impl Refiner {
    /// A refiner for the stages whose backend is given; at least one must be.
    pub fn new(
        doc_backend: Option<Arc<dyn Backend>>,
        chunk_backend: Option<Arc<dyn Backend>>,
        options: RefinerOptions,
    ) -> Result<Self> {
        if doc_backend.is_none() && chunk_backend.is_none() {
            return Err(Error::Invalid("no stage to run".to_owned()));
        }
        Ok(Self {
            doc_backend,
            chunk_backend,
            executor: Executor::new(options.mode, options.thresholds),
            options,
        })
    }

    pub fn stages(&self) -> Stages {
        Stages {
            doc: self.doc_backend.is_some(),
            chunk: self.chunk_backend.is_some(),
        }
    }

    fn counting_tokenizer(&self) -> &prox_tokenizer::Tokenizer {
        match (&self.chunk_backend, &self.doc_backend) {
            (Some(backend), _) | (None, Some(backend)) => backend.tokenizer(),
            // `new` refuses a refiner without a backend.
            (None, None) => unreachable!("a refiner has at least one backend"),
        }
    }

    fn prompter<'t>(&self, backend: &'t dyn Backend) -> Prompter<'t> {
        Prompter::new(backend.tokenizer())
            .with_mode(self.options.prompt_mode)
            .with_budget(self.options.budget)
    }

    /// The row of a record that is not a document: an empty text is dropped (the reference
    /// never shows it to a model), anything else is a failure.
    pub fn not_a_document(
        &self,
        location: &prox_io::RecordLocation,
        id: String,
        why: NotADocument,
        stats: &mut Stats,
    ) -> Destination {
        stats.documents.input += 1;
        match why {
            NotADocument::Empty => {
                stats.count_drop("empty");
                Destination::Dropped(dropped_row(&id, None, "", "read", "empty"))
            }
            NotADocument::Invalid(message) => {
                stats.documents.failed += 1;
                Destination::Failed(failure_row(location, Some(&id), "read", &message))
            }
        }
    }

    /// Takes documents through the stages. Returns their destinations in input order.
    pub fn refine(&self, docs: Vec<Document>, stats: &mut Stats) -> Result<Vec<Destination>> {
        let started = Instant::now();
        let tokenizer = self.counting_tokenizer();
        let mut flights: Vec<InFlight> = docs
            .into_par_iter()
            .map(|doc| {
                let input_tokens = tokenizer
                    .encode(&doc.text, false)
                    .map_or(0, |ids| ids.len());
                InFlight {
                    doc,
                    doc_program: None,
                    input_tokens,
                    end: None,
                }
            })
            .collect();
        for flight in &flights {
            stats.documents.input += 1;
            stats.bytes_in += flight.doc.bytes as u64;
            stats.tokens.input += flight.input_tokens as u64;
            stats.words.input += flight.doc.text.split_whitespace().count() as u64;
        }
        if let Some(backend) = &self.doc_backend {
            self.doc_stage(backend.as_ref(), &mut flights, stats)?;
        }
        if let Some(backend) = &self.chunk_backend {
            self.chunk_stage(backend.as_ref(), &mut flights, stats)?;
        }
        let ends: Vec<Destination> = flights
            .into_par_iter()
            .map(|flight| self.finish(flight))
            .collect();
        for end in &ends {
            match end {
                Destination::Output(row) => {
                    stats.documents.output += 1;
                    let text = row.get("text").and_then(Value::as_str).unwrap_or("");
                    stats.words.output += text.split_whitespace().count() as u64;
                    stats.tokens.output += row
                        .get("prox")
                        .and_then(|p| p.get("tokens_after"))
                        .and_then(Value::as_u64)
                        .unwrap_or(0);
                    match row
                        .get("prox")
                        .and_then(|p| p.get("outcome"))
                        .and_then(Value::as_str)
                    {
                        Some("modified") => stats.documents.modified += 1,
                        Some("ignored") => stats.documents.ignored += 1,
                        _ => stats.documents.unchanged += 1,
                    }
                }
                Destination::Dropped(_) => {}
                Destination::Failed(_) => stats.documents.failed += 1,
            }
        }
        stats.seconds.total += started.elapsed().as_secs_f64();
        stats.update_ratios();
        Ok(ends)
    }

    fn doc_stage(
        &self,
        backend: &dyn Backend,
        flights: &mut [InFlight],
        stats: &mut Stats,
    ) -> Result<()> {
        let prompter = self.prompter(backend);
        let prompts: Vec<_> = flights
            .par_iter()
            .map(|flight| prompter.doc_prompt(&flight.doc.text))
            .collect();
        let mut requests = Vec::new();
        let mut asked = Vec::new();
        for (index, (flight, prompt)) in flights.iter_mut().zip(prompts).enumerate() {
            match prompt {
                Ok(prompt) => {
                    stats.stages.doc.truncated_prompts += u64::from(prompt.truncated);
                    requests.push(GenRequest {
                        prompt_ids: prompt.ids,
                        max_new_tokens: self.options.doc_max_new_tokens,
                    });
                    asked.push(index);
                }
                Err(error) => flight.fail("prompt", &format!("cannot build the prompt: {error}")),
            }
        }
        let answers = timed(&mut stats.stages.doc, &requests, |r| backend.decide_doc(r))?;
        for (index, answer) in asked.into_iter().zip(answers) {
            let flight = &mut flights[index];
            match answer {
                Err(message) => flight.fail("doc", &message),
                Ok(answer) => {
                    stats.stages.doc.generated_tokens += answer.generated_tokens as u64;
                    let program = answer.text.trim_matches(' ').to_owned();
                    let outcome = self.executor.run_doc(&program);
                    count_doc_calls(&program, outcome.keep, stats);
                    stats.programs.parse_errors += outcome.errors.len() as u64;
                    if !outcome.keep {
                        stats.count_drop("doc_program");
                        flight.end = Some(Destination::Dropped(dropped_row(
                            &flight.doc.id,
                            Some(&program),
                            "",
                            Stage::Doc.as_str(),
                            "doc_program",
                        )));
                    }
                    flight.doc_program = Some(program);
                }
            }
        }
        Ok(())
    }

    fn chunk_stage(
        &self,
        backend: &dyn Backend,
        flights: &mut [InFlight],
        stats: &mut Stats,
    ) -> Result<()> {
        let prompter = self.prompter(backend);
        let prompts: Vec<Option<_>> = flights
            .par_iter()
            .map(|flight| {
                flight
                    .end
                    .is_none()
                    .then(|| prompter.chunk_prompts(&flight.doc.text))
            })
            .collect();
        let mut requests = Vec::new();
        // For each document that reached the stage: its index and its requests' range.
        let mut asked = Vec::new();
        for (index, (flight, prompts)) in flights.iter_mut().zip(prompts).enumerate() {
            match prompts {
                None => {}
                Some(Err(error)) => {
                    flight.fail("prompt", &format!("cannot build the prompts: {error}"))
                }
                Some(Ok(chunks)) => {
                    let first = requests.len();
                    requests.extend(chunks.into_iter().map(|chunk| GenRequest {
                        prompt_ids: chunk.ids,
                        max_new_tokens: self.options.chunk_max_new_tokens,
                    }));
                    asked.push((index, first..requests.len()));
                }
            }
        }
        let answers = timed(&mut stats.stages.chunk, &requests, |r| backend.generate(r))?;
        let mut answers = answers.into_iter();
        for (index, range) in asked {
            let flight = &mut flights[index];
            let mut programs = Vec::with_capacity(range.len());
            let mut failure = None;
            for answer in answers.by_ref().take(range.len()) {
                match answer {
                    Ok(answer) => {
                        stats.stages.chunk.generated_tokens += answer.generated_tokens as u64;
                        programs.push(answer.text.trim_matches(' ').to_owned());
                    }
                    Err(message) => failure = failure.or(Some(message)),
                }
            }
            stats.stages.chunk.documents += 1;
            match failure {
                Some(message) => flight.fail("chunk", &message),
                None => self.execute_chunk_program(flight, &programs.join("\n"), stats),
            }
        }
        Ok(())
    }

    fn execute_chunk_program(&self, flight: &mut InFlight, program: &str, stats: &mut Stats) {
        let parsed = parse(program, self.options.mode);
        for line in &parsed.lines {
            match &line.kind {
                LineKind::Call(call) => stats.count_call(call.name()),
                LineKind::NoOp(name) if name == "untouch_doc" => stats.count_call("untouch_doc"),
                LineKind::NoOp(_) => stats.count_call("other"),
                _ => {}
            }
        }
        let outcome = self.executor.run_chunk_program(&flight.doc.text, &parsed);
        stats.programs.parse_errors += outcome.errors.len() as u64;
        stats.programs.ignored += u64::from(outcome.program_ignored);
        let details = program_details(
            outcome.lines_removed,
            outcome.normalizations,
            outcome.errors.len(),
            outcome.words_before,
            outcome.words_after,
        );
        let doc = &flight.doc;
        let end = match outcome.verdict {
            Verdict::Dropped(reason) => {
                stats.count_drop(reason.as_str());
                let mut row = dropped_row(
                    &doc.id,
                    flight.doc_program.as_deref(),
                    program,
                    Stage::Chunk.as_str(),
                    reason.as_str(),
                );
                merge_prox(&mut row, details);
                Destination::Dropped(row)
            }
            Verdict::Kept { text, modified } => {
                let outcome = if modified { "modified" } else { "unchanged" };
                self.output_row(flight, text, Some(program), outcome, details)
            }
            Verdict::Ignored { text } => {
                self.output_row(flight, text, Some(program), "ignored", details)
            }
        };
        flight.end = Some(end);
    }

    fn output_row(
        &self,
        flight: &InFlight,
        text: String,
        chunk_program: Option<&str>,
        outcome: &str,
        mut details: Value,
    ) -> Destination {
        let tokens_after = if text == flight.doc.text {
            flight.input_tokens
        } else {
            self.counting_tokenizer()
                .encode(&text, false)
                .map_or(0, |ids| ids.len())
        };
        if let Some(details) = details.as_object_mut() {
            details.insert("outcome".to_owned(), json!(outcome));
            details.insert("tokens_after".to_owned(), json!(tokens_after));
        }
        let mut row = Map::new();
        row.insert("id".to_owned(), json!(flight.doc.id));
        row.insert("text".to_owned(), json!(text));
        let mut metadata = Map::new();
        if let Some(program) = &flight.doc_program {
            metadata.insert("doc_program".to_owned(), json!(program));
        }
        if let Some(program) = chunk_program {
            metadata.insert("chunk_program".to_owned(), json!(program));
        }
        row.insert("metadata".to_owned(), Value::Object(metadata));
        row.insert("prox".to_owned(), details);
        Destination::Output(row)
    }

    /// Completes a document's row: what it ends with, plus its text columns and carried
    /// fields.
    fn finish(&self, mut flight: InFlight) -> Destination {
        let end = match flight.end.take() {
            Some(end) => end,
            // Not refused by any stage that ran: kept as it is (doc stage only).
            None => {
                let text = flight.doc.text.clone();
                let words = text.split_whitespace().count();
                let details = program_details(0, 0, 0, words, words);
                self.output_row(&flight, text, None, "unchanged", details)
            }
        };
        let stages = self.stages();
        let InFlight { doc, .. } = flight;
        match end {
            Destination::Output(row) => Destination::Output(with_document(row, doc, stages)),
            Destination::Dropped(row) => Destination::Dropped(with_document(row, doc, stages)),
            failed @ Destination::Failed(_) => failed,
        }
    }
}

impl InFlight {
    fn fail(&mut self, stage: &str, message: &str) {
        self.end = Some(Destination::Failed(failure_row(
            &self.doc.location,
            Some(&self.doc.id),
            stage,
            message,
        )));
    }
}

/// Calls the backend and counts the stage's prompts, tokens and time.
fn timed(
    counts: &mut StageCounts,
    requests: &[GenRequest],
    call: impl FnOnce(&[GenRequest]) -> Result<Vec<GenOutcome>>,
) -> Result<Vec<GenOutcome>> {
    counts.prompts += requests.len() as u64;
    counts.prompt_tokens += requests
        .iter()
        .map(|r| r.prompt_ids.len() as u64)
        .sum::<u64>();
    if requests.is_empty() {
        return Ok(Vec::new());
    }
    let started = Instant::now();
    let answers = call(requests)?;
    counts.seconds += started.elapsed().as_secs_f64();
    if answers.len() != requests.len() {
        return Err(Error::Backend(format!(
            "{} answers for {} prompts",
            answers.len(),
            requests.len()
        )));
    }
    Ok(answers)
}

/// Counts the document's answer by what the executor decided, so that the call counts and
/// the drops agree in either mode.
fn count_doc_calls(program: &str, keep: bool, stats: &mut Stats) {
    stats.stages.doc.documents += 1;
    let name = if !keep {
        "drop_doc"
    } else if program.contains("keep_doc") {
        "keep_doc"
    } else {
        "other"
    };
    stats.count_call(name);
}

/// `stage` is a [`Stage`]'s name, or `read` for an empty document, which no stage sees.
fn dropped_row(
    id: &str,
    doc_program: Option<&str>,
    chunk_program: &str,
    stage: &str,
    reason: &str,
) -> Map<String, Value> {
    let mut row = Map::new();
    row.insert("id".to_owned(), json!(id));
    row.insert("text".to_owned(), json!(""));
    let mut metadata = Map::new();
    if let Some(program) = doc_program {
        metadata.insert("doc_program".to_owned(), json!(program));
    }
    // Every row of a file has the same keys (null where there is nothing), so that a
    // Parquet part's schema fits all of its rows.
    metadata.insert(
        "chunk_program".to_owned(),
        if stage == Stage::Chunk.as_str() {
            json!(chunk_program)
        } else {
            Value::Null
        },
    );
    row.insert("metadata".to_owned(), Value::Object(metadata));
    let mut prox = json!({"stage": stage, "reason": reason});
    if let (Some(prox), Value::Object(zero)) =
        (prox.as_object_mut(), program_details(0, 0, 0, 0, 0))
    {
        prox.extend(zero);
    }
    row.insert("prox".to_owned(), prox);
    row
}

/// What executing a chunk program did, as the `prox` column holds it.
fn program_details(
    lines_removed: usize,
    normalizations: usize,
    program_errors: usize,
    words_before: usize,
    words_after: usize,
) -> Value {
    json!({
        "lines_removed": lines_removed,
        "normalizations": normalizations,
        "program_errors": program_errors,
        "words_before": words_before,
        "words_after": words_after,
    })
}

fn merge_prox(row: &mut Map<String, Value>, details: Value) {
    if let (Some(prox), Value::Object(details)) =
        (row.get_mut("prox").and_then(Value::as_object_mut), details)
    {
        prox.extend(details);
    }
}

fn failure_row(
    location: &prox_io::RecordLocation,
    id: Option<&str>,
    stage: &str,
    message: &str,
) -> Map<String, Value> {
    let mut row = Map::new();
    row.insert(
        "file".to_owned(),
        json!(location.file.display().to_string()),
    );
    row.insert("line".to_owned(), json!(location.line));
    row.insert("error".to_owned(), json!(message));
    row.insert("stage".to_owned(), json!(stage));
    if let Some(id) = id {
        row.insert("id".to_owned(), json!(id));
    }
    row
}

/// The columns of `docs/run-folder.md`: `id`, `text`, `raw_content`, `doc_content`, the
/// carried fields, `metadata` (merged into the input's own when it has one), `prox`.
fn with_document(mut row: Map<String, Value>, doc: Document, stages: Stages) -> Map<String, Value> {
    let dropped_by_doc_stage =
        row.get("prox").and_then(|p| p.get("stage")) == Some(&json!(Stage::Doc.as_str()));
    let mut out = Map::new();
    for key in ["id", "text"] {
        if let Some(value) = row.remove(key) {
            out.insert(key.to_owned(), value);
        }
    }
    // A chunk-stage run over a document-stage run's output keeps that run's `raw_content`.
    let earlier_raw = (!stages.doc)
        .then(|| {
            doc.fields
                .get("raw_content")
                .filter(|v| v.is_string())
                .cloned()
        })
        .flatten();
    let text = Value::String(doc.text.clone());
    let chained = earlier_raw.is_some();
    match earlier_raw {
        Some(raw) => {
            out.insert("raw_content".to_owned(), raw);
            out.insert("doc_content".to_owned(), text.clone());
        }
        None if stages.doc && !dropped_by_doc_stage => {
            out.insert("raw_content".to_owned(), text.clone());
            out.insert("doc_content".to_owned(), text.clone());
        }
        None => {
            out.insert("raw_content".to_owned(), text.clone());
        }
    }
    let mut programs = match row.remove("metadata") {
        Some(Value::Object(programs)) => programs,
        _ => Map::new(),
    };
    for (key, value) in doc.fields {
        match (key.as_str(), value) {
            ("metadata", Value::Object(mut own)) => {
                own.append(&mut programs);
                programs = own;
            }
            ("metadata", other) => {
                programs.insert("value".to_owned(), other);
            }
            // What this run writes itself, when the input holds the same.
            ("id", value) if out.get("id") == Some(&value) => {}
            ("raw_content" | "doc_content", value) if out.get(key.as_str()) == Some(&value) => {}
            // The earlier run's outcome is superseded by this one's.
            ("prox", _) if chained => {}
            ("id" | "text" | "raw_content" | "doc_content" | "prox", value) => {
                out.insert(format!("input_{key}"), value);
            }
            (_, value) => {
                out.insert(key, value);
            }
        }
    }
    out.insert("metadata".to_owned(), Value::Object(programs));
    if let Some(prox) = row.remove("prox") {
        out.insert("prox".to_owned(), prox);
    }
    out
}
