//! Q8_0 matrix products on the CPU, register-tiled, with a kernel per instruction set chosen
//! at run time.
//!
//! candle computes a Q8_0 product as one dot product per (token, weight row): every weight
//! block is read again for every token and every dot product ends in its own horizontal sum.
//! [`Q8Matrix`] keeps the same numbers (GGML's `block_q8_0`: 32 `i8` and one scale per block;
//! the activations are quantized exactly as `quantize_row_q8_0` does) and computes them by
//! tiles:
//!
//! - the weight rows are stored in groups of [`GROUP`] rows, each block as 8 slices of 4
//!   values per row, rows side by side: one 512-bit vector holds 4 values of 16 rows, so one
//!   `vpdpbusd` with 4 values of a token broadcast adds into each 32-bit lane one row's
//!   products, and after a block's 8 slices each lane holds its row's whole block dot
//!   product: no horizontal sum, no shuffle. The 256-bit kernels take a group as two
//!   halves of 8 rows;
//! - `vpdpbusd` multiplies unsigned by signed bytes, and both Q8_0 operands are signed. The
//!   weights are stored biased by 128 (`w + 128`, in 0..=255, exact for every `i8`), the
//!   activations stay signed, and each activation block carries `-128 · Σx`, with which a
//!   block's accumulator starts: `Σ (w + 128) · x - 128 · Σx = Σ w · x`, exactly, in i32
//!   (at most 32 · 255 · 127 in magnitude). The bias costs one broadcast per (token, block),
//!   shared by every weight row; its alternative, `|w|` times `x` with `w`'s sign, would
//!   cost a sign operation per product, and AVX-512 has no `vpsignb`. The AVX2 kernel
//!   (no `vpdpbusd`) removes the bias once per weight vector and uses that sign trick
//!   (`vpsignb`, `vpmaddubsw`, `vpmaddwd`), since `vpmaddubsw` would saturate on biased
//!   weights;
//! - every kernel then does per block, row and token exactly what the portable kernel does:
//!   `acc + f32(dot) · (d_w · d_x)` (an exact conversion, two products, one sum, in block
//!   order, no FMA), so all kernels give the same bits, whatever the tile or batch;
//! - tiles of up to 4 groups × 4 tokens keep their sums in registers over the whole row;
//!   tokens are walked in panels small enough that their quantized blocks stay in L2 while
//!   the weight groups stream; the weight rows are split into a few large contiguous bands,
//!   one rayon task each.

use std::cell::RefCell;
use std::mem::MaybeUninit;

use candle_core::backend::BackendStorage;
use candle_core::quantized::{GgmlDType, QTensor};
use candle_core::{CpuStorage, Layout, Shape, Tensor};
use half::f16;
use rayon::prelude::*;

type CResult<T> = candle_core::Result<T>;

/// Values per Q8_0 block.
pub const BLOCK: usize = 32;
/// Weight rows per group: the rows one 512-bit vector of sums holds.
pub const GROUP: usize = 16;
/// Values of a row in one slice: the products one 32-bit lane of `vpdpbusd` adds.
const SLICE_VALUES: usize = 4;
/// Slices per block.
const SLICES: usize = BLOCK / SLICE_VALUES;
/// Bytes of GGML's `block_q8_0`: an f16 scale, then 32 `i8`.
const GGML_BLOCK_BYTES: usize = 2 + BLOCK;
/// Tokens per tile.
const TILE_TOKENS: usize = 4;
/// The most weight groups in one tile.
const MAX_GROUPS: usize = 4;
/// Bytes of quantized activations a token panel may hold, so that it stays in L2 while the
/// weight groups stream past it.
const TOKEN_PANEL_BYTES: usize = 256 * 1024;
/// Below this many block products a call runs on the calling thread: splitting it would
/// cost more than it saves.
const PARALLEL_MIN_BLOCK_DOTS: usize = 1 << 15;
/// Blocks of activations one task of the quantizer takes (128 KiB of f32): the product waits
/// for the quantizer, so a prefill's rows are quantized on every thread, not on the calling
/// thread alone (on 2 cores that serial pass was a tenth of a Q8_0 prefill).
const QUANTIZE_TASK_BLOCKS: usize = 1 << 10;

/// 32 quantized activations, aligned so that one block is one aligned 256-bit load.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
#[repr(C, align(32))]
struct Block([i8; BLOCK]);

/// One slice of a block for a group: row `r`'s 4 values at bytes `4r..4r + 4`, each biased
/// by 128 (`w ^ 0x80` as a byte); 64-byte aligned, one aligned 512-bit load.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[repr(C, align(64))]
struct Slice([u8; SLICE_VALUES * GROUP]);

/// The scales of one block of a group's rows, widened from f16 (exactly).
#[derive(Clone, Copy, Debug, Default, PartialEq)]
#[repr(C, align(64))]
struct Scales([f32; GROUP]);

/// A row's sums in each group of a tile, per token of the tile.
type TileSums = [[[f32; GROUP]; MAX_GROUPS]; TILE_TOKENS];

/// The bias of stored weights: `w + 128` is `w ^ 0x80` read as a byte.
const BIAS_BIT: u8 = 0x80;

fn unbias(byte: u8) -> i8 {
    (byte ^ BIAS_BIT) as i8
}

/// Which kernel computes a product.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Kernel {
    /// The fastest one this CPU runs, capped by [`KERNEL_ENV`] when it is set.
    #[default]
    Best,
    /// The portable scalar kernel: every CPU, and the reference the SIMD kernels are tested
    /// against.
    Portable,
    /// AVX2 (x86-64): `vpsignb`/`vpmaddubsw`/`vpmaddwd` on 256-bit vectors.
    Avx2,
    /// 256-bit `vpdpbusd`: AVX-VNNI's VEX form, or on a CPU without AVX-VNNI the EVEX form of
    /// AVX512-VNNI with AVX512-VL (the same instruction, the same results).
    AvxVnni,
    /// 512-bit `vpdpbusd` (AVX512-F, AVX512-BW, AVX512-VNNI).
    Avx512Vnni,
}

/// The environment variable that caps the kernel [`Kernel::Best`] picks, so that on a
/// richer CPU the lower paths can be run, tested and benchmarked.
pub const KERNEL_ENV: &str = "PROX_Q8_KERNEL";

/// Every kernel, slowest first: the order of the cap, and the names [`KERNEL_ENV`] takes.
const KERNELS: [Kernel; 4] = [
    Kernel::Portable,
    Kernel::Avx2,
    Kernel::AvxVnni,
    Kernel::Avx512Vnni,
];

/// A [`KERNEL_ENV`] value that names no kernel.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{KERNEL_ENV}={value:?} names no Q8_0 kernel (known: portable, avx2, avxvnni, avx512vnni)")]
pub struct UnknownKernel {
    pub value: String,
}

