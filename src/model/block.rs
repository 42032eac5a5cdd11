// SPDX-License-Identifier: MPL-2.0
//! The pre-norm timm ViT block: LayerNorm → attention → residual, LayerNorm → MLP → residual,
//! as timm 1.0.31's `Block`, `Attention` and `Mlp` in
//! [`timm/models/vision_transformer.py`](https://github.com/huggingface/pytorch-image-models/blob/v1.0.31/timm/models/vision_transformer.py)
//! compute them.

use candle_core::{Module, Result, Tensor};
use candle_nn::{Linear, VarBuilder};

#[cfg(target_arch = "x86_64")]
use super::bf16_matmul::Kernel;
use super::checkpoint::KeyNames;
use super::fused::{Activation, FusedLayerNorm, FusedLinear, layer_norm, softmax_last_dim};

/// Dimensions shared by every block of a model.
#[derive(Debug, Clone, Copy)]
pub(crate) struct BlockDims {
    pub width: usize,
    pub heads: usize,
    pub mlp_hidden: usize,
    pub eps: f64,
}

/// Multi-head self-attention over all tokens, with a fused qkv projection
/// whose q rows carry the 1/√head_dim scale (see [`fold_query_scale`]).
struct Attention {
    qkv: FusedLinear,
    proj: FusedLinear,
    heads: usize,
    /// The bf16 kernel attention runs on, on the bf16 CPU path.
    #[cfg(target_arch = "x86_64")]
    bf16: Option<Kernel>,
    /// Whether f32 attention runs on the fused AVX-512 kernels
    /// ([`CpuMatmul::fused_f32_attention`](super::CpuMatmul::fused_f32_attention)).
    #[cfg(all(target_arch = "x86_64", feature = "openblas"))]
    fused_f32: bool,
}

impl Attention {
    /// The block's attention; a LayerScale `ls` is folded into the output
    /// projection.
    fn new(vb: VarBuilder, names: &KeyNames, dims: BlockDims, ls: Option<Tensor>) -> Result<Self> {
        let d = dims.width;
        let qkv = if vb.contains_tensor("qkv.weight") {
            candle_nn::linear(d, 3 * d, vb.pp("qkv"))?
        } else {
            // Native transformers checkpoints store q, k and v apart; the legacy fused
            // tensor is exactly their concatenation along the output axis.
            let parts =
                ["q_proj", "k_proj", "v_proj"].map(|name| candle_nn::linear(d, d, vb.pp(name)));
            let [q, k, v] = parts;
            let (q, k, v) = (q?, k?, v?);
            let weight = Tensor::cat(&[q.weight(), k.weight(), v.weight()], 0)?;
            let bias = [q.bias(), k.bias(), v.bias()].map(|b| b.cloned());
            let bias = match bias {
                [Some(bq), Some(bk), Some(bv)] => Some(Tensor::cat(&[bq, bk, bv], 0)?),
                _ => None,
            };
            Linear::new(weight, bias)
        };
        let proj = fold_layer_scale(candle_nn::linear(d, d, vb.pp(names.attention_out))?, ls)?;
        let head_dim = d / dims.heads;
        Ok(Self {
            qkv: FusedLinear::new(fold_query_scale(qkv, d, head_dim)?)?,
            proj: FusedLinear::new(proj)?,
            heads: dims.heads,
            #[cfg(target_arch = "x86_64")]
            bf16: super::CpuMatmul::current().ok().and_then(Kernel::of),
            #[cfg(all(target_arch = "x86_64", feature = "openblas"))]
            fused_f32: super::CpuMatmul::current().is_ok_and(super::CpuMatmul::fused_f32_attention),
        })
    }

