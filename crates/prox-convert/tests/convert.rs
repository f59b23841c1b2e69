//! `prox convert litgpt` against the reference conversion (`fixtures/litgpt`): two tiny Llama
//! configurations (two key/value groups, and one as `tiny_LLaMA_0_3b` has), each with two fabric
//! checkpoints, a `lit_model.pth` and the reference's output. Tensors must be bit-identical,
//! `config.json` equal, and the engine's logits of the converted folders within 1e-4 of
//! transformers'.

#![allow(clippy::unwrap_used)] // test helpers: a failure is a test failure

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use proptest::prelude::*;
use prox_convert::{
    convert_checkpoint, convert_series, list_series, ConvertOptions, Error, Outcome, Progress,
    SeriesOptions,
};
use safetensors::SafeTensors;
use serde_json::Value;

const CONFIGS: [&str; 2] = ["tiny_LLaMA_test_gqa", "tiny_LLaMA_test_mqa"];
const LOGIT_TOLERANCE: f32 = 1e-4;

fn fixture(config: &str) -> PathBuf {
    prox_test::fixture(Path::new("litgpt").join(config))
}

/// The configuration as a litgpt config JSON, for `lit_model.pth`, which carries no hparams.
fn arch_file(config: &str, dir: &Path) -> String {
    let logits = read_json(&fixture(config).join("expected/logits.json"));
    let path = dir.join(format!("{config}.json"));
    std::fs::write(&path, logits["config"].to_string()).unwrap();
    path.to_str().unwrap().to_owned()
}

fn read_json(path: &Path) -> Value {
    serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap()
}

/// Every tensor of `ours` against `expected`, listing each difference.
fn tensor_mismatches(ours: &Path, expected: &Path) -> Vec<String> {
    fn load(dir: &Path) -> BTreeMap<String, (String, Vec<usize>, Vec<u8>)> {
        let files = prox_engine::safetensors_files(dir).unwrap();
        let mut tensors = BTreeMap::new();
        for file in files {
            let bytes = std::fs::read(&file).unwrap();
            let st = SafeTensors::deserialize(&bytes).unwrap();
            for (name, view) in st.tensors() {
                let entry = (
                    format!("{:?}", view.dtype()),
                    view.shape().to_vec(),
                    view.data().to_vec(),
                );
                assert!(
                    tensors.insert(name.clone(), entry).is_none(),
                    "{name} twice in {}",
                    dir.display()
                );
            }
        }
        tensors
    }
    let (ours, expected) = (load(ours), load(expected));
    let mut mismatches = Vec::new();
    for (name, (dtype, shape, data)) in &expected {
        match ours.get(name) {
            None => mismatches.push(format!("{name}: missing")),
            Some((d, s, _)) if (d, s) != (dtype, shape) => {
                mismatches.push(format!("{name}: {d} {s:?}, expected {dtype} {shape:?}"))
            }
            Some((_, _, bytes)) if bytes != data => {
                let first = bytes
                    .iter()
                    .zip(data)
                    .position(|(a, b)| a != b)
                    .unwrap_or(0);
                mismatches.push(format!("{name}: bytes differ from byte {first}"))
            }
            Some(_) => {}
        }
    }
    for name in ours.keys().filter(|n| !expected.contains_key(*n)) {
        mismatches.push(format!("{name}: not in the reference"));
    }
    mismatches
}

fn config_mismatch(ours: &Path, expected: &Path) -> Option<String> {
    let (a, b) = (
        read_json(&ours.join("config.json")),
        read_json(&expected.join("config.json")),
    );
    (a != b).then(|| format!("config.json: {a} vs {b}"))
}

