//! `prox download`: a model or dataset repository from the Hugging Face hub into the hub
//! cache (or a plain folder), as `huggingface-cli download` does; the work is `prox-hub`'s.

use std::io::IsTerminal;
use std::path::PathBuf;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use anyhow::Context;
use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};
use prox_hub::{DownloadRequest, Hub, Outcome, RepoType, Reporter};

use crate::commands::Completion;

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
    bar: ProgressBar,
    terminal: bool,
    /// When a log line last said how far the download is (off a terminal).
    last_log: Mutex<Instant>,
}

impl DownloadReporter {
    pub fn new(terminal: bool) -> Self {
        let bar = ProgressBar::hidden();
        if let Ok(style) = ProgressStyle::with_template(
            "{wide_bar} {bytes}/{total_bytes} {bytes_per_sec} eta {eta} {msg}",
        ) {
            bar.set_style(style);
        }
        DownloadReporter {
            bar,
            terminal,
            last_log: Mutex::new(Instant::now()),
        }
    }

    /// Takes the bar off the terminal.
    pub fn finish(&self) {
        self.bar.finish_and_clear();
    }
}

const LOG_EVERY: Duration = Duration::from_secs(30);

impl Reporter for DownloadReporter {
    fn listed(&self, repo_id: &str, commit: &str, files: usize, bytes: u64) {
        self.bar.set_length(bytes);
        if self.terminal {
            self.bar.set_draw_target(ProgressDrawTarget::stderr());
        }
        tracing::info!(files, bytes, commit, "{repo_id}: {files} files selected");
    }

    fn started(&self, file: &str, size: u64, from: u64) {
        self.bar.set_message(file.to_owned());
        if !self.terminal {
            if from > 0 {
                tracing::info!(size, from, "{file}: resuming");
            } else {
                tracing::info!(size, "{file}: downloading");
            }
        }
    }

    fn progressed(&self, _file: &str, bytes: u64) {
        self.bar.inc(bytes);
        if self.terminal {
            return;
        }
        // Several files arrive at once: the log line says how far the whole download is.
        let mut last_log = self.last_log.lock().unwrap_or_else(|p| p.into_inner());
        if last_log.elapsed() >= LOG_EVERY {
            *last_log = Instant::now();
            tracing::info!(
                received = self.bar.position(),
                of = self.bar.length().unwrap_or(0),
                "downloading"
            );
        }
    }

    fn finished(&self, file: &str, size: u64, outcome: Outcome) {
        match outcome {
            Outcome::Present => {
                self.bar.inc(size);
                tracing::debug!(size, "{file}: already there");
            }
            Outcome::Linked => {
                self.bar.inc(size);
                tracing::debug!(size, "{file}: in the cache already, linked");
            }
            Outcome::Fetched { resumed_from, .. } => {
                // Resumed bytes were not counted as they arrived in this run.
                self.bar.inc(resumed_from);
                if !self.terminal {
                    tracing::info!(size, "{file}: done");
                }
            }
        }
    }

    fn retrying(&self, file: &str, attempt: u32, error: &prox_hub::Error) {
        self.bar
            .suspend(|| tracing::warn!(attempt, "{file}: {error}; trying again"));
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
