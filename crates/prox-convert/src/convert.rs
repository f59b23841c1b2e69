//! The conversion itself: litgpt names and the fused attention weight to Hugging Face Llama
//! tensors (`copy_weights_llama`), written as safetensors shards the way transformers'
//! `save_pretrained` cuts them, into a folder that appears whole or not at all.

use std::borrow::Cow;
use std::cell::RefCell;
use std::collections::{BTreeMap, HashMap, HashSet};
use std::fs::File;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::rc::Rc;

use safetensors::tensor::View;
use safetensors::Dtype as StDtype;

use crate::arch::{to_python_json, LitConfig};
use crate::checkpoint::Checkpoint;
use crate::error::{io, Error, Result};
use crate::pickle::{Dtype, TensorRef};

/// transformers' default `max_shard_size` ("5GB", decimal).
pub const DEFAULT_MAX_SHARD_BYTES: u64 = 5_000_000_000;

/// How to convert.
#[derive(Debug, Clone)]
pub struct ConvertOptions {
    /// A name from [`crate::KNOWN_ARCHS`] or a litgpt config JSON file; without it, the
    /// checkpoint's `hparams` must describe the architecture.
    pub arch: Option<String>,
    /// A folder whose tokenizer files are copied beside the weights.
    pub tokenizer: Option<PathBuf>,
    /// Shards are cut where the next tensor would take one past this many bytes.
    pub max_shard_bytes: u64,
}

impl Default for ConvertOptions {
    fn default() -> Self {
        ConvertOptions {
            arch: None,
            tokenizer: None,
            max_shard_bytes: DEFAULT_MAX_SHARD_BYTES,
        }
    }
}

/// What became of one output folder.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    /// Written now; the safetensors files in it.
    Converted { files: Vec<String> },
    /// Already there from an earlier run, left as it was.
    AlreadyDone,
}

/// Converts one checkpoint into the Hugging Face folder `output`, unless a complete
/// conversion is already there.
pub fn convert_checkpoint(
    input: &Path,
    output: &Path,
    options: &ConvertOptions,
) -> Result<Outcome> {
    if is_complete(output) {
        return Ok(Outcome::AlreadyDone);
    }
    let refuse = |reason: &str| Error::Output {
        path: output.to_owned(),
        reason: reason.to_owned(),
    };
    if output.exists() && !is_empty_dir(output) {
        return Err(refuse(
            "exists, and is not a complete conversion (no config.json with safetensors weights); remove it",
        ));
    }
    let checkpoint = Checkpoint::open(input)?;
    let config = resolve_arch(&checkpoint, options.arch.as_deref())?;
    check_tensors(&checkpoint, &config)?;
    let plan = plan(&checkpoint, &config);

    let temporary = temporary_dir(output)?;
    let guard = RemoveOnDrop(temporary.clone());
    let files = write_weights(
        &checkpoint,
        &config,
        &plan,
        &temporary,
        options.max_shard_bytes,
    )?;
    let config_path = temporary.join("config.json");
    std::fs::write(&config_path, to_python_json(&config.hf_config())).map_err(io(&config_path))?;
    if let Some(tokenizer) = &options.tokenizer {
        copy_tokenizer(tokenizer, &temporary)?;
    }
    sync_folder(&temporary)?;
    if is_complete(output) {
        // Another conversion into the same folder finished first; ours is dropped.
        return Ok(Outcome::AlreadyDone);
    }
    if output.exists() {
        std::fs::remove_dir(output).map_err(io(output))?;
    }
    std::fs::rename(&temporary, output).map_err(io(output))?;
    std::mem::forget(guard);
    if let Some(parent) = output.parent().filter(|p| !p.as_os_str().is_empty()) {
        // Makes the rename durable; a folder that cannot be opened is not worth failing on.
        if let Ok(dir) = File::open(parent) {
            let _ = dir.sync_all();
        }
    }
    Ok(Outcome::Converted { files })
}

/// A folder this crate wrote whole: it only ever appears by a rename, with its weights and
/// `config.json` in it.
pub fn is_complete(dir: &Path) -> bool {
    dir.join("config.json").is_file()
        && (dir.join("model.safetensors").is_file()
            || dir.join("model.safetensors.index.json").is_file())
}

fn is_empty_dir(dir: &Path) -> bool {
    std::fs::read_dir(dir).is_ok_and(|mut entries| entries.next().is_none())
}

