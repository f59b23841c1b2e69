//! Documents in and out for ProX-rs.
//!
//! - [`input_files`] expands the paths a user gives (files and folders) into a sorted list of
//!   files, so every run and every shard sees the same order.
//! - [`JsonlReader`] streams the records of a JSON-lines file. A line that is not valid UTF-8
//!   or not a JSON object is an item of its own, a [`RecordError`] naming file and line, and the
//!   reader goes on with the next line: a bad document is data, not a reason to stop.
//! - [`AtomicFile`] writes an output under a temporary name and renames it into place only
//!   when it is complete, so a crash never leaves a half-written file under the final name.
//! - [`JsonlWriter`] writes records as JSON lines through an [`AtomicFile`].
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

mod atomic;
mod error;
mod failure;
mod fields;
mod input;
mod jsonl;

pub use atomic::AtomicFile;
pub use error::{Error, RecordError};
pub use failure::{beside, error_chain, write_json, Failure};
pub use fields::{get_field, set_field, string_field, take_string_field, FieldError};
pub use input::input_files;
pub use jsonl::{JsonlReader, JsonlWriter, Record, RecordLocation, DEFAULT_MAX_LINE_BYTES};

/// A JSON object: the fields of one record, in their input order.
pub type Fields = serde_json::Map<String, serde_json::Value>;
