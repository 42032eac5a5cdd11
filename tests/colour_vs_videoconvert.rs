// SPDX-License-Identifier: MPL-2.0
//! The CPU path's colour conversion (at the frame's own size, before
//! normalisation) against GStreamer's `videoconvert` on the same frames.
//!
//! videoconvert is itself not exact: its 8-bit path maps limited-range Y=128 to
//! RGB 128 where BT.601/709 give 130.4, and its 16-bit path (compared here, as
//! ARGB64 with sRGB colorimetry) is within about 2.1 code values of the standard
//! formulas. The tolerance below is that measured gap; the exact formulas are
//! checked in `preprocess_fixtures.rs` on known colours.

mod common;

use gst::prelude::*;
use gstradio::preprocess::{
    Colorimetry, CpuPreprocessor, FrameLayout, Normalization, PixelFormat, YuvMatrix,
};

/// videoconvert's own fixed-point error (up to 2.11 codes seen, BT.709 SMPTE bars).
const TOL: f32 = 2.5 / 255.0;

fn pull(sink: &gst::Element) -> gst::Sample {
    sink.emit_by_name::<Option<gst::Sample>>("pull-sample", &[])
        .expect("a sample")
}

/// Largest difference between our RGB and videoconvert's for one configuration.
fn compare(format: &str, colorimetry: &str, pattern: &str, width: usize, height: usize) -> f32 {
    let launch = format!(
        "videotestsrc num-buffers=1 pattern={pattern} ! \
         video/x-raw,format={format},width={width},height={height},colorimetry={colorimetry} ! \
         tee name=t t. ! queue ! appsink name=raw sync=false \
         t. ! queue ! videoconvert dither=none chroma-mode=none ! \
         video/x-raw,format=ARGB64,colorimetry=sRGB ! appsink name=rgb sync=false"
    );
    let pipeline = gst::parse::launch(&launch)
        .unwrap()
        .downcast::<gst::Bin>()
        .unwrap();
    pipeline.set_state(gst::State::Playing).unwrap();
    let raw = pull(&pipeline.by_name("raw").unwrap());
    let rgb = pull(&pipeline.by_name("rgb").unwrap());
    pipeline.set_state(gst::State::Null).unwrap();

    let info = gst_video::VideoInfo::from_caps(raw.caps().unwrap()).unwrap();
    let c = info.colorimetry();
    let layout = FrameLayout {
        format: match format {
            "NV12" => PixelFormat::Nv12,
            "I420" => PixelFormat::I420,
            other => panic!("no mapping for {other}"),
        },
        width,
        height,
        strides: [0, 1, 2].map(|i| info.stride().get(i).map_or(0, |&s| s as usize)),
        offsets: [0, 1, 2].map(|i| info.offset().get(i).copied().unwrap_or(0)),
        colorimetry: Colorimetry {
            matrix: match c.matrix() {
                gst_video::VideoColorMatrix::Bt709 => YuvMatrix::Bt709,
                gst_video::VideoColorMatrix::Bt2020 => YuvMatrix::Bt2020,
                _ => YuvMatrix::Bt601,
            },
            full_range: c.range() == gst_video::VideoColorRange::Range0_255,
        },
    };
    let raw_map = raw.buffer().unwrap().map_readable().unwrap();
    let mut ours = vec![0f32; 3 * width * height];
    CpuPreprocessor::new()
        .process(
            &raw_map,
            &layout,
            (height, width),
            false,
            &Normalization::IDENTITY,
            &mut ours,
        )
        .unwrap();

    let rgb_info = gst_video::VideoInfo::from_caps(rgb.caps().unwrap()).unwrap();
    let stride = rgb_info.stride()[0] as usize;
    let rgb_map = rgb.buffer().unwrap().map_readable().unwrap();
    let plane = width * height;
    let mut worst = 0f32;
    for y in 0..height {
        for x in 0..width {
            for ch in 0..3 {
                let at = y * stride + x * 8 + 2 * (ch + 1);
                let theirs =
                    f32::from(u16::from_le_bytes([rgb_map[at], rgb_map[at + 1]])) / 65535.0;
                let mine = ours[ch * plane + y * width + x];
                worst = worst.max((theirs - mine).abs());
            }
        }
    }
    worst
}

#[test]
fn yuv_matches_videoconvert_for_every_matrix_and_range() {
    gst::init().unwrap();
    let mut failures = Vec::new();
    for format in ["NV12", "I420"] {
        for colorimetry in ["bt601", "bt709", "bt2020", "jpeg"] {
            for pattern in ["smpte", "ball", "snow"] {
                for (w, h) in [(97, 131), (64, 48)] {
                    let worst = compare(format, colorimetry, pattern, w, h);
                    if worst > TOL {
                        failures.push(format!(
                            "{format} {colorimetry} {pattern} {w}x{h}: {:.2} codes",
                            worst * 255.0
                        ));
                    }
                }
            }
        }
    }
    assert!(
        failures.is_empty(),
        "off by more than 2.5 codes:\n{}",
        failures.join("\n")
    );
}
