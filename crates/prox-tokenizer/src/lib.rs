//! Tokenizers for ProX-rs: the Llama-2 SentencePiece tokenizer the refining models use, and
//! the two ways the ProX reference encodes text with it.
//!
//! - [`Tokenizer::from_path`] loads a `tokenizer.json` (with the `tokenizers` crate), or a
//!   SentencePiece `tokenizer.model` converted in pure Rust to the same `tokenizer.json`
//!   transformers 4.39 would write (the released refiners ship only `tokenizer.model`), or a
//!   folder holding either.
//! - [`Tokenizer::encode`] gives the ids of the fast tokenizer (what vLLM sees in the chunk
//!   stage): special tokens in the text are recognised, and every text segment gets a `▁`
//!   prefix, also after a special token (`<s>[INST]` → `1, 518`).
//! - [`Tokenizer::encode_prompt_like_slow`] gives the ids of transformers' slow
//!   `LlamaTokenizer` with `legacy=false` (the reference's document stage): no `▁` after a
//!   special token (`<s>[INST]` → `1, 29961`).
//! - [`Tokenizer::encode_with`] does either with the options prompt construction needs: a
//!   byte range where special tokens are plain text, and an early stop after N ids.
//!
//! For SentencePiece-style BPE tokenizers (Llama's) encoding runs on a built-in engine that
//! gives the same ids as the `tokenizers` crate, much faster and in memory proportional to
//! the text; other tokenizers are encoded by the `tokenizers` crate itself.
//!
//! ```no_run
//! use prox_tokenizer::Tokenizer;
//!
//! let tokenizer = Tokenizer::from_path("models/web-doc-refining-lm".as_ref())?;
//! assert_eq!(tokenizer.encode("<s>[INST]", false)?, vec![1, 518, 25580, 29962]);
//! assert_eq!(tokenizer.encode_prompt_like_slow("<s>[INST]")?, vec![1, 29961, 25580, 29962]);
//! # Ok::<(), prox_tokenizer::Error>(())
//! ```

mod engine;
mod error;
mod sentencepiece;

use std::ops::Range;
use std::path::{Path, PathBuf};
use std::str::FromStr;

use serde_json::Value;

use crate::engine::{Engine, EngineParts, PrefixRule, Request};
pub use crate::error::Error;

/// How the text segments between special tokens are prefixed with `▁`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum EncodeStyle {
    /// The fast (`tokenizers`) tokenizer: what `tokenizer.json` says (for Llama, a `▁` before
    /// every segment, also after a special token).
    #[default]
    Fast,
    /// transformers' slow `LlamaTokenizer` with `legacy=false`: a `▁` before the segment at
    /// the start of the text only. On tokenizers that are not SentencePiece-style BPE this is
    /// the same as [`EncodeStyle::Fast`].
    SlowLegacyFalse,
}

/// Options for [`Tokenizer::encode_with`].
#[derive(Debug, Clone, Default)]
pub struct EncodeOptions {
    pub style: EncodeStyle,
    /// Add the post-processor's special tokens (Llama: BOS in front).
    pub add_special_tokens: bool,
    /// A byte range of the text in which special tokens are not recognised: `<s>` there is
    /// encoded as the characters `<`, `s`, `>`.
    pub literal: Option<Range<usize>>,
    /// Return at most this many ids (the first ones). Encoding stops early once it has them.
    pub limit: Option<usize>,
}

/// Settings read from a `tokenizer_config.json` beside the tokenizer, when there is one.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct TokenizerConfig {
    pub bos_token: Option<String>,
    pub eos_token: Option<String>,
    /// The default chat template, if the config has one.
    pub chat_template: Option<String>,
    pub legacy: Option<bool>,
}

/// A loaded tokenizer. Cheap to share across threads (`Sync`).
pub struct Tokenizer {
    inner: tokenizers::Tokenizer,
    /// The exact fast path, for SentencePiece-style BPE; `None` for other tokenizers.
    engine: Option<Engine>,
    /// Why there is no engine, for diagnostics.
    engine_reason: Option<String>,
    /// Where it was loaded from, for error messages.
    source: PathBuf,
    bos: Option<(String, u32)>,
    eos: Option<(String, u32)>,
    config: TokenizerConfig,
}

