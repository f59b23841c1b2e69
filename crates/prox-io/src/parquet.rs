//! Parquet input ([`ParquetReader`]) and output ([`ParquetWriter`]).

use std::collections::VecDeque;
use std::fs::File;
use std::io;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use arrow_array::RecordBatch;
use arrow_json::writer::LineDelimited;
use arrow_schema::{DataType, Field, Schema};
use parquet::arrow::arrow_reader::{ParquetRecordBatchReader, ParquetRecordBatchReaderBuilder};
use parquet::arrow::arrow_writer::{
    compute_leaves, ArrowColumnChunk, ArrowColumnWriter, ArrowLeafColumn,
    ArrowRowGroupWriterFactory,
};
use parquet::arrow::ArrowWriter;
use parquet::basic::{Compression, ZstdLevel};
use parquet::file::properties::{EnabledStatistics, WriterProperties};
use parquet::schema::types::ColumnPath;
use serde::Serialize;
use serde_json::Value;

use crate::arrow_rows::rows_to_batch;
use crate::{AtomicFile, Error, Fields, Record, RecordError, RecordLocation};

/// Rows decoded at a time when reading.
const READ_BATCH_ROWS: usize = 1024;

/// Streams the rows of a Parquet file as records, one record batch in memory at a time.
///
/// Each row becomes a JSON object with every column of the file, in the file's column order
/// (a null value is kept as `null`): strings, numbers and booleans as themselves, structs as
/// objects, lists as arrays, maps as objects, dates and times as strings, and binary values as
/// lowercase hex strings. The record's `line` is the 1-based row number across the whole file,
/// and its `bytes` the length of the row as JSON.
///
/// A file that is not Parquet (bad magic, bad footer) fails to open with an [`Error::Open`];
/// a file that breaks while being read (truncated, corrupt pages) ends the stream with an
/// [`Error::Read`] naming the file and the last row read.
pub struct ParquetReader {
    file: Arc<Path>,
    batches: ParquetRecordBatchReader,
    pending: VecDeque<Result<Record, RecordError>>,
    row: u64,
    finished: bool,
}

impl ParquetReader {
    pub fn open(path: &Path) -> Result<Self, Error> {
        Self::open_selected(path, None)
    }

    /// Reads only the row groups `groups`; rows keep their numbers in the whole file.
    pub fn open_row_groups(path: &Path, groups: std::ops::Range<usize>) -> Result<Self, Error> {
        Self::open_selected(path, Some(groups))
    }

    fn open_selected(path: &Path, groups: Option<std::ops::Range<usize>>) -> Result<Self, Error> {
        let open_error = |source| Error::Open {
            path: path.to_owned(),
            source,
        };
        let file = File::open(path).map_err(open_error)?;
        let pages = file.try_clone().map_err(open_error)?;
        let opened = catch_unwind(AssertUnwindSafe(|| {
            let builder = ParquetRecordBatchReaderBuilder::try_new(file)?;
            let metadata = Arc::clone(builder.metadata());
            let row_groups = builder.metadata().row_groups();
            let selected = groups.clone().unwrap_or(0..row_groups.len());
            let (builder, rows_before) = match &groups {
                None => (builder, 0),
                Some(range) => {
                    if range.end > row_groups.len() || range.start > range.end {
                        return Err(parquet::errors::ParquetError::General(format!(
                            "row groups {}..{} asked for, the file has {}",
                            range.start,
                            range.end,
                            row_groups.len()
                        )));
                    }
                    let before: i64 = row_groups[..range.start].iter().map(|g| g.num_rows()).sum();
                    (
                        builder.with_row_groups(range.clone().collect()),
                        u64::try_from(before).unwrap_or(0),
                    )
                }
            };
            check_dictionary_pages(pages, &metadata, selected)?;
            builder
                .with_batch_size(READ_BATCH_ROWS)
                .build()
                .map(|batches| (batches, rows_before))
        }))
        .map_err(|panic| open_error(io::Error::other(panic_message(&panic))))?
        .map_err(|e| open_error(io::Error::other(e)))?;
        let (batches, rows_before) = opened;
        Ok(Self {
            file: Arc::from(path),
            batches,
            pending: VecDeque::new(),
            row: rows_before,
            finished: false,
        })
    }

    fn read_error(&mut self, source: io::Error) -> Error {
        self.finished = true;
        Error::Read {
            path: self.file.to_path_buf(),
            line: self.row,
            source,
        }
    }

