// SPDX-License-Identifier: MPL-2.0
//! Element-wise work fused into single vectorised passes on the CPU: bias add,
//! bias add + exact GELU, bias add + residual add, scaled softmax, and
//! LayerNorm.
//!
//! candle's `broadcast_add` of a bias costs about 1 ns per element on the CPU, its
//! `gelu_erf` about 4 ns (scalar libm `erff`) and its softmax about 2 ns (scalar
//! `expf`); in ViT-B at 224 px they took ~20 % of a forward. Here each is one pass
//! over contiguous rows, compiled for AVX2 + FMA when the CPU has them, in place
//! on the matmul's fresh output (no copy, no allocation). On a GPU the bias
//! epilogues are one kernel each (`cuda_epilogue.rs`); elsewhere candle's own
//! ops are used.

use candle_core::{CpuStorage, DType, InplaceOp1, InplaceOp2, Layout, Module, Result, Tensor};
use candle_nn::{LayerNorm, Linear};

use super::bf16_matmul::{Kernel, PackedWeight};
use crate::cpu::avx2_fma_dispatch;

/// What follows the bias.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Activation {
    /// Nothing.
    None,
    /// Exact (erf) GELU.
    Gelu,
    /// GELU's tanh approximation (`gelu_pytorch_tanh`, SigLIP's MLPs).
    GeluTanh,
}

/// A Linear whose bias (and activation) is applied by a fused pass.
pub(crate) struct FusedLinear {
    weight: Weight,
    bias: Tensor,
    host_bias: Option<Vec<f32>>,
}

/// How a layer keeps its weight.
enum Weight {
    /// As loaded, for candle's matmul or OpenBLAS.
    Tensor(Linear),
    /// Rounded to bfloat16 and packed for the bf16 kernel (the bf16 CPU path;
    /// the f32 weight is dropped).
    Bf16(PackedWeight, Kernel),
}

impl FusedLinear {
    /// Splits a candle Linear (which must have a bias) into matmul + fused bias.
    pub fn new(linear: Linear) -> Result<Self> {
        let bias = linear
            .bias()
            .cloned()
            .expect("C-RADIO linear layers all have biases");
        let host_bias = if bias.device().is_cpu() && bias.dtype() == DType::F32 {
            Some(bias.to_vec1::<f32>()?)
        } else {
            None
        };
        let weight = linear.weight();
        let kernel = super::CpuMatmul::current().ok().and_then(Kernel::of);
        let packed = match kernel {
            Some(kernel) if weight.dtype() == DType::F32 => {
                let (n, k) = weight.dims2()?;
                with_f32(weight, |w| (PackedWeight::new(w, n, k), kernel))
            }
            _ => None,
        };
        let weight = match packed {
            Some((packed, kernel)) => Weight::Bf16(packed, kernel),
            None => Weight::Tensor(Linear::new(weight.clone(), None)),
        };
        Ok(Self {
            weight,
            bias,
            host_bias,
        })
    }

    /// Output width: the rows of the weight.
    pub fn out_dim(&self) -> usize {
        match &self.weight {
            Weight::Tensor(linear) => linear.weight().dim(0).unwrap_or(0),
            Weight::Bf16(packed, _) => packed.n(),
        }
    }

    /// Whether the fused CPU passes apply to the matmul output `y`.
    fn fused_bias(&self, y: &Tensor) -> Option<&[f32]> {
        self.host_bias
            .as_deref()
            .filter(|_| y.is_contiguous() && y.dtype() == DType::F32)
    }

    /// `x · Wᵀ`: through the bf16 kernel or OpenBLAS when one is this
    /// process's [`CpuMatmul`](super::CpuMatmul) and the tensors suit it.
    fn matmul(&self, x: &Tensor) -> Result<Tensor> {
        let linear = match &self.weight {
            Weight::Bf16(packed, kernel) => {
                let y = super::bf16_matmul::linear(&x.contiguous()?, packed, *kernel)?;
                return y.ok_or_else(|| {
                    candle_core::Error::Msg(format!(
                        "the bf16 CPU path takes f32 CPU inputs, not {:?} on {:?}",
                        x.dtype(),
                        x.device().location()
                    ))
                });
            }
            Weight::Tensor(linear) => linear,
        };
        #[cfg(feature = "openblas")]
        if super::blas::in_use()
            && let Some(y) = super::blas::matmul_t(x, linear.weight())?
        {
            return Ok(y);
        }
        linear.forward(x)
    }

