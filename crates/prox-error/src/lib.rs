//! An error and its sources on one line, as `prox` prints them in messages and failure rows.
//!
//! A crate of its own because its users share nothing else of ours: `prox-io` (records),
//! `prox-engine` (models) and `prox-client` (HTTP) would otherwise each need one of the others
//! and its heavy dependencies (Parquet, candle, reqwest) only for this.

use std::error::Error;

/// An error and its causes on one line: `cannot read x.jsonl after line 3: unexpected end`.
///
/// A cause whose text the line already holds is left out: some errors repeat their source in
/// their own message (`{path}: {source}`), and reqwest's and hyper's nest causes that say the
/// same thing again, so printing every cause would say it twice.
pub fn error_chain(error: &dyn Error) -> String {
    let mut text = error.to_string();
    let mut source = error.source();
    while let Some(cause) = source {
        let cause_text = cause.to_string();
        if !text.contains(&cause_text) {
            text.push_str(": ");
            text.push_str(&cause_text);
        }
        source = cause.source();
    }
    text
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Debug, thiserror::Error)]
    #[error("cannot read {path} after line {line}")]
    struct ReadError {
        path: &'static str,
        line: u64,
        #[source]
        source: std::io::Error,
    }

    #[derive(Debug, thiserror::Error)]
    #[error("{path}: {source}")]
    struct SaysItsSource {
        path: &'static str,
        #[source]
        source: std::io::Error,
    }

    #[derive(Debug, thiserror::Error)]
    #[error("cannot load the model")]
    struct Outer(#[source] SaysItsSource);

    #[test]
    fn an_error_without_sources_is_its_message() {
        let error = std::io::Error::other("disk full");
        assert_eq!(error_chain(&error), "disk full");
    }

    #[test]
    fn every_source_follows_its_error() {
        let error = ReadError {
            path: "x.jsonl",
            line: 3,
            source: std::io::Error::new(std::io::ErrorKind::UnexpectedEof, "unexpected end"),
        };
        assert_eq!(
            error_chain(&error),
            "cannot read x.jsonl after line 3: unexpected end"
        );
    }

    #[test]
    fn a_source_already_in_the_message_is_not_repeated() {
        let error = Outer(SaysItsSource {
            path: "model.gguf",
            source: std::io::Error::other("permission denied"),
        });
        assert_eq!(
            error_chain(&error),
            "cannot load the model: model.gguf: permission denied"
        );
    }
}