impl Kernel {
    /// The name [`KERNEL_ENV`] takes and logs show.
    pub fn name(self) -> &'static str {
        match self {
            Kernel::Best => Kernel::best().name(),
            Kernel::Portable => "portable",
            Kernel::Avx2 => "avx2",
            Kernel::AvxVnni => "avxvnni",
            Kernel::Avx512Vnni => "avx512vnni",
        }
    }

    /// The kernel [`Kernel::Best`] stands for on this CPU, after the cap.
    pub fn best() -> Kernel {
        Simd::detect().kernel()
    }

    /// Every kernel this CPU runs, slowest first (the portable one first); the cap does not
    /// apply, so that tests reach every path the CPU has.
    pub fn available() -> Vec<Kernel> {
        KERNELS.into_iter().filter(|k| k.simd().is_some()).collect()
    }

    /// Whether the kernel has 8-bit dot products (`vpdpbusd`), which make it faster than a
    /// float GEMM on dequantized weights even for long prompts; without them a 32-value
    /// block product costs as many instructions as the FMAs it replaces.
    pub fn has_dot_products(self) -> bool {
        match self {
            Kernel::Best => Kernel::best().has_dot_products(),
            Kernel::Portable | Kernel::Avx2 => false,
            Kernel::AvxVnni | Kernel::Avx512Vnni => true,
        }
    }

    /// The cap set by [`KERNEL_ENV`]: `None` when unset or empty.
    pub fn cap_from_env() -> Result<Option<Kernel>, UnknownKernel> {
        match std::env::var(KERNEL_ENV) {
            Err(_) => Ok(None),
            Ok(value) => Kernel::parse_cap(&value),
        }
    }

    fn parse_cap(value: &str) -> Result<Option<Kernel>, UnknownKernel> {
        let wanted = value.trim().to_ascii_lowercase();
        if wanted.is_empty() {
            return Ok(None);
        }
        KERNELS
            .into_iter()
            .find(|k| k.name() == wanted)
            .map(Some)
            .ok_or_else(|| UnknownKernel {
                value: value.to_owned(),
            })
    }

    /// The kernel's SIMD proof, or `None` when this CPU cannot run it.
    fn simd(self) -> Option<Simd> {
        match self {
            Kernel::Best => Some(Simd::detect()),
            Kernel::Portable => Some(Simd::Scalar),
            #[cfg(target_arch = "x86_64")]
            Kernel::Avx2 => x86::Avx2::detect().map(Simd::Avx2),
            #[cfg(target_arch = "x86_64")]
            Kernel::AvxVnni => x86::AvxVnni::detect().map(Simd::AvxVnni),
            #[cfg(target_arch = "x86_64")]
            Kernel::Avx512Vnni => x86::Avx512Vnni::detect().map(Simd::Avx512Vnni),
            #[cfg(not(target_arch = "x86_64"))]
            Kernel::Avx2 | Kernel::AvxVnni | Kernel::Avx512Vnni => None,
        }
    }

    /// The order of the paths, slowest first (for the cap).
    fn rank(self) -> usize {
        KERNELS
            .iter()
            .position(|&k| k == self)
            .unwrap_or(usize::MAX)
    }
}

/// A weight matrix `[rows, cols]` in Q8_0 blocks, applied as `y = x · Wᵀ`.
#[derive(Clone, Debug)]
pub struct Q8Matrix {
    rows: usize,
    cols: usize,
    /// Blocks per row.
    blocks: usize,
    /// `[group][block][slice]`, the weights biased by 128; the rows past `rows` in the last
    /// group are zero.
    qs: Vec<Slice>,
    /// `[group][block]`.
    scales: Vec<Scales>,
    /// The kernel [`Q8Matrix::matmul`] and [`Q8Matrix::forward`] use.
    kernel: Kernel,
}

/// Activations quantized to Q8_0, `[token][block]`.
struct Activations {
    tokens: usize,
    blocks: usize,
    qs: Vec<Block>,
    scales: Vec<f32>,
    /// `-128 · Σx` of each block: what the weights' bias adds to a block dot product.
    bias: Vec<i32>,
}

/// The operands of one tile: `groups` weight groups (`[group][block]`) and `tokens` tokens
/// (`[token][block]`).
struct Tile<'a> {
    wq: &'a [Slice],
    wd: &'a [Scales],
    xq: &'a [Block],
    xd: &'a [f32],
    xbias: &'a [i32],
    blocks: usize,
    groups: usize,
    tokens: usize,
}

impl Q8Matrix {
    /// The blocks of a Q8_0 `QTensor` `[rows, cols]` (quantized by candle, or read from a
    /// GGUF file), rearranged into groups; no value changes.
    pub fn from_qtensor(q: &QTensor) -> CResult<Self> {
        if q.dtype() != GgmlDType::Q8_0 {
            candle_core::bail!("a Q8_0 matrix cannot be built from {:?} blocks", q.dtype());
        }
        let (rows, cols) = q.shape().dims2()?;
        let data = q.data()?;
        Self::from_ggml_blocks(rows, cols, &data)
    }

    /// Quantizes an f32 (or other float) weight `[rows, cols]` with candle's quantizer.
    pub fn quantize(w: &Tensor) -> CResult<Self> {
        Self::from_qtensor(&QTensor::quantize(w, GgmlDType::Q8_0)?)
    }

    /// From GGML `block_q8_0` bytes, row after row.
    fn from_ggml_blocks(rows: usize, cols: usize, data: &[u8]) -> CResult<Self> {
        if !cols.is_multiple_of(BLOCK) {
            candle_core::bail!("Q8_0 rows of {cols} values are not whole {BLOCK}-value blocks");
        }
        let blocks = cols / BLOCK;
        if data.len() != rows * blocks * GGML_BLOCK_BYTES {
            candle_core::bail!(
                "{} bytes of Q8_0 blocks for a [{rows}, {cols}] matrix (expected {})",
                data.len(),
                rows * blocks * GGML_BLOCK_BYTES
            );
        }
        let groups = rows.div_ceil(GROUP);
        // Padding rows hold zeros: the biased byte of 0.
        let mut qs = vec![Slice([BIAS_BIT; SLICE_VALUES * GROUP]); groups * blocks * SLICES];
        let mut scales = vec![Scales::default(); groups * blocks];
        if blocks > 0 {
            for (r, row) in data.chunks_exact(blocks * GGML_BLOCK_BYTES).enumerate() {
                let (group, lane) = (r / GROUP, r % GROUP);
                for (b, raw) in row.chunks_exact(GGML_BLOCK_BYTES).enumerate() {
                    let at = group * blocks + b;
                    scales[at].0[lane] =
                        f16::from_bits(u16::from_le_bytes([raw[0], raw[1]])).to_f32();
                    let slices = &mut qs[at * SLICES..(at + 1) * SLICES];
                    for (slice, values) in slices.iter_mut().zip(raw[2..].chunks_exact(4)) {
                        for (q, &byte) in slice.0[lane * SLICE_VALUES..].iter_mut().zip(values) {
                            *q = byte ^ BIAS_BIT;
                        }
                    }
                }
            }
        }
        Ok(Q8Matrix {
            rows,
            cols,
            blocks,
            qs,
            scales,
            kernel: Kernel::Best,
        })
    }

    /// The same matrix computed by `kernel` from now on.
    pub fn with_kernel(mut self, kernel: Kernel) -> Self {
        self.kernel = kernel;
        self
    }

    /// The kernel the matrix's products use.
    pub fn kernel(&self) -> Kernel {
        self.kernel
    }

    /// Output features (weight rows).
    pub fn rows(&self) -> usize {
        self.rows
    }

    /// Input features (weight columns).
    pub fn cols(&self) -> usize {
        self.cols
    }

    /// The weights as f32 `[rows, cols]`, row-major (float GEMMs over many tokens, tests).
    pub fn dequantize(&self) -> Vec<f32> {
        let mut out = vec![0f32; self.rows * self.cols];
        out.par_chunks_exact_mut(self.cols.max(1))
            .enumerate()
            .for_each(|(r, row)| {
                let (group, lane) = (r / GROUP, r % GROUP);
                for (b, values) in row.chunks_exact_mut(BLOCK).enumerate() {
                    let at = group * self.blocks + b;
                    let d = self.scales[at].0[lane];
                    let slices = &self.qs[at * SLICES..(at + 1) * SLICES];
                    for (v4, slice) in values.chunks_exact_mut(SLICE_VALUES).zip(slices) {
                        let q = &slice.0[lane * SLICE_VALUES..(lane + 1) * SLICE_VALUES];
                        for (v, &byte) in v4.iter_mut().zip(q) {
                            *v = f32::from(unbias(byte)) * d;
                        }
                    }
                }
            });
        out
    }

