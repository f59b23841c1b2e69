//! Any input file opened by its name's ending (JSON lines plain, gzip or zstd, or Parquet) as
//! one stream of records, and several files one after the other.

use std::fs::File;
use std::io::BufReader;
use std::path::{Path, PathBuf};

use crate::{Error, JsonlReader, ParquetReader, Record, RecordError};

/// The records of one input file, whatever its format: what [`open_records`] returns.
///
/// Each item is like [`JsonlReader`]'s: the outer `Err` is an I/O error that ends the file, the
/// inner one a single record that could not be read.
pub type Records = Box<dyn Iterator<Item = Result<Result<Record, RecordError>, Error>> + Send>;

/// The file formats [`open_records`] reads, told apart by the file name's ending.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    /// `.jsonl`, `.json` or `.ndjson`: JSON lines.
    Jsonl,
    /// `.jsonl.gz`, `.json.gz`, `.ndjson.gz`: gzip-compressed JSON lines (several concatenated
    /// gzip members read as one stream).
    JsonlGzip,
    /// `.jsonl.zst`, `.json.zst`, `.ndjson.zst` (or `.zstd`): zstd-compressed JSON lines.
    JsonlZstd,
    /// `.parquet`: one record per row.
    Parquet,
}

impl Format {
    /// The format of a file, from its name (case-insensitive); `None` for an unknown ending.
    pub fn of_path(path: &Path) -> Option<Format> {
        let name = path.file_name()?.to_string_lossy().to_ascii_lowercase();
        if name.ends_with(".parquet") {
            return Some(Format::Parquet);
        }
        let (inner, format) = if let Some(inner) = name.strip_suffix(".gz") {
            (inner, Format::JsonlGzip)
        } else if let Some(inner) = name
            .strip_suffix(".zst")
            .or_else(|| name.strip_suffix(".zstd"))
        {
            (inner, Format::JsonlZstd)
        } else {
            (name.as_str(), Format::Jsonl)
        };
        [".jsonl", ".json", ".ndjson"]
            .iter()
            .any(|ending| inner.ends_with(ending))
            .then_some(format)
    }
}

/// The records of several files, one after the other. A file that cannot be opened is an
/// `Err` item like a file that cannot be read to its end, so one bad file never hides the rest.
pub fn open_all_records(
    files: &[PathBuf],
) -> impl Iterator<Item = Result<Result<Record, RecordError>, Error>> + '_ {
    files.iter().flat_map(|file| match open_records(file) {
        Ok(records) => records,
        Err(error) => Box::new(std::iter::once(Err(error))) as Records,
    })
}

