//! Downloads from the Hugging Face hub into the cache `huggingface_hub` writes, so that
//! `huggingface-cli`, `transformers` and ProX-rs each find what the others fetched.
//!
//! A [`Hub`] lists a repository at a revision (its commit and files, with sizes and the
//! sha256 of LFS files), keeps the files that `--include`/`--exclude` globs select, and fetches
//! each one that is not already there:
//!
//! - into the hub cache (`models--org--name/blobs/<etag>`, `snapshots/<commit>/<path>` as
//!   relative links to the blobs, `refs/<revision>`), or into a plain folder with
//!   `huggingface_hub`'s `.cache/huggingface/download/` records ([`DownloadRequest::local_dir`]);
//! - resumably: bytes arrive in `<blob>.incomplete`, and a transfer cut off (in this run or an
//!   earlier one) goes on from where it stopped with a `Range` request;
//! - verified: the size the hub announced, and for LFS files the sha256 it lists; a file that
//!   fails is discarded and never appears in a snapshot;
//! - with the token of `HF_TOKEN` (or `huggingface-cli login`'s file) for gated and private
//!   repositories, sent to the hub only, and `HF_ENDPOINT` for a mirror;
//! - safely side by side: a blob being written is locked (`<cache>/.locks/`, where
//!   `huggingface_hub` locks it too), so that two tasks of a Slurm array on one node, or `prox`
//!   and `huggingface-cli`, fetch it once between them.
//!
//! Progress goes to a [`Reporter`]; the library prints nothing.
//!
//! ```no_run
//! use prox_hub::{DownloadRequest, Hub, NoReporter, RepoType};
//!
//! let hub = Hub::from_env();
//! let mut request = DownloadRequest::new("gair-prox/RedPajama-pro", RepoType::Dataset);
//! request.include = vec!["*.parquet".to_owned()];
//! let download = hub.download(&request, &NoReporter)?;
//! println!("{} files in {}", download.files.len(), download.folder.display());
//! # Ok::<(), prox_hub::Error>(())
//! ```
//!
//! Files are fetched one after the other (`huggingface-cli` runs 8 at a time).

mod cache;
mod download;
mod error;
mod http;

use std::path::PathBuf;

pub use crate::cache::{
    check_repo_path, endpoint_from_env, hub_cache_dir, repo_folder_name, token_from_env, CacheRepo,
    LocalMetadata, LocalPaths,
};
pub use crate::download::{Download, FileReport, Hub, Outcome, RepoInfo, Sibling, SiblingLfs};
pub use crate::error::{Error, Result};

/// The hub everyone means when `HF_ENDPOINT` is not set.
pub const DEFAULT_ENDPOINT: &str = "https://huggingface.co";

/// The revision used when none is given.
pub const DEFAULT_REVISION: &str = "main";

/// The kinds of repository the hub hosts.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum RepoType {
    Model,
    Dataset,
    Space,
}

impl RepoType {
    /// `model`, `dataset`, `space`: the word in cache folder names (plus `s`) and in the API.
    pub fn as_str(self) -> &'static str {
        match self {
            RepoType::Model => "model",
            RepoType::Dataset => "dataset",
            RepoType::Space => "space",
        }
    }

    /// The prefix of `resolve/` URLs: none for models.
    fn url_prefix(self) -> &'static str {
        match self {
            RepoType::Model => "",
            RepoType::Dataset => "datasets/",
            RepoType::Space => "spaces/",
        }
    }
}

impl std::str::FromStr for RepoType {
    type Err = String;

    fn from_str(s: &str) -> std::result::Result<Self, String> {
        match s {
            "model" => Ok(RepoType::Model),
            "dataset" => Ok(RepoType::Dataset),
            "space" => Ok(RepoType::Space),
            other => Err(format!(
                "unknown repository type `{other}` (model, dataset or space)"
            )),
        }
    }
}

/// What to download.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DownloadRequest {
    /// `org/name`.
    pub repo_id: String,
    pub repo_type: RepoType,
    /// A branch, tag or commit hash.
    pub revision: String,
    /// Globs a file's repository path must match one of (all files when empty). `*` matches
    /// across `/`, as in `huggingface_hub`, and a pattern ending in `/` means everything below.
    pub include: Vec<String>,
    /// Globs that remove files the include patterns selected.
    pub exclude: Vec<String>,
    /// A plain folder to put the files in instead of the hub cache.
    pub local_dir: Option<PathBuf>,
    /// Files fetched at the same time (at least 1): a dataset of many Parquet files downloads
    /// about this many times faster where one connection is the limit.
    pub max_workers: usize,
}

impl DownloadRequest {
    /// Every file of `repo_id` at `main`, into the hub cache.
    pub fn new(repo_id: impl Into<String>, repo_type: RepoType) -> Self {
        DownloadRequest {
            repo_id: repo_id.into(),
            repo_type,
            revision: DEFAULT_REVISION.to_owned(),
            include: Vec::new(),
            exclude: Vec::new(),
            local_dir: None,
            max_workers: DEFAULT_MAX_WORKERS,
        }
    }
}

/// Files fetched at the same time unless a request says otherwise: `huggingface_hub`'s
/// `snapshot_download` default.
pub const DEFAULT_MAX_WORKERS: usize = 8;

/// Hears how a download goes; every method does nothing unless overridden. Called from the
/// downloading threads (several files are fetched at the same time), hence `Sync`.
pub trait Reporter: Sync {
    /// The listing is in: `files` files of `bytes` bytes in all are selected.
    fn listed(&self, _repo_id: &str, _commit: &str, _files: usize, _bytes: u64) {}
    /// A file's transfer begins, at byte `from` when resuming.
    fn started(&self, _file: &str, _size: u64, _from: u64) {}
    /// `bytes` more bytes of `file` arrived.
    fn progressed(&self, _file: &str, _bytes: u64) {}
    /// A file is in place (fetched, or found already there).
    fn finished(&self, _file: &str, _size: u64, _outcome: Outcome) {}
    /// A transient error; trying again after a pause.
    fn retrying(&self, _file: &str, _attempt: u32, _error: &Error) {}
}

/// A [`Reporter`] that ignores everything.
#[derive(Debug, Clone, Copy, Default)]
pub struct NoReporter;

impl Reporter for NoReporter {}
