// SPDX-License-Identifier: MPL-2.0
//! `x · Wᵀ` with AVX512-BF16 dot products (`vdpbf16ps`): the weights rounded to
//! bfloat16 once at load and packed into the layout the kernel reads, the
//! activations rounded to bfloat16 per call, every product summed in f32.
//!
//! One `vdpbf16ps` does 32 multiply-adds where an f32 FMA of the same width does
//! 16, so on CPUs with AVX512-BF16 (Intel Cooper Lake and Sapphire Rapids on,
//! AMD Zen 4 on) the linear layers have twice the f32 peak. The price is
//! precision: each factor keeps 8 significant bits, as in PyTorch's bf16
//! autocast on the CPU, so outputs differ from f32 in the third digit (the
//! tests state the tolerance). Chosen with `RADIOEMBED_CPU_MATMUL=bf16`
//! ([`CpuMatmul::Bf16`](super::CpuMatmul)); never by default. Where the CPU
//! has AMX, the same packed operands go through its tile unit instead
//! ([`Kernel::Amx`], see `amx_tiles`).
//!
//! Layout, following the BLIS micro-kernel scheme: the output is computed in
//! tiles of [`MR`] rows × [`NR`] columns held in 24 of the 32 vector registers.
//! A weight panel holds [`NR`] output columns; for each pair of the K axis it
//! stores 32 `u32`s, each the two bf16 weights of one column for that pair,
//! which is the operand `vdpbf16ps` multiplies with a broadcast pair of one
//! activation row. K is padded with zero pairs to whole AMX steps, so one
//! packing serves both kernels.

#[cfg(target_arch = "x86_64")]
use std::arch::x86_64::*;

use candle_core::{DType, Result, Tensor};

use super::CpuMatmul;
#[cfg(target_arch = "x86_64")]
use super::amx_tiles::{self, BLOCK_ROWS, PAIRS_PER_STEP, Sums, Tiles};
use super::fused::{SendPtr, with_f32, written_by};

#[cfg(not(target_arch = "x86_64"))]
const PAIRS_PER_STEP: usize = 16;

/// Rows of the output tile (one broadcast activation pair each).
const MR: usize = 12;
/// Columns of the output tile and of a weight panel: two registers of 16 f32,
/// or two AMX B tiles.
pub(super) const NR: usize = 32;
#[cfg(target_arch = "x86_64")]
const _: () = assert!(NR == amx_tiles::BLOCK_COLS);

/// The code that multiplies the packed operands.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Kernel {
    /// AVX512-BF16 `vdpbf16ps` in a 12 × 32 register tile.
    DotProduct,
    /// AMX tiles, 32 × 32 blocks by `tdpbf16ps`.
    Amx,
}

impl Kernel {
    /// The kernel of a CPU matmul path, if it is a bf16 one.
    pub fn of(path: CpuMatmul) -> Option<Self> {
        match path {
            CpuMatmul::Bf16 => Some(Kernel::DotProduct),
            CpuMatmul::Amx => Some(Kernel::Amx),
            CpuMatmul::Gemm | CpuMatmul::OpenBlas => None,
        }
    }

    /// Whether this CPU runs the kernel.
    pub fn supported(self) -> bool {
        match self {
            Kernel::DotProduct => crate::cpu::avx512_bf16(),
            Kernel::Amx => crate::cpu::amx_bf16(),
        }
    }
}

/// Two bfloat16 values in one `u32`, the even-K one in the low half: how
/// `vdpbf16ps` pairs its operands.
pub(super) fn pair(lo: f32, hi: f32) -> u32 {
    u32::from(half::bf16::from_f32(lo).to_bits())
        | (u32::from(half::bf16::from_f32(hi).to_bits()) << 16)
}

/// A weight matrix (N, K) rounded to bfloat16 and packed for [`matmul_t`].
#[derive(Debug, Clone)]
pub(crate) struct PackedWeight {
    n: usize,
    k: usize,
    /// K/2 rounded up to whole [`PAIRS_PER_STEP`]s.
    pairs: usize,
    /// Panels of [`NR`] columns (the last padded with zeros), each `pairs` ×
    /// [`NR`] `u32`s.
    panels: Vec<u32>,
}

