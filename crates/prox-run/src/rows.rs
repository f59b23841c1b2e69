//! The rows of a run folder's parts (`docs/run-folder.md`): what the run did to each document,
//! and the documents or files it could not process.

use std::path::Path;

use prox_io::{get_field, Fields, Record};
use prox_program::Stage;
use serde_json::Value;

/// What happened to a document, from its row.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Outcome {
    Unchanged,
    Modified,
    /// Kept as it was because its chunk program was ignored (too many errors).
    Ignored,
    /// Dropped at `stage`, for `reason` (`empty` when read; `doc_program`, `low_ratio`,
    /// `few_words`, `no_words` by a stage).
    Dropped {
        stage: DroppedAt,
        reason: String,
    },
}

/// Where a document was dropped: when read (an empty or blank text, which the reference never
/// shows to a model), or by a refining stage. `prox.stage` of a `dropped/` row: `read`, `doc`
/// or `chunk`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum DroppedAt {
    Read,
    Stage(Stage),
}

impl DroppedAt {
    pub const DOC: DroppedAt = DroppedAt::Stage(Stage::Doc);

    pub fn as_str(self) -> &'static str {
        match self {
            DroppedAt::Read => "read",
            DroppedAt::Stage(stage) => stage.as_str(),
        }
    }
}

impl std::fmt::Display for DroppedAt {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

impl std::str::FromStr for DroppedAt {
    type Err = String;

    fn from_str(name: &str) -> Result<Self, Self::Err> {
        match name {
            "read" => Ok(DroppedAt::Read),
            other => other
                .parse::<Stage>()
                .map(DroppedAt::Stage)
                .map_err(|_| format!("unknown `prox.stage` `{other}`")),
        }
    }
}

impl Outcome {
    /// A short label: `unchanged`, `modified`, `ignored` or `dropped: REASON`.
    pub fn label(&self) -> String {
        match self {
            Outcome::Unchanged => "unchanged".to_owned(),
            Outcome::Modified => "modified".to_owned(),
            Outcome::Ignored => "ignored".to_owned(),
            Outcome::Dropped { reason, .. } => format!("dropped: {reason}"),
        }
    }

    /// A name usable as an HTML attribute value and filter key: `dropped-low_ratio`.
    pub fn key(&self) -> String {
        match self {
            Outcome::Dropped { reason, .. } => format!("dropped-{reason}"),
            other => other.label(),
        }
    }
}

/// One row of `output/` or `dropped/`: a document and what the run did to it.
#[derive(Debug, Clone, PartialEq)]
pub struct DocumentRow {
    pub id: String,
    /// The part file and row it was read from, as `file:row`.
    pub location: String,
    pub outcome: Outcome,
    /// The input text.
    pub raw_content: Option<String>,
    /// The text after the document stage: what the chunk-stage model saw.
    pub doc_content: Option<String>,
    /// The refined text (empty for a dropped document).
    pub text: String,
    pub doc_program: Option<String>,
    pub chunk_program: Option<String>,
    pub lines_removed: Option<u64>,
    pub normalizations: Option<u64>,
    pub program_errors: Option<u64>,
    /// Words of `doc_content` (or of `raw_content` when the chunk stage did not see it).
    pub words_before: u64,
    /// Words of `text`.
    pub words_after: u64,
}

impl DocumentRow {
    /// The text the chunk-stage model saw: `doc_content`, else the input text.
    pub fn base_text(&self) -> Option<&str> {
        self.doc_content.as_deref().or(self.raw_content.as_deref())
    }

    /// The text to show when there is no chunk-stage diff: the input text for a document the
    /// document stage dropped, else what the chunk stage saw.
    pub fn shown_text(&self) -> &str {
        let input_first = matches!(
            self.outcome,
            Outcome::Dropped {
                stage: DroppedAt::DOC,
                ..
            }
        );
        let text = if input_first {
            self.raw_content.as_deref().or(self.doc_content.as_deref())
        } else {
            self.base_text()
        };
        text.unwrap_or(&self.text)
    }

    /// The share of words kept, `None` for a document without words.
    pub fn kept_word_ratio(&self) -> Option<f64> {
        (self.words_before > 0).then(|| self.words_after as f64 / self.words_before as f64)
    }

