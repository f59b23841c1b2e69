//! The reference's quirks, one test each: faithful mode must keep every one of them.

use prox_program::{
    parse, Call, ChunkOutcome, DropReason, Executor, LineKind, Mode, Thresholds, Verdict,
};

use crate::harness::{assert_doc_program_drops, run_chunk, without, TEXT};

fn run(program: &str) -> ChunkOutcome {
    run_chunk(Mode::Faithful, TEXT, program)
}

fn kept(outcome: &ChunkOutcome) -> &str {
    match &outcome.verdict {
        Verdict::Kept { text, .. } => text,
        other => panic!("expected the edit to be kept, got {other:?}"),
    }
}

/// `program` runs without an error and keeps [`TEXT`] as it is.
fn assert_keeps_the_text_as_is(program: &str) {
    let outcome = run(program);
    assert_eq!(kept(&outcome), TEXT, "{program}");
    assert!(outcome.errors.is_empty(), "{program}");
}

#[test]
fn keyword_remove_lines_removes_an_inclusive_zero_based_range() {
    let outcome = run("remove_lines(start=1, end=2)");
    assert_eq!(kept(&outcome), without(&[1, 2]));
    assert_eq!(outcome.lines_removed, 2);
    assert!(outcome.errors.is_empty());
}

#[test]
fn positional_remove_lines_is_an_error() {
    let outcome = run("remove_lines(1, 2)");
    assert_eq!(outcome.errors.len(), 1);
    assert_eq!(outcome.lines_removed, 0);
    assert_eq!(kept(&outcome), TEXT);
}

#[test]
fn line_start_and_any_other_name_read_like_start() {
    for program in [
        "remove_lines(line_start=1, line_end=2)",
        "remove_lines(from=1, to=2)",
        "remove_lines(start=1, end=2, extra=9)",
    ] {
        assert_eq!(kept(&run(program)), without(&[1, 2]), "{program}");
    }
}

#[test]
fn integers_read_like_python_int() {
    for program in [
        "remove_lines(start= 1 , end=\t2 )",
        "remove_lines(start=+1, end=0_2)",
        "remove_lines(start=١, end=٢)",
        "remove_lines(start=\u{a0}1, end=2\u{2028})",
    ] {
        assert_eq!(kept(&run(program)), without(&[1, 2]), "{program}");
    }
    for program in [
        "remove_lines(start=- 1, end=2)",
        "remove_lines(start=1.0, end=2)",
        "remove_lines(start=_1, end=2)",
        "remove_lines(start=\"1\", end=2)",
    ] {
        assert_eq!(run(program).errors.len(), 1, "{program}");
    }
}

#[test]
fn negative_and_reversed_ranges_remove_nothing_outside_the_text() {
    assert_eq!(kept(&run("remove_lines(start=-3, end=0)")), without(&[0]));
    let reversed = run("remove_lines(start=3, end=1)");
    assert_eq!(reversed.lines_removed, 0);
    assert!(reversed.errors.is_empty());
}

#[test]
fn a_range_past_the_end_is_an_error_and_is_cut_to_the_text() {
    let outcome = run("remove_lines(start=4, end=9)");
    assert_eq!(outcome.errors.len(), 1);
    assert_eq!(kept(&outcome), without(&[4, 5]));
    let outside = run("remove_lines(start=6, end=9)");
    assert_eq!(outside.errors.len(), 1);
    assert_eq!(outside.lines_removed, 0);
}

#[test]
fn range_errors_count_merged_ranges() {
    // 4..=7 and 8..=9 touch, so they merge into one range and one error.
    let outcome = run("remove_lines(start=4, end=7)\nremove_lines(start=8, end=9)");
    assert_eq!(outcome.errors.len(), 1);
    // 7..=7 and 9..=9 do not touch: two errors, so the program is ignored.
    let outcome = run("remove_lines(start=7, end=7)\nremove_lines(start=9, end=9)");
    assert_eq!(outcome.errors.len(), 2);
    assert_eq!(
        outcome.verdict,
        Verdict::Ignored {
            text: TEXT.to_owned()
        }
    );
}

