//! The learning rate of the reference's pretraining script (TinyLlama `get_lr`): linear
//! warm-up from zero, then cosine decay to the minimum at the last step.

/// Warm-up then cosine decay, counted in optimiser steps.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct LrSchedule {
    pub max_lr: f64,
    pub min_lr: f64,
    pub warmup_steps: u64,
    pub max_steps: u64,
}

impl LrSchedule {
    /// The rate of optimiser step `step` (0-based). As in the reference, step 0 of a warm-up
    /// has rate 0; without warm-up the first rate is `max_lr`.
    pub fn lr(&self, step: u64) -> f64 {
        if step < self.warmup_steps {
            return self.max_lr * step as f64 / self.warmup_steps as f64;
        }
        if step >= self.max_steps || self.max_steps <= self.warmup_steps {
            return if step == self.warmup_steps {
                self.max_lr
            } else {
                self.min_lr
            };
        }
        let ratio = (step - self.warmup_steps) as f64 / (self.max_steps - self.warmup_steps) as f64;
        let coeff = 0.5 * (1.0 + (std::f64::consts::PI * ratio).cos());
        self.min_lr + coeff * (self.max_lr - self.min_lr)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn warm_up_is_linear_then_the_cosine_falls_to_the_minimum() {
        let s = LrSchedule {
            max_lr: 1e-3,
            min_lr: 1e-4,
            warmup_steps: 10,
            max_steps: 110,
        };
        assert_eq!(s.lr(0), 0.0);
        assert!((s.lr(5) - 5e-4).abs() < 1e-15);
        assert_eq!(s.lr(10), 1e-3);
        assert!((s.lr(60) - 5.5e-4).abs() < 1e-12);
        assert!((s.lr(110) - 1e-4).abs() < 1e-15);
        assert_eq!(s.lr(500), 1e-4);
        let falling = (10..110).map(|i| s.lr(i)).collect::<Vec<_>>();
        assert!(falling.windows(2).all(|w| w[1] < w[0]));
    }

    #[test]
    fn without_warm_up_the_first_step_has_the_full_rate() {
        let s = LrSchedule {
            max_lr: 5e-4,
            min_lr: 5e-4,
            warmup_steps: 0,
            max_steps: 3,
        };
        assert_eq!([s.lr(0), s.lr(1), s.lr(2)], [5e-4; 3]);
    }
}