    /// Turns a batch into records; an error leaves `pending` as it was.
    fn decode(&mut self, batch: &RecordBatch) -> Result<(), io::Error> {
        let mut writer = arrow_json::WriterBuilder::new()
            .with_explicit_nulls(true)
            .build::<_, LineDelimited>(Vec::new());
        writer.write(batch).map_err(io::Error::other)?;
        writer.finish().map_err(io::Error::other)?;
        let json = writer.into_inner();
        for line in json.split(|&b| b == b'\n').filter(|line| !line.is_empty()) {
            self.row += 1;
            let location = RecordLocation {
                file: Arc::clone(&self.file),
                line: self.row,
            };
            let item = match serde_json::from_slice::<Value>(line) {
                Ok(Value::Object(fields)) => Ok(Record {
                    location,
                    fields,
                    bytes: line.len(),
                }),
                Ok(_) => Err(RecordError {
                    location,
                    reason: "the row is not a JSON object".into(),
                    excerpt: String::from_utf8_lossy(&line[..line.len().min(200)]).into_owned(),
                }),
                Err(e) => Err(RecordError {
                    location,
                    reason: format!("the row cannot be read as JSON: {e}"),
                    excerpt: String::from_utf8_lossy(&line[..line.len().min(200)]).into_owned(),
                }),
            };
            self.pending.push_back(item);
        }
        Ok(())
    }
}

impl Iterator for ParquetReader {
    type Item = Result<Result<Record, RecordError>, Error>;

    fn next(&mut self) -> Option<Self::Item> {
        loop {
            if let Some(item) = self.pending.pop_front() {
                return Some(Ok(item));
            }
            if self.finished {
                return None;
            }
            // The decoder should return errors for corrupt data, but a panic deep inside it
            // must still end only this file, with an error naming it.
            let next = catch_unwind(AssertUnwindSafe(|| self.batches.next()));
            let batch = match next {
                Err(panic) => {
                    let source = io::Error::other(panic_message(&panic));
                    return Some(Err(self.read_error(source)));
                }
                Ok(None) => {
                    self.finished = true;
                    return None;
                }
                Ok(Some(Err(e))) => return Some(Err(self.read_error(io::Error::other(e)))),
                Ok(Some(Ok(batch))) => batch,
            };
            if let Err(source) = self.decode(&batch) {
                return Some(Err(self.read_error(source)));
            }
        }
    }
}

/// Fails on a dictionary page that claims more values than it has bytes.
///
/// The decoder reserves room for a dictionary's values from the count in its page header
/// before reading them, so a corrupt count asks for gigabytes at once, which aborts the
/// process where memory is short instead of ending with an error. Every value of a plain
/// dictionary takes at least one byte (booleans are never dictionary-encoded). Only
/// dictionary pages are read; the data pages' headers are skipped over. The footer is the one
/// the reader already parsed.
fn check_dictionary_pages(
    file: File,
    metadata: &parquet::file::metadata::ParquetMetaData,
    groups: std::ops::Range<usize>,
) -> Result<(), parquet::errors::ParquetError> {
    use parquet::column::page::{Page, PageReader};
    use parquet::errors::ParquetError;
    use parquet::file::serialized_reader::SerializedPageReader;

    let file = Arc::new(file);
    for group in groups {
        let row_group = metadata.row_group(group);
        let rows = usize::try_from(row_group.num_rows()).unwrap_or(0);
        for (column, chunk) in row_group.columns().iter().enumerate() {
            let mut pages = SerializedPageReader::new(Arc::clone(&file), chunk, rows, None)?;
            while let Some(page) = pages.peek_next_page()? {
                if !page.is_dict {
                    pages.skip_next_page()?;
                    continue;
                }
                if let Some(Page::DictionaryPage {
                    buf, num_values, ..
                }) = pages.get_next_page()?
                {
                    if num_values as usize > buf.len() {
                        return Err(ParquetError::General(format!(
                            "row group {group}, column {column}: a dictionary page claims \
                             {num_values} values in {} bytes",
                            buf.len()
                        )));
                    }
                }
            }
        }
    }
    Ok(())
}

fn panic_message(panic: &(dyn std::any::Any + Send)) -> String {
    let detail = panic
        .downcast_ref::<&str>()
        .map(|s| s.to_string())
        .or_else(|| panic.downcast_ref::<String>().cloned())
        .unwrap_or_default();
    format!("the Parquet decoder failed: {detail}")
}

/// Rows buffered before they are converted and handed to the Parquet encoder.
pub const DEFAULT_PARQUET_BATCH_ROWS: usize = 8192;
/// Buffered JSON (roughly measured) that also triggers a batch.
const BATCH_BYTES: usize = 64 << 20;
/// Once the schema is known, batches are handed over at this size (or fewer rows, when the
/// batch limits are lower): small enough that encoding keeps pace with the producer and the
/// buffers stay warm in memory, large enough to keep the hand-over cheap.
const SEND_BYTES: usize = 4 << 20;
/// Batches that may wait for the encoder.
const SEND_QUEUE: usize = 4;
/// Rows converted to Arrow at a time.
const DECODE_ROWS: usize = 8192;
/// Average length above which a string column holds documents, not labels.
const LONG_TEXT_BYTES: usize = 256;
/// A Parquet row group ends at this many rows…
const ROW_GROUP_ROWS: usize = 64 * 1024;
/// …or at this many bytes of Arrow column data (its compressed pages are held in memory
/// until the group ends).
const ROW_GROUP_BYTES: usize = 128 << 20;
/// Batches of one column that may wait for its encoder.
const COLUMN_QUEUE: usize = 4;