/// Opens an input file of any [`Format`], chosen by its name, and streams its records.
///
/// A compressed stream that ends early or is corrupt ends the file with an [`Error::Read`] that
/// names the file and the last complete line; the lines before it are still yielded. A file with
/// an unknown ending is an [`Error::UnknownFormat`].
pub fn open_records(path: &Path) -> Result<Records, Error> {
    let format = Format::of_path(path).ok_or_else(|| Error::UnknownFormat {
        path: path.to_owned(),
    })?;
    if format == Format::Parquet {
        return Ok(Box::new(ParquetReader::open(path)?));
    }
    let file = File::open(path).map_err(|source| Error::Open {
        path: path.to_owned(),
        source,
    })?;
    let reader = match format {
        Format::JsonlGzip => JsonlReader::new(
            path,
            flate2::read::MultiGzDecoder::new(BufReader::with_capacity(1 << 20, file)),
        ),
        Format::JsonlZstd => {
            let decoder = zstd::stream::read::Decoder::new(file).map_err(|source| Error::Open {
                path: path.to_owned(),
                source,
            })?;
            JsonlReader::new(path, decoder)
        }
        Format::Jsonl | Format::Parquet => JsonlReader::new(path, file),
    };
    Ok(Box::new(reader))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;
    use std::path::PathBuf;

    const LINES: &str = "{\"text\": \"one\", \"n\": 1}\n{\"text\": \"two\", \"n\": 2}\nbroken\n{\"text\": \"three\", \"n\": 3}\n";

    fn gzip(bytes: &[u8]) -> Vec<u8> {
        let mut encoder = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
        encoder.write_all(bytes).unwrap();
        encoder.finish().unwrap()
    }

    fn zstd(bytes: &[u8]) -> Vec<u8> {
        zstd::stream::encode_all(bytes, 3).unwrap()
    }

    fn write(dir: &Path, name: &str, bytes: &[u8]) -> PathBuf {
        let path = dir.join(name);
        std::fs::write(&path, bytes).unwrap();
        path
    }

    /// `ok LINE TEXT` or `err LINE` per record, then `end` or `read error LINE`.
    fn summary(path: &Path) -> Vec<String> {
        let mut rows = Vec::new();
        for item in open_records(path).unwrap() {
            match item {
                Ok(Ok(record)) => rows.push(format!(
                    "ok {} {}",
                    record.location.line, record.fields["text"]
                )),
                Ok(Err(error)) => rows.push(format!("err {}", error.location.line)),
                Err(error) => {
                    assert!(matches!(error, Error::Read { .. }), "{error:?}");
                    assert_eq!(error.path(), path);
                    let Error::Read { line, .. } = error else {
                        unreachable!()
                    };
                    rows.push(format!("read error {line}"));
                    return rows;
                }
            }
        }
        rows.push("end".into());
        rows
    }

    const EXPECTED: [&str; 5] = [
        "ok 1 \"one\"",
        "ok 2 \"two\"",
        "err 3",
        "ok 4 \"three\"",
        "end",
    ];

    #[test]
    fn every_codec_reads_the_same_records() {
        let dir = tempfile::tempdir().unwrap();
        let plain = LINES.as_bytes();
        for (name, bytes) in [
            ("a.jsonl", plain.to_vec()),
            ("a.ndjson", plain.to_vec()),
            ("a.JSON.GZ", gzip(plain)),
            ("a.jsonl.zst", zstd(plain)),
        ] {
            let path = write(dir.path(), name, &bytes);
            assert_eq!(summary(&path), EXPECTED, "{name}");
        }
    }

    #[test]
    fn concatenated_gzip_members_read_as_one_stream() {
        let dir = tempfile::tempdir().unwrap();
        let (first, second) = LINES.split_at(LINES.find("broken").unwrap());
        let mut bytes = gzip(first.as_bytes());
        bytes.extend(gzip(second.as_bytes()));
        let path = write(dir.path(), "a.jsonl.gz", &bytes);
        assert_eq!(summary(&path), EXPECTED);
    }

    #[test]
    fn a_truncated_stream_ends_with_a_read_error_naming_file_and_last_line() {
        let dir = tempfile::tempdir().unwrap();
        // Enough distinct text that the compressed stream is long and cut mid-data.
        let long: String = (0..2000)
            .map(|i| format!("{{\"text\": \"line {i} {}\"}}\n", i * 7919 % 10007))
            .collect();
        for (name, bytes) in [
            ("t.jsonl.gz", gzip(long.as_bytes())),
            ("t.jsonl.zst", zstd(long.as_bytes())),
        ] {
            for cut in [bytes.len() / 2, bytes.len() - 1, 10] {
                let path = write(dir.path(), name, &bytes[..cut]);
                let rows = summary(&path);
                let last = rows.last().unwrap();
                assert!(
                    last.starts_with("read error"),
                    "{name} cut at {cut}: {last}"
                );
                let good = rows.iter().filter(|r| r.starts_with("ok")).count();
                assert_eq!(last, &format!("read error {good}"), "{name} cut at {cut}");
                // The message names the file.
                let error = open_records(&path).unwrap().find_map(Result::err).unwrap();
                assert!(error.to_string().contains(name), "{error}");
            }
        }
    }

    #[test]
    fn garbage_in_a_compressed_file_is_an_error_not_a_panic() {
        let dir = tempfile::tempdir().unwrap();
        let garbage: Vec<u8> = (0..5000u32).map(|i| (i * 31 % 251) as u8).collect();
        let mut bad_gzip = gzip(LINES.as_bytes());
        let middle = bad_gzip.len() / 2;
        bad_gzip[middle..].iter_mut().for_each(|b| *b = !*b);
        for (name, bytes) in [
            ("g.jsonl.gz", garbage.clone()),
            ("g.jsonl.zst", garbage),
            ("h.jsonl.gz", bad_gzip),
        ] {
            let path = write(dir.path(), name, &bytes);
            let result: Result<Vec<_>, Error> = match open_records(&path) {
                Ok(records) => records.collect(),
                Err(error) => Err(error),
            };
            let error = result.unwrap_err();
            assert!(error.to_string().contains(name), "{error}");
        }
    }

    #[test]
    fn an_unknown_ending_is_an_error_listing_the_known_ones() {
        for name in ["a.txt", "a.gz", "a.csv.zst", "noext"] {
            let error = open_records(Path::new(name)).err().unwrap();
            assert!(matches!(error, Error::UnknownFormat { .. }));
            let message = error.to_string();
            assert!(
                message.contains(name) && message.contains(".jsonl.gz"),
                "{message}"
            );
        }
        assert_eq!(
            Format::of_path(Path::new("x/A.Parquet")),
            Some(Format::Parquet)
        );
        assert_eq!(
            Format::of_path(Path::new("a.ndjson.zstd")),
            Some(Format::JsonlZstd)
        );
    }
}
