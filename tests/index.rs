// SPDX-License-Identifier: MPL-2.0
//! Indexing a clip and searching it: `radio-embed index` / `search` with the
//! tiny fixture model on the CPU, re-indexing, a killed indexer, and bad input.

mod common;

use std::path::{Path, PathBuf};
use std::process::Output;
use std::time::{Duration, Instant};

use common::{TempDir, fixture, run_cli};
use gst::prelude::*;
use gstradio::index::count_rows;

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
    assert_eq!(play(&launch), gst::MessageType::Eos, "clip encoding failed");
}

/// Plays `launch` until EOS or an error (within a minute); which one came.
fn play(launch: &str) -> gst::MessageType {
    let pipeline = gst::parse::launch(launch).unwrap();
    pipeline.set_state(gst::State::Playing).unwrap();
    let msg = pipeline
        .bus()
        .unwrap()
        .timed_pop_filtered(
            gst::ClockTime::from_seconds(60),
            &[gst::MessageType::Eos, gst::MessageType::Error],
        )
        .expect("the pipeline ended within a minute");
    pipeline.set_state(gst::State::Null).unwrap();
    msg.type_()
}

/// `radio-embed index` of `clip` at 5 frames/s, one row per frame (no dedup: the
/// tests count rows per sampled frame; dedup has its own test).
fn index(clip: &Path, db: &Path, model: &str) -> Output {
    run_cli(&[
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
        "--dedup-threshold",
        "0",
    ])
}

/// Fails with the process's stderr unless it succeeded.
fn assert_succeeded(out: &Output) {
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

fn tiny() -> String {
    fixture("tiny-so400m").display().to_string()
}

/// Indexes the clip into `db`, checks that frames find themselves, then indexes
/// it again (and a second source) to check that rows are replaced, not added.
fn frames_find_themselves_and_reindexing_replaces_rows(store: &str) {
    let dir = TempDir::new(&format!("search-{store}"));
    let (clip, db) = (dir.join("clip.avi"), dir.join(format!("idx.{store}")));
    make_clip(&clip, 20);
    let out = index(&clip, &db, &tiny());
    assert_succeeded(&out);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        stdout.starts_with("indexed 30 frames from 1 source(s)"),
        "{stdout}"
    );
    assert_eq!(count_rows(&db, None).unwrap(), 30);

    for at in ["0.4", "2.4", "4.6"] {
        let out = run_cli(&[
            "search",
            "--db",
            db.to_str().unwrap(),
            "--frame",
            &format!("{}@{at}", clip.display()),
            "-k",
            "3",
            "--json",
        ]);
        assert_succeeded(&out);
        let hits: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
        let top = &hits[0];
        let expected_ns = (at.parse::<f64>().unwrap() * 1e9).round() as u64;
        assert_eq!(top["pts_ns"].as_u64(), Some(expected_ns), "{hits}");
        assert!(top["score"].as_f64().unwrap() >= 0.9999, "{hits}");
        assert!(top["source"].as_str().unwrap().ends_with("clip.avi"));
        assert_eq!(hits.as_array().unwrap().len(), 3);
    }

    let copy = dir.join("copy.avi");
    std::fs::copy(&clip, &copy).unwrap();
    let out = index(&copy, &db, &tiny());
    assert_succeeded(&out);
    let out = index(&clip, &db, &tiny());
    assert_succeeded(&out);
    assert_eq!(
        count_rows(&db, None).unwrap(),
        60,
        "re-indexing duplicated or lost rows"
    );
    let uri = |p: &Path| glib::filename_to_uri(p, None).unwrap().to_string();
    assert_eq!(count_rows(&db, Some(&uri(&clip))).unwrap(), 30);
    assert_eq!(count_rows(&db, Some(&uri(&copy))).unwrap(), 30);
}

#[test]
fn a_frame_finds_itself_and_reindexing_replaces_rows_sqlite() {
    frames_find_themselves_and_reindexing_replaces_rows("sqlite");
}

#[test]
fn a_frame_finds_itself_and_reindexing_replaces_rows_parquet() {
    frames_find_themselves_and_reindexing_replaces_rows("parquet");
}

#[test]
fn a_killed_indexer_leaves_the_index_as_it_was_and_a_rerun_completes() {
    let dir = TempDir::new("kill");
    let (clip, db) = (dir.join("long.avi"), dir.join("idx.sqlite"));
    make_clip(&clip, 400);
    let args = |fps: &str| {
        vec![
            "index".to_string(),
            clip.display().to_string(),
            "--db".into(),
            db.display().to_string(),
            "--fps".into(),
            fps.into(),
            "--model".into(),
            tiny(),
            "--resolution".into(),
            "256".into(),
            "--transaction-rows".into(),
            "16".into(),
            "--dedup-threshold".into(),
            "0".into(),
        ]
    };
    let run = |fps: &str| {
        let out = run_cli(&args(fps).iter().map(String::as_str).collect::<Vec<_>>());
        assert_succeeded(&out);
    };
    // A complete index of the 120 s clip at 1 frame/s.
    run("1");
    assert_eq!(count_rows(&db, None).unwrap(), 120);

    // Index it again at 10 frames/s; kill the indexer once its first
    // transactions are written, without warning.
    let mut child = common::cli()
        .args(args("10"))
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let pending = || -> i64 {
        rusqlite::Connection::open(&db)
            .and_then(|c| {
                c.query_row(
                    "SELECT count(*) FROM frame_rows
                     WHERE run IN (SELECT id FROM runs WHERE NOT complete)",
                    [],
                    |r| r.get(0),
                )
            })
            .unwrap_or(0)
    };
    let started = Instant::now();
    while pending() < 32 && started.elapsed() < Duration::from_secs(60) {
        std::thread::sleep(Duration::from_millis(20));
    }
    child.kill().unwrap();
    let status = child.wait().unwrap();
    assert!(
        !status.success(),
        "the indexer finished before it could be killed"
    );
    // The killed run's rows never became visible: the old ones are all there.
    assert_eq!(
        count_rows(&db, None).expect("the index opens after SIGKILL"),
        120
    );

    run("10");
    assert_eq!(count_rows(&db, None).unwrap(), 1200);
    assert_eq!(pending(), 0, "the dead run's rows were not cleared");
}

/// Indexes `clip` into `db` through a pipeline whose decoded stream fails
/// after `frames` frames.
fn index_until_an_upstream_error(clip: &Path, db: &Path, source: &str, frames: u32) {
    common::init();
    let launch = format!(
        "filesrc location={} ! decodebin ! videoconvert ! identity error-after={frames} ! \
         radioembed model={} resolution=64 outputs=summary ! \
         radioindexsink location={} source-id={source} transaction-rows=2",
        clip.display(),
        tiny(),
        db.display()
    );
    assert_eq!(
        play(&launch),
        gst::MessageType::Error,
        "the stream did not fail"
    );
}

fn an_upstream_error_keeps_the_old_rows(store: &str) {
    let dir = TempDir::new(&format!("error-{store}"));
    let (clip, db) = (dir.join("clip.avi"), dir.join(format!("idx.{store}")));
    make_clip(&clip, 20);
    let out = index(&clip, &db, &tiny());
    assert_succeeded(&out);
    assert_eq!(count_rows(&db, None).unwrap(), 30);
    let uri = glib::filename_to_uri(clip.canonicalize().unwrap(), None).unwrap();

    index_until_an_upstream_error(&clip, &db, &uri, 6);
    assert_eq!(
        count_rows(&db, Some(&uri)).unwrap(),
        30,
        "rows lost to a failed run"
    );
    if store == "parquet" {
        assert!(!dir.join("idx.parquet.partial").exists());
    }
}

#[test]
fn an_upstream_error_keeps_the_old_rows_sqlite() {
    an_upstream_error_keeps_the_old_rows("sqlite");
}

#[test]
fn an_upstream_error_keeps_the_old_rows_parquet() {
    an_upstream_error_keeps_the_old_rows("parquet");
}

