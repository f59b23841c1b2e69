//! Programs are model output: whatever they hold, the executor must finish, in time about
//! linear in the program and the text, without panicking. These tests would hang or run out
//! of memory if it did not.

use prox_program::{parse, DropReason, Executor, Limits, Mode, Thresholds, Verdict};

const MODES: [Mode; 2] = [Mode::Faithful, Mode::Strict];

fn executor(mode: Mode) -> Executor {
    Executor::new(mode, Thresholds::default())
}

fn long_text(lines: usize) -> String {
    (0..lines)
        .map(|i| format!("line {i} has a few words in it"))
        .collect::<Vec<_>>()
        .join("\n")
}

#[test]
fn a_million_line_program_runs() {
    let text = long_text(1000);
    // Strict reading is slower unoptimized; a quarter of the lines keeps the test quick.
    for (mode, lines) in [(Mode::Faithful, 1_000_000), (Mode::Strict, 250_000)] {
        let program = "remove_lines(start=0, end=0)\n".repeat(lines);
        let outcome = executor(mode).run_chunk(&text, &program);
        assert_eq!(outcome.lines_removed, 1, "{mode}");
        assert!(outcome.errors.is_empty(), "{mode}");
    }
}

#[test]
fn every_garbage_line_counts_one_error() {
    let program = "x(\n".repeat(200_000);
    let outcome = executor(Mode::Strict).run_chunk(&long_text(20), &program);
    assert_eq!(outcome.errors.len(), 200_000);
    assert!(outcome.program_ignored);
}

#[test]
fn huge_ranges_are_merged_not_expanded() {
    let text = long_text(50);
    for mode in MODES {
        for program in [
            "remove_lines(start=0, end=99999999999999)",
            "remove_lines(start=-99999999999999, end=9223372036854775807)",
            "remove_lines(start=-9223372036854775808, end=9223372036854775807)",
            "remove_lines(start=9223372036854775807, end=9223372036854775807)",
        ] {
            let outcome = executor(mode).run_chunk(&text, program);
            assert!(
                outcome.lines_removed == 50 || outcome.lines_removed == 0,
                "{program}"
            );
        }
    }
}

#[test]
fn many_ranges_on_many_lines_run() {
    let text = long_text(50_000);
    let program: String = (0..50_000)
        .map(|i| format!("remove_lines(start={}, end={})\n", i * 2, i * 2 + 1_000_000))
        .collect();
    let outcome = executor(Mode::Faithful).run_chunk(&text, &program);
    assert_eq!(outcome.lines_removed, 50_000);
    assert_eq!(outcome.errors.len(), 1, "one merged range, past the end");
    assert_eq!(outcome.verdict, Verdict::Dropped(DropReason::LowRatio));
}

#[test]
fn huge_integers_are_read_without_overflow() {
    let text = long_text(20);
    let digits = "9".repeat(100_000);
    let program = format!("remove_lines(start={digits}, end=-{digits})");
    for mode in MODES {
        let outcome = executor(mode).run_chunk(&text, &program);
        assert_eq!(outcome.lines_removed, 0);
        assert_eq!(outcome.errors.len(), 1, "{mode}");
    }
}

#[test]
fn huge_strings_run() {
    let text = "a".repeat(2_000_000) + " b c d e f g h i j k l";
    let source = "a".repeat(1_500_000);
    let program = format!("normalize(source_str=\"{source}\", target_str=\"x\")");
    for mode in MODES {
        let outcome = executor(mode).run_chunk(&text, &program);
        assert_eq!(outcome.normalizations, 1);
        assert_eq!(
            outcome.verdict.text().len(),
            500_001 + " b c d e f g h i j k l".len()
        );
    }
}

#[test]
fn normalize_calls_that_grow_the_text_stop_at_the_budget() {
    let limits = Limits {
        max_normalize_bytes: 1 << 20,
    };
    let text = "a ".repeat(1000);
    let program = "normalize(source_str=\"a\", target_str=\"aa\")\n".repeat(20_000);
    for mode in MODES {
        let outcome = executor(mode)
            .with_limits(limits)
            .run_chunk(&text, &program);
        assert_eq!(outcome.errors.len(), 1, "{mode}");
        assert!(outcome.errors[0].reason.contains("budget"));
        assert!(outcome.verdict.text().len() <= 1 << 20);
    }
}

#[test]
fn many_normalize_calls_on_a_long_text_stop_at_the_budget() {
    let limits = Limits {
        max_normalize_bytes: 1 << 24,
    };
    let text = long_text(40_000);
    let program = "normalize(source_str=\"absent\", target_str=\"x\")\n".repeat(200_000);
    let outcome = executor(Mode::Faithful)
        .with_limits(limits)
        .run_chunk(&text, &program);
    assert_eq!(outcome.errors.len(), 1);
    assert_eq!(outcome.verdict.text(), text);
}

#[test]
fn long_lines_of_punctuation_parse_in_linear_time() {
    for line in [
        "(".repeat(1 << 18),
        format!("remove_lines({}", ",".repeat(1 << 18)),
        format!("normalize(\"{}\")", "\\\"".repeat(1 << 17)),
        format!("normalize({})", "'a',".repeat(1 << 16)),
        format!("normalize({}", "=".repeat(1 << 18)),
        format!("remove_lines(start={}", "_1".repeat(1 << 17)),
    ] {
        for mode in MODES {
            let program = parse(&line, mode);
            assert_eq!(program.lines.len(), 1);
            let _ = executor(mode).run_chunk("some words here", &line);
            let _ = executor(mode).run_doc(&line);
        }
    }
}

#[test]
fn error_messages_stay_short_whatever_the_program_holds() {
    let name = "x".repeat(1 << 18);
    let outcome = executor(Mode::Strict).run_chunk("a b", &format!("{name}()"));
    assert!(outcome.errors[0].reason.len() < 200);
}
