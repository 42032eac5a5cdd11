// SPDX-License-Identifier: MPL-2.0
//! Multi-head self-attention in f32 on AVX-512, fused: `softmax(q·kᵀ)·v` per
//! head with no BLAS call, where OpenBLAS runs AVX-512 kernels
//! ([`CpuMatmul::fused_f32_attention`](super::CpuMatmul::fused_f32_attention)).
//!
//! Through OpenBLAS (`blas.rs`) each head is two `sgemm`s around a softmax,
//! and at 512 px (N = 1025) that attention ran at half the rate of the linear
//! layers: a quarter of its time went to `sgemm` packing its operands, the
//! N × N probabilities above all (a whole pass over them, each value then
//! used for only head_dim multiply-adds), and a fifth to a softmax of four
//! passes. Here, per (image, head):
//! - k is gathered once into panels of [`KEYS`] keys (head_dim rows of 32),
//!   and v copied into contiguous rows (qkv's rows lie more than a page
//!   apart, which defeats the prefetchers);
//! - per block of [`ROWS`] queries, read in place: their scores against every
//!   key, 12 rows × 32 keys of sums held in registers over head_dim; per row,
//!   `exp(s − max)` and its sum in one pass after the maximum; those weights
//!   times v, 4 rows × 80 columns (6 × 64 where narrower) of sums in
//!   registers over N, read straight from the score rows, each output row
//!   divided by its sum (head_dim values instead of N, as flash attention
//!   does) as it is stored into the head's columns of the output.
//!
//! The sums are f32 throughout, in another order than `sgemm`'s; the tests
//! bound the difference.

use std::arch::x86_64::*;

use candle_core::{Result, Tensor};

use super::avx512_softmax::{exp16, row_max};
use super::head_tasks::{HeadTask, Heads, run_heads};

/// Queries per block: the score kernel's rows.
const ROWS: usize = 12;
/// Keys per score kernel call: two vectors of 16.
const KEYS: usize = 32;
/// The widest column chunk of the weights · v kernel, in vectors of 16
/// (4 rows × 5 vectors of sums, 6 × 4 below it).
const PV_VECTORS: usize = 5;

/// `softmax(q·kᵀ)·v` per head, read straight from the qkv projection's output
/// `(B, N, 3·D)` (q, k and v side by side in each row, heads side by side in
/// each; the 1/√head_dim scale already folded into q) and returned as
/// `(B, N, D)`. `None` when the tensor does not suit or the CPU lacks
/// AVX-512 (the BLAS path takes it).
pub(crate) fn attention(qkv: &Tensor, heads: usize) -> Result<Option<Tensor>> {
    if !is_x86_feature_detected!("avx512f") {
        return Ok(None);
    }
    let Some(shape) = Heads::of(qkv, heads)? else {
        return Ok(None);
    };
    if i32::try_from(shape.stride() * KEYS).is_err() {
        return Ok(None);
    }
    // SAFETY: Head::run stores its head's whole block and nothing else, on
    // a CPU with AVX-512F and a stride that fits its gathers (both checked
    // above).
    unsafe {
        run_heads(
            qkv,
            shape,
            || Head::new(shape.tokens, shape.head_dim),
            |scratch, task| scratch.run(task),
        )
    }
}

/// One task's buffers, reused for every head it runs.
struct Head {
    n: usize,
    head_dim: usize,
    /// Values per row of `v`: head_dim rounded up to 16.
    width: usize,
    /// Scores per row: N rounded up to [`KEYS`].
    keys: usize,
    /// v, N rows of `width` values, zeros past head_dim: contiguous, where
    /// qkv's rows lie more than a page apart and defeat the prefetchers.
    v: CacheAligned,
    /// k in panels of [`KEYS`] keys: for each panel, head_dim rows of 32
    /// values (one per key), zeros past N.
    k: CacheAligned,
    /// The block's scores, then weights: [`ROWS`] rows of `keys` values.
    scores: CacheAligned,
}

impl Head {
    fn new(n: usize, head_dim: usize) -> Self {
        let (width, keys) = (head_dim.next_multiple_of(16), n.next_multiple_of(KEYS));
        Self {
            n,
            head_dim,
            width,
            keys,
            v: CacheAligned::zeros(n * width),
            k: CacheAligned::zeros(keys * head_dim),
            scores: CacheAligned::zeros(ROWS * keys),
        }
    }

