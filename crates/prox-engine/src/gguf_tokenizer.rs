//! A `tokenizer.json` rebuilt from a GGUF file's `tokenizer.ggml.*` metadata, so that a
//! `.gguf` file needs no tokenizer beside it.
//!
//! - `gpt2` (byte-level BPE: SmolLM2, Llama 3…): tokens and merges as stored; the
//!   pre-tokenizer follows `tokenizer.ggml.pre` (`smollm` splits digits one by one).
//! - `llama` (SentencePiece BPE: Llama 2): merges derived from the token scores the way
//!   transformers' `SentencePieceExtractor` derives them, with byte fallback.
//!
//! Tokens of type 3 (control) become special added tokens, recognised in text.

use std::collections::HashMap;

use serde_json::{json, Value};

use crate::error::{Error, Result};
use crate::gguf::Metadata;

/// GGUF token types (llama.cpp `llama_token_type`).
const TOKEN_TYPE_CONTROL: i64 = 3;
const TOKEN_TYPE_USER_DEFINED: i64 = 4;

/// The `tokenizer.json` text for the file's tokenizer; `None` when the file has no
/// tokenizer metadata.
pub fn tokenizer_json(meta: &Metadata) -> Result<Option<String>> {
    let Some(model) = meta.get("tokenizer.ggml.model") else {
        return Ok(None);
    };
    let model = model
        .to_string()
        .map_err(|_| unsupported(meta, "tokenizer.ggml.model", "not a string"))?;
    let tokens = meta.strings("tokenizer.ggml.tokens")?;
    let types = match meta.get("tokenizer.ggml.token_type") {
        Some(_) => meta.i64s("tokenizer.ggml.token_type")?,
        None => vec![1; tokens.len()],
    };
    if types.len() != tokens.len() {
        return Err(unsupported(
            meta,
            "tokenizer.ggml.token_type",
            "not one type per token",
        ));
    }
    let added: Vec<Value> = tokens
        .iter()
        .zip(&types)
        .enumerate()
        .filter(|(_, (_, &t))| t == TOKEN_TYPE_CONTROL || t == TOKEN_TYPE_USER_DEFINED)
        .map(|(id, (token, &t))| {
            json!({
                "id": id, "content": token, "single_word": false, "lstrip": false,
                "rstrip": false, "normalized": t != TOKEN_TYPE_CONTROL,
                "special": t == TOKEN_TYPE_CONTROL,
            })
        })
        .collect();
    let vocab: serde_json::Map<String, Value> = tokens
        .iter()
        .enumerate()
        .map(|(id, t)| ((*t).to_owned(), json!(id)))
        .collect();
    let bos = token_name(meta, &tokens, "tokenizer.ggml.bos_token_id");
    let add_bos = matches!(
        meta.get("tokenizer.ggml.add_bos_token"),
        Some(candle_core::quantized::gguf_file::Value::Bool(true))
    );
    let tokenizer = match model.as_str() {
        "gpt2" => {
            let merges = meta.strings("tokenizer.ggml.merges")?;
            let pre = match meta.get("tokenizer.ggml.pre") {
                Some(v) => v.to_string().map(String::as_str).unwrap_or("default"),
                None => "default",
            };
            let byte_level = json!({"type": "ByteLevel", "add_prefix_space": false,
                "trim_offsets": true, "use_regex": true});
            let pre_tokenizer = match pre {
                "default" | "gpt2" => byte_level,
                "smollm" => json!({"type": "Sequence", "pretokenizers": [
                    {"type": "Digits", "individual_digits": true}, byte_level]}),
                other => {
                    return Err(unsupported(
                        meta,
                        "tokenizer.ggml.pre",
                        &format!("pre-tokenizer `{other}` is not supported (gpt2, smollm)"),
                    ))
                }
            };
            json!({
                "version": "1.0", "truncation": null, "padding": null,
                "added_tokens": added,
                "normalizer": null,
                "pre_tokenizer": pre_tokenizer,
                "post_processor": bos_template(add_bos.then_some(bos).flatten()),
                "decoder": {"type": "ByteLevel", "add_prefix_space": true, "trim_offsets": true, "use_regex": true},
                "model": {"type": "BPE", "dropout": null, "unk_token": null,
                    "continuing_subword_prefix": null, "end_of_word_suffix": null,
                    "fuse_unk": false, "byte_fallback": false, "ignore_merges": false,
                    "vocab": vocab, "merges": merges},
            })
        }
        "llama" => {
            let scores = meta.f32s("tokenizer.ggml.scores")?;
            if scores.len() != tokens.len() {
                return Err(unsupported(
                    meta,
                    "tokenizer.ggml.scores",
                    "not one score per token",
                ));
            }
            let merges = merges_from_scores(&tokens, &scores);
            let unk = token_name(meta, &tokens, "tokenizer.ggml.unknown_token_id")
                .or_else(|| tokens.first().map(|t| (*t).to_owned()));
            // Llama-2's tokenizer adds BOS unless the file says otherwise.
            let add_bos = !matches!(
                meta.get("tokenizer.ggml.add_bos_token"),
                Some(candle_core::quantized::gguf_file::Value::Bool(false))
            );
            json!({
                "version": "1.0", "truncation": null, "padding": null,
                "added_tokens": added,
                "normalizer": {"type": "Sequence", "normalizers": [
                    {"type": "Prepend", "prepend": "\u{2581}"},
                    {"type": "Replace", "pattern": {"String": " "}, "content": "\u{2581}"}]},
                "pre_tokenizer": null,
                "post_processor": bos_template(add_bos.then_some(bos).flatten()),
                "decoder": {"type": "Sequence", "decoders": [
                    {"type": "Replace", "pattern": {"String": "\u{2581}"}, "content": " "},
                    {"type": "ByteFallback"}, {"type": "Fuse"},
                    {"type": "Strip", "content": " ", "start": 1, "stop": 0}]},
                "model": {"type": "BPE", "dropout": null, "unk_token": unk,
                    "continuing_subword_prefix": null, "end_of_word_suffix": null,
                    "fuse_unk": true, "byte_fallback": true, "ignore_merges": false,
                    "vocab": vocab, "merges": merges},
            })
        }
        other => {
            return Err(unsupported(
                meta,
                "tokenizer.ggml.model",
                &format!("tokenizer model `{other}` is not supported (gpt2, llama)"),
            ))
        }
    };
    Ok(Some(tokenizer.to_string()))
}

