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
//! ([`CpuMatmul::Bf16`](super::CpuMatmul)); never by default.
//!
//! Layout, following the BLIS micro-kernel scheme: the output is computed in
//! tiles of [`MR`] rows × [`NR`] columns held in 24 of the 32 vector registers.
//! A weight panel holds [`NR`] output columns; for each pair of the K axis it
//! stores 32 `u32`s, each the two bf16 weights of one column for that pair,
//! which is the operand `vdpbf16ps` multiplies with a broadcast pair of one
//! activation row.

#[cfg(target_arch = "x86_64")]
use std::arch::x86_64::*;

use candle_core::{DType, Result, Tensor};

use super::fused::with_f32;

/// Rows of the output tile (one broadcast activation pair each).
const MR: usize = 12;
/// Columns of the output tile and of a weight panel: two registers of 16 f32.
const NR: usize = 32;

/// Two bfloat16 values in one `u32`, the even-K one in the low half: how
/// `vdpbf16ps` pairs its operands.
fn pair(lo: f32, hi: f32) -> u32 {
    u32::from(half::bf16::from_f32(lo).to_bits())
        | (u32::from(half::bf16::from_f32(hi).to_bits()) << 16)
}

/// A weight matrix (N, K) rounded to bfloat16 and packed for [`matmul_t`].
#[derive(Debug, Clone)]
pub(crate) struct PackedWeight {
    n: usize,
    k: usize,
    /// Panels of [`NR`] columns (the last padded with zeros), each K/2 rounded
    /// up pairs × [`NR`] `u32`s.
    panels: Vec<u32>,
}

impl PackedWeight {
    /// Packs `w`, row-major (N, K).
    pub fn new(w: &[f32], n: usize, k: usize) -> Self {
        assert_eq!(w.len(), n * k, "weight is N × K");
        use rayon::prelude::*;
        let pairs = k.div_ceil(2);
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
        Self { n, k, panels }
    }

    /// Output width N.
    pub fn n(&self) -> usize {
        self.n
    }
}

/// Whether this CPU runs the kernel.
pub(crate) fn supported() -> bool {
    crate::cpu::avx512_bf16()
}

/// `out = x · Wᵀ` for `x` row-major (M, K) and `out` (M, N), the output's
/// column panels split over rayon's pool. Panics unless [`supported`].
#[cfg(target_arch = "x86_64")]
pub(crate) fn matmul_t(x: &[f32], m: usize, w: &PackedWeight, out: &mut [f32]) {
    use rayon::prelude::*;
    assert!(supported(), "the bf16 kernel needs AVX512-BF16");
    assert_eq!(
        (x.len(), out.len()),
        (m * w.k, m * w.n),
        "x is M × K, out M × N"
    );
    let pairs = w.k.div_ceil(2);
    let a = activations(x, m, w.k);
    let panels = w.n.div_ceil(NR);
    // Contiguous runs of panels, a few per thread so that uneven runs even out.
    let runs = (rayon::current_num_threads() * 4).clamp(1, panels);
    let per_run = panels.div_ceil(runs);
    let out_ptr = SendPtr(out.as_mut_ptr());
    (0..panels.div_ceil(per_run))
        .into_par_iter()
        .for_each(|run| {
            let out_ptr = &out_ptr;
            for p in run * per_run..((run + 1) * per_run).min(panels) {
                let panel = &w.panels[p * pairs * NR..(p + 1) * pairs * NR];
                let (col, cols) = (p * NR, NR.min(w.n - p * NR));
                for row in (0..m).step_by(MR) {
                    let rows = MR.min(m - row);
                    // SAFETY: the CPU has AVX512-BF16 (asserted above); `a` holds
                    // rows row..row+rows of `pairs` u32s, `panel` pairs × NR; the
                    // tile writes only out[row..row+rows][col..col+cols], which
                    // no other panel or row block writes, inside out's M × N.
                    unsafe {
                        tile(
                            rows,
                            a[row * pairs..].as_ptr(),
                            pairs,
                            panel.as_ptr(),
                            out_ptr.0.add(row * w.n + col),
                            w.n,
                            cols,
                        );
                    }
                }
            }
        });
}

/// `x` (M, K) rounded to bfloat16 pairs, M rows of K/2 rounded up `u32`s.
#[cfg(target_arch = "x86_64")]
fn activations(x: &[f32], m: usize, k: usize) -> Vec<u32> {
    use rayon::prelude::*;
    let pairs = k.div_ceil(2);
    let mut a = vec![0u32; m * pairs];
    a.par_chunks_mut(pairs)
        .zip(x.par_chunks(k))
        .for_each(|(dst, src)| {
            // SAFETY: the caller checked the CPU (matmul_t asserts it).
            unsafe { round_row(src, dst) }
        });
    a
}

