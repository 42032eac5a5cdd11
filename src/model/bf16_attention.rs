// SPDX-License-Identifier: MPL-2.0
//! Multi-head self-attention on the bf16 CPU path: both products of
//! `softmax(q·kᵀ)·v` on the bf16 kernels (AMX tiles, or AVX512-BF16 dot
//! products), the scores and their softmax in f32.
//!
//! Before this, the bf16 path ran attention as the f32 path does (two OpenBLAS
//! `sgemm`s per head, `blas.rs`), and at 512 px that f32 attention was about
//! 30 % of an SO400M forward whose linear layers ran on AMX. Here q, k and v
//! are rounded to bfloat16 once per head, and the probabilities before they
//! multiply v, as PyTorch's bf16 attention on the CPU does: every product is
//! summed in f32, and the precision is the linear layers' (the tests bound it).
//!
//! Each (image, head) is one task on rayon's pool, with buffers of its own:
//! - q rounded into rows of bf16 pairs; k packed as a weight of N columns over
//!   the head's dimensions, v as a weight of head_dim columns over the N
//!   tokens, both in [`PackedWeight`](super::bf16_matmul::PackedWeight)'s
//!   panel layout;
//! - then, per block of [`PanelKernel::ROWS`] queries: their scores against
//!   every key (ROWS × N f32, which stay in the core's L2); per row, in one
//!   pass after its maximum, the weights `exp(s − max)` rounded into rows of
//!   pairs and their sum; those times v; and each output row divided by its
//!   sum as it is written into the head's columns of the output (the
//!   normalisation on head_dim values instead of N, as flash attention
//!   does).
//!
//! The N × N score matrix never exists whole, so its memory traffic is the
//! cache's, not DRAM's.

use std::arch::x86_64::*;

use candle_core::{Result, Tensor};

use super::amx_tiles::PAIRS_PER_STEP;
use super::avx512_softmax::{exp16, row_max};
use super::bf16_matmul::{Kernel, NR, PanelKernel, pair, round_row};
use super::head_tasks::{HeadTask, Heads, run_heads};

/// `softmax(q·kᵀ)·v` per head, read straight from the qkv projection's output
/// `(B, N, 3·D)` (q, k and v side by side in each row, heads side by side in
/// each; the 1/√head_dim scale already folded into q) and returned as
/// `(B, N, D)`, heads side by side. `None` when the tensor does not suit (an
/// f32 path takes it) or the CPU lacks the kernel.
pub(crate) fn attention(qkv: &Tensor, heads: usize, kernel: Kernel) -> Result<Option<Tensor>> {
    if !kernel.supported() {
        return Ok(None);
    }
    let Some(shape) = Heads::of(qkv, heads)? else {
        return Ok(None);
    };
    // Each task's buffers and kernel (on AMX, the tile shapes loaded once on
    // its thread) serve every head it runs.
    // SAFETY: Head::run stores its head's whole block and nothing else, on
    // a CPU with the kernel (checked above; every bf16 kernel's CPU has
    // AVX512-BF16).
    unsafe {
        run_heads(
            qkv,
            shape,
            || {
                (
                    Head::new(shape.tokens, shape.head_dim),
                    PanelKernel::new(kernel),
                )
            },
            |(scratch, unit), task| scratch.run(unit, task),
        )
    }
}

/// One head's operands in the kernels' layouts, and the buffers of one block
/// of queries; a task's own, reused for every head it runs. What lies past the
/// real rows and columns (padding to whole tiles and steps) is zero from the
/// start and never written, so it adds nothing to the sums.
struct Head {
    /// Tokens.
    n: usize,
    head_dim: usize,
    /// bf16 pairs per q or k row: head_dim / 2, padded to whole kernel steps.
    dim_pairs: usize,
    /// bf16 pairs per probability row (and v panel): N / 2, padded likewise.
    token_pairs: usize,
    /// q rows of `dim_pairs` u32s, N padded to whole blocks of rows.
    q: Vec<u32>,
    /// k as the panels of a weight (N, head_dim): ⌈N / NR⌉ × `dim_pairs` × NR.
    k: Vec<u32>,
    /// One k row's pairs on their way into `k`'s panels: head_dim / 2
    /// rounded up.
    k_row: Vec<u32>,
    /// v as the panels of a weight (head_dim, N): ⌈head_dim / NR⌉ ×
    /// `token_pairs` × NR.
    v: Vec<u32>,
    /// The block's scores, ROWS rows of ⌈N / NR⌉ · NR f32.
    scores: Vec<f32>,
    /// The block's softmax weights before normalisation, `exp(s − max)`
    /// rounded to bf16: ROWS rows of `token_pairs` u32s.
    probabilities: Vec<u32>,
    /// One over each row's sum of weights, by which its output is scaled.
    inv_sums: Vec<f32>,
    /// The block's output, ROWS rows of ⌈head_dim / NR⌉ · NR f32.
    output: Vec<f32>,
    /// head_dim zeros: the missing odd row of v when N is odd.
    zeros: Vec<f32>,
}

