//! SentencePiece `tokenizer.model` files: a small reader for the protobuf fields a BPE model
//! needs, and the conversion to a Hugging Face `tokenizer.json`, done the way transformers
//! 4.39's `LlamaConverter` does it (the converter that produced the reference's fast
//! tokenizer).

use std::cmp::Ordering;
use std::collections::HashMap;

use serde_json::{json, Value};

/// The kind of a piece (`ModelProto.SentencePiece.Type`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum PieceType {
    Normal,
    Unknown,
    Control,
    UserDefined,
    Unused,
    Byte,
}

impl PieceType {
    fn from_proto(value: u64) -> Result<Self, String> {
        Ok(match value {
            1 => Self::Normal,
            2 => Self::Unknown,
            3 => Self::Control,
            4 => Self::UserDefined,
            5 => Self::Unused,
            6 => Self::Byte,
            other => return Err(format!("unknown piece type {other}")),
        })
    }
}

#[derive(Debug, Clone)]
pub(crate) struct Piece {
    pub piece: String,
    pub score: f32,
    pub kind: PieceType,
}

/// The fields of `TrainerSpec` the conversion reads, with the protobuf defaults.
#[derive(Debug, Clone)]
pub(crate) struct TrainerSpec {
    /// 1 Unigram, 2 BPE, 3 word, 4 char.
    pub model_type: u64,
    pub byte_fallback: bool,
    pub unk_piece: String,
    pub bos_piece: String,
    pub eos_piece: String,
    pub unk_id: i64,
    pub bos_id: i64,
    pub eos_id: i64,
    pub treat_whitespace_as_suffix: bool,
}

impl Default for TrainerSpec {
    fn default() -> Self {
        Self {
            model_type: 1,
            byte_fallback: false,
            unk_piece: "<unk>".into(),
            bos_piece: "<s>".into(),
            eos_piece: "</s>".into(),
            unk_id: 0,
            bos_id: 1,
            eos_id: 2,
            treat_whitespace_as_suffix: false,
        }
    }
}

/// The fields of `NormalizerSpec` the conversion reads, with the protobuf defaults.
#[derive(Debug, Clone)]
pub(crate) struct NormalizerSpec {
    pub name: String,
    pub precompiled_charsmap_len: usize,
    pub add_dummy_prefix: bool,
    pub escape_whitespaces: bool,
}

impl Default for NormalizerSpec {
    fn default() -> Self {
        Self {
            name: String::new(),
            precompiled_charsmap_len: 0,
            add_dummy_prefix: true,
            escape_whitespaces: true,
        }
    }
}

#[derive(Debug, Clone, Default)]
pub(crate) struct ModelProto {
    pub pieces: Vec<Piece>,
    pub trainer: TrainerSpec,
    pub normalizer: NormalizerSpec,
}

/// A protobuf wire-format reader over a byte slice. Every read is bounds-checked: a corrupt
/// or truncated file is an error, never a panic.
struct Reader<'a> {
    bytes: &'a [u8],
    pos: usize,
}

enum Field<'a> {
    Varint(u64),
    Fixed32(u32),
    Fixed64,
    Bytes(&'a [u8]),
}

impl<'a> Reader<'a> {
    fn new(bytes: &'a [u8]) -> Self {
        Self { bytes, pos: 0 }
    }

    fn varint(&mut self) -> Result<u64, String> {
        let mut value: u64 = 0;
        for shift in (0..64).step_by(7) {
            let byte = *self
                .bytes
                .get(self.pos)
                .ok_or_else(|| format!("truncated varint at byte {}", self.pos))?;
            self.pos += 1;
            value |= u64::from(byte & 0x7f) << shift;
            if byte & 0x80 == 0 {
                return Ok(value);
            }
        }
        Err(format!("varint longer than 10 bytes at byte {}", self.pos))
    }

