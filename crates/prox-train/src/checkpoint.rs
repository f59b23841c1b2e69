//! Checkpoints: a Hugging Face model folder that `prox eval` and `prox generate` load as it
//! is (`config.json`, `model.safetensors`, the tokenizer files), plus what resuming needs
//! (`optimizer.safetensors`: AdamW's moments; `trainer_state.json`: the step, the data
//! position and the recipe). A checkpoint is written under a temporary name and renamed when
//! whole, so a killed run leaves only complete checkpoints.

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use candle_core::{Device, Tensor};
use serde::{Deserialize, Serialize};

use crate::data::DataSource;
use crate::error::{Error, Result};
use crate::optim::{AdamW, AdamWConfig, Moments};
use crate::trainer::Recipe;

/// Tokenizer and generation files copied into every checkpoint when the source has them.
pub const TOKENIZER_FILES: &[&str] = &[
    "tokenizer.json",
    "tokenizer.model",
    "tokenizer_config.json",
    "special_tokens_map.json",
    "generation_config.json",
];

pub const STATE_FILE: &str = "trainer_state.json";
pub const OPTIMIZER_FILE: &str = "optimizer.safetensors";
pub const MODEL_FILE: &str = "model.safetensors";
pub const CONFIG_FILE: &str = "config.json";

/// What a checkpoint records besides the tensors.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TrainerState {
    /// Optimiser steps completed.
    pub step: u64,
    /// Training blocks drawn from the data stream so far.
    pub blocks_drawn: u64,
    pub recipe: Recipe,
    pub data: Vec<DataSource>,
}

/// The folder of the checkpoint after `step` steps.
pub fn checkpoint_dir(out: &Path, step: u64) -> PathBuf {
    out.join("checkpoints").join(format!("step-{step:08}"))
}

/// Creates the output folder `out` and returns the checkpoint to resume from: the latest one
/// when `resume`, none otherwise. A folder that already holds checkpoints is refused unless
/// resuming, so that a run never writes over another run's checkpoints.
pub fn prepare_output(out: &Path, resume: bool) -> Result<Option<PathBuf>> {
    std::fs::create_dir_all(out).map_err(|source| Error::Write {
        path: out.to_owned(),
        source,
    })?;
    let latest = latest_checkpoint(out)?;
    if latest.is_some() && !resume {
        return Err(Error::Options(format!(
            "{} already holds checkpoints; pass --resume to continue that run, or choose \
             another output folder",
            out.display()
        )));
    }
    Ok(latest.filter(|_| resume))
}

/// The complete checkpoint with the most steps in `out`, if any.
pub fn latest_checkpoint(out: &Path) -> Result<Option<PathBuf>> {
    let dir = out.join("checkpoints");
    if !dir.is_dir() {
        return Ok(None);
    }
    let read_error = |source| Error::Read {
        path: dir.clone(),
        source,
    };
    let mut best: Option<(u64, PathBuf)> = None;
    for entry in std::fs::read_dir(&dir).map_err(read_error)? {
        let entry = entry.map_err(read_error)?;
        let name = entry.file_name();
        let Some(step) = name
            .to_str()
            .and_then(|n| n.strip_prefix("step-"))
            .and_then(|n| n.parse::<u64>().ok())
        else {
            continue;
        };
        if entry.path().join(STATE_FILE).is_file() && best.as_ref().is_none_or(|(s, _)| step > *s) {
            best = Some((step, entry.path()));
        }
    }
    Ok(best.map(|(_, path)| path))
}

fn write_error(path: &Path) -> impl FnOnce(std::io::Error) -> Error + '_ {
    move |source| Error::Write {
        path: path.to_path_buf(),
        source,
    }
}

/// Everything a checkpoint holds, borrowed from the trainer; `S` is the trainer's state
/// (pre-training's [`TrainerState`], or fine-tuning's).
pub struct CheckpointContents<'a, S: Serialize = TrainerState> {
    pub config_json: &'a serde_json::Value,
    pub names: &'a [String],
    pub shapes: &'a [Vec<usize>],
    pub params: &'a [Vec<f32>],
    pub optimizer: &'a AdamW,
    pub state: &'a S,
    /// A folder whose tokenizer files are copied.
    pub tokenizer_from: Option<&'a Path>,
}