impl std::fmt::Debug for Tokenizer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Not the vocabulary: the derived form would print all of it.
        f.debug_struct("Tokenizer")
            .field("source", &self.source)
            .field("vocab_size", &self.vocab_size())
            .field("fast_path", &self.fast_path())
            .field("bos", &self.bos)
            .field("eos", &self.eos)
            .finish_non_exhaustive()
    }
}

impl Tokenizer {
    /// Loads a tokenizer from a folder (its `tokenizer.json`, else its `tokenizer.model`) or
    /// from a `tokenizer.json` or `tokenizer.model` file (SentencePiece when the name ends
    /// in `.model`).
    pub fn from_path(path: &Path) -> Result<Self, Error> {
        let metadata = std::fs::metadata(path).map_err(|source| Error::Read {
            path: path.to_path_buf(),
            source,
        })?;
        if metadata.is_dir() {
            Self::from_dir(path)
        } else if path.extension().is_some_and(|e| e == "model") {
            Self::from_sentencepiece(path)
        } else {
            Self::from_file(path)
        }
    }

    /// Loads `tokenizer.json` from a folder, or converts its `tokenizer.model` when there
    /// is no `tokenizer.json`. A `tokenizer_config.json` there is read too.
    pub fn from_dir(dir: &Path) -> Result<Self, Error> {
        let json = dir.join("tokenizer.json");
        let model = dir.join("tokenizer.model");
        if json.is_file() {
            Self::from_file(&json)
        } else if model.is_file() {
            Self::from_sentencepiece(&model)
        } else {
            Err(Error::NotFound {
                dir: dir.to_path_buf(),
            })
        }
    }

    /// Loads a `tokenizer.json`, and the `tokenizer_config.json` beside it if any.
    pub fn from_file(path: &Path) -> Result<Self, Error> {
        let text = read_to_string(path)?;
        let mut tokenizer = Self::from_json_str(&text, path)?;
        tokenizer.config = read_config_beside(path)?;
        tokenizer.apply_config();
        Ok(tokenizer)
    }

    /// Converts a SentencePiece BPE `tokenizer.model` (and reads the `tokenizer_config.json`
    /// beside it if any).
    pub fn from_sentencepiece(path: &Path) -> Result<Self, Error> {
        let bytes = std::fs::read(path).map_err(|source| Error::Read {
            path: path.to_path_buf(),
            source,
        })?;
        let mut tokenizer = Self::from_sentencepiece_bytes(&bytes, path)?;
        tokenizer.config = read_config_beside(path)?;
        tokenizer.apply_config();
        Ok(tokenizer)
    }

    /// Converts a serialized SentencePiece BPE model; `source` names it in errors.
    pub fn from_sentencepiece_bytes(bytes: &[u8], source: &Path) -> Result<Self, Error> {
        let json = sentencepiece_to_json(bytes, source)?;
        Self::from_json_str(&json, source)
    }

    /// Parses the text of a `tokenizer.json`; `source` names it in errors.
    pub fn from_json_str(json: &str, source: &Path) -> Result<Self, Error> {
        let invalid = |reason: String| Error::InvalidJson {
            path: source.to_path_buf(),
            reason,
        };
        let value: Value = serde_json::from_str(json).map_err(|e| invalid(e.to_string()))?;
        // A dependency must not turn a corrupt file into a crash.
        let inner = std::panic::catch_unwind(|| tokenizers::Tokenizer::from_str(json))
            .map_err(|_| invalid("the tokenizers crate panicked while reading it".into()))?
            .map_err(|e| invalid(e.to_string()))?;
        let (engine, engine_reason) = match engine_parts(&value).and_then(Engine::new) {
            Ok(engine) => (Some(engine), None),
            Err(reason) => (None, Some(reason)),
        };
        let mut tokenizer = Self {
            inner,
            engine,
            engine_reason,
            source: source.to_path_buf(),
            bos: None,
            eos: None,
            config: TokenizerConfig::default(),
        };
        let bos_name = post_processor_prefix(&value).unwrap_or_else(|| "<s>".to_string());
        tokenizer.bos = tokenizer.named_token(&bos_name);
        tokenizer.eos = tokenizer.named_token("</s>");
        Ok(tokenizer)
    }

    fn named_token(&self, name: &str) -> Option<(String, u32)> {
        self.inner
            .token_to_id(name)
            .map(|id| (name.to_string(), id))
    }

