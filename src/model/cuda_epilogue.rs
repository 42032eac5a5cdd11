// SPDX-License-Identifier: MPL-2.0
//! A linear layer's epilogue on the GPU (feature `cuda`): bias + activation,
//! or bias + residual, in one NVRTC kernel pass over the matmul's fresh output
//! (`epilogue.cu`), where candle takes a pass per op (`broadcast_add`, then
//! `gelu_erf` or `+`), each reading and writing the whole tensor. The CPU
//! counterpart is `fused.rs`.

use std::sync::Arc;

use candle_core::cuda_backend::{CudaDType, CudaStorage, CudaStorageSlice};
use candle_core::{DType, InplaceOp2, InplaceOp3, Layout, Result, Tensor};
use cudarc::driver::{CudaFunction, CudaView, DeviceRepr, LaunchConfig, PushKernelArg};

use super::fused::Activation;
use crate::cuda::KernelSource;

/// The epilogue kernels: bias + activation, then bias + residual, each for
/// f32, f16 and bf16 (see [`BIAS_ACT`] and [`BIAS_RESIDUAL`]).
pub static EPILOGUE_KERNELS: KernelSource = KernelSource {
    file: "radio_epilogue.cu",
    code: include_str!("epilogue.cu"),
    kernels: &[
        "bias_act_f32",
        "bias_act_f16",
        "bias_act_bf16",
        "bias_residual_f32",
        "bias_residual_f16",
        "bias_residual_bf16",
    ],
};

/// Where each epilogue's three dtype variants start in [`EPILOGUE_KERNELS`].
const BIAS_ACT: usize = 0;
const BIAS_RESIDUAL: usize = 3;

const BLOCK: u32 = 256;
/// Enough blocks to fill any GPU; larger tensors loop (grid-stride).
const MAX_BLOCKS: u32 = 8192;

/// `act(y + bias)` in place on a contiguous CUDA `y` whose rows are the
/// bias's length; `Ok(false)` (nothing done) for any other tensor.
pub(crate) fn bias_act(y: &Tensor, bias: &Tensor, act: Activation) -> Result<bool> {
    if !suits(y, bias, None) {
        return Ok(false);
    }
    y.inplace_op2(bias, &BiasAct { act })?;
    Ok(true)
}

/// `y + bias + residual` in place, as [`bias_act`] for the residual's shape.
pub(crate) fn bias_residual(y: &Tensor, bias: &Tensor, residual: &Tensor) -> Result<bool> {
    if !suits(y, bias, Some(residual)) {
        return Ok(false);
    }
    y.inplace_op3(bias, residual, &BiasResidual)?;
    Ok(true)
}

fn suits(y: &Tensor, bias: &Tensor, residual: Option<&Tensor>) -> bool {
    let same = |t: &Tensor| t.device().same_device(y.device()) && t.dtype() == y.dtype();
    y.device().is_cuda()
        && y.is_contiguous()
        && matches!(y.dtype(), DType::F32 | DType::F16 | DType::BF16)
        && same(bias)
        && bias.is_contiguous()
        && bias.dims() == [y.dims().last().copied().unwrap_or(0)]
        && residual.is_none_or(|r| same(r) && r.is_contiguous() && r.shape() == y.shape())
}

/// Which of the three dtype variants.
fn variant(slice: &CudaStorageSlice) -> Result<usize> {
    match slice {
        CudaStorageSlice::F32(_) => Ok(0),
        CudaStorageSlice::F16(_) => Ok(1),
        CudaStorageSlice::BF16(_) => Ok(2),
        _ => candle_core::bail!("epilogue: f32, f16 or bf16 expected"),
    }
}

/// What both epilogues launch with: the kernel of `y`'s dtype, `y`'s stream,
/// the element count (and as the kernel's `long long`) and the row length.
struct Launch {
    kernel: CudaFunction,
    stream: Arc<cudarc::driver::CudaStream>,
    total: usize,
    total_arg: i64,
    n: i32,
}

impl Launch {
    fn new(y: &CudaStorage, yl: &Layout, bias_layout: &Layout, first: usize) -> Result<Self> {
        let context = y.device.cuda_stream().context().clone();
        let kernels = crate::cuda::load_kernels(&context, &EPILOGUE_KERNELS)
            .map_err(candle_core::Error::msg)?;
        let kernel = kernels[first + variant(&y.slice)?].clone();
        let total = yl.shape().elem_count();
        Ok(Self {
            kernel,
            stream: y.device.cuda_stream(),
            total,
            total_arg: total as i64,
            n: bias_layout.shape().elem_count() as i32,
        })
    }
}

