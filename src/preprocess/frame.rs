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

    /// The layout of the `width` × `height` rectangle at (`x`, `y`) of this
    /// frame, in the same memory: the planes' offsets move, the strides stay.
    /// For 4:2:0 formats the rectangle grows to even coordinates so that it
    /// starts on a chroma sample; it is clipped to the frame.
    pub fn crop(&self, x: usize, y: usize, width: usize, height: usize) -> Self {
        let subsampled = matches!(self.format, PixelFormat::Nv12 | PixelFormat::I420);
        let (x, y) = if subsampled { (x & !1, y & !1) } else { (x, y) };
        let x = x.min(self.width.saturating_sub(1));
        let y = y.min(self.height.saturating_sub(1));
        let width = width.clamp(1, self.width - x);
        let height = height.clamp(1, self.height - y);
        let mut offsets = self.offsets;
        match self.format {
            PixelFormat::Nv12 => {
                offsets[0] += y * self.strides[0] + x;
                offsets[1] += y / 2 * self.strides[1] + x;
            }
            PixelFormat::I420 => {
                offsets[0] += y * self.strides[0] + x;
                offsets[1] += y / 2 * self.strides[1] + x / 2;
                offsets[2] += y / 2 * self.strides[2] + x / 2;
            }
            PixelFormat::Gray8 => offsets[0] += y * self.strides[0] + x,
            other => {
                let (bpp, _) = other.packed_rgb().expect("packed RGB format");
                offsets[0] += y * self.strides[0] + x * bpp;
            }
        }
        Self {
            width,
            height,
            offsets,
            ..self.clone()
        }
    }

    /// Bytes the frame spans from its first byte to the last byte it reads:
    /// the end of the last row of its last plane (a crop's last row ends
    /// before its stride does).
    pub fn min_size(&self) -> usize {
        let (w, h) = (self.width, self.height);
        let (cw, ch) = (w.div_ceil(2), h.div_ceil(2));
        let end = |plane: usize, row_bytes: usize, rows: usize| {
            self.offsets[plane] + self.strides[plane] * rows.saturating_sub(1) + row_bytes
        };
        match self.format {
            PixelFormat::Nv12 => end(0, w, h).max(end(1, 2 * cw, ch)),
            PixelFormat::I420 => end(0, w, h).max(end(1, cw, ch)).max(end(2, cw, ch)),
            PixelFormat::Gray8 => end(0, w, h),
            other => {
                let (bpp, _) = other.packed_rgb().expect("packed RGB format");
                end(0, w * bpp, h)
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The bytes a layout's rows and planes cover, row by row.
    fn rows(data: &[u8], layout: &FrameLayout) -> Vec<Vec<u8>> {
        let planes: &[(usize, usize, usize)] = match layout.format {
            // (plane, bytes per row, rows)
            PixelFormat::Nv12 => &[(0, 1, 1), (1, 2, 2)],
            PixelFormat::I420 => &[(0, 1, 1), (1, 1, 2), (2, 1, 2)],
            _ => &[(0, 3, 1)],
        };
        let mut out = Vec::new();
        for &(plane, bytes, sub) in planes {
            let w = if sub == 2 {
                layout.width.div_ceil(2) * bytes
            } else {
                layout.width * bytes
            };
            for row in 0..layout.height.div_ceil(sub) {
                let start = layout.offsets[plane] + row * layout.strides[plane];
                out.push(data[start..start + w].to_vec());
            }
        }
        out
    }

    #[test]
    fn a_crop_reads_the_rectangle_of_every_plane() {
        // Bytes that differ along rows and planes, so a wrong offset shows.
        for format in [PixelFormat::Rgb, PixelFormat::Nv12, PixelFormat::I420] {
            let full = FrameLayout::packed(format, 10, 8);
            let data: Vec<u8> = (0..full.min_size()).map(|i| (i * 7 % 251) as u8).collect();
            let crop = full.crop(3, 3, 4, 4);
            let (x, y) = if format == PixelFormat::Rgb {
                (3, 3)
            } else {
                (2, 2)
            };
            assert_eq!((crop.width, crop.height), (4, 4), "{format:?}");
            // Each row of the crop is the rectangle's part of the frame's row.
            let got = rows(&data, &crop);
            let full_rows = rows(&data, &full);
            match format {
                PixelFormat::Rgb => {
                    for (r, row) in got.iter().enumerate() {
                        assert_eq!(row[..], full_rows[y + r][x * 3..(x + 4) * 3]);
                    }
                }
                PixelFormat::Nv12 => {
                    for (r, row) in got[..4].iter().enumerate() {
                        assert_eq!(row[..], full_rows[y + r][x..x + 4], "luma row {r}");
                    }
                    for (r, row) in got[4..].iter().enumerate() {
                        assert_eq!(
                            row[..],
                            full_rows[8 + y / 2 + r][x..x + 4],
                            "chroma row {r}"
                        );
                    }
                }
                _ => {
                    for (r, row) in got[4..6].iter().enumerate() {
                        assert_eq!(
                            row[..],
                            full_rows[8 + y / 2 + r][x / 2..x / 2 + 2],
                            "U row {r}"
                        );
                    }
                    for (r, row) in got[6..].iter().enumerate() {
                        assert_eq!(
                            row[..],
                            full_rows[12 + y / 2 + r][x / 2..x / 2 + 2],
                            "V row {r}"
                        );
                    }
                }
            }
            assert!(crop.min_size() <= data.len());
        }
        // Clipped to the frame.
        let full = FrameLayout::packed(PixelFormat::Rgb, 10, 8);
        let crop = full.crop(8, 6, 50, 50);
        assert_eq!((crop.width, crop.height), (2, 2));
    }

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
