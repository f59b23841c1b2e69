//! A fast encoder for SentencePiece-style BPE tokenizers (Llama's): the same ids as the
//! `tokenizers` crate, many times faster, and in memory proportional to the text.
//!
//! Two facts make it fast and exact:
//!
//! - **Safe split points.** Every token of more than one character is the result of a merge,
//!   so it contains only character pairs that occur inside some merge result. Between two
//!   characters that never occur side by side in a merge result, no token can cross, and
//!   BPE on the whole text equals BPE on each side separately (merges on one side never
//!   change the pairs of the other, and the order "lowest rank, then leftmost" is the same
//!   when restricted to one side). For Llama, `▁` after any other character is such a
//!   point, so texts fall apart into words.
//! - **A word cache.** Words repeat; each thread keeps the ids of the words it has seen.
//!
//! The merge loop itself is the `tokenizers` crate's: repeatedly merge the adjacent pair of
//! lowest merge rank, leftmost first.

use std::cell::RefCell;
use std::cmp::Reverse;
use std::collections::BinaryHeap;
use std::ops::Range;
use std::sync::atomic::{AtomicU64, Ordering};

use foldhash::{HashMap, HashMapExt, HashSet, HashSetExt};

/// The SentencePiece whitespace mark.
pub(crate) const SPACE: char = '\u{2581}';

const NONE: u32 = u32::MAX;
/// Pair tables index ASCII characters directly and `▁` just after them.
const TABLE: usize = 129;
/// Words longer than this (in bytes) are not cached: they are rare and would crowd it.
const MAX_CACHED_WORD: usize = 64;
/// The cache is emptied when it holds this many words, so memory stays bounded.
const MAX_CACHE_ENTRIES: usize = 1 << 17;
/// Words with more symbols than this use the heap-based merge loop.
const SMALL_WORD: usize = 48;

/// When a `▁` is put in front of a text segment (one that is not a special token).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum PrefixRule {
    /// The legacy normalizer `Prepend("▁")`: before every non-empty segment.
    Every,
    /// `Metaspace` with `prepend_scheme: always`: before every segment not starting with `▁`.
    EveryUnlessSpace,
    /// `Metaspace` with `prepend_scheme: first`: before the segment at the start of the text
    /// only, unless it starts with `▁`.
    FirstUnlessSpace,
    /// No prefix.
    Never,
}

/// How the text segments between special tokens get their `▁` prefix.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Style {
    /// As the fast (`tokenizers`) tokenizer does, by its [`PrefixRule`].
    Fast,
    /// As transformers' slow `LlamaTokenizer` with `legacy=false` does: the segment at the
    /// start of the text gets `▁`, no segment after a special token does.
    SlowLegacyFalse,
}

/// What to encode and how.
#[derive(Debug, Clone)]
pub(crate) struct Request<'a> {
    pub text: &'a str,
    pub style: Style,
    pub add_special_tokens: bool,
    /// A byte range of `text` in which special tokens are not recognised.
    pub literal: Option<Range<usize>>,
    /// Stop once this many ids are out (the output may run a little past it).
    pub limit: Option<usize>,
}

/// The parts of a tokenizer the engine is built from.
#[derive(Debug, Clone)]
pub(crate) struct EngineParts {
    pub vocab: Vec<(String, u32)>,
    pub merges: Vec<(String, String)>,
    /// Added tokens, matched in the raw text before normalization.
    pub added: Vec<(String, u32)>,
    /// Ids the post-processor puts before and after the text.
    pub prefix_ids: Vec<u32>,
    pub suffix_ids: Vec<u32>,
    pub prefix_rule: PrefixRule,
}

static NEXT_ENGINE: AtomicU64 = AtomicU64::new(1);

thread_local! {
    static CACHE: RefCell<WordCache> = RefCell::new(WordCache::default());
}

#[derive(Default)]
struct WordCache {
    /// The engine the cached ids belong to.
    owner: u64,
    words: HashMap<Box<str>, Box<[u32]>>,
}

impl WordCache {
    fn insert(&mut self, word: &str, ids: &[u32]) {
        if self.words.len() >= MAX_CACHE_ENTRIES {
            self.words.clear();
        }
        self.words.insert(word.into(), ids.into());
    }
}

/// Empties this thread's word cache (all engines share one per thread).
pub(crate) fn clear_thread_cache() {
    CACHE.with_borrow_mut(|cache| cache.words.clear());
}