/// Writes a checkpoint into `dir` (replacing one that is there) and returns `dir`.
pub fn save<S: Serialize>(dir: &Path, contents: &CheckpointContents<S>) -> Result<PathBuf> {
    let parent = dir.parent().unwrap_or(Path::new("."));
    std::fs::create_dir_all(parent).map_err(write_error(parent))?;
    let name = dir
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let partial = parent.join(format!(".{name}.partial"));
    if partial.exists() {
        std::fs::remove_dir_all(&partial).map_err(write_error(&partial))?;
    }
    std::fs::create_dir_all(&partial).map_err(write_error(&partial))?;

    let write_json = |file: &str, value: &dyn erased_json::Json| -> Result<()> {
        let path = partial.join(file);
        let mut text = value.to_pretty().map_err(|source| Error::Json {
            path: path.clone(),
            source,
        })?;
        text.push('\n');
        std::fs::write(&path, text).map_err(write_error(&path))
    };
    write_json(CONFIG_FILE, contents.config_json)?;

    let cpu = Device::Cpu;
    let tensor = |values: &[f32], shape: &[usize]| Tensor::from_slice(values, shape, &cpu);
    let mut model = HashMap::new();
    let mut optimizer = HashMap::new();
    for (i, name) in contents.names.iter().enumerate() {
        let shape = &contents.shapes[i];
        model.insert(name.clone(), tensor(&contents.params[i], shape)?);
        let moments = &contents.optimizer.moments[i];
        optimizer.insert(format!("exp_avg.{name}"), tensor(&moments.exp_avg, shape)?);
        optimizer.insert(
            format!("exp_avg_sq.{name}"),
            tensor(&moments.exp_avg_sq, shape)?,
        );
    }
    for (file, tensors) in [(MODEL_FILE, &model), (OPTIMIZER_FILE, &optimizer)] {
        let path = partial.join(file);
        candle_core::safetensors::save(tensors, &path).map_err(|source| Error::Tensors {
            path: path.clone(),
            source,
        })?;
    }
    if let Some(from) = contents.tokenizer_from {
        for file in TOKENIZER_FILES {
            let source = from.join(file);
            if source.is_file() {
                let target = partial.join(file);
                std::fs::copy(&source, &target).map_err(write_error(&target))?;
            }
        }
    }
    let adamw = serde_json::json!({
        "steps": contents.optimizer.steps,
        "config": contents.optimizer.config,
    });
    write_json("optimizer.json", &adamw)?;
    // The state file is written last: its presence marks a complete checkpoint.
    write_json(STATE_FILE, contents.state)?;

    if dir.exists() {
        std::fs::remove_dir_all(dir).map_err(write_error(dir))?;
    }
    std::fs::rename(&partial, dir).map_err(write_error(dir))?;
    Ok(dir.to_path_buf())
}

/// Reads a checkpoint's state file.
pub fn read_state(dir: &Path) -> Result<TrainerState> {
    Ok(prox_io::read_json(&dir.join(STATE_FILE))?)
}

/// Reads AdamW's state for parameters `names` with `sizes` elements each.
pub fn load_optimizer(dir: &Path, names: &[String], sizes: &[usize]) -> Result<AdamW> {
    #[derive(Deserialize)]
    struct Saved {
        steps: u64,
        config: AdamWConfig,
    }
    let saved: Saved = prox_io::read_json(&dir.join("optimizer.json"))?;
    let path = dir.join(OPTIMIZER_FILE);
    let tensors_error = |source| Error::Tensors {
        path: path.clone(),
        source,
    };
    let mut tensors = candle_core::safetensors::load(&path, &Device::Cpu).map_err(tensors_error)?;
    let mut take = |key: String, size: usize| -> Result<Vec<f32>> {
        let tensor = tensors.remove(&key).ok_or_else(|| Error::Resume {
            path: path.clone(),
            reason: format!("`{key}` is missing"),
        })?;
        let values = tensor
            .flatten_all()
            .and_then(|t| t.to_vec1::<f32>())
            .map_err(tensors_error)?;
        if values.len() != size {
            return Err(Error::Resume {
                path: path.clone(),
                reason: format!("`{key}` has {} values, not {size}", values.len()),
            });
        }
        Ok(values)
    };
    let moments = names
        .iter()
        .zip(sizes)
        .map(|(name, &size)| {
            Ok(Moments {
                exp_avg: take(format!("exp_avg.{name}"), size)?,
                exp_avg_sq: take(format!("exp_avg_sq.{name}"), size)?,
            })
        })
        .collect::<Result<Vec<_>>>()?;
    Ok(AdamW {
        config: saved.config,
        steps: saved.steps,
        moments,
    })
}

/// Pretty JSON from either a `Value` or a serialisable struct, without generics in a closure.
mod erased_json {
    pub trait Json {
        fn to_pretty(&self) -> Result<String, serde_json::Error>;
    }
    impl<T: serde::Serialize> Json for T {
        fn to_pretty(&self) -> Result<String, serde_json::Error> {
            serde_json::to_string_pretty(self)
        }
    }
}
