// SPDX-License-Identifier: MPL-2.0
//! Helpers shared by the integration tests: fixture paths and tensor comparisons.

#![allow(dead_code)]

pub mod hub;

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::sync::Once;

use candle_core::{DType, Device, Tensor};

/// GStreamer initialised and this crate's plugin registered, once per test binary.
pub fn init() {
    static ONCE: Once = Once::new();
    ONCE.call_once(|| {
        gst::init().unwrap();
        gstradio::plugin_register_static().unwrap();
    });
}

/// Waits up to 30 s for `pipeline`'s EOS (failing on an error or a timeout),
/// then sets it to NULL.
pub fn finish_at_eos(pipeline: &gst::Pipeline) {
    use gst::prelude::*;
    let end = pipeline
        .bus()
        .unwrap()
        .timed_pop_filtered(
            gst::ClockTime::from_seconds(30),
            &[gst::MessageType::Eos, gst::MessageType::Error],
        )
        .expect("the pipeline ended in 30 s");
    assert_eq!(end.type_(), gst::MessageType::Eos, "{end:?}");
    pipeline.set_state(gst::State::Null).unwrap();
}

/// The error that stops `launch` from starting: its state change fails and
/// this error is on the bus.
pub fn start_error(launch: &str) -> gst::glib::Error {
    use gst::prelude::*;
    init();
    let pipeline = gst::parse::launch(launch).unwrap();
    let bus = pipeline.bus().unwrap();
    assert!(
        pipeline.set_state(gst::State::Playing).is_err(),
        "{launch} started"
    );
    let msg = bus
        .timed_pop_filtered(gst::ClockTime::from_seconds(5), &[gst::MessageType::Error])
        .expect("an error on the bus");
    pipeline.set_state(gst::State::Null).unwrap();
    match msg.view() {
        gst::MessageView::Error(err) => err.error(),
        _ => unreachable!("filtered for errors"),
    }
}

/// A scratch folder of this test process, removed when dropped (also when an
/// assert fails).
pub struct TempDir(PathBuf);

