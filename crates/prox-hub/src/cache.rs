//! Where files go: the hub cache as `huggingface_hub` lays it out, and a plain folder
//! (`--local-dir`) with the metadata `huggingface_hub` keeps beside the files.
//!
//! ```text
//! <cache>/models--org--name/
//!   blobs/<etag>                 file contents, named by ETag (sha256 for LFS files)
//!   blobs/<etag>.incomplete      a transfer under way or interrupted, resumed from its length
//!   refs/main                    the commit `main` pointed to
//!   snapshots/<commit>/<path>    relative symlinks into blobs/
//!
//! <local-dir>/<path>
//! <local-dir>/.cache/huggingface/download/<path>.metadata         commit, etag, timestamp
//! <local-dir>/.cache/huggingface/download/<path>.<etag>.incomplete
//! ```

use std::path::{Path, PathBuf};
use std::time::{SystemTime, UNIX_EPOCH};

use crate::error::{Error, Result};
use crate::RepoType;

/// The hub cache folder the environment designates (it need not exist): `$HF_HUB_CACHE`
/// (or the older `$HUGGINGFACE_HUB_CACHE`), else `$HF_HOME/hub`, else
/// `$XDG_CACHE_HOME/huggingface/hub`, else `~/.cache/huggingface/hub`.
pub fn hub_cache_dir() -> PathBuf {
    if let Some(dir) = env("HF_HUB_CACHE").or_else(|| env("HUGGINGFACE_HUB_CACHE")) {
        return PathBuf::from(dir);
    }
    hf_home().join("hub")
}

/// `$HF_HOME`, else `$XDG_CACHE_HOME/huggingface`, else `~/.cache/huggingface`.
fn hf_home() -> PathBuf {
    if let Some(home) = env("HF_HOME") {
        return PathBuf::from(home);
    }
    if let Some(xdg) = env("XDG_CACHE_HOME") {
        return PathBuf::from(xdg).join("huggingface");
    }
    let home = env("HOME").map(PathBuf::from).unwrap_or_default();
    home.join(".cache").join("huggingface")
}

/// The token the environment gives, as `huggingface_hub` finds it: `$HF_TOKEN`, else
/// `$HUGGING_FACE_HUB_TOKEN`, else the file `huggingface-cli login` writes (`$HF_TOKEN_PATH`,
/// else `$HF_HOME/token`).
pub fn token_from_env() -> Option<String> {
    if let Some(token) = env("HF_TOKEN").or_else(|| env("HUGGING_FACE_HUB_TOKEN")) {
        return Some(token.trim().to_owned()).filter(|t| !t.is_empty());
    }
    let file = env("HF_TOKEN_PATH").map_or_else(|| hf_home().join("token"), PathBuf::from);
    let token = std::fs::read_to_string(file).ok()?;
    Some(token.trim().to_owned()).filter(|t| !t.is_empty())
}

/// `$HF_ENDPOINT` without a trailing slash, else `https://huggingface.co`.
pub fn endpoint_from_env() -> String {
    env("HF_ENDPOINT")
        .map(|e| e.trim_end_matches('/').to_owned())
        .unwrap_or_else(|| crate::DEFAULT_ENDPOINT.to_owned())
}

fn env(name: &str) -> Option<String> {
    std::env::var(name).ok().filter(|v| !v.trim().is_empty())
}

/// `models--org--name`, `datasets--org--name`: a repository's folder in the cache.
pub fn repo_folder_name(repo_type: RepoType, repo_id: &str) -> String {
    format!("{}s--{}", repo_type.as_str(), repo_id.replace('/', "--"))
}

/// One repository's folder in the hub cache.
#[derive(Debug, Clone)]
pub struct CacheRepo {
    dir: PathBuf,
    locks: PathBuf,
}

