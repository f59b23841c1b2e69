//! Strict mode: one test per difference from faithful mode, numbered as in the crate docs
//! ("Strict mode: how it differs"), then strict-only behaviour.

use prox_program::{
    parse, Call, ChunkOutcome, DropReason, Executor, LineKind, Mode, Thresholds, Verdict,
};

use crate::harness::{assert_doc_program_drops, run_chunk, without, TEXT};

/// The faithful and the strict outcome of one program on `text`.
fn both_on(text: &str, program: &str) -> (ChunkOutcome, ChunkOutcome) {
    (
        run_chunk(Mode::Faithful, text, program),
        run_chunk(Mode::Strict, text, program),
    )
}

/// The faithful and the strict outcome of one program on [`TEXT`].
fn both(program: &str) -> (ChunkOutcome, ChunkOutcome) {
    both_on(TEXT, program)
}

fn errors(outcome: &ChunkOutcome) -> usize {
    outcome.errors.len()
}

#[test]
fn difference_01_indented_lines_are_read() {
    let (faithful, strict) = both("untouch_doc()\n   remove_lines(start=1, end=1)  ");
    assert_eq!(faithful.verdict.text(), TEXT);
    assert_eq!(strict.verdict.text(), without(&[1]));
}

#[test]
fn difference_02_positional_arguments_are_calls() {
    let (faithful, strict) = both("remove_lines(1, 2)");
    assert_eq!((errors(&faithful), faithful.lines_removed), (1, 0));
    assert_eq!(
        (errors(&strict), strict.verdict.text()),
        (0, &*without(&[1, 2]))
    );
    let (_, strict) = both("normalize(\"alpha\", \"A\")");
    assert_eq!(strict.verdict.text(), TEXT.replace("alpha", "A"));
}

#[test]
fn difference_03_argument_names_are_checked() {
    let (faithful, strict) = both("remove_lines(from=1, to=1)");
    assert_eq!(faithful.verdict.text(), without(&[1]));
    assert_eq!((errors(&strict), strict.lines_removed), (1, 0));
    let (faithful, strict) = both("remove_lines(start=1, end=1, extra=2)");
    assert_eq!(faithful.verdict.text(), without(&[1]));
    assert_eq!(errors(&strict), 1);
}

#[test]
fn difference_04_commas_in_strings_belong_to_the_string() {
    let text = TEXT.replace("one alpha", "one, alpha");
    let program = "normalize(source_str=\"one, alpha\", target_str=\"1\")";
    let (faithful, strict) = both_on(&text, program);
    assert_eq!((faithful.verdict.text(), errors(&faithful)), (&*text, 0));
    assert_eq!(strict.verdict.text(), text.replace("one, alpha", "1"));
}

#[test]
fn difference_05_closing_parentheses_in_strings_belong_to_the_string() {
    let text = TEXT.replace("gamma", "(gamma)");
    let program = "normalize(source_str=\"(gamma)\", target_str=\"g\")";
    let (faithful, strict) = both_on(&text, program);
    // Faithful reads `source_str="(gamma` alone and deletes `(gamma`.
    assert_eq!(faithful.verdict.text(), text.replace("(gamma", ""));
    assert_eq!(strict.verdict.text(), TEXT.replace("gamma", "g"));
}

#[test]
fn difference_06_equals_signs_in_strings_belong_to_the_string() {
    let text = TEXT.replace("beta gamma", "beta=gamma");
    let program = "normalize(source_str=\"beta=gamma\", target_str=\"bg\")";
    let (faithful, strict) = both_on(&text, program);
    // Faithful reads the source up to the second `=`: `"beta` → `beta`.
    assert_eq!(faithful.verdict.text(), text.replace("beta", "bg"));
    assert_eq!(strict.verdict.text(), text.replace("beta=gamma", "bg"));
}

#[test]
fn difference_07_single_quotes_and_spaces_around_equals() {
    let (faithful, strict) = both("normalize(source_str='alpha', target_str='A')");
    assert_eq!(
        faithful.verdict.text(),
        TEXT,
        "faithful looks for `'alpha'`"
    );
    assert_eq!(strict.verdict.text(), TEXT.replace("alpha", "A"));
    let (faithful, strict) = both("normalize(source_str = \"alpha\", target_str = \"A\")");
    assert_eq!(
        faithful.verdict.text(),
        TEXT,
        "faithful looks for ` \"alpha`"
    );
    assert_eq!(strict.verdict.text(), TEXT.replace("alpha", "A"));
}

