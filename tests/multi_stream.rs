// SPDX-License-Identifier: MPL-2.0
//! Many cameras, one model, on the tiny fixture model on the CPU: streams that
//! share a model instance (`model-instance-id`), live overload (`leaky`),
//! per-object vectors (`roi-mode`) and the meta's `source-id`.

mod common;

use std::ops::Range;
use std::sync::mpsc;
use std::time::Duration;

use common::fixture;
use gst::prelude::*;
use gst_check::Harness;
use gstradio::meta::{Embedding, regions};

const W: usize = 64;
const H: usize = 48;

/// The element on the tiny SO400M fixture with `props`, fed RGB frames.
fn harness(props: &str) -> Harness {
    common::radioembed_harness(
        "tiny-so400m",
        props,
        &format!("video/x-raw,format=RGB,width={W},height={H},framerate=30/1"),
    )
}

/// An RGB frame whose content depends on `seed`, with timestamp `i`/30 s.
fn frame(i: u64, seed: u64) -> gst::Buffer {
    common::rgb_frame(W, H, i, seed)
}

fn embedding(buffer: &gst::Buffer) -> Option<Embedding> {
    Embedding::from_buffer(buffer).unwrap()
}

fn stat(h: &Harness, field: &str) -> u64 {
    let stats = h.element().unwrap().property::<gst::Structure>("stats");
    stats.get::<u64>(field).unwrap()
}

/// The summary each frame gets from an element of its own, one frame a forward.
fn alone(frames: &[gst::Buffer]) -> Vec<Vec<f32>> {
    let mut h = harness("resolution=32");
    frames
        .iter()
        .map(|f| {
            h.push(f.clone()).unwrap();
            embedding(&h.pull().unwrap()).unwrap().summary.unwrap()
        })
        .collect()
}

const STREAMS: u64 = 4;
// Enough that the first forwards, run before every stream has frames in, are
// a small share of all.
const FRAMES: u64 = 32;

/// Four streams, `FRAMES` frames each, pushed in turns, as four cameras would.
fn camera_frames(stream: u64) -> Vec<gst::Buffer> {
    (0..FRAMES)
        .map(|i| frame(i, 1 + stream * 100 + i))
        .collect()
}

/// A serialized event. Reaching the head of a stream's queue, it closes the
/// batch waiting there, as the gap between a live camera's frames would, with
/// no clock to race.
fn close_batch() -> gst::Event {
    gst::event::CustomDownstream::new(gst::Structure::new_empty("close-batch"))
}

/// Pulls the outputs of stream `s`'s frames `rounds` and checks each against
/// the summary its frame gets alone.
fn check_outputs(
    s: usize,
    h: &mut Harness,
    rounds: Range<usize>,
    frames: &[gst::Buffer],
    alone: &[Vec<f32>],
) {
    for i in rounds {
        let out = h.pull().unwrap();
        assert_eq!(
            out.pts(),
            frames[i].pts(),
            "stream {s}: frame {i} out of order"
        );
        let e = embedding(&out).expect("every frame is embedded");
        assert_eq!(e.frame_index, i as u64);
        let err = common::max_abs_diff_slices(&e.summary.unwrap(), &alone[i]);
        assert!(
            err <= 1e-5,
            "stream {s} frame {i}: off by {err} from running alone"
        );
    }
}

