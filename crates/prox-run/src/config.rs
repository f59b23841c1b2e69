//! `run.json`: what a run is, as `prox refine` records it. A rerun in the same folder must be
//! the same run; readers (`prox report`, `prox show`) take from it how the run executed its
//! programs.

use std::path::PathBuf;

use prox_program::{Executor, Mode, Stages, Thresholds};
use prox_prompt::PromptMode;
use serde::{Deserialize, Serialize};

/// What a run is: a rerun in the same folder must be the same run. The fields are written in
/// this order; reordering them changes `run.json`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RunConfig {
    /// The inputs as given, made absolute.
    pub inputs: Vec<PathBuf>,
    pub tasks: usize,
    pub stages: Stages,
    pub text_field: String,
    pub id_field: Option<String>,
    pub doc_model: Option<String>,
    pub chunk_model: Option<String>,
    /// May differ between tasks and reruns.
    pub backend: BackendKind,
    /// The server's URL, for the `openai` backend; may differ between tasks and reruns.
    pub endpoint: Option<String>,
    pub refiner: RefinerSettings,
    pub output_format: OutputFormat,
    pub split: SplitPolicy,
    /// At most this many documents per task.
    pub limit: Option<u64>,
}

impl RunConfig {
    /// The first difference that makes `self` another run than the one `recorded` (a
    /// `run.json` as read) describes, if any. Where the model runs (backend, endpoint) does
    /// not change the run. Compared as JSON, so that a `run.json` of another shape (an older
    /// `prox`) is another run, named by its first differing key, rather than unreadable.
    pub fn difference(&self, recorded: &serde_json::Value) -> Option<String> {
        let mut mine = serde_json::to_value(self).ok()?;
        // Read and written again, a `run.json` of today's shape compares field by field as
        // typed (a missing `limit` is `null`).
        let mut theirs = serde_json::from_value::<RunConfig>(recorded.clone())
            .ok()
            .and_then(|config| serde_json::to_value(config).ok())
            .unwrap_or_else(|| recorded.clone());
        for value in [&mut mine, &mut theirs] {
            if let Some(object) = value.as_object_mut() {
                object.remove("backend");
                object.remove("endpoint");
            }
        }
        let (mine, theirs) = (mine.as_object()?, theirs.as_object()?);
        mine.iter()
            .find(|(key, value)| theirs.get(*key) != Some(value))
            .map(|(key, value)| {
                let before = theirs
                    .get(key)
                    .map_or("nothing".to_owned(), ToString::to_string);
                format!("`{key}` was {before}, now {value}")
            })
    }
}

/// Where the models run: in this process, or behind an OpenAI-compatible server.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum BackendKind {
    Embedded,
    Openai,
}

/// The format of the parts.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum OutputFormat {
    #[serde(rename = "parquet")]
    Parquet,
    #[serde(rename = "jsonl.gz")]
    JsonlGz,
}

impl OutputFormat {
    /// The parts' file extension, also the format's name in `run.json`.
    pub fn extension(self) -> &'static str {
        match self {
            OutputFormat::Parquet => "parquet",
            OutputFormat::JsonlGz => "jsonl.gz",
        }
    }
}

/// How large input files are split into shards.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum SplitPolicy {
    /// Pieces of about `total bytes / (4 × tasks)`, at least 64 MiB.
    Auto,
    /// Pieces of about this many bytes.
    Bytes(u64),
    /// Never split a file.
    Never,
}

/// How the stages prompt, decode and execute, as `run.json` records them (`refiner`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RefinerSettings {
    /// Written first: `mode`, `threshold_1`, `threshold_2`, `error_op`, `min_words`.
    #[serde(flatten)]
    pub execution: Execution,
    #[serde(with = "prompt_mode")]
    pub prompt_mode: PromptMode,
    pub chunk_tokens: usize,
    pub doc_tokens: usize,
    pub doc_max_new_tokens: usize,
    pub chunk_max_new_tokens: usize,
}

/// How a run executed its chunk programs: the mode and thresholds. A setting that `run.json`
/// lacks reads as the reference's, so that a report re-executes programs as the run did.
#[derive(Debug, Clone, Copy, PartialEq, Default, Serialize, Deserialize)]
#[serde(try_from = "ExecutionFields", into = "ExecutionFields")]
pub struct Execution {
    pub mode: Mode,
    pub thresholds: Thresholds,
}

impl Execution {
    pub fn executor(&self) -> Executor {
        Executor::new(self.mode, self.thresholds)
    }
}

/// [`Execution`] as `run.json` writes it.
#[derive(Serialize, Deserialize)]
struct ExecutionFields {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    mode: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    threshold_1: Option<f64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    threshold_2: Option<f64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    error_op: Option<usize>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    min_words: Option<usize>,
}

impl TryFrom<ExecutionFields> for Execution {
    type Error = prox_program::ParseModeError;

    fn try_from(fields: ExecutionFields) -> Result<Self, Self::Error> {
        let reference = Thresholds::default();
        Ok(Execution {
            mode: fields
                .mode
                .as_deref()
                .map_or(Ok(Mode::Faithful), str::parse)?,
            thresholds: Thresholds {
                threshold_1: fields.threshold_1.unwrap_or(reference.threshold_1),
                threshold_2: fields.threshold_2.unwrap_or(reference.threshold_2),
                error_op: fields.error_op.unwrap_or(reference.error_op),
                min_words: fields.min_words.unwrap_or(reference.min_words),
            },
        })
    }
}