#[test]
fn reversed_ranges_take_part_in_the_merge() {
    // A reversed range removes nothing, yet starting past the end it is an error...
    let outcome = run("remove_lines(start=6, end=3)");
    assert_eq!((outcome.errors.len(), outcome.lines_removed), (1, 0));
    // ...unless the merge folds it into a range that starts earlier: one error for both.
    let outcome = run("remove_lines(start=6, end=3)\nremove_lines(start=3, end=9)");
    assert_eq!(outcome.errors.len(), 1);
    assert_eq!(kept(&outcome), without(&[3, 4, 5]));
}

#[test]
fn a_huge_range_is_merged_not_expanded() {
    let outcome = run("remove_lines(start=0, end=99999999999999)");
    assert_eq!(outcome.lines_removed, 6);
    assert_eq!(outcome.errors.len(), 1);
    assert_eq!(outcome.verdict, Verdict::Dropped(DropReason::LowRatio));
}

#[test]
fn all_true_anywhere_on_a_remove_lines_line_removes_everything() {
    for program in [
        "remove_lines(all=True)",
        "remove_lines(start=1, end=2, all=True)",
        "remove_lines(start=1, end=2) # not all=True",
        "remove_lines_everything # all=True",
    ] {
        let outcome = run(program);
        assert_eq!(outcome.lines_removed, 6, "{program}");
        assert_eq!(outcome.verdict, Verdict::Dropped(DropReason::LowRatio));
    }
}

#[test]
fn any_line_starting_with_the_name_is_read() {
    assert_eq!(kept(&run("remove_lines_x(start=1, end=1)")), without(&[1]));
    assert_eq!(
        kept(&run("normalized(source_str=\"alpha \")")),
        TEXT.replace("alpha ", "")
    );
}

#[test]
fn lines_with_leading_whitespace_are_ignored() {
    assert_keeps_the_text_as_is(
        "untouch_doc()\n  remove_lines(start=1, end=2)\n\tnormalize(source_str=\"a\")",
    );
}

#[test]
fn only_spaces_at_the_ends_of_the_whole_program_are_stripped() {
    assert_eq!(kept(&run("   remove_lines(start=1, end=1)")), without(&[1]));
    assert_eq!(kept(&run("\tremove_lines(start=1, end=1)")), TEXT);
    // The last line loses its trailing spaces, and with them its last argument character.
    let outcome = run("remove_lines(start=1, end=1  ");
    assert_eq!(outcome.errors.len(), 2);
}

#[test]
fn no_opening_parenthesis_is_one_error() {
    let outcome = run("remove_lines start=1, end=2");
    assert_eq!(outcome.errors.len(), 1);
    assert_eq!(outcome.lines_removed, 0);
    assert_eq!(run("normalize source_str=a").errors.len(), 1);
}

#[test]
fn no_closing_parenthesis_is_an_error_and_loses_the_last_character() {
    // `end=22` loses its last `2`: one error, lines 1..=2 removed.
    let outcome = run("remove_lines(start=1, end=22");
    assert_eq!(outcome.errors.len(), 1);
    assert_eq!(kept(&outcome), without(&[1, 2]));
    // `end=2` loses its `2`: a second error, nothing removed, the program is ignored.
    let outcome = run("remove_lines(start=1, end=2");
    assert_eq!(outcome.errors.len(), 2);
    assert!(outcome.program_ignored);
    // A trailing space is the character lost.
    let outcome = run("remove_lines(start=1, end=2 \nuntouch_doc()");
    assert_eq!(outcome.errors.len(), 1);
    assert_eq!(kept(&outcome), without(&[1, 2]));
}

#[test]
fn arguments_end_at_the_first_closing_parenthesis() {
    let outcome = run("normalize(source_str=\"gamma)\", target_str=\"x\")");
    // The arguments are `source_str="gamma`: one part, so `gamma` is deleted.
    assert_eq!(kept(&outcome), TEXT.replace("gamma", ""));
}

#[test]
fn normalize_with_one_argument_deletes() {
    let outcome = run("normalize(source_str=\"alpha \")");
    assert_eq!(kept(&outcome), TEXT.replace("alpha ", ""));
    assert_eq!(outcome.normalizations, 6);
}