    /// `act(x · Wᵀ + b)`.
    pub fn forward(&self, x: &Tensor, act: Activation) -> Result<Tensor> {
        let y = self.matmul(x)?;
        match self.fused_bias(&y) {
            Some(bias) => {
                y.inplace_op1(&BiasAct { bias, act })?;
                Ok(y)
            }
            #[cfg(feature = "cuda")]
            None if super::cuda_epilogue::bias_act(&y, &self.bias, act)? => Ok(y),
            None => {
                let y = y.broadcast_add(&self.bias)?;
                Ok(match act {
                    Activation::None => y,
                    Activation::Gelu => y.gelu_erf()?,
                    Activation::GeluTanh => y.gelu()?,
                })
            }
        }
    }

    /// `residual + x · Wᵀ + b`: a block's output projection and its skip
    /// connection in one pass.
    pub fn forward_residual(&self, x: &Tensor, residual: &Tensor) -> Result<Tensor> {
        let y = self.matmul(x)?;
        match self.fused_bias(&y) {
            Some(bias) if residual.is_contiguous() && residual.shape() == y.shape() => {
                y.inplace_op2(residual, &BiasResidual { bias })?;
                Ok(y)
            }
            #[cfg(feature = "cuda")]
            None if super::cuda_epilogue::bias_residual(&y, &self.bias, residual)? => Ok(y),
            _ => Ok((y.broadcast_add(&self.bias)? + residual)?),
        }
    }
}

/// The f32 values of a contiguous CPU tensor, borrowed for `f`; `None` for
/// any other tensor.
pub(crate) fn with_f32<T>(t: &Tensor, f: impl FnOnce(&[f32]) -> T) -> Option<T> {
    let (storage, layout) = t.storage_and_layout();
    let candle_core::Storage::Cpu(CpuStorage::F32(data)) = &*storage else {
        return None;
    };
    let (start, end) = layout.contiguous_offsets()?;
    Some(f(&data[start..end]))
}

/// An output buffer's address shared by parallel tasks, each of which writes
/// a part of it that no other task writes (each user names the parts in its
/// `SAFETY` comments).
pub(crate) struct SendPtr(*mut f32);
// SAFETY: the tasks' writes through it are disjoint (above).
unsafe impl Sync for SendPtr {}

impl SendPtr {
    /// Shares `ptr` with the tasks.
    pub fn new(ptr: *mut f32) -> Self {
        Self(ptr)
    }

    /// The address. Only through this method: a closure that calls it
    /// captures the whole `SendPtr` (which is `Sync`), where one that read a
    /// public field would capture the bare pointer.
    pub fn get(&self) -> *mut f32 {
        self.0
    }
}

/// A vector of `len` f32 that `write` fills through the pointer it is given,
/// never zeroed first. Matrix products store every output without reading
/// it, and zeroing their outputs (`vec![0; len]`, a `memset` once the
/// allocator reuses memory) took 3 % of an SO400M forward.
///
/// The library's own tests start `write` from NaNs instead, so that a
/// product's test against exact values also shows an element left unwritten.
///
/// # Safety
/// `write` must initialise all `len` elements.
pub(crate) unsafe fn written_by(len: usize, write: impl FnOnce(*mut f32)) -> Vec<f32> {
    let mut out = Vec::with_capacity(len);
    #[cfg(test)]
    out.spare_capacity_mut()[..len].fill(std::mem::MaybeUninit::new(f32::NAN));
    write(out.as_mut_ptr());
    // SAFETY: the caller's promise: write initialised all len elements.
    unsafe { out.set_len(len) };
    out
}