/// The architecture from `--arch`, from the hparams, or from both when they agree.
fn resolve_arch(checkpoint: &Checkpoint, arch: Option<&str>) -> Result<LitConfig> {
    let path = checkpoint.path();
    let from_hparams = match checkpoint.hparams() {
        Some(hparams) => LitConfig::from_hparams(hparams).map_err(|reason| Error::Layout {
            path: path.to_owned(),
            reason: format!("hparams: {reason}"),
        })?,
        None => None,
    };
    let config = match (arch, from_hparams) {
        (Some(arch), _) => {
            let config = LitConfig::from_arch(arch)?;
            if let Some(hparams) = checkpoint.hparams() {
                let differences = config.differences_from_hparams(hparams);
                if !differences.is_empty() {
                    return Err(Error::ArchMismatch {
                        path: path.to_owned(),
                        arch: arch.to_owned(),
                        differences: differences.join(", "),
                    });
                }
            }
            config
        }
        (None, Some(config)) => config,
        (None, None) => {
            return Err(Error::Arch(format!(
                "{}: the checkpoint's hparams do not describe the architecture; give --arch ({} or a config JSON)",
                path.display(),
                crate::KNOWN_ARCHS.join(", ")
            )))
        }
    };
    config.validate()?;
    Ok(config)
}

/// Every tensor of the architecture present with its shape, and nothing else.
fn check_tensors(checkpoint: &Checkpoint, config: &LitConfig) -> Result<()> {
    let expected: HashMap<String, Vec<u64>> = config.expected_tensors().into_iter().collect();
    let mut problems = Vec::new();
    let mut seen = HashSet::new();
    for (name, tensor) in checkpoint.tensors() {
        seen.insert(name.as_str());
        match expected.get(name) {
            None => problems.push(format!("{name}: not a tensor of {}", config.name)),
            Some(shape) if *shape != tensor.shape => problems.push(format!(
                "{name}: shape {:?}, {} has {:?}",
                tensor.shape, config.name, shape
            )),
            Some(_) if out_dtype(tensor.storage.dtype) != Dtype::F32 => problems.push(format!(
                "{name}: {:?} elements, not floating point",
                tensor.storage.dtype
            )),
            Some(_) => {}
        }
    }
    let mut missing: Vec<&String> = expected
        .keys()
        .filter(|n| !seen.contains(n.as_str()))
        .collect();
    missing.sort();
    problems.extend(missing.iter().map(|n| format!("{n}: missing")));
    if problems.is_empty() {
        return Ok(());
    }
    let total = problems.len();
    problems.truncate(8);
    if total > problems.len() {
        problems.push(format!("and {} more", total - problems.len()));
    }
    Err(Error::Layout {
        path: checkpoint.path().to_owned(),
        reason: format!("does not match {}: {}", config.name, problems.join("; ")),
    })
}

/// Which part of a litgpt tensor an output tensor is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Part {
    Whole,
    Query,
    Key,
    Value,
}

/// One Hugging Face tensor to write.
#[derive(Debug, Clone)]
struct Planned {
    hf_name: String,
    lit_name: String,
    tensor: TensorRef,
    part: Part,
    shape: Vec<usize>,
}

impl Planned {
    fn bytes(&self) -> u64 {
        self.shape.iter().product::<usize>() as u64 * self.out_dtype().size() as u64
    }

    fn out_dtype(&self) -> Dtype {
        out_dtype(self.tensor.storage.dtype)
    }
}

/// The dtype a tensor is written in. The reference loads its converted weights into
/// transformers' `LlamaForCausalLM` in float32 (`from_pretrained` without `torch_dtype`) and
/// saves that model, so every float tensor comes out as float32; the widening from f16 and
/// bf16 is exact.
fn out_dtype(dtype: Dtype) -> Dtype {
    match dtype {
        Dtype::F16 | Dtype::BF16 | Dtype::F32 | Dtype::F64 => Dtype::F32,
        other => other,
    }
}

/// Row-major bytes of `dtype` as float32 bytes (little-endian both).
fn to_f32(bytes: Vec<u8>, dtype: Dtype) -> Vec<u8> {
    let widen = |chunk: &[u8]| -> f32 {
        match dtype {
            Dtype::F16 => half::f16::from_le_bytes([chunk[0], chunk[1]]).to_f32(),
            Dtype::BF16 => half::bf16::from_le_bytes([chunk[0], chunk[1]]).to_f32(),
            // Round to nearest, ties to even, as torch's .to(torch.float32).
            _ => {
                let mut b = [0u8; 8];
                b.copy_from_slice(chunk);
                f64::from_le_bytes(b) as f32
            }
        }
    };
    match dtype {
        Dtype::F16 | Dtype::BF16 | Dtype::F64 => bytes
            .chunks_exact(dtype.size())
            .flat_map(|chunk| widen(chunk).to_le_bytes())
            .collect(),
        _ => bytes,
    }
}

