// SPDX-License-Identifier: MPL-2.0
//! The `radioembed` element on the tiny fixture model, on the CPU: metas, batching,
//! events, latency, model sharing and errors.

mod common;

use std::str::FromStr;

use candle_core::{DType, Device, Tensor};
use common::{TempDir, fixture, init};
use gst::prelude::*;
use gst_check::Harness;
use gstradio::meta::Embedding;
use gstradio::model::{RadioModel, RadioOutput, TorchCheckpoint};
use gstradio::preprocess::{CpuPreprocessor, FrameLayout, Normalization, PixelFormat};

const W: usize = 64;
const H: usize = 48;

fn model_path() -> String {
    fixture("tiny-so400m").display().to_string()
}

/// The element on the tiny SO400M fixture with `props`, fed RGB frames.
fn harness(props: &str) -> Harness {
    common::radioembed_harness(
        "tiny-so400m",
        props,
        &format!("video/x-raw,format=RGB,width={W},height={H},framerate=30/1"),
    )
}

/// An RGB frame whose content depends on `i`, with timestamp i/30 s.
fn frame(i: u64) -> gst::Buffer {
    common::rgb_frame(W, H, i, i)
}

fn embedding(buffer: &gst::Buffer) -> Option<Embedding> {
    Embedding::from_buffer(buffer).unwrap()
}

/// What `model` gives for `buffer` preprocessed as the element does at
/// `resolution=32` (a 48x32 input).
fn reference_output(model: &RadioModel, buffer: &gst::Buffer) -> RadioOutput {
    let info = model.info();
    let norm = Normalization {
        mean: info.dims.norm_mean,
        std: info.dims.norm_std,
    };
    let map = buffer.map_readable().unwrap();
    let mut pixels = vec![0f32; 3 * 32 * 48];
    CpuPreprocessor::new()
        .process(
            &map,
            &FrameLayout::packed(PixelFormat::Rgb, W, H),
            (32, 48),
            true,
            &norm,
            &mut pixels,
        )
        .unwrap();
    let input = Tensor::from_vec(pixels, (1, 3, 32, 48), &Device::Cpu).unwrap();
    model.forward_normalized(&input).unwrap()
}

fn flat(t: &Tensor) -> Vec<f32> {
    t.flatten_all().unwrap().to_vec1::<f32>().unwrap()
}

#[test]
fn adaptor_vectors_ride_on_the_meta() {
    let checkpoint = fixture("textsearch/c-radio_v4-tiny_half.pth.tar");
    let props = format!(
        "resolution=32 adaptor=siglip2-g adaptor-checkpoint={}",
        checkpoint.display()
    );
    let mut h = harness(&props);
    let buffer = frame(5);
    h.push(buffer.clone()).unwrap();
    let e = embedding(&h.pull().unwrap()).expect("meta attached");
    let adaptor = e.adaptor("siglip2-g").expect("siglip2-g vectors");
    assert_eq!(adaptor.summary.len(), 48);
    assert_eq!(adaptor.spatial_dim, 48);
    assert_eq!(adaptor.spatial.as_ref().unwrap().len(), 2 * 3 * 48);

    let model = RadioModel::load(&fixture("tiny-so400m"), &Device::Cpu, DType::F32)
        .unwrap()
        .with_adaptor(&TorchCheckpoint::open(&checkpoint).unwrap(), "siglip2-g")
        .unwrap();
    let reference = reference_output(&model, &buffer);
    let expected = reference.adaptor("siglip2-g").unwrap();
    let err = common::max_abs_diff_slices(&adaptor.summary, &flat(&expected.summary));
    assert!(err <= 1e-5, "siglip2-g summary off by {err}");
    let err = common::max_abs_diff_slices(
        adaptor.spatial.as_ref().unwrap(),
        &flat(expected.features.as_ref().unwrap()),
    );
    assert!(err <= 1e-5, "siglip2-g spatial off by {err}");
    // The backbone's vectors are unchanged by the adaptor.
    let err = common::max_abs_diff_slices(&e.summary.unwrap(), &flat(&reference.summary));
    assert!(err <= 1e-5, "summary off by {err}");

    // Summary only: the adaptor's summary still comes, its patch features not.
    let mut h = harness(&format!("{props} outputs=summary"));
    h.push(frame(5)).unwrap();
    let e = embedding(&h.pull().unwrap()).unwrap();
    let adaptor = e.adaptor("siglip2-g").unwrap();
    assert_eq!(
        (adaptor.summary.len(), adaptor.spatial.is_none()),
        (48, true)
    );
}

