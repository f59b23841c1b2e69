//! JSON rows to an Arrow record batch, column by column, for the Parquet writer.
//!
//! This takes the place of arrow-json's decoder, which re-serializes every value into its tape
//! before building arrays: going straight from the values copies each string once, and the
//! long text columns are most of what a refining run writes. The conversion rules are
//! arrow-json's with `coerce_primitive` and strict mode, as the writer documents them:
//! numbers and booleans in a string column are stored as their JSON text; a number column
//! takes numbers and numeric strings; a key the schema lacks, at any level, is an error.

use std::sync::Arc;

use arrow_array::builder::{BooleanBuilder, Float64Builder, Int64Builder, StringBuilder};
use arrow_array::{ArrayRef, ListArray, RecordBatch, StructArray};
use arrow_buffer::{NullBuffer, OffsetBuffer};
use arrow_schema::{DataType, Field, Fields as ArrowFields, SchemaRef};
use serde_json::Value;

/// Converts `rows` (JSON objects) to a batch of `schema`; the error names the first row
/// (0-based within `rows`) and column that do not fit.
pub(crate) fn rows_to_batch(schema: &SchemaRef, rows: &[Value]) -> Result<RecordBatch, String> {
    let objects: Vec<&crate::Fields> = rows
        .iter()
        .enumerate()
        .map(|(i, row)| {
            row.as_object()
                .ok_or_else(|| format!("row {i} is not a JSON object"))
        })
        .collect::<Result<_, _>>()?;
    check_keys(schema.fields(), objects.iter().copied(), "")?;
    let columns = schema
        .fields()
        .iter()
        .map(|field| {
            let values: Vec<Option<&Value>> = objects
                .iter()
                .map(|object| object.get(field.name()))
                .collect();
            column(field, &values, field.name())
        })
        .collect::<Result<Vec<_>, _>>()?;
    RecordBatch::try_new(Arc::clone(schema), columns).map_err(|e| e.to_string())
}

/// Every key of every object must be a field of `fields` (strict mode).
fn check_keys<'a>(
    fields: &ArrowFields,
    objects: impl Iterator<Item = &'a crate::Fields>,
    path: &str,
) -> Result<(), String> {
    for (row, object) in objects.enumerate() {
        if let Some(key) = object
            .keys()
            .find(|key| !fields.iter().any(|field| field.name() == *key))
        {
            return Err(format!(
                "row {row} has the field `{path}{key}`, which the schema (inferred from the \
                 first batch) lacks"
            ));
        }
    }
    Ok(())
}

fn mismatch(path: &str, row: usize, expected: &str, value: &Value) -> String {
    let shown = value.to_string();
    let shown = match shown.char_indices().nth(60) {
        Some((at, _)) => format!("{}…", &shown[..at]),
        None => shown,
    };
    format!("row {row}, column `{path}`: expected {expected}, found {shown}")
}