fn unsupported(meta: &Metadata, key: &str, reason: &str) -> Error {
    Error::GgufMetadata {
        path: meta.path().to_path_buf(),
        key: key.to_owned(),
        reason: reason.to_owned(),
    }
}

fn token_name(meta: &Metadata, tokens: &[&str], key: &str) -> Option<String> {
    let id = meta.usize(key).ok()?;
    tokens.get(id).map(|t| (*t).to_owned())
}

/// A post-processor that puts `bos` in front, or none.
fn bos_template(bos: Option<String>) -> Value {
    match bos {
        None => Value::Null,
        Some(bos) => json!({
            "type": "TemplateProcessing",
            "single": [{"SpecialToken": {"id": bos, "type_id": 0}}, {"Sequence": {"id": "A", "type_id": 0}}],
            "pair": [{"SpecialToken": {"id": bos, "type_id": 0}}, {"Sequence": {"id": "A", "type_id": 0}},
                     {"SpecialToken": {"id": bos, "type_id": 1}}, {"Sequence": {"id": "B", "type_id": 1}}],
            "special_tokens": {},
        }),
    }
}

/// BPE merges for a SentencePiece vocabulary: every split of a token into two tokens is a
/// merge, ranked by the merged token's score (higher first), ties by the parts' ids — as
/// transformers' `SentencePieceExtractor`.
pub fn merges_from_scores(tokens: &[&str], scores: &[f32]) -> Vec<[String; 2]> {
    let ids: HashMap<&str, usize> = tokens.iter().enumerate().map(|(i, t)| (*t, i)).collect();
    let mut merges: Vec<(f32, usize, usize)> = Vec::new();
    for (token, &score) in tokens.iter().zip(scores) {
        let mut local: Vec<(usize, usize)> = token
            .char_indices()
            .skip(1)
            .filter_map(|(i, _)| {
                let (l, r) = token.split_at(i);
                Some((*ids.get(l)?, *ids.get(r)?))
            })
            .collect();
        local.sort_unstable();
        merges.extend(local.into_iter().map(|(l, r)| (score, l, r)));
    }
    // Stable: equal scores keep vocabulary order.
    merges.sort_by(|a, b| b.0.total_cmp(&a.0));
    merges
        .into_iter()
        .map(|(_, l, r)| [tokens[l].to_owned(), tokens[r].to_owned()])
        .collect()
}