#[test]
fn every_fabric_checkpoint_converts_to_the_reference_bit_for_bit() {
    let out = tempfile::tempdir().unwrap();
    let mut mismatches = Vec::new();
    for config in CONFIGS {
        for (checkpoint, folder) in [
            ("iter-002000-ckpt.pth", "1B"),
            ("iter-004000-ckpt.pth", "2B"),
        ] {
            let output = out.path().join(config).join(folder);
            let outcome = convert_checkpoint(
                &fixture(config).join(checkpoint),
                &output,
                &ConvertOptions::default(),
            )
            .unwrap();
            assert_eq!(
                outcome,
                Outcome::Converted {
                    files: vec!["model.safetensors".to_owned()]
                }
            );
            let expected = fixture(config).join("expected").join(folder);
            let case = format!("{config}/{checkpoint}");
            mismatches.extend(
                tensor_mismatches(&output, &expected)
                    .into_iter()
                    .map(|m| format!("{case}: {m}")),
            );
            mismatches.extend(config_mismatch(&output, &expected).map(|m| format!("{case}: {m}")));
            // The same safetensors header and layout too, and config.json as Python wrote it.
            for file in ["model.safetensors", "config.json"] {
                if std::fs::read(output.join(file)).unwrap()
                    != std::fs::read(expected.join(file)).unwrap()
                {
                    mismatches.push(format!("{case}: {file} differs in its bytes"));
                }
            }
        }
    }
    assert!(
        mismatches.is_empty(),
        "{} mismatches:\n{}",
        mismatches.len(),
        mismatches.join("\n")
    );
}

#[test]
fn lit_model_converts_to_the_same_tensors_as_the_last_checkpoint() {
    let out = tempfile::tempdir().unwrap();
    let mut mismatches = Vec::new();
    for config in CONFIGS {
        let options = ConvertOptions {
            arch: Some(arch_file(config, out.path())),
            ..ConvertOptions::default()
        };
        let output = out.path().join(config);
        convert_checkpoint(&fixture(config).join("lit_model.pth"), &output, &options).unwrap();
        let expected = fixture(config).join("expected/2B");
        mismatches.extend(
            tensor_mismatches(&output, &expected)
                .into_iter()
                .map(|m| format!("{config}: {m}")),
        );
        mismatches.extend(config_mismatch(&output, &expected));
    }
    assert!(mismatches.is_empty(), "{}", mismatches.join("\n"));
}

#[test]
fn a_folder_converts_in_step_order_into_token_named_folders_and_reruns_skip_them() {
    let config = CONFIGS[0];
    let out = tempfile::tempdir().unwrap();
    let series = list_series(&fixture(config), &SeriesOptions::default()).unwrap();
    let names: Vec<_> = series
        .checkpoints
        .iter()
        .map(|c| (c.step, c.name.as_str()))
        .collect();
    assert_eq!(names, [(2000, "1B"), (4000, "2B")]);
    assert_eq!(series.ignored, [fixture(config).join("lit_model.pth")]);

    let mut started = Vec::new();
    let done = convert_series(
        &series,
        out.path(),
        &ConvertOptions::default(),
        |progress| {
            if let Progress::Start(c) = progress {
                started.push(c.step)
            }
        },
    )
    .unwrap();
    assert_eq!(started, [2000, 4000]);
    assert!(done
        .iter()
        .all(|(_, outcome)| matches!(outcome, Outcome::Converted { .. })));
    for folder in ["1B", "2B"] {
        let mismatches = tensor_mismatches(
            &out.path().join(folder),
            &fixture(config).join("expected").join(folder),
        );
        assert!(mismatches.is_empty(), "{folder}: {}", mismatches.join("\n"));
    }
    let mut listing: Vec<_> = std::fs::read_dir(out.path())
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .collect();
    listing.sort();
    assert_eq!(
        listing,
        ["1B", "2B"],
        "nothing but the two folders is left behind"
    );

    let again = convert_series(&series, out.path(), &ConvertOptions::default(), |_| {}).unwrap();
    assert!(again
        .iter()
        .all(|(_, outcome)| *outcome == Outcome::AlreadyDone));
}

#[test]
fn the_leftover_of_a_killed_conversion_is_replaced() {
    let out = tempfile::tempdir().unwrap();
    // A process id no process has: Linux's pid_max is at most 2^22.
    let leftover = out.path().join(".1B.tmp-99999999");
    std::fs::create_dir(&leftover).unwrap();
    std::fs::write(leftover.join("model.safetensors"), "half").unwrap();
    let input = fixture(CONFIGS[0]).join("iter-002000-ckpt.pth");
    convert_checkpoint(&input, &out.path().join("1B"), &ConvertOptions::default()).unwrap();
    let mut listing: Vec<_> = std::fs::read_dir(out.path())
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .collect();
    listing.sort();
    assert_eq!(listing, ["1B"]);
}