    fn take(&mut self, len: usize) -> Result<&'a [u8], String> {
        let end = self
            .pos
            .checked_add(len)
            .filter(|&end| end <= self.bytes.len())
            .ok_or_else(|| {
                format!(
                    "field of {len} bytes at byte {} runs past the end of the data",
                    self.pos
                )
            })?;
        let slice = &self.bytes[self.pos..end];
        self.pos = end;
        Ok(slice)
    }

    /// The next field as (number, value), or `None` at the end.
    fn field(&mut self) -> Result<Option<(u64, Field<'a>)>, String> {
        if self.pos >= self.bytes.len() {
            return Ok(None);
        }
        let key = self.varint()?;
        let number = key >> 3;
        let value = match key & 7 {
            0 => Field::Varint(self.varint()?),
            1 => {
                self.take(8)?;
                Field::Fixed64
            }
            2 => {
                let len = usize::try_from(self.varint()?)
                    .map_err(|_| "length does not fit in memory".to_string())?;
                Field::Bytes(self.take(len)?)
            }
            5 => {
                let raw = self.take(4)?;
                Field::Fixed32(u32::from_le_bytes([raw[0], raw[1], raw[2], raw[3]]))
            }
            wire => {
                return Err(format!(
                    "unsupported protobuf wire type {wire} for field {number}"
                ))
            }
        };
        Ok(Some((number, value)))
    }
}

fn utf8(bytes: &[u8], what: &str) -> Result<String, String> {
    String::from_utf8(bytes.to_vec()).map_err(|_| format!("{what} is not valid UTF-8"))
}

fn as_bool(value: u64) -> bool {
    value != 0
}

/// Protobuf `int32` fields are sign-extended varints.
fn as_i64(value: u64) -> i64 {
    value as i64
}

fn read_piece(bytes: &[u8]) -> Result<Piece, String> {
    let mut piece = Piece {
        piece: String::new(),
        score: 0.0,
        kind: PieceType::Normal,
    };
    let mut reader = Reader::new(bytes);
    while let Some((number, value)) = reader.field()? {
        match (number, value) {
            (1, Field::Bytes(b)) => piece.piece = utf8(b, "a piece")?,
            (2, Field::Fixed32(bits)) => piece.score = f32::from_bits(bits),
            (3, Field::Varint(v)) => piece.kind = PieceType::from_proto(v)?,
            (1..=3, _) => return Err(format!("piece field {number} has the wrong wire type")),
            _ => {}
        }
    }
    Ok(piece)
}

fn read_trainer(bytes: &[u8]) -> Result<TrainerSpec, String> {
    let mut spec = TrainerSpec::default();
    let mut reader = Reader::new(bytes);
    while let Some((number, value)) = reader.field()? {
        match (number, value) {
            (3, Field::Varint(v)) => spec.model_type = v,
            (24, Field::Varint(v)) => spec.treat_whitespace_as_suffix = as_bool(v),
            (35, Field::Varint(v)) => spec.byte_fallback = as_bool(v),
            (40, Field::Varint(v)) => spec.unk_id = as_i64(v),
            (41, Field::Varint(v)) => spec.bos_id = as_i64(v),
            (42, Field::Varint(v)) => spec.eos_id = as_i64(v),
            (45, Field::Bytes(b)) => spec.unk_piece = utf8(b, "unk_piece")?,
            (46, Field::Bytes(b)) => spec.bos_piece = utf8(b, "bos_piece")?,
            (47, Field::Bytes(b)) => spec.eos_piece = utf8(b, "eos_piece")?,
            _ => {}
        }
    }
    Ok(spec)
}

fn read_normalizer(bytes: &[u8]) -> Result<NormalizerSpec, String> {
    let mut spec = NormalizerSpec::default();
    let mut reader = Reader::new(bytes);
    while let Some((number, value)) = reader.field()? {
        match (number, value) {
            (1, Field::Bytes(b)) => spec.name = utf8(b, "normalizer name")?,
            (2, Field::Bytes(b)) => spec.precompiled_charsmap_len = b.len(),
            (3, Field::Varint(v)) => spec.add_dummy_prefix = as_bool(v),
            (5, Field::Varint(v)) => spec.escape_whitespaces = as_bool(v),
            _ => {}
        }
    }
    Ok(spec)
}

/// Reads the parts of a serialized `ModelProto` that a BPE conversion needs.
pub(crate) fn read_model(bytes: &[u8]) -> Result<ModelProto, String> {
    let mut model = ModelProto::default();
    let mut reader = Reader::new(bytes);
    while let Some((number, value)) = reader.field()? {
        match (number, value) {
            (1, Field::Bytes(b)) => model
                .pieces
                .push(read_piece(b).map_err(|e| format!("piece {}: {e}", model.pieces.len()))?),
            (2, Field::Bytes(b)) => {
                model.trainer = read_trainer(b).map_err(|e| format!("trainer_spec: {e}"))?
            }
            (3, Field::Bytes(b)) => {
                model.normalizer =
                    read_normalizer(b).map_err(|e| format!("normalizer_spec: {e}"))?
            }
            (1..=3, _) => return Err(format!("model field {number} has the wrong wire type")),
            // Unknown fields, and Fixed64 values, are skipped as protobuf readers do.
            (_, Field::Varint(_) | Field::Fixed32(_) | Field::Fixed64 | Field::Bytes(_)) => {}
        }
    }
    if model.pieces.is_empty() {
        return Err("the model has no pieces".into());
    }
    Ok(model)
}