/// The Hugging Face name of a litgpt tensor other than the fused attention.
fn hf_name(lit: &str) -> Option<String> {
    match lit {
        "transformer.wte.weight" => return Some("model.embed_tokens.weight".to_owned()),
        "transformer.ln_f.weight" => return Some("model.norm.weight".to_owned()),
        "lm_head.weight" => return Some("lm_head.weight".to_owned()),
        _ => {}
    }
    let rest = lit.strip_prefix("transformer.h.")?;
    let (layer, suffix) = rest.split_once('.')?;
    let hf = match suffix {
        "norm_1.weight" => "input_layernorm.weight",
        "attn.proj.weight" => "self_attn.o_proj.weight",
        "norm_2.weight" => "post_attention_layernorm.weight",
        "mlp.fc_1.weight" => "mlp.gate_proj.weight",
        "mlp.fc_2.weight" => "mlp.up_proj.weight",
        "mlp.proj.weight" => "mlp.down_proj.weight",
        _ => return None,
    };
    Some(format!("model.layers.{layer}.{hf}"))
}

/// The output tensors in the order `copy_weights_llama` fills its state dict: the checkpoint's
/// order, each fused attention weight replaced by its q, k and v. (Shards follow transformers'
/// order instead: see [`hf_order`].)
fn plan(checkpoint: &Checkpoint, config: &LitConfig) -> Vec<Planned> {
    let head = config.head_size() as usize;
    let e = config.n_embd as usize;
    let mut out = Vec::new();
    for (name, tensor) in checkpoint.tensors() {
        let shape: Vec<usize> = tensor.shape.iter().map(|&d| d as usize).collect();
        let layer = name
            .strip_prefix("transformer.h.")
            .and_then(|rest| rest.strip_suffix(".attn.attn.weight"));
        if let Some(layer) = layer {
            let heads = [
                (Part::Query, "q_proj", config.n_head as usize),
                (Part::Key, "k_proj", config.n_query_groups as usize),
                (Part::Value, "v_proj", config.n_query_groups as usize),
            ];
            for (part, proj, n) in heads {
                out.push(Planned {
                    hf_name: format!("model.layers.{layer}.self_attn.{proj}.weight"),
                    lit_name: name.clone(),
                    tensor: tensor.clone(),
                    part,
                    shape: vec![n * head, e],
                });
            }
        } else {
            // check_tensors let through only names of the architecture.
            let hf_name = hf_name(name).unwrap_or_else(|| name.clone());
            out.push(Planned {
                hf_name,
                lit_name: name.clone(),
                tensor: tensor.clone(),
                part: Part::Whole,
                shape,
            });
        }
    }
    out
}

/// `qkv_split` of the reference on row-major bytes: the fused rows are `n_query_groups`
/// chunks of `[q_per_kv·head_size q | head_size k | head_size v]` rows; the part asked for is
/// taken from every chunk, in order.
fn split_rows(fused: &[u8], part: Part, config: &LitConfig, row_bytes: usize) -> Vec<u8> {
    let head = config.head_size() as usize;
    let groups = config.n_query_groups as usize;
    let q_per_kv = (config.n_head / config.n_query_groups) as usize;
    let chunk_rows = (q_per_kv + 2) * head;
    let (start, rows) = match part {
        Part::Query => (0, q_per_kv * head),
        Part::Key => (q_per_kv * head, head),
        Part::Value => ((q_per_kv + 1) * head, head),
        Part::Whole => (0, chunk_rows),
    };
    let mut out = Vec::with_capacity(groups * rows * row_bytes);
    for g in 0..groups {
        let from = (g * chunk_rows + start) * row_bytes;
        out.extend_from_slice(&fused[from..from + rows * row_bytes]);
    }
    out
}