impl PackedWeight {
    /// Packs `w`, row-major (N, K).
    pub fn new(w: &[f32], n: usize, k: usize) -> Self {
        assert_eq!(w.len(), n * k, "weight is N × K");
        use rayon::prelude::*;
        let pairs = k.div_ceil(2).next_multiple_of(PAIRS_PER_STEP);
        let mut panels = vec![0u32; n.div_ceil(NR) * pairs * NR];
        let at = |row: usize, col: usize| if col < k { w[row * k + col] } else { 0.0 };
        panels
            .par_chunks_exact_mut(pairs * NR)
            .enumerate()
            .for_each(|(p, panel)| {
                for (q, lanes) in panel.chunks_exact_mut(NR).enumerate() {
                    for (j, lane) in lanes.iter_mut().enumerate() {
                        let row = p * NR + j;
                        if row < n {
                            *lane = pair(at(row, 2 * q), at(row, 2 * q + 1));
                        }
                    }
                }
            });
        Self {
            n,
            k,
            pairs,
            panels,
        }
    }

    /// Output width N.
    pub fn n(&self) -> usize {
        self.n
    }
}

/// `x · Wᵀ` for `x` row-major (M, K), as (M, N) row-major, the output's
/// column panels split over rayon's pool. Panics unless the kernel is
/// [`supported`](Kernel::supported).
#[cfg(target_arch = "x86_64")]
pub(crate) fn matmul_t(x: &[f32], m: usize, w: &PackedWeight, kernel: Kernel) -> Vec<f32> {
    use rayon::prelude::*;
    assert!(
        kernel.supported(),
        "the {kernel:?} kernel needs a CPU that has it"
    );
    assert_eq!(x.len(), m * w.k, "x is M × K");
    let a = activations(x, m, w);
    let panels = w.n.div_ceil(NR);
    // Contiguous runs of panels, a few per thread so that uneven runs even out.
    let runs = (rayon::current_num_threads() * 4).clamp(1, panels);
    let per_run = panels.div_ceil(runs);
    let run_all = |out: *mut f32| {
        let out_ptr = SendPtr::new(out);
        (0..panels.div_ceil(per_run))
            .into_par_iter()
            .for_each(|run| {
                let panels = run * per_run..((run + 1) * per_run).min(panels);
                match kernel {
                    Kernel::DotProduct => dot_product_run(&a, m, w, panels, &out_ptr),
                    // SAFETY: supported() asserted above.
                    Kernel::Amx => unsafe { amx_run(&a, m, w, panels, &out_ptr) },
                }
            })
    };
    // SAFETY: the runs cover every panel, and each stores all M rows of its
    // panels' columns.
    unsafe { written_by(m * w.n, run_all) }
}

/// The output columns of weight panels `panels`, by the dot-product kernel.
#[cfg(target_arch = "x86_64")]
fn dot_product_run(
    a: &[u32],
    m: usize,
    w: &PackedWeight,
    panels: std::ops::Range<usize>,
    out_ptr: &SendPtr,
) {
    let pairs = w.pairs;
    for p in panels {
        let panel = &w.panels[p * pairs * NR..(p + 1) * pairs * NR];
        let (col, cols) = (p * NR, NR.min(w.n - p * NR));
        for row in (0..m).step_by(MR) {
            let rows = MR.min(m - row);
            // SAFETY: the CPU has AVX512-BF16 (matmul_t asserted it); `a` holds
            // rows row..row+rows of `pairs` u32s, `panel` pairs × NR; the tile
            // writes only out[row..row+rows][col..col+cols], which no other
            // panel or row block writes, inside out's M × N.
            unsafe {
                tile(
                    rows,
                    a[row * pairs..].as_ptr(),
                    pairs,
                    panel.as_ptr(),
                    out_ptr.get().add(row * w.n + col),
                    w.n,
                    cols,
                );
            }
        }
    }
}

/// A [`Kernel`] ready to run on the calling thread (for AMX, with the tile
/// shapes loaded), multiplying rows of bf16 pairs by one packed panel at a
/// time: how attention, whose operands are new on every call, runs its
/// products.
#[cfg(target_arch = "x86_64")]
pub(super) enum PanelKernel {
    /// [`Kernel::DotProduct`].
    DotProduct,
    /// [`Kernel::Amx`], its tiles configured on this thread.
    Amx(Tiles),
}

#[cfg(target_arch = "x86_64")]
impl PanelKernel {
    /// Rows one [`product`](Self::product) may compute, whatever it is asked
    /// for: its operands must be padded to this many rows.
    pub const ROWS: usize = BLOCK_ROWS;

