//! The shard plan: which slice of which input file each task reads.
//!
//! Inputs are listed in the order given, each folder's files sorted, so the plan depends only
//! on the inputs and their sizes. Large plain JSON-lines files are split into byte ranges and
//! large Parquet files into runs of row groups, so that one huge file does not make one task
//! the straggler; compressed JSON lines cannot be split. Shard `i` belongs to task `i % tasks`.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use prox_io::{Format, Slice};
use prox_run::RunConfig;
pub use prox_run::SplitPolicy;
use serde::{Deserialize, Serialize};

use crate::document::DocumentSource;
use crate::error::{Error, Result};

/// A slice of one input file.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Shard {
    pub file: PathBuf,
    /// The file's name relative to the input it was found under, used in default ids.
    pub name: String,
    pub slice: Slice,
    /// About how many bytes of the file the slice covers.
    pub bytes: u64,
}

const MIN_AUTO_PIECE: u64 = 64 << 20;

/// All shards of a run, and how many tasks share them.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Plan {
    pub tasks: usize,
    pub shards: Vec<Shard>,
}

impl Plan {
    /// Lists the inputs (files, folders, or glob patterns) and splits them for `tasks` tasks.
    pub fn new(inputs: &[PathBuf], tasks: usize, split: SplitPolicy) -> Result<Plan> {
        if tasks == 0 {
            return Err(Error::Invalid("a run needs at least one task".to_owned()));
        }
        let files = list_inputs(inputs)?;
        let sizes: Vec<u64> = files
            .iter()
            .map(|(file, _)| std::fs::metadata(file).map(|m| m.len()).unwrap_or(0))
            .collect();
        let total: u64 = sizes.iter().sum();
        let piece = match split {
            SplitPolicy::Never => None,
            SplitPolicy::Bytes(bytes) => Some(bytes.max(1)),
            SplitPolicy::Auto => Some((total / (4 * tasks as u64)).max(MIN_AUTO_PIECE)),
        };
        let mut shards = Vec::new();
        for ((file, name), size) in files.into_iter().zip(sizes) {
            shards.extend(split_file(file, name, size, piece)?);
        }
        Ok(Plan { tasks, shards })
    }

    /// The plan of a run: its inputs split for its tasks.
    pub fn for_run(config: &RunConfig) -> Result<Plan> {
        Plan::new(&config.inputs, config.tasks, config.split)
    }

    /// The shards of task `rank`, with their indices in the plan.
    pub fn shards_of(&self, rank: usize) -> impl Iterator<Item = (usize, &Shard)> + '_ {
        self.shards
            .iter()
            .enumerate()
            .filter(move |(index, _)| index % self.tasks == rank)
    }

    /// The input bytes of task `rank`.
    pub fn bytes_of(&self, rank: usize) -> u64 {
        self.shards_of(rank).map(|(_, shard)| shard.bytes).sum()
    }
}

impl Shard {
    pub(crate) fn source(&self, text_field: &str, id_field: Option<&str>) -> DocumentSource {
        DocumentSource {
            name: Arc::from(self.name.as_str()),
            text_field: text_field.to_owned(),
            id_field: id_field.map(str::to_owned),
        }
    }
}

/// Every input file with its name relative to the input that named it.
fn list_inputs(inputs: &[PathBuf]) -> Result<Vec<(PathBuf, String)>> {
    let mut listed = Vec::new();
    for input in inputs {
        let text = input.to_string_lossy();
        let expanded: Vec<PathBuf> = if !input.exists() && text.contains(['*', '?', '[']) {
            let matches = glob::glob(&text)
                .map_err(|e| Error::path(input, format!("not a valid pattern: {e}")))?;
            let mut paths = matches
                .collect::<std::result::Result<Vec<_>, _>>()
                .map_err(|e| Error::path(input, e))?;
            paths.sort();
            if paths.is_empty() {
                return Err(Error::path(input, "the pattern matches no file"));
            }
            paths
        } else {
            vec![input.clone()]
        };
        for root in expanded {
            let files = prox_io::input_files(std::slice::from_ref(&root))?;
            for file in files {
                let name = relative_name(&root, &file);
                listed.push((file, name));
            }
        }
    }
    if listed.is_empty() {
        return Err(Error::Invalid("the inputs hold no file".to_owned()));
    }
    Ok(listed)
}