/// The f32 values of a contiguous CPU tensor, to be transformed in place.
fn contiguous_f32_mut<'a>(
    op: &str,
    storage: &'a mut CpuStorage,
    layout: &Layout,
) -> candle_core::Result<&'a mut [f32]> {
    let CpuStorage::F32(data) = storage else {
        candle_core::bail!("{op}: f32 input expected");
    };
    let Some((start, end)) = layout.contiguous_offsets() else {
        candle_core::bail!("{op}: contiguous input expected");
    };
    Ok(&mut data[start..end])
}

/// Rows per rayon task: about 16k values, enough to amortise the task.
fn rows_per_task(row_len: usize) -> usize {
    (16384 / row_len.max(1)).max(1)
}

struct BiasAct<'a> {
    bias: &'a [f32],
    act: Activation,
}

impl InplaceOp1 for BiasAct<'_> {
    fn name(&self) -> &'static str {
        "bias-act"
    }

    fn cpu_fwd(&self, storage: &mut CpuStorage, layout: &Layout) -> candle_core::Result<()> {
        let out = contiguous_f32_mut(self.name(), storage, layout)?;
        let n = self.bias.len();
        use rayon::prelude::*;
        let (bias, act) = (self.bias, self.act);
        out.par_chunks_mut(rows_per_task(n) * n)
            .for_each(|chunk| apply_rows(chunk, bias, act));
        Ok(())
    }
}

struct BiasResidual<'a> {
    bias: &'a [f32],
}

impl InplaceOp2 for BiasResidual<'_> {
    fn name(&self) -> &'static str {
        "bias-residual"
    }

    fn cpu_fwd(
        &self,
        storage: &mut CpuStorage,
        layout: &Layout,
        residual: &CpuStorage,
        residual_layout: &Layout,
    ) -> candle_core::Result<()> {
        let out = contiguous_f32_mut(self.name(), storage, layout)?;
        let (CpuStorage::F32(res), Some((start, end))) =
            (residual, residual_layout.contiguous_offsets())
        else {
            candle_core::bail!("bias-residual: contiguous f32 residual expected");
        };
        let n = self.bias.len();
        use rayon::prelude::*;
        let bias = self.bias;
        let step = rows_per_task(n) * n;
        out.par_chunks_mut(step)
            .zip(res[start..end].par_chunks(step))
            .for_each(|(chunk, res)| add_bias_residual(chunk, bias, res));
        Ok(())
    }
}

avx2_fma_dispatch! {
    /// Adds the bias to every row of `chunk` and applies `act`.
    fn apply_rows(chunk: &mut [f32], bias: &[f32], act: Activation) {
        for row in chunk.chunks_exact_mut(bias.len()) {
            match act {
                Activation::None => row.iter_mut().zip(bias).for_each(|(v, b)| *v += b),
                Activation::Gelu => row
                    .iter_mut()
                    .zip(bias)
                    .for_each(|(v, b)| *v = gelu(*v + b)),
                Activation::GeluTanh => row
                    .iter_mut()
                    .zip(bias)
                    .for_each(|(v, b)| *v = gelu_tanh(*v + b)),
            }
        }
    }
}

avx2_fma_dispatch! {
    /// `chunk = chunk + bias + residual`, row by row.
    fn add_bias_residual(chunk: &mut [f32], bias: &[f32], residual: &[f32]) {
        let n = bias.len();
        for (row, res) in chunk.chunks_exact_mut(n).zip(residual.chunks_exact(n)) {
            for ((v, b), r) in row.iter_mut().zip(bias).zip(res) {
                *v = (*v + b) + r;
            }
        }
    }
}

/// A LayerNorm (with bias) over the last axis that runs vectorised on f32 CPU
/// tensors. candle's CPU layer norm sums each row in one serial chain of
/// scalar adds (and takes the variance as E[x²] − E[x]²); here each row is
/// summed over 8 lanes, then its centred squares, as PyTorch does. Other
/// tensors take candle's.
pub(crate) struct FusedLayerNorm {
    norm: LayerNorm,
    /// Weight and bias in host memory, when they are f32 on the CPU.
    host: Option<(Vec<f32>, Vec<f32>)>,
}