/// An unreadable video, an index of another model and an unwritable path are
/// refused with a clear message, and the existing index keeps its rows.
fn bad_input_is_refused_and_the_index_untouched(store: &str) {
    let dir = TempDir::new(&format!("bad-{store}"));
    let (clip, db) = (dir.join("clip.avi"), dir.join(format!("idx.{store}")));
    make_clip(&clip, 5);
    assert!(index(&clip, &db, &tiny()).status.success());
    let rows = count_rows(&db, None).unwrap();
    let bytes = std::fs::read(&db).unwrap();

    let out = index(&dir.join("missing.mp4"), &db, &tiny());
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

    let unwritable = format!("/proc/radio-index.{store}");
    let out = index(&clip, Path::new(&unwritable), &tiny());
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains(&unwritable), "{err}");

    assert_eq!(count_rows(&db, None).unwrap(), rows);
    if store == "parquet" {
        assert!(
            std::fs::read(&db).unwrap() == bytes,
            "the Parquet index changed"
        );
        let partial = dir.join("idx.parquet.partial");
        assert!(
            !partial.exists(),
            "a refused run left {}",
            partial.display()
        );
    }
    let out = run_cli(&["search", "--db", clip.to_str().unwrap(), "--frame", "x@1"]);
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("unknown format; name it *.sqlite or *.parquet"),
        "{err}"
    );
}

#[test]
fn bad_input_is_refused_and_the_index_untouched_sqlite() {
    bad_input_is_refused_and_the_index_untouched("sqlite");
}

#[test]
fn bad_input_is_refused_and_the_index_untouched_parquet() {
    bad_input_is_refused_and_the_index_untouched("parquet");
}

#[test]
fn parquet_rows_go_out_in_row_groups_and_read_back_exactly() {
    use arrow_array::Array;
    use arrow_array::cast::AsArray;
    use arrow_array::types::{Float32Type, Int64Type};
    use gstradio::index::{Appended, IndexSettings, IndexWriter, Row};
    use parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder;

    let dir = TempDir::new("parquet-layout");
    let path = dir.join("rows.parquet");
    let partial = dir.join("rows.parquet.partial");
    let settings = IndexSettings {
        model: "m".into(),
        input: "64x48".into(),
        summary_dim: 8,
    };
    let row = |i: u64| Row {
        pts_ns: (i != 3).then_some(i * 100),
        pts_end_ns: None,
        frame_index: i,
        input_size: (64, 48),
        summary: (0..8).map(|j| i as f32 + j as f32 / 8.0).collect(),
        spatial: i
            .is_multiple_of(2)
            .then(|| (vec![i as f32; 2 * 3 * 4], (2, 3), 4)),
        objects: Vec::new(),
        adaptors: Vec::new(),
        thumbnail: None,
    };
    let mut writer = IndexWriter::open(&path, &settings, "cam", 4).unwrap();
    for i in 0..4 {
        assert_eq!(writer.append(row(i)).unwrap(), Appended::Row);
    }
    let after_one_group = std::fs::metadata(&partial).unwrap().len();
    for i in 4..8 {
        assert_eq!(writer.append(row(i)).unwrap(), Appended::Row);
    }
    assert!(
        std::fs::metadata(&partial).unwrap().len() > after_one_group,
        "the second full row group was not written out"
    );
    assert_eq!(writer.append(row(8)).unwrap(), Appended::Row);
    let wrong = Row {
        summary: vec![0.0; 7],
        ..row(9)
    };
    let err = writer.append(wrong).unwrap_err().to_string();
    assert_eq!(
        err,
        "a vector has 7 values but the index holds 8-dimensional vectors"
    );
    assert!(!path.exists(), "the index appeared before it was complete");
    assert_eq!(writer.finish().unwrap(), 9);
    assert!(!partial.exists());

    let reader =
        ParquetRecordBatchReaderBuilder::try_new(std::fs::File::open(&path).unwrap()).unwrap();
    assert_eq!(reader.metadata().num_row_groups(), 3);
    let pairs = reader
        .metadata()
        .file_metadata()
        .key_value_metadata()
        .unwrap();
    let get = |k: &str| {
        pairs
            .iter()
            .find(|p| p.key == k)
            .and_then(|p| p.value.clone())
    };
    assert_eq!(get("radioembed.model").as_deref(), Some("m"));
    assert_eq!(get("radioembed.input").as_deref(), Some("64x48"));
    assert_eq!(get("radioembed.summary_dim").as_deref(), Some("8"));
    let summary_type = reader
        .schema()
        .field_with_name("summary")
        .unwrap()
        .data_type()
        .clone();
    assert!(
        matches!(&summary_type, arrow_schema::DataType::FixedSizeList(item, 8)
            if item.data_type() == &arrow_schema::DataType::Float32),
        "{summary_type}"
    );
    let batches: Vec<_> = reader.build().unwrap().map(Result::unwrap).collect();
    let batch = arrow_select::concat::concat_batches(&batches[0].schema(), &batches).unwrap();
    assert_eq!(batch.num_rows(), 9);
    let column = |name: &str| batch.column_by_name(name).unwrap().clone();
    let pts = column("pts_ns");
    let pts = pts.as_primitive::<Int64Type>();
    let summaries = column("summary");
    let summaries = summaries.as_fixed_size_list();
    let spatial = column("spatial");
    let spatial = spatial.as_binary::<i32>();
    let dtypes = column("spatial_dtype");
    let dtypes = dtypes.as_string::<i32>();
    let grid_width = column("grid_width");
    let grid_width = grid_width.as_primitive::<arrow_array::types::Int32Type>();
    for i in 0..9 {
        let expected = row(i as u64);
        assert_eq!(
            pts.is_valid(i).then(|| pts.value(i) as u64),
            expected.pts_ns
        );
        let summary = summaries.value(i);
        assert_eq!(
            summary.as_primitive::<Float32Type>().values(),
            &expected.summary[..]
        );
        match expected.spatial {
            Some((values, grid, _)) => {
                // Grids are stored as f16 bytes; these small integers are exact in it.
                let got: Vec<f32> = spatial
                    .value(i)
                    .chunks_exact(2)
                    .map(|b| half::f16::from_le_bytes([b[0], b[1]]).to_f32())
                    .collect();
                assert_eq!(got, values);
                assert_eq!(dtypes.value(i), "f16");
                assert_eq!(grid_width.value(i), grid.1 as i32);
            }
            None => assert!(spatial.is_null(i) && grid_width.is_null(i)),
        }
    }

    // A writer dropped before it finishes leaves the finished index as it was.
    let before = std::fs::read(&path).unwrap();
    let mut writer = IndexWriter::open(&path, &settings, "other", 4).unwrap();
    assert_eq!(writer.append(row(0)).unwrap(), Appended::Row);
    drop(writer);
    assert!(std::fs::read(&path).unwrap() == before);
    assert!(!partial.exists());
}

/// A buffer at `pts_s` seconds carrying an 8-dimensional summary made at `input`.
fn embedded(pts_s: u64, input: (usize, usize)) -> gst::Buffer {
    let mut buffer = gst::Buffer::new();
    let b = buffer.get_mut().unwrap();
    b.set_pts(gst::ClockTime::from_seconds(pts_s));
    gstradio::meta::Embedding {
        summary: Some((0..8).map(|j| (pts_s * 8 + j) as f32 + 1.0).collect()),
        spatial: Some(vec![0.5; 2 * 2 * 4]),
        spatial_dim: 4,
        grid: (2, 2),
        dtype: gstradio::meta::MetaDtype::F32,
        model: "m".into(),
        input_size: input,
        frame_index: pts_s,
        source_id: "cam".into(),
        adaptors: Vec::new(),
    }
    .attach(b)
    .unwrap();
    buffer
}

/// A playing radioindexsink writing into `db`, fed by a harness.
fn sink_harness(db: &Path, props: &str) -> gst_check::Harness {
    common::init();
    let sink = gst::ElementFactory::make("radioindexsink")
        .property("location", db.display().to_string())
        .build()
        .unwrap();
    for prop in props.split_whitespace() {
        let (name, value) = prop.split_once('=').unwrap();
        sink.set_property_from_str(name, value);
    }
    let mut h = gst_check::Harness::with_element(&sink, Some("sink"), None);
    h.set_src_caps_str("application/x-radio-test");
    h.play();
    h
}

fn segment(start_s: u64, time_s: u64) -> gst::Event {
    let mut segment = gst::FormattedSegment::<gst::ClockTime>::new();
    segment.set_start(gst::ClockTime::from_seconds(start_s));
    segment.set_time(gst::ClockTime::from_seconds(time_s));
    gst::event::Segment::new(&segment)
}

/// (source, pts_ns, has a grid) of every stored row, in source and time order.
fn stored_rows(db: &Path) -> Vec<(String, i64, bool)> {
    let conn = rusqlite::Connection::open(db).unwrap();
    let mut st = conn
        .prepare("SELECT source, pts_ns, spatial IS NOT NULL FROM frames ORDER BY source, pts_ns")
        .unwrap();
    st.query_map([], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)))
        .unwrap()
        .map(Result::unwrap)
        .collect()
}

