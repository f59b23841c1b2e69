//! JSON lines in and out: a streaming reader that turns a bad line into a record error and goes
//! on, with a cap on line length, and an atomic writer (plain, gzip or zstd).

use std::fmt;
use std::fs::File;
use std::io::{BufRead, BufReader, BufWriter, Read, Write};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use serde::Serialize;

use crate::{AtomicFile, Error, Fields, RecordError};

/// Lines longer than this are reported as bad records instead of being held in memory whole.
pub const DEFAULT_MAX_LINE_BYTES: usize = 256 << 20;

/// Where a record came from: its file and 1-based line.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct RecordLocation {
    pub file: Arc<Path>,
    pub line: u64,
}

impl fmt::Display for RecordLocation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}", self.file.display(), self.line)
    }
}

/// One JSON object read from an input.
#[derive(Debug, Clone)]
pub struct Record {
    pub location: RecordLocation,
    pub fields: Fields,
    /// Size of the raw line in bytes, for throughput figures.
    pub bytes: usize,
}

/// Streams the records of a JSON-lines file, one line at a time.
///
/// Blank lines are skipped. Each other line yields either a [`Record`] or a [`RecordError`];
/// an I/O error ends the stream with an [`Error`] naming the file and the last line read.
pub struct JsonlReader {
    file: Arc<Path>,
    input: Box<dyn BufRead + Send>,
    line: u64,
    max_line_bytes: usize,
    buffer: Vec<u8>,
    finished: bool,
}

impl JsonlReader {
    /// Opens a plain JSON-lines file.
    pub fn open(path: &Path) -> Result<Self, Error> {
        let file = File::open(path).map_err(|source| Error::Open {
            path: path.to_owned(),
            source,
        })?;
        Ok(Self::new(path, BufReader::with_capacity(1 << 20, file)))
    }

    /// Reads JSON lines from any byte stream; `path` names it in errors.
    pub fn new(path: &Path, input: impl Read + Send + 'static) -> Self {
        Self {
            file: Arc::from(path),
            input: Box::new(BufReader::with_capacity(1 << 20, input)),
            line: 0,
            max_line_bytes: DEFAULT_MAX_LINE_BYTES,
            buffer: Vec::new(),
            finished: false,
        }
    }

    /// Numbers the first line read `line` (1-based), for a stream that starts inside a file.
    pub fn with_first_line(mut self, line: u64) -> Self {
        self.line = line.saturating_sub(1);
        self
    }

    /// Sets the longest line accepted; longer ones become record errors.
    pub fn with_max_line_bytes(mut self, max_line_bytes: usize) -> Self {
        self.max_line_bytes = max_line_bytes;
        self
    }

    /// Reads the next line into `self.buffer` (without its line ending). Returns the line's full
    /// length, which exceeds the buffer's when the line was too long to keep.
    fn read_line(&mut self) -> std::io::Result<Option<usize>> {
        self.buffer.clear();
        let mut length = 0;
        loop {
            let available = match self.input.fill_buf() {
                Ok(available) => available,
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
                Err(e) => return Err(e),
            };
            if available.is_empty() {
                return Ok((length > 0).then_some(length));
            }
            let (consumed, done) = match memchr(b'\n', available) {
                Some(end) => (end + 1, true),
                None => (available.len(), false),
            };
            let content = &available[..if done { consumed - 1 } else { consumed }];
            let room = (self.max_line_bytes + 1).saturating_sub(self.buffer.len());
            self.buffer
                .extend_from_slice(&content[..content.len().min(room)]);
            length += content.len();
            self.input.consume(consumed);
            if done {
                if self.buffer.last() == Some(&b'\r') && length <= self.max_line_bytes {
                    self.buffer.pop();
                }
                return Ok(Some(length.max(1)));
            }
        }
    }

    fn location(&self) -> RecordLocation {
        RecordLocation {
            file: Arc::clone(&self.file),
            line: self.line,
        }
    }

    fn bad_record(&self, reason: String) -> RecordError {
        let excerpt_end = self.buffer.len().min(200);
        RecordError {
            location: self.location(),
            reason,
            excerpt: String::from_utf8_lossy(&self.buffer[..excerpt_end]).into_owned(),
        }
    }