impl FusedLayerNorm {
    /// Wraps a candle LayerNorm with a bias.
    pub fn new(norm: LayerNorm) -> Result<Self> {
        let host = match norm.bias() {
            Some(bias)
                if norm.remove_mean() && bias.device().is_cpu() && bias.dtype() == DType::F32 =>
            {
                Some((norm.weight().to_vec1::<f32>()?, bias.to_vec1::<f32>()?))
            }
            _ => None,
        };
        Ok(Self { norm, host })
    }
}

/// [`candle_nn::layer_norm`] (weight and bias of `size` under `vb`) as a
/// [`FusedLayerNorm`].
pub(crate) fn layer_norm(
    size: usize,
    eps: f64,
    vb: candle_nn::VarBuilder,
) -> Result<FusedLayerNorm> {
    FusedLayerNorm::new(candle_nn::layer_norm(size, eps, vb)?)
}

impl Module for FusedLayerNorm {
    fn forward(&self, x: &Tensor) -> Result<Tensor> {
        use rayon::prelude::*;
        let Some((weight, bias)) = &self.host else {
            return self.norm.forward(x);
        };
        let n = weight.len();
        if x.dims().last() != Some(&n) {
            return self.norm.forward(x);
        }
        let eps = self.norm.eps() as f32;
        let mut out = vec![0f32; x.elem_count()];
        let step = rows_per_task(n) * n;
        let done = with_f32(x, |src| {
            out.par_chunks_mut(step)
                .zip(src.par_chunks(step))
                .for_each(|(dst, src)| layer_norm_rows(src, dst, weight, bias, eps));
        });
        match done {
            Some(()) => Tensor::from_vec(out, x.shape(), x.device()),
            None => self.norm.forward(x),
        }
    }
}

avx2_fma_dispatch! {
    /// `(row − mean) / √(var + eps) · weight + bias` for each row of `src`
    /// into `dst`.
    fn layer_norm_rows(src: &[f32], dst: &mut [f32], weight: &[f32], bias: &[f32], eps: f32) {
        let n = weight.len();
        for (row, out) in src.chunks_exact(n).zip(dst.chunks_exact_mut(n)) {
            let mean = lane_reduce(row, 0.0, |a, b| a + b) / n as f32;
            out.iter_mut().zip(row).for_each(|(o, x)| *o = x - mean);
            let mut lanes = [0f32; 8];
            let chunks = out.chunks_exact(8);
            let rest: f32 = chunks.remainder().iter().map(|d| d * d).sum();
            for chunk in chunks {
                for (lane, d) in lanes.iter_mut().zip(chunk) {
                    *lane = d.mul_add(*d, *lane);
                }
            }
            let var = (lanes.iter().sum::<f32>() + rest) / n as f32;
            let inv_std = 1.0 / (var + eps).sqrt();
            for ((o, w), b) in out.iter_mut().zip(weight).zip(bias) {
                *o = (*o * inv_std).mul_add(*w, *b);
            }
        }
    }
}

/// Softmax over the last axis, in place when `x` is a contiguous f32 CPU
/// tensor (which the caller hands over). Attention folds its 1/√d scale into
/// the q projection, so no pass over the scores scales them.
pub(crate) fn softmax_last_dim(x: Tensor) -> Result<Tensor> {
    if x.device().is_cpu() && x.dtype() == DType::F32 && x.is_contiguous() {
        x.inplace_op1(&Softmax)?;
        Ok(x)
    } else {
        Ok(candle_nn::ops::softmax_last_dim(&x)?)
    }
}

struct Softmax;

impl InplaceOp1 for Softmax {
    fn name(&self) -> &'static str {
        "softmax"
    }

    fn cpu_fwd(&self, storage: &mut CpuStorage, layout: &Layout) -> candle_core::Result<()> {
        let out = contiguous_f32_mut(self.name(), storage, layout)?;
        let n = layout.shape().dims().last().copied().unwrap_or(1);
        use rayon::prelude::*;
        out.par_chunks_mut(rows_per_task(n) * n)
            .for_each(|chunk| softmax_rows(chunk, n));
        Ok(())
    }
}

