// SPDX-License-Identifier: MPL-2.0
//! Frames in, embeddings out: [`preprocess`](crate::preprocess) →
//! [`model`](crate::model) → [`postprocess`](crate::postprocess), for any caller
//! (the `radioembed` element, the CLI). Nothing here knows about GStreamer.

mod error;

use std::sync::Arc;

pub use error::EngineError;

use crate::meta::Embedding;
use crate::model::RadioModel;
use crate::postprocess::{OutputOptions, embeddings};
use crate::preprocess::{
    BatchSpec, Frame, Normalization, PreprocessError, Preprocessor, SizeLimits, TargetSize,
};

/// The user's choices that shape each batch.
#[derive(Debug, Clone)]
pub struct EngineOptions {
    /// How the model input size follows from the frame size.
    pub target: TargetSize,
    /// Antialias when downscaling.
    pub antialias: bool,
    /// What goes on the buffers.
    pub outputs: OutputOptions,
}

/// A shared model with the options of one stream. Immutable: the mutable scratch
/// state lives in the [`Preprocessor`] its caller passes to [`Engine::embed`], so a
/// caller can check caps while another thread runs a batch.
pub struct Engine {
    model: Arc<RadioModel>,
    options: EngineOptions,
}

impl Engine {
    /// Pairs a loaded model with a stream's options, refusing a fixed input size
    /// the model cannot take.
    pub fn new(model: Arc<RadioModel>, options: EngineOptions) -> Result<Self, EngineError> {
        if let TargetSize::Fixed { width, height } = options.target {
            model.info().check_resolution(height, width)?;
        }
        Ok(Self { model, options })
    }

    /// The loaded model.
    pub fn model(&self) -> &RadioModel {
        &self.model
    }

    /// The preprocessor for this engine's model device.
    pub fn preprocessor(&self) -> Result<Preprocessor, PreprocessError> {
        Preprocessor::for_device(self.model.device())
    }

    /// The model input (height, width) for `width` × `height` frames.
    pub fn input_size(&self, width: usize, height: usize) -> Result<(usize, usize), EngineError> {
        let config = &self.model.info().config;
        if width < config.patch_size || height < config.patch_size {
            return Err(EngineError::FrameTooSmall {
                width,
                height,
                patch: config.patch_size,
            });
        }
        let limits = SizeLimits {
            step: config.resolution_step(),
            max: config.max_resolution,
        };
        Ok(self.options.target.resolve(width, height, limits)?)
    }

    /// Embeds a batch of frames at model input `size` (height, width), numbering
    /// the embeddings with `frame_indices`.
    pub fn embed(
        &self,
        preprocessor: &mut Preprocessor,
        frames: &[Frame],
        size: (usize, usize),
        frame_indices: &[u64],
    ) -> Result<Vec<Embedding>, EngineError> {
        let dims = &self.model.info().dims;
        let spec = BatchSpec {
            size,
            antialias: self.options.antialias,
            norm: Normalization {
                mean: dims.norm_mean,
                std: dims.norm_std,
            },
            dtype: self.model.dtype(),
        };
        let batch = preprocessor.batch(frames, &spec)?;
        let output = self.model.forward_normalized(&batch)?;
        let options = OutputOptions {
            input_size: (size.1, size.0),
            ..self.options.outputs.clone()
        };
        Ok(embeddings(&output, &options, frame_indices)?)
    }
}
