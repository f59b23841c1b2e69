//! A stand-in for the Hugging Face hub on loopback, answering as the real hub does, for
//! download tests that must not touch the network.
//!
//! What it serves, for the repositories added to it:
//! - `GET /api/{models|datasets}/{id}/revision/{rev}`: `{"id", "sha", "siblings": [...]}`, the
//!   siblings with `size`, `blobId` and, for LFS files, `lfs: {sha256, size, pointerSize}` when
//!   the query has `blobs=true` (bare `rfilename`s otherwise); `rev` is `main` or the commit;
//! - `HEAD`/`GET /{id}/resolve/{rev}/{path}` (`/datasets/{id}/resolve/...` for datasets): a
//!   regular file directly with `ETag` (its blob id) and `X-Repo-Commit`; an LFS file as a 302
//!   to `/cdn/{sha256}` with `X-Linked-Etag` (the sha256), `X-Linked-Size`, `X-Repo-Commit`;
//! - `HEAD`/`GET /cdn/{sha256}` on a second port (another origin, as the CDN is another
//!   host): the bytes, as a presigned CDN URL gives them, without a token;
//! - `Range: bytes=N-` and `bytes=N-M` everywhere bytes are served (206 and `Content-Range`);
//! - a gated repository answers 401 without a token and 403 with another one on `resolve/`,
//!   while its listing stays public, as on the hub; an unknown repository is a 401
//!   (`RepoNotFound`), an unknown revision or file a 404.
//!
//! Faults on demand: [`StandInHub::cut_next`] drops the connection after N body bytes of the
//! next transfer of a file; [`StandInHub::corrupt`] serves a file with one byte changed;
//! [`StandInHub::ignore_ranges`] answers every `Range` with the whole file. Every
//! request is logged ([`StandInHub::requests`]).
//!
//! One thread per connection and `Connection: close`: enough for tests, and it keeps every
//! byte on the wire under the test's control.

use std::io::{BufRead, BufReader, Write};
use std::net::{Shutdown, SocketAddr, TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::thread::JoinHandle;
use std::time::Duration;

use sha2::{Digest, Sha256};

/// Models or datasets.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    Model,
    Dataset,
}

/// A file of a stand-in repository.
#[derive(Debug, Clone)]
pub struct HubFile {
    pub path: String,
    pub content: Vec<u8>,
    /// Stored with LFS: served by redirect, listed with its sha256.
    pub lfs: bool,
}

impl HubFile {
    /// Hex sha256 of the content: an LFS file's blob name in the cache.
    pub fn sha256(&self) -> String {
        hex(&Sha256::digest(&self.content))
    }

    /// The git blob id stands in for a regular file's ETag: 40 hex digits, stable.
    pub fn blob_id(&self) -> String {
        let mut hasher = Sha256::new();
        hasher.update(format!("blob {}\0", self.content.len()));
        hasher.update(&self.content);
        hex(&hasher.finalize())[..40].to_owned()
    }

    /// The name the hub's headers give the file's contents, hence its blob in the cache.
    pub fn etag(&self) -> String {
        if self.lfs {
            self.sha256()
        } else {
            self.blob_id()
        }
    }
}

/// A repository of the stand-in hub at one commit.
#[derive(Debug, Clone)]
pub struct HubRepo {
    pub kind: Kind,
    pub id: String,
    pub files: Vec<HubFile>,
    /// Gated: `resolve/` needs `Authorization: Bearer <token>`.
    pub token: Option<String>,
}

impl HubRepo {
    pub fn model(id: &str) -> Self {
        HubRepo {
            kind: Kind::Model,
            id: id.to_owned(),
            files: Vec::new(),
            token: None,
        }
    }

    pub fn dataset(id: &str) -> Self {
        HubRepo {
            kind: Kind::Dataset,
            ..HubRepo::model(id)
        }
    }

    /// A regular (git) file.
    pub fn file(mut self, path: &str, content: impl Into<Vec<u8>>) -> Self {
        self.files.push(HubFile {
            path: path.to_owned(),
            content: content.into(),
            lfs: false,
        });
        self
    }