avx2_fma_dispatch! {
    /// `softmax(row)` for each `n`-wide row of `chunk`.
    pub(crate) fn softmax_rows(chunk: &mut [f32], n: usize) {
        for row in chunk.chunks_exact_mut(n) {
            let max = lane_reduce(row, f32::NEG_INFINITY, |a, b| if a > b { a } else { b });
            row.iter_mut().for_each(|v| *v = exp(*v - max));
            let inv = 1.0 / lane_reduce(row, 0.0, |a, b| a + b);
            row.iter_mut().for_each(|v| *v *= inv);
        }
    }
}

/// Folds a slice over 8 independent lanes, so that the compiler can keep them in
/// one vector register (a plain fold is a serial dependency chain).
#[inline(always)]
fn lane_reduce(xs: &[f32], init: f32, f: impl Fn(f32, f32) -> f32) -> f32 {
    let mut lanes = [init; 8];
    let chunks = xs.chunks_exact(8);
    let rest = chunks.remainder();
    for chunk in chunks {
        for (lane, &x) in lanes.iter_mut().zip(chunk) {
            *lane = f(*lane, x);
        }
    }
    rest.iter()
        .fold(lanes.into_iter().fold(init, &f), |a, &x| f(a, x))
}

/// exp for f32 (Cephes' `expf`: range reduction by ln 2 and a degree-5
/// polynomial, about 1 ulp), branch-free so that it vectorises.
///
/// `2^n` is built from the float's bits: adding 1.5 · 2²³ puts the integer `n`
/// in the low mantissa bits, so one integer add and shift make the exponent
/// field. An `as i32` cast would do the same, but Rust's saturating cast does
/// not vectorise: it compiled to one scalar convert and two compares per lane,
/// and softmax spent most of its time there.
#[inline(always)]
fn exp(x: f32) -> f32 {
    let x = x.clamp(-87.3, 88.7);
    let n = x.mul_add(std::f32::consts::LOG2_E, 0.5).floor();
    let r = n.mul_add(-0.693_359_4, x);
    let r = n.mul_add(2.121_944_4e-4, r);
    let mut p = 1.987_569_1e-4_f32;
    p = p.mul_add(r, 1.398_2e-3);
    p = p.mul_add(r, 8.333_452e-3);
    p = p.mul_add(r, 4.166_579_6e-2);
    p = p.mul_add(r, 0.166_666_65);
    p = p.mul_add(r, 0.5);
    let y = p.mul_add(r * r, r) + 1.0;
    const ROUNDING_MAGIC: f32 = 12_582_912.0; // 1.5 · 2²³
    let two_to_n = (n + ROUNDING_MAGIC).to_bits().wrapping_add(127) << 23;
    y * f32::from_bits(two_to_n)
}

/// Exact GELU, `0.5 · x · (1 + erf(x / √2))`.
#[inline(always)]
fn gelu(x: f32) -> f32 {
    0.5 * x * (1.0 + erf(x * std::f32::consts::FRAC_1_SQRT_2))
}

/// GELU's tanh approximation, `0.5 · x · (1 + tanh(u))` with
/// `u = √(2/π) · (x + 0.044715 · x³)`, written as `x · σ(2u) = x / (1 + e^(-2u))`
/// so that it vectorises through [`exp`].
#[inline(always)]
fn gelu_tanh(x: f32) -> f32 {
    const SQRT_2_OVER_PI: f32 = 0.797_884_6;
    let u = SQRT_2_OVER_PI * x.mul_add(0.044_715 * x * x, x);
    x / (1.0 + exp(-2.0 * u))
}

