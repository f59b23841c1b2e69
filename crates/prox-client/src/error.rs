//! What can go wrong talking to a server, with the URL and what it answered.

use std::time::Duration;

// reqwest's own message says only "error sending request"; the causes say why (connection
// refused, reset by peer…).
pub(crate) use prox_error::error_chain;

/// An error from [`Client::connect`](crate::Client::connect) or one request of
/// [`Client::complete`](crate::Client::complete).
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ClientError {
    /// The options cannot work (an endpoint that is not an http(s) URL, zero requests in
    /// flight).
    #[error("invalid client options: {0}")]
    InvalidOptions(String),
    /// The client's runtime could not be started.
    #[error("cannot start the HTTP client")]
    Runtime(#[source] std::io::Error),
    /// No connection could be made.
    #[error("cannot reach {url}: {reason}")]
    Unreachable { url: String, reason: String },
    /// The server did not answer in time.
    #[error("{url} did not answer within {after:?}")]
    Timeout { url: String, after: Duration },
    /// The connection broke while sending or receiving.
    #[error("the connection to {url} failed: {reason}")]
    Transport { url: String, reason: String },
    /// The server answered with an error status; `body` is its answer, shortened.
    #[error("{url} answered HTTP {status}: {body}")]
    Status {
        url: String,
        status: u16,
        body: String,
    },
    /// The server answered `200` with something that is not the expected JSON.
    #[error("{url} sent a malformed response ({reason}): {body}")]
    Malformed {
        url: String,
        reason: String,
        body: String,
    },
    /// `/v1/models` lists no model.
    #[error("{url} lists no model")]
    NoModel { url: String },
    /// The model asked for is not among those the server lists.
    #[error("{url} does not serve the model `{model}`; it serves: {served}")]
    ModelNotServed {
        url: String,
        model: String,
        served: String,
    },
    /// A retryable failure that persisted through every retry.
    #[error("gave up after {attempts} attempts: {last}")]
    GaveUp {
        attempts: u32,
        #[source]
        last: Box<ClientError>,
    },
    /// A request task ended without a result (it panicked or its runtime stopped).
    #[error("the request was lost inside the client: {0}")]
    Lost(String),
}

impl ClientError {
    /// Whether trying the same request again may succeed.
    pub fn is_retryable(&self) -> bool {
        match self {
            ClientError::Unreachable { .. }
            | ClientError::Timeout { .. }
            | ClientError::Transport { .. } => true,
            ClientError::Status { status, .. } => retryable_status(*status),
            _ => false,
        }
    }
}

/// Overload and server-side failures: 408 Request Timeout, 429 Too Many Requests, 5xx.
pub(crate) fn retryable_status(status: u16) -> bool {
    status == 408 || status == 429 || (500..600).contains(&status)
}

/// The most characters of a body quoted in an error.
const QUOTED_CHARS: usize = 300;

/// A response body for an error message: lossy UTF-8, at most [`QUOTED_CHARS`] characters,
/// with the full length said when it was cut.
pub(crate) fn quote_body(body: &[u8]) -> String {
    let text = String::from_utf8_lossy(body);
    let text = text.trim();
    if text.is_empty() {
        return "(empty body)".to_owned();
    }
    match text.char_indices().nth(QUOTED_CHARS) {
        None => format!("{text:?}"),
        Some((cut, _)) => format!("{:?}… ({} bytes in all)", &text[..cut], body.len()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn long_bodies_are_shortened_and_say_their_length() {
        let body = "x".repeat(1000);
        let quoted = quote_body(body.as_bytes());
        assert!(quoted.len() < 400, "{quoted}");
        assert!(quoted.ends_with("(1000 bytes in all)"), "{quoted}");
        assert_eq!(quote_body(b"  "), "(empty body)");
        assert_eq!(quote_body(b"oops\n"), "\"oops\"");
    }

    #[test]
    fn retryable_statuses() {
        for status in [408, 429, 500, 502, 503, 504] {
            assert!(retryable_status(status), "{status}");
        }
        for status in [200, 400, 401, 404, 413, 422] {
            assert!(!retryable_status(status), "{status}");
        }
    }
}