    /// `y = x · Wᵀ` for `x` `[tokens, cols]` (row-major); returns `[tokens, rows]`.
    pub fn matmul(&self, x: &[f32]) -> CResult<Vec<f32>> {
        self.matmul_with(x, self.kernel)
    }

    /// [`Q8Matrix::matmul`] with a chosen kernel.
    #[allow(unsafe_code)]
    pub fn matmul_with(&self, x: &[f32], kernel: Kernel) -> CResult<Vec<f32>> {
        if self.cols == 0 || !x.len().is_multiple_of(self.cols) {
            candle_core::bail!(
                "{} activations are not whole rows of {} for a [{}, {}] Q8_0 matrix",
                x.len(),
                self.cols,
                self.rows,
                self.cols
            );
        }
        let tokens = x.len() / self.cols;
        if tokens == 0 || self.rows == 0 {
            return Ok(Vec::new());
        }
        let Some(simd) = kernel.simd() else {
            candle_core::bail!("this CPU cannot run the {kernel:?} Q8_0 kernel");
        };
        // Not zero-filled first: that pass over fresh memory cost about 5% of Q8_0 prefill.
        let len = tokens * self.rows;
        let mut y = Vec::with_capacity(len);
        let out = &mut y.spare_capacity_mut()[..len];
        SCRATCH.with(|cell| match cell.try_borrow_mut() {
            Ok(mut scratch) => self.matmul_into(x, tokens, out, simd, &mut scratch),
            // Re-entered on this thread (a rayon task run while waiting): use fresh storage.
            Err(_) => self.matmul_into(x, tokens, out, simd, &mut Activations::empty()),
        });
        // SAFETY: `matmul_into` wrote all `tokens · rows` elements.
        unsafe { y.set_len(len) };
        Ok(y)
    }

    /// Writes every element of `y` (`[tokens, rows]`), reading none.
    fn matmul_into(
        &self,
        x: &[f32],
        tokens: usize,
        y: &mut [MaybeUninit<f32>],
        simd: Simd,
        act: &mut Activations,
    ) {
        act.quantize(x, tokens, self.blocks, simd);
        let groups = self.rows.div_ceil(GROUP);
        let work = tokens * groups * GROUP * self.blocks;
        let tasks = if work < PARALLEL_MIN_BLOCK_DOTS {
            1
        } else {
            rayon::current_num_threads().clamp(1, groups)
        };
        // Contiguous group ranges of (almost) equal size, one per task.
        let bounds: Vec<usize> = (0..=tasks).map(|i| i * groups / tasks).collect();
        let mut bands: Vec<Band> = bounds
            .windows(2)
            .map(|w| Band {
                groups: w[0]..w[1],
                rows_out: Vec::with_capacity(tokens),
            })
            .collect();
        // Each task writes its own columns of every output row.
        for row in y.chunks_exact_mut(self.rows) {
            let mut rest = row;
            for band in &mut bands {
                let width = (band.groups.end * GROUP).min(self.rows) - band.groups.start * GROUP;
                let (mine, others) = rest.split_at_mut(width);
                band.rows_out.push(mine);
                rest = others;
            }
        }
        let act = &*act;
        if bands.len() == 1 {
            for band in bands {
                self.band(act, band, simd);
            }
        } else {
            bands
                .into_par_iter()
                .for_each(|band| self.band(act, band, simd));
        }
    }

    /// All tokens against one band of weight groups.
    fn band(&self, act: &Activations, band: Band<'_>, simd: Simd) {
        let Band {
            groups,
            mut rows_out,
        } = band;
        let first_row = groups.start * GROUP;
        let token_bytes = self.blocks * (std::mem::size_of::<Block>() + 8);
        let token_panel =
            (TOKEN_PANEL_BYTES / token_bytes.max(1) / TILE_TOKENS * TILE_TOKENS).max(TILE_TOKENS);
        let mut t0 = 0;
        while t0 < act.tokens {
            let t1 = (t0 + token_panel).min(act.tokens);
            // Few tokens (decoding): more groups per tile, so that each token's activations
            // are read once for more weight rows.
            let wanted = if t1 - t0 < TILE_TOKENS {
                MAX_GROUPS
            } else {
                simd.groups_per_tile()
            };
            let mut g = groups.start;
            while g < groups.end {
                let left = groups.end - g;
                let ng = match (left >= wanted, left >= 2 && wanted >= 2) {
                    (true, _) => wanted,
                    (false, true) => 2,
                    (false, false) => 1,
                };
                let mut t = t0;
                while t < t1 {
                    let nt = TILE_TOKENS.min(t1 - t);
                    let sums = self.tile(act, g, ng, t, nt, simd);
                    for (out, sums_t) in rows_out[t..t + nt].iter_mut().zip(&sums) {
                        for (k, group_sums) in sums_t.iter().take(ng).enumerate() {
                            let r0 = (g + k) * GROUP;
                            let n = GROUP.min(self.rows - r0);
                            let out = &mut out[r0 - first_row..r0 - first_row + n];
                            for (o, &sum) in out.iter_mut().zip(&group_sums[..n]) {
                                o.write(sum);
                            }
                        }
                    }
                    t += nt;
                }
                g += ng;
            }
            t0 = t1;
        }
    }

    /// The sums of `ng` groups from `group` with `nt` tokens from `token`:
    /// `[token][group][row in group]` (entries past `nt`/`ng` are zero).
    fn tile(
        &self,
        act: &Activations,
        group: usize,
        ng: usize,
        token: usize,
        nt: usize,
        simd: Simd,
    ) -> TileSums {
        let nb = self.blocks;
        let w = (group * nb)..((group + ng) * nb);
        let x = (token * nb)..((token + nt) * nb);
        let tile = Tile {
            wq: &self.qs[w.start * SLICES..w.end * SLICES],
            wd: &self.scales[w],
            xq: &act.qs[x.clone()],
            xd: &act.scales[x.clone()],
            xbias: &act.bias[x],
            blocks: nb,
            groups: ng,
            tokens: nt,
        };
        let mut out = [[[0f32; GROUP]; MAX_GROUPS]; TILE_TOKENS];
        match simd {
            Simd::Scalar => scalar_tile(&tile, &mut out),
            #[cfg(target_arch = "x86_64")]
            Simd::Avx2(cpu) => x86::tile_avx2(cpu, &tile, &mut out),
            #[cfg(target_arch = "x86_64")]
            Simd::AvxVnni(cpu) => x86::tile_avxvnni(cpu, &tile, &mut out),
            #[cfg(target_arch = "x86_64")]
            Simd::Avx512Vnni(cpu) => x86::tile_avx512vnni(cpu, &tile, &mut out),
        }
        out
    }

    /// `x` `[.., cols]` (f32, CPU) times `Wᵀ`: `[.., rows]`.
    pub fn forward(&self, x: &Tensor) -> CResult<Tensor> {
        x.apply_op1_no_bwd(self)
    }
}

/// The output columns one task computes: a contiguous range of groups, and its slice of
/// every output row.
struct Band<'a> {
    groups: std::ops::Range<usize>,
    rows_out: Vec<&'a mut [MaybeUninit<f32>]>,
}

