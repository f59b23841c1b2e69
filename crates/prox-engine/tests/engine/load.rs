//! Loading Hugging Face folders tensor by tensor: the same model as reading whole files
//! (every stored float type, single and sharded), quantized while loading exactly as after
//! loading, and damaged files reported with their name, never a panic.

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use candle_core::{DType, Device, Tensor};
use candle_nn::VarBuilder;
use prox_engine::{
    Config, Error, GgmlDType, HfConfig, KvCache, Llama, LoadOptions, LogitsAt, Model,
};
use serde_json::Value;

/// Token ids valid in the fixture's and the random models' vocabularies.
const PROMPTS: [&[u32]; 2] = [&[1, 5, 7, 9, 11, 13, 2, 40], &[1, 3, 30]];

fn fixture_dir() -> PathBuf {
    prox_test::fixture("tiny-llama")
}

/// Logits at every position of [`PROMPTS`], batched, through the cached path.
fn logits(llama: &Llama) -> Vec<Vec<f32>> {
    let mut caches: Vec<KvCache> = PROMPTS
        .iter()
        .map(|p| KvCache::new(llama, p.len()).unwrap())
        .collect();
    let mut refs: Vec<&mut KvCache> = caches.iter_mut().collect();
    llama
        .forward(&PROMPTS, &mut refs, &LogitsAt::All)
        .unwrap()
        .to_vec2::<f32>()
        .unwrap()
}

/// Bit-for-bit equality of two logit matrices, with the first difference in the message.
fn assert_same_bits(a: &[Vec<f32>], b: &[Vec<f32>], what: &str) {
    assert_eq!(a.len(), b.len(), "{what}: rows");
    for (r, (x, y)) in a.iter().zip(b).enumerate() {
        let first = x
            .iter()
            .zip(y)
            .position(|(p, q)| p.to_bits() != q.to_bits());
        if let Some(c) = first {
            panic!("{what}: row {r} column {c}: {} vs {}", x[c], y[c]);
        }
    }
}

/// The model as loading whole files builds it: every tensor of `files` in memory, then
/// `Llama::load`.
fn load_whole_files(dir: &Path, files: &[PathBuf], dtype: DType) -> Llama {
    let config_path = dir.join("config.json");
    let config = HfConfig::from_file(&config_path)
        .unwrap()
        .into_config(&config_path)
        .unwrap();
    let mut tensors = HashMap::new();
    for file in files {
        tensors.extend(candle_core::safetensors::load(file, &Device::Cpu).unwrap());
    }
    let vb = VarBuilder::from_tensors(tensors, dtype, &Device::Cpu);
    Llama::load(&vb, &config).unwrap()
}

fn load(dir: &Path, dtype: DType, quantize: Option<GgmlDType>) -> Model {
    let options = LoadOptions {
        dtype,
        quantize,
        ..LoadOptions::default()
    };
    Model::load(dir, &options).unwrap()
}

fn load_err(dir: &Path) -> Error {
    Model::load(dir, &LoadOptions::default()).unwrap_err()
}

/// A folder with the fixture's config and its weights stored as `stored` (f32, bf16, f16).
fn fixture_as(stored: DType) -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    std::fs::copy(
        fixture_dir().join("config.json"),
        dir.path().join("config.json"),
    )
    .unwrap();
    let tensors: HashMap<String, Tensor> =
        candle_core::safetensors::load(fixture_dir().join("model.safetensors"), &Device::Cpu)
            .unwrap()
            .into_iter()
            .map(|(name, t)| (name, t.to_dtype(stored).unwrap()))
            .collect();
    candle_core::safetensors::save(&tensors, dir.path().join("model.safetensors")).unwrap();
    dir
}

fn tiny_config() -> Config {
    Config {
        hidden_size: 64,
        intermediate_size: 96,
        num_layers: 2,
        num_heads: 4,
        num_kv_heads: 2,
        head_dim: 16,
        vocab_size: 50,
        rms_norm_eps: 1e-5,
        rope_theta: 10_000.0,
        max_position_embeddings: 64,
        tie_word_embeddings: true,
        rope_interleaved: false,
        bos_token_id: Some(1),
        eos_token_ids: vec![2],
    }
}

