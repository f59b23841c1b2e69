//! Inputs that once broke the executor (found by tests, proptest or cargo-fuzz), replayed in
//! both modes.

use prox_program::{parse, Executor, Mode, Thresholds};

const TEXT: &str = "one two three four five six seven eight nine ten eleven\ntwelve";

fn replay(program: &str) {
    for mode in [Mode::Faithful, Mode::Strict] {
        let executor = Executor::new(mode, Thresholds::default());
        let _ = parse(program, mode);
        let _ = executor.run_chunk(TEXT, program);
        let _ = executor.run_doc(program).verdict(TEXT);
    }
}

/// Reading a non-digit character below a Unicode digit range computed its value before
/// checking the range, and underflowed.
#[test]
fn regression_non_digit_in_a_line_number_does_not_underflow() {
    replay("remove_lines(start=a, end=1)");
    replay("remove_lines(start=\u{65f}, end=\u{10ffff})");
}