fn relative_name(root: &Path, file: &Path) -> String {
    let relative = if root.is_dir() {
        file.strip_prefix(root).unwrap_or(file)
    } else {
        file.file_name().map(Path::new).unwrap_or(file)
    };
    relative.to_string_lossy().replace('\\', "/")
}

fn split_file(file: PathBuf, name: String, size: u64, piece: Option<u64>) -> Result<Vec<Shard>> {
    let whole = |file: PathBuf, name: String| Shard {
        file,
        name,
        slice: Slice::Whole,
        bytes: size,
    };
    let Some(piece) = piece.filter(|&piece| size > piece.saturating_mul(3) / 2) else {
        return Ok(vec![whole(file, name)]);
    };
    match Format::of_path(&file) {
        Some(Format::Jsonl) => {
            let pieces = size.div_ceil(piece);
            Ok((0..pieces)
                .map(|i| {
                    let (start, end) = (size * i / pieces, size * (i + 1) / pieces);
                    Shard {
                        file: file.clone(),
                        name: name.clone(),
                        slice: Slice::Bytes { start, end },
                        bytes: end - start,
                    }
                })
                .collect())
        }
        Some(Format::Parquet) => {
            // A file that cannot be read here stays whole: its task reports the error.
            let Ok(groups) = prox_io::parquet_row_groups(&file) else {
                return Ok(vec![whole(file, name)]);
            };
            let mut shards = Vec::new();
            let (mut start, mut bytes) = (0usize, 0u64);
            for (index, group) in groups.iter().enumerate() {
                bytes += group.bytes;
                if bytes >= piece || index + 1 == groups.len() {
                    shards.push(Shard {
                        file: file.clone(),
                        name: name.clone(),
                        slice: Slice::RowGroups {
                            start,
                            end: index + 1,
                        },
                        bytes,
                    });
                    (start, bytes) = (index + 1, 0);
                }
            }
            if shards.len() <= 1 {
                return Ok(vec![whole(file, name)]);
            }
            Ok(shards)
        }
        _ => Ok(vec![whole(file, name)]),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shards_are_dealt_round_robin_and_large_files_are_split() {
        let dir = tempfile::tempdir().unwrap();
        let big: String = (0..1000)
            .map(|n| format!("{{\"text\": \"{n}\"}}\n"))
            .collect();
        std::fs::create_dir(dir.path().join("in")).unwrap();
        std::fs::write(dir.path().join("in/b.jsonl"), &big).unwrap();
        std::fs::write(dir.path().join("in/a.jsonl.gz"), b"").unwrap();
        let plan = Plan::new(
            &[dir.path().join("in")],
            3,
            SplitPolicy::Bytes((big.len() as u64).div_ceil(4)),
        )
        .unwrap();
        assert_eq!(plan.shards[0].name, "a.jsonl.gz");
        assert_eq!(plan.shards[0].slice, Slice::Whole);
        assert_eq!(plan.shards.len(), 5);
        let covered: u64 = plan.shards[1..].iter().map(|s| s.bytes).sum();
        assert_eq!(covered, big.len() as u64);
        let ranks: Vec<Vec<usize>> = (0..3)
            .map(|r| plan.shards_of(r).map(|(i, _)| i).collect())
            .collect();
        assert_eq!(ranks, [vec![0, 3], vec![1, 4], vec![2]]);
        // The same inputs give the same plan.
        let again = Plan::new(
            &[dir.path().join("in")],
            3,
            SplitPolicy::Bytes((big.len() as u64).div_ceil(4)),
        )
        .unwrap();
        assert_eq!(plan, again);
    }

    #[test]
    fn a_glob_lists_its_files_and_one_matching_nothing_is_an_error() {
        let dir = tempfile::tempdir().unwrap();
        for name in ["x1.jsonl", "x2.jsonl", "y.jsonl"] {
            std::fs::write(dir.path().join(name), b"{}\n").unwrap();
        }
        let pattern = dir.path().join("x*.jsonl");
        let plan = Plan::new(&[pattern], 1, SplitPolicy::Never).unwrap();
        let names: Vec<&str> = plan.shards.iter().map(|s| s.name.as_str()).collect();
        assert_eq!(names, ["x1.jsonl", "x2.jsonl"]);
        assert!(Plan::new(&[dir.path().join("z*.jsonl")], 1, SplitPolicy::Never).is_err());
    }
}
