// SPDX-License-Identifier: MPL-2.0
//! The element's own cost per frame: `appsrc ! radioembed ! fakesink` against
//! the same preprocessing and forwards called directly, on the same frames, in
//! one run.
//!
//!     cargo bench --bench element [-- MODEL_DIR [BATCH] [FRAMES]]
//!
//! MODEL_DIR defaults to target/bench/models/vitb-bench (made by
//! benches/model-vs-pytorch.sh), else the tiny test checkpoint; the tiny one
//! keeps the model from hiding the element. Two cases: 224×224 RGB at
//! `resolution=224` (the resize is an identity) and 1920×1080 NV12 at
//! `resolution=512`. The source pushes one frame's memory again and again, so
//! it costs nothing; what the element adds beyond preprocessing and the forward
//! (batching, thread hand-offs, output copies, metas, pushing) is the overhead
//! printed in ms a frame.

mod common;

use std::time::{Duration, Instant};

use candle_core::{DType, Device};
use gst::prelude::*;
use gstradio::model::RadioModel;
use gstradio::preprocess::{
    BatchSpec, Frame, FrameLayout, Normalization, PixelFormat, Preprocessor, SizeLimits, TargetSize,
};

/// One stream the element takes in.
struct Case {
    format: PixelFormat,
    width: usize,
    height: usize,
    resolution: usize,
}

const CASES: [Case; 2] = [
    Case {
        format: PixelFormat::Rgb,
        width: 224,
        height: 224,
        resolution: 224,
    },
    Case {
        format: PixelFormat::Nv12,
        width: 1920,
        height: 1080,
        resolution: 512,
    },
];

/// A case with the one frame both sides run on.
struct Input<'a> {
    case: &'a Case,
    /// One frame of the case's format from `videotestsrc`.
    frame: gst::Buffer,
    /// Its layout, as GStreamer gives it.
    info: gst_video::VideoInfo,
}

/// The case's frame from `videotestsrc`, with its layout.
fn source_frame(case: &Case) -> Input<'_> {
    let pipeline = gst::parse::launch(&format!(
        "videotestsrc num-buffers=1 pattern=ball ! \
         video/x-raw,format={},width={},height={},framerate=30/1 ! appsink name=sink sync=false",
        case.format.gst_name(),
        case.width,
        case.height
    ))
    .unwrap()
    .downcast::<gst::Bin>()
    .unwrap();
    let sink = pipeline.by_name("sink").unwrap();
    pipeline.set_state(gst::State::Playing).unwrap();
    let sample = sink
        .emit_by_name::<Option<gst::Sample>>("pull-sample", &[])
        .unwrap();
    pipeline.set_state(gst::State::Null).unwrap();
    let info = gst_video::VideoInfo::from_caps(sample.caps().unwrap()).unwrap();
    Input {
        case,
        frame: sample.buffer_owned().unwrap(),
        info,
    }
}

fn element_run(model: &str, input: &Input, batch: usize, frames: usize) -> Duration {
    let Input { case, frame, info } = input;
    let pipeline = gst::parse::launch(&format!(
        "appsrc name=src format=time max-bytes=0 ! \
         radioembed model={model} device=cpu resolution={} batch-size={batch} \
         batch-timeout=10000000000 ! fakesink sync=false",
        case.resolution
    ))
    .unwrap()
    .downcast::<gst::Bin>()
    .unwrap();
    let src = pipeline.by_name("src").unwrap();
    src.set_property("caps", info.to_caps().unwrap());
    // The model is already loaded (main holds the shared instance), so the
    // state changes cost no load; time from the first frame queued.
    pipeline.set_state(gst::State::Paused).unwrap();
    let started = Instant::now();
    let frame_duration = gst::ClockTime::from_mseconds(33);
    for i in 0..frames {
        // A new buffer on the same memory: no copy of the pixels.
        let mut buffer = frame.copy();
        let b = buffer.get_mut().unwrap();
        b.set_pts(frame_duration * i as u64);
        b.set_duration(frame_duration);
        let flow = src.emit_by_name::<gst::FlowReturn>("push-buffer", &[&buffer]);
        assert_eq!(flow, gst::FlowReturn::Ok);
    }
    let flow = src.emit_by_name::<gst::FlowReturn>("end-of-stream", &[]);
    assert_eq!(flow, gst::FlowReturn::Ok);
    common::play_to_eos(pipeline.upcast_ref());
    let took = started.elapsed();
    pipeline.set_state(gst::State::Null).unwrap();
    took
}