    /// `residual + proj(attention(x))`.
    fn forward(&self, x: &Tensor, residual: &Tensor) -> Result<Tensor> {
        let (b, n, d) = x.dims3()?;
        let head_dim = d / self.heads;
        let qkv = self.qkv.forward(x, Activation::None)?;
        #[cfg(target_arch = "x86_64")]
        if let Some(kernel) = self.bf16
            && let Some(out) = super::bf16_attention::attention(&qkv, self.heads, kernel)?
        {
            return self.proj.forward_residual(&out, residual);
        }
        #[cfg(all(target_arch = "x86_64", feature = "openblas"))]
        if self.fused_f32
            && let Some(out) = super::f32_attention::attention(&qkv, self.heads)?
        {
            return self.proj.forward_residual(&out, residual);
        }
        #[cfg(feature = "openblas")]
        if super::blas::in_use()
            && let Some(out) = super::blas::attention(&qkv, self.heads)?
        {
            return self.proj.forward_residual(&out, residual);
        }
        #[cfg(feature = "cuda")]
        if let Some(out) = super::cuda_attention::attention(&qkv, self.heads)? {
            return self.proj.forward_residual(&out, residual);
        }
        let qkv = qkv
            .reshape((b, n, 3, self.heads, head_dim))?
            .permute((2, 0, 3, 1, 4))?;
        let q = qkv.get(0)?.contiguous()?;
        let k = qkv.get(1)?.contiguous()?;
        let v = qkv.get(2)?.contiguous()?;
        let weights = softmax_last_dim(q.matmul(&k.t()?)?)?;
        let out = weights.matmul(&v)?.transpose(1, 2)?.reshape((b, n, d))?;
        self.proj.forward_residual(&out, residual)
    }
}

/// fc1 → exact GELU → fc2.
struct Mlp {
    fc1: FusedLinear,
    fc2: FusedLinear,
}

impl Mlp {
    /// The block's MLP; a LayerScale `ls` is folded into fc2.
    fn new(vb: VarBuilder, dims: BlockDims, ls: Option<Tensor>) -> Result<Self> {
        let fc1 = candle_nn::linear(dims.width, dims.mlp_hidden, vb.pp("fc1"))?;
        let fc2 = candle_nn::linear(dims.mlp_hidden, dims.width, vb.pp("fc2"))?;
        Ok(Self {
            fc1: FusedLinear::new(fc1)?,
            fc2: FusedLinear::new(fold_layer_scale(fc2, ls)?)?,
        })
    }

    /// `residual + fc2(gelu(fc1(x)))`.
    fn forward(&self, x: &Tensor, residual: &Tensor) -> Result<Tensor> {
        let hidden = self.fc1.forward(x, Activation::Gelu)?;
        self.fc2.forward_residual(&hidden, residual)
    }
}

/// `γ ⊙ (x · Wᵀ + b)` as one Linear, its weight rows and bias scaled by γ: the
/// LayerScale costs nothing at run time.
fn fold_layer_scale(linear: Linear, gamma: Option<Tensor>) -> Result<Linear> {
    let Some(gamma) = gamma else {
        return Ok(linear);
    };
    let weight = linear.weight().broadcast_mul(&gamma.unsqueeze(1)?)?;
    let bias = linear.bias().map(|b| b * &gamma).transpose()?;
    Ok(Linear::new(weight, bias))
}

/// The qkv projection with its q rows (the first `d` outputs) and q bias
/// multiplied by 1/√`head_dim`, computed in f32 and stored back in the weights'
/// dtype: `softmax(q·kᵀ/√d)` then needs no pass over the (B·heads·N·N) scores
/// to scale them.
fn fold_query_scale(qkv: Linear, d: usize, head_dim: usize) -> Result<Linear> {
    let scale = 1.0 / (head_dim as f64).sqrt();
    let scale_q = |t: &Tensor| -> Result<Tensor> {
        let dtype = t.dtype();
        let t = t.to_dtype(candle_core::DType::F32)?;
        let q = (t.narrow(0, 0, d)? * scale)?;
        let rest = t.narrow(0, d, t.dim(0)? - d)?;
        Tensor::cat(&[q, rest], 0)?.to_dtype(dtype)
    };
    let weight = scale_q(qkv.weight())?;
    let bias = qkv.bias().map(scale_q).transpose()?;
    Ok(Linear::new(weight, bias))
}

/// Names a per-channel LayerScale may be stored under, relative to the block: timm's
/// `ls1.gamma`; `ls1.grandma`, the name RADIO's own checkpoints use (C-RADIOv3-B/L have
/// it, v4 does not), chosen so that older transformers versions, which rename every
/// parameter ending in `gamma` while loading, leave it alone; and the native
/// transformers layout's `layer_scale1.lambda1`.
const LAYER_SCALE_NAMES: [[&str; 3]; 2] = [
    ["ls1.grandma", "ls1.gamma", "layer_scale1.lambda1"],
    ["ls2.grandma", "ls2.gamma", "layer_scale2.lambda1"],
];

