//! One task of a run: its shards, read in order, refined in batches, committed in parts.
//!
//! A commit closes the task's open parts (each renamed into place when complete) and then
//! writes the checkpoint: where in which shard the task is, the next part number, and the
//! stats so far. A rerun removes any part numbered at or after the checkpoint's (written by
//! an attempt that died before its checkpoint) and continues from the checkpoint, so a task
//! killed at any moment and run again writes exactly what an uninterrupted run writes.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use prox_io::{Failure, JsonlWriter, RecordWriter};
use prox_run::Stats;
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

use crate::document::Document;
use crate::error::{Error, Result};
use crate::plan::{Plan, Shard};
use crate::refiner::{Destination, Refiner};
use crate::run::{read_json, RunFolder};

/// How a task batches and commits.
#[derive(Debug, Clone)]
pub struct TaskOptions {
    /// Documents refined together.
    pub batch_docs: usize,
    /// Commit after this many documents…
    pub commit_docs: u64,
    /// …or after this long…
    pub commit_interval: Duration,
    /// …or when the open output part holds about this many bytes (so parts rotate by size).
    pub part_bytes: usize,
    /// At most this many documents for the task.
    pub limit: Option<u64>,
    /// `parquet` or `jsonl.gz`.
    pub output_format: String,
    pub text_field: String,
    pub id_field: Option<String>,
}

impl Default for TaskOptions {
    fn default() -> Self {
        Self {
            batch_docs: 64,
            commit_docs: 10_000,
            commit_interval: Duration::from_secs(300),
            part_bytes: 64 << 20,
            limit: None,
            output_format: "parquet".to_owned(),
            text_field: "text".to_owned(),
            id_field: None,
        }
    }
}

/// What running tasks tell as they go. Every method has a no-op default; one reporter is shared
/// by all the tasks of a process.
pub trait Reporter: Sync {
    /// A batch of task `rank` was written: the task's stats went from `before` to `after`.
    fn batch_done(&self, _rank: usize, _before: &Stats, _after: &Stats) {}
    /// Task `report.rank` ended (or had ended before: `report.already_done`).
    fn task_done(&self, _report: &TaskReport) {}
}

/// A reporter that says nothing.
pub struct Silent;

impl Reporter for Silent {}

/// A reporter that adds up what the tasks of a process did so far.
#[derive(Debug, Default)]
pub struct Progress {
    pub documents: AtomicU64,
    pub bytes: AtomicU64,
    pub output: AtomicU64,
    pub dropped: AtomicU64,
    pub failed: AtomicU64,
    pub prompt_tokens: AtomicU64,
    pub generated_tokens: AtomicU64,
}

impl Reporter for Progress {
    fn batch_done(&self, _rank: usize, before: &Stats, after: &Stats) {
        self.add(before, after);
    }
}

impl Progress {
    /// Adds what a batch did: the difference between the stats before and after it.
    pub fn add(&self, before: &Stats, after: &Stats) {
        let delta = |a: u64, b: u64| b.saturating_sub(a);
        let add = |counter: &AtomicU64, a: u64, b: u64| {
            counter.fetch_add(delta(a, b), Ordering::Relaxed);
        };
        add(
            &self.documents,
            before.documents.input,
            after.documents.input,
        );
        add(&self.bytes, before.bytes_in, after.bytes_in);
        add(
            &self.output,
            before.documents.output,
            after.documents.output,
        );
        add(
            &self.dropped,
            before.documents.dropped,
            after.documents.dropped,
        );
        add(
            &self.failed,
            before.documents.failed,
            after.documents.failed,
        );
        let prompt = |s: &Stats| s.stages.doc.prompt_tokens + s.stages.chunk.prompt_tokens;
        let generated = |s: &Stats| s.stages.doc.generated_tokens + s.stages.chunk.generated_tokens;
        add(&self.prompt_tokens, prompt(before), prompt(after));
        add(&self.generated_tokens, generated(before), generated(after));
    }
}

/// How a task ended.
#[derive(Debug, Clone)]
pub struct TaskReport {
    pub rank: usize,
    pub stats: Stats,
    /// It had completed before: nothing was done.
    pub already_done: bool,
}

/// Where a task is, as its checkpoint records it.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
struct Checkpoint {
    /// Position in the task's list of shards.
    shard: usize,
    /// Items (records and unreadable records) of that shard already committed.
    items: u64,
    /// The next part number.
    next_part: u64,
    stats: Stats,
}

