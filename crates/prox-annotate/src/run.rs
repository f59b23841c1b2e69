//! An annotation run: documents in, SFT examples, raw answers, rejections and failures out,
//! resumable, with stats that add up.
//!
//! The output folder holds, all JSON lines:
//!
//! - `sft.jsonl`: one example per annotated document (document stage) or chunk (chunk stage):
//!   `id`, `stage`, `prompt` (the refiner's chat prompt, as `prox prompts` writes it),
//!   `target` (the program), `prompt_ids` (the ids the refiner sees), `text` (the document,
//!   or the chunk's lines without their numbers), `source` (input file and line), and per
//!   stage `scores` or `doc_id`, `chunk`, `first_line`, `lines`, `lines_removed`;
//! - `answers.jsonl`: every annotator answer (or request error) with the template that asked;
//! - `rejected.jsonl`: annotations not turned into examples, with `reason` and `detail`;
//! - `failures.jsonl`: records that could not be read, and requests that failed for good;
//! - `stats.json`: the counts ([`Stats`]); `checkpoint.json`: where to resume.
//!
//! Documents are taken in input order (files sorted), or `--sample N --seed S` draws N of
//! them reproducibly; they go to the annotator in batches of
//! [`AnnotateOptions::checkpoint_every`]. After each batch the four files are flushed to disk
//! and their lengths, the documents done and the stats are written to the checkpoint
//! atomically. Run again, the run cuts the files back to the checkpoint's lengths (dropping a
//! batch that a crash left half-written) and goes on after the documents done, so a `kill -9`
//! costs at most the batch in flight.

use std::collections::BTreeMap;
use std::fs::{File, OpenOptions};
use std::io::{BufWriter, Write};
use std::path::{Path, PathBuf};

use prox_io::{Failure, Record};
use prox_prompt::{Prompter, Stage};
use serde::{Deserialize, Serialize};
use serde_json::{json, Map, Value};

use crate::answer::{parse_score, RejectKind, Rejection};
use crate::chat::{ChatError, ChatModel, ChatRequest};
use crate::label::{doc_label, merge_chunk_programs, ChunkLines, NoiseAnswer};
use crate::prompts::{ChunkView, Prompts};
use crate::Error;
use prox_client::Completion;

pub const EXAMPLES_FILE: &str = "sft.jsonl";
pub const ANSWERS_FILE: &str = "answers.jsonl";
pub const REJECTED_FILE: &str = "rejected.jsonl";
pub const FAILURES_FILE: &str = "failures.jsonl";
pub const STATS_FILE: &str = "stats.json";
pub const CHECKPOINT_FILE: &str = "checkpoint.json";

/// `--sample N --seed S`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct Sample {
    pub count: usize,
    pub seed: u64,
}

/// What to annotate, and how.
#[derive(Debug, Clone)]
pub struct AnnotateOptions {
    pub stage: Stage,
    /// Files and folders, as `prox_io::input_files` reads them.
    pub inputs: Vec<PathBuf>,
    /// The output folder.
    pub output: PathBuf,
    pub text_field: String,
    /// The field naming each document; without it, `file:line`.
    pub id_field: String,
    pub sample: Option<Sample>,
    /// The most of a chunk's lines its merged program may remove.
    pub max_removal_ratio: f64,
    /// Documents per batch, each batch ending with a checkpoint.
    pub checkpoint_every: usize,
    /// `max_tokens` of each annotator request.
    pub max_tokens: usize,
    /// Whatever else decides the output (the annotator model, the tokenizer, the prompt
    /// mode): recorded in the checkpoint, and a resumed run must match it.
    pub identity: Map<String, Value>,
}

impl AnnotateOptions {
    pub fn new(stage: Stage, inputs: Vec<PathBuf>, output: PathBuf) -> Self {
        Self {
            stage,
            inputs,
            output,
            text_field: "text".to_owned(),
            id_field: "id".to_owned(),
            sample: None,
            max_removal_ratio: 0.5,
            checkpoint_every: 64,
            max_tokens: 1024,
            identity: Map::new(),
        }
    }
}

