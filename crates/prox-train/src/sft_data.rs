//! Fine-tuning examples: JSON lines (or Parquet rows) holding the refiner's prompt and the
//! program it must write, tokenized with the model's tokenizer, and the seeded held-out split.
//!
//! A row is `{"prompt": TEXT, "target": PROGRAM}` or `{"prompt_ids": [IDS], "target": PROGRAM}`
//! (`prompt_ids` wins when both are there). The prompt is what the refiner sees: `prompt_ids`
//! exactly as `prox prompts` writes them, or the rendered chat prompt as text, encoded as
//! `prox generate` encodes a text prompt (the fast tokenizer, BOS added). The target is
//! encoded on its own, without BOS, and followed by the tokenizer's EOS, as LLaMA-Factory
//! encodes a response. A row that cannot be trained on whole is rejected with its reason and
//! counted: nothing is cut to fit.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use prox_tokenizer::Tokenizer;
use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::error::{Error, Result};
use crate::rng::Rng;

/// One example: prompt tokens, then target tokens ending with EOS.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SftExample {
    /// The 1-based line (or row) of the data file it came from.
    pub line: u64,
    pub ids: Vec<u32>,
    /// How many of `ids` are the prompt (at least one).
    pub prompt_len: usize,
}

impl SftExample {
    /// The tokens the loss is taken on: the target and its EOS.
    pub fn target_tokens(&self) -> usize {
        self.ids.len() - self.prompt_len
    }

    /// The example as a training sequence: every position predicts the next token, and only
    /// the predictions of target tokens count.
    pub fn labelled(&self) -> LabelledSequence {
        let n = self.ids.len();
        LabelledSequence {
            inputs: self.ids[..n - 1].to_vec(),
            labels: self.ids[1..].to_vec(),
            // Input position `i` predicts token `i + 1`: the first target token is predicted
            // from the last prompt token.
            mask: (0..n - 1).map(|i| i + 1 >= self.prompt_len).collect(),
        }
    }
}

/// A sequence with its next-token labels: position `i` of `inputs` is trained to predict
/// `labels[i]` where `mask[i]` is set, and contributes nothing elsewhere (Hugging Face's
/// label -100).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LabelledSequence {
    pub inputs: Vec<u32>,
    pub labels: Vec<u32>,
    pub mask: Vec<bool>,
}

impl LabelledSequence {
    /// Positions that count in the loss.
    pub fn loss_tokens(&self) -> usize {
        self.mask.iter().filter(|&&m| m).count()
    }
}

/// Why a row was not trained on.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum RejectReason {
    /// Not a JSON object (or an unreadable row).
    InvalidRow,
    /// Neither `prompt` text nor `prompt_ids`, or an empty prompt.
    NoPrompt,
    /// `prompt_ids` is not a list of token ids of the model's vocabulary.
    InvalidPromptIds,
    /// No `target` string.
    NoTarget,
    /// An empty `target`.
    EmptyTarget,
    /// The tokenizer gives ids outside the model's vocabulary.
    TokenOutOfRange,
    /// Prompt, target and EOS together exceed the maximum length.
    TooLong,
}

impl RejectReason {
    pub fn as_str(self) -> &'static str {
        match self {
            RejectReason::InvalidRow => "invalid_row",
            RejectReason::NoPrompt => "no_prompt",
            RejectReason::InvalidPromptIds => "invalid_prompt_ids",
            RejectReason::NoTarget => "no_target",
            RejectReason::EmptyTarget => "empty_target",
            RejectReason::TokenOutOfRange => "token_out_of_range",
            RejectReason::TooLong => "too_long",
        }
    }
}

/// A rejected row: where it is, why, and the particulars.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Rejection {
    pub line: u64,
    pub reason: RejectReason,
    pub detail: String,
}

/// The examples of one data file and the rows rejected from it.
#[derive(Debug, Clone)]
pub struct SftData {
    pub path: PathBuf,
    /// In file order.
    pub examples: Vec<SftExample>,
    pub rejected: Vec<Rejection>,
}

/// How rows become token ids.
pub struct Encoding<'a> {
    pub tokenizer: &'a Tokenizer,
    /// The model's vocabulary size: every id must be below it.
    pub vocab_size: usize,
    /// Most tokens of prompt + target + EOS.
    pub max_length: usize,
}

