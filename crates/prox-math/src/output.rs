//! The harness's output files (spec §9): a JSON line per sample and the metrics JSON.

use std::collections::BTreeMap;

use serde_json::{Map, Value};

use crate::equal::Verdict;
use crate::{python, Example};

/// The harness's file names for a dataset run with prompt type `cot`, greedy, all samples.
pub const SAMPLES_FILE: &str = "test_cot_-1_seed0_t0.0_s0_e-1.jsonl";
pub const METRICS_FILE: &str = "test_cot_-1_seed0_t0.0_s0_e-1_cot_metrics.json";

/// One example with its completion, prediction and grade.
#[derive(Debug, Clone)]
pub struct Scored {
    pub example: Example,
    /// The stripped completion (the harness's `code`).
    pub code: String,
    pub pred: Option<String>,
    pub verdict: Verdict,
}

impl Scored {
    pub fn score(&self) -> bool {
        self.verdict.is_equal()
    }

    /// The sample as the harness writes it: `idx`, `question`, `gt_cot`, `gt`, the kept
    /// fields, then one-element lists `code`, `pred`, `report`, `score`.
    pub fn to_json(&self) -> Value {
        let e = &self.example;
        let mut map = Map::new();
        map.insert("idx".into(), Value::from(e.idx));
        map.insert("question".into(), Value::from(e.question.clone()));
        map.insert("gt_cot".into(), Value::from(e.gt_cot.clone()));
        map.insert("gt".into(), Value::from(e.gt.clone()));
        for (key, value) in &e.extras {
            map.insert(key.clone(), value.clone());
        }
        map.insert("code".into(), Value::from(vec![self.code.clone()]));
        map.insert(
            "pred".into(),
            Value::Array(vec![self.pred.clone().map_or(Value::Null, Value::from)]),
        );
        map.insert("report".into(), Value::Array(vec![Value::Null]));
        map.insert(
            "score".into(),
            Value::Array(vec![Value::Bool(self.score())]),
        );
        Value::Object(map)
    }

    /// The sample's line in the samples file (`json.dumps`, ASCII-escaped, with `\n`).
    pub fn to_line(&self) -> String {
        let mut line = python::json_dumps(&self.to_json());
        line.push('\n');
        line
    }
}

/// What the harness's `evaluate` reports for a dataset; read back from the metrics file by
/// [`Metrics::read`] (its `time_use_in_minite` is derived, so not kept).
#[derive(Debug, Clone, PartialEq, serde::Deserialize)]
pub struct Metrics {
    pub num_samples: usize,
    pub num_scores: usize,
    pub timeout_samples: usize,
    pub empty_samples: usize,
    /// Percent correct, rounded to one decimal as numpy rounds (NaN, written `null`, for no
    /// samples).
    #[serde(deserialize_with = "null_as_nan")]
    pub acc: f64,
    /// Per `type` (mawps, mathqa, mmlu_stem), keys ascending; `None` when samples have none.
    #[serde(default)]
    pub type_acc: Option<BTreeMap<String, f64>>,
    /// Generation and extraction time.
    pub time_use_in_second: f64,
}

/// A float that JSON holds as `null` when it is NaN.
pub(crate) fn null_as_nan<'de, D: serde::Deserializer<'de>>(
    deserializer: D,
) -> Result<f64, D::Error> {
    let value: Option<f64> = serde::Deserialize::deserialize(deserializer)?;
    Ok(value.unwrap_or(f64::NAN))
}

impl Metrics {
    /// The metrics of `samples` (sorted by idx, one prediction each).
    pub fn of(samples: &[Scored], time_use_in_second: f64) -> Metrics {
        let n = samples.len();
        let correct = samples.iter().filter(|s| s.score()).count();
        let type_acc = samples
            .first()
            .filter(|s| s.example.extras.contains_key("type"))
            .map(|_| {
                let mut groups: BTreeMap<String, (usize, usize)> = BTreeMap::new();
                for sample in samples {
                    if let Some(kind) = sample.example.extras.get("type") {
                        let entry = groups.entry(python::str_of(kind)).or_default();
                        entry.0 += usize::from(sample.score());
                        entry.1 += 1;
                    }
                }
                groups
                    .into_iter()
                    .map(|(kind, (k, n))| (kind, percent(k, n)))
                    .collect()
            });
        Metrics {
            num_samples: n,
            num_scores: n,
            timeout_samples: samples
                .iter()
                .filter(|s| s.verdict == Verdict::Timeout)
                .count(),
            empty_samples: samples
                .iter()
                .filter(|s| s.pred.as_deref().is_none_or(str::is_empty))
                .count(),
            acc: percent(correct, n),
            type_acc,
            time_use_in_second,
        }
    }

    /// Reads a metrics file ([`METRICS_FILE`]); one cut short is an error naming it.
    pub fn read(path: &std::path::Path) -> crate::Result<Metrics> {
        crate::run::read_json(path)
    }

    /// The metrics file's content: `json.dump(…, indent=4)`, no final newline.
    pub fn to_json_text(&self) -> String {
        let mut map = Map::new();
        map.insert("num_samples".into(), Value::from(self.num_samples));
        map.insert("num_scores".into(), Value::from(self.num_scores));
        map.insert("timeout_samples".into(), Value::from(self.timeout_samples));
        map.insert("empty_samples".into(), Value::from(self.empty_samples));
        map.insert("acc".into(), float(self.acc));
        if let Some(types) = &self.type_acc {
            let types: Map<String, Value> =
                types.iter().map(|(k, v)| (k.clone(), float(*v))).collect();
            map.insert("type_acc".into(), Value::Object(types));
        }
        map.insert("time_use_in_second".into(), float(self.time_use_in_second));
        map.insert(
            "time_use_in_minite".into(),
            Value::from(minutes_seconds(self.time_use_in_second)),
        );
        python::json_dumps_indented(&Value::Object(map), 4)
    }
}