    /// An LFS file.
    pub fn lfs_file(mut self, path: &str, content: impl Into<Vec<u8>>) -> Self {
        self.files.push(HubFile {
            path: path.to_owned(),
            content: content.into(),
            lfs: true,
        });
        self
    }

    /// Every file of a folder (not recursive), as LFS when `lfs` says so.
    pub fn folder(
        mut self,
        dir: &std::path::Path,
        lfs: impl Fn(&str) -> bool,
    ) -> std::io::Result<Self> {
        let mut names: Vec<String> = std::fs::read_dir(dir)?
            .filter_map(|e| e.ok())
            .filter(|e| e.path().is_file())
            .filter_map(|e| e.file_name().into_string().ok())
            .collect();
        names.sort();
        for name in names {
            let content = std::fs::read(dir.join(&name))?;
            let is_lfs = lfs(&name);
            self.files.push(HubFile {
                lfs: is_lfs,
                path: name,
                content,
            });
        }
        Ok(self)
    }

    /// Only with this token may its files be fetched.
    pub fn gated(mut self, token: &str) -> Self {
        self.token = Some(token.to_owned());
        self
    }

    /// The commit hash: 40 hex digits derived from every path and content.
    pub fn commit(&self) -> String {
        let mut hasher = Sha256::new();
        for file in &self.files {
            hasher.update(file.path.as_bytes());
            hasher.update([0]);
            hasher.update(file.sha256().as_bytes());
        }
        hex(&hasher.finalize())[..40].to_owned()
    }

    pub fn get(&self, path: &str) -> Option<&HubFile> {
        self.files.iter().find(|f| f.path == path)
    }
}

/// One request as the stand-in saw it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Logged {
    pub method: String,
    /// The path and query as sent (still percent-encoded).
    pub target: String,
    pub range: Option<String>,
    pub authorization: Option<String>,
    pub status: u16,
    /// Body bytes written (0 for `HEAD`).
    pub body_bytes: u64,
}

impl Logged {
    /// A `GET` that carried file contents (not a listing, a redirect or an error).
    pub fn is_transfer(&self) -> bool {
        self.method == "GET"
            && matches!(self.status, 200 | 206)
            && !self.target.starts_with("/api/")
    }
}

#[derive(Default)]
struct State {
    repos: Vec<HubRepo>,
    log: Vec<Logged>,
    /// (file path, bytes): the next transfer of that file stops after so many body bytes.
    cuts: Vec<(String, u64)>,
    corrupt: Vec<String>,
    ignore_ranges: bool,
}

/// The stand-in hub; it stops when dropped.
pub struct StandInHub {
    addr: SocketAddr,
    cdn: SocketAddr,
    state: Arc<Mutex<State>>,
    stop: Arc<AtomicBool>,
    threads: Vec<JoinHandle<()>>,
}

impl StandInHub {
    /// Listens on a free loopback port.
    pub fn start() -> StandInHub {
        let bind = || {
            let listener = TcpListener::bind("127.0.0.1:0").expect("bind a loopback port");
            let addr = listener
                .local_addr()
                .expect("a bound listener has an address");
            (listener, addr)
        };
        let (hub_listener, addr) = bind();
        let (cdn_listener, cdn) = bind();
        let state = Arc::new(Mutex::new(State::default()));
        let stop = Arc::new(AtomicBool::new(false));
        let threads = [hub_listener, cdn_listener]
            .into_iter()
            .map(|listener| {
                let state = Arc::clone(&state);
                let stop = Arc::clone(&stop);
                std::thread::spawn(move || {
                    for stream in listener.incoming() {
                        if stop.load(Ordering::SeqCst) {
                            break;
                        }
                        let Ok(stream) = stream else { continue };
                        let state = Arc::clone(&state);
                        std::thread::spawn(move || serve(stream, cdn, &state));
                    }
                })
            })
            .collect();
        StandInHub {
            addr,
            cdn,
            state,
            stop,
            threads,
        }
    }