/// Writes records as a zstd-compressed Parquet file that appears under its name only on
/// [`finish`](ParquetWriter::finish) (through an [`AtomicFile`]).
///
/// The schema is inferred from the first batch of records ([`DEFAULT_PARQUET_BATCH_ROWS`] rows
/// or about 64 MiB of JSON, see [`with_batch_rows`](Self::with_batch_rows)) with arrow-json's
/// inference: each top-level field is a nullable column, in first-seen order; strings,
/// booleans, integers (`Int64`) and floats (`Float64`) keep their types, objects become
/// structs and arrays lists. A field that mixes types within the first batch, or that is only
/// ever `null` there, becomes a string column; numbers and booleans later written to a string
/// column are stored as their JSON text.
///
/// Later batches must fit that schema: a record with a field the schema lacks (at any level)
/// or a value that cannot be converted (a string that is not a number in a number column, a
/// fraction in an integer column, an object in a string column) fails the batch with an
/// [`Error::Write`]. Reading the file back gives every column for every row, with `null` where
/// a record lacked the field.
///
/// Top-level string columns that hold long texts (over 256 bytes on average in the first
/// batch) are written without dictionary and without min/max statistics.
///
/// Row groups end at 65,536 rows or 128 MiB of column data, whichever comes first; later
/// batches are encoded as they come, in pieces of about 4 MiB.
pub struct ParquetWriter {
    path: PathBuf,
    file: Option<AtomicFile>,
    encoder: Option<Encoder>,
    pending: Vec<Value>,
    pending_bytes: usize,
    batch_rows: usize,
    batch_bytes: usize,
    records: u64,
}

impl ParquetWriter {
    pub fn create(path: &Path) -> Result<Self, Error> {
        Ok(Self {
            path: path.to_owned(),
            file: Some(AtomicFile::create(path)?),
            encoder: None,
            pending: Vec::new(),
            pending_bytes: 0,
            batch_rows: DEFAULT_PARQUET_BATCH_ROWS,
            batch_bytes: BATCH_BYTES,
            records: 0,
        })
    }

    /// Sets how many rows are buffered per batch, and so how many decide the schema.
    pub fn with_batch_rows(mut self, rows: usize) -> Self {
        self.batch_rows = rows.max(1);
        self
    }

    fn write_error(&self, source: impl Into<Box<dyn std::error::Error + Send + Sync>>) -> Error {
        Error::Write {
            path: self.path.clone(),
            source: io::Error::other(source),
        }
    }

    /// Sets about how many bytes of records (as JSON) are buffered per batch. With both
    /// limits above the file's size, the schema is inferred from every record of the file,
    /// so no record can fail to fit it.
    pub fn with_batch_bytes(mut self, bytes: usize) -> Self {
        self.batch_bytes = bytes.max(1);
        self
    }

    /// Appends one record, which must serialize to a JSON object.
    pub fn write(&mut self, record: &impl Serialize) -> Result<(), Error> {
        let value = serde_json::to_value(record).map_err(|source| Error::Encode {
            path: self.path.clone(),
            source,
        })?;
        match value {
            Value::Object(fields) => self.write_fields(fields),
            _ => Err(Error::Encode {
                path: self.path.clone(),
                source: serde::ser::Error::custom("a Parquet row must be a JSON object"),
            }),
        }
    }

    /// Appends one record given as its fields, without copying them.
    pub fn write_fields(&mut self, fields: Fields) -> Result<(), Error> {
        let value = Value::Object(fields);
        self.pending_bytes += approximate_size(&value);
        self.pending.push(value);
        self.records += 1;
        // The first batch decides the schema; later ones only feed the encoder.
        let batch_bytes = match self.encoder {
            Some(_) => self.batch_bytes.min(SEND_BYTES),
            None => self.batch_bytes,
        };
        if self.pending.len() >= self.batch_rows || self.pending_bytes >= batch_bytes {
            self.flush_batch()?;
        }
        Ok(())
    }

    /// Records written so far.
    pub fn records(&self) -> u64 {
        self.records
    }

