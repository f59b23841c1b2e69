//! Downloads from a stand-in hub on loopback (`prox_test::hub`), which answers as the real
//! hub does and cuts connections or corrupts bytes on demand.

use std::path::{Path, PathBuf};
use std::time::Duration;

use prox_hub::{Download, DownloadRequest, Error, Hub, NoReporter, Outcome, RepoType};
use prox_test::hub::{HubFile, HubRepo, Logged, StandInHub};
use tempfile::TempDir;

const BIG: &str = "data/train-00000.parquet";
const BIG_LEN: usize = 300_000;

/// Bytes that differ everywhere, so that a resumed file stitched at the wrong offset fails.
fn bytes(len: usize, seed: u64) -> Vec<u8> {
    prox_test::pseudo_random(len, seed)
        .into_iter()
        .map(|x| ((x + 1.0) * 127.5) as u8)
        .collect()
}

fn dataset() -> HubRepo {
    HubRepo::dataset("gair-prox/RedPajama-pro")
        .file(
            ".gitattributes",
            "*.parquet filter=lfs diff=lfs merge=lfs -text\n",
        )
        .file("README.md", "# RedPajama-pro\n")
        .file("data/meta.json", r#"{"rows": 2}"#)
        .lfs_file(BIG, bytes(BIG_LEN, 1))
        .lfs_file("data/train-00001.parquet", bytes(70_001, 2))
}

/// A client of `hub` writing into `cache`, retrying `retries` times without long pauses.
fn client(hub: &StandInHub, cache: &Path, retries: u32) -> Hub {
    Hub::new(&hub.endpoint(), cache).with_retries(retries, Duration::from_millis(5))
}

fn dataset_request() -> DownloadRequest {
    DownloadRequest::new("gair-prox/RedPajama-pro", RepoType::Dataset)
}

fn repo_dir(cache: &Path) -> PathBuf {
    cache.join("datasets--gair-prox--RedPajama-pro")
}

/// The snapshot folder of `commit` in `cache`.
fn snapshot(cache: &Path, commit: &str) -> PathBuf {
    repo_dir(cache).join("snapshots").join(commit)
}

/// A stand-in hub serving [`dataset`], the repository, its commit, and an empty cache for a
/// client of the hub.
fn served_dataset() -> (StandInHub, HubRepo, String, TempDir) {
    let hub = StandInHub::start();
    let repo = dataset();
    let commit = hub.add(repo.clone());
    (hub, repo, commit, tempfile::tempdir().unwrap())
}

/// Downloads `request` from `hub` into `cache` with a client that does not retry.
fn download_from(
    hub: &StandInHub,
    cache: &Path,
    request: &DownloadRequest,
) -> prox_hub::Result<Download> {
    client(hub, cache, 0).download(request, &NoReporter)
}

/// What `hub` sent of `file`'s bytes: the transfers of its blob.
fn transfers_of(hub: &StandInHub, file: &HubFile) -> Vec<Logged> {
    hub.transfers()
        .into_iter()
        .filter(|t| t.target.ends_with(&file.sha256()))
        .collect()
}

/// Every `.incomplete` file below `dir`.
fn incomplete_files(dir: &Path) -> Vec<PathBuf> {
    let mut found = Vec::new();
    let Ok(entries) = std::fs::read_dir(dir) else {
        return found;
    };
    for entry in entries.flatten() {
        let path = entry.path();
        if path.is_dir() {
            found.extend(incomplete_files(&path));
        } else if path.to_string_lossy().ends_with(".incomplete") {
            found.push(path);
        }
    }
    found
}

#[test]
fn a_full_download_lays_out_the_cache_as_huggingface_hub_does() {
    let (hub, repo, commit, cache) = served_dataset();

    let download = download_from(&hub, cache.path(), &dataset_request()).unwrap();

    let dir = repo_dir(cache.path());
    assert_eq!(download.commit, commit);
    assert_eq!(download.folder, dir.join("snapshots").join(&commit));
    assert_eq!(
        std::fs::read_to_string(dir.join("refs/main")).unwrap(),
        commit
    );
    assert_eq!(download.files.len(), repo.files.len());
    let mut mismatches = Vec::new();
    for (file, report) in repo.files.iter().zip(&download.files) {
        let pointer = download.folder.join(&file.path);
        let ups = "../".repeat(1 + file.path.split('/').count());
        let expected_link = PathBuf::from(format!("{ups}blobs/{}", file.etag()));
        let link = std::fs::read_link(&pointer).ok();
        if link.as_ref() != Some(&expected_link) {
            mismatches.push(format!(
                "{}: link {link:?}, want {expected_link:?}",
                file.path
            ));
        }
        if std::fs::read(&pointer).ok().as_ref() != Some(&file.content) {
            mismatches.push(format!("{}: contents differ", file.path));
        }
        if !dir.join("blobs").join(file.etag()).is_file() {
            mismatches.push(format!("{}: no blob {}", file.path, file.etag()));
        }
        let fetched_all = Outcome::Fetched {
            bytes: file.content.len() as u64,
            resumed_from: 0,
        };
        if report.file != file.path || report.path != pointer || report.outcome != fetched_all {
            mismatches.push(format!("{}: report {report:?}", file.path));
        }
    }
    assert!(mismatches.is_empty(), "{mismatches:#?}");
    assert!(incomplete_files(cache.path()).is_empty());
    assert_eq!(
        download.bytes_fetched(),
        repo.files
            .iter()
            .map(|f| f.content.len() as u64)
            .sum::<u64>()
    );
    // LFS files went through the redirect to the CDN, the others straight from resolve/.
    let transfers = hub.transfers();
    assert_eq!(transfers.len(), repo.files.len());
    assert_eq!(
        transfers
            .iter()
            .filter(|t| t.target.starts_with("/cdn/"))
            .count(),
        2
    );
}

#[test]
fn a_second_run_downloads_nothing() {
    let (hub, _, _, cache) = served_dataset();
    let hub_client = client(&hub, cache.path(), 0);
    hub_client
        .download(&dataset_request(), &NoReporter)
        .unwrap();
    hub.clear_log();

    let again = hub_client
        .download(&dataset_request(), &NoReporter)
        .unwrap();

    assert!(again.files.iter().all(|f| f.outcome == Outcome::Present));
    assert_eq!(again.bytes_fetched(), 0);
    let requests = hub.requests();
    assert_eq!(requests.len(), 1, "{requests:#?}");
    assert!(requests[0]
        .target
        .starts_with("/api/datasets/gair-prox/RedPajama-pro/revision/main"));
}

#[test]
fn a_transfer_cut_midway_resumes_with_a_range_request_in_the_next_run() {
    let (hub, repo, commit, cache) = served_dataset();
    let big = repo.get(BIG).unwrap();
    hub.cut_next(BIG, 100_000);

    let error = download_from(&hub, cache.path(), &dataset_request()).unwrap_err();
    assert!(
        matches!(
            error,
            Error::Interrupted {
                received: 100_000,
                ..
            }
        ),
        "{error:?}"
    );
    let dir = repo_dir(cache.path());
    let partial = dir
        .join("blobs")
        .join(format!("{}.incomplete", big.sha256()));
    assert_eq!(std::fs::metadata(&partial).unwrap().len(), 100_000);
    let pointer = snapshot(cache.path(), &commit).join(BIG);
    assert!(std::fs::symlink_metadata(&pointer).is_err());
    hub.clear_log();

    let download = download_from(&hub, cache.path(), &dataset_request()).unwrap();

    assert_eq!(std::fs::read(&pointer).unwrap(), big.content);
    let report = download.files.iter().find(|f| f.file == BIG).unwrap();
    assert_eq!(
        report.outcome,
        Outcome::Fetched {
            bytes: (BIG_LEN - 100_000) as u64,
            resumed_from: 100_000
        }
    );
    let resumed = transfers_of(&hub, big);
    assert_eq!(resumed.len(), 1, "{resumed:#?}");
    assert_eq!(resumed[0].range.as_deref(), Some("bytes=100000-"));
    assert_eq!(resumed[0].status, 206);
    assert_eq!(resumed[0].body_bytes, (BIG_LEN - 100_000) as u64);
    assert!(incomplete_files(cache.path()).is_empty());
}

#[test]
fn a_transfer_cut_midway_is_resumed_within_the_run() {
    let (hub, repo, _, cache) = served_dataset();
    let big = repo.get(BIG).unwrap();
    hub.cut_next(BIG, 123_457);

    let download = client(&hub, cache.path(), 2)
        .download(&dataset_request(), &NoReporter)
        .unwrap();

    let report = download.files.iter().find(|f| f.file == BIG).unwrap();
    assert_eq!(std::fs::read(&report.path).unwrap(), big.content);
    let ranges: Vec<_> = transfers_of(&hub, big)
        .into_iter()
        .map(|t| (t.range, t.body_bytes))
        .collect();
    assert_eq!(
        ranges,
        [
            (None, 123_457),
            (Some("bytes=123457-".to_owned()), (BIG_LEN - 123_457) as u64)
        ]
    );
}

#[test]
fn a_sha256_mismatch_is_an_error_and_leaves_no_corrupt_file_behind() {
    let (hub, repo, commit, cache) = served_dataset();
    let big = repo.get(BIG).unwrap();
    hub.corrupt(BIG);

    let error = download_from(&hub, cache.path(), &dataset_request()).unwrap_err();

    match &error {
        Error::ChecksumMismatch { file, expected, .. } => {
            assert_eq!(file, BIG);
            assert_eq!(*expected, big.sha256());
        }
        other => panic!("expected a checksum mismatch, got {other:?}"),
    }
    let dir = repo_dir(cache.path());
    assert!(std::fs::symlink_metadata(snapshot(cache.path(), &commit).join(BIG)).is_err());
    assert!(!dir.join("blobs").join(big.sha256()).exists());
    assert!(incomplete_files(cache.path()).is_empty());
}

#[test]
fn a_gated_repo_needs_the_token_and_the_token_stays_with_the_hub() {
    let hub = StandInHub::start();
    let repo = HubRepo::model("meta-llama/Gated-1B")
        .file("config.json", "{}")
        .lfs_file("model.safetensors", bytes(5_000, 3))
        .gated("hf_right");
    let commit = hub.add(repo.clone());
    let cache = tempfile::tempdir().unwrap();
    let request = DownloadRequest::new("meta-llama/Gated-1B", RepoType::Model);

    let error = download_from(&hub, cache.path(), &request).unwrap_err();
    assert!(
        matches!(
            error,
            Error::Unauthorized {
                status: 401,
                token_sent: false,
                ..
            }
        ),
        "{error:?}"
    );
    let text = error.to_string();
    assert!(text.contains("set HF_TOKEN"), "{text}");
    assert!(text.contains("restricted"), "{text}");

    let wrong = client(&hub, cache.path(), 0).with_token(Some("hf_wrong".to_owned()));
    let error = wrong.download(&request, &NoReporter).unwrap_err();
    assert!(
        matches!(
            error,
            Error::Unauthorized {
                status: 403,
                token_sent: true,
                ..
            }
        ),
        "{error:?}"
    );
    assert!(
        error
            .to_string()
            .contains("token in HF_TOKEN has no access"),
        "{error}"
    );
    hub.clear_log();

    let right = client(&hub, cache.path(), 0).with_token(Some("hf_right".to_owned()));
    let download = right.download(&request, &NoReporter).unwrap();
    assert_eq!(
        download.folder,
        cache
            .path()
            .join("models--meta-llama--Gated-1B/snapshots")
            .join(commit)
    );
    assert_eq!(
        std::fs::read(download.folder.join("model.safetensors")).unwrap(),
        repo.get("model.safetensors").unwrap().content
    );
    let mut mismatches = Vec::new();
    for request in hub.requests() {
        let to_cdn = request.target.starts_with("/cdn/");
        let bearer = request.authorization.as_deref() == Some("Bearer hf_right");
        if to_cdn == bearer {
            mismatches.push(format!(
                "{} {}: {:?}",
                request.method, request.target, request.authorization
            ));
        }
    }
    assert!(
        mismatches.is_empty(),
        "the token must go to the hub and not to the CDN: {mismatches:#?}"
    );
}

#[test]
fn include_and_exclude_globs_select_files() {
    let (hub, _, commit, cache) = served_dataset();
    let mut request = dataset_request();
    request.include = vec!["*.parquet".to_owned(), "README.md".to_owned()];
    request.exclude = vec!["*00001*".to_owned()];

    let download = download_from(&hub, cache.path(), &request).unwrap();

    let names: Vec<&str> = download.files.iter().map(|f| f.file.as_str()).collect();
    assert_eq!(names, ["README.md", BIG]);
    let snapshot = snapshot(cache.path(), &commit);
    assert!(!snapshot.join("data/meta.json").exists());
    assert!(!snapshot.join("data/train-00001.parquet").exists());
    assert_eq!(hub.transfers().len(), 2);

    request.include = vec!["*.arrow".to_owned()];
    let error = download_from(&hub, cache.path(), &request).unwrap_err();
    assert!(
        matches!(error, Error::NothingMatched { files: 5, .. }),
        "{error:?}"
    );
}

#[test]
fn a_local_dir_gets_plain_files_and_huggingface_hub_records() {
    let (hub, repo, commit, cache) = served_dataset();
    let local = tempfile::tempdir().unwrap();
    let mut request = dataset_request();
    request.local_dir = Some(local.path().join("RedPajama-pro"));
    let hub_client = client(&hub, cache.path(), 0);

    let download = hub_client.download(&request, &NoReporter).unwrap();

    let dir = local.path().join("RedPajama-pro");
    assert_eq!(download.folder, dir);
    let mut mismatches = Vec::new();
    for file in &repo.files {
        let path = dir.join(&file.path);
        let meta = std::fs::symlink_metadata(&path).unwrap();
        if !meta.is_file() || std::fs::read(&path).unwrap() != file.content {
            mismatches.push(format!("{}: not a plain file with the contents", file.path));
        }
        let record = dir
            .join(".cache/huggingface/download")
            .join(format!("{}.metadata", file.path));
        let text = std::fs::read_to_string(&record).unwrap();
        let lines: Vec<&str> = text.lines().collect();
        if lines.len() != 3
            || lines[0] != commit
            || lines[1] != file.etag()
            || lines[2].parse::<f64>().is_err()
        {
            mismatches.push(format!("{}: record {text:?}", file.path));
        }
    }
    assert!(mismatches.is_empty(), "{mismatches:#?}");
    assert_eq!(
        std::fs::read_to_string(dir.join(".cache/huggingface/.gitignore")).unwrap(),
        "*"
    );
    assert!(
        !repo_dir(cache.path()).exists(),
        "a local-dir download leaves the cache alone"
    );
    assert!(incomplete_files(&dir).is_empty());
    hub.clear_log();

    let again = hub_client.download(&request, &NoReporter).unwrap();
    assert!(again.files.iter().all(|f| f.outcome == Outcome::Present));
    assert_eq!(hub.requests().len(), 1);
}

#[test]
fn a_local_dir_download_resumes_its_own_partial_file() {
    let (hub, repo, _, cache) = served_dataset();
    let local = tempfile::tempdir().unwrap();
    let mut request = dataset_request();
    request.local_dir = Some(local.path().to_path_buf());
    let big = repo.get(BIG).unwrap();
    hub.cut_next(BIG, 50_000);

    download_from(&hub, cache.path(), &request).unwrap_err();
    let partial = local
        .path()
        .join(".cache/huggingface/download/data")
        .join(format!("train-00000.parquet.{}.incomplete", big.sha256()));
    assert_eq!(std::fs::metadata(&partial).unwrap().len(), 50_000);
    assert!(!local.path().join(BIG).exists());

    download_from(&hub, cache.path(), &request).unwrap();
    assert_eq!(std::fs::read(local.path().join(BIG)).unwrap(), big.content);
    assert!(hub
        .transfers()
        .iter()
        .any(|t| t.range.as_deref() == Some("bytes=50000-")));
}

#[test]
fn a_commit_revision_writes_no_ref_and_an_unknown_one_is_not_found() {
    let (hub, _, commit, cache) = served_dataset();
    let mut request = dataset_request();
    request.revision = commit.clone();
    request.include = vec!["README.md".to_owned()];

    let download = download_from(&hub, cache.path(), &request).unwrap();
    assert_eq!(download.commit, commit);
    assert!(!repo_dir(cache.path()).join("refs").exists());

    request.revision = "v9".to_owned();
    let error = download_from(&hub, cache.path(), &request).unwrap_err();
    assert!(matches!(error, Error::NotFound { .. }), "{error:?}");
    assert!(error.to_string().contains("revision/v9"), "{error}");
}

#[test]
fn a_blob_already_in_the_cache_is_linked_not_fetched_again() {
    let (hub, _, commit, cache) = served_dataset();
    let hub_client = client(&hub, cache.path(), 0);
    hub_client
        .download(&dataset_request(), &NoReporter)
        .unwrap();
    let pointer = snapshot(cache.path(), &commit).join(BIG);
    std::fs::remove_file(&pointer).unwrap();
    hub.clear_log();

    let again = hub_client
        .download(&dataset_request(), &NoReporter)
        .unwrap();

    let report = again.files.iter().find(|f| f.file == BIG).unwrap();
    assert_eq!(report.outcome, Outcome::Linked);
    assert!(pointer.is_file());
    assert!(hub.transfers().is_empty());
}

#[test]
fn an_unknown_repository_says_to_set_the_token() {
    let hub = StandInHub::start();
    let cache = tempfile::tempdir().unwrap();
    let request = DownloadRequest::new("nobody/nothing", RepoType::Model);
    let error = download_from(&hub, cache.path(), &request).unwrap_err();
    assert!(
        matches!(error, Error::Unauthorized { status: 401, .. }),
        "{error:?}"
    );
    assert!(
        error.to_string().contains("Repository Not Found"),
        "{error}"
    );
}

#[test]
fn a_hub_that_does_not_answer_is_an_error_naming_the_url() {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let endpoint = format!("http://{}", listener.local_addr().unwrap());
    drop(listener);
    let cache = tempfile::tempdir().unwrap();
    let error = Hub::new(&endpoint, cache.path())
        .with_retries(1, Duration::from_millis(1))
        .download(&dataset_request(), &NoReporter)
        .unwrap_err();
    assert!(matches!(error, Error::Transport { .. }), "{error:?}");
    assert!(error.to_string().contains(&endpoint), "{error}");
}

#[test]
fn concurrent_downloads_into_one_cache_fetch_each_file_once() {
    let (hub, repo, commit, cache) = served_dataset();

    std::thread::scope(|scope| {
        let runs: Vec<_> = (0..4)
            .map(|_| {
                scope.spawn(|| {
                    client(&hub, cache.path(), 0).download(&dataset_request(), &NoReporter)
                })
            })
            .collect();
        for run in runs {
            run.join().unwrap().unwrap();
        }
    });

    let snapshot = snapshot(cache.path(), &commit);
    let transfers = hub.transfers();
    let mut mismatches = Vec::new();
    for file in &repo.files {
        if std::fs::read(snapshot.join(&file.path)).unwrap() != file.content {
            mismatches.push(format!("{}: contents differ", file.path));
        }
        let key = if file.lfs {
            file.sha256()
        } else {
            file.path.clone()
        };
        let times = transfers
            .iter()
            .filter(|t| t.target.ends_with(&key))
            .count();
        if times != 1 {
            mismatches.push(format!("{}: transferred {times} times", file.path));
        }
    }
    assert!(mismatches.is_empty(), "{mismatches:#?}");
    assert!(incomplete_files(cache.path()).is_empty());
}

#[test]
fn a_server_that_ignores_the_range_gets_the_file_fetched_again_from_the_start() {
    let (hub, repo, commit, cache) = served_dataset();
    let big = repo.get(BIG).unwrap();
    hub.cut_next(BIG, 100_000);
    download_from(&hub, cache.path(), &dataset_request()).unwrap_err();
    hub.ignore_ranges();
    hub.clear_log();

    let download = download_from(&hub, cache.path(), &dataset_request()).unwrap();

    let pointer = snapshot(cache.path(), &commit).join(BIG);
    assert_eq!(std::fs::read(pointer).unwrap(), big.content);
    let report = download.files.iter().find(|f| f.file == BIG).unwrap();
    assert!(
        matches!(report.outcome, Outcome::Fetched { bytes, .. } if bytes == BIG_LEN as u64),
        "{report:?}"
    );
    let sent: Vec<_> = transfers_of(&hub, big)
        .into_iter()
        .map(|t| (t.range, t.status, t.body_bytes))
        .collect();
    assert_eq!(
        sent,
        [(Some("bytes=100000-".to_owned()), 200, BIG_LEN as u64)]
    );
}