    /// `http://127.0.0.1:PORT`, for `HF_ENDPOINT`.
    pub fn endpoint(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// Serves `repo` (replacing one of the same kind and id); returns its commit.
    pub fn add(&self, repo: HubRepo) -> String {
        let commit = repo.commit();
        let mut state = self.lock();
        state
            .repos
            .retain(|r| !(r.kind == repo.kind && r.id == repo.id));
        state.repos.push(repo);
        commit
    }

    /// The next transfer of `file` (a repository path) sends `after` body bytes, then drops
    /// the connection.
    pub fn cut_next(&self, file: &str, after: u64) {
        self.lock().cuts.push((file.to_owned(), after));
    }

    /// From now on `file` is served with its middle byte changed (same size).
    pub fn corrupt(&self, file: &str) {
        self.lock().corrupt.push(file.to_owned());
    }

    /// From now on `Range` headers are ignored and whole files sent, as some servers do.
    pub fn ignore_ranges(&self) {
        self.lock().ignore_ranges = true;
    }

    /// Every request so far.
    pub fn requests(&self) -> Vec<Logged> {
        self.lock().log.clone()
    }

    /// The requests that carried file contents.
    pub fn transfers(&self) -> Vec<Logged> {
        self.requests()
            .into_iter()
            .filter(Logged::is_transfer)
            .collect()
    }

    pub fn clear_log(&self) {
        self.lock().log.clear();
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        lock(&self.state)
    }
}

impl Drop for StandInHub {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        // Wakes the accept loops so that they see the flag.
        let _ = TcpStream::connect(self.addr);
        let _ = TcpStream::connect(self.cdn);
        for thread in self.threads.drain(..) {
            let _ = thread.join();
        }
    }
}

fn lock(state: &Mutex<State>) -> MutexGuard<'_, State> {
    // A panicking handler thread must not hide the test's own assertion behind a poison error.
    state.lock().unwrap_or_else(|e| e.into_inner())
}

struct Request {
    method: String,
    target: String,
    range: Option<String>,
    authorization: Option<String>,
}

struct Response {
    status: u16,
    headers: Vec<(String, String)>,
    body: Vec<u8>,
    /// The file whose bytes these are, for cuts.
    file: Option<String>,
}

impl Response {
    fn new(status: u16) -> Self {
        Response {
            status,
            headers: Vec::new(),
            body: Vec::new(),
            file: None,
        }
    }

    fn header(mut self, name: &str, value: impl Into<String>) -> Self {
        self.headers.push((name.to_owned(), value.into()));
        self
    }

    fn json(status: u16, value: &serde_json::Value) -> Self {
        let mut response =
            Response::new(status).header("Content-Type", "application/json; charset=utf-8");
        response.body = value.to_string().into_bytes();
        response
    }

    fn error(status: u16, code: &str, message: &str) -> Self {
        Response::json(status, &serde_json::json!({ "error": message }))
            .header("X-Error-Code", code)
            .header("X-Error-Message", message)
    }
}

fn serve(stream: TcpStream, cdn: SocketAddr, state: &Mutex<State>) {
    let _ = stream.set_read_timeout(Some(Duration::from_secs(10)));
    let Some(request) = read_request(&stream) else {
        return;
    };
    let response = route(&request, cdn, state);
    let mut cut = None;
    if request.method == "GET" && matches!(response.status, 200 | 206) {
        if let Some(file) = &response.file {
            let mut state = lock(state);
            if let Some(i) = state.cuts.iter().position(|(f, _)| f == file) {
                cut = Some(state.cuts.remove(i).1);
            }
        }
    }
    let body: &[u8] = if request.method == "HEAD" {
        &[]
    } else {
        let end = cut.map_or(response.body.len(), |n| {
            (n as usize).min(response.body.len())
        });
        &response.body[..end]
    };
    lock(state).log.push(Logged {
        method: request.method.clone(),
        target: request.target.clone(),
        range: request.range.clone(),
        authorization: request.authorization.clone(),
        status: response.status,
        body_bytes: body.len() as u64,
    });
    let mut head = format!(
        "HTTP/1.1 {} {}\r\n",
        response.status,
        reason(response.status)
    );
    for (name, value) in &response.headers {
        head.push_str(&format!("{name}: {value}\r\n"));
    }
    head.push_str(&format!(
        "Content-Length: {}\r\nConnection: close\r\n\r\n",
        response.body.len()
    ));
    let mut stream = stream;
    let _ = stream.write_all(head.as_bytes());
    let _ = stream.write_all(body);
    let _ = stream.flush();
    let _ = stream.shutdown(Shutdown::Both);
}

