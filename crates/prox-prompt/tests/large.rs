//! Large and odd documents: a correct result or a clear error, never a panic, and memory
//! proportional to the document. One test per binary run, so the peak-memory reading is
//! its own.

#![allow(clippy::unwrap_used)] // test helpers: a failure is a test failure

use std::time::Instant;

use prox_prompt::{PromptMode, Prompter};
use prox_tokenizer::Tokenizer;

/// Peak resident memory of this process so far, in bytes (Linux only).
fn peak_rss() -> Option<u64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = status.lines().find(|l| l.starts_with("VmHWM:"))?;
    let kb: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kb * 1024)
}

#[test]
fn huge_documents_are_handled_in_linear_memory() {
    let tokenizer =
        Tokenizer::from_file(&prox_test::fixture("llama2-tokenizer/tokenizer.json")).unwrap();

    // A 50 MB document on one line: one chunk of its own, a doc prompt cut at 2000 ids.
    let started = Instant::now();
    let line = "word <s> café 😀 x=1, ".repeat(50_000_000 / 26);
    for mode in [PromptMode::Faithful, PromptMode::Robust] {
        let doc = Prompter::new(&tokenizer)
            .with_mode(mode)
            .doc_prompt(&line)
            .unwrap();
        assert!(doc.truncated);
        assert!(
            doc.ids.len() <= 2000 && doc.ids.len() > 1990,
            "{}",
            doc.ids.len()
        );
    }
    let chunks = Prompter::new(&tokenizer).chunks(&line).unwrap();
    assert_eq!(chunks.len(), 1);
    assert!(chunks[0].tokens > 1500);
    drop(chunks);
    let (_, ids) = Prompter::new(&tokenizer).chunk_prompt(&line).unwrap();
    assert!(ids.len() > 10_000_000);
    drop(ids);
    eprintln!("50 MB line: {:?}", started.elapsed());

    // 200,000 lines: six-digit line numbers, many chunks, nothing lost.
    let started = Instant::now();
    let text = (0..200_000)
        .map(|i| format!("line {i} with some words"))
        .collect::<Vec<_>>()
        .join("\n");
    let prompter = Prompter::new(&tokenizer);
    let chunks = prompter.chunks(&text).unwrap();
    assert_eq!(chunks.iter().map(|c| c.lines).sum::<usize>(), 200_000);
    assert!(chunks.iter().all(|c| c.tokens <= 1500));
    assert!(chunks
        .last()
        .unwrap()
        .text
        .ends_with("[199999]line 199999 with some words"));
    eprintln!("200,000 lines: {:?}", started.elapsed());

    // NUL bytes and other control characters are bytes like any other.
    let text = "a\0b\n\0\n\u{1}\u{1f}\u{7f}";
    let prompts = prompter.chunk_prompts(text).unwrap();
    assert_eq!(prompts.len(), 1);
    assert_eq!(
        prompter
            .tokenizer()
            .decode(&prompts[0].ids, false)
            .unwrap()
            .matches('\0')
            .count(),
        2
    );

    if let Some(peak) = peak_rss() {
        eprintln!("peak memory: {} MB", peak >> 20);
        assert!(
            peak < 2 << 30,
            "peak memory {} MB for a 50 MB document",
            peak >> 20
        );
    }
}
