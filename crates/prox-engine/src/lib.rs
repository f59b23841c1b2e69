//! The embedded inference engine of ProX-rs: the refining models run in-process, on the CPU
//! by default (CUDA behind the `cuda` feature: [`DeviceSpec`], [`LoadOptions::device`]),
//! without Python.
//!
//! - [`Model::load`] reads a Hugging Face Llama folder (`config.json`, `model.safetensors`
//!   or sharded safetensors with an index; f32/bf16/f16 weights) or a llama-architecture
//!   GGUF file (quantized weights, tokenizer and chat template from its metadata).
//!   Safetensors are read one tensor at a time ([`SafetensorsWeights`]) and
//!   [`LoadOptions::quantize`] quantizes each weight as it is read, so loading holds the
//!   model plus one tensor, never the files' bytes beside it.
//! - [`Llama::forward`] runs a *packed* batch: the new tokens of all sequences in one
//!   `[tokens, hidden]` matrix, each token with its own rotary position, attention per
//!   sequence into preallocated [`KvCache`]s written in place; logits at every position or
//!   at chosen ones. [`Llama::forward_uncached`] is the differentiable twin.
//! - [`generate`] decodes greedily over a batch of prompts of different lengths; the
//!   result of a prompt does not depend on its batch companions. [`generate_text`] also
//!   ends each generation at its stop strings, matched on the text as it is decoded
//!   ([`StopMatcher`]), and returns the text before the first one, as vLLM's `stop` does.
//!
//! ```no_run
//! use prox_engine::{generate, GenerateOptions, LoadOptions, Model, Request};
//!
//! let model = Model::load("models/web-doc-refining-lm".as_ref(), &LoadOptions::default())?;
//! let requests = vec![Request { prompt_ids: vec![1, 518, 25580, 29962], max_new_tokens: 8 }];
//! for result in generate(&model.llama, &requests, &GenerateOptions::default())? {
//!     let generation = result?;
//!     println!("{:?} ({})", generation.ids, generation.finish_reason.as_str());
//! }
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```

mod choice;
mod config;
mod cpu;
mod device;
mod error;
mod exp;
pub mod float_gemm;
pub mod float_rows;
pub mod fused;
mod generate;
pub mod gguf;
pub mod gguf_tokenizer;
pub mod hub;
mod load;
mod model;
pub mod q8;
mod stop;
mod weights;

pub use candle_core::quantized::GgmlDType;
pub use candle_core::{DType, Device};

pub use crate::choice::{choose, Choice, ChooseOptions};
pub use crate::config::{Config, HfConfig, TokenIds};
pub use crate::cpu::CpuKernels;
pub use crate::device::{parse_device, DeviceSpec, CUDA_BUILD};
pub use crate::error::{Error, RequestError, Result};
pub use crate::generate::{
    argmax_with_margin, generate, generate_text, FinishReason, GenerateOptions, Generation,
    Request, TextGeneration, TextRequest,
};
pub use crate::hub::{hub_cache_dir, resolve_model, resolve_model_in};
pub use crate::load::{safetensors_files, LoadOptions, Model};
pub use crate::model::{
    Attention, DecoderLayer, KvCache, Linear, Llama, LogitsAt, Mlp, Q8Kernel, Quantization,
    RmsNorm, Rotary,
};
pub use crate::q8::Q8Matrix;
pub use crate::stop::{StopMatcher, StopText};
pub use crate::weights::SafetensorsWeights;