impl candle_core::CustomOp1 for Q8Matrix {
    fn name(&self) -> &'static str {
        "q8_0-matmul"
    }

    fn cpu_fwd(&self, storage: &CpuStorage, layout: &Layout) -> CResult<(CpuStorage, Shape)> {
        let Some((start, end)) = layout.contiguous_offsets() else {
            candle_core::bail!("q8_0-matmul: the input is not contiguous ({layout:?})");
        };
        let x = match storage {
            CpuStorage::F32(values) => &values[start..end],
            other => candle_core::bail!("q8_0-matmul: f32 input expected, got {:?}", other.dtype()),
        };
        let mut dims = layout.shape().dims().to_vec();
        if dims.last() != Some(&self.cols) {
            candle_core::bail!(
                "q8_0-matmul: input {:?} does not end in the matrix's {} columns",
                layout.shape(),
                self.cols
            );
        }
        let y = self.matmul(x)?;
        if let Some(last) = dims.last_mut() {
            *last = self.rows;
        }
        Ok((CpuStorage::F32(y), Shape::from(dims)))
    }
}

thread_local! {
    /// Quantized activations, reused across calls so that large prefills do not fault in
    /// fresh pages every time.
    static SCRATCH: RefCell<Activations> = RefCell::new(Activations::empty());
}

impl Activations {
    fn empty() -> Self {
        Activations {
            tokens: 0,
            blocks: 0,
            qs: Vec::new(),
            scales: Vec::new(),
            bias: Vec::new(),
        }
    }

    /// Quantizes `x` `[tokens, blocks · 32]` as GGML's `quantize_row_q8_0` (and candle)
    /// does, so that block dot products are candle's.
    fn quantize(&mut self, x: &[f32], tokens: usize, blocks: usize, simd: Simd) {
        self.tokens = tokens;
        self.blocks = blocks;
        // Every entry is written below: resizing only, the reused entries are not cleared
        // first.
        let n = tokens * blocks;
        self.qs.resize(n, Block::default());
        self.scales.resize(n, 0.0);
        self.bias.resize(n, 0);
        #[cfg(target_arch = "x86_64")]
        let avx2 = simd.avx2();
        #[cfg(not(target_arch = "x86_64"))]
        let _ = simd;
        let quantize_part = |x: &[f32], qs: &mut [Block], scales: &mut [f32], bias: &mut [i32]| {
            #[cfg(target_arch = "x86_64")]
            if let Some(cpu) = avx2 {
                return quantize_rows(x, qs, scales, bias, |values, q| {
                    x86::quantize_block(cpu, values, q)
                });
            }
            quantize_rows(x, qs, scales, bias, portable_block)
        };
        let rows_per_task = (QUANTIZE_TASK_BLOCKS / blocks.max(1)).max(1);
        if tokens <= rows_per_task {
            quantize_part(x, &mut self.qs, &mut self.scales, &mut self.bias);
        } else {
            let chunk = rows_per_task * blocks;
            x.par_chunks(chunk * BLOCK)
                .zip(self.qs.par_chunks_mut(chunk))
                .zip(self.scales.par_chunks_mut(chunk))
                .zip(self.bias.par_chunks_mut(chunk))
                .for_each(|(((x, qs), scales), bias)| quantize_part(x, qs, scales, bias));
        }
    }
}

/// Quantizes whole rows block by block with `block`, which writes a block and returns its
/// scale and the sum of its values, and keeps each block's bias correction.
#[inline(always)]
fn quantize_rows(
    x: &[f32],
    qs: &mut [Block],
    scales: &mut [f32],
    bias: &mut [i32],
    block: impl Fn(&[f32; BLOCK], &mut Block) -> (f32, i32),
) {
    let blocks = x.as_chunks::<BLOCK>().0.iter().zip(qs.iter_mut());
    for ((values, q), (d, bias)) in blocks.zip(scales.iter_mut().zip(bias)) {
        let (scale, sum) = block(values, q);
        (*d, *bias) = (scale, -128 * sum);
    }
}

/// The portable kernel's block quantizer ([`quantize_block`]), and the reference of
/// `x86::quantize_block`: the block's scale and the sum of its values.
fn portable_block(values: &[f32; BLOCK], q: &mut Block) -> (f32, i32) {
    let d = quantize_block(values, q);
    (d, q.0.iter().map(|&v| i32::from(v)).sum())
}

/// One block as `quantize_row_q8_0`: scale `amax / 127` rounded to f16, values
/// `round(x / scale)` with the unrounded scale. Returns the f16 scale widened to f32.
#[inline(always)]
fn quantize_block(values: &[f32], out: &mut Block) -> f32 {
    // Eight running maxima, not one: a single fold of `f32::max` stays one chain of scalar
    // instructions (the compiler may not reorder it), eight vectorize. The maximum is the
    // same number either way, NaNs ignored alike.
    let mut lanes = [0f32; 8];
    for chunk in values.chunks_exact(lanes.len()) {
        for (m, v) in lanes.iter_mut().zip(chunk) {
            *m = m.max(v.abs());
        }
    }
    let amax = lanes.iter().fold(0f32, |m, &v| m.max(v));
    let d = amax / 127.0;
    let id = if d != 0.0 { 1.0 / d } else { 0.0 };
    for (q, &v) in out.0.iter_mut().zip(values) {
        // `as i8` saturates as the clamp does (an infinite `id` makes ±inf), and a NaN
        // still becomes 0; the clamp and the i32 conversion vectorize.
        *q = round_half_away(v * id).clamp(-128.0, 127.0) as i32 as i8;
    }
    f16::from_f32(d).to_f32()
}

/// `x.round()` (ties away from zero, as C's `roundf` in GGML's quantizer), written with
/// `trunc`, which is one instruction where SSE4.1 or AVX is enabled, so that the loop over a
/// block vectorizes instead of calling `roundf` per value. Exact: `x - trunc(x)` is exact
/// for every float, and so is the comparison with 0.5.
#[inline(always)]
fn round_half_away(x: f32) -> f32 {
    let t = x.trunc();
    if (x - t).abs() >= 0.5 {
        t + 1f32.copysign(x)
    } else {
        t
    }
}

/// The portable kernel, and the order of float operations every kernel keeps: per row and
/// token, `sum + f32(dot) · (d_w · d_x)` block after block.
fn scalar_tile(tile: &Tile<'_>, out: &mut TileSums) {
    let nb = tile.blocks;
    for (t, out_t) in out.iter_mut().enumerate().take(tile.tokens) {
        for (g, out_g) in out_t.iter_mut().enumerate().take(tile.groups) {
            for (r, sum) in out_g.iter_mut().enumerate() {
                let lane = r * SLICE_VALUES..(r + 1) * SLICE_VALUES;
                let mut acc = 0f32;
                for b in 0..nb {
                    let (w, x) = (g * nb + b, t * nb + b);
                    let slices = &tile.wq[w * SLICES..(w + 1) * SLICES];
                    let dot: i32 = slices
                        .iter()
                        .zip(tile.xq[x].0.chunks_exact(SLICE_VALUES))
                        .flat_map(|(slice, xs)| slice.0[lane.clone()].iter().zip(xs))
                        .map(|(&w, &x)| i32::from(unbias(w)) * i32::from(x))
                        .sum();
                    acc += dot as f32 * (tile.wd[w].0[r] * tile.xd[x]);
                }
                *sum = acc;
            }
        }
    }
}

/// The kernel chosen for this CPU.
#[derive(Clone, Copy, Debug)]
enum Simd {
    Scalar,
    #[cfg(target_arch = "x86_64")]
    Avx2(x86::Avx2),
    #[cfg(target_arch = "x86_64")]
    AvxVnni(x86::AvxVnni),
    #[cfg(target_arch = "x86_64")]
    Avx512Vnni(x86::Avx512Vnni),
}

impl Simd {
    /// The fastest kernel this CPU runs, capped by [`KERNEL_ENV`] (an unknown value caps
    /// nothing here: the command line refuses it before any product runs).
    fn detect() -> Simd {
        static DETECTED: std::sync::OnceLock<Simd> = std::sync::OnceLock::new();
        *DETECTED.get_or_init(|| {
            let cap = Kernel::cap_from_env().ok().flatten();
            Kernel::available()
                .into_iter()
                .rev()
                .filter(|&k| cap.is_none_or(|cap| k.rank() <= cap.rank()))
                .find_map(Kernel::simd)
                .unwrap_or(Simd::Scalar)
        })
    }

