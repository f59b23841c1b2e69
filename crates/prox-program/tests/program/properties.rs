//! Properties over generated programs and texts.

use proptest::prelude::*;
use prox_program::{count_words, parse, Executor, Mode, Thresholds, Verdict};

const MODES: [Mode; 2] = [Mode::Faithful, Mode::Strict];

/// Pieces that make programs reach deep into both readers.
fn token() -> impl Strategy<Value = String> {
    prop_oneof![
        Just("remove_lines".to_owned()),
        Just("normalize".to_owned()),
        Just("drop_doc".to_owned()),
        Just("keep_doc".to_owned()),
        Just("untouch_doc".to_owned()),
        Just("(".to_owned()),
        Just(")".to_owned()),
        Just(",".to_owned()),
        Just("=".to_owned()),
        Just("\"".to_owned()),
        Just("'".to_owned()),
        Just("\\".to_owned()),
        Just("\n".to_owned()),
        Just(" ".to_owned()),
        Just("#".to_owned()),
        Just("```".to_owned()),
        Just("all=True".to_owned()),
        Just("start=".to_owned()),
        Just("line_end=".to_owned()),
        Just("source_str=".to_owned()),
        Just("target_str=".to_owned()),
        Just("\\u00e9".to_owned()),
        Just("\\x4".to_owned()),
        Just("\\ud800".to_owned()),
        Just("99999999999999999999999".to_owned()),
        Just("-9223372036854775808".to_owned()),
        Just("٣".to_owned()),
        Just("_".to_owned()),
        (-3i64..40).prop_map(|n| n.to_string()),
        "[a-z ]{0,6}",
        any::<char>().prop_map(String::from),
    ]
}

fn soup() -> impl Strategy<Value = String> {
    prop::collection::vec(token(), 0..40).prop_map(|tokens| tokens.concat())
}

fn text() -> impl Strategy<Value = String> {
    prop::collection::vec("[a-e =,()\"'\\\\\t\u{a0}\u{1c}é٣]{0,24}", 0..12)
        .prop_map(|lines| lines.join("\n"))
}

/// A line both readers read alike: keyword ranges, simple double-quoted strings.
fn common_line() -> impl Strategy<Value = String> {
    let name = prop_oneof![Just(("start", "end")), Just(("line_start", "line_end"))];
    let bound = prop_oneof![-3i64..16, Just(i64::MAX), Just(i64::MIN + 1)];
    let remove = (name, bound.clone(), bound)
        .prop_map(|((s, e), start, end)| format!("remove_lines({s}={start}, {e}={end})"));
    // No quote, comma, `=`, `)`, backslash or line break, and not a lone space.
    let source = "[a-e (é٣#]{1,4}".prop_filter("a lone space", |s| s != " ");
    let target = "[a-e (é٣#]{0,4}";
    let normalize = prop_oneof![
        source
            .clone()
            .prop_map(|s| format!("normalize(source_str=\"{s}\")")),
        (source, target)
            .prop_map(|(s, t)| format!("normalize(source_str=\"{s}\", target_str=\"{t}\")")),
    ];
    prop_oneof![
        4 => remove,
        4 => normalize,
        1 => Just("remove_lines(all=True)".to_owned()),
        1 => Just("untouch_doc()".to_owned()),
        1 => Just("# a comment".to_owned()),
        1 => Just(String::new()),
    ]
}

fn common_program() -> impl Strategy<Value = String> {
    prop::collection::vec(common_line(), 0..8).prop_map(|lines| lines.join("\n"))
}

fn common_text() -> impl Strategy<Value = String> {
    prop::collection::vec("[a-e (é٣# ]{0,30}", 1..12).prop_map(|lines| lines.join("\n"))
}