/// The merges of a BPE vocabulary, ordered as transformers 4.39's `SentencePieceExtractor`
/// orders them: every split of a piece into two pieces of the vocabulary, pieces in id
/// order and the splits of one piece by the ids of their halves; then a stable sort by the
/// piece's score, highest first. (Later transformers versions also sort by the halves'
/// lengths; the reference's `tokenizer.json` has this order.)
pub(crate) fn merges(pieces: &[Piece]) -> Vec<(String, String)> {
    let vocab: HashMap<&str, usize> = pieces
        .iter()
        .enumerate()
        .map(|(id, p)| (p.piece.as_str(), id))
        .collect();
    let mut merges: Vec<(&str, &str, f32)> = Vec::new();
    let mut local: Vec<(&str, &str, f32)> = Vec::new();
    for piece in pieces {
        let merged = piece.piece.as_str();
        local.clear();
        for (split, _) in merged.char_indices().skip(1) {
            let (left, right) = merged.split_at(split);
            if vocab.contains_key(left) && vocab.contains_key(right) {
                local.push((left, right, piece.score));
            }
        }
        local.sort_by_key(|(left, right, _)| (vocab[left], vocab[right]));
        merges.extend_from_slice(&local);
    }
    // Python's sort is stable and, with `reverse=True`, keeps equal scores in order.
    merges.sort_by(|a, b| b.2.partial_cmp(&a.2).unwrap_or(Ordering::Equal));
    merges
        .into_iter()
        .map(|(l, r, _)| (l.to_string(), r.to_string()))
        .collect()
}

fn added_token(id: usize, content: &str) -> Value {
    json!({
        "id": id,
        "content": content,
        "single_word": false,
        "lstrip": false,
        "rstrip": false,
        "normalized": false,
        "special": true,
    })
}