    fn parse_line(&self, length: usize) -> Result<Record, RecordError> {
        if length > self.max_line_bytes {
            return Err(self.bad_record(format!(
                "line of {length} bytes is longer than the limit of {} bytes",
                self.max_line_bytes
            )));
        }
        let text = std::str::from_utf8(&self.buffer).map_err(|e| {
            self.bad_record(format!(
                "invalid UTF-8 at byte {} of the line",
                e.valid_up_to()
            ))
        })?;
        match serde_json::from_str::<serde_json::Value>(text) {
            Ok(serde_json::Value::Object(fields)) => Ok(Record {
                location: self.location(),
                fields,
                bytes: length,
            }),
            Ok(other) => Err(self.bad_record(format!(
                "expected a JSON object, found {}",
                json_kind(&other)
            ))),
            Err(e) => Err(self.bad_record(format!("invalid JSON: {e}"))),
        }
    }
}

impl Iterator for JsonlReader {
    type Item = Result<Result<Record, RecordError>, Error>;

    fn next(&mut self) -> Option<Self::Item> {
        while !self.finished {
            let length = match self.read_line() {
                Ok(Some(length)) => length,
                Ok(None) => {
                    self.finished = true;
                    return None;
                }
                Err(source) => {
                    self.finished = true;
                    return Some(Err(Error::Read {
                        path: self.file.to_path_buf(),
                        line: self.line,
                        source,
                    }));
                }
            };
            self.line += 1;
            if self.buffer.iter().all(u8::is_ascii_whitespace) && length <= self.max_line_bytes {
                continue;
            }
            return Some(Ok(self.parse_line(length)));
        }
        None
    }
}

fn memchr(needle: u8, haystack: &[u8]) -> Option<usize> {
    haystack.iter().position(|&b| b == needle)
}

fn json_kind(value: &serde_json::Value) -> &'static str {
    match value {
        serde_json::Value::Null => "null",
        serde_json::Value::Bool(_) => "a boolean",
        serde_json::Value::Number(_) => "a number",
        serde_json::Value::String(_) => "a string",
        serde_json::Value::Array(_) => "an array",
        serde_json::Value::Object(_) => "an object",
    }
}

/// Writes records as JSON lines to a file that appears under its name only on [`finish`].
///
/// [`finish`]: JsonlWriter::finish
pub struct JsonlWriter {
    path: PathBuf,
    output: BufWriter<Compressed>,
    records: u64,
}

/// The file under a JSON-lines writer, compressed as its name says.
enum Compressed {
    Plain(AtomicFile),
    Gzip(flate2::write::GzEncoder<AtomicFile>),
    Zstd(zstd::stream::write::Encoder<'static, AtomicFile>),
}

impl Compressed {
    fn finish(self) -> std::io::Result<AtomicFile> {
        match self {
            Compressed::Plain(file) => Ok(file),
            Compressed::Gzip(encoder) => encoder.finish(),
            Compressed::Zstd(encoder) => encoder.finish(),
        }
    }
}

impl Write for Compressed {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        match self {
            Compressed::Plain(file) => file.write(buf),
            Compressed::Gzip(encoder) => encoder.write(buf),
            Compressed::Zstd(encoder) => encoder.write(buf),
        }
    }

    fn flush(&mut self) -> std::io::Result<()> {
        match self {
            Compressed::Plain(file) => file.flush(),
            Compressed::Gzip(encoder) => encoder.flush(),
            Compressed::Zstd(encoder) => encoder.flush(),
        }
    }
}

impl JsonlWriter {
    /// Creates a JSON-lines file, gzip-compressed when the name ends in `.gz` and
    /// zstd-compressed when it ends in `.zst`.
    pub fn create(path: &Path) -> Result<Self, Error> {
        let file = AtomicFile::create(path)?;
        let output = match crate::Format::of_path(path) {
            Some(crate::Format::JsonlGzip) => Compressed::Gzip(flate2::write::GzEncoder::new(
                file,
                flate2::Compression::default(),
            )),
            Some(crate::Format::JsonlZstd) => Compressed::Zstd(
                zstd::stream::write::Encoder::new(file, 3).map_err(|source| Error::Write {
                    path: path.to_owned(),
                    source,
                })?,
            ),
            _ => Compressed::Plain(file),
        };
        Ok(Self {
            path: path.to_owned(),
            output: BufWriter::with_capacity(1 << 20, output),
            records: 0,
        })
    }

