//! One writer for every output format, chosen by the file name's ending.

use std::path::Path;

use serde::Serialize;

use crate::{Error, Fields, Format, JsonlWriter, ParquetWriter};

/// Writes records in the format its file name says: `.parquet` (zstd), or JSON lines, plain,
/// `.gz` or `.zst`. Like the writers it wraps, the file appears under its name only when
/// [`finish`](RecordWriter::finish)ed.
pub enum RecordWriter {
    Jsonl(JsonlWriter),
    Parquet(ParquetWriter),
}

impl RecordWriter {
    pub fn create(path: &Path) -> Result<Self, Error> {
        match Format::of_path(path) {
            Some(Format::Parquet) => Ok(RecordWriter::Parquet(ParquetWriter::create(path)?)),
            Some(_) => Ok(RecordWriter::Jsonl(JsonlWriter::create(path)?)),
            None => Err(Error::UnknownFormat {
                path: path.to_owned(),
            }),
        }
    }

    /// Appends one record, which must serialize to a JSON object.
    pub fn write(&mut self, record: &impl Serialize) -> Result<(), Error> {
        match self {
            RecordWriter::Jsonl(writer) => writer.write(record),
            RecordWriter::Parquet(writer) => writer.write(record),
        }
    }

    /// Appends one record given as its fields; Parquet keeps them without a copy.
    pub fn write_fields(&mut self, fields: Fields) -> Result<(), Error> {
        match self {
            RecordWriter::Jsonl(writer) => writer.write(&fields),
            RecordWriter::Parquet(writer) => writer.write_fields(fields),
        }
    }

    /// Records written so far.
    pub fn records(&self) -> u64 {
        match self {
            RecordWriter::Jsonl(writer) => writer.records(),
            RecordWriter::Parquet(writer) => writer.records(),
        }
    }

    /// Completes the file and renames it into place. Returns the number of records.
    pub fn finish(self) -> Result<u64, Error> {
        match self {
            RecordWriter::Jsonl(writer) => writer.finish(),
            RecordWriter::Parquet(writer) => writer.finish(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_output_format_reads_back_the_same_records() {
        let dir = tempfile::tempdir().unwrap();
        let records: Vec<serde_json::Value> = (0..5)
            .map(|n| serde_json::json!({"id": format!("d{n}"), "text": "a\nb", "n": n}))
            .collect();
        for name in ["o.jsonl", "o.jsonl.gz", "o.jsonl.zst", "o.parquet"] {
            let path = dir.path().join(name);
            let mut writer = RecordWriter::create(&path).unwrap();
            // Both ways in: a serializable value, and fields handed over.
            for (n, record) in records.iter().enumerate() {
                if n % 2 == 0 {
                    writer.write(record).unwrap();
                } else {
                    let fields = record.as_object().unwrap().clone();
                    writer.write_fields(fields).unwrap();
                }
            }
            assert!(!path.exists(), "{name} appeared before finish");
            assert_eq!(writer.finish().unwrap(), 5);
            let read: Vec<serde_json::Value> = crate::open_records(&path)
                .unwrap()
                .map(|item| serde_json::Value::Object(item.unwrap().unwrap().fields))
                .collect();
            assert_eq!(read, records, "{name}");
        }
        assert!(RecordWriter::create(&dir.path().join("o.csv")).is_err());
    }
}
