// SPDX-License-Identifier: MPL-2.0
//! SigLIP's text tower: what `SiglipModel.text_model(input_ids).pooler_output`
//! computes, reading only the `text_model.*` tensors of a SigLIP / SigLIP2 folder.
//!
//! Follows transformers' `SiglipTextTransformer`
//! ([`modeling_siglip.py`](https://github.com/huggingface/transformers/blob/main/src/transformers/models/siglip/modeling_siglip.py))
//! and candle-transformers' `siglip.rs`, with one change that model needs for
//! SigLIP2 giant-opt: the `head` projects to `projection_size`, which may differ
//! from `hidden_size` (1536 against 1152).

use candle_core::{D, DType, Module, Result, Tensor};
use candle_nn::{Embedding, VarBuilder};

use crate::model::{Activation, FusedLayerNorm, FusedLinear, layer_norm};
use serde::Deserialize;

/// The `text_config` of a SigLIP config.json (or a SiglipTextModel's own config).
#[derive(Debug, Clone, Deserialize)]
pub struct TextConfig {
    /// Tokens in the vocabulary.
    pub vocab_size: usize,
    /// Width of the tower.
    pub hidden_size: usize,
    /// Width of the MLP.
    pub intermediate_size: usize,
    /// Transformer layers.
    pub num_hidden_layers: usize,
    /// Attention heads per layer.
    pub num_attention_heads: usize,
    /// Positions the embedding table holds (the text length, 64).
    pub max_position_embeddings: usize,
    /// LayerNorm eps.
    #[serde(default = "default_eps")]
    pub layer_norm_eps: f64,
    /// The MLP's activation (`gelu_pytorch_tanh`).
    #[serde(default = "default_act")]
    pub hidden_act: String,
    /// Width of the pooled output; `hidden_size` when absent.
    pub projection_size: Option<usize>,
}

fn default_eps() -> f64 {
    1e-6
}

fn default_act() -> String {
    "gelu_pytorch_tanh".into()
}

impl TextConfig {
    /// Width of the text embedding.
    pub fn projection_size(&self) -> usize {
        self.projection_size.unwrap_or(self.hidden_size)
    }
}

#[derive(Debug, Clone, Copy)]
enum Gelu {
    Tanh,
    Erf,
}

impl Gelu {
    fn parse(name: &str) -> Result<Self> {
        match name {
            "gelu_pytorch_tanh" | "gelu_new" => Ok(Self::Tanh),
            "gelu" => Ok(Self::Erf),
            other => candle_core::bail!("text tower activation `{other}` is not supported"),
        }
    }
}

struct Attention {
    q_proj: FusedLinear,
    k_proj: FusedLinear,
    v_proj: FusedLinear,
    out_proj: FusedLinear,
    heads: usize,
    scale: f64,
}

impl Attention {
    fn new(vb: VarBuilder, config: &TextConfig) -> Result<Self> {
        let h = config.hidden_size;
        let heads = config.num_attention_heads;
        Ok(Self {
            q_proj: linear(h, h, vb.pp("q_proj"))?,
            k_proj: linear(h, h, vb.pp("k_proj"))?,
            v_proj: linear(h, h, vb.pp("v_proj"))?,
            out_proj: linear(h, h, vb.pp("out_proj"))?,
            heads,
            scale: ((h / heads) as f64).powf(-0.5),
        })
    }
}

impl Module for Attention {
    fn forward(&self, x: &Tensor) -> Result<Tensor> {
        let (b, s, h) = x.dims3()?;
        let split = |t: Tensor| {
            t.reshape((b, s, self.heads, h / self.heads))?
                .transpose(1, 2)?
                .contiguous()
        };
        let q = split(self.q_proj.forward(x, Activation::None)?)?;
        let k = split(self.k_proj.forward(x, Activation::None)?)?;
        let v = split(self.v_proj.forward(x, Activation::None)?)?;
        // No attention mask: RADIO runs the tower on input_ids alone, padding included.
        let scores = (q.matmul(&k.t()?)? * self.scale)?;
        let weights = candle_nn::ops::softmax_last_dim(&scores)?;
        let out = weights.matmul(&v)?.transpose(1, 2)?.reshape((b, s, h))?;
        self.out_proj.forward(&out, Activation::None)
    }
}

