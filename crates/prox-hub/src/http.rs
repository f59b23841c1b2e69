//! The hub's HTTP surface: URLs, requests with the token, status codes turned into errors,
//! and the headers that describe a file.

use std::time::Duration;

use crate::error::{Error, Result};

/// Two agents: one that never follows redirects, to read a file's metadata from the hub's own
/// answer (an LFS file's `X-Linked-Etag` is on the 302, not on the CDN's answer), and one for
/// transfers that follows them.
#[derive(Debug, Clone)]
pub(crate) struct Client {
    endpoint: String,
    token: Option<String>,
    no_redirects: ureq::Agent,
    transfers: ureq::Agent,
}

/// What a `HEAD` of a `resolve/` URL says about a file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct FileMetadata {
    /// The commit the hub resolved the revision to, when it said.
    pub commit: Option<String>,
    /// The blob's name: the sha256 of an LFS file, the git blob id of any other.
    pub etag: String,
    pub size: u64,
    /// Where the bytes are: the CDN for LFS files, the `resolve/` URL itself otherwise.
    pub location: String,
}

const USER_AGENT: &str = concat!(
    "prox-hub/",
    env!("CARGO_PKG_VERSION"),
    "; hf_hub/compatible"
);

impl Client {
    pub fn new(endpoint: &str, token: Option<String>) -> Self {
        let builder = || {
            ureq::AgentBuilder::new()
                .user_agent(USER_AGENT)
                .timeout_connect(Duration::from_secs(30))
                .timeout_read(Duration::from_secs(60))
                .try_proxy_from_env(true)
        };
        Client {
            endpoint: endpoint.trim_end_matches('/').to_owned(),
            token,
            no_redirects: builder().redirects(0).build(),
            // ureq's default drops Authorization on every redirect, so the token never
            // reaches the CDN a presigned LFS URL points to.
            transfers: builder().build(),
        }
    }

    pub fn endpoint(&self) -> &str {
        &self.endpoint
    }

    /// The token goes to the hub only, never to another host a `Location` named.
    fn authorize(&self, request: ureq::Request, url: &str) -> ureq::Request {
        let request = request.set("Accept-Encoding", "identity");
        match &self.token {
            Some(token) if same_origin(url, &self.endpoint) => {
                request.set("Authorization", &format!("Bearer {token}"))
            }
            _ => request,
        }
    }

    pub fn get_json(&self, url: &str) -> Result<serde_json::Value> {
        let request = self.authorize(self.transfers.get(url), url);
        let response = self.call(request, url)?;
        let reader = response.into_reader();
        serde_json::from_reader(reader).map_err(|e| Error::BadResponse {
            url: url.to_owned(),
            reason: format!("not the JSON of a repository: {e}"),
        })
    }

    /// `HEAD` of a `resolve/` URL, following only relative redirects (a renamed repository),
    /// as `huggingface_hub` does; an absolute one is where the bytes are.
    pub fn file_metadata(&self, url: &str) -> Result<FileMetadata> {
        let mut current = url.to_owned();
        for _ in 0..10 {
            let request = self.authorize(self.no_redirects.head(&current), &current);
            let response = self.call(request, &current)?;
            let status = response.status();
            let location = response.header("Location").map(str::to_owned);
            if (300..400).contains(&status) {
                if let Some(relative) = location.as_deref().filter(|l| l.starts_with('/')) {
                    current = format!("{}{relative}", origin(&current));
                    continue;
                }
            }
            let header = |name: &str| response.header(name).map(str::to_owned);
            let etag = header("X-Linked-Etag")
                .or_else(|| header("ETag"))
                .map(|e| normalize_etag(&e))
                .filter(|e| !e.is_empty())
                .ok_or_else(|| bad(&current, "no ETag header"))?;
            let size = header("X-Linked-Size")
                .or_else(|| header("Content-Length"))
                .and_then(|s| s.trim().parse::<u64>().ok())
                .ok_or_else(|| bad(&current, "no X-Linked-Size or Content-Length header"))?;
            let location = match location.filter(|_| (300..400).contains(&status)) {
                Some(absolute) => absolute,
                None => current.clone(),
            };
            return Ok(FileMetadata {
                commit: header("X-Repo-Commit"),
                etag,
                size,
                location,
            });
        }
        Err(bad(url, "more than 10 redirects"))
    }

    /// `GET` of `url` from byte `from` on (the whole file when 0).
    pub fn get_from(&self, url: &str, from: u64) -> Result<ureq::Response> {
        let mut request = self.authorize(self.transfers.get(url), url);
        if from > 0 {
            request = request.set("Range", &format!("bytes={from}-"));
        }
        self.call(request, url)
    }

    fn call(&self, request: ureq::Request, url: &str) -> Result<ureq::Response> {
        match request.call() {
            Ok(response) => Ok(response),
            Err(ureq::Error::Status(status, response)) => {
                Err(self.status_error(status, response, url))
            }
            Err(ureq::Error::Transport(transport)) => Err(Error::Transport {
                url: url.to_owned(),
                message: transport.to_string(),
            }),
        }
    }

    fn status_error(&self, status: u16, response: ureq::Response, url: &str) -> Error {
        let message = hub_message(response);
        let url = url.to_owned();
        match status {
            401 | 403 => Error::Unauthorized {
                url,
                status,
                message,
                token_sent: self.token.is_some(),
            },
            404 => Error::NotFound { url, message },
            _ => Error::Status {
                url,
                status,
                message,
            },
        }
    }
}