fn read_request(stream: &TcpStream) -> Option<Request> {
    let mut reader = BufReader::new(stream);
    let mut line = String::new();
    reader.read_line(&mut line).ok()?;
    let mut parts = line.split_whitespace();
    let method = parts.next()?.to_owned();
    let target = parts.next()?.to_owned();
    let (mut range, mut authorization) = (None, None);
    loop {
        let mut header = String::new();
        if reader.read_line(&mut header).ok()? == 0 || header.trim().is_empty() {
            break;
        }
        if let Some((name, value)) = header.split_once(':') {
            match name.trim().to_ascii_lowercase().as_str() {
                "range" => range = Some(value.trim().to_owned()),
                "authorization" => authorization = Some(value.trim().to_owned()),
                _ => {}
            }
        }
    }
    Some(Request {
        method,
        target,
        range,
        authorization,
    })
}

fn route(request: &Request, cdn: SocketAddr, state: &Mutex<State>) -> Response {
    if request.method != "GET" && request.method != "HEAD" {
        return Response::error(405, "MethodNotAllowed", "only GET and HEAD");
    }
    let (path, query) = request
        .target
        .split_once('?')
        .unwrap_or((&request.target, ""));
    let path = percent_decode(path);
    let state = lock(state);
    if let Some(rest) = path.strip_prefix("/api/") {
        return listing(rest, query, &state.repos);
    }
    if let Some(sha) = path.strip_prefix("/cdn/") {
        let found = state
            .repos
            .iter()
            .flat_map(|r| r.files.iter())
            .find(|f| f.lfs && f.sha256() == sha);
        return match found {
            Some(file) => contents(file, request, &state),
            None => Response::error(404, "EntryNotFound", "no such object"),
        };
    }
    let (kind, rest) = match path.strip_prefix("/datasets/") {
        Some(rest) => (Kind::Dataset, rest),
        None => (Kind::Model, path.trim_start_matches('/')),
    };
    let Some((id, rest)) = rest.split_once("/resolve/") else {
        return Response::error(404, "NotFound", "no such route");
    };
    let Some(repo) = state.repos.iter().find(|r| r.kind == kind && r.id == id) else {
        return Response::error(401, "RepoNotFound", "Repository Not Found");
    };
    let Some((revision, file)) = rest.split_once('/') else {
        return Response::error(404, "EntryNotFound", "no file named");
    };
    let commit = repo.commit();
    if revision != "main" && revision != commit {
        return Response::error(404, "RevisionNotFound", "Invalid rev id");
    }
    if let Some(token) = &repo.token {
        let expected = format!("Bearer {token}");
        match &request.authorization {
            None => {
                return Response::error(
                    401,
                    "GatedRepo",
                    &format!("Access to model {id} is restricted. You must have access to it and be authenticated to access it. Please log in."),
                )
            }
            Some(given) if *given != expected => {
                return Response::error(
                    403,
                    "GatedRepo",
                    &format!("Access to model {id} is restricted and you are not in the authorized list."),
                )
            }
            Some(_) => {}
        }
    }
    let Some(hub_file) = repo.get(file) else {
        return Response::error(404, "EntryNotFound", "Entry not found");
    };
    if hub_file.lfs {
        let sha = hub_file.sha256();
        return Response::new(302)
            .header("Location", format!("http://{cdn}/cdn/{sha}"))
            .header("X-Repo-Commit", commit.as_str())
            .header("X-Linked-Etag", format!("\"{sha}\""))
            .header("X-Linked-Size", hub_file.content.len().to_string())
            .header("ETag", format!("\"{}\"", hub_file.blob_id()));
    }
    contents(hub_file, request, &state).header("X-Repo-Commit", commit.as_str())
}

