//! Description of a raw video frame in memory: pixel format, plane layout, colorimetry.

/// Raw video formats the preprocessing accepts (GStreamer's names in the docs).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum PixelFormat {
    /// `NV12`: Y plane, then one interleaved U/V plane at half resolution.
    Nv12,
    /// `I420`: Y, U and V planes; U and V at half resolution.
    I420,
    /// `RGB`: packed 24-bit R, G, B.
    Rgb,
    /// `BGR`: packed 24-bit B, G, R.
    Bgr,
    /// `RGBA`: packed 32-bit R, G, B, alpha (ignored).
    Rgba,
    /// `BGRA`: packed 32-bit B, G, R, alpha (ignored).
    Bgra,
    /// `RGBx`: packed 32-bit R, G, B, padding.
    Rgbx,
    /// `BGRx`: packed 32-bit B, G, R, padding.
    Bgrx,
    /// `xRGB`: packed 32-bit padding, R, G, B.
    Xrgb,
    /// `xBGR`: packed 32-bit padding, B, G, R.
    Xbgr,
    /// `GRAY8`: one luma byte per pixel, replicated to R = G = B.
    Gray8,
}

impl PixelFormat {
    /// Every supported format.
    pub const ALL: [PixelFormat; 11] = [
        Self::Nv12,
        Self::I420,
        Self::Rgb,
        Self::Bgr,
        Self::Rgba,
        Self::Bgra,
        Self::Rgbx,
        Self::Bgrx,
        Self::Xrgb,
        Self::Xbgr,
        Self::Gray8,
    ];

    /// For packed RGB formats: bytes per pixel and the byte offsets of R, G and B.
    pub(crate) fn packed_rgb(self) -> Option<(usize, [usize; 3])> {
        Some(match self {
            Self::Rgb => (3, [0, 1, 2]),
            Self::Bgr => (3, [2, 1, 0]),
            Self::Rgba | Self::Rgbx => (4, [0, 1, 2]),
            Self::Bgra | Self::Bgrx => (4, [2, 1, 0]),
            Self::Xrgb => (4, [1, 2, 3]),
            Self::Xbgr => (4, [3, 2, 1]),
            _ => return None,
        })
    }

    /// Whether the format stores luma and chroma (and so needs a colour matrix).
    pub fn is_yuv(self) -> bool {
        matches!(self, Self::Nv12 | Self::I420)
    }

    /// Number of planes in memory.
    pub fn plane_count(self) -> usize {
        match self {
            Self::Nv12 => 2,
            Self::I420 => 3,
            _ => 1,
        }
    }
}

/// The YUV → RGB matrix of a stream.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub enum YuvMatrix {
    /// ITU-R BT.601 (SD video, JPEG).
    Bt601,
    /// ITU-R BT.709 (HD video).
    #[default]
    Bt709,
    /// ITU-R BT.2020 (UHD video).
    Bt2020,
}

impl YuvMatrix {
    /// The luma weights (Kr, Kb) of the matrix.
    pub fn kr_kb(self) -> (f32, f32) {
        match self {
            Self::Bt601 => (0.299, 0.114),
            Self::Bt709 => (0.2126, 0.0722),
            Self::Bt2020 => (0.2627, 0.0593),
        }
    }
}

/// How to interpret YUV samples.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub struct Colorimetry {
    /// Matrix from Y'CbCr to R'G'B'.
    pub matrix: YuvMatrix,
    /// Full range (0..255) instead of limited range (Y 16..235, C 16..240).
    pub full_range: bool,
}

/// Where a frame's planes are and how they are laid out.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct FrameLayout {
    /// Pixel format.
    pub format: PixelFormat,
    /// Width in pixels.
    pub width: usize,
    /// Height in pixels.
    pub height: usize,
    /// Bytes from one row to the next, per plane.
    pub strides: [usize; 3],
    /// Byte offset of each plane in the frame's memory.
    pub offsets: [usize; 3],
    /// Colour interpretation (YUV formats only).
    pub colorimetry: Colorimetry,
}

impl FrameLayout {
    /// The tightly packed layout GStreamer uses for a format and size, with rows
    /// padded to multiples of 4 bytes (as `GstVideoInfo` lays them out).
    pub fn packed(format: PixelFormat, width: usize, height: usize) -> Self {
        let round4 = |n: usize| n.div_ceil(4) * 4;
        let (cw, ch) = (width.div_ceil(2), height.div_ceil(2));
        let (strides, sizes) = match format {
            PixelFormat::Nv12 => {
                let s = [round4(width), round4(cw * 2), 0];
                (s, [s[0] * height, s[1] * ch, 0])
            }
            PixelFormat::I420 => {
                let s = [round4(width), round4(cw), round4(cw)];
                (s, [s[0] * height, s[1] * ch, s[2] * ch])
            }
            PixelFormat::Gray8 => ([round4(width), 0, 0], [round4(width) * height, 0, 0]),
            other => {
                let (bpp, _) = other.packed_rgb().expect("packed RGB format");
                let s = round4(width * bpp);
                ([s, 0, 0], [s * height, 0, 0])
            }
        };
        Self {
            format,
            width,
            height,
            strides,
            offsets: [0, sizes[0], sizes[0] + sizes[1]],
            colorimetry: Colorimetry::default(),
        }
    }

    /// Bytes the frame spans from its first byte to the end of its last plane.
    pub fn min_size(&self) -> usize {
        let ch = self.height.div_ceil(2);
        match self.format {
            PixelFormat::Nv12 => self.offsets[1] + self.strides[1] * ch,
            PixelFormat::I420 => {
                (self.offsets[1] + self.strides[1] * ch).max(self.offsets[2] + self.strides[2] * ch)
            }
            _ => self.offsets[0] + self.strides[0] * self.height,
        }
    }
}
