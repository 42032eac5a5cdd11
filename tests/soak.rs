// SPDX-License-Identifier: MPL-2.0
//! Soak tests, too long for the default run: `scripts/soak.sh` runs them.
//! 1000 NULL → PLAYING → NULL cycles and 10,000 frames through radioembed, the
//! process's resident size sampled as they go; it must stay flat (within 16 MiB
//! of the first sample after warming up). Alone in their own test binary, run
//! one at a time, so no other test moves the resident size.

mod common;

use gst::prelude::*;

/// Largest growth of the resident size over the first sample, in KiB.
const BOUND_KB: u64 = 16 * 1024;

fn pipeline(frames: u32) -> gst::Element {
    common::init();
    gst::parse::launch(&format!(
        "videotestsrc num-buffers={frames} ! video/x-raw,width=64,height=48 ! \
         radioembed model={} resolution=32 batch-size=4 ! fakesink",
        common::fixture("tiny-so400m").display()
    ))
    .unwrap()
}

/// Prints the samples and checks that none grew past the bound.
fn assert_flat(what: &str, samples: &[u64]) {
    let first = samples[0];
    let peak = *samples.iter().max().unwrap();
    println!(
        "{what}: RSS samples (KiB) {samples:?}; growth {} KiB",
        peak - first
    );
    assert!(
        peak - first < BOUND_KB,
        "{what}: RSS grew by {} KiB (bound {BOUND_KB} KiB)",
        peak - first
    );
}

#[test]
#[ignore = "soak test: scripts/soak.sh runs it (release build)"]
fn a_thousand_state_cycles_keep_memory_flat() {
    let pipeline = pipeline(2);
    let cycle = || common::state_cycle(&pipeline);
    for _ in 0..20 {
        cycle();
    }
    let mut samples = vec![common::resident_kb()];
    for i in 1..=1000 {
        cycle();
        if i % 100 == 0 {
            samples.push(common::resident_kb());
        }
    }
    assert_flat("1000 cycles", &samples);
}

#[test]
#[ignore = "soak test: scripts/soak.sh runs it (release build)"]
fn ten_thousand_frames_keep_memory_flat() {
    let pipeline = pipeline(10_000);
    let sink = pipeline
        .downcast_ref::<gst::Bin>()
        .unwrap()
        .iterate_sinks()
        .next()
        .unwrap()
        .unwrap();
    let frames = std::sync::Arc::new(std::sync::atomic::AtomicU64::new(0));
    let count = frames.clone();
    sink.static_pad("sink")
        .unwrap()
        .add_probe(gst::PadProbeType::BUFFER, move |_, _| {
            count.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            gst::PadProbeReturn::Ok
        });
    pipeline.set_state(gst::State::Playing).unwrap();
    let bus = pipeline.bus().unwrap();
    let mut samples = Vec::new();
    let mut next_sample = 1000;
    loop {
        let msg = bus.timed_pop_filtered(
            gst::ClockTime::from_mseconds(100),
            &[gst::MessageType::Eos, gst::MessageType::Error],
        );
        let seen = frames.load(std::sync::atomic::Ordering::Relaxed);
        if seen >= next_sample {
            samples.push(common::resident_kb());
            next_sample += 1000;
        }
        match msg.map(|m| m.type_()) {
            Some(gst::MessageType::Eos) => break,
            Some(_) => panic!("the pipeline failed"),
            None => (),
        }
    }
    pipeline.set_state(gst::State::Null).unwrap();
    assert_eq!(frames.load(std::sync::atomic::Ordering::Relaxed), 10_000);
    assert_flat("10,000 frames", &samples);
}
