// SPDX-License-Identifier: MPL-2.0
//! CPU preprocessing benchmark: 1920×1080 NV12 frames → 912×512 normalised f32
//! (this crate) against GStreamer's `videoconvert ! videoscale method=bilinear` to
//! 912×512 RGB on the same frames, both with 2 threads, in one run.
//!
//!     cargo bench --bench preprocess

use std::time::{Duration, Instant};

use gst::prelude::*;
use gstradio::preprocess::{CpuPreprocessor, FrameLayout, Normalization, PixelFormat};

const FRAMES: usize = 60;
const W: usize = 1920;
const H: usize = 1080;
const TARGET: (usize, usize) = (512, 912);

fn source_frames() -> (Vec<gst::Buffer>, gst_video::VideoInfo) {
    let pipeline = gst::parse::launch(&format!(
        "videotestsrc num-buffers={FRAMES} pattern=ball ! \
         video/x-raw,format=NV12,width={W},height={H},framerate=30/1 ! appsink name=sink sync=false"
    ))
    .unwrap()
    .downcast::<gst::Bin>()
    .unwrap();
    let sink = pipeline.by_name("sink").unwrap();
    pipeline.set_state(gst::State::Playing).unwrap();
    let mut frames = Vec::new();
    let mut info = None;
    while let Some(sample) = sink.emit_by_name::<Option<gst::Sample>>("pull-sample", &[]) {
        info.get_or_insert_with(|| {
            gst_video::VideoInfo::from_caps(sample.caps().unwrap()).unwrap()
        });
        frames.push(sample.buffer_owned().unwrap());
    }
    pipeline.set_state(gst::State::Null).unwrap();
    (frames, info.unwrap())
}

fn ours(frames: &[gst::Buffer], info: &gst_video::VideoInfo) -> Duration {
    let mut layout = FrameLayout::packed(PixelFormat::Nv12, W, H);
    for i in 0..2 {
        layout.strides[i] = info.stride()[i] as usize;
        layout.offsets[i] = info.offset()[i];
    }
    let norm = Normalization {
        mean: [0.481_454_7, 0.457_827_5, 0.408_210_7],
        std: [0.268_629_5, 0.261_302_6, 0.275_777_1],
    };
    let mut pre = CpuPreprocessor::new();
    let mut out = vec![0f32; 3 * TARGET.0 * TARGET.1];
    let started = Instant::now();
    for frame in frames {
        let map = frame.map_readable().unwrap();
        pre.process(&map, &layout, TARGET, true, &norm, &mut out)
            .unwrap();
    }
    started.elapsed()
}

fn gstreamer(frames: &[gst::Buffer], info: &gst_video::VideoInfo) -> Duration {
    let pipeline = gst::parse::launch(&format!(
        "appsrc name=src format=time ! videoconvert n-threads=2 ! \
         videoscale method=bilinear n-threads=2 ! \
         video/x-raw,format=RGB,width={},height={} ! fakesink sync=false",
        TARGET.1, TARGET.0
    ))
    .unwrap()
    .downcast::<gst::Bin>()
    .unwrap();
    let src = pipeline.by_name("src").unwrap();
    src.set_property("caps", info.to_caps().unwrap());
    pipeline.set_state(gst::State::Playing).unwrap();
    let started = Instant::now();
    for frame in frames {
        let _ = src.emit_by_name::<gst::FlowReturn>("push-buffer", &[frame]);
    }
    let _ = src.emit_by_name::<gst::FlowReturn>("end-of-stream", &[]);
    let bus = pipeline.bus().unwrap();
    bus.timed_pop_filtered(
        gst::ClockTime::NONE,
        &[gst::MessageType::Eos, gst::MessageType::Error],
    )
    .unwrap();
    let took = started.elapsed();
    pipeline.set_state(gst::State::Null).unwrap();
    took
}

/// The GPU path on the same frames (feature `cuda`, when a GPU is usable):
/// milliseconds per frame and effective bandwidth (frame bytes read + output
/// bytes written per second).
#[cfg(feature = "cuda")]
fn gpu(frames: &[gst::Buffer], info: &gst_video::VideoInfo) {
    use candle_core::DType;
    use gstradio::preprocess::cuda::GpuPreprocessor;
    let device = match gstradio::model::parse_device("cuda:0") {
        Ok(device) => device,
        Err(err) => return println!("GPU: skipped ({err})"),
    };
    let mut layout = FrameLayout::packed(PixelFormat::Nv12, W, H);
    for i in 0..2 {
        layout.strides[i] = info.stride()[i] as usize;
        layout.offsets[i] = info.offset()[i];
    }
    let maps: Vec<_> = frames.iter().map(|f| f.map_readable().unwrap()).collect();
    let batch: Vec<&[u8]> = maps.iter().take(8).map(|m| m.as_slice()).collect();
    let mut pre = GpuPreprocessor::new(&device).unwrap();
    for dtype in [DType::F32, DType::BF16] {
        let run = |pre: &mut GpuPreprocessor| {
            let t = pre
                .process_batch(
                    &batch,
                    &layout,
                    TARGET,
                    true,
                    &Normalization::IDENTITY,
                    dtype,
                )
                .unwrap();
            device.synchronize().unwrap();
            t
        };
        run(&mut pre);
        let started = Instant::now();
        let rounds = 20;
        for _ in 0..rounds {
            run(&mut pre);
        }
        let per_frame = started.elapsed().as_secs_f64() / (rounds * batch.len()) as f64;
        let bytes = layout.min_size() + 3 * TARGET.0 * TARGET.1 * dtype.size_in_bytes();
        println!(
            "GPU {dtype:?}: {:.3} ms/frame (upload included), {:.1} GB/s effective",
            per_frame * 1000.0,
            bytes as f64 / per_frame / 1e9
        );
    }
}

fn main() {
    gst::init().unwrap();
    rayon::ThreadPoolBuilder::new()
        .num_threads(2)
        .build_global()
        .unwrap();
    let (frames, info) = source_frames();
    // Warm up both (buffers, plans, code paths), then alternate rounds.
    ours(&frames[..4], &info);
    gstreamer(&frames[..4], &info);
    let (mut a, mut b) = (Vec::new(), Vec::new());
    for _ in 0..5 {
        a.push(ours(&frames, &info));
        b.push(gstreamer(&frames, &info));
    }
    a.sort();
    b.sort();
    let per_frame = |d: Duration| d.as_secs_f64() * 1000.0 / FRAMES as f64;
    let (ours_ms, gst_ms) = (per_frame(a[2]), per_frame(b[2]));
    println!(
        "1920x1080 NV12 -> 912x512: radioembed preprocess {ours_ms:.2} ms/frame (f32, normalised, antialiased), \
         videoconvert ! videoscale {gst_ms:.2} ms/frame (RGB u8, bilinear); ratio {:.2}",
        ours_ms / gst_ms
    );
    #[cfg(feature = "cuda")]
    gpu(&frames, &info);
}