impl TempDir {
    /// A new, empty folder named after `tag` and the process id.
    pub fn new(tag: &str) -> Self {
        let dir = std::env::temp_dir().join(format!("radio-{tag}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        Self(dir)
    }

    /// The folder.
    pub fn path(&self) -> &Path {
        &self.0
    }

    /// A path inside the folder.
    pub fn join(&self, name: impl AsRef<Path>) -> PathBuf {
        self.0.join(name)
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// A `radioembed` on the fixture `model`, loading inside the state change
/// (`async=false`, as a harness that sets PLAYING and expects SUCCESS needs),
/// with `props` (`name=value` words) set, in a harness whose source pushes `caps`.
pub fn radioembed_harness(model: &str, props: &str, caps: &str) -> gst_check::Harness {
    use gst::prelude::*;
    init();
    let element = gst::ElementFactory::make("radioembed")
        .property("model", fixture(model).display().to_string())
        .property("async", false)
        .build()
        .unwrap();
    for prop in props.split_whitespace() {
        let (name, value) = prop.split_once('=').unwrap();
        element.set_property_from_str(name, value);
    }
    let mut h = gst_check::Harness::with_element(&element, Some("sink"), Some("src"));
    h.set_src_caps_str(caps);
    h
}

/// A `width` × `height` RGB frame (rows padded to 4 bytes, as GStreamer lays
/// them out) whose bytes depend on `seed`, at `i`/30 s, lasting 1/30 s.
pub fn rgb_frame(width: usize, height: usize, i: u64, seed: u64) -> gst::Buffer {
    let stride = (width * 3).div_ceil(4) * 4;
    let data: Vec<u8> = (0..stride * height)
        .map(|p| ((p as u64 * 7 + seed * 31 + (p as u64 / 97) * seed) % 251) as u8)
        .collect();
    let mut buffer = gst::Buffer::from_mut_slice(data);
    let b = buffer.get_mut().unwrap();
    b.set_pts(gst::ClockTime::from_nseconds(i * 1_000_000_000 / 30));
    b.set_duration(gst::ClockTime::from_nseconds(1_000_000_000 / 30));
    buffer
}

/// A copy of the plugin as built (`target/<profile>/libgstradio.so`, made by
/// `cargo build --lib`, which scripts/test.sh runs before the tests) in a
/// folder of its own, for programs that load it the way users do.
pub struct BuiltPlugin(TempDir);

impl BuiltPlugin {
    /// Copies the plugin the test binary was built next to.
    pub fn new(tag: &str) -> Self {
        let exe = std::env::current_exe().unwrap();
        let plugin = exe
            .parent()
            .unwrap()
            .parent()
            .unwrap()
            .join("libgstradio.so");
        assert!(
            plugin.exists(),
            "{} not built: run `cargo build --lib` first",
            plugin.display()
        );
        let dir = TempDir::new(tag);
        std::fs::copy(&plugin, dir.join("libgstradio.so")).unwrap();
        Self(dir)
    }

    /// The folder, for the program's own files too.
    pub fn dir(&self) -> &TempDir {
        &self.0
    }

    /// `program`, made to find GStreamer's plugins and this one (with a
    /// registry of its own).
    pub fn command(&self, program: impl AsRef<std::ffi::OsStr>) -> Command {
        let mut command = Command::new(program);
        command
            .env("GST_PLUGIN_PATH", self.0.path())
            .env("GST_REGISTRY", self.0.join("registry.bin"));
        command
    }

    /// Runs `command` and returns its stdout, failing with its output if it fails.
    pub fn stdout_of(mut command: Command) -> String {
        let output = command.output().expect("the program runs");
        let stdout = text(&output.stdout);
        assert!(
            output.status.success(),
            "failed: {stdout}\n{}",
            text(&output.stderr)
        );
        stdout
    }
}

/// The `radio-embed` binary built for these tests, ready for arguments.
pub fn cli() -> Command {
    Command::new(env!("CARGO_BIN_EXE_radio-embed"))
}

/// `radio-embed index` of `clip` into `db` at 5 frames/s with the tiny model at
/// 64 px, no dedup, storing the siglip2-g adaptor's vectors from the
/// textsearch fixture's checkpoint; `extra` arguments added. Fails with its
/// stderr unless it succeeded.
pub fn index_with_siglip2g(clip: &Path, db: &Path, extra: &[&str]) {
    let model = fixture("tiny-so400m");
    let checkpoint = fixture("textsearch/c-radio_v4-tiny_half.pth.tar");
    let out = cli()
        .args([
            "index",
            clip.to_str().unwrap(),
            "--db",
            db.to_str().unwrap(),
        ])
        .args([
            "--fps",
            "5",
            "--model",
            model.to_str().unwrap(),
            "--resolution",
            "64",
        ])
        .args([
            "--dedup-threshold",
            "0",
            "--adaptor",
            "siglip2-g",
            "--adaptor-checkpoint",
        ])
        .arg(checkpoint)
        .args(extra)
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", text(&out.stderr));
}

/// A detected box: its type and (x, y, width, height) in frame pixels.
pub type Detection = (&'static str, (u32, u32, u32, u32));

/// A stand-in detector: the element named `name` in `pipeline` (an
/// `identity`) gives every buffer a `GstVideoRegionOfInterestMeta` per box.
pub fn detect(pipeline: &gst::Pipeline, name: &str, boxes: &'static [Detection]) {
    use gst::prelude::*;
    pipeline
        .by_name(name)
        .unwrap()
        .static_pad("src")
        .unwrap()
        .add_probe(gst::PadProbeType::BUFFER, move |_, info| {
            if let Some(gst::PadProbeData::Buffer(buffer)) = &mut info.data {
                let b = buffer.make_mut();
                for (roi_type, rect) in boxes {
                    gst_video::VideoRegionOfInterestMeta::add(b, roi_type, *rect);
                }
            }
            gst::PadProbeReturn::Ok
        });
}

/// `radiometapublish`'s message schema (`schema/radioembed-message.schema.json`), compiled.
pub fn message_schema() -> jsonschema::Validator {
    let path = repo_root().join("schema/radioembed-message.schema.json");
    let text = std::fs::read_to_string(path).unwrap();
    let schema: serde_json::Value = serde_json::from_str(&text).unwrap();
    jsonschema::validator_for(&schema).expect("a valid JSON Schema")
}

/// Runs `radio-embed` with `args` to the end.
pub fn run_cli(args: &[&str]) -> Output {
    cli().args(args).output().unwrap()
}

/// A process's stdout and stderr as text.
pub fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

/// The repository: where the tests were built, else (a test executable carried
/// to another machine by scripts/gpu-check.sh) the folder it runs in.
pub fn repo_root() -> PathBuf {
    let built = PathBuf::from(env!("CARGO_MANIFEST_DIR"));
    if built.join("tests/fixtures").is_dir() {
        built
    } else {
        std::env::current_dir().expect("a current directory")
    }
}

/// A folder under `tests/fixtures/`.
pub fn fixture(name: &str) -> PathBuf {
    repo_root().join("tests/fixtures").join(name)
}

/// All tensors of a fixture's `cases.safetensors`.
pub fn cases(model: &str) -> HashMap<String, Tensor> {
    candle_core::safetensors::load(fixture(model).join("cases.safetensors"), &Device::Cpu)
        .expect("fixture cases load")
}

/// Case ids (`case0`, `case1`, …) present in a cases file, sorted.
pub fn case_ids(cases: &HashMap<String, Tensor>) -> Vec<String> {
    let mut ids: Vec<String> = cases
        .keys()
        .filter_map(|k| k.strip_suffix(".input").map(str::to_string))
        .collect();
    ids.sort();
    ids
}

/// Largest absolute difference between two tensors of the same shape.
pub fn max_abs_diff(a: &Tensor, b: &Tensor) -> f32 {
    assert_eq!(a.dims(), b.dims(), "shape mismatch");
    (a.to_dtype(DType::F32).unwrap() - b.to_dtype(DType::F32).unwrap())
        .unwrap()
        .abs()
        .unwrap()
        .flatten_all()
        .unwrap()
        .max(0)
        .unwrap()
        .to_scalar::<f32>()
        .unwrap()
}

/// Smallest cosine similarity between matching rows of two (N, C) tensors.
pub fn min_row_cosine(a: &Tensor, b: &Tensor) -> f32 {
    let a = a.to_dtype(DType::F32).unwrap();
    let b = b.to_dtype(DType::F32).unwrap();
    let dot = (&a * &b).unwrap().sum(1).unwrap();
    let na = a.sqr().unwrap().sum(1).unwrap().sqrt().unwrap();
    let nb = b.sqr().unwrap().sum(1).unwrap().sqrt().unwrap();
    (dot / (na * nb).unwrap())
        .unwrap()
        .min(0)
        .unwrap()
        .to_scalar::<f32>()
        .unwrap()
}

/// Largest absolute difference between two equally long slices.
pub fn max_abs_diff_slices(a: &[f32], b: &[f32]) -> f32 {
    assert_eq!(a.len(), b.len(), "length mismatch");
    a.iter()
        .zip(b)
        .map(|(x, y)| (x - y).abs())
        .fold(0f32, f32::max)
}

/// Deterministic pseudo-random bytes (xorshift) for synthetic frames.
pub fn noise(len: usize, seed: u32) -> Vec<u8> {
    let mut s = seed.max(1);
    (0..len)
        .map(|_| {
            s ^= s << 13;
            s ^= s >> 17;
            s ^= s << 5;
            (s >> 24) as u8
        })
        .collect()
}

/// This process's resident size in KiB.
pub fn resident_kb() -> u64 {
    let statm = std::fs::read_to_string("/proc/self/statm").unwrap();
    let pages: u64 = statm.split_whitespace().nth(1).unwrap().parse().unwrap();
    pages * 4
}

/// One NULL → PLAYING → NULL cycle of `pipeline`, waiting for PLAYING.
pub fn state_cycle(pipeline: &gst::Element) {
    use gst::prelude::*;
    pipeline.set_state(gst::State::Playing).unwrap();
    let _ = pipeline.state(gst::ClockTime::from_seconds(10));
    pipeline.set_state(gst::State::Null).unwrap();
}
