//! Builds run folders as `prox refine` lays them out (`docs/run-folder.md`), with the real
//! executor deciding each document's fate, hostile documents included.

use std::path::Path;

use prox_io::{JsonlWriter, ParquetWriter};
use prox_program::{Executor, Mode, Thresholds, Verdict};
use prox_report::{Report, ReportOptions, RunFolder};
use serde_json::{json, Value};

/// A document to put through the two stages.
pub struct Doc {
    pub id: String,
    pub raw: String,
    pub doc_program: String,
    pub chunk_program: String,
}

pub fn doc(id: &str, raw: &str, doc_program: &str, chunk_program: &str) -> Doc {
    Doc {
        id: id.to_owned(),
        raw: raw.to_owned(),
        doc_program: doc_program.to_owned(),
        chunk_program: chunk_program.to_owned(),
    }
}

/// `n` distinct words.
pub fn words(prefix: &str, n: usize) -> String {
    (0..n)
        .map(|i| format!("{prefix}{i}"))
        .collect::<Vec<_>>()
        .join(" ")
}

/// The row of a document and whether it was dropped, as `prox refine` writes it: flat dotted
/// `prox.*` columns when `flat`, nested objects otherwise.
pub fn row(doc: &Doc, flat: bool) -> (Value, bool) {
    row_with(
        doc,
        flat,
        &Executor::new(Mode::Faithful, Thresholds::default()),
    )
}

/// [`row`], for a run that executed programs with `executor`.
pub fn row_with(doc: &Doc, flat: bool, executor: &Executor) -> (Value, bool) {
    let words = |text: &str| prox_program::count_words(text) as u64;
    if !executor.run_doc(&doc.doc_program).keep {
        let prox = json!({"stage": "doc", "reason": "doc_program",
                          "words_before": words(&doc.raw), "words_after": 0});
        let fields = json!({"id": doc.id, "text": "", "raw_content": doc.raw,
                            "metadata": {"doc_program": doc.doc_program}});
        return (with_prox(fields, prox, flat), true);
    }
    let outcome = executor.run_chunk(&doc.raw, &doc.chunk_program);
    let mut prox = json!({
        "lines_removed": outcome.lines_removed,
        "normalizations": outcome.normalizations,
        "program_errors": outcome.errors.len(),
        "words_before": outcome.words_before,
        "words_after": prox_program::count_words(outcome.verdict.text()),
    });
    let dropped = match &outcome.verdict {
        Verdict::Dropped(reason) => {
            prox["stage"] = json!("chunk");
            prox["reason"] = json!(reason.as_str());
            true
        }
        Verdict::Ignored { .. } => {
            prox["outcome"] = json!("ignored");
            false
        }
        Verdict::Kept { modified, .. } => {
            prox["outcome"] = json!(if *modified { "modified" } else { "unchanged" });
            false
        }
    };
    let fields = json!({
        "id": doc.id,
        "text": outcome.verdict.text(),
        "raw_content": doc.raw,
        "doc_content": doc.raw,
        "metadata": {"doc_program": doc.doc_program, "chunk_program": doc.chunk_program},
    });
    (with_prox(fields, prox, flat), dropped)
}

fn with_prox(mut fields: Value, prox: Value, flat: bool) -> Value {
    let object = fields.as_object_mut().unwrap();
    if flat {
        for (key, value) in prox.as_object().unwrap() {
            object.insert(format!("prox.{key}"), value.clone());
        }
    } else {
        object.insert("prox".to_owned(), prox);
    }
    fields
}

/// The output format of the parts.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum PartFormat {
    Parquet,
    JsonlGz,
}

/// Writes `docs` as one task's parts (`part-00000-00000`) and returns how many were kept.
pub fn write_run(dir: &Path, docs: &[Doc], format: PartFormat) -> (usize, usize) {
    write_run_with(
        dir,
        docs,
        format,
        &Executor::new(Mode::Faithful, Thresholds::default()),
    )
}