    fn kernel(self) -> Kernel {
        match self {
            Simd::Scalar => Kernel::Portable,
            #[cfg(target_arch = "x86_64")]
            Simd::Avx2(_) => Kernel::Avx2,
            #[cfg(target_arch = "x86_64")]
            Simd::AvxVnni(_) => Kernel::AvxVnni,
            #[cfg(target_arch = "x86_64")]
            Simd::Avx512Vnni(_) => Kernel::Avx512Vnni,
        }
    }

    /// Weight groups per tile of [`TILE_TOKENS`] tokens: as many as the registers hold
    /// (the 256-bit kernels walk a group's two halves one after the other). With 512-bit
    /// vectors, 3 groups × 4 tokens take 28 of the 32 registers (12 float sums, 12 block
    /// sums, 3 weight slices, a broadcast): 4% faster than 2 groups on the refiner's
    /// products of 512 tokens on the Xeon.
    fn groups_per_tile(self) -> usize {
        match self {
            #[cfg(target_arch = "x86_64")]
            Simd::Avx512Vnni(_) => 3,
            _ => 1,
        }
    }

    /// The AVX2 proof every x86 SIMD kernel carries (for quantizing).
    #[cfg(target_arch = "x86_64")]
    fn avx2(self) -> Option<x86::Avx2> {
        match self {
            Simd::Scalar => None,
            Simd::Avx2(cpu) => Some(cpu),
            Simd::AvxVnni(cpu) => Some(cpu.avx2),
            Simd::Avx512Vnni(cpu) => Some(cpu.avx2),
        }
    }
}

#[cfg(target_arch = "x86_64")]
#[allow(unsafe_code)]
mod x86 {
    use std::arch::x86_64::*;

    use half::f16;

    use super::{
        Block, Scales, Slice, Tile, TileSums, GROUP, MAX_GROUPS, SLICES, SLICE_VALUES, TILE_TOKENS,
    };

    /// Rows of a group one 256-bit vector holds.
    const HALF: usize = GROUP / 2;
    /// Bytes of a [`Slice`].
    const SLICE_BYTES: usize = SLICE_VALUES * GROUP;

    pub(super) use crate::cpu::Avx2;

    /// Proof of a 256-bit `vpdpbusd`: AVX-VNNI (`vex`), or AVX512-VNNI with AVX512-VL.
    #[derive(Clone, Copy, Debug)]
    pub(super) struct AvxVnni {
        pub(super) avx2: Avx2,
        vex: bool,
    }

    impl AvxVnni {
        pub(super) fn detect() -> Option<AvxVnni> {
            let avx2 = Avx2::detect()?;
            if is_x86_feature_detected!("avxvnni") {
                return Some(AvxVnni { avx2, vex: true });
            }
            (is_x86_feature_detected!("avx512vnni") && is_x86_feature_detected!("avx512vl"))
                .then_some(AvxVnni { avx2, vex: false })
        }
    }

    /// Proof of a 512-bit `vpdpbusd` (AVX512-F, AVX512-BW, AVX512-VNNI).
    #[derive(Clone, Copy, Debug)]
    pub(super) struct Avx512Vnni {
        pub(super) avx2: Avx2,
    }

    impl Avx512Vnni {
        pub(super) fn detect() -> Option<Avx512Vnni> {
            let avx2 = Avx2::detect()?;
            (is_x86_feature_detected!("avx512f")
                && is_x86_feature_detected!("avx512bw")
                && is_x86_feature_detected!("avx512vnni"))
            .then_some(Avx512Vnni { avx2 })
        }
    }

    /// Panics unless the tile's slices hold every entry a kernel reads.
    fn check(tile: &Tile<'_>) {
        let (w, x) = (tile.groups * tile.blocks, tile.tokens * tile.blocks);
        assert!(
            tile.groups <= MAX_GROUPS && tile.tokens <= TILE_TOKENS,
            "tile larger than the kernels' registers"
        );
        assert!(
            tile.wq.len() >= w * SLICES && tile.wd.len() >= w,
            "weight tile out of range"
        );
        assert!(
            tile.xq.len() >= x && tile.xd.len() >= x && tile.xbias.len() >= x,
            "token tile out of range"
        );
    }

    /// [`super::portable_block`] on 256-bit vectors, with the same bits: a block's maximum,
    /// the rounding (ties away from zero), the clamp and the sum of its values, 8 values at a
    /// time. Compiled from the scalar code, the clamp and the conversion to `i8` stayed one
    /// value at a time, and quantizing took 43% as long as the 512-token products it feeds
    /// on the Xeon.
    pub(super) fn quantize_block(
        _cpu: Avx2,
        values: &[f32; super::BLOCK],
        out: &mut Block,
    ) -> (f32, i32) {
        // SAFETY: `_cpu` exists only when AVX2 and FMA were detected.
        unsafe { quantize_block_avx2(values, out) }
    }

    /// [`quantize_block`]'s body: the block's f16 scale widened, and the sum of its values.
    ///
    /// # Safety
    /// AVX2 must be available.
    #[target_feature(enable = "avx2,fma")]
    fn quantize_block_avx2(values: &[f32; super::BLOCK], out: &mut Block) -> (f32, i32) {
        let sign = _mm256_set1_ps(-0.0);
        // SAFETY: 4 × 8 floats of the 32 in `values`.
        let v: [__m256; 4] =
            std::array::from_fn(|i| unsafe { _mm256_loadu_ps(values.as_ptr().add(8 * i)) });
        // `max` returns its second operand when either is NaN: the running maximum, never
        // NaN itself, so that NaNs are ignored as `f32::max` ignores them.
        let lanes = v.iter().fold(_mm256_setzero_ps(), |m, &v| {
            _mm256_max_ps(_mm256_andnot_ps(sign, v), m)
        });
        let four = _mm_max_ps(
            _mm256_castps256_ps128(lanes),
            _mm256_extractf128_ps(lanes, 1),
        );
        let two = _mm_max_ps(four, _mm_movehl_ps(four, four));
        let amax = _mm_cvtss_f32(_mm_max_ss(two, _mm_movehdup_ps(two)));
        let d = amax / 127.0;
        let id = _mm256_set1_ps(if d != 0.0 { 1.0 / d } else { 0.0 });
        let (one, one_half, low, high) = (
            _mm256_set1_ps(1.0),
            _mm256_set1_ps(0.5),
            _mm256_set1_ps(-128.0),
            _mm256_set1_ps(127.0),
        );
        let q: [__m256i; 4] = std::array::from_fn(|i| {
            let x = _mm256_mul_ps(v[i], id);
            // `round_half_away`: `trunc`, then one step away from zero from a half up.
            let t = _mm256_round_ps(x, _MM_FROUND_TO_ZERO | _MM_FROUND_NO_EXC);
            let away = _mm256_cmp_ps(
                _mm256_andnot_ps(sign, _mm256_sub_ps(x, t)),
                one_half,
                _CMP_GE_OQ,
            );
            let step = _mm256_or_ps(_mm256_and_ps(x, sign), one);
            let r = _mm256_add_ps(t, _mm256_and_ps(away, step));
            // A NaN becomes 0, as `NaN as i32` does; the clamp then makes every value exact.
            let r = _mm256_and_ps(r, _mm256_cmp_ps(r, r, _CMP_ORD_Q));
            _mm256_cvttps_epi32(_mm256_min_ps(_mm256_max_ps(r, low), high))
        });
        let sum = _mm256_add_epi32(_mm256_add_epi32(q[0], q[1]), _mm256_add_epi32(q[2], q[3]));
        let sum = _mm_add_epi32(
            _mm256_castsi256_si128(sum),
            _mm256_extracti128_si256(sum, 1),
        );
        let sum = _mm_add_epi32(sum, _mm_unpackhi_epi64(sum, sum));
        let sum = _mm_cvtsi128_si32(_mm_add_epi32(sum, _mm_shuffle_epi32(sum, 1)));
        // Packing works within 128-bit lanes: the dwords come out as values 0-3, 8-11, 16-19,
        // 24-27, then 4-7, 12-15, ...; the permutation puts them back in order.
        let packed = _mm256_packs_epi16(
            _mm256_packs_epi32(q[0], q[1]),
            _mm256_packs_epi32(q[2], q[3]),
        );
        let packed = _mm256_permutevar8x32_epi32(packed, _mm256_setr_epi32(0, 4, 1, 5, 2, 6, 3, 7));
        // SAFETY: a `Block` is 32 bytes, 32-byte aligned.
        unsafe { _mm256_store_si256(out.0.as_mut_ptr().cast(), packed) };
        (f16::from_f32(d).to_f32(), sum)
    }

