//! The nine datasets (spec §2–§5): their files in the harness folder, questions, ground truths
//! and few-shot prompts.

use std::collections::HashMap;
use std::fmt;
use std::path::{Path, PathBuf};
use std::sync::LazyLock;

use regex::Regex;
use serde_json::value::RawValue;
use serde_json::{Map, Value};

use crate::error::{Error, Result};
use crate::extract::extract_answer;
use crate::python;
use crate::strip::strip_string;

/// A benchmark of the ProX math evaluation, in the order the harness runs them.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Dataset {
    Gsm8k,
    MinervaMath,
    Svamp,
    Asdiv,
    Mawps,
    Tabmwp,
    MathQa,
    MmluStem,
    SatMath,
}

impl Dataset {
    /// The nine, in `scripts/run_eval.sh` order.
    pub const ALL: [Dataset; 9] = [
        Dataset::Gsm8k,
        Dataset::MinervaMath,
        Dataset::Svamp,
        Dataset::Asdiv,
        Dataset::Mawps,
        Dataset::Tabmwp,
        Dataset::MathQa,
        Dataset::MmluStem,
        Dataset::SatMath,
    ];

    /// The harness's name for the dataset (`--data_names`, output folders).
    pub fn name(self) -> &'static str {
        match self {
            Dataset::Gsm8k => "gsm8k",
            Dataset::MinervaMath => "minerva_math",
            Dataset::Svamp => "svamp",
            Dataset::Asdiv => "asdiv",
            Dataset::Mawps => "mawps",
            Dataset::Tabmwp => "tabmwp",
            Dataset::MathQa => "mathqa",
            Dataset::MmluStem => "mmlu_stem",
            Dataset::SatMath => "sat_math",
        }
    }

    /// The folder under `data/` that holds `test.jsonl`.
    pub fn data_dir(self) -> &'static str {
        match self {
            Dataset::MinervaMath => "math_oai",
            other => other.name(),
        }
    }

    /// The dataset called `name`; an unknown name lists the known ones.
    pub fn from_name(name: &str) -> Result<Dataset> {
        Dataset::ALL
            .into_iter()
            .find(|d| d.name() == name)
            .ok_or_else(|| Error::UnknownDataset {
                name: name.to_owned(),
            })
    }

    /// Whether answers are choice letters (A–E) rather than values.
    pub fn is_multiple_choice(self) -> bool {
        matches!(self, Dataset::MathQa | Dataset::MmluStem | Dataset::SatMath)
    }

    /// The few-shot demonstration file's name in `prompts/cot/` (the harness's `load_prompt`).
    fn demo_name(self) -> &'static str {
        match self {
            Dataset::Gsm8k | Dataset::Svamp | Dataset::Asdiv | Dataset::Mawps | Dataset::Tabmwp => {
                "gsm8k"
            }
            Dataset::MinervaMath => "minerva_math",
            Dataset::MathQa => "mathqa",
            Dataset::MmluStem | Dataset::SatMath => "mmlu_stem",
        }
    }

    /// Whether the question is framed `Problem:`/`Solution:` rather than `Question:`/`Answer:`.
    fn frames_as_problem(self) -> bool {
        matches!(
            self,
            Dataset::MinervaMath | Dataset::MathQa | Dataset::MmluStem | Dataset::SatMath
        )
    }
}

impl fmt::Display for Dataset {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// The fields the harness copies from a record into its output samples, in its order.
pub const KEPT_FIELDS: [&str; 14] = [
    "level",
    "type",
    "unit",
    "solution_type",
    "choices",
    "solution",
    "ques_type",
    "ans_type",
    "answer_type",
    "dataset",
    "subfield",
    "filed",
    "theorem",
    "answer",
];

/// One test example, as the harness prepares it.
#[derive(Debug, Clone, PartialEq)]
pub struct Example {
    pub dataset: Dataset,
    pub idx: i64,
    /// The question as the prompt shows it.
    pub question: String,
    pub gt_cot: String,
    /// The ground truth as it is scored and written: `strip_string` applied once more than at
    /// prompt time, as the harness's evaluation does.
    pub gt: String,
    /// The fields of [`KEPT_FIELDS`] the record has, in that order.
    pub extras: Map<String, Value>,
}

const CHOICE_QUESTION: &str = "\nWhat of the following is the right choice? Explain your answer.\n";

/// A harness checkout (`--data`): `data/<dir>/test.jsonl` and `prompts/cot/*.md`.
#[derive(Debug, Clone)]
pub struct Harness {
    root: PathBuf,
}

impl Harness {
    /// The harness folder at `root`, which must exist.
    pub fn open(root: &Path) -> Result<Harness> {
        if !root.is_dir() {
            return Err(Error::HarnessNotFound {
                path: root.to_owned(),
            });
        }
        Ok(Harness {
            root: root.to_owned(),
        })
    }