fn thresholds() -> impl Strategy<Value = Thresholds> {
    (0.0..1.0f64, 0.0..1.0f64, 0usize..4, 0usize..12).prop_map(|(t1, t2, error_op, min_words)| {
        Thresholds {
            threshold_1: t1,
            threshold_2: t2,
            error_op,
            min_words,
        }
    })
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(2000))]

    #[test]
    fn executor_never_panics_on_arbitrary_input(program in any::<String>(), text in any::<String>()) {
        for mode in MODES {
            let executor = Executor::new(mode, Thresholds::default());
            let _ = executor.run_chunk(&text, &program);
            let _ = executor.run_doc(&program).verdict(&text);
            let _ = parse(&program, mode);
        }
    }

    #[test]
    fn executor_never_panics_on_program_soup(program in soup(), text in text(), thresholds in thresholds()) {
        for mode in MODES {
            let executor = Executor::new(mode, thresholds);
            let outcome = executor.run_chunk(&text, &program);
            prop_assert_eq!(outcome.program_ignored, matches!(outcome.verdict, Verdict::Ignored { .. }));
            let _ = executor.run_doc(&program);
        }
    }

    #[test]
    fn strict_counts_at_most_one_error_per_line(program in soup()) {
        for line in parse(&program, Mode::Strict).lines {
            prop_assert!(line.errors.len() <= 1, "{:?}", line);
        }
    }

    #[test]
    fn parsing_gives_one_entry_per_line(program in soup()) {
        let lines = program.trim_matches(' ').split('\n').count();
        prop_assert_eq!(parse(&program, Mode::Faithful).lines.len(), lines);
        prop_assert_eq!(parse(&program, Mode::Strict).lines.len(), program.split('\n').count());
    }

    #[test]
    fn faithful_and_strict_agree_where_they_read_alike(
        program in common_program(),
        text in common_text(),
        thresholds in thresholds(),
    ) {
        let faithful = Executor::new(Mode::Faithful, thresholds).run_chunk(&text, &program);
        let strict = Executor::new(Mode::Strict, thresholds).run_chunk(&text, &program);
        prop_assert_eq!(faithful, strict);
    }

    #[test]
    fn running_the_parsed_program_is_running_the_text(program in soup(), text in text()) {
        for mode in MODES {
            let executor = Executor::new(mode, Thresholds::default());
            prop_assert_eq!(
                executor.run_chunk(&text, &program),
                executor.run_chunk_program(&text, &parse(&program, mode))
            );
        }
    }

    #[test]
    fn without_normalize_words_never_grow_and_lines_keep_their_order(
        program in soup().prop_filter("no normalize", |p| !p.contains("normalize")),
        text in text(),
    ) {
        for mode in MODES {
            let outcome = Executor::new(mode, Thresholds::default()).run_chunk(&text, &program);
            prop_assert!(outcome.words_after <= outcome.words_before);
            prop_assert!(count_words(outcome.verdict.text()) <= count_words(&text));
            // The kept lines are the input's, in order.
            let mut input = text.split('\n');
            if !outcome.verdict.text().is_empty() {
                for line in outcome.verdict.text().split('\n') {
                    prop_assert!(input.any(|l| l == line), "{:?} not in order", line);
                }
            }
            if let Verdict::Kept { text: kept, .. } = &outcome.verdict {
                prop_assert_eq!(
                    kept.split('\n').count() + outcome.lines_removed,
                    text.split('\n').count()
                );
            }
        }
    }

    #[test]
    fn words_are_counted_like_python_split(text in "[a \t\n\x1c\u{85}\u{a0}\u{2000}\u{2028}\u{3000}é€\u{e2}]{0,300}") {
        let expected = text.split(prox_program::is_py_space).filter(|w| !w.is_empty()).count();
        prop_assert_eq!(count_words(&text), expected);
    }

    #[test]
    fn the_verdict_follows_the_counts(program in common_program(), text in common_text(), thresholds in thresholds()) {
        let outcome = Executor::new(Mode::Faithful, thresholds).run_chunk(&text, &program);
        prop_assert_eq!(outcome.words_before, count_words(&text));
        match &outcome.verdict {
            Verdict::Kept { text: kept, modified } => {
                prop_assert_eq!(count_words(kept), outcome.words_after);
                prop_assert!(outcome.words_after > thresholds.min_words);
                prop_assert!(outcome.errors.len() < thresholds.error_op);
                prop_assert_eq!(*modified, kept != &text);
            }
            Verdict::Ignored { text: original } => {
                prop_assert_eq!(original, &text);
                prop_assert!(outcome.words_after > thresholds.min_words);
            }
            Verdict::Dropped(_) => {}
        }
    }
}