impl CacheRepo {
    pub fn new(cache: &Path, repo_type: RepoType, repo_id: &str) -> Self {
        let folder = repo_folder_name(repo_type, repo_id);
        CacheRepo {
            dir: cache.join(&folder),
            locks: cache.join(".locks").join(folder),
        }
    }

    pub fn dir(&self) -> &Path {
        &self.dir
    }

    pub fn blob(&self, etag: &str) -> PathBuf {
        self.dir.join("blobs").join(etag)
    }

    /// `<cache>/.locks/<repo folder>/<etag>.lock`, where `huggingface_hub` locks the same
    /// blob: a process of either tool waits while the other writes it.
    pub fn lock_path(&self, etag: &str) -> PathBuf {
        self.locks.join(format!("{etag}.lock"))
    }

    pub fn snapshot(&self, commit: &str) -> PathBuf {
        self.dir.join("snapshots").join(commit)
    }

    /// Where `file` (a `/`-separated repository path) appears in the snapshot of `commit`.
    pub fn pointer(&self, commit: &str, file: &str) -> PathBuf {
        join_repo_path(&self.snapshot(commit), file)
    }

    /// Records that `revision` points at `commit` (`refs/<revision>`), unless the revision is
    /// the commit itself, as `huggingface_hub` does. The file holds the bare hash.
    pub fn write_ref(&self, revision: &str, commit: &str) -> Result<()> {
        if revision == commit {
            return Ok(());
        }
        let path = join_repo_path(&self.dir.join("refs"), revision);
        if std::fs::read_to_string(&path).is_ok_and(|old| old.trim() == commit) {
            return Ok(());
        }
        write_atomically(&path, commit.as_bytes())
    }

    /// Makes the snapshot entry for `file` a relative link to its blob, replacing what was
    /// there. Relative, as `huggingface_hub` writes them, so that the cache can be moved.
    pub fn link(&self, commit: &str, file: &str, etag: &str) -> Result<PathBuf> {
        let pointer = self.pointer(commit, file);
        let blob = self.blob(etag);
        create_parent(&pointer)?;
        if std::fs::symlink_metadata(&pointer).is_ok() {
            std::fs::remove_file(&pointer).map_err(Error::io(&pointer))?;
        }
        let ups = 1 + file.split('/').count();
        let target = PathBuf::from("../".repeat(ups)).join("blobs").join(etag);
        symlink_or_copy(&target, &blob, &pointer)?;
        Ok(pointer)
    }
}

#[cfg(unix)]
fn symlink_or_copy(target: &Path, _blob: &Path, link: &Path) -> Result<()> {
    std::os::unix::fs::symlink(target, link).map_err(Error::io(link))
}

// Where links need privileges, `huggingface_hub` copies the blob into the snapshot; so do we.
#[cfg(not(unix))]
fn symlink_or_copy(_target: &Path, blob: &Path, link: &Path) -> Result<()> {
    std::fs::copy(blob, link)
        .map(|_| ())
        .map_err(Error::io(link))
}

/// A repository path (`a/b.txt`, already checked by [`check_repo_path`]) below `base`.
pub fn join_repo_path(base: &Path, file: &str) -> PathBuf {
    file.split('/')
        .fold(base.to_path_buf(), |p, part| p.join(part))
}

/// Accepts only plain relative paths: a listing from a hostile or broken server must not
/// make us write outside the folder (`../x`, `/etc/x`, `a//b`, `C:x`, backslashes).
pub fn check_repo_path(file: &str) -> Result<()> {
    let ok = !file.is_empty()
        && !file.contains('\\')
        && !file.contains('\0')
        && file
            .split('/')
            .all(|part| !part.is_empty() && part != "." && part != ".." && !part.contains(':'));
    if ok {
        Ok(())
    } else {
        Err(Error::UnsafePath {
            file: file.to_owned(),
        })
    }
}

pub(crate) fn create_parent(path: &Path) -> Result<()> {
    match path.parent() {
        Some(parent) => std::fs::create_dir_all(parent).map_err(Error::io(parent)),
        None => Ok(()),
    }
}

