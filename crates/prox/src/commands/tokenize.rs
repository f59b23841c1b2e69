//! `prox tokenize`: pack documents into training data in litgpt's packed format, as the ProX
//! reference's `prepare_web` does; and `prox tokenize --inspect` to read such a file back.

use std::ops::Range;
use std::path::{Path, PathBuf};
use std::time::Instant;

use anyhow::Context;
use prox_io::Failure;
use prox_pack::{
    DatasetSummary, PackOptions, PackedFile, Recipe, Remainder, Reporter, DEFAULT_CHUNK_SIZE,
};
use prox_tokenizer::Tokenizer;

use crate::commands::Completion;
use crate::progress::{Progress, BYTES};

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

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
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

fn tokenize(args: &TokenizeArgs) -> anyhow::Result<Completion> {
    let started = Instant::now();
    let (Some(tokenizer_path), Some(output)) = (&args.tokenizer, &args.output) else {
        anyhow::bail!("--tokenizer, --input and --output are required");
    };
    let tokenizer = load_tokenizer(tokenizer_path)?;
    let options = PackOptions {
        tokenizer: &tokenizer,
        tokenizer_name: tokenizer_path.display().to_string(),
        recipe: recipe_of(&tokenizer, tokenizer_path)?,
        format: match args.format {
            Format::Litgpt => prox_pack::Format::Litgpt,
        },
        chunk_size: args.chunk_size,
        prefix: args.prefix.clone(),
        streams: args.workers,
        text_field: args.text_field.clone(),
        remainder: if args.write_remainder {
            Remainder::Write
        } else {
            Remainder::Drop
        },
    };
    let reporter = PackReporter {
        dtype: prox_pack::dtype_for(&tokenizer),
        chunk_size: args.chunk_size,
        slow_path: tokenizer.fast_path().err().map(|reason| reason.to_string()),
        progress: std::sync::OnceLock::new(),
    };
    let result = prox_pack::pack(&args.input, output, &options, &reporter);
    if let Some(progress) = reporter.progress.get() {
        progress.finish();
    }
    let summary = result.map_err(|error| match error {
        prox_pack::Error::EarlierOutput { .. } => {
            anyhow::anyhow!("{error}\nhint: remove them, or choose another --output or --prefix")
        }
        error => error.into(),
    })?;
    print_summary(&summary, output, started.elapsed().as_secs_f64());
    Ok(if summary.has_failures() {
        Completion::SomeDocumentsFailed
    } else {
        Completion::Clean
    })
}

/// A bar of input bytes on a terminal; unreadable files as warnings.
struct PackReporter {
    dtype: prox_pack::Dtype,
    chunk_size: u64,
    /// Why the tokenizer encodes through the tokenizers library, if it does.
    slow_path: Option<String>,
    progress: std::sync::OnceLock<Progress>,
}

impl Reporter for PackReporter {
    fn started(&self, files: usize, bytes: u64, streams: usize) {
        tracing::info!(
            files,
            workers = streams,
            dtype = %self.dtype,
            chunk_size = self.chunk_size,
            fast_path = self.slow_path.is_none(),
            "tokenizing"
        );
        if let Some(reason) = &self.slow_path {
            tracing::info!("encoding with the tokenizers library: {reason}");
        }
        let _ = self.progress.set(Progress::new(bytes, BYTES, None));
    }

    fn packed(&self, bytes: u64) {
        if let Some(progress) = self.progress.get() {
            progress.inc(bytes);
        }
    }

    fn file_failed(&self, failure: &Failure) {
        match self.progress.get() {
            Some(progress) => progress.suspend(|| tracing::warn!("{}", failure.error)),
            None => tracing::warn!("{}", failure.error),
        }
    }
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

fn print_summary(summary: &DatasetSummary, output: &Path, seconds: f64) {
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
    if summary.has_failures() {
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
    fn ranges_parse_with_open_ends() {
        assert_eq!(parse_range("3..10"), Ok(3..10));
        assert_eq!(parse_range("..10"), Ok(0..10));
        assert_eq!(parse_range("5.."), Ok(5..usize::MAX));
        assert!(parse_range("10..3").is_err());
        assert!(parse_range("a..b").is_err());
        assert!(parse_range("7").is_err());
    }
}
