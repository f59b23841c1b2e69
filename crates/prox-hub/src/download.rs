//! Listing a repository and fetching its files: skip what is there, resume what was cut
//! off, verify what arrived, then make it visible.

use std::fs::{File, OpenOptions};
use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::Duration;

use serde::Deserialize;
use sha2::{Digest, Sha256};

use crate::cache::{self, CacheRepo, LocalMetadata, LocalPaths};
use crate::error::{Error, Result};
use crate::http::{self, quote, Client, FileMetadata};
use crate::{DownloadRequest, RepoType, Reporter};

/// A client for one hub endpoint, writing into one cache folder.
#[derive(Debug, Clone)]
pub struct Hub {
    client: Client,
    cache: PathBuf,
    retries: u32,
    backoff: Duration,
}

/// A repository at a revision, as the hub lists it.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub struct RepoInfo {
    /// The commit the revision resolved to.
    pub sha: String,
    pub siblings: Vec<Sibling>,
}

/// One file of a repository listing.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub struct Sibling {
    pub rfilename: String,
    #[serde(default)]
    pub size: Option<u64>,
    #[serde(default)]
    pub lfs: Option<SiblingLfs>,
}

/// The LFS pointer of a large file: its sha256 and size.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub struct SiblingLfs {
    pub sha256: String,
    pub size: u64,
}

impl Sibling {
    fn expected_size(&self) -> Option<u64> {
        self.lfs.as_ref().map(|l| l.size).or(self.size)
    }
}

/// What a download did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Download {
    /// The commit the revision resolved to.
    pub commit: String,
    /// The snapshot folder in the cache, or the local folder.
    pub folder: PathBuf,
    /// The selected files, in listing order.
    pub files: Vec<FileReport>,
}

impl Download {
    /// Bytes that crossed the network in this run.
    pub fn bytes_fetched(&self) -> u64 {
        self.files
            .iter()
            .map(|f| match f.outcome {
                Outcome::Fetched { bytes, .. } => bytes,
                _ => 0,
            })
            .sum()
    }

    /// Files fetched in this run (wholly or from where an earlier run stopped).
    pub fn files_fetched(&self) -> usize {
        self.files
            .iter()
            .filter(|f| matches!(f.outcome, Outcome::Fetched { .. }))
            .count()
    }
}

/// One file of a [`Download`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FileReport {
    /// The repository path.
    pub file: String,
    /// Where it is on disk.
    pub path: PathBuf,
    pub size: u64,
    pub outcome: Outcome,
}

/// How a file came to be in place.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    /// It was already there; nothing was requested for it.
    Present,
    /// Its blob was in the cache already (another revision has it); only linked.
    Linked,
    /// Transferred: `bytes` in this run, after `resumed_from` bytes an earlier try left.
    Fetched { bytes: u64, resumed_from: u64 },
}

impl Hub {
    /// The hub `HF_ENDPOINT` names, with the token of `HF_TOKEN` (or `huggingface-cli login`),
    /// writing into [`crate::hub_cache_dir`].
    pub fn from_env() -> Self {
        Hub::new(&cache::endpoint_from_env(), cache::hub_cache_dir())
            .with_token(cache::token_from_env())
    }

    /// A hub at `endpoint` (`https://huggingface.co`), writing into the cache folder `cache`;
    /// no token.
    pub fn new(endpoint: &str, cache: impl Into<PathBuf>) -> Self {
        Hub {
            client: Client::new(endpoint, None),
            cache: cache.into(),
            retries: 5,
            backoff: Duration::from_millis(500),
        }
    }

    /// Sends `token` as `Authorization: Bearer` to the hub (never to other hosts).
    pub fn with_token(self, token: Option<String>) -> Self {
        let endpoint = self.client.endpoint().to_owned();
        Hub {
            client: Client::new(&endpoint, token),
            ..self
        }
    }

    /// How often a transient failure (a broken connection, a 5xx) is retried, and the first
    /// pause, doubled at each try up to 10 s. Default: 5 times from 0.5 s.
    pub fn with_retries(self, retries: u32, backoff: Duration) -> Self {
        Hub {
            retries,
            backoff,
            ..self
        }
    }

    pub fn endpoint(&self) -> &str {
        self.client.endpoint()
    }

    pub fn cache_dir(&self) -> &Path {
        &self.cache
    }

