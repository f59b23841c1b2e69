//! Running any program on any text, in both modes, never panics and keeps its invariants.
//!
//! Input layout: one byte of settings, then the program, a NUL byte, and the text.
#![no_main]

use libfuzzer_sys::fuzz_target;
use prox_program::{count_words, parse, Executor, Limits, Mode, Thresholds, Verdict};

fuzz_target!(|data: &[u8]| {
    let Some((&settings, rest)) = data.split_first() else {
        return;
    };
    let (program, text) = match rest.iter().position(|&b| b == 0) {
        Some(nul) => (&rest[..nul], &rest[nul + 1..]),
        None => (rest, &b""[..]),
    };
    let program = String::from_utf8_lossy(program);
    let text = String::from_utf8_lossy(text);
    let thresholds = Thresholds {
        threshold_1: f64::from(settings & 0b11) / 4.0,
        error_op: usize::from(settings >> 2 & 0b11),
        min_words: usize::from(settings >> 4),
        ..Thresholds::default()
    };
    let limits = Limits {
        max_normalize_bytes: 1 << 20,
    };

    for mode in [Mode::Faithful, Mode::Strict] {
        let executor = Executor::new(mode, thresholds).with_limits(limits);
        let outcome = executor.run_chunk(&text, &program);
        assert_eq!(
            outcome.program_ignored,
            matches!(outcome.verdict, Verdict::Ignored { .. })
        );
        assert_eq!(outcome.words_before, count_words(&text));
        match &outcome.verdict {
            Verdict::Kept {
                text: kept,
                modified,
            } => {
                assert_eq!(*modified, kept.as_str() != text.as_ref());
                assert_eq!(count_words(kept), outcome.words_after);
                assert!(outcome.errors.len() < thresholds.error_op);
            }
            Verdict::Ignored { text: original } => assert_eq!(original, text.as_ref()),
            Verdict::Dropped(_) => {}
        }
        if !program.contains("normalize") {
            assert!(outcome.words_after <= outcome.words_before);
        }
        assert_eq!(
            outcome,
            executor.run_chunk_program(&text, &parse(&program, mode))
        );
        let _ = executor.run_doc(&program).verdict(&text);
    }
});
