//! A whole packing run, as the reference's `prepare_web` processes do it: input files split
//! among output streams, each stream's records read on their own thread while the thread pool
//! encodes the previous batch, bad records to `failures.jsonl`, and `summary.json` whose counts
//! add up.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::{sync_channel, Receiver, SyncSender};
use std::sync::Mutex;

use prox_io::{
    error_chain, take_string_field, Failure, JsonlWriter, Record, RecordError, RecordLocation,
};
use prox_tokenizer::Tokenizer;
use rayon::prelude::*;
use serde::Serialize;

use crate::{Dtype, Error, Header, PackSummary, PackedWriter, Recipe, Remainder};

/// The on-disk format of the packed files.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Format {
    /// litgpt / TinyLlama `PackedDataset` files (`LITPKDS` header).
    Litgpt,
}

/// How to pack.
#[derive(Debug, Clone)]
pub struct PackOptions<'a> {
    pub tokenizer: &'a Tokenizer,
    /// Where the tokenizer came from, recorded in the summary.
    pub tokenizer_name: String,
    pub recipe: Recipe,
    pub format: Format,
    /// Tokens per file.
    pub chunk_size: u64,
    /// File names are `{prefix}_{counter:010}.bin`; see [`stream_prefixes`].
    pub prefix: String,
    /// Output streams: the input files are split into this many consecutive runs.
    pub streams: u64,
    /// The field holding the text; a dotted name reaches into nested objects.
    pub text_field: String,
    pub remainder: Remainder,
}

/// What a packing run tells as it goes. Every method has a no-op default.
pub trait Reporter: Sync {
    /// The run starts on `files` input files of `bytes` bytes in all, split into `streams`.
    fn started(&self, _files: usize, _bytes: u64, _streams: usize) {}
    /// `bytes` more input bytes were read and packed.
    fn packed(&self, _bytes: u64) {}
    /// An input file could not be read to its end (the error is also in the failures file).
    fn file_failed(&self, _failure: &Failure) {}
}

/// A reporter that says nothing.
pub struct Silent;

impl Reporter for Silent {}

/// What one run did (`summary.json`). The document counts add up:
/// `documents = documents_packed + documents_empty + documents_failed`.
#[derive(Debug, Clone, Serialize)]
pub struct DatasetSummary {
    pub format: Format,
    pub tokenizer: String,
    pub dtype: String,
    pub chunk_size: u64,
    pub separator_token: u32,
    pub eos_token: u32,
    pub prefixes: Vec<String>,
    pub documents: u64,
    pub documents_packed: u64,
    /// Empty texts, skipped as the reference skips them.
    pub documents_empty: u64,
    pub documents_failed: u64,
    /// Input files that could not be read to their end (their error is in the failures file).
    pub input_files_failed: u64,
    pub bytes_in: u64,
    /// Tokens of all packed documents, EOS included.
    pub tokens: u64,
    /// Tokens stored in the files, padding not counted.
    pub tokens_written: u64,
    /// Tokens of the final partial chunks, dropped.
    pub tokens_discarded: u64,
    /// Separator slots padding the last files (only with [`Remainder::Write`]).
    pub padding_tokens: u64,
    pub files_written: u64,
    pub files: Vec<String>,
}

impl DatasetSummary {
    pub fn is_balanced(&self) -> bool {
        self.documents == self.documents_packed + self.documents_empty + self.documents_failed
            && self.tokens == self.tokens_written + self.tokens_discarded
    }

    /// Whether some record or file went to the failures file.
    pub fn has_failures(&self) -> bool {
        self.documents_failed > 0 || self.input_files_failed > 0
    }

    fn add_stream(&mut self, stream: StreamCounts, packed: PackSummary) {
        self.documents += stream.documents;
        self.documents_packed += stream.packed;
        self.documents_empty += stream.empty;
        self.documents_failed += stream.failed;
        self.input_files_failed += stream.files_failed;
        self.bytes_in += stream.bytes;
        self.tokens += packed.tokens_in;
        self.tokens_written += packed.tokens_written;
        self.tokens_discarded += packed.tokens_discarded;
        self.padding_tokens += packed.padding;
        self.files_written += packed.files.len() as u64;
        self.files
            .extend(packed.files.iter().map(|f| f.display().to_string()));
    }
}

/// The dtype packed files get for this tokenizer's vocabulary.
pub fn dtype_for(tokenizer: &Tokenizer) -> Dtype {
    Dtype::for_vocab_size(tokenizer.inner().get_vocab_size(false))
}