#[test]
fn streams_of_one_instance_share_forwards_and_get_their_own_embeddings() {
    // Each frame is followed by `close_batch`, so a stream asks for one frame
    // at a time and a forward of four fills only with a frame of every stream.
    // The timeout (10 s) never runs out in a passing run.
    let props = "resolution=32 batch-size=4 batch-timeout=10000000000 model-instance-id=cams";
    let mut hs: Vec<Harness> = (0..STREAMS).map(|_| harness(props)).collect();
    let frames: Vec<Vec<gst::Buffer>> = (0..STREAMS).map(camera_frames).collect();
    let expected: Vec<Vec<Vec<f32>>> = frames.iter().map(|f| alone(f)).collect();
    let push_rounds = |hs: &mut [Harness], rounds: Range<usize>| {
        for i in rounds {
            for (h, frames) in hs.iter_mut().zip(&frames) {
                h.push(frames[i].clone()).unwrap();
                assert!(h.push_event(close_batch()));
            }
        }
    };
    // A stream joins the instance's forwards with its first request, so the
    // first frames may run before every stream has joined.
    push_rounds(&mut hs, 0..1);
    for (s, h) in hs.iter_mut().enumerate() {
        check_outputs(s, h, 0..1, &frames[s], &expected[s]);
    }
    let counts = |h: &Harness| {
        [
            "batches",
            "shared-batches",
            "instance-forwards",
            "instance-frames",
        ]
        .map(|f| stat(h, f))
    };
    let joined: Vec<[u64; 4]> = hs.iter().map(counts).collect();
    // From here on, every forward is one frame of each of the four streams.
    push_rounds(&mut hs, 1..FRAMES as usize);
    for h in &mut hs {
        h.push_event(gst::event::Eos::new());
    }
    for (s, h) in hs.iter_mut().enumerate() {
        check_outputs(s, h, 1..FRAMES as usize, &frames[s], &expected[s]);
    }
    let rounds = FRAMES - 1;
    for (s, (h, joined)) in hs.iter().zip(&joined).enumerate() {
        let [batches, shared, forwards, instance_frames] = counts(h);
        assert_eq!(
            batches - joined[0],
            rounds,
            "stream {s}: forwards of its frames"
        );
        assert_eq!(shared - joined[1], rounds, "stream {s}: forwards it shared");
        assert_eq!(
            forwards - joined[2],
            rounds,
            "stream {s}: the instance's forwards"
        );
        assert_eq!(
            instance_frames - joined[3],
            rounds * STREAMS,
            "stream {s}: frames in them"
        );
    }
}

#[test]
fn one_streams_caps_change_flush_and_eos_leave_the_others_undisturbed() {
    let props = "resolution=32 batch-size=4 batch-timeout=20000000 model-instance-id=flush";
    let mut a = harness(props);
    let mut b = harness(props);
    let frames_b = camera_frames(1);
    let expected_b = alone(&frames_b);
    // Stream A's frames widen to 128x48 at frame 2: another model input size.
    let size_a = |i: usize| if i < 2 { (W, H) } else { (128, 48) };
    for (i, frame_b) in frames_b.iter().enumerate() {
        if i == 2 {
            a.set_src_caps_str("video/x-raw,format=RGB,width=128,height=48,framerate=30/1");
        }
        if i <= 8 {
            let (w, h) = size_a(i);
            a.push(common::rgb_frame(w, h, i as u64, 500 + i as u64))
                .unwrap();
        }
        b.push(frame_b.clone()).unwrap();
        if i == 4 {
            // Stream A seeks: everything of A in flight is dropped.
            assert!(a.push_event(gst::event::FlushStart::new()));
            assert!(a.push_event(gst::event::FlushStop::new(true)));
            let segment = gst::FormattedSegment::<gst::ClockTime>::new();
            assert!(a.push_event(gst::event::Segment::new(&segment)));
        }
        if i == 8 {
            a.push_event(gst::event::Eos::new());
        }
    }
    b.push_event(gst::event::Eos::new());
    for (i, summary) in expected_b.iter().enumerate() {
        let e = embedding(&b.pull().unwrap()).unwrap();
        let err = common::max_abs_diff_slices(&e.summary.unwrap(), summary);
        assert!(err <= 1e-5, "stream B frame {i}: off by {err}");
    }
    // A's last frames came out, embedded at their own size: 128x48 → 80x32.
    let mut last = None;
    while let Some(buffer) = a.pull_until_eos().unwrap() {
        last = Some(buffer);
    }
    let last = embedding(&last.expect("A's frames after the seek")).unwrap();
    assert_eq!((last.input_size, last.frame_index), ((80, 32), 8));
}

