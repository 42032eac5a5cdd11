// SPDX-License-Identifier: MPL-2.0
//! CPU preprocessing against PyTorch's `interpolate(mode="bilinear",
//! align_corners=False, antialias=…)` (fixture `preprocess/`), and every pixel
//! format against "convert to RGB first, then resize".

mod common;

use candle_core::{Device, Tensor};
use common::{cases, max_abs_diff, max_abs_diff_slices, noise};
use gstradio::preprocess::{
    Colorimetry, CpuPreprocessor, FrameLayout, Normalization, PixelFormat, YuvMatrix,
};
use gstradio::resample::resize_planar;

/// Max abs error allowed against PyTorch's resize (values in 0..1).
const RESIZE_TOL: f32 = 2e-5;

fn fixture_image() -> (Vec<u8>, usize, usize) {
    let cases = cases("preprocess");
    let image = &cases["image_u8_hwc"];
    let (h, w, _) = image.dims3().unwrap();
    (image.flatten_all().unwrap().to_vec1::<u8>().unwrap(), h, w)
}

#[test]
fn resize_matches_pytorch_with_and_without_antialias() {
    let cases = cases("preprocess");
    let (data, h, w) = fixture_image();
    let mut layout = FrameLayout::packed(PixelFormat::Rgb, w, h);
    layout.strides[0] = w * 3; // 393 bytes: rows not padded, as in the fixture.
    let mut pre = CpuPreprocessor::new();
    let mut checked = 0;
    for (key, expected) in &cases {
        let Some(spec) = key.strip_prefix("resize_") else {
            continue;
        };
        let (size, aa) = spec.split_once("_antialias_").unwrap();
        let (th, tw) = size.split_once('x').unwrap();
        let target = (th.parse().unwrap(), tw.parse().unwrap());
        let mut out = vec![0f32; 3 * target.0 * target.1];
        pre.process(
            &data,
            &layout,
            target,
            aa == "1",
            &Normalization::IDENTITY,
            &mut out,
        )
        .unwrap();
        let got = Tensor::from_vec(out, (1, 3, target.0, target.1), &Device::Cpu).unwrap();
        let err = max_abs_diff(&got, expected);
        assert!(err <= RESIZE_TOL, "{key}: off by {err}");
        checked += 1;
    }
    assert_eq!(checked, 6, "expected three sizes with antialias on and off");
}

/// A frame of `format` with padded strides (8 extra bytes per row) and random content.
fn random_frame(format: PixelFormat, width: usize, height: usize) -> (Vec<u8>, FrameLayout) {
    let mut layout = FrameLayout::packed(format, width, height);
    let mut offset = 0;
    let ch = height.div_ceil(2);
    for plane in 0..format.plane_count() {
        layout.strides[plane] += 8;
        layout.offsets[plane] = offset;
        let rows = if plane == 0 { height } else { ch };
        offset += layout.strides[plane] * rows;
    }
    layout.colorimetry = Colorimetry {
        matrix: YuvMatrix::Bt601,
        full_range: false,
    };
    (noise(offset, width as u32 * 31 + height as u32), layout)
}

#[test]
fn every_format_equals_convert_then_resize() {
    let mut pre = CpuPreprocessor::new();
    for format in PixelFormat::ALL {
        for (w, h) in [(97, 131), (64, 48), (33, 17)] {
            let (data, layout) = random_frame(format, w, h);
            let mut rgb = vec![0f32; 3 * h * w];
            pre.process(
                &data,
                &layout,
                (h, w),
                false,
                &Normalization::IDENTITY,
                &mut rgb,
            )
            .unwrap();
            assert!(
                rgb.iter().all(|v| (0.0..=1.0).contains(v)),
                "{format:?} out of range"
            );
            for (target, aa) in [((48, 64), true), ((160, 208), false), ((16, 16), true)] {
                let expected = resize_planar(&rgb, 3, (h, w), target, aa);
                let mut got = vec![0f32; 3 * target.0 * target.1];
                pre.process(
                    &data,
                    &layout,
                    target,
                    aa,
                    &Normalization::IDENTITY,
                    &mut got,
                )
                .unwrap();
                let err = max_abs_diff_slices(&got, &expected);
                assert!(
                    err <= 1e-5,
                    "{format:?} {w}x{h} -> {target:?}: off by {err}"
                );
            }
        }
    }
}

#[test]
fn normalization_is_fused() {
    let (data, layout) = random_frame(PixelFormat::Bgrx, 40, 30);
    let norm = Normalization {
        mean: [0.481_454_7, 0.457_827_5, 0.408_210_7],
        std: [0.268_629_5, 0.261_302_6, 0.275_777_1],
    };
    let mut pre = CpuPreprocessor::new();
    let mut plain = vec![0f32; 3 * 32 * 48];
    let mut normed = plain.clone();
    pre.process(
        &data,
        &layout,
        (32, 48),
        true,
        &Normalization::IDENTITY,
        &mut plain,
    )
    .unwrap();
    pre.process(&data, &layout, (32, 48), true, &norm, &mut normed)
        .unwrap();
    for (i, (p, n)) in plain.iter().zip(&normed).enumerate() {
        let c = i / (32 * 48);
        let expected = (p - norm.mean[c]) / norm.std[c];
        assert!((n - expected).abs() < 1e-5, "value {i}: {n} vs {expected}");
    }
}

