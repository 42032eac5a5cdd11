// SPDX-License-Identifier: MPL-2.0
//! `radiometapublish` with `method=file`: every embedded frame's message is one
//! line that validates against `schema/radioembed-message.schema.json`, and its
//! vectors decode to exactly the meta's values, in every encoding.

mod common;

use std::path::Path;

use base64::Engine as _;
use common::{TempDir, finish_at_eos, fixture, init, message_schema as validator, start_error};
use gst::prelude::*;
use gstradio::meta::{Embedding, MetaDtype, RegionKind, RegionVectors, region_param};
use serde_json::Value;

/// Decodes a vector of a message: a JSON array, or base64 of f32 / f16 bytes.
fn decode(v: &Value) -> Vec<f32> {
    if let Some(values) = v.as_array() {
        return values.iter().map(|x| x.as_f64().unwrap() as f32).collect();
    }
    let bytes = base64::engine::general_purpose::STANDARD
        .decode(v["data"].as_str().unwrap())
        .unwrap();
    match v["dtype"].as_str().unwrap() {
        "f32" => bytes
            .chunks_exact(4)
            .map(|b| f32::from_le_bytes(b.try_into().unwrap()))
            .collect(),
        "f16" => bytes
            .chunks_exact(2)
            .map(|b| half::f16::from_le_bytes([b[0], b[1]]).to_f32())
            .collect(),
        other => panic!("unknown dtype {other}"),
    }
}

/// Plays 5 frames through radioembed and radiometapublish (`props`) into an
/// appsink; a probe stamps each frame with a Unix reference timestamp of
/// 1,700,000,000.5 s plus its PTS and gives the odd frames a `person` region
/// with a vector ([`region_vector`]). Returns the embeddings the appsink got.
fn publish(meta_dtype: &str, props: &str) -> Vec<Embedding> {
    init();
    let pipeline = gst::parse::launch(&format!(
        "videotestsrc num-buffers=5 ! video/x-raw,width=64,height=48,framerate=10/1 ! \
         radioembed model={} resolution=32 spatial-pool=2 meta-dtype={meta_dtype} ! \
         radiometapublish name=publish {props} ! appsink name=sink sync=false",
        fixture("tiny-so400m").display()
    ))
    .unwrap()
    .downcast::<gst::Pipeline>()
    .unwrap();
    let reference = gst::Caps::new_empty_simple("timestamp/x-unix");
    let publish = pipeline.by_name("publish").unwrap();
    publish
        .static_pad("sink")
        .unwrap()
        .add_probe(gst::PadProbeType::BUFFER, move |_, info| {
            if let Some(gst::PadProbeData::Buffer(buffer)) = &mut info.data {
                let at = gst::ClockTime::from_mseconds(1_700_000_000_500)
                    + buffer.pts().unwrap_or_default();
                let frame = buffer.pts().unwrap_or_default().mseconds() / 100;
                let buffer = buffer.make_mut();
                gst::ReferenceTimestampMeta::add(buffer, &reference, at, None);
                if frame % 2 == 1 {
                    let rect = (4 + frame as u32, 2, 10, 8);
                    let mut roi = gst_video::VideoRegionOfInterestMeta::add(buffer, "person", rect);
                    roi.set_id(frame as i32);
                    let vectors = RegionVectors {
                        vector: region_vector(frame),
                        adaptors: Vec::new(),
                    };
                    roi.add_param(region_param(&vectors, MetaDtype::F32, RegionKind::Pool));
                }
            }
            gst::PadProbeReturn::Ok
        });
    let sink = pipeline.by_name("sink").unwrap();
    pipeline.set_state(gst::State::Playing).unwrap();
    let mut embeddings = Vec::new();
    while let Some(sample) = sink.emit_by_name::<Option<gst::Sample>>("pull-sample", &[]) {
        let buffer = sample.buffer().unwrap();
        embeddings.push(Embedding::from_buffer(buffer).unwrap().unwrap());
    }
    finish_at_eos(&pipeline);
    embeddings
}

/// The vector the probe gives frame `frame`'s region.
fn region_vector(frame: u64) -> Vec<f32> {
    vec![frame as f32, 0.5, -1.25]
}

