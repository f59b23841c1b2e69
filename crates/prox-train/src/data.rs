//! Training blocks from litgpt packed files, drawn as the reference's `PackedDataset` and
//! `CombinedDataset` (TinyLlama `lit_gpt/packed_dataset.py`) draw them.
//!
//! - A folder's files are listed, sorted, then shuffled with the seed.
//! - They are read `n_chunks` at a time (a *window*); each file holds
//!   `chunk_size / block_size` non-overlapping blocks of `block_size = seq_len + 1` tokens
//!   (the rest of a file is never read, as in the reference); the blocks of a window are
//!   drawn in a seeded random order.
//! - Several folders are mixed by drawing, for every block, a folder with probability
//!   proportional to its weight.
//!
//! Where the reference stops or silently skips files, this reader goes on: the last window of
//! an epoch takes the files that remain, even fewer than `n_chunks`, and the stream then starts
//! a new epoch over the same shuffled files (the reference wraps only with `wrap=True`).
//!
//! The stream's position is one number, the blocks drawn so far; [`MixedStream::skip`] replays
//! the random choices without reading any tokens, so a resumed run draws exactly the blocks an
//! uninterrupted one would.

use std::path::{Path, PathBuf};

use prox_pack::{Header, PackedFile};

use crate::error::{Error, Result};
use crate::rng::Rng;

/// Files read together, as the reference's `n_chunks`.
pub const DEFAULT_WINDOW_FILES: usize = 8;

/// One folder of packed files and its share of the mixture.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct DataSource {
    pub dir: PathBuf,
    /// Only files whose names start with this (the reference's `train_data_config` prefixes).
    #[serde(default)]
    pub prefix: Option<String>,
    /// Relative weight in the mixture (normalised over all sources).
    #[serde(default = "one")]
    pub weight: f64,
}

fn one() -> f64 {
    1.0
}

impl DataSource {
    pub fn new(dir: impl Into<PathBuf>) -> Self {
        DataSource {
            dir: dir.into(),
            prefix: None,
            weight: 1.0,
        }
    }
}

/// The `*.bin` files of `dir` whose names start with `prefix`, sorted by name.
pub fn packed_files(dir: &Path, prefix: Option<&str>) -> Result<Vec<PathBuf>> {
    let read_error = |source| Error::Read {
        path: dir.to_path_buf(),
        source,
    };
    let mut files = Vec::new();
    for entry in std::fs::read_dir(dir).map_err(read_error)? {
        let entry = entry.map_err(read_error)?;
        let name = entry.file_name();
        let Some(name) = name.to_str() else { continue };
        if name.ends_with(".bin") && prefix.is_none_or(|p| name.starts_with(p)) {
            files.push(entry.path());
        }
    }
    if files.is_empty() {
        return Err(Error::NoData {
            dir: dir.to_path_buf(),
            pattern: format!("{}*.bin", prefix.unwrap_or("")),
        });
    }
    files.sort();
    Ok(files)
}

/// Where a block lies: a file of the current window and the block's first token.
#[derive(Debug, Clone, Copy)]
struct BlockRef {
    file: usize,
    start: usize,
}

/// The blocks of one folder, in the reference's order.
#[derive(Debug)]
pub struct PackedStream {
    files: Vec<PathBuf>,
    window_files: usize,
    block_size: usize,
    blocks_per_file: usize,
    shuffle: bool,
    rng: Rng,
    /// The first file of the next window.
    next_file: usize,
    window: std::ops::Range<usize>,
    /// The window's files, read when a token is first needed (skipping reads nothing).
    loaded: Vec<PackedFile>,
    order: Vec<usize>,
    cursor: usize,
    epoch: u64,
}

impl PackedStream {
    /// Opens the files of `source`, checks every header, and orders them for `seed`.
    pub fn open(
        source: &DataSource,
        block_size: usize,
        window_files: usize,
        shuffle: bool,
        seed: u64,
    ) -> Result<Self> {
        let mut files = packed_files(&source.dir, source.prefix.as_deref())?;
        let mut first: Option<(PathBuf, Header)> = None;
        for path in &files {
            let header = prox_pack::read_header(path)?;
            if !header.dtype.is_integer() {
                return Err(Error::BadData {
                    path: path.clone(),
                    reason: format!("dtype {} does not hold token ids", header.dtype),
                });
            }
            match &first {
                None => first = Some((path.clone(), header)),
                Some((first_path, expected)) if *expected != header => {
                    return Err(Error::BadData {
                        path: path.clone(),
                        reason: format!(
                            "header (dtype {}, chunk size {}) differs from {}'s (dtype {}, chunk size {})",
                            header.dtype,
                            header.chunk_size,
                            first_path.display(),
                            expected.dtype,
                            expected.chunk_size
                        ),
                    })
                }
                Some(_) => {}
            }
        }
        let Some((first_path, header)) = first else {
            return Err(Error::NoData {
                dir: source.dir.clone(),
                pattern: "*.bin".to_owned(),
            });
        };
        let chunk_size = usize::try_from(header.chunk_size).unwrap_or(usize::MAX);
        let blocks_per_file = chunk_size / block_size.max(1);
        if block_size == 0 || blocks_per_file == 0 {
            return Err(Error::BadData {
                path: first_path,
                reason: format!(
                    "its chunks of {chunk_size} tokens hold no block of {block_size} tokens \
                     (sequence length + 1); use a shorter --seq-len or pack with a larger --chunk-size"
                ),
            });
        }
        let mut rng = Rng::for_stream(seed, 1);
        if shuffle {
            rng.shuffle(&mut files);
        }
        Ok(PackedStream {
            files,
            window_files: window_files.max(1),
            block_size,
            blocks_per_file,
            shuffle,
            rng,
            next_file: 0,
            window: 0..0,
            loaded: Vec::new(),
            order: Vec::new(),
            cursor: 0,
            epoch: 0,
        })
    }

