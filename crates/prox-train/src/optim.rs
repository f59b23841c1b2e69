//! AdamW with decoupled weight decay and gradient clipping by total norm, computed as
//! PyTorch's single-tensor `AdamW` and `clip_grad_norm_` compute them in float32, on host
//! copies of the parameters (the optimiser state is plain vectors, saved with checkpoints).

use rayon::prelude::*;

/// Values per parallel block of the optimiser's passes.
const BLOCK: usize = 1 << 16;

/// The optimiser's hyper-parameters (the learning rate comes from the schedule each step).
#[derive(Debug, Clone, Copy, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct AdamWConfig {
    pub beta1: f64,
    pub beta2: f64,
    pub eps: f64,
    /// Decoupled decay applied to every parameter, as the reference does.
    pub weight_decay: f64,
}

impl Default for AdamWConfig {
    fn default() -> Self {
        AdamWConfig {
            beta1: 0.9,
            beta2: 0.95,
            eps: 1e-8,
            weight_decay: 0.1,
        }
    }
}

/// The moments of one parameter tensor.
#[derive(Debug, Clone, PartialEq)]
pub struct Moments {
    pub exp_avg: Vec<f32>,
    pub exp_avg_sq: Vec<f32>,
}

/// AdamW's state: the steps taken and the moments of every parameter.
#[derive(Debug, Clone, PartialEq)]
pub struct AdamW {
    pub config: AdamWConfig,
    pub steps: u64,
    pub moments: Vec<Moments>,
}

impl AdamW {
    /// Zero moments for parameters of these sizes.
    pub fn new(config: AdamWConfig, sizes: &[usize]) -> Self {
        AdamW {
            config,
            steps: 0,
            moments: sizes
                .iter()
                .map(|&n| Moments {
                    exp_avg: vec![0.0; n],
                    exp_avg_sq: vec![0.0; n],
                })
                .collect(),
        }
    }

    /// One update of `params` with `grads` (same order and sizes as at construction).
    pub fn step(&mut self, params: &mut [Vec<f32>], grads: &[Vec<f32>], lr: f64) {
        self.steps += 1;
        let c = self.config;
        let step = self.steps as f64;
        // The scalars are computed in f64 and rounded once to f32, as PyTorch passes Python
        // floats to float32 kernels.
        let decay = (1.0 - lr * c.weight_decay) as f32;
        let one_minus_beta1 = (1.0 - c.beta1) as f32;
        let beta2 = c.beta2 as f32;
        let one_minus_beta2 = (1.0 - c.beta2) as f32;
        let bias_correction1 = 1.0 - c.beta1.powf(step);
        let bias_correction2_sqrt = (1.0 - c.beta2.powf(step)).sqrt() as f32;
        let neg_step_size = (-lr / bias_correction1) as f32;
        let eps = c.eps as f32;
        for ((param, grad), moments) in params.iter_mut().zip(grads).zip(&mut self.moments) {
            let Moments {
                exp_avg,
                exp_avg_sq,
            } = moments;
            // Elementwise, so the blocks' order does not change a bit.
            param
                .par_chunks_mut(BLOCK)
                .zip(grad.par_chunks(BLOCK))
                .zip(exp_avg.par_chunks_mut(BLOCK))
                .zip(exp_avg_sq.par_chunks_mut(BLOCK))
                .for_each(|(((param, grad), exp_avg), exp_avg_sq)| {
                    for (((p, &g), m), v) in param
                        .iter_mut()
                        .zip(grad)
                        .zip(exp_avg.iter_mut())
                        .zip(exp_avg_sq.iter_mut())
                    {
                        *p *= decay;
                        *m += one_minus_beta1 * (g - *m);
                        *v = *v * beta2 + one_minus_beta2 * g * g;
                        let denom = v.sqrt() / bias_correction2_sqrt + eps;
                        *p += neg_step_size * *m / denom;
                    }
                });
        }
    }
}

/// The total L2 norm of all gradients (accumulated in f64).
pub fn total_norm(grads: &[Vec<f32>]) -> f64 {
    // Partial sums of fixed blocks, added in order: the same bits on any number of threads.
    let blocks: Vec<f64> = grads
        .par_iter()
        .flat_map(|g| g.par_chunks(BLOCK))
        .map(|block| {
            block
                .iter()
                .map(|&x| f64::from(x) * f64::from(x))
                .sum::<f64>()
        })
        .collect();
    blocks.iter().sum::<f64>().sqrt()
}

/// Scales the gradients so that their total norm is at most `max_norm`, as
/// `torch.nn.utils.clip_grad_norm_` does; returns the norm before clipping.
pub fn clip_by_total_norm(grads: &mut [Vec<f32>], max_norm: f64) -> f64 {
    let norm = total_norm(grads);
    let coef = (max_norm as f32 / (norm as f32 + 1e-6)).min(1.0);
    if coef < 1.0 {
        grads
            .par_iter_mut()
            .flat_map(|g| g.par_chunks_mut(BLOCK))
            .for_each(|block| block.iter_mut().for_each(|x| *x *= coef));
    }
    norm
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_first_step_moves_each_weight_by_the_rate_against_its_gradient_sign() {
        let config = AdamWConfig {
            weight_decay: 0.0,
            ..AdamWConfig::default()
        };
        let mut opt = AdamW::new(config, &[3]);
        let mut params = vec![vec![1.0f32, 1.0, 1.0]];
        opt.step(&mut params, &[vec![0.5, -2.0, 0.0]], 0.01);
        let expected = [0.99, 1.01, 1.0];
        for (p, e) in params[0].iter().zip(expected) {
            assert!((p - e).abs() < 1e-6, "{p} {e}");
        }
        assert_eq!(opt.steps, 1);
    }

    #[test]
    fn weight_decay_is_decoupled_from_the_gradient() {
        let mut opt = AdamW::new(AdamWConfig::default(), &[1]);
        let mut params = vec![vec![2.0f32]];
        opt.step(&mut params, &[vec![0.0]], 0.5);
        assert!((params[0][0] - 2.0 * (1.0 - 0.05)).abs() < 1e-6);
    }

    #[test]
    fn clipping_scales_to_the_maximum_norm_and_leaves_small_gradients() {
        let mut grads = vec![vec![3.0f32], vec![4.0]];
        let norm = clip_by_total_norm(&mut grads, 1.0);
        assert_eq!(norm, 5.0);
        assert!((total_norm(&grads) - 1.0).abs() < 1e-6);
        let mut small = vec![vec![0.3f32, 0.4]];
        clip_by_total_norm(&mut small, 1.0);
        assert_eq!(small, vec![vec![0.3f32, 0.4]]);
    }
}