pub(crate) struct Engine {
    /// Identifies this engine's entries in the per-thread cache.
    key: u64,
    ascii_ids: [u32; 128],
    char_ids: HashMap<char, u32>,
    byte_ids: [u32; 256],
    /// (left id, right id) packed into a u64 → (rank, merged id).
    merges: HashMap<u64, (u32, u32)>,
    /// Bit set over `TABLE × TABLE`: does the pair occur inside a merge result?
    inner_table: Vec<u64>,
    /// The same for pairs with a character outside the table.
    inner_other: HashSet<u64>,
    /// Added tokens, longest first, so the first match at a position is the longest.
    added: Vec<(Box<str>, u32)>,
    added_first_bytes: [bool; 256],
    prefix_ids: Vec<u32>,
    suffix_ids: Vec<u32>,
    prefix_rule: PrefixRule,
}

impl std::fmt::Debug for Engine {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Engine")
            .field("merges", &self.merges.len())
            .field("added", &self.added.len())
            .field("prefix_rule", &self.prefix_rule)
            .finish_non_exhaustive()
    }
}

fn pack(left: u32, right: u32) -> u64 {
    (u64::from(left) << 32) | u64::from(right)
}

fn table_index(c: char) -> Option<usize> {
    if c.is_ascii() {
        Some(c as usize)
    } else if c == SPACE {
        Some(128)
    } else {
        None
    }
}

impl Engine {
    /// Builds the engine, or says why this tokenizer is not one it can reproduce.
    pub(crate) fn new(parts: EngineParts) -> Result<Self, String> {
        let vocab: HashMap<&str, u32> = parts
            .vocab
            .iter()
            .map(|(piece, id)| (piece.as_str(), *id))
            .collect();

        let mut byte_ids = [NONE; 256];
        for (byte, slot) in byte_ids.iter_mut().enumerate() {
            let piece = format!("<0x{byte:02X}>");
            *slot = *vocab
                .get(piece.as_str())
                .ok_or_else(|| format!("no byte-fallback token {piece}"))?;
        }

        let mut ascii_ids = [NONE; 128];
        let mut char_ids = HashMap::new();
        for (piece, id) in &parts.vocab {
            let mut chars = piece.chars();
            if let (Some(c), None) = (chars.next(), chars.next()) {
                if c.is_ascii() {
                    ascii_ids[c as usize] = *id;
                } else {
                    char_ids.insert(c, *id);
                }
            }
        }

        let mut merges = HashMap::with_capacity(parts.merges.len());
        let mut inner_table = vec![0u64; (TABLE * TABLE).div_ceil(64)];
        let mut inner_other = HashSet::new();
        let mut merged = String::new();
        for (rank, (left, right)) in parts.merges.iter().enumerate() {
            let rank = u32::try_from(rank).map_err(|_| "too many merges".to_string())?;
            let id_of = |piece: &str| {
                vocab
                    .get(piece)
                    .copied()
                    .ok_or_else(|| format!("merge part {piece:?} is not in the vocabulary"))
            };
            merged.clear();
            merged.push_str(left);
            merged.push_str(right);
            let new_id = id_of(&merged)?;
            // Like the `tokenizers` crate, a later duplicate of a pair wins.
            merges.insert(pack(id_of(left)?, id_of(right)?), (rank, new_id));
            let mut chars = merged.chars();
            let Some(mut prev) = chars.next() else {
                continue;
            };
            for c in chars {
                match (table_index(prev), table_index(c)) {
                    (Some(a), Some(b)) => {
                        let bit = a * TABLE + b;
                        inner_table[bit / 64] |= 1 << (bit % 64);
                    }
                    _ => {
                        inner_other.insert(pack(prev as u32, c as u32));
                    }
                }
                prev = c;
            }
        }

        let mut added: Vec<(Box<str>, u32)> = parts
            .added
            .iter()
            .filter(|(content, _)| !content.is_empty())
            .map(|(content, id)| (content.as_str().into(), *id))
            .collect();
        added.sort_by_key(|(content, _)| std::cmp::Reverse(content.len()));
        let mut added_first_bytes = [false; 256];
        for (content, _) in &added {
            added_first_bytes[usize::from(content.as_bytes()[0])] = true;
        }

        Ok(Self {
            key: NEXT_ENGINE.fetch_add(1, Ordering::Relaxed),
            ascii_ids,
            char_ids,
            byte_ids,
            merges,
            inner_table,
            inner_other,
            added,
            added_first_bytes,
            prefix_ids: parts.prefix_ids,
            suffix_ids: parts.suffix_ids,
            prefix_rule: parts.prefix_rule,
        })
    }