    /// Copies a half-group kernel's sums into the tile's sums.
    fn store_half<const T: usize>(
        out: &mut TileSums,
        group: usize,
        half: usize,
        sums: [[f32; HALF]; T],
    ) {
        for (o, s) in out.iter_mut().zip(&sums) {
            o[group][half * HALF..(half + 1) * HALF].copy_from_slice(s);
        }
    }

    /// Runs a 256-bit half-group kernel over both halves of every group of a checked tile.
    /// The caller's `unsafe` block states why `$kernel`'s target features are available.
    macro_rules! by_halves {
        ($tile:ident, $out:ident, $kernel:ident) => {{
            let nb = $tile.blocks;
            let (xq, xd, xbias) = ($tile.xq.as_ptr(), $tile.xd.as_ptr(), $tile.xbias.as_ptr());
            for g in 0..$tile.groups {
                for half in 0..2 {
                    // Group `g`'s first slice and scales, then the half's bytes and lanes:
                    // in range for a checked tile (`g < groups`).
                    let w = $tile.wq.as_ptr().add(g * nb * SLICES).cast::<u8>();
                    let w = w.add(half * SLICE_BYTES / 2);
                    let wd = $tile.wd.as_ptr().add(g * nb).cast::<f32>().add(half * HALF);
                    match $tile.tokens {
                        1 => store_half($out, g, half, $kernel::<1>(w, wd, xq, xd, xbias, nb)),
                        2 => store_half($out, g, half, $kernel::<2>(w, wd, xq, xd, xbias, nb)),
                        3 => store_half($out, g, half, $kernel::<3>(w, wd, xq, xd, xbias, nb)),
                        _ => store_half($out, g, half, $kernel::<4>(w, wd, xq, xd, xbias, nb)),
                    }
                }
            }
        }};
    }

    /// The AVX2 kernel on a tile.
    pub(super) fn tile_avx2(_cpu: Avx2, tile: &Tile<'_>, out: &mut TileSums) {
        check(tile);
        // SAFETY: `_cpu` exists only when AVX2 and FMA were detected; the tile holds every
        // entry the kernel reads (checked); slices are 64-byte and blocks 32-byte aligned.
        unsafe { by_halves!(tile, out, half_avx2) }
    }

    /// The 256-bit `vpdpbusd` kernel on a tile.
    pub(super) fn tile_avxvnni(cpu: AvxVnni, tile: &Tile<'_>, out: &mut TileSums) {
        check(tile);
        // SAFETY: `cpu` exists only when AVX2 and FMA, and AVX-VNNI (`vex`) or AVX512-VNNI
        // and AVX512-VL, were detected; the tile holds every entry the kernel reads
        // (checked); slices are 64-byte and blocks 32-byte aligned.
        unsafe {
            if cpu.vex {
                by_halves!(tile, out, half_vex)
            } else {
                by_halves!(tile, out, half_evex)
            }
        }
    }

    /// The 512-bit `vpdpbusd` kernel on a tile.
    pub(super) fn tile_avx512vnni(_cpu: Avx512Vnni, tile: &Tile<'_>, out: &mut TileSums) {
        check(tile);
        let (wq, wd, xq, xd, xbias, nb) = (
            tile.wq.as_ptr(),
            tile.wd.as_ptr(),
            tile.xq.as_ptr(),
            tile.xd.as_ptr(),
            tile.xbias.as_ptr(),
            tile.blocks,
        );
        macro_rules! run {
            ($g:literal, $t:literal) => {{
                // SAFETY: `_cpu` exists only when AVX512-F, -BW and -VNNI were detected; the
                // tile holds `$g` groups and `$t` tokens of `nb` blocks (checked); slices
                // and scales are 64-byte aligned.
                let sums = unsafe { tile_512::<$g, $t>(wq, wd, xq, xd, xbias, nb) };
                for (o, s) in out.iter_mut().zip(&sums) {
                    o[..$g].copy_from_slice(s);
                }
            }};
        }
        match (tile.groups, tile.tokens) {
            (1, 1) => run!(1, 1),
            (1, 2) => run!(1, 2),
            (1, 3) => run!(1, 3),
            (1, 4) => run!(1, 4),
            (2, 1) => run!(2, 1),
            (2, 2) => run!(2, 2),
            (2, 3) => run!(2, 3),
            (2, 4) => run!(2, 4),
            (3, 1) => run!(3, 1),
            (3, 2) => run!(3, 2),
            (3, 3) => run!(3, 3),
            (3, 4) => run!(3, 4),
            (4, 1) => run!(4, 1),
            (4, 2) => run!(4, 2),
            (4, 3) => run!(4, 3),
            (4, 4) => run!(4, 4),
            // Shapes the band never asks for: the portable kernel gives the same bits.
            _ => super::scalar_tile(tile, out),
        }
    }

    /// No bias to remove: the AVX2 kernel multiplies unbiased weights.
    #[inline]
    #[target_feature(enable = "avx2")]
    fn start_at_zero(_bias: i32) -> __m256i {
        _mm256_setzero_si256()
    }

    /// A block's sums start at `-128 · Σx`, which cancels the weights' bias.
    #[inline]
    #[target_feature(enable = "avx2")]
    fn start_at_bias(bias: i32) -> __m256i {
        _mm256_set1_epi32(bias)
    }

    /// The weights `w` (bias removed) and `|w|`, for the sign trick.
    #[inline]
    #[target_feature(enable = "avx2")]
    fn signed_weights(biased: __m256i) -> [__m256i; 2] {
        let w = _mm256_xor_si256(biased, _mm256_set1_epi8(i8::MIN));
        [w, _mm256_abs_epi8(w)]
    }

    /// `vpdpbusd` takes the biased weights as they are.
    #[inline]
    #[target_feature(enable = "avx2")]
    fn biased_weights(biased: __m256i) -> [__m256i; 2] {
        [biased, biased]
    }

    /// `acc + Σ w · x` per 32-bit lane: `|w| · (x · sign w)` in `vpmaddubsw`'s u8 × i8
    /// pairs, which cannot saturate (|w| <= 128, |x| <= 127), then pairs of pairs.
    #[inline]
    #[target_feature(enable = "avx2")]
    fn dot_avx2(acc: __m256i, [w, w_abs]: [__m256i; 2], x: __m256i) -> __m256i {
        let pairs = _mm256_maddubs_epi16(w_abs, _mm256_sign_epi8(x, w));
        _mm256_add_epi32(acc, _mm256_madd_epi16(pairs, _mm256_set1_epi16(1)))
    }