fn bad(url: &str, reason: &str) -> Error {
    Error::BadResponse {
        url: url.to_owned(),
        reason: reason.to_owned(),
    }
}

/// The hub explains an error in `X-Error-Message` or a JSON body's `error`.
fn hub_message(response: ureq::Response) -> String {
    let header = response
        .header("X-Error-Message")
        .map(str::to_owned)
        .filter(|m| !m.is_empty());
    if let Some(message) = header {
        return message;
    }
    let status_text = response.status_text().to_owned();
    let mut body = String::new();
    // A bounded read: an error page is short, and a hostile one must not fill memory.
    let _ = std::io::Read::read_to_string(
        &mut std::io::Read::take(response.into_reader(), 64 * 1024),
        &mut body,
    );
    serde_json::from_str::<serde_json::Value>(&body)
        .ok()
        .and_then(|v| v.get("error").and_then(|e| e.as_str()).map(str::to_owned))
        .or_else(|| Some(body.trim().to_owned()).filter(|b| !b.is_empty() && b.len() < 300))
        .unwrap_or(status_text)
}

/// `W/"abc"` and `"abc"` are both `abc`: the hub quotes ETags, and a proxy may weaken them.
pub(crate) fn normalize_etag(etag: &str) -> String {
    let etag = etag.trim();
    let etag = etag.strip_prefix("W/").unwrap_or(etag);
    etag.trim_matches('"').to_owned()
}

/// The first byte of a `Content-Range: bytes START-END/TOTAL` answer.
pub(crate) fn content_range_start(value: &str) -> Option<u64> {
    let rest = value.trim().strip_prefix("bytes")?.trim_start();
    let (range, _total) = rest.split_once('/')?;
    let (start, end) = range.split_once('-')?;
    let start = start.trim().parse::<u64>().ok()?;
    let end = end.trim().parse::<u64>().ok()?;
    (start <= end).then_some(start)
}

/// `scheme://host:port` of a URL.
fn origin(url: &str) -> &str {
    let after_scheme = url.find("://").map_or(0, |i| i + 3);
    match url[after_scheme..].find('/') {
        Some(i) => &url[..after_scheme + i],
        None => url,
    }
}

fn same_origin(url: &str, endpoint: &str) -> bool {
    origin(url).eq_ignore_ascii_case(origin(endpoint))
}

/// Percent-encodes all but unreserved characters, and `/` too unless `keep_slash`: file
/// paths keep their slashes, revisions (`refs/pr/1`) do not, as in `huggingface_hub`.
pub(crate) fn quote(text: &str, keep_slash: bool) -> String {
    let mut out = String::with_capacity(text.len());
    for byte in text.bytes() {
        match byte {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'.' | b'_' | b'~' => {
                out.push(byte as char)
            }
            b'/' if keep_slash => out.push('/'),
            _ => out.push_str(&format!("%{byte:02X}")),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn etags_lose_their_quotes_and_weakness() {
        assert_eq!(normalize_etag("\"abc\""), "abc");
        assert_eq!(normalize_etag("W/\"abc\""), "abc");
        assert_eq!(normalize_etag(" abc "), "abc");
    }

    #[test]
    fn content_ranges_give_their_start() {
        assert_eq!(content_range_start("bytes 100-199/200"), Some(100));
        assert_eq!(content_range_start("bytes 0-0/1"), Some(0));
        assert_eq!(content_range_start("bytes */200"), None);
        assert_eq!(content_range_start("bytes 5-4/10"), None);
        assert_eq!(content_range_start("items 0-1/2"), None);
    }

    #[test]
    fn the_token_goes_to_the_hub_only() {
        assert!(same_origin(
            "https://huggingface.co/org/x/resolve/main/a",
            "https://huggingface.co"
        ));
        assert!(!same_origin(
            "https://cdn-lfs.huggingface.co/repos/ab/cd",
            "https://huggingface.co"
        ));
        assert!(!same_origin("http://127.0.0.1:81/a", "http://127.0.0.1:8"));
    }

    #[test]
    fn revisions_are_quoted_whole_and_paths_keep_slashes() {
        assert_eq!(quote("refs/pr/1", false), "refs%2Fpr%2F1");
        assert_eq!(
            quote("data/part 1+x.parquet", true),
            "data/part%201%2Bx.parquet"
        );
    }

    proptest! {
        #[test]
        fn any_content_range_header_parses_or_is_refused_without_panic(text in "\\PC*") {
            let _ = content_range_start(&text);
            let _ = normalize_etag(&text);
            let _ = origin(&text);
        }

        #[test]
        fn content_ranges_round_trip(start in 0u64..u64::MAX / 2, len in 0u64..1 << 40) {
            let header = format!("bytes {start}-{}/{}", start + len, start + len + 1);
            prop_assert_eq!(content_range_start(&header), Some(start));
        }

        #[test]
        fn quoting_leaves_only_url_safe_characters(text in "\\PC*") {
            let quoted = quote(&text, true);
            prop_assert!(quoted.bytes().all(|b| b.is_ascii_alphanumeric() || b"-._~/%".contains(&b)));
        }
    }
}