impl Head {
    fn new(n: usize, head_dim: usize) -> Self {
        let rows = PanelKernel::ROWS;
        let dim_pairs = head_dim.div_ceil(2).next_multiple_of(PAIRS_PER_STEP);
        let token_pairs = n.div_ceil(2).next_multiple_of(PAIRS_PER_STEP);
        Self {
            n,
            head_dim,
            dim_pairs,
            token_pairs,
            q: vec![0; n.next_multiple_of(rows) * dim_pairs],
            k: vec![0; n.div_ceil(NR) * dim_pairs * NR],
            k_row: vec![0; head_dim.div_ceil(2)],
            v: vec![0; head_dim.div_ceil(NR) * token_pairs * NR],
            scores: vec![0.0; rows * n.div_ceil(NR) * NR],
            probabilities: vec![0; rows * token_pairs],
            inv_sums: vec![0.0; rows],
            output: vec![0.0; rows * head_dim.div_ceil(NR) * NR],
            zeros: vec![0.0; head_dim],
        }
    }

    /// Attention of one head of one image, stored whole into the task's
    /// output block.
    ///
    /// # Safety
    /// `out` points at N rows of head_dim writable f32s, `ldo` apart, and
    /// the CPU has AVX512-BF16 (every bf16 kernel's CPU has).
    unsafe fn run(&mut self, unit: &PanelKernel, task: HeadTask<'_>) {
        let (out, ldo) = (task.out, task.ldo);
        let (n, head_dim) = (self.n, self.head_dim);
        let row = |t: usize, part: usize| task.row(t, part);
        let used_pairs = head_dim.div_ceil(2);
        for t in 0..n {
            let q = &mut self.q[t * self.dim_pairs..][..used_pairs];
            // SAFETY: the CPU has AVX512-BF16 (the caller's contract); q and
            // k_row hold head_dim / 2 rounded up.
            unsafe {
                round_row(row(t, 0), q);
                round_row(row(t, 1), &mut self.k_row);
            }
            let panel = &mut self.k[(t / NR) * self.dim_pairs * NR..];
            for (i, &p) in self.k_row.iter().enumerate() {
                panel[i * NR + t % NR] = p;
            }
        }
        for tp in 0..n.div_ceil(2) {
            let (even, odd) = (row(2 * tp, 2), (2 * tp + 1 < n).then(|| row(2 * tp + 1, 2)));
            let odd = odd.unwrap_or(&self.zeros);
            for (p, panel) in self.v.chunks_exact_mut(self.token_pairs * NR).enumerate() {
                let cols = p * NR..head_dim.min((p + 1) * NR);
                let dst = &mut panel[tp * NR..][..cols.len()];
                // SAFETY: the caller's contract (AVX512-BF16).
                unsafe { interleave(&even[cols.clone()], &odd[cols], dst) };
            }
        }

        let rows_per_block = PanelKernel::ROWS;
        let score_stride = n.div_ceil(NR) * NR;
        let out_stride = head_dim.div_ceil(NR) * NR;
        for first in (0..n).step_by(rows_per_block) {
            let rows = rows_per_block.min(n - first);
            for (p, panel) in self.k.chunks_exact(self.dim_pairs * NR).enumerate() {
                // SAFETY: q holds whole blocks of ROWS rows of dim_pairs u32s
                // from `first`; the panel is dim_pairs × NR; scores has ROWS
                // rows of score_stride f32s, NR of them from p·NR.
                unsafe {
                    unit.product(
                        self.q[first * self.dim_pairs..].as_ptr(),
                        rows,
                        self.dim_pairs,
                        panel.as_ptr(),
                        self.scores[p * NR..].as_mut_ptr(),
                        score_stride,
                    );
                }
            }
            for (r, inv_sum) in self.inv_sums.iter_mut().enumerate().take(rows) {
                let scores = &self.scores[r * score_stride..][..n];
                let weights = &mut self.probabilities[r * self.token_pairs..][..n.div_ceil(2)];
                // SAFETY: the caller's contract; the row holds N / 2 rounded up.
                *inv_sum = unsafe { 1.0 / exp_weights(scores, weights) };
            }
            for (p, panel) in self.v.chunks_exact(self.token_pairs * NR).enumerate() {
                // SAFETY: probabilities is ROWS rows of token_pairs u32s; the
                // panel token_pairs × NR; output has ROWS rows of out_stride
                // f32s, NR of them from p·NR.
                unsafe {
                    unit.product(
                        self.probabilities.as_ptr(),
                        rows,
                        self.token_pairs,
                        panel.as_ptr(),
                        self.output[p * NR..].as_mut_ptr(),
                        out_stride,
                    );
                }
            }
            for (r, &inv_sum) in self.inv_sums.iter().enumerate().take(rows) {
                let values = &self.output[r * out_stride..][..head_dim];
                // SAFETY: row first + r < N of out has head_dim writable f32s
                // (the caller's contract).
                let row =
                    unsafe { std::slice::from_raw_parts_mut(out.add((first + r) * ldo), head_dim) };
                row.iter_mut()
                    .zip(values)
                    .for_each(|(o, v)| *o = v * inv_sum);
            }
        }
    }
}