    pub fn root(&self) -> &Path {
        &self.root
    }

    /// The test file of `dataset`.
    pub fn data_file(&self, dataset: Dataset) -> PathBuf {
        self.root
            .join("data")
            .join(dataset.data_dir())
            .join("test.jsonl")
    }

    /// Every example of `dataset`, sorted by `idx`.
    pub fn examples(&self, dataset: Dataset) -> Result<Vec<Example>> {
        let path = self.data_file(dataset);
        if !path.is_file() {
            return Err(Error::DataMissing { dataset, path });
        }
        let text = std::fs::read_to_string(&path).map_err(|source| Error::Read {
            path: path.clone(),
            source,
        })?;
        // Python's text mode reads `\r\n` and `\r` as line ends too.
        let text = universal_newlines(&text);
        let mut records = Vec::new();
        for (i, line) in text.split_inclusive('\n').enumerate() {
            records.push(Record::parse(&path, i + 1, line)?);
        }
        if records.is_empty() {
            return Err(Error::Record {
                path,
                line: 1,
                reason: "the file has no records".into(),
            });
        }
        let assign = !records[0].fields.contains_key("idx");
        let mut numbered = Vec::with_capacity(records.len());
        for (i, record) in records.into_iter().enumerate() {
            let idx = if assign {
                i as i64
            } else {
                match record.fields.get("idx").and_then(Value::as_i64) {
                    Some(idx) => idx,
                    None => return Err(record.error("`idx` is missing or not an integer")),
                }
            };
            numbered.push((idx, record));
        }
        numbered.sort_by_key(|(idx, _)| *idx);
        numbered
            .into_iter()
            .map(|(idx, record)| record.example(dataset, idx))
            .collect()
    }

    /// The few-shot demonstrations for `dataset`: `prompts/cot/<name>.md`, else
    /// `prompts/cot.md`, stripped, then three line breaks.
    pub fn demo(&self, dataset: Dataset) -> Result<String> {
        let tried = [
            self.root
                .join("prompts/cot")
                .join(format!("{}.md", dataset.demo_name())),
            self.root.join("prompts/cot.md"),
        ];
        let Some(path) = tried.iter().find(|p| p.is_file()) else {
            return Err(Error::PromptMissing {
                dataset,
                path: tried[0].clone(),
            });
        };
        let text = std::fs::read_to_string(path).map_err(|source| Error::Read {
            path: path.clone(),
            source,
        })?;
        let text = universal_newlines(&text);
        Ok(format!("{}\n\n\n", python::strip(&text)))
    }
}

/// The full prompt for `example` after the demonstrations `demo`.
pub fn prompt(demo: &str, example: &Example) -> String {
    if example.dataset.frames_as_problem() {
        format!("{demo}Problem:\n{}\nSolution:", example.question)
    } else {
        format!("{demo}Question: {}\nAnswer:", example.question)
    }
}

fn universal_newlines(text: &str) -> String {
    text.replace("\r\n", "\n").replace('\r', "\n")
}

/// One line of a data file: its fields and where it is.
struct Record<'a> {
    path: &'a Path,
    line: usize,
    text: &'a str,
    fields: Map<String, Value>,
}

static PARENTHESES: LazyLock<Regex> =
    LazyLock::new(|| Regex::new(r"\(.*?\)").expect("the parentheses pattern compiles"));