#[test]
fn the_sink_stores_stream_time_once_per_frame_across_seeks_and_streams() {
    let dir = TempDir::new("sink-stream");
    let db = dir.join("idx.sqlite");
    let mut h = sink_harness(&db, "transaction-rows=2");
    // An MPEG-TS-like segment: timestamps start at 100 s, stream time at 0.
    h.push_event(gst::event::StreamStart::new("cam-a"));
    assert!(h.push_event(segment(100, 0)));
    for s in 100..104 {
        h.push(embedded(s, (64, 48))).unwrap();
    }
    // A flushing seek back to 101 s: frames 101..105 come again.
    assert!(h.push_event(gst::event::FlushStart::new()));
    assert!(h.push_event(gst::event::FlushStop::new(true)));
    assert!(h.push_event(segment(101, 1)));
    for s in 101..106 {
        h.push(embedded(s, (64, 48))).unwrap();
    }
    // A new stream (as concat makes) is a new source.
    h.push_event(gst::event::StreamStart::new("cam-b"));
    assert!(h.push_event(segment(0, 0)));
    h.push(embedded(7, (64, 48))).unwrap();
    assert!(h.push_event(gst::event::Eos::new()));

    let ns = |s: i64| s * 1_000_000_000;
    let mut expected: Vec<_> = (0..6)
        .map(|s| ("cam-a".to_string(), ns(s), false))
        .collect();
    expected.push(("cam-b".to_string(), ns(7), false));
    assert_eq!(stored_rows(&db), expected);
}

#[test]
fn the_sink_stores_grids_only_when_asked_and_in_f16() {
    let dir = TempDir::new("sink-spatial");
    let db = dir.join("idx.sqlite");
    let mut h = sink_harness(&db, "spatial=true source-id=cam");
    h.push(embedded(0, (64, 48))).unwrap();
    assert!(h.push_event(gst::event::Eos::new()));
    let conn = rusqlite::Connection::open(&db).unwrap();
    let (bytes, dtype): (Vec<u8>, String) = conn
        .query_row("SELECT spatial, spatial_dtype FROM frames", [], |r| {
            Ok((r.get(0)?, r.get(1)?))
        })
        .unwrap();
    assert_eq!((bytes.len(), dtype.as_str()), (2 * 2 * 4 * 2, "f16"));
    assert_eq!(half::f16::from_le_bytes([bytes[0], bytes[1]]).to_f32(), 0.5);
}

#[test]
fn the_sink_refuses_a_change_of_input_size_and_keeps_the_index() {
    let dir = TempDir::new("sink-size");
    let db = dir.join("idx.sqlite");
    let mut h = sink_harness(&db, "source-id=cam");
    h.push(embedded(0, (64, 48))).unwrap();
    assert_eq!(h.push(embedded(1, (32, 32))), Err(gst::FlowError::Error));
    h.element().unwrap().set_state(gst::State::Null).unwrap();
    assert_eq!(stored_rows(&db), vec![]);
}

#[test]
fn two_indexers_share_one_sqlite_index() {
    use gstradio::index::{Appended, IndexSettings, IndexWriter, Row};
    let dir = TempDir::new("two-writers");
    let db = dir.join("idx.sqlite");
    let settings = IndexSettings {
        model: "m".into(),
        input: "64x48".into(),
        summary_dim: 8,
    };
    let row = |i: u64| Row {
        pts_ns: Some(i),
        pts_end_ns: None,
        frame_index: i,
        input_size: (64, 48),
        summary: vec![i as f32 + 1.0; 8],
        spatial: None,
        objects: Vec::new(),
        adaptors: Vec::new(),
        thumbnail: None,
    };
    // Writer A indexes slowly (a live camera): 6 s for its rows, in one
    // transaction's worth. Writer B opens, writes and completes meanwhile.
    let mut a = IndexWriter::open(&db, &settings, "cam-a", 256).unwrap();
    let slow = std::thread::spawn(move || {
        for i in 0..30 {
            assert_eq!(a.append(row(i)).unwrap(), Appended::Row);
            std::thread::sleep(Duration::from_millis(200));
        }
        a.finish().unwrap()
    });
    std::thread::sleep(Duration::from_millis(300));
    let mut b = IndexWriter::open(&db, &settings, "cam-b", 4).unwrap();
    for i in 0..40 {
        assert_eq!(b.append(row(i)).unwrap(), Appended::Row);
    }
    assert_eq!(b.finish().unwrap(), 40);
    assert_eq!(slow.join().unwrap(), 30);
    assert_eq!(count_rows(&db, Some("cam-a")).unwrap(), 30);
    assert_eq!(count_rows(&db, Some("cam-b")).unwrap(), 40);
}

#[test]
fn eight_indexers_may_create_one_sqlite_index_at_once() {
    use gstradio::index::{Appended, IndexSettings, IndexWriter, Row};
    let dir = TempDir::new("eight-writers");
    let db = dir.join("idx.sqlite");
    let barrier = std::sync::Arc::new(std::sync::Barrier::new(8));
    let writers: Vec<_> = (0..8)
        .map(|w| {
            let (db, barrier) = (db.clone(), barrier.clone());
            std::thread::spawn(move || {
                let settings = IndexSettings {
                    model: "m".into(),
                    input: "64x48".into(),
                    summary_dim: 8,
                };
                barrier.wait();
                // All open the file that does not exist yet at the same time.
                let mut writer = IndexWriter::open(&db, &settings, &format!("cam-{w}"), 4)
                    .expect("a writer that meets others opening the file waits for them");
                for i in 0..5 {
                    let row = Row {
                        pts_ns: Some(i),
                        pts_end_ns: None,
                        frame_index: i,
                        input_size: (64, 48),
                        summary: vec![1.0; 8],
                        spatial: None,
                        objects: Vec::new(),
                        adaptors: Vec::new(),
                        thumbnail: None,
                    };
                    assert_eq!(writer.append(row).unwrap(), Appended::Row);
                }
                writer.finish().unwrap()
            })
        })
        .collect();
    for writer in writers {
        assert_eq!(writer.join().unwrap(), 5);
    }
    assert_eq!(count_rows(&db, None).unwrap(), 40);
}

#[test]
fn a_second_parquet_writer_is_refused_clearly() {
    use gstradio::index::{IndexSettings, IndexWriter};
    let dir = TempDir::new("parquet-busy");
    let path = dir.join("idx.parquet");
    let settings = IndexSettings {
        model: "m".into(),
        input: "64x48".into(),
        summary_dim: 8,
    };
    let first = IndexWriter::open(&path, &settings, "cam-a", 4).unwrap();
    let err = IndexWriter::open(&path, &settings, "cam-b", 4)
        .err()
        .expect("a second writer was let in")
        .to_string();
    assert!(err.contains("is being written by another indexer"), "{err}");
    first.finish().unwrap();
    IndexWriter::open(&path, &settings, "cam-b", 4)
        .unwrap()
        .finish()
        .unwrap();
}

#[test]
fn an_index_from_before_runs_is_migrated_with_its_rows() {
    use gstradio::index::{Appended, IndexSettings, IndexWriter, Row, search};
    let dir = TempDir::new("migrate");
    let db = dir.join("old.sqlite");
    // The layout of indexes written at 87cee2d: a `frames` table, no runs.
    let conn = rusqlite::Connection::open(&db).unwrap();
    conn.execute_batch(
        "CREATE TABLE index_info (key TEXT PRIMARY KEY, value TEXT NOT NULL);
         INSERT INTO index_info VALUES ('model', 'm'), ('input', '64x48'), ('summary_dim', '2');
         CREATE TABLE frames (id INTEGER PRIMARY KEY, source TEXT NOT NULL, pts_ns INTEGER,
             frame_index INTEGER NOT NULL, input_width INTEGER NOT NULL,
             input_height INTEGER NOT NULL, summary BLOB NOT NULL, summary_norm REAL NOT NULL,
             spatial BLOB, grid_height INTEGER, grid_width INTEGER, spatial_dim INTEGER);
         CREATE INDEX frames_by_source ON frames (source);",
    )
    .unwrap();
    let bytes = |v: [f32; 2]| v.iter().flat_map(|x| x.to_le_bytes()).collect::<Vec<u8>>();
    for (i, v) in [[1.0f32, 0.0], [0.0, 1.0]].into_iter().enumerate() {
        conn.execute(
            "INSERT INTO frames (source, pts_ns, frame_index, input_width, input_height,
             summary, summary_norm) VALUES ('old-cam', ?1, ?1, 64, 48, ?2, 1.0)",
            rusqlite::params![i as i64, bytes(v)],
        )
        .unwrap();
    }
    drop(conn);

    let settings = IndexSettings {
        model: "m".into(),
        input: "64x48".into(),
        summary_dim: 2,
    };
    let mut writer = IndexWriter::open(&db, &settings, "new-cam", 4).unwrap();
    let appended = writer
        .append(Row {
            pts_ns: Some(0),
            pts_end_ns: None,
            frame_index: 0,
            input_size: (64, 48),
            summary: vec![0.6, 0.8],
            spatial: None,
            objects: Vec::new(),
            adaptors: Vec::new(),
            thumbnail: None,
        })
        .unwrap();
    assert_eq!(appended, Appended::Row);
    assert_eq!(
        count_rows(&db, None).unwrap(),
        2,
        "a run in progress showed"
    );
    assert_eq!(writer.finish().unwrap(), 1);
    assert_eq!(count_rows(&db, Some("old-cam")).unwrap(), 2);
    assert_eq!(count_rows(&db, None).unwrap(), 3);
    let hits = search(&db, &[0.0, 1.0], 1, 2).unwrap();
    assert_eq!(
        (hits[0].source.as_str(), hits[0].pts_ns),
        ("old-cam", Some(1))
    );
}