    /// `acc + Σ (w + 128) · x` per 32-bit lane (AVX-VNNI's VEX encoding).
    #[inline]
    #[target_feature(enable = "avx2,avxvnni")]
    fn dot_vex(acc: __m256i, [biased, _]: [__m256i; 2], x: __m256i) -> __m256i {
        _mm256_dpbusd_avx_epi32(acc, biased, x)
    }

    /// `acc + Σ (w + 128) · x` per 32-bit lane (AVX512-VNNI's EVEX encoding).
    #[inline]
    #[target_feature(enable = "avx2,avx512vnni,avx512vl")]
    fn dot_evex(acc: __m256i, [biased, _]: [__m256i; 2], x: __m256i) -> __m256i {
        _mm256_dpbusd_epi32(acc, biased, x)
    }

    /// Defines a kernel of 8 weight rows (half a group) × `T` tokens on 256-bit vectors:
    /// `$start` makes a block's starting sums from its bias correction, `$weights` prepares
    /// a slice of weights once for all tokens, `$dot` adds one token's slice products.
    macro_rules! half_kernel {
        ($(#[$doc:meta])* $name:ident, $features:literal, $start:ident, $weights:ident, $dot:ident) => {
            $(#[$doc])*
            ///
            /// # Safety
            /// The target features must be available; `w` is a group's first slice plus 0
            /// or 32 bytes (the half) and `wd` its first scales plus 0 or 8 lanes, both over
            /// `blocks` blocks; `xq`, `xd` and `xbias` hold `T · blocks` entries.
            #[target_feature(enable = $features)]
            unsafe fn $name<const T: usize>(
                w: *const u8,
                wd: *const f32,
                xq: *const Block,
                xd: *const f32,
                xbias: *const i32,
                blocks: usize,
            ) -> [[f32; HALF]; T] {
                let mut acc = [_mm256_setzero_ps(); T];
                for b in 0..blocks {
                    let mut dots = [_mm256_setzero_si256(); T];
                    for (t, dot) in dots.iter_mut().enumerate() {
                        // SAFETY: `t · blocks + b < T · blocks` entries of `xbias`.
                        *dot = $start(unsafe { *xbias.add(t * blocks + b) });
                    }
                    for k in 0..SLICES {
                        // SAFETY: 32 bytes of slice `k` of block `b`, inside the group's
                        // `blocks · SLICES` slices; 32-byte aligned (64-byte slices).
                        let wv = $weights(unsafe {
                            _mm256_load_si256(w.add((b * SLICES + k) * SLICE_BYTES).cast())
                        });
                        for (t, dot) in dots.iter_mut().enumerate() {
                            // SAFETY: values `4k..4k + 4` of block `t · blocks + b` (of
                            // `T · blocks`), 4-byte aligned.
                            let x = unsafe { xq.add(t * blocks + b).cast::<i32>().add(k).read() };
                            *dot = $dot(*dot, wv, _mm256_set1_epi32(x));
                        }
                    }
                    // SAFETY: the half's 8 scales of block `b` (of `blocks`).
                    let ws = unsafe { _mm256_loadu_ps(wd.add(b * GROUP)) };
                    for (t, (a, dot)) in acc.iter_mut().zip(dots).enumerate() {
                        // SAFETY: `t · blocks + b < T · blocks` entries of `xd`.
                        let xs = _mm256_set1_ps(unsafe { *xd.add(t * blocks + b) });
                        let scale = _mm256_mul_ps(ws, xs);
                        *a = _mm256_add_ps(*a, _mm256_mul_ps(_mm256_cvtepi32_ps(dot), scale));
                    }
                }
                let mut out = [[0f32; HALF]; T];
                for (a, o) in acc.iter().zip(out.iter_mut()) {
                    // SAFETY: `o` is 8 writable floats.
                    unsafe { _mm256_storeu_ps(o.as_mut_ptr(), *a) };
                }
                out
            }
        };
    }

    half_kernel!(
        half_avx2,
        "avx2,fma",
        start_at_zero,
        signed_weights,
        dot_avx2
    );
    half_kernel!(
        half_vex,
        "avx2,fma,avxvnni",
        start_at_bias,
        biased_weights,
        dot_vex
    );
    half_kernel!(
        half_evex,
        "avx2,fma,avx512vnni,avx512vl",
        start_at_bias,
        biased_weights,
        dot_evex
    );

    /// `G` groups × `T` tokens on 512-bit vectors: per block and slice, `G` weight loads, `T`
    /// broadcasts and `G · T` `vpdpbusd`; then each sum is scaled as the portable kernel
    /// does.
    ///
    /// # Safety
    /// AVX512-F, -BW and -VNNI must be available; `wq` holds `G · blocks · SLICES` slices
    /// and `wd` `G · blocks` scales; `xq`, `xd` and `xbias` hold `T · blocks` entries.
    #[allow(clippy::needless_range_loop)] // `acc` and `dots` are indexed `[t][g]` alike
    #[target_feature(enable = "avx2,fma,avx512f,avx512bw,avx512vnni")]
    unsafe fn tile_512<const G: usize, const T: usize>(
        wq: *const Slice,
        wd: *const Scales,
        xq: *const Block,
        xd: *const f32,
        xbias: *const i32,
        blocks: usize,
    ) -> [[[f32; GROUP]; G]; T] {
        let mut acc = [[_mm512_setzero_ps(); G]; T];
        for b in 0..blocks {
            let mut dots = [[_mm512_setzero_si512(); G]; T];
            for (t, dots_t) in dots.iter_mut().enumerate() {
                // SAFETY: `t · blocks + b < T · blocks` entries of `xbias`.
                *dots_t = [_mm512_set1_epi32(unsafe { *xbias.add(t * blocks + b) }); G];
            }
            for k in 0..SLICES {
                let mut w = [_mm512_setzero_si512(); G];
                for (g, wg) in w.iter_mut().enumerate() {
                    // SAFETY: slice `k` of block `b` of group `g` (of `G · blocks · SLICES`),
                    // 64-byte aligned.
                    *wg =
                        unsafe { _mm512_load_si512(wq.add((g * blocks + b) * SLICES + k).cast()) };
                }
                for (t, dots_t) in dots.iter_mut().enumerate() {
                    // SAFETY: values `4k..4k + 4` of block `t · blocks + b` (of `T · blocks`),
                    // 4-byte aligned.
                    let x = unsafe { xq.add(t * blocks + b).cast::<i32>().add(k).read() };
                    let x = _mm512_set1_epi32(x);
                    for (dot, wg) in dots_t.iter_mut().zip(&w) {
                        *dot = _mm512_dpbusd_epi32(*dot, *wg, x);
                    }
                }
            }
            for g in 0..G {
                // SAFETY: the scales of block `b` of group `g` (of `G · blocks`), aligned.
                let ws = unsafe { _mm512_load_ps(wd.add(g * blocks + b).cast()) };
                for t in 0..T {
                    // SAFETY: `t · blocks + b < T · blocks` entries of `xd`.
                    let xs = _mm512_set1_ps(unsafe { *xd.add(t * blocks + b) });
                    let scale = _mm512_mul_ps(ws, xs);
                    let sum = _mm512_mul_ps(_mm512_cvtepi32_ps(dots[t][g]), scale);
                    acc[t][g] = _mm512_add_ps(acc[t][g], sum);
                }
            }
        }
        let mut out = [[[0f32; GROUP]; G]; T];
        for (acc_t, out_t) in acc.iter().zip(out.iter_mut()) {
            for (a, o) in acc_t.iter().zip(out_t.iter_mut()) {
                // SAFETY: `o` is 16 writable floats.
                unsafe { _mm512_storeu_ps(o.as_mut_ptr(), *a) };
            }
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use prox_test::pseudo_random;

    #[test]
    fn activation_blocks_are_quantized_as_candle_quantizes() {
        let mut x = pseudo_random(3 * 64, 3);
        // Blocks whose scale is subnormal (its inverse infinite), with an infinity, with a
        // NaN, and of zeros.
        x[..32].copy_from_slice(&[1e-40, -3e-40, 0.0, 2e-41].repeat(8));
        x[40] = f32::INFINITY;
        x[70] = f32::NAN;
        x[96..128].fill(0.0);
        let t = Tensor::from_vec(x.clone(), (3, 64), &candle_core::Device::Cpu).unwrap();
        let q = QTensor::quantize(&t, GgmlDType::Q8_0).unwrap();
        let raw = q.data().unwrap();
        for kernel in Kernel::available() {
            let mut act = Activations::empty();
            // Twice, so that reused storage is checked too.
            act.quantize(&pseudo_random(5 * 64, 4), 5, 2, kernel.simd().unwrap());
            act.quantize(&x, 3, 2, kernel.simd().unwrap());
            assert_eq!(act.qs.len(), 6, "{kernel:?}");
            for (at, ggml) in raw.chunks_exact(GGML_BLOCK_BYTES).enumerate() {
                let values: Vec<i8> = ggml[2..].iter().map(|&b| b as i8).collect();
                let d = f16::from_bits(u16::from_le_bytes([ggml[0], ggml[1]])).to_f32();
                assert_eq!(
                    act.qs[at].0.as_slice(),
                    values.as_slice(),
                    "{kernel:?} block {at}"
                );
                assert_eq!(
                    act.scales[at].to_bits(),
                    d.to_bits(),
                    "{kernel:?} block {at}"
                );
                let sum: i32 = values.iter().map(|&v| i32::from(v)).sum();
                assert_eq!(act.bias[at], -128 * sum, "{kernel:?} block {at}");
            }
        }
    }

    #[test]
    fn every_quantizer_gives_the_portable_quantizers_bits() {
        // Blocks of every scale, and blocks whose largest value is 127, so that the scale is
        // 1 and halves are exact ties, with values at the clamp's edges.
        let mut x = pseudo_random(64 * 32, 9);
        for (i, v) in x.iter_mut().enumerate() {
            *v *= [1e-30, 1e-3, 1.0, 1e3, 1e30][i / 32 % 5];
        }
        let mut ties: Vec<f32> = (0..32).map(|i| i as f32 * 4.0 - 63.5).collect();
        ties[0] = 127.0;
        ties[1] = -126.5;
        ties[2] = 0.5;
        ties[3] = -0.5;
        ties[4] = -0.0;
        x.extend(&ties);
        x.extend(ties.iter().map(|v| -v));
        let tokens = x.len() / 64;
        let mut expected = Activations::empty();
        expected.quantize(&x, tokens, 2, Simd::Scalar);
        for kernel in Kernel::available() {
            let mut act = Activations::empty();
            act.quantize(&x, tokens, 2, kernel.simd().unwrap());
            assert_eq!(act.qs, expected.qs, "{kernel:?}");
            assert_eq!(act.bias, expected.bias, "{kernel:?}");
            let bits = |v: &[f32]| v.iter().map(|d| d.to_bits()).collect::<Vec<_>>();
            assert_eq!(bits(&act.scales), bits(&expected.scales), "{kernel:?}");
        }
        // The ties round away from zero.
        let at = 64 * 32 / 32;
        assert_eq!(&expected.qs[at].0[..5], &[127, -127, 1, -1, 0]);
        assert_eq!(expected.qs[at].0[5], -44, "-43.5");
    }

    #[test]
    fn rounding_is_roundf_on_ties_and_neighbours() {
        let mut cases = vec![0.0f32, -0.0, 0.5, -0.5, 1.5, -1.5, 2.5, -2.5, 126.5, -127.5];
        for x in [0.5f32, 1.5, 2.5, 126.5, 127.0] {
            cases.extend([x.next_up(), x.next_down(), -x.next_up(), -x.next_down()]);
        }
        cases.extend(pseudo_random(10_000, 9).iter().map(|v| v * 300.0));
        for x in cases {
            assert_eq!(round_half_away(x).to_bits(), x.round().to_bits(), "{x:e}");
        }
    }

    #[test]
    fn groups_keep_every_block_of_the_qtensor() {
        // 19 rows: a whole group and a padded one.
        let w = pseudo_random(19 * 96, 5);
        let t = Tensor::from_vec(w, (19, 96), &candle_core::Device::Cpu).unwrap();
        let q = QTensor::quantize(&t, GgmlDType::Q8_0).unwrap();
        let ours = Q8Matrix::from_qtensor(&q).unwrap().dequantize();
        let candle = q
            .dequantize(&candle_core::Device::Cpu)
            .unwrap()
            .flatten_all()
            .unwrap()
            .to_vec1::<f32>()
            .unwrap();
        assert_eq!(ours, candle);
    }

    #[test]
    fn weights_of_minus_128_survive_the_bias() {
        // GGML's quantizer never writes -128, but a GGUF file may hold it.
        let mut raw = vec![0u8; GGML_BLOCK_BYTES];
        raw[..2].copy_from_slice(&f16::from_f32(0.5).to_bits().to_le_bytes());
        raw[2..].fill(0x80);
        let m = Q8Matrix::from_ggml_blocks(1, BLOCK, &raw).unwrap();
        assert_eq!(m.dequantize(), vec![-64.0; BLOCK]);
        // Ones quantize to 127 with the scale 1/127 (as f16).
        let x = vec![1.0; BLOCK];
        let d = f16::from_f32(1.0 / 127.0).to_f32();
        let expected = (-128 * 127 * BLOCK as i32) as f32 * (0.5 * d);
        for kernel in Kernel::available() {
            assert_eq!(
                m.matmul_with(&x, kernel).unwrap(),
                vec![expected],
                "{kernel:?}"
            );
        }
    }

    #[test]
    fn other_block_types_are_refused() {
        let t =
            Tensor::zeros((4, 256), candle_core::DType::F32, &candle_core::Device::Cpu).unwrap();
        let q = QTensor::quantize(&t, GgmlDType::Q4K).unwrap();
        assert!(Q8Matrix::from_qtensor(&q).is_err());
    }

    #[test]
    fn the_kernel_cap_names_a_kernel_or_is_refused() {
        assert_eq!(Kernel::parse_cap(""), Ok(None));
        assert_eq!(Kernel::parse_cap("portable"), Ok(Some(Kernel::Portable)));
        assert_eq!(Kernel::parse_cap(" AVX2 "), Ok(Some(Kernel::Avx2)));
        assert_eq!(Kernel::parse_cap("avxvnni"), Ok(Some(Kernel::AvxVnni)));
        assert_eq!(
            Kernel::parse_cap("AVX512VNNI"),
            Ok(Some(Kernel::Avx512Vnni))
        );
        let err = Kernel::parse_cap("avx9").unwrap_err();
        assert!(
            err.to_string()
                .contains("known: portable, avx2, avxvnni, avx512vnni"),
            "{err}"
        );
    }

    #[test]
    fn the_portable_kernel_runs_everywhere_and_comes_first() {
        assert_eq!(Kernel::available()[0], Kernel::Portable);
        assert!(Kernel::available().contains(&Kernel::best()));
        let ranks: Vec<usize> = Kernel::available().iter().map(|k| k.rank()).collect();
        assert!(ranks.windows(2).all(|w| w[0] < w[1]), "{ranks:?}");
    }

    #[test]
    fn a_ragged_input_is_an_error() {
        let t = Tensor::zeros((4, 64), candle_core::DType::F32, &candle_core::Device::Cpu).unwrap();
        let m = Q8Matrix::quantize(&t).unwrap();
        assert!(m.matmul(&[0.0; 65]).is_err());
    }
}
