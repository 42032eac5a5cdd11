// SPDX-License-Identifier: MPL-2.0
//! What the weights say about a model: shapes read off `model.safetensors` and
//! checked against `config.json`, before any tensor is loaded.

use candle_core::{DType, Device};

use super::checkpoint::{Checkpoint, KeyScheme};
use super::config::Config;
use super::error::{ModelError, Result};

/// The dimensions of a checkpoint, inferred from its tensors.
#[derive(Debug, Clone, PartialEq)]
pub struct Dims {
    /// Naming of the tensors in model.safetensors.
    pub key_scheme: KeyScheme,
    /// Token width D.
    pub width: usize,
    /// Number of transformer blocks.
    pub depth: usize,
    /// Hidden width of each block's MLP.
    pub mlp_hidden: usize,
    /// Side of the stored square position-embedding grid.
    pub pos_grid: usize,
    /// cls + register tokens in front of the patch tokens.
    pub num_prefix_tokens: usize,
    /// Which prefix tokens make up the summary, in order.
    pub summary_idxs: Vec<usize>,
    /// Per-channel mean of the input conditioner (RGB, for inputs in 0..1).
    pub norm_mean: [f32; 3],
    /// Per-channel standard deviation of the input conditioner.
    pub norm_std: [f32; 3],
    /// Number of weights in the checkpoint.
    pub parameter_count: usize,
}

impl Dims {
    /// Reads the dimensions off `ckpt` and checks them against `config` and each
    /// other, so that building the model cannot meet a shape it does not expect.
    pub(crate) fn infer(ckpt: &Checkpoint, config: &Config) -> Result<Self> {
        let names = ckpt.scheme.names();
        let width = patch_embed_width(ckpt, config.patch_size)?;
        let depth = ckpt.depth();
        check_declared("width", config.hidden_size, width)?;
        check_declared("depth", config.depth, depth)?;
        if depth == 0 || !width.is_multiple_of(config.num_heads) {
            return Err(invalid_weights(format!(
                "{depth} blocks of width {width} with {} heads is not a valid ViT",
                config.num_heads
            )));
        }
        let fc1_key = format!("{}.0.mlp.fc1.weight", names.blocks);
        let mlp_hidden = *ckpt.shape(&fc1_key)?.first().unwrap_or(&0);
        let pos_grid = pos_embed_grid(ckpt, width)?;
        let num_prefix_tokens = *ckpt.shape(names.prefix_tokens)?.first().unwrap_or(&0);
        let summary_idxs = read_indices(ckpt, names.summary_idxs)?;
        if let Some(bad) = summary_idxs.iter().find(|&&i| i >= num_prefix_tokens) {
            return Err(invalid_weights(format!(
                "summary index {bad} points past the {num_prefix_tokens} prefix tokens"
            )));
        }
        let conditioner = names.input_conditioner;
        Ok(Self {
            key_scheme: ckpt.scheme,
            width,
            depth,
            mlp_hidden,
            pos_grid,
            num_prefix_tokens,
            summary_idxs,
            norm_mean: read_triplet(ckpt, &format!("{conditioner}.norm_mean"))?,
            norm_std: read_triplet(ckpt, &format!("{conditioner}.norm_std"))?,
            parameter_count: ckpt.parameter_count(),
        })
    }

    /// Length of the summary vector: one D-wide token per summary index.
    pub fn summary_dim(&self) -> usize {
        self.summary_idxs.len() * self.width
    }
}

/// D from the (D, 3·p·p) patch embedding, checked against the config's patch size.
fn patch_embed_width(ckpt: &Checkpoint, patch: usize) -> Result<usize> {
    let key = format!("{}.weight", ckpt.scheme.names().patch_embedder);
    let shape = ckpt.shape(&key)?;
    match shape[..] {
        [width, patch_dim] if patch_dim == 3 * patch * patch => Ok(width),
        _ => Err(ModelError::ShapeMismatch {
            key,
            expected: vec![shape.first().copied().unwrap_or(0), 3 * patch * patch],
            found: shape,
        }),
    }
}

/// G of the stored (1, G·G, D) position embedding.
fn pos_embed_grid(ckpt: &Checkpoint, width: usize) -> Result<usize> {
    let key = ckpt.scheme.names().pos_embed;
    let shape = ckpt.shape(key)?;
    let grid = shape.get(1).map(|&n| n.isqrt()).unwrap_or(0);
    if shape.len() != 3 || grid * grid != shape[1] || shape[2] != width {
        return Err(ModelError::ShapeMismatch {
            key: key.to_string(),
            expected: vec![1, grid * grid, width],
            found: shape,
        });
    }
    Ok(grid)
}

fn invalid_weights(message: String) -> ModelError {
    ModelError::UnknownLayout {
        path: "model.safetensors".into(),
        message,
    }
}

fn check_declared(what: &str, declared: Option<usize>, found: usize) -> Result<()> {
    match declared {
        Some(d) if d != found => Err(ModelError::UnknownLayout {
            path: "config.json".into(),
            message: format!("config.json declares {what} {d} but the weights have {found}"),
        }),
        _ => Ok(()),
    }
}

fn read_indices(ckpt: &Checkpoint, key: &str) -> Result<Vec<usize>> {
    Ok(load_cpu(ckpt, key)?
        .flatten_all()?
        .to_dtype(DType::I64)?
        .to_vec1::<i64>()?
        .into_iter()
        .map(|i| i.max(0) as usize)
        .collect())
}

fn read_triplet(ckpt: &Checkpoint, key: &str) -> Result<[f32; 3]> {
    let values = load_cpu(ckpt, key)?
        .flatten_all()?
        .to_dtype(DType::F32)?
        .to_vec1::<f32>()?;
    values
        .try_into()
        .map_err(|found: Vec<f32>| ModelError::ShapeMismatch {
            key: key.to_string(),
            expected: vec![3, 1, 1],
            found: vec![found.len()],
        })
}

fn load_cpu(ckpt: &Checkpoint, key: &str) -> Result<candle_core::Tensor> {
    ckpt.tensors
        .load(key, &Device::Cpu)
        .map_err(|_| ModelError::MissingTensor {
            key: key.to_string(),
        })
}