    /// The config's BOS and EOS names win when the vocabulary has them.
    fn apply_config(&mut self) {
        if let Some(bos) = self.config.bos_token.clone() {
            if let Some(found) = self.named_token(&bos) {
                self.bos = Some(found);
            }
        }
        if let Some(eos) = self.config.eos_token.clone() {
            if let Some(found) = self.named_token(&eos) {
                self.eos = Some(found);
            }
        }
    }

    /// The ids of the fast tokenizer, with the post-processor's BOS when `add_bos`.
    pub fn encode(&self, text: &str, add_bos: bool) -> Result<Vec<u32>, Error> {
        self.encode_with(
            text,
            &EncodeOptions {
                add_special_tokens: add_bos,
                ..EncodeOptions::default()
            },
        )
    }

    /// The ids of transformers' slow `LlamaTokenizer` with `legacy=false`, without adding a
    /// BOS: what `apply_chat_template(..., tokenize=True)` gives in the reference's
    /// document stage.
    pub fn encode_prompt_like_slow(&self, text: &str) -> Result<Vec<u32>, Error> {
        self.encode_with(
            text,
            &EncodeOptions {
                style: EncodeStyle::SlowLegacyFalse,
                ..EncodeOptions::default()
            },
        )
    }

    /// Encodes with explicit options.
    pub fn encode_with(&self, text: &str, options: &EncodeOptions) -> Result<Vec<u32>, Error> {
        let mut out = Vec::new();
        self.encode_into(text, options, &mut out)?;
        Ok(out)
    }

    /// Like [`Tokenizer::encode_with`], appending to `out` (reuse it to save allocations).
    pub fn encode_into(
        &self,
        text: &str,
        options: &EncodeOptions,
        out: &mut Vec<u32>,
    ) -> Result<(), Error> {
        let start = out.len();
        match &self.engine {
            Some(engine) => {
                let style = match options.style {
                    EncodeStyle::Fast => engine::Style::Fast,
                    EncodeStyle::SlowLegacyFalse => engine::Style::SlowLegacyFalse,
                };
                engine.encode(
                    &Request {
                        text,
                        style,
                        add_special_tokens: options.add_special_tokens,
                        literal: options.literal.clone(),
                        limit: options.limit,
                    },
                    out,
                );
            }
            None => self.encode_general(text, options, out)?,
        }
        if let Some(limit) = options.limit {
            out.truncate(start.saturating_add(limit));
        }
        Ok(())
    }

    /// The number of ids [`Tokenizer::encode_with`] would return.
    pub fn count(&self, text: &str, options: &EncodeOptions) -> Result<usize, Error> {
        thread_local! {
            static SCRATCH: std::cell::RefCell<Vec<u32>> = const { std::cell::RefCell::new(Vec::new()) };
        }
        SCRATCH.with_borrow_mut(|scratch| {
            scratch.clear();
            self.encode_into(text, options, scratch)?;
            Ok(scratch.len())
        })
    }

    /// The `tokenizers` crate path, for tokenizers the engine does not cover. A literal
    /// range is encoded on its own with special tokens off, so it never becomes one.
    fn encode_general(
        &self,
        text: &str,
        options: &EncodeOptions,
        out: &mut Vec<u32>,
    ) -> Result<(), Error> {
        let encode = |tokenizer: &tokenizers::Tokenizer, part: &str, special: bool| {
            tokenizer
                .encode_fast(part, special)
                .map(|e| e.get_ids().to_vec())
                .map_err(|e| Error::Encode {
                    path: self.source.clone(),
                    reason: e.to_string(),
                })
        };
        let literal = options
            .literal
            .clone()
            .filter(|r| r.start < r.end && text.get(r.clone()).is_some());
        let Some(literal) = literal else {
            out.extend(encode(&self.inner, text, options.add_special_tokens)?);
            return Ok(());
        };
        let mut plain = self.inner.clone();
        plain.set_encode_special_tokens(true);
        if options.add_special_tokens {
            out.extend(encode(&self.inner, "", true)?);
        }
        out.extend(encode(&self.inner, &text[..literal.start], false)?);
        out.extend(encode(&plain, &text[literal.clone()], false)?);
        out.extend(encode(&self.inner, &text[literal.end..], false)?);
        Ok(())
    }

