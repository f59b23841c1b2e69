//! Stop strings: the text of a sequence followed token by token, and the generation ended
//! at the first stop string, as vLLM's `stop` does.
//!
//! A stop string is looked for in the *decoded text*, not in the ids: it may span tokens
//! (`"\n\nQuestion:"` is several), and one token may hold it together with other text.
//! After each new token only what is new is decoded, vLLM's way: the ids not yet turned
//! into text are decoded together with the few before them (so that a SentencePiece `▁`
//! keeps its space, and byte-fallback pieces of one character come out together), and
//! nothing is emitted while the text ends in an incomplete character (`�`). Only
//! occurrences that end in the new text are looked for; earlier text was searched already.
//!
//! Without stop strings nothing is decoded until the end: the text is then
//! `tokenizer.decode(ids, true)`, what `prox generate` and `prox serve` always returned.

use prox_tokenizer::Tokenizer;

/// The replacement character a decoder writes for bytes that are not (yet) a character.
const INCOMPLETE: char = '\u{fffd}';

/// The text of one generation and the stop string that ended it, if one did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StopText {
    /// The decoded text (special tokens skipped), cut before the first stop string.
    pub text: String,
    /// Index into the stop strings of the one found first in the text.
    pub matched: Option<usize>,
}

/// Follows the text of one sequence as its tokens come and finds the first stop string.
///
/// ```no_run
/// # fn demo(tokenizer: &prox_tokenizer::Tokenizer, ids: &[u32]) -> Result<(), prox_tokenizer::Error> {
/// use prox_engine::StopMatcher;
///
/// let stop = vec!["\n\nQuestion:".to_owned()];
/// let mut matcher = StopMatcher::new(tokenizer, &stop);
/// for end in 1..=ids.len() {
///     if matcher.push(&ids[..end])? {
///         break; // the text now ends before "\n\nQuestion:"
///     }
/// }
/// let text = matcher.finish(ids)?.text;
/// # Ok(()) }
/// ```
#[derive(Debug)]
pub struct StopMatcher<'a> {
    tokenizer: &'a Tokenizer,
    stop: &'a [String],
    /// The text emitted so far; every stop string occurrence ending in it has been looked for.
    text: String,
    /// Ids `prefix..read` were emitted already and are decoded again only as context for
    /// ids `read..`, which are not emitted yet.
    prefix: usize,
    read: usize,
    matched: Option<usize>,
}

impl<'a> StopMatcher<'a> {
    /// A matcher for `stop`; an empty list never stops and decodes nothing until
    /// [`finish`](Self::finish).
    pub fn new(tokenizer: &'a Tokenizer, stop: &'a [String]) -> Self {
        StopMatcher {
            tokenizer,
            stop,
            text: String::new(),
            prefix: 0,
            read: 0,
            matched: None,
        }
    }

    /// Takes the sequence's generated ids so far (those of earlier calls plus new ones) and
    /// says whether a stop string has appeared; once one has, the text ends before it and
    /// later calls change nothing.
    pub fn push(&mut self, ids: &[u32]) -> Result<bool, prox_tokenizer::Error> {
        if self.matched.is_some() {
            return Ok(true);
        }
        if self.stop.is_empty() {
            return Ok(false);
        }
        if let Some(new) = self.new_text(ids, false)? {
            self.prefix = self.read;
            self.read = ids.len();
            self.append(&new);
        }
        Ok(self.matched.is_some())
    }

    /// The generation's text: what was emitted, plus whatever the last ids still held back
    /// (an incomplete character at the very end is kept as `�`, as `decode` writes it),
    /// cut before the first stop string.
    pub fn finish(mut self, ids: &[u32]) -> Result<StopText, prox_tokenizer::Error> {
        if self.stop.is_empty() {
            return Ok(StopText {
                text: self.tokenizer.decode(ids, true)?,
                matched: None,
            });
        }
        if self.matched.is_none() {
            if let Some(rest) = self.new_text(ids, true)? {
                self.append(&rest);
            }
        }
        Ok(StopText {
            text: self.text,
            matched: self.matched,
        })
    }

