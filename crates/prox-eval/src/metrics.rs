//! lighteval's metrics and ProX's aggregation: `acc` (`loglikelihood_acc`), `acc_norm`
//! (`loglikelihood_acc_norm_nospace`), standard errors, the MMLU mean and the ProX average.

use serde::Serialize;

/// The divisor of `acc_norm`: the choice's Unicode characters, minus one when it starts with
/// a space (unless `count_leading_space`, WinoGrande).
pub fn norm_char_length(choice: &str, count_leading_space: bool) -> usize {
    let chars = choice.chars().count();
    if !count_leading_space && choice.starts_with(' ') {
        chars - 1
    } else {
        chars
    }
}

/// The first index of the largest value.
pub fn first_argmax(values: &[f64]) -> usize {
    let mut best = 0;
    for (i, &v) in values.iter().enumerate() {
        if v > values[best] {
            best = i;
        }
    }
    best
}

/// A document's result.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct DocOutcome {
    pub pred: usize,
    pub pred_norm: usize,
    pub acc: bool,
    pub acc_norm: bool,
    /// `logprob_sum / norm_char_length` per choice (a zero length gives ±infinity, a choice
    /// that cannot win, where Python would divide by zero).
    pub normalized_logprobs: Vec<f64>,
    pub norm_char_lengths: Vec<usize>,
}

/// Scores one document from its per-choice log-probability sums.
pub fn doc_outcome(
    logprob_sums: &[f64],
    choices: &[String],
    gold_index: usize,
    count_leading_space: bool,
) -> DocOutcome {
    let norm_char_lengths: Vec<usize> = choices
        .iter()
        .map(|c| norm_char_length(c, count_leading_space))
        .collect();
    let normalized_logprobs: Vec<f64> = logprob_sums
        .iter()
        .zip(&norm_char_lengths)
        .map(|(&sum, &len)| sum / len as f64)
        .collect();
    let pred = first_argmax(logprob_sums);
    let pred_norm = first_argmax(&normalized_logprobs);
    DocOutcome {
        pred,
        pred_norm,
        acc: pred == gold_index,
        acc_norm: pred_norm == gold_index,
        normalized_logprobs,
        norm_char_lengths,
    }
}

/// A mean and its standard error.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct Mean {
    pub value: f64,
    /// The sample standard deviation (n − 1) over √n, as lighteval's `mean_stderr`; `None`
    /// for fewer than two values.
    pub stderr: Option<f64>,
}

impl Mean {
    pub fn of(values: &[f64]) -> Mean {
        let n = values.len() as f64;
        let value = if values.is_empty() {
            0.0
        } else {
            values.iter().sum::<f64>() / n
        };
        let stderr = (values.len() >= 2).then(|| {
            let var = values.iter().map(|v| (v - value).powi(2)).sum::<f64>() / (n - 1.0);
            (var / n).sqrt()
        });
        Mean { value, stderr }
    }

    /// The unweighted mean of means; its error as of independent means,
    /// √(Σ stderr²) / k (`None` when one is missing).
    pub fn average(means: &[Mean]) -> Mean {
        let k = means.len() as f64;
        let value = if means.is_empty() {
            0.0
        } else {
            means.iter().map(|m| m.value).sum::<f64>() / k
        };
        let stderr = means
            .iter()
            .map(|m| m.stderr.map(|s| s * s))
            .sum::<Option<f64>>()
            .filter(|_| !means.is_empty())
            .map(|sum| sum.sqrt() / k);
        Mean { value, stderr }
    }
}

/// A task's scores over its documents.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct TaskScore {
    pub n_docs: usize,
    pub acc: Mean,
    pub acc_norm: Mean,
}

impl TaskScore {
    pub fn of(outcomes: &[DocOutcome]) -> TaskScore {
        let flag = |b: bool| if b { 1.0 } else { 0.0 };
        let acc: Vec<f64> = outcomes.iter().map(|o| flag(o.acc)).collect();
        let acc_norm: Vec<f64> = outcomes.iter().map(|o| flag(o.acc_norm)).collect();
        TaskScore {
            n_docs: outcomes.len(),
            acc: Mean::of(&acc),
            acc_norm: Mean::of(&acc_norm),
        }
    }

    /// The unweighted mean of several tasks' scores (`mmlu:_average`, the ProX average).
    pub fn average(scores: &[TaskScore]) -> TaskScore {
        let acc: Vec<Mean> = scores.iter().map(|s| s.acc).collect();
        let acc_norm: Vec<Mean> = scores.iter().map(|s| s.acc_norm).collect();
        TaskScore {
            n_docs: scores.iter().map(|s| s.n_docs).sum(),
            acc: Mean::average(&acc),
            acc_norm: Mean::average(&acc_norm),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_norm_drops_one_leading_space_and_counts_characters() {
        assert_eq!(norm_char_length(" café ☕", false), 6);
        assert_eq!(norm_char_length("  x", false), 2);
        assert_eq!(norm_char_length(" x", true), 2);
    }

    #[test]
    fn ties_go_to_the_first_choice() {
        assert_eq!(first_argmax(&[-1.0, -0.5, -0.5]), 1);
        let o = doc_outcome(&[-4.0, -3.0], &[" ab".into(), " abcd".into()], 1, false);
        assert_eq!((o.pred, o.pred_norm, o.acc, o.acc_norm), (1, 1, true, true));
    }

    #[test]
    fn the_stderr_uses_the_sample_deviation() {
        let m = Mean::of(&[1.0, 0.0, 1.0, 0.0]);
        assert_eq!(m.value, 0.5);
        let expected = (1.0f64 / 3.0 / 4.0).sqrt();
        assert!((m.stderr.unwrap() - expected).abs() < 1e-12);
        assert_eq!(Mean::of(&[1.0]).stderr, None);
    }
}