/// erf for f32 as a branch-free rational function (the approximation XLA and Eigen
/// use for float erf; absolute error below 1e-6 across the range), so that the
/// compiler can vectorise the loop.
#[inline(always)]
fn erf(x: f32) -> f32 {
    let x = x.clamp(-4.0, 4.0);
    let x2 = x * x;
    let mut p = -2.726_142_3e-10_f32;
    p = p.mul_add(x2, 2.770_681_4e-8);
    p = p.mul_add(x2, -2.101_024e-6);
    p = p.mul_add(x2, -5.692_506_4e-5);
    p = p.mul_add(x2, -7.349_906_3e-4);
    p = p.mul_add(x2, -2.954_600_5e-3);
    p = p.mul_add(x2, -1.609_603_3e-2);
    let mut q = -1.456_607_2e-5_f32;
    q = q.mul_add(x2, -2.133_740_6e-4);
    q = q.mul_add(x2, -1.682_827e-3);
    q = q.mul_add(x2, -7.373_329e-3);
    q = q.mul_add(x2, -1.426_474e-2);
    x * p / q
}

#[cfg(test)]
pub(super) mod tests {
    use super::*;

    /// Largest absolute difference of two f32 tensors.
    pub(in crate::model) fn max_err(a: &Tensor, b: &Tensor) -> f32 {
        (a - b)
            .unwrap()
            .abs()
            .unwrap()
            .max_all()
            .unwrap()
            .to_scalar::<f32>()
            .unwrap()
    }

    /// Multi-head self-attention by candle's ops, in f32 on the host, from a
    /// `(B, N, 3·D)` qkv tensor (heads side by side), as `(B, N, D)`: what the
    /// BLAS, bf16 and GPU attention paths are checked against.
    #[cfg(any(feature = "openblas", feature = "cuda", target_arch = "x86_64"))]
    pub(in crate::model) fn reference_attention(qkv: &Tensor, heads: usize) -> Tensor {
        let (b, n, width3) = qkv.dims3().unwrap();
        let d = width3 / 3;
        let split = qkv
            .to_dtype(DType::F32)
            .unwrap()
            .to_device(&candle_core::Device::Cpu)
            .unwrap()
            .reshape((b, n, 3, heads, d / heads))
            .unwrap()
            .permute((2, 0, 3, 1, 4))
            .unwrap();
        let part = |i| split.get(i).unwrap().contiguous().unwrap();
        let (q, k, v) = (part(0), part(1), part(2));
        let weights = q.matmul(&k.t().unwrap()).unwrap();
        let weights = candle_nn::ops::softmax_last_dim(&weights).unwrap();
        weights
            .matmul(&v)
            .unwrap()
            .transpose(1, 2)
            .unwrap()
            .reshape((b, n, d))
            .unwrap()
    }

    #[test]
    fn erf_matches_libm() {
        let worst = (-6000..=6000)
            .map(|i| i as f32 * 1e-3)
            .map(|x| (erf(x) - libm_erf(x)).abs())
            .fold(0f32, f32::max);
        assert!(worst < 1e-6, "erf off by {worst}");
    }

    fn libm_erf(x: f32) -> f32 {
        // Reference through candle's own gelu_erf: gelu(x√2) = x√2 · (1 + erf(x)) / 2.
        let t = Tensor::new(&[x * std::f32::consts::SQRT_2], &candle_core::Device::Cpu).unwrap();
        let g = t.gelu_erf().unwrap().to_vec1::<f32>().unwrap()[0];
        if x == 0.0 {
            0.0
        } else {
            2.0 * g / (x * std::f32::consts::SQRT_2) - 1.0
        }
    }

    #[test]
    fn exp_is_within_two_ulp() {
        let worst = (-8000..=8000)
            .map(|i| i as f32 * 1e-2)
            .map(|x| ((exp(x) - x.exp()) / x.exp()).abs())
            .fold(0f32, f32::max);
        assert!(worst < 2.5e-7, "exp relative error {worst}");
    }

    #[test]
    fn softmax_equals_candle() {
        let dev = candle_core::Device::Cpu;
        let x = Tensor::randn(0f32, 3.0, (2, 3, 7, 19), &dev).unwrap();
        let expected = candle_nn::ops::softmax_last_dim(&x).unwrap();
        let got = softmax_last_dim(x.copy().unwrap()).unwrap();
        let err = max_err(&got, &expected);
        assert!(err < 1e-6, "off by {err}");
    }

