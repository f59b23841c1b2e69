//! What the pre-training and fine-tuning tests share: a small model and the checks of a run
//! killed and resumed.

use std::path::Path;

use prox_engine::Config;
use prox_train::metrics::{MetricsLine, StepMetrics};

/// The vocabulary of the small model and of the data generated for it.
pub const VOCAB: usize = 96;

/// Two layers of width 32 with grouped-query attention: small enough for a run of a few
/// steps on a CPU.
pub fn small_config() -> Config {
    Config {
        hidden_size: 32,
        intermediate_size: 48,
        num_layers: 2,
        num_heads: 4,
        num_kv_heads: 2,
        head_dim: 8,
        vocab_size: VOCAB,
        max_position_embeddings: 64,
        tie_word_embeddings: false,
        ..prox_train::named_config("tiny").unwrap()
    }
}

/// The run's `metrics.jsonl` without its timings: `(step, loss, Some(of_step))` for a
/// training step, `(step, val_loss, None)` for a validation.
pub fn logged(out: &Path, of_step: fn(&StepMetrics) -> f64) -> Vec<(u64, f64, Option<f64>)> {
    std::fs::read_to_string(out.join("metrics.jsonl"))
        .unwrap()
        .lines()
        .map(|l| match serde_json::from_str::<MetricsLine>(l).unwrap() {
            MetricsLine::Step(m) => (m.step, m.loss, Some(of_step(&m))),
            MetricsLine::Validation { step, val_loss } => (step, val_loss, None),
        })
        .collect()
}

/// Starting again in a killed run's folder is refused without `resume`, and with it when the
/// recipe changed (a learning rate of 0.001 where the run had 0.003). `start(resume, lr)`
/// builds the trainer and returns its error.
pub fn assert_restarts_are_refused(start: impl Fn(bool, f64) -> Option<String>) {
    let refused = start(false, 3e-3).expect("starting without resume is refused");
    assert!(refused.contains("--resume"), "{refused}");
    let refused = start(true, 1e-3).expect("resuming with another recipe is refused");
    assert!(
        refused.contains("lr: checkpoint 0.003 vs now 0.001"),
        "{refused}"
    );
}

/// The checkpoint `step_dir` of two runs holds the same weights, optimiser state and trainer
/// state, byte for byte.
pub fn assert_same_checkpoint(a: &Path, b: &Path, step_dir: &str) {
    for file in [
        "model.safetensors",
        "optimizer.safetensors",
        "trainer_state.json",
    ] {
        let a = std::fs::read(a.join(step_dir).join(file)).unwrap();
        let b = std::fs::read(b.join(step_dir).join(file)).unwrap();
        assert!(a == b, "{file} differs");
    }
}
