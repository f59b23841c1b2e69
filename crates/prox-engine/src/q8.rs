//! Q8_0 matrix products on the CPU, register-tiled in the style of llamafile's tinyBLAS.
//!
//! candle computes a Q8_0 product as one dot product per (token, weight row): every weight
//! block is read again for every token and every dot product ends in its own horizontal sum.
//! [`Q8Matrix`] keeps the same numbers (GGML's `block_q8_0`: 32 `i8` and one scale per block;
//! the activations are quantized exactly as `quantize_row_q8_0` does, so every integer block
//! dot product equals candle's) and computes them by tiles:
//!
//! - the weight rows are stored in panels of [`PANEL`] rows whose blocks are interleaved, so
//!   that one SIMD lane group holds the four rows' partial sums and the scales of a panel's
//!   block are one 128-bit load;
//! - a tile of one panel × 4 tokens (prefill) or up to 4 panels × 1 to 3 tokens (decode) is
//!   kept in `__m256` accumulators over the whole row. Per block and (row, token) pair, the
//!   decode kernel computes 8 × i32 with `sign`/`maddubs`/`madd` on the bytes; the prefill
//!   kernel, which reuses each weight panel for many tokens, widens the panel to i16 once and
//!   needs only two `madd` (no `sign`). Two rounds of `hadd` then fold a panel's four rows into
//!   one vector, converted to f32 and multiplied by `d_w · d_x` with one FMA. Both kernels
//!   sum the same values in each 128-bit half, so a token's result is bit-identical whatever
//!   its batch;
//! - tokens are walked in panels small enough that their quantized blocks stay in L2 while
//!   the weight panels stream; the weight rows are split into a few large contiguous bands, one
//!   rayon task each.
//!
//! A portable scalar kernel computes the same sums; it serves CPUs without AVX2 and FMA and
//! checks the SIMD kernel in tests.

use std::cell::RefCell;

use candle_core::backend::BackendStorage;
use candle_core::quantized::{GgmlDType, QTensor};
use candle_core::{CpuStorage, Layout, Shape, Tensor};
use half::f16;
use rayon::prelude::*;

type CResult<T> = candle_core::Result<T>;

/// Values per Q8_0 block.
pub const BLOCK: usize = 32;
/// Weight rows per panel: the rows whose partial sums share one vector.
pub const PANEL: usize = 4;
/// Bytes of GGML's `block_q8_0`: an f16 scale, then 32 `i8`.
const GGML_BLOCK_BYTES: usize = 2 + BLOCK;
/// Tokens per SIMD tile of the prefill kernel.
const TILE_TOKENS: usize = 4;
/// Panels per SIMD tile of the decode kernel (fewer than [`TILE_TOKENS`] tokens).
const DECODE_PANELS: usize = 4;
/// Bytes of quantized activations a token panel may hold, so that it stays in L2 while the
/// weight panels stream past it.
const TOKEN_PANEL_BYTES: usize = 256 * 1024;
/// Below this many block products a call runs on the calling thread: splitting it would
/// cost more than it saves.
const PARALLEL_MIN_BLOCK_DOTS: usize = 1 << 15;

/// 32 quantized values, aligned so that one block is one aligned 256-bit load.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
#[repr(C, align(32))]
struct Block([i8; BLOCK]);

/// A block widened to i16 in the order `[0..8, 16..24 | 8..16, 24..32]`: two `madd_epi16`
/// over it leave in each 128-bit half the products of the same 16 values as `maddubs` over
/// the bytes does (0..16, then 16..32), so both kernels round alike and a token's result
/// does not depend on which kernel its batch size picks.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
#[repr(C, align(32))]
struct Wide([i16; BLOCK]);

/// The value of a block each position of a [`Wide`] holds.
const WIDE_ORDER: [usize; BLOCK] = [
    0, 1, 2, 3, 4, 5, 6, 7, 16, 17, 18, 19, 20, 21, 22, 23, //
    8, 9, 10, 11, 12, 13, 14, 15, 24, 25, 26, 27, 28, 29, 30, 31,
];

/// Which kernel computes a product.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Kernel {
    /// The fastest one this CPU runs, capped by [`KERNEL_ENV`] when it is set.
    #[default]
    Best,
    /// The portable scalar kernel: every CPU, and the reference the SIMD kernels are tested
    /// against.
    Portable,
    /// AVX2 and FMA (x86-64); an error on a CPU without them.
    Avx2,
}