    /// Attention of one head of one image, stored whole into the task's
    /// output block.
    ///
    /// # Safety
    /// The CPU has AVX-512F; `stride` · [`KEYS`] fits an i32; `out` points
    /// at N rows of head_dim writable f32s, `ldo` apart.
    #[target_feature(enable = "avx512f")]
    unsafe fn run(&mut self, task: HeadTask<'_>) {
        let (out, ldo) = (task.out, task.ldo);
        let (n, head_dim, width, keys) = (self.n, self.head_dim, self.width, self.keys);
        for (p, panel) in self.k.chunks_exact_mut(head_dim * KEYS).enumerate() {
            // SAFETY: the keys p·KEYS.. (fewer in the last panel) are rows of
            // the task's rows with head_dim values of k; the panel holds
            // head_dim × KEYS; stride · KEYS fits an i32 (the caller's
            // contract).
            unsafe {
                k_panel(
                    task.row(p * KEYS, 1).as_ptr(),
                    task.stride,
                    KEYS.min(n - p * KEYS),
                    head_dim,
                    panel.as_mut_ptr(),
                )
            };
        }
        for t in 0..n {
            self.v[t * width..][..head_dim].copy_from_slice(task.row(t, 2));
        }
        for first in (0..n).step_by(ROWS) {
            let block = ROWS.min(n - first);
            // Rows past N repeat the last query; their results are dropped.
            let queries: [*const f32; ROWS] =
                std::array::from_fn(|r| task.row((first + r).min(n - 1), 0).as_ptr());
            for (p, panel) in self.k.chunks_exact(head_dim * KEYS).enumerate() {
                // SAFETY: each query has head_dim values, the panel is
                // head_dim × KEYS, and scores ROWS rows of `keys` values,
                // KEYS of them from p·KEYS.
                unsafe {
                    scores_block(
                        &queries,
                        panel.as_ptr(),
                        head_dim,
                        self.scores.as_mut_ptr().add(p * KEYS),
                        keys,
                    )
                };
            }
            let mut inv_sums = [0f32; ROWS];
            for (r, inv_sum) in inv_sums.iter_mut().enumerate().take(block) {
                *inv_sum = 1.0 / exp_weights_in_place(&mut self.scores[r * keys..][..n]);
            }
            let mut column = 0;
            while column < head_dim {
                let vectors = PV_VECTORS.min((head_dim - column).div_ceil(16));
                let lanes = (head_dim - column - 16 * (vectors - 1)).min(16);
                let last = ((1u32 << lanes) - 1) as u16;
                // SAFETY: scores has ROWS rows of `keys` ≥ N values, v N rows
                // of `width` ≥ the chunk's columns; out's rows first.. first +
                // block hold the chunk's columns up to head_dim, where the
                // mask stops the last vector (the caller's contract).
                unsafe {
                    let (p, v) = (self.scores.as_ptr(), self.v.as_ptr().add(column));
                    let o = out.add(first * ldo + column);
                    let ld = (keys, width, ldo);
                    match vectors {
                        5 => weights_times_v::<4, 5>(block, p, v, last, n, &inv_sums, o, ld),
                        4 => weights_times_v::<6, 4>(block, p, v, last, n, &inv_sums, o, ld),
                        3 => weights_times_v::<6, 3>(block, p, v, last, n, &inv_sums, o, ld),
                        2 => weights_times_v::<6, 2>(block, p, v, last, n, &inv_sums, o, ld),
                        _ => weights_times_v::<6, 1>(block, p, v, last, n, &inv_sums, o, ld),
                    }
                }
                column += 16 * vectors;
            }
        }
    }
}

/// Zeroed f32s whose first value starts a cache line: rows of whole vectors
/// in them then start lines too, where a 64-byte load across two lines costs
/// two.
struct CacheAligned {
    buffer: Vec<f32>,
    offset: usize,
    len: usize,
}

impl CacheAligned {
    fn zeros(len: usize) -> Self {
        let buffer = vec![0.0; len + 15];
        let offset = buffer.as_ptr().align_offset(64);
        Self {
            buffer,
            offset,
            len,
        }
    }
}

impl std::ops::Deref for CacheAligned {
    type Target = [f32];
    fn deref(&self) -> &[f32] {
        &self.buffer[self.offset..][..self.len]
    }
}

impl std::ops::DerefMut for CacheAligned {
    fn deref_mut(&mut self) -> &mut [f32] {
        &mut self.buffer[self.offset..][..self.len]
    }
}

