// SPDX-License-Identifier: MPL-2.0
//! What publishing costs, with SO400M-sized summaries (2304 f32):
//!
//! 1. messages serialised per second in each vector encoding;
//! 2. the CPU `radiometapublish` (method=file to /dev/null, its thread included)
//!    adds per frame over `identity`, both fed the same buffers carrying
//!    `RadioEmbedMeta` in one run, against the budget of 1 % of one core per
//!    stream at 30 fps (333 µs a frame).
//!
//!     cargo bench --bench publish [-- FRAMES]

mod common;

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use gst::prelude::*;
use gstradio::meta::{Embedding, MetaDtype};
use gstradio::publish::{FrameInfo, MessageOptions, VectorEncoding, frame_message};

const DIM: usize = 2304;
/// 1 % of one core for a stream of 30 frames a second.
const BUDGET: Duration = Duration::from_micros(10_000 / 30);

fn embedding(frame_index: u64) -> Embedding {
    Embedding {
        summary: Some((0..DIM).map(|i| ((i as f32) * 0.37).sin() * 3.0).collect()),
        spatial: None,
        spatial_dim: 0,
        grid: (0, 0),
        dtype: MetaDtype::F32,
        model: "nvidia/C-RADIOv4-SO400M".into(),
        input_size: (912, 512),
        frame_index,
        source_id: "cam-1".into(),
        adaptors: Vec::new(),
    }
}

/// This process's user + system CPU time so far (all threads).
fn cpu_time() -> Duration {
    let stat = std::fs::read_to_string("/proc/self/stat").unwrap();
    let fields: Vec<&str> = stat
        .rsplit_once(')')
        .unwrap()
        .1
        .split_whitespace()
        .collect();
    // utime and stime, fields 14 and 15 of stat(5), in clock ticks of 1/100 s.
    let ticks: u64 = fields[11].parse::<u64>().unwrap() + fields[12].parse::<u64>().unwrap();
    Duration::from_millis(ticks * 10)
}

/// CPU time of `frames` buffers, each given a `RadioEmbedMeta` by a probe,
/// through `element`.
fn element_cpu(element: &str, frames: u64) -> Duration {
    let pipeline = gst::parse::launch(&format!(
        "videotestsrc num-buffers={frames} ! video/x-raw,width=16,height=16,framerate=30/1 ! \
         identity name=tag ! {element} ! fakesink sync=false"
    ))
    .unwrap()
    .downcast::<gst::Pipeline>()
    .unwrap();
    let tag = pipeline.by_name("tag").unwrap();
    let index = AtomicU64::new(0);
    tag.static_pad("src")
        .unwrap()
        .add_probe(gst::PadProbeType::BUFFER, move |_, info| {
            if let Some(gst::PadProbeData::Buffer(buffer)) = &mut info.data {
                let i = index.fetch_add(1, Ordering::Relaxed);
                embedding(i).attach(buffer.make_mut()).unwrap();
            }
            gst::PadProbeReturn::Ok
        });
    let before = cpu_time();
    common::play_to_eos(pipeline.upcast_ref());
    let took = cpu_time() - before;
    pipeline.set_state(gst::State::Null).unwrap();
    took
}

fn main() {
    gst::init().unwrap();
    gstradio::plugin_register_static().unwrap();
    let frames: u64 = std::env::args()
        .skip(1)
        .find(|a| !a.starts_with('-'))
        .and_then(|a| a.parse().ok())
        .unwrap_or(2400);
    println!("CPU: {}", common::cpu_model());

    let e = embedding(0);
    let frame = FrameInfo {
        source_id: "cam-1".into(),
        stream_time_ns: Some(1),
        pts_ns: Some(1),
        timestamp: None,
    };
    for encoding in [
        VectorEncoding::Json,
        VectorEncoding::Base64F32,
        VectorEncoding::Base64F16,
    ] {
        let options = MessageOptions {
            encoding,
            spatial: false,
        };
        let started = Instant::now();
        let mut bytes = 0;
        for _ in 0..frames {
            bytes += frame_message(&e, &frame, &[], options).len();
        }
        let took = started.elapsed();
        println!(
            "serialise {encoding:?}: {:.0} messages/s, {:.1} µs and {} bytes a message",
            frames as f64 / took.as_secs_f64(),
            took.as_secs_f64() * 1e6 / frames as f64,
            bytes as u64 / frames
        );
    }

    for encoding in ["json", "base64-f16"] {
        // Interleaved pairs, median of three, so drift hits both sides.
        let mut added = Vec::new();
        for _ in 0..3 {
            let base = element_cpu("identity", frames);
            let publish = element_cpu(
                &format!("radiometapublish location=/dev/null vector-encoding={encoding}"),
                frames,
            );
            added.push(publish.saturating_sub(base) / frames as u32);
        }
        added.sort();
        let per_frame = added[1];
        println!(
            "radiometapublish {encoding}: {:.1} µs of CPU a frame over identity \
             (median of 3), {:.2} of the budget of {} µs (1 % of a core per 30 fps stream)",
            per_frame.as_secs_f64() * 1e6,
            per_frame.as_secs_f64() / BUDGET.as_secs_f64(),
            BUDGET.as_micros()
        );
    }
}