    /// Reads a row; `dropped` says whether it comes from `dropped/`. Says what is wrong with a
    /// row that breaks the contract.
    pub fn from_record(record: &Record, dropped: bool) -> Result<Self, String> {
        let fields = &record.fields;
        let id = match get_field(fields, "id") {
            Some(Value::String(id)) => id.clone(),
            Some(Value::Number(n)) => n.to_string(),
            _ => return Err("the row has no `id`".to_owned()),
        };
        let outcome = if dropped {
            let stage = match text_field(fields, "prox.stage")? {
                Some(name) => name.parse::<DroppedAt>()?,
                None => return Err("a dropped row has no `prox.stage`".to_owned()),
            };
            let reason = text_field(fields, "prox.reason")?
                .ok_or("a dropped row has no `prox.reason`")?
                .to_owned();
            Outcome::Dropped { stage, reason }
        } else {
            match text_field(fields, "prox.outcome")? {
                Some("unchanged") => Outcome::Unchanged,
                Some("modified") => Outcome::Modified,
                Some("ignored") => Outcome::Ignored,
                Some(other) => return Err(format!("unknown `prox.outcome` `{other}`")),
                None => return Err("a kept row has no `prox.outcome`".to_owned()),
            }
        };
        let raw_content = text_field(fields, "raw_content")?.map(str::to_owned);
        let doc_content = text_field(fields, "doc_content")?.map(str::to_owned);
        let text = text_field(fields, "text")?.unwrap_or_default().to_owned();
        let words_before = match count_field(fields, "prox.words_before")? {
            Some(words) => words,
            None => doc_content
                .as_deref()
                .or(raw_content.as_deref())
                .map_or(0, |text| prox_program::count_words(text) as u64),
        };
        let words_after = match count_field(fields, "prox.words_after")? {
            Some(words) => words,
            None => prox_program::count_words(&text) as u64,
        };
        Ok(Self {
            id,
            location: format!(
                "{}:{}",
                record.location.file.display(),
                record.location.line
            ),
            outcome,
            raw_content,
            doc_content,
            text,
            doc_program: text_field(fields, "metadata.doc_program")?.map(str::to_owned),
            chunk_program: text_field(fields, "metadata.chunk_program")?.map(str::to_owned),
            lines_removed: count_field(fields, "prox.lines_removed")?,
            normalizations: count_field(fields, "prox.normalizations")?,
            program_errors: count_field(fields, "prox.program_errors")?,
            words_before,
            words_after,
        })
    }
}

/// A string column; `null` and absent are `None`.
fn text_field<'a>(fields: &'a Fields, name: &str) -> Result<Option<&'a str>, String> {
    match get_field(fields, name) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(text)) => Ok(Some(text)),
        Some(_) => Err(format!("`{name}` is not a string")),
    }
}

/// A count column; `null` and absent are `None`.
fn count_field(fields: &Fields, name: &str) -> Result<Option<u64>, String> {
    match get_field(fields, name) {
        None | Some(Value::Null) => Ok(None),
        Some(value) => value
            .as_u64()
            .map(Some)
            .ok_or_else(|| format!("`{name}` is not a count")),
    }
}

/// One row of `failures/`: a document or file the run could not process.
#[derive(Debug, Clone, PartialEq, Eq, serde::Deserialize)]
pub struct FailureRow {
    pub file: String,
    #[serde(default)]
    pub line: Option<u64>,
    pub error: String,
    #[serde(default)]
    pub excerpt: Option<String>,
    #[serde(default)]
    pub stage: Option<String>,
    #[serde(default)]
    pub id: Option<String>,
}

/// One item read from a run folder: a row, or a problem that kept a row (or the rest of a
/// file) from being read. Problems are data for the report, not a reason to stop.
#[derive(Debug)]
pub enum Item<T> {
    Row(T),
    Problem(String),
}

/// The rows of one part file, each record turned into a row by `row`; a record `row` rejects
/// (its reason), an unreadable line or an unreadable file is a problem naming where it was.
pub(crate) fn rows_of<T: 'static>(
    path: &Path,
    row: impl Fn(Record) -> Result<T, String> + 'static,
) -> Box<dyn Iterator<Item = Item<T>>> {
    match prox_io::open_records(path) {
        Ok(records) => Box::new(records.map(move |item| match item {
            Ok(Ok(record)) => {
                let location = record.location.clone();
                match row(record) {
                    Ok(row) => Item::Row(row),
                    Err(reason) => Item::Problem(format!("{location}: {reason}")),
                }
            }
            Ok(Err(error)) => Item::Problem(error.to_string()),
            Err(error) => Item::Problem(prox_io::error_chain(&error)),
        })),
        Err(error) => Box::new(std::iter::once(Item::Problem(prox_io::error_chain(&error)))),
    }
}

/// What [`RunFolder::find`] found.
#[derive(Debug)]
pub enum Found {
    Document(Box<DocumentRow>),
    Failure(FailureRow),
}