/// [`write_run`], for a run that executed programs with `executor`.
pub fn write_run_with(
    dir: &Path,
    docs: &[Doc],
    format: PartFormat,
    executor: &Executor,
) -> (usize, usize) {
    let rows: Vec<(Value, bool)> = docs
        .iter()
        .map(|d| row_with(d, format == PartFormat::JsonlGz, executor))
        .collect();
    let kept: Vec<&Value> = rows.iter().filter(|(_, d)| !d).map(|(r, _)| r).collect();
    let dropped: Vec<&Value> = rows.iter().filter(|(_, d)| *d).map(|(r, _)| r).collect();
    for (folder, rows) in [("output", &kept), ("dropped", &dropped)] {
        std::fs::create_dir_all(dir.join(folder)).unwrap();
        match format {
            PartFormat::Parquet => {
                let mut writer =
                    ParquetWriter::create(&dir.join(folder).join("part-00000-00000.parquet"))
                        .unwrap();
                for row in rows.iter() {
                    writer.write(row).unwrap();
                }
                writer.finish().unwrap();
            }
            PartFormat::JsonlGz => {
                let path = dir.join(folder).join("part-00000-00000.jsonl.gz");
                let mut encoder = flate2::write::GzEncoder::new(
                    std::fs::File::create(path).unwrap(),
                    flate2::Compression::default(),
                );
                for row in rows.iter() {
                    serde_json::to_writer(&mut encoder, row).unwrap();
                    std::io::Write::write_all(&mut encoder, b"\n").unwrap();
                }
                encoder.finish().unwrap();
            }
        }
    }
    (kept.len(), dropped.len())
}

/// Writes failure rows into `failures/part-00000-00000.jsonl`.
pub fn write_failures(dir: &Path, failures: &[Value]) {
    std::fs::create_dir_all(dir.join("failures")).unwrap();
    let mut writer =
        JsonlWriter::create(&dir.join("failures").join("part-00000-00000.jsonl")).unwrap();
    for failure in failures {
        writer.write(failure).unwrap();
    }
    writer.finish().unwrap();
}

/// A paragraph-like line of `n` words.
fn sentence(topic: &str, n: usize) -> String {
    words(topic, n)
}

/// A run with every outcome, hostile documents among them:
/// - `clean-*`: unchanged (`untouch_doc()`);
/// - `edited-*`: modified (lines removed, a normalize);
/// - `noisy-*`: ignored (2 errors);
/// - `spam-*`: dropped by the document program;
/// - `gutted-*`: dropped for `low_ratio`; `short-*`: `few_words`; `blank-*`: `no_words`;
/// - `hostile-*`: `</script>`, HTML and a very long line, kept and modified.
pub fn mixed_docs(per_kind: usize) -> Vec<Doc> {
    let mut docs = Vec::new();
    for i in 0..per_kind {
        docs.push(doc(
            &format!("clean-{i}"),
            &format!("{}\n{}", sentence("river", 12), sentence("bank", 9)),
            "keep_doc()",
            "untouch_doc()",
        ));
        docs.push(doc(
            &format!("edited-{i}"),
            &format!(
                "Home | About | Contact\n{}\nClick here to subscribe and read {}\nShare on Twitter",
                sentence("city", 14),
                sentence("tale", 6)
            ),
            "keep_doc()",
            "remove_lines(start=0, end=0)\nnormalize(source_str=\"Click here\", target_str=\"Tap\")\nremove_lines(start=3, end=3)",
        ));
        docs.push(doc(
            &format!("noisy-{i}"),
            &format!("{}\n{}", sentence("wind", 11), sentence("sail", 8)),
            "keep_doc()",
            "remove_lines(0, 0)\nremove_lines(1, 1)",
        ));
        docs.push(doc(
            &format!("spam-{i}"),
            &format!("BUY NOW cheap pills {}", sentence("spam", 20)),
            "drop_doc()",
            "",
        ));
        docs.push(doc(
            &format!("gutted-{i}"),
            &format!("{}\n{}", sentence("menu", 40), "ok"),
            "keep_doc()",
            "remove_lines(start=0, end=0)",
        ));
        docs.push(doc(
            &format!("short-{i}"),
            "too short to keep",
            "keep_doc()",
            "untouch_doc()",
        ));
        docs.push(doc(
            &format!("blank-{i}"),
            " \n\t",
            "keep_doc()",
            "untouch_doc()",
        ));
        docs.push(doc(
            &format!("hostile-{i}<b>bold</b>"),
            &format!(
                "</script><script>window.__pwned = 1</script>\n<img src=x onerror=\"window.__pwned = 2\">\n{}\n<style>body {{ display: none }}</style> {}\n{}",
                sentence("quiet", 12),
                sentence("calm", 5),
                "long ".repeat(40_000)
            ),
            "keep_doc() # </script><script>window.__pwned = 3</script>",
            "remove_lines(start=0, end=0)\nnormalize(source_str=\"<style>\", target_str=\"</script><iframe src=https://example.com>\")",
        ));
    }
    docs
}

