// SPDX-License-Identifier: MPL-2.0
//! Repeated NULL → PLAYING → NULL cycles of a radioembed pipeline must not grow
//! memory. Alone in its own test binary, so that no other test's allocations
//! move the process's resident size while it measures.

mod common;

#[test]
fn many_state_cycles_do_not_grow_memory() {
    common::init();
    let launch = format!(
        "videotestsrc num-buffers=2 ! video/x-raw,width=64,height=48 ! radioembed model={} resolution=32 ! fakesink",
        common::fixture("tiny-so400m").display()
    );
    let pipeline = gst::parse::launch(&launch).unwrap();
    let cycle = || common::state_cycle(&pipeline);
    for _ in 0..20 {
        cycle();
    }
    let warm = common::resident_kb();
    for _ in 0..200 {
        cycle();
    }
    let grown = common::resident_kb().saturating_sub(warm);
    assert!(grown < 8 * 1024, "RSS grew by {grown} kB over 200 cycles");
}