/// `np.round(k / n * 100, decimals=1)`; NaN for no samples, as numpy's mean of nothing.
pub fn percent(k: usize, n: usize) -> f64 {
    if n == 0 {
        return f64::NAN;
    }
    python::round1(k as f64 / n as f64 * 100.0)
}

/// A float as JSON; NaN, which JSON cannot hold, as null.
fn float(x: f64) -> Value {
    serde_json::Number::from_f64(x).map_or(Value::Null, Value::Number)
}

/// The harness's `f"{int(t // 60)}:{int(t % 60):02d}"`.
pub fn minutes_seconds(seconds: f64) -> String {
    let seconds = seconds.max(0.0);
    format!(
        "{}:{:02}",
        (seconds / 60.0).floor() as u64,
        (seconds % 60.0).floor() as u64
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::Dataset;
    use serde_json::json;

    fn scored(idx: i64, kind: Option<&str>, pred: Option<&str>, verdict: Verdict) -> Scored {
        let mut extras = Map::new();
        if let Some(kind) = kind {
            extras.insert("type".into(), json!(kind));
        }
        Scored {
            example: Example {
                dataset: Dataset::Mawps,
                idx,
                question: "Q é".into(),
                gt_cot: "None".into(),
                gt: "3".into(),
                extras,
            },
            code: "The answer is 3.".into(),
            pred: pred.map(str::to_owned),
            verdict,
        }
    }

    #[test]
    fn sample_lines_keep_the_harness_key_order_and_escaping() {
        let sample = scored(7, Some("singleop"), Some("3"), Verdict::Equal);
        assert_eq!(
            sample.to_line(),
            "{\"idx\": 7, \"question\": \"Q \\u00e9\", \"gt_cot\": \"None\", \"gt\": \"3\", \
             \"type\": \"singleop\", \"code\": [\"The answer is 3.\"], \"pred\": [\"3\"], \
             \"report\": [null], \"score\": [true]}\n"
        );
        let empty = scored(8, None, None, Verdict::NotEqual);
        assert!(empty
            .to_line()
            .contains("\"pred\": [null], \"report\": [null], \"score\": [false]"));
    }

    #[test]
    fn metrics_count_timeouts_and_empty_predictions_and_round_like_numpy() {
        let samples = vec![
            scored(0, Some("b"), Some("3"), Verdict::Equal),
            scored(1, Some("a"), Some(""), Verdict::NotEqual),
            scored(2, Some("b"), None, Verdict::NotEqual),
            scored(3, Some("a"), Some("x"), Verdict::Timeout),
            scored(4, Some("b"), Some("placeholder"), Verdict::NotEqual),
            scored(5, Some("b"), Some("3"), Verdict::Equal),
        ];
        let metrics = Metrics::of(&samples, 125.5);
        assert_eq!(metrics.timeout_samples, 1);
        assert_eq!(metrics.empty_samples, 2);
        assert_eq!(metrics.acc, 33.3);
        assert_eq!(
            metrics.to_json_text(),
            "{\n    \"num_samples\": 6,\n    \"num_scores\": 6,\n    \"timeout_samples\": 1,\n    \
             \"empty_samples\": 2,\n    \"acc\": 33.3,\n    \"type_acc\": {\n        \"a\": 0.0,\n        \
             \"b\": 50.0\n    },\n    \"time_use_in_second\": 125.5,\n    \"time_use_in_minite\": \"2:05\"\n}"
        );
    }

    #[test]
    fn metrics_read_back_from_their_file() {
        let samples = [scored(0, Some("b"), Some("3"), Verdict::Equal)];
        let metrics = Metrics::of(&samples, 1.5);
        let dir = tempfile::tempdir().expect("a temporary folder");
        let path = dir.path().join(METRICS_FILE);
        std::fs::write(&path, metrics.to_json_text()).expect("written");
        assert_eq!(Metrics::read(&path).expect("a whole file reads"), metrics);
        let empty = Metrics::of(&[], 0.0);
        std::fs::write(&path, empty.to_json_text()).expect("written");
        assert!(Metrics::read(&path).expect("reads").acc.is_nan());
    }

    #[test]
    fn metrics_without_types_have_no_type_acc() {
        let metrics = Metrics::of(&[scored(0, None, Some("3"), Verdict::Equal)], 0.25);
        assert!(metrics.type_acc.is_none());
        assert!(!metrics.to_json_text().contains("type_acc"));
        assert!(metrics
            .to_json_text()
            .contains("\"time_use_in_minite\": \"0:00\""));
    }

    #[test]
    fn percentages_round_half_to_even() {
        // 1/8 = 12.5% exactly; 1/16 = 6.25% → 62.5 → 62 → 6.2.
        assert_eq!(percent(1, 8), 12.5);
        assert_eq!(percent(1, 16), 6.2);
        assert_eq!(percent(3, 16), 18.8);
        assert_eq!(percent(2, 3), 66.7);
    }
}
