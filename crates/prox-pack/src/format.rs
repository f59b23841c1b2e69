//! The litgpt packed-dataset format: the 24-byte header (magic, version, dtype code, chunk
//! size), token dtypes by vocabulary size, and the files' names.

use std::fmt;
use std::path::Path;

use crate::Error;

/// The first 7 bytes of every packed file.
pub const MAGIC: [u8; 7] = *b"LITPKDS";
/// The only format version there is.
pub const VERSION: u64 = 1;
/// Bytes before the first token: magic, version (u64), dtype code (u8), chunk size (u64).
pub const HEADER_LEN: usize = 24;
/// Tokens per file in the reference recipe (`prepare_web`'s default): 2049 × 1024.
pub const DEFAULT_CHUNK_SIZE: u64 = 2049 * 1024;
/// `dtype="auto"` stores tokens as u16 when the vocabulary is smaller than this, else as i32.
pub const U16_VOCAB_LIMIT: usize = 65500;

/// How each token is stored, with the codes litgpt's `packed_dataset.dtypes` gives them.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Dtype {
    U8,
    I8,
    I16,
    I32,
    I64,
    F32,
    F64,
    U16,
}

impl Dtype {
    pub const ALL: [Dtype; 8] = [
        Dtype::U8,
        Dtype::I8,
        Dtype::I16,
        Dtype::I32,
        Dtype::I64,
        Dtype::F32,
        Dtype::F64,
        Dtype::U16,
    ];

    /// The code written in the header.
    pub fn code(self) -> u8 {
        match self {
            Dtype::U8 => 1,
            Dtype::I8 => 2,
            Dtype::I16 => 3,
            Dtype::I32 => 4,
            Dtype::I64 => 5,
            Dtype::F32 => 6,
            Dtype::F64 => 7,
            Dtype::U16 => 8,
        }
    }

    pub fn from_code(code: u8) -> Option<Self> {
        Self::ALL.into_iter().find(|dtype| dtype.code() == code)
    }

    /// Bytes per token.
    pub fn size(self) -> usize {
        match self {
            Dtype::U8 | Dtype::I8 => 1,
            Dtype::I16 | Dtype::U16 => 2,
            Dtype::I32 | Dtype::F32 => 4,
            Dtype::I64 | Dtype::F64 => 8,
        }
    }

    /// The NumPy name.
    pub fn name(self) -> &'static str {
        match self {
            Dtype::U8 => "uint8",
            Dtype::I8 => "int8",
            Dtype::I16 => "int16",
            Dtype::I32 => "int32",
            Dtype::I64 => "int64",
            Dtype::F32 => "float32",
            Dtype::F64 => "float64",
            Dtype::U16 => "uint16",
        }
    }

    pub fn is_integer(self) -> bool {
        !matches!(self, Dtype::F32 | Dtype::F64)
    }

    /// The reference's `dtype="auto"`: u16 below [`U16_VOCAB_LIMIT`] tokens, else i32.
    pub fn for_vocab_size(vocab_size: usize) -> Self {
        if vocab_size < U16_VOCAB_LIMIT {
            Dtype::U16
        } else {
            Dtype::I32
        }
    }

    /// The largest token id this dtype stores exactly (`None` for floating-point dtypes).
    pub fn max_token(self) -> Option<u64> {
        match self {
            Dtype::U8 => Some(u8::MAX.into()),
            Dtype::I8 => Some(i8::MAX as u64),
            Dtype::I16 => Some(i16::MAX as u64),
            Dtype::U16 => Some(u16::MAX.into()),
            Dtype::I32 => Some(i32::MAX as u64),
            Dtype::I64 => Some(i64::MAX as u64),
            Dtype::F32 | Dtype::F64 => None,
        }
    }

    /// Writes `token` little endian into `out`, which is `self.size()` bytes long. The caller has
    /// checked the token against [`max_token`](Self::max_token).
    pub(crate) fn put(self, token: u32, out: &mut [u8]) {
        match self {
            Dtype::U8 | Dtype::I8 => out[0] = token as u8,
            Dtype::I16 | Dtype::U16 => out.copy_from_slice(&(token as u16).to_le_bytes()),
            Dtype::I32 => out.copy_from_slice(&token.to_le_bytes()),
            Dtype::I64 => out.copy_from_slice(&u64::from(token).to_le_bytes()),
            Dtype::F32 => out.copy_from_slice(&(token as f32).to_le_bytes()),
            Dtype::F64 => out.copy_from_slice(&f64::from(token).to_le_bytes()),
        }
    }

    /// Reads one integer value of this dtype from `bytes` (`self.size()` bytes, little endian).
    pub(crate) fn get(self, bytes: &[u8]) -> i64 {
        let mut wide = [0u8; 8];
        wide[..bytes.len()].copy_from_slice(bytes);
        match self {
            Dtype::U8 => i64::from(bytes[0]),
            Dtype::I8 => i64::from(bytes[0] as i8),
            Dtype::I16 => i64::from(i16::from_le_bytes([bytes[0], bytes[1]])),
            Dtype::U16 => i64::from(u16::from_le_bytes([bytes[0], bytes[1]])),
            Dtype::I32 => i64::from(i32::from_le_bytes([bytes[0], bytes[1], bytes[2], bytes[3]])),
            Dtype::I64 => i64::from_le_bytes(wide),
            Dtype::F32 => f32::from_le_bytes([bytes[0], bytes[1], bytes[2], bytes[3]]) as i64,
            Dtype::F64 => f64::from_le_bytes(wide) as i64,
        }
    }
}