#[test]
fn difference_08_escapes_are_interpreted_and_line_breaks_refused() {
    let text = TEXT.replace("beta", "\"beta\"\tb\\x");
    let program = r#"normalize(source_str="\"beta\"\tb\\x", target_str="\u00df")"#;
    let (faithful, strict) = both_on(&text, program);
    assert_eq!(faithful.verdict.text(), text);
    assert_eq!(strict.verdict.text(), TEXT.replace("beta", "ß"));

    let text = TEXT.replace("delta\none", "delta\\none");
    let program = r#"normalize(source_str="delta\none", target_str="x")"#;
    let (faithful, strict) = both_on(&text, program);
    assert_eq!(faithful.verdict.text(), text.replace("delta\\none", "x"));
    assert_eq!((strict.verdict.text(), errors(&strict)), (&*text, 1));
}

#[test]
fn difference_09_function_names_must_match_exactly() {
    let (faithful, strict) = both("remove_lines_range(start=1, end=1)");
    assert_eq!(faithful.verdict.text(), without(&[1]));
    assert_eq!((errors(&strict), strict.lines_removed), (1, 0));
    let (faithful, strict) = both("normalized(source_str=\"alpha\")");
    assert_eq!(faithful.normalizations, 6);
    assert_eq!((errors(&strict), strict.normalizations), (1, 0));
}

#[test]
fn difference_10_all_true_only_as_the_argument() {
    let (faithful, strict) = both("remove_lines(start=1, end=1) # all=True would be too much");
    assert_eq!(faithful.verdict, Verdict::Dropped(DropReason::LowRatio));
    assert_eq!(strict.verdict.text(), without(&[1]));
    let (faithful, strict) = both("remove_lines(all=True)");
    assert_eq!(faithful.lines_removed, 6);
    assert_eq!(strict.lines_removed, 6);
}

#[test]
fn difference_11_unknown_functions_are_errors() {
    let (faithful, strict) = both("print()\nremove_lines(start=1, end=1)");
    assert_eq!(errors(&faithful), 0);
    assert_eq!(errors(&strict), 1);
    assert_eq!(strict.verdict.text(), without(&[1]));
    // The no-ops the refiners write are known functions, not errors.
    let (faithful, strict) =
        both("keep_chunk()\nskip_chunk()\nuntouch_doc()\nremove_lines(start=1, end=1)");
    assert_eq!(errors(&faithful), 0);
    assert_eq!(errors(&strict), 0);
    assert_eq!(strict.verdict.text(), without(&[1]));
    assert_eq!(
        parse("keep_chunk()", Mode::Strict).lines[0].kind,
        LineKind::NoOp("keep_chunk".into())
    );
    let (faithful, strict) = both("drop_chunk()\nthis is not a call");
    assert_eq!(errors(&faithful), 0);
    assert_eq!(errors(&strict), 2);
    assert!(strict.program_ignored);
}

#[test]
fn difference_12_unclosed_calls_and_trailing_text_do_nothing() {
    let (faithful, strict) = both("remove_lines(start=1, end=22");
    assert_eq!((errors(&faithful), faithful.lines_removed), (1, 2));
    assert_eq!((errors(&strict), strict.lines_removed), (1, 0));
    let (faithful, strict) = both("remove_lines(start=1, end=1) and more");
    assert_eq!((errors(&faithful), faithful.lines_removed), (0, 1));
    assert_eq!((errors(&strict), strict.lines_removed), (1, 0));
}

#[test]
fn difference_13_integers_are_ascii_literals_within_i64() {
    let (faithful, strict) = both("remove_lines(start=١, end=١)");
    assert_eq!(faithful.verdict.text(), without(&[1]));
    assert_eq!((errors(&strict), strict.lines_removed), (1, 0));
    let (faithful, strict) = both("remove_lines(start=99999999999999999999, end=0)");
    // Faithful: a reversed range past the end, one range error; strict: out of range.
    assert_eq!(errors(&faithful), 1);
    assert_eq!(errors(&strict), 1);
    assert!(strict.errors[0].reason.contains("out of range"));
    assert!(faithful.errors[0].line.is_none(), "a range error");
}

#[test]
fn difference_14_an_empty_source_is_an_error() {
    let (faithful, strict) = both("normalize(source_str=\"\", target_str=\"x\")");
    assert_eq!(errors(&faithful), 0);
    assert_eq!(errors(&strict), 1);
    assert_eq!(strict.verdict.text(), TEXT);
}