/// One column: `values[i]` is row `i`'s value, `None` when the row lacks the field.
fn column(field: &Field, values: &[Option<&Value>], path: &str) -> Result<ArrayRef, String> {
    Ok(match field.data_type() {
        DataType::Utf8 => {
            let bytes = values
                .iter()
                .map(|v| match v {
                    Some(Value::String(s)) => s.len(),
                    _ => 0,
                })
                .sum();
            let mut builder = StringBuilder::with_capacity(values.len(), bytes);
            for (row, value) in values.iter().enumerate() {
                match present(*value) {
                    None => builder.append_null(),
                    Some(Value::String(s)) => builder.append_value(s),
                    Some(Value::Number(n)) => builder.append_value(n.to_string()),
                    Some(Value::Bool(b)) => builder.append_value(if *b { "true" } else { "false" }),
                    Some(other) => return Err(mismatch(path, row, "a string", other)),
                }
            }
            Arc::new(builder.finish())
        }
        DataType::Int64 => {
            let mut builder = Int64Builder::with_capacity(values.len());
            for (row, value) in values.iter().enumerate() {
                match present(*value) {
                    None => builder.append_null(),
                    Some(value) => match as_i64(value) {
                        Some(n) => builder.append_value(n),
                        None => return Err(mismatch(path, row, "an integer", value)),
                    },
                }
            }
            Arc::new(builder.finish())
        }
        DataType::Float64 => {
            let mut builder = Float64Builder::with_capacity(values.len());
            for (row, value) in values.iter().enumerate() {
                match present(*value) {
                    None => builder.append_null(),
                    Some(value) => match as_f64(value) {
                        Some(x) => builder.append_value(x),
                        None => return Err(mismatch(path, row, "a number", value)),
                    },
                }
            }
            Arc::new(builder.finish())
        }
        DataType::Boolean => {
            let mut builder = BooleanBuilder::with_capacity(values.len());
            for (row, value) in values.iter().enumerate() {
                match present(*value) {
                    None => builder.append_null(),
                    Some(Value::Bool(b)) => builder.append_value(*b),
                    Some(other) => return Err(mismatch(path, row, "a boolean", other)),
                }
            }
            Arc::new(builder.finish())
        }
        DataType::List(item) => {
            let mut offsets = Vec::with_capacity(values.len() + 1);
            offsets.push(0i32);
            let mut valid = Vec::with_capacity(values.len());
            let mut items: Vec<Option<&Value>> = Vec::new();
            for (row, value) in values.iter().enumerate() {
                match present(*value) {
                    None => valid.push(false),
                    Some(Value::Array(elements)) => {
                        items.extend(elements.iter().map(Some));
                        valid.push(true);
                    }
                    Some(other) => return Err(mismatch(path, row, "an array", other)),
                }
                let end = i32::try_from(items.len())
                    .map_err(|_| format!("column `{path}`: too many list items in one batch"))?;
                offsets.push(end);
            }
            let child = column(item, &items, &format!("{path}[]"))?;
            Arc::new(
                ListArray::try_new(
                    Arc::clone(item),
                    OffsetBuffer::new(offsets.into()),
                    child,
                    nulls(valid),
                )
                .map_err(|e| format!("column `{path}`: {e}"))?,
            )
        }
        DataType::Struct(children) => {
            let mut valid = Vec::with_capacity(values.len());
            let mut objects = Vec::with_capacity(values.len());
            for (row, value) in values.iter().enumerate() {
                match present(*value) {
                    None => {
                        valid.push(false);
                        objects.push(None);
                    }
                    Some(Value::Object(object)) => {
                        valid.push(true);
                        objects.push(Some(object));
                    }
                    Some(other) => return Err(mismatch(path, row, "an object", other)),
                }
            }
            check_keys(
                children,
                objects.iter().flatten().copied(),
                &format!("{path}."),
            )?;
            let arrays = children
                .iter()
                .map(|child| {
                    let values: Vec<Option<&Value>> = objects
                        .iter()
                        .map(|object| object.and_then(|o| o.get(child.name())))
                        .collect();
                    column(child, &values, &format!("{path}.{}", child.name()))
                })
                .collect::<Result<Vec<_>, _>>()?;
            Arc::new(
                StructArray::try_new(children.clone(), arrays, nulls(valid))
                    .map_err(|e| format!("column `{path}`: {e}"))?,
            )
        }
        other => return Err(format!("column `{path}`: unsupported type {other}")),
    })
}

/// The value, or `None` for an absent field and a JSON `null` alike.
fn present(value: Option<&Value>) -> Option<&Value> {
    value.filter(|value| !value.is_null())
}

fn nulls(valid: Vec<bool>) -> Option<NullBuffer> {
    if valid.iter().all(|v| *v) {
        None
    } else {
        Some(NullBuffer::from(valid))
    }
}

