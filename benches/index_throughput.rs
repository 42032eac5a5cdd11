// SPDX-License-Identifier: MPL-2.0
//! Indexing throughput: a 1080p MJPEG clip through
//! `uridecodebin ! videoconvert ! radioembed ! radioindexsink` with the tiny test
//! model on the CPU; prints frames/s and the share of wall time spent outside the
//! element's embedding work (decode, conversion, index writes).
//!
//!     cargo bench --bench index_throughput

mod common;

use std::path::Path;
use std::time::Instant;

use gst::prelude::*;

const FRAMES: u32 = 60;

fn run(launch: &str) -> gst::Pipeline {
    let pipeline = gst::parse::launch(launch)
        .unwrap()
        .downcast::<gst::Pipeline>()
        .unwrap();
    common::play_to_eos(pipeline.upcast_ref());
    pipeline
}

fn main() {
    common::start();
    std::fs::create_dir_all("target/bench").unwrap();
    let clip = Path::new("target/bench/clip-1080p.avi").canonicalize();
    let clip = match clip {
        Ok(path) => path,
        Err(_) => {
            run(&format!(
                "videotestsrc num-buffers={FRAMES} pattern=ball ! \
                 video/x-raw,width=1920,height=1080,framerate=30/1 ! jpegenc ! avimux ! \
                 filesink location=target/bench/clip-1080p.avi"
            ))
            .set_state(gst::State::Null)
            .unwrap();
            Path::new("target/bench/clip-1080p.avi")
                .canonicalize()
                .unwrap()
        }
    };
    let model = Path::new("tests/fixtures/tiny-so400m")
        .canonicalize()
        .unwrap();
    let index = |resolution: u32, sink: &str| -> (f64, gst::Structure, u64) {
        let db = Path::new("target/bench/throughput.sqlite");
        let _ = std::fs::remove_file(db);
        let started = Instant::now();
        let pipeline = run(&format!(
            "uridecodebin uri=file://{} caps=video/x-raw ! videoconvert ! \
             radioembed name=embed model={} device=cpu batch-size=4 resolution={resolution} ! \
             radioindexsink location={} {sink}",
            clip.display(),
            model.display(),
            db.display()
        ));
        let wall = started.elapsed().as_secs_f64();
        let stats = pipeline
            .by_name("embed")
            .unwrap()
            .property::<gst::Structure>("stats");
        pipeline.set_state(gst::State::Null).unwrap();
        (wall, stats, gstradio::index::count_rows(db, None).unwrap())
    };

    let (wall, stats, _) = index(512, "");
    let frames = stats.get::<u64>("frames-embedded").unwrap();
    let batches = stats.get::<u64>("batches").unwrap() as f64;
    let embedding = stats.get::<f64>("mean-inference-ms").unwrap() * batches / 1000.0;
    println!(
        "1080p MJPEG, {frames} frames, tiny model at 512 px, batch 4: {:.1} frames/s; \
         embedding (preprocess + model) {:.0} % of wall time, outside it {:.0} %",
        frames as f64 / wall,
        100.0 * embedding / wall,
        100.0 * (1.0 - embedding / wall)
    );

    // Thumbnails and dedup against the plain sink, each measured here, in
    // alternation, best of five; the model at 128 px so that the sink's share
    // shows.
    let variants = [
        ("plain", ""),
        ("thumbnails", "thumbnails=true"),
        ("dedup 0.98", "dedup-threshold=0.98"),
        (
            "thumbnails + dedup 0.98",
            "thumbnails=true dedup-threshold=0.98",
        ),
    ];
    let mut best = [(f64::INFINITY, 0u64); 4];
    for _ in 0..5 {
        for (i, (_, sink)) in variants.iter().enumerate() {
            let (wall, _, rows) = index(128, sink);
            best[i] = (best[i].0.min(wall), rows);
        }
    }
    let (base, _) = best[0];
    println!("the same at 128 px, 1080p frames, best of 5 runs each:");
    for ((name, _), (wall, rows)) in variants.iter().zip(best) {
        println!(
            "{name:>24}: {:6.1} frames/s, {rows:2} rows; {:.3} x the plain sink's time, \
             {:+6.2} ms per frame, {:+6.2} ms per stored row",
            frames as f64 / wall,
            wall / base,
            1000.0 * (wall - base) / frames as f64,
            1000.0 * (wall - base) / rows.max(1) as f64
        );
    }
}