fn write_config(dir: &Path, cfg: &Config) {
    std::fs::write(dir.join("config.json"), cfg.to_hf_json().to_string()).unwrap();
}

/// `Llama::random` saved as a folder: the in-memory model and the folder.
fn random_model_folder(cfg: &Config) -> (Llama, tempfile::TempDir) {
    let dir = tempfile::tempdir().unwrap();
    write_config(dir.path(), cfg);
    let tensors = Llama::random_weights(cfg, DType::F32, &Device::Cpu, 11).unwrap();
    candle_core::safetensors::save(&tensors, dir.path().join("model.safetensors")).unwrap();
    let model = Llama::random(cfg, DType::F32, &Device::Cpu, 11).unwrap();
    (model, dir)
}

#[test]
fn a_saved_random_model_loads_with_the_same_logits() {
    for tied in [true, false] {
        let cfg = Config {
            tie_word_embeddings: tied,
            ..tiny_config()
        };
        let (in_memory, dir) = random_model_folder(&cfg);
        let loaded = load(dir.path(), DType::F32, None);
        assert_eq!(loaded.llama.config(), &cfg);
        assert_same_bits(
            &logits(&loaded.llama),
            &logits(&in_memory),
            &format!("tied={tied}"),
        );
        assert_eq!(loaded.llama.weight_bytes(), in_memory.weight_bytes());
    }
}

#[test]
fn every_stored_float_type_loads_as_reading_whole_files_does() {
    for stored in [DType::F32, DType::BF16, DType::F16] {
        let dir = fixture_as(stored);
        let files = [dir.path().join("model.safetensors")];
        for compute in [DType::F32, DType::BF16] {
            let ours = load(dir.path(), compute, None);
            assert_eq!(ours.llama.dtype(), compute);
            let whole = load_whole_files(dir.path(), &files, compute);
            assert_same_bits(
                &logits(&ours.llama),
                &logits(&whole),
                &format!("{stored:?} stored, {compute:?} compute"),
            );
        }
    }
}

#[test]
fn quantizing_while_loading_equals_quantizing_after_loading() {
    // Q8_0 goes to the engine's kernel, Q4_0 to candle's; the fixture's rows of 64 and 160
    // values are whole 32-value blocks.
    for (q, compute) in [
        (GgmlDType::Q8_0, DType::F32),
        (GgmlDType::Q4_0, DType::F32),
        (GgmlDType::Q8_0, DType::BF16),
    ] {
        let while_loading = load(&fixture_dir(), compute, Some(q));
        let mut after = load(&fixture_dir(), compute, None);
        after.llama.quantize(q).unwrap();
        assert_same_bits(
            &logits(&while_loading.llama),
            &logits(&after.llama),
            &format!("{q:?}, {compute:?} compute"),
        );
        assert!(
            while_loading.llama.weight_bytes()
                < load(&fixture_dir(), compute, None).llama.weight_bytes()
        );
    }
    // A tied head is quantized too.
    let (_, dir) = random_model_folder(&tiny_config());
    let while_loading = load(dir.path(), DType::F32, Some(GgmlDType::Q8_0));
    let mut after = load(dir.path(), DType::F32, None);
    after.llama.quantize(GgmlDType::Q8_0).unwrap();
    assert_same_bits(
        &logits(&while_loading.llama),
        &logits(&after.llama),
        "tied head",
    );
}

/// The fixture split into two shards with an index, as `transformers` saves large models.
fn sharded_fixture() -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    std::fs::copy(
        fixture_dir().join("config.json"),
        dir.path().join("config.json"),
    )
    .unwrap();
    let tensors =
        candle_core::safetensors::load(fixture_dir().join("model.safetensors"), &Device::Cpu)
            .unwrap();
    let mut shards: [HashMap<String, Tensor>; 2] = Default::default();
    let mut weight_map = serde_json::Map::new();
    for (name, tensor) in tensors {
        // Layer 1 and the head in the second shard, the rest in the first.
        let second = name.contains("layers.1.") || name.starts_with("lm_head");
        let file = if second {
            "model-00002-of-00002.safetensors"
        } else {
            "model-00001-of-00002.safetensors"
        };
        weight_map.insert(name.clone(), Value::from(file));
        shards[usize::from(second)].insert(name, tensor);
    }
    for (i, shard) in shards.iter().enumerate() {
        let file = format!("model-0000{}-of-00002.safetensors", i + 1);
        candle_core::safetensors::save(shard, dir.path().join(file)).unwrap();
    }
    let index = serde_json::json!({"metadata": {}, "weight_map": weight_map});
    std::fs::write(
        dir.path().join("model.safetensors.index.json"),
        index.to_string(),
    )
    .unwrap();
    dir
}