/// The counts of a run. `documents.input = with_examples + rejected + failed`, a document
/// counting where its best outcome is (an example, else a rejection, else a failure); the
/// rows of the three files are `examples`, `rejected` and `failed`, and the `rejections`
/// by reason add up to `rejected`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Stats {
    pub stage: String,
    pub complete: bool,
    pub documents: DocumentCounts,
    /// Rows of `sft.jsonl`.
    pub examples: u64,
    /// Rows of `rejected.jsonl`.
    pub rejected: u64,
    /// Rows of `failures.jsonl`.
    pub failed: u64,
    /// Rejected rows by reason.
    pub rejections: BTreeMap<String, u64>,
    /// Document stage: examples by target (`keep_doc()`, `drop_doc()`); chunk stage: calls
    /// of the examples' programs by function, and `untouch_doc()` programs.
    pub targets: BTreeMap<String, u64>,
    pub requests: RequestCounts,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct DocumentCounts {
    pub input: u64,
    pub with_examples: u64,
    pub rejected: u64,
    pub failed: u64,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct RequestCounts {
    pub sent: u64,
    pub failed: u64,
    /// Attempts beyond the first, over all requests.
    pub retries: u64,
    /// Answers cut by `max_tokens` (`finish_reason: length`).
    pub cut_short: u64,
    pub prompt_tokens: u64,
    pub completion_tokens: u64,
}

impl Stats {
    /// Whether the counts add up (see [`Stats`]).
    pub fn adds_up(&self) -> bool {
        let d = &self.documents;
        d.input == d.with_examples + d.rejected + d.failed
            && self.rejections.values().sum::<u64>() == self.rejected
    }
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
struct Lengths {
    examples: u64,
    answers: u64,
    rejected: u64,
    failures: u64,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
struct Checkpoint {
    config: Value,
    documents_done: u64,
    lengths: Lengths,
    stats: Stats,
}

/// Annotates the documents, resuming a run the output folder holds. Returns the stats of the
/// whole run (resumed parts included).
pub fn annotate(
    options: &AnnotateOptions,
    prompts: &Prompts,
    prompter: &Prompter<'_>,
    chat: &dyn ChatModel,
) -> Result<Stats, Error> {
    if prompts.stage() != options.stage {
        return Err(Error::InvalidOptions(
            "the prompts are not the stage's prompts".to_owned(),
        ));
    }
    if options.checkpoint_every == 0 {
        return Err(Error::InvalidOptions(
            "checkpoint_every must be at least 1".to_owned(),
        ));
    }
    if !(0.0..=1.0).contains(&options.max_removal_ratio) {
        return Err(Error::InvalidOptions(format!(
            "the removal ratio cap {} is not between 0 and 1",
            options.max_removal_ratio
        )));
    }
    let config = config_of(options, prompts);
    let out = &options.output;
    let write_error = |path: &Path, source| {
        Error::Io(prox_io::Error::Write {
            path: path.to_owned(),
            source,
        })
    };
    std::fs::create_dir_all(out).map_err(|e| write_error(out, e))?;

    let checkpoint_path = out.join(CHECKPOINT_FILE);
    let mut checkpoint = match read_checkpoint(&checkpoint_path)? {
        Some(previous) => {
            let differences = differences(&previous.config, &config);
            if !differences.is_empty() {
                return Err(Error::ConfigMismatch {
                    path: out.clone(),
                    differences: differences.join(", "),
                });
            }
            previous
        }
        None => Checkpoint {
            config,
            documents_done: 0,
            lengths: Lengths::default(),
            stats: Stats {
                stage: options.stage.as_str().to_owned(),
                ..Stats::default()
            },
        },
    };
    if checkpoint.stats.complete {
        tracing::info!(
            "{}: already complete ({} documents); nothing to do",
            out.display(),
            checkpoint.documents_done
        );
        prox_io::write_json(&out.join(STATS_FILE), &checkpoint.stats)?;
        return Ok(checkpoint.stats);
    }
    if checkpoint.documents_done > 0 {
        tracing::info!(
            "{}: resuming after {} documents",
            out.display(),
            checkpoint.documents_done
        );
    }

    let mut outputs = Outputs::open(out, &checkpoint.lengths)?;
    let documents = select(options)?;
    let skip = usize::try_from(checkpoint.documents_done).unwrap_or(usize::MAX);
    let mut documents = documents.skip(skip).peekable();
    let annotator = Annotator {
        options,
        prompts,
        prompter,
        chat,
    };
    while documents.peek().is_some() {
        let batch: Vec<Item> = documents.by_ref().take(options.checkpoint_every).collect();
        annotator.batch(&batch, &mut outputs, &mut checkpoint.stats)?;
        checkpoint.documents_done += batch.len() as u64;
        checkpoint.lengths = outputs.sync()?;
        prox_io::write_json(&checkpoint_path, &checkpoint)?;
        prox_io::write_json(&out.join(STATS_FILE), &checkpoint.stats)?;
        tracing::info!(
            documents = checkpoint.documents_done,
            examples = checkpoint.stats.examples,
            rejected = checkpoint.stats.rejected,
            failed = checkpoint.stats.failed,
            "checkpoint"
        );
    }
    checkpoint.stats.complete = true;
    checkpoint.lengths = outputs.sync()?;
    prox_io::write_json(&checkpoint_path, &checkpoint)?;
    prox_io::write_json(&out.join(STATS_FILE), &checkpoint.stats)?;
    Ok(checkpoint.stats)
}

/// What decides the output; compared on resume.
fn config_of(options: &AnnotateOptions, prompts: &Prompts) -> Value {
    let mut config = json!({
        "stage": options.stage.as_str(),
        "inputs": options.inputs.iter().map(|p| p.display().to_string()).collect::<Vec<_>>(),
        "text_field": options.text_field,
        "id_field": options.id_field,
        "sample": options.sample,
        "max_removal_ratio": options.max_removal_ratio,
        "max_tokens": options.max_tokens,
        "templates": prompts.templates().iter().map(|t| t.name.clone()).collect::<Vec<_>>(),
        "prompts_sha256": prompts.fingerprint(),
    });
    if let Value::Object(map) = &mut config {
        map.extend(options.identity.clone());
    }
    config
}

fn differences(previous: &Value, current: &Value) -> Vec<String> {
    let empty = Map::new();
    let (previous, current) = (
        previous.as_object().unwrap_or(&empty),
        current.as_object().unwrap_or(&empty),
    );
    let mut keys: Vec<&String> = previous.keys().chain(current.keys()).collect();
    keys.sort();
    keys.dedup();
    keys.into_iter()
        .filter(|key| previous.get(*key) != current.get(*key))
        .map(|key| {
            let show = |v: Option<&Value>| v.map_or("(none)".to_owned(), Value::to_string);
            format!(
                "{key}: was {}, now {}",
                show(previous.get(key)),
                show(current.get(key))
            )
        })
        .collect()
}

fn read_checkpoint(path: &Path) -> Result<Option<Checkpoint>, Error> {
    let text = match std::fs::read_to_string(path) {
        Ok(text) => text,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => {
            return Err(Error::Checkpoint {
                path: path.to_owned(),
                reason: e.to_string(),
            })
        }
    };
    serde_json::from_str(&text)
        .map(Some)
        .map_err(|e| Error::Checkpoint {
            path: path.to_owned(),
            reason: e.to_string(),
        })
}

/// One document of the selection: a record, or an input problem standing in its place.
enum Item {
    Record(Record),
    Unreadable(Failure),
}

/// The documents, in input order, or the sample drawn from them.
fn select(options: &AnnotateOptions) -> Result<Box<dyn Iterator<Item = Item>>, Error> {
    let files = prox_io::input_files(&options.inputs)?;
    if files.is_empty() {
        return Err(Error::InvalidOptions("the inputs hold no files".to_owned()));
    }
    let items = files.into_iter().flat_map(|file| {
        let records: prox_io::Records = match prox_io::open_records(&file) {
            Ok(records) => records,
            Err(error) => Box::new(std::iter::once(Err(error))),
        };
        records.map(|item| match item {
            Ok(Ok(record)) => Item::Record(record),
            Ok(Err(bad)) => Item::Unreadable(Failure::from(&bad)),
            Err(error) => Item::Unreadable(Failure::of_file(&error)),
        })
    });
    let Some(sample) = options.sample else {
        return Ok(Box::new(items));
    };
    // Reservoir sampling (Algorithm R): one pass, `count` documents held, the same draw for
    // the same inputs and seed.
    let mut rng = fastrand::Rng::with_seed(sample.seed);
    let mut reservoir: Vec<(u64, Item)> = Vec::with_capacity(sample.count.min(1 << 20));
    for (index, item) in (0u64..).zip(items) {
        if reservoir.len() < sample.count {
            reservoir.push((index, item));
        } else {
            let slot = rng.u64(0..=index);
            if let Some(place) = usize::try_from(slot)
                .ok()
                .and_then(|slot| reservoir.get_mut(slot))
            {
                *place = (index, item);
            }
        }
    }
    reservoir.sort_by_key(|(index, _)| *index);
    Ok(Box::new(reservoir.into_iter().map(|(_, item)| item)))
}

/// The four JSON-lines outputs, appended batch by batch.
struct Outputs {
    examples: Appender,
    answers: Appender,
    rejected: Appender,
    failures: Appender,
}

struct Appender {
    path: PathBuf,
    file: BufWriter<File>,
    length: u64,
}

impl Appender {
    /// Opens the file, cut back to `length` (what the last checkpoint saw).
    fn open(path: PathBuf, length: u64) -> Result<Self, Error> {
        let io_error = |source| {
            Error::Io(prox_io::Error::Write {
                path: path.clone(),
                source,
            })
        };
        let file = OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(&path)
            .map_err(io_error)?;
        let on_disk = file.metadata().map_err(io_error)?.len();
        if on_disk < length {
            return Err(Error::Checkpoint {
                path: path.clone(),
                reason: format!(
                    "the file has {on_disk} bytes, fewer than the {length} the checkpoint recorded"
                ),
            });
        }
        file.set_len(length).map_err(io_error)?;
        let mut file = file;
        std::io::Seek::seek(&mut file, std::io::SeekFrom::Start(length)).map_err(io_error)?;
        Ok(Self {
            path,
            file: BufWriter::new(file),
            length,
        })
    }

    fn write(&mut self, row: &impl Serialize) -> Result<(), Error> {
        let mut line = serde_json::to_vec(row).map_err(|source| {
            Error::Io(prox_io::Error::Encode {
                path: self.path.clone(),
                source,
            })
        })?;
        line.push(b'\n');
        self.file.write_all(&line).map_err(|source| {
            Error::Io(prox_io::Error::Write {
                path: self.path.clone(),
                source,
            })
        })?;
        self.length += line.len() as u64;
        Ok(())
    }

    fn sync(&mut self) -> Result<u64, Error> {
        let io_error = |source| {
            Error::Io(prox_io::Error::Write {
                path: self.path.clone(),
                source,
            })
        };
        self.file.flush().map_err(io_error)?;
        self.file.get_ref().sync_data().map_err(io_error)?;
        Ok(self.length)
    }
}

impl Outputs {
    fn open(dir: &Path, lengths: &Lengths) -> Result<Self, Error> {
        Ok(Self {
            examples: Appender::open(dir.join(EXAMPLES_FILE), lengths.examples)?,
            answers: Appender::open(dir.join(ANSWERS_FILE), lengths.answers)?,
            rejected: Appender::open(dir.join(REJECTED_FILE), lengths.rejected)?,
            failures: Appender::open(dir.join(FAILURES_FILE), lengths.failures)?,
        })
    }

    fn sync(&mut self) -> Result<Lengths, Error> {
        Ok(Lengths {
            examples: self.examples.sync()?,
            answers: self.answers.sync()?,
            rejected: self.rejected.sync()?,
            failures: self.failures.sync()?,
        })
    }
}

/// A failure row: the input location and error, with the document's id.
#[derive(Serialize)]
struct FailureRow<'a> {
    id: &'a str,
    stage: &'static str,
    #[serde(skip_serializing_if = "Option::is_none")]
    chunk: Option<usize>,
    #[serde(flatten)]
    failure: Failure,
}

/// What happened to one document, for the document counts.
#[derive(Default)]
struct Tally {
    examples: u64,
    rejected: u64,
    failed: u64,
}

/// One unit's requests: where they are in the batch's request list.
struct Unit {
    /// The chunk's index in its document; `None` at the document stage.
    chunk: Option<usize>,
    requests: std::ops::Range<usize>,
    /// The SFT row, less its `target`, and what the checks need.
    row: Map<String, Value>,
    /// The chunk's lines without numbers, and its first line (chunk stage).
    lines: Vec<String>,
    first_line: usize,
}

/// A document of the batch, ready to be asked about, or already settled.
enum Planned {
    Settled,
    Units {
        id: String,
        source: Option<prox_io::RecordLocation>,
        units: Vec<Unit>,
    },
}

struct Annotator<'a> {
    options: &'a AnnotateOptions,
    prompts: &'a Prompts,
    prompter: &'a Prompter<'a>,
    chat: &'a dyn ChatModel,
}

impl Annotator<'_> {
    fn stage(&self) -> &'static str {
        self.options.stage.as_str()
    }

    fn batch(&self, batch: &[Item], out: &mut Outputs, stats: &mut Stats) -> Result<(), Error> {
        let mut requests: Vec<ChatRequest> = Vec::new();
        let mut planned = Vec::with_capacity(batch.len());
        for item in batch {
            stats.documents.input += 1;
            planned.push(self.plan(item, &mut requests, out, stats)?);
        }
        let retries_before = self.chat.retries();
        let answers = self.chat.chat(&requests);
        if answers.len() != requests.len() {
            return Err(Error::InvalidOptions(format!(
                "the annotator answered {} of {} requests",
                answers.len(),
                requests.len()
            )));
        }
        stats.requests.retries += self.chat.retries().saturating_sub(retries_before);
        for plan in planned {
            let Planned::Units { id, source, units } = plan else {
                continue;
            };
            let mut tally = Tally::default();
            for unit in units {
                self.settle(&id, source.as_ref(), unit, &answers, out, stats, &mut tally)?;
            }
            count_document(stats, &tally);
        }
        Ok(())
    }

    /// Reads one document and queues its requests; a document that needs none (unreadable,
    /// empty, no prompt) is settled here.
    fn plan(
        &self,
        item: &Item,
        requests: &mut Vec<ChatRequest>,
        out: &mut Outputs,
        stats: &mut Stats,
    ) -> Result<Planned, Error> {
        let record = match item {
            Item::Record(record) => record,
            Item::Unreadable(failure) => {
                let id = match failure.line {
                    Some(line) => format!("{}:{line}", failure.file),
                    None => failure.file.clone(),
                };
                return self.settle_failed(&id, failure.clone(), out, stats);
            }
        };
        let id = document_id(record, &self.options.id_field);
        let failure = |error: String| Failure::of_record(&record.location, error);
        let text = match prox_io::string_field(&record.fields, &self.options.text_field) {
            Ok(text) => text,
            Err(error) => return self.settle_failed(&id, failure(error.to_string()), out, stats),
        };
        if text.trim().is_empty() {
            self.reject(
                &id,
                None,
                &record.location,
                &Rejection::new(RejectKind::EmptyDocument, "the document has no text"),
                out,
                stats,
            )?;
            stats.documents.rejected += 1;
            return Ok(Planned::Settled);
        }
        let source = record.location.to_string();
        let units = match self.options.stage {
            Stage::Doc => {
                let prompt = match self.prompter.doc_prompt(text) {
                    Ok(prompt) => prompt,
                    Err(error) => {
                        return self.settle_failed(&id, failure(error.to_string()), out, stats)
                    }
                };
                let start = requests.len();
                for template in self.prompts.templates() {
                    requests.push(ChatRequest {
                        prompt: self.prompts.render_doc(template, text)?,
                        max_tokens: self.options.max_tokens,
                    });
                }
                let mut row = Map::new();
                row.insert("id".into(), id.clone().into());
                row.insert("stage".into(), Stage::Doc.as_str().into());
                row.insert("prompt".into(), prompt.prompt.into());
                row.insert("prompt_ids".into(), json!(prompt.ids));
                row.insert("truncated".into(), prompt.truncated.into());
                row.insert("text".into(), text.into());
                row.insert("source".into(), source.into());
                vec![Unit {
                    chunk: None,
                    requests: start..requests.len(),
                    row,
                    lines: Vec::new(),
                    first_line: 0,
                }]
            }
            Stage::Chunk => {
                let chunk_prompts = match self.prompter.chunk_prompts(text) {
                    Ok(prompts) => prompts,
                    Err(error) => {
                        return self.settle_failed(&id, failure(error.to_string()), out, stats)
                    }
                };
                let all_lines: Vec<&str> = text.split('\n').collect();
                let mut units = Vec::with_capacity(chunk_prompts.len());
                for (index, chunk_prompt) in chunk_prompts.into_iter().enumerate() {
                    let chunk = &chunk_prompt.chunk;
                    let last_line = chunk.first_line + chunk.lines.saturating_sub(1);
                    let lines: Vec<String> = all_lines
                        .get(chunk.first_line..chunk.first_line + chunk.lines)
                        .expect("chunks cover the document's lines")
                        .iter()
                        .map(|line| (*line).to_owned())
                        .collect();
                    let start = requests.len();
                    for template in self.prompts.templates() {
                        let view = ChunkView {
                            numbered: &chunk.text,
                            first_line: chunk.first_line,
                            last_line,
                        };
                        requests.push(ChatRequest {
                            prompt: self.prompts.render_chunk(template, view)?,
                            max_tokens: self.options.max_tokens,
                        });
                    }
                    let mut row = Map::new();
                    row.insert("id".into(), format!("{id}#{index}").into());
                    row.insert("stage".into(), Stage::Chunk.as_str().into());
                    row.insert("prompt".into(), chunk_prompt.prompt.clone().into());
                    row.insert("prompt_ids".into(), json!(chunk_prompt.ids));
                    row.insert("text".into(), lines.join("\n").into());
                    row.insert("doc_id".into(), id.clone().into());
                    row.insert("chunk".into(), index.into());
                    row.insert("first_line".into(), chunk.first_line.into());
                    row.insert("lines".into(), chunk.lines.into());
                    row.insert("source".into(), source.clone().into());
                    units.push(Unit {
                        chunk: Some(index),
                        requests: start..requests.len(),
                        row,
                        lines,
                        first_line: chunk.first_line,
                    });
                }
                units
            }
        };
        Ok(Planned::Units {
            id,
            source: Some(record.location.clone()),
            units,
        })
    }

    /// Writes one unit's answers and its example, rejection or failure.
    #[allow(clippy::too_many_arguments)]
    fn settle(
        &self,
        id: &str,
        source: Option<&prox_io::RecordLocation>,
        mut unit: Unit,
        answers: &[Result<Completion, ChatError>],
        out: &mut Outputs,
        stats: &mut Stats,
        tally: &mut Tally,
    ) -> Result<(), Error> {
        let unit_id = unit.row["id"].as_str().unwrap_or(id).to_owned();
        let answers = &answers[unit.requests.clone()];
        let mut contents = Vec::with_capacity(answers.len());
        let mut first_error = None;
        for (template, answer) in self.prompts.templates().iter().zip(answers) {
            stats.requests.sent += 1;
            match answer {
                Ok(answer) => {
                    stats.requests.cut_short += u64::from(answer.finish_reason == "length");
                    stats.requests.prompt_tokens += answer.prompt_tokens.unwrap_or(0);
                    stats.requests.completion_tokens += answer.completion_tokens.unwrap_or(0);
                    out.answers.write(&json!({
                        "id": unit_id,
                        "template": template.name,
                        "answer": answer.text,
                        "finish_reason": answer.finish_reason,
                    }))?;
                    contents.push(answer.text.as_str());
                }
                Err(error) => {
                    stats.requests.failed += 1;
                    out.answers.write(&json!({
                        "id": unit_id,
                        "template": template.name,
                        "error": error.to_string(),
                    }))?;
                    first_error.get_or_insert_with(|| format!("{}: {error}", template.name));
                }
            }
        }
        let location = source.cloned().unwrap_or_else(|| prox_io::RecordLocation {
            file: Path::new("").into(),
            line: 0,
        });
        if let Some(error) = first_error {
            tally.failed += 1;
            return self.fail(
                &unit_id,
                unit.chunk,
                Failure::of_record(&location, format!("the annotator failed: {error}")),
                out,
                stats,
            );
        }
        let outcome = match self.options.stage {
            Stage::Doc => self.doc_target(&contents, &mut unit.row),
            Stage::Chunk => self.chunk_target(&contents, &mut unit),
        };
        match outcome {
            Ok(target) => {
                for key in target_keys(self.options.stage, &target) {
                    *stats.targets.entry(key).or_default() += 1;
                }
                unit.row.insert("target".into(), target.into());
                // `target` goes right after `prompt`, where readers look for it.
                let row = reorder(unit.row);
                out.examples.write(&row)?;
                stats.examples += 1;
                tally.examples += 1;
                Ok(())
            }
            Err(rejection) => {
                tally.rejected += 1;
                self.reject(&unit_id, unit.chunk, &location, &rejection, out, stats)
            }
        }
    }

    /// The document stage: both scores read, the label rule applied.
    fn doc_target(
        &self,
        contents: &[&str],
        row: &mut Map<String, Value>,
    ) -> Result<String, Rejection> {
        let mut scores = Vec::with_capacity(contents.len());
        for (template, content) in self.prompts.templates().iter().zip(contents) {
            let score = parse_score(content).map_err(|rejection| Rejection {
                detail: format!("{}: {}", template.name, rejection.detail),
                ..rejection
            })?;
            scores.push((template.name.clone(), score));
        }
        let (educational, format) = match scores.as_slice() {
            [(_, educational), (_, format)] => (*educational, *format),
            _ => unreachable!("the document stage has exactly two rubrics"),
        };
        row.insert(
            "scores".into(),
            Value::Object(
                scores
                    .into_iter()
                    .map(|(name, score)| (name, score.into()))
                    .collect(),
            ),
        );
        Ok(doc_label(educational, format).program().to_owned())
    }

    /// The chunk stage: the noise types' programs merged and checked.
    fn chunk_target(&self, contents: &[&str], unit: &mut Unit) -> Result<String, Rejection> {
        let answers: Vec<NoiseAnswer<'_>> = self
            .prompts
            .templates()
            .iter()
            .zip(contents)
            .map(|(template, answer)| NoiseAnswer {
                noise: &template.name,
                answer,
            })
            .collect();
        let lines: Vec<&str> = unit.lines.iter().map(String::as_str).collect();
        let merged = merge_chunk_programs(
            ChunkLines {
                first_line: unit.first_line,
                lines: &lines,
            },
            &answers,
            self.options.max_removal_ratio,
        )?;
        unit.row
            .insert("lines_removed".into(), merged.lines_removed.into());
        Ok(merged.program)
    }

    /// A document that failed before any request: its failure row, and one failed document.
    fn settle_failed(
        &self,
        id: &str,
        failure: Failure,
        out: &mut Outputs,
        stats: &mut Stats,
    ) -> Result<Planned, Error> {
        self.fail(id, None, failure, out, stats)?;
        stats.documents.failed += 1;
        Ok(Planned::Settled)
    }

    fn fail(
        &self,
        id: &str,
        chunk: Option<usize>,
        failure: Failure,
        out: &mut Outputs,
        stats: &mut Stats,
    ) -> Result<(), Error> {
        tracing::warn!("{id}: {}", failure.error);
        out.failures.write(&FailureRow {
            id,
            stage: self.stage(),
            chunk,
            failure,
        })?;
        stats.failed += 1;
        Ok(())
    }

    fn reject(
        &self,
        id: &str,
        chunk: Option<usize>,
        location: &prox_io::RecordLocation,
        rejection: &Rejection,
        out: &mut Outputs,
        stats: &mut Stats,
    ) -> Result<(), Error> {
        let mut row = json!({
            "id": id,
            "stage": self.stage(),
            "reason": rejection.kind.as_str(),
            "detail": rejection.detail,
            "source": location.to_string(),
        });
        if let Some(chunk) = chunk {
            row["chunk"] = chunk.into();
        }
        out.rejected.write(&row)?;
        stats.rejected += 1;
        *stats
            .rejections
            .entry(rejection.kind.as_str().to_owned())
            .or_default() += 1;
        Ok(())
    }
}