/// Converts a SentencePiece BPE model to the `tokenizer.json` that transformers 4.39's
/// `LlamaConverter` writes for it (legacy normalizer: prepend `▁`, spaces to `▁`).
pub(crate) fn to_tokenizer_json(model: &ModelProto) -> Result<Value, String> {
    match model.trainer.model_type {
        2 => {}
        1 => {
            return Err(
                "Unigram SentencePiece models are not supported (the ProX refiners use BPE)".into(),
            )
        }
        other => return Err(format!("SentencePiece model type {other} is not supported")),
    }
    if model.normalizer.precompiled_charsmap_len > 0 {
        return Err(format!(
            "the normalizer `{}` uses a precompiled character map, which is not supported",
            model.normalizer.name
        ));
    }
    if model.trainer.treat_whitespace_as_suffix {
        return Err("treat_whitespace_as_suffix is not supported".into());
    }
    let mut seen: HashMap<&str, usize> = HashMap::with_capacity(model.pieces.len());
    for (id, piece) in model.pieces.iter().enumerate() {
        if let Some(first) = seen.insert(piece.piece.as_str(), id) {
            return Err(format!(
                "piece {:?} is defined twice (ids {first} and {id})",
                piece.piece
            ));
        }
    }

    let mut vocab = serde_json::Map::with_capacity(model.pieces.len());
    for (id, piece) in model.pieces.iter().enumerate() {
        vocab.insert(piece.piece.clone(), json!(id));
    }
    let merges: Vec<Value> = merges(&model.pieces)
        .into_iter()
        .map(|(l, r)| json!([l, r]))
        .collect();

    // The converter adds the pieces with ids 0, 1 and 2 (unk, bos, eos) as special tokens,
    // and only the unk piece of the trainer spec is the model's unknown token.
    let specials: Vec<Value> = model
        .pieces
        .iter()
        .take(3)
        .enumerate()
        .map(|(id, p)| added_token(id, &p.piece))
        .collect();
    let unk = &model.trainer.unk_piece;
    let bos = piece_at(model, model.trainer.bos_id).unwrap_or(&model.trainer.bos_piece);
    let bos_id = model.pieces.iter().position(|p| &p.piece == bos);

    let mut normalizers = Vec::new();
    if model.normalizer.add_dummy_prefix {
        normalizers.push(json!({"type": "Prepend", "prepend": "\u{2581}"}));
    }
    if model.normalizer.escape_whitespaces {
        normalizers
            .push(json!({"type": "Replace", "pattern": {"String": " "}, "content": "\u{2581}"}));
    }

    let post_processor = match bos_id {
        Some(bos_id) => json!({
            "type": "TemplateProcessing",
            "single": [
                {"SpecialToken": {"id": bos, "type_id": 0}},
                {"Sequence": {"id": "A", "type_id": 0}}
            ],
            "pair": [
                {"SpecialToken": {"id": bos, "type_id": 0}},
                {"Sequence": {"id": "A", "type_id": 0}},
                {"SpecialToken": {"id": bos, "type_id": 1}},
                {"Sequence": {"id": "B", "type_id": 1}}
            ],
            "special_tokens": {bos.as_str(): {"id": bos, "ids": [bos_id], "tokens": [bos]}}
        }),
        None => Value::Null,
    };

    Ok(json!({
        "version": "1.0",
        "truncation": null,
        "padding": null,
        "added_tokens": specials,
        "normalizer": {"type": "Sequence", "normalizers": normalizers},
        "pre_tokenizer": null,
        "post_processor": post_processor,
        "decoder": {
            "type": "Sequence",
            "decoders": [
                {"type": "Replace", "pattern": {"String": "\u{2581}"}, "content": " "},
                {"type": "ByteFallback"},
                {"type": "Fuse"},
                {"type": "Strip", "content": " ", "start": 1, "stop": 0}
            ]
        },
        "model": {
            "type": "BPE",
            "dropout": null,
            "unk_token": unk,
            "continuing_subword_prefix": null,
            "end_of_word_suffix": null,
            "fuse_unk": true,
            "byte_fallback": model.trainer.byte_fallback,
            "ignore_merges": false,
            "vocab": vocab,
            "merges": merges,
        }
    }))
}

fn piece_at(model: &ModelProto, id: i64) -> Option<&String> {
    usize::try_from(id)
        .ok()
        .and_then(|id| model.pieces.get(id))
        .map(|p| &p.piece)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn piece(piece: &str, score: f32) -> Piece {
        Piece {
            piece: piece.into(),
            score,
            kind: PieceType::Normal,
        }
    }

    #[test]
    fn merges_follow_scores_and_then_ids() {
        let pieces = vec![
            piece("a", 0.0),
            piece("b", 0.0),
            piece("c", 0.0),
            piece("bc", -2.0),
            piece("ab", -1.0),
            piece("abc", -3.0),
        ];
        let merges = merges(&pieces);
        let merges: Vec<(&str, &str)> = merges
            .iter()
            .map(|(l, r)| (l.as_str(), r.as_str()))
            .collect();
        // "abc" splits as a+bc (ids 0, 3) and ab+c (ids 4, 2): ordered by the left id.
        assert_eq!(
            merges,
            vec![("a", "b"), ("b", "c"), ("a", "bc"), ("ab", "c")]
        );
    }

    #[test]
    fn truncated_and_garbage_models_are_errors() {
        assert!(read_model(&[]).is_err());
        assert!(read_model(&[0x0a, 0x05, 0x0a]).is_err());
        assert!(read_model(&[0xff; 16]).is_err());
        assert!(read_model(b"\x0b\x00").is_err());
    }

    #[test]
    fn a_minimal_model_reads_back() {
        // pieces { piece: "a" score: -1.5 type: NORMAL }
        let mut piece = vec![0x0a, 0x01, b'a', 0x15];
        piece.extend_from_slice(&(-1.5f32).to_le_bytes());
        piece.extend_from_slice(&[0x18, 0x01]);
        let mut bytes = vec![0x0a, piece.len() as u8];
        bytes.extend_from_slice(&piece);
        let model = read_model(&bytes).unwrap();
        assert_eq!(model.pieces.len(), 1);
        assert_eq!(model.pieces[0].piece, "a");
        assert_eq!(model.pieces[0].score, -1.5);
        assert_eq!(model.trainer.model_type, 1);
    }
}