    /// Can a token contain `prev` immediately followed by `c`?
    #[inline]
    fn inner(&self, prev: char, c: char) -> bool {
        match (table_index(prev), table_index(c)) {
            (Some(a), Some(b)) => {
                let bit = a * TABLE + b;
                self.inner_table[bit / 64] & (1 << (bit % 64)) != 0
            }
            _ => self.inner_other.contains(&pack(prev as u32, c as u32)),
        }
    }

    /// Encodes a request into `out` (appending). Returns `true` if it stopped at the limit.
    pub(crate) fn encode(&self, request: &Request<'_>, out: &mut Vec<u32>) -> bool {
        // One borrow of this thread's cache for the whole text, not one per word.
        CACHE.with_borrow_mut(|cache| {
            if cache.owner != self.key {
                cache.words.clear();
                cache.owner = self.key;
            }
            self.encode_cached(request, out, cache)
        })
    }

    fn encode_cached(
        &self,
        request: &Request<'_>,
        out: &mut Vec<u32>,
        cache: &mut WordCache,
    ) -> bool {
        let start_len = out.len();
        let limit = request.limit.map(|l| start_len.saturating_add(l));
        if request.add_special_tokens {
            out.extend_from_slice(&self.prefix_ids);
        }
        let text = request.text;
        let mut pos = 0;
        let mut word = String::new();
        loop {
            let special = self.next_added(text, pos, request.literal.as_ref());
            let end = special.map_or(text.len(), |(s, _, _)| s);
            let segment = &text[pos..end];
            if !segment.is_empty() {
                let prefix = match request.style {
                    Style::SlowLegacyFalse => pos == 0,
                    Style::Fast => {
                        let starts_with_space =
                            segment.starts_with(' ') || segment.starts_with(SPACE);
                        match self.prefix_rule {
                            PrefixRule::Every => true,
                            PrefixRule::EveryUnlessSpace => !starts_with_space,
                            PrefixRule::FirstUnlessSpace => pos == 0 && !starts_with_space,
                            PrefixRule::Never => false,
                        }
                    }
                };
                if self.encode_segment(segment, prefix, &mut word, out, limit, cache) {
                    return true;
                }
            }
            match special {
                Some((_, special_end, id)) => {
                    out.push(id);
                    if limit.is_some_and(|l| out.len() >= l) {
                        return true;
                    }
                    pos = special_end;
                }
                None => break,
            }
        }
        if request.add_special_tokens {
            out.extend_from_slice(&self.suffix_ids);
        }
        false
    }

    /// The leftmost-longest added token at or after `from`, outside `literal`:
    /// (start, end, id).
    fn next_added(
        &self,
        text: &str,
        from: usize,
        literal: Option<&Range<usize>>,
    ) -> Option<(usize, usize, u32)> {
        if self.added.is_empty() {
            return None;
        }
        match literal {
            Some(lit) if lit.start < lit.end => {
                if from < lit.start {
                    if let Some(found) = self.find_added(text, from, lit.start) {
                        return Some(found);
                    }
                }
                self.find_added(text, from.max(lit.end), text.len())
            }
            _ => self.find_added(text, from, text.len()),
        }
    }

    /// The leftmost-longest added token lying wholly within `text[from..to]`.
    fn find_added(&self, text: &str, from: usize, to: usize) -> Option<(usize, usize, u32)> {
        let bytes = text.as_bytes().get(from..to)?;
        let mut offset = 0;
        while offset < bytes.len() {
            let rest = &bytes[offset..];
            let next = rest
                .iter()
                .position(|b| self.added_first_bytes[usize::from(*b)])?;
            let at = offset + next;
            for (content, id) in &self.added {
                if bytes[at..].starts_with(content.as_bytes()) {
                    let start = from + at;
                    return Some((start, start + content.len(), *id));
                }
            }
            offset = at + 1;
        }
        None
    }

    /// Normalizes one segment (optional `▁` prefix, spaces to `▁`), splits it at the safe
    /// points and encodes word by word. Returns `true` if it stopped at the limit.
    ///
    /// Words are looked up in the cache by their raw text (spaces not yet replaced), which
    /// saves building the normalized word on every hit; the raw text normalizes to exactly
    /// one word, so the cache stays consistent.
    fn encode_segment(
        &self,
        segment: &str,
        prefix: bool,
        word: &mut String,
        out: &mut Vec<u32>,
        limit: Option<usize>,
        cache: &mut WordCache,
    ) -> bool {
        let mut prev = prefix.then_some(SPACE);
        let mut pending_prefix = prefix;
        let mut start = 0;
        for (i, c) in segment.char_indices() {
            let c = if c == ' ' { SPACE } else { c };
            if let Some(p) = prev {
                if !self.inner(p, c) {
                    self.emit_raw(&segment[start..i], pending_prefix, word, out, cache);
                    pending_prefix = false;
                    start = i;
                    if limit.is_some_and(|l| out.len() >= l) {
                        return true;
                    }
                }
            }
            prev = Some(c);
        }
        if start < segment.len() || pending_prefix {
            self.emit_raw(&segment[start..], pending_prefix, word, out, cache);
        }
        limit.is_some_and(|l| out.len() >= l)
    }

