//! The per-stream work of the element: caps → frame layout and model input size,
//! and a batch of buffers → one embedding per frame. Glue between GStreamer's
//! video types and the GStreamer-free `preprocess`, `model` and `postprocess`.

use std::sync::Arc;

use candle_core::{Device, Tensor};
use gst_video::{VideoColorMatrix, VideoColorRange, VideoFormat, VideoInfo};

use crate::meta::Embedding;
use crate::model::RadioModel;
use crate::postprocess::{OutputOptions, embeddings};
use crate::preprocess::{
    Colorimetry, CpuPreprocessor, FrameLayout, Normalization, PixelFormat, SizeLimits, TargetSize,
    YuvMatrix,
};

fn pixel_format(format: VideoFormat) -> Option<PixelFormat> {
    PixelFormat::from_gst_name(format.to_str())
}

/// The raw formats the element accepts, in caps order.
pub(crate) fn caps_formats() -> impl Iterator<Item = VideoFormat> {
    PixelFormat::ALL
        .into_iter()
        .map(|f| VideoFormat::from_string(f.gst_name()))
}

fn colorimetry(info: &VideoInfo) -> Colorimetry {
    let c = info.colorimetry();
    let matrix = match c.matrix() {
        VideoColorMatrix::Bt601 | VideoColorMatrix::Smpte240m | VideoColorMatrix::Fcc => {
            YuvMatrix::Bt601
        }
        VideoColorMatrix::Bt2020 => YuvMatrix::Bt2020,
        VideoColorMatrix::Bt709 => YuvMatrix::Bt709,
        // GStreamer's own default for unknown YUV matrices: BT.601 up to SD, else BT.709.
        _ if info.height() <= 576 => YuvMatrix::Bt601,
        _ => YuvMatrix::Bt709,
    };
    Colorimetry {
        matrix,
        full_range: c.range() == VideoColorRange::Range0_255,
    }
}

/// How frames of one caps are read and what size the model sees.
pub(crate) struct StreamFormat {
    pub info: VideoInfo,
    layout: FrameLayout,
    /// Model input (height, width).
    pub input: (usize, usize),
}

/// The user's choices that shape each batch.
#[derive(Debug, Clone)]
pub(crate) struct EngineOptions {
    pub target: TargetSize,
    pub antialias: bool,
    pub outputs: OutputOptions,
}

/// Where frames are preprocessed: next to the model.
enum Preprocessor {
    Cpu(CpuPreprocessor),
    #[cfg(feature = "cuda")]
    Gpu(Box<crate::preprocess::cuda::GpuPreprocessor>),
}

/// A shared model plus this stream's preprocessing buffers.
pub(crate) struct Engine {
    model: Arc<RadioModel>,
    preprocessor: Preprocessor,
    options: EngineOptions,
}

impl Engine {
    /// Pairs a model with a preprocessor on the model's device.
    pub fn new(model: Arc<RadioModel>, options: EngineOptions) -> Result<Self, String> {
        let preprocessor = if model.device().is_cpu() {
            Preprocessor::Cpu(CpuPreprocessor::new())
        } else {
            #[cfg(feature = "cuda")]
            {
                Preprocessor::Gpu(Box::new(
                    crate::preprocess::cuda::GpuPreprocessor::new(model.device())
                        .map_err(|e| e.to_string())?,
                ))
            }
            #[cfg(not(feature = "cuda"))]
            return Err("a non-CPU model needs the `cuda` feature".into());
        };
        Ok(Self {
            model,
            preprocessor,
            options,
        })
    }

    /// The loaded model.
    pub fn model(&self) -> &RadioModel {
        &self.model
    }