#[cfg(target_arch = "x86_64")]
/// One row of f32 into bf16 pairs, 32 values an instruction (round to nearest
/// even, as the scalar tail and the packed weights).
#[target_feature(enable = "avx512f,avx512bf16")]
unsafe fn round_row(src: &[f32], dst: &mut [u32]) {
    let full = src.len() / 32;
    for i in 0..full {
        // SAFETY: 32 values from 32·i lie inside src, 16 u32s from 16·i inside
        // dst (dst holds src.len()/2 rounded up).
        unsafe {
            let lo = _mm512_loadu_ps(src.as_ptr().add(32 * i));
            let hi = _mm512_loadu_ps(src.as_ptr().add(32 * i + 16));
            let bf = _mm512_cvtne2ps_pbh(hi, lo);
            _mm512_storeu_si512(dst.as_mut_ptr().add(16 * i).cast(), from_bh(bf));
        }
    }
    for (q, slot) in dst.iter_mut().enumerate().skip(16 * full) {
        let at = |c: usize| src.get(c).copied().unwrap_or(0.0);
        *slot = pair(at(2 * q), at(2 * q + 1));
    }
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

/// Without x86-64 there is no kernel, and [`supported`] says so.
#[cfg(not(target_arch = "x86_64"))]
pub(crate) fn matmul_t(_: &[f32], _: usize, _: &PackedWeight, _: &mut [f32]) {
    unreachable!("the bf16 kernel is x86-64 only, and supported() is false elsewhere")
}

/// `x · Wᵀ` for `x` (..., K), a contiguous f32 CPU tensor; `None` for any
/// other (the caller's f32 path takes it).
pub(crate) fn linear(x: &Tensor, w: &PackedWeight) -> Result<Option<Tensor>> {
    let dims = x.dims();
    if !x.device().is_cpu() || x.dtype() != DType::F32 || dims.last() != Some(&w.k) || w.k == 0 {
        return Ok(None);
    }
    let m = x.elem_count() / w.k;
    let mut out = vec![0f32; m * w.n];
    if with_f32(x, |x| matmul_t(x, m, w, &mut out)).is_none() {
        return Ok(None);
    }
    let mut shape = dims.to_vec();
    *shape.last_mut().expect("checked above") = w.n;
    Tensor::from_vec(out, shape, x.device()).map(Some)
}

struct SendPtr(*mut f32);
// SAFETY: each task writes a disjoint set of output tiles (see matmul_t).
unsafe impl Sync for SendPtr {}

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
    /// only the f32 accumulation differs. Shapes cover every tile height, a
    /// last panel of 1..31 columns and odd K.
    #[test]
    fn matches_the_rounded_products_on_every_edge() {
        if !supported() {
            // The kernel cannot run here; asking for it is refused clearly.
            let err = crate::model::CpuMatmul::from_env(Some("bf16")).unwrap_err();
            assert!(err.to_string().contains("AVX512-BF16"), "{err}");
            println!("this CPU has no AVX512-BF16: the bf16 kernel cannot run here");
            return;
        }
        for (m, n, k) in [
            (1, 1, 1),
            (13, 33, 7),
            (25, 64, 64),
            (12, 47, 1152),
            (7, 96, 33),
        ] {
            let x = values(m * k, m as u32);
            let w = values(n * k, n as u32 + 7);
            let packed = PackedWeight::new(&w, n, k);
            let mut out = vec![f32::NAN; m * n];
            matmul_t(&x, m, &packed, &mut out);
            for i in 0..m {
                for j in 0..n {
                    let exact: f64 = (0..k)
                        .map(|c| bf16(x[i * k + c]) * bf16(w[j * k + c]))
                        .sum();
                    let got = f64::from(out[i * n + j]);
                    assert!(
                        (got - exact).abs() <= 1e-5 * (k as f64).sqrt(),
                        "({m}×{k})·({n}×{k})ᵀ [{i}][{j}]: {got} vs {exact}"
                    );
                }
            }
        }
    }

    #[test]
    fn packing_pairs_even_k_low() {
        let packed = PackedWeight::new(&[1.0, 2.0, 3.0], 1, 3);
        assert_eq!((packed.n(), packed.k), (1, 3));
        assert_eq!(packed.panels.len(), 2 * NR);
        assert_eq!(packed.panels[0], pair(1.0, 2.0));
        assert_eq!(packed.panels[NR], pair(3.0, 0.0));
        assert_eq!(packed.panels[1], 0, "padding columns are zero");
    }
}