#[test]
fn a_parquet_index_with_float32_grids_keeps_its_rows_as_f16() {
    use std::sync::Arc;

    use arrow_array::cast::AsArray;
    use arrow_array::{ArrayRef, FixedSizeListArray, Float32Array, Int32Array, Int64Array};
    use arrow_array::{RecordBatch, StringArray};
    use arrow_schema::{DataType, Field, Schema};
    use gstradio::index::{IndexSettings, IndexWriter};
    use parquet::arrow::ArrowWriter;
    use parquet::file::metadata::KeyValue;
    use parquet::file::properties::WriterProperties;

    let dir = TempDir::new("parquet-old");
    let path = dir.join("old.parquet");
    // The layout written at 87cee2d: the grid a list of float32, no spatial_dtype.
    let item = || Arc::new(Field::new_list_field(DataType::Float32, false));
    let schema = Arc::new(Schema::new(vec![
        Field::new("source", DataType::Utf8, false),
        Field::new("pts_ns", DataType::Int64, true),
        Field::new("frame_index", DataType::Int64, false),
        Field::new("model", DataType::Utf8, false),
        Field::new("input_width", DataType::Int32, false),
        Field::new("input_height", DataType::Int32, false),
        Field::new("summary", DataType::FixedSizeList(item(), 2), false),
        Field::new("spatial", DataType::List(item()), true),
        Field::new("grid_height", DataType::Int32, true),
        Field::new("grid_width", DataType::Int32, true),
        Field::new("spatial_dim", DataType::Int32, true),
    ]));
    let summary = FixedSizeListArray::try_new(
        item(),
        2,
        Arc::new(Float32Array::from(vec![1.0, 0.0])),
        None,
    )
    .unwrap();
    let mut spatial =
        arrow_array::builder::ListBuilder::new(arrow_array::builder::Float32Builder::new())
            .with_field(item());
    spatial.values().append_slice(&[0.5, -2.0]);
    spatial.append(true);
    let spatial = spatial.finish();
    let columns: Vec<ArrayRef> = vec![
        Arc::new(StringArray::from(vec!["old-cam"])),
        Arc::new(Int64Array::from(vec![7])),
        Arc::new(Int64Array::from(vec![0])),
        Arc::new(StringArray::from(vec!["m"])),
        Arc::new(Int32Array::from(vec![64])),
        Arc::new(Int32Array::from(vec![48])),
        Arc::new(summary),
        Arc::new(spatial),
        Arc::new(Int32Array::from(vec![1])),
        Arc::new(Int32Array::from(vec![1])),
        Arc::new(Int32Array::from(vec![2])),
    ];
    let metadata = [("model", "m"), ("input", "64x48"), ("summary_dim", "2")]
        .map(|(k, v)| KeyValue::new(format!("radioembed.{k}"), v.to_string()))
        .to_vec();
    let properties = WriterProperties::builder()
        .set_key_value_metadata(Some(metadata))
        .build();
    let mut writer = ArrowWriter::try_new(
        std::fs::File::create(&path).unwrap(),
        schema.clone(),
        Some(properties),
    )
    .unwrap();
    writer
        .write(&RecordBatch::try_new(schema, columns).unwrap())
        .unwrap();
    writer.close().unwrap();

    let settings = IndexSettings {
        model: "m".into(),
        input: "64x48".into(),
        summary_dim: 2,
    };
    IndexWriter::open(&path, &settings, "new-cam", 4)
        .unwrap()
        .finish()
        .unwrap();
    let reader = parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder::try_new(
        std::fs::File::open(&path).unwrap(),
    )
    .unwrap();
    let batch = reader.build().unwrap().next().unwrap().unwrap();
    assert_eq!(batch.num_rows(), 1);
    let grid = batch
        .column_by_name("spatial")
        .unwrap()
        .as_binary::<i32>()
        .value(0);
    let values: Vec<f32> = grid
        .chunks_exact(2)
        .map(|b| half::f16::from_le_bytes([b[0], b[1]]).to_f32())
        .collect();
    assert_eq!(values, [0.5, -2.0]);
}

/// The pattern of the clip's first two seconds (JPEG-coded there) as a PNG.
fn smpte_png(png: &Path) {
    let launch = format!(
        "videotestsrc pattern=smpte num-buffers=1 ! video/x-raw,width=160,height=120 ! \
         videoconvert ! pngenc ! filesink location={}",
        png.display()
    );
    assert_eq!(play(&launch), gst::MessageType::Eos, "png encoding failed");
}

/// The hits of `radio-embed search --db DB --image PNG --json ARGS…`.
fn search_json(db: &Path, png: &Path, args: &[&str]) -> serde_json::Value {
    let mut all = vec![
        "search",
        "--db",
        db.to_str().unwrap(),
        "--image",
        png.to_str().unwrap(),
        "--json",
    ];
    all.extend_from_slice(args);
    let out = run_cli(&all);
    assert_succeeded(&out);
    serde_json::from_slice(&out.stdout).unwrap()
}

/// A scratch folder holding the three-scene clip (20 frames a scene), and the
/// paths of an index and a query image beside it.
fn clip_with_query(tag: &str) -> (TempDir, PathBuf, PathBuf, PathBuf) {
    let dir = TempDir::new(tag);
    let (clip, db, png) = (
        dir.join("clip.avi"),
        dir.join("idx.sqlite"),
        dir.join("query.png"),
    );
    make_clip(&clip, 20);
    (dir, clip, db, png)
}

#[test]
fn an_image_finds_the_scene_it_shows() {
    let (_dir, clip, db, png) = clip_with_query("image-query");
    let out = index(&clip, &db, &tiny());
    assert_succeeded(&out);
    smpte_png(&png);
    let hits = search_json(&db, &png, &["-k", "5", "--frames"]);
    for hit in hits.as_array().unwrap() {
        let pts = hit["pts_ns"].as_u64().unwrap();
        assert!(pts < 2_000_000_000, "a hit outside the smpte scene: {hits}");
        assert!(hit["score"].as_f64().unwrap() >= 0.99, "{hits}");
    }
    assert_eq!(hits.as_array().unwrap().len(), 5);
}

/// `embedded` with two objects: a person whose 4-d vector and 3-d siglip2-g
/// vector depend on `pts_s`, and a car whose vector is fixed and which has no
/// adaptor vector.
fn with_objects(pts_s: u64) -> gst::Buffer {
    use gstradio::meta::{MetaDtype, RegionAdaptor, RegionKind, RegionVectors, region_param};
    let mut buffer = embedded(pts_s, (64, 48));
    let b = buffer.get_mut().unwrap();
    let person = RegionVectors {
        vector: vec![1.0, pts_s as f32, 0.0, 0.5],
        adaptors: vec![RegionAdaptor {
            name: "siglip2-g".into(),
            vector: vec![pts_s as f32, 1.0, 0.0],
        }],
    };
    let mut roi = gst_video::VideoRegionOfInterestMeta::add(b, "person", (pts_s as u32, 2, 10, 20));
    roi.add_param(region_param(&person, MetaDtype::F32, RegionKind::Pool));
    let car = RegionVectors {
        vector: vec![0.0, 0.0, 1.0, 0.0],
        adaptors: Vec::new(),
    };
    let mut roi = gst_video::VideoRegionOfInterestMeta::add(b, "car", (30, 20, 16, 8));
    roi.add_param(region_param(&car, MetaDtype::F32, RegionKind::Pool));
    buffer
}

