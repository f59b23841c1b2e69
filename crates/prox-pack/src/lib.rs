//! Training data in the packed format of litgpt / TinyLlama, which ProX trains on.
//!
//! A packed dataset is a folder of files `{prefix}_{counter:010}.bin`. Each file is a 24-byte
//! [`Header`] (magic `LITPKDS`, version 1 as u64 little endian, a [`Dtype`] code as u8, the chunk
//! size in tokens as u64 little endian) followed by exactly `chunk_size` tokens. The reference
//! recipe (ProX's `prepare_web`, litgpt's `PackedDatasetBuilder`) stores tokens as u16 when the
//! vocabulary has fewer than 65 500 entries, else as i32 ([`Dtype::for_vocab_size`]).
//!
//! - [`PackedWriter`] fills chunks across document boundaries and writes each file atomically;
//!   like the reference, it drops the last partial chunk unless told to keep it ([`Remainder`]).
//! - [`PackedFile`] and [`PackedReader`] read files back and refuse a bad magic, version, dtype
//!   or length with an error naming the file.
//! - [`Recipe`] turns the ids of each document's text (as the reference's fast Hugging Face
//!   tokenizer gives them, e.g. from `prox-tokenizer`) into the tokens the reference packs.
//! - [`pack`] runs a whole packing job over input files, as the reference's `prepare_web`
//!   processes do, with failures and a [`DatasetSummary`]; it tells its progress to a
//!   [`Reporter`].
//!
//! ```
//! use prox_pack::{Dtype, Header, PackedReader, PackedWriter, Remainder};
//! # let dir = tempfile::tempdir().unwrap();
//! let header = Header { dtype: Dtype::for_vocab_size(32000), chunk_size: 4 };
//! let mut writer = PackedWriter::new(dir.path(), "train_web_0", header, 1)?;
//! writer.push(&[450, 4996, 2])?; // one document: its tokens, then EOS
//! writer.push(&[17354, 2])?; // the next fills the chunk and spills into a second one
//! let summary = writer.finish(Remainder::Drop)?;
//! assert_eq!(summary.files.len(), 1);
//! assert_eq!(summary.tokens_discarded, 1);
//!
//! let tokens: Vec<i64> = PackedReader::open_dir(dir.path(), "train_web_0")?
//!     .map(|file| file.map(|f| f.tokens().map(|t| t.collect::<Vec<_>>())))
//!     .collect::<Result<Result<Vec<_>, _>, _>>()??
//!     .concat();
//! assert_eq!(tokens, [450, 4996, 2, 17354]);
//! # Ok::<(), prox_pack::Error>(())
//! ```

mod error;
mod format;
mod pack;
mod reader;
mod recipe;
mod writer;

pub use error::Error;
pub use format::{
    file_name, Dtype, Header, DEFAULT_CHUNK_SIZE, HEADER_LEN, MAGIC, U16_VOCAB_LIMIT, VERSION,
};
pub use pack::{
    dtype_for, pack, stream_prefixes, DatasetSummary, Format, PackOptions, Reporter, Silent,
};
pub use reader::{dataset_files, read_header, PackedFile, PackedReader, TokenCounts};
pub use recipe::Recipe;
pub use writer::{PackSummary, PackedWriter, Remainder};
