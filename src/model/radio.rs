// SPDX-License-Identifier: MPL-2.0
//! The whole C-RADIO vision model: loading from a folder and the forward pass.
//!
//! Follows `RADIOModel.forward` in NVlabs/RADIO
//! [`radio/radio_model.py`](https://github.com/NVlabs/RADIO/blob/c0f37017930e9dda53f93424cf4bf39fc51f287e/radio/radio_model.py)
//! and the conditioner of
//! [`radio/input_conditioner.py`](https://github.com/NVlabs/RADIO/blob/c0f37017930e9dda53f93424cf4bf39fc51f287e/radio/input_conditioner.py).

use std::path::Path;

use candle_core::{DType, Device, IndexOp, Tensor};
use candle_nn::{Module, VarBuilder};

use super::adaptor::{Adaptor, AdaptorOutput};
use super::block::{Block, BlockDims};
use super::checkpoint::{Checkpoint, WeightsBackend};
use super::config::Config;
use super::cpu_matmul::CpuMatmul;
use super::dims::Dims;
use super::error::{ModelError, Result, classify_load_error};
use super::fused::{FusedLayerNorm, layer_norm};
use super::patch_generator::{PatchGenerator, PatchGeneratorKeys};
use super::torch_checkpoint::TorchCheckpoint;

/// What a loaded model is: the facts `radio-embed info` prints and the element needs.
#[derive(Debug, Clone, PartialEq)]
pub struct ModelInfo {
    /// What config.json declares.
    pub config: Config,
    /// What the weights say.
    pub dims: Dims,
}

impl ModelInfo {
    /// Length of the summary vector: one D-wide token per summary index.
    pub fn summary_dim(&self) -> usize {
        self.dims.summary_dim()
    }

    /// The model's patch grid (rows, columns) for an input of `height` × `width` pixels.
    pub fn grid(&self, height: usize, width: usize) -> (usize, usize) {
        let patch = self.config.patch_size;
        (height / patch, width / patch)
    }

    /// Floating-point operations of one image's backbone forward at `height` ×
    /// `width`, a multiply-add counting 2: the patch embedding, and per block the
    /// qkv, output and MLP projections and the two attention products. Norms,
    /// softmax and GELU (under 1 % of it) are left out, as FLOP counts of ViTs
    /// usually do.
    pub fn forward_flops(&self, height: usize, width: usize) -> f64 {
        let (rows, cols) = self.grid(height, width);
        let patches = (rows * cols) as f64;
        let tokens = patches + self.dims.num_prefix_tokens as f64;
        let d = self.dims.width as f64;
        let hidden = self.dims.mlp_hidden as f64;
        let patch_pixels = (3 * self.config.patch_size * self.config.patch_size) as f64;
        let embed = 2.0 * patches * patch_pixels * d;
        let projections = 2.0 * tokens * (4.0 * d * d + 2.0 * d * hidden);
        let attention = 2.0 * 2.0 * tokens * tokens * d;
        embed + self.dims.depth as f64 * (projections + attention)
    }

    /// Fails unless the model can take a `height` × `width` input as it is.
    pub fn check_resolution(&self, height: usize, width: usize) -> Result<()> {
        let step = self.config.resolution_step();
        let max = self.config.max_resolution;
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
        if height > max || width > max {
            return refuse(format!("sides above {max} pixels are not supported"));
        }
        Ok(())
    }

    /// The official `get_nearest_supported_resolution`: each side rounded to a multiple
    /// of the step (ties to even, as Python's `round`), at least one step, and at most
    /// the model's maximum.
    pub fn nearest_supported_resolution(&self, height: usize, width: usize) -> (usize, usize) {
        let step = self.config.resolution_step();
        let largest = (self.config.max_resolution / step).max(1) * step;
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
    /// What each adaptor loaded with [`RadioModel::with_adaptor`] computes, in the
    /// order they were added.
    pub adaptors: Vec<AdaptorOutput>,
}

impl RadioOutput {
    /// The outputs of `len` frames of the batch from frame `start` on.
    pub fn rows(&self, start: usize, len: usize) -> Result<Self> {
        Ok(Self {
            summary: self.summary.narrow(0, start, len)?,
            features: self.features.narrow(0, start, len)?,
            grid: self.grid,
            adaptors: self
                .adaptors
                .iter()
                .map(|a| a.rows(start, len))
                .collect::<Result<_>>()?,
        })
    }

