//! What the fuzz targets share: scratch files for readers that take a path, and the records of
//! a reader summed up with the checks every reader must pass.

use std::cell::RefCell;
use std::path::{Path, PathBuf};
use std::sync::Once;

/// An error and its sources, as `prox` prints them.
pub use prox_io::error_chain;
use prox_io::{Error, Record, RecordError};

/// Writes `bytes` to a file called `name` in this process's scratch folder, replacing what an
/// earlier input left there; readers open it by path as they open real inputs.
pub fn scratch_file(name: &str, bytes: &[u8]) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("prox-fuzz-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("the temporary folder is writable");
    let path = dir.join(name);
    std::fs::write(&path, bytes).expect("the temporary folder is writable");
    path
}

/// One item of a reader, reduced to what two readings of the same records must agree on.
#[derive(Debug, Clone, PartialEq)]
pub enum Item {
    Record {
        line: u64,
        fields: String,
    },
    Bad {
        line: u64,
        reason: String,
    },
    /// The error that ended the file, with the last line it names.
    Failed {
        line: Option<u64>,
        message: String,
    },
}

/// The items of a reader, at most `limit` of them, each checked to name `path` and its line:
/// record errors as `PATH:LINE: reason`, file errors with the path in their message; lines
/// strictly increase. Returns the items and whether the reader ended on its own.
pub fn read_all(
    path: &Path,
    items: impl Iterator<Item = Result<Result<Record, RecordError>, Error>>,
    limit: usize,
) -> (Vec<Item>, bool) {
    let mut out = Vec::new();
    let mut last_line = 0;
    let mut items = items.fuse();
    for item in items.by_ref() {
        let item = match item {
            Ok(Ok(record)) => {
                assert_eq!(&*record.location.file, path);
                Item::Record {
                    line: record.location.line,
                    fields: serde_json::Value::Object(record.fields).to_string(),
                }
            }
            Ok(Err(error)) => {
                assert_eq!(&*error.location.file, path);
                let message = error.to_string();
                let prefix = format!("{}:{}: ", path.display(), error.location.line);
                assert!(message.starts_with(&prefix), "{message:?} names no place");
                Item::Bad {
                    line: error.location.line,
                    reason: error.reason,
                }
            }
            Err(error) => {
                assert_eq!(error.path(), path);
                let message = error_chain(&error);
                assert!(
                    message.contains(&path.display().to_string()),
                    "{message:?} does not name the file"
                );
                let line = match error {
                    Error::Read { line, .. } => {
                        assert!(message.contains(&format!("after line {line}")), "{message}");
                        Some(line)
                    }
                    _ => None,
                };
                Item::Failed { line, message }
            }
        };
        match item {
            Item::Record { line, .. } | Item::Bad { line, .. } => {
                assert!(line > last_line, "line {line} after line {last_line}");
                last_line = line;
            }
            Item::Failed { line, .. } => {
                assert!(line.is_none_or(|line| line >= last_line));
                out.push(item);
                assert!(
                    items.next().is_none(),
                    "items after the error that ends the file"
                );
                return (out, true);
            }
        }
        out.push(item);
        if out.len() >= limit {
            return (out, false);
        }
    }
    (out, true)
}

thread_local! {
    static LAST_PANIC: RefCell<Option<String>> = const { RefCell::new(None) };
}

/// For code that catches panics of its dependencies on purpose (prox-io's Parquet reader turns a
/// panic of the decoder into an error naming the file): runs `body` so that a panic caught
/// inside it is not a finding, while one that escapes still is, reported with its message.
///
/// libfuzzer-sys's panic hook aborts at the panic, before any `catch_unwind` can see it; this
/// replaces it (once) with one that only remembers the message.
pub fn with_caught_panics_allowed(body: impl FnOnce()) {
    static HOOK: Once = Once::new();
    HOOK.call_once(|| {
        std::panic::set_hook(Box::new(|info| {
            LAST_PANIC.with(|last| *last.borrow_mut() = Some(info.to_string()));
        }));
    });
    if std::panic::catch_unwind(std::panic::AssertUnwindSafe(body)).is_err() {
        let message = LAST_PANIC.with(|last| last.borrow_mut().take());
        eprintln!(
            "a panic escaped: {}",
            message.as_deref().unwrap_or("(no message)")
        );
        std::process::abort();
    }
}