#[test]
fn a_stream_leaving_neither_hangs_nor_costs_the_others_a_frame() {
    let props = "resolution=32 batch-size=2 batch-timeout=20000000 model-instance-id=leave";
    let mut stay = harness(props);
    let mut leave = harness(props);
    let frames = camera_frames(2);
    let expected = alone(&frames);
    for (i, frame_i) in frames.iter().enumerate() {
        stay.push(frame_i.clone()).unwrap();
        if i > 5 {
            continue;
        }
        leave.push(frame(i as u64, 7 + i as u64)).unwrap();
        if i == 5 {
            // Stopped from another thread while it may wait in a shared forward.
            let element = leave.element().unwrap();
            let (done, stopped) = mpsc::channel();
            std::thread::spawn(move || {
                done.send(element.set_state(gst::State::Null)).unwrap();
            });
            let result = stopped
                .recv_timeout(Duration::from_secs(10))
                .expect("setting the leaving stream to NULL hangs");
            assert!(result.is_ok());
        }
    }
    stay.push_event(gst::event::Eos::new());
    for (i, summary) in expected.iter().enumerate() {
        let e = embedding(&stay.pull().unwrap()).expect("no frame lost");
        let err = common::max_abs_diff_slices(&e.summary.unwrap(), summary);
        assert!(err <= 1e-5, "frame {i}: off by {err}");
    }
}

#[test]
fn a_leaky_element_skips_exactly_the_frames_it_counts() {
    // Frames come faster than the model takes them: pushed back to back.
    let mut h = harness("resolution=64 batch-size=1 leaky=true");
    let pushed = 40;
    for i in 0..pushed {
        h.push(frame(i, i)).unwrap();
    }
    h.push_event(gst::event::Eos::new());
    let mut without_meta = 0;
    for i in 0..pushed {
        let out = h.pull().unwrap();
        assert_eq!(out.pts(), frame(i, i).pts(), "frame {i} out of order");
        without_meta += u64::from(embedding(&out).is_none());
    }
    let skipped = stat(&h, "frames-skipped");
    assert_eq!(skipped, without_meta);
    assert!(skipped > 0, "no frame was skipped: the model kept up");
    assert_eq!(stat(&h, "frames-embedded") + skipped, pushed);
}

#[test]
fn an_element_that_is_not_leaky_embeds_every_frame() {
    let mut h = harness("resolution=64 batch-size=1");
    let pushed = 40;
    for i in 0..pushed {
        h.push(frame(i, i)).unwrap();
    }
    h.push_event(gst::event::Eos::new());
    for _ in 0..pushed {
        assert!(embedding(&h.pull().unwrap()).is_some());
    }
    assert_eq!(stat(&h, "frames-skipped"), 0);
}

/// The patches a box of pixels overlaps on a `grid` of a `size` frame,
/// computed here independently of the element: a patch whose span meets the
/// box, at least the one holding its start.
fn patches(start: u32, len: u32, frame: u32, n: usize) -> std::ops::Range<usize> {
    let patch = f64::from(frame) / n as f64;
    let first = (f64::from(start) / patch).floor() as usize;
    let last = (f64::from(start + len) / patch).ceil() as usize;
    first.min(n - 1)..last.clamp(first + 1, n)
}

#[test]
fn regions_get_the_mean_of_the_patches_under_their_box() {
    let mut h = harness("resolution=64 roi-types=person,car");
    let mut buffer = frame(0, 5);
    let boxes = [
        ("person", (8, 4, 20, 30)),
        ("face", (10, 6, 4, 4)),
        ("car", (40, 30, 24, 18)),
    ];
    for (roi_type, rect) in boxes {
        gst_video::VideoRegionOfInterestMeta::add(buffer.get_mut().unwrap(), roi_type, rect);
    }
    h.push(buffer).unwrap();
    let out = h.pull().unwrap();
    let e = embedding(&out).unwrap();
    let (gh, gw) = e.grid;
    let d = e.spatial_dim;
    let spatial = e.spatial.unwrap();
    let found = regions(&out).unwrap();
    let types: Vec<&str> = found.iter().map(|r| r.roi_type.as_str()).collect();
    assert_eq!(types, ["person", "car"], "face is not among roi-types");
    for region in &found {
        let (x, y, w, hh) = region.rect;
        let (rows, cols) = (patches(y, hh, H as u32, gh), patches(x, w, W as u32, gw));
        let n = (rows.len() * cols.len()) as f32;
        let mut mean = vec![0f32; d];
        for r in rows {
            for c in cols.clone() {
                let patch = &spatial[(r * gw + c) * d..][..d];
                mean.iter_mut().zip(patch).for_each(|(m, v)| *m += v / n);
            }
        }
        let err = common::max_abs_diff_slices(&region.vector, &mean);
        assert!(err <= 1e-6, "{}: off by {err}", region.roi_type);
    }
    assert_eq!(stat(&h, "regions-embedded"), 2);
}