/// The stats of `docs` as `prox refine` would count them (documents and drops only).
pub fn stats_for(docs: &[Doc], failed: u64) -> Value {
    let mut counts = std::collections::BTreeMap::<String, u64>::new();
    for d in docs {
        let (row, _) = row(d, true);
        let key = row
            .get("prox.outcome")
            .or_else(|| row.get("prox.reason"))
            .and_then(Value::as_str)
            .unwrap()
            .to_owned();
        *counts.entry(key).or_default() += 1;
    }
    let get = |key: &str| counts.get(key).copied().unwrap_or(0);
    let output = get("unchanged") + get("modified") + get("ignored");
    let dropped = get("doc_program") + get("low_ratio") + get("few_words") + get("no_words");
    json!({
        "documents": {"input": output + dropped + failed, "output": output,
                      "unchanged": get("unchanged"), "modified": get("modified"),
                      "ignored": get("ignored"), "dropped": dropped, "failed": failed},
        "dropped": {"doc_program": get("doc_program"), "low_ratio": get("low_ratio"),
                    "few_words": get("few_words"), "no_words": get("no_words")},
        "stages": {"doc": {"documents": docs.len(), "prompts": docs.len(), "prompt_tokens": 1000,
                           "generated_tokens": 40, "truncated_prompts": 0, "seconds": 1.5},
                   "chunk": {"documents": docs.len(), "prompts": docs.len(), "prompt_tokens": 900,
                             "generated_tokens": 300, "truncated_prompts": 0, "seconds": 2.5}},
        "programs": {"calls": {"drop_doc": 1, "keep_doc": 7, "remove_lines": 9, "normalize": 2,
                                "untouch_doc": 3, "other": 0},
                     "parse_errors": 2, "ignored": get("ignored")},
        "tokens": {"input": 5000, "output": 1500, "kept_ratio": 0.3},
        "words": {"input": 4000, "output": 1200},
        "seconds": {"total": 5.0, "model": 4.0, "io": 1.0}
    })
}

/// A run of [`mixed_docs`]`(per_kind)` in `dir`, with `failure` as its one failure row and the
/// `stats.json` such a run ends with; returns the documents.
pub fn write_mixed_run(
    dir: &Path,
    per_kind: usize,
    format: PartFormat,
    failure: Value,
) -> Vec<Doc> {
    let docs = mixed_docs(per_kind);
    write_run(dir, &docs, format);
    write_failures(dir, &[failure]);
    std::fs::write(
        dir.join("stats.json"),
        serde_json::to_string(&stats_for(&docs, 1)).unwrap(),
    )
    .unwrap();
    docs
}

/// The report of the run in `dir`, sampling `sample` documents with `seed`.
pub fn report_of(dir: &Path, sample: usize, seed: u64) -> Report {
    let options = ReportOptions {
        sample,
        seed,
        ..ReportOptions::default()
    };
    Report::build(&RunFolder::open(dir).unwrap(), options).unwrap()
}