    /// The commit `revision` resolves to and the repository's files then, with sizes and the
    /// LFS sha256 (`?blobs=true`).
    pub fn repo_info(
        &self,
        repo_id: &str,
        repo_type: RepoType,
        revision: &str,
    ) -> Result<RepoInfo> {
        check_repo_id(repo_id)?;
        let url = format!(
            "{}/api/{}s/{repo_id}/revision/{}?blobs=true",
            self.endpoint(),
            repo_type.as_str(),
            quote(revision, false)
        );
        let value = self.retrying(repo_id, &crate::NoReporter, || self.client.get_json(&url))?;
        serde_json::from_value(value).map_err(|e| Error::BadResponse {
            url,
            reason: format!("the repository listing lacks `sha` or `siblings`: {e}"),
        })
    }

    /// Downloads the files `request` selects; see the crate documentation.
    pub fn download(&self, request: &DownloadRequest, reporter: &dyn Reporter) -> Result<Download> {
        let info = self.repo_info(&request.repo_id, request.repo_type, &request.revision)?;
        self.download_listed(request, &info, reporter)
    }

    /// [`Hub::download`] with the listing already in hand (from [`Hub::repo_info`] at the
    /// request's revision), for a caller that chose files from it.
    pub fn download_listed(
        &self,
        request: &DownloadRequest,
        info: &RepoInfo,
        reporter: &dyn Reporter,
    ) -> Result<Download> {
        let filter = Filter::new(&request.include, &request.exclude)?;
        let selected: Vec<&Sibling> = info
            .siblings
            .iter()
            .filter(|s| filter.selects(&s.rfilename))
            .collect();
        if selected.is_empty() && !request.include.is_empty() {
            return Err(Error::NothingMatched {
                repo: request.repo_id.clone(),
                files: info.siblings.len(),
                patterns: request.include.clone(),
            });
        }
        for sibling in &selected {
            cache::check_repo_path(&sibling.rfilename)?;
        }
        let total = selected.iter().filter_map(|s| s.expected_size()).sum();
        reporter.listed(&request.repo_id, &info.sha, selected.len(), total);

        let target = match &request.local_dir {
            Some(dir) => Target::Local(dir.clone()),
            None => {
                let repo = CacheRepo::new(&self.cache, request.repo_type, &request.repo_id);
                repo.write_ref(&request.revision, &info.sha)?;
                Target::Cache(repo)
            }
        };
        let jobs: Vec<FileJob<'_>> = selected
            .into_iter()
            .map(|sibling| FileJob {
                request,
                commit: &info.sha,
                sibling,
            })
            .collect();
        let files = in_parallel(&jobs, request.max_workers, |job| {
            let report = match &target {
                Target::Cache(repo) => self.fetch_into_cache(job, repo, reporter)?,
                Target::Local(dir) => self.fetch_into_local_dir(job, dir, reporter)?,
            };
            reporter.finished(&report.file, report.size, report.outcome);
            Ok(report)
        })?;
        let folder = match &target {
            Target::Cache(repo) => repo.snapshot(&info.sha),
            Target::Local(dir) => dir.clone(),
        };
        Ok(Download {
            commit: info.sha.clone(),
            folder,
            files,
        })
    }

    fn fetch_into_cache(
        &self,
        job: &FileJob<'_>,
        repo: &CacheRepo,
        reporter: &dyn Reporter,
    ) -> Result<FileReport> {
        let name = &job.sibling.rfilename;
        let pointer = repo.pointer(job.commit, name);
        if let Some(size) = present(&pointer, job.sibling.expected_size()) {
            return Ok(job.report(pointer, size, Outcome::Present));
        }
        let meta = self.metadata(job, reporter)?;
        let blob = repo.blob(&meta.etag);
        // Held until the blob is in place; whoever waited for it finds it there.
        let _lock = cache::lock(&repo.lock_path(&meta.etag))?;
        let outcome = if present(&blob, Some(meta.size)).is_some() {
            Outcome::Linked
        } else {
            let incomplete = with_suffix(&blob, ".incomplete");
            let outcome = self.transfer(job, &meta, &incomplete, reporter)?;
            std::fs::rename(&incomplete, &blob).map_err(Error::io(&blob))?;
            outcome
        };
        let pointer = repo.link(job.commit, name, &meta.etag)?;
        Ok(job.report(pointer, meta.size, outcome))
    }