#[test]
fn steps_pick_checkpoints_without_renumbering_them_and_a_missing_step_is_an_error() {
    let dir = fixture(CONFIGS[1]);
    let options = SeriesOptions {
        save_token_interval: 5,
        base_token: 10,
        steps: Some(vec![4000]),
    };
    let series = list_series(&dir, &options).unwrap();
    let names: Vec<_> = series
        .checkpoints
        .iter()
        .map(|c| (c.step, c.name.as_str()))
        .collect();
    assert_eq!(names, [(4000, "20B")]);

    let options = SeriesOptions {
        steps: Some(vec![3000]),
        ..SeriesOptions::default()
    };
    let error = list_series(&dir, &options).unwrap_err().to_string();
    assert!(
        error.contains("no checkpoint of step 3000") && error.contains("2000, 4000"),
        "{error}"
    );
}

#[test]
fn shards_are_cut_as_transformers_cuts_them_and_indexed() {
    let config = CONFIGS[0];
    let out = tempfile::tempdir().unwrap();
    let max = 100_000;
    let options = ConvertOptions {
        max_shard_bytes: max,
        ..ConvertOptions::default()
    };
    let output = out.path().join("sharded");
    let outcome = convert_checkpoint(
        &fixture(config).join("iter-004000-ckpt.pth"),
        &output,
        &options,
    )
    .unwrap();
    let Outcome::Converted { files } = outcome else {
        panic!("not converted")
    };
    // wte (131072 B) alone, then layer 0 (q 16 KiB + k 8 + v 8 + o 16 + norms + mlp 3x24 KiB...)
    assert!(files.len() > 2, "{files:?}");
    assert_eq!(
        files[0],
        format!("model-00001-of-{:05}.safetensors", files.len())
    );
    for file in &files[1..] {
        let size = std::fs::metadata(output.join(file)).unwrap().len();
        // Each shard below the limit (plus its header) unless a single tensor is larger.
        let bytes = std::fs::read(output.join(file)).unwrap();
        let st = SafeTensors::deserialize(&bytes).unwrap();
        assert!(
            st.len() == 1 || size < max + 4096,
            "{file}: {size} bytes, {} tensors",
            st.len()
        );
    }
    let index = read_json(&output.join("model.safetensors.index.json"));
    let map = index["weight_map"].as_object().unwrap();
    assert_eq!(map.len(), 21);
    assert_eq!(map["model.embed_tokens.weight"], files[0]);
    // Cut in the order of transformers' LlamaForCausalLM state dict, as the reference's
    // save_pretrained cuts them: each tensor in the same shard as the one before or the next.
    let mut hf_order = vec!["model.embed_tokens.weight".to_owned()];
    for layer in 0..2 {
        for part in [
            "self_attn.q_proj",
            "self_attn.k_proj",
            "self_attn.v_proj",
            "self_attn.o_proj",
            "mlp.gate_proj",
            "mlp.up_proj",
            "mlp.down_proj",
            "input_layernorm",
            "post_attention_layernorm",
        ] {
            hf_order.push(format!("model.layers.{layer}.{part}.weight"));
        }
    }
    hf_order.extend(["model.norm.weight".to_owned(), "lm_head.weight".to_owned()]);
    let shard_of: Vec<usize> = hf_order
        .iter()
        .map(|name| files.iter().position(|f| *f == map[name]).unwrap())
        .collect();
    assert!(
        shard_of
            .windows(2)
            .all(|w| w[1] == w[0] || w[1] == w[0] + 1),
        "{shard_of:?}"
    );
    assert_eq!(*shard_of.last().unwrap(), files.len() - 1);
    assert_eq!(index["metadata"]["total_size"], 509_184);
    let text = std::fs::read_to_string(output.join("model.safetensors.index.json")).unwrap();
    assert!(
        text.starts_with(
            "{\n  \"metadata\": {\n    \"total_size\": 509184\n  },\n  \"weight_map\": {\n"
        ),
        "{text}"
    );
    assert!(text.ends_with("}\n}\n"));
    let mismatches = tensor_mismatches(&output, &fixture(config).join("expected/2B"));
    assert!(mismatches.is_empty(), "{}", mismatches.join("\n"));
}