/// Loads an optional LayerScale; one of all ones (as transformers writes for
/// C-RADIO) is an identity and is dropped.
fn layer_scale(vb: &VarBuilder, names: &[&str; 3], width: usize) -> Result<Option<Tensor>> {
    let Some(name) = names.iter().find(|n| vb.contains_tensor(n)) else {
        return Ok(None);
    };
    let gamma = vb.get(width, name)?;
    let is_identity = gamma
        .to_dtype(candle_core::DType::F32)?
        .to_vec1::<f32>()?
        .iter()
        .all(|&g| g == 1.0);
    Ok((!is_identity).then_some(gamma))
}

/// One transformer block.
pub(crate) struct Block {
    norm1: FusedLayerNorm,
    attn: Attention,
    norm2: FusedLayerNorm,
    mlp: Mlp,
}

impl Block {
    /// Builds block `vb` (already pointing at `…blocks.{i}`).
    pub fn new(vb: VarBuilder, names: &KeyNames, dims: BlockDims) -> Result<Self> {
        let ls1 = layer_scale(&vb, &LAYER_SCALE_NAMES[0], dims.width)?;
        let ls2 = layer_scale(&vb, &LAYER_SCALE_NAMES[1], dims.width)?;
        Ok(Self {
            norm1: layer_norm(dims.width, dims.eps, vb.pp("norm1"))?,
            attn: Attention::new(vb.pp(names.attention), names, dims, ls1)?,
            norm2: layer_norm(dims.width, dims.eps, vb.pp("norm2"))?,
            mlp: Mlp::new(vb.pp("mlp"), dims, ls2)?,
        })
    }
}

impl Module for Block {
    /// Applies the block to a (B, N, D) sequence.
    fn forward(&self, x: &Tensor) -> Result<Tensor> {
        let x = self.attn.forward(&self.norm1.forward(x)?, x)?;
        self.mlp.forward(&self.norm2.forward(&x)?, &x)
    }
}

#[cfg(test)]
mod tests {
    use super::super::fused::tests::max_err;
    use super::*;

    /// A fold scales the weights before the products instead of the sums
    /// after them, so the roundings differ: a few ulp of outputs up to about
    /// 4 (1e-6 failed 3 runs in 300), where a wrong fold is off by O(1).
    const FOLD_TOL: f32 = 1e-5;

    #[test]
    fn folded_query_scale_scales_q_only() {
        let dev = candle_core::Device::Cpu;
        let (d, head_dim) = (8, 2);
        let w = Tensor::randn(0f32, 1.0, (3 * d, d), &dev).unwrap();
        let b = Tensor::randn(0f32, 1.0, 3 * d, &dev).unwrap();
        let x = Tensor::randn(0f32, 1.0, (1, 3, d), &dev).unwrap();
        let plain = Linear::new(w.clone(), Some(b.clone())).forward(&x).unwrap();
        let folded = fold_query_scale(Linear::new(w, Some(b)), d, head_dim).unwrap();
        let got = folded.forward(&x).unwrap();
        let scale = 1.0 / (head_dim as f64).sqrt();
        let q = (plain.narrow(2, 0, d).unwrap() * scale).unwrap();
        let expected = Tensor::cat(&[q, plain.narrow(2, d, 2 * d).unwrap()], 2).unwrap();
        let err = max_err(&got, &expected);
        assert!(err < FOLD_TOL, "off by {err}");
    }

    #[test]
    fn folded_layer_scale_equals_scaling_the_output() {
        let dev = candle_core::Device::Cpu;
        let w = Tensor::randn(0f32, 0.5, (6, 4), &dev).unwrap();
        let b = Tensor::randn(0f32, 0.5, 6, &dev).unwrap();
        let gamma = Tensor::randn(0f32, 1.0, 6, &dev).unwrap();
        let x = Tensor::randn(0f32, 1.0, (2, 3, 4), &dev).unwrap();
        let linear = Linear::new(w, Some(b));
        let expected = linear.forward(&x).unwrap().broadcast_mul(&gamma).unwrap();
        let folded = fold_layer_scale(linear, Some(gamma)).unwrap();
        let err = max_err(&folded.forward(&x).unwrap(), &expected);
        assert!(err < FOLD_TOL, "off by {err}");
    }
}