#[test]
fn the_sink_keeps_objects_and_search_finds_them() {
    use gstradio::index::{object_kind, search_object_adaptor, search_objects};
    use gstradio::meta::RegionKind;
    let dir = TempDir::new("sink-objects");
    let db = dir.join("idx.sqlite");
    let mut h = sink_harness(&db, "source-id=cam");
    for s in 0..4 {
        h.push(with_objects(s)).unwrap();
    }
    assert!(h.push_event(gst::event::Eos::new()));
    assert_eq!(object_kind(&db).unwrap(), Some(RegionKind::Pool));
    // The person of the frame at 3 s points the way [1, 3, 0, 0.5] does.
    let hits = search_objects(&db, &[1.0, 3.0, 0.0, 0.5], 2, 2, &Default::default()).unwrap();
    assert_eq!(hits.len(), 2);
    let best = &hits[0];
    assert_eq!(
        (best.roi_type.as_str(), best.rect, best.frame.pts_ns),
        ("person", (3, 2, 10, 20), Some(3_000_000_000))
    );
    assert_eq!(best.frame.source, "cam");
    assert!(
        (best.frame.score - 1.0).abs() < 1e-6,
        "{}",
        best.frame.score
    );
    assert_eq!(hits[1].frame.pts_ns, Some(2_000_000_000));
    let cars = search_objects(&db, &[0.0, 0.0, 2.0, 0.0], 10, 2, &Default::default()).unwrap();
    assert_eq!(cars.iter().filter(|h| h.frame.score > 0.999).count(), 4);
    // Vectors of another length are not compared.
    assert!(
        search_objects(&db, &[1.0; 8], 5, 1, &Default::default())
            .unwrap()
            .is_empty()
    );

    // In the adaptor's space only the person has a vector; [3, 1, 0] is the
    // one of the frame at 3 s, and the frame at 2 s comes next.
    let hits = search_object_adaptor(
        &db,
        "siglip2-g",
        &[3.0, 1.0, 0.0],
        10,
        2,
        &Default::default(),
    )
    .unwrap();
    assert_eq!(hits.len(), 4, "one person a frame, no car: {hits:?}");
    assert!(hits.iter().all(|h| h.roi_type == "person"));
    assert_eq!(
        (hits[0].rect, hits[0].frame.pts_ns, hits[1].frame.pts_ns),
        ((3, 2, 10, 20), Some(3_000_000_000), Some(2_000_000_000))
    );
    assert!((hits[0].frame.score - 1.0).abs() < 1e-6);
    // The score is the cosine: [0, 1, 0] against the frame at 0 s is 1, at 1 s 1/√2.
    let hits = search_object_adaptor(
        &db,
        "siglip2-g",
        &[0.0, 2.0, 0.0],
        2,
        1,
        &Default::default(),
    )
    .unwrap();
    let scores: Vec<f32> = hits.iter().map(|h| h.frame.score).collect();
    assert!(
        (scores[0] - 1.0).abs() < 1e-6 && (scores[1] - 0.5f32.sqrt()).abs() < 1e-6,
        "{scores:?}"
    );
    let err = search_object_adaptor(&db, "siglip2-g", &[1.0; 4], 2, 1, &Default::default())
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("a vector has 4 values but the index holds 3-dimensional"),
        "{err}"
    );
    let err = search_object_adaptor(&db, "clip", &[1.0; 3], 2, 1, &Default::default())
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("holds no objects with `clip` vectors") && err.contains("roi-mode"),
        "{err}"
    );

    // Indexed again: the old run's objects go with its frames.
    let mut h = sink_harness(&db, "source-id=cam");
    h.push(with_objects(7)).unwrap();
    assert!(h.push_event(gst::event::Eos::new()));
    let hits = search_objects(&db, &[1.0, 3.0, 0.0, 0.5], 10, 2, &Default::default()).unwrap();
    assert_eq!(hits.len(), 2, "one frame, two objects");
    let conn = rusqlite::Connection::open(&db).unwrap();
    let count = |table: &str| -> i64 {
        conn.query_row(&format!("SELECT count(*) FROM {table}"), [], |r| r.get(0))
            .unwrap()
    };
    assert_eq!((count("object_rows"), count("object_adaptor_rows")), (2, 1));
}

#[test]
fn a_sink_asked_for_thumbnails_of_frames_that_are_not_video_says_so_and_indexes() {
    let dir = TempDir::new("thumbnail-caps");
    let db = dir.join("idx.sqlite");
    let mut h = sink_harness(&db, "source-id=cam thumbnails=true");
    let bus = gst::Bus::new();
    h.element().unwrap().set_bus(Some(&bus));
    h.push(embedded(0, (64, 48))).unwrap();
    h.push(embedded(1, (64, 48))).unwrap();
    assert!(h.push_event(gst::event::Eos::new()));
    let warnings: Vec<_> = bus
        .iter_filtered(&[gst::MessageType::Warning])
        .map(|m| match m.view() {
            gst::MessageView::Warning(w) => format!("{} ({:?})", w.error(), w.debug()),
            _ => unreachable!(),
        })
        .collect();
    assert_eq!(warnings.len(), 1, "{warnings:?}");
    assert!(
        warnings[0].contains("Frames are indexed without thumbnails")
            && warnings[0].contains("not raw video"),
        "{warnings:?}"
    );
    assert_eq!(count_rows(&db, None).unwrap(), 2, "the frames are indexed");
    assert_eq!(thumbnail_of(&db, &("cam".into(), 0)), None);
}

#[test]
fn a_sink_fed_raw_video_stores_each_rows_thumbnail() {
    let dir = TempDir::new("thumbnail-i420");
    let db = dir.join("idx.parquet");
    let mut h = sink_harness(&db, "source-id=cam thumbnails=true thumbnail-size=32");
    // 64x48 I420, all pure blue (BT.601: Y 41, U 240, V 110).
    h.set_src_caps_str("video/x-raw,format=I420,width=64,height=48,framerate=1/1");
    for s in 0..3 {
        let mut frame = embedded(s, (64, 48));
        let b = frame.get_mut().unwrap();
        let mut data = vec![41u8; 64 * 48];
        data.extend(std::iter::repeat_n(240u8, 32 * 24));
        data.extend(std::iter::repeat_n(110u8, 32 * 24));
        b.append_memory(gst::Memory::from_mut_slice(data));
        h.push(frame).unwrap();
    }
    assert!(h.push_event(gst::event::Eos::new()));
    assert_eq!(count_rows(&db, None).unwrap(), 3);
    for frame in 0..3 {
        let (width, height, [r, g, b]) =
            thumbnail_of(&db, &("cam".into(), frame)).expect("a thumbnail");
        assert_eq!((width, height), (32, 24));
        assert!(b > 200.0 && r < 40.0 && g < 40.0, "not blue: {r} {g} {b}");
    }
}

#[test]
fn a_parquet_sink_says_it_keeps_no_objects() {
    let dir = TempDir::new("parquet-objects");
    let db = dir.join("idx.parquet");
    let mut h = sink_harness(&db, "source-id=cam");
    let bus = gst::Bus::new();
    h.element().unwrap().set_bus(Some(&bus));
    h.push(with_objects(0)).unwrap();
    assert!(h.push_event(gst::event::Eos::new()));
    let warning = bus
        .iter_filtered(&[gst::MessageType::Warning])
        .next()
        .expect("a warning");
    let gst::MessageView::Warning(w) = warning.view() else {
        unreachable!()
    };
    assert!(
        w.error()
            .message()
            .contains("Parquet index keeps frames only"),
        "{}",
        w.error()
    );
    assert_eq!(count_rows(&db, None).unwrap(), 1, "the frame is indexed");
}

#[test]
fn an_image_finds_the_objects_that_show_it() {
    common::init();
    let (_dir, clip, db, png) = clip_with_query("object-query");
    embed_with_detector(
        &clip,
        &format!("model={} resolution=64 roi-mode=pool", tiny()),
        &format!("radioindexsink location={} source-id=clip", db.display()),
    );
    smpte_png(&png);
    let hits = search_json(&db, &png, &["--objects", "-k", "3"]);
    let hits = hits.as_array().unwrap();
    assert_eq!(hits.len(), 3);
    for hit in hits {
        assert_eq!(hit["type"], "scene", "{hits:?}");
        assert_eq!(
            hit["box"],
            serde_json::json!({"x": 0, "y": 0, "width": 160, "height": 120})
        );
        assert!(hit["pts_ns"].as_u64().unwrap() < 2_000_000_000, "{hits:?}");
        // Pooled patch features of random weights differ more between the
        // clip's JPEG and the query's PNG than summaries do (0.98 here).
        assert!(hit["score"].as_f64().unwrap() >= 0.95, "{hits:?}");
    }
}