    /// The output of the adaptor called `name`, if the model has it.
    pub fn adaptor(&self, name: &str) -> Option<&AdaptorOutput> {
        self.adaptors.iter().find(|a| a.name == name)
    }
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
    final_norm: Option<FusedLayerNorm>,
    feature_normalizer: Option<FeatureNormalizer>,
    adaptors: Vec<Adaptor>,
    /// On a GPU, one forward at a time: elements share a model from their own
    /// threads, and candle's CUDA device gives each thread its own stream but
    /// one cuBLAS handle and workspace. `None` on the CPU, where forwards may
    /// overlap.
    gpu_forward: Option<std::sync::Mutex<()>>,
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
        if device.is_cpu() {
            CpuMatmul::current()?;
        }
        let config = Config::from_file(&dir.join("config.json"))?;
        let checkpoint = Checkpoint::open(&dir.join("model.safetensors"))?;
        let dims = Dims::infer(&checkpoint, &config)?;
        let vb = VarBuilder::from_backend(
            Box::new(WeightsBackend(checkpoint.tensors)),
            dtype,
            device.clone(),
        );
        Self::new(vb, ModelInfo { config, dims }).map_err(classify_load_error)
    }

    /// Builds the model from weights whose dimensions [`Dims::infer`] checked.
    fn new(vb: VarBuilder, info: ModelInfo) -> candle_core::Result<Self> {
        let ModelInfo { config, dims } = &info;
        let names = dims.key_scheme.names();
        let block_dims = BlockDims {
            width: dims.width,
            heads: config.num_heads,
            mlp_hidden: dims.mlp_hidden,
            eps: config.layer_norm_eps,
        };
        let blocks = (0..dims.depth)
            .map(|i| Block::new(vb.pp(names.blocks).pp(i), names, block_dims))
            .collect::<candle_core::Result<Vec<_>>>()?;
        let keys = PatchGeneratorKeys {
            embedder: names.patch_embedder,
            pos_embed: names.pos_embed,
            prefix_tokens: names.prefix_tokens,
        };
        let patch_generator = PatchGenerator::new(&vb, &keys, dims, config.patch_size)?;
        let final_norm = config
            .final_norm
            .then(|| layer_norm(dims.width, config.layer_norm_eps, vb.pp(names.final_norm)))
            .transpose()?;
        let feature_normalizer = config
            .feature_normalizer
            .then(|| FeatureNormalizer::new(vb.pp(names.feature_normalizer), dims.width))
            .transpose()?;
        let device = vb.device().clone();
        let channel = |v: [f32; 3]| Tensor::from_slice(&v, (1, 3, 1, 1), &device);
        Ok(Self {
            gpu_forward: (!device.is_cpu()).then(Default::default),
            norm_mean: channel(dims.norm_mean)?,
            norm_std: channel(dims.norm_std)?,
            dtype: vb.dtype(),
            device,
            patch_generator,
            blocks,
            final_norm,
            feature_normalizer,
            adaptors: Vec::new(),
            info,
        })
    }

    /// Adds the adaptor heads of the teacher `name` (`siglip2-g`, …) from a torch.hub
    /// checkpoint (`c-radio_v4-so400m_half.pth.tar`), on this model's device and
    /// dtype; every forward then computes them too.
    pub fn with_adaptor(mut self, checkpoint: &TorchCheckpoint, name: &str) -> Result<Self> {
        let dims = &self.info.dims;
        let adaptor = Adaptor::load(
            checkpoint,
            name,
            dims.width,
            dims.num_prefix_tokens,
            &self.device,
            self.dtype,
        )?;
        self.adaptors.push(adaptor);
        Ok(self)
    }