#[test]
fn normalize_with_two_arguments_replaces() {
    let outcome = run("normalize(source_str=\"beta\", target_str=\"BETA\")");
    assert_eq!(kept(&outcome), TEXT.replace("beta", "BETA"));
    assert_eq!(
        outcome.verdict,
        Verdict::Kept {
            text: TEXT.replace("beta", "BETA"),
            modified: true
        }
    );
}

#[test]
fn normalize_with_a_comma_in_a_string_is_silently_ignored() {
    assert_keeps_the_text_as_is("normalize(source_str=\"alpha, beta\", target_str=\"x\")");
    let program = parse(
        "normalize(source_str=\"a,b\", target_str=\"x\")",
        Mode::Faithful,
    );
    assert!(matches!(program.lines[0].kind, LineKind::Ignored(_)));
}

#[test]
fn normalize_of_a_blank_source_is_skipped_with_two_arguments_only() {
    for program in [
        "normalize(source_str=\"\", target_str=\"x\")",
        "normalize(source_str=\" \", target_str=\"x\")",
        "normalize(source_str=\"\")",
    ] {
        assert_keeps_the_text_as_is(program);
    }
    // With one argument, a single space is deleted everywhere.
    let outcome = run("normalize(source_str=\" \")");
    assert_eq!(outcome.verdict, Verdict::Dropped(DropReason::FewWords));
    assert_eq!(outcome.words_after, 6);
}

#[test]
fn normalize_without_an_equals_sign_is_an_error() {
    assert_eq!(run("normalize(\"alpha\")").errors.len(), 1);
    assert_eq!(run("normalize(source_str=\"a\", \"b\")").errors.len(), 1);
}

#[test]
fn normalize_reads_between_the_first_two_equals_signs() {
    let outcome = run("normalize(source_str=\"alpha=beta\")");
    // `"alpha` → `alpha` once the quotes are stripped.
    assert_eq!(kept(&outcome), TEXT.replace("alpha", ""));
}

#[test]
fn normalize_keeps_single_quotes_and_escapes_as_written() {
    let text = "it's 'quoted' and a\\nb here with enough words to keep the document";
    let executor = Executor::new(Mode::Faithful, Thresholds::default());
    let outcome = executor.run_chunk(text, "normalize(source_str='quoted')");
    assert_eq!(outcome.verdict.text(), text.replace("'quoted'", ""));
    let outcome = executor.run_chunk(text, "normalize(source_str=\"a\\nb\", target_str=\"X\")");
    assert_eq!(outcome.verdict.text(), text.replace("a\\nb", "X"));
}

#[test]
fn normalize_runs_before_removal_whatever_the_order() {
    let outcome =
        run("remove_lines(start=0, end=0)\nnormalize(source_str=\"one\", target_str=\"1\")");
    assert_eq!(kept(&outcome), without(&[0]).replace("one", "1"));
    let outcome =
        run("normalize(source_str=\"zero\", target_str=\"0\")\nremove_lines(start=0, end=0)");
    assert_eq!(kept(&outcome), without(&[0]));
}

#[test]
fn normalizations_apply_in_program_order_on_the_whole_text() {
    let outcome = run(
        "normalize(source_str=\"alpha\", target_str=\"beta\")\nnormalize(source_str=\"beta\", target_str=\"x\")",
    );
    assert_eq!(
        kept(&outcome),
        TEXT.replace("alpha", "x").replace("beta", "x")
    );
}

#[test]
fn other_lines_are_ignored() {
    assert_keeps_the_text_as_is(
        "# remove_lines(start=0, end=5)\n```python\nkeep_chunk()\ndrop_doc()\ngarbage\n```",
    );
}

#[test]
fn error_op_errors_ignore_the_program() {
    let outcome = run("remove_lines(0, 1)\nremove_lines(0, 2)\nremove_lines(start=1, end=1)");
    assert_eq!(outcome.errors.len(), 2);
    assert_eq!(
        outcome.verdict,
        Verdict::Ignored {
            text: TEXT.to_owned()
        }
    );
    assert!(outcome.program_ignored);
    let lenient = Thresholds {
        error_op: 3,
        ..Thresholds::default()
    };
    let outcome = Executor::new(Mode::Faithful, lenient).run_chunk(
        TEXT,
        "remove_lines(0, 1)\nremove_lines(0, 2)\nremove_lines(start=1, end=1)",
    );
    assert_eq!(outcome.verdict.text(), without(&[1]));
}

