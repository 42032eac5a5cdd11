// SPDX-License-Identifier: MPL-2.0
//! Search over 100,000 rows of 2304-dim summaries (SO400M's width) in each store
//! (SQLite and Parquet): median time of an exact top-10 query with 2 threads and
//! rows/s scanned, checked against a brute-force ranking of the same vectors in
//! the same run.
//!
//!     cargo bench --bench search      (writes two ~0.9 GB indexes to target/bench/)

mod common;

use std::path::Path;
use std::time::Instant;

use gstradio::index::{Appended, IndexSettings, IndexWriter, Row, count_rows, search};

const ROWS: usize = 100_000;
const DIM: usize = 2304;

fn vector(seed: u64) -> Vec<f32> {
    common::random_vector(seed, DIM)
}

fn build(db: &Path) {
    let settings = IndexSettings {
        model: "bench".into(),
        input: "512x512".into(),
        summary_dim: DIM,
    };
    let mut writer = IndexWriter::open(db, &settings, "bench", 10_000).unwrap();
    for i in 0..ROWS {
        let appended = writer
            .append(Row {
                pts_ns: Some(i as u64 * 1_000_000_000),
                pts_end_ns: None,
                frame_index: i as u64,
                input_size: (512, 512),
                summary: vector(i as u64),
                spatial: None,
                objects: Vec::new(),
                adaptors: Vec::new(),
                thumbnail: None,
            })
            .unwrap();
        assert_eq!(appended, Appended::Row);
    }
    writer.finish().unwrap();
}

fn main() {
    println!("CPU: {}", common::cpu_model());
    std::fs::create_dir_all("target/bench").unwrap();
    let query = vector(12_345_678);
    // Brute force over the same vectors (regenerated) for the exact top 10.
    let qn = query.iter().map(|v| v * v).sum::<f32>().sqrt();
    let mut all: Vec<(f32, u64)> = (0..ROWS as u64)
        .map(|i| {
            let v = vector(i);
            let dot: f32 = v.iter().zip(&query).map(|(a, b)| a * b).sum();
            (dot / (qn * v.iter().map(|x| x * x).sum::<f32>().sqrt()), i)
        })
        .collect();
    all.sort_by(|a, b| b.0.total_cmp(&a.0));

    for store in ["sqlite", "parquet"] {
        let db = format!("target/bench/search-100k.{store}");
        let db = Path::new(&db);
        if count_rows(db, None).ok() != Some(ROWS as u64) {
            let _ = std::fs::remove_file(db);
            let started = Instant::now();
            build(db);
            println!(
                "{store}: built {ROWS} rows in {:.1} s",
                started.elapsed().as_secs_f64()
            );
        }
        search(db, &query, 10, 2).unwrap();
        let mut times: Vec<f64> = (0..7)
            .map(|_| {
                let started = Instant::now();
                search(db, &query, 10, 2).unwrap();
                started.elapsed().as_secs_f64() * 1000.0
            })
            .collect();
        times.sort_by(f64::total_cmp);
        let median = times[times.len() / 2];
        let hits = search(db, &query, 10, 2).unwrap();
        let exact = hits.iter().zip(&all).all(|(h, (_, i))| h.frame_index == *i);
        println!(
            "{store}: search {ROWS} x {DIM}: median {median:.1} ms for the top 10 ({:.0} rows/s, \
             {:.2} GB/s of vectors), target 200 ms: ratio {:.2}; top 10 equal to brute force: {exact}",
            ROWS as f64 / (median / 1000.0),
            (ROWS * DIM * 4) as f64 / (median / 1000.0) / 1e9,
            median / 200.0
        );
    }
}