#[test]
fn the_engine_gives_transformers_logits_for_the_converted_folders() {
    let out = tempfile::tempdir().unwrap();
    let mut mismatches = Vec::new();
    for config in CONFIGS {
        let golden = read_json(&fixture(config).join("expected/logits.json"));
        let series = list_series(&fixture(config), &SeriesOptions::default()).unwrap();
        convert_series(
            &series,
            &out.path().join(config),
            &ConvertOptions::default(),
            |_| {},
        )
        .unwrap();
        for (folder, by_prompt) in golden["logits_by_step"].as_object().unwrap() {
            let model = prox_engine::Model::load(
                &out.path().join(config).join(folder),
                &Default::default(),
            )
            .unwrap();
            for (p, prompt) in golden["prompts"].as_array().unwrap().iter().enumerate() {
                let ids: Vec<u32> = prompt
                    .as_array()
                    .unwrap()
                    .iter()
                    .map(|v| v.as_u64().unwrap() as u32)
                    .collect();
                let logits = model
                    .llama
                    .forward_uncached(&[&ids], &prox_engine::LogitsAt::All)
                    .unwrap()
                    .to_vec2::<f32>()
                    .unwrap();
                let expected = by_prompt[p].as_array().unwrap();
                for (pos, row) in logits.iter().enumerate() {
                    let want = expected[pos].as_array().unwrap();
                    let worst = row
                        .iter()
                        .zip(want)
                        .map(|(a, b)| (a - b.as_f64().unwrap() as f32).abs())
                        .fold(0.0f32, f32::max);
                    if worst > LOGIT_TOLERANCE {
                        mismatches.push(format!(
                            "{config} {folder} prompt {p} position {pos}: off by {worst}"
                        ));
                    }
                }
            }
        }
    }
    assert!(mismatches.is_empty(), "{}", mismatches.join("\n"));
}

#[test]
fn an_arch_that_contradicts_the_hparams_is_an_error_and_writes_nothing() {
    let out = tempfile::tempdir().unwrap();
    let output = out.path().join("1B");
    let options = ConvertOptions {
        arch: Some("tiny_LLaMA_0_3b".to_owned()),
        ..ConvertOptions::default()
    };
    let error = convert_checkpoint(
        &fixture(CONFIGS[1]).join("iter-002000-ckpt.pth"),
        &output,
        &options,
    )
    .unwrap_err();
    let message = error.to_string();
    assert!(matches!(error, Error::ArchMismatch { .. }), "{message}");
    assert!(
        message.contains("n_layer: 24 vs 2") && message.contains("iter-002000-ckpt.pth"),
        "{message}"
    );
    assert!(std::fs::read_dir(out.path()).unwrap().next().is_none());
}

#[test]
fn tensor_shapes_that_contradict_the_arch_are_an_error() {
    let out = tempfile::tempdir().unwrap();
    let options = ConvertOptions {
        arch: Some("tiny_LLaMA_0_3b".to_owned()),
        ..ConvertOptions::default()
    };
    let error = convert_checkpoint(
        &fixture(CONFIGS[0]).join("lit_model.pth"),
        &out.path().join("x"),
        &options,
    )
    .unwrap_err()
    .to_string();
    assert!(
        error.contains("lit_model.pth")
            && error.contains(
                "transformer.wte.weight: shape [512, 64], tiny_LLaMA_0_3b has [32000, 1280]"
            ),
        "{error}"
    );
    assert!(std::fs::read_dir(out.path()).unwrap().next().is_none());
}

#[test]
fn without_arch_or_descriptive_hparams_the_error_asks_for_arch() {
    let out = tempfile::tempdir().unwrap();
    let error = convert_checkpoint(
        &fixture(CONFIGS[0]).join("lit_model.pth"),
        &out.path().join("x"),
        &ConvertOptions::default(),
    )
    .unwrap_err()
    .to_string();
    assert!(
        error.contains("--arch") && error.contains("tiny_LLaMA_0_3b"),
        "{error}"
    );
}

#[test]
fn an_existing_folder_that_is_not_a_conversion_is_refused() {
    let out = tempfile::tempdir().unwrap();
    std::fs::write(out.path().join("notes.txt"), "mine").unwrap();
    let error = convert_checkpoint(
        &fixture(CONFIGS[0]).join("iter-002000-ckpt.pth"),
        out.path(),
        &ConvertOptions::default(),
    )
    .unwrap_err()
    .to_string();
    assert!(error.contains("not a complete conversion"), "{error}");
    assert_eq!(
        std::fs::read_to_string(out.path().join("notes.txt")).unwrap(),
        "mine"
    );
}

