//! The whole C-RADIO vision model: loading from a folder and the forward pass.

use std::path::Path;

use candle_core::{DType, Device, IndexOp, Tensor};
use candle_nn::{LayerNorm, Module, VarBuilder};

use super::block::{Block, BlockDims};
use super::checkpoint::{Checkpoint, KeyScheme, WeightsBackend};
use super::config::{Config, ConfigLayout};
use super::error::{ModelError, Result, classify_load_error};
use super::patch_generator::{PatchGenerator, PatchGeneratorKeys};

/// What a loaded model is: the facts `radio-embed info` prints and the element needs.
#[derive(Debug, Clone, PartialEq)]
pub struct ModelInfo {
    /// Layout of config.json.
    pub config_layout: ConfigLayout,
    /// Naming of the tensors in model.safetensors.
    pub key_scheme: KeyScheme,
    /// Model name from the config (`c-radio_v4-so400m`), if it has one.
    pub version: Option<String>,
    /// Token width D.
    pub width: usize,
    /// Number of transformer blocks.
    pub depth: usize,
    /// Attention heads per block.
    pub num_heads: usize,
    /// Hidden width of each block's MLP.
    pub mlp_hidden: usize,
    /// Patch side in pixels.
    pub patch_size: usize,
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
    /// Whether a feature normalizer is applied to the spatial features.
    pub feature_normalizer: bool,
    /// Number of weights in the checkpoint.
    pub parameter_count: usize,
    /// Input sides must be multiples of this.
    pub resolution_step: usize,
    /// Largest accepted input side.
    pub max_resolution: usize,
    /// The input size the model prefers, (height, width).
    pub preferred_resolution: (usize, usize),
}

impl ModelInfo {
    /// Length of the summary vector: one D-wide token per summary index.
    pub fn summary_dim(&self) -> usize {
        self.summary_idxs.len() * self.width
    }

    /// The model's patch grid (rows, columns) for an input of `height` × `width` pixels.
    pub fn grid(&self, height: usize, width: usize) -> (usize, usize) {
        (height / self.patch_size, width / self.patch_size)
    }

    /// Fails unless the model can take a `height` × `width` input as it is.
    pub fn check_resolution(&self, height: usize, width: usize) -> Result<()> {
        let step = self.resolution_step;
        let refuse = |reason: String| {
            Err(ModelError::Resolution {
                height,
                width,
                reason,
            })
        };
        if height == 0 || width == 0 || !height.is_multiple_of(step) || !width.is_multiple_of(step)
        {
            return refuse(format!(
                "both sides must be positive multiples of {step} (nearest supported: {:?})",
                self.nearest_supported_resolution(height, width)
            ));
        }
        if height > self.max_resolution || width > self.max_resolution {
            return refuse(format!(
                "sides above {} pixels are not supported",
                self.max_resolution
            ));
        }
        Ok(())
    }

    /// The official `get_nearest_supported_resolution`: each side rounded to a multiple
    /// of the step (ties to even, as Python's `round`), at least one step, and at most
    /// the model's maximum.
    pub fn nearest_supported_resolution(&self, height: usize, width: usize) -> (usize, usize) {
        let step = self.resolution_step;
        let largest = (self.max_resolution / step).max(1) * step;
        let snap = |side: usize| {
            let steps = (side as f64 / step as f64).round_ties_even() as usize;
            (steps.max(1) * step).min(largest)
        };
        (snap(height), snap(width))
    }
}

/// The two outputs of the model for a batch.
#[derive(Debug, Clone)]
pub struct RadioOutput {
    /// Image-level embedding (B, len(summary_idxs)·D), f32.
    pub summary: Tensor,
    /// Patch features (B, h·w, D) in raster order, f32.
    pub features: Tensor,
    /// The patch grid (rows h, columns w).
    pub grid: (usize, usize),
}

/// A loaded C-RADIO model (SO400M, H, or any config of that family).
pub struct RadioModel {
    info: ModelInfo,
    device: Device,
    dtype: DType,
    norm_mean: Tensor,
    norm_std: Tensor,
    patch_generator: PatchGenerator,
    blocks: Vec<Block>,
    final_norm: Option<LayerNorm>,
    feature_normalizer: Option<(Tensor, Tensor)>,
}

