//! `prox tokenize`: pack documents into training data in litgpt's packed format, as the ProX
//! reference's `prepare_web` does; and `prox tokenize --inspect` to read such a file back.

use std::io::IsTerminal;
use std::ops::Range;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::{sync_channel, Receiver, SyncSender};
use std::sync::Mutex;
use std::time::Instant;

use anyhow::Context;
use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};
use prox_io::{
    error_chain, take_string_field, Failure, JsonlWriter, Record, RecordError, RecordLocation,
};
use prox_pack::{
    Dtype, Header, PackSummary, PackedFile, PackedWriter, Recipe, Remainder, DEFAULT_CHUNK_SIZE,
};
use prox_tokenizer::Tokenizer;
use rayon::prelude::*;
use serde::Serialize;

use crate::commands::Completion;

#[derive(Debug, clap::Args)]
#[command(after_help = TOKENIZE_AFTER_HELP)]
pub struct TokenizeArgs {
    /// The tokenizer: a model folder (its `tokenizer.json`, else its `tokenizer.model`), or a
    /// `tokenizer.json` or `tokenizer.model` file. BOS and EOS come from the
    /// `tokenizer_config.json` beside it.
    #[arg(long, value_name = "DIR|FILE", required_unless_present = "inspect")]
    pub tokenizer: Option<PathBuf>,

    /// JSON-lines files (.jsonl, .jsonl.gz, .jsonl.zst) or Parquet files, or folders of them
    /// (read in sorted order).
    #[arg(long, num_args = 1.., required_unless_present = "inspect")]
    pub input: Vec<PathBuf>,

    /// The folder to write the packed files to, with `failures.jsonl` and `summary.json`.
    #[arg(long, required_unless_present = "inspect")]
    pub output: Option<PathBuf>,

    /// The output format.
    #[arg(long, value_enum, default_value_t = Format::Litgpt)]
    pub format: Format,

    /// Tokens per file (the reference's default is 2049 × 1024).
    #[arg(long, default_value_t = DEFAULT_CHUNK_SIZE, value_parser = clap::value_parser!(u64).range(1..))]
    pub chunk_size: u64,

    /// File names are `{prefix}_{counter:010}.bin`. `{worker}` in the prefix is replaced by the
    /// worker's number; a prefix without it gets `_{worker}` appended when --workers is more
    /// than 1.
    #[arg(long, default_value = "train_web_{worker}")]
    pub prefix: String,

    /// The field holding the text. A dotted name reaches into nested objects.
    #[arg(long, default_value = "text")]
    pub text_field: String,

    /// Output streams: the input files are split into this many consecutive runs, each packed
    /// into its own prefix, as the reference's processes do. Tokenization uses every core
    /// whatever this is.
    #[arg(long, default_value_t = 1, value_parser = clap::value_parser!(u64).range(1..))]
    pub workers: u64,

    /// Also write the final partial chunk, padded with the separator (the reference drops it).
    #[arg(long)]
    pub write_remainder: bool,

    /// Instead of tokenizing, print the header and token counts of a packed file.
    #[arg(
        long,
        value_name = "FILE.bin",
        conflicts_with_all = ["input", "output", "write_remainder"]
    )]
    pub inspect: Option<PathBuf>,

    /// With --inspect: print tokens START..END of the file and their text (needs --tokenizer).
    #[arg(long, value_name = "START..END", requires_all = ["inspect", "tokenizer"], value_parser = parse_range)]
    pub range: Option<Range<usize>>,
}

const TOKENIZE_AFTER_HELP: &str = "\
Each document's text is encoded as the reference's fast Hugging Face tokenizer encodes it, a
leading BOS is dropped and EOS appended; the tokens fill files of --chunk-size tokens across
document boundaries. An empty text is skipped. The final partial chunk is dropped, as the
reference does, unless --write-remainder is given. Tokens are stored as uint16 when the
vocabulary has fewer than 65500 entries, else as int32.

A record that is not JSON, or whose text field is missing or not a string, goes to
failures.jsonl with its file and line; the run goes on. documents = packed + empty + failed.