    /// `kernel`, on this thread. Panics unless it is
    /// [`supported`](Kernel::supported).
    pub fn new(kernel: Kernel) -> Self {
        assert!(
            kernel.supported(),
            "the {kernel:?} kernel needs a CPU that has it"
        );
        match kernel {
            Kernel::DotProduct => Self::DotProduct,
            // SAFETY: supported() asserted above.
            Kernel::Amx => Self::Amx(unsafe { Tiles::configure() }),
        }
    }

    /// `c = a · panel`: the first `rows` rows of `a`, each `pairs` bf16
    /// pairs, times one panel of `pairs` × [`NR`] (packed as
    /// [`PackedWeight`]'s), stored as rows of [`NR`] f32s `ldc` apart. The
    /// AMX kernel computes and stores all [`ROWS`](Self::ROWS) rows.
    ///
    /// # Safety
    /// `a` points at [`ROWS`](Self::ROWS) readable rows of `pairs` u32s,
    /// contiguous; `panel` at `pairs` × [`NR`] u32s; `c` at
    /// [`ROWS`](Self::ROWS) rows of [`NR`] writable f32s, `ldc` apart;
    /// `rows` ≤ [`ROWS`](Self::ROWS), and `pairs` is a non-zero multiple of
    /// [`PAIRS_PER_STEP`].
    pub unsafe fn product(
        &self,
        a: *const u32,
        rows: usize,
        pairs: usize,
        panel: *const u32,
        c: *mut f32,
        ldc: usize,
    ) {
        match self {
            // SAFETY: the caller's contract; the tiles are configured on
            // this thread (Tiles is !Send).
            Self::Amx(tiles) => unsafe {
                let sums = Sums {
                    first: c,
                    row_stride: ldc,
                };
                tiles.block(a, pairs * 4, panel, pairs / PAIRS_PER_STEP, sums)
            },
            Self::DotProduct => {
                for row in (0..rows).step_by(MR) {
                    // SAFETY: the caller's contract, for rows row..row + MR
                    // (or fewer) of a and c; new() checked the CPU.
                    unsafe {
                        tile(
                            MR.min(rows - row),
                            a.add(row * pairs),
                            pairs,
                            panel,
                            c.add(row * ldc),
                            ldc,
                            NR,
                        );
                    }
                }
            }
        }
    }
}

/// The output columns of weight panels `panels`, by the AMX kernel.
///
/// Each 32 × 32 block of the output is summed over the whole of K in the tile
/// registers and stored once, straight into the output's rows. Row blocks
/// run outermost: one block's activations (32 rows × K) serve every panel of
/// the task from the core's caches, and the task's panels (about N / 8
/// columns × K) stay in its L2 from one row block to the next. Summing in
/// passes of a few K steps through a compact buffer, panels outermost, and
/// K blocked to keep the activations in L1 were each slower (README:
/// Performance).
///
/// # Safety
/// The CPU has AMX and Linux granted it ([`crate::cpu::amx_bf16`]).
#[cfg(target_arch = "x86_64")]
unsafe fn amx_run(
    a: &[u32],
    m: usize,
    w: &PackedWeight,
    panels: std::ops::Range<usize>,
    out_ptr: &SendPtr,
) {
    let pairs = w.pairs;
    let steps = pairs / PAIRS_PER_STEP;
    // SAFETY: the caller's contract.
    let tiles = unsafe { Tiles::configure() };
    // The sums of a block at the output's bottom or right edge, which the
    // tile stores cannot write whole into the output.
    let mut edge = [0f32; BLOCK_ROWS * NR];
    for row in (0..m).step_by(BLOCK_ROWS) {
        for p in panels.clone() {
            let panel = &w.panels[p * pairs * NR..(p + 1) * pairs * NR];
            let (col, cols) = (p * NR, NR.min(w.n - p * NR));
            let whole = cols == NR && row + BLOCK_ROWS <= m;
            let sums = if whole {
                Sums {
                    // SAFETY: rows row..row + 32 and columns col..col + 32
                    // lie inside out's M × N.
                    first: unsafe { out_ptr.get().add(row * w.n + col) },
                    row_stride: w.n,
                }
            } else {
                Sums {
                    first: edge.as_mut_ptr(),
                    row_stride: NR,
                }
            };
            // SAFETY: `a` holds whole blocks of BLOCK_ROWS rows of `pairs`
            // u32s (activations pads it), `panel` pairs × NR u32s; the sums
            // go to this block of the output, which only this panel and row
            // block write, or to `edge`.
            unsafe {
                tiles.block(
                    a[row * pairs..].as_ptr(),
                    pairs * 4,
                    panel.as_ptr(),
                    steps,
                    sums,
                )
            };
            if whole {
                continue;
            }
            for (r, values) in edge.chunks_exact(NR).take(m - row).enumerate() {
                // SAFETY: out[row + r][col..col + cols] lies inside out's
                // M × N, and only this panel and row block write it.
                unsafe {
                    std::ptr::copy_nonoverlapping(
                        values.as_ptr(),
                        out_ptr.get().add((row + r) * w.n + col),
                        cols,
                    );
                }
            }
        }
    }
}