/// A panel of k: `dim` rows of [`KEYS`] values, `panel[i][j]` = value i of
/// key j, gathered 16 keys at a time; zeros for keys past `keys`.
///
/// # Safety
/// The CPU has AVX-512F; `k` points at `keys` ≤ KEYS rows of `dim` values,
/// `stride` apart (`stride` · KEYS fits an i32); `panel` at `dim` × KEYS
/// writable values.
#[target_feature(enable = "avx512f")]
unsafe fn k_panel(k: *const f32, stride: usize, keys: usize, dim: usize, panel: *mut f32) {
    let lanes = _mm512_mullo_epi32(
        _mm512_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15),
        _mm512_set1_epi32(stride as i32),
    );
    for half in 0..KEYS / 16 {
        let present = keys.saturating_sub(16 * half).min(16);
        let mask = ((1u32 << present) - 1) as u16;
        // Past the last key when none of this half is present: only an
        // address, never read (the mask is empty).
        let first = k.wrapping_add(16 * half * stride);
        for i in 0..dim {
            // SAFETY: value i of the present keys (masked-off lanes are not
            // read and do not fault); row i of the panel.
            unsafe {
                let at = first.wrapping_add(i);
                let values = _mm512_mask_i32gather_ps::<4>(_mm512_setzero_ps(), mask, lanes, at);
                _mm512_storeu_ps(panel.add(i * KEYS + 16 * half), values);
            }
        }
    }
}

/// `scores[r][j]` = Σ_i `q[r][i]` · `k[i][j]` for the block's [`ROWS`] query
/// rows and a panel's [`KEYS`] keys: 24 vectors of sums over head_dim.
///
/// # Safety
/// The CPU has AVX-512F; each of `q` points at `dim` values, `k` at `dim` ×
/// KEYS, and `scores` at ROWS rows of KEYS writable values, `lds` apart.
#[target_feature(enable = "avx512f")]
#[inline(never)] // inlined into `run`, its sums spilled out of the registers
unsafe fn scores_block(
    q: &[*const f32; ROWS],
    k: *const f32,
    dim: usize,
    scores: *mut f32,
    lds: usize,
) {
    let mut sums = [[_mm512_setzero_ps(); 2]; ROWS];
    for i in 0..dim {
        // SAFETY: value i of each query, row i of k (the caller's contract).
        unsafe {
            let k0 = _mm512_loadu_ps(k.add(i * KEYS));
            let k1 = _mm512_loadu_ps(k.add(i * KEYS + 16));
            for (sum, q) in sums.iter_mut().zip(q) {
                let q = _mm512_set1_ps(*q.add(i));
                sum[0] = _mm512_fmadd_ps(q, k0, sum[0]);
                sum[1] = _mm512_fmadd_ps(q, k1, sum[1]);
            }
        }
    }
    for (r, sum) in sums.iter().enumerate() {
        // SAFETY: row r of the block (the caller's contract).
        unsafe {
            _mm512_storeu_ps(scores.add(r * lds), sum[0]);
            _mm512_storeu_ps(scores.add(r * lds + 16), sum[1]);
        }
    }
}

/// `out[r][c]` = `scale[r]` · Σ_t `p[r][t]` · `v[t][c]` for the block's
/// first `rows` rows and `W` vectors of 16 columns, the last one stored
/// masked by `last`: R rows at a time, R × W vectors of sums over the N tokens, which
/// with W vectors of v and a broadcast weight must fit the 32 registers.
///
/// # Safety
/// The CPU has AVX-512F; `rows` rounded up to R ≤ [`ROWS`]; `p` holds that
/// many rows of `n` values, `ld.0` apart; `v` `n` rows of 16·W values, `ld.1`
/// apart; `out` `rows` rows of the columns `last` keeps, writable, `ld.2`
/// apart.
#[target_feature(enable = "avx512f")]
#[inline(never)] // as scores_block
#[allow(clippy::too_many_arguments)]
unsafe fn weights_times_v<const R: usize, const W: usize>(
    rows: usize,
    p: *const f32,
    v: *const f32,
    last: u16,
    n: usize,
    scale: &[f32; ROWS],
    out: *mut f32,
    ld: (usize, usize, usize),
) {
    let (ldp, ldv, ldo) = ld;
    for first in (0..rows).step_by(R) {
        let mut sums = [[_mm512_setzero_ps(); W]; R];
        for t in 0..n {
            // SAFETY: row t of v, column t of p's rows (the caller's
            // contract).
            unsafe {
                let vs: [__m512; W] =
                    std::array::from_fn(|c| _mm512_loadu_ps(v.add(t * ldv + 16 * c)));
                for (r, sum) in sums.iter_mut().enumerate() {
                    let weight = _mm512_set1_ps(*p.add((first + r) * ldp + t));
                    for (s, &v) in sum.iter_mut().zip(&vs) {
                        *s = _mm512_fmadd_ps(weight, v, *s);
                    }
                }
            }
        }
        for (r, sum) in sums.iter().enumerate().take(rows - first) {
            let scale = _mm512_set1_ps(scale[first + r]);
            for (c, &s) in sum.iter().enumerate() {
                // SAFETY: row first + r of out (the caller's contract; the
                // mask keeps the last vector inside the columns).
                unsafe {
                    let at = out.add((first + r) * ldo + 16 * c);
                    let value = _mm512_mul_ps(s, scale);
                    if c + 1 == W {
                        _mm512_mask_storeu_ps(at, last, value)
                    } else {
                        _mm512_storeu_ps(at, value)
                    }
                }
            }
        }
    }
}