/// A grid-stride launch over `total` elements.
fn launch_config(total: usize) -> LaunchConfig {
    let blocks = total.div_ceil(BLOCK as usize).clamp(1, MAX_BLOCKS as usize) as u32;
    LaunchConfig {
        grid_dim: (blocks, 1, 1),
        block_dim: (BLOCK, 1, 1),
        shared_mem_bytes: 0,
    }
}

/// The device slices of a launch's operands, in their dtype, at their
/// layouts' offsets: the first to be written, the others read.
macro_rules! with_slices {
    ($dst:expr, $dl:expr, [$(($src:expr, $sl:expr)),*], |$d:ident, [$($s:ident),*]| $body:expr) => {{
        let (start, end) = $dl.contiguous_offsets().expect("checked contiguous");
        match &mut $dst.slice {
            CudaStorageSlice::F32(dst) => {
                let $d = &mut dst.slice_mut(start..end);
                $(let $s = typed::<f32>($src, $sl)?;)*
                $body
            }
            CudaStorageSlice::F16(dst) => {
                let $d = &mut dst.slice_mut(start..end);
                $(let $s = typed::<half::f16>($src, $sl)?;)*
                $body
            }
            CudaStorageSlice::BF16(dst) => {
                let $d = &mut dst.slice_mut(start..end);
                $(let $s = typed::<half::bf16>($src, $sl)?;)*
                $body
            }
            _ => candle_core::bail!("epilogue: f32, f16 or bf16 expected"),
        }
    }};
}

/// A read operand's slice as `T` (the output's dtype), at its layout's offset.
fn typed<'a, T: CudaDType + DeviceRepr>(
    storage: &'a CudaStorage,
    layout: &Layout,
) -> Result<CudaView<'a, T>> {
    let (start, end) = layout
        .contiguous_offsets()
        .ok_or_else(|| candle_core::Error::msg("epilogue: contiguous operand expected"))?;
    Ok(T::as_cuda_slice(storage)?.slice(start..end))
}

struct BiasAct {
    act: Activation,
}

impl InplaceOp2 for BiasAct {
    fn name(&self) -> &'static str {
        "cuda-bias-act"
    }

    fn cpu_fwd(
        &self,
        _: &mut candle_core::CpuStorage,
        _: &Layout,
        _: &candle_core::CpuStorage,
        _: &Layout,
    ) -> Result<()> {
        candle_core::bail!("cuda-bias-act runs on CUDA tensors only")
    }

    fn cuda_fwd(
        &self,
        y: &mut CudaStorage,
        yl: &Layout,
        bias: &CudaStorage,
        bl: &Layout,
    ) -> Result<()> {
        let Launch {
            kernel,
            stream,
            total,
            total_arg,
            n,
        } = Launch::new(y, yl, bl, BIAS_ACT)?;
        let act: i32 = match self.act {
            Activation::None => 0,
            Activation::Gelu => 1,
            Activation::GeluTanh => 2,
        };
        with_slices!(y, yl, [(bias, bl)], |out, [b]| {
            let mut args = stream.launch_builder(&kernel);
            args.arg(out).arg(&b).arg(&total_arg).arg(&n).arg(&act);
            // SAFETY: the argument types and order match `bias_act_*` in
            // epilogue.cu for this dtype; the kernel touches `total` elements of
            // `out` and `i % n` of the bias, both within their slices.
            unsafe { args.launch(launch_config(total)) }.map_err(candle_core::Error::wrap)?;
        });
        Ok(())
    }
}

struct BiasResidual;

