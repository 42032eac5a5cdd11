// SPDX-License-Identifier: MPL-2.0
//! One row of any supported format to planar R, G, B floats in 0..1.
//!
//! The format is matched once per row; each inner loop handles a single layout, so
//! there is no per-pixel branching on the format.

use super::frame::{Colorimetry, FrameLayout, PixelFormat};
use crate::cpu::avx2_fma_dispatch;

/// Affine Y'CbCr → R'G'B' on 8-bit samples, scaled to 0..1:
/// `rgb = y_scale · (Y − y_offset) + m · (C − 128)`.
#[derive(Debug, Clone, Copy)]
pub(crate) struct YuvCoefficients {
    y_scale: f32,
    y_offset: f32,
    r_v: f32,
    g_u: f32,
    g_v: f32,
    b_u: f32,
}

impl YuvCoefficients {
    /// `[y_scale, y_offset, r_v, g_u, g_v, b_u]`, the order kernels.cu reads them in.
    #[cfg(feature = "cuda")]
    pub fn as_array(&self) -> [f32; 6] {
        [
            self.y_scale,
            self.y_offset,
            self.r_v,
            self.g_u,
            self.g_v,
            self.b_u,
        ]
    }

    pub fn new(colorimetry: Colorimetry) -> Self {
        let (kr, kb) = colorimetry.matrix.kr_kb();
        let kg = 1.0 - kr - kb;
        let (y_scale, y_offset, c_scale) = if colorimetry.full_range {
            (1.0 / 255.0, 0.0, 1.0 / 255.0)
        } else {
            (1.0 / 219.0, 16.0, 1.0 / 224.0)
        };
        Self {
            y_scale,
            y_offset,
            r_v: 2.0 * (1.0 - kr) * c_scale,
            g_u: -2.0 * (1.0 - kb) * kb / kg * c_scale,
            g_v: -2.0 * (1.0 - kr) * kr / kg * c_scale,
            b_u: 2.0 * (1.0 - kb) * c_scale,
        }
    }
}

/// Reads rows of one frame.
pub(crate) struct RowConverter<'a> {
    data: &'a [u8],
    layout: &'a FrameLayout,
    yuv: YuvCoefficients,
}

impl<'a> RowConverter<'a> {
    pub fn new(data: &'a [u8], layout: &'a FrameLayout) -> Self {
        Self {
            data,
            layout,
            yuv: YuvCoefficients::new(layout.colorimetry),
        }
    }

    fn plane_row(&self, plane: usize, row: usize, len: usize) -> &'a [u8] {
        let start = self.layout.offsets[plane] + row * self.layout.strides[plane];
        &self.data[start..start + len]
    }

    /// Writes row `y` as R, G, B into the three `width`-long slices.
    pub fn convert(&self, y: usize, r: &mut [f32], g: &mut [f32], b: &mut [f32]) {
        let w = self.layout.width;
        let cw = w.div_ceil(2);
        match self.layout.format {
            PixelFormat::Nv12 => {
                let uv = self.plane_row(1, y / 2, 2 * cw);
                yuv_row(self.plane_row(0, y, w), uv, &self.yuv, r, g, b);
            }
            PixelFormat::I420 => {
                let u = self.plane_row(1, y / 2, cw);
                let v = self.plane_row(2, y / 2, cw);
                i420_row(self.plane_row(0, y, w), u, v, &self.yuv, r, g, b);
            }
            PixelFormat::Gray8 => {
                for (x, &luma) in self.plane_row(0, y, w).iter().enumerate() {
                    let value = f32::from(luma) / 255.0;
                    (r[x], g[x], b[x]) = (value, value, value);
                }
            }
            packed => {
                let (bpp, [ro, go, bo]) = packed.packed_rgb().expect("packed RGB format");
                let row = self.plane_row(0, y, w * bpp);
                for (x, px) in row.chunks_exact(bpp).enumerate() {
                    r[x] = f32::from(px[ro]) / 255.0;
                    g[x] = f32::from(px[go]) / 255.0;
                    b[x] = f32::from(px[bo]) / 255.0;
                }
            }
        }
    }
}

/// One row of I420: planar U and V at half width.
fn i420_row(
    luma: &[u8],
    u: &[u8],
    v: &[u8],
    k: &YuvCoefficients,
    r: &mut [f32],
    g: &mut [f32],
    b: &mut [f32],
) {
    // Interleave U and V into the NV12 layout the row kernel reads; a row of
    // chroma is small next to the luma and RGB rows it serves.
    let mut uv = [0u8; 2 * 2048];
    let mut start = 0;
    for (u, v) in u.chunks(2048).zip(v.chunks(2048)) {
        for (j, (&cu, &cv)) in u.iter().zip(v).enumerate() {
            uv[2 * j] = cu;
            uv[2 * j + 1] = cv;
        }
        let n = (2 * u.len()).min(luma.len() - start);
        let end = start + n;
        yuv_row(
            &luma[start..end],
            &uv[..2 * u.len()],
            k,
            &mut r[start..end],
            &mut g[start..end],
            &mut b[start..end],
        );
        start = end;
    }
}

avx2_fma_dispatch! {
    /// One row of 4:2:0 YUV with interleaved chroma (`uv` = U, V, U, V, …); chroma
    /// sample `x / 2` (nearest, left-sited) serves pixels `x` and `x + 1`.
    fn yuv_row(
        luma: &[u8],
        uv: &[u8],
        k: &YuvCoefficients,
        r: &mut [f32],
        g: &mut [f32],
        b: &mut [f32],
    ) {
        let convert = |yy: f32, cb: f32, cr: f32| {
            let yy = (yy - k.y_offset) * k.y_scale;
            (
                (yy + k.r_v * cr).clamp(0.0, 1.0),
                (yy + k.g_u * cb + k.g_v * cr).clamp(0.0, 1.0),
                (yy + k.b_u * cb).clamp(0.0, 1.0),
            )
        };
        // Blocks of 8 pixels (4 chroma pairs) with fixed indices, which the compiler
        // turns into shuffles and 8-wide arithmetic.
        const N: usize = 8;
        let blocks = luma.len() / N;
        for i in 0..blocks {
            let (lum, chroma) = (&luma[i * N..][..N], &uv[i * N..][..N]);
            let (rb, gb, bb) = (
                &mut r[i * N..][..N],
                &mut g[i * N..][..N],
                &mut b[i * N..][..N],
            );
            for x in 0..N {
                let cb = f32::from(chroma[x & !1]) - 128.0;
                let cr = f32::from(chroma[x | 1]) - 128.0;
                (rb[x], gb[x], bb[x]) = convert(f32::from(lum[x]), cb, cr);
            }
        }
        for x in blocks * N..luma.len() {
            let cb = f32::from(uv[x & !1]) - 128.0;
            let cr = f32::from(uv[x | 1]) - 128.0;
            (r[x], g[x], b[x]) = convert(f32::from(luma[x]), cb, cr);
        }
    }
}