/// Plays `clip` at 5 frames/s through a stand-in detector, which gives each
/// frame a box over all of it ("scene") and one over its top-left corner
/// ("corner"), into `radioembed {embed} ! {tail}`, to EOS.
fn embed_with_detector(clip: &Path, embed: &str, tail: &str) {
    let pipeline = gst::parse::launch(&format!(
        "filesrc location={} ! decodebin ! videoconvert ! videorate ! \
         video/x-raw,framerate=5/1 ! identity name=detector ! radioembed {embed} ! {tail}",
        clip.display(),
    ))
    .unwrap();
    let pipeline = pipeline.downcast::<gst::Pipeline>().unwrap();
    common::detect(
        &pipeline,
        "detector",
        &[("scene", (0, 0, 160, 120)), ("corner", (0, 0, 40, 30))],
    );
    pipeline.set_state(gst::State::Playing).unwrap();
    common::finish_at_eos(&pipeline);
}

#[test]
fn searching_objects_of_an_index_without_any_says_so() {
    let dir = TempDir::new("no-objects");
    let (clip, db) = (dir.join("clip.avi"), dir.join("idx.sqlite"));
    make_clip(&clip, 2);
    assert!(index(&clip, &db, &tiny()).status.success());
    let out = run_cli(&[
        "search",
        "--db",
        db.to_str().unwrap(),
        "--image",
        clip.to_str().unwrap(),
        "--objects",
    ]);
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("holds no objects"), "{stderr}");
}

/// The clip indexed with the siglip2-g adaptor (and its grid) from the text-search
/// fixture's checkpoint.
fn index_with_adaptor(clip: &Path, db: &Path) {
    common::index_with_siglip2g(clip, db, &["--spatial-pool", "1"]);
}

/// Little-endian f32 (4 bytes) or f16 (2 bytes) values.
fn floats(bytes: &[u8], width: usize) -> Vec<f32> {
    match width {
        4 => bytes
            .chunks_exact(4)
            .map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]]))
            .collect(),
        _ => bytes
            .chunks_exact(2)
            .map(|b| half::f16::from_le_bytes([b[0], b[1]]).to_f32())
            .collect(),
    }
}

fn cosine(a: &[f32], b: &[f32]) -> f32 {
    let dot: f32 = a.iter().zip(b).map(|(x, y)| x * y).sum();
    let norm = |v: &[f32]| v.iter().map(|x| x * x).sum::<f32>().sqrt();
    dot / (norm(a) * norm(b))
}

/// `search --db DB --text TEXT --json` with the fixture's text tower and
/// `args` added: its hits.
fn text_search_json(db: &Path, text: &str, args: &[&str]) -> Vec<serde_json::Value> {
    let text_model = fixture("textsearch/siglip-text");
    let (db, text_model) = (db.to_str().unwrap(), text_model.to_str().unwrap());
    let mut all = vec![
        "search",
        "--db",
        db,
        "--text",
        text,
        "--text-model",
        text_model,
    ];
    all.push("--json");
    all.extend_from_slice(args);
    let out = run_cli(&all);
    assert_succeeded(&out);
    let hits: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    hits.as_array().unwrap().clone()
}

/// The hits' scores, each checked (to 1e-5) against `expected` sorted best
/// first: the ranking a brute-force pass over the stored vectors gives.
fn ranked_scores(hits: &[serde_json::Value], mut expected: Vec<f32>) -> Vec<f32> {
    expected.sort_by(|a, b| b.total_cmp(a));
    hits.iter()
        .zip(&expected)
        .enumerate()
        .map(|(i, (hit, want))| {
            let score = hit["score"].as_f64().unwrap() as f32;
            assert!((score - want).abs() <= 1e-5, "rank {i}: {score} vs {want}");
            score
        })
        .collect()
}

/// The fixture's text tower's normalized embedding of `text`.
fn text_query(text: &str) -> Vec<f32> {
    gstradio::text::TextEncoder::load(
        &fixture("textsearch/siglip-text"),
        &candle_core::Device::Cpu,
        candle_core::DType::F32,
    )
    .unwrap()
    .embed(&[text])
    .unwrap()
    .remove(0)
    .normalized
}

#[test]
fn a_text_query_ranks_frames_by_their_siglip2g_vectors() {
    let (_dir, clip, db, _png) = clip_with_query("text-query");
    index_with_adaptor(&clip, &db);
    let text = "A photo of a RED car!";
    let hits = text_search_json(&db, text, &["-k", "8", "--frames"]);
    assert_eq!(hits.len(), 8);

    // The ranking computed here from the stored vectors and the text embedding.
    let query = text_query(text);
    let conn = rusqlite::Connection::open(&db).unwrap();
    let mut st = conn
        .prepare(
            "SELECT pts_ns, summary, spatial, grid_height, grid_width, spatial_dim
             FROM adaptor_frames WHERE name = 'siglip2-g'",
        )
        .unwrap();
    let stored: Vec<(i64, f32, (usize, usize))> = st
        .query_map([], |r| {
            let summary = floats(&r.get::<_, Vec<u8>>(1)?, 4);
            let grid = floats(&r.get::<_, Vec<u8>>(2)?, 2);
            let (h, w, d): (i64, i64, i64) = (r.get(3)?, r.get(4)?, r.get(5)?);
            assert_eq!((summary.len(), grid.len()), (48, (h * w * d) as usize));
            let best = grid
                .chunks_exact(d as usize)
                .map(|p| cosine(p, &query))
                .enumerate()
                .max_by(|a, b| a.1.total_cmp(&b.1))
                .unwrap()
                .0;
            Ok((
                r.get(0)?,
                cosine(&summary, &query),
                (best / w as usize, best % w as usize),
            ))
        })
        .unwrap()
        .collect::<Result<_, _>>()
        .unwrap();
    assert_eq!(stored.len(), 30, "one adaptor row per indexed frame");
    // A query from a text model of another width is refused, not answered empty.
    let err =
        gstradio::index::search_adaptor(&db, "siglip2-g", &[1.0; 47], 3, 1, &Default::default())
            .unwrap_err()
            .to_string();
    assert!(
        err.contains("a vector has 47 values but the index holds 48-dimensional"),
        "{err}"
    );
    let scores = ranked_scores(&hits, stored.iter().map(|s| s.1).collect());
    for (hit, score) in hits.iter().zip(scores) {
        let pts = hit["pts_ns"].as_i64().unwrap();
        let (_, own, patch) = stored.iter().find(|s| s.0 == pts).unwrap();
        assert!(
            (score - own).abs() <= 1e-5,
            "hit at {pts}: {score} vs {own}"
        );
        let best = &hit["patch"];
        assert_eq!(
            (
                best["row"].as_u64().unwrap() as usize,
                best["column"].as_u64().unwrap() as usize
            ),
            *patch,
            "best patch of the hit at {pts}"
        );
    }
}

/// The siglip2-g vector of each stored object of `db`: (pts, type, vector).
fn object_adaptor_vectors(db: &Path) -> Vec<(i64, String, Vec<f32>)> {
    let conn = rusqlite::Connection::open(db).unwrap();
    let mut st = conn
        .prepare("SELECT pts_ns, roi_type, vector FROM object_adaptors WHERE name = 'siglip2-g'")
        .unwrap();
    st.query_map([], |r| {
        Ok((r.get(0)?, r.get(1)?, floats(&r.get::<_, Vec<u8>>(2)?, 4)))
    })
    .unwrap()
    .collect::<Result<_, _>>()
    .unwrap()
}

