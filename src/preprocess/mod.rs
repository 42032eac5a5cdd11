// SPDX-License-Identifier: MPL-2.0
//! Raw video frame → normalised model input.
//!
//! A frame (any of [`PixelFormat`], with GStreamer's plane strides and offsets and
//! its colorimetry) is converted to RGB, resized with PyTorch's bilinear
//! (`align_corners=False`, optionally antialiased) to the model's input size, and
//! normalised with the checkpoint's conditioner mean and std, in one go. Nothing
//! here knows about GStreamer or the model types.

mod batch;
mod convert;
mod cpu;
#[cfg(feature = "cuda")]
pub mod cuda;
mod frame;
mod size;

pub use batch::{BatchSpec, Frame, Preprocessor};
pub use cpu::CpuPreprocessor;
pub use frame::{Colorimetry, FrameLayout, PixelFormat, YuvMatrix};
pub use size::{SizeError, SizeLimits, TargetSize};

/// Per-channel normalisation applied after resizing: `(rgb − mean) / std`.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Normalization {
    /// Channel means (R, G, B) for values in 0..1.
    pub mean: [f32; 3],
    /// Channel standard deviations (R, G, B).
    pub std: [f32; 3],
}

impl Normalization {
    /// No normalisation: the output is RGB in 0..1.
    pub const IDENTITY: Self = Self {
        mean: [0.0; 3],
        std: [1.0; 3],
    };

    /// `(scale, bias)` with `(v − mean) / std = v · scale + bias` for channel `c`.
    pub fn scale_bias(&self, c: usize) -> (f32, f32) {
        let scale = 1.0 / self.std[c];
        (scale, -self.mean[c] * scale)
    }
}

/// Why a frame cannot be preprocessed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PreprocessError {
    /// The frame's memory is smaller than its layout says.
    #[error("frame buffer holds {found} bytes but its {width}x{height} layout needs {expected}")]
    FrameTooSmall {
        /// Bytes the layout needs.
        expected: usize,
        /// Bytes present.
        found: usize,
        /// Frame width.
        width: usize,
        /// Frame height.
        height: usize,
    },
    /// The output slice does not match the target size.
    #[error("output holds {found} values, expected {expected}")]
    OutputSize {
        /// Values needed.
        expected: usize,
        /// Values given.
        found: usize,
    },
    /// A stride is shorter than a row of the plane.
    #[error("plane {plane} stride {stride} is shorter than its {needed}-byte rows")]
    Stride {
        /// Plane index.
        plane: usize,
        /// The stride.
        stride: usize,
        /// Bytes in one row of that plane.
        needed: usize,
    },
    /// The frame has no pixels.
    #[error("empty frame")]
    Empty,
    /// The frame's memory cannot be read (a buffer that cannot be mapped).
    #[error("cannot map the frame for reading")]
    Unreadable,
    /// A CUDA call or the kernel compilation failed.
    #[error("GPU preprocessing failed: {0}")]
    Gpu(String),
    /// The batch tensor could not be made (out of memory, …).
    #[error("cannot build the batch tensor: {0}")]
    Tensor(String),
}

fn check_frame(data: &[u8], layout: &FrameLayout) -> Result<(), PreprocessError> {
    if layout.width == 0 || layout.height == 0 {
        return Err(PreprocessError::Empty);
    }
    let cw = layout.width.div_ceil(2);
    let row_bytes = match layout.format {
        PixelFormat::Nv12 => [layout.width, 2 * cw, 0],
        PixelFormat::I420 => [layout.width, cw, cw],
        PixelFormat::Gray8 => [layout.width, 0, 0],
        packed => [
            layout.width * packed.packed_rgb().map_or(0, |(bpp, _)| bpp),
            0,
            0,
        ],
    };
    for (plane, &needed) in row_bytes
        .iter()
        .enumerate()
        .take(layout.format.plane_count())
    {
        let stride = layout.strides[plane];
        if stride < needed {
            return Err(PreprocessError::Stride {
                plane,
                stride,
                needed,
            });
        }
    }
    let expected = layout.min_size();
    if data.len() < expected {
        return Err(PreprocessError::FrameTooSmall {
            expected,
            found: data.len(),
            width: layout.width,
            height: layout.height,
        });
    }
    Ok(())
}