#[test]
fn an_unknown_adaptor_is_an_error_naming_the_teachers() {
    let checkpoint = fixture("textsearch/c-radio_v4-tiny_half.pth.tar");
    let err = common::start_error(&format!(
        "videotestsrc num-buffers=1 ! video/x-raw,format=RGB,width=64,height=48 ! \
         radioembed model={} async=false adaptor=clip adaptor-checkpoint={} ! fakesink",
        model_path(),
        checkpoint.display()
    ));
    let message = err.to_string();
    assert!(message.contains("no teacher `clip`"), "{message}");
    assert!(message.contains("siglip2-g"), "{message}");
}

#[test]
fn every_frame_gets_embeddings_equal_to_the_model() {
    let mut h = harness("resolution=32");
    let buffer = frame(3);
    h.push(buffer.clone()).unwrap();
    let out = h.pull().unwrap();
    assert_eq!(out.pts(), buffer.pts());
    let e = embedding(&out).expect("meta attached");
    // 64x48 → short side 32 → 43 px long side snaps to 48: input 48x32, grid 2x3.
    assert_eq!(e.input_size, (48, 32));
    assert_eq!(e.grid, (2, 3));
    assert_eq!((e.summary_dim(), e.spatial_dim), (128, 64));
    assert_eq!(e.spatial.as_ref().unwrap().len(), 2 * 3 * 64);
    assert_eq!(e.frame_index, 0);
    assert_eq!(e.model, model_path());

    let model = RadioModel::load(&fixture("tiny-so400m"), &Device::Cpu, DType::F32).unwrap();
    let reference = reference_output(&model, &buffer);
    let err = common::max_abs_diff_slices(&e.summary.unwrap(), &flat(&reference.summary));
    assert!(err <= 1e-5, "summary off by {err}");
    let err = common::max_abs_diff_slices(&e.spatial.unwrap(), &flat(&reference.features));
    assert!(err <= 1e-5, "spatial off by {err}");
}

#[test]
fn batches_keep_order_and_timestamps_and_eos_drains() {
    let mut h = harness("resolution=32 batch-size=4 batch-timeout=60000000000");
    for i in 0..10 {
        h.push(frame(i)).unwrap();
    }
    // Frames 8 and 9 form a partial batch that only EOS can release.
    h.push_event(gst::event::Eos::new());
    for i in 0..10 {
        let out = h.pull().unwrap();
        assert_eq!(out.pts(), frame(i).pts(), "frame {i} out of order");
        assert_eq!(embedding(&out).unwrap().frame_index, i);
    }
    let stats = h.element().unwrap().property::<gst::Structure>("stats");
    assert_eq!(stats.get::<u64>("frames-embedded").unwrap(), 10);
    assert_eq!(stats.get::<u64>("batches").unwrap(), 3);
    loop {
        let event = h.pull_event().unwrap();
        if event.type_() == gst::EventType::Eos {
            break;
        }
    }
}

#[test]
fn batch_timeout_releases_a_stalled_live_stream() {
    let mut h = harness("resolution=32 batch-size=4 batch-timeout=50000000");
    h.push(frame(0)).unwrap();
    // No more frames and no EOS: only the timeout can release frame 0. The
    // batch waits on the element's clock, the harness's TestClock, for its
    // deadline: 50 ms after the frame arrived at clock time 0.
    let clock = h.testclock().expect("the harness runs on a TestClock");
    let id = clock.wait_for_next_pending_id();
    assert_eq!(id.time(), gst::ClockTime::from_mseconds(50));
    assert!(h.try_pull().is_none(), "released before its deadline");
    assert!(h.crank_single_clock_wait().is_ok());
    let out = h.pull().expect("partial batch pushed after the timeout");
    assert!(embedding(&out).is_some());
}