#[test]
fn a_text_query_ranks_objects_by_their_pooled_siglip2g_vectors() {
    common::init();
    let (dir, clip, db, _png) = clip_with_query("text-objects");
    let messages = dir.join("messages.jsonl");
    embed_with_detector(
        &clip,
        &format!(
            "model={} resolution=64 adaptor=siglip2-g adaptor-checkpoint={} roi-mode=pool \
             spatial-pool=1",
            fixture("tiny-so400m").display(),
            fixture("textsearch/c-radio_v4-tiny_half.pth.tar").display()
        ),
        &format!(
            "radiometapublish location={} ! radioindexsink location={} source-id=clip \
             spatial=true",
            messages.display(),
            db.display()
        ),
    );
    let stored = object_adaptor_vectors(&db);
    let frames = count_rows(&db, None).unwrap() as usize;
    assert!(frames >= 30, "{frames} frames");
    assert_eq!(stored.len(), 2 * frames, "two objects a frame");

    // A "scene" box covers the frame: its vector is the mean of the frame's
    // adaptor grid (stored in f16, hence the tolerance).
    let conn = rusqlite::Connection::open(&db).unwrap();
    let grids: std::collections::HashMap<i64, (Vec<f32>, usize)> = conn
        .prepare("SELECT pts_ns, spatial, spatial_dim FROM adaptor_frames")
        .unwrap()
        .query_map([], |r| {
            let dim: i64 = r.get(2)?;
            Ok((
                r.get(0)?,
                (floats(&r.get::<_, Vec<u8>>(1)?, 2), dim as usize),
            ))
        })
        .unwrap()
        .collect::<Result<_, _>>()
        .unwrap();
    for (pts, roi_type, vector) in stored.iter().filter(|s| s.1 == "scene") {
        let (grid, dim) = &grids[pts];
        assert_eq!(vector.len(), *dim, "{roi_type} at {pts}");
        let patches = (grid.len() / dim) as f32;
        let scale = grid.iter().fold(0f32, |m, v| m.max(v.abs()));
        for (c, v) in vector.iter().enumerate() {
            let mean: f32 = grid.iter().skip(c).step_by(*dim).sum::<f32>() / patches;
            assert!(
                (v - mean).abs() <= 1e-3 * scale,
                "channel {c} at {pts}: {v} vs {mean}"
            );
        }
    }

    // Every message validates and carries the same vectors, the frame's
    // adaptor summary among them.
    let schema = common::message_schema();
    let lines = std::fs::read_to_string(&messages).unwrap();
    assert_eq!(lines.lines().count(), frames);
    for line in lines.lines() {
        let m: serde_json::Value = serde_json::from_str(line).unwrap();
        assert!(schema.is_valid(&m), "{line}");
        assert_eq!(
            m["adaptors"]["siglip2-g"]["summary"]
                .as_array()
                .unwrap()
                .len(),
            48
        );
        let pts = m["pts-ns"].as_i64().unwrap();
        for object in m["objects"].as_array().unwrap() {
            let sent: Vec<f32> = object["adaptors"]["siglip2-g"]
                .as_array()
                .unwrap()
                .iter()
                .map(|v| v.as_f64().unwrap() as f32)
                .collect();
            let kept = stored
                .iter()
                .find(|s| s.0 == pts && s.1 == object["type"].as_str().unwrap())
                .unwrap();
            assert_eq!(sent, kept.2, "{} at {pts}", kept.1);
        }
    }

    // The text search ranks the objects as their vectors say.
    let text = "a red car";
    let hits = text_search_json(&db, text, &["--objects", "-k", "6"]);
    assert_eq!(hits.len(), 6);
    let query = text_query(text);
    let scores = ranked_scores(&hits, stored.iter().map(|s| cosine(&s.2, &query)).collect());
    for (hit, score) in hits.iter().zip(scores) {
        let (pts, roi_type) = (
            hit["pts_ns"].as_i64().unwrap(),
            hit["type"].as_str().unwrap(),
        );
        let own = stored
            .iter()
            .find(|s| s.0 == pts && s.1 == roi_type)
            .unwrap();
        assert!(
            (score - cosine(&own.2, &query)).abs() <= 1e-5,
            "{roi_type} at {pts}"
        );
        let expected_box = match roi_type {
            "scene" => serde_json::json!({"x": 0, "y": 0, "width": 160, "height": 120}),
            _ => serde_json::json!({"x": 0, "y": 0, "width": 40, "height": 30}),
        };
        assert_eq!(hit["box"], expected_box);
    }
}

#[test]
fn a_text_query_for_objects_of_an_index_without_their_adaptor_vectors_says_how() {
    common::init();
    let (_dir, clip, db, _png) = clip_with_query("text-objects-none");
    // Frames with siglip2-g vectors, objects without.
    index_with_adaptor(&clip, &db);
    let out = run_cli(&[
        "search",
        "--db",
        db.to_str().unwrap(),
        "--text",
        "a red car",
        "--text-model",
        fixture("textsearch/siglip-text").to_str().unwrap(),
        "--objects",
    ]);
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("holds no objects with `siglip2-g` vectors")
            && stderr.contains("radioembed adaptor=siglip2-g roi-mode=pool"),
        "{stderr}"
    );
}

#[test]
fn a_parquet_index_keeps_adaptor_summaries_and_ranks_as_sqlite_does() {
    let (dir, clip, sqlite, _png) = clip_with_query("text-parquet");
    let parquet = dir.join("idx.parquet");
    // Two sources, so that the second run keeps the first one's rows (and
    // their adaptor summaries) from the old file.
    let second = dir.join("second.avi");
    std::fs::copy(&clip, &second).unwrap();
    for db in [&sqlite, &parquet] {
        index_with_adaptor(&clip, db);
        common::index_with_siglip2g(&second, db, &[]);
    }
    let sqlite_hits = text_search_json(&sqlite, "a red car", &["--frames", "-k", "80"]);
    let parquet_hits = text_search_json(&parquet, "a red car", &["--frames", "-k", "80"]);
    // Every row of both sources is a hit.
    let rows = count_rows(&parquet, None).unwrap() as usize;
    assert!(rows >= 60, "{rows} rows");
    assert_eq!(parquet_hits.len(), rows);
    assert_eq!(sqlite_hits.len(), parquet_hits.len());
    let key = |h: &serde_json::Value| {
        (
            h["source"].as_str().unwrap().to_string(),
            h["pts_ns"].as_u64(),
        )
    };
    for (s, p) in sqlite_hits.iter().zip(&parquet_hits) {
        let (ss, ps) = (s["score"].as_f64().unwrap(), p["score"].as_f64().unwrap());
        assert!((ss - ps).abs() <= 1e-6, "{s} vs {p}");
        // Equal scores (the two sources are the same clip) may come in either order.
        if sqlite_hits
            .iter()
            .filter(|o| (o["score"].as_f64().unwrap() - ss).abs() <= 1e-6)
            .count()
            == 1
        {
            assert_eq!(key(s), key(p));
        }
        assert!(
            p.get("patch").is_none_or(|v| v.is_null()),
            "Parquet keeps no grid: {p}"
        );
    }
    assert!(sqlite_hits[0].get("patch").is_some_and(|v| !v.is_null()));
    // A query of another width is refused, as for SQLite.
    let err = gstradio::index::search_adaptor(
        &parquet,
        "siglip2-g",
        &[1.0; 47],
        3,
        1,
        &Default::default(),
    )
    .unwrap_err()
    .to_string();
    assert!(
        err.contains("a vector has 47 values but the index holds 48-dimensional"),
        "{err}"
    );
}

#[test]
fn a_text_query_on_an_index_without_adaptor_vectors_says_how_to_build_one_sqlite() {
    text_query_without_adaptor_vectors("idx.sqlite");
}

#[test]
fn a_text_query_on_an_index_without_adaptor_vectors_says_how_to_build_one_parquet() {
    text_query_without_adaptor_vectors("idx.parquet");
}

fn text_query_without_adaptor_vectors(name: &str) {
    let (dir, clip, _, _png) = clip_with_query(&format!("text-no-adaptor-{name}"));
    let db = dir.join(name);
    let out = index(&clip, &db, &tiny());
    assert_succeeded(&out);
    let out = run_cli(&[
        "search",
        "--db",
        db.to_str().unwrap(),
        "--text",
        "a red car",
    ]);
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("holds no `siglip2-g` vectors"), "{err}");
    assert!(
        err.contains("radio-embed index --adaptor siglip2-g"),
        "{err}"
    );
}

