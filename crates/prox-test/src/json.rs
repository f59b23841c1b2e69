//! Golden JSON files, and arrays out of their values as the types the code under test
//! returns. A file that does not parse or a value of another shape is a broken fixture: the
//! helpers panic, naming the file or the value.

use std::path::Path;

use serde_json::Value;

/// A JSON file, parsed.
pub fn read(path: impl AsRef<Path>) -> Value {
    let path = path.as_ref();
    let text = std::fs::read_to_string(path)
        .unwrap_or_else(|e| panic!("cannot read {}: {e}", path.display()));
    serde_json::from_str(&text).unwrap_or_else(|e| panic!("{}: bad JSON: {e}", path.display()))
}

/// An array of strings.
pub fn strings(value: &Value) -> Vec<String> {
    array(value)
        .iter()
        .map(|v| {
            v.as_str()
                .unwrap_or_else(|| panic!("not a string: {v} in {value}"))
                .to_owned()
        })
        .collect()
}

/// An array of token ids.
pub fn u32s(value: &Value) -> Vec<u32> {
    array(value).iter().map(|v| whole(v, value)).collect()
}

/// An array of counts or lengths.
pub fn usizes(value: &Value) -> Vec<usize> {
    array(value).iter().map(|v| whole(v, value)).collect()
}

fn array(value: &Value) -> &[Value] {
    value
        .as_array()
        .unwrap_or_else(|| panic!("not an array: {value}"))
}

fn whole<T: TryFrom<u64>>(v: &Value, array: &Value) -> T {
    v.as_u64()
        .and_then(|n| T::try_from(n).ok())
        .unwrap_or_else(|| panic!("not a whole number in range: {v} in {array}"))
}
