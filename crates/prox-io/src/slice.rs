//! Parts of input files, so that several tasks can share one large file.

use std::fs::File;
use std::io::{self, BufRead, BufReader, Read, Seek, SeekFrom};
use std::path::Path;

use parquet::file::reader::{FileReader, SerializedFileReader};
use serde::{Deserialize, Serialize};

use crate::{open_records, Error, Format, JsonlReader, ParquetReader, Records};

/// A part of one input file: the whole file, the lines of a plain JSON-lines file that start
/// in a byte range, or a range of a Parquet file's row groups. Records keep the line or row
/// numbers they have in the whole file, so a record is named the same however files are split.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Slice {
    Whole,
    /// The lines whose first byte is at an offset in `start..end`.
    Bytes {
        start: u64,
        end: u64,
    },
    /// Row groups `start..end`.
    RowGroups {
        start: usize,
        end: usize,
    },
}

/// The sizes of a Parquet file's row groups, compressed bytes and rows.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RowGroupSize {
    pub rows: u64,
    pub bytes: u64,
}

/// The row groups of a Parquet file, from its footer.
pub fn parquet_row_groups(path: &Path) -> Result<Vec<RowGroupSize>, Error> {
    let open_error = |source| Error::Open {
        path: path.to_owned(),
        source,
    };
    let file = File::open(path).map_err(open_error)?;
    let reader = SerializedFileReader::new(file).map_err(|e| open_error(io::Error::other(e)))?;
    Ok(reader
        .metadata()
        .row_groups()
        .iter()
        .map(|group| RowGroupSize {
            rows: u64::try_from(group.num_rows()).unwrap_or(0),
            bytes: u64::try_from(group.compressed_size()).unwrap_or(0),
        })
        .collect())
}

/// Opens the records of one slice of a file. A `Bytes` slice needs a plain JSON-lines file and
/// a `RowGroups` slice a Parquet file.
pub fn open_slice(path: &Path, slice: &Slice) -> Result<Records, Error> {
    match *slice {
        Slice::Whole => open_records(path),
        Slice::RowGroups { start, end } => {
            if Format::of_path(path) != Some(Format::Parquet) {
                return Err(not_splittable(
                    path,
                    "row groups of a file that is not Parquet",
                ));
            }
            Ok(Box::new(ParquetReader::open_row_groups(path, start..end)?))
        }
        Slice::Bytes { start, end } => {
            if Format::of_path(path) != Some(Format::Jsonl) {
                return Err(not_splittable(
                    path,
                    "a byte range of a file that is not plain JSON lines",
                ));
            }
            open_byte_range(path, start, end)
        }
    }
}

fn not_splittable(path: &Path, what: &str) -> Error {
    Error::Open {
        path: path.to_owned(),
        source: io::Error::new(io::ErrorKind::InvalidInput, format!("cannot read {what}")),
    }
}

fn open_byte_range(path: &Path, start: u64, end: u64) -> Result<Records, Error> {
    let open_error = |source| Error::Open {
        path: path.to_owned(),
        source,
    };
    let mut file = File::open(path).map_err(open_error)?;
    let begin = line_start_at_or_after(&mut file, start).map_err(open_error)?;
    let stop = line_start_at_or_after(&mut file, end.max(begin)).map_err(open_error)?;
    let first_line = 1 + count_lines_before(&mut file, begin).map_err(open_error)?;
    file.seek(SeekFrom::Start(begin)).map_err(open_error)?;
    let reader = JsonlReader::new(path, file.take(stop - begin)).with_first_line(first_line);
    Ok(Box::new(reader))
}

/// The offset of the first line that starts at `offset` or later (the file's length if none).
fn line_start_at_or_after(file: &mut File, offset: u64) -> io::Result<u64> {
    if offset == 0 {
        return Ok(0);
    }
    let length = file.metadata()?.len();
    if offset >= length {
        return Ok(length);
    }
    file.seek(SeekFrom::Start(offset - 1))?;
    let mut reader = BufReader::with_capacity(64 << 10, &mut *file);
    let mut position = offset - 1;
    loop {
        let available = reader.fill_buf()?;
        if available.is_empty() {
            return Ok(length);
        }
        if let Some(newline) = memchr::memchr(b'\n', available) {
            return Ok(position + newline as u64 + 1);
        }
        let consumed = available.len();
        position += consumed as u64;
        reader.consume(consumed);
    }
}

fn count_lines_before(file: &mut File, offset: u64) -> io::Result<u64> {
    file.seek(SeekFrom::Start(0))?;
    let mut remaining = offset;
    let mut buffer = vec![0u8; 1 << 20];
    let mut lines = 0u64;
    while remaining > 0 {
        let want = buffer
            .len()
            .min(usize::try_from(remaining).unwrap_or(usize::MAX));
        let read = file.read(&mut buffer[..want])?;
        if read == 0 {
            break;
        }
        lines += memchr::memchr_iter(b'\n', &buffer[..read]).count() as u64;
        remaining -= read as u64;
    }
    Ok(lines)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn lines_of(path: &Path, slice: Slice) -> Vec<(u64, i64)> {
        open_slice(path, &slice)
            .unwrap()
            .map(|item| {
                let record = item.unwrap().unwrap();
                (record.location.line, record.fields["n"].as_i64().unwrap())
            })
            .collect()
    }

    #[test]
    fn byte_ranges_split_a_file_into_its_lines_exactly_once_with_their_numbers() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("a.jsonl");
        let text: String = (0..50)
            .map(|n| format!("{{\"n\": {n}, \"pad\": \"{}\"}}\n", "x".repeat(n % 7)))
            .collect();
        std::fs::write(&path, &text).unwrap();
        let whole = lines_of(&path, Slice::Whole);
        assert_eq!(whole.len(), 50);
        let length = text.len() as u64;
        for pieces in [1u64, 2, 3, 7, 50, 400] {
            let mut joined = Vec::new();
            for i in 0..pieces {
                let (start, end) = (length * i / pieces, length * (i + 1) / pieces);
                joined.extend(lines_of(&path, Slice::Bytes { start, end }));
            }
            assert_eq!(joined, whole, "{pieces} pieces");
        }
    }

    #[test]
    fn a_slice_of_the_wrong_kind_of_file_is_an_error() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("a.jsonl.gz");
        std::fs::write(&path, b"").unwrap();
        let error = open_slice(&path, &Slice::Bytes { start: 0, end: 1 })
            .err()
            .unwrap();
        assert!(error.to_string().contains("a.jsonl.gz"), "{error}");
    }
}
