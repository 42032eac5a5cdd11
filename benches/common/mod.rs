//! Helpers shared by the benchmark binaries.

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