#[test]
fn inference_interval_embeds_every_third_frame() {
    let mut h = harness("resolution=32 inference-interval=3");
    let mut embedded = Vec::new();
    for i in 0..10 {
        h.push(frame(i)).unwrap();
        let out = h.pull().unwrap();
        if let Some(e) = embedding(&out) {
            assert_eq!(e.frame_index, i);
            embedded.push(i);
        }
    }
    assert_eq!(embedded, vec![0, 3, 6, 9]);
}

#[test]
fn outputs_pooling_and_f16_shape_the_meta() {
    let mut h = harness("resolution=64 outputs=spatial spatial-pool=2 meta-dtype=f16");
    h.push(frame(0)).unwrap();
    let e = embedding(&h.pull().unwrap()).unwrap();
    // 64x48 at short side 64 → 80x64 input, grid 4x5, pooled by 2 → 2x2.
    assert_eq!(e.input_size, (80, 64));
    assert_eq!(e.grid, (2, 2));
    assert_eq!(e.summary, None);
    assert_eq!(e.spatial.unwrap().len(), 2 * 2 * 64);
    assert_eq!(e.dtype, gstradio::meta::MetaDtype::F16);
}

/// Built for GStreamer >= 1.26, every embedded frame also carries the standard
/// `GstTensorMeta`, with the same numbers as the `RadioEmbedMeta`.
#[cfg(feature = "v1_26")]
#[test]
fn tensor_meta_carries_the_same_embeddings() {
    use gst_analytics::{TensorDataType, TensorMeta};
    let floats = |b: &gst::BufferRef| -> Vec<f32> {
        let map = b.map_readable().unwrap();
        map.chunks_exact(4)
            .map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]]))
            .collect()
    };
    let mut h = harness("resolution=32");
    for i in 0..2 {
        h.push(frame(i)).unwrap();
        let out = h.pull().unwrap();
        let e = embedding(&out).unwrap();
        let meta = out.meta::<TensorMeta>().expect("tensor meta attached");
        let [summary, spatial] = meta.as_slice() else {
            panic!("expected two tensors, got {}", meta.as_slice().len());
        };
        assert_eq!(summary.id().as_str(), "radio-summary");
        assert_eq!(summary.dims(), [1, 128]);
        assert_eq!(summary.data_type(), TensorDataType::Float32);
        assert_eq!(floats(summary.data()), e.summary.unwrap());
        assert_eq!(spatial.id().as_str(), "radio-spatial");
        assert_eq!(spatial.dims(), [1, 2, 3, 64]);
        assert_eq!(floats(spatial.data()), e.spatial.unwrap());
    }
}

#[test]
fn flush_drops_pending_frames() {
    let mut h = harness("resolution=32 batch-size=4 batch-timeout=60000000000");
    for i in 0..3 {
        h.push(frame(i)).unwrap();
    }
    assert!(h.push_event(gst::event::FlushStart::new()));
    assert!(h.push_event(gst::event::FlushStop::new(true)));
    let segment = gst::FormattedSegment::<gst::ClockTime>::new();
    assert!(h.push_event(gst::event::Segment::new(&segment)));
    assert_eq!(h.buffers_in_queue(), 0);
    for i in 10..14 {
        h.push(frame(i)).unwrap();
    }
    for i in 10..14 {
        let out = h.pull().unwrap();
        assert_eq!(out.pts(), frame(i).pts(), "a pre-flush frame leaked");
        assert!(embedding(&out).is_some());
    }
    // Sticky events the flush caught in the queue still reach downstream.
    let downstream = h.sinkpad().unwrap();
    assert!(
        downstream
            .sticky_event::<gst::event::StreamStart>(0)
            .is_some()
    );
    assert!(downstream.current_caps().is_some());
}

#[test]
fn latency_adds_batching_and_processing_budget() {
    let mut h = harness("batch-size=4 batch-timeout=40000000 processing-latency=10000000");
    h.play();
    let element = h.element().unwrap();
    let src = element.static_pad("src").unwrap();
    let mut q = gst::query::Latency::new();
    assert!(src.query(&mut q));
    let (_, min, _) = q.result();
    // Upstream (the harness source) reports 0; we add 40 ms + 10 ms.
    assert_eq!(min, gst::ClockTime::from_mseconds(50));
}

