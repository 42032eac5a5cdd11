//! Indexing a clip and searching it: `radio-embed index` / `search` with the
//! tiny fixture model on the CPU, re-indexing, a killed indexer, and bad input.

mod common;

use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::time::{Duration, Instant};

use common::fixture;
use gst::prelude::*;
use gstradio::index::count_rows;

struct TempDir(PathBuf);

impl TempDir {
    fn new(tag: &str) -> Self {
        let dir = std::env::temp_dir().join(format!("radio-index-{tag}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        Self(dir)
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// An MJPEG AVI of three 2-second videotestsrc patterns at 10 frames/s.
fn make_clip(path: &Path, frames_per_pattern: u32) {
    gst::init().unwrap();
    let branch = |pattern: &str| {
        format!(
            "videotestsrc pattern={pattern} num-buffers={frames_per_pattern} ! \
             video/x-raw,width=160,height=120,framerate=10/1 ! c. "
        )
    };
    let launch = format!(
        "concat name=c ! videoconvert ! jpegenc ! avimux ! filesink location={} {}{}{}",
        path.display(),
        branch("smpte"),
        branch("ball"),
        branch("snow")
    );
    let pipeline = gst::parse::launch(&launch).unwrap();
    pipeline.set_state(gst::State::Playing).unwrap();
    let msg = pipeline
        .bus()
        .unwrap()
        .timed_pop_filtered(
            gst::ClockTime::from_seconds(60),
            &[gst::MessageType::Eos, gst::MessageType::Error],
        )
        .unwrap();
    pipeline.set_state(gst::State::Null).unwrap();
    assert_eq!(msg.type_(), gst::MessageType::Eos, "clip encoding failed");
}

fn radio_embed(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_radio-embed"))
        .args(args)
        .output()
        .unwrap()
}

fn index(clip: &Path, db: &Path, model: &str) -> Output {
    radio_embed(&[
        "index",
        clip.to_str().unwrap(),
        "--db",
        db.to_str().unwrap(),
        "--fps",
        "5",
        "--model",
        model,
        "--resolution",
        "64",
    ])
}

fn tiny() -> String {
    fixture("tiny-so400m").display().to_string()
}

#[test]
fn a_frame_finds_itself_and_reindexing_replaces_rows() {
    let dir = TempDir::new("search");
    let (clip, db) = (dir.0.join("clip.avi"), dir.0.join("idx.sqlite"));
    make_clip(&clip, 20);
    let out = index(&clip, &db, &tiny());
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        stdout.starts_with("indexed 30 frames from 1 source(s)"),
        "{stdout}"
    );
    assert_eq!(count_rows(&db, None).unwrap(), 30);

    for at in ["0.4", "2.4", "4.6"] {
        let out = radio_embed(&[
            "search",
            "--db",
            db.to_str().unwrap(),
            "--frame",
            &format!("{}@{at}", clip.display()),
            "-k",
            "3",
            "--json",
        ]);
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        let hits: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
        let top = &hits[0];
        let expected_ns = (at.parse::<f64>().unwrap() * 1e9).round() as u64;
        assert_eq!(top["pts_ns"].as_u64(), Some(expected_ns), "{hits}");
        assert!(top["score"].as_f64().unwrap() >= 0.9999, "{hits}");
        assert!(top["source"].as_str().unwrap().ends_with("clip.avi"));
        assert_eq!(hits.as_array().unwrap().len(), 3);
    }

    let out = index(&clip, &db, &tiny());
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(
        count_rows(&db, None).unwrap(),
        30,
        "re-indexing duplicated rows"
    );
}

#[test]
fn a_killed_indexer_leaves_a_valid_file_and_a_rerun_completes() {
    let dir = TempDir::new("kill");
    let (clip, db) = (dir.0.join("long.avi"), dir.0.join("idx.sqlite"));
    make_clip(&clip, 400);
    let args = |db: &Path| {
        vec![
            "index".to_string(),
            clip.display().to_string(),
            "--db".into(),
            db.display().to_string(),
            "--fps".into(),
            "10".into(),
            "--model".into(),
            tiny(),
            "--resolution".into(),
            "256".into(),
            "--transaction-rows".into(),
            "16".into(),
        ]
    };
    let mut child = Command::new(env!("CARGO_BIN_EXE_radio-embed"))
        .args(args(&db))
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    // Wait for the first committed transaction, then kill without warning.
    let started = Instant::now();
    let mut committed = 0;
    while committed == 0 && started.elapsed() < Duration::from_secs(60) {
        std::thread::sleep(Duration::from_millis(20));
        committed = count_rows(&db, None).unwrap_or(0);
    }
    child.kill().unwrap();
    let status = child.wait().unwrap();
    assert!(
        !status.success(),
        "the indexer finished before it could be killed"
    );
    let after_kill = count_rows(&db, None).expect("the index opens after SIGKILL");
    assert!(
        after_kill >= 16 && after_kill.is_multiple_of(16),
        "{after_kill} rows: a partial transaction"
    );
    assert!(after_kill < 1200);

    let out = radio_embed(&args(&db).iter().map(String::as_str).collect::<Vec<_>>());
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(count_rows(&db, None).unwrap(), 1200);
}

#[test]
fn bad_input_is_refused_and_the_index_untouched() {
    let dir = TempDir::new("bad");
    let (clip, db) = (dir.0.join("clip.avi"), dir.0.join("idx.sqlite"));
    make_clip(&clip, 5);
    assert!(index(&clip, &db, &tiny()).status.success());
    let rows = count_rows(&db, None).unwrap();

    let out = index(&dir.0.join("missing.mp4"), &db, &tiny());
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("cannot read") && err.contains("missing.mp4"),
        "{err}"
    );

    let other = fixture("tiny-h").display().to_string();
    let out = index(&clip, &db, &other);
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("was built with model = "), "{err}");
    assert!(
        err.contains("tiny-so400m") && err.contains("tiny-h"),
        "{err}"
    );

    let out = index(&clip, Path::new("/proc/radio-index.sqlite"), &tiny());
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("/proc/radio-index.sqlite"), "{err}");

    assert_eq!(count_rows(&db, None).unwrap(), rows);
    let out = radio_embed(&["search", "--db", clip.to_str().unwrap(), "--frame", "x@1"]);
    assert!(!out.status.success());
}