/// Writes under a temporary name and renames, so that a reader never sees half a file. The
/// name is this writer's alone (process and call): downloads running at once in one process
/// write the same `refs/` file, and a shared name let one rename take the other's file away.
pub(crate) fn write_atomically(path: &Path, bytes: &[u8]) -> Result<()> {
    static WRITERS: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
    create_parent(path)?;
    let writer = WRITERS.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    let mut tmp = path.as_os_str().to_owned();
    tmp.push(format!(".tmp-{}-{writer}", std::process::id()));
    let tmp = PathBuf::from(tmp);
    std::fs::write(&tmp, bytes).map_err(Error::io(&tmp))?;
    std::fs::rename(&tmp, path).map_err(Error::io(path))
}

/// The paths `huggingface_hub` uses for one file of a `--local-dir` download.
#[derive(Debug, Clone)]
pub struct LocalPaths {
    pub file: PathBuf,
    pub metadata: PathBuf,
}

impl LocalPaths {
    pub fn new(local_dir: &Path, file: &str) -> Self {
        let download = local_dir
            .join(".cache")
            .join("huggingface")
            .join("download");
        let metadata = join_repo_path(&download, &format!("{file}.metadata"));
        LocalPaths {
            file: join_repo_path(local_dir, file),
            metadata,
        }
    }

    /// `<path>.<etag>.incomplete` beside the metadata, as `huggingface_hub` names it.
    pub fn incomplete(&self, etag: &str) -> PathBuf {
        self.metadata.with_extension(format!("{etag}.incomplete"))
    }

    /// `<path>.lock` beside the metadata, as `huggingface_hub` names it.
    pub fn lock_path(&self) -> PathBuf {
        self.metadata.with_extension("lock")
    }
}

/// An exclusive lock on a file, held until dropped: two downloads of one blob (two tasks of
/// a Slurm array on one node, or `prox` and `huggingface-cli`) must not append to the same
/// `.incomplete` file at once.
pub(crate) struct FileLock {
    #[cfg(unix)]
    _lock: nix::fcntl::Flock<std::fs::File>,
    #[cfg(not(unix))]
    _file: std::fs::File,
}

/// Waits for the lock on `path` (created if absent).
pub(crate) fn lock(path: &Path) -> Result<FileLock> {
    create_parent(path)?;
    let file = std::fs::OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(path)
        .map_err(Error::io(path))?;
    #[cfg(unix)]
    {
        let lock = nix::fcntl::Flock::lock(file, nix::fcntl::FlockArg::LockExclusive).map_err(
            |(_, errno)| Error::Io {
                path: path.to_path_buf(),
                source: std::io::Error::from(errno),
            },
        )?;
        Ok(FileLock { _lock: lock })
    }
    #[cfg(not(unix))]
    {
        Ok(FileLock { _file: file })
    }
}

/// What `huggingface_hub` records about a file downloaded into a local folder.
#[derive(Debug, Clone, PartialEq)]
pub struct LocalMetadata {
    pub commit: String,
    pub etag: String,
    /// Seconds since the epoch when the record was written.
    pub timestamp: f64,
}

impl LocalMetadata {
    /// Reads the three lines `commit`, `etag`, `timestamp`; `None` for anything else, which
    /// only costs a new check of the file.
    pub fn parse(text: &str) -> Option<LocalMetadata> {
        let mut lines = text.lines().map(str::trim);
        let commit = lines.next().filter(|s| !s.is_empty())?.to_owned();
        let etag = lines.next().filter(|s| !s.is_empty())?.to_owned();
        let timestamp = lines
            .next()?
            .parse::<f64>()
            .ok()
            .filter(|t| t.is_finite())?;
        Some(LocalMetadata {
            commit,
            etag,
            timestamp,
        })
    }

