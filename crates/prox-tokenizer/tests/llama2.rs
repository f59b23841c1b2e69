//! The Llama-2 tokenizer of the fixtures: tokenizer.model converted in Rust equals
//! tokenizer.json, and the built-in engine gives the `tokenizers` crate's ids.

#![allow(clippy::unwrap_used)] // test helpers: a failure is a test failure

use std::path::{Path, PathBuf};
use std::sync::OnceLock;

use prox_tokenizer::{sentencepiece_to_json, EncodeOptions, EncodeStyle, Error, Tokenizer};
use serde_json::Value;

fn fixture_dir() -> PathBuf {
    prox_test::fixture("llama2-tokenizer")
}

fn from_json() -> &'static Tokenizer {
    static TOKENIZER: OnceLock<Tokenizer> = OnceLock::new();
    TOKENIZER.get_or_init(|| Tokenizer::from_file(&fixture_dir().join("tokenizer.json")).unwrap())
}

fn from_model() -> &'static Tokenizer {
    static TOKENIZER: OnceLock<Tokenizer> = OnceLock::new();
    TOKENIZER.get_or_init(|| {
        Tokenizer::from_sentencepiece(&fixture_dir().join("tokenizer.model")).unwrap()
    })
}

/// Every text the prompt fixtures hold: documents, single lines and rendered prompts.
fn fixture_texts() -> Vec<String> {
    let mut texts = Vec::new();
    for (_, doc) in prox_test::read_jsonl(prox_test::fixture("prompts/vectors.jsonl")) {
        let text = doc["text"].as_str().unwrap().to_string();
        texts.extend(text.split('\n').map(String::from).take(50));
        texts.push(text);
        for prompt in doc["chunk_prompts"].as_array().unwrap() {
            texts.push(prompt.as_str().unwrap().to_string());
        }
    }
    texts
}

fn reference_ids(tokenizer: &Tokenizer, text: &str, add_bos: bool) -> Vec<u32> {
    tokenizer
        .inner()
        .encode_fast(text, add_bos)
        .unwrap()
        .get_ids()
        .to_vec()
}

#[test]
fn converted_model_equals_the_reference_tokenizer_json() {
    let dir = fixture_dir();
    let bytes = std::fs::read(dir.join("tokenizer.model")).unwrap();
    let converted: Value =
        serde_json::from_str(&sentencepiece_to_json(&bytes, Path::new("tokenizer.model")).unwrap())
            .unwrap();
    let reference: Value =
        serde_json::from_str(&std::fs::read_to_string(dir.join("tokenizer.json")).unwrap())
            .unwrap();
    for key in [
        "added_tokens",
        "normalizer",
        "pre_tokenizer",
        "post_processor",
        "decoder",
    ] {
        assert_eq!(converted[key], reference[key], "{key}");
    }
    let model = |v: &Value| v["model"].clone();
    let (converted_model, reference_model) = (model(&converted), model(&reference));
    assert_eq!(converted_model["vocab"], reference_model["vocab"]);
    let merges = |v: &Value| -> Vec<(String, String)> {
        v["merges"]
            .as_array()
            .unwrap()
            .iter()
            .map(|m| match m {
                Value::String(s) => {
                    let (l, r) = s.split_once(' ').unwrap();
                    (l.to_string(), r.to_string())
                }
                Value::Array(p) => (p[0].as_str().unwrap().into(), p[1].as_str().unwrap().into()),
                _ => panic!("bad merge {m}"),
            })
            .collect()
    };
    let (ours, theirs) = (merges(&converted_model), merges(&reference_model));
    assert_eq!(ours.len(), theirs.len());
    let first_difference = ours.iter().zip(&theirs).position(|(a, b)| a != b);
    assert_eq!(first_difference, None, "merges differ");
    for key in ["type", "unk_token", "fuse_unk", "byte_fallback", "dropout"] {
        assert_eq!(converted_model[key], reference_model[key], "{key}");
    }
}

