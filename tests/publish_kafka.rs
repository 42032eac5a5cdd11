// SPDX-License-Identifier: MPL-2.0
//! `radiometapublish method=kafka` (the `kafka` feature; scripts/test.sh runs it).
//!
//! The broker is librdkafka's built-in mock cluster (rdkafka's `MockCluster`):
//! the client library's mock of a Kafka cluster, in this process, not a real
//! broker. Two cameras publish into one topic of three partitions; consumed
//! back, every record is keyed by its camera, each camera's frames are in
//! order, and every payload equals its frame's meta.
#![cfg(feature = "kafka")]

mod common;

use std::collections::HashMap;
use std::time::{Duration, Instant};

use common::{finish_at_eos, fixture, init};
use gst::prelude::*;
use gstradio::meta::Embedding;
use rdkafka::ClientConfig;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::message::Message;
use rdkafka::mocking::MockCluster;
use serde_json::Value;

const FRAMES: u32 = 12;

/// Plays two cameras into Kafka at `brokers`; returns each camera's embeddings.
fn publish(brokers: &str) -> HashMap<String, Vec<Embedding>> {
    init();
    let branch = |camera: &str, pattern: &str| {
        format!(
            "videotestsrc num-buffers={FRAMES} pattern={pattern} ! \
             video/x-raw,width=64,height=48 ! radioembed model={} resolution=32 ! \
             radiometapublish method=kafka address={brokers} compression=gzip \
             source-id={camera} ! appsink name={camera} sync=false ",
            fixture("tiny-so400m").display()
        )
    };
    let pipeline = gst::parse::launch(&(branch("cam-a", "smpte") + &branch("cam-b", "ball")))
        .unwrap()
        .downcast::<gst::Pipeline>()
        .unwrap();
    pipeline.set_state(gst::State::Playing).unwrap();
    let mut embeddings = HashMap::new();
    for camera in ["cam-a", "cam-b"] {
        let sink = pipeline.by_name(camera).unwrap();
        let mut got = Vec::new();
        while let Some(sample) = sink.emit_by_name::<Option<gst::Sample>>("pull-sample", &[]) {
            got.push(
                Embedding::from_buffer(sample.buffer().unwrap())
                    .unwrap()
                    .unwrap(),
            );
        }
        embeddings.insert(camera.to_string(), got);
    }
    finish_at_eos(&pipeline);
    embeddings
}

#[test]
fn records_are_keyed_by_camera_in_order_and_equal_the_meta() {
    let cluster = MockCluster::new(1).unwrap();
    cluster.create_topic("radioembed", 3, 1).unwrap();
    let brokers = cluster.bootstrap_servers();
    let embeddings = publish(&brokers);

    let consumer: BaseConsumer = ClientConfig::new()
        .set("bootstrap.servers", &brokers)
        .set("group.id", "test")
        .set("auto.offset.reset", "earliest")
        .create()
        .unwrap();
    consumer.subscribe(&["radioembed"]).unwrap();
    let mut records: HashMap<String, Vec<Value>> = HashMap::new();
    let deadline = Instant::now() + Duration::from_secs(30);
    while records.values().map(Vec::len).sum::<usize>() < 2 * FRAMES as usize {
        assert!(Instant::now() < deadline, "only {records:?} came back");
        let Some(message) = consumer.poll(Duration::from_millis(100)) else {
            continue;
        };
        let message = message.unwrap();
        let key = String::from_utf8(message.key().unwrap().to_vec()).unwrap();
        let value: Value = serde_json::from_slice(message.payload().unwrap()).unwrap();
        records.entry(key).or_default().push(value);
    }
    assert_eq!(records.len(), 2, "keys: {:?}", records.keys());
    for (camera, values) in &records {
        let frames = &embeddings[camera];
        let indices: Vec<u64> = values
            .iter()
            .map(|v| v["frame-index"].as_u64().unwrap())
            .collect();
        assert_eq!(
            indices,
            (0..u64::from(FRAMES)).collect::<Vec<_>>(),
            "{camera} out of order"
        );
        for (value, frame) in values.iter().zip(frames) {
            assert_eq!(value["source-id"], camera.as_str());
            let summary: Vec<f32> = value["summary"]
                .as_array()
                .unwrap()
                .iter()
                .map(|x| x.as_f64().unwrap() as f32)
                .collect();
            assert_eq!(summary, *frame.summary.as_ref().unwrap());
        }
    }
}