    /// Text of the ids, as the fast tokenizer decodes them.
    pub fn decode(&self, ids: &[u32], skip_special_tokens: bool) -> Result<String, Error> {
        self.inner
            .decode(ids, skip_special_tokens)
            .map_err(|e| Error::Decode {
                path: self.source.clone(),
                reason: e.to_string(),
            })
    }

    pub fn bos_id(&self) -> Option<u32> {
        self.bos.as_ref().map(|(_, id)| *id)
    }

    pub fn eos_id(&self) -> Option<u32> {
        self.eos.as_ref().map(|(_, id)| *id)
    }

    /// The BOS token's text (`<s>`), as chat templates use it.
    pub fn bos_token(&self) -> Option<&str> {
        self.bos.as_ref().map(|(name, _)| name.as_str())
    }

    /// The EOS token's text (`</s>`), as chat templates use it.
    pub fn eos_token(&self) -> Option<&str> {
        self.eos.as_ref().map(|(name, _)| name.as_str())
    }

    /// The number of ids, added tokens included.
    pub fn vocab_size(&self) -> usize {
        self.inner.get_vocab_size(true)
    }

    pub fn token_to_id(&self, token: &str) -> Option<u32> {
        self.inner.token_to_id(token)
    }

    pub fn id_to_token(&self, id: u32) -> Option<String> {
        self.inner.id_to_token(id)
    }

    /// The `tokenizer_config.json` found beside the tokenizer (empty when there was none).
    pub fn config(&self) -> &TokenizerConfig {
        &self.config
    }

    /// Where the tokenizer was loaded from.
    pub fn source(&self) -> &Path {
        &self.source
    }

    /// Whether encoding runs on the built-in SentencePiece-BPE engine; if not, why not.
    pub fn fast_path(&self) -> Result<(), &str> {
        match &self.engine_reason {
            None => Ok(()),
            Some(reason) => Err(reason),
        }
    }

    /// The underlying `tokenizers` tokenizer.
    pub fn inner(&self) -> &tokenizers::Tokenizer {
        &self.inner
    }
}

/// Empties the calling thread's cache of encoded words. Encoding stays correct either way;
/// this is for measuring cold-cache speed.
pub fn clear_word_cache() {
    engine::clear_thread_cache();
}

/// Converts a serialized SentencePiece BPE model to the text of an equivalent
/// `tokenizer.json` (what transformers 4.39's `LlamaConverter` writes); `source` names it in
/// errors.
pub fn sentencepiece_to_json(bytes: &[u8], source: &Path) -> Result<String, Error> {
    let model = sentencepiece::read_model(bytes).map_err(|reason| Error::InvalidSentencePiece {
        path: source.to_path_buf(),
        reason,
    })?;
    let value = sentencepiece::to_tokenizer_json(&model).map_err(|reason| Error::Unsupported {
        path: source.to_path_buf(),
        reason,
    })?;
    serde_json::to_string(&value).map_err(|e| Error::InvalidSentencePiece {
        path: source.to_path_buf(),
        reason: e.to_string(),
    })
}

fn read_to_string(path: &Path) -> Result<String, Error> {
    std::fs::read_to_string(path).map_err(|source| Error::Read {
        path: path.to_path_buf(),
        source,
    })
}

/// Reads `tokenizer_config.json` from the tokenizer's folder; none there is not an error.
fn read_config_beside(path: &Path) -> Result<TokenizerConfig, Error> {
    let Some(dir) = path.parent() else {
        return Ok(TokenizerConfig::default());
    };
    let config_path = dir.join("tokenizer_config.json");
    if !config_path.is_file() {
        return Ok(TokenizerConfig::default());
    }
    let text = read_to_string(&config_path)?;
    parse_config(&text).map_err(|reason| Error::InvalidConfig {
        path: config_path,
        reason,
    })
}

