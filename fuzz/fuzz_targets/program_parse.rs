//! Parsing any program, in both modes, never panics, and types every line.
#![no_main]

use libfuzzer_sys::fuzz_target;
use prox_program::{parse, Mode};

fuzz_target!(|data: &[u8]| {
    let program = String::from_utf8_lossy(data);

    let faithful = parse(&program, Mode::Faithful);
    assert_eq!(
        faithful.lines.len(),
        program.trim_matches(' ').split('\n').count()
    );

    let strict = parse(&program, Mode::Strict);
    assert_eq!(strict.lines.len(), program.split('\n').count());
    for (index, line) in strict.lines.iter().enumerate() {
        assert_eq!(line.line, index + 1);
        assert!(line.errors.len() <= 1, "{line:?}");
    }
});
