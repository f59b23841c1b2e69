use std::sync::Arc;

use prox_io::{Fields, RecordLocation};

/// One input document on its way through the stages.
#[derive(Debug, Clone)]
pub struct Document {
    /// The stable id written with it: the `--id-field` value, else the record's own `id`,
    /// else `<file>:<line>`.
    pub id: String,
    /// Where it was read.
    pub location: RecordLocation,
    /// The text the models see.
    pub text: String,
    /// Every other field of the input record, carried to the output untouched.
    pub fields: Fields,
    /// The record's size as read, for throughput.
    pub bytes: usize,
}

/// How records of one input become documents: which field is the text, which the id, and the
/// name of the input used in default ids.
#[derive(Debug, Clone)]
pub struct DocumentSource {
    /// The input's name relative to its root (a folder given as input), as in default ids.
    pub name: Arc<str>,
    pub text_field: String,
    pub id_field: Option<String>,
}

/// Why a record is not a document.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum NotADocument {
    /// The text is empty or whitespace only; the reference skips such documents.
    Empty,
    /// The record cannot be used; the message says why.
    Invalid(String),
}

impl DocumentSource {
    /// The document of a record: its text field taken out, its id computed.
    pub fn document(&self, record: prox_io::Record) -> Result<Document, (String, NotADocument)> {
        let prox_io::Record {
            location,
            mut fields,
            bytes,
        } = record;
        let default_id = format!("{}:{}", self.name, location.line);
        let id = match &self.id_field {
            // A record's own `id` (an earlier stage's output has one), else file and line.
            None => match fields.get("id") {
                Some(serde_json::Value::String(id)) => id.clone(),
                Some(serde_json::Value::Number(id)) => id.to_string(),
                _ => default_id,
            },
            Some(name) => match prox_io::get_field(&fields, name) {
                Some(serde_json::Value::String(id)) => id.clone(),
                Some(serde_json::Value::Number(id)) => id.to_string(),
                Some(other) => {
                    return Err((
                        default_id,
                        NotADocument::Invalid(format!(
                            "the id field `{name}` holds {other}, not a string or a number"
                        )),
                    ))
                }
                None => {
                    return Err((
                        default_id,
                        NotADocument::Invalid(format!("the record has no id field `{name}`")),
                    ))
                }
            },
        };
        let text = match prox_io::take_string_field(&mut fields, &self.text_field) {
            Ok(text) => text,
            Err(error) => return Err((id, NotADocument::Invalid(error.to_string()))),
        };
        if text.trim().is_empty() {
            return Err((id, NotADocument::Empty));
        }
        Ok(Document {
            id,
            location,
            text,
            fields,
            bytes,
        })
    }
}
