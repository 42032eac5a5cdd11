// SPDX-License-Identifier: MPL-2.0
//! RADIO's "CPE patch generator": linear patch embedding, the resolution-flexible
//! position embedding, and the cls/register prefix tokens, as
//! [`radio/vit_patch_generator.py`](https://github.com/NVlabs/RADIO/blob/c0f37017930e9dda53f93424cf4bf39fc51f287e/radio/vit_patch_generator.py)
//! computes them.

use std::collections::HashMap;
use std::sync::Mutex;

use candle_core::{DType, Device, Module, Result, Tensor};
use candle_nn::{Linear, VarBuilder};

use super::dims::Dims;
use crate::resample::resize_planar;

/// How many resized position tables to keep (one per input grid seen).
const POS_CACHE_CAPACITY: usize = 16;

/// Patch embedding + CPE position embedding + prefix tokens.
pub(crate) struct PatchGenerator {
    embedder: Linear,
    /// The stored (G, G, D) table, channels-first (D, G, G), on the host in f32.
    pos_table: Vec<f32>,
    grid: usize,
    width: usize,
    patch: usize,
    prefix: Tensor,
    pos_cache: Mutex<HashMap<(usize, usize), Tensor>>,
}

/// Names of the three tensors, per key scheme.
pub(crate) struct PatchGeneratorKeys<'a> {
    pub embedder: &'a str,
    pub pos_embed: &'a str,
    pub prefix_tokens: &'a str,
}

impl PatchGenerator {
    /// Builds the patch generator for `patch`-pixel patches of a checkpoint's `dims`.
    pub fn new(
        vb: &VarBuilder,
        keys: &PatchGeneratorKeys,
        dims: &Dims,
        patch: usize,
    ) -> Result<Self> {
        let (width, grid) = (dims.width, dims.pos_grid);
        let weight = vb.get(
            (width, 3 * patch * patch),
            &format!("{}.weight", keys.embedder),
        )?;
        let pos = vb
            .get((1, grid * grid, width), keys.pos_embed)?
            .to_device(&Device::Cpu)?
            .to_dtype(DType::F32)?
            .reshape((grid * grid, width))?
            .t()?
            .flatten_all()?
            .to_vec1::<f32>()?;
        let prefix = vb.get((dims.num_prefix_tokens, width), keys.prefix_tokens)?;
        Ok(Self {
            embedder: Linear::new(weight, None),
            pos_table: pos,
            grid,
            width,
            patch,
            prefix,
            pos_cache: Mutex::new(HashMap::new()),
        })
    }

    /// The (1, h·w, D) position embedding for an h × w grid, cached per grid.
    pub fn position_embedding(
        &self,
        h: usize,
        w: usize,
        device: &Device,
        dtype: DType,
    ) -> Result<Tensor> {
        let mut cache = self.pos_cache.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(t) = cache.get(&(h, w)) {
            return Ok(t.clone());
        }
        let table = Tensor::from_vec(self.cropped_table(h, w), (self.width, h * w), device)?
            .t()?
            .contiguous()?
            .to_dtype(dtype)?
            .unsqueeze(0)?;
        // Built on this thread's stream: finished before another thread, whose
        // work may run on another stream, can read it from the cache.
        if !device.is_cpu() {
            device.synchronize()?;
        }
        if cache.len() >= POS_CACHE_CAPACITY {
            cache.clear();
        }
        cache.insert((h, w), table.clone());
        Ok(table)
    }

    /// Resizes the stored grid to max(h, w) squared (bilinear, half-pixel centres, no
    /// antialias, f32) and keeps the top-left h × w window, channels-first: the CPE
    /// `_get_pos_embeddings` of `vit_patch_generator.py` at inference.
    fn cropped_table(&self, h: usize, w: usize) -> Vec<f32> {
        let g = self.grid;
        if (h, w) == (g, g) {
            return self.pos_table.clone();
        }
        let m = h.max(w);
        let resized = resize_planar(&self.pos_table, self.width, (g, g), (m, m), false);
        resized
            .chunks_exact(m * m)
            .flat_map(|plane| plane.chunks_exact(m).take(h).flat_map(|row| &row[..w]))
            .copied()
            .collect()
    }
}

impl Module for PatchGenerator {
    /// Turns a conditioned (B, 3, H, W) batch into the token sequence
    /// (B, P + h·w, D): prefix tokens, then patch tokens plus position embedding.
    fn forward(&self, x: &Tensor) -> Result<Tensor> {
        let (b, c, height, width) = x.dims4()?;
        let p = self.patch;
        let (h, w) = (height / p, width / p);
        let patches = x
            .reshape((b, c, h, p, w, p))?
            .permute((0, 2, 4, 1, 3, 5))?
            .contiguous()?
            .reshape((b, h * w, c * p * p))?;
        let tokens = self
            .embedder
            .forward(&patches)?
            .broadcast_add(&self.position_embedding(h, w, x.device(), x.dtype())?)?;
        let prefix = self.prefix.unsqueeze(0)?.repeat((b, 1, 1))?;
        Tensor::cat(&[&prefix, &tokens], 1)
    }
}