/// Every bus message of `launch` played until its EOS or error (that one last).
fn run_to_end(launch: &str) -> Vec<gst::Message> {
    init();
    let pipeline = gst::parse::launch(launch).unwrap();
    let bus = pipeline.bus().unwrap();
    let _ = pipeline.set_state(gst::State::Playing);
    let mut seen = Vec::new();
    while let Some(msg) = bus.timed_pop(gst::ClockTime::from_seconds(30)) {
        let end = matches!(msg.type_(), gst::MessageType::Eos | gst::MessageType::Error);
        seen.push(msg);
        if end {
            break;
        }
    }
    pipeline.set_state(gst::State::Null).unwrap();
    seen
}

/// The (type, code, text) of every progress message posted while `launch` ran.
fn progress_messages(launch: &str) -> Vec<(gst::ProgressType, String, String)> {
    run_to_end(launch)
        .iter()
        .filter_map(|msg| match msg.view() {
            gst::MessageView::Progress(p) => {
                let (type_, code, text) = p.get();
                Some((type_, code.to_string(), text.to_string()))
            }
            _ => None,
        })
        .collect()
}

#[test]
fn model_loading_is_announced_with_progress_messages() {
    let model = model_path();
    let seen = progress_messages(&format!(
        "videotestsrc num-buffers=1 ! radioembed model={model} resolution=32 ! fakesink"
    ));
    assert_eq!(
        seen,
        vec![
            (
                gst::ProgressType::Start,
                "model".to_string(),
                format!("Loading model {model}")
            ),
            (
                gst::ProgressType::Complete,
                "model".to_string(),
                format!("Model {model} loaded")
            ),
        ]
    );
    let seen =
        progress_messages("videotestsrc num-buffers=1 ! radioembed model=/no/such ! fakesink");
    let types: Vec<_> = seen.iter().map(|(t, _, _)| *t).collect();
    assert_eq!(types, [gst::ProgressType::Start, gst::ProgressType::Error]);
}

/// The error a pipeline ends with, its text and whether it is in `domain`.
fn run_to_error_in(launch: &str, domain: impl gst::glib::error::ErrorDomain) -> String {
    let messages = run_to_end(launch);
    match messages.last().expect("pipeline ended").view() {
        gst::MessageView::Error(err) => {
            let error = err.error();
            assert!(
                error.matches(domain),
                "{error} is in domain {:?}, code {}",
                error.domain(),
                error.code()
            );
            error.to_string()
        }
        _ => panic!("pipeline ended without error"),
    }
}

#[test]
fn missing_model_is_a_clear_error() {
    let err = run_to_error_in(
        "videotestsrc num-buffers=1 ! radioembed model=/no/such/model ! fakesink",
        gst::ResourceError::NotFound,
    );
    assert!(err.starts_with("model `/no/such/model` not found"), "{err}");
}

#[test]
fn corrupt_and_unknown_checkpoints_are_clear_errors() {
    let dir = TempDir::new("corrupt");
    std::fs::copy(fixture("tiny-so400m/config.json"), dir.join("config.json")).unwrap();
    let weights = std::fs::read(fixture("tiny-so400m/model.safetensors")).unwrap();
    std::fs::write(dir.join("model.safetensors"), &weights[..weights.len() / 2]).unwrap();
    let launch = format!(
        "videotestsrc num-buffers=1 ! radioembed model={} ! fakesink",
        dir.path().display()
    );
    let err = run_to_error_in(&launch, gst::ResourceError::Read);
    assert!(err.contains("corrupt weights file"), "{err}");

    std::fs::write(dir.join("config.json"), r#"{"model_type": "bert"}"#).unwrap();
    let err = run_to_error_in(&launch, gst::ResourceError::Read);
    assert!(err.contains("unknown model layout"), "{err}");
}

#[test]
fn tiny_frames_are_refused() {
    let err = run_to_error_in(
        &format!(
            "videotestsrc num-buffers=1 ! video/x-raw,width=8,height=8 ! radioembed model={} \
             ! fakesink",
            model_path()
        ),
        gst::StreamError::Format,
    );
    assert_eq!(
        err,
        "frames of 8x8 are smaller than the model's 16x16 patch"
    );
}

#[test]
#[cfg_attr(
    feature = "cuda",
    ignore = "a cuda build may find a GPU, where there is no such error; the default build \
              never has CUDA and runs this"
)]
fn cuda_without_a_gpu_is_a_clear_error() {
    let err = run_to_error_in(
        &format!(
            "videotestsrc num-buffers=1 ! radioembed device=cuda:0 model={} ! fakesink",
            model_path()
        ),
        gst::LibraryError::Init,
    );
    assert!(err.contains("device cuda:0 is unavailable"), "{err}");
}

