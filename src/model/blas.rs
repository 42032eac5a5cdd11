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
        with_f32(weight, |b| sgemm_nt_split(m, n, k, a, b, &mut out))
    })
    .flatten();
    if done.is_none() {
        return Ok(None);
    }
    let mut shape = dims.to_vec();
    *shape.last_mut().expect("checked above") = n;
    Tensor::from_vec(out, shape, x.device()).map(Some)
}

/// `out = a · bᵀ` (a m×k, b n×k, out m×n, row-major), its columns split into
/// one band per rayon thread. Each band is one single-threaded `cblas_sgemm`
/// that packs only its rows of `b`: both cores stay busy on one pool, and
/// OpenBLAS's own threads never spin beside rayon's.
fn sgemm_nt_split(m: usize, n: usize, k: usize, a: &[f32], b: &[f32], out: &mut [f32]) {
    use rayon::prelude::*;
    single_threaded_blas();
    let bands = rayon::current_num_threads().clamp(1, n.div_ceil(64));
    let band = n.div_ceil(bands).next_multiple_of(16);
    let out_ptr = SendPtr(out.as_mut_ptr());
    (0..n.div_ceil(band)).into_par_iter().for_each(|i| {
        let (start, width) = (i * band, band.min(n - i * band));
        let out_ptr = &out_ptr;
        // SAFETY: a is m×k, b's rows start..start+width are width×k, and the
        // band writes only columns start..start+width of out's m rows (row
        // stride n): bands are disjoint and every slice outlives the call.
        unsafe {
            cblas_sys::cblas_sgemm(
                cblas_sys::CblasRowMajor,
                cblas_sys::CblasNoTrans,
                cblas_sys::CblasTrans,
                m as i32,
                width as i32,
                k as i32,
                1.0,
                a.as_ptr(),
                k as i32,
                b[start * k..].as_ptr(),
                k as i32,
                0.0,
                out_ptr.0.add(start),
                n as i32,
            );
        }
    });
}

struct SendPtr(*mut f32);
// SAFETY: the bands written through it are disjoint (see sgemm_nt_split).
unsafe impl Sync for SendPtr {}

unsafe extern "C" {
    fn openblas_set_num_threads(n: i32);
    fn openblas_get_config() -> *const std::ffi::c_char;
    fn openblas_get_corename() -> *const std::ffi::c_char;
}

/// One of OpenBLAS's static strings.
fn openblas_str(get: unsafe extern "C" fn() -> *const std::ffi::c_char) -> String {
    // SAFETY: both getters return a NUL-terminated string that lives as long as
    // the library.
    unsafe { std::ffi::CStr::from_ptr(get()) }
        .to_string_lossy()
        .into_owned()
}

/// The kernel family OpenBLAS chose for this CPU (or that `OPENBLAS_CORETYPE`
/// forced), e.g. `Cooperlake`.
pub(crate) fn core_name() -> String {
    openblas_str(openblas_get_corename)
}

/// `OpenBLAS <version>`, the first words of its build configuration.
pub(crate) fn version() -> String {
    let config = openblas_str(openblas_get_config);
    config
        .split_whitespace()
        .take(2)
        .collect::<Vec<_>>()
        .join(" ")
}

/// OpenBLAS runs each call on the calling thread; rayon splits the work.
fn single_threaded_blas() {
    static ONCE: std::sync::Once = std::sync::Once::new();
    // SAFETY: a plain setter of OpenBLAS's thread count.
    ONCE.call_once(|| unsafe { openblas_set_num_threads(1) });
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
        // Wide enough for one band of columns per thread, the last one short.
        let x = Tensor::randn(0f32, 1.0, (3, 37, 64), &Device::Cpu).unwrap();
        let w = Tensor::randn(0f32, 1.0, (300, 64), &Device::Cpu).unwrap();
        let ours = matmul_t(&x, &w).unwrap().expect("taken by BLAS");
        let candle = x.broadcast_matmul(&w.t().unwrap()).unwrap();
        let diff = crate::model::fused::tests::max_err(&ours, &candle);
        assert!(diff < 1e-4, "{diff}");
        // A strided input is left to candle.
        assert!(matmul_t(&x.transpose(1, 2).unwrap(), &w).unwrap().is_none());
    }
}