    fn start(&mut self) -> Result<(), Error> {
        let inferred = arrow_json::reader::infer_json_schema_from_iterator(
            self.pending.iter().map(Ok::<_, arrow_schema::ArrowError>),
        )
        .map_err(|e| self.write_error(e))?;
        let objects: Vec<&Fields> = self.pending.iter().filter_map(Value::as_object).collect();
        let schema = Arc::new(Schema::new(arrange(inferred.fields(), &objects)));
        let mut properties = WriterProperties::builder()
            .set_compression(Compression::ZSTD(ZstdLevel::default()))
            .set_max_row_group_row_count(Some(ROW_GROUP_ROWS));
        // Documents rarely repeat and their min/max says nothing: hashing every text for a
        // dictionary that is abandoned, and comparing texts for statistics, is wasted work.
        for name in long_text_columns(&schema, &objects) {
            let column = ColumnPath::from(name);
            properties = properties
                .set_column_dictionary_enabled(column.clone(), false)
                .set_column_statistics_enabled(column, EnabledStatistics::None);
        }
        let properties = properties.build();
        let file = self
            .file
            .take()
            .ok_or_else(|| self.write_error("the Parquet writer has no file"))?;
        // The Arrow writer lays out the file (schema, Arrow metadata); row groups are then
        // written column by column, the columns encoded and compressed in parallel.
        let (file_writer, columns) =
            ArrowWriter::try_new(file, Arc::clone(&schema), Some(properties))
                .and_then(ArrowWriter::into_serialized_writer)
                .map_err(|e| self.write_error(e))?;
        // Encoding runs on its own thread, overlapping with whatever produces the records.
        let (sender, receiver) = std::sync::mpsc::sync_channel::<Vec<Value>>(SEND_QUEUE);
        let thread = std::thread::spawn(move || -> Result<FileWriter, String> {
            // Finished row groups are appended to the file on a thread of their own: copying
            // tens of MiB into the file would otherwise stall the encoding of the next group.
            let (groups, appender) = spawn_appender(file_writer);
            let encoded = encode_batches(receiver, &schema, &columns, &groups);
            drop(groups);
            let file_writer = appender
                .join()
                .unwrap_or_else(|_| Err("the Parquet file writer panicked".to_owned()));
            encoded?;
            file_writer
        });
        self.encoder = Some(Encoder { sender, thread });
        Ok(())
    }

    fn flush_batch(&mut self) -> Result<(), Error> {
        if self.encoder.is_none() {
            self.start()?;
        }
        let rows = std::mem::take(&mut self.pending);
        self.pending_bytes = 0;
        let sent = match &self.encoder {
            Some(encoder) => encoder.sender.send(rows).is_ok(),
            None => false,
        };
        if sent {
            return Ok(());
        }
        // The encoder stopped: its error says why.
        match self.encoder.take().map(Encoder::join) {
            Some(Err(message)) => Err(self.write_error(message)),
            _ => Err(self.write_error("the Parquet encoder stopped")),
        }
    }

    /// Writes the remaining rows and the footer, syncs and renames the file into place.
    /// Returns the number of records.
    pub fn finish(mut self) -> Result<u64, Error> {
        if !self.pending.is_empty() || self.encoder.is_none() {
            self.flush_batch()?;
        }
        let Some(encoder) = self.encoder.take() else {
            return Err(self.write_error("the Parquet writer was not started"));
        };
        let file_writer = encoder.join().map_err(|e| self.write_error(e))?;
        let file = file_writer.into_inner().map_err(|e| self.write_error(e))?;
        file.commit()?;
        Ok(self.records)
    }
}

type FileWriter = parquet::file::writer::SerializedFileWriter<AtomicFile>;

/// Converts the batches received to Arrow and feeds them to row groups, handing each full
/// group to the appender. Returns early, without error, when the appender has stopped: its
/// own error is the one to report.
fn encode_batches(
    receiver: std::sync::mpsc::Receiver<Vec<Value>>,
    schema: &Arc<Schema>,
    columns: &ArrowRowGroupWriterFactory,
    groups: &std::sync::mpsc::SyncSender<Vec<ArrowColumnChunk>>,
) -> Result<(), String> {
    let mut row_groups = 0;
    let mut open: Option<OpenRowGroup> = None;
    // Records sent before this batch, so an error can number the record in the file.
    let mut records_before = 0;
    for rows in receiver {
        for rows in rows.chunks(DECODE_ROWS) {
            let batch = rows_to_batch(schema, rows).map_err(|e| {
                format!("{e} (rows count from record {records_before} of the file, 0-based)")
            })?;
            records_before += rows.len();
            let group = match &mut open {
                Some(group) => group,
                None => open.insert(OpenRowGroup::new(
                    columns
                        .create_column_writers(row_groups)
                        .map_err(|e| e.to_string())?,
                )),
            };
            if let Err(stopped) = group.write(schema, &batch) {
                // An encoder's own error says more than that it stopped.
                return match open.take().map(OpenRowGroup::close) {
                    Some(Err(error)) => Err(error),
                    _ => Err(stopped),
                };
            }
            if group.is_full() {
                if !append(open.take(), groups)? {
                    return Ok(());
                }
                row_groups += 1;
            }
        }
    }
    append(open.take(), groups)?;
    Ok(())
}