    fn fetch_into_local_dir(
        &self,
        job: &FileJob<'_>,
        dir: &Path,
        reporter: &dyn Reporter,
    ) -> Result<FileReport> {
        let paths = LocalPaths::new(dir, &job.sibling.rfilename);
        let record = LocalMetadata::read_current(&paths);
        let expected = job.sibling.expected_size();
        let on_disk = present(&paths.file, expected);
        if let (Some(record), Some(size)) = (&record, on_disk) {
            if record.commit == job.commit {
                return Ok(job.report(paths.file, size, Outcome::Present));
            }
        }
        let meta = self.metadata(job, reporter)?;
        let _lock = cache::lock(&paths.lock_path())?;
        // Read again under the lock: another process may have just finished the file.
        let record = LocalMetadata::read_current(&paths);
        let on_disk = present(&paths.file, expected);
        if let (Some(record), Some(size)) = (&record, on_disk) {
            if record.etag == meta.etag {
                LocalMetadata::now(job.commit, &meta.etag).write(&paths)?;
                return Ok(job.report(paths.file, size, Outcome::Present));
            }
        }
        let incomplete = paths.incomplete(&meta.etag);
        let outcome = self.transfer(job, &meta, &incomplete, reporter)?;
        cache::create_parent(&paths.file)?;
        std::fs::rename(&incomplete, &paths.file).map_err(Error::io(&paths.file))?;
        LocalMetadata::now(job.commit, &meta.etag).write(&paths)?;
        Ok(job.report(paths.file, meta.size, outcome))
    }

    fn metadata(&self, job: &FileJob<'_>, reporter: &dyn Reporter) -> Result<FileMetadata> {
        let url = job.resolve_url(self.endpoint());
        let meta = self.retrying(&job.sibling.rfilename, reporter, || {
            self.client.file_metadata(&url)
        })?;
        if let Some(size) = job.sibling.expected_size().filter(|s| *s != meta.size) {
            return Err(Error::BadResponse {
                url,
                reason: format!(
                    "the listing gives {} {size} bytes, the file's headers {}",
                    job.sibling.rfilename, meta.size
                ),
            });
        }
        Ok(meta)
    }

    /// Fills `incomplete` up to the file's size, resuming from what it holds, retrying
    /// transient failures; then checks size and sha256. A file that fails the checks is
    /// removed, since resuming it could only reproduce the fault.
    fn transfer(
        &self,
        job: &FileJob<'_>,
        meta: &FileMetadata,
        incomplete: &Path,
        reporter: &dyn Reporter,
    ) -> Result<Outcome> {
        let name = &job.sibling.rfilename;
        cache::create_parent(incomplete)?;
        let resumed_from = file_len(incomplete)
            .filter(|l| *l <= meta.size)
            .unwrap_or(0);
        reporter.started(name, meta.size, resumed_from);
        let mut fetched = 0u64;
        let mut digest = RunningDigest::default();
        self.retrying(name, reporter, || {
            fetched += self.fetch_rest(name, meta, incomplete, &mut digest, reporter)?;
            Ok(())
        })?;
        let actual = file_len(incomplete).unwrap_or(0);
        if actual != meta.size {
            remove_quietly(incomplete);
            return Err(Error::SizeMismatch {
                file: name.clone(),
                expected: meta.size,
                actual,
            });
        }
        if let Some(lfs) = &job.sibling.lfs {
            let actual = digest.finish(incomplete)?;
            if !actual.eq_ignore_ascii_case(&lfs.sha256) {
                remove_quietly(incomplete);
                return Err(Error::ChecksumMismatch {
                    file: name.clone(),
                    expected: lfs.sha256.clone(),
                    actual,
                });
            }
        }
        Ok(Outcome::Fetched {
            bytes: fetched,
            resumed_from,
        })
    }