#[test]
fn elements_share_one_model() {
    init();
    // A model no other test loads, so that its count is this test's alone.
    let model = fixture("tiny-so400m-native");
    let launch = format!(
        "videotestsrc num-buffers=3 ! tee name=t \
         t. ! queue ! radioembed model={m} resolution=32 ! fakesink \
         t. ! queue ! radioembed model={m} resolution=32 ! fakesink",
        m = model.display()
    );
    let pipeline = gst::parse::launch(&launch).unwrap();
    let before = gstradio::model_store::load_count(&model);
    pipeline.set_state(gst::State::Paused).unwrap();
    let _ = pipeline.state(gst::ClockTime::from_seconds(30));
    let after = gstradio::model_store::load_count(&model);
    pipeline.set_state(gst::State::Null).unwrap();
    assert_eq!(
        after - before,
        1,
        "two elements loaded the same model twice"
    );
}

#[test]
fn gap_closes_the_open_batch_in_order() {
    let mut h = harness("resolution=32 batch-size=4 batch-timeout=60000000000");
    h.push(frame(0)).unwrap();
    h.push(frame(1)).unwrap();
    // Without the GAP these two frames would wait a minute for their batch.
    let gap = gst::event::Gap::builder(gst::ClockTime::from_seconds(1)).build();
    assert!(h.push_event(gap));
    for i in 0..2 {
        let out = h.pull().unwrap();
        assert_eq!(out.pts(), frame(i).pts());
        assert!(embedding(&out).is_some());
    }
    // Sticky events (stream-start, caps, segment) come first; the GAP follows the
    // two frames. pull_event waits (up to a minute) for the task to push it.
    loop {
        let event = h.pull_event().expect("the GAP event is forwarded");
        if event.type_() == gst::EventType::Gap {
            break;
        }
    }
}

#[test]
fn caps_change_drains_the_old_batch_first() {
    let mut h = harness("resolution=32 batch-size=4 batch-timeout=60000000000");
    h.push(frame(0)).unwrap();
    h.push(frame(1)).unwrap();
    // New caps: 32x32 frames, so the model input becomes 32x32.
    h.set_src_caps_str("video/x-raw,format=GRAY8,width=32,height=32,framerate=30/1");
    let square = |i: u64| {
        let mut b = gst::Buffer::from_mut_slice(vec![(i * 40) as u8; 32 * 32]);
        b.get_mut()
            .unwrap()
            .set_pts(gst::ClockTime::from_seconds(1 + i));
        b
    };
    for i in 0..4 {
        h.push(square(i)).unwrap();
    }
    let sizes: Vec<(usize, usize)> = (0..6)
        .map(|_| embedding(&h.pull().unwrap()).unwrap().input_size)
        .collect();
    assert_eq!(
        sizes,
        vec![(48, 32), (48, 32), (32, 32), (32, 32), (32, 32), (32, 32)]
    );
}