#[test]
fn a_sharded_folder_loads_as_the_single_file() {
    let dir = sharded_fixture();
    let files = prox_engine::safetensors_files(dir.path()).unwrap();
    assert_eq!(files.len(), 2);
    let single = load(&fixture_dir(), DType::F32, None);
    let sharded = load(dir.path(), DType::F32, None);
    assert_same_bits(
        &logits(&sharded.llama),
        &logits(&single.llama),
        "sharded vs single",
    );
    let whole = load_whole_files(dir.path(), &files, DType::F32);
    assert_same_bits(
        &logits(&sharded.llama),
        &logits(&whole),
        "sharded vs whole files",
    );
}

#[test]
fn a_missing_shard_names_the_file() {
    let dir = sharded_fixture();
    let gone = dir.path().join("model-00002-of-00002.safetensors");
    std::fs::remove_file(&gone).unwrap();
    let err = load_err(dir.path());
    assert!(
        matches!(&err, Error::Read { path, .. } if path == &gone),
        "{err:?}"
    );
}

/// A copy of the fixture whose `model.safetensors` is `edit`ed.
fn damaged_fixture(edit: impl FnOnce(&mut Vec<u8>)) -> (tempfile::TempDir, PathBuf) {
    let dir = tempfile::tempdir().unwrap();
    std::fs::copy(
        fixture_dir().join("config.json"),
        dir.path().join("config.json"),
    )
    .unwrap();
    let mut bytes = std::fs::read(fixture_dir().join("model.safetensors")).unwrap();
    edit(&mut bytes);
    let file = dir.path().join("model.safetensors");
    std::fs::write(&file, bytes).unwrap();
    (dir, file)
}

fn message(err: &Error) -> String {
    let mut text = err.to_string();
    let mut source = std::error::Error::source(err);
    while let Some(s) = source {
        text.push_str(": ");
        text.push_str(&s.to_string());
        source = s.source();
    }
    text
}

#[test]
fn a_truncated_or_corrupt_file_is_an_error_naming_it() {
    let header_len = |bytes: &[u8]| u64::from_le_bytes(bytes[..8].try_into().unwrap()) as usize;
    type Edit = Box<dyn FnOnce(&mut Vec<u8>)>;
    let cases: Vec<(&str, Edit)> = vec![
        (
            "truncated in the data",
            Box::new(|b| b.truncate(b.len() / 2)),
        ),
        ("one byte short", Box::new(|b| b.truncate(b.len() - 1))),
        ("a byte too many", Box::new(|b| b.push(0))),
        (
            "truncated in the header",
            Box::new(move |b| {
                let n = header_len(b);
                b.truncate(8 + n / 2)
            }),
        ),
        ("shorter than the length", Box::new(|b| b.truncate(5))),
        (
            "a huge header length",
            Box::new(|b| b[..8].copy_from_slice(&u64::MAX.to_le_bytes())),
        ),
        (
            "a header that is not JSON",
            Box::new(move |b| {
                let n = header_len(b);
                b[8..8 + n].fill(b'#')
            }),
        ),
        (
            "overlapping tensor offsets",
            Box::new(move |b| {
                let n = header_len(b);
                let text = String::from_utf8(b[8..8 + n].to_vec()).unwrap();
                // The first tensor's end moved: the next one no longer starts there.
                let at = text.find("\"data_offsets\":[0,").unwrap() + "\"data_offsets\":[0,".len();
                let mut edited = text.into_bytes();
                edited[at] = if edited[at] == b'1' { b'2' } else { b'1' };
                b[8..8 + n].copy_from_slice(&edited);
            }),
        ),
    ];
    for (what, edit) in cases {
        let (_dir, file) = damaged_fixture(edit);
        let err = load_err(file.parent().unwrap());
        let text = message(&err);
        assert!(
            text.contains(&file.display().to_string()),
            "{what}: the error does not name the file: {text}"
        );
    }
}