    /// One request for the bytes `incomplete` lacks; returns how many arrived. `digest`
    /// follows the bytes written, so that the sha256 is ready when the last byte is.
    fn fetch_rest(
        &self,
        name: &str,
        meta: &FileMetadata,
        incomplete: &Path,
        digest: &mut RunningDigest,
        reporter: &dyn Reporter,
    ) -> Result<u64> {
        let mut have = file_len(incomplete).unwrap_or(0);
        if have > meta.size {
            have = 0;
        }
        if have == meta.size && have > 0 {
            return Ok(0);
        }
        let response = self.client.get_from(&meta.location, have)?;
        let resumed = have > 0
            && response.status() == 206
            && response
                .header("Content-Range")
                .and_then(http::content_range_start)
                == Some(have);
        // A server that ignores the range sends the whole file: start over.
        let start = if resumed { have } else { 0 };
        let mut file = open_at(incomplete, start)?;
        digest.catch_up(incomplete, start)?;
        let mut reader = response.into_reader();
        let mut buffer = vec![0u8; 1 << 20];
        let mut received = 0u64;
        loop {
            let n = match reader.read(&mut buffer) {
                Ok(0) => break,
                Ok(n) => n,
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
                Err(source) => {
                    file.flush().map_err(Error::io(incomplete))?;
                    return Err(Error::Interrupted {
                        url: meta.location.clone(),
                        file: name.to_owned(),
                        received: start + received,
                        size: meta.size,
                        source,
                    });
                }
            };
            file.write_all(&buffer[..n])
                .map_err(Error::io(incomplete))?;
            digest.update(&buffer[..n]);
            received += n as u64;
            reporter.progressed(name, n as u64);
        }
        file.sync_all().map_err(Error::io(incomplete))?;
        // A response without a length that ends early is a cut too: keep the bytes, resume.
        if start + received < meta.size {
            return Err(Error::Interrupted {
                url: meta.location.clone(),
                file: name.to_owned(),
                received: start + received,
                size: meta.size,
                source: std::io::ErrorKind::UnexpectedEof.into(),
            });
        }
        Ok(received)
    }

    fn retrying<T>(
        &self,
        file: &str,
        reporter: &dyn Reporter,
        mut attempt: impl FnMut() -> Result<T>,
    ) -> Result<T> {
        let mut tries = 0;
        loop {
            match attempt() {
                Err(error) if error.is_transient() && tries < self.retries => {
                    tries += 1;
                    reporter.retrying(file, tries, &error);
                    let pause = self.backoff.saturating_mul(1 << (tries - 1).min(16));
                    std::thread::sleep(pause.min(Duration::from_secs(10)));
                }
                other => return other,
            }
        }
    }
}

enum Target {
    Cache(CacheRepo),
    Local(PathBuf),
}

/// `work` on every item, on up to `workers` threads, the results in the items' order. After a
/// failure no further item is started; the error returned is the first in the items' order
/// among those that failed.
fn in_parallel<T: Sync, R: Send>(
    items: &[T],
    workers: usize,
    work: impl Fn(&T) -> Result<R> + Sync,
) -> Result<Vec<R>> {
    let workers = workers.clamp(1, items.len().max(1));
    if workers == 1 {
        return items.iter().map(work).collect();
    }
    let next = AtomicUsize::new(0);
    let failed = AtomicBool::new(false);
    let mut done: Vec<(usize, Result<R>)> = std::thread::scope(|scope| {
        let handles: Vec<_> = (0..workers)
            .map(|_| {
                scope.spawn(|| {
                    let mut done = Vec::new();
                    while !failed.load(Ordering::Relaxed) {
                        let index = next.fetch_add(1, Ordering::Relaxed);
                        let Some(item) = items.get(index) else { break };
                        let result = work(item);
                        if result.is_err() {
                            failed.store(true, Ordering::Relaxed);
                        }
                        done.push((index, result));
                    }
                    done
                })
            })
            .collect();
        handles
            .into_iter()
            // A worker that panicked takes the download down with it, as one thread would.
            .flat_map(|handle| {
                handle
                    .join()
                    .unwrap_or_else(|p| std::panic::resume_unwind(p))
            })
            .collect()
    });
    done.sort_by_key(|(index, _)| *index);
    done.into_iter().map(|(_, result)| result).collect()
}

struct FileJob<'a> {
    request: &'a DownloadRequest,
    commit: &'a str,
    sibling: &'a Sibling,
}

