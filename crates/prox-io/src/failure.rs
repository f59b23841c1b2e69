//! The rows of a run's failures file, and the small helpers every output shares: the path of a
//! file beside an output, JSON written atomically.

use std::path::Path;

use serde::de::DeserializeOwned;
use serde::Serialize;

use crate::{error_chain, Error, RecordError, RecordLocation};

/// Why one input record, or one input file, could not be processed: one row of a run's
/// failures file. Every command that reads records writes these, so users read one format.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Failure {
    /// The input file.
    pub file: String,
    /// The 1-based line of the record; for a file that could not be read to its end, the last
    /// line read, when known.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub line: Option<u64>,
    /// What went wrong, with its causes.
    pub error: String,
    /// The start of the raw record, when it could not be parsed.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub excerpt: Option<String>,
}

impl Failure {
    /// A record that was read but could not be processed.
    pub fn of_record(location: &RecordLocation, error: impl Into<String>) -> Self {
        Self {
            file: location.file.display().to_string(),
            line: Some(location.line),
            error: error.into(),
            excerpt: None,
        }
    }

    /// A file that could not be opened or read to its end.
    pub fn of_file(error: &Error) -> Self {
        Self {
            file: error.path().display().to_string(),
            line: match error {
                Error::Read { line, .. } => Some(*line),
                _ => None,
            },
            error: error_chain(error),
            excerpt: None,
        }
    }
}

impl From<&RecordError> for Failure {
    fn from(error: &RecordError) -> Self {
        Self {
            excerpt: Some(error.excerpt.clone()),
            ..Self::of_record(&error.location, error.reason.clone())
        }
    }
}

/// The path of a file that goes beside an output file: `out/docs.jsonl` with `failures.jsonl`
/// gives `out/docs.failures.jsonl` (a known ending — `.jsonl`, `.jsonl.gz`, `.jsonl.zst`,
/// `.parquet` — is replaced, any other name kept whole).
pub fn beside(output: &Path, suffix: &str) -> std::path::PathBuf {
    let name = output
        .file_name()
        .map(|name| name.to_string_lossy())
        .unwrap_or_default();
    let stem = [".jsonl.gz", ".jsonl.zst", ".jsonl", ".parquet"]
        .iter()
        .find_map(|ending| name.strip_suffix(ending))
        .unwrap_or(&name);
    output.with_file_name(format!("{stem}.{suffix}"))
}

/// The ending of an output file's name that names its format (`jsonl.gz`, `parquet`…), for
/// files written beside it in the same format; `jsonl` when the name has none.
pub fn format_ending(output: &Path) -> &'static str {
    let name = output
        .file_name()
        .map(|name| name.to_string_lossy().to_ascii_lowercase())
        .unwrap_or_default();
    [".jsonl.gz", ".jsonl.zst", ".parquet"]
        .iter()
        .find(|ending| name.ends_with(*ending))
        .map_or("jsonl", |ending| &ending[1..])
}

/// Reads the JSON value in `path` (summaries, manifests, markers); errors name the file.
pub fn read_json<T: DeserializeOwned>(path: &Path) -> Result<T, Error> {
    let bytes = std::fs::read(path).map_err(|source| Error::Open {
        path: path.to_owned(),
        source,
    })?;
    serde_json::from_slice(&bytes).map_err(|source| Error::Decode {
        path: path.to_owned(),
        source,
    })
}

/// The JSON value in `path`, or `None` when there is no such file.
pub fn read_json_if_present<T: DeserializeOwned>(path: &Path) -> Result<Option<T>, Error> {
    match read_json(path) {
        Err(Error::Open { source, .. }) if source.kind() == std::io::ErrorKind::NotFound => {
            Ok(None)
        }
        other => other.map(Some),
    }
}

/// Writes a value as pretty JSON to `path`, atomically (summaries, manifests).
pub fn write_json(path: &Path, value: &impl Serialize) -> Result<(), Error> {
    let mut file = crate::AtomicFile::create(path)?;
    serde_json::to_writer_pretty(&mut file, value).map_err(|source| Error::Encode {
        path: path.to_owned(),
        source,
    })?;
    std::io::Write::write_all(&mut file, b"\n").map_err(|source| Error::Write {
        path: path.to_owned(),
        source,
    })?;
    file.commit()
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;

    #[test]
    fn files_beside_an_output_share_its_stem() {
        assert_eq!(
            beside(Path::new("out/docs.jsonl"), "failures.jsonl"),
            Path::new("out/docs.failures.jsonl")
        );
        assert_eq!(
            beside(Path::new("docs.txt"), "summary.json"),
            Path::new("docs.txt.summary.json")
        );
    }

    #[test]
    fn rows_name_the_file_and_line_and_leave_out_what_is_unknown() {
        let location = RecordLocation {
            file: Arc::from(Path::new("in/a.jsonl")),
            line: 7,
        };
        let row = serde_json::to_value(Failure::of_record(&location, "no text")).unwrap();
        assert_eq!(
            row,
            serde_json::json!({"file": "in/a.jsonl", "line": 7, "error": "no text"})
        );

        let error = Error::Read {
            path: "in/b.jsonl.gz".into(),
            line: 12,
            source: std::io::Error::new(std::io::ErrorKind::UnexpectedEof, "truncated"),
        };
        let row = serde_json::to_value(Failure::of_file(&error)).unwrap();
        assert_eq!(
            row,
            serde_json::json!({
                "file": "in/b.jsonl.gz",
                "line": 12,
                "error": "cannot read in/b.jsonl.gz after line 12: truncated",
            })
        );
    }
}