/// What the reader thread sends: an item of a shard, with the position after it.
enum Item {
    Record {
        shard: usize,
        items: u64,
        record: prox_io::Record,
        source: usize,
    },
    BadRecord {
        shard: usize,
        items: u64,
        error: prox_io::RecordError,
    },
    /// The rest of the shard cannot be read.
    FileError {
        shard: usize,
        error: prox_io::Error,
    },
    ShardEnd {
        shard: usize,
    },
}

/// Runs task `rank` of the plan to completion, resuming from its checkpoint.
pub fn run_task(
    folder: &RunFolder,
    plan: &Plan,
    rank: usize,
    refiner: &Refiner,
    options: &TaskOptions,
    reporter: &dyn Reporter,
) -> Result<TaskReport> {
    if rank >= plan.tasks {
        return Err(Error::Invalid(format!(
            "task {rank} does not exist: the run has {} tasks (0 to {})",
            plan.tasks,
            plan.tasks - 1
        )));
    }
    if let Some(stats) = folder.done_stats(rank)? {
        tracing::info!(rank, "task already done");
        return Ok(TaskReport {
            rank,
            stats,
            already_done: true,
        });
    }
    let progress_path = folder.progress_path(rank);
    let checkpoint: Checkpoint = if progress_path.is_file() {
        read_json(&progress_path)?
    } else {
        Checkpoint::default()
    };
    folder.remove_uncommitted(rank, checkpoint.next_part)?;
    if checkpoint.shard > 0 || checkpoint.items > 0 {
        tracing::info!(
            rank,
            shard = checkpoint.shard,
            items = checkpoint.items,
            "resuming from the last checkpoint"
        );
    }
    let shards: Vec<&Shard> = plan.shards_of(rank).map(|(_, shard)| shard).collect();
    let mut task = Task {
        folder,
        rank,
        refiner,
        options,
        reporter,
        parts: Parts::new(folder, rank, checkpoint.next_part, &options.output_format),
        reported: checkpoint.stats.clone(),
        checkpoint,
        pending: Vec::new(),
        documents: Vec::new(),
        position: (0, 0),
        since_commit: 0,
        last_commit: Instant::now(),
    };
    task.position = (task.checkpoint.shard, task.checkpoint.items);
    let start = (task.checkpoint.shard, task.checkpoint.items);
    let remaining = options
        .limit
        .map(|limit| limit.saturating_sub(task.checkpoint.stats.documents.input));

    std::thread::scope(|scope| -> Result<()> {
        let (sender, receiver) = mpsc::sync_channel::<Item>(options.batch_docs.max(1) * 2);
        let reader_shards = &shards;
        let reader = scope.spawn(move || read_shards(reader_shards, start, remaining, &sender));
        let result = task.consume(&receiver, &shards);
        // Unblocks the reader if the task stopped early.
        drop(receiver);
        let _ = reader.join();
        result
    })?;

    task.commit()?;
    let stats = task.checkpoint.stats.clone();
    if !stats.is_balanced() {
        return Err(Error::Invalid(format!(
            "internal error: task {rank}'s counts do not add up: {:?}",
            stats.documents
        )));
    }
    // The marker holds the task's stats, as docs/run-folder.md says `prox status` and
    // `prox report` read it.
    prox_io::write_json(&folder.done_path(rank), &stats)?;
    if let Some(total) = folder.merge_stats(plan.tasks)? {
        tracing::info!(
            documents = total.documents.input,
            "every task is done; stats.json written"
        );
    }
    Ok(TaskReport {
        rank,
        stats,
        already_done: false,
    })
}

