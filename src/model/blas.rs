// SPDX-License-Identifier: MPL-2.0
//! The CPU linear layers through OpenBLAS (cargo feature `openblas`, Debian's
//! `libopenblas-dev`): `x · Wᵀ` as one `cblas_sgemm` on the tensors' own
//! memory. OpenBLAS picks its kernels for the CPU at run time (Haswell, Zen,
//! SkylakeX, ...), and on the shapes of these models it runs faster than the
//! `gemm` crate candle uses (README: Performance).

use candle_core::{CpuStorage, DType, Result, Storage, Tensor};

/// The f32 values of a contiguous CPU tensor, borrowed for `f`.
fn with_f32<T>(t: &Tensor, f: impl FnOnce(&[f32]) -> T) -> Option<T> {
    let (storage, layout) = t.storage_and_layout();
    let Storage::Cpu(CpuStorage::F32(data)) = &*storage else {
        return None;
    };
    let (start, end) = layout.contiguous_offsets()?;
    Some(f(&data[start..end]))
}

/// `x · Wᵀ` for `x` (..., K) and `weight` (N, K), both contiguous f32 on the
/// CPU; `None` for anything else (candle's matmul takes it).
pub(crate) fn matmul_t(x: &Tensor, weight: &Tensor) -> Result<Option<Tensor>> {
    if !x.device().is_cpu() || x.dtype() != DType::F32 || weight.dtype() != DType::F32 {
        return Ok(None);
    }
    let (n, k) = weight.dims2()?;
    let dims = x.dims();
    if dims.last() != Some(&k) || k == 0 || n == 0 {
        return Ok(None);
    }
    let m = x.elem_count() / k;
    let fits = |v: usize| i32::try_from(v).is_ok();
    if m == 0 || !fits(m) || !fits(n) || !fits(k) {
        return Ok(None);
    }
    let mut out = vec![0f32; m * n];
    let done = with_f32(x, |a| {
        with_f32(weight, |b| {
            // SAFETY: a is m×k, b is n×k and out m×n, row-major, as the
            // strides passed say; the slices outlive the call.
            unsafe {
                cblas_sys::cblas_sgemm(
                    cblas_sys::CblasRowMajor,
                    cblas_sys::CblasNoTrans,
                    cblas_sys::CblasTrans,
                    m as i32,
                    n as i32,
                    k as i32,
                    1.0,
                    a.as_ptr(),
                    k as i32,
                    b.as_ptr(),
                    k as i32,
                    0.0,
                    out.as_mut_ptr(),
                    n as i32,
                );
            }
        })
    })
    .flatten();
    if done.is_none() {
        return Ok(None);
    }
    let mut shape = dims.to_vec();
    *shape.last_mut().expect("checked above") = n;
    Tensor::from_vec(out, shape, x.device()).map(Some)
}

#[cfg(test)]
mod tests {
    use super::*;
    use candle_core::Device;

    #[test]
    fn sgemm_matches_candles_matmul() {
        let x = Tensor::randn(0f32, 1.0, (2, 5, 7), &Device::Cpu).unwrap();
        let w = Tensor::randn(0f32, 1.0, (3, 7), &Device::Cpu).unwrap();
        let ours = matmul_t(&x, &w).unwrap().expect("taken by BLAS");
        let candle = x.broadcast_matmul(&w.t().unwrap()).unwrap();
        let diff = crate::model::fused::tests::max_err(&ours, &candle);
        assert!(diff < 1e-5, "{diff}");
        // A strided input is left to candle.
        assert!(matmul_t(&x.transpose(1, 2).unwrap(), &w).unwrap().is_none());
    }
}