/// The same work called directly: preprocessing each batch, then its forward.
fn bare_run(model: &RadioModel, input: &Input, batch: usize, frames: usize) -> Duration {
    let Input { case, frame, info } = input;
    let mut layout = FrameLayout::packed(case.format, case.width, case.height);
    for plane in 0..info.n_planes() as usize {
        layout.strides[plane] = info.stride()[plane] as usize;
        layout.offsets[plane] = info.offset()[plane];
    }
    let config = &model.info().config;
    let limits = SizeLimits {
        step: config.resolution_step(),
        max: config.max_resolution,
    };
    let dims = &model.info().dims;
    let spec = BatchSpec {
        size: TargetSize::ShortSide(case.resolution)
            .resolve(case.width, case.height, limits)
            .unwrap(),
        antialias: true,
        norm: Normalization {
            mean: dims.norm_mean,
            std: dims.norm_std,
        },
        dtype: DType::F32,
    };
    let mut pre = Preprocessor::for_device(&Device::Cpu).unwrap();
    let map = frame.map_readable().unwrap();
    let batch_frames = vec![
        Frame {
            data: &map,
            layout: &layout,
        };
        batch
    ];
    let started = Instant::now();
    for _ in 0..frames / batch {
        let input = pre.batch(&batch_frames, &spec).unwrap();
        model.forward_normalized_with(&input, true).unwrap();
    }
    started.elapsed()
}

fn main() {
    let args = common::start();
    let model_dir = common::model_dir(args.first());
    let batch: usize = args.get(1).map_or(8, |b| b.parse().unwrap());
    let frames: usize = args.get(2).map_or(4 * batch, |f| f.parse().unwrap());
    // Held for the whole run: the elements share this instance instead of loading.
    let model = gstradio::model_store::shared_model(&model_dir, "cpu", DType::F32, None).unwrap();
    let model_str = model_dir.display().to_string();
    for case in &CASES {
        let input = source_frame(case);
        // Warm up both paths, then alternate A B B A so that drifts in machine
        // speed hit both sides alike; report the medians.
        element_run(&model_str, &input, batch, batch);
        bare_run(&model, &input, batch, batch);
        let (mut e, mut b) = (Vec::new(), Vec::new());
        for round in 0..6 {
            let element = || element_run(&model_str, &input, batch, frames);
            let bare = || bare_run(&model, &input, batch, frames);
            if round % 2 == 0 {
                e.push(element());
                b.push(bare());
            } else {
                b.push(bare());
                e.push(element());
            }
        }
        e.sort();
        b.sort();
        let fps = |d: Duration| frames as f64 / d.as_secs_f64();
        let overhead_ms = (e[3].as_secs_f64() - b[3].as_secs_f64()) * 1e3 / frames as f64;
        println!(
            "{} {} {}x{} resolution={} batch {batch}, {frames} frames: element {:.1} frames/s, \
             preprocess + forward {:.1} frames/s; ratio {:.3}; element overhead {overhead_ms:.3} ms a frame",
            model_dir.display(),
            case.format.gst_name(),
            case.width,
            case.height,
            case.resolution,
            fps(e[3]),
            fps(b[3]),
            e[3].as_secs_f64() / b[3].as_secs_f64()
        );
    }
}