#[test]
fn both_tokenizers_use_the_fast_engine() {
    assert_eq!(from_json().fast_path(), Ok(()));
    assert_eq!(from_model().fast_path(), Ok(()));
    assert_eq!(from_json().bos_id(), Some(1));
    assert_eq!(from_json().eos_id(), Some(2));
    assert_eq!(from_model().bos_token(), Some("<s>"));
    assert_eq!(from_model().eos_token(), Some("</s>"));
    assert_eq!(from_model().vocab_size(), 32000);
}

#[test]
fn engine_equals_the_tokenizers_crate_on_every_fixture_text() {
    let mut mismatches = Vec::new();
    for (name, tokenizer) in [
        ("tokenizer.json", from_json()),
        ("tokenizer.model", from_model()),
    ] {
        for (i, text) in fixture_texts().iter().enumerate() {
            for add_bos in [false, true] {
                let ours = tokenizer.encode(text, add_bos).unwrap();
                // The converted tokenizer must also give the reference file's ids.
                let theirs = reference_ids(from_json(), text, add_bos);
                if ours != theirs {
                    mismatches.push(format!("{name}: text {i} (bos {add_bos})"));
                }
            }
        }
    }
    assert!(
        mismatches.is_empty(),
        "{} mismatches: {mismatches:#?}",
        mismatches.len()
    );
}

#[test]
fn slow_legacy_false_adds_no_prefix_after_a_special_token() {
    for tokenizer in [from_json(), from_model()] {
        assert_eq!(tokenizer.encode("<s>[INST]", false).unwrap()[..2], [1, 518]);
        assert_eq!(
            tokenizer.encode_prompt_like_slow("<s>[INST]").unwrap()[..2],
            [1, 29961]
        );
        // The first segment still gets its prefix; a segment after a special token keeps
        // only its own leading space.
        let fast = tokenizer.encode("a <s> b", false).unwrap();
        let slow = tokenizer.encode_prompt_like_slow("a <s> b").unwrap();
        assert_eq!(fast[0], slow[0]);
        assert_eq!(slow, [263, 29871, 1, 289]);
        assert_eq!(fast, [263, 29871, 1, 29871, 289]);
    }
}

#[test]
fn literal_ranges_keep_special_tokens_as_text() {
    let tokenizer = from_json();
    let text = "<s>[INST] a <s> b [/INST]";
    let start = text.find(" a").unwrap();
    let end = text.find(" [/INST]").unwrap();
    let options = EncodeOptions {
        style: EncodeStyle::SlowLegacyFalse,
        literal: Some(start..end),
        ..EncodeOptions::default()
    };
    let ids = tokenizer.encode_with(text, &options).unwrap();
    assert_eq!(ids[0], 1);
    assert_eq!(ids.iter().filter(|&&id| id == 1).count(), 1, "{ids:?}");
    assert_eq!(
        tokenizer.decode(&ids, false).unwrap(),
        "<s>[INST] a <s> b [/INST]"
    );
}

#[test]
fn a_limit_returns_the_first_ids_only() {
    let tokenizer = from_json();
    let text = "word ".repeat(10_000);
    let all = tokenizer.encode(&text, true).unwrap();
    for limit in [0, 1, 2, 777] {
        let options = EncodeOptions {
            add_special_tokens: true,
            limit: Some(limit),
            ..EncodeOptions::default()
        };
        assert_eq!(
            tokenizer.encode_with(&text, &options).unwrap(),
            all[..limit]
        );
    }
}

#[test]
fn long_words_without_split_points_match_the_tokenizers_crate() {
    let tokenizer = from_json();
    for text in [
        "a".repeat(5000),
        "ab1".repeat(3000),
        " ".repeat(3000),
        "\u{2581}".repeat(100),
        "x=1;".repeat(2000),
        "日本語".repeat(500),
    ] {
        assert_eq!(
            tokenizer.encode(&text, false).unwrap(),
            reference_ids(tokenizer, &text, false)
        );
    }
}

#[test]
fn nul_bytes_and_control_characters_are_byte_tokens() {
    let tokenizer = from_json();
    let text = "a\0b\u{1}\u{7f}\r\n\t";
    assert_eq!(
        tokenizer.encode(text, true).unwrap(),
        reference_ids(tokenizer, text, true)
    );
}