fn st_dtype(dtype: Dtype) -> StDtype {
    match dtype {
        Dtype::F64 => StDtype::F64,
        Dtype::F32 => StDtype::F32,
        Dtype::F16 => StDtype::F16,
        Dtype::BF16 => StDtype::BF16,
        Dtype::I64 => StDtype::I64,
        Dtype::I32 => StDtype::I32,
        Dtype::I16 => StDtype::I16,
        Dtype::I8 => StDtype::I8,
        Dtype::U8 => StDtype::U8,
        Dtype::Bool => StDtype::BOOL,
    }
}

/// Reads tensors for the safetensors writer, which asks for each tensor's bytes once, in file
/// order, and drops them before asking for the next: at most one output tensor, plus the fused
/// attention weight its q, k and v are cut from, is in memory.
struct Reader<'a> {
    checkpoint: &'a Checkpoint,
    config: LitConfig,
    /// The last fused attention weight read, by litgpt name.
    fused: RefCell<Option<(String, Rc<Vec<u8>>)>>,
    /// The first read error; `View::data` cannot return one.
    error: RefCell<Option<Error>>,
}

impl Reader<'_> {
    fn load(&self, planned: &Planned) -> Result<Vec<u8>> {
        let dtype = planned.tensor.storage.dtype;
        if planned.part == Part::Whole {
            let bytes = self
                .checkpoint
                .read_tensor(&planned.lit_name, &planned.tensor)?;
            return Ok(to_f32(bytes, dtype));
        }
        let cached = match &*self.fused.borrow() {
            Some((name, bytes)) if *name == planned.lit_name => Some(Rc::clone(bytes)),
            _ => None,
        };
        let fused = match cached {
            Some(bytes) => bytes,
            None => {
                let bytes = Rc::new(
                    self.checkpoint
                        .read_tensor(&planned.lit_name, &planned.tensor)?,
                );
                *self.fused.borrow_mut() = Some((planned.lit_name.clone(), Rc::clone(&bytes)));
                bytes
            }
        };
        let row_bytes = self.config.n_embd as usize * dtype.size();
        Ok(to_f32(
            split_rows(&fused, planned.part, &self.config, row_bytes),
            dtype,
        ))
    }
}

struct LazyTensor<'r, 'a> {
    reader: &'r Reader<'a>,
    planned: &'r Planned,
}

impl View for LazyTensor<'_, '_> {
    fn dtype(&self) -> StDtype {
        st_dtype(self.planned.out_dtype())
    }

    fn shape(&self) -> &[usize] {
        &self.planned.shape
    }

    fn data(&self) -> Cow<'_, [u8]> {
        let len = self.data_len();
        if self.reader.error.borrow().is_none() {
            match self.reader.load(self.planned) {
                Ok(bytes) if bytes.len() == len => return Cow::Owned(bytes),
                Ok(bytes) => {
                    *self.reader.error.borrow_mut() = Some(Error::Tensor {
                        path: self.reader.checkpoint.path().to_owned(),
                        tensor: self.planned.lit_name.clone(),
                        reason: format!("read {} bytes where {len} were expected", bytes.len()),
                    });
                }
                Err(error) => *self.reader.error.borrow_mut() = Some(error),
            }
        }
        // After an error the file is discarded; zeros keep the writer's sizes consistent.
        Cow::Owned(vec![0; len])
    }

    fn data_len(&self) -> usize {
        self.planned.bytes() as usize
    }
}

/// Where a tensor comes in the state dict of transformers' `LlamaForCausalLM`, which is what
/// the reference shards (it saves the model it loaded from the converted weights): modules in
/// the order they are created, attention before MLP before the two norms in each layer.
fn hf_order(name: &str) -> (u8, u64, u8) {
    const LAYER: [&str; 9] = [
        "self_attn.q_proj.weight",
        "self_attn.k_proj.weight",
        "self_attn.v_proj.weight",
        "self_attn.o_proj.weight",
        "mlp.gate_proj.weight",
        "mlp.up_proj.weight",
        "mlp.down_proj.weight",
        "input_layernorm.weight",
        "post_attention_layernorm.weight",
    ];
    match name {
        "model.embed_tokens.weight" => (0, 0, 0),
        "model.norm.weight" => (2, 0, 0),
        "lm_head.weight" => (3, 0, 0),
        _ => {
            let layer = name
                .strip_prefix("model.layers.")
                .and_then(|rest| rest.split_once('.'));
            match layer {
                Some((l, part)) => (
                    1,
                    l.parse().unwrap_or(u64::MAX),
                    LAYER.iter().position(|p| *p == part).unwrap_or(LAYER.len()) as u8,
                ),
                None => (4, 0, 0),
            }
        }
    }
}

