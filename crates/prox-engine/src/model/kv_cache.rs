//! Per-sequence key/value caches, preallocated and written in place.

use candle_core::Tensor;

use super::{CResult, Llama};

/// A sequence's keys and values for every layer, preallocated to a fixed capacity and
/// written in place as the sequence grows.
#[derive(Debug)]
pub struct KvCache {
    /// `(keys, values)` per layer, each `[capacity, kv_heads, head_dim]`.
    pub(super) layers: Vec<(Tensor, Tensor)>,
    pub(super) len: usize,
    pub(super) capacity: usize,
}

impl KvCache {
    /// An empty cache for up to `capacity` tokens (at most the model's context).
    pub fn new(model: &Llama, capacity: usize) -> candle_core::Result<Self> {
        let cfg = model.config();
        let capacity = capacity.min(cfg.max_position_embeddings);
        let shape = (capacity, cfg.num_kv_heads, cfg.head_dim);
        let zeros = || Tensor::zeros(shape, model.dtype(), model.device());
        let layers = (0..cfg.num_layers)
            .map(|_| Ok((zeros()?, zeros()?)))
            .collect::<CResult<Vec<_>>>()?;
        Ok(KvCache {
            layers,
            len: 0,
            capacity,
        })
    }

    /// Tokens held.
    pub fn len(&self) -> usize {
        self.len
    }

    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    pub fn capacity(&self) -> usize {
        self.capacity
    }

    /// Forgets the tokens after the first `len` (to score alternatives after one prefill).
    pub fn truncate(&mut self, len: usize) {
        self.len = self.len.min(len);
    }

    /// A cache that holds nothing and can hold nothing.
    pub fn empty() -> Self {
        KvCache {
            layers: Vec::new(),
            len: 0,
            capacity: 0,
        }
    }

    /// A copy holding the same tokens (its own storage).
    pub fn try_clone(&self) -> candle_core::Result<Self> {
        let layers = self
            .layers
            .iter()
            .map(|(k, v)| Ok((k.copy()?, v.copy()?)))
            .collect::<CResult<Vec<_>>>()?;
        Ok(KvCache {
            layers,
            len: self.len,
            capacity: self.capacity,
        })
    }
}