/// One row of softmax weights, in one pass after its maximum: `exp(s − max)`
/// of each score, rounded into `dst`'s bf16 pairs (as [`round_row`] would),
/// and their sum, returned. The row is normalised after its product with v,
/// on head_dim values instead of N (as flash attention does). The exp is
/// [`fused::exp`](super::fused)'s polynomial on 16 lanes, `2^n` applied by
/// `vscalefps`.
///
/// # Safety
/// The CPU has AVX512-BF16; `dst` holds `scores.len()` / 2 rounded up.
#[target_feature(enable = "avx512f,avx512bf16")]
unsafe fn exp_weights(scores: &[f32], dst: &mut [u32]) -> f32 {
    debug_assert_eq!(dst.len(), scores.len().div_ceil(2));
    let max = row_max(scores);
    let full = scores.len() / 32;
    let mut sums = _mm512_setzero_ps();
    for i in 0..full {
        // SAFETY: 32 scores from 32·i lie inside scores, 16 pairs from 16·i
        // inside dst.
        unsafe {
            let at = |j: usize| {
                _mm512_sub_ps(_mm512_loadu_ps(scores.as_ptr().add(j)), _mm512_set1_ps(max))
            };
            let (lo, hi) = (exp16(at(32 * i)), exp16(at(32 * i + 16)));
            sums = _mm512_add_ps(sums, _mm512_add_ps(lo, hi));
            let pairs = _mm512_cvtne2ps_pbh(hi, lo);
            _mm512_storeu_si512(
                dst.as_mut_ptr().add(16 * i).cast(),
                std::mem::transmute::<__m512bh, __m512i>(pairs),
            );
        }
    }
    let rest = scores.len() - 32 * full;
    if rest > 0 {
        let mask = |k: usize| ((1u32 << k) - 1) as u16;
        let (low, high) = (mask(rest.min(16)), mask(rest.saturating_sub(16)));
        // SAFETY: the masks read only the row's last `rest` scores and write
        // only its last rest / 2 (rounded up) pairs; masked-off lanes do
        // not fault.
        unsafe {
            let base = scores.as_ptr().add(32 * full);
            let at = |mask: u16, from: *const f32| {
                let x = _mm512_sub_ps(_mm512_maskz_loadu_ps(mask, from), _mm512_set1_ps(max));
                _mm512_maskz_mov_ps(mask, exp16(x))
            };
            let (lo, hi) = (at(low, base), at(high, base.wrapping_add(16)));
            sums = _mm512_add_ps(sums, _mm512_add_ps(lo, hi));
            let pairs = std::mem::transmute::<__m512bh, __m512i>(_mm512_cvtne2ps_pbh(hi, lo));
            _mm512_mask_storeu_epi32(
                dst.as_mut_ptr().add(16 * full).cast(),
                mask(rest.div_ceil(2)),
                pairs,
            );
        }
    }
    _mm512_reduce_add_ps(sums)
}

