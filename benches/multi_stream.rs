// SPDX-License-Identifier: MPL-2.0
//! Many cameras, one model: eight `videotestsrc` streams at 224×224 into one
//! shared model instance (`model-instance-id`, batch-size 8) against eight
//! separate elements with batch-size 8 and with batch-size 1, same model, in one
//! run: aggregate frames/s, mean and max frame latency through the element,
//! mean frames per forward, each with its ratio to the separate batch-8 case.
//!
//!     cargo bench --bench multi_stream [-- MODEL_DIR [FRAMES_PER_STREAM] [FPS]]
//!
//! MODEL_DIR defaults to target/bench/models/vitb-bench (made by
//! benches/model-vs-pytorch.sh), else the tiny test checkpoint. FPS > 0 makes the
//! sources live at that rate (cameras); 0 (default) runs them as fast as the
//! model takes them (files).

mod common;

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use candle_core::DType;
use gst::prelude::*;

const STREAMS: usize = 8;
const SIZE: usize = 224;

/// One configuration's results.
struct Run {
    frames_per_s: f64,
    mean_latency: Duration,
    max_latency: Duration,
    frames_per_forward: f64,
}

/// Frame arrival times at each element's sink pad, by (stream, PTS).
type Arrivals = Arc<Mutex<HashMap<(usize, u64), Instant>>>;

fn run(model: &str, frames: usize, fps: u32, props: &str) -> Run {
    let live = if fps > 0 { "is-live=true" } else { "" };
    let rate = fps.max(30);
    let launch: String = (0..STREAMS)
        .map(|i| {
            format!(
                "videotestsrc {live} num-buffers={frames} pattern=ball ! \
                 video/x-raw,format=RGB,width={SIZE},height={SIZE},framerate={rate}/1 ! \
                 radioembed name=e{i} model={model} device=cpu resolution={SIZE} {props} \
                 ! fakesink sync=false "
            )
        })
        .collect();
    let pipeline = gst::parse::launch(&launch).unwrap();
    let bin = pipeline.downcast_ref::<gst::Bin>().unwrap();
    let arrivals: Arrivals = Arc::default();
    let latencies = Arc::new(Mutex::new(Vec::new()));
    for i in 0..STREAMS {
        let element = bin.by_name(&format!("e{i}")).unwrap();
        let seen = arrivals.clone();
        element
            .static_pad("sink")
            .unwrap()
            .add_probe(gst::PadProbeType::BUFFER, move |_, info| {
                if let Some(pts) = info.buffer().and_then(|b| b.pts()) {
                    seen.lock()
                        .unwrap()
                        .insert((i, pts.nseconds()), Instant::now());
                }
                gst::PadProbeReturn::Ok
            });
        let (seen, out) = (arrivals.clone(), latencies.clone());
        element
            .static_pad("src")
            .unwrap()
            .add_probe(gst::PadProbeType::BUFFER, move |_, info| {
                let arrived = info
                    .buffer()
                    .and_then(|b| b.pts())
                    .and_then(|pts| seen.lock().unwrap().remove(&(i, pts.nseconds())));
                if let Some(arrived) = arrived {
                    out.lock().unwrap().push(arrived.elapsed());
                }
                gst::PadProbeReturn::Ok
            });
    }
    let started = Instant::now();
    common::play_to_eos(&pipeline);
    let took = started.elapsed();
    let (mut embedded, mut forwards) = (0u64, 0u64);
    for i in 0..STREAMS {
        let stats = bin
            .by_name(&format!("e{i}"))
            .unwrap()
            .property::<gst::Structure>("stats");
        embedded += stats.get::<u64>("frames-embedded").unwrap();
        // Shared: the instance's forwards (the same for every member).
        forwards = match stats.get::<u64>("instance-forwards") {
            Ok(n) => n,
            Err(_) => forwards + stats.get::<u64>("batches").unwrap(),
        };
    }
    pipeline.set_state(gst::State::Null).unwrap();
    let latencies = latencies.lock().unwrap();
    Run {
        frames_per_s: embedded as f64 / took.as_secs_f64(),
        mean_latency: latencies.iter().sum::<Duration>() / latencies.len().max(1) as u32,
        max_latency: latencies.iter().copied().max().unwrap_or_default(),
        frames_per_forward: embedded as f64 / forwards.max(1) as f64,
    }
}

fn main() {
    let args = common::start();
    let model_dir = common::model_dir(args.first());
    let frames: usize = args.get(1).map_or(16, |f| f.parse().unwrap());
    let fps: u32 = args.get(2).map_or(0, |f| f.parse().unwrap());
    // Held for the whole run: every element shares this instance instead of loading.
    let _model = gstradio::model_store::shared_model(&model_dir, "cpu", DType::F32, None).unwrap();
    let model = model_dir.display().to_string();
    let timeout = "batch-timeout=100000000";
    let configs = [
        (
            "8 separate, batch-size=8",
            format!("batch-size=8 {timeout}"),
        ),
        (
            "1 shared instance, batch-size=8",
            format!("batch-size=8 {timeout} model-instance-id=bench"),
        ),
        ("8 separate, batch-size=1", "batch-size=1".to_string()),
    ];
    println!(
        "{STREAMS} streams x {frames} frames, {SIZE}x{SIZE} RGB, {}, model {model}",
        if fps > 0 {
            format!("live at {fps} fps each")
        } else {
            "as fast as possible".into()
        }
    );
    // Warm-up, then each configuration once.
    run(&model, 2, 0, &configs[0].1);
    let results: Vec<Run> = configs
        .iter()
        .map(|(_, props)| run(&model, frames, fps, props))
        .collect();
    let base = &results[0];
    for ((name, _), r) in configs.iter().zip(&results) {
        println!(
            "{name:34} {:8.1} frames/s ({:.2}x)  latency mean {:7.1} ms ({:.2}x) \
             max {:7.1} ms  {:4.1} frames/forward",
            r.frames_per_s,
            r.frames_per_s / base.frames_per_s,
            r.mean_latency.as_secs_f64() * 1e3,
            r.mean_latency.as_secs_f64() / base.mean_latency.as_secs_f64(),
            r.max_latency.as_secs_f64() * 1e3,
            r.frames_per_forward,
        );
    }
}
