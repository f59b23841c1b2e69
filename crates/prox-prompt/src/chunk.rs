//! Line numbering and greedy packing of lines into chunks, as the reference's `trunc_text`.

use std::fmt::Write;

use prox_tokenizer::{EncodeOptions, Tokenizer};

use crate::{Error, PromptMode};

/// One chunk of a document: consecutive numbered lines.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Chunk {
    /// The numbered lines joined with `\n` (`[000]first line\n[001]second line`).
    pub text: String,
    /// The global index of the chunk's first line.
    pub first_line: usize,
    /// How many lines the chunk holds.
    pub lines: usize,
    /// The sum of the lines' token counts (each with its BOS), as packing counted them.
    pub tokens: usize,
}

/// Writes the numbered form of a line, `[{index:03}]{line}`, into `out` (cleared first).
pub fn write_numbered_line(out: &mut String, index: usize, line: &str) {
    out.clear();
    // Writing to a String cannot fail.
    let _ = write!(out, "[{index:03}]");
    out.push_str(line);
}

/// The document's lines (split on `\n`, as Python's `split("\n")`), numbered
/// `[000]`, `[001]`, …; from 1000 on the number has four digits.
pub fn number_lines(text: &str) -> impl Iterator<Item = String> + '_ {
    text.split('\n').enumerate().map(|(index, line)| {
        let mut out = String::with_capacity(line.len() + 6);
        write_numbered_line(&mut out, index, line);
        out
    })
}

/// Packs a document's numbered lines into chunks of at most `budget` tokens, as the
/// reference does:
///
/// - a line costs `len(encode(numbered_line))` with BOS, so one token more than its text;
/// - lines are appended while the running count stays ≤ `budget`; otherwise the current
///   chunk is closed and the line starts the next one;
/// - a line over `budget` on its own becomes a chunk by itself.
///
/// In [`PromptMode::Faithful`] special tokens in the text (`<s>`) are counted as the
/// reference's tokenizer counts them (one token); in [`PromptMode::Robust`] as plain text.
/// An empty document has no chunks (the reference skips it).
pub fn chunk_document(
    text: &str,
    tokenizer: &Tokenizer,
    budget: usize,
    mode: PromptMode,
) -> Result<Vec<Chunk>, Error> {
    let mut chunks = Vec::new();
    if text.is_empty() {
        return Ok(chunks);
    }
    let mut numbered = String::new();
    let mut current: Option<Chunk> = None;
    for (index, line) in text.split('\n').enumerate() {
        write_numbered_line(&mut numbered, index, line);
        let options = EncodeOptions {
            add_special_tokens: true,
            literal: match mode {
                PromptMode::Faithful => None,
                PromptMode::Robust => Some(0..numbered.len()),
            },
            ..EncodeOptions::default()
        };
        let tokens = tokenizer.count(&numbered, &options)?;
        match current.as_mut() {
            Some(chunk) if chunk.tokens + tokens <= budget => {
                chunk.text.push('\n');
                chunk.text.push_str(&numbered);
                chunk.lines += 1;
                chunk.tokens += tokens;
            }
            _ => {
                chunks.extend(current.take());
                let chunk = Chunk {
                    text: numbered.clone(),
                    first_line: index,
                    lines: 1,
                    tokens,
                };
                if tokens > budget {
                    chunks.push(chunk);
                } else {
                    current = Some(chunk);
                }
            }
        }
    }
    chunks.extend(current);
    Ok(chunks)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn numbers_have_three_digits_then_four() {
        let text = "a\n".repeat(1001);
        let lines: Vec<String> = number_lines(&text).collect();
        assert_eq!(lines[0], "[000]a");
        assert_eq!(lines[999], "[999]a");
        assert_eq!(lines[1000], "[1000]a");
        assert_eq!(lines[1001], "[1001]");
        assert_eq!(lines.len(), 1002);
    }
}
