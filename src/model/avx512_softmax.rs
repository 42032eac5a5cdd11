// SPDX-License-Identifier: MPL-2.0
//! Softmax pieces on 16 AVX-512 lanes, shared by the CPU attention kernels
//! (`f32_attention`, `bf16_attention`): a row's maximum and `e^x`.

use std::arch::x86_64::*;

/// The largest score, 16 lanes at a time (a scalar `f32::max` fold is one
/// serial chain over the row, and it ran once for every query row).
#[target_feature(enable = "avx512f")]
pub(super) fn row_max(scores: &[f32]) -> f32 {
    let mut lanes = _mm512_set1_ps(f32::NEG_INFINITY);
    let chunks = scores.chunks_exact(16);
    let rest = chunks.remainder();
    for chunk in chunks {
        // SAFETY: the chunk holds 16 values.
        lanes = _mm512_max_ps(lanes, unsafe { _mm512_loadu_ps(chunk.as_ptr()) });
    }
    rest.iter()
        .fold(_mm512_reduce_max_ps(lanes), |m, &s| m.max(s))
}

/// `e^x` on 16 lanes: the range reduction and degree-5 polynomial of
/// [`fused::exp`](super::fused) (Cephes' `expf`), about 1 ulp.
#[target_feature(enable = "avx512f")]
pub(super) fn exp16(x: __m512) -> __m512 {
    let x = _mm512_max_ps(x, _mm512_set1_ps(-87.3));
    let n = _mm512_roundscale_ps::<{ _MM_FROUND_TO_NEG_INF | _MM_FROUND_NO_EXC }>(_mm512_fmadd_ps(
        x,
        _mm512_set1_ps(std::f32::consts::LOG2_E),
        _mm512_set1_ps(0.5),
    ));
    let r = _mm512_fmadd_ps(n, _mm512_set1_ps(-0.693_359_4), x);
    let r = _mm512_fmadd_ps(n, _mm512_set1_ps(2.121_944_4e-4), r);
    let mut p = _mm512_set1_ps(1.987_569_1e-4);
    for c in [1.398_2e-3, 8.333_452e-3, 4.166_579_6e-2, 0.166_666_65, 0.5] {
        p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(c));
    }
    let y = _mm512_add_ps(
        _mm512_fmadd_ps(p, _mm512_mul_ps(r, r), r),
        _mm512_set1_ps(1.0),
    );
    _mm512_scalef_ps(y, n)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The 16-lane exp keeps the scalar one's accuracy (about 1 ulp; 4 ulp
    /// allowed) over the range softmax feeds it, down to where it rounds to
    /// (almost) nothing.
    #[test]
    fn exp16_is_exp() {
        if !is_x86_feature_detected!("avx512f") {
            println!("skipped: this CPU has no AVX-512F, and exp16 needs it");
            return;
        }
        for i in 0..=20_000 {
            let x = -87.0 * i as f32 / 20_000.0;
            // SAFETY: the CPU has AVX-512 (checked above).
            let got = unsafe { _mm512_cvtss_f32(exp16(_mm512_set1_ps(x))) };
            let want = x.exp();
            assert!(
                (got - want).abs() <= 4.0 * f32::EPSILON * want,
                "exp({x}) = {got}, not {want}"
            );
        }
    }

    /// The vector maximum is the row's largest score wherever it lies: in a
    /// whole 16-lane chunk or in the tail (softmax would hide a wrong one,
    /// being the same for any shift).
    #[test]
    fn row_max_finds_the_largest_score_anywhere() {
        if !is_x86_feature_detected!("avx512f") {
            println!("skipped: this CPU has no AVX-512F, and row_max needs it");
            return;
        }
        for len in 1..70 {
            for at in 0..len {
                let mut row: Vec<f32> = (0..len).map(|i| -(i as f32) - 1.0).collect();
                row[at] = 0.5;
                // SAFETY: the CPU has AVX-512 (checked above).
                assert_eq!(unsafe { row_max(&row) }, 0.5, "length {len}, max at {at}");
            }
        }
    }
}