/// Closes `group` (if any) and hands its chunks to the appender; false when the appender has
/// stopped.
fn append(
    group: Option<OpenRowGroup>,
    groups: &std::sync::mpsc::SyncSender<Vec<ArrowColumnChunk>>,
) -> Result<bool, String> {
    match group {
        Some(group) => Ok(groups.send(group.close()?).is_ok()),
        None => Ok(true),
    }
}

/// A row group being written: one thread per leaf column, each encoding and compressing its
/// column's pages as batches arrive. Columns run side by side (the long text columns
/// dominate the cost), and nothing waits for the slowest column until the group ends, so a
/// row group can be much larger than the batches that fill it.
struct OpenRowGroup {
    columns: Vec<ColumnEncoder>,
    rows: usize,
    /// Arrow bytes of the batches written, before encoding.
    bytes: usize,
}

struct ColumnEncoder {
    leaves: std::sync::mpsc::SyncSender<ArrowLeafColumn>,
    thread: std::thread::JoinHandle<parquet::errors::Result<ArrowColumnChunk>>,
}

impl OpenRowGroup {
    fn new(writers: Vec<ArrowColumnWriter>) -> Self {
        let columns = writers
            .into_iter()
            .map(|mut writer| {
                let (leaves, received) = std::sync::mpsc::sync_channel(COLUMN_QUEUE);
                let thread = std::thread::spawn(move || {
                    for leaf in received {
                        writer.write(&leaf)?;
                    }
                    writer.close()
                });
                ColumnEncoder { leaves, thread }
            })
            .collect();
        OpenRowGroup {
            columns,
            rows: 0,
            bytes: 0,
        }
    }

    /// Hands a batch's columns to their encoders. Fails when an encoder has stopped:
    /// [`close`](Self::close) then says why.
    fn write(&mut self, schema: &Schema, batch: &RecordBatch) -> Result<(), String> {
        let mut leaves = Vec::with_capacity(self.columns.len());
        for (field, column) in schema.fields().iter().zip(batch.columns()) {
            leaves.extend(compute_leaves(field, column).map_err(|e| e.to_string())?);
        }
        if leaves.len() != self.columns.len() {
            return Err(format!(
                "{} leaf columns for {} column writers",
                leaves.len(),
                self.columns.len()
            ));
        }
        for (column, leaf) in self.columns.iter().zip(leaves) {
            column
                .leaves
                .send(leaf)
                .map_err(|_| "a Parquet column encoder stopped".to_owned())?;
        }
        self.rows += batch.num_rows();
        self.bytes += batch.get_array_memory_size();
        Ok(())
    }

    /// Whether the row group has reached its size: [`ROW_GROUP_ROWS`] rows, or
    /// [`ROW_GROUP_BYTES`] of column data.
    fn is_full(&self) -> bool {
        self.rows >= ROW_GROUP_ROWS || self.bytes >= ROW_GROUP_BYTES
    }

    /// Waits for every column to flush its last pages: the row group's column chunks, in
    /// order, or the first column's error.
    fn close(self) -> Result<Vec<ArrowColumnChunk>, String> {
        let threads: Vec<_> = self
            .columns
            .into_iter()
            .map(|column| {
                drop(column.leaves);
                column.thread
            })
            .collect();
        threads
            .into_iter()
            .map(|thread| match thread.join() {
                Ok(chunk) => chunk.map_err(|e| e.to_string()),
                Err(_) => Err("a Parquet column encoder panicked".to_owned()),
            })
            .collect()
    }
}

/// A thread that appends each row group it receives to the file, and returns the file
/// writer (or its first error) once the sender is dropped.
fn spawn_appender(
    mut file_writer: FileWriter,
) -> (
    std::sync::mpsc::SyncSender<Vec<ArrowColumnChunk>>,
    std::thread::JoinHandle<Result<FileWriter, String>>,
) {
    let (sender, receiver) = std::sync::mpsc::sync_channel::<Vec<ArrowColumnChunk>>(1);
    let thread = std::thread::spawn(move || {
        for chunks in receiver {
            let append = || -> parquet::errors::Result<()> {
                let mut row_group = file_writer.next_row_group()?;
                for chunk in chunks {
                    chunk.append_to_row_group(&mut row_group)?;
                }
                row_group.close()?;
                Ok(())
            };
            append().map_err(|e| e.to_string())?;
        }
        Ok(file_writer)
    });
    (sender, thread)
}