    /// Checks caps and works out the model input size for them.
    pub fn configure(&self, info: VideoInfo) -> Result<StreamFormat, String> {
        let format = pixel_format(info.format())
            .ok_or_else(|| format!("video format {} is not supported", info.format()))?;
        let (width, height) = (info.width() as usize, info.height() as usize);
        let model = self.model.info();
        if width < model.config.patch_size || height < model.config.patch_size {
            return Err(format!(
                "frames of {width}x{height} are smaller than the model's {0}x{0} patch",
                model.config.patch_size
            ));
        }
        let limits = SizeLimits {
            step: model.config.resolution_step(),
            max: model.config.max_resolution,
        };
        let input = self
            .options
            .target
            .resolve(width, height, limits)
            .map_err(|e| e.to_string())?;
        let layout = FrameLayout {
            format,
            width,
            height,
            strides: [0; 3],
            offsets: [0; 3],
            colorimetry: colorimetry(&info),
        };
        Ok(StreamFormat {
            info,
            layout,
            input,
        })
    }

    /// Embeds a batch of frames of one format.
    pub fn embed(
        &mut self,
        format: &StreamFormat,
        frames: &[&gst::BufferRef],
        frame_indices: &[u64],
    ) -> Result<Vec<Embedding>, String> {
        let (h, w) = format.input;
        let info = self.model.info();
        let norm = Normalization {
            mean: info.dims.norm_mean,
            std: info.dims.norm_std,
        };
        let layouts: Vec<FrameLayout> = frames
            .iter()
            .map(|frame| {
                let mut layout = format.layout.clone();
                match frame.meta::<gst_video::VideoMeta>() {
                    Some(meta) => {
                        copy_planes(&mut layout.strides, meta.stride());
                        copy_planes(&mut layout.offsets, meta.offset());
                    }
                    None => {
                        copy_planes(&mut layout.strides, format.info.stride());
                        copy_planes(&mut layout.offsets, format.info.offset());
                    }
                }
                layout
            })
            .collect();
        let maps = frames
            .iter()
            .map(|frame| frame.map_readable())
            .collect::<Result<Vec<_>, _>>()
            .map_err(|_| "cannot map the frame for reading".to_string())?;
        let batch = match &mut self.preprocessor {
            Preprocessor::Cpu(pre) => {
                let mut pixels = vec![0f32; frames.len() * 3 * h * w];
                for ((map, layout), out) in maps
                    .iter()
                    .zip(&layouts)
                    .zip(pixels.chunks_exact_mut(3 * h * w))
                {
                    pre.process(map, layout, (h, w), self.options.antialias, &norm, out)
                        .map_err(|e| e.to_string())?;
                }
                Tensor::from_vec(pixels, (frames.len(), 3, h, w), &Device::Cpu)
                    .map_err(|e| e.to_string())?
            }
            #[cfg(feature = "cuda")]
            Preprocessor::Gpu(pre) => {
                if layouts.iter().any(|l| *l != layouts[0]) {
                    return Err("frames of one batch have different plane layouts".into());
                }
                let data: Vec<&[u8]> = maps.iter().map(|m| m.as_slice()).collect();
                pre.process_batch(
                    &data,
                    &layouts[0],
                    (h, w),
                    self.options.antialias,
                    &norm,
                    self.model.dtype(),
                )
                .map_err(|e| e.to_string())?
            }
        };
        let output = self
            .model
            .forward_normalized(&batch)
            .map_err(|e| e.to_string())?;
        let mut options = self.options.outputs.clone();
        options.input_size = (w, h);
        embeddings(&output, &options, frame_indices).map_err(|e| e.to_string())
    }
}

fn copy_planes<T: Copy + TryInto<usize>>(dst: &mut [usize; 3], src: &[T]) {
    for (d, s) in dst.iter_mut().zip(src) {
        *d = (*s).try_into().unwrap_or(0);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_format_is_a_gstreamer_format() {
        gst::init().unwrap();
        let formats: Vec<VideoFormat> = caps_formats().collect();
        assert_eq!(formats.len(), PixelFormat::ALL.len());
        for (format, pixel) in formats.into_iter().zip(PixelFormat::ALL) {
            assert_ne!(format, VideoFormat::Unknown, "{}", pixel.gst_name());
            assert_eq!(pixel_format(format), Some(pixel));
        }
    }
}