/// Reads the fields ProX needs from a `tokenizer_config.json`. Token fields may be strings
/// or `AddedToken` objects; `chat_template` may be a string or a list of named templates.
pub fn parse_config(text: &str) -> Result<TokenizerConfig, String> {
    let value: Value = serde_json::from_str(text).map_err(|e| e.to_string())?;
    let token = |key: &str| match value.get(key) {
        Some(Value::String(s)) => Some(s.clone()),
        Some(Value::Object(o)) => o.get("content").and_then(Value::as_str).map(String::from),
        _ => None,
    };
    let chat_template = match value.get("chat_template") {
        Some(Value::String(s)) => Some(s.clone()),
        Some(Value::Array(list)) => list
            .iter()
            .find(|t| t.get("name").and_then(Value::as_str) == Some("default"))
            .and_then(|t| t.get("template"))
            .and_then(Value::as_str)
            .map(String::from),
        _ => None,
    };
    Ok(TokenizerConfig {
        bos_token: token("bos_token"),
        eos_token: token("eos_token"),
        chat_template,
        legacy: value.get("legacy").and_then(Value::as_bool),
    })
}

/// The first special token the post-processor puts before a single sequence (Llama: `<s>`).
fn post_processor_prefix(value: &Value) -> Option<String> {
    let single = value.get("post_processor")?.get("single")?.as_array()?;
    let first = single.first()?.get("SpecialToken")?;
    first.get("id")?.as_str().map(String::from)
}

/// Reads what the engine needs from a `tokenizer.json`, or says why the tokenizer is not a
/// SentencePiece-style BPE the engine reproduces exactly.
fn engine_parts(value: &Value) -> Result<EngineParts, String> {
    let model = value.get("model").ok_or("no model")?;
    if model.get("type").and_then(Value::as_str) != Some("BPE") {
        return Err("the model is not BPE".into());
    }
    if model.get("byte_fallback").and_then(Value::as_bool) != Some(true) {
        return Err("the BPE model has no byte fallback".into());
    }
    let is_unset = |key: &str| match model.get(key) {
        None | Some(Value::Null) => true,
        Some(Value::String(s)) => s.is_empty(),
        Some(Value::Bool(b)) => !b,
        _ => false,
    };
    for key in [
        "dropout",
        "continuing_subword_prefix",
        "end_of_word_suffix",
        "ignore_merges",
    ] {
        if !is_unset(key) {
            return Err(format!("the BPE model sets `{key}`"));
        }
    }

    let vocab = model
        .get("vocab")
        .and_then(Value::as_object)
        .ok_or("no vocabulary")?
        .iter()
        .map(|(piece, id)| {
            id.as_u64()
                .and_then(|id| u32::try_from(id).ok())
                .map(|id| (piece.clone(), id))
                .ok_or_else(|| format!("bad id for {piece:?}"))
        })
        .collect::<Result<Vec<_>, String>>()?;
    let merges = model
        .get("merges")
        .and_then(Value::as_array)
        .ok_or("no merges")?
        .iter()
        .map(|merge| match merge {
            Value::String(s) => s
                .split_once(' ')
                .map(|(l, r)| (l.to_string(), r.to_string()))
                .ok_or_else(|| format!("bad merge {s:?}")),
            Value::Array(pair) => match pair.as_slice() {
                [Value::String(l), Value::String(r)] => Ok((l.clone(), r.clone())),
                _ => Err(format!("bad merge {merge}")),
            },
            _ => Err(format!("bad merge {merge}")),
        })
        .collect::<Result<Vec<_>, String>>()?;

    let mut added = Vec::new();
    for token in value
        .get("added_tokens")
        .and_then(Value::as_array)
        .map(Vec::as_slice)
        .unwrap_or_default()
    {
        let flag = |key: &str| token.get(key).and_then(Value::as_bool).unwrap_or(false);
        if flag("normalized") || flag("lstrip") || flag("rstrip") || flag("single_word") {
            return Err("an added token is normalized or strips spaces".into());
        }
        let content = token
            .get("content")
            .and_then(Value::as_str)
            .ok_or("an added token has no content")?;
        let id = token
            .get("id")
            .and_then(Value::as_u64)
            .and_then(|id| u32::try_from(id).ok())
            .ok_or("an added token has no id")?;
        added.push((content.to_string(), id));
    }

    let prefix_rule = prefix_rule(value)?;
    let (prefix_ids, suffix_ids) = post_processor_ids(value, &vocab, &added)?;
    Ok(EngineParts {
        vocab,
        merges,
        added,
        prefix_ids,
        suffix_ids,
        prefix_rule,
    })
}