    /// Complete passes over the files so far.
    pub fn epoch(&self) -> u64 {
        self.epoch
    }

    fn next_window(&mut self) {
        if self.next_file >= self.files.len() {
            self.next_file = 0;
            self.epoch += 1;
        }
        let end = (self.next_file + self.window_files).min(self.files.len());
        self.window = self.next_file..end;
        self.next_file = end;
        self.loaded.clear();
        let blocks = self.window.len() * self.blocks_per_file;
        self.order = if self.shuffle {
            self.rng.permutation(blocks)
        } else {
            (0..blocks).collect()
        };
        self.cursor = 0;
    }

    fn next_ref(&mut self) -> BlockRef {
        if self.cursor >= self.order.len() {
            self.next_window();
        }
        let index = self.order[self.cursor];
        self.cursor += 1;
        BlockRef {
            file: index / self.blocks_per_file,
            start: (index % self.blocks_per_file) * self.block_size,
        }
    }

    /// Moves past the next block without reading it.
    pub fn skip(&mut self) {
        self.next_ref();
    }

    /// The next block's tokens, checked against the vocabulary.
    pub fn next_block(&mut self, vocab_size: usize) -> Result<Vec<u32>> {
        let at = self.next_ref();
        if self.loaded.is_empty() {
            self.loaded = self.files[self.window.clone()]
                .iter()
                .map(|path| PackedFile::open(path))
                .collect::<Result<Vec<_>, _>>()?;
        }
        let file = &self.loaded[at.file];
        (at.start..at.start + self.block_size)
            .map(|index| {
                let token = file.get(index).unwrap_or(-1);
                u32::try_from(token)
                    .ok()
                    .filter(|&t| (t as usize) < vocab_size)
                    .ok_or_else(|| Error::TokenOutOfRange {
                        path: file.path().to_path_buf(),
                        index,
                        token,
                        vocab_size,
                    })
            })
            .collect()
    }
}

/// Blocks drawn from several folders by weight, as the reference's `CombinedDataset`.
#[derive(Debug)]
pub struct MixedStream {
    streams: Vec<PackedStream>,
    cumulative: Vec<f64>,
    rng: Rng,
    drawn: u64,
}

impl MixedStream {
    /// Opens every source. `shuffle: false` reads each folder's blocks in file order (the
    /// reference's validation data); the choice between folders is random either way.
    pub fn open(
        sources: &[DataSource],
        block_size: usize,
        window_files: usize,
        shuffle: bool,
        seed: u64,
    ) -> Result<Self> {
        if sources.is_empty() {
            return Err(Error::Options("no training data folder".to_owned()));
        }
        let mut cumulative = Vec::with_capacity(sources.len());
        let mut total = 0.0;
        for source in sources {
            if !(source.weight.is_finite() && source.weight > 0.0) {
                return Err(Error::Options(format!(
                    "the weight of {} is {}, not a positive number",
                    source.dir.display(),
                    source.weight
                )));
            }
            total += source.weight;
            cumulative.push(total);
        }
        let streams = sources
            .iter()
            .map(|source| PackedStream::open(source, block_size, window_files, shuffle, seed))
            .collect::<Result<Vec<_>>>()?;
        Ok(MixedStream {
            streams,
            cumulative,
            rng: Rng::for_stream(seed, 2),
            drawn: 0,
        })
    }

    fn choose(&mut self) -> usize {
        if self.streams.len() == 1 {
            return 0;
        }
        let total = self.cumulative.last().copied().unwrap_or(1.0);
        let point = self.rng.next_f64() * total;
        self.cumulative
            .iter()
            .position(|&c| point < c)
            .unwrap_or(self.streams.len() - 1)
    }

    /// The next block (`seq_len + 1` tokens).
    pub fn next_block(&mut self, vocab_size: usize) -> Result<Vec<u32>> {
        let source = self.choose();
        self.drawn += 1;
        self.streams[source].next_block(vocab_size)
    }