#[test]
fn tokenizer_files_are_copied_and_weights_beside_them_are_not() {
    let out = tempfile::tempdir().unwrap();
    let tokenizer = out.path().join("tok");
    std::fs::create_dir(&tokenizer).unwrap();
    for file in [
        "tokenizer.model",
        "tokenizer_config.json",
        "special_tokens_map.json",
        "config.json",
        "model.safetensors",
    ] {
        std::fs::write(tokenizer.join(file), file).unwrap();
    }
    let options = ConvertOptions {
        tokenizer: Some(tokenizer),
        ..ConvertOptions::default()
    };
    let output = out.path().join("1B");
    convert_checkpoint(
        &fixture(CONFIGS[0]).join("iter-002000-ckpt.pth"),
        &output,
        &options,
    )
    .unwrap();
    for file in [
        "tokenizer.model",
        "tokenizer_config.json",
        "special_tokens_map.json",
    ] {
        assert_eq!(std::fs::read_to_string(output.join(file)).unwrap(), file);
    }
    assert_ne!(
        std::fs::read_to_string(output.join("config.json")).unwrap(),
        "config.json"
    );
    assert!(tensor_mismatches(&output, &fixture(CONFIGS[0]).join("expected/1B")).is_empty());
}

/// `lit_model.pth` of a fixture with every storage turned into bfloat16 (the upper half of each
/// float32), as a bf16-true run would save it.
fn bf16_copy(source: &Path) -> Vec<u8> {
    use std::io::{Read, Write};
    let mut archive = zip::ZipArchive::new(std::fs::File::open(source).unwrap()).unwrap();
    let mut writer = zip::ZipWriter::new(std::io::Cursor::new(Vec::new()));
    let stored =
        zip::write::SimpleFileOptions::default().compression_method(zip::CompressionMethod::Stored);
    for i in 0..archive.len() {
        let mut entry = archive.by_index(i).unwrap();
        let name = entry.name().unwrap().into_owned();
        let mut bytes = Vec::new();
        entry.read_to_end(&mut bytes).unwrap();
        if name.ends_with("/data.pkl") {
            // The class is named once, by a GLOBAL opcode: `ctorch\nFloatStorage\n`.
            let (from, to) = (&b"\nFloatStorage\n"[..], &b"\nBFloat16Storage\n"[..]);
            let at = bytes.windows(from.len()).position(|w| w == from).unwrap();
            bytes.splice(at..at + from.len(), to.iter().copied());
        } else if name.contains("/data/") {
            bytes = bytes.chunks_exact(4).flat_map(|c| [c[2], c[3]]).collect();
        }
        writer.start_file(name, stored).unwrap();
        writer.write_all(&bytes).unwrap();
    }
    writer.finish().unwrap().into_inner()
}

#[test]
fn bf16_checkpoints_come_out_as_float32_as_the_reference_round_trip_writes_them() {
    let config = CONFIGS[0];
    let out = tempfile::tempdir().unwrap();
    let input = out.path().join("lit_model.pth");
    std::fs::write(&input, bf16_copy(&fixture(config).join("lit_model.pth"))).unwrap();
    let options = ConvertOptions {
        arch: Some(arch_file(config, out.path())),
        ..ConvertOptions::default()
    };
    let output = out.path().join("hf");
    convert_checkpoint(&input, &output, &options).unwrap();

    let ours = std::fs::read(output.join("model.safetensors")).unwrap();
    let reference = std::fs::read(fixture(config).join("expected/2B/model.safetensors")).unwrap();
    let (ours, reference) = (
        SafeTensors::deserialize(&ours).unwrap(),
        SafeTensors::deserialize(&reference).unwrap(),
    );
    let mut mismatches = Vec::new();
    for (name, want) in reference.tensors() {
        let got = ours.tensor(&name).unwrap();
        assert_eq!(got.dtype(), safetensors::Dtype::F32, "{name}");
        // float32 with the low 16 bits of the reference's values cleared
        let truncated: Vec<u8> = want
            .data()
            .chunks_exact(4)
            .flat_map(|c| [0, 0, c[2], c[3]])
            .collect();
        if got.data() != truncated.as_slice() {
            mismatches.push(name);
        }
    }
    assert!(mismatches.is_empty(), "{mismatches:?}");
}