impl RadioModel {
    /// Loads `config.json` and `model.safetensors` from a folder onto `device`,
    /// converting the weights once to `dtype` (F32, F16 or BF16).
    pub fn load(dir: &Path, device: &Device, dtype: DType) -> Result<Self> {
        if !matches!(dtype, DType::F32 | DType::F16 | DType::BF16) {
            return Err(ModelError::Input(format!(
                "dtype {dtype:?} is not supported; use f32, f16 or bf16"
            )));
        }
        let config = Config::from_file(&dir.join("config.json"))?;
        let weights_path = dir.join("model.safetensors");
        let checkpoint = Checkpoint::open(&weights_path)?;
        Self::build(config, checkpoint, device, dtype).map_err(|e| match e {
            ModelError::Tensor(inner) => classify_load_error(inner),
            other => other,
        })
    }

    fn build(config: Config, ckpt: Checkpoint, device: &Device, dtype: DType) -> Result<Self> {
        let names = ckpt.scheme.names();
        let embed_key = format!("{}.weight", names.patch_embedder);
        let embed_shape = ckpt.shape(&embed_key)?;
        let [width, patch_dim] = embed_shape[..] else {
            return Err(ModelError::ShapeMismatch {
                key: embed_key,
                expected: vec![0, 3 * config.patch_size * config.patch_size],
                found: embed_shape,
            });
        };
        let patch = config.patch_size;
        if patch_dim != 3 * patch * patch {
            return Err(ModelError::ShapeMismatch {
                key: embed_key,
                expected: vec![width, 3 * patch * patch],
                found: embed_shape,
            });
        }
        let depth = ckpt.depth();
        check_declared("width", config.hidden_size, width)?;
        check_declared("depth", config.depth, depth)?;
        if depth == 0 || !width.is_multiple_of(config.num_heads) {
            return Err(ModelError::UnknownLayout {
                path: "model.safetensors".into(),
                message: format!(
                    "{depth} blocks of width {width} with {} heads is not a valid ViT",
                    config.num_heads
                ),
            });
        }
        let fc1_key = format!("{}.0.mlp.fc1.weight", names.blocks);
        let mlp_hidden = *ckpt.shape(&fc1_key)?.first().unwrap_or(&0);
        let pos_shape = ckpt.shape(names.pos_embed)?;
        let grid = pos_shape
            .get(1)
            .map(|&n| (n as f64).sqrt() as usize)
            .unwrap_or(0);
        if pos_shape.len() != 3 || grid * grid != pos_shape[1] {
            return Err(ModelError::ShapeMismatch {
                key: names.pos_embed.to_string(),
                expected: vec![1, grid * grid, width],
                found: pos_shape,
            });
        }
        let num_prefix = *ckpt.shape(names.prefix_tokens)?.first().unwrap_or(&0);
        let summary_idxs = read_indices(&ckpt, names.summary_idxs)?;
        if let Some(bad) = summary_idxs.iter().find(|&&i| i >= num_prefix) {
            return Err(ModelError::UnknownLayout {
                path: "model.safetensors".into(),
                message: format!("summary index {bad} points past the {num_prefix} prefix tokens"),
            });
        }
        let parameter_count = ckpt.parameter_count();
        let scheme = ckpt.scheme;

        let vb = VarBuilder::from_backend(
            Box::new(WeightsBackend(ckpt.tensors)),
            dtype,
            device.clone(),
        );
        let conditioner = vb.pp(names.input_conditioner);
        let norm_mean = conditioner.get_with_hints_dtype(
            (3, 1, 1),
            "norm_mean",
            Default::default(),
            DType::F32,
        )?;
        let norm_std = conditioner.get_with_hints_dtype(
            (3, 1, 1),
            "norm_std",
            Default::default(),
            DType::F32,
        )?;
        let dims = BlockDims {
            width,
            heads: config.num_heads,
            mlp_hidden,
            eps: config.layer_norm_eps,
        };
        let blocks = (0..depth)
            .map(|i| Block::new(vb.pp(names.blocks).pp(i), names, dims))
            .collect::<Result<Vec<_>>>()?;
        let patch_generator = PatchGenerator::new(
            &vb,
            &PatchGeneratorKeys {
                embedder: names.patch_embedder,
                pos_embed: names.pos_embed,
                prefix_tokens: names.prefix_tokens,
            },
            width,
            patch,
            grid,
            num_prefix,
        )?;
        let final_norm = if config.final_norm {
            Some(candle_nn::layer_norm(
                width,
                config.layer_norm_eps,
                vb.pp(names.final_norm),
            )?)
        } else {
            None
        };
        let feature_normalizer = if config.feature_normalizer {
            let fnorm = vb.pp(names.feature_normalizer);
            Some((
                fnorm.get(width, "mean")?,
                fnorm.get((width, width), "tx")?.t()?.contiguous()?,
            ))
        } else {
            None
        };
        let info = ModelInfo {
            config_layout: config.layout,
            key_scheme: scheme,
            version: config.version.clone(),
            width,
            depth,
            num_heads: config.num_heads,
            mlp_hidden,
            patch_size: patch,
            pos_grid: grid,
            num_prefix_tokens: num_prefix,
            summary_idxs,
            norm_mean: to_triplet(&norm_mean)?,
            norm_std: to_triplet(&norm_std)?,
            feature_normalizer: feature_normalizer.is_some(),
            parameter_count,
            resolution_step: config.resolution_step(),
            max_resolution: config.max_resolution,
            preferred_resolution: config.preferred_resolution,
        };
        Ok(Self {
            info,
            device: device.clone(),
            dtype,
            norm_mean: norm_mean.reshape((1, 3, 1, 1))?,
            norm_std: norm_std.reshape((1, 3, 1, 1))?,
            patch_generator,
            blocks,
            final_norm,
            feature_normalizer,
        })
    }

