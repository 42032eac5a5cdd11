// SPDX-License-Identifier: MPL-2.0
//! The search page over 100,000 rows: page load and time to first result in
//! headless chromium (upload a frame, the first result and its thumbnail on
//! screen), against `radio-embed search --json` on the same index and query,
//! measured in the same run. Tiny test model on the CPU; 100 sources of 1,000
//! rows, each row with a 256x144 thumbnail.
//!
//!     cargo bench --bench serve

mod common;
#[path = "../tests/common/serve_process.rs"]
mod serve_process;
#[path = "../tests/common/webdriver.rs"]
mod webdriver;

use std::path::Path;
use std::process::Command;
use std::time::Instant;

use gstradio::index::{Appended, IndexSettings, IndexWriter, Row, Thumbnail};
use serde_json::json;

const SOURCES: u64 = 100;
const ROWS_PER_SOURCE: u64 = 1000;
const RUNS: usize = 5;

fn main() {
    common::start();
    let dir = Path::new("target/bench/serve");
    std::fs::create_dir_all(dir).unwrap();
    let model = Path::new("tests/fixtures/tiny-so400m")
        .canonicalize()
        .unwrap();
    let png = dir.join("query.png");
    let launch = format!(
        "videotestsrc pattern=smpte num-buffers=1 ! video/x-raw,width=160,height=120 ! \
         pngenc ! filesink location={}",
        png.display()
    );
    assert!(
        Command::new("gst-launch-1.0")
            .arg("-q")
            .args(launch.split_whitespace())
            .status()
            .unwrap()
            .success()
    );

    // The index: the tiny model's settings (80x64 input for 160x120 frames at
    // resolution 64), random summaries, one thumbnail for all rows.
    let db = dir.join("rows-100k.sqlite");
    let _ = std::fs::remove_file(&db);
    let settings = IndexSettings {
        model: model.display().to_string(),
        input: "80x64".into(),
        summary_dim: 128,
    };
    let mut jpeg = Vec::new();
    let thumb = image::RgbImage::from_fn(256, 144, |x, y| image::Rgb([x as u8, y as u8, 128]));
    image::codecs::jpeg::JpegEncoder::new_with_quality(&mut jpeg, 80)
        .encode_image(&thumb)
        .unwrap();
    let started = Instant::now();
    for s in 0..SOURCES {
        let source = format!("file:///cams/cam-{s:03}.webm");
        let mut writer = IndexWriter::open(&db, &settings, &source, 1000).unwrap();
        for f in 0..ROWS_PER_SOURCE {
            let row = Row {
                pts_ns: Some(f * 1_000_000_000),
                pts_end_ns: None,
                frame_index: f,
                input_size: (80, 64),
                summary: common::random_vector(s * ROWS_PER_SOURCE + f, 128),
                spatial: None,
                objects: Vec::new(),
                adaptors: Vec::new(),
                thumbnail: Some(Thumbnail::jpeg(jpeg.clone())),
            };
            assert_eq!(writer.append(row).unwrap(), Appended::Row);
        }
        writer.finish().unwrap();
    }
    println!(
        "index: {} rows with {}-byte thumbnails, {:.0} MB, written in {:.1} s",
        SOURCES * ROWS_PER_SOURCE,
        jpeg.len(),
        std::fs::metadata(&db).unwrap().len() as f64 / 1e6,
        started.elapsed().as_secs_f64()
    );

    let bin = env!("CARGO_BIN_EXE_radio-embed");
    // The baseline: the CLI's search of the same query, process start to JSON.
    let mut cli = Vec::new();
    for _ in 0..RUNS {
        let started = Instant::now();
        let out = Command::new(bin)
            .args(["search", "--db", db.to_str().unwrap(), "--image"])
            .arg(&png)
            .args(["--json", "-k", "24"])
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        cli.push(started.elapsed().as_secs_f64() * 1000.0);
    }

    let server = serve_process::Server::start(&db, &[]);
    let url = format!("{}/", server.url);

    let browser = webdriver::Browser::start();
    let query = png.canonicalize().unwrap().display().to_string();
    let (mut load, mut first, mut thumbnail) = (Vec::new(), Vec::new(), Vec::new());
    for _ in 0..RUNS {
        browser.call("POST", "/url", json!({ "url": url }));
        browser.wait_for("return document.readyState === 'complete'", 30);
        load.push(
            browser
                .script("return performance.getEntriesByType('navigation')[0].duration")
                .as_f64()
                .unwrap(),
        );
        // Clocks in the page: from the upload to the first result shown, and to
        // its thumbnail decoded.
        browser.script(
            "window.t0 = performance.now(); \
             new MutationObserver((_, o) => { \
               const img = document.querySelector('.result img'); \
               if (!img) return; \
               o.disconnect(); window.t1 = performance.now(); \
               const done = () => { window.t2 = performance.now(); }; \
               if (img.complete) done(); else img.addEventListener('load', done); \
             }).observe(document.getElementById('results'), { childList: true });",
        );
        let picker = browser.element("#image");
        browser.call(
            "POST",
            &format!("/element/{picker}/value"),
            json!({ "text": query }),
        );
        browser.wait_for("return window.t2 !== undefined", 60);
        let times = browser.script("return [window.t1 - window.t0, window.t2 - window.t0]");
        first.push(times[0].as_f64().unwrap());
        thumbnail.push(times[1].as_f64().unwrap());
    }
    drop(browser);
    drop(server);

    let median = |v: &mut Vec<f64>| {
        v.sort_by(f64::total_cmp);
        v[v.len() / 2]
    };
    let (cli, load, first, thumbnail) = (
        median(&mut cli),
        median(&mut load),
        median(&mut first),
        median(&mut thumbnail),
    );
    println!("medians of {RUNS} runs, 100,000 rows:");
    println!("  radio-embed search --json (baseline):  {cli:7.1} ms, process start to results");
    println!("  page load:                             {load:7.1} ms");
    println!(
        "  upload to first result on the page:    {first:7.1} ms ({:.2} x the CLI's search)",
        first / cli
    );
    println!(
        "  upload to its thumbnail decoded:       {thumbnail:7.1} ms ({:.2} x the CLI's search)",
        thumbnail / cli
    );
    println!(
        "  page load + first result:              {:7.1} ms (target: <= 500 ms)",
        load + first
    );
}