Reproduce the reference's `prepare_web` with one process:
  prox tokenize --tokenizer models/llama2 --input data/ --output packed/ --prefix train_web_0
Check what the trainer will read:
  prox tokenize --inspect packed/train_web_0_0000000000.bin --tokenizer models/llama2 --range 0..200

Exit status: 0 when every document was packed or skipped as empty, 1 when some went to the
failures file, 2 on an error that stopped the run.";

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Format {
    /// litgpt / TinyLlama `PackedDataset` files (`LITPKDS` header).
    Litgpt,
}

fn parse_range(text: &str) -> Result<Range<usize>, String> {
    let (start, end) = text
        .split_once("..")
        .ok_or_else(|| format!("`{text}` is not a range START..END"))?;
    let number = |part: &str| {
        part.trim()
            .parse::<usize>()
            .map_err(|_| format!("`{part}` in `{text}` is not a token index"))
    };
    let start = if start.is_empty() { 0 } else { number(start)? };
    let end = if end.is_empty() {
        usize::MAX
    } else {
        number(end)?
    };
    if start > end {
        return Err(format!("the range `{text}` ends before it starts"));
    }
    Ok(start..end)
}

pub fn run(args: &TokenizeArgs) -> anyhow::Result<Completion> {
    match &args.inspect {
        Some(file) => inspect(file, args).map(|()| Completion::Clean),
        None => tokenize(args),
    }
}

/// What one run did. The document counts add up:
/// `documents = documents_packed + documents_empty + documents_failed`.
#[derive(Debug, Default, Serialize)]
pub struct TokenizeSummary {
    pub format: Option<Format>,
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
    /// Separator slots padding the last files (only with --write-remainder).
    pub padding_tokens: u64,
    pub files_written: u64,
    pub files: Vec<String>,
}

impl TokenizeSummary {
    fn is_balanced(&self) -> bool {
        self.documents == self.documents_packed + self.documents_empty + self.documents_failed
            && self.tokens == self.tokens_written + self.tokens_discarded
    }

    fn add_worker(&mut self, worker: WorkerCounts, packed: PackSummary) {
        self.documents += worker.documents;
        self.documents_packed += worker.packed;
        self.documents_empty += worker.empty;
        self.documents_failed += worker.failed;
        self.input_files_failed += worker.files_failed;
        self.bytes_in += worker.bytes;
        self.tokens += packed.tokens_in;
        self.tokens_written += packed.tokens_written;
        self.tokens_discarded += packed.tokens_discarded;
        self.padding_tokens += packed.padding;
        self.files_written += packed.files.len() as u64;
        self.files
            .extend(packed.files.iter().map(|f| f.display().to_string()));
    }
}

/// Everything the workers share.
struct Job<'a> {
    tokenizer: &'a Tokenizer,
    recipe: Recipe,
    text_field: &'a str,
    failures: Mutex<JsonlWriter>,
    progress: ProgressBar,
    /// Set when a worker hits an error that stops the run.
    stop: AtomicBool,
}

