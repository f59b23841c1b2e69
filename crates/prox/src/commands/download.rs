//! `prox download`: a model or dataset repository from the Hugging Face hub into the hub
//! cache (or a plain folder), as `huggingface-cli download` does; the work is `prox-hub`'s.

use std::io::IsTerminal;
use std::path::PathBuf;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::OnceLock;
use std::time::Duration;

use anyhow::Context;
use indicatif::HumanBytes;
use prox_hub::{DownloadRequest, Hub, Outcome, RepoType, Reporter};

use crate::commands::Completion;
use crate::progress::Progress;

#[derive(Debug, clap::Args)]
#[command(after_help = DOWNLOAD_AFTER_HELP)]
pub struct DownloadArgs {
    /// The repository, `org/name` (`gair-prox/RedPajama-pro`).
    pub repo_id: String,

    /// The kind of repository.
    #[arg(long, default_value = "model", value_parser = ["model", "dataset", "space"])]
    pub repo_type: String,

    /// Only the files whose repository path matches one of these globs (`*` also matches
    /// `/`; `data/` selects everything below `data/`).
    #[arg(long, num_args = 1.., value_name = "GLOB")]
    pub include: Vec<String>,

    /// Leave out the files matching one of these globs.
    #[arg(long, num_args = 1.., value_name = "GLOB")]
    pub exclude: Vec<String>,

    /// A branch, tag or commit hash.
    #[arg(long, default_value = prox_hub::DEFAULT_REVISION)]
    pub revision: String,

    /// Put plain files in this folder instead of the hub cache.
    #[arg(long, value_name = "DIR")]
    pub local_dir: Option<PathBuf>,

    /// The hub cache folder (default: HF_HUB_CACHE, else HF_HOME/hub, else
    /// ~/.cache/huggingface/hub).
    #[arg(long, value_name = "DIR")]
    pub cache_dir: Option<PathBuf>,

    /// Files fetched at the same time.
    #[arg(
        long,
        default_value_t = prox_hub::DEFAULT_MAX_WORKERS as u64,
        value_parser = clap::value_parser!(u64).range(1..)
    )]
    pub max_workers: u64,
}

const DOWNLOAD_AFTER_HELP: &str = "\
Files land in the hub cache as huggingface-cli lays it out (models--org--name/blobs,
snapshots/<commit>/, refs/<revision>), so that either tool finds what the other fetched; the
folder of the files is printed on standard output. A run cut short resumes where it stopped.
Every file is checked against the size the hub announces, LFS files also against its sha256.
Up to --max-workers files are fetched at the same time; after a failure no new file starts.
Environment: HF_TOKEN for gated or private repositories (else the token `huggingface-cli
login` saved), HF_ENDPOINT for a mirror, HF_HUB_CACHE or HF_HOME for the cache.";

pub fn run(args: &DownloadArgs) -> anyhow::Result<Completion> {
    let repo_type: RepoType = args.repo_type.parse().map_err(anyhow::Error::msg)?;
    let mut hub = Hub::from_env();
    if let Some(cache) = &args.cache_dir {
        hub = Hub::new(hub.endpoint(), cache).with_token(prox_hub::token_from_env());
    }
    let request = DownloadRequest {
        repo_id: args.repo_id.clone(),
        repo_type,
        revision: args.revision.clone(),
        include: args.include.clone(),
        exclude: args.exclude.clone(),
        local_dir: args.local_dir.clone(),
        max_workers: usize::try_from(args.max_workers).unwrap_or(usize::MAX),
    };
    let reporter = DownloadReporter::new(std::io::stderr().is_terminal());
    let download = hub.download(&request, &reporter).with_context(|| {
        format!(
            "cannot download the {} {} from {}",
            args.repo_type,
            args.repo_id,
            hub.endpoint()
        )
    })?;
    reporter.finish();
    tracing::info!(
        files = download.files.len(),
        fetched = download.files_fetched(),
        bytes_fetched = download.bytes_fetched(),
        commit = %download.commit,
        "{} {} is in {}",
        args.repo_type,
        args.repo_id,
        download.folder.display()
    );
    println!("{}", download.folder.display());
    Ok(Completion::Clean)
}

