//! Documents in and out for ProX-rs.
//!
//! - [`input_files`] expands the paths a user gives (files and folders) into a sorted list of
//!   files, so every run and every shard sees the same order.
//! - [`JsonlReader`] streams the records of a JSON-lines file. A line that is not valid UTF-8
//!   or not a JSON object is an item of its own, a [`RecordError`] naming file and line, and the
//!   reader goes on with the next line: a bad document is data, not a reason to stop.
//! - [`open_records`] opens any input file by its name's ending and streams its records as
//!   [`Records`], with the same items as [`JsonlReader`]: `.jsonl`, `.json` and `.ndjson` plain,
//!   the same gzip-compressed (`.jsonl.gz`; concatenated gzip members read as one stream) or
//!   zstd-compressed (`.jsonl.zst`), and `.parquet`. A compressed stream that is truncated or
//!   corrupt ends its file with an [`Error::Read`] naming the file and the last complete line;
//!   an unknown ending is an [`Error::UnknownFormat`] listing the known ones.
//! - [`ParquetReader`] streams a Parquet file one record batch at a time, each row a record of
//!   JSON values (binary values as hex strings). For Parquet, a record's "line" is its 1-based
//!   row number across the whole file.
//! - [`AtomicFile`] writes an output under a temporary name and renames it into place only
//!   when it is complete, so a crash never leaves a half-written file under the final name.
//! - [`JsonlWriter`] writes records as JSON lines through an [`AtomicFile`];
//!   [`ParquetWriter`] writes them as zstd-compressed Parquet, its schema inferred from the
//!   first batch of records (see its documentation for the rules).
//! - [`Failure`] is a row of a run's failures file: a record or a file that could not be
//!   processed, with file, line and error.
//!
//! ```
//! use prox_io::JsonlReader;
//! # let dir = tempfile::tempdir().unwrap();
//! let path = dir.path().join("docs.jsonl");
//! std::fs::write(&path, "{\"text\": \"hello\"}\nnot json\n").unwrap();
//!
//! let mut good = 0;
//! let mut bad = 0;
//! for item in JsonlReader::open(&path).unwrap() {
//!     // The outer result is an I/O error that ends the file; the inner one, one bad line.
//!     match item.unwrap() {
//!         Ok(record) => { assert_eq!(record.fields["text"], "hello"); good += 1 }
//!         Err(error) => { assert_eq!(error.location.line, 2); bad += 1 }
//!     }
//! }
//! assert_eq!((good, bad), (1, 1));
//! ```

mod arrow_rows;
mod atomic;
mod error;
mod failure;
mod fields;
mod input;
mod jsonl;
mod open;
mod parquet;
mod read_ahead;
mod slice;
mod writer;

pub use atomic::{temporary_path, temporary_target, AtomicFile};
pub use error::{Error, RecordError};
pub use failure::{beside, format_ending, read_json, read_json_if_present, write_json, Failure};
pub use fields::{get_field, set_field, string_field, take_string_field, FieldError};
pub use input::input_files;
pub use jsonl::{JsonlReader, JsonlWriter, Record, RecordLocation, DEFAULT_MAX_LINE_BYTES};
pub use open::{open_all_records, open_records, Format, Records};
pub use parquet::{ParquetReader, ParquetWriter, DEFAULT_PARQUET_BATCH_ROWS};
/// Re-exported so that every crate reading records words its failures alike without a
/// dependency of its own.
pub use prox_error::error_chain;
pub use read_ahead::read_ahead;
pub use slice::{open_slice, parquet_row_groups, RowGroupSize, Slice};
pub use writer::RecordWriter;

/// A JSON object: the fields of one record, in their input order.
pub type Fields = serde_json::Map<String, serde_json::Value>;