/// The environment variable that caps the kernel [`Kernel::Best`] picks (`portable`,
/// `avx2`), so that on a richer CPU the lower paths can be run, tested and benchmarked.
pub const KERNEL_ENV: &str = "PROX_Q8_KERNEL";

/// A [`KERNEL_ENV`] value that names no kernel.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{KERNEL_ENV}={value:?} names no Q8_0 kernel (known: portable, avx2)")]
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
        }
    }

    /// The kernel [`Kernel::Best`] stands for on this CPU, after the cap.
    pub fn best() -> Kernel {
        Simd::detect().kernel()
    }

    /// Every kernel this CPU runs, the portable one first; the cap does not apply, so that
    /// tests reach every path the CPU has.
    pub fn available() -> Vec<Kernel> {
        let mut kernels = vec![Kernel::Portable];
        #[cfg(target_arch = "x86_64")]
        if avx2::Avx2::detect().is_some() {
            kernels.push(Kernel::Avx2);
        }
        kernels
    }

    /// The cap set by [`KERNEL_ENV`]: `None` when unset or empty.
    pub fn cap_from_env() -> Result<Option<Kernel>, UnknownKernel> {
        match std::env::var(KERNEL_ENV) {
            Err(_) => Ok(None),
            Ok(value) => Kernel::parse_cap(&value),
        }
    }

    fn parse_cap(value: &str) -> Result<Option<Kernel>, UnknownKernel> {
        match value.trim().to_ascii_lowercase().as_str() {
            "" => Ok(None),
            "portable" => Ok(Some(Kernel::Portable)),
            "avx2" => Ok(Some(Kernel::Avx2)),
            _ => Err(UnknownKernel {
                value: value.to_owned(),
            }),
        }
    }

    /// The kernel's SIMD proof, or `None` when this CPU cannot run it.
    fn simd(self) -> Option<Simd> {
        match self {
            Kernel::Best => Some(Simd::detect()),
            Kernel::Portable => Some(Simd::Scalar),
            #[cfg(target_arch = "x86_64")]
            Kernel::Avx2 => avx2::Avx2::detect().map(Simd::Avx2),
            #[cfg(not(target_arch = "x86_64"))]
            Kernel::Avx2 => None,
        }
    }
}

/// A weight matrix `[rows, cols]` in Q8_0 blocks, applied as `y = x · Wᵀ`.
#[derive(Clone, Debug)]
pub struct Q8Matrix {
    rows: usize,
    cols: usize,
    /// Blocks per row.
    blocks: usize,
    /// `[panel][block][row in panel]`; the rows past `rows` in the last panel are zero.
    qs: Vec<Block>,
    /// The block scales, widened from f16 (exactly), in the same order.
    scales: Vec<f32>,
    /// The kernel [`Q8Matrix::matmul`] and [`Q8Matrix::forward`] use.
    kernel: Kernel,
}

/// Activations quantized to Q8_0, `[token][block]`.
struct Activations {
    tokens: usize,
    blocks: usize,
    qs: Vec<Block>,
    /// The same blocks widened (only for batches of at least [`TILE_TOKENS`] tokens).
    wide: Vec<Wide>,
    scales: Vec<f32>,
}