/// The normalizer and pre-tokenizer shapes of SentencePiece-converted tokenizers: the legacy
/// `Prepend("▁")` + `Replace(" ", "▁")` normalizer, or a non-splitting `Metaspace`.
fn prefix_rule(value: &Value) -> Result<PrefixRule, String> {
    let normalizer = value.get("normalizer").unwrap_or(&Value::Null);
    let pre_tokenizer = value.get("pre_tokenizer").unwrap_or(&Value::Null);
    let is_space_replace = |n: &Value| {
        n.get("type").and_then(Value::as_str) == Some("Replace")
            && n.get("pattern")
                .and_then(|p| p.get("String"))
                .and_then(Value::as_str)
                == Some(" ")
            && n.get("content").and_then(Value::as_str) == Some("\u{2581}")
    };
    let is_prepend = |n: &Value| {
        n.get("type").and_then(Value::as_str) == Some("Prepend")
            && n.get("prepend").and_then(Value::as_str) == Some("\u{2581}")
    };
    if pre_tokenizer.is_null() {
        let steps: Vec<&Value> = match normalizer.get("type").and_then(Value::as_str) {
            Some("Sequence") => normalizer
                .get("normalizers")
                .and_then(Value::as_array)
                .map(|v| v.iter().collect())
                .unwrap_or_default(),
            Some(_) => vec![normalizer],
            None => vec![],
        };
        return match steps.as_slice() {
            [p, r] if is_prepend(p) && is_space_replace(r) => Ok(PrefixRule::Every),
            [r] if is_space_replace(r) => Ok(PrefixRule::Never),
            _ => Err("the normalizer is not SentencePiece's (Prepend ▁, Replace ' ' → ▁)".into()),
        };
    }
    if !normalizer.is_null() {
        return Err("both a normalizer and a pre-tokenizer".into());
    }
    let metaspace = pre_tokenizer.get("type").and_then(Value::as_str) == Some("Metaspace")
        && pre_tokenizer.get("replacement").and_then(Value::as_str) == Some("\u{2581}")
        && pre_tokenizer.get("split").and_then(Value::as_bool) == Some(false);
    if !metaspace {
        return Err("the pre-tokenizer is not a non-splitting Metaspace".into());
    }
    match pre_tokenizer.get("prepend_scheme").and_then(Value::as_str) {
        Some("always") => Ok(PrefixRule::EveryUnlessSpace),
        Some("first") => Ok(PrefixRule::FirstUnlessSpace),
        Some("never") => Ok(PrefixRule::Never),
        other => Err(format!("Metaspace prepend_scheme {other:?}")),
    }
}

/// The ids a `TemplateProcessing` post-processor puts around a single sequence.
fn post_processor_ids(
    value: &Value,
    vocab: &[(String, u32)],
    added: &[(String, u32)],
) -> Result<(Vec<u32>, Vec<u32>), String> {
    let processor = value.get("post_processor").unwrap_or(&Value::Null);
    if processor.is_null() {
        return Ok((vec![], vec![]));
    }
    if processor.get("type").and_then(Value::as_str) != Some("TemplateProcessing") {
        return Err("the post-processor is not TemplateProcessing".into());
    }
    let single = processor
        .get("single")
        .and_then(Value::as_array)
        .ok_or("TemplateProcessing without `single`")?;
    let specials = processor.get("special_tokens");
    let (mut before, mut after) = (Vec::new(), Vec::new());
    let mut seen_sequence = false;
    for piece in single {
        if piece.get("Sequence").is_some() {
            seen_sequence = true;
            continue;
        }
        let name = piece
            .get("SpecialToken")
            .and_then(|s| s.get("id"))
            .and_then(Value::as_str)
            .ok_or("bad TemplateProcessing piece")?;
        let ids: Vec<u32> = match specials
            .and_then(|s| s.get(name))
            .and_then(|s| s.get("ids"))
            .and_then(Value::as_array)
        {
            Some(ids) => ids
                .iter()
                .filter_map(|id| id.as_u64().and_then(|id| u32::try_from(id).ok()))
                .collect(),
            None => added
                .iter()
                .chain(vocab)
                .find(|(content, _)| content == name)
                .map(|(_, id)| vec![*id])
                .ok_or_else(|| format!("special token {name:?} has no id"))?,
        };
        if seen_sequence {
            after.extend(ids);
        } else {
            before.extend(ids);
        }
    }
    Ok((before, after))
}