/// `x` (M, K) rounded to bfloat16 pairs: M rows rounded up to whole AMX
/// blocks, of `w`'s padded pair count of `u32`s, zeros past x. Each value is
/// written once (no zeroing first: that `memset` was 3 % of a forward).
#[cfg(target_arch = "x86_64")]
fn activations(x: &[f32], m: usize, w: &PackedWeight) -> Vec<u32> {
    use rayon::prelude::*;
    let (pairs, len) = (w.pairs, m.next_multiple_of(BLOCK_ROWS) * w.pairs);
    let mut a = Vec::with_capacity(len);
    // The library's tests start from all ones, which no rounded pair or
    // padding is, so that a value left unwritten shows.
    #[cfg(test)]
    a.spare_capacity_mut()[..len].fill(std::mem::MaybeUninit::new(u32::MAX));
    a.spare_capacity_mut()[..len]
        .par_chunks_mut(pairs)
        .enumerate()
        .for_each(|(row, dst)| {
            let src = x.get(row * w.k..(row + 1) * w.k).unwrap_or(&[]);
            // SAFETY: the caller checked the CPU (matmul_t asserts it); dst
            // holds `pairs` u32s, all of which round_to writes.
            unsafe { round_to(src, dst.as_mut_ptr().cast(), pairs) }
        });
    // SAFETY: every row of `pairs` values was written above.
    unsafe { a.set_len(len) };
    a
}

#[cfg(target_arch = "x86_64")]
/// One row of f32 into bf16 pairs, `dst` filled whole (zeros past `src`).
///
/// # Safety
/// The CPU has AVX512-BF16.
pub(super) unsafe fn round_row(src: &[f32], dst: &mut [u32]) {
    // SAFETY: the caller's contract; dst has dst.len() writable u32s.
    unsafe { round_to(src, dst.as_mut_ptr(), dst.len()) }
}

#[cfg(target_arch = "x86_64")]
/// `len` bf16 pairs of `src` (zeros past it) into `dst`, 32 values an
/// instruction (round to nearest even, as the scalar tail and the packed
/// weights).
///
/// # Safety
/// The CPU has AVX512-BF16; `dst` points at `len` writable u32s.
#[target_feature(enable = "avx512f,avx512bf16")]
unsafe fn round_to(src: &[f32], dst: *mut u32, len: usize) {
    let full = (src.len() / 32).min(len / 16);
    for i in 0..full {
        // SAFETY: 32 values from 32·i lie inside src, 16 u32s from 16·i inside
        // dst's len.
        unsafe {
            let lo = _mm512_loadu_ps(src.as_ptr().add(32 * i));
            let hi = _mm512_loadu_ps(src.as_ptr().add(32 * i + 16));
            let bf = _mm512_cvtne2ps_pbh(hi, lo);
            _mm512_storeu_si512(dst.add(16 * i).cast(), from_bh(bf));
        }
    }
    let pairs_of_src = src.len().div_ceil(2).clamp(16 * full, len);
    for q in 16 * full..pairs_of_src {
        let at = |c: usize| src.get(c).copied().unwrap_or(0.0);
        // SAFETY: q < len.
        unsafe { dst.add(q).write(pair(at(2 * q), at(2 * q + 1))) };
    }
    // SAFETY: pairs_of_src ≤ len.
    unsafe { dst.add(pairs_of_src).write_bytes(0, len - pairs_of_src) };
}