#[test]
fn difference_15_a_single_space_source_is_skipped_with_one_argument_too() {
    let (faithful, strict) = both("normalize(source_str=\" \")");
    assert_eq!(faithful.verdict, Verdict::Dropped(DropReason::FewWords));
    assert_eq!((strict.verdict.text(), errors(&strict)), (TEXT, 0));
}

#[test]
fn difference_16_drop_doc_in_a_chunk_program_is_an_error() {
    let (faithful, strict) = both("drop_doc()\nkeep_doc()\nremove_lines(start=1, end=1)");
    assert_eq!(errors(&faithful), 0);
    assert_eq!(errors(&strict), 1);
    assert_eq!(strict.verdict.text(), without(&[1]));
}

#[test]
fn difference_17_the_document_stage_parses_the_program() {
    let faithful = Executor::new(Mode::Faithful, Thresholds::default());
    let strict = Executor::new(Mode::Strict, Thresholds::default());
    for program in ["undrop", "# do not drop_doc()", "keep_doc() # drop?"] {
        assert!(!faithful.run_doc(program).keep, "{program}");
        assert!(strict.run_doc(program).keep, "{program}");
    }
    let outcome = strict.run_doc("undrop");
    assert_eq!(outcome.errors.len(), 1);
    for program in [
        "drop_doc()",
        "```python\n  drop_doc()  \n```",
        "drop_doc() # spam",
    ] {
        assert_doc_program_drops(&strict, program);
    }
}

#[test]
fn strict_doc_stage_keeps_on_conflict_with_an_error() {
    let strict = Executor::new(Mode::Strict, Thresholds::default());
    let outcome = strict.run_doc("drop_doc()\nkeep_doc()");
    assert!(outcome.keep);
    assert_eq!(outcome.errors.len(), 1);
    assert_eq!(outcome.errors[0].line, Some(2));
}

#[test]
fn strict_doc_stage_reports_chunk_calls_and_unknown_functions() {
    let strict = Executor::new(Mode::Strict, Thresholds::default());
    let outcome = strict.run_doc("remove_lines(0, 1)\nfoo()\ndrop_doc()");
    assert!(!outcome.keep);
    assert_eq!(outcome.errors.len(), 2);
    let outcome = strict.run_doc("");
    assert!(outcome.keep && outcome.errors.is_empty());
    assert!(strict.run_doc("untouch_doc()").errors.is_empty());
}

#[test]
fn strict_reads_python_strings() {
    let program = parse(
        r#"normalize(source_str='it\'s, (a) = "b"', target_str="x\\y")"#,
        Mode::Strict,
    );
    assert_eq!(
        program.lines[0].kind,
        LineKind::Call(Call::Normalize {
            source: "it's, (a) = \"b\"".into(),
            target: Some("x\\y".into())
        })
    );
}

#[test]
fn strict_skips_fences_comments_and_blank_lines() {
    let program = parse(
        "```python\n# note\n\n  \r\nuntouch_doc()\r\n```",
        Mode::Strict,
    );
    let kinds: Vec<&LineKind> = program.lines.iter().map(|line| &line.kind).collect();
    assert_eq!(
        kinds,
        [
            &LineKind::Blank,
            &LineKind::Comment,
            &LineKind::Blank,
            &LineKind::Blank,
            &LineKind::NoOp("untouch_doc".into()),
            &LineKind::Blank
        ]
    );
    assert_eq!(program.error_count(), 0);
}

#[test]
fn strict_errors_name_their_line() {
    let outcome = run_chunk(
        Mode::Strict,
        TEXT,
        "untouch_doc()\nremove_lines(start=1)\nnormalize(source_str=1)",
    );
    let lines: Vec<Option<usize>> = outcome.errors.iter().map(|e| e.line).collect();
    assert_eq!(lines, [Some(2), Some(3)]);
}

#[test]
fn strict_and_faithful_agree_on_well_formed_programs() {
    let program = "remove_lines(start=0, end=0)\n\
                   normalize(source_str=\"alpha\", target_str=\"A\")\n\
                   # a comment\n\
                   normalize(source_str=\"delta\")\n\
                   remove_lines(line_start=4, line_end=9)";
    let (faithful, strict) = both(program);
    assert_eq!(faithful, strict);
    assert_eq!(faithful.errors.len(), 1);
}
