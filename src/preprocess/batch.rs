// SPDX-License-Identifier: MPL-2.0
//! A batch of frames → one normalised (B, 3, H, W) tensor on the model's device.

use candle_core::{DType, Device, Tensor};

use super::{CpuPreprocessor, FrameLayout, Normalization, PreprocessError};

/// One frame in memory: its bytes and how they are laid out.
#[derive(Debug, Clone, Copy)]
pub struct Frame<'a> {
    /// The frame's memory, all planes.
    pub data: &'a [u8],
    /// Format, size, plane strides and offsets, colorimetry.
    pub layout: &'a FrameLayout,
}

/// What every frame of a batch becomes.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct BatchSpec {
    /// Model input (height, width).
    pub size: (usize, usize),
    /// Antialias when downscaling, as PyTorch's `antialias=True`.
    pub antialias: bool,
    /// The model's input conditioner.
    pub norm: Normalization,
    /// The dtype the model computes in (the GPU writes it directly).
    pub dtype: DType,
}

/// Preprocessing next to the model: on the CPU for a CPU model, in CUDA kernels
/// for a CUDA model. Holds its scratch buffers from batch to batch.
pub enum Preprocessor {
    /// Rayon-parallel conversion in host memory.
    Cpu(CpuPreprocessor),
    /// One kernel launch per batch on the model's GPU.
    #[cfg(feature = "cuda")]
    Gpu(Box<super::cuda::GpuPreprocessor>),
}

impl Preprocessor {
    /// The preprocessor for a model on `device`.
    pub fn for_device(device: &Device) -> Result<Self, PreprocessError> {
        match device {
            Device::Cpu => Ok(Self::Cpu(CpuPreprocessor::new())),
            #[cfg(feature = "cuda")]
            Device::Cuda(_) => Ok(Self::Gpu(Box::new(super::cuda::GpuPreprocessor::new(
                device,
            )?))),
            other => Err(PreprocessError::Gpu(format!(
                "no preprocessing for device {other:?} in this build (the `cuda` feature \
                 adds CUDA)"
            ))),
        }
    }

    /// Converts, resizes and normalises `frames` into one (B, 3, H, W) tensor.
    pub fn batch(&mut self, frames: &[Frame], spec: &BatchSpec) -> Result<Tensor, PreprocessError> {
        let (h, w) = spec.size;
        match self {
            Self::Cpu(pre) => {
                let mut pixels = vec![0f32; frames.len() * 3 * h * w];
                for (frame, out) in frames.iter().zip(pixels.chunks_exact_mut(3 * h * w)) {
                    pre.process(
                        frame.data,
                        frame.layout,
                        spec.size,
                        spec.antialias,
                        &spec.norm,
                        out,
                    )?;
                }
                Tensor::from_vec(pixels, (frames.len(), 3, h, w), &Device::Cpu)
                    .map_err(|e| PreprocessError::Tensor(e.to_string()))
            }
            #[cfg(feature = "cuda")]
            Self::Gpu(pre) => {
                if frames.is_empty() {
                    return Err(PreprocessError::Empty);
                }
                // The kernels take one layout a launch: runs of frames that share
                // one (a stream's frames) go together, others (crops of regions)
                // one run each, in order.
                let parts = frames
                    .chunk_by(|a, b| a.layout == b.layout)
                    .map(|run| {
                        let data: Vec<&[u8]> = run.iter().map(|f| f.data).collect();
                        pre.process_batch(
                            &data,
                            run[0].layout,
                            spec.size,
                            spec.antialias,
                            &spec.norm,
                            spec.dtype,
                        )
                    })
                    .collect::<Result<Vec<_>, _>>()?;
                match parts.len() {
                    1 => Ok(parts.into_iter().next().expect("one part")),
                    _ => Tensor::cat(&parts, 0).map_err(|e| PreprocessError::Tensor(e.to_string())),
                }
            }
        }
    }
}
