// SPDX-License-Identifier: MPL-2.0
//! The model loads on a thread of its own: READY→PAUSED returns ASYNC at once
//! while a download is under way, a state change down cancels the load without
//! waiting for it, and a later start loads and runs as usual.
//!
//! The model is named by repo id and served by a local hub ([`common::hub`],
//! real HTTP on 127.0.0.1) that holds `model.safetensors` until the test
//! releases it. This is this binary's only test: it points the process's
//! Hugging Face settings at that hub and a fresh cache.

mod common;

use std::path::Path;
use std::sync::mpsc;
use std::time::{Duration, Instant};

use common::hub::{Hub, REPO};
use common::{TempDir, init};
use gst::prelude::*;

/// Runs `f` on another thread and returns what it returned, or panics naming
/// `what` when it takes longer than `limit`.
fn within<T: Send + 'static>(
    limit: Duration,
    what: &str,
    f: impl FnOnce() -> T + Send + 'static,
) -> T {
    let (done, result) = mpsc::channel();
    std::thread::spawn(move || {
        let _ = done.send(f());
    });
    result
        .recv_timeout(limit)
        .unwrap_or_else(|_| panic!("{what} blocked for more than {limit:?}"))
}

/// The progress messages (type, text) and the types of the other messages on
/// `bus`, popped until `until` comes (or `limit` passes), or with no `until`
/// until the bus stays empty for 100 ms; an error fails the test.
fn bus_until(
    bus: &gst::Bus,
    until: Option<gst::MessageType>,
    limit: Duration,
) -> (Vec<(gst::ProgressType, String)>, Vec<gst::MessageType>) {
    let (mut progress, mut seen) = (Vec::new(), Vec::new());
    let deadline = Instant::now() + limit;
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        let wait = match until {
            Some(_) => left,
            None => left.min(Duration::from_millis(100)),
        };
        let Some(msg) = bus.timed_pop(gst::ClockTime::try_from(wait).unwrap()) else {
            break;
        };
        match msg.view() {
            gst::MessageView::Progress(p) => {
                let (type_, _, text) = p.get();
                progress.push((type_, text.to_string()));
            }
            gst::MessageView::Error(err) => panic!("error on the bus: {}", err.error()),
            _ => seen.push(msg.type_()),
        }
        if Some(msg.type_()) == until {
            break;
        }
    }
    (progress, seen)
}

/// Waits until `path` exists.
fn wait_for_file(path: &Path, limit: Duration) {
    let deadline = Instant::now() + limit;
    while !path.exists() {
        assert!(Instant::now() < deadline, "{} never came", path.display());
        std::thread::sleep(Duration::from_millis(20));
    }
}

#[test]
fn a_slow_load_neither_blocks_nor_outlives_a_state_change() {
    let hub = Hub::start();
    hub.hold("model.safetensors");
    let dir = TempDir::new("async-load");
    let cache = dir.join("cache");
    // SAFETY: the only test of this binary, before GStreamer starts any thread;
    // nothing else reads the environment meanwhile.
    unsafe {
        std::env::set_var("HF_HUB_CACHE", &cache);
        std::env::set_var("HF_ENDPOINT", &hub.endpoint);
        std::env::remove_var("HF_HUB_OFFLINE");
    }
    init();
    let pipeline = gst::parse::launch(&format!(
        "videotestsrc num-buffers=3 ! video/x-raw,width=64,height=48 ! \
         radioembed model={REPO} resolution=32 ! fakesink"
    ))
    .unwrap();
    let bus = pipeline.bus().unwrap();

    // The state change returns while the weights are still on their way.
    let p = pipeline.clone();
    let started = within(Duration::from_secs(10), "set_state(PLAYING)", move || {
        p.set_state(gst::State::Playing)
    });
    assert_eq!(started, Ok(gst::StateChangeSuccess::Async));
    let deadline = Instant::now() + Duration::from_secs(20);
    while hub.held_requests() == 0 {
        assert!(
            Instant::now() < deadline,
            "the download never asked for the weights"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    assert_eq!(
        pipeline.current_state(),
        gst::State::Ready,
        "PAUSED before the model was loaded"
    );

    // Stopping does not wait for the download, and says the load was cancelled
    // (READY, not NULL: a pipeline in NULL flushes its bus).
    let p = pipeline.clone();
    let stopped = within(Duration::from_secs(10), "set_state(READY)", move || {
        p.set_state(gst::State::Ready)
    });
    assert_eq!(stopped, Ok(gst::StateChangeSuccess::Success));
    let (progress, _) = bus_until(&bus, None, Duration::from_secs(1));
    let types: Vec<_> = progress.iter().map(|(t, _)| *t).collect();
    assert_eq!(
        types.first(),
        Some(&gst::ProgressType::Start),
        "{progress:?}"
    );
    assert_eq!(
        types.last(),
        Some(&gst::ProgressType::Canceled),
        "{progress:?}"
    );

    // Once the hub answers, the cancelled load finishes its download into the
    // cache and throws its model away; a new start loads it and runs.
    hub.release();
    let snapshot = cache.join(format!(
        "models--test-org--tiny-radio/snapshots/{}/model.safetensors",
        common::hub::COMMIT
    ));
    wait_for_file(&snapshot, Duration::from_secs(30));
    assert_eq!(
        pipeline.set_state(gst::State::Playing),
        Ok(gst::StateChangeSuccess::Async)
    );
    let (progress, seen) = bus_until(&bus, Some(gst::MessageType::Eos), Duration::from_secs(60));
    pipeline.set_state(gst::State::Null).unwrap();
    assert!(seen.contains(&gst::MessageType::AsyncDone), "{seen:?}");
    assert!(seen.contains(&gst::MessageType::Eos), "{seen:?}");
    assert_eq!(
        progress.last(),
        Some(&(gst::ProgressType::Complete, format!("Model {REPO} loaded")))
    );
}