/// Where an archive entry's bytes start in a checkpoint file.
fn entry_data_start(bytes: &[u8], suffix: &str) -> u64 {
    let mut archive = zip::ZipArchive::new(std::io::Cursor::new(bytes)).unwrap();
    let index = (0..archive.len())
        .find(|&i| {
            archive
                .by_index_raw(i)
                .unwrap()
                .name()
                .unwrap()
                .ends_with(suffix)
        })
        .unwrap();
    let start = archive.by_index_raw(index).unwrap().data_start().unwrap();
    start
}

#[test]
fn the_optimizer_state_is_never_read() {
    // Damage exp_avg of the embedding (storage 18): a conversion that read it would fail its
    // CRC check.
    let config = CONFIGS[0];
    let mut bytes = std::fs::read(fixture(config).join("iter-002000-ckpt.pth")).unwrap();
    let start = entry_data_start(&bytes, "/data/18") as usize;
    for b in &mut bytes[start..start + 4096] {
        *b ^= 0xff;
    }
    let out = tempfile::tempdir().unwrap();
    let input = out.path().join("iter-002000-ckpt.pth");
    std::fs::write(&input, &bytes).unwrap();
    convert_checkpoint(&input, &out.path().join("1B"), &ConvertOptions::default()).unwrap();
    let mismatches =
        tensor_mismatches(&out.path().join("1B"), &fixture(config).join("expected/1B"));
    assert!(mismatches.is_empty(), "{}", mismatches.join("\n"));
}

#[test]
fn a_damaged_model_tensor_is_an_error_naming_the_file_and_entry() {
    let config = CONFIGS[0];
    let mut bytes = std::fs::read(fixture(config).join("iter-002000-ckpt.pth")).unwrap();
    let start = entry_data_start(&bytes, "/data/2") as usize;
    bytes[start + 100] ^= 0x01;
    let out = tempfile::tempdir().unwrap();
    let input = out.path().join("iter-002000-ckpt.pth");
    std::fs::write(&input, &bytes).unwrap();
    let output = out.path().join("1B");
    let error = convert_checkpoint(&input, &output, &ConvertOptions::default())
        .unwrap_err()
        .to_string();
    assert!(
        error.contains("iter-002000-ckpt.pth") && error.contains("data/2") && error.contains("CRC"),
        "{error}"
    );
    assert!(!output.exists());
    let leftovers: Vec<_> = std::fs::read_dir(out.path())
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .collect();
    assert_eq!(
        leftovers,
        ["iter-002000-ckpt.pth"],
        "the temporary folder is removed"
    );
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(48))]

    #[test]
    fn truncated_or_damaged_checkpoints_fail_with_the_file_named_and_never_panic(
        cut in 0.0f64..1.0,
        flips in proptest::collection::vec((0.0f64..1.0, 1u8..=255), 0..4),
        truncate in any::<bool>(),
    ) {
        let config = CONFIGS[1];
        let original = std::fs::read(fixture(config).join("lit_model.pth")).unwrap();
        let mut bytes = original.clone();
        if truncate {
            bytes.truncate((cut * original.len() as f64) as usize);
        }
        for (at, mask) in &flips {
            if !bytes.is_empty() {
                let i = (at * bytes.len() as f64) as usize % bytes.len();
                bytes[i] ^= mask;
            }
        }
        let out = tempfile::tempdir().unwrap();
        let input = out.path().join("damaged.pth");
        std::fs::write(&input, &bytes).unwrap();
        let options = ConvertOptions { arch: Some(arch_file(config, out.path())), ..ConvertOptions::default() };
        let output = out.path().join("hf");
        match convert_checkpoint(&input, &output, &options) {
            Ok(_) => {
                // Damage the checks cannot see (zip fields nobody reads) may pass, but then the
                // tensors are the reference's.
                let mismatches = tensor_mismatches(&output, &fixture(config).join("expected/2B"));
                prop_assert!(mismatches.is_empty(), "{}", mismatches.join("\n"));
            }
            Err(error) => {
                prop_assert!(truncate || !flips.is_empty(), "the intact file failed: {error}");
                prop_assert!(error.to_string().contains("damaged.pth"), "{error}");
                prop_assert!(!output.exists());
            }
        }
    }
}