#[test]
fn changing_the_latency_budget_posts_a_latency_message() {
    init();
    let pipeline = gst::parse::launch(&format!(
        "videotestsrc is-live=true ! video/x-raw,width=64,height=48 ! \
         radioembed name=e model={} resolution=32 ! fakesink",
        model_path()
    ))
    .unwrap()
    .downcast::<gst::Bin>()
    .unwrap();
    pipeline.set_state(gst::State::Playing).unwrap();
    let bus = pipeline.bus().unwrap();
    let _ = pipeline.state(gst::ClockTime::from_seconds(10));
    while bus.pop().is_some() {}
    let element = pipeline.by_name("e").unwrap();
    element.set_property("processing-latency", 250_000_000u64);
    let msg = bus.timed_pop_filtered(
        gst::ClockTime::from_seconds(5),
        &[gst::MessageType::Latency],
    );
    pipeline.set_state(gst::State::Null).unwrap();
    let msg = msg.expect("a latency message");
    assert_eq!(msg.src().unwrap().name(), "e");
}

/// The last message of `launch` run to its end, which must be EOS within the
/// time `run_to_end` waits.
fn assert_reaches_eos(launch: &str) {
    let messages = run_to_end(launch);
    let last = messages.last().expect("pipeline posted messages");
    assert_eq!(
        last.type_(),
        gst::MessageType::Eos,
        "{launch}: ended with {last:?} instead of EOS"
    );
}

#[test]
fn downstream_eos_drops_frames_but_lets_upstream_eos_through() {
    // identity returns EOS after 5 buffers; upstream's EOS must still reach the
    // sink, with batches and with a model that is slower than the source.
    for props in ["", "batch-size=4 batch-timeout=60000000000"] {
        assert_reaches_eos(&format!(
            "videotestsrc num-buffers=30 ! video/x-raw,width=64,height=48 ! \
             radioembed model={} resolution=32 {props} ! identity eos-after=5 ! fakesink",
            model_path()
        ));
    }
}

