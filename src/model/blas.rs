// SPDX-License-Identifier: MPL-2.0
//! The CPU linear layers through OpenBLAS (cargo feature `openblas`, Debian's
//! `libopenblas-dev`): `x · Wᵀ` as one `cblas_sgemm` on the tensors' own
//! memory. OpenBLAS picks its kernels for the CPU at run time (Haswell, Zen,
//! SkylakeX, ...), and on the shapes of these models it runs faster than the
//! `gemm` crate candle uses (README: Performance).

use candle_core::{DType, Result, Tensor};

use super::fused::{SendPtr, with_f32, written_by};
use super::head_tasks::{HeadTask, Heads, run_heads};

/// Whether this process's [`CpuMatmul`](super::CpuMatmul) runs OpenBLAS (the
/// default path, and the bf16 path's attention): the one question the model's
/// layers ask before calling into this module.
pub(crate) fn in_use() -> bool {
    use super::CpuMatmul::{Amx, Bf16, OpenBlas};
    matches!(super::CpuMatmul::current(), Ok(OpenBlas | Bf16 | Amx))
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
    let product = with_f32(x, |a| {
        with_f32(weight, |b| {
            // SAFETY: the bands of sgemm_nt_split cover all n columns of the
            // m rows, and sgemm with beta = 0 stores every element.
            unsafe { written_by(m * n, |out| sgemm_nt_split(m, n, k, a, b, out)) }
        })
    })
    .flatten();
    let Some(out) = product else {
        return Ok(None);
    };
    let mut shape = dims.to_vec();
    *shape.last_mut().expect("checked above") = n;
    Tensor::from_vec(out, shape, x.device()).map(Some)
}

/// `out = a · bᵀ` (a m×k, b n×k, out m×n, row-major), its columns split into
/// one band per rayon thread. Each band is one single-threaded `cblas_sgemm`
/// that packs only its rows of `b`: both cores stay busy on one pool, and
/// OpenBLAS's own threads never spin beside rayon's. `out` must have room for
/// m·n values; all of them are stored.
fn sgemm_nt_split(m: usize, n: usize, k: usize, a: &[f32], b: &[f32], out: *mut f32) {
    use rayon::prelude::*;
    single_threaded_blas();
    let bands = rayon::current_num_threads().clamp(1, n.div_ceil(64));
    let band = n.div_ceil(bands).next_multiple_of(16);
    let out_ptr = SendPtr::new(out);
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
                out_ptr.get().add(start),
                n as i32,
            );
        }
    });
}

/// Multi-head self-attention `softmax(q·kᵀ)·v` (the scale is already folded
/// into q) read straight from the qkv projection's output `(B, N, 3·D)`,
/// q, k and v side by side in each row and heads side by side in each, and
/// returned as `(B, N, D)`, heads side by side: the layout the output
/// projection reads. Each (image, head) is one task on rayon's pool: two
/// single-threaded `sgemm`s on strided views (no copy of q, k or v, no
/// transpose of the result) around a softmax of its N×N scores. Where
/// OpenBLAS runs AVX-512 kernels, `f32_attention`'s fused kernels take
/// attention instead. `None` when the tensor does not suit (candle's path
/// takes it).
pub(crate) fn attention(qkv: &Tensor, heads: usize) -> Result<Option<Tensor>> {
    let Some(shape) = Heads::of(qkv, heads)? else {
        return Ok(None);
    };
    let (n, hd) = (shape.tokens, shape.head_dim);
    let fits = |v: usize| i32::try_from(v).is_ok();
    if !fits(n * n) || !fits(shape.stride()) {
        return Ok(None);
    }
    single_threaded_blas();
    let (n_, hd_) = (n as i32, hd as i32);
    let per_head = |scores: &mut Vec<f32>, task: HeadTask<'_>| {
        let [q, k, v] = task.columns.map(|column| &task.rows[column..]);
        let ld = task.stride as i32;
        // SAFETY: q, k and v are n rows of hd values at row stride 3·D inside
        // this image's rows; scores has room for n×n, all stored by this
        // sgemm (beta = 0) before set_len.
        unsafe {
            cblas_sys::cblas_sgemm(
                cblas_sys::CblasRowMajor,
                cblas_sys::CblasNoTrans,
                cblas_sys::CblasTrans,
                n_,
                n_,
                hd_,
                1.0,
                q.as_ptr(),
                ld,
                k.as_ptr(),
                ld,
                0.0,
                scores.as_mut_ptr(),
                n_,
            );
            scores.set_len(n * n);
        }
        super::fused::softmax_rows(scores, n);
        // SAFETY: as above; the probabilities are n×n, v is n rows of hd
        // values at row stride 3·D, and the sgemm (beta = 0) stores all of
        // the task's n × hd output block (row stride D).
        unsafe {
            cblas_sys::cblas_sgemm(
                cblas_sys::CblasRowMajor,
                cblas_sys::CblasNoTrans,
                cblas_sys::CblasNoTrans,
                n_,
                hd_,
                n_,
                1.0,
                scores.as_ptr(),
                n_,
                v.as_ptr(),
                ld,
                0.0,
                task.out,
                task.ldo as i32,
            );
        }
    };
    // SAFETY: per_head stores its head's whole block (the second sgemm) and
    // writes nothing else.
    unsafe { run_heads(qkv, shape, || Vec::<f32>::with_capacity(n * n), per_head) }
}

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

/// OpenBLAS runs each call on the calling thread; rayon splits the work. The
/// setting is OpenBLAS's, so it holds for every user of the library in the
/// process (README: CPU matrix products).
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

    #[test]
    fn attention_matches_candles_ops() {
        let (b, n, heads, hd) = (2, 23, 3, 8);
        let d = heads * hd;
        let qkv = Tensor::randn(0f32, 1.0, (b, n, 3 * d), &Device::Cpu).unwrap();
        let ours = attention(&qkv, heads).unwrap().expect("taken by BLAS");
        let candle = crate::model::fused::tests::reference_attention(&qkv, heads);
        let diff = crate::model::fused::tests::max_err(&ours, &candle);
        assert!(diff < 1e-5, "{diff}");
    }
}