struct Layer {
    layer_norm1: FusedLayerNorm,
    self_attn: Attention,
    layer_norm2: FusedLayerNorm,
    fc1: FusedLinear,
    fc2: FusedLinear,
    gelu: Gelu,
}

impl Layer {
    fn new(vb: VarBuilder, config: &TextConfig) -> Result<Self> {
        let (h, eps) = (config.hidden_size, config.layer_norm_eps);
        Ok(Self {
            layer_norm1: layer_norm(h, eps, vb.pp("layer_norm1"))?,
            self_attn: Attention::new(vb.pp("self_attn"), config)?,
            layer_norm2: layer_norm(h, eps, vb.pp("layer_norm2"))?,
            fc1: linear(h, config.intermediate_size, vb.pp("mlp.fc1"))?,
            fc2: linear(config.intermediate_size, h, vb.pp("mlp.fc2"))?,
            gelu: Gelu::parse(&config.hidden_act)?,
        })
    }
}

impl Module for Layer {
    fn forward(&self, x: &Tensor) -> Result<Tensor> {
        let x = (x + self.self_attn.forward(&self.layer_norm1.forward(x)?)?)?;
        let x2 = self.layer_norm2.forward(&x)?;
        let hidden = match self.gelu {
            Gelu::Tanh => self.fc1.forward(&x2, Activation::GeluTanh)?,
            Gelu::Erf => self.fc1.forward(&x2, Activation::Gelu)?,
        };
        self.fc2.forward_residual(&hidden, &x)
    }
}

/// The text tower: token and position embeddings, pre-norm layers, a final
/// LayerNorm, and the `head` applied to the last position.
pub struct TextTower {
    token_embedding: Embedding,
    position_embedding: Tensor,
    layers: Vec<Layer>,
    final_layer_norm: FusedLayerNorm,
    head: FusedLinear,
}

impl TextTower {
    /// Builds the tower from `vb` pointed at `text_model`.
    pub fn new(vb: VarBuilder, config: &TextConfig) -> Result<Self> {
        let h = config.hidden_size;
        let embeddings = vb.pp("embeddings");
        Ok(Self {
            token_embedding: candle_nn::embedding(
                config.vocab_size,
                h,
                embeddings.pp("token_embedding"),
            )?,
            position_embedding: embeddings
                .pp("position_embedding")
                .get((config.max_position_embeddings, h), "weight")?,
            layers: (0..config.num_hidden_layers)
                .map(|i| Layer::new(vb.pp("encoder.layers").pp(i), config))
                .collect::<Result<_>>()?,
            final_layer_norm: layer_norm(h, config.layer_norm_eps, vb.pp("final_layer_norm"))?,
            head: linear(h, config.projection_size(), vb.pp("head"))?,
        })
    }

    /// The pooled output (B, projection_size), f32, of (B, S) token ids.
    pub fn forward(&self, input_ids: &Tensor) -> Result<Tensor> {
        let (_, len) = input_ids.dims2()?;
        let positions = self.position_embedding.narrow(0, 0, len)?;
        let mut x = self
            .token_embedding
            .forward(input_ids)?
            .broadcast_add(&positions)?;
        for layer in &self.layers {
            x = layer.forward(&x)?;
        }
        let last = self.final_layer_norm.forward(&x)?.narrow(1, len - 1, 1)?;
        self.head
            .forward(&last.squeeze(1)?, Activation::None)?
            .to_dtype(DType::F32)
    }
}

/// A linear layer with a bias, whose matmul takes OpenBLAS when built with it
/// and whose bias add is one fused pass on the CPU, as the image model's.
fn linear(in_dim: usize, out_dim: usize, vb: VarBuilder) -> Result<FusedLinear> {
    FusedLinear::new(candle_nn::linear(in_dim, out_dim, vb)?)
}

/// Each row divided by its L2 norm.
pub fn l2_normalize(x: &Tensor) -> Result<Tensor> {
    x.broadcast_div(&x.sqr()?.sum_keepdim(D::Minus1)?.sqrt()?)
}