impl SftData {
    /// Reads and tokenizes every row of `path` (JSON lines, plain, `.gz` or `.zst`, or
    /// Parquet). Only a file that cannot be read is an error; bad rows are rejections.
    pub fn read(path: &Path, encoding: &Encoding) -> Result<Self> {
        let eos = encoding.tokenizer.eos_id().ok_or_else(|| {
            Error::Options(format!(
                "the tokenizer {} has no EOS token to end the targets with",
                encoding.tokenizer.source().display()
            ))
        })?;
        let mut examples = Vec::new();
        let mut rejected = Vec::new();
        for item in prox_io::open_records(path)? {
            match item? {
                Ok(record) => {
                    let line = record.location.line;
                    match encode_row(&record.fields, encoding, eos) {
                        Ok((ids, prompt_len)) => examples.push(SftExample {
                            line,
                            ids,
                            prompt_len,
                        }),
                        Err((reason, detail)) => rejected.push(Rejection {
                            line,
                            reason,
                            detail,
                        }),
                    }
                }
                Err(bad) => rejected.push(Rejection {
                    line: bad.location.line,
                    reason: RejectReason::InvalidRow,
                    detail: bad.reason,
                }),
            }
        }
        Ok(SftData {
            path: path.to_path_buf(),
            examples,
            rejected,
        })
    }

    /// Rejected rows by reason.
    pub fn rejected_counts(&self) -> BTreeMap<&'static str, u64> {
        let mut counts = BTreeMap::new();
        for r in &self.rejected {
            *counts.entry(r.reason.as_str()).or_insert(0) += 1;
        }
        counts
    }

    /// A hash of every example's tokens and prompt length, in order (FNV-1a, 64 bits): a
    /// resumed run must train on the same examples.
    pub fn fingerprint(&self) -> String {
        const PRIME: u64 = 0x0000_0100_0000_01B3;
        let mut hash: u64 = 0xCBF2_9CE4_8422_2325;
        let mut feed = |value: u64| {
            for byte in value.to_le_bytes() {
                hash = (hash ^ u64::from(byte)).wrapping_mul(PRIME);
            }
        };
        for example in &self.examples {
            feed(example.prompt_len as u64);
            feed(example.ids.len() as u64);
            for &id in &example.ids {
                feed(u64::from(id));
            }
        }
        format!("{hash:016x}")
    }

    /// Splits the examples into training and held-out indices (each in file order): a
    /// seeded draw of `ceil(fraction × examples)` held out, none when `fraction` is 0.
    pub fn split(&self, val_fraction: f64, seed: u64) -> Result<(Vec<usize>, Vec<usize>)> {
        let n = self.examples.len();
        let held_out = (val_fraction * n as f64).ceil() as usize;
        if n == 0 || held_out >= n {
            return Err(Error::Examples {
                path: self.path.clone(),
                reason: format!(
                    "{n} examples ({} rows rejected) leave none to train on after holding out \
                     {held_out} for validation",
                    self.rejected.len()
                ),
            });
        }
        let mut order = Rng::for_stream(seed, SPLIT_STREAM).permutation(n);
        let mut val = order.split_off(n - held_out);
        order.sort_unstable();
        val.sort_unstable();
        Ok((order, val))
    }
}

/// The random stream of the held-out draw.
const SPLIT_STREAM: u64 = 10;

type Rejected = (RejectReason, String);