    /// Appends one record as a line.
    pub fn write(&mut self, record: &impl Serialize) -> Result<(), Error> {
        serde_json::to_writer(&mut self.output, record).map_err(|source| {
            if source.is_io() {
                Error::Write {
                    path: self.path.clone(),
                    source: source.into(),
                }
            } else {
                Error::Encode {
                    path: self.path.clone(),
                    source,
                }
            }
        })?;
        self.output
            .write_all(b"\n")
            .map_err(|source| Error::Write {
                path: self.path.clone(),
                source,
            })?;
        self.records += 1;
        Ok(())
    }

    /// Records written so far.
    pub fn records(&self) -> u64 {
        self.records
    }

    /// Flushes, syncs and renames the file into place. Returns the number of records.
    pub fn finish(self) -> Result<u64, Error> {
        let path = self.path;
        let compressed = self.output.into_inner().map_err(|e| Error::Write {
            path: path.clone(),
            source: e.into_error(),
        })?;
        let file = compressed.finish().map_err(|source| Error::Write {
            path: path.clone(),
            source,
        })?;
        file.commit()?;
        Ok(self.records)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn read_all(content: &[u8], max: usize) -> Vec<Result<Record, RecordError>> {
        JsonlReader::new(
            Path::new("mem.jsonl"),
            std::io::Cursor::new(content.to_vec()),
        )
        .with_max_line_bytes(max)
        .map(|item| item.unwrap())
        .collect()
    }

    #[test]
    fn each_bad_line_is_reported_with_its_line_and_reading_goes_on() {
        let input = b"{\"a\":1}\n\n{broken\n\xff\xfe\n[1]\r\n{\"a\":2}\r\n{\"a\":3}";
        let items = read_all(input, DEFAULT_MAX_LINE_BYTES);
        let summary: Vec<_> = items
            .iter()
            .map(|item| match item {
                Ok(r) => format!("ok {} {}", r.location.line, r.fields["a"]),
                Err(e) => format!("err {}", e.location.line),
            })
            .collect();
        assert_eq!(
            summary,
            ["ok 1 1", "err 3", "err 4", "err 5", "ok 6 2", "ok 7 3"]
        );
        let errors: Vec<_> = items.iter().filter_map(|i| i.as_ref().err()).collect();
        assert!(
            errors[0].reason.starts_with("invalid JSON"),
            "{}",
            errors[0].reason
        );
        assert!(
            errors[1].reason.contains("invalid UTF-8"),
            "{}",
            errors[1].reason
        );
        assert!(
            errors[2].reason.contains("an array"),
            "{}",
            errors[2].reason
        );
        assert_eq!(errors[0].to_string().split(':').next(), Some("mem.jsonl"));
    }

    #[test]
    fn an_overlong_line_is_a_record_error_and_the_next_line_still_reads() {
        let long = format!("{{\"text\": \"{}\"}}\n{{\"a\":1}}\n", "x".repeat(5000));
        let items = read_all(long.as_bytes(), 1000);
        assert_eq!(items.len(), 2);
        let error = items[0].as_ref().unwrap_err();
        assert!(error.reason.contains("5012 bytes"), "{}", error.reason);
        assert!(error.excerpt.len() <= 200);
        assert_eq!(items[1].as_ref().unwrap().location.line, 2);
    }

    #[test]
    fn written_records_read_back_and_the_file_appears_only_when_finished() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("out.jsonl");
        let mut writer = JsonlWriter::create(&path).unwrap();
        writer
            .write(&serde_json::json!({"text": "a\nb", "n": 1}))
            .unwrap();
        assert!(!path.exists());
        assert_eq!(writer.finish().unwrap(), 1);
        let records: Vec<_> = JsonlReader::open(&path)
            .unwrap()
            .map(|r| r.unwrap().unwrap())
            .collect();
        assert_eq!(records[0].fields["text"], "a\nb");
        assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 1);
    }

    proptest::proptest! {
        #[test]
        fn reader_never_panics_and_counts_every_line(bytes in proptest::collection::vec(proptest::num::u8::ANY, 0..400)) {
            let items = read_all(&bytes, 64);
            let lines = bytes.split(|&b| b == b'\n').filter(|l| !l.iter().all(u8::is_ascii_whitespace) || l.len() > 64).count();
            proptest::prop_assert_eq!(items.len(), lines);
        }
    }
}