/// What an example counts under in `targets`: its program (document stage), or each of its
/// calls' functions (chunk stage).
fn target_keys(stage: Stage, target: &str) -> Vec<String> {
    match stage {
        Stage::Doc => vec![target.to_owned()],
        Stage::Chunk => target
            .lines()
            .map(|line| match line.split_once('(') {
                Some((name, _)) => format!("{name}()"),
                None => line.to_owned(),
            })
            .collect(),
    }
}

fn count_document(stats: &mut Stats, tally: &Tally) {
    let documents = &mut stats.documents;
    if tally.examples > 0 {
        documents.with_examples += 1;
    } else if tally.rejected > 0 {
        documents.rejected += 1;
    } else {
        // No unit at all (a document with no chunk) is a failure too: nothing came of it.
        documents.failed += 1;
    }
}

/// The SFT row with its keys in reading order: `id`, `stage`, `prompt`, `target`, the rest.
fn reorder(mut row: Map<String, Value>) -> Map<String, Value> {
    let mut ordered = Map::new();
    for key in ["id", "stage", "prompt", "target"] {
        if let Some(value) = row.shift_remove(key) {
            ordered.insert(key.to_owned(), value);
        }
    }
    ordered.extend(row);
    ordered
}

fn document_id(record: &Record, id_field: &str) -> String {
    match prox_io::get_field(&record.fields, id_field) {
        Some(Value::String(id)) => id.clone(),
        Some(Value::Number(id)) => id.to_string(),
        _ => record.location.to_string(),
    }
}
