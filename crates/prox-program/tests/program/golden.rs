//! Every executor vector of the reference, in faithful mode, byte for byte.

use prox_program::{DropReason, Executor, Mode, Thresholds, Verdict};
use serde_json::Value;

struct Case {
    line: usize,
    kind: String,
    text: String,
    program: String,
    thresholds: Thresholds,
    expected: String,
    no_words: bool,
}

fn field<'a>(value: &'a Value, name: &str, line: usize) -> &'a Value {
    value
        .get(name)
        .unwrap_or_else(|| panic!("vectors.jsonl:{line}: no field `{name}`"))
}

fn string(value: &Value, name: &str, line: usize) -> String {
    field(value, name, line)
        .as_str()
        .unwrap_or_else(|| panic!("vectors.jsonl:{line}: `{name}` is not a string"))
        .to_owned()
}

fn cases() -> Vec<Case> {
    let path = prox_test::fixture("executor/vectors.jsonl");
    prox_test::read_jsonl(path)
        .into_iter()
        .map(|(line, value)| {
            let kind = string(&value, "kind", line);
            let thresholds = if kind == "chunk" {
                let number = |name| field(&value, name, line).as_f64().expect(name);
                Thresholds {
                    threshold_1: number("threshold_1"),
                    threshold_2: number("threshold_2"),
                    error_op: field(&value, "error_op", line)
                        .as_u64()
                        .and_then(|n| usize::try_from(n).ok())
                        .expect("error_op"),
                    ..Thresholds::default()
                }
            } else {
                Thresholds::default()
            };
            Case {
                line,
                text: string(&value, "text", line),
                program: string(&value, "program", line),
                expected: string(&value, "expected", line),
                no_words: value.get("note").is_some(),
                kind,
                thresholds,
            }
        })
        .collect()
}

fn run(case: &Case) -> Verdict {
    let executor = Executor::new(Mode::Faithful, case.thresholds);
    match case.kind.as_str() {
        "chunk" => executor.run_chunk(&case.text, &case.program).verdict,
        "doc" => executor.run_doc(&case.program).verdict(&case.text),
        other => panic!("vectors.jsonl:{}: unknown kind `{other}`", case.line),
    }
}

#[test]
fn faithful_mode_matches_every_reference_vector() {
    let cases = cases();
    // Another vector file (PROX_FIXTURES) may hold any number of cases.
    if std::env::var_os(prox_test::FIXTURES_ENV).is_none() {
        assert_eq!(cases.len(), 3001, "the reference fixture holds 3001 cases");
    }
    let mismatches: Vec<String> = cases
        .iter()
        .filter_map(|case| {
            let verdict = run(case);
            (verdict.text() != case.expected).then(|| {
                format!(
                    "line {} ({}): program {:?}\n  expected {:?}\n  got      {:?}",
                    case.line, case.kind, case.program, case.expected, verdict
                )
            })
        })
        .collect();
    prox_test::mismatch::assert_none(&mismatches, cases.len(), "vectors");
}

#[test]
fn documents_without_words_are_dropped_for_that_reason() {
    let cases = cases();
    let no_words: Vec<&Case> = cases.iter().filter(|c| c.no_words).collect();
    assert!(!no_words.is_empty());
    for case in no_words {
        assert_eq!(
            run(case),
            Verdict::Dropped(DropReason::NoWords),
            "line {}",
            case.line
        );
    }
}
