//! The Llama forward pass: layers built from candle-nn pieces, run over *packed* batches.
//!
//! All sequences of a batch are concatenated into one `[total_tokens, hidden]` matrix, so
//! every projection is one matrix product whatever the prompt lengths; each token carries its
//! own rotary position; attention alone runs per sequence (causal within it), so no mask
//! spanning the batch is ever built.
//!
//! Two paths share the weights:
//! - [`Llama::forward`] writes keys and values into preallocated per-sequence [`KvCache`]s
//!   in place and uses fused kernels (no autograd) — prefill and decoding;
//! - [`Llama::forward_uncached`] uses only operations with backward passes (on the CPU the
//!   fused causal attention, RMS norm, rotary embedding and SwiGLU of [`crate::fused`], else
//!   candle's composite forms), for log-likelihoods and training.

mod attention;
mod kv_cache;
mod linear;
mod llama;
#[cfg(test)]
mod tests;

use candle_core::Tensor;

pub use attention::{Attention, Rotary};
pub use kv_cache::KvCache;
pub use linear::{Linear, Q8Kernel, Quantization, Q8_DENSE_MIN_TOKENS};
pub use llama::{DecoderLayer, Llama, LogitsAt, Mlp, RmsNorm};

type CResult<T> = candle_core::Result<T>;

/// The token layout of one forward call.
struct PackedBatch {
    lens: Vec<usize>,
    /// Each token's position in its sequence (`u32`, `[total_tokens]`).
    positions: Tensor,
    /// Per sequence: whether its Q8_0 products run on dequantized weights.
    dense: Vec<bool>,
}

/// Consecutive sequences of a packed batch that take the same Q8_0 path.
struct DenseRun {
    tokens: usize,
    dense: bool,
}

impl PackedBatch {
    fn dense_runs(&self) -> Vec<DenseRun> {
        let mut runs: Vec<DenseRun> = Vec::new();
        for (&tokens, &dense) in self.lens.iter().zip(&self.dense) {
            match runs.last_mut() {
                Some(run) if run.dense == dense => run.tokens += tokens,
                _ => runs.push(DenseRun { tokens, dense }),
            }
        }
        runs
    }
}