/// The thread that encodes batches of records.
struct Encoder {
    sender: std::sync::mpsc::SyncSender<Vec<Value>>,
    thread: std::thread::JoinHandle<Result<FileWriter, String>>,
}

impl Encoder {
    /// Waits until every batch sent is encoded; the writer, or the first error.
    fn join(self) -> Result<FileWriter, String> {
        drop(self.sender);
        self.thread
            .join()
            .unwrap_or_else(|_| Err("the Parquet encoder panicked".to_owned()))
    }
}

/// The inferred fields, ordered as first seen in the records (nested structs too, as far as
/// the records show them); `Null` fields, which Parquet cannot usefully store, become strings.
fn arrange(fields: &arrow_schema::Fields, objects: &[&Fields]) -> Vec<Field> {
    let mut order: Vec<&str> = Vec::new();
    for object in objects {
        for key in object.keys() {
            if !order.contains(&key.as_str()) {
                order.push(key);
            }
        }
    }
    let position = |name: &str| order.iter().position(|k| *k == name).unwrap_or(usize::MAX);
    let mut arranged: Vec<Field> = fields
        .iter()
        .map(|field| {
            let children: Vec<&Fields> = objects
                .iter()
                .filter_map(|o| o.get(field.name()))
                .flat_map(|value| match value {
                    Value::Array(items) => items.iter().filter_map(Value::as_object).collect(),
                    other => other.as_object().into_iter().collect::<Vec<_>>(),
                })
                .collect();
            field
                .as_ref()
                .clone()
                .with_data_type(arrange_type(field.data_type(), &children))
        })
        .collect();
    arranged.sort_by_key(|field| position(field.name()));
    arranged
}

fn arrange_type(data_type: &DataType, children: &[&Fields]) -> DataType {
    match data_type {
        DataType::Null => DataType::Utf8,
        DataType::Struct(fields) => DataType::Struct(arrange(fields, children).into()),
        DataType::List(item) => DataType::List(Arc::new(
            item.as_ref()
                .clone()
                .with_data_type(arrange_type(item.data_type(), children)),
        )),
        other => other.clone(),
    }
}

/// Top-level string columns whose values average more than [`LONG_TEXT_BYTES`] in `objects`.
fn long_text_columns(schema: &Schema, objects: &[&Fields]) -> Vec<String> {
    schema
        .fields()
        .iter()
        .filter(|field| field.data_type() == &DataType::Utf8)
        .filter(|field| {
            let (count, bytes) = objects
                .iter()
                .filter_map(|object| object.get(field.name()).and_then(Value::as_str))
                .fold((0usize, 0usize), |(n, b), s| (n + 1, b + s.len()));
            count > 0 && bytes / count > LONG_TEXT_BYTES
        })
        .map(|field| field.name().clone())
        .collect()
}