/// `dst[j]` = the bf16 pair (`even[j]`, `odd[j]`), the even one in the low
/// half: two rows of v side by side, as the kernels pair the K axis. Rounds to
/// nearest even, as [`pair`] does.
///
/// # Safety
/// The CPU has AVX512-BF16; the three slices are as long.
#[target_feature(enable = "avx512f,avx512bf16")]
unsafe fn interleave(even: &[f32], odd: &[f32], dst: &mut [u32]) {
    debug_assert!(even.len() == dst.len() && odd.len() == dst.len());
    let full = dst.len() / 16;
    for i in 0..full {
        // SAFETY: 16 values from 16·i lie inside each slice.
        unsafe {
            let widen = |row: &[f32]| {
                let bf = _mm512_cvtneps_pbh(_mm512_loadu_ps(row.as_ptr().add(16 * i)));
                _mm512_cvtepu16_epi32(std::mem::transmute::<__m256bh, __m256i>(bf))
            };
            let both = _mm512_or_si512(widen(even), _mm512_slli_epi32::<16>(widen(odd)));
            _mm512_storeu_si512(dst.as_mut_ptr().add(16 * i).cast(), both);
        }
    }
    for j in 16 * full..dst.len() {
        dst[j] = pair(even[j], odd[j]);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::fused::tests::{max_err, reference_attention};
    use candle_core::{DType, Device};

    /// Against f32 attention, on each kernel the CPU has. q, k, v and the
    /// probabilities are rounded to 8 significant bits, so an output (a
    /// weighted mean of v, |v| ≤ 3 here) may be off by v's rounding (2⁻⁹ of
    /// max |v|) plus what the rounded scores and probabilities shift: the
    /// bound is 2⁻⁷ of max |v| (errors of 0.05 % to 0.24 % of max |v| seen,
    /// at most a third of it); a wrong pairing or panel layout is off by the
    /// size of v. Shapes cover odd N, N past several blocks of rows, a last
    /// block of 1 row, head_dim 8, 64, 72 (SO400M) and 80 (H), and two
    /// images.
    #[test]
    fn matches_f32_attention_to_bf16_precision() {
        for kernel in [Kernel::DotProduct, Kernel::Amx] {
            if !kernel.supported() {
                println!("this CPU has no {kernel:?} kernel: not run here");
                continue;
            }
            for (b, n, heads, head_dim) in [
                (1, 1, 1, 8),
                (2, 23, 3, 8),
                (1, 70, 2, 72),
                (2, 33, 2, 64),
                (1, 257, 2, 80),
                (1, 64, 2, 64),
            ] {
                let d = heads * head_dim;
                let qkv = Tensor::randn(0f32, 1.0, (b, n, 3 * d), &Device::Cpu).unwrap();
                // The model folds 1/√head_dim into q.
                let scale = Tensor::cat(
                    &[
                        Tensor::full((head_dim as f32).powf(-0.5), d, &Device::Cpu).unwrap(),
                        Tensor::ones(2 * d, DType::F32, &Device::Cpu).unwrap(),
                    ],
                    0,
                )
                .unwrap();
                let qkv = qkv
                    .broadcast_mul(&scale)
                    .unwrap()
                    .clamp(-3f32, 3f32)
                    .unwrap();
                let ours = attention(&qkv, heads, kernel).unwrap().expect("taken");
                assert_eq!(ours.dims(), [b, n, d]);
                let err = max_err(&ours, &reference_attention(&qkv, heads));
                assert!(
                    err <= 3.0 / 128.0,
                    "{kernel:?} (b {b}, n {n}, heads {heads}, head_dim {head_dim}): off by {err}"
                );
            }
        }
    }
}