/// Checks every line of `file` against the schema and the frame it describes.
fn check_lines(file: &Path, embeddings: &[Embedding], with_spatial: bool) {
    let validator = validator();
    let text = std::fs::read_to_string(file).unwrap();
    let lines: Vec<&str> = text.lines().collect();
    assert_eq!(lines.len(), embeddings.len(), "one line per embedded frame");
    for (i, (line, e)) in lines.iter().zip(embeddings).enumerate() {
        let m: Value = serde_json::from_str(line).unwrap();
        if let Err(err) = validator.validate(&m) {
            panic!("line {i} does not match the schema: {err}\n{line}");
        }
        assert_eq!(m["source-id"], "frames");
        assert_eq!(m["frame-index"], e.frame_index);
        assert_eq!(m["pts-ns"], i as u64 * 100_000_000);
        assert_eq!(m["stream-time-ns"], i as u64 * 100_000_000);
        assert_eq!(
            m["timestamp"],
            format!("2023-11-14T22:13:20.{}00000Z", 5 + i)
        );
        assert_eq!(
            (m["input-width"].clone(), m["input-height"].clone()),
            (48.into(), 32.into())
        );
        assert_eq!(
            decode(&m["summary"]),
            *e.summary.as_ref().unwrap(),
            "summary of line {i}"
        );
        if i % 2 == 1 {
            let objects = m["objects"]
                .as_array()
                .expect("the odd frames have a region");
            assert_eq!(objects.len(), 1);
            let o = &objects[0];
            assert_eq!(
                (o["id"].clone(), o["type"].clone()),
                (i.into(), "person".into())
            );
            assert_eq!(
                o["box"],
                serde_json::json!({"x": 4 + i, "y": 2, "width": 10, "height": 8})
            );
            assert_eq!(o["kind"], "pool");
            assert_eq!(decode(&o["vector"]), region_vector(i as u64));
        } else {
            assert!(m.get("objects").is_none(), "line {i} has no region");
        }
        if with_spatial {
            let spatial = &m["spatial"];
            assert_eq!(
                (
                    spatial["grid-height"].clone(),
                    spatial["grid-width"].clone()
                ),
                (1.into(), 1.into())
            );
            assert_eq!(spatial["dim"], e.spatial_dim);
            assert_eq!(decode(&spatial["values"]), *e.spatial.as_ref().unwrap());
        } else {
            assert!(m.get("spatial").is_none());
        }
    }
}

#[test]
fn every_frame_is_one_line_that_decodes_to_the_meta_in_every_encoding() {
    let dir = TempDir::new("publish-file");
    for (encoding, meta_dtype) in [
        ("json", "f32"),
        ("base64-f32", "f32"),
        ("base64-f16", "f16"),
    ] {
        let file = dir.join(format!("{encoding}.jsonl"));
        let embeddings = publish(
            meta_dtype,
            &format!(
                "location={} source-id=frames vector-encoding={encoding} spatial=true",
                file.display()
            ),
        );
        assert_eq!(embeddings.len(), 5);
        check_lines(&file, &embeddings, true);
    }
    let file = dir.join("summary.jsonl");
    let embeddings = publish(
        "f32",
        &format!("location={} source-id=frames", file.display()),
    );
    check_lines(&file, &embeddings, false);
}

#[test]
fn an_unwritable_location_is_a_clear_error_at_start() {
    let err = start_error(
        "videotestsrc num-buffers=1 ! radiometapublish location=/proc/no/such/dir/x.jsonl ! \
         fakesink",
    );
    assert!(err.matches(gst::ResourceError::OpenWrite), "{err:?}");
    assert!(
        err.to_string()
            .starts_with("cannot start publishing: cannot open /proc/no/such/dir/x.jsonl"),
        "{err}"
    );
}

#[cfg(not(feature = "kafka"))]
#[test]
fn kafka_in_a_build_without_it_says_how_to_get_it() {
    let err = start_error("videotestsrc num-buffers=1 ! radiometapublish method=kafka ! fakesink");
    assert!(
        err.to_string()
            .contains("rebuild with `cargo build --features kafka`"),
        "{err}"
    );
}

#[test]
fn an_unknown_method_is_refused_by_name() {
    init();
    let err = gst::parse::launch("videotestsrc ! radiometapublish method=amqp ! fakesink")
        .expect_err("no such method");
    assert!(err.to_string().contains("method"), "{err}");
    assert!(err.to_string().contains("amqp"), "{err}");
}

/// A live pipeline on a real-time clock: every frame is stamped with the wall
/// clock (frames prerolled before PLAYING have no clock, hence no stamp).
#[test]
fn a_realtime_pipeline_clock_gives_wall_clock_timestamps() {
    init();
    let dir = TempDir::new("publish-realtime");
    let file = dir.join("frames.jsonl");
    let pipeline = gst::parse::launch(&format!(
        "videotestsrc is-live=true num-buffers=3 ! \
         video/x-raw,width=64,height=48,framerate=10/1 ! \
         radioembed model={} resolution=32 ! radiometapublish location={} ! fakesink",
        fixture("tiny-so400m").display(),
        file.display()
    ))
    .unwrap()
    .downcast::<gst::Pipeline>()
    .unwrap();
    let realtime = gst::glib::Object::builder::<gst::SystemClock>()
        .property("clock-type", gst::ClockType::Realtime)
        .build();
    pipeline.use_clock(Some(&realtime));
    let unix_now = || {
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_secs_f64()
    };
    let started = unix_now();
    pipeline.set_state(gst::State::Playing).unwrap();
    finish_at_eos(&pipeline);
    let ended = unix_now();
    let text = std::fs::read_to_string(&file).unwrap();
    assert_eq!(text.lines().count(), 3);
    for line in text.lines() {
        let m: Value = serde_json::from_str(line).unwrap();
        let stamp = m["timestamp"]
            .as_str()
            .expect("a timestamp on a real-time clock");
        let at = gst::glib::DateTime::from_iso8601(stamp, None).unwrap();
        let at = at.to_unix() as f64 + f64::from(at.microsecond()) / 1e6;
        assert!(
            (started - 1.0..=ended + 1.0).contains(&at),
            "{stamp} is not within the run ({started}..{ended})"
        );
    }
}