#[test]
fn a_tensor_of_the_wrong_shape_names_the_file_and_the_tensor() {
    let dir = tempfile::tempdir().unwrap();
    let config = std::fs::read_to_string(fixture_dir().join("config.json")).unwrap();
    let mut config: Value = serde_json::from_str(&config).unwrap();
    // Two more MLP features than the weights have.
    config["intermediate_size"] = Value::from(162);
    std::fs::write(dir.path().join("config.json"), config.to_string()).unwrap();
    let file = dir.path().join("model.safetensors");
    std::fs::copy(fixture_dir().join("model.safetensors"), &file).unwrap();
    let err = load_err(dir.path());
    match &err {
        Error::Tensor { path, tensor, .. } => {
            assert_eq!(path, &file);
            assert_eq!(tensor, "model.layers.0.mlp.gate_proj.weight");
        }
        other => panic!("{other:?}"),
    }
}

#[test]
fn a_missing_tensor_is_named() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::copy(
        fixture_dir().join("config.json"),
        dir.path().join("config.json"),
    )
    .unwrap();
    let mut tensors =
        candle_core::safetensors::load(fixture_dir().join("model.safetensors"), &Device::Cpu)
            .unwrap();
    tensors.remove("model.norm.weight").unwrap();
    candle_core::safetensors::save(&tensors, dir.path().join("model.safetensors")).unwrap();
    let text = message(&load_err(dir.path()));
    assert!(text.contains("model.norm.weight"), "{text}");
}

#[test]
fn requantizing_a_gguf_file_while_loading_equals_requantizing_after_loading() {
    let path = prox_test::fetched::smollm2_gguf();
    let while_loading = Model::load(
        &path,
        &LoadOptions {
            quantize: Some(GgmlDType::Q8_0),
            ..LoadOptions::default()
        },
    )
    .unwrap();
    let while_loading = logits(&while_loading.llama);
    let mut after = Model::load(
        &path,
        &LoadOptions {
            dequantize: true,
            ..LoadOptions::default()
        },
    )
    .unwrap();
    after.llama.quantize(GgmlDType::Q8_0).unwrap();
    assert_same_bits(
        &while_loading,
        &logits(&after.llama),
        "SmolLM2 Q4_1 -> Q8_0",
    );
}

#[test]
fn a_q4_1_gguf_file_is_requantized_to_q8_0_by_default_on_the_cpu() {
    // SmolLM2's projections are Q4_1, its embedding (the tied head) Q8_0, which requantizing
    // gives back unchanged.
    let path = prox_test::fetched::smollm2_gguf();
    let default = Model::load(&path, &LoadOptions::default()).unwrap();
    let q8_0 = load(&path, DType::F32, Some(GgmlDType::Q8_0));
    assert_same_bits(
        &logits(&default.llama),
        &logits(&q8_0.llama),
        "SmolLM2 by default vs --quantize q8_0",
    );
}

proptest::proptest! {
    #![proptest_config(proptest::prelude::ProptestConfig::with_cases(48))]

    /// Whatever bytes of the file are cut off or changed, loading returns (an error naming
    /// the file, or weights), never panics.
    #[test]
    fn any_damage_to_a_safetensors_file_is_an_error_or_weights_never_a_panic(
        cut in proptest::option::of(0usize..4096),
        edits in proptest::collection::vec((0usize..2048, proptest::prelude::any::<u8>()), 0..8),
    ) {
        let (dir, file) = damaged_fixture(|bytes| {
            for (at, byte) in &edits {
                if let Some(b) = bytes.get_mut(*at) {
                    *b = *byte;
                }
            }
            if let Some(cut) = cut {
                bytes.truncate(cut);
            }
        });
        let loaded = std::panic::catch_unwind(|| Model::load(dir.path(), &LoadOptions::default()));
        proptest::prop_assert!(loaded.is_ok(), "loading panicked");
        if let Ok(Err(err)) = loaded {
            let text = message(&err);
            proptest::prop_assert!(
                text.contains(&file.display().to_string()) || text.contains("tensor"),
                "{text}"
            );
        }
    }
}