#[test]
fn a_program_that_removes_nearly_everything_drops_the_document() {
    let outcome = run("remove_lines(start=0, end=5)");
    assert_eq!(outcome.verdict, Verdict::Dropped(DropReason::LowRatio));
}

#[test]
fn few_words_drop_the_document_even_when_the_program_is_ignored() {
    let executor = Executor::new(Mode::Faithful, Thresholds::default());
    let short = "ten words exactly in this line of text one two";
    assert_eq!(
        executor.run_chunk(short, "").verdict,
        Verdict::Dropped(DropReason::FewWords)
    );
    let outcome = run("remove_lines(0, 1)\nremove_lines(0, 2)\nremove_lines(start=1, end=5)");
    assert_eq!(outcome.verdict, Verdict::Dropped(DropReason::FewWords));
}

#[test]
fn low_ratio_needs_few_errors() {
    // Everything removed but two errors: the ratio rule is skipped, the word rule drops.
    let outcome = run("remove_lines(start=0, end=9)\nremove_lines(1, 2)");
    assert_eq!(outcome.errors.len(), 2);
    assert_eq!(outcome.verdict, Verdict::Dropped(DropReason::FewWords));
}

#[test]
fn threshold_1_keeps_the_original_below_the_ratio() {
    let thresholds = Thresholds {
        threshold_1: 0.9,
        ..Thresholds::default()
    };
    let outcome =
        Executor::new(Mode::Faithful, thresholds).run_chunk(TEXT, "remove_lines(start=0, end=1)");
    assert_eq!(outcome.verdict.text(), TEXT);
    assert!(outcome.program_ignored);
}

#[test]
fn a_text_without_words_is_dropped_for_that_reason() {
    let executor = Executor::new(Mode::Faithful, Thresholds::default());
    for text in ["", " \n\t", "\u{a0}\x1c"] {
        assert_eq!(
            executor.run_chunk(text, "").verdict,
            Verdict::Dropped(DropReason::NoWords)
        );
    }
}

#[test]
fn words_are_split_on_python_whitespace() {
    // `\x1c` separates words for Python, not for Rust's `split_whitespace`.
    let text = "a\x1cb c d e f g h i j k";
    let outcome = Executor::new(Mode::Faithful, Thresholds::default()).run_chunk(text, "");
    assert_eq!(outcome.words_before, 11);
    assert_eq!(outcome.verdict.text(), text);
}

#[test]
fn the_document_stage_drops_on_the_substring_drop() {
    let executor = Executor::new(Mode::Faithful, Thresholds::default());
    for program in [
        "drop_doc()",
        "undrop",
        "keep_doc() # do not drop",
        "x\nsnowdrop",
    ] {
        assert_doc_program_drops(&executor, program);
    }
    for program in ["keep_doc()", "Drop_doc()", "DROP", "", "dr\nop"] {
        assert!(executor.run_doc(program).keep, "{program}");
    }
}

#[test]
fn parse_types_every_line() {
    let program = parse(
        "remove_lines(start=1, end=2\nnormalize(source_str=\"a\", target_str=\"b\")\n# c\n\n  x\nremove_lines(all=True)",
        Mode::Faithful,
    );
    let kinds: Vec<&LineKind> = program.lines.iter().map(|line| &line.kind).collect();
    assert_eq!(
        kinds[..4],
        [
            &LineKind::Error,
            &LineKind::Call(Call::Normalize {
                source: "a".into(),
                target: Some("b".into())
            }),
            &LineKind::Comment,
            &LineKind::Blank,
        ]
    );
    assert!(matches!(kinds[4], LineKind::Ignored(_)));
    assert_eq!(kinds[5], &LineKind::Call(Call::RemoveAllLines));
    assert_eq!(program.error_count(), 2);
    assert_eq!(program.lines[0].line, 1);
}