#[cfg(target_arch = "x86_64")]
/// One output tile of `rows` (≤ [`MR`]) rows and `cols` (≤ [`NR`]) columns,
/// dispatched to the kernel compiled for that many rows.
///
/// # Safety
/// AVX512-BF16 is available; `a` points at `rows` rows of `pairs` u32s, row
/// stride `pairs`; `b` at `pairs` × [`NR`] u32s; `c` at `rows` rows of `cols`
/// writable f32s, row stride `ldc`.
#[target_feature(enable = "avx512f,avx512bf16")]
unsafe fn tile(
    rows: usize,
    a: *const u32,
    pairs: usize,
    b: *const u32,
    c: *mut f32,
    ldc: usize,
    cols: usize,
) {
    macro_rules! rows {
        ($($r:literal)*) => {
            match rows {
                // SAFETY: the caller's contract, with R = rows.
                $($r => unsafe { kernel::<$r>(a, pairs, b, c, ldc, cols) },)*
                _ => unreachable!("a tile has 1 to MR rows"),
            }
        };
    }
    rows!(1 2 3 4 5 6 7 8 9 10 11 12)
}

#[cfg(target_arch = "x86_64")]
/// The micro-kernel: R rows × 32 columns in 2·R accumulators, one broadcast
/// pair of each row against the panel's two registers per K pair.
///
/// # Safety
/// As [`tile`], with R rows.
#[target_feature(enable = "avx512f,avx512bf16")]
unsafe fn kernel<const R: usize>(
    a: *const u32,
    pairs: usize,
    b: *const u32,
    c: *mut f32,
    ldc: usize,
    cols: usize,
) {
    let mut acc = [[_mm512_setzero_ps(); 2]; R];
    for q in 0..pairs {
        // SAFETY: q < pairs, so both halves of the panel's pair q and each
        // row's pair q are inside the caller's buffers.
        unsafe {
            let b0 = to_bh(_mm512_loadu_si512(b.add(q * NR).cast()));
            let b1 = to_bh(_mm512_loadu_si512(b.add(q * NR + 16).cast()));
            for (r, acc) in acc.iter_mut().enumerate() {
                let x: __m512bh =
                    std::mem::transmute(_mm512_set1_epi32(*a.add(r * pairs + q) as i32));
                acc[0] = _mm512_dpbf16_ps(acc[0], x, b0);
                acc[1] = _mm512_dpbf16_ps(acc[1], x, b1);
            }
        }
    }
    let low = if cols >= 16 {
        0xffff
    } else {
        (1u16 << cols) - 1
    };
    let high = if cols >= 32 {
        0xffff
    } else {
        ((1u32 << cols.saturating_sub(16)) - 1) as u16
    };
    for (r, acc) in acc.iter().enumerate() {
        // SAFETY: row r < R of c has cols writable values; the masks store
        // only those.
        unsafe {
            let row = c.add(r * ldc);
            _mm512_mask_storeu_ps(row, low, acc[0]);
            if high != 0 {
                _mm512_mask_storeu_ps(row.add(16), high, acc[1]);
            }
        }
    }
}

/// 32 bfloat16 values seen as the 512 bits they are.
#[cfg(target_arch = "x86_64")]
#[inline(always)]
fn to_bh(v: __m512i) -> __m512bh {
    // SAFETY: both are 64 plain bytes; every bit pattern is valid for each.
    unsafe { std::mem::transmute::<__m512i, __m512bh>(v) }
}

/// The 512 bits of 32 bfloat16 values.
#[cfg(target_arch = "x86_64")]
#[inline(always)]
fn from_bh(v: __m512bh) -> __m512i {
    // SAFETY: as for to_bh.
    unsafe { std::mem::transmute::<__m512bh, __m512i>(v) }
}

/// Without x86-64 there is no kernel, and [`Kernel::supported`] says so.
#[cfg(not(target_arch = "x86_64"))]
pub(crate) fn matmul_t(_: &[f32], _: usize, _: &PackedWeight, _: Kernel) -> Vec<f32> {
    unreachable!("the bf16 kernels are x86-64 only, and supported() is false elsewhere")
}