/// The reader thread: the items of the task's shards from `start`, at most `limit` records.
fn read_shards(
    shards: &[&Shard],
    start: (usize, u64),
    limit: Option<u64>,
    sender: &mpsc::SyncSender<Item>,
) {
    let mut left = limit.unwrap_or(u64::MAX);
    for (position, shard) in shards.iter().enumerate().skip(start.0) {
        if left == 0 {
            return;
        }
        let skip = if position == start.0 { start.1 } else { 0 };
        let records = match prox_io::open_slice(&shard.file, &shard.slice) {
            Ok(records) => records,
            Err(error) => {
                // Reported once, on the attempt that reaches the shard's start.
                if skip == 0
                    && sender
                        .send(Item::FileError {
                            shard: position,
                            error,
                        })
                        .is_err()
                {
                    return;
                }
                if sender.send(Item::ShardEnd { shard: position }).is_err() {
                    return;
                }
                continue;
            }
        };
        let mut items = 0u64;
        for item in records {
            let message = match item {
                Ok(_) | Err(_) if items < skip => {
                    items += 1;
                    continue;
                }
                Ok(Ok(record)) => {
                    items += 1;
                    Item::Record {
                        shard: position,
                        items,
                        record,
                        source: position,
                    }
                }
                Ok(Err(error)) => {
                    items += 1;
                    Item::BadRecord {
                        shard: position,
                        items,
                        error,
                    }
                }
                Err(error) => Item::FileError {
                    shard: position,
                    error,
                },
            };
            let counts = !matches!(message, Item::FileError { .. });
            if sender.send(message).is_err() {
                return;
            }
            if counts {
                left -= 1;
                if left == 0 {
                    return;
                }
            }
        }
        if sender.send(Item::ShardEnd { shard: position }).is_err() {
            return;
        }
    }
}

struct Task<'a> {
    folder: &'a RunFolder,
    rank: usize,
    refiner: &'a Refiner,
    options: &'a TaskOptions,
    reporter: &'a dyn Reporter,
    parts: Parts,
    checkpoint: Checkpoint,
    /// The batch in input order: a destination already known, or `None` for the next of
    /// `documents`, which the stages have still to take.
    pending: Vec<Option<Destination>>,
    documents: Vec<Document>,
    /// The position after the last item in `pending` (shard, items).
    position: (usize, u64),
    since_commit: u64,
    /// The stats last told to the reporter: records that fail before a batch is refined are
    /// counted as they arrive, so a batch's share is measured from here.
    reported: Stats,
    last_commit: Instant,
}

impl Task<'_> {
    fn consume(&mut self, receiver: &mpsc::Receiver<Item>, shards: &[&Shard]) -> Result<()> {
        let sources: Vec<_> = shards
            .iter()
            .map(|shard| shard.source(&self.options.text_field, self.options.id_field.as_deref()))
            .collect();
        let mut stats = std::mem::take(&mut self.checkpoint.stats);
        let result = (|| {
            for item in receiver {
                match item {
                    Item::Record {
                        shard,
                        items,
                        record,
                        source,
                    } => {
                        let location = record.location.clone();
                        match sources[source].document(record) {
                            Ok(doc) => {
                                self.documents.push(doc);
                                self.pending.push(None);
                            }
                            Err((id, why)) => self.pending.push(Some(
                                self.refiner.not_a_document(&location, id, why, &mut stats),
                            )),
                        }
                        self.position = (shard, items);
                    }
                    Item::BadRecord {
                        shard,
                        items,
                        error,
                    } => {
                        stats.documents.input += 1;
                        stats.documents.failed += 1;
                        let failure = failure_of(&Failure::from(&error), "read");
                        self.pending.push(Some(Destination::Failed(failure)));
                        self.position = (shard, items);
                    }
                    Item::FileError { shard, error } => {
                        tracing::warn!("{}", prox_io::error_chain(&error));
                        stats.files.failed += 1;
                        let failure = failure_of(&Failure::of_file(&error), "read");
                        self.pending.push(Some(Destination::Failed(failure)));
                        self.position = (shard, self.position.1);
                    }
                    Item::ShardEnd { shard } => {
                        self.position = (shard + 1, 0);
                    }
                }
                if self.documents.len() >= self.options.batch_docs
                    || self.pending.len() >= 8 * self.options.batch_docs
                {
                    self.flush(&mut stats)?;
                }
            }
            self.flush(&mut stats)
        })();
        self.checkpoint.stats = stats;
        result
    }

    /// Refines the pending batch, writes its rows, and commits when it is time.
    fn flush(&mut self, stats: &mut Stats) -> Result<()> {
        let started = Instant::now();
        let entries = std::mem::take(&mut self.pending);
        let count = entries.len() as u64;
        let documents = std::mem::take(&mut self.documents);
        let mut refined = self.refiner.refine(documents, stats)?.into_iter();
        for entry in entries {
            let destination = match entry {
                Some(destination) => destination,
                None => refined.next().ok_or_else(|| {
                    Error::Invalid("internal error: a document was lost".to_owned())
                })?,
            };
            self.parts.write(destination)?;
        }
        stats.seconds.total += started.elapsed().as_secs_f64();
        stats.seconds.model = stats.stages.doc.seconds + stats.stages.chunk.seconds;
        stats.update_ratios();
        self.reporter.batch_done(self.rank, &self.reported, stats);
        self.reported = stats.clone();
        self.since_commit += count;
        self.checkpoint.shard = self.position.0;
        self.checkpoint.items = self.position.1;
        let due = self.since_commit >= self.options.commit_docs
            || self.parts.bytes >= self.options.part_bytes
            || self.last_commit.elapsed() >= self.options.commit_interval;
        if due {
            self.checkpoint.stats = stats.clone();
            self.commit()?;
        }
        Ok(())
    }

    /// Closes the open parts, then records the checkpoint.
    fn commit(&mut self) -> Result<()> {
        self.checkpoint.next_part = self.parts.close()?;
        prox_io::write_json(&self.folder.progress_path(self.rank), &self.checkpoint)?;
        self.since_commit = 0;
        self.last_commit = Instant::now();
        tracing::debug!(
            rank = self.rank,
            part = self.checkpoint.next_part,
            "committed"
        );
        Ok(())
    }
}