/// A cheap estimate of a value's size as JSON, for batching.
fn approximate_size(value: &Value) -> usize {
    match value {
        Value::String(s) => s.len() + 2,
        Value::Array(items) => items.iter().map(approximate_size).sum::<usize>() + 2,
        Value::Object(fields) => fields
            .iter()
            .map(|(k, v)| k.len() + 4 + approximate_size(v))
            .sum::<usize>(),
        _ => 8,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use arrow_array::builder::{ListBuilder, StringBuilder};
    use arrow_array::{
        ArrayRef, BinaryArray, BooleanArray, Float64Array, Int64Array, StringArray, StructArray,
    };
    use serde_json::json;

    fn read(path: &Path) -> Vec<Record> {
        ParquetReader::open(path)
            .unwrap()
            .map(|item| item.unwrap().unwrap())
            .collect()
    }

    fn sample_file(dir: &Path, rows: usize) -> PathBuf {
        let text: StringArray = (0..rows)
            .map(|i| (i % 3 != 1).then(|| format!("doc {i}")))
            .collect();
        let n = Int64Array::from_iter_values((0..rows).map(|i| i as i64));
        let score = Float64Array::from_iter_values((0..rows).map(|i| i as f64 / 2.0));
        let flag = BooleanArray::from_iter((0..rows).map(|i| Some(i % 2 == 0)));
        let blob = BinaryArray::from_iter_values((0..rows).map(|_| b"\x01\xff".as_slice()));
        let mut tags = ListBuilder::new(StringBuilder::new());
        for i in 0..rows {
            tags.values().append_value("a");
            if i % 2 == 0 {
                tags.values().append_value("b");
            }
            tags.append(true);
        }
        let source: ArrayRef = Arc::new(StringArray::from_iter_values(
            (0..rows).map(|i| format!("s{i}")),
        ));
        let meta = StructArray::from(vec![(
            Arc::new(Field::new("source", DataType::Utf8, false)),
            source,
        )]);
        let batch = RecordBatch::try_from_iter(vec![
            ("text", Arc::new(text) as ArrayRef),
            ("n", Arc::new(n) as ArrayRef),
            ("score", Arc::new(score) as ArrayRef),
            ("flag", Arc::new(flag) as ArrayRef),
            ("blob", Arc::new(blob) as ArrayRef),
            ("tags", Arc::new(tags.finish()) as ArrayRef),
            ("meta", Arc::new(meta) as ArrayRef),
        ])
        .unwrap();
        let path = dir.join("sample.parquet");
        let mut writer =
            ArrowWriter::try_new(File::create(&path).unwrap(), batch.schema(), None).unwrap();
        // Two row groups, so row numbers continue across batches and groups.
        writer.write(&batch.slice(0, rows / 2)).unwrap();
        writer.flush().unwrap();
        writer
            .write(&batch.slice(rows / 2, rows - rows / 2))
            .unwrap();
        writer.close().unwrap();
        path
    }

    #[test]
    fn rows_read_as_json_objects_numbered_across_the_file() {
        let dir = tempfile::tempdir().unwrap();
        let path = sample_file(dir.path(), 3000);
        let records = read(&path);
        assert_eq!(records.len(), 3000);
        assert_eq!(
            Value::Object(records[0].fields.clone()),
            json!({"text": "doc 0", "n": 0, "score": 0.0, "flag": true, "blob": "01ff",
                   "tags": ["a", "b"], "meta": {"source": "s0"}})
        );
        let keys: Vec<_> = records[0].fields.keys().collect();
        assert_eq!(keys, ["text", "n", "score", "flag", "blob", "tags", "meta"]);
        assert_eq!(records[1].fields["text"], Value::Null);
        assert_eq!(records[2001].fields["n"], 2001);
        assert_eq!(records[2999].location.line, 3000);
        assert!(records[0].bytes > 0);
        assert_eq!(
            records[2999].location.to_string(),
            format!("{}:3000", path.display())
        );
    }

    #[test]
    fn a_corrupt_file_is_an_error_naming_it() {
        let dir = tempfile::tempdir().unwrap();
        let good = std::fs::read(sample_file(dir.path(), 3000)).unwrap();
        let garbage: Vec<u8> = (0..4000u32).map(|i| (i * 31 % 251) as u8).collect();
        let mut bad_footer = good.clone();
        let at = bad_footer.len() - 20;
        bad_footer[at..at + 8].copy_from_slice(b"XXXXXXXX");
        let mut bad_pages = good.clone();
        bad_pages[100..1000].iter_mut().for_each(|b| *b = !*b);
        let cases = [
            ("empty.parquet", Vec::new()),
            ("garbage.parquet", garbage),
            ("truncated.parquet", good[..good.len() / 2].to_vec()),
            ("footer.parquet", bad_footer),
            ("pages.parquet", bad_pages),
        ];
        for (name, bytes) in cases {
            let path = dir.path().join(name);
            std::fs::write(&path, bytes).unwrap();
            let error = match ParquetReader::open(&path) {
                Err(error) => error,
                Ok(reader) => match reader.into_iter().find_map(|item| item.err()) {
                    Some(error) => error,
                    // Flipped bytes may land where nothing checks them; then no panic is all.
                    None if name == "pages.parquet" => continue,
                    None => panic!("{name} read without an error"),
                },
            };
            assert!(error.to_string().contains(name), "{error}");
        }
    }

    /// The error, with its sources, of opening `bytes` written as a file named `name`.
    fn open_error(name: &str, bytes: &[u8]) -> String {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join(name);
        std::fs::write(&path, bytes).unwrap();
        let error = ParquetReader::open(&path).err().expect("the file opened");
        crate::error_chain(&error)
    }

    #[test]
    fn a_dictionary_claiming_billions_of_values_is_an_error_not_an_allocation() {
        // Found by fuzzing: the decoder reserved 4.8 GB from this page header's count.
        let bytes = include_bytes!("../../../fuzz/corpus/records_parquet/huge-dictionary-count");
        let message = open_error("dictionary.parquet", bytes);
        assert!(message.contains("dictionary.parquet"), "{message}");
        assert!(
            message.contains("a dictionary page claims 1207959551 values in 36 bytes"),
            "{message}"
        );
    }

    #[test]
    fn a_footer_claiming_billions_of_schema_elements_is_an_error_not_an_allocation() {
        // Found by fuzzing: parquet 58 reserved 7.8 GB for this footer's list of schema
        // elements; parquet 60 checks list lengths against the bytes left.
        let bytes = include_bytes!("../../../fuzz/corpus/records_parquet/huge-schema-list");
        let message = open_error("footer.parquet", bytes);
        assert!(message.contains("footer.parquet"), "{message}");
        assert!(message.contains("Parquet error"), "{message}");
    }

    #[test]
    fn written_records_read_back_equal() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("out.parquet");
        let records: Vec<Value> = (0..100)
            .map(|i| {
                json!({"text": format!("doc {i}\nline"), "id": i, "score": i as f64 + 0.5,
                       "ok": i % 2 == 0, "meta": {"source": "web", "tags": ["x", "y"]},
                       "note": if i == 50 { json!("late") } else { json!(null) }})
            })
            .collect();
        let mut writer = ParquetWriter::create(&path).unwrap().with_batch_rows(30);
        for record in &records {
            writer.write(record).unwrap();
        }
        assert!(!path.exists());
        assert_eq!(writer.finish().unwrap(), 100);
        let back = read(&path);
        assert_eq!(back.len(), 100);
        for (record, expected) in back.iter().zip(&records) {
            assert_eq!(&Value::Object(record.fields.clone()), expected);
            let keys: Vec<_> = record.fields.keys().collect();
            assert_eq!(keys, ["text", "id", "score", "ok", "meta", "note"]);
        }
        assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 1);
    }

    #[test]
    fn a_record_that_does_not_fit_the_schema_is_an_error_and_nothing_is_left() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("out.parquet");
        let mut writer = ParquetWriter::create(&path).unwrap().with_batch_rows(2);
        writer.write(&json!({"text": "a"})).unwrap();
        writer.write(&json!({"text": "b"})).unwrap();
        writer.write(&json!({"text": "c", "extra": 1})).unwrap();
        // Batches are encoded on a thread: the error comes with a later write or the finish.
        let error = match writer.write(&json!({"text": "d"})) {
            Err(error) => {
                drop(writer);
                error
            }
            Ok(()) => writer.finish().unwrap_err(),
        };
        assert!(error.to_string().contains("out.parquet"), "{error}");
        std::thread::sleep(std::time::Duration::from_millis(100));
        assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 0);
    }

    #[test]
    fn long_text_columns_have_no_dictionary_and_no_statistics() {
        use parquet::file::reader::{FileReader, SerializedFileReader};
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("out.parquet");
        let mut writer = ParquetWriter::create(&path).unwrap();
        for i in 0..50 {
            let text = format!("document {i} ").repeat(40);
            writer
                .write(&json!({"id": format!("d{i}"), "text": text, "n": i}))
                .unwrap();
        }
        writer.finish().unwrap();
        let reader = SerializedFileReader::new(File::open(&path).unwrap()).unwrap();
        let group = reader.metadata().row_group(0);
        let column = |name: &str| {
            group
                .columns()
                .iter()
                .find(|c| c.column_path().string() == name)
                .unwrap()
        };
        assert!(column("text").statistics().is_none());
        assert!(column("text").dictionary_page_offset().is_none());
        assert!(column("id").statistics().is_some());
        assert!(column("id").dictionary_page_offset().is_some());
        assert!(column("n").statistics().is_some());
        assert_eq!(read(&path)[7].fields["text"], "document 7 ".repeat(40));
    }

    #[test]
    fn row_groups_span_batches_and_end_at_their_row_limit() {
        use parquet::file::reader::{FileReader, SerializedFileReader};
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("out.parquet");
        // Batches of 1,000 rows: the row groups are made of many of them, and the last one is
        // closed by `finish`.
        let mut writer = ParquetWriter::create(&path).unwrap().with_batch_rows(1000);
        let total = ROW_GROUP_ROWS + ROW_GROUP_ROWS / 2 + 7;
        for i in 0..total {
            writer
                .write(&json!({"n": i, "s": format!("r{i}")}))
                .unwrap();
        }
        assert_eq!(writer.finish().unwrap(), total as u64);
        let reader = SerializedFileReader::new(File::open(&path).unwrap()).unwrap();
        let rows: Vec<i64> = reader
            .metadata()
            .row_groups()
            .iter()
            .map(|g| g.num_rows())
            .collect();
        // Decoded 1,000 rows at a time, a group ends at the first batch that reaches the limit.
        let first = ROW_GROUP_ROWS.div_ceil(1000) * 1000;
        assert_eq!(rows, vec![first as i64, (total - first) as i64]);
        let records = read(&path);
        assert_eq!(records.len(), total);
        for (i, record) in records.iter().enumerate() {
            assert_eq!(record.fields["n"], i);
            assert_eq!(record.fields["s"], format!("r{i}"));
        }
    }

    #[test]
    fn an_empty_writer_makes_a_readable_file_without_rows() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("empty.parquet");
        assert_eq!(ParquetWriter::create(&path).unwrap().finish().unwrap(), 0);
        assert!(read(&path).is_empty());
    }
}