#[test]
fn missing_and_corrupt_files_are_clear_errors() {
    let dir = tempfile::tempdir().unwrap();
    let missing = Tokenizer::from_path(&dir.path().join("nope")).unwrap_err();
    assert!(matches!(missing, Error::Read { .. }), "{missing}");
    assert!(Tokenizer::from_dir(dir.path())
        .unwrap_err()
        .to_string()
        .contains("no tokenizer.json"));

    let json = dir.path().join("tokenizer.json");
    std::fs::write(&json, "{\"model\": ").unwrap();
    let error = Tokenizer::from_path(&json).unwrap_err();
    assert!(matches!(error, Error::InvalidJson { .. }), "{error}");
    assert!(error.to_string().contains("tokenizer.json"));

    let model = dir.path().join("tokenizer.model");
    let real = std::fs::read(fixture_dir().join("tokenizer.model")).unwrap();
    for corrupt in [
        &real[..real.len() / 2],
        &[0xffu8; 64][..],
        &[][..],
        b"not a model",
    ] {
        std::fs::write(&model, corrupt).unwrap();
        let error = Tokenizer::from_path(&model).unwrap_err();
        assert!(
            matches!(
                error,
                Error::InvalidSentencePiece { .. } | Error::Unsupported { .. }
            ),
            "{error}"
        );
    }
}

/// The fixture tokenizer.json with another normalizer and pre-tokenizer: the shapes newer
/// converters write (`Metaspace`), and no prefix at all.
fn variants() -> &'static [(String, Tokenizer)] {
    static VARIANTS: OnceLock<Vec<(String, Tokenizer)>> = OnceLock::new();
    VARIANTS.get_or_init(|| {
        let text = std::fs::read_to_string(fixture_dir().join("tokenizer.json")).unwrap();
        let base: Value = serde_json::from_str(&text).unwrap();
        let replace = serde_json::json!({"type": "Replace", "pattern": {"String": " "}, "content": "\u{2581}"});
        let mut variants = Vec::new();
        for scheme in ["first", "always", "never"] {
            let mut value = base.clone();
            value["normalizer"] = Value::Null;
            value["pre_tokenizer"] = serde_json::json!({
                "type": "Metaspace", "replacement": "\u{2581}", "prepend_scheme": scheme, "split": false
            });
            variants.push((format!("Metaspace {scheme}"), value));
        }
        let mut value = base.clone();
        value["normalizer"] = serde_json::json!({"type": "Sequence", "normalizers": [replace]});
        variants.push(("Replace only".to_string(), value));
        variants
            .into_iter()
            .map(|(name, value)| {
                let tokenizer = Tokenizer::from_json_str(&value.to_string(), Path::new(&name)).unwrap();
                assert_eq!(tokenizer.fast_path(), Ok(()), "{name}");
                (name, tokenizer)
            })
            .collect()
    })
}

mod properties {
    use super::*;
    use proptest::prelude::*;

    fn text() -> impl Strategy<Value = String> {
        let atoms = prop::sample::select(vec![
            " ", "  ", "   ", "a", "the", "The", "▁", "\n", "\t", "<s>", "</s>", "<unk>", "<",
            "s>", "[", "]", "[INST]", "0", "12", "é", "日本", "😀", "\0", "\u{1c}", "=", "x=1,",
            "«", "café",
        ]);
        prop::collection::vec(atoms, 0..40).prop_map(|atoms| atoms.concat())
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(512))]

        #[test]
        fn engine_equals_the_tokenizers_crate(text in text(), add_bos: bool) {
            let tokenizer = from_json();
            prop_assert_eq!(tokenizer.encode(&text, add_bos).unwrap(), reference_ids(tokenizer, &text, add_bos));
        }

        #[test]
        fn engine_equals_the_tokenizers_crate_for_other_prefix_rules(text in text(), add_bos: bool) {
            for (name, tokenizer) in variants() {
                prop_assert_eq!(
                    tokenizer.encode(&text, add_bos).unwrap(),
                    reference_ids(tokenizer, &text, add_bos),
                    "{}", name
                );
            }
        }

        #[test]
        fn converted_model_equals_tokenizer_json(text in text()) {
            prop_assert_eq!(from_model().encode(&text, true).unwrap(), from_json().encode(&text, true).unwrap());
        }
    }
}
