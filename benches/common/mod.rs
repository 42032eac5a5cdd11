// SPDX-License-Identifier: MPL-2.0
//! Helpers shared by the benchmark binaries.

// Each benchmark uses only some of these.
#![allow(dead_code)]

use gst::prelude::*;

/// Sets a pipeline to PLAYING and waits for EOS; panics with the bus error if one
/// comes first.
pub fn play_to_eos(pipeline: &gst::Element) {
    pipeline.set_state(gst::State::Playing).unwrap();
    let msg = pipeline
        .bus()
        .unwrap()
        .timed_pop_filtered(
            gst::ClockTime::NONE,
            &[gst::MessageType::Eos, gst::MessageType::Error],
        )
        .unwrap();
    if let gst::MessageView::Error(err) = msg.view() {
        panic!("pipeline failed: {}", err.error());
    }
}

/// The CPU's model name, printed with every result.
pub fn cpu_model() -> String {
    gstradio::cpu::model_name()
}

/// The start of a pipeline benchmark: prints the CPU, initialises GStreamer with
/// this crate's plugin, and returns the benchmark's arguments (without cargo's
/// `--bench`).
pub fn start() -> Vec<String> {
    println!("CPU: {}", cpu_model());
    gst::init().unwrap();
    gstradio::plugin_register_static().unwrap();
    std::env::args()
        .skip(1)
        .filter(|a| a != "--bench")
        .collect()
}

/// The model folder a benchmark runs: `arg` when given, else
/// target/bench/models/vitb-bench (made by benches/model-vs-pytorch.sh) when it
/// is there, else the tiny test checkpoint.
pub fn model_dir(arg: Option<&String>) -> std::path::PathBuf {
    use std::path::PathBuf;
    let vitb = PathBuf::from("target/bench/models/vitb-bench");
    arg.map(PathBuf::from).unwrap_or_else(|| {
        if vitb.join("model.safetensors").exists() {
            vitb
        } else {
            PathBuf::from("tests/fixtures/tiny-so400m")
        }
    })
}

/// A pseudo-random vector of `dim` values in [-0.5, 0.5), the same for the
/// same seed (xorshift): rows and queries for the search benchmarks.
pub fn random_vector(seed: u64, dim: usize) -> Vec<f32> {
    let mut s = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
    (0..dim)
        .map(|_| {
            s ^= s << 13;
            s ^= s >> 7;
            s ^= s << 17;
            (s >> 40) as f32 / (1u64 << 24) as f32 - 0.5
        })
        .collect()
}
