// SPDX-License-Identifier: MPL-2.0
//! Peak memory of writing an index: one hour of video at 1 frame/s (3600 rows)
//! with SO400M's dimensions (2304-value summaries; at 912x512 a 32x57 grid of
//! 1152-value patches), into each store, summaries only and with the grid
//! pooled 2x2 (16x28x1152, stored in f16). Each case runs in a process of its
//! own and reports that process's peak resident size (VmHWM), next to the
//! bound the stores promise: about two row groups of `transaction-rows` rows.
//!
//!     cargo bench --bench index_memory      (writes to target/bench/)

mod common;

use std::path::Path;
use std::process::Command;

use gstradio::index::{Appended, IndexSettings, IndexWriter, Row};

const ROWS: u64 = 3600;
const DIM: usize = 2304;
const GRID: (usize, usize) = (16, 28);
const SPATIAL_DIM: usize = 1152;
const TRANSACTION_ROWS: usize = 256;

fn peak_rss_kb() -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .and_then(|v| v.trim().trim_end_matches(" kB").parse().ok())
        .unwrap()
}

/// Writes the hour into `path`; prints this process's peak RSS in KiB.
fn write(path: &Path, spatial: bool) {
    let _ = std::fs::remove_file(path);
    let settings = IndexSettings {
        model: "bench".into(),
        input: "912x512".into(),
        summary_dim: DIM,
    };
    let mut writer = IndexWriter::open(path, &settings, "hour", TRANSACTION_ROWS).unwrap();
    for i in 0..ROWS {
        let value = (i % 97) as f32 / 97.0;
        let appended = writer
            .append(Row {
                pts_ns: Some(i * 1_000_000_000),
                pts_end_ns: None,
                frame_index: i,
                input_size: (912, 512),
                summary: vec![value; DIM],
                spatial: spatial.then(|| {
                    (
                        vec![value; GRID.0 * GRID.1 * SPATIAL_DIM],
                        GRID,
                        SPATIAL_DIM,
                    )
                }),
                objects: Vec::new(),
                adaptors: Vec::new(),
                thumbnail: None,
            })
            .unwrap();
        assert_eq!(appended, Appended::Row);
    }
    writer.finish().unwrap();
    println!("{}", peak_rss_kb());
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    if let [_, flag, path, spatial] = &args[..]
        && flag == "--child"
    {
        return write(Path::new(path), spatial == "spatial");
    }
    println!("CPU: {}", common::cpu_model());
    std::fs::create_dir_all("target/bench").unwrap();
    let row_kb = |spatial: bool| {
        (DIM * 4
            + if spatial {
                GRID.0 * GRID.1 * SPATIAL_DIM * 4
            } else {
                0
            }) as f64
            / 1024.0
    };
    println!(
        "{ROWS} rows (1 h at 1 fps), transaction-rows={TRANSACTION_ROWS}; bound ~ 2 x \
         {TRANSACTION_ROWS} rows in memory"
    );
    println!("| store | grid | peak RSS | file | 2 row groups of rows in f32 (the bound) |");
    println!("|---|---|---|---|---|");
    for store in ["sqlite", "parquet"] {
        for spatial in [false, true] {
            let path = format!(
                "target/bench/hour-{}.{store}",
                if spatial { "grid" } else { "summary" }
            );
            let out = Command::new(std::env::current_exe().unwrap())
                .args([
                    "--child",
                    &path,
                    if spatial { "spatial" } else { "summary" },
                ])
                .output()
                .unwrap();
            assert!(
                out.status.success(),
                "{}",
                String::from_utf8_lossy(&out.stderr)
            );
            let peak: f64 = String::from_utf8_lossy(&out.stdout).trim().parse().unwrap();
            let file = std::fs::metadata(&path).unwrap().len() as f64;
            println!(
                "| {store} | {} | {:.0} MiB | {:.0} MiB | {:.0} MiB |",
                if spatial { "16x28x1152 f16" } else { "none" },
                peak / 1024.0,
                file / 1048576.0,
                2.0 * TRANSACTION_ROWS as f64 * row_kb(spatial) / 1024.0
            );
            let _ = std::fs::remove_file(&path);
        }
    }
}