fn failure_of(failure: &Failure, stage: &str) -> Map<String, Value> {
    let mut row = match serde_json::to_value(failure) {
        Ok(Value::Object(row)) => row,
        _ => Map::new(),
    };
    row.insert("stage".to_owned(), Value::from(stage));
    row
}

/// The parts a task is writing.
struct Parts {
    folder: RunFolder,
    rank: usize,
    seq: u64,
    extension: String,
    output: Option<RecordWriter>,
    dropped: Option<RecordWriter>,
    failures: Option<JsonlWriter>,
    /// About how many bytes the open parts hold.
    bytes: usize,
}

impl Parts {
    fn new(folder: &RunFolder, rank: usize, seq: u64, extension: &str) -> Self {
        Self {
            folder: folder.clone(),
            rank,
            seq,
            extension: extension.to_owned(),
            output: None,
            dropped: None,
            failures: None,
            bytes: 0,
        }
    }

    fn record_writer(&self, kind: &str) -> Result<RecordWriter> {
        let path = self
            .folder
            .part_path(kind, self.rank, self.seq, &self.extension);
        Ok(match RecordWriter::create(&path)? {
            // One batch per part: its schema is inferred from all of the part's rows.
            RecordWriter::Parquet(writer) => RecordWriter::Parquet(
                writer
                    .with_batch_rows(usize::MAX)
                    .with_batch_bytes(usize::MAX),
            ),
            other => other,
        })
    }

    fn write(&mut self, destination: Destination) -> Result<()> {
        match destination {
            Destination::Output(row) => {
                self.bytes += row_bytes(&row);
                if self.output.is_none() {
                    self.output = Some(self.record_writer("output")?);
                }
                if let Some(writer) = &mut self.output {
                    writer.write_fields(row)?;
                }
            }
            Destination::Dropped(row) => {
                self.bytes += row_bytes(&row);
                if self.dropped.is_none() {
                    self.dropped = Some(self.record_writer("dropped")?);
                }
                if let Some(writer) = &mut self.dropped {
                    writer.write_fields(row)?;
                }
            }
            Destination::Failed(row) => {
                if self.failures.is_none() {
                    let path = self
                        .folder
                        .part_path("failures", self.rank, self.seq, "jsonl");
                    self.failures = Some(JsonlWriter::create(&path)?);
                }
                if let Some(writer) = &mut self.failures {
                    writer.write(&row)?;
                }
            }
        }
        Ok(())
    }

    /// Completes the open parts; returns the next part number.
    fn close(&mut self) -> Result<u64> {
        let mut wrote = false;
        for writer in [self.output.take(), self.dropped.take()]
            .into_iter()
            .flatten()
        {
            writer.finish()?;
            wrote = true;
        }
        if let Some(writer) = self.failures.take() {
            writer.finish()?;
            wrote = true;
        }
        if wrote {
            self.seq += 1;
        }
        self.bytes = 0;
        Ok(self.seq)
    }
}

fn row_bytes(row: &Map<String, Value>) -> usize {
    row.values()
        .map(|value| match value {
            Value::String(text) => text.len(),
            _ => 16,
        })
        .sum()
}