/// Packs the documents of `inputs` (files, folders of them, or glob patterns) into `output`:
/// the packed files, `failures.jsonl` and `summary.json`. A bad record or an unreadable file is
/// a failure row and the run goes on; an error that stops a stream stops them all.
pub fn pack(
    inputs: &[PathBuf],
    output: &Path,
    options: &PackOptions,
    reporter: &dyn Reporter,
) -> Result<DatasetSummary, Error> {
    let files = prox_io::input_files(inputs).map_err(Error::ListInputs)?;
    if files.is_empty() {
        return Err(Error::NoInputFiles {
            inputs: inputs.to_vec(),
        });
    }
    let runs = split_in_runs(&files, options.streams);
    let prefixes = stream_prefixes(&options.prefix, options.streams, runs.len());
    std::fs::create_dir_all(output).map_err(|source| Error::CreateOutput {
        path: output.to_owned(),
        source,
    })?;
    refuse_earlier_output(output, &prefixes)?;
    let header = Header {
        dtype: dtype_for(options.tokenizer),
        chunk_size: options.chunk_size,
    };
    let total_bytes = files
        .iter()
        .filter_map(|f| std::fs::metadata(f).ok())
        .map(|m| m.len())
        .sum();
    reporter.started(files.len(), total_bytes, runs.len());

    let job = Job {
        options,
        failures: Mutex::new(JsonlWriter::create(&output.join("failures.jsonl"))?),
        reporter,
        stop: AtomicBool::new(false),
    };
    let results: Vec<Result<(StreamCounts, PackSummary), Error>> = std::thread::scope(|scope| {
        let handles: Vec<_> = runs
            .iter()
            .zip(&prefixes)
            .map(|(run, prefix)| {
                let job = &job;
                scope.spawn(move || {
                    let writer =
                        PackedWriter::new(output, prefix.as_str(), header, options.recipe.bos)?;
                    let result = pack_files(run, writer, job);
                    if result.is_err() {
                        job.stop.store(true, Ordering::Relaxed);
                    }
                    result
                })
            })
            .collect();
        handles
            .into_iter()
            .map(|handle| handle.join().unwrap_or(Err(Error::WorkerPanicked)))
            .collect()
    });

    let mut summary = DatasetSummary {
        format: options.format,
        tokenizer: options.tokenizer_name.clone(),
        dtype: header.dtype.name().to_owned(),
        chunk_size: header.chunk_size,
        separator_token: options.recipe.bos,
        eos_token: options.recipe.eos,
        prefixes,
        documents: 0,
        documents_packed: 0,
        documents_empty: 0,
        documents_failed: 0,
        input_files_failed: 0,
        bytes_in: 0,
        tokens: 0,
        tokens_written: 0,
        tokens_discarded: 0,
        padding_tokens: 0,
        files_written: 0,
        files: Vec::new(),
    };
    for result in results {
        let (counts, packed) = result?;
        summary.add_stream(counts, packed);
    }
    if !summary.is_balanced() {
        return Err(Error::Unbalanced(format!("{summary:?}")));
    }
    let failures = job
        .failures
        .into_inner()
        .map_err(|_| Error::WorkerPanicked)?;
    failures.finish()?;
    prox_io::write_json(&output.join("summary.json"), &summary)?;
    Ok(summary)
}

/// Splits files into at most `streams` consecutive runs whose lengths differ by one at most, the
/// longer ones first (NumPy's `array_split`, as the reference splits files among processes).
fn split_in_runs(files: &[PathBuf], streams: u64) -> Vec<&[PathBuf]> {
    let runs = usize::try_from(streams)
        .unwrap_or(usize::MAX)
        .min(files.len())
        .max(1);
    let (base, extra) = (files.len() / runs, files.len() % runs);
    let mut rest = files;
    (0..runs)
        .map(|i| {
            let (run, tail) = rest.split_at(base + usize::from(i < extra));
            rest = tail;
            run
        })
        .collect()
}

/// The prefix of each stream: `{worker}` replaced by its number, or `_{worker}` appended when
/// there are several streams.
pub fn stream_prefixes(prefix: &str, streams: u64, runs: usize) -> Vec<String> {
    (0..runs)
        .map(|worker| {
            if prefix.contains("{worker}") {
                prefix.replace("{worker}", &worker.to_string())
            } else if streams > 1 {
                format!("{prefix}_{worker}")
            } else {
                prefix.to_owned()
            }
        })
        .collect()
}