fn tokenize(args: &TokenizeArgs) -> anyhow::Result<Completion> {
    let started = Instant::now();
    let (Some(tokenizer_path), Some(output)) = (&args.tokenizer, &args.output) else {
        anyhow::bail!("--tokenizer, --input and --output are required");
    };
    let tokenizer = load_tokenizer(tokenizer_path)?;
    let recipe = recipe_of(&tokenizer, tokenizer_path)?;
    let header = Header {
        dtype: Dtype::for_vocab_size(tokenizer.inner().get_vocab_size(false)),
        chunk_size: args.chunk_size,
    };

    let files = prox_io::input_files(&args.input).context("cannot list the inputs")?;
    anyhow::ensure!(
        !files.is_empty(),
        "no input files in {}",
        display_paths(&args.input)
    );
    let runs = split_in_runs(&files, args.workers);
    let prefixes = worker_prefixes(&args.prefix, args.workers, runs.len());
    std::fs::create_dir_all(output)
        .with_context(|| format!("cannot create the output folder {}", output.display()))?;
    refuse_earlier_output(output, &prefixes)?;
    tracing::info!(
        files = files.len(),
        workers = runs.len(),
        dtype = %header.dtype,
        chunk_size = header.chunk_size,
        fast_path = tokenizer.fast_path().is_ok(),
        "tokenizing"
    );
    if let Err(reason) = tokenizer.fast_path() {
        tracing::info!("encoding with the tokenizers library: {reason}");
    }

    let total_bytes = files
        .iter()
        .filter_map(|f| std::fs::metadata(f).ok())
        .map(|m| m.len())
        .sum();
    let job = Job {
        tokenizer: &tokenizer,
        recipe,
        text_field: &args.text_field,
        failures: Mutex::new(JsonlWriter::create(&output.join("failures.jsonl"))?),
        progress: progress_bar(total_bytes),
        stop: AtomicBool::new(false),
    };
    let remainder = if args.write_remainder {
        Remainder::Write
    } else {
        Remainder::Drop
    };

    let results: Vec<anyhow::Result<(WorkerCounts, PackSummary)>> = std::thread::scope(|scope| {
        let handles: Vec<_> = runs
            .iter()
            .zip(&prefixes)
            .map(|(run, prefix)| {
                let job = &job;
                scope.spawn(move || {
                    let writer = PackedWriter::new(output, prefix.as_str(), header, recipe.bos)?;
                    let result = pack_files(run, writer, remainder, job);
                    if result.is_err() {
                        job.stop.store(true, Ordering::Relaxed);
                    }
                    result
                })
            })
            .collect();
        handles
            .into_iter()
            .map(|handle| {
                handle
                    .join()
                    .unwrap_or_else(|_| Err(anyhow::anyhow!("a worker panicked")))
            })
            .collect()
    });
    job.progress.finish_and_clear();

    let mut summary = TokenizeSummary {
        format: Some(args.format),
        tokenizer: tokenizer_path.display().to_string(),
        dtype: header.dtype.name().to_owned(),
        chunk_size: header.chunk_size,
        separator_token: recipe.bos,
        eos_token: recipe.eos,
        prefixes,
        ..TokenizeSummary::default()
    };
    for result in results {
        let (counts, packed) = result?;
        summary.add_worker(counts, packed);
    }
    anyhow::ensure!(
        summary.is_balanced(),
        "internal error: the counts do not add up: {summary:?}"
    );
    let failures = job
        .failures
        .into_inner()
        .map_err(|_| anyhow::anyhow!("a worker panicked while writing a failure"))?;
    failures.finish()?;
    prox_io::write_json(&output.join("summary.json"), &summary)?;
    print_summary(&summary, output, started.elapsed().as_secs_f64());

    Ok(
        if summary.documents_failed > 0 || summary.input_files_failed > 0 {
            Completion::SomeDocumentsFailed
        } else {
            Completion::Clean
        },
    )
}

fn load_tokenizer(path: &Path) -> anyhow::Result<Tokenizer> {
    Tokenizer::from_path(path)
        .with_context(|| format!("cannot load the tokenizer {}", path.display()))
}

/// BOS is the separator that pads chunks and is dropped in front of each document; EOS ends
/// each document. The reference cannot run without either.
fn recipe_of(tokenizer: &Tokenizer, path: &Path) -> anyhow::Result<Recipe> {
    let hint =
        "hint: put a tokenizer_config.json with `bos_token` and `eos_token` beside the tokenizer";
    let bos = tokenizer.bos_id().with_context(|| {
        format!(
            "the tokenizer {} has no BOS token to separate documents with\n{hint}",
            path.display()
        )
    })?;
    let eos = tokenizer.eos_id().with_context(|| {
        format!(
            "the tokenizer {} has no EOS token to end documents with\n{hint}",
            path.display()
        )
    })?;
    Ok(Recipe { bos, eos })
}