impl Q8Matrix {
    /// The blocks of a Q8_0 `QTensor` `[rows, cols]` (quantized by candle, or read from a
    /// GGUF file), rearranged into panels; no value changes.
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
    #[allow(clippy::manual_is_multiple_of)] // `is_multiple_of` is newer than rust-version
    fn from_ggml_blocks(rows: usize, cols: usize, data: &[u8]) -> CResult<Self> {
        if cols % BLOCK != 0 {
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
        let panels = rows.div_ceil(PANEL);
        let mut qs = vec![Block::default(); panels * blocks * PANEL];
        let mut scales = vec![0f32; panels * blocks * PANEL];
        if blocks > 0 {
            for (r, row) in data.chunks_exact(blocks * GGML_BLOCK_BYTES).enumerate() {
                let (panel, lane) = (r / PANEL, r % PANEL);
                for (b, raw) in row.chunks_exact(GGML_BLOCK_BYTES).enumerate() {
                    let at = (panel * blocks + b) * PANEL + lane;
                    scales[at] = f16::from_bits(u16::from_le_bytes([raw[0], raw[1]])).to_f32();
                    for (q, &byte) in qs[at].0.iter_mut().zip(&raw[2..]) {
                        *q = byte as i8;
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
                let (panel, lane) = (r / PANEL, r % PANEL);
                for (b, values) in row.chunks_exact_mut(BLOCK).enumerate() {
                    let at = (panel * self.blocks + b) * PANEL + lane;
                    for (v, &q) in values.iter_mut().zip(&self.qs[at].0) {
                        *v = f32::from(q) * self.scales[at];
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
    #[allow(clippy::manual_is_multiple_of)] // `is_multiple_of` is newer than rust-version
    pub fn matmul_with(&self, x: &[f32], kernel: Kernel) -> CResult<Vec<f32>> {
        if self.cols == 0 || x.len() % self.cols != 0 {
            candle_core::bail!(
                "{} activations are not whole rows of {} for a [{}, {}] Q8_0 matrix",
                x.len(),
                self.cols,
                self.rows,
                self.cols
            );
        }
        let tokens = x.len() / self.cols;
        let mut y = vec![0f32; tokens * self.rows];
        if tokens == 0 || self.rows == 0 {
            return Ok(y);
        }
        let Some(simd) = kernel.simd() else {
            candle_core::bail!("this CPU cannot run the {kernel:?} Q8_0 kernel");
        };
        SCRATCH.with(|cell| match cell.try_borrow_mut() {
            Ok(mut scratch) => self.matmul_into(x, tokens, &mut y, simd, &mut scratch),
            // Re-entered on this thread (a rayon task run while waiting): use fresh storage.
            Err(_) => self.matmul_into(x, tokens, &mut y, simd, &mut Activations::empty()),
        });
        Ok(y)
    }

    fn matmul_into(
        &self,
        x: &[f32],
        tokens: usize,
        y: &mut [f32],
        simd: Simd,
        act: &mut Activations,
    ) {
        act.quantize(x, tokens, self.blocks, simd);
        let panels = self.rows.div_ceil(PANEL);
        let work = tokens * panels * PANEL * self.blocks;
        let tasks = if work < PARALLEL_MIN_BLOCK_DOTS {
            1
        } else {
            rayon::current_num_threads().clamp(1, panels)
        };
        // Contiguous panel ranges of (almost) equal size, one per task.
        let bounds: Vec<usize> = (0..=tasks).map(|i| i * panels / tasks).collect();
        let mut bands: Vec<Band> = bounds
            .windows(2)
            .map(|w| Band {
                panels: w[0]..w[1],
                rows_out: Vec::with_capacity(tokens),
            })
            .collect();
        // Each task writes its own columns of every output row.
        for row in y.chunks_exact_mut(self.rows) {
            let mut rest = row;
            for band in &mut bands {
                let width = (band.panels.end * PANEL).min(self.rows) - band.panels.start * PANEL;
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

    /// All tokens against one band of weight panels.
    fn band(&self, act: &Activations, band: Band<'_>, simd: Simd) {
        let Band {
            panels,
            mut rows_out,
        } = band;
        let first_row = panels.start * PANEL;
        let nb = self.blocks;
        let token_bytes = nb * (std::mem::size_of::<Wide>() + 4);
        let token_panel =
            (TOKEN_PANEL_BYTES / token_bytes.max(1) / TILE_TOKENS * TILE_TOKENS).max(TILE_TOKENS);
        // The widened weights of one panel, and the sums of one panel with a token panel.
        let mut wide_panel = Vec::new();
        let mut panel_sums = Vec::new();
        let mut t0 = 0;
        while t0 < act.tokens {
            let t1 = (t0 + token_panel).min(act.tokens);
            // Whole tiles of tokens go to the widened kernel when there is one.
            let tiled = if act.wide.is_empty() {
                0
            } else {
                (t1 - t0) / TILE_TOKENS * TILE_TOKENS
            };
            let mut p = panels.start;
            while p < panels.end {
                let np = if t1 - t0 < TILE_TOKENS {
                    DECODE_PANELS.min(panels.end - p)
                } else {
                    1
                };
                let mut t = t0;
                #[cfg(target_arch = "x86_64")]
                if let (Simd::Avx2(cpu), true) = (simd, tiled > 0) {
                    let w = (p * nb * PANEL)..((p + 1) * nb * PANEL);
                    let x = (t0 * nb)..((t0 + tiled) * nb);
                    wide_panel.resize(nb * PANEL, Wide::default());
                    panel_sums.resize(tiled, [0f32; PANEL]);
                    avx2::panel(
                        cpu,
                        &mut wide_panel,
                        &self.qs[w.clone()],
                        &self.scales[w],
                        &act.wide[x.clone()],
                        &act.scales[x],
                        nb,
                        &mut panel_sums[..tiled],
                    );
                    let r0 = p * PANEL;
                    let n = PANEL.min(self.rows - r0);
                    for (out, sums) in rows_out[t0..t0 + tiled].iter_mut().zip(&panel_sums) {
                        out[r0 - first_row..r0 - first_row + n].copy_from_slice(&sums[..n]);
                    }
                    t += tiled;
                }
                while t < t1 {
                    let nt = TILE_TOKENS.min(t1 - t);
                    let sums = self.tile(act, p, np, t, nt, simd);
                    for (j, out) in rows_out[t..t + nt].iter_mut().enumerate() {
                        for (k, panel_sums) in sums[j].iter().take(np).enumerate() {
                            let r0 = (p + k) * PANEL;
                            let n = PANEL.min(self.rows - r0);
                            out[r0 - first_row..r0 - first_row + n]
                                .copy_from_slice(&panel_sums[..n]);
                        }
                    }
                    t += nt;
                }
                p += np;
            }
            t0 = t1;
        }
    }

    /// The sums of `np` panels from `panel` with `nt` tokens from `token`:
    /// `[token][panel][row in panel]` (entries past `nt`/`np` are zero).
    fn tile(
        &self,
        act: &Activations,
        panel: usize,
        np: usize,
        token: usize,
        nt: usize,
        simd: Simd,
    ) -> [[[f32; PANEL]; DECODE_PANELS]; TILE_TOKENS] {
        let nb = self.blocks;
        let w = (panel * nb * PANEL)..((panel + np) * nb * PANEL);
        let x = (token * nb)..((token + nt) * nb);
        let (wq, wd) = (&self.qs[w.clone()], &self.scales[w]);
        let (xq, xd) = (&act.qs[x.clone()], &act.scales[x]);
        let mut out = [[[0f32; PANEL]; DECODE_PANELS]; TILE_TOKENS];
        match simd {
            #[cfg(target_arch = "x86_64")]
            Simd::Avx2(cpu) => {
                macro_rules! run {
                    ($p:literal, $t:literal) => {{
                        let sums = avx2::tile::<$p, $t>(cpu, wq, wd, xq, xd, nb);
                        for (o, s) in out.iter_mut().zip(sums.iter()) {
                            o[..$p].copy_from_slice(s);
                        }
                    }};
                }
                match (np, nt) {
                    (1, 4) => run!(1, 4),
                    (1, 3) => run!(1, 3),
                    (1, 2) => run!(1, 2),
                    (1, 1) => run!(1, 1),
                    (2, 3) => run!(2, 3),
                    (2, 2) => run!(2, 2),
                    (2, 1) => run!(2, 1),
                    (3, 3) => run!(3, 3),
                    (3, 2) => run!(3, 2),
                    (3, 1) => run!(3, 1),
                    (4, 3) => run!(4, 3),
                    (4, 2) => run!(4, 2),
                    (4, 1) => run!(4, 1),
                    _ => scalar_tile(wq, wd, xq, xd, nb, np, nt, &mut out),
                }
            }
            Simd::Scalar => scalar_tile(wq, wd, xq, xd, nb, np, nt, &mut out),
        }
        out
    }

    /// `x` `[.., cols]` (f32, CPU) times `Wᵀ`: `[.., rows]`.
    pub fn forward(&self, x: &Tensor) -> CResult<Tensor> {
        x.apply_op1_no_bwd(self)
    }
}

/// The output columns one task computes: a contiguous range of panels, and its slice of
/// every output row.
struct Band<'a> {
    panels: std::ops::Range<usize>,
    rows_out: Vec<&'a mut [f32]>,
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
            wide: Vec::new(),
            scales: Vec::new(),
        }
    }

    /// Quantizes `x` `[tokens, blocks · 32]` as GGML's `quantize_row_q8_0` (and candle)
    /// does, so that block dot products are candle's.
    fn quantize(&mut self, x: &[f32], tokens: usize, blocks: usize, simd: Simd) {
        self.tokens = tokens;
        self.blocks = blocks;
        let n = tokens * blocks;
        self.qs.clear();
        self.qs.resize(n, Block::default());
        self.scales.clear();
        self.scales.resize(n, 0.0);
        let widen = tokens >= TILE_TOKENS;
        self.wide.clear();
        if widen {
            self.wide.resize(n, Wide::default());
        }
        let quantize_rows =
            |x: &[f32], qs: &mut [Block], wide: &mut [Wide], scales: &mut [f32]| match simd {
                #[cfg(target_arch = "x86_64")]
                Simd::Avx2(cpu) => avx2::quantize_rows(cpu, x, qs, wide, scales),
                Simd::Scalar => quantize_rows(x, qs, wide, scales),
            };
        // A chunk of rows per task: quantizing is cheap next to the product.
        let rows_per_task = (PARALLEL_MIN_BLOCK_DOTS / blocks.max(1)).max(1);
        if tokens <= rows_per_task || !widen {
            quantize_rows(x, &mut self.qs, &mut self.wide, &mut self.scales);
        } else {
            let chunk = rows_per_task * blocks;
            x.par_chunks(chunk * BLOCK)
                .zip(self.qs.par_chunks_mut(chunk))
                .zip(self.wide.par_chunks_mut(chunk))
                .zip(self.scales.par_chunks_mut(chunk))
                .for_each(|(((x, qs), wide), scales)| quantize_rows(x, qs, wide, scales));
        }
    }
}

/// Quantizes whole rows (see [`quantize_block`]) and widens them when `wide` is not empty.
#[inline]
fn quantize_rows(x: &[f32], qs: &mut [Block], wide: &mut [Wide], scales: &mut [f32]) {
    for ((values, q), d) in x.chunks_exact(BLOCK).zip(qs.iter_mut()).zip(scales) {
        *d = quantize_block(values, q);
    }
    for (w, q) in wide.iter_mut().zip(qs.iter()) {
        for (v, &at) in w.0.iter_mut().zip(&WIDE_ORDER) {
            *v = i16::from(q.0[at]);
        }
    }
}

/// One block as `quantize_row_q8_0`: scale `amax / 127` rounded to f16, values
/// `round(x / scale)` with the unrounded scale. Returns the f16 scale widened to f32.
#[inline]
fn quantize_block(values: &[f32], out: &mut Block) -> f32 {
    let amax = values.iter().fold(0f32, |m, v| m.max(v.abs()));
    let d = amax / 127.0;
    let id = if d != 0.0 { 1.0 / d } else { 0.0 };
    for (q, &v) in out.0.iter_mut().zip(values) {
        *q = (v * id).round() as i8;
    }
    f16::from_f32(d).to_f32()
}

/// The integer dot product of two blocks.
fn block_dot(a: &Block, b: &Block) -> i32 {
    a.0.iter()
        .zip(&b.0)
        .map(|(&x, &y)| i32::from(x) * i32::from(y))
        .sum()
}

/// The portable kernel: `np` panels (`[panel][block][row]`) × `nt` tokens (`[token][block]`).
#[allow(clippy::too_many_arguments)]
fn scalar_tile(
    wq: &[Block],
    wd: &[f32],
    xq: &[Block],
    xd: &[f32],
    blocks: usize,
    np: usize,
    nt: usize,
    out: &mut [[[f32; PANEL]; DECODE_PANELS]; TILE_TOKENS],
) {
    for (j, out_j) in out.iter_mut().enumerate().take(nt) {
        for (p, out_p) in out_j.iter_mut().enumerate().take(np) {
            for (r, sum) in out_p.iter_mut().enumerate() {
                *sum = (0..blocks)
                    .map(|b| {
                        let w = (p * blocks + b) * PANEL + r;
                        let x = j * blocks + b;
                        block_dot(&wq[w], &xq[x]) as f32 * (wd[w] * xd[x])
                    })
                    .sum();
            }
        }
    }
}

/// The kernel chosen for this CPU.
#[derive(Clone, Copy, Debug)]
enum Simd {
    Scalar,
    #[cfg(target_arch = "x86_64")]
    Avx2(avx2::Avx2),
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
        }
    }
}

impl Kernel {
    /// The order of the paths, slowest first (for the cap).
    fn rank(self) -> u8 {
        match self {
            Kernel::Portable => 0,
            Kernel::Avx2 => 1,
            Kernel::Best => u8::MAX,
        }
    }
}

#[cfg(target_arch = "x86_64")]
#[allow(unsafe_code)]
mod avx2 {
    use std::arch::x86_64::*;

    use super::{Block, Wide, PANEL, TILE_TOKENS};

    /// Proof that this CPU has AVX2 and FMA: only [`Avx2::detect`] makes one.
    #[derive(Clone, Copy, Debug)]
    pub(super) struct Avx2(());

    impl Avx2 {
        pub(super) fn detect() -> Option<Avx2> {
            (is_x86_feature_detected!("avx2") && is_x86_feature_detected!("fma"))
                .then_some(Avx2(()))
        }
    }

    /// `P` panels (`[panel][block][row]`, `wq`/`wd`) times `T` tokens (`[token][block]`,
    /// `xq`/`xd`) over `blocks` blocks: `[token][panel][row in panel]`.
    pub(super) fn tile<const P: usize, const T: usize>(
        _cpu: Avx2,
        wq: &[Block],
        wd: &[f32],
        xq: &[Block],
        xd: &[f32],
        blocks: usize,
    ) -> [[[f32; PANEL]; P]; T] {
        let w_len = P * blocks * PANEL;
        let x_len = T * blocks;
        assert!(
            wq.len() >= w_len && wd.len() >= w_len,
            "weight tile out of range"
        );
        assert!(
            xq.len() >= x_len && xd.len() >= x_len,
            "token tile out of range"
        );
        // SAFETY: `_cpu` exists only when AVX2 and FMA were detected; the slices hold every
        // block and scale the kernel reads (checked above), and `Block` is 32-byte aligned.
        unsafe { tile_avx2::<P, T>(wq.as_ptr(), wd.as_ptr(), xq.as_ptr(), xd.as_ptr(), blocks) }
    }

    /// [`super::quantize_rows`] compiled for AVX2, where `round` is an instruction sequence
    /// (with `roundf`'s ties-away-from-zero) instead of a call per value.
    pub(super) fn quantize_rows(
        _cpu: Avx2,
        x: &[f32],
        qs: &mut [Block],
        wide: &mut [Wide],
        scales: &mut [f32],
    ) {
        // SAFETY: `_cpu` exists only when AVX2 and FMA were detected; the function only
        // runs safe code.
        unsafe { quantize_rows_avx2(x, qs, wide, scales) }
    }

    /// # Safety
    /// AVX2 and FMA must be available.
    #[target_feature(enable = "avx2,fma")]
    unsafe fn quantize_rows_avx2(
        x: &[f32],
        qs: &mut [Block],
        wide: &mut [Wide],
        scales: &mut [f32],
    ) {
        super::quantize_rows(x, qs, wide, scales);
    }

    /// Four rows' 8 × i32 partial sums folded into one vector, `[r0 r1 r2 r3 | r0 r1 r2 r3]`:
    /// each lane the sum of its row's lanes in that 128-bit half.
    #[inline]
    #[target_feature(enable = "avx2,fma")]
    fn fold(d: [__m256i; PANEL]) -> __m256i {
        _mm256_hadd_epi32(_mm256_hadd_epi32(d[0], d[1]), _mm256_hadd_epi32(d[2], d[3]))
    }

    /// One panel (`wq`/`wd`: `[block][row]`) times `out.len()` tokens (a multiple of
    /// [`TILE_TOKENS`]; `xw`/`xd`: `[token][block]`, widened), through `wide` (the panel's
    /// weights widened once, then read from L1 for every tile of tokens).
    #[allow(clippy::too_many_arguments)]
    #[allow(clippy::manual_is_multiple_of)] // `is_multiple_of` is newer than rust-version
    pub(super) fn panel(
        _cpu: Avx2,
        wide: &mut [Wide],
        wq: &[Block],
        wd: &[f32],
        xw: &[Wide],
        xd: &[f32],
        blocks: usize,
        out: &mut [[f32; PANEL]],
    ) {
        let tokens = out.len();
        let w_len = blocks * PANEL;
        assert!(
            tokens.is_multiple_of(TILE_TOKENS),
            "a partial tile of tokens"
        );
        assert!(
            wide.len() >= w_len && wq.len() >= w_len && wd.len() >= w_len,
            "weight panel out of range"
        );
        assert!(
            xw.len() >= tokens * blocks && xd.len() >= tokens * blocks,
            "tokens out of range"
        );
        // SAFETY: `_cpu` exists only when AVX2 and FMA were detected; every slice holds what
        // the kernel reads or writes (checked above); `Block` and `Wide` are 32-byte aligned.
        unsafe {
            widen_avx2(wq.as_ptr(), wide.as_mut_ptr(), w_len);
            for (tile, sums) in out.chunks_exact_mut(TILE_TOKENS).enumerate() {
                let x = tile * TILE_TOKENS * blocks;
                let tile_sums = tile_wide_avx2::<TILE_TOKENS>(
                    wide.as_ptr(),
                    wd.as_ptr(),
                    xw.as_ptr().add(x),
                    xd.as_ptr().add(x),
                    blocks,
                );
                sums.copy_from_slice(&tile_sums);
            }
        }
    }

    /// Widens `n` blocks to i16 in [`Wide`]'s order.
    ///
    /// # Safety
    /// AVX2 must be available; `src` and `dst` must hold `n` entries.
    #[target_feature(enable = "avx2,fma")]
    unsafe fn widen_avx2(src: *const Block, dst: *mut Wide, n: usize) {
        for i in 0..n {
            // SAFETY: `i < n` entries of both (the caller's contract); 32-byte aligned.
            unsafe {
                let v = _mm256_load_si256(src.add(i).cast());
                // Quadwords 0, 2 | 1, 3: values 0..8, 16..24 | 8..16, 24..32.
                let v = _mm256_permute4x64_epi64(v, 0b11_01_10_00);
                let out = dst.add(i).cast::<__m256i>();
                _mm256_store_si256(out, _mm256_cvtepi8_epi16(_mm256_castsi256_si128(v)));
                _mm256_store_si256(
                    out.add(1),
                    _mm256_cvtepi8_epi16(_mm256_extracti128_si256(v, 1)),
                );
            }
        }
    }

    /// One widened panel (`[block][row]`) times `T` widened tokens (`[token][block]`).
    ///
    /// # Safety
    /// AVX2 and FMA must be available; `w`/`wd` must hold `blocks · PANEL` entries and
    /// `x`/`xd` `T · blocks`.
    #[target_feature(enable = "avx2,fma")]
    unsafe fn tile_wide_avx2<const T: usize>(
        w: *const Wide,
        wd: *const f32,
        x: *const Wide,
        xd: *const f32,
        blocks: usize,
    ) -> [[f32; PANEL]; T] {
        let mut acc = [_mm256_setzero_ps(); T];
        for b in 0..blocks {
            // SAFETY: `b · PANEL + PANEL <= blocks · PANEL` entries of `w` and `wd`.
            let (w, w_scale) = unsafe { (w.add(b * PANEL), _mm_loadu_ps(wd.add(b * PANEL))) };
            let w_scale = _mm256_set_m128(w_scale, w_scale);
            for (t, acc_t) in acc.iter_mut().enumerate() {
                // SAFETY: `t · blocks + b < T · blocks` entries of `x` and `xd`.
                let (lo, hi, x_scale) = unsafe {
                    let xt = x.add(t * blocks + b).cast::<__m256i>();
                    (
                        _mm256_load_si256(xt),
                        _mm256_load_si256(xt.add(1)),
                        _mm256_broadcast_ss(&*xd.add(t * blocks + b)),
                    )
                };
                let mut dots = [_mm256_setzero_si256(); PANEL];
                for (r, dot) in dots.iter_mut().enumerate() {
                    // SAFETY: row `r` of the block, in range (above).
                    let (w_lo, w_hi) = unsafe {
                        let wr = w.add(r).cast::<__m256i>();
                        (_mm256_load_si256(wr), _mm256_load_si256(wr.add(1)))
                    };
                    *dot =
                        _mm256_add_epi32(_mm256_madd_epi16(lo, w_lo), _mm256_madd_epi16(hi, w_hi));
                }
                *acc_t = _mm256_fmadd_ps(
                    _mm256_cvtepi32_ps(fold(dots)),
                    _mm256_mul_ps(w_scale, x_scale),
                    *acc_t,
                );
            }
        }
        let mut out = [[0f32; PANEL]; T];
        for (a, o) in acc.iter().zip(out.iter_mut()) {
            let sum = _mm_add_ps(_mm256_castps256_ps128(*a), _mm256_extractf128_ps(*a, 1));
            // SAFETY: `o` is 4 writable floats.
            unsafe { _mm_storeu_ps(o.as_mut_ptr(), sum) };
        }
        out
    }

    /// # Safety
    /// AVX2 and FMA must be available; `wq`/`wd` must hold `P · blocks · PANEL` entries and
    /// `xq`/`xd` `T · blocks`.
    #[target_feature(enable = "avx2,fma")]
    unsafe fn tile_avx2<const P: usize, const T: usize>(
        wq: *const Block,
        wd: *const f32,
        xq: *const Block,
        xd: *const f32,
        blocks: usize,
    ) -> [[[f32; PANEL]; P]; T] {
        let ones = _mm256_set1_epi16(1);
        let mut acc = [[_mm256_setzero_ps(); P]; T];
        for b in 0..blocks {
            for p in 0..P {
                let base = (p * blocks + b) * PANEL;
                // SAFETY: `base + PANEL <= P · blocks · PANEL` entries of `wq` and `wd`.
                let (w, scales) = unsafe { (wq.add(base), wd.add(base)) };
                let mut w_abs = [_mm256_setzero_si256(); PANEL];
                for (r, a) in w_abs.iter_mut().enumerate() {
                    // SAFETY: in range (above); blocks are 32-byte aligned.
                    let v = unsafe { _mm256_load_si256(w.add(r).cast()) };
                    *a = _mm256_sign_epi8(v, v);
                }
                // The four rows' scales in each 128-bit half.
                // SAFETY: `PANEL` = 4 scales from `base` are in range.
                let w_scale = unsafe { _mm_loadu_ps(scales) };
                let w_scale = _mm256_set_m128(w_scale, w_scale);
                for (t, acc_t) in acc.iter_mut().enumerate() {
                    // SAFETY: `t · blocks + b < T · blocks` entries of `xq` and `xd`.
                    let (x, x_scale) = unsafe {
                        (
                            _mm256_load_si256(xq.add(t * blocks + b).cast()),
                            _mm256_broadcast_ss(&*xd.add(t * blocks + b)),
                        )
                    };
                    let mut dots = [_mm256_setzero_si256(); PANEL];
                    for (r, dot) in dots.iter_mut().enumerate() {
                        // SAFETY: as above.
                        let v = unsafe { _mm256_load_si256(w.add(r).cast()) };
                        // |w| · (x · sign w) = w · x, in u8 × i8 pairs without overflow
                        // (|x| <= 127).
                        let products = _mm256_maddubs_epi16(w_abs[r], _mm256_sign_epi8(x, v));
                        *dot = _mm256_madd_epi16(products, ones);
                    }
                    // Rows 0..3 of the panel, lanes 0..3 of each half: [r0 r1 r2 r3 | r0 r1 r2 r3].
                    let folded = fold(dots);
                    acc_t[p] = _mm256_fmadd_ps(
                        _mm256_cvtepi32_ps(folded),
                        _mm256_mul_ps(w_scale, x_scale),
                        acc_t[p],
                    );
                }
            }
        }
        let mut out = [[[0f32; PANEL]; P]; T];
        for (acc_t, out_t) in acc.iter().zip(out.iter_mut()) {
            for (a, o) in acc_t.iter().zip(out_t.iter_mut()) {
                let sum = _mm_add_ps(_mm256_castps256_ps128(*a), _mm256_extractf128_ps(*a, 1));
                // SAFETY: `o` is 4 writable floats.
                unsafe { _mm_storeu_ps(o.as_mut_ptr(), sum) };
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
        let x = pseudo_random(3 * 64, 3);
        let mut act = Activations::empty();
        act.quantize(&x, 3, 2, Simd::Scalar);
        let t = Tensor::from_vec(x, (3, 64), &candle_core::Device::Cpu).unwrap();
        let q = QTensor::quantize(&t, GgmlDType::Q8_0).unwrap();
        let m = Q8Matrix::from_qtensor(&q).unwrap();
        for token in 0..3 {
            for b in 0..2 {
                let at = ((token / PANEL) * 2 + b) * PANEL + token % PANEL;
                assert_eq!(act.qs[token * 2 + b], m.qs[at]);
                assert_eq!(act.scales[token * 2 + b], m.scales[at]);
            }
        }
    }

    #[test]
    fn panels_keep_every_block_of_the_qtensor() {
        let w = pseudo_random(7 * 96, 5);
        let t = Tensor::from_vec(w, (7, 96), &candle_core::Device::Cpu).unwrap();
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
        let err = Kernel::parse_cap("avx9").unwrap_err();
        assert!(err.to_string().contains("known: portable, avx2"), "{err}");
    }

    #[test]
    fn the_portable_kernel_runs_everywhere_and_comes_first() {
        assert_eq!(Kernel::available()[0], Kernel::Portable);
        assert!(Kernel::available().contains(&Kernel::best()));
    }

    #[test]
    fn a_ragged_input_is_an_error() {
        let t = Tensor::zeros((4, 64), candle_core::DType::F32, &candle_core::Device::Cpu).unwrap();
        let m = Q8Matrix::quantize(&t).unwrap();
        assert!(m.matmul(&[0.0; 65]).is_err());
    }
}