    /// Moves past `blocks` blocks without reading them: the position of a resumed run.
    pub fn skip(&mut self, blocks: u64) {
        for _ in 0..blocks {
            let source = self.choose();
            self.drawn += 1;
            self.streams[source].skip();
        }
    }

    /// Blocks drawn so far.
    pub fn drawn(&self) -> u64 {
        self.drawn
    }

    pub fn streams(&self) -> &[PackedStream] {
        &self.streams
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use prox_pack::{Dtype, PackedWriter, Remainder};

    /// Files of `chunk` tokens counting up from `first`.
    fn write_counting(dir: &Path, prefix: &str, files: usize, chunk: u64, first: u32) {
        let header = Header {
            dtype: Dtype::U16,
            chunk_size: chunk,
        };
        let mut writer = PackedWriter::new(dir, prefix, header, 0).unwrap();
        let tokens: Vec<u32> = (first..first + files as u32 * chunk as u32).collect();
        writer.push(&tokens).unwrap();
        // The last chunk is full; the writer keeps it pending until told to write it.
        writer.finish(Remainder::Write).unwrap();
    }

    #[test]
    fn unshuffled_blocks_are_consecutive_and_the_tail_of_each_file_is_unused() {
        let dir = tempfile::tempdir().unwrap();
        write_counting(dir.path(), "d", 2, 10, 0);
        let mut stream = MixedStream::open(&[DataSource::new(dir.path())], 4, 8, false, 0).unwrap();
        let blocks: Vec<Vec<u32>> = (0..5).map(|_| stream.next_block(100).unwrap()).collect();
        assert_eq!(
            blocks,
            [
                vec![0, 1, 2, 3],
                vec![4, 5, 6, 7],
                vec![10, 11, 12, 13],
                vec![14, 15, 16, 17],
                vec![0, 1, 2, 3]
            ]
        );
        assert_eq!(stream.streams()[0].epoch(), 1);
    }

    #[test]
    fn an_epoch_draws_every_block_once_in_a_seeded_order() {
        let dir = tempfile::tempdir().unwrap();
        write_counting(dir.path(), "d", 11, 8, 0);
        let draw = |seed| {
            let mut s =
                MixedStream::open(&[DataSource::new(dir.path())], 4, 3, true, seed).unwrap();
            (0..22)
                .map(|_| s.next_block(100).unwrap()[0])
                .collect::<Vec<_>>()
        };
        let a = draw(5);
        assert_eq!(a, draw(5));
        assert_ne!(a, draw(6));
        let mut sorted = a.clone();
        sorted.sort_unstable();
        assert_eq!(sorted, (0..22).map(|i| i * 4).collect::<Vec<_>>());
    }

    #[test]
    fn skipping_reaches_the_same_position_as_drawing() {
        let dir = tempfile::tempdir().unwrap();
        write_counting(dir.path(), "a", 5, 8, 0);
        write_counting(dir.path(), "b", 3, 8, 1000);
        let sources = [
            DataSource {
                prefix: Some("a".into()),
                weight: 3.0,
                ..DataSource::new(dir.path())
            },
            DataSource {
                prefix: Some("b".into()),
                weight: 1.0,
                ..DataSource::new(dir.path())
            },
        ];
        let mut drawn = MixedStream::open(&sources, 4, 2, true, 9).unwrap();
        let mut skipped = MixedStream::open(&sources, 4, 2, true, 9).unwrap();
        let first: Vec<u32> = (0..17)
            .map(|_| drawn.next_block(2000).unwrap()[0])
            .collect();
        skipped.skip(17);
        for _ in 0..20 {
            assert_eq!(
                drawn.next_block(2000).unwrap(),
                skipped.next_block(2000).unwrap()
            );
        }
        let from_b = first.iter().filter(|&&t| t >= 1000).count();
        assert!(from_b > 0 && from_b < 17, "{first:?}");
    }

    #[test]
    fn bad_data_is_refused_with_the_file() {
        let dir = tempfile::tempdir().unwrap();
        write_counting(dir.path(), "d", 1, 8, 50);
        let source = [DataSource::new(dir.path())];
        let err = MixedStream::open(&source, 9, 8, false, 0).unwrap_err();
        assert!(err.to_string().contains("hold no block"), "{err}");
        let mut stream = MixedStream::open(&source, 4, 8, false, 0).unwrap();
        let err = stream.next_block(52).unwrap_err().to_string();
        assert!(
            err.contains("token 52") && err.contains("d_0000000000.bin"),
            "{err}"
        );
        let empty = tempfile::tempdir().unwrap();
        let err = MixedStream::open(&[DataSource::new(empty.path())], 4, 8, false, 0).unwrap_err();
        assert!(err.to_string().contains("no packed files"), "{err}");
    }
}