/// A bar of bytes over every selected file on a terminal; log lines otherwise: one per file,
/// and one every 30 seconds during a long transfer. Nothing is drawn until a listing arrives,
/// so a model found in the cache leaves no trace.
pub struct DownloadReporter {
    terminal: bool,
    /// Made when the listing says how much there is to fetch.
    progress: OnceLock<Progress>,
    files: AtomicUsize,
    files_done: AtomicUsize,
}

impl DownloadReporter {
    /// A reporter drawing a bar when `terminal`.
    pub fn new(terminal: bool) -> Self {
        DownloadReporter {
            terminal,
            progress: OnceLock::new(),
            files: AtomicUsize::new(0),
            files_done: AtomicUsize::new(0),
        }
    }

    /// Takes the bar off the terminal.
    pub fn finish(&self) {
        if let Some(progress) = self.progress.get() {
            progress.finish();
        }
    }

    /// With the progress, once the listing is in.
    fn with(&self, report: impl FnOnce(&Progress)) {
        if let Some(progress) = self.progress.get() {
            report(progress);
        }
    }

    /// Says how far the whole download is (several files arrive at once): beside the bar,
    /// or in a log line every 30 seconds.
    fn how_far(&self, progress: &Progress) {
        progress.message(|| {
            format!(
                "{}/{}, {}/{} files",
                HumanBytes(progress.position()),
                HumanBytes(progress.length()),
                self.files_done.load(Ordering::Relaxed),
                self.files.load(Ordering::Relaxed),
            )
        });
    }
}

const LOG_EVERY: Duration = Duration::from_secs(30);

impl Reporter for DownloadReporter {
    fn listed(&self, repo_id: &str, commit: &str, files: usize, bytes: u64) {
        self.files.store(files, Ordering::Relaxed);
        let template = "{wide_bar} {binary_bytes_per_sec} eta {eta} {msg}";
        let progress = Progress::drawn_if(self.terminal, bytes, template, Some(LOG_EVERY));
        let _ = self.progress.set(progress);
        tracing::info!(files, bytes, commit, "{repo_id}: {files} files selected");
    }

    fn started(&self, file: &str, size: u64, from: u64) {
        self.with(|progress| {
            progress.unless_drawn(|| {
                if from > 0 {
                    tracing::info!(size, from, "{file}: resuming");
                } else {
                    tracing::info!(size, "{file}: downloading");
                }
            })
        });
    }

    fn progressed(&self, _file: &str, bytes: u64) {
        self.with(|progress| {
            progress.inc(bytes);
            self.how_far(progress);
        });
    }

    fn finished(&self, file: &str, size: u64, outcome: Outcome) {
        self.files_done.fetch_add(1, Ordering::Relaxed);
        self.with(|progress| {
            match outcome {
                Outcome::Present => {
                    progress.inc(size);
                    tracing::debug!(size, "{file}: already there");
                }
                Outcome::Linked => {
                    progress.inc(size);
                    tracing::debug!(size, "{file}: in the cache already, linked");
                }
                Outcome::Fetched { resumed_from, .. } => {
                    // Resumed bytes were not counted as they arrived in this run.
                    progress.inc(resumed_from);
                    progress.unless_drawn(|| tracing::info!(size, "{file}: done"));
                }
            }
            self.how_far(progress);
        });
    }

    fn retrying(&self, file: &str, attempt: u32, error: &prox_hub::Error) {
        let warn = || tracing::warn!(attempt, "{file}: {error}; trying again");
        match self.progress.get() {
            Some(progress) => progress.suspend(warn),
            None => warn(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser;

    #[derive(Debug, Parser)]
    struct Cli {
        #[command(flatten)]
        args: DownloadArgs,
    }

    #[test]
    fn includes_take_several_globs_and_repeat() {
        let cli = Cli::try_parse_from([
            "prox",
            "gair-prox/RedPajama-pro",
            "--repo-type",
            "dataset",
            "--include",
            "*.parquet",
            "*.json",
            "--include",
            "README.md",
            "--revision",
            "v1",
        ])
        .unwrap();
        assert_eq!(cli.args.include, ["*.parquet", "*.json", "README.md"]);
        assert_eq!(cli.args.repo_type, "dataset");
        assert_eq!(cli.args.revision, "v1");
        assert!(Cli::try_parse_from(["prox", "x/y", "--repo-type", "dataste"]).is_err());
    }
}