    /// The text the ids from `read` on add, decoded in the context of ids `prefix..read`;
    /// `None` while there is nothing new or it ends in an incomplete character (unless
    /// `last`).
    fn new_text(&self, ids: &[u32], last: bool) -> Result<Option<String>, prox_tokenizer::Error> {
        if ids.len() <= self.read {
            return Ok(None);
        }
        let context = self.tokenizer.decode(&ids[self.prefix..self.read], true)?;
        let whole = self.tokenizer.decode(&ids[self.prefix..], true)?;
        if whole.len() <= context.len() || (!last && whole.ends_with(INCOMPLETE)) {
            return Ok(None);
        }
        // Decoding more ids normally only appends; where it changed the context's last
        // character, the text from the first character boundary after it is new.
        let mut start = context.len();
        while !whole.is_char_boundary(start) {
            start += 1;
        }
        Ok(Some(whole[start..].to_owned()))
    }

    /// Appends new text and cuts the text before the earliest stop string ending in it.
    fn append(&mut self, new: &str) {
        let searched = self.text.len();
        self.text.push_str(new);
        let mut first: Option<(usize, usize)> = None;
        for (index, stop) in self.stop.iter().enumerate() {
            // An occurrence ending in the new text starts at most len - 1 bytes before it.
            let mut from = searched.saturating_sub(stop.len().saturating_sub(1));
            while !self.text.is_char_boundary(from) {
                from -= 1;
            }
            if let Some(found) = self.text[from..].find(stop.as_str()) {
                let at = from + found;
                if first.is_none_or(|(best, _)| at < best) {
                    first = Some((at, index));
                }
            }
        }
        if let Some((at, index)) = first {
            self.text.truncate(at);
            self.matched = Some(index);
        }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)] // a failure is a test failure

    use proptest::prelude::*;

    use super::*;

    fn tokenizer() -> &'static Tokenizer {
        static TOKENIZER: std::sync::OnceLock<Tokenizer> = std::sync::OnceLock::new();
        TOKENIZER
            .get_or_init(|| Tokenizer::from_path(&prox_test::fixture("llama2-tokenizer")).unwrap())
    }

    /// Feeds `ids` one token at a time; returns the result and how many ids were fed when
    /// the matcher said stop.
    fn follow(ids: &[u32], stop: &[String]) -> (StopText, Option<usize>) {
        let mut matcher = StopMatcher::new(tokenizer(), stop);
        let mut stopped_at = None;
        for end in 1..=ids.len() {
            if matcher.push(&ids[..end]).unwrap() {
                stopped_at = Some(end);
                break;
            }
        }
        let fed = stopped_at.unwrap_or(ids.len());
        (matcher.finish(&ids[..fed]).unwrap(), stopped_at)
    }

    fn strings(stop: &[&str]) -> Vec<String> {
        stop.iter().map(|s| (*s).to_owned()).collect()
    }

    #[test]
    fn text_followed_token_by_token_equals_the_decoded_ids() {
        for text in [
            "Hello world, this is a test.",
            "Caf\u{e9} cr\u{e8}me br\u{fb}l\u{e9}e \u{2014} 3\u{20ac}",
            "\u{6f22}\u{5b57}\u{3068}\u{3072}\u{3089}\u{304c}\u{306a} \u{1f600}\u{1f680}",
            "  leading spaces\n\n\tand tabs  ",
            "<s>special</s> tokens [INST]",
        ] {
            let ids = tokenizer().encode(text, false).unwrap();
            let never = strings(&["\u{1}never"]);
            let (followed, stopped) = follow(&ids, &never);
            assert_eq!(stopped, None, "{text:?}");
            assert_eq!(followed.matched, None);
            assert_eq!(
                followed.text,
                tokenizer().decode(&ids, true).unwrap(),
                "{text:?}"
            );
            // Without stop strings nothing is decoded until the end: the same text.
            let (plain, _) = follow(&ids, &[]);
            assert_eq!(plain.text, followed.text, "{text:?}");
        }
    }

    #[test]
    fn a_stop_string_spanning_tokens_cuts_the_text_before_it() {
        let ids = tokenizer()
            .encode("The answer is 42.\n\nQuestion: what next?", false)
            .unwrap();
        let (result, stopped) = follow(&ids, &strings(&["\n\nQuestion:"]));
        assert_eq!(result.text, "The answer is 42.");
        assert_eq!(result.matched, Some(0));
        // The matcher stops at the token that completes the stop string, not later.
        let stopped = stopped.unwrap();
        let before = tokenizer().decode(&ids[..stopped - 1], true).unwrap();
        assert!(!before.contains("\n\nQuestion:"), "{before:?}");
        assert!(tokenizer()
            .decode(&ids[..stopped], true)
            .unwrap()
            .contains("\n\nQuestion:"));
    }

    #[test]
    fn the_earliest_stop_string_in_the_text_wins_whatever_the_list_order() {
        let ids = tokenizer().encode("alpha beta gamma", false).unwrap();
        let (result, _) = follow(&ids, &strings(&["gamma", "beta"]));
        assert_eq!(result.text, "alpha ");
        assert_eq!(result.matched, Some(1));
        // Two stop strings starting at the same place: the text is the same; the one
        // listed first is reported.
        let (result, _) = follow(&ids, &strings(&["bet", "beta"]));
        assert_eq!((result.text.as_str(), result.matched), ("alpha ", Some(0)));
    }

    #[test]
    fn a_character_made_of_byte_tokens_is_matched_once_whole() {
        // U+20AC and U+1F600 are byte-fallback pieces in Llama's vocabulary: several
        // tokens, no text until the last byte.
        let ids = tokenizer()
            .encode("price 3\u{20ac} \u{1f600} ok", false)
            .unwrap();
        let (result, _) = follow(&ids, &strings(&["\u{1f600}"]));
        assert_eq!(result.text, "price 3\u{20ac} ");
        let (result, _) = follow(&ids, &strings(&["\u{20ac} "]));
        assert_eq!(result.text, "price 3");
    }

    #[test]
    fn a_stop_string_at_the_start_leaves_no_text() {
        let ids = tokenizer().encode("Question: x", false).unwrap();
        let (result, stopped) = follow(&ids, &strings(&["Question"]));
        assert_eq!(result.text, "");
        assert_eq!(result.matched, Some(0));
        assert!(stopped.is_some());
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(64))]

        /// Whatever the text and wherever the stop string sits in it, the text followed
        /// token by token is the decoded text cut before the stop string's first occurrence.
        #[test]
        fn the_text_is_cut_before_the_first_occurrence(
            text in "[ab \\n\u{e9}\u{20ac}\u{1f600}Q:]{1,40}",
            start in 0usize..40,
            len in 1usize..6,
        ) {
            let ids = tokenizer().encode(&text, false).unwrap();
            let full = tokenizer().decode(&ids, true).unwrap();
            let chars: Vec<char> = full.chars().collect();
            prop_assume!(!chars.is_empty());
            let start = start % chars.len();
            let end = (start + len).min(chars.len());
            let stop: String = chars[start..end].iter().collect();
            prop_assume!(!stop.contains('\u{fffd}'));
            let expected = &full[..full.find(&stop).unwrap()];
            let (result, stopped) = follow(&ids, std::slice::from_ref(&stop));
            prop_assert_eq!(result.text.as_str(), expected);
            prop_assert_eq!(result.matched, Some(0));
            prop_assert!(stopped.is_some());
        }
    }
}