    /// What this model is.
    pub fn info(&self) -> &ModelInfo {
        &self.info
    }

    /// The device the weights live on.
    pub fn device(&self) -> &Device {
        &self.device
    }

    /// The dtype the weights were converted to.
    pub fn dtype(&self) -> DType {
        self.dtype
    }

    /// The (1, h·w, D) position embedding added to the patch tokens of an h × w grid.
    pub fn position_embedding(&self, grid_height: usize, grid_width: usize) -> Result<Tensor> {
        self.patch_generator
            .position_embedding(grid_height, grid_width, &self.device, self.dtype)
    }

    /// Runs the model on a (B, 3, H, W) batch of RGB values in 0..1, exactly as the
    /// official `model(pixel_values)` does (the conditioner normalises first).
    pub fn forward(&self, pixels: &Tensor) -> Result<RadioOutput> {
        self.check_input(pixels)?;
        let x = pixels
            .to_device(&self.device)?
            .to_dtype(DType::F32)?
            .broadcast_sub(&self.norm_mean)?
            .broadcast_div(&self.norm_std)?;
        self.forward_normalized(&x)
    }

    /// Runs the model on a batch that is already normalised with
    /// [`ModelInfo::norm_mean`] / [`ModelInfo::norm_std`], so that preprocessing can
    /// fuse the normalisation into its own pass.
    pub fn forward_normalized(&self, x: &Tensor) -> Result<RadioOutput> {
        let (_, _, height, width) = self.check_input(x)?;
        let grid = self.info.grid(height, width);
        let x = x.to_device(&self.device)?.to_dtype(self.dtype)?;
        let mut tokens = self.patch_generator.forward(&x)?;
        for block in &self.blocks {
            tokens = block.forward(&tokens)?;
        }
        if let Some(norm) = &self.final_norm {
            tokens = norm.forward(&tokens)?;
        }
        let tokens = tokens.to_dtype(DType::F32)?;
        let summary_parts = self
            .info
            .summary_idxs
            .iter()
            .map(|&i| tokens.i((.., i, ..)))
            .collect::<candle_core::Result<Vec<_>>>()?;
        let summary = Tensor::cat(&summary_parts, 1)?;
        let mut features = tokens.i((.., self.info.num_prefix_tokens.., ..))?;
        if let Some((mean, tx_t)) = &self.feature_normalizer {
            let mean = mean.to_dtype(DType::F32)?;
            let tx_t = tx_t.to_dtype(DType::F32)?;
            features = features.broadcast_sub(&mean)?.broadcast_matmul(&tx_t)?;
        }
        Ok(RadioOutput {
            summary,
            features: features.contiguous()?,
            grid,
        })
    }

    fn check_input(&self, x: &Tensor) -> Result<(usize, usize, usize, usize)> {
        let dims = x.dims4().map_err(|_| {
            ModelError::Input(format!(
                "expected a (B, 3, H, W) tensor, got shape {:?}",
                x.dims()
            ))
        })?;
        if dims.1 != 3 {
            return Err(ModelError::Input(format!(
                "expected 3 channels (RGB), got shape {:?}",
                x.dims()
            )));
        }
        self.info.check_resolution(dims.2, dims.3)?;
        Ok(dims)
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
    let tensor = ckpt
        .tensors
        .load(key, &Device::Cpu)
        .map_err(|_| ModelError::MissingTensor {
            key: key.to_string(),
        })?;
    Ok(tensor
        .flatten_all()?
        .to_dtype(DType::I64)?
        .to_vec1::<i64>()?
        .into_iter()
        .map(|i| i.max(0) as usize)
        .collect())
}

fn to_triplet(t: &Tensor) -> Result<[f32; 3]> {
    let v = t.flatten_all()?.to_device(&Device::Cpu)?.to_vec1::<f32>()?;
    Ok([v[0], v[1], v[2]])
}