impl fmt::Display for Dtype {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// The 24-byte header of a packed file.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Header {
    pub dtype: Dtype,
    /// Tokens in the file.
    pub chunk_size: u64,
}

impl Header {
    pub fn to_bytes(&self) -> [u8; HEADER_LEN] {
        let mut bytes = [0u8; HEADER_LEN];
        bytes[..7].copy_from_slice(&MAGIC);
        bytes[7..15].copy_from_slice(&VERSION.to_le_bytes());
        bytes[15] = self.dtype.code();
        bytes[16..24].copy_from_slice(&self.chunk_size.to_le_bytes());
        bytes
    }

    /// Parses the first bytes of a file; `path` names it in errors. A file shorter than a header
    /// is truncated.
    pub fn parse(bytes: &[u8], path: &Path) -> Result<Self, Error> {
        let magic_len = bytes.len().min(MAGIC.len());
        if bytes[..magic_len] != MAGIC[..magic_len] {
            return Err(Error::BadMagic {
                path: path.to_owned(),
                found: String::from_utf8_lossy(&bytes[..magic_len]).into_owned(),
            });
        }
        let Some(bytes) = bytes.get(..HEADER_LEN) else {
            return Err(Error::Truncated {
                path: path.to_owned(),
                expected: HEADER_LEN as u64,
                actual: bytes.len() as u64,
            });
        };
        let u64_at = |at: usize| {
            let mut word = [0u8; 8];
            word.copy_from_slice(&bytes[at..at + 8]);
            u64::from_le_bytes(word)
        };
        let version = u64_at(7);
        if version != VERSION {
            return Err(Error::UnsupportedVersion {
                path: path.to_owned(),
                version,
            });
        }
        let dtype = Dtype::from_code(bytes[15]).ok_or_else(|| Error::UnknownDtype {
            path: path.to_owned(),
            code: bytes[15],
        })?;
        let header = Self {
            dtype,
            chunk_size: u64_at(16),
        };
        if header.chunk_size == 0 || header.file_len().is_none() {
            return Err(Error::InvalidChunkSize {
                path: path.to_owned(),
                chunk_size: header.chunk_size,
            });
        }
        Ok(header)
    }

    /// Bytes of a whole file with this header (`None` if that overflows).
    pub fn file_len(&self) -> Option<u64> {
        self.chunk_size
            .checked_mul(self.dtype.size() as u64)?
            .checked_add(HEADER_LEN as u64)
    }
}

/// The name of the `counter`-th file of a prefix: `{prefix}_{counter:010}.bin`.
pub fn file_name(prefix: &str, counter: u64) -> String {
    format!("{prefix}_{counter:010}.bin")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn codes_round_trip_and_auto_dtype_follows_the_reference() {
        for dtype in Dtype::ALL {
            assert_eq!(Dtype::from_code(dtype.code()), Some(dtype));
        }
        assert_eq!(Dtype::from_code(0), None);
        assert_eq!(Dtype::from_code(9), None);
        assert_eq!(Dtype::for_vocab_size(32000), Dtype::U16);
        assert_eq!(Dtype::for_vocab_size(65499), Dtype::U16);
        assert_eq!(Dtype::for_vocab_size(65500), Dtype::I32);
        assert_eq!(Dtype::for_vocab_size(128_256), Dtype::I32);
    }

    #[test]
    fn header_bytes_are_the_reference_layout() {
        let header = Header {
            dtype: Dtype::U16,
            chunk_size: 4096,
        };
        let bytes = header.to_bytes();
        assert_eq!(&bytes[..7], b"LITPKDS");
        assert_eq!(bytes[7..15], 1u64.to_le_bytes());
        assert_eq!(bytes[15], 8);
        assert_eq!(bytes[16..], 4096u64.to_le_bytes());
        assert_eq!(Header::parse(&bytes, Path::new("x")).unwrap(), header);
        assert_eq!(file_name("train_web_0", 13), "train_web_0_0000000013.bin");
    }

    #[test]
    fn every_integer_dtype_stores_its_largest_token() {
        for dtype in Dtype::ALL.into_iter().filter(|d| d.is_integer()) {
            let max = dtype.max_token().unwrap().min(u64::from(u32::MAX)) as u32;
            let mut bytes = vec![0; dtype.size()];
            dtype.put(max, &mut bytes);
            assert_eq!(dtype.get(&bytes), i64::from(max), "{dtype}");
        }
    }
}
