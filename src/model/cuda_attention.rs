// SPDX-License-Identifier: MPL-2.0
//! Fused self-attention on the GPU (feature `cuda`, `attention.cu`): one
//! tensor-core kernel from the qkv projection's output to the output
//! projection's input, where the reference path (candle's ops in `block.rs`)
//! copies q, k and v apart, writes the (B·heads·N·N) scores and the
//! probabilities to memory (0.55 GB each for SO400M at 512×512, batch 16),
//! and transposes the result back.
//!
//! Which path runs is `RADIO_ATTENTION`: `reference` (the default) or `fused`.
//! The fused kernel has not run on a GPU yet (see the README's CUDA section);
//! `scripts/gpu-check.sh` runs both and compares them, and the default moves
//! to `fused` once a GPU has checked it.

use std::sync::OnceLock;

use candle_core::backend::BackendStorage;
use candle_core::cuda_backend::CudaStorageSlice;
use candle_core::op::BackpropOp;
use candle_core::{DType, Result, Storage, Tensor};
use cudarc::driver::{LaunchConfig, PushKernelArg};

use crate::cuda::KernelSource;

/// The environment variable that picks the GPU attention path.
pub const ATTENTION_ENV: &str = "RADIO_ATTENTION";

/// The attention kernels, per dtype and head dimension.
pub static ATTENTION_KERNELS: KernelSource = KernelSource {
    file: "radio_attention.cu",
    code: include_str!("attention.cu"),
    kernels: &[
        "attention_bf16_64",
        "attention_bf16_72",
        "attention_bf16_80",
        "attention_f16_64",
        "attention_f16_72",
        "attention_f16_80",
    ],
};

/// Head dimensions the kernels are built for (ViT-B, SO400M, H), in the
/// order of [`ATTENTION_KERNELS`] within each dtype.
const HEAD_DIMS: [usize; 3] = [64, 72, 80];
/// Query rows a block takes (`ROWS` in attention.cu) and its threads.
const ROWS: usize = 64;
const THREADS: u32 = 128;

/// How attention runs on a GPU.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AttentionPath {
    /// candle's matmul, softmax and matmul, the scores in memory: asked for by
    /// name, and where the fused kernel does not apply (f32, other head
    /// dimensions).
    Reference,
    /// The fused kernel of `attention.cu`, the default since it matched the
    /// reference on an H200 (scripts/gpu-check.sh) and ran 1.6x faster there.
    Fused,
}

impl AttentionPath {
    /// The path `value` (of [`ATTENTION_ENV`]) names; unset is the default.
    pub fn parse(value: Option<&str>) -> std::result::Result<Self, String> {
        match value.map(str::trim) {
            None | Some("") | Some("fused") => Ok(Self::Fused),
            Some("reference") => Ok(Self::Reference),
            Some(other) => Err(format!(
                "{ATTENTION_ENV}={other} is not a GPU attention path: use reference or fused"
            )),
        }
    }

    /// This process's choice, read once from the environment.
    pub fn current() -> std::result::Result<Self, String> {
        static CHOICE: OnceLock<std::result::Result<AttentionPath, String>> = OnceLock::new();
        CHOICE
            .get_or_init(|| AttentionPath::parse(std::env::var(ATTENTION_ENV).ok().as_deref()))
            .clone()
    }
}

/// `softmax(q·kᵀ)·v` per head of a `(B, N, 3·D)` CUDA qkv tensor, as `(B, N,
/// D)`, when [`AttentionPath::current`] is `Fused` and the tensor suits the
/// kernels (bf16 or f16, contiguous, a head dimension of [`HEAD_DIMS`]);
/// `None` leaves it to the reference path.
pub(crate) fn attention(qkv: &Tensor, heads: usize) -> Result<Option<Tensor>> {
    if !qkv.device().is_cuda()
        || AttentionPath::current().map_err(candle_core::Error::msg)? != AttentionPath::Fused
    {
        return Ok(None);
    }
    fused_attention(qkv, heads)
}