/// `x · Wᵀ` for `x` (..., K), a contiguous f32 CPU tensor; `None` for any
/// other (the caller's f32 path takes it).
pub(crate) fn linear(x: &Tensor, w: &PackedWeight, kernel: Kernel) -> Result<Option<Tensor>> {
    let dims = x.dims();
    if !x.device().is_cpu() || x.dtype() != DType::F32 || dims.last() != Some(&w.k) || w.k == 0 {
        return Ok(None);
    }
    let m = x.elem_count() / w.k;
    let Some(out) = with_f32(x, |x| matmul_t(x, m, w, kernel)) else {
        return Ok(None);
    };
    let mut shape = dims.to_vec();
    *shape.last_mut().expect("checked above") = w.n;
    Tensor::from_vec(out, shape, x.device()).map(Some)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Deterministic values in -1..1.
    fn values(len: usize, seed: u32) -> Vec<f32> {
        let mut s = seed.wrapping_mul(2_654_435_761).max(1);
        (0..len)
            .map(|_| {
                s ^= s << 13;
                s ^= s >> 17;
                s ^= s << 5;
                (s as f32 / u32::MAX as f32) * 2.0 - 1.0
            })
            .collect()
    }

    fn bf16(v: f32) -> f64 {
        f64::from(half::bf16::from_f32(v).to_f32())
    }

    /// Against the exact products of the bf16-rounded factors, summed in f64:
    /// only the f32 accumulation differs. Each kernel the CPU has; shapes cover
    /// every tile height, a last panel of 1..31 columns, odd K, K past whole
    /// AMX steps, rows past one AMX row block, long K, and AMX blocks both
    /// whole (stored straight into the output) and at the edges.
    #[test]
    fn matches_the_rounded_products_on_every_edge() {
        for (kernel, path, needs) in [
            (Kernel::DotProduct, "bf16-avx512", "AVX512-BF16"),
            (Kernel::Amx, "bf16-amx", "AMX"),
        ] {
            if !kernel.supported() {
                // The kernel cannot run here; asking for it is refused clearly.
                let err = CpuMatmul::from_env(Some(path)).unwrap_err();
                assert!(err.to_string().contains(needs), "{err}");
                println!("this CPU has no {needs}: the {kernel:?} kernel cannot run here");
                continue;
            }
            for (m, n, k) in [
                (1, 1, 1),
                (13, 33, 7),
                (25, 64, 64),
                (12, 47, 1152),
                (7, 96, 33),
                (140, 70, 70),
                (70, 47, 300),
                (33, 64, 600),
            ] {
                let x = values(m * k, m as u32);
                let w = values(n * k, n as u32 + 7);
                let packed = PackedWeight::new(&w, n, k);
                let out = matmul_t(&x, m, &packed, kernel);
                for i in 0..m {
                    for j in 0..n {
                        let exact: f64 = (0..k)
                            .map(|c| bf16(x[i * k + c]) * bf16(w[j * k + c]))
                            .sum();
                        let got = f64::from(out[i * n + j]);
                        assert!(
                            (got - exact).abs() <= 1e-5 * (k as f64).sqrt(),
                            "{kernel:?} ({m}×{k})·({n}×{k})ᵀ [{i}][{j}]: {got} vs {exact}"
                        );
                    }
                }
            }
        }
    }

    /// Activations are each row's bf16 pairs, then zeros to the padded pair
    /// count, then whole rows of zeros to a whole AMX row block; long rows
    /// take the vector path, short ones and the tail the scalar one.
    #[test]
    fn activations_are_pairs_then_zeros() {
        if !Kernel::DotProduct.supported() {
            println!("this CPU has no AVX512-BF16: activations are never rounded here");
            return;
        }
        for (m, k) in [(3, 5), (2, 70)] {
            let x = values(m * k, 9);
            let w = PackedWeight::new(&vec![0.0; k], 1, k);
            let a = activations(&x, m, &w);
            assert_eq!(a.len(), BLOCK_ROWS * w.pairs);
            for (row, got) in a.chunks_exact(w.pairs).enumerate() {
                let at = |c: usize| {
                    if row < m && c < k {
                        x[row * k + c]
                    } else {
                        0.0
                    }
                };
                let want: Vec<u32> = (0..w.pairs)
                    .map(|q| pair(at(2 * q), at(2 * q + 1)))
                    .collect();
                assert_eq!(got, want, "{m}×{k}, row {row}");
            }
        }
    }

    #[test]
    fn packing_pairs_even_k_low() {
        let packed = PackedWeight::new(&[1.0, 2.0, 3.0], 1, 3);
        assert_eq!((packed.n(), packed.k), (1, 3));
        assert_eq!(
            packed.panels.len(),
            PAIRS_PER_STEP * NR,
            "K padded to an AMX step"
        );
        assert_eq!(packed.panels[0], pair(1.0, 2.0));
        assert_eq!(packed.panels[NR], pair(3.0, 0.0));
        assert_eq!(packed.panels[1], 0, "padding columns are zero");
    }
}