/// A rerun into the same folder would mix old and new files under one prefix.
fn refuse_earlier_output(output: &Path, prefixes: &[String]) -> Result<(), Error> {
    for prefix in prefixes {
        let first = output.join(crate::file_name(prefix, 0));
        if first.exists() {
            return Err(Error::EarlierOutput {
                output: output.to_owned(),
                prefix: prefix.clone(),
                first,
            });
        }
    }
    Ok(())
}

/// Everything the streams share.
struct Job<'a> {
    options: &'a PackOptions<'a>,
    failures: Mutex<JsonlWriter>,
    reporter: &'a dyn Reporter,
    /// Set when a stream hits an error that stops the run.
    stop: AtomicBool,
}

/// Per-stream document counts.
#[derive(Debug, Default)]
struct StreamCounts {
    documents: u64,
    packed: u64,
    empty: u64,
    failed: u64,
    files_failed: u64,
    bytes: u64,
}

/// One input item, to encode or to report.
enum Item {
    Text {
        text: String,
        location: RecordLocation,
    },
    Empty,
    /// A record that cannot be packed.
    Failed(Failure),
    /// A file that could not be read to its end.
    FileFailed(Failure),
}

struct Batch {
    items: Vec<Item>,
    bytes: u64,
}

/// Documents per batch handed to the thread pool, and the text bytes that also end a batch.
const BATCH_DOCUMENTS: usize = 2048;
const BATCH_BYTES: u64 = 8 << 20;

/// Packs the documents of `files` into `writer`: a reading thread parses the records while the
/// thread pool encodes the previous batch.
fn pack_files(
    files: &[PathBuf],
    mut writer: PackedWriter,
    job: &Job,
) -> Result<(StreamCounts, PackSummary), Error> {
    let mut counts = StreamCounts::default();
    std::thread::scope(|scope| -> Result<(), Error> {
        let (send, receive) = sync_channel::<Batch>(2);
        scope.spawn(move || read_batches(prox_io::open_all_records(files), job, send));
        pack_batches(receive, &mut writer, &mut counts, job)
    })?;
    let packed = writer.finish(job.options.remainder)?;
    Ok((counts, packed))
}

/// Turns records into batches of [`Item`]s. Stops when the receiver is gone or the run stops.
fn read_batches(
    records: impl Iterator<Item = Result<Result<Record, RecordError>, prox_io::Error>>,
    job: &Job,
    send: SyncSender<Batch>,
) {
    let new_batch = || Batch {
        items: Vec::with_capacity(BATCH_DOCUMENTS),
        bytes: 0,
    };
    let mut batch = new_batch();
    let mut text_bytes = 0;
    for record in records {
        let item = match record {
            Ok(Ok(record)) => {
                batch.bytes += record.bytes as u64 + 1;
                text_item(record, &job.options.text_field)
            }
            Ok(Err(bad)) => {
                batch.bytes += bad.excerpt.len() as u64 + 1;
                Item::Failed(Failure::from(&bad))
            }
            Err(error) => {
                let failure = Failure::of_file(&error);
                job.reporter.file_failed(&failure);
                Item::FileFailed(failure)
            }
        };
        if let Item::Text { text, .. } = &item {
            text_bytes += text.len() as u64;
        }
        batch.items.push(item);
        if batch.items.len() >= BATCH_DOCUMENTS || text_bytes >= BATCH_BYTES {
            if job.stop.load(Ordering::Relaxed) || send.send(batch).is_err() {
                return;
            }
            batch = new_batch();
            text_bytes = 0;
        }
    }
    if !batch.items.is_empty() {
        let _ = send.send(batch);
    }
}

fn text_item(mut record: Record, text_field: &str) -> Item {
    match take_string_field(&mut record.fields, text_field) {
        Ok(text) if text.is_empty() => Item::Empty,
        Ok(text) => Item::Text {
            text,
            location: record.location,
        },
        Err(error) => Item::Failed(Failure::of_record(&record.location, error.to_string())),
    }
}

fn pack_batches(
    receive: Receiver<Batch>,
    writer: &mut PackedWriter,
    counts: &mut StreamCounts,
    job: &Job,
) -> Result<(), Error> {
    for batch in receive {
        if job.stop.load(Ordering::Relaxed) {
            return Err(Error::Stopped);
        }
        let ready: Vec<Ready> = batch
            .items
            .into_par_iter()
            .with_min_len(16)
            .map(|item| encode(item, job.options))
            .collect();
        for item in ready {
            match item {
                Ready::Tokens(tokens) => {
                    counts.documents += 1;
                    counts.packed += 1;
                    writer.push(&tokens)?;
                }
                Ready::Empty => {
                    counts.documents += 1;
                    counts.empty += 1;
                }
                Ready::Failed(row) => {
                    counts.documents += 1;
                    counts.failed += 1;
                    write_failure(job, &row)?;
                }
                Ready::FileFailed(row) => {
                    counts.files_failed += 1;
                    write_failure(job, &row)?;
                }
            }
        }
        counts.bytes += batch.bytes;
        job.reporter.packed(batch.bytes);
    }
    Ok(())
}