/// The ids of a row and its prompt length, or why it cannot be trained on.
fn encode_row(
    fields: &prox_io::Fields,
    encoding: &Encoding,
    eos: u32,
) -> std::result::Result<(Vec<u32>, usize), Rejected> {
    let vocab = encoding.vocab_size;
    let mut ids = match (fields.get("prompt_ids"), fields.get("prompt")) {
        (Some(Value::Array(values)), _) => {
            let mut ids = Vec::with_capacity(values.len());
            for (index, value) in values.iter().enumerate() {
                match value.as_u64() {
                    Some(id) if (id as usize) < vocab => ids.push(id as u32),
                    _ => {
                        return Err((
                            RejectReason::InvalidPromptIds,
                            format!(
                                "prompt_ids[{index}] is {value}, not a token id below the \
                                 vocabulary size {vocab}"
                            ),
                        ))
                    }
                }
            }
            ids
        }
        (Some(other), _) => {
            return Err((
                RejectReason::InvalidPromptIds,
                format!("prompt_ids is {other}, not a list of token ids"),
            ))
        }
        (None, Some(Value::String(text))) => encode(encoding, text, true)?,
        (None, _) => {
            return Err((
                RejectReason::NoPrompt,
                "neither a `prompt` string nor `prompt_ids`".to_owned(),
            ))
        }
    };
    if ids.is_empty() {
        return Err((
            RejectReason::NoPrompt,
            "the prompt has no tokens".to_owned(),
        ));
    }
    let prompt_len = ids.len();
    let target = match fields.get("target") {
        Some(Value::String(target)) if target.is_empty() => {
            return Err((RejectReason::EmptyTarget, "the target is empty".to_owned()))
        }
        Some(Value::String(target)) => encode(encoding, target, false)?,
        _ => return Err((RejectReason::NoTarget, "no `target` string".to_owned())),
    };
    let target_len = target.len() + 1;
    ids.extend(target);
    ids.push(eos);
    if let Some(position) = ids.iter().position(|&id| id as usize >= vocab) {
        return Err((
            RejectReason::TokenOutOfRange,
            format!(
                "token {} at position {position} is outside the model's vocabulary of {vocab}",
                ids[position]
            ),
        ));
    }
    if ids.len() > encoding.max_length {
        return Err((
            RejectReason::TooLong,
            format!(
                "{} tokens (prompt {prompt_len}, target and EOS {target_len}) exceed the \
                 maximum length {}",
                ids.len(),
                encoding.max_length
            ),
        ));
    }
    Ok((ids, prompt_len))
}

fn encode(
    encoding: &Encoding,
    text: &str,
    add_bos: bool,
) -> std::result::Result<Vec<u32>, Rejected> {
    encoding.tokenizer.encode(text, add_bos).map_err(|e| {
        // The tokenizers we load encode any string; an error here is a row the tokenizer
        // cannot take, not a fault of the run.
        (RejectReason::InvalidRow, format!("cannot tokenize: {e}"))
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn data(n: usize) -> SftData {
        SftData {
            path: "x.jsonl".into(),
            examples: (0..n)
                .map(|i| SftExample {
                    line: i as u64 + 1,
                    ids: vec![1, 2, i as u32],
                    prompt_len: 2,
                })
                .collect(),
            rejected: vec![],
        }
    }

    #[test]
    fn the_mask_covers_exactly_the_predictions_of_target_tokens() {
        let example = SftExample {
            line: 1,
            ids: vec![10, 11, 12, 20, 21, 2],
            prompt_len: 3,
        };
        let seq = example.labelled();
        assert_eq!(seq.inputs, [10, 11, 12, 20, 21]);
        assert_eq!(seq.labels, [11, 12, 20, 21, 2]);
        assert_eq!(seq.mask, [false, false, true, true, true]);
        assert_eq!(seq.loss_tokens(), example.target_tokens());
    }

    #[test]
    fn the_held_out_split_is_seeded_disjoint_and_complete() {
        let d = data(40);
        let (train, val) = d.split(0.05, 7).unwrap();
        assert_eq!(val.len(), 2);
        assert_eq!(train.len(), 38);
        assert_eq!(d.split(0.05, 7).unwrap(), (train.clone(), val.clone()));
        assert_ne!(d.split(0.05, 8).unwrap().1, val);
        let mut all: Vec<usize> = train.iter().chain(&val).copied().collect();
        all.sort_unstable();
        assert_eq!(all, (0..40).collect::<Vec<_>>());
        assert!(d.split(0.0, 7).unwrap().1.is_empty());
        assert!(data(1).split(0.5, 7).is_err());
    }

    #[test]
    fn the_fingerprint_changes_with_any_token_or_boundary() {
        let a = data(3);
        let mut b = data(3);
        assert_eq!(a.fingerprint(), b.fingerprint());
        b.examples[1].prompt_len = 1;
        assert_ne!(a.fingerprint(), b.fingerprint());
        let mut c = data(3);
        c.examples[2].ids[0] = 5;
        assert_ne!(a.fingerprint(), c.fingerprint());
    }
}