#[test]
fn roi_mode_none_leaves_regions_alone() {
    let mut h = harness("resolution=32 roi-mode=none");
    let mut buffer = frame(0, 5);
    gst_video::VideoRegionOfInterestMeta::add(buffer.get_mut().unwrap(), "person", (0, 0, 8, 8));
    h.push(buffer).unwrap();
    assert!(regions(&h.pull().unwrap()).unwrap().is_empty());
}

#[test]
fn the_meta_names_its_source() {
    let mut h = harness("resolution=32");
    h.push(frame(0, 1)).unwrap();
    let name = h.element().unwrap().name().to_string();
    assert_eq!(embedding(&h.pull().unwrap()).unwrap().source_id, name);
    let mut h = harness("resolution=32 source-id=gate-camera");
    h.push(frame(0, 1)).unwrap();
    assert_eq!(
        embedding(&h.pull().unwrap()).unwrap().source_id,
        "gate-camera"
    );
}

/// The model's summary of the `x`, `y`, `w`, `h` rectangle of RGB `frame`,
/// cut out by copying its rows, resized to `side` × `side`.
fn crop_summary(
    frame: &gst::Buffer,
    (x, y, w, h): (usize, usize, usize, usize),
    side: usize,
) -> Vec<f32> {
    use gstradio::preprocess::{CpuPreprocessor, FrameLayout, Normalization, PixelFormat};
    let model = gstradio::model::RadioModel::load(
        &fixture("tiny-so400m"),
        &candle_core::Device::Cpu,
        candle_core::DType::F32,
    )
    .unwrap();
    let map = frame.map_readable().unwrap();
    let stride = (W * 3).div_ceil(4) * 4;
    let layout = FrameLayout::packed(PixelFormat::Rgb, w, h);
    let mut cut = vec![0u8; layout.min_size()];
    for row in 0..h {
        let from = (y + row) * stride + x * 3;
        cut[row * layout.strides[0]..][..w * 3].copy_from_slice(&map[from..from + w * 3]);
    }
    let dims = &model.info().dims;
    let norm = Normalization {
        mean: dims.norm_mean,
        std: dims.norm_std,
    };
    let mut pixels = vec![0f32; 3 * side * side];
    CpuPreprocessor::new()
        .process(&cut, &layout, (side, side), true, &norm, &mut pixels)
        .unwrap();
    let input =
        candle_core::Tensor::from_vec(pixels, (1, 3, side, side), &candle_core::Device::Cpu)
            .unwrap();
    let output = model.forward_normalized(&input).unwrap();
    output.summary.flatten_all().unwrap().to_vec1().unwrap()
}

#[test]
fn crop_mode_gives_each_region_the_summary_of_its_padded_crop() {
    let mut h = harness("resolution=32 roi-mode=crop roi-padding=0.1 roi-resolution=32");
    let mut buffer = frame(0, 9);
    let boxes = [("person", (8, 4, 20, 30)), ("car", (40, 30, 24, 18))];
    for (roi_type, rect) in boxes {
        gst_video::VideoRegionOfInterestMeta::add(buffer.get_mut().unwrap(), roi_type, rect);
    }
    let expected = [
        // 10 % of 20 x 30 is 2 x 3 px on each side.
        crop_summary(&buffer, (6, 1, 24, 36), 32),
        // 2 x 2 px (2.4 and 1.8 rounded), then clipped at the right and bottom edges.
        crop_summary(&buffer, (38, 28, 26, 20), 32),
    ];
    h.push(buffer).unwrap();
    let found = regions(&h.pull().unwrap()).unwrap();
    assert_eq!(found.len(), 2);
    for (region, expected) in found.iter().zip(&expected) {
        assert_eq!(region.vector.len(), 128, "the summary's width");
        let err = common::max_abs_diff_slices(&region.vector, expected);
        assert!(err <= 1e-5, "{}: off by {err}", region.roi_type);
    }
    assert_eq!(stat(&h, "regions-embedded"), 2);
}

