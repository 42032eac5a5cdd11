// SPDX-License-Identifier: MPL-2.0
//! Description of a raw video frame in memory: pixel format, plane layout, colorimetry.

/// Raw video formats the preprocessing accepts.
///
/// The discriminant is the format's code in the GPU kernel's `Frame::format`;
/// `kernels.cu` names the codes it tests for, and a unit test checks them against
/// this enum.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[repr(i32)]
pub enum PixelFormat {
    /// `NV12`: Y plane, then one interleaved U/V plane at half resolution.
    Nv12 = 0,
    /// `I420`: Y, U and V planes; U and V at half resolution.
    I420 = 1,
    /// `RGB`: packed 24-bit R, G, B.
    Rgb = 2,
    /// `BGR`: packed 24-bit B, G, R.
    Bgr = 3,
    /// `RGBA`: packed 32-bit R, G, B, alpha (ignored).
    Rgba = 4,
    /// `BGRA`: packed 32-bit B, G, R, alpha (ignored).
    Bgra = 5,
    /// `RGBx`: packed 32-bit R, G, B, padding.
    Rgbx = 6,
    /// `BGRx`: packed 32-bit B, G, R, padding.
    Bgrx = 7,
    /// `xRGB`: packed 32-bit padding, R, G, B.
    Xrgb = 8,
    /// `xBGR`: packed 32-bit padding, B, G, R.
    Xbgr = 9,
    /// `GRAY8`: one luma byte per pixel, replicated to R = G = B.
    Gray8 = 10,
}

/// What each format is, in one place: its GStreamer name, its planes, and for
/// packed RGB the bytes per pixel and the offsets of R, G and B.
struct FormatFacts {
    format: PixelFormat,
    name: &'static str,
    planes: usize,
    packed_rgb: Option<(usize, [usize; 3])>,
}

#[rustfmt::skip]
const FORMATS: [FormatFacts; 11] = {
    use PixelFormat::*;
    const fn facts(format: PixelFormat, name: &'static str, planes: usize, packed_rgb: Option<(usize, [usize; 3])>) -> FormatFacts {
        FormatFacts { format, name, planes, packed_rgb }
    }
    [
        facts(Nv12,  "NV12",  2, None),
        facts(I420,  "I420",  3, None),
        facts(Rgb,   "RGB",   1, Some((3, [0, 1, 2]))),
        facts(Bgr,   "BGR",   1, Some((3, [2, 1, 0]))),
        facts(Rgba,  "RGBA",  1, Some((4, [0, 1, 2]))),
        facts(Bgra,  "BGRA",  1, Some((4, [2, 1, 0]))),
        facts(Rgbx,  "RGBx",  1, Some((4, [0, 1, 2]))),
        facts(Bgrx,  "BGRx",  1, Some((4, [2, 1, 0]))),
        facts(Xrgb,  "xRGB",  1, Some((4, [1, 2, 3]))),
        facts(Xbgr,  "xBGR",  1, Some((4, [3, 2, 1]))),
        facts(Gray8, "GRAY8", 1, None),
    ]
};

impl PixelFormat {
    /// Every supported format, in the element's caps order.
    pub const ALL: [PixelFormat; 11] = {
        let mut all = [PixelFormat::Nv12; 11];
        let mut i = 0;
        while i < FORMATS.len() {
            all[i] = FORMATS[i].format;
            i += 1;
        }
        all
    };

    fn facts(self) -> &'static FormatFacts {
        // The table is in discriminant order (checked by a test).
        &FORMATS[self as usize]
    }

    /// The format's name in GStreamer caps (`NV12`, `RGBx`, …).
    pub fn gst_name(self) -> &'static str {
        self.facts().name
    }

    /// The format with this GStreamer caps name, if it is supported.
    pub fn from_gst_name(name: &str) -> Option<Self> {
        FORMATS.iter().find(|f| f.name == name).map(|f| f.format)
    }

    /// The format's code in the GPU kernel's frame description.
    pub fn kernel_code(self) -> i32 {
        self as i32
    }

    /// For packed RGB formats: bytes per pixel and the byte offsets of R, G and B.
    pub(crate) fn packed_rgb(self) -> Option<(usize, [usize; 3])> {
        self.facts().packed_rgb
    }

    /// Number of planes in memory.
    pub fn plane_count(self) -> usize {
        self.facts().planes
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn table_is_in_code_order() {
        for (i, facts) in FORMATS.iter().enumerate() {
            assert_eq!(facts.format as usize, i, "{}", facts.name);
            assert_eq!(PixelFormat::from_gst_name(facts.name), Some(facts.format));
        }
        assert_eq!(PixelFormat::from_gst_name("YUY2"), None);
    }

    /// `kernels.cu` tests some formats by code; each `#define FMT_<NAME> <code>` must
    /// be that format's code here.
    #[test]
    fn kernel_codes_match_kernels_cu() {
        let source = include_str!("cuda/kernels.cu");
        let defines: Vec<(&str, i32)> = source
            .lines()
            .filter_map(|line| {
                let mut words = line.strip_prefix("#define FMT_")?.split_whitespace();
                Some((words.next()?, words.next()?.parse().ok()?))
            })
            .collect();
        assert!(defines.len() >= 3, "no FMT_ codes found in kernels.cu");
        for (name, code) in defines {
            let format = PixelFormat::ALL
                .into_iter()
                .find(|f| f.gst_name().eq_ignore_ascii_case(name))
                .unwrap_or_else(|| panic!("kernels.cu names FMT_{name}, no such format"));
            assert_eq!(format.kernel_code(), code, "FMT_{name}");
        }
    }
}