/// One row of softmax weights in place, in one pass after its maximum:
/// `exp(s − max)` of each score; returns their sum.
#[target_feature(enable = "avx512f")]
fn exp_weights_in_place(row: &mut [f32]) -> f32 {
    let max = _mm512_set1_ps(row_max(row));
    let mut sums = _mm512_setzero_ps();
    let mut chunks = row.chunks_exact_mut(16);
    for chunk in &mut chunks {
        // SAFETY: the chunk holds 16 values.
        unsafe {
            let e = exp16(_mm512_sub_ps(_mm512_loadu_ps(chunk.as_ptr()), max));
            sums = _mm512_add_ps(sums, e);
            _mm512_storeu_ps(chunk.as_mut_ptr(), e);
        }
    }
    let rest = chunks.into_remainder();
    if !rest.is_empty() {
        let mask = ((1u32 << rest.len()) - 1) as u16;
        // SAFETY: the mask reads and writes only the row's last values;
        // masked-off lanes do not fault.
        unsafe {
            let x = _mm512_maskz_loadu_ps(mask, rest.as_ptr());
            let e = _mm512_maskz_mov_ps(mask, exp16(_mm512_sub_ps(x, max)));
            sums = _mm512_add_ps(sums, e);
            _mm512_mask_storeu_ps(rest.as_mut_ptr(), mask, e);
        }
    }
    _mm512_reduce_add_ps(sums)
}

#[cfg(test)]
mod tests {
    use super::*;
    use candle_core::Device;

    #[test]
    fn matches_the_reference_attention() {
        if !is_x86_feature_detected!("avx512f") {
            println!("skipped: this CPU has no AVX-512F, and this path needs it");
            return;
        }
        // Head dims of one vector (masked), 4.5, 4, 5 and 7 (two chunks, the
        // last masked); N of one token, within one panel and block, and
        // across several.
        for (b, n, heads, hd) in [
            (1, 1, 2, 72),
            (2, 23, 3, 8),
            (1, 197, 2, 72),
            (1, 45, 2, 64),
            (2, 300, 2, 80),
            (2, 70, 1, 100),
        ] {
            let d = heads * hd;
            let qkv = Tensor::randn(0f32, 1.0, (b, n, 3 * d), &Device::Cpu).unwrap();
            let ours = attention(&qkv, heads).unwrap().expect("taken by AVX-512");
            let reference = crate::model::fused::tests::reference_attention(&qkv, heads);
            let diff = crate::model::fused::tests::max_err(&ours, &reference);
            assert!(diff < 1e-5, "N {n}, head_dim {hd}: {diff}");
        }
    }

    /// Every weight is `exp(s − max)`, in whole chunks and in the tail, and
    /// the sum returned is theirs.
    #[test]
    fn weights_in_place_are_shifted_exps_and_their_sum() {
        if !is_x86_feature_detected!("avx512f") {
            println!("skipped: this CPU has no AVX-512F, and exp_weights_in_place needs it");
            return;
        }
        for len in [1, 15, 16, 17, 40] {
            let scores: Vec<f32> = (0..len)
                .map(|i| ((i * 7) % 11) as f32 * 0.9 - 4.0)
                .collect();
            let max = scores.iter().copied().fold(f32::NEG_INFINITY, f32::max);
            let mut row = scores.clone();
            // SAFETY: the CPU has AVX-512 (checked above).
            let sum = unsafe { exp_weights_in_place(&mut row) };
            for (got, s) in row.iter().zip(&scores) {
                let want = (s - max).exp();
                assert!(
                    (got - want).abs() <= 4.0 * f32::EPSILON * want,
                    "{got} != {want}"
                );
            }
            let want: f32 = row.iter().sum();
            assert!(
                (sum - want).abs() <= 1e-5 * want,
                "length {len}: {sum} != {want}"
            );
        }
    }
}
