//! A folder of checkpoints from one training run, converted in step order into folders named
//! by training tokens, as the reference's `batch_model_conversion.py` names them.

use std::path::{Path, PathBuf};

use crate::convert::{convert_checkpoint, ConvertOptions, Outcome};
use crate::error::{io, Error, Result};

/// How the checkpoints of a series are named and picked.
#[derive(Debug, Clone)]
pub struct SeriesOptions {
    /// Billions of training tokens between two checkpoints (`--save-token-interval`).
    pub save_token_interval: u64,
    /// Billions of tokens before the first checkpoint (`--base-token`).
    pub base_token: u64,
    /// Only these steps (`--steps`); all when `None`.
    pub steps: Option<Vec<u64>>,
}

impl Default for SeriesOptions {
    fn default() -> Self {
        SeriesOptions {
            save_token_interval: 1,
            base_token: 0,
            steps: None,
        }
    }
}

/// One checkpoint of a series and the folder it converts into.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SeriesCheckpoint {
    pub step: u64,
    pub input: PathBuf,
    /// `{tokens}B`.
    pub name: String,
}

/// The checkpoints of a folder to convert, and the `.pth` files that are not part of it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Series {
    pub checkpoints: Vec<SeriesCheckpoint>,
    /// `.pth` files whose name carries no step (`lit_model.pth`), on which the reference
    /// would stop with an error.
    pub ignored: Vec<PathBuf>,
}

/// The step in a checkpoint's file name as the reference reads it:
/// `int(file.split(".")[0].split("-")[1])`.
pub fn step_of(file_name: &str) -> Option<u64> {
    let stem = file_name.split('.').next()?;
    stem.split('-').nth(1)?.parse().ok()
}

/// Lists `dir`'s `*.pth` checkpoints in step order; the i-th (from 0, counting those `--steps`
/// leaves out) goes to `{(i+1)·interval + base}B`.
pub fn list_series(dir: &Path, options: &SeriesOptions) -> Result<Series> {
    let mut found = Vec::new();
    let mut ignored = Vec::new();
    for entry in std::fs::read_dir(dir).map_err(io(dir))? {
        let entry = entry.map_err(io(dir))?;
        let name = entry.file_name();
        let Some(name) = name.to_str() else { continue };
        if !name.ends_with(".pth") {
            continue;
        }
        match step_of(name) {
            Some(step) => found.push((step, entry.path())),
            None => ignored.push(entry.path()),
        }
    }
    found.sort();
    ignored.sort();
    for pair in found.windows(2) {
        if pair[0].0 == pair[1].0 {
            return Err(Error::Output {
                path: dir.to_owned(),
                reason: format!(
                    "two checkpoints of step {}: {} and {}",
                    pair[0].0,
                    pair[0].1.display(),
                    pair[1].1.display()
                ),
            });
        }
    }
    if let Some(steps) = &options.steps {
        let missing: Vec<String> = steps
            .iter()
            .filter(|s| !found.iter().any(|(step, _)| step == *s))
            .map(u64::to_string)
            .collect();
        if !missing.is_empty() {
            let available: Vec<String> = found.iter().map(|(s, _)| s.to_string()).collect();
            return Err(Error::Output {
                path: dir.to_owned(),
                reason: format!(
                    "no checkpoint of step {} (steps here: {})",
                    missing.join(", "),
                    available.join(", ")
                ),
            });
        }
    }
    let mut checkpoints = Vec::new();
    for (i, (step, input)) in found.into_iter().enumerate() {
        if options
            .steps
            .as_ref()
            .is_some_and(|steps| !steps.contains(&step))
        {
            continue;
        }
        let tokens = (i as u64 + 1)
            .checked_mul(options.save_token_interval)
            .and_then(|t| t.checked_add(options.base_token))
            .ok_or_else(|| Error::Output {
                path: dir.to_owned(),
                reason: "the token count overflows".to_owned(),
            })?;
        checkpoints.push(SeriesCheckpoint {
            step,
            input,
            name: format!("{tokens}B"),
        });
    }
    if checkpoints.is_empty() {
        return Err(Error::Output {
            path: dir.to_owned(),
            reason: "holds no checkpoint named like iter-NNNNNN-ckpt.pth".to_owned(),
        });
    }
    Ok(Series {
        checkpoints,
        ignored,
    })
}

/// Where [`convert_series`] is.
#[derive(Debug, Clone, Copy)]
pub enum Progress<'a> {
    /// About to convert this checkpoint.
    Start(&'a SeriesCheckpoint),
    /// Done with it.
    Done(&'a SeriesCheckpoint, &'a Outcome),
}

/// Converts every checkpoint of `series` into `output/{name}`, in step order, telling
/// `progress` before and after each. Folders converted by an earlier run are left as they are.
/// An error names the checkpoint it happened on.
pub fn convert_series(
    series: &Series,
    output: &Path,
    options: &ConvertOptions,
    mut progress: impl FnMut(Progress<'_>),
) -> Result<Vec<(SeriesCheckpoint, Outcome)>> {
    let mut done = Vec::with_capacity(series.checkpoints.len());
    for checkpoint in &series.checkpoints {
        progress(Progress::Start(checkpoint));
        let outcome =
            convert_checkpoint(&checkpoint.input, &output.join(&checkpoint.name), options)?;
        progress(Progress::Done(checkpoint, &outcome));
        done.push((checkpoint.clone(), outcome));
    }
    Ok(done)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn steps_are_read_from_names_as_the_reference_reads_them() {
        assert_eq!(step_of("iter-002000-ckpt.pth"), Some(2000));
        assert_eq!(step_of("iter-160000-ckpt.pth"), Some(160_000));
        assert_eq!(step_of("lit_model.pth"), None);
        assert_eq!(step_of("iter-x-ckpt.pth"), None);
    }
}