impl InplaceOp3 for BiasResidual {
    fn name(&self) -> &'static str {
        "cuda-bias-residual"
    }

    fn cpu_fwd(
        &self,
        _: &mut candle_core::CpuStorage,
        _: &Layout,
        _: &candle_core::CpuStorage,
        _: &Layout,
        _: &candle_core::CpuStorage,
        _: &Layout,
    ) -> Result<()> {
        candle_core::bail!("cuda-bias-residual runs on CUDA tensors only")
    }

    fn cuda_fwd(
        &self,
        y: &mut CudaStorage,
        yl: &Layout,
        bias: &CudaStorage,
        bl: &Layout,
        residual: &CudaStorage,
        rl: &Layout,
    ) -> Result<()> {
        let Launch {
            kernel,
            stream,
            total,
            total_arg,
            n,
        } = Launch::new(y, yl, bl, BIAS_RESIDUAL)?;
        with_slices!(y, yl, [(bias, bl), (residual, rl)], |out, [b, r]| {
            let mut args = stream.launch_builder(&kernel);
            args.arg(out).arg(&b).arg(&r).arg(&total_arg).arg(&n);
            // SAFETY: as for `bias_act_*`, with `residual` as long as `out`.
            unsafe { args.launch(launch_config(total)) }.map_err(candle_core::Error::wrap)?;
        });
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use candle_core::{D, Device, IndexOp};

    use super::*;

    /// `cuda:0`, or `None` with the reason printed (no GPU: CI's stub driver).
    fn gpu(test: &str) -> Option<Device> {
        match crate::model::parse_device("cuda:0") {
            Ok(device) => Some(device),
            Err(err) => {
                eprintln!("SKIPPED {test}: no usable GPU ({err})");
                None
            }
        }
    }

    /// The largest difference between two tensors, in f32 on the host.
    fn max_diff(a: &Tensor, b: &Tensor) -> f32 {
        let host = |t: &Tensor| {
            t.to_dtype(DType::F32)
                .unwrap()
                .to_device(&Device::Cpu)
                .unwrap()
        };
        let d = (host(a) - host(b)).unwrap();
        d.abs()
            .unwrap()
            .flatten_all()
            .unwrap()
            .max(D::Minus1)
            .unwrap()
            .to_scalar()
            .unwrap()
    }

    /// Each epilogue against candle's separate ops computed in f32, on rows of
    /// 37 (no multiple of a block or a warp), for every dtype, with the output
    /// at an offset into its storage. Tolerances: one rounding of the dtype.
    #[test]
    fn epilogues_equal_candles_ops() {
        let Some(device) = gpu("epilogues_equal_candles_ops") else {
            return;
        };
        let host = |shape: &[usize], seed: f32| {
            let n: usize = shape.iter().product();
            let v: Vec<f32> = (0..n)
                .map(|i| (i as f32 * 0.37 + seed).sin() * 3.0)
                .collect();
            Tensor::from_vec(v, shape, &Device::Cpu).unwrap()
        };
        let (y, bias, residual) = (
            host(&[2, 5, 37], 0.1),
            host(&[37], 0.7),
            host(&[5, 37], 1.3),
        );
        for (dtype, tol) in [(DType::F32, 1e-6), (DType::F16, 4e-3), (DType::BF16, 3e-2)] {
            let on_gpu = |t: &Tensor| t.to_dtype(dtype).unwrap().to_device(&device).unwrap();
            let exact = |t: &Tensor| t.to_dtype(dtype).unwrap().to_dtype(DType::F32).unwrap();
            let (b, r) = (exact(&bias), exact(&residual));
            for act in [Activation::None, Activation::Gelu, Activation::GeluTanh] {
                // The second of two frames: a contiguous view at an offset.
                let out = on_gpu(&y).i(1).unwrap();
                assert!(bias_act(&out, &on_gpu(&bias), act).unwrap());
                let sum = exact(&y).i(1).unwrap().broadcast_add(&b).unwrap();
                let expected = match act {
                    Activation::None => sum,
                    Activation::Gelu => sum.gelu_erf().unwrap(),
                    Activation::GeluTanh => sum.gelu().unwrap(),
                };
                let err = max_diff(&out, &expected) / 3.0;
                assert!(err <= tol, "{dtype:?} {act:?}: off by {err} (relative)");
            }
            let out = on_gpu(&y).i(1).unwrap();
            assert!(bias_residual(&out, &on_gpu(&bias), &on_gpu(&residual)).unwrap());
            let expected = (exact(&y).i(1).unwrap().broadcast_add(&b).unwrap() + r).unwrap();
            let err = max_diff(&out, &expected) / 9.0;
            assert!(err <= tol, "{dtype:?} residual: off by {err} (relative)");
            // A host tensor is left to candle's ops.
            assert!(!bias_act(&y, &bias, Activation::None).unwrap());
        }
    }
}