/// The fused kernel on `qkv` whatever the environment says; `None` when the
/// tensor does not suit it.
fn fused_attention(qkv: &Tensor, heads: usize) -> Result<Option<Tensor>> {
    let (b, n, width3) = qkv.dims3()?;
    let d = width3 / 3;
    let head_dim = d.checked_div(heads).unwrap_or(0);
    let Some(dim_index) = HEAD_DIMS.iter().position(|&h| h == head_dim) else {
        return Ok(None);
    };
    let dtype_index = match qkv.dtype() {
        DType::BF16 => 0,
        DType::F16 => 1,
        _ => return Ok(None),
    };
    if !qkv.is_contiguous() || width3 != 3 * heads * head_dim || n == 0 {
        return Ok(None);
    }
    let (Ok(n_arg), Ok(heads_arg)) = (i32::try_from(n), i32::try_from(heads)) else {
        return Ok(None);
    };
    let (storage, layout) = qkv.storage_and_layout();
    let Storage::Cuda(cuda) = &*storage else {
        return Ok(None);
    };
    let context = cuda.device.cuda_stream().context().clone();
    let kernels =
        crate::cuda::load_kernels(&context, &ATTENTION_KERNELS).map_err(candle_core::Error::msg)?;
    let kernel = kernels[dtype_index * HEAD_DIMS.len() + dim_index].clone();
    let (start, end) = layout.contiguous_offsets().expect("checked contiguous");
    let stream = cuda.device.cuda_stream();
    let config = LaunchConfig {
        grid_dim: (n.div_ceil(ROWS) as u32, (b * heads) as u32, 1),
        block_dim: (THREADS, 1, 1),
        shared_mem_bytes: 0,
    };
    // Both dtypes are 16-bit: the kernel takes their bits.
    macro_rules! run {
        ($slice:expr, $ty:ty) => {{
            let input = $slice.slice(start..end);
            // SAFETY: the kernel writes every element of the (B, N, D) output:
            // each of the B·N rows belongs to one warp, which writes all D/heads
            // columns of each head it is launched for.
            let mut out =
                unsafe { stream.alloc::<$ty>(b * n * d) }.map_err(candle_core::Error::wrap)?;
            let mut args = stream.launch_builder(&kernel);
            args.arg(&input).arg(&mut out).arg(&n_arg).arg(&heads_arg);
            // SAFETY: argument types and order match `attention_*` in
            // attention.cu for this dtype and head dimension; the grid covers
            // N rows (in blocks of ROWS) of each of the B·heads (image, head)
            // pairs, and the kernel reads only within the (B, N, 3·D) input.
            unsafe { args.launch(config) }.map_err(candle_core::Error::wrap)?;
            <$ty as candle_core::cuda_backend::CudaDType>::wrap_cuda_slice(out, cuda.device.clone())
        }};
    }
    let out = match &cuda.slice {
        CudaStorageSlice::BF16(slice) => run!(slice, half::bf16),
        CudaStorageSlice::F16(slice) => run!(slice, half::f16),
        _ => return Ok(None),
    };
    debug_assert_eq!(out.dtype(), qkv.dtype());
    Ok(Some(Tensor::from_storage(
        Storage::Cuda(out),
        (b, n, d),
        BackpropOp::none(),
        false,
    )))
}

#[cfg(test)]
mod tests {
    use candle_core::Device;

    use super::*;

    #[test]
    fn the_path_comes_from_the_environment_value() {
        assert_eq!(AttentionPath::parse(None), Ok(AttentionPath::Fused));
        assert_eq!(AttentionPath::parse(Some("")), Ok(AttentionPath::Fused));
        assert_eq!(
            AttentionPath::parse(Some("reference")),
            Ok(AttentionPath::Reference)
        );
        assert_eq!(
            AttentionPath::parse(Some("fused")),
            Ok(AttentionPath::Fused)
        );
        assert_eq!(
            AttentionPath::parse(Some("flash")),
            Err("RADIO_ATTENTION=flash is not a GPU attention path: use reference or fused".into())
        );
    }

    /// The worst row cosine, the largest difference and the largest value of
    /// `expected`.
    fn compare(ours: &Tensor, expected: &Tensor) -> (f32, f32, f32) {
        let (a, b) = (
            ours.to_vec3::<f32>().unwrap(),
            expected.to_vec3::<f32>().unwrap(),
        );
        let (mut worst, mut diff, mut scale) = (1f32, 0f32, 0f32);
        for (ra, rb) in a.iter().flatten().zip(b.iter().flatten()) {
            let dot: f32 = ra.iter().zip(rb).map(|(x, y)| x * y).sum();
            let norm = |r: &[f32]| r.iter().map(|x| x * x).sum::<f32>().sqrt();
            worst = worst.min(dot / (norm(ra) * norm(rb)));
            for (x, y) in ra.iter().zip(rb) {
                diff = diff.max((x - y).abs());
                scale = scale.max(y.abs());
            }
        }
        (worst, diff, scale)
    }

    /// The kernel against candle's ops for every head dimension and dtype, at
    /// token counts below, at and across the 64-row and 64-key tiles (1, 63,
    /// 64, 200, 1025), two images. Tolerance: the probabilities and output are
    /// rounded to 16 bits, so every row's cosine ≥ 0.999 and the largest
    /// difference ≤ 2 % of the largest value.
    #[test]
    fn fused_attention_equals_candles_ops() {
        let device = match crate::model::parse_device("cuda:0") {
            Ok(device) => device,
            Err(err) => {
                eprintln!("SKIPPED fused_attention_equals_candles_ops: no usable GPU ({err})");
                return;
            }
        };
        for (head_dim, heads) in [(64, 3), (72, 2), (80, 2)] {
            for n in [1, 63, 64, 200, 1025] {
                let d = head_dim * heads;
                let host = Tensor::randn(0f32, 1.0, (2, n, 3 * d), &Device::Cpu).unwrap();
                for dtype in [DType::BF16, DType::F16] {
                    let qkv = host.to_dtype(dtype).unwrap().to_device(&device).unwrap();
                    let ours = fused_attention(&qkv, heads)
                        .unwrap()
                        .expect("the fused path");
                    let ours = ours
                        .to_dtype(DType::F32)
                        .unwrap()
                        .to_device(&Device::Cpu)
                        .unwrap();
                    let expected = crate::model::fused::tests::reference_attention(&qkv, heads);
                    let (worst, diff, scale) = compare(&ours, &expected);
                    let case = format!("head dim {head_dim}, {n} tokens, {dtype:?}");
                    assert!(worst >= 0.999, "{case}: row cosine {worst}");
                    assert!(diff <= 0.02 * scale, "{case}: off by {diff} of {scale}");
                }
            }
        }
    }
}
