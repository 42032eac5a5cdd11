// SPDX-License-Identifier: MPL-2.0
//! The `radio-embed` command line: info, forward against the fixtures, preprocess,
//! bench on host frames.

mod common;

use candle_core::Device;
use common::{TempDir, cases, fixture, max_abs_diff, run_cli, text};

/// Whether the run succeeded, and its stdout and stderr.
fn outcome(out: std::process::Output) -> (bool, String, String) {
    (out.status.success(), text(&out.stdout), text(&out.stderr))
}

#[test]
fn info_describes_the_model() {
    let model = fixture("tiny-h-native");
    let (ok, out, err) = outcome(run_cli(&["info", "--model", model.to_str().unwrap()]));
    assert!(ok, "{err}");
    for line in [
        "config layout     native (transformers RadioModel)",
        "width             96",
        "depth             3",
        "heads             4 (head dim 24)",
        "position grid     7x7",
        "summary dim       192",
    ] {
        assert!(out.contains(line), "missing `{line}` in:\n{out}");
    }
}

#[test]
fn forward_reproduces_the_fixture_outputs() {
    let dir = TempDir::new("cli-forward");
    let output = dir.join("out.safetensors");
    let input = fixture("tiny-so400m/cases.safetensors");
    let model = fixture("tiny-so400m");
    let (ok, stdout, err) = outcome(run_cli(&[
        "forward",
        "--model",
        model.to_str().unwrap(),
        "--input",
        input.to_str().unwrap(),
        "--output",
        output.to_str().unwrap(),
    ]));
    assert!(ok, "{err}");
    assert!(
        stdout.contains("case2.input: summary [2, 128], features [2, 60, 64]"),
        "{stdout}"
    );
    let got = candle_core::safetensors::load(&output, &Device::Cpu).unwrap();
    let expected = cases("tiny-so400m");
    for case in ["case0", "case1", "case2", "case3"] {
        for out in ["summary", "features"] {
            let key = format!("{case}.{out}");
            let err = max_abs_diff(&got[&key], &expected[&key]);
            assert!(err <= 1e-4, "{key} off by {err}");
        }
    }
}

#[test]
fn forward_refuses_a_bad_dtype_and_device() {
    let model = fixture("tiny-so400m");
    let m = model.to_str().unwrap();
    let (ok, _, err) = outcome(run_cli(&[
        "forward", "--model", m, "--input", "x", "--output", "y", "--dtype", "f8",
    ]));
    assert!(!ok);
    // clap refuses it before anything runs, naming the choices.
    assert!(
        err.contains("invalid value 'f8' for '--dtype <DTYPE>'")
            && err.contains("[possible values: f32, f16, bf16]"),
        "{err}"
    );
    let (ok, _, err) = outcome(run_cli(&[
        "forward", "--model", m, "--input", "x", "--output", "y", "--device", "tpu",
    ]));
    assert!(!ok);
    assert!(err.contains("device tpu is unavailable"), "{err}");
}

#[test]
fn preprocess_matches_the_pytorch_resize() {
    let dir = TempDir::new("cli-preprocess");
    let output = dir.join("seen.safetensors");
    let input = format!(
        "{}:image_u8_hwc",
        fixture("preprocess/cases.safetensors").display()
    );
    let (ok, stdout, err) = outcome(run_cli(&[
        "preprocess",
        "--input",
        &input,
        "--size",
        "48x64",
        "--antialias",
        "true",
        "--output",
        output.to_str().unwrap(),
    ]));
    assert!(ok, "{err}");
    assert_eq!(
        stdout.trim(),
        format!("131x97 -> 64x48 (antialias true) -> {}", output.display())
    );
    let got = candle_core::safetensors::load(&output, &Device::Cpu).unwrap();
    let png = dir.join("seen.png");
    let (ok, _, err) = outcome(run_cli(&[
        "preprocess",
        "--input",
        &input,
        "--resolution",
        "96",
        "--output",
        png.to_str().unwrap(),
    ]));
    assert!(ok, "{err}");
    assert!(std::fs::metadata(&png).unwrap().len() > 100);
    let err = max_abs_diff(
        &got["resized"],
        &cases("preprocess")["resize_48x64_antialias_1"],
    );
    assert!(err <= 2e-5, "off by {err}");
}

#[test]
fn bench_times_host_frames_through_the_element_path() {
    let model = fixture("tiny-so400m");
    let m = model.to_str().unwrap();
    let (ok, out, err) = outcome(run_cli(&[
        "bench",
        "--model",
        m,
        "--size",
        "64x96",
        "--batch",
        "2",
        "--iters",
        "2",
        "--frames",
        "nv12:320x240",
    ]));
    assert!(ok, "{err}");
    let line = out
        .lines()
        .find(|l| l.starts_with("frames "))
        .unwrap_or_else(|| panic!("no frames line in:\n{out}"));
    assert!(
        line.starts_with(
            "frames NV12 320x240 -> 64x96 batch 2 (preprocess, forward, embeddings to host): median "
        ) && line.contains(" ms a frame"),
        "{line}"
    );
    // The same path stage by stage, so a slow stage shows by name.
    let stages = out
        .lines()
        .find(|l| l.trim_start().starts_with("stage by stage"))
        .unwrap_or_else(|| panic!("no stage line in:\n{out}"));
    for stage in ["preprocess ", "forward ", "outputs to host ", "metas "] {
        assert!(stages.contains(stage), "{stage:?} missing from {stages}");
    }
    let (ok, _, err) = outcome(run_cli(&[
        "bench",
        "--model",
        m,
        "--frames",
        "YUV9:320x240",
    ]));
    assert!(!ok);
    assert!(
        err.contains("unknown format `YUV9`; one of NV12, I420, RGB,"),
        "{err}"
    );
    let (ok, _, err) = outcome(run_cli(&["bench", "--model", m, "--frames", "NV12:320"]));
    assert!(!ok);
    assert!(
        err.contains("frame size `320` is not WIDTHxHEIGHT"),
        "{err}"
    );
}