impl From<Execution> for ExecutionFields {
    fn from(execution: Execution) -> Self {
        let t = execution.thresholds;
        ExecutionFields {
            mode: Some(execution.mode.as_str().to_owned()),
            threshold_1: Some(t.threshold_1),
            threshold_2: Some(t.threshold_2),
            error_op: Some(t.error_op),
            min_words: Some(t.min_words),
        }
    }
}

/// `prompt_mode` as `run.json` writes it: `faithful` or `robust`.
mod prompt_mode {
    use prox_prompt::PromptMode;
    use serde::{Deserialize, Deserializer, Serializer};

    pub fn serialize<S: Serializer>(mode: &PromptMode, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(match mode {
            PromptMode::Faithful => "faithful",
            PromptMode::Robust => "robust",
        })
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(deserializer: D) -> Result<PromptMode, D::Error> {
        match String::deserialize(deserializer)?.as_str() {
            "faithful" => Ok(PromptMode::Faithful),
            "robust" => Ok(PromptMode::Robust),
            other => Err(serde::de::Error::custom(format!(
                "unknown prompt mode `{other}` (expected `faithful` or `robust`)"
            ))),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A `run.json` as `prox refine --doc-model … --chunk-model …` wrote it before the
    /// configuration was typed.
    const RECORDED: &str = r#"{
  "inputs": [
    "/data/in/web.jsonl"
  ],
  "tasks": 2,
  "stages": {
    "doc": true,
    "chunk": true
  },
  "text_field": "text",
  "id_field": null,
  "doc_model": "/models/tiny-llama",
  "chunk_model": "/models/tiny-llama",
  "backend": "embedded",
  "endpoint": null,
  "refiner": {
    "mode": "faithful",
    "threshold_1": 0.0,
    "threshold_2": 0.95,
    "error_op": 2,
    "min_words": 10,
    "prompt_mode": "faithful",
    "chunk_tokens": 1500,
    "doc_tokens": 2000,
    "doc_max_new_tokens": 2000,
    "chunk_max_new_tokens": 256
  },
  "output_format": "parquet",
  "split": {
    "Bytes": 1048576
  },
  "limit": null
}"#;

    fn recorded() -> RunConfig {
        RunConfig {
            inputs: vec![PathBuf::from("/data/in/web.jsonl")],
            tasks: 2,
            stages: Stages {
                doc: true,
                chunk: true,
            },
            text_field: "text".to_owned(),
            id_field: None,
            doc_model: Some("/models/tiny-llama".to_owned()),
            chunk_model: Some("/models/tiny-llama".to_owned()),
            backend: BackendKind::Embedded,
            endpoint: None,
            refiner: RefinerSettings {
                execution: Execution::default(),
                prompt_mode: PromptMode::Faithful,
                chunk_tokens: 1500,
                doc_tokens: 2000,
                doc_max_new_tokens: 2000,
                chunk_max_new_tokens: 256,
            },
            output_format: OutputFormat::Parquet,
            split: SplitPolicy::Bytes(1 << 20),
            limit: None,
        }
    }

    #[test]
    fn a_run_json_written_before_the_config_was_typed_reads_and_writes_the_same_bytes() {
        let config: RunConfig = serde_json::from_str(RECORDED).unwrap();
        assert_eq!(config, recorded());
        assert_eq!(serde_json::to_string_pretty(&config).unwrap(), RECORDED);
        let as_read = serde_json::from_str(RECORDED).unwrap();
        assert_eq!(config.difference(&as_read), None);
    }

    #[test]
    fn a_rerun_differs_by_its_first_changed_setting_but_not_by_where_the_model_runs() {
        let as_read: serde_json::Value = serde_json::from_str(RECORDED).unwrap();
        let mut elsewhere = recorded();
        elsewhere.backend = BackendKind::Openai;
        elsewhere.endpoint = Some("http://localhost:8000/v1".to_owned());
        assert_eq!(elsewhere.difference(&as_read), None);
        let mut strict = recorded();
        strict.refiner.execution.mode = Mode::Strict;
        strict.output_format = OutputFormat::JsonlGz;
        let difference = strict.difference(&as_read).unwrap();
        assert!(
            difference.starts_with(r#"`refiner` was {"mode":"faithful","#),
            "{difference}"
        );
        assert!(
            difference.contains(r#"now {"mode":"strict","#),
            "{difference}"
        );
    }

    #[test]
    fn an_execution_setting_the_run_json_lacks_is_the_reference_s() {
        let execution: Execution =
            serde_json::from_str(r#"{"mode": "strict", "min_words": 3}"#).unwrap();
        assert_eq!(execution.mode, Mode::Strict);
        assert_eq!(execution.thresholds.min_words, 3);
        assert_eq!(execution.thresholds.threshold_2, 0.95);
        let error = serde_json::from_str::<Execution>(r#"{"mode": "loose"}"#).unwrap_err();
        assert!(error.to_string().contains("loose"), "{error}");
    }

    #[test]
    fn stages_parse_in_order_only() {
        assert_eq!(
            "doc,chunk".parse::<Stages>(),
            Ok(Stages {
                doc: true,
                chunk: true
            })
        );
        assert_eq!("chunk".parse::<Stages>().unwrap().names(), ["chunk"]);
        assert!("chunk,doc".parse::<Stages>().is_err());
        assert!("doc,doc".parse::<Stages>().is_err());
    }
}