/// Splits files into at most `workers` consecutive runs whose lengths differ by one at most, the
/// longer ones first (NumPy's `array_split`, as the reference splits files among processes).
fn split_in_runs(files: &[PathBuf], workers: u64) -> Vec<&[PathBuf]> {
    let runs = usize::try_from(workers)
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

/// The prefix of each worker: `{worker}` replaced by its number, or `_{worker}` appended when
/// there are several workers.
fn worker_prefixes(prefix: &str, workers: u64, runs: usize) -> Vec<String> {
    (0..runs)
        .map(|worker| {
            if prefix.contains("{worker}") {
                prefix.replace("{worker}", &worker.to_string())
            } else if workers > 1 {
                format!("{prefix}_{worker}")
            } else {
                prefix.to_owned()
            }
        })
        .collect()
}

/// A rerun into the same folder would mix old and new files under one prefix.
fn refuse_earlier_output(output: &Path, prefixes: &[String]) -> anyhow::Result<()> {
    for prefix in prefixes {
        let first = output.join(prox_pack::file_name(prefix, 0));
        if first.exists() {
            anyhow::bail!(
                "{} already holds packed files with the prefix {prefix} (such as {})\n\
                 hint: remove them, or choose another --output or --prefix",
                output.display(),
                first.display()
            );
        }
    }
    Ok(())
}

fn progress_bar(total_bytes: u64) -> ProgressBar {
    if !std::io::stderr().is_terminal() {
        return ProgressBar::hidden();
    }
    let bar = ProgressBar::with_draw_target(Some(total_bytes), ProgressDrawTarget::stderr());
    if let Ok(style) = ProgressStyle::with_template(
        "{wide_bar} {binary_bytes}/{binary_total_bytes} {binary_bytes_per_sec} {msg} eta {eta}",
    ) {
        bar.set_style(style);
    }
    bar
}

/// Per-worker document counts.
#[derive(Debug, Default)]
struct WorkerCounts {
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
    remainder: Remainder,
    job: &Job,
) -> anyhow::Result<(WorkerCounts, PackSummary)> {
    let mut counts = WorkerCounts::default();
    std::thread::scope(|scope| -> anyhow::Result<()> {
        let (send, receive) = sync_channel::<Batch>(2);
        scope.spawn(move || read_batches(prox_io::open_all_records(files), job, send));
        pack_batches(receive, &mut writer, &mut counts, job)
    })?;
    let packed = writer.finish(remainder)?;
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
                text_item(record, job.text_field)
            }
            Ok(Err(bad)) => {
                batch.bytes += bad.excerpt.len() as u64 + 1;
                Item::Failed(Failure::from(&bad))
            }
            Err(error) => {
                let failure = Failure::of_file(&error);
                tracing::warn!("{}", failure.error);
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
    counts: &mut WorkerCounts,
    job: &Job,
) -> anyhow::Result<()> {
    for batch in receive {
        if job.stop.load(Ordering::Relaxed) {
            anyhow::bail!("stopped because another worker failed");
        }
        let ready: Vec<Ready> = batch
            .items
            .into_par_iter()
            .with_min_len(16)
            .map(|item| encode(item, job))
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
        job.progress.inc(batch.bytes);
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

fn encode(item: Item, job: &Job) -> Ready {
    match item {
        Item::Text { text, location } => match job.tokenizer.encode(&text, true) {
            Ok(ids) => Ready::Tokens(job.recipe.document_tokens(ids)),
            Err(error) => Ready::Failed(Failure::of_record(&location, error_chain(&error))),
        },
        Item::Empty => Ready::Empty,
        Item::Failed(row) => Ready::Failed(row),
        Item::FileFailed(row) => Ready::FileFailed(row),
    }
}

fn write_failure(job: &Job, row: &Failure) -> anyhow::Result<()> {
    let mut failures = job
        .failures
        .lock()
        .map_err(|_| anyhow::anyhow!("a worker panicked while writing a failure"))?;
    failures.write(row)?;
    Ok(())
}

fn display_paths(paths: &[PathBuf]) -> String {
    paths
        .iter()
        .map(|p| p.display().to_string())
        .collect::<Vec<_>>()
        .join(", ")
}

fn print_summary(summary: &TokenizeSummary, output: &Path, seconds: f64) {
    println!(
        "{} documents: {} packed, {} empty (skipped), {} failed",
        summary.documents,
        summary.documents_packed,
        summary.documents_empty,
        summary.documents_failed
    );
    println!(
        "{} tokens: {} written in {} files of {} tokens ({}), {} discarded in the final partial chunk{}",
        summary.tokens,
        summary.tokens_written,
        summary.files_written,
        summary.chunk_size,
        summary.dtype,
        summary.tokens_discarded,
        if summary.prefixes.len() > 1 { "s" } else { "" },
    );
    if summary.padding_tokens > 0 {
        println!(
            "{} separator tokens pad the last file",
            summary.padding_tokens
        );
    }
    tracing::info!(
        seconds = format!("{seconds:.2}"),
        tokens_per_second = format!("{:.0}", summary.tokens as f64 / seconds.max(1e-9)),
        "done"
    );
    println!("output:   {}", output.display());
    if summary.documents_failed > 0 || summary.input_files_failed > 0 {
        println!("failures: {}", output.join("failures.jsonl").display());
    }
    println!("summary:  {}", output.join("summary.json").display());
}

/// `--inspect`: the header, the token counts and, with `--range`, tokens and their text.
fn inspect(path: &Path, args: &TokenizeArgs) -> anyhow::Result<()> {
    let file = PackedFile::open(path)?;
    let header = file.header();
    let tokenizer = args.tokenizer.as_deref().map(load_tokenizer).transpose()?;
    let (separator, eos, source) = match &tokenizer {
        Some(tokenizer) => (tokenizer.bos_id(), tokenizer.eos_id(), "from the tokenizer"),
        None => (Some(1), Some(2), "Llama's; pass --tokenizer for others"),
    };
    let counts = file.counts(separator.map_or(-1, i64::from), eos.map_or(-1, i64::from))?;
    println!("file:       {}", path.display());
    println!("format:     LITPKDS version {}", prox_pack::VERSION);
    println!(
        "dtype:      {} (code {})",
        header.dtype,
        header.dtype.code()
    );
    println!(
        "chunk size: {} tokens ({} bytes with the header)",
        header.chunk_size,
        header.file_len().unwrap_or_default()
    );
    println!("tokens:     {}", counts.total);
    let id = |id: Option<u32>| id.map_or_else(|| "none".to_owned(), |id| id.to_string());
    println!(
        "separator:  {} (id {}, {source}: padding, or a document's own BOS)",
        counts.separator,
        id(separator)
    );
    println!(
        "eos:        {} (id {}: documents ending in this file)",
        counts.eos,
        id(eos)
    );

    if let (Some(range), Some(tokenizer)) = (&args.range, &tokenizer) {
        let end = range.end.min(file.len());
        anyhow::ensure!(
            range.start < end,
            "the range {}..{} holds no token of {}, which has {} tokens",
            range.start,
            range.end,
            path.display(),
            file.len()
        );
        let ids = file
            .tokens()?
            .skip(range.start)
            .take(end - range.start)
            .map(|token| {
                u32::try_from(token).with_context(|| {
                    format!("{} holds {token}, which is no token id", path.display())
                })
            })
            .collect::<anyhow::Result<Vec<u32>>>()?;
        let text = tokenizer.decode(&ids, false)?;
        println!("range:      {}..{end}", range.start);
        println!("ids:        {ids:?}");
        println!("text:\n{text}");
    }
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
    fn prefixes_name_each_worker() {
        assert_eq!(worker_prefixes("train_web_0", 1, 1), ["train_web_0"]);
        assert_eq!(worker_prefixes("train_web_{worker}", 1, 1), ["train_web_0"]);
        assert_eq!(
            worker_prefixes("train_web_{worker}", 2, 2),
            ["train_web_0", "train_web_1"]
        );
        assert_eq!(worker_prefixes("train", 2, 2), ["train_0", "train_1"]);
        assert_eq!(worker_prefixes("train", 3, 1), ["train_0"]);
    }

    #[test]
    fn ranges_parse_with_open_ends() {
        assert_eq!(parse_range("3..10"), Ok(3..10));
        assert_eq!(parse_range("..10"), Ok(0..10));
        assert_eq!(parse_range("5.."), Ok(5..usize::MAX));
        assert!(parse_range("10..3").is_err());
        assert!(parse_range("a..b").is_err());
        assert!(parse_range("7").is_err());
    }
}