    /// The adaptors this model computes.
    pub fn adaptors(&self) -> &[Adaptor] {
        &self.adaptors
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
        Ok(self.patch_generator.position_embedding(
            grid_height,
            grid_width,
            &self.device,
            self.dtype,
        )?)
    }

    /// Runs the model on a (B, 3, H, W) batch of RGB values in 0..1, exactly as the
    /// official `model(pixel_values)` does (the conditioner normalises first).
    pub fn forward(&self, pixels: &Tensor) -> Result<RadioOutput> {
        self.forward_with(pixels, true)
    }

    /// [`RadioModel::forward`], running the adaptors' feature heads only with
    /// `adaptor_features` (see [`RadioModel::forward_normalized_with`]).$
    pub fn forward_with(&self, pixels: &Tensor, adaptor_features: bool) -> Result<RadioOutput> {
        self.check_input(pixels)?;
        let x = pixels
            .to_device(&self.device)?
            .to_dtype(DType::F32)?
            .broadcast_sub(&self.norm_mean)?
            .broadcast_div(&self.norm_std)?;
        self.forward_normalized_with(&x, adaptor_features)
    }

    /// Runs the model on a batch that is already normalised with
    /// [`ModelInfo::norm_mean`] / [`ModelInfo::norm_std`], so that preprocessing can
    /// fuse the normalisation into its own pass.
    pub fn forward_normalized(&self, x: &Tensor) -> Result<RadioOutput> {
        self.forward_normalized_with(x, true)
    }

    /// [`RadioModel::forward_normalized`], running the adaptors' feature heads
    /// (over every patch) only with `adaptor_features`; their summaries always.
    pub fn forward_normalized_with(
        &self,
        x: &Tensor,
        adaptor_features: bool,
    ) -> Result<RadioOutput> {
        let (_, _, height, width) = self.check_input(x)?;
        let _one_at_a_time = self
            .gpu_forward
            .as_ref()
            .map(|m| m.lock().unwrap_or_else(|e| e.into_inner()));
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
            .dims
            .summary_idxs
            .iter()
            .map(|&i| tokens.i((.., i, ..)))
            .collect::<candle_core::Result<Vec<_>>>()?;
        let summary = Tensor::cat(&summary_parts, 1)?;
        let mut features = tokens.i((.., self.info.dims.num_prefix_tokens.., ..))?;
        if let Some(normalizer) = &self.feature_normalizer {
            features = normalizer.forward(&features)?;
        }
        let features = features.contiguous()?;
        let adaptors = self
            .adaptors
            .iter()
            .map(|a| a.forward(&tokens, adaptor_features.then_some(&features)))
            .collect::<Result<_>>()?;
        Ok(RadioOutput {
            summary,
            features,
            grid,
            adaptors,
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

/// PHI-S feature normalizer: `(x - mean) · txᵀ`, computed in f32
/// ([`feature_normalizer.py`](https://github.com/NVlabs/RADIO/blob/c0f37017930e9dda53f93424cf4bf39fc51f287e/radio/feature_normalizer.py)).
struct FeatureNormalizer {
    mean: Tensor,
    tx_t: Tensor,
}

impl FeatureNormalizer {
    fn new(vb: VarBuilder, width: usize) -> candle_core::Result<Self> {
        Ok(Self {
            mean: vb.get(width, "mean")?.to_dtype(DType::F32)?,
            tx_t: vb
                .get((width, width), "tx")?
                .t()?
                .contiguous()?
                .to_dtype(DType::F32)?,
        })
    }
}

impl Module for FeatureNormalizer {
    fn forward(&self, x: &Tensor) -> candle_core::Result<Tensor> {
        x.broadcast_sub(&self.mean)?.broadcast_matmul(&self.tx_t)
    }
}