impl FileJob<'_> {
    /// The file at the listed commit, not at the branch: a push during a long download must
    /// not mix two versions of the repository.
    fn resolve_url(&self, endpoint: &str) -> String {
        format!(
            "{endpoint}/{}{}/resolve/{}/{}",
            self.request.repo_type.url_prefix(),
            self.request.repo_id,
            quote(self.commit, false),
            quote(&self.sibling.rfilename, true)
        )
    }

    fn report(&self, path: PathBuf, size: u64, outcome: Outcome) -> FileReport {
        FileReport {
            file: self.sibling.rfilename.clone(),
            path,
            size,
            outcome,
        }
    }
}

/// The include and exclude globs of a request, matched as `huggingface_hub` matches them
/// (`fnmatch`: `*` crosses `/`; a pattern ending in `/` selects everything below). A pattern
/// also selects the file of exactly its name, so that a name holding `[` can be asked for.
struct Filter {
    include: Vec<(String, glob::Pattern)>,
    exclude: Vec<(String, glob::Pattern)>,
}

impl Filter {
    fn new(include: &[String], exclude: &[String]) -> Result<Filter> {
        let compile = |patterns: &[String]| -> Result<Vec<(String, glob::Pattern)>> {
            patterns
                .iter()
                .map(|p| {
                    let full = if p.ends_with('/') {
                        format!("{p}*")
                    } else {
                        p.clone()
                    };
                    let pattern = glob::Pattern::new(&full).map_err(|e| Error::BadPattern {
                        pattern: p.clone(),
                        reason: e.msg.to_owned(),
                    })?;
                    Ok((p.clone(), pattern))
                })
                .collect()
        };
        Ok(Filter {
            include: compile(include)?,
            exclude: compile(exclude)?,
        })
    }

    fn selects(&self, file: &str) -> bool {
        let hit = |(raw, pattern): &(String, glob::Pattern)| raw == file || pattern.matches(file);
        (self.include.is_empty() || self.include.iter().any(hit)) && !self.exclude.iter().any(hit)
    }
}

impl Hub {
    /// Whether `id` is a repository id: `org/name` or a bare legacy `name`, each part made of
    /// letters, digits, `-`, `_`, `.` (not first) and without `--`. It goes into URLs and
    /// folder names unquoted, so nothing else is let through.
    pub fn is_repo_id(id: &str) -> bool {
        let parts: Vec<&str> = id.split('/').collect();
        parts.len() <= 2
            && parts.iter().all(|p| {
                !p.is_empty()
                    && !p.starts_with('.')
                    && !p.contains("--")
                    && p.chars()
                        .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'))
            })
    }
}

/// [`Hub::is_repo_id`], as an error naming the id.
fn check_repo_id(id: &str) -> Result<()> {
    if Hub::is_repo_id(id) {
        Ok(())
    } else {
        Err(Error::InvalidRepoId { id: id.to_owned() })
    }
}

/// The size of the file at `path` (links followed), if it is one of the expected size.
fn present(path: &Path, expected: Option<u64>) -> Option<u64> {
    let meta = std::fs::metadata(path).ok().filter(|m| m.is_file())?;
    expected
        .is_none_or(|e| e == meta.len())
        .then_some(meta.len())
}

fn file_len(path: &Path) -> Option<u64> {
    std::fs::metadata(path).ok().map(|m| m.len())
}

fn with_suffix(path: &Path, suffix: &str) -> PathBuf {
    let mut name = path.as_os_str().to_owned();
    name.push(suffix);
    PathBuf::from(name)
}

/// `path` opened for writing at `start`, cut there.
fn open_at(path: &Path, start: u64) -> Result<File> {
    let file = OpenOptions::new()
        .create(true)
        .append(true)
        .open(path)
        .map_err(Error::io(path))?;
    file.set_len(start).map_err(Error::io(path))?;
    Ok(file)
}

fn remove_quietly(path: &Path) {
    // The error being reported matters more than a failure to clean up after it.
    let _ = std::fs::remove_file(path);
}

/// The sha256 of a file's first `len` bytes, kept up to date as bytes are appended: hashing
/// while the network is the bottleneck spares a second pass over the file at the end (about
/// a second per 256 MiB on this machine).
#[derive(Default)]
struct RunningDigest {
    hasher: Sha256,
    len: u64,
}

