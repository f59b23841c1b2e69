//! Every input format gives `prox apply` the same documents: the same records as `.jsonl`,
//! `.jsonl.gz`, `.jsonl.zst` and `.parquet` give identical output rows.

use std::io::Write;
use std::path::Path;

use serde_json::Value;

use crate::support::{apply, read_rows, web_sample, CHUNK_STAGE};

fn example_lines() -> String {
    std::fs::read_to_string(web_sample()).unwrap()
}

/// Writes the example's records to `dir/input.<extension>` in that format.
fn write_input(dir: &Path, extension: &str) -> std::path::PathBuf {
    let lines = example_lines();
    let path = dir.join(format!("input.{extension}"));
    match extension {
        "jsonl" => std::fs::write(&path, &lines).unwrap(),
        "jsonl.gz" => {
            let mut encoder = flate2::write::GzEncoder::new(
                std::fs::File::create(&path).unwrap(),
                flate2::Compression::default(),
            );
            encoder.write_all(lines.as_bytes()).unwrap();
            encoder.finish().unwrap();
        }
        "jsonl.zst" => {
            std::fs::write(&path, zstd::encode_all(lines.as_bytes(), 3).unwrap()).unwrap()
        }
        "parquet" => {
            let mut writer = prox_io::ParquetWriter::create(&path).unwrap();
            for line in lines.lines().filter(|l| !l.trim().is_empty()) {
                writer
                    .write(&serde_json::from_str::<Value>(line).unwrap())
                    .unwrap();
            }
            writer.finish().unwrap();
        }
        other => panic!("unknown format {other}"),
    }
    path
}

/// The kept rows of `prox apply` (chunk stage) on the example in one format.
fn apply_rows(extension: &str) -> Vec<Value> {
    let dir = tempfile::tempdir().unwrap();
    let input = write_input(dir.path(), extension);
    let output = dir.path().join("out/refined.jsonl");
    apply(&CHUNK_STAGE, &input, &output).success();
    let failures = prox_io::beside(&output, "failures.jsonl");
    assert_eq!(
        std::fs::read_to_string(failures).unwrap(),
        "",
        "{extension}"
    );
    read_rows(&output)
}

macro_rules! same_output_as_jsonl {
    ($($name:ident: $extension:expr,)*) => {$(
        #[test]
        fn $name() {
            let expected = apply_rows("jsonl");
            assert!(!expected.is_empty());
            let rows = apply_rows($extension);
            assert_eq!(rows, expected, "{}", $extension);
            // Same field order too, not only the same values.
            for (row, want) in rows.iter().zip(&expected) {
                let keys = |v: &Value| v.as_object().unwrap().keys().cloned().collect::<Vec<_>>();
                assert_eq!(keys(row), keys(want), "{}", $extension);
            }
        }
    )*};
}

same_output_as_jsonl! {
    gzip_gives_the_same_output: "jsonl.gz",
    zstd_gives_the_same_output: "jsonl.zst",
    parquet_gives_the_same_output: "parquet",
}

#[test]
fn an_input_of_unknown_format_is_reported_with_the_known_endings() {
    let dir = tempfile::tempdir().unwrap();
    let input = dir.path().join("input.csv");
    std::fs::write(&input, "a,b\n").unwrap();
    let stderr = apply(&["--stage", "chunk"], &input, &dir.path().join("out.jsonl")).failure();
    assert!(
        stderr.contains("input.csv") && stderr.contains(".parquet"),
        "{stderr}"
    );
}