impl<'a> Record<'a> {
    fn parse(path: &'a Path, line: usize, text: &'a str) -> Result<Record<'a>> {
        let fields: Map<String, Value> = serde_json::from_str(text).map_err(|e| Error::Record {
            path: path.to_owned(),
            line,
            reason: format!("not a JSON object: {e}"),
        })?;
        Ok(Record {
            path,
            line,
            text,
            fields,
        })
    }

    fn error(&self, reason: impl Into<String>) -> Error {
        Error::Record {
            path: self.path.to_owned(),
            line: self.line,
            reason: reason.into(),
        }
    }

    fn get(&self, key: &str) -> Result<&Value> {
        self.fields
            .get(key)
            .ok_or_else(|| self.error(format!("no field `{key}`")))
    }

    fn string(&self, key: &str) -> Result<&str> {
        self.get(key)?
            .as_str()
            .ok_or_else(|| self.error(format!("`{key}` is not a string")))
    }

    /// Python's `str()` of a field; a float from its JSON text, read exactly.
    fn python_str(&self, key: &str) -> Result<String> {
        let value = self.get(key)?;
        match value {
            Value::Number(n) if n.is_f64() => {
                let raw: HashMap<String, &RawValue> = serde_json::from_str(self.text)
                    .map_err(|e| self.error(format!("not a JSON object: {e}")))?;
                let x: f64 = raw
                    .get(key)
                    .and_then(|r| r.get().parse().ok())
                    .ok_or_else(|| self.error(format!("`{key}` is not a number")))?;
                Ok(python::float_repr(x))
            }
            other => Ok(python::str_of(other)),
        }
    }

    fn example(mut self, dataset: Dataset, idx: i64) -> Result<Example> {
        let (gt_cot, gt) = self.ground_truth(dataset)?;
        let mut question = self.question(dataset)?;
        match gt.to_lowercase().as_str() {
            "true" | "false" => question.push_str(" (True or False)"),
            "yes" | "no" => question.push_str(" (Yes or No)"),
            _ => {}
        }
        let mut extras = Map::new();
        for key in KEPT_FIELDS {
            if let Some(value) = self.fields.remove(key) {
                extras.insert(key.to_owned(), value);
            }
        }
        Ok(Example {
            dataset,
            idx,
            question: python::strip(&question).to_owned(),
            gt_cot,
            gt: strip_string(&gt),
            extras,
        })
    }

    /// `parse_question`, before the answer-type suffix. Multiple choices are rewritten in
    /// place (`mmlu_stem`'s `choices` are output as rewritten).
    fn question(&mut self, dataset: Dataset) -> Result<String> {
        Ok(match dataset {
            Dataset::Gsm8k => self.string("question")?.to_owned(),
            Dataset::MinervaMath => self.string("problem")?.to_owned(),
            Dataset::Mawps => self.string("input")?.to_owned(),
            Dataset::Asdiv => format!(
                "{} {}",
                python::strip(self.string("body")?),
                python::strip(self.string("question")?)
            ),
            Dataset::Svamp => {
                let mut body = python::strip(self.string("Body")?).to_owned();
                if !body.ends_with('.') {
                    body.push('.');
                }
                format!("{body} {}", python::strip(self.string("Question")?))
            }
            Dataset::Tabmwp => {
                let title = match self.get("table_title")? {
                    v if truthy(v) => format!("regarding \"{}\" ", python::str_of(v)),
                    _ => String::new(),
                };
                let mut question = format!(
                    "Read the following table {title}and answer a question:\n{}\n{}",
                    python::str_of(self.get("table")?),
                    python::str_of(self.get("question")?)
                );
                let choices = self.get("choices")?;
                if truthy(choices) {
                    question.push_str(" Please select from the following options: ");
                    question.push_str(&python::str_of(choices));
                }
                question
            }
            Dataset::MmluStem => {
                let choices = match self.get("choices")? {
                    Value::Array(items) if items.len() == 4 => items.clone(),
                    _ => return Err(self.error("`choices` is not a list of four")),
                };
                let labelled: Vec<Value> = choices
                    .iter()
                    .zip('A'..='D')
                    .map(|(c, label)| {
                        Value::String(format!("({label}) {}", python::strip(&python::str_of(c))))
                    })
                    .collect();
                let joined = labelled
                    .iter()
                    .filter_map(Value::as_str)
                    .collect::<Vec<_>>()
                    .join(", ");
                let question = python::strip(self.string("question")?).to_owned();
                self.fields
                    .insert("choices".to_owned(), Value::Array(labelled));
                format!("{question}{CHOICE_QUESTION}{joined}")
            }
            Dataset::SatMath => {
                let mut options = format!("({}", python::strip(self.string("options")?));
                for ch in ['B', 'C', 'D'] {
                    options = options.replace(&format!(" {ch}) "), &format!(" ({ch}) "));
                }
                format!(
                    "{}{CHOICE_QUESTION}{}",
                    python::strip(self.string("question")?),
                    python::strip(&options)
                )
            }
            Dataset::MathQa => {
                let problem = self.string("problem")?;
                let mut chars = problem.chars();
                let first = chars
                    .next()
                    .ok_or_else(|| self.error("`problem` is empty"))?;
                let problem = format!("{}{}", first.to_uppercase(), chars.as_str());
                let mut options = python::strip(self.string("options")?).to_owned();
                if options.is_empty() {
                    return Err(self.error("`options` is empty"));
                }
                if options.starts_with('[') {
                    let items = python::parse_str_list(&options)
                        .ok_or_else(|| self.error("`options` is not a list of strings"))?;
                    options = items.join(", ");
                }
                if !options.contains('a') && !options.contains('A') {
                    return Err(self.error(format!("`options` has no choice a: {options:?}")));
                }
                for ch in ['a', 'b', 'c', 'd', 'e'] {
                    let marker = format!("{ch} ) ");
                    if options.contains(&marker) {
                        options = options.replace(&format!("{ch} ) {ch} ) "), &marker);
                        options =
                            options.replace(&marker, &format!("({}) ", ch.to_ascii_uppercase()));
                    }
                }
                let options = options.replace(" , ", ", ");
                format!(
                    "{}{CHOICE_QUESTION}{}",
                    python::strip(&problem),
                    python::strip(&options)
                )
            }
        })
    }

    /// `parse_ground_truth`: `gt_cot` and the prompt-time `gt` (`strip_string` applied once).
    fn ground_truth(&self, dataset: Dataset) -> Result<(String, String)> {
        let (gt_cot, gt): (Option<String>, String) = match dataset {
            Dataset::Gsm8k => {
                let answer = self.string("answer")?;
                let pieces: Vec<&str> = answer.split("####").collect();
                let [cot, gt] = pieces.as_slice() else {
                    return Err(self.error("`answer` does not have exactly one `####`"));
                };
                (Some((*cot).to_owned()), (*gt).to_owned())
            }
            Dataset::MinervaMath => {
                let solution = self.string("solution")?;
                (
                    Some(solution.to_owned()),
                    extract_answer(solution, Dataset::MinervaMath),
                )
            }
            Dataset::Svamp => (
                Some(self.python_str("Equation")?),
                self.python_str("Answer")?,
            ),
            Dataset::Asdiv => (
                Some(self.python_str("formula")?),
                PARENTHESES
                    .replace_all(self.string("answer")?, "")
                    .into_owned(),
            ),
            Dataset::Mawps => (None, self.python_str("target")?),
            Dataset::MmluStem => {
                let letter = self
                    .get("answer")?
                    .as_u64()
                    .and_then(|i| ["A", "B", "C", "D"].get(i as usize).copied())
                    .ok_or_else(|| self.error("`answer` is not 0, 1, 2 or 3"))?;
                (None, letter.to_owned())
            }
            Dataset::SatMath => (None, self.python_str("Answer")?),
            Dataset::MathQa => (
                Some(self.python_str("rationale")?),
                self.string("correct")?.to_uppercase(),
            ),
            Dataset::Tabmwp => (Some(self.python_str("solution")?), self.tabmwp_answer()?),
        };
        let gt_cot = gt_cot.unwrap_or_else(|| "None".to_owned());
        Ok((python::strip(&gt_cot).to_owned(), strip_string(&gt)))
    }

    /// TabMWP's answer; numeric answer types become Python floats (`3/14`, `1,000`, `25%`).
    fn tabmwp_answer(&self) -> Result<String> {
        let answer = self.python_str("answer")?;
        let numeric = matches!(
            self.get("ans_type")?.as_str(),
            Some("integer_number" | "decimal_number")
        );
        if !numeric {
            return Ok(answer);
        }
        let bad = || self.error(format!("`answer` {answer:?} is not a number"));
        let value = if answer.contains('/') {
            let mut parts = answer.split('/');
            let a = parts.next().and_then(python::parse_int).ok_or_else(bad)?;
            let b = parts.next().and_then(python::parse_int).ok_or_else(bad)?;
            if b == 0 {
                return Err(self.error("`answer` divides by zero"));
            }
            a as f64 / b as f64
        } else if answer.contains(',') {
            python::parse_float(&answer.replace(',', "")).ok_or_else(bad)?
        } else if let Some((number, _)) = answer.split_once('%') {
            python::parse_float(number).ok_or_else(bad)? / 100.0
        } else {
            python::parse_float(&answer).ok_or_else(bad)?
        };
        Ok(python::float_repr(value))
    }
}

/// Python's truth value of a JSON value.
fn truthy(value: &Value) -> bool {
    match value {
        Value::Null => false,
        Value::Bool(b) => *b,
        Value::Number(n) => n.as_f64().is_some_and(|x| x != 0.0),
        Value::String(s) => !s.is_empty(),
        Value::Array(a) => !a.is_empty(),
        Value::Object(o) => !o.is_empty(),
    }
}