    /// The plain candle Linear a fused one was made from (unit tests run on
    /// the default path, which keeps the weight tensor).
    fn linear_copy(fused: &FusedLinear) -> Linear {
        let Weight::Tensor(linear) = &fused.weight else {
            panic!("the default CPU path keeps the weight tensor");
        };
        Linear::new(linear.weight().clone(), Some(fused.bias.clone()))
    }

    #[test]
    fn layer_norm_matches_a_two_pass_reference() {
        let dev = candle_core::Device::Cpu;
        // Rows far from zero mean, where E[x²] − E[x]² loses digits; a width
        // with a remainder past the 8 lanes.
        let x = (Tensor::randn(0f32, 1.0, (3, 5, 19), &dev).unwrap() + 100.0).unwrap();
        let w = Tensor::randn(0f32, 1.0, 19, &dev).unwrap();
        let b = Tensor::randn(0f32, 1.0, 19, &dev).unwrap();
        let norm = FusedLayerNorm::new(LayerNorm::new(w.clone(), b.clone(), 1e-6)).unwrap();
        let got = norm.forward(&x).unwrap();
        let x64 = x.to_dtype(DType::F64).unwrap();
        let mean = x64.mean_keepdim(2).unwrap();
        let centred = x64.broadcast_sub(&mean).unwrap();
        let var = centred.sqr().unwrap().mean_keepdim(2).unwrap();
        let expected = centred
            .broadcast_div(&(var + 1e-6).unwrap().sqrt().unwrap())
            .unwrap()
            .broadcast_mul(&w.to_dtype(DType::F64).unwrap())
            .unwrap()
            .broadcast_add(&b.to_dtype(DType::F64).unwrap())
            .unwrap()
            .to_dtype(DType::F32)
            .unwrap();
        let err = max_err(&got, &expected);
        assert!(err < 1e-4, "off by {err}");
        // A non-contiguous input takes candle's path, with the same result.
        let t = x.transpose(0, 1).unwrap();
        let err = max_err(
            &norm.forward(&t).unwrap(),
            &expected.transpose(0, 1).unwrap(),
        );
        assert!(err < 1e-3, "candle's path off by {err}");
    }

    #[test]
    fn gelu_tanh_matches_candle_across_the_range() {
        let xs: Vec<f32> = (-12000..=12000).map(|i| i as f32 * 1e-3).collect();
        let t = Tensor::new(xs.as_slice(), &candle_core::Device::Cpu).unwrap();
        let expected = t.gelu().unwrap().to_vec1::<f32>().unwrap();
        let worst = xs
            .iter()
            .zip(&expected)
            .map(|(&x, &e)| (gelu_tanh(x) - e).abs())
            .fold(0f32, f32::max);
        assert!(worst < 2e-6, "tanh GELU off by {worst}");
    }

    #[test]
    fn fused_bias_gelu_equals_candle_ops() {
        let dev = candle_core::Device::Cpu;
        let w = Tensor::randn(0f32, 0.5, (48, 16), &dev).unwrap();
        let b = Tensor::randn(0f32, 0.5, 48, &dev).unwrap();
        let x = Tensor::randn(0f32, 1.0, (2, 5, 16), &dev).unwrap();
        let linear = Linear::new(w, Some(b));
        let expected = linear.forward(&x).unwrap().gelu_erf().unwrap();
        let fused = FusedLinear::new(linear).unwrap();
        let got = fused.forward(&x, Activation::Gelu).unwrap();
        let err = max_err(&got, &expected);
        assert!(err < 1e-5, "off by {err}");

        let expected = linear_copy(&fused).forward(&x).unwrap().gelu().unwrap();
        let got = fused.forward(&x, Activation::GeluTanh).unwrap();
        let err = max_err(&got, &expected);
        assert!(err < 1e-5, "tanh GELU off by {err}");

        let residual = Tensor::randn(0f32, 1.0, (2, 5, 48), &dev).unwrap();
        let plain = fused.matmul(&x).unwrap();
        let expected = (plain.broadcast_add(&fused.bias).unwrap() + &residual).unwrap();
        let got = fused.forward_residual(&x, &residual).unwrap();
        let err = max_err(&got, &expected);
        assert!(err < 1e-5, "residual off by {err}");
    }
}