#[test]
fn gray_and_packed_channel_orders() {
    let mut pre = CpuPreprocessor::new();
    // One pixel, 4 bytes: for xBGR the bytes are x, B, G, R.
    let layout = FrameLayout::packed(PixelFormat::Xbgr, 1, 1);
    let mut out = vec![0f32; 3 * 16 * 16];
    pre.process(
        &[9, 51, 102, 255],
        &layout,
        (16, 16),
        false,
        &Normalization::IDENTITY,
        &mut out,
    )
    .unwrap();
    assert_eq!((out[0], out[256], out[512]), (1.0, 0.4, 0.2));
    let layout = FrameLayout::packed(PixelFormat::Gray8, 1, 1);
    pre.process(
        &[51, 0, 0, 0],
        &layout,
        (16, 16),
        false,
        &Normalization::IDENTITY,
        &mut out,
    )
    .unwrap();
    assert_eq!((out[0], out[256], out[512]), (0.2, 0.2, 0.2));
}

#[test]
fn yuv_limited_range_extremes() {
    let mut pre = CpuPreprocessor::new();
    let layout = FrameLayout::packed(PixelFormat::I420, 2, 2);
    let mut out = vec![0f32; 3 * 16 * 16];
    // Y 235 / neutral chroma is white, Y 16 is black, in limited range.
    let white = [235, 235, 0, 0, 235, 235, 0, 0, 128, 0, 0, 0, 128, 0, 0, 0];
    pre.process(
        &white,
        &layout,
        (16, 16),
        false,
        &Normalization::IDENTITY,
        &mut out,
    )
    .unwrap();
    assert!(out.iter().all(|&v| (v - 1.0).abs() < 1e-6));
    let black = [16, 16, 0, 0, 16, 16, 0, 0, 128, 0, 0, 0, 128, 0, 0, 0];
    pre.process(
        &black,
        &layout,
        (16, 16),
        false,
        &Normalization::IDENTITY,
        &mut out,
    )
    .unwrap();
    assert!(out.iter().all(|&v| v.abs() < 1e-6));
}

#[test]
fn short_buffers_and_strides_are_refused() {
    let refuse = |data: &[u8], layout: &FrameLayout| {
        let mut out = vec![0f32; 3 * 16 * 16];
        CpuPreprocessor::new()
            .process(
                data,
                layout,
                (16, 16),
                false,
                &Normalization::IDENTITY,
                &mut out,
            )
            .unwrap_err()
            .to_string()
    };
    let layout = FrameLayout::packed(PixelFormat::Nv12, 64, 48);
    assert_eq!(
        refuse(&[0; 100], &layout),
        "frame buffer holds 100 bytes but its 64x48 layout needs 4608"
    );
    let mut narrow = layout.clone();
    narrow.strides[0] = 32;
    assert_eq!(
        refuse(&[0; 5000], &narrow),
        "plane 0 stride 32 is shorter than its 64-byte rows"
    );
}

/// The published 8-bit limited-range codes of 100 % red, green and blue decode to
/// full primaries (within the codes' own rounding, 1.5 / 255).
#[test]
fn yuv_primaries_decode_exactly_for_each_matrix() {
    let cases = [
        (
            YuvMatrix::Bt601,
            [(81, 90, 240), (145, 54, 34), (41, 240, 110)],
        ),
        (
            YuvMatrix::Bt709,
            [(63, 102, 240), (173, 42, 26), (32, 240, 118)],
        ),
        (
            YuvMatrix::Bt2020,
            [(74, 97, 240), (164, 47, 25), (29, 240, 119)],
        ),
    ];
    let mut pre = CpuPreprocessor::new();
    for (matrix, primaries) in cases {
        for (i, (y, u, v)) in primaries.into_iter().enumerate() {
            let mut layout = FrameLayout::packed(PixelFormat::I420, 2, 2);
            layout.colorimetry = Colorimetry {
                matrix,
                full_range: false,
            };
            let frame = [y, y, 0, 0, y, y, 0, 0, u, 0, 0, 0, v, 0, 0, 0];
            let mut out = vec![0f32; 3 * 16 * 16];
            pre.process(
                &frame,
                &layout,
                (16, 16),
                false,
                &Normalization::IDENTITY,
                &mut out,
            )
            .unwrap();
            for c in 0..3 {
                let expected = if c == i { 1.0 } else { 0.0 };
                let got = out[c * 256];
                assert!(
                    (got - expected).abs() <= 1.5 / 255.0,
                    "{matrix:?} primary {i} channel {c}: {got}"
                );
            }
        }
    }
}
