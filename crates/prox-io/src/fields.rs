//! Reading and writing a record's fields by name, with dotted names reaching into nested
//! objects, and errors that say which field is missing or of the wrong type.

use serde_json::Value;

use crate::Fields;

/// Looks a field up by name. A name with dots (`metadata.doc_program`) is first looked up as
/// written, then as a path through nested objects, so both flattened and nested layouts work.
pub fn get_field<'a>(fields: &'a Fields, name: &str) -> Option<&'a Value> {
    if let Some(value) = fields.get(name) {
        return Some(value);
    }
    let mut parts = name.split('.');
    let mut value = fields.get(parts.next()?)?;
    for part in parts {
        value = value.as_object()?.get(part)?;
    }
    Some(value)
}

/// Why a record's field could not be used as text.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum FieldError {
    #[error("the record has no field `{0}`")]
    Missing(String),
    #[error("the field `{0}` is not a string")]
    NotAString(String),
}

/// The string value of a field ([`get_field`]'s lookup); `null` counts as missing.
pub fn string_field<'a>(fields: &'a Fields, name: &str) -> Result<&'a str, FieldError> {
    match get_field(fields, name) {
        Some(Value::String(value)) => Ok(value),
        Some(Value::Null) | None => Err(FieldError::Missing(name.to_owned())),
        Some(_) => Err(FieldError::NotAString(name.to_owned())),
    }
}

/// Like [`string_field`], but moves a top-level value out of the record instead of copying it
/// (the record loses that field; the others keep their order).
pub fn take_string_field(fields: &mut Fields, name: &str) -> Result<String, FieldError> {
    if matches!(fields.get(name), Some(Value::String(_))) {
        if let Some(Value::String(value)) = fields.shift_remove(name) {
            return Ok(value);
        }
    }
    string_field(fields, name).map(str::to_owned)
}

/// Sets a field by name, with the same lookup rule as [`get_field`]: an existing flat key is
/// replaced; otherwise a dotted name goes into nested objects, created where missing.
///
/// Returns the value back when a part of the path exists but is not an object.
pub fn set_field(fields: &mut Fields, name: &str, value: Value) -> Result<(), Value> {
    if fields.contains_key(name) || !name.contains('.') {
        fields.insert(name.to_owned(), value);
        return Ok(());
    }
    let (parents, leaf) = name.rsplit_once('.').unwrap_or(("", name));
    let mut object = fields;
    for part in parents.split('.') {
        let entry = object
            .entry(part.to_owned())
            .or_insert_with(|| Value::Object(Fields::new()));
        match entry.as_object_mut() {
            Some(next) => object = next,
            None => return Err(value),
        }
    }
    object.insert(leaf.to_owned(), value);
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn fields(value: Value) -> Fields {
        value.as_object().cloned().unwrap()
    }

    #[test]
    fn dotted_name_reads_nested_objects() {
        let f = fields(json!({"metadata": {"doc_program": "drop_doc()"}}));
        assert_eq!(
            get_field(&f, "metadata.doc_program"),
            Some(&json!("drop_doc()"))
        );
        assert_eq!(get_field(&f, "metadata.chunk_program"), None);
    }

    #[test]
    fn flat_key_with_dots_wins_over_the_path() {
        let f =
            fields(json!({"metadata.doc_program": "flat", "metadata": {"doc_program": "nested"}}));
        assert_eq!(get_field(&f, "metadata.doc_program"), Some(&json!("flat")));
    }

    #[test]
    fn string_fields_say_what_is_wrong() {
        let mut f = fields(json!({"text": "a", "n": 1, "z": null, "m": {"t": "b"}}));
        assert_eq!(string_field(&f, "m.t"), Ok("b"));
        assert_eq!(string_field(&f, "z"), Err(FieldError::Missing("z".into())));
        assert_eq!(
            string_field(&f, "n").unwrap_err().to_string(),
            "the field `n` is not a string"
        );
        assert_eq!(take_string_field(&mut f, "text"), Ok("a".to_owned()));
        assert!(!f.contains_key("text"));
        assert_eq!(take_string_field(&mut f, "m.t"), Ok("b".to_owned()));
    }

    #[test]
    fn set_creates_nested_objects_and_refuses_to_overwrite_a_scalar() {
        let mut f = fields(json!({"a": 1}));
        set_field(&mut f, "meta.x.y", json!(2)).unwrap();
        assert_eq!(get_field(&f, "meta.x.y"), Some(&json!(2)));
        assert_eq!(set_field(&mut f, "a.b", json!(3)), Err(json!(3)));
        assert_eq!(f["a"], json!(1));
    }
}