impl RunningDigest {
    /// Makes the digest cover exactly the first `start` bytes of `path`, reading them again
    /// only when it does not already (a file resumed from an earlier run, a restart from 0).
    fn catch_up(&mut self, path: &Path, start: u64) -> Result<()> {
        if self.len == start {
            return Ok(());
        }
        self.hasher = Sha256::new();
        self.len = 0;
        let mut file = File::open(path).map_err(Error::io(path))?.take(start);
        let mut buffer = vec![0u8; 1 << 20];
        loop {
            let n = file.read(&mut buffer).map_err(Error::io(path))?;
            if n == 0 {
                break;
            }
            self.update(&buffer[..n]);
        }
        Ok(())
    }

    fn update(&mut self, bytes: &[u8]) {
        self.hasher.update(bytes);
        self.len += bytes.len() as u64;
    }

    /// The hex sha256 of the whole of `path`.
    fn finish(mut self, path: &Path) -> Result<String> {
        let len = file_len(path).unwrap_or(0);
        self.catch_up(path, len)?;
        Ok(self
            .hasher
            .finalize()
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parallel_work_keeps_the_items_order() {
        let items: Vec<u64> = (0..200).collect();
        for workers in [0, 1, 3, 8, 500] {
            let squares = in_parallel(&items, workers, |n| Ok(n * n)).unwrap();
            assert_eq!(squares, items.iter().map(|n| n * n).collect::<Vec<_>>());
        }
        assert!(in_parallel(&[] as &[u64], 8, |n| Ok(*n))
            .unwrap()
            .is_empty());
    }

    #[test]
    fn parallel_work_stops_after_a_failure_and_returns_the_first_in_order() {
        let started = AtomicUsize::new(0);
        let items: Vec<usize> = (0..1000).collect();
        let error = in_parallel(&items, 4, |&n| {
            started.fetch_add(1, Ordering::Relaxed);
            if n == 5 || n == 7 {
                return Err(Error::InvalidRepoId { id: n.to_string() });
            }
            std::thread::sleep(Duration::from_millis(1));
            Ok(n)
        })
        .unwrap_err();
        assert!(
            matches!(&error, Error::InvalidRepoId { id } if id == "5"),
            "{error}"
        );
        // The four workers may each have taken one more item after the failure, not the rest.
        assert!(started.load(Ordering::Relaxed) < 20, "{started:?}");
    }

    fn filter(include: &[&str], exclude: &[&str]) -> Filter {
        let own = |v: &[&str]| v.iter().map(|s| s.to_string()).collect::<Vec<_>>();
        Filter::new(&own(include), &own(exclude)).unwrap()
    }

    #[test]
    fn globs_match_as_fnmatch_does_across_slashes() {
        let parquet = filter(&["*.parquet"], &[]);
        assert!(parquet.selects("data/train/part-0.parquet"));
        assert!(!parquet.selects("README.md"));
        let folder = filter(&["data/"], &["*.md"]);
        assert!(folder.selects("data/x.json"));
        assert!(!folder.selects("data/notes.md"));
        assert!(!folder.selects("other/x.json"));
        assert!(filter(&[], &[]).selects("anything"));
    }

    #[test]
    fn a_bad_glob_is_an_error_naming_it() {
        let error = Filter::new(&["[".to_owned()], &[]).err().unwrap();
        assert!(error.to_string().contains("`[`"), "{error}");
    }

    #[test]
    fn repo_ids_are_org_and_name() {
        assert!(check_repo_id("gair-prox/RedPajama-pro").is_ok());
        assert!(check_repo_id("gpt2").is_ok());
        for bad in ["a/b/c", "../x", "org/na me", "org--x/n", "", "/x"] {
            assert!(check_repo_id(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn a_listing_with_lfs_metadata_parses() {
        let info: RepoInfo = serde_json::from_str(
            r#"{"_id":"x","sha":"abc","private":false,"siblings":[
                {"rfilename":".gitattributes","size":1519,"blobId":"a6344aac"},
                {"rfilename":"model.safetensors","size":22,"blobId":"cd1c","lfs":{"sha256":"f934","size":22,"pointerSize":127}},
                {"rfilename":"bare"}]}"#,
        )
        .unwrap();
        assert_eq!(info.sha, "abc");
        assert_eq!(info.siblings[0].expected_size(), Some(1519));
        assert_eq!(info.siblings[1].lfs.as_ref().unwrap().sha256, "f934");
        assert_eq!(info.siblings[2].expected_size(), None);
    }
}