    /// Encodes one word given as raw text, with a `▁` in front when `prefix`.
    fn emit_raw(
        &self,
        raw: &str,
        prefix: bool,
        word: &mut String,
        out: &mut Vec<u32>,
        cache: &mut WordCache,
    ) {
        if !prefix {
            let mut chars = raw.chars();
            if let (Some(c), None) = (chars.next(), chars.clone().next()) {
                self.push_char(if c == ' ' { SPACE } else { c }, out);
                return;
            }
            if let Some(ids) = cache.words.get(raw) {
                out.extend_from_slice(ids);
                return;
            }
        }
        word.clear();
        if prefix {
            word.push(SPACE);
        }
        for c in raw.chars() {
            word.push(if c == ' ' { SPACE } else { c });
        }
        let start = out.len();
        self.emit_word(word, out, cache);
        if !prefix && raw.len() <= MAX_CACHED_WORD && raw.len() != word.len() {
            // Also file the ids under the raw spelling, for the lookup above.
            cache.insert(raw, &out[start..]);
        }
    }

    /// Encodes one normalized word, through the cache.
    fn emit_word(&self, word: &str, out: &mut Vec<u32>, cache: &mut WordCache) {
        let mut chars = word.chars();
        if let (Some(c), None) = (chars.next(), chars.clone().next()) {
            self.push_char(c, out);
            return;
        }
        if word.len() > MAX_CACHED_WORD {
            self.bpe(word, out);
            return;
        }
        if let Some(ids) = cache.words.get(word) {
            out.extend_from_slice(ids);
            return;
        }
        let start = out.len();
        self.bpe(word, out);
        cache.insert(word, &out[start..]);
    }

    /// The ids of one character: its own, or its UTF-8 bytes'.
    #[inline]
    fn push_char(&self, c: char, out: &mut Vec<u32>) {
        let id = if c.is_ascii() {
            self.ascii_ids[c as usize]
        } else {
            self.char_ids.get(&c).copied().unwrap_or(NONE)
        };
        if id != NONE {
            out.push(id);
        } else {
            let mut buf = [0u8; 4];
            for b in c.encode_utf8(&mut buf).bytes() {
                out.push(self.byte_ids[usize::from(b)]);
            }
        }
    }

    /// BPE on one word, appending its ids.
    fn bpe(&self, word: &str, out: &mut Vec<u32>) {
        let start = out.len();
        for c in word.chars() {
            self.push_char(c, out);
        }
        let count = out.len() - start;
        if count < 2 {
            return;
        }
        if count <= SMALL_WORD {
            self.merge_small(out, start);
        } else {
            let merged = self.merge_large(&out[start..]);
            out.truncate(start);
            out.extend(merged);
        }
    }

    fn rank(&self, left: u32, right: u32) -> Option<(u32, u32)> {
        self.merges.get(&pack(left, right)).copied()
    }

    /// The merge loop for short words: scan for the lowest-ranked pair, leftmost on ties.
    /// Pair ranks are kept and only the two around a merge are looked up again.
    fn merge_small(&self, out: &mut Vec<u32>, start: usize) {
        let mut ranks: [(u32, u32); SMALL_WORD] = [(NONE, NONE); SMALL_WORD];
        let mut len = out.len() - start;
        for i in 0..len - 1 {
            ranks[i] = self
                .rank(out[start + i], out[start + i + 1])
                .unwrap_or((NONE, NONE));
        }
        loop {
            let mut best = NONE;
            let mut at = 0;
            for (i, &(rank, _)) in ranks[..len - 1].iter().enumerate() {
                if rank < best {
                    best = rank;
                    at = i;
                }
            }
            if best == NONE {
                break;
            }
            let new_id = ranks[at].1;
            out[start + at] = new_id;
            out.remove(start + at + 1);
            ranks.copy_within(at + 1..len - 1, at);
            len -= 1;
            if at > 0 {
                ranks[at - 1] = self
                    .rank(out[start + at - 1], new_id)
                    .unwrap_or((NONE, NONE));
            }
            if at + 1 < len {
                ranks[at] = self
                    .rank(new_id, out[start + at + 1])
                    .unwrap_or((NONE, NONE));
            }
            if len < 2 {
                break;
            }
        }
    }