/// Groups tensors into shards as transformers' `shard_checkpoint` does: in state dict order, a
/// new shard whenever the next tensor would take a non-empty one past the limit.
fn shard(plan: &[Planned], max_bytes: u64) -> Vec<Vec<&Planned>> {
    let mut ordered: Vec<&Planned> = plan.iter().collect();
    ordered.sort_by_key(|planned| hf_order(&planned.hf_name));
    let mut shards: Vec<Vec<&Planned>> = vec![Vec::new()];
    let mut size = 0u64;
    for planned in ordered {
        let bytes = planned.bytes();
        if size + bytes > max_bytes && shards.last().is_some_and(|s| !s.is_empty()) {
            shards.push(Vec::new());
            size = 0;
        }
        if let Some(last) = shards.last_mut() {
            last.push(planned);
        }
        size += bytes;
    }
    shards
}

/// Writes `model.safetensors`, or the shards and `model.safetensors.index.json`; returns the
/// safetensors file names.
fn write_weights(
    checkpoint: &Checkpoint,
    config: &LitConfig,
    plan: &[Planned],
    dir: &Path,
    max_shard_bytes: u64,
) -> Result<Vec<String>> {
    let reader = Reader {
        checkpoint,
        config: config.clone(),
        fused: RefCell::new(None),
        error: RefCell::new(None),
    };
    let shards = shard(plan, max_shard_bytes);
    let count = shards.len();
    let mut names = Vec::with_capacity(count);
    let mut weight_map = BTreeMap::new();
    for (i, shard) in shards.iter().enumerate() {
        let name = if count == 1 {
            "model.safetensors".to_owned()
        } else {
            format!("model-{:05}-of-{count:05}.safetensors", i + 1)
        };
        let path = dir.join(&name);
        let views = shard.iter().map(|planned| {
            (
                planned.hf_name.clone(),
                LazyTensor {
                    reader: &reader,
                    planned,
                },
            )
        });
        let metadata = HashMap::from([("format".to_owned(), "pt".to_owned())]);
        safetensors::serialize_to_file(views, Some(metadata), &path).map_err(|source| {
            Error::Safetensors {
                path: path.clone(),
                source,
            }
        })?;
        // The writer's temporary file is private (0600); a model folder is for everyone to read.
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o644))
            .map_err(io(&path))?;
        if let Some(error) = reader.error.borrow_mut().take() {
            return Err(error);
        }
        for planned in shard {
            weight_map.insert(planned.hf_name.clone(), name.clone());
        }
        names.push(name);
    }
    if count > 1 {
        let total: u64 = plan.iter().map(Planned::bytes).sum();
        let index = serde_json::json!({
            "metadata": {"total_size": total},
            "weight_map": weight_map,
        });
        let path = dir.join("model.safetensors.index.json");
        // As transformers writes it: json.dumps(index, indent=2, sort_keys=True) + "\n".
        let mut text = serde_json::to_string_pretty(&index).map_err(|e| Error::Output {
            path: path.clone(),
            reason: e.to_string(),
        })?;
        text.push('\n');
        std::fs::write(&path, text).map_err(io(&path))?;
    }
    Ok(names)
}

