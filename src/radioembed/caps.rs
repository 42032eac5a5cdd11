// SPDX-License-Identifier: MPL-2.0
//! GStreamer's video description → the GStreamer-free [`FrameLayout`]: the
//! pixel format, the colorimetry, the planes of each buffer, and the model input
//! size for a stream's caps.

use gst_video::{VideoColorMatrix, VideoColorRange, VideoFormat, VideoInfo};

use crate::engine::{Engine, EngineError};
use crate::preprocess::{Colorimetry, FrameLayout, PixelFormat, YuvMatrix};

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

/// How frames of one caps are read and what size the model sees: made once per
/// caps event, on the sink pad's thread, and queued with it.
pub(crate) struct StreamFormat {
    info: VideoInfo,
    layout: FrameLayout,
    /// Model input (height, width).
    pub input: (usize, usize),
}

impl StreamFormat {
    /// The frames' (width, height) in pixels.
    pub fn frame_size(&self) -> (u32, u32) {
        (self.info.width(), self.info.height())
    }

    /// Checks caps against the engine's model and settings.
    pub fn new(caps: &gst::CapsRef, engine: &Engine) -> Result<Self, EngineError> {
        let info = VideoInfo::from_caps(caps)
            .map_err(|_| EngineError::UnsupportedFormat(caps.to_string()))?;
        let format = pixel_format(info.format())
            .ok_or_else(|| EngineError::UnsupportedFormat(info.format().to_string()))?;
        let (width, height) = (info.width() as usize, info.height() as usize);
        let input = engine.input_size(width, height)?;
        let layout = FrameLayout {
            format,
            width,
            height,
            strides: [0; 3],
            offsets: [0; 3],
            colorimetry: colorimetry(&info),
        };
        Ok(Self {
            info,
            layout,
            input,
        })
    }

    /// Where the planes of `buffer` are: from its `VideoMeta` when it has one
    /// (downstream pools may pad rows), else from the caps.
    pub fn layout_of(&self, buffer: &gst::BufferRef) -> FrameLayout {
        let mut layout = self.layout.clone();
        match buffer.meta::<gst_video::VideoMeta>() {
            Some(meta) => {
                copy_planes(&mut layout.strides, meta.stride());
                copy_planes(&mut layout.offsets, meta.offset());
            }
            None => {
                copy_planes(&mut layout.strides, self.info.stride());
                copy_planes(&mut layout.offsets, self.info.offset());
            }
        }
        layout
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
