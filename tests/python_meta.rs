// SPDX-License-Identifier: MPL-2.0
//! Reads RadioEmbedMeta and the regions' vectors from Python (PyGObject) and C
//! in real pipelines, through the example programs `pipelines/print-embeddings.py`,
//! `examples/read-regions.py` and `examples/read-regions.c` (compiled here with
//! `cc` and `pkg-config gstreamer-video-1.0`), with the plugin as built.

mod common;

use std::process::Command;

use common::BuiltPlugin;

#[test]
fn python_reads_the_meta_of_every_frame() {
    let plugin = BuiltPlugin::new("python");
    let mut script = plugin.command("/usr/bin/python3");
    script
        .arg(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/pipelines/print-embeddings.py"
        ))
        .arg(common::fixture("tiny-h"))
        .arg("videotestsrc num-buffers=5 ! video/x-raw,width=160,height=120");
    let stdout = BuiltPlugin::stdout_of(script);
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

/// The value after `key=` in `line`'s `nth` occurrence of it.
fn field<'a>(line: &'a str, key: &str, nth: usize) -> &'a str {
    line.split(' ')
        .filter_map(|word| word.strip_prefix(key))
        .nth(nth)
        .unwrap_or_else(|| panic!("no {key} #{nth} in {line}"))
}

#[test]
fn python_reads_the_vectors_of_regions_as_the_element_made_them() {
    use gstradio::meta::regions;
    let plugin = BuiltPlugin::new("python-regions");
    let mut command = plugin.command("/usr/bin/python3");
    command
        .arg(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/examples/read-regions.py"
        ))
        .arg(common::fixture("tiny-so400m"));
    let stdout = BuiltPlugin::stdout_of(command);
    let lines: Vec<&str> = stdout.lines().collect();
    assert_eq!(lines.len(), 3, "{stdout}");

    // The same frames and boxes through the element here.
    let mut h = common::radioembed_harness(
        "tiny-so400m",
        "resolution=32",
        "video/x-raw,format=RGB,width=64,height=48,framerate=10/1",
    );
    for (i, line) in lines.iter().enumerate() {
        let stride = (64 * 3usize).div_ceil(4) * 4;
        let data: Vec<u8> = (0..stride * 48)
            .map(|p| ((p * 7 + i * 31) % 251) as u8)
            .collect();
        let mut buffer = gst::Buffer::from_mut_slice(data);
        let b = buffer.get_mut().unwrap();
        gst_video::VideoRegionOfInterestMeta::add(b, "person", (8, 4, 20, 30));
        gst_video::VideoRegionOfInterestMeta::add(b, "car", (40, 30, 24, 18));
        h.push(buffer).unwrap();
        let found = regions(&h.pull().unwrap()).unwrap();
        assert!(
            line.starts_with(&format!(
                "frame={i} source=cam-py summary=128 person(8,4 20x30)"
            )),
            "{line}"
        );
        for (nth, region) in found.iter().enumerate() {
            assert_eq!(field(line, "kind=", nth), "pool");
            assert_eq!(field(line, "dim=", nth), "64");
            let first: f32 = field(line, "first=", nth).parse().unwrap();
            assert!(
                (first - region.vector[0]).abs() < 1e-4,
                "{line}: {}",
                region.vector[0]
            );
        }
    }
}

#[test]
fn a_c_program_reads_the_frame_meta_and_the_regions() {
    let plugin = BuiltPlugin::new("c-regions");
    let exe = plugin.dir().join("read-regions");
    let flags = Command::new("pkg-config")
        .args(["--cflags", "--libs", "gstreamer-video-1.0"])
        .output()
        .expect("pkg-config runs");
    assert!(
        flags.status.success(),
        "pkg-config gstreamer-video-1.0 failed"
    );
    let flags = String::from_utf8(flags.stdout).unwrap();
    let cc = Command::new("cc")
        .arg(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/examples/read-regions.c"
        ))
        .arg("-o")
        .arg(&exe)
        .args(flags.split_whitespace())
        .output()
        .expect("cc runs");
    assert!(
        cc.status.success(),
        "{}",
        String::from_utf8_lossy(&cc.stderr)
    );
    let tiny = common::fixture("tiny-so400m");
    for (mode, dim) in [("pool", "64"), ("crop", "128")] {
        let mut command = plugin.command(&exe);
        command.arg(&tiny).arg(mode);
        let stdout = BuiltPlugin::stdout_of(command);
        let lines: Vec<&str> = stdout.lines().collect();
        assert_eq!(lines.len(), 3, "{stdout}");
        for (i, line) in lines.iter().enumerate() {
            let expected = format!("frame={i} source=cam-c summary=128 person(20,10 40x60)");
            assert!(line.starts_with(&expected), "{line}");
            assert_eq!(field(line, "kind=", 0), mode);
            assert_eq!(field(line, "dim=", 0), dim);
            let first: f32 = field(line, "first=", 0).parse().unwrap();
            assert!(first.is_finite() && first != 0.0, "{line}");
        }
    }
}