/// A fresh hidden folder beside `output` to write into, named after this process
/// (`.NAME.tmp-PID`), so that two conversions into one folder never write into each other's;
/// leftovers of processes that no longer run (a killed conversion) are removed first.
fn temporary_dir(output: &Path) -> Result<PathBuf> {
    let name = output.file_name().ok_or_else(|| Error::Output {
        path: output.to_owned(),
        reason: "names no folder".to_owned(),
    })?;
    let parent = output
        .parent()
        .filter(|p| !p.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    std::fs::create_dir_all(parent).map_err(io(parent))?;
    let mut prefix = std::ffi::OsString::from(".");
    prefix.push(name);
    prefix.push(".tmp-");
    let prefix = prefix.to_string_lossy().into_owned();
    for entry in std::fs::read_dir(parent).map_err(io(parent))? {
        let entry = entry.map_err(io(parent))?;
        let file_name = entry.file_name();
        let Some(pid) = file_name.to_str().and_then(|n| n.strip_prefix(&prefix)) else {
            continue;
        };
        let alive = pid.parse::<u32>().is_ok_and(|pid| {
            pid == std::process::id() || Path::new("/proc").join(pid.to_string()).exists()
        });
        if !alive || pid == std::process::id().to_string() {
            std::fs::remove_dir_all(entry.path()).map_err(io(entry.path()))?;
        }
    }
    let temporary = parent.join(format!("{prefix}{}", std::process::id()));
    std::fs::create_dir(&temporary).map_err(io(&temporary))?;
    Ok(temporary)
}

struct RemoveOnDrop(PathBuf);

impl Drop for RemoveOnDrop {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

fn sync_folder(dir: &Path) -> Result<()> {
    for entry in std::fs::read_dir(dir).map_err(io(dir))? {
        let path = entry.map_err(io(dir))?.path();
        File::open(&path)
            .and_then(|f| f.sync_all())
            .map_err(io(&path))?;
    }
    File::open(dir).and_then(|d| d.sync_all()).map_err(io(dir))
}

/// Files of a model folder that are weights or the model's configuration, not tokenizer files.
fn is_weights_or_config(name: &str) -> bool {
    name == "config.json"
        || name == "model.safetensors.index.json"
        || name == "pytorch_model.bin.index.json"
        || [".safetensors", ".bin", ".pth", ".pt", ".gguf"]
            .iter()
            .any(|ext| name.ends_with(ext))
}

/// Copies the tokenizer files of `from` (every file but weights and `config.json`, as the
/// reference copies its `vocab_files/llama_hf/*`).
fn copy_tokenizer(from: &Path, to: &Path) -> Result<()> {
    let mut copied = 0;
    for entry in std::fs::read_dir(from).map_err(io(from))? {
        let entry = entry.map_err(io(from))?;
        let path = entry.path();
        let name = entry.file_name();
        let Some(name_str) = name.to_str() else {
            continue;
        };
        if !path.is_file() || is_weights_or_config(name_str) {
            continue;
        }
        std::fs::copy(&path, to.join(&name)).map_err(io(&path))?;
        copied += 1;
    }
    if copied == 0 {
        return Err(Error::Output {
            path: from.to_owned(),
            reason: "holds no tokenizer files".to_owned(),
        });
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn half_precision_widens_to_the_same_float32_values() {
        let values = [
            0.0f32,
            -1.5,
            3.140625,
            65504.0,
            f32::INFINITY,
            6.1035156e-5,
            5.9604645e-8,
        ];
        let f16: Vec<u8> = values
            .iter()
            .flat_map(|&v| half::f16::from_f32(v).to_le_bytes())
            .collect();
        let bf16: Vec<u8> = values
            .iter()
            .flat_map(|&v| half::bf16::from_f32(v).to_le_bytes())
            .collect();
        let as_f32 = |bytes: Vec<u8>| -> Vec<f32> {
            bytes
                .chunks_exact(4)
                .map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]]))
                .collect()
        };
        let expect = |f: fn(f32) -> f32| -> Vec<f32> { values.iter().map(|&v| f(v)).collect() };
        assert_eq!(
            as_f32(to_f32(f16, Dtype::F16)),
            expect(|v| half::f16::from_f32(v).to_f32())
        );
        assert_eq!(
            as_f32(to_f32(bf16, Dtype::BF16)),
            expect(|v| half::bf16::from_f32(v).to_f32())
        );
        let f64s: Vec<u8> = [0.1f64, -2.5]
            .iter()
            .flat_map(|v| v.to_le_bytes())
            .collect();
        assert_eq!(as_f32(to_f32(f64s, Dtype::F64)), [0.1f32, -2.5]);
    }

    #[test]
    fn tensors_are_ordered_as_transformers_llama_registers_them() {
        let mut names = vec![
            "lm_head.weight",
            "model.layers.10.input_layernorm.weight",
            "model.layers.2.post_attention_layernorm.weight",
            "model.layers.2.mlp.down_proj.weight",
            "model.norm.weight",
            "model.layers.2.self_attn.v_proj.weight",
            "model.layers.2.self_attn.q_proj.weight",
            "model.embed_tokens.weight",
        ];
        names.sort_by_key(|n| hf_order(n));
        assert_eq!(
            names,
            [
                "model.embed_tokens.weight",
                "model.layers.2.self_attn.q_proj.weight",
                "model.layers.2.self_attn.v_proj.weight",
                "model.layers.2.mlp.down_proj.weight",
                "model.layers.2.post_attention_layernorm.weight",
                "model.layers.10.input_layernorm.weight",
                "model.norm.weight",
                "lm_head.weight",
            ]
        );
    }
}
