// SPDX-License-Identifier: MPL-2.0
//! Element overhead: frames/s of `videotestsrc ! radioembed ! fakesink` against the
//! same number of bare model forwards on the same input size, in one run.
//!
//!     cargo bench --bench element [-- MODEL_DIR [BATCH] [FRAMES]]
//!
//! MODEL_DIR defaults to target/bench/models/vitb-bench (made by
//! benches/model-vs-pytorch.sh), else the tiny test checkpoint. Frames are RGB at
//! the model input size (224×224), so the element's resize is an identity and the
//! ratio shows what batching, preprocessing, meta and pushing cost on top of the
//! model.

mod common;

use std::time::{Duration, Instant};

use candle_core::{DType, Device, Tensor};
use gst::prelude::*;
use gstradio::model::RadioModel;

const SIZE: usize = 224;

fn element_run(model: &str, batch: usize, frames: usize) -> Duration {
    let pipeline = gst::parse::launch(&format!(
        "videotestsrc num-buffers={frames} pattern=ball ! \
         video/x-raw,format=RGB,width={SIZE},height={SIZE},framerate=30/1 ! \
         radioembed model={model} device=cpu resolution={SIZE} batch-size={batch} \
         batch-timeout=10000000000 ! fakesink sync=false"
    ))
    .unwrap();
    // The model is already loaded (main holds the shared instance), so READY →
    // PLAYING costs no load; preroll runs the first batch, so time from here.
    pipeline.set_state(gst::State::Ready).unwrap();
    let started = Instant::now();
    common::play_to_eos(&pipeline);
    let took = started.elapsed();
    pipeline.set_state(gst::State::Null).unwrap();
    took
}

fn bare_run(model: &RadioModel, batch: usize, frames: usize) -> Duration {
    let input = Tensor::rand(0f32, 1f32, (batch, 3, SIZE, SIZE), &Device::Cpu).unwrap();
    let started = Instant::now();
    for _ in 0..frames / batch {
        model.forward_normalized(&input).unwrap();
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
    // Warm up both paths, then alternate A B B A so that drifts in machine speed
    // hit both sides alike; report the medians.
    element_run(&model_str, batch, batch);
    bare_run(&model, batch, batch);
    let (mut e, mut b) = (Vec::new(), Vec::new());
    for round in 0..6 {
        if round % 2 == 0 {
            e.push(element_run(&model_str, batch, frames));
            b.push(bare_run(&model, batch, frames));
        } else {
            b.push(bare_run(&model, batch, frames));
            e.push(element_run(&model_str, batch, frames));
        }
    }
    e.sort();
    b.sort();
    let fps = |d: Duration| frames as f64 / d.as_secs_f64();
    // What the element adds to each frame beyond the forward: preprocessing,
    // batching, metas, pushing, the hand-offs between threads.
    let overhead_ms = (e[3].as_secs_f64() - b[3].as_secs_f64()) * 1e3 / frames as f64;
    println!(
        "{} {SIZE}x{SIZE} batch {batch}, {frames} frames: element {:.2} frames/s, bare model {:.2} frames/s; \
         element time / model time {:.3}; element overhead {overhead_ms:.3} ms a frame",
        model_dir.display(),
        fps(e[3]),
        fps(b[3]),
        e[3].as_secs_f64() / b[3].as_secs_f64()
    );
}