    /// The merge loop for long words: a linked list of symbols and a heap of candidate
    /// pairs ordered by (rank, position), stale entries skipped, as in the `tokenizers`
    /// crate. O(n log n) time and O(n) memory.
    fn merge_large(&self, ids: &[u32]) -> Vec<u32> {
        let n = ids.len();
        let mut id: Vec<u32> = ids.to_vec();
        let mut prev: Vec<u32> = (0..n as u32).map(|i| i.wrapping_sub(1)).collect();
        let mut next: Vec<u32> = (1..=n as u32).collect();
        next[n - 1] = NONE;
        prev[0] = NONE;
        let mut heap = BinaryHeap::with_capacity(n);
        for i in 0..n - 1 {
            if let Some((rank, _)) = self.rank(id[i], id[i + 1]) {
                heap.push(Reverse((rank, i as u32)));
            }
        }
        while let Some(Reverse((rank, pos))) = heap.pop() {
            let p = pos as usize;
            if id[p] == NONE || next[p] == NONE {
                continue;
            }
            let right = next[p] as usize;
            let Some((current, new_id)) = self.rank(id[p], id[right]) else {
                continue;
            };
            if current != rank {
                continue;
            }
            id[p] = new_id;
            id[right] = NONE;
            next[p] = next[right];
            if next[p] != NONE {
                prev[next[p] as usize] = pos;
            }
            if prev[p] != NONE {
                let left = prev[p] as usize;
                if let Some((r, _)) = self.rank(id[left], new_id) {
                    heap.push(Reverse((r, prev[p])));
                }
            }
            if next[p] != NONE {
                if let Some((r, _)) = self.rank(new_id, id[next[p] as usize]) {
                    heap.push(Reverse((r, pos)));
                }
            }
        }
        id.into_iter().filter(|&i| i != NONE).collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A toy vocabulary: bytes, a few characters and merges with a deliberate tie.
    fn toy() -> Engine {
        let mut vocab: Vec<(String, u32)> =
            (0..256u32).map(|b| (format!("<0x{b:02X}>"), b)).collect();
        let pieces = [
            "a",
            "b",
            "c",
            "\u{2581}",
            "ab",
            "bc",
            "abc",
            "\u{2581}a",
            "\u{2581}\u{2581}",
            "<s>",
        ];
        for (i, p) in pieces.iter().enumerate() {
            vocab.push(((*p).to_string(), 256 + i as u32));
        }
        let merges = [
            ("a", "b"),
            ("b", "c"),
            ("ab", "c"),
            ("\u{2581}", "a"),
            ("\u{2581}", "\u{2581}"),
        ]
        .iter()
        .map(|(l, r)| ((*l).to_string(), (*r).to_string()))
        .collect();
        Engine::new(EngineParts {
            vocab,
            merges,
            added: vec![("<s>".into(), 265)],
            prefix_ids: vec![265],
            suffix_ids: vec![],
            prefix_rule: PrefixRule::Every,
        })
        .unwrap()
    }

    fn naive(engine: &Engine, word: &str) -> Vec<u32> {
        let mut out = Vec::new();
        for c in word.chars() {
            engine.push_char(c, &mut out);
        }
        loop {
            let best = (0..out.len().saturating_sub(1))
                .filter_map(|i| engine.rank(out[i], out[i + 1]).map(|(r, n)| (r, i, n)))
                .min_by_key(|&(r, i, _)| (r, i));
            let Some((_, i, n)) = best else { break };
            out[i] = n;
            out.remove(i + 1);
        }
        out
    }

    #[test]
    fn small_and_large_merge_loops_agree_with_the_naive_one() {
        let engine = toy();
        for word in ["abcabc", "aaaa", "abababab", "\u{2581}\u{2581}\u{2581}a"] {
            for repeat in [1, 5, 40] {
                let word = word.repeat(repeat);
                let mut out = Vec::new();
                engine.bpe(&word, &mut out);
                assert_eq!(out, naive(&engine, &word), "{word}");
            }
        }
    }

    #[test]
    fn special_tokens_split_outside_the_literal_range_only() {
        let engine = toy();
        let request = |literal| Request {
            text: "<s>a<s>",
            style: Style::SlowLegacyFalse,
            add_special_tokens: false,
            literal,
            limit: None,
        };
        let mut out = Vec::new();
        engine.encode(&request(None), &mut out);
        assert_eq!(out, vec![265, 256, 265]);
        out.clear();
        engine.encode(&request(Some(3..7)), &mut out);
        assert_eq!(out[0], 265);
        assert!(!out[1..].contains(&265));
    }
}
