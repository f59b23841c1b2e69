//! Python's idea of whitespace, and its word count (`len(text.split())`).
//!
//! The thresholds compare word counts the reference took with `str.split()`, which splits on
//! `str.isspace()` characters. That set is Rust's `char::is_whitespace` plus the four ASCII
//! separators `\x1c`..`\x1f`; a count that differs by one word can flip a verdict at the
//! `min_words` boundary.

/// Whether Python's `str.isspace()` is true for `c`.
pub fn is_py_space(c: char) -> bool {
    matches!(
        c,
        '\t'..='\r'
            | '\x1c'..='\x1f'
            | ' '
            | '\u{85}'
            | '\u{a0}'
            | '\u{1680}'
            | '\u{2000}'..='\u{200a}'
            | '\u{2028}'
            | '\u{2029}'
            | '\u{202f}'
            | '\u{205f}'
            | '\u{3000}'
    )
}

/// Whether an ASCII byte is whitespace (`\t`..`\r`, `\x1c`..` `).
#[inline(always)]
fn is_ascii_space(b: u8) -> bool {
    // `|`, not `||`: no branches, so that loops over bytes vectorize.
    (b == b' ') | (b.wrapping_sub(0x09) < 5) | (b.wrapping_sub(0x1c) < 4)
}

/// Whether a byte may start a multi-byte whitespace character (every one starts with
/// 0xC2, 0xE1, 0xE2 or 0xE3).
#[inline(always)]
fn may_start_space(b: u8) -> bool {
    (b == 0xc2) | (b.wrapping_sub(0xe1) < 3)
}

/// `len(text.split())` in Python: the number of maximal runs of non-whitespace characters.
pub fn count_words(text: &str) -> usize {
    // A word starts at each non-space byte that follows a space (or the start of the text),
    // once every byte of a multi-byte whitespace character counts as a space; the other
    // bytes of multi-byte characters are never spaces and never start a word. Word
    // boundaries are too frequent to branch on, so blocks of bytes become arrays of 0/1
    // that the compiler vectorizes; the rare bytes that may start a multi-byte space are
    // looked at one by one.
    const BLOCK: usize = 64;
    let bytes = text.as_bytes();
    let mut words = 0;
    let mut after_space = true;
    // Bytes at the start of the next block that end a whitespace character.
    let mut carry = 0;
    let mut blocks = bytes.chunks_exact(BLOCK);
    for (index, block) in blocks.by_ref().enumerate() {
        let mut spaces = [0u8; BLOCK];
        for (space, &b) in spaces.iter_mut().zip(block) {
            *space = u8::from(is_ascii_space(b));
        }
        spaces[..carry].fill(1);
        carry = 0;
        if block
            .iter()
            .fold(0u8, |any, &b| any | u8::from(may_start_space(b)))
            != 0
        {
            for (j, &b) in block.iter().enumerate() {
                if !may_start_space(b) {
                    continue;
                }
                if let Some(width) = multibyte_space(&bytes[index * BLOCK + j..]) {
                    spaces[j..(j + width).min(BLOCK)].fill(1);
                    carry = (j + width).saturating_sub(BLOCK);
                }
            }
        }
        let inner = spaces[..BLOCK - 1]
            .iter()
            .zip(&spaces[1..])
            .fold(0u8, |n, (&a, &b)| n + (a & !b & 1));
        words += usize::from(inner) + usize::from(after_space & (spaces[0] == 0));
        after_space = spaces[BLOCK - 1] == 1;
    }
    let tail = blocks.remainder();
    let mut i = carry;
    after_space |= carry > 0;
    while i < tail.len() {
        let b = tail[i];
        let (space, width) = match may_start_space(b).then(|| multibyte_space(&tail[i..])) {
            Some(Some(width)) => (true, width),
            _ => (is_ascii_space(b), 1),
        };
        words += usize::from(after_space & !space);
        after_space = space;
        i += width;
    }
    words
}

/// The width of the non-ASCII whitespace character at the start of `bytes`, if there is one.
fn multibyte_space(bytes: &[u8]) -> Option<usize> {
    match *bytes {
        [0xc2, 0x85 | 0xa0, ..] => Some(2),
        [0xe1, 0x9a, 0x80, ..] => Some(3),
        [0xe2, 0x80, 0x80..=0x8a | 0xa8 | 0xa9 | 0xaf, ..] => Some(3),
        [0xe2, 0x81, 0x9f, ..] => Some(3),
        [0xe3, 0x80, 0x80, ..] => Some(3),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn python_split_len(text: &str) -> usize {
        text.split(is_py_space).filter(|w| !w.is_empty()).count()
    }

    #[test]
    fn python_whitespace_is_rust_whitespace_plus_ascii_separators() {
        for c in (0..=0x10ffff_u32).filter_map(char::from_u32) {
            let expected = c.is_whitespace() || ('\x1c'..='\x1f').contains(&c);
            assert_eq!(is_py_space(c), expected, "{:#x}", c as u32);
        }
    }

    #[test]
    fn counts_words_like_str_split() {
        let cases = [
            "",
            " ",
            "a",
            " a b  c ",
            "a\x1cb\x1fc",
            "a\u{a0}b\u{85}c",
            "naïve café",
            "x\u{3000}y\u{2028}z\u{205f}w\u{1680}v\u{202f}u",
            "\u{200b}",
            "a\u{2000}\u{200a}b",
            "é\u{e2}",
        ];
        for case in cases {
            assert_eq!(count_words(case), python_split_len(case), "{case:?}");
        }
    }

    #[test]
    fn spaces_across_block_boundaries_are_found() {
        let spaces = (0..=0x10ffff_u32)
            .filter_map(char::from_u32)
            .filter(|&c| is_py_space(c));
        for space in spaces {
            for offset in 55..=70 {
                for tail in ["", "b", "b c", "é\u{2028}"] {
                    let text = format!("{}{space}{tail}", "a".repeat(offset));
                    assert_eq!(count_words(&text), python_split_len(&text), "{text:?}");
                    let text = format!("{}{space}{tail}", "é ".repeat(offset));
                    assert_eq!(count_words(&text), python_split_len(&text), "{text:?}");
                }
            }
        }
    }

    #[test]
    fn every_multibyte_space_is_found_bytewise() {
        for c in (0x80..=0x10ffff_u32).filter_map(char::from_u32) {
            let text = format!("a{c}b");
            let expected = if is_py_space(c) { 2 } else { 1 };
            assert_eq!(count_words(&text), expected, "{:#x}", c as u32);
        }
    }
}