#[test]
fn a_scene_is_one_moment_and_filters_cut_exactly() {
    let (_dir, clip, db, png) = clip_with_query("moments");
    let out = index(&clip, &db, &tiny());
    assert_succeeded(&out);
    smpte_png(&png);

    // Moments (the default): the smpte scene (10 rows at 5 frames/s) is the first
    // result, as one moment over its time range.
    let moments = search_json(&db, &png, &["-k", "3"]);
    let first = &moments[0];
    assert_eq!(first["start_ns"].as_u64(), Some(0), "{moments}");
    assert_eq!(first["end_ns"].as_u64(), Some(1_800_000_000), "{moments}");
    assert_eq!(first["frames"].as_u64(), Some(10), "{moments}");
    assert!(first["score"].as_f64().unwrap() >= 0.99, "{moments}");
    let pts = first["pts_ns"].as_u64().unwrap();
    assert!(
        pts <= 1_800_000_000,
        "the best frame lies in the moment: {moments}"
    );

    // Each filter keeps exactly the rows of the unfiltered ranking it should.
    let all = search_json(&db, &png, &["--frames", "-k", "100"]);
    let all = all.as_array().unwrap();
    assert_eq!(all.len(), 30);
    let kept = |args: &[&str], keep: &dyn Fn(&serde_json::Value) -> bool| {
        let mut with = vec!["--frames", "-k", "100"];
        with.extend_from_slice(args);
        let got = search_json(&db, &png, &with);
        let expected: Vec<&serde_json::Value> = all.iter().filter(|h| keep(h)).collect();
        let got: Vec<&serde_json::Value> = got.as_array().unwrap().iter().collect();
        assert_eq!(got, expected, "{args:?}");
        got.len()
    };
    let pts = |h: &serde_json::Value| h["pts_ns"].as_u64().unwrap();
    let in_ball_scene = |h: &serde_json::Value| (2_000_000_000..4_000_000_000).contains(&pts(h));
    assert_eq!(
        kept(&["--after", "2", "--before", "00:04"], &in_ball_scene),
        10
    );
    let floor = |h: &serde_json::Value| h["score"].as_f64().unwrap() >= 0.99;
    let above = kept(&["--min-score", "0.99"], &floor);
    assert!(
        (1..=10).contains(&above),
        "only smpte frames score 0.99: {above}"
    );
    assert_eq!(kept(&["--source", "*other.avi"], &|_| false), 0);
    assert_eq!(kept(&["--source", "file://*/clip.avi"], &|_| true), 30);

    // A time that is not one is refused by name.
    let out = run_cli(&[
        "search",
        "--db",
        db.to_str().unwrap(),
        "--image",
        png.to_str().unwrap(),
        "--after",
        "soon",
    ]);
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("`soon` is not a time"));
}

/// An MJPEG AVI of three still scenes (smpte, checkers, red), 20 frames each at 10
/// frames/s.
fn make_still_clip(path: &Path) {
    gst::init().unwrap();
    let branch = |pattern: &str| {
        format!(
            "videotestsrc pattern={pattern} num-buffers=20 ! \
             video/x-raw,width=160,height=120,framerate=10/1 ! c. "
        )
    };
    let launch = format!(
        "concat name=c ! videoconvert ! jpegenc ! avimux ! filesink location={} {}{}{}",
        path.display(),
        branch("smpte"),
        branch("checkers-8"),
        branch("red")
    );
    assert_eq!(play(&launch), gst::MessageType::Eos, "clip encoding failed");
}

/// (pts_ns, pts_end_ns) of every stored row, in time order.
fn row_ranges(db: &Path) -> Vec<(u64, Option<u64>)> {
    let conn = rusqlite::Connection::open(db).unwrap();
    let mut st = conn
        .prepare("SELECT pts_ns, pts_end_ns FROM frames ORDER BY pts_ns")
        .unwrap();
    st.query_map([], |r| {
        Ok((
            r.get::<_, i64>(0)? as u64,
            r.get::<_, Option<i64>>(1)?.map(|p| p as u64),
        ))
    })
    .unwrap()
    .collect::<Result<_, _>>()
    .unwrap()
}

/// (source, frame_index) of every stored row of an SQLite index, in time order.
fn row_keys(db: &Path) -> Vec<(String, u64)> {
    let conn = rusqlite::Connection::open(db).unwrap();
    let mut st = conn
        .prepare("SELECT source, frame_index FROM frames ORDER BY pts_ns")
        .unwrap();
    st.query_map([], |r| Ok((r.get(0)?, r.get::<_, i64>(1)? as u64)))
        .unwrap()
        .collect::<Result<_, _>>()
        .unwrap()
}

/// The stored thumbnail of a row, decoded: (width, height, mean R, G, B).
fn thumbnail_of(db: &Path, (source, frame): &(String, u64)) -> Option<(u32, u32, [f64; 3])> {
    let jpeg = gstradio::index::thumbnail(db, source, *frame).unwrap()?;
    let rgb = image::load_from_memory_with_format(&jpeg, image::ImageFormat::Jpeg)
        .expect("the thumbnail is a JPEG")
        .to_rgb8();
    let n = (rgb.width() * rgb.height()) as f64;
    let mut mean = [0.0; 3];
    for p in rgb.pixels() {
        for c in 0..3 {
            mean[c] += p[c] as f64 / n;
        }
    }
    Some((rgb.width(), rgb.height(), mean))
}

#[test]
fn dedup_keeps_one_row_per_still_scene_covering_the_clip_with_thumbnails() {
    let dir = TempDir::new("dedup");
    let (clip, png) = (dir.join("still.avi"), dir.join("query.png"));
    make_still_clip(&clip);
    smpte_png(&png);
    let index_with = |db: &Path, extra: &[&str]| {
        let mut args = vec![
            "index",
            clip.to_str().unwrap(),
            "--db",
            db.to_str().unwrap(),
            "--fps",
            "5",
            "--model",
        ];
        let model = tiny();
        args.push(&model);
        args.extend_from_slice(&["--resolution", "64"]);
        args.extend_from_slice(extra);
        let out = run_cli(&args);
        assert_succeeded(&out);
        String::from_utf8_lossy(&out.stdout).into_owned()
    };

    // Without dedup: one row per sampled frame (6 s at 5 frames/s).
    let all = dir.join("all.sqlite");
    index_with(&all, &["--dedup-threshold", "0", "--no-thumbnails"]);
    assert_eq!(count_rows(&all, None).unwrap(), 30);
    assert_eq!(thumbnail_of(&all, &row_keys(&all)[0]), None);

    // With the CLI's default (0.98): one row per scene (±1), whose time ranges
    // follow each other and cover the clip.
    let deduped = dir.join("dedup.sqlite");
    let summary = index_with(&deduped, &[]);
    let ranges = row_ranges(&deduped);
    assert!((2..=4).contains(&ranges.len()), "{ranges:?}");
    assert!(
        summary.contains(&format!("{} rows for 30 frames", ranges.len())),
        "{summary}"
    );
    assert_eq!(ranges[0].0, 0);
    for pair in ranges.windows(2) {
        let end = pair[0].1.unwrap_or(pair[0].0);
        assert_eq!(
            pair[1].0,
            end + 200_000_000,
            "ranges leave a gap: {ranges:?}"
        );
    }
    let last = ranges.last().unwrap();
    assert_eq!(last.1.unwrap_or(last.0), 5_800_000_000, "{ranges:?}");

    // Every kept row has its frame's thumbnail (the CLI's default), at the
    // frame's size when it is under thumbnail-size; the last scene is red.
    let keys = row_keys(&deduped);
    for key in &keys {
        let (width, height, _) = thumbnail_of(&deduped, key).expect("a thumbnail");
        assert_eq!((width, height), (160, 120), "{key:?}");
    }
    let (_, _, [r, g, b]) = thumbnail_of(&deduped, keys.last().unwrap()).unwrap();
    assert!(r > 200.0 && g < 40.0 && b < 40.0, "not red: {r} {g} {b}");

    // Search still finds the smpte scene, now one row standing for its 2 s; the
    // same from a Parquet index, whose thumbnails are 64 pixels wide.
    let parquet = dir.join("dedup.parquet");
    index_with(&parquet, &["--thumbnail-size", "64"]);
    assert_eq!(count_rows(&parquet, None).unwrap(), ranges.len() as u64);
    for key in &keys {
        let (width, height, _) = thumbnail_of(&parquet, key).expect("a thumbnail");
        assert_eq!((width, height), (64, 48), "{key:?}");
    }
    assert_eq!(thumbnail_of(&parquet, &(keys[0].0.clone(), 12345)), None);
    for db in [&deduped, &parquet] {
        let hits = search_json(db, &png, &["-k", "1"]);
        let first = &hits[0];
        assert_eq!(first["start_ns"].as_u64(), Some(0), "{hits}");
        assert_eq!(first["end_ns"].as_u64(), Some(1_800_000_000), "{hits}");
        assert!(first["score"].as_f64().unwrap() >= 0.99, "{hits}");
    }
}
