// SPDX-License-Identifier: MPL-2.0
//! Reads RadioEmbedMeta from Python (PyGObject) in a real pipeline, through the
//! example script `pipelines/print-embeddings.py`, with the plugin as built.

mod common;

use std::path::PathBuf;
use std::process::Command;

/// The plugin the test binary was built next to: `target/<profile>/libgstradio.so`
/// (made by `cargo build --lib`, which scripts/test.sh runs before the tests).
fn built_plugin() -> PathBuf {
    let exe = std::env::current_exe().unwrap();
    exe.parent()
        .unwrap()
        .parent()
        .unwrap()
        .join("libgstradio.so")
}

#[test]
fn python_reads_the_meta_of_every_frame() {
    let plugin = built_plugin();
    assert!(
        plugin.exists(),
        "{} not built: run `cargo build --lib` first",
        plugin.display()
    );
    let dir = common::TempDir::new("python");
    std::fs::copy(&plugin, dir.join("libgstradio.so")).unwrap();
    let output = Command::new("/usr/bin/python3")
        .arg(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/pipelines/print-embeddings.py"
        ))
        .arg(common::fixture("tiny-h"))
        .arg("videotestsrc num-buffers=5 ! video/x-raw,width=160,height=120")
        .env("GST_PLUGIN_PATH", dir.path())
        .env("GST_REGISTRY", dir.join("registry.bin"))
        .output()
        .expect("python3 runs");
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(
        output.status.success(),
        "script failed: {stdout}\n{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let lines: Vec<&str> = stdout.lines().filter(|l| l.starts_with("pts=")).collect();
    assert_eq!(lines.len(), 5, "{stdout}");
    // tiny-h: summary 2 x 96; 160x120 at resolution 512 → 688x512 → grid 32x43 of 96.
    for (i, line) in lines.iter().enumerate() {
        assert!(line.contains(&format!("frame={i:4}")), "{line}");
        assert!(line.contains("summary[192]"), "{line}");
        assert!(line.contains("spatial=32x43x96 input=688x512"), "{line}");
    }
    assert!(stdout.contains("5 frames embedded"));
}