#[test]
fn a_slow_stream_waits_at_most_one_timeout_and_one_forward_beside_a_fast_one() {
    const TIMEOUT_MS: u64 = 50;
    let props = format!(
        "resolution=96 batch-size=8 batch-timeout={} model-instance-id=fair",
        TIMEOUT_MS * 1_000_000
    );
    // The longest forward an element ran, by its own stats.
    let longest_forward = |h: &Harness| {
        let stats = h.element().unwrap().property::<gst::Structure>("stats");
        Duration::from_secs_f64(stats.get::<f64>("max-inference-ms").unwrap() / 1e3)
    };
    // One forward of a full batch at this size, measured alone.
    let forward_alone = {
        let mut h = harness("resolution=96 batch-size=8 batch-timeout=18446744073709551615");
        for i in 0..8 {
            h.push(frame(i, i)).unwrap();
        }
        for _ in 0..8 {
            h.pull().unwrap();
        }
        longest_forward(&h)
    };
    let fast = {
        let props = props.clone();
        std::thread::spawn(move || {
            let mut h = harness(&props);
            // 60 frames a second for 2 s, outputs read at the end.
            for i in 0..120 {
                h.push(frame(i, i)).unwrap();
                std::thread::sleep(Duration::from_millis(1000 / 60));
            }
            h.push_event(gst::event::Eos::new());
            let embedded = (0..120).all(|_| embedding(&h.pull().unwrap()).is_some());
            (embedded, longest_forward(&h))
        })
    };
    let mut slow = harness(&props);
    let mut waits = Vec::new();
    for i in 0..8 {
        std::thread::sleep(Duration::from_millis(200));
        let pushed = std::time::Instant::now();
        slow.push(frame(i, 1000 + i)).unwrap();
        let out = slow.pull().unwrap();
        waits.push(pushed.elapsed());
        assert!(embedding(&out).is_some());
    }
    let (embedded, fast_forward) = fast.join().unwrap();
    assert!(embedded, "a fast stream's frame lost its meta");
    // The forward running when the frame comes, then its own, each as long
    // as the longest this run saw (tests beside this one load the cores, so
    // forwards are slower than alone); 100 ms on top for scheduling noise.
    let forward = forward_alone.max(fast_forward).max(longest_forward(&slow));
    let limit = Duration::from_millis(TIMEOUT_MS + 100) + 2 * forward;
    let worst = waits.iter().max().unwrap();
    assert!(
        *worst <= limit,
        "the 5 fps stream waited {worst:?} (one forward takes {forward:?}; limit {limit:?})"
    );
}

#[test]
fn the_multi_camera_pipeline_indexes_four_cameras_into_one_index() {
    let plugin = common::BuiltPlugin::new("multi-camera");
    let db = plugin.dir().join("cameras.sqlite");
    let mut script = plugin.command(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/pipelines/multi-camera.sh"
    ));
    script
        .env("MODEL", fixture("tiny-so400m"))
        .env("DB", &db)
        .env("FRAMES", "20");
    common::BuiltPlugin::stdout_of(script);
    // 20 frames at 10 fps are 2 s of each camera, embedded at 2 fps.
    for cam in ["cam0", "cam1", "cam2", "cam3"] {
        let rows = gstradio::index::count_rows(&db, Some(cam)).unwrap();
        assert!((3..=5).contains(&rows), "{cam}: {rows} rows");
    }
}