    pub fn render(&self) -> String {
        format!("{}\n{}\n{}\n", self.commit, self.etag, self.timestamp)
    }

    pub fn now(commit: &str, etag: &str) -> Self {
        let timestamp = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0.0, |d| d.as_secs_f64());
        LocalMetadata {
            commit: commit.to_owned(),
            etag: etag.to_owned(),
            timestamp,
        }
    }

    /// The record of `paths`, if it is still true of the file: the file exists and was not
    /// modified after the record was written (a second of slack, as `huggingface_hub` allows).
    pub fn read_current(paths: &LocalPaths) -> Option<LocalMetadata> {
        let record = LocalMetadata::parse(&std::fs::read_to_string(&paths.metadata).ok()?)?;
        let modified = std::fs::metadata(&paths.file).ok()?.modified().ok()?;
        let modified = modified.duration_since(UNIX_EPOCH).ok()?.as_secs_f64();
        (modified - 1.0 <= record.timestamp).then_some(record)
    }

    pub fn write(&self, paths: &LocalPaths) -> Result<()> {
        write_atomically(&paths.metadata, self.render().as_bytes())?;
        // huggingface_hub keeps its bookkeeping out of git the same way.
        let gitignore = paths
            .metadata
            .ancestors()
            .find(|p| p.ends_with(".cache/huggingface"))
            .map(|p| p.join(".gitignore"));
        if let Some(gitignore) = gitignore.filter(|g| !g.exists()) {
            std::fs::write(&gitignore, "*").map_err(Error::io(&gitignore))?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn repo_folders_are_named_as_huggingface_hub_names_them() {
        assert_eq!(
            repo_folder_name(RepoType::Model, "gair-prox/web-doc-refining-lm"),
            "models--gair-prox--web-doc-refining-lm"
        );
        assert_eq!(
            repo_folder_name(RepoType::Dataset, "gair-prox/RedPajama-pro"),
            "datasets--gair-prox--RedPajama-pro"
        );
    }

    #[test]
    fn only_plain_relative_paths_are_accepted() {
        for good in ["config.json", "data/train-00000.parquet", "a.b/c-d_e"] {
            assert!(check_repo_path(good).is_ok(), "{good}");
        }
        for bad in [
            "",
            "../x",
            "a/../../x",
            "/etc/passwd",
            "a//b",
            "./a",
            "a\\b",
            "C:x",
            "a/",
        ] {
            assert!(check_repo_path(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn local_incomplete_files_sit_beside_the_metadata_named_by_etag() {
        let paths = LocalPaths::new(Path::new("/d"), "data/x.parquet");
        assert_eq!(paths.file, Path::new("/d/data/x.parquet"));
        assert_eq!(
            paths.metadata,
            Path::new("/d/.cache/huggingface/download/data/x.parquet.metadata")
        );
        assert_eq!(
            paths.incomplete("abc"),
            Path::new("/d/.cache/huggingface/download/data/x.parquet.abc.incomplete")
        );
    }

    proptest! {
        #[test]
        fn metadata_parsing_never_panics(text in "\\PC*") {
            let _ = LocalMetadata::parse(&text);
        }

        #[test]
        fn written_metadata_reads_back(
            commit in "[0-9a-f]{40}",
            etag in "[0-9a-f]{40,64}",
            timestamp in 0.0f64..4e9,
        ) {
            let record = LocalMetadata { commit, etag, timestamp };
            prop_assert_eq!(LocalMetadata::parse(&record.render()), Some(record));
        }

        #[test]
        fn accepted_paths_stay_below_the_folder(file in "[a-z./\\\\:]{0,12}") {
            if check_repo_path(&file).is_ok() {
                let joined = join_repo_path(Path::new("/base"), &file);
                prop_assert!(joined.starts_with("/base"));
                prop_assert!(joined
                    .components()
                    .all(|c| matches!(c, std::path::Component::RootDir | std::path::Component::Normal(_))));
            }
        }
    }
}