fn listing(rest: &str, query: &str, repos: &[HubRepo]) -> Response {
    let (kind, rest) = if let Some(rest) = rest.strip_prefix("models/") {
        (Kind::Model, rest)
    } else if let Some(rest) = rest.strip_prefix("datasets/") {
        (Kind::Dataset, rest)
    } else {
        return Response::error(404, "NotFound", "no such route");
    };
    let (id, revision) = rest.split_once("/revision/").unwrap_or((rest, "main"));
    let Some(repo) = repos.iter().find(|r| r.kind == kind && r.id == id) else {
        return Response::error(401, "RepoNotFound", "Repository Not Found");
    };
    let commit = repo.commit();
    if revision != "main" && revision != commit {
        return Response::error(
            404,
            "RevisionNotFound",
            &format!("Invalid rev id: {revision}"),
        );
    }
    let blobs = query
        .split('&')
        .any(|p| p == "blobs=true" || p == "blobs=True");
    let siblings: Vec<serde_json::Value> = repo
        .files
        .iter()
        .map(|f| {
            if !blobs {
                return serde_json::json!({ "rfilename": f.path });
            }
            let mut sibling = serde_json::json!({
                "rfilename": f.path,
                "size": f.content.len(),
                "blobId": f.blob_id(),
            });
            if f.lfs {
                sibling["lfs"] = serde_json::json!({
                    "sha256": f.sha256(),
                    "size": f.content.len(),
                    "pointerSize": 134,
                });
            }
            sibling
        })
        .collect();
    let mut body = serde_json::json!({
        "_id": &commit[..24],
        "id": repo.id,
        "private": false,
        "gated": if repo.token.is_some() { serde_json::json!("manual") } else { serde_json::json!(false) },
        "disabled": false,
        "sha": commit,
        "siblings": siblings,
    });
    if kind == Kind::Model {
        body["modelId"] = serde_json::json!(repo.id);
    }
    Response::json(200, &body)
}

/// A file's bytes, honouring `Range: bytes=N-` and `bytes=N-M`.
fn contents(file: &HubFile, request: &Request, state: &State) -> Response {
    let mut content = file.content.clone();
    if state.corrupt.contains(&file.path) && !content.is_empty() {
        let middle = content.len() / 2;
        content[middle] ^= 0xff;
    }
    let total = content.len() as u64;
    let range = request
        .range
        .as_deref()
        .filter(|_| !state.ignore_ranges)
        .and_then(parse_range);
    let mut response = match range {
        Some((start, end)) if start < total => {
            let end = end.unwrap_or(total - 1).min(total - 1);
            let mut response =
                Response::new(206).header("Content-Range", format!("bytes {start}-{end}/{total}"));
            response.body = content[start as usize..=end as usize].to_vec();
            response
        }
        Some(_) => Response::error(416, "RangeNotSatisfiable", "Range Not Satisfiable")
            .header("Content-Range", format!("bytes */{total}")),
        None => {
            let mut response = Response::new(200);
            response.body = content;
            response
        }
    };
    response.file = Some(file.path.clone());
    response
        .header("ETag", format!("\"{}\"", file.etag()))
        .header("Accept-Ranges", "bytes")
        .header("Content-Type", "application/octet-stream")
}

fn parse_range(value: &str) -> Option<(u64, Option<u64>)> {
    let (start, end) = value.trim().strip_prefix("bytes=")?.split_once('-')?;
    let start = start.parse().ok()?;
    let end = if end.is_empty() {
        None
    } else {
        Some(end.parse().ok()?)
    };
    Some((start, end))
}

fn percent_decode(text: &str) -> String {
    let bytes = text.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        let hex_pair = bytes
            .get(i + 1..i + 3)
            .and_then(|h| std::str::from_utf8(h).ok())
            .and_then(|h| u8::from_str_radix(h, 16).ok());
        match (bytes[i], hex_pair) {
            (b'%', Some(byte)) => {
                out.push(byte);
                i += 3;
            }
            (byte, _) => {
                out.push(byte);
                i += 1;
            }
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

fn reason(status: u16) -> &'static str {
    match status {
        200 => "OK",
        206 => "Partial Content",
        302 => "Found",
        401 => "Unauthorized",
        403 => "Forbidden",
        404 => "Not Found",
        405 => "Method Not Allowed",
        416 => "Range Not Satisfiable",
        _ => "Other",
    }
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}