#[test]
fn not_linked_goes_upstream_and_a_reconfigure_resumes() {
    let mut h = harness("resolution=32");
    let element = h.element().unwrap();
    let src = element.static_pad("src").unwrap();
    let downstream = h.sinkpad().unwrap();
    src.unlink(&downstream).unwrap();
    // The first frame is queued (OK); the task's push finds no peer and the
    // frames after it are refused with NOT_LINKED, with no error of our own.
    let mut refused = None;
    for i in 0..100 {
        if let Err(err) = h.push(frame(i)) {
            refused = Some(err);
            break;
        }
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
    assert_eq!(refused, Some(gst::FlowError::NotLinked));
    assert_eq!(h.push(frame(100)), Err(gst::FlowError::NotLinked));

    src.link(&downstream).unwrap();
    assert!(downstream.push_event(gst::event::Reconfigure::new()));
    h.push(frame(101))
        .expect("frames flow again after RECONFIGURE");
    let out = h.pull().unwrap();
    assert_eq!(out.pts(), frame(101).pts());
    assert!(embedding(&out).is_some());
}

#[test]
fn settings_fixed_at_load_are_refused_while_playing_and_the_rest_apply() {
    let mut h = harness("resolution=32 batch-size=1");
    h.play();
    let element = h.element().unwrap();
    element.set_property("model", "/some/other/model");
    element.set_property("resolution", 64u32);
    assert_eq!(element.property::<String>("model"), model_path());
    assert_eq!(element.property::<u32>("resolution"), 32);

    // batch-size applies live: two frames, one forward.
    element.set_property("batch-size", 2u32);
    element.set_property("batch-timeout", 60_000_000_000u64);
    h.push(frame(0)).unwrap();
    h.push(frame(1)).unwrap();
    for i in 0..2 {
        let out = h.pull().unwrap();
        assert_eq!(embedding(&out).unwrap().frame_index, i);
        assert_eq!(embedding(&out).unwrap().input_size, (48, 32));
    }
    let stats = element.property::<gst::Structure>("stats");
    assert_eq!(stats.get::<u64>("batches").unwrap(), 1);
}

#[test]
fn huge_timeouts_saturate_and_none_means_no_timeout() {
    let max = gst::ClockTime::MAX.nseconds();
    let mut h = harness(&format!(
        "resolution=32 batch-size=4 batch-timeout={max} processing-latency={max}"
    ));
    h.play();
    let src = h.element().unwrap().static_pad("src").unwrap();
    let mut q = gst::query::Latency::new();
    assert!(src.query(&mut q));
    assert_eq!(q.result().1, gst::ClockTime::MAX);

    // GST_CLOCK_TIME_NONE: no timeout; EOS closes the partial batch.
    let element = h.element().unwrap();
    element.set_property("batch-timeout", u64::MAX);
    assert_eq!(element.property::<u64>("batch-timeout"), u64::MAX);
    h.push(frame(0)).unwrap();
    h.push_event(gst::event::Eos::new());
    assert!(embedding(&h.pull().unwrap()).is_some());
}

#[test]
fn allocation_adds_the_frames_in_flight_and_keeps_downstream_metas() {
    let mut h = harness("resolution=32 batch-size=4");
    h.add_propose_allocation_meta(gst_video::VideoMeta::meta_api(), None);
    h.play();
    let caps = gst::Caps::from_str(&format!(
        "video/x-raw,format=RGB,width={W},height={H},framerate=30/1"
    ))
    .unwrap();
    let mut q = gst::query::Allocation::new(Some(&caps), true);
    assert!(h.srcpad().unwrap().peer_query(&mut q));
    assert!(q.find_allocation_meta::<gst_video::VideoMeta>().is_some());
    let pools: Vec<_> = q.allocation_pools().collect();
    assert_eq!(pools.len(), 1, "{pools:?}");
    let (_, size, min, _) = &pools[0];
    let info = gst_video::VideoInfo::from_caps(&caps).unwrap();
    assert_eq!((*size as usize, *min), (info.size(), 8));
}

/// Whether the frame that went through `filter` after radioembed kept its meta.
fn meta_survives(filter: &str) -> bool {
    init();
    let pipeline = gst::parse::launch(&format!(
        "videotestsrc num-buffers=1 ! video/x-raw,width=64,height=48 ! \
         radioembed model={} resolution=32 ! {filter} ! fakesink name=out",
        model_path()
    ))
    .unwrap()
    .downcast::<gst::Bin>()
    .unwrap();
    let seen = std::sync::Arc::new(std::sync::Mutex::new(None));
    let sinkpad = pipeline.by_name("out").unwrap().static_pad("sink").unwrap();
    let record = seen.clone();
    sinkpad.add_probe(gst::PadProbeType::BUFFER, move |_, info| {
        if let Some(buffer) = info.buffer() {
            *record.lock().unwrap() = Some(embedding(&buffer.copy()).is_some());
        }
        gst::PadProbeReturn::Ok
    });
    pipeline.set_state(gst::State::Playing).unwrap();
    let eos = pipeline.bus().unwrap().timed_pop_filtered(
        gst::ClockTime::from_seconds(30),
        &[gst::MessageType::Eos, gst::MessageType::Error],
    );
    pipeline.set_state(gst::State::Null).unwrap();
    assert_eq!(
        eos.map(|m| m.type_()),
        Some(gst::MessageType::Eos),
        "{filter}"
    );
    seen.lock().unwrap().expect("a frame reached the sink")
}

#[test]
fn elements_that_move_pixels_drop_the_grid() {
    assert!(meta_survives("identity"));
    assert!(meta_survives("queue"));
    assert!(!meta_survives("videoflip video-direction=90r"));
    assert!(!meta_survives(
        "videoscale ! video/x-raw,width=32,height=24"
    ));
}

#[test]
fn flush_stop_racing_deactivation_never_deadlocks() {
    for round in 0..20 {
        let mut h = harness("resolution=32 batch-size=2");
        h.play();
        h.push(frame(0)).unwrap();
        let element = h.element().unwrap();
        let upstream = h.srcpad().unwrap();
        let flusher = std::thread::spawn(move || {
            for _ in 0..20 {
                upstream.push_event(gst::event::FlushStart::new());
                upstream.push_event(gst::event::FlushStop::new(false));
            }
        });
        let (done, finished) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            let _ = element.set_state(gst::State::Ready);
            let _ = element.set_state(gst::State::Null);
            done.send(()).unwrap();
        });
        finished
            .recv_timeout(std::time::Duration::from_secs(20))
            .unwrap_or_else(|_| panic!("set_state(NULL) deadlocked in round {round}"));
        flusher.join().unwrap();
    }
}