/// An integer, from a JSON integer, an integral float in range, or a numeric string.
fn as_i64(value: &Value) -> Option<i64> {
    match value {
        Value::Number(n) => n.as_i64().or_else(|| {
            n.as_f64()
                .filter(|x| x.fract() == 0.0 && x.abs() < 9.2e18)
                .map(|x| x as i64)
        }),
        Value::String(s) => s.trim().parse().ok(),
        _ => None,
    }
}

/// A float, from a JSON number or a numeric string.
fn as_f64(value: &Value) -> Option<f64> {
    match value {
        Value::Number(n) => n.as_f64(),
        Value::String(s) => s.trim().parse().ok(),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use arrow_array::cast::AsArray;
    use arrow_array::types::{Float64Type, Int64Type};
    use arrow_array::Array;
    use arrow_schema::Schema;
    use serde_json::json;

    fn schema(fields: Vec<Field>) -> SchemaRef {
        Arc::new(Schema::new(fields))
    }

    #[test]
    fn values_become_typed_columns_with_nulls_where_absent() {
        let schema = schema(vec![
            Field::new("text", DataType::Utf8, true),
            Field::new("n", DataType::Int64, true),
            Field::new("x", DataType::Float64, true),
            Field::new("ok", DataType::Boolean, true),
            Field::new(
                "tags",
                DataType::List(Arc::new(Field::new("item", DataType::Utf8, true))),
                true,
            ),
            Field::new(
                "meta",
                DataType::Struct(vec![Field::new("source", DataType::Utf8, true)].into()),
                true,
            ),
        ]);
        let rows = vec![
            json!({"text": "a", "n": 1, "x": 1.5, "ok": true, "tags": ["p", "q"],
                   "meta": {"source": "web"}}),
            json!({"text": 7, "n": "2", "x": 2, "tags": [], "meta": null}),
            json!({"text": null, "meta": {}}),
        ];
        let batch = rows_to_batch(&schema, &rows).unwrap();
        assert_eq!(batch.num_rows(), 3);
        let text = batch.column(0).as_string::<i32>();
        assert_eq!(
            (text.value(0), text.value(1), text.is_null(2)),
            ("a", "7", true)
        );
        let n = batch.column(1).as_primitive::<Int64Type>();
        assert_eq!((n.value(0), n.value(1), n.is_null(2)), (1, 2, true));
        let x = batch.column(2).as_primitive::<Float64Type>();
        assert_eq!((x.value(0), x.value(1)), (1.5, 2.0));
        assert!(batch.column(3).is_null(1));
        let tags = batch.column(4).as_list::<i32>();
        assert_eq!(tags.value(0).len(), 2);
        assert_eq!(tags.value(1).len(), 0);
        assert!(tags.is_null(2));
        let meta = batch.column(5).as_struct();
        assert!(meta.is_null(1));
        assert!(meta.is_valid(2));
        assert!(meta.column(0).is_null(2));
        assert_eq!(meta.column(0).as_string::<i32>().value(0), "web");
    }

    #[test]
    fn values_that_do_not_fit_are_errors_naming_row_and_column() {
        let schema = schema(vec![
            Field::new("n", DataType::Int64, true),
            Field::new(
                "meta",
                DataType::Struct(vec![Field::new("source", DataType::Utf8, true)].into()),
                true,
            ),
        ]);
        let cases = [
            (json!([{"n": 1}, {"n": "x"}]), "row 1, column `n`"),
            (json!([{"n": 1.5}]), "expected an integer"),
            (json!([{"extra": 1}]), "`extra`"),
            (json!([{"meta": {"other": 1}}]), "`meta.other`"),
            (json!([{"meta": {"source": ["a"]}}]), "column `meta.source`"),
            (json!([{"meta": "flat"}]), "expected an object"),
        ];
        for (rows, expected) in cases {
            let rows = rows.as_array().unwrap().clone();
            let error = rows_to_batch(&schema, &rows).unwrap_err();
            assert!(error.contains(expected), "{error} (expected {expected})");
        }
    }
}
