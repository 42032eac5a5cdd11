// SPDX-License-Identifier: MPL-2.0
//! Frames in, embeddings out: [`preprocess`](crate::preprocess) →
//! [`model`](crate::model) → [`postprocess`](crate::postprocess), for any caller
//! (the `radioembed` element, the CLI). Nothing here knows about GStreamer.

mod error;
mod shared;

use std::sync::{Arc, Mutex, PoisonError};
use std::time::Instant;

pub use error::EngineError;
pub use shared::{InstanceStats, SharedBatcher, SharedError, SharedOutput, SharedStream};

use crate::meta::{Embedding, RegionAdaptor, RegionVectors};
use crate::model::{RadioModel, RadioOutput};
use crate::postprocess::{HostStaging, OutputOptions, RegionBox, embeddings, region_vectors};
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

/// One frame of a batch: its running index and the boxes of the regions that
/// get vectors of their own.
#[derive(Debug, Clone, Copy, Default)]
pub struct FrameJob<'a> {
    /// Running index of the frame in its stream.
    pub index: u64,
    /// Regions of the frame, in the order their vectors come back.
    pub regions: &'a [RegionBox],
}

/// A batch to embed.
pub struct Batch<'a> {
    /// The frames' pixels.
    pub frames: &'a [Frame<'a>],
    /// What each frame asks for, one per frame.
    pub jobs: &'a [FrameJob<'a>],
    /// Model input (height, width).
    pub size: (usize, usize),
    /// For a shared model: the latest time to wait for other streams' frames
    /// (`None`: until a batch is full).
    pub deadline: Option<Instant>,
}

/// What one frame gets.
#[derive(Debug, Clone)]
pub struct Embedded {
    /// The frame's embeddings.
    pub embedding: Embedding,
    /// The vectors of each region of its [`FrameJob`].
    pub regions: Vec<RegionVectors>,
}

/// What a batch gets, with how its forward went.
#[derive(Debug)]
pub struct Embeddings {
    /// One per frame.
    pub frames: Vec<Embedded>,
    /// Streams whose frames shared the forward (1 when the model is not shared).
    pub forward_streams: usize,
}

/// A shared model with the options of one stream. The preprocessing scratch
/// state lives in the [`Preprocessor`] its caller passes to [`Engine::embed`], so a
/// caller can check caps while another thread runs a batch.
pub struct Engine {
    model: Arc<RadioModel>,
    options: EngineOptions,
    /// Set when this stream batches with others on one [`SharedBatcher`].
    shared: Option<SharedStream>,
    /// The host buffers outputs cross into, held only while a batch's
    /// outputs are copied.
    staging: Mutex<HostStaging>,
}

impl Engine {
    /// Pairs a loaded model with a stream's options, refusing a fixed input size
    /// the model cannot take; with `shared`, forwards go through that batcher.
    pub fn new(
        model: Arc<RadioModel>,
        options: EngineOptions,
        shared: Option<SharedStream>,
    ) -> Result<Self, EngineError> {
        if let TargetSize::Fixed { width, height } = options.target {
            model.info().check_resolution(height, width)?;
        }
        Ok(Self {
            model,
            options,
            shared,
            staging: Mutex::default(),
        })
    }

    /// The loaded model.
    pub fn model(&self) -> &RadioModel {
        &self.model
    }

    /// The batcher membership, when the model is shared with other streams.
    pub fn shared(&self) -> Option<&SharedStream> {
        self.shared.as_ref()
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

    /// Embeds a batch of frames and the regions its jobs name.
    pub fn embed(
        &self,
        preprocessor: &mut Preprocessor,
        batch: &Batch,
    ) -> Result<Embeddings, EngineError> {
        let input = preprocessor.batch(batch.frames, &self.batch_spec(batch.size))?;
        // Adaptor patch features cost a head pass over every patch: only when
        // the meta keeps spatial outputs or regions pool them.
        let adaptor_features =
            self.options.outputs.spatial || batch.jobs.iter().any(|job| !job.regions.is_empty());
        let (output, forward_streams) = self.forward(input, batch.deadline, adaptor_features)?;
        let options = OutputOptions {
            input_size: (batch.size.1, batch.size.0),
            ..self.options.outputs.clone()
        };
        let indices: Vec<u64> = batch.jobs.iter().map(|job| job.index).collect();
        let per_frame = {
            let mut staging = self.staging.lock().unwrap_or_else(PoisonError::into_inner);
            embeddings(&output, &options, &indices, &mut staging)?
        };
        let frames = per_frame
            .into_iter()
            .zip(batch.jobs)
            .enumerate()
            .map(|(i, (embedding, job))| {
                Ok(Embedded {
                    embedding,
                    regions: region_vectors(&output, i, job.regions)?,
                })
            })
            .collect::<Result<_, EngineError>>()?;
        Ok(Embeddings {
            frames,
            forward_streams,
        })
    }

    /// Per-object vectors by crop: the model's summary of each crop (frames
    /// whose layouts are regions of a frame) resized to `size` (height, width),
    /// with each adaptor's summary of it, `max_batch` crops a forward.
    pub fn embed_crops(
        &self,
        preprocessor: &mut Preprocessor,
        crops: &[Frame],
        size: (usize, usize),
        max_batch: usize,
        deadline: Option<Instant>,
    ) -> Result<Vec<RegionVectors>, EngineError> {
        self.model.info().check_resolution(size.0, size.1)?;
        let spec = self.batch_spec(size);
        let mut vectors = Vec::with_capacity(crops.len());
        for chunk in crops.chunks(max_batch.max(1)) {
            let input = preprocessor.batch(chunk, &spec)?;
            let (output, _) = self.forward(input, deadline, false)?;
            let rows =
                |t: &candle_core::Tensor| t.to_dtype(candle_core::DType::F32)?.to_vec2::<f32>();
            let summaries = rows(&output.summary).map_err(crate::model::ModelError::from)?;
            let adaptors = output
                .adaptors
                .iter()
                .map(|a| Ok((a.name.as_str(), rows(&a.summary)?)))
                .collect::<candle_core::Result<Vec<_>>>()
                .map_err(crate::model::ModelError::from)?;
            vectors.extend(summaries.into_iter().enumerate().map(|(i, vector)| {
                RegionVectors {
                    vector,
                    adaptors: adaptors
                        .iter()
                        .map(|(name, rows)| RegionAdaptor {
                            name: name.to_string(),
                            vector: rows[i].clone(),
                        })
                        .collect(),
                }
            }));
        }
        Ok(vectors)
    }

    /// What preprocessing makes of each frame for a model input of `size`
    /// (height, width): the model's normalisation and dtype, this stream's
    /// antialiasing.
    pub fn batch_spec(&self, size: (usize, usize)) -> BatchSpec {
        let dims = &self.model.info().dims;
        BatchSpec {
            size,
            antialias: self.options.antialias,
            norm: Normalization {
                mean: dims.norm_mean,
                std: dims.norm_std,
            },
            dtype: self.model.dtype(),
        }
    }

    /// Runs the model on a normalized batch, alone or with other streams;
    /// alone, the adaptors' patch features only with `adaptor_features`.
    fn forward(
        &self,
        input: candle_core::Tensor,
        deadline: Option<Instant>,
        adaptor_features: bool,
    ) -> Result<(RadioOutput, usize), EngineError> {
        match &self.shared {
            None => Ok((
                self.model
                    .forward_normalized_with(&input, adaptor_features)?,
                1,
            )),
            Some(stream) => {
                let shared = stream.forward(input, deadline)?;
                Ok((shared.output, shared.batch_streams))
            }
        }
    }
}