/// An item after encoding: what goes into the packed files or the failures file.
enum Ready {
    /// A document's packed tokens: its ids without a leading BOS, then EOS.
    Tokens(Vec<u32>),
    Empty,
    Failed(Failure),
    FileFailed(Failure),
}

fn encode(item: Item, options: &PackOptions) -> Ready {
    match item {
        Item::Text { text, location } => match options.tokenizer.encode(&text, true) {
            Ok(ids) => Ready::Tokens(options.recipe.document_tokens(ids)),
            Err(error) => Ready::Failed(Failure::of_record(&location, error_chain(&error))),
        },
        Item::Empty => Ready::Empty,
        Item::Failed(row) => Ready::Failed(row),
        Item::FileFailed(row) => Ready::FileFailed(row),
    }
}

fn write_failure(job: &Job, row: &Failure) -> Result<(), Error> {
    let mut failures = job.failures.lock().map_err(|_| Error::WorkerPanicked)?;
    failures.write(row)?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn runs_split_files_as_numpy_array_split_does() {
        let files: Vec<PathBuf> = (0..7).map(|i| PathBuf::from(i.to_string())).collect();
        let lengths: Vec<usize> = split_in_runs(&files, 3).iter().map(|r| r.len()).collect();
        assert_eq!(lengths, [3, 2, 2]);
        assert_eq!(split_in_runs(&files, 3)[1][0], PathBuf::from("3"));
        assert_eq!(split_in_runs(&files, 10).len(), 7);
        assert_eq!(split_in_runs(&files[..1], 1).len(), 1);
    }

    #[test]
    fn prefixes_name_each_stream() {
        assert_eq!(stream_prefixes("train_web_0", 1, 1), ["train_web_0"]);
        assert_eq!(stream_prefixes("train_web_{worker}", 1, 1), ["train_web_0"]);
        assert_eq!(
            stream_prefixes("train_web_{worker}", 2, 2),
            ["train_web_0", "train_web_1"]
        );
        assert_eq!(stream_prefixes("train", 2, 2), ["train_0", "train_1"]);
        assert_eq!(stream_prefixes("train", 3, 1), ["train_0"]);
    }

    struct Counting(std::sync::atomic::AtomicU64);

    impl Reporter for Counting {
        fn packed(&self, bytes: u64) {
            self.0.fetch_add(bytes, Ordering::Relaxed);
        }
    }

    #[test]
    fn a_run_counts_every_record_once_and_refuses_to_run_twice_into_one_prefix() {
        let tokenizer = Tokenizer::from_path(&prox_test::fixture("llama2-tokenizer")).unwrap();
        let dir = tempfile::tempdir().unwrap();
        let input = dir.path().join("in.jsonl");
        std::fs::write(
            &input,
            "{\"text\": \"Hello world\"}\n{\"text\": \"\"}\nnot json\n{\"other\": 1}\n",
        )
        .unwrap();
        let output = dir.path().join("packed");
        let options = PackOptions {
            tokenizer: &tokenizer,
            tokenizer_name: "llama2".into(),
            recipe: Recipe { bos: 1, eos: 2 },
            format: Format::Litgpt,
            chunk_size: 4,
            prefix: "train_{worker}".into(),
            streams: 1,
            text_field: "text".into(),
            remainder: Remainder::Write,
        };
        let reporter = Counting(Default::default());
        let summary = pack(std::slice::from_ref(&input), &output, &options, &reporter).unwrap();
        assert_eq!(summary.documents, 4);
        assert_eq!(summary.documents_packed, 1);
        assert_eq!(summary.documents_empty, 1);
        assert_eq!(summary.documents_failed, 2);
        assert!(summary.has_failures());
        assert_eq!(reporter.0.load(Ordering::Relaxed), summary.bytes_in);
        assert!(output.join("summary.json").is_file());
        let again = pack(&[input], &output, &options, &Silent).unwrap_err();
        assert!(matches!(again, Error::EarlierOutput { .. }), "{again}");
    }
}
