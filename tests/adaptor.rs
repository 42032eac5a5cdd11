// SPDX-License-Identifier: MPL-2.0
//! The siglip2-g adaptor heads read from a torch.hub checkpoint, against the outputs
//! of the official NVlabs/RADIO code (`tests/fixtures/textsearch/README.md`), and
//! the errors a bad checkpoint gets. Variants of the checkpoint (index-named heads,
//! a foreign class, another MLP version) are made by rewriting its pickle here.

mod common;

use std::io::{Read, Write};
use std::path::{Path, PathBuf};

use candle_core::{DType, Device};
use common::{TempDir, case_ids, cases, fixture, max_abs_diff, run_cli, text};
use gstradio::model::{ModelError, RadioModel, TorchCheckpoint};

/// max abs error allowed on the adaptor outputs in f32 (as for the backbone).
const OUTPUT_TOL: f32 = 1e-4;

fn checkpoint_path() -> PathBuf {
    fixture("textsearch/c-radio_v4-tiny_half.pth.tar")
}

fn backbone() -> RadioModel {
    RadioModel::load(&fixture("tiny-so400m"), &Device::Cpu, DType::F32).unwrap()
}

/// Checks the siglip2-g outputs of `model` on every fixture case.
fn check_siglip2g(model: &RadioModel) {
    let cases = cases("textsearch");
    let ids = case_ids(&cases);
    assert_eq!(ids.len(), 4);
    for id in ids {
        let out = model.forward(&cases[&format!("{id}.input")]).unwrap();
        let adaptor = out.adaptor("siglip2-g").expect("siglip2-g output");
        for (what, got) in [
            ("summary", &adaptor.summary),
            ("features", adaptor.features.as_ref().unwrap()),
        ] {
            let err = max_abs_diff(got, &cases[&format!("{id}.siglip2g_{what}")]);
            assert!(err <= OUTPUT_TOL, "{id} siglip2g_{what} off by {err}");
        }
        let backbone = max_abs_diff(&out.summary, &cases[&format!("{id}.backbone_summary")]);
        assert!(
            backbone <= OUTPUT_TOL,
            "{id} backbone summary off by {backbone}"
        );
    }
}

/// Copies the fixture checkpoint to `dir` with its pickle passed through `edit`.
fn rewritten(dir: &Path, edit: impl Fn(Vec<u8>) -> Vec<u8>) -> PathBuf {
    let mut source = zip::ZipArchive::new(std::fs::File::open(checkpoint_path()).unwrap()).unwrap();
    let target = dir.join("edited.pth.tar");
    let mut writer = zip::ZipWriter::new(std::fs::File::create(&target).unwrap());
    let options =
        zip::write::SimpleFileOptions::default().compression_method(zip::CompressionMethod::Stored);
    for i in 0..source.len() {
        let mut entry = source.by_index(i).unwrap();
        let name = entry.name().unwrap().into_owned();
        let mut bytes = Vec::new();
        entry.read_to_end(&mut bytes).unwrap();
        if name.ends_with("data.pkl") {
            bytes = edit(bytes);
        }
        writer.start_file(name, options).unwrap();
        writer.write_all(&bytes).unwrap();
    }
    writer.finish().unwrap();
    target
}

/// Replaces every occurrence of `from` by `to` in `bytes`.
fn replace(bytes: &[u8], from: &[u8], to: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i..].starts_with(from) {
            out.extend_from_slice(to);
            i += from.len();
        } else {
            out.push(bytes[i]);
            i += 1;
        }
    }
    out
}

/// Renames pickled strings (BINUNICODE: `X`, u32 length, UTF-8) that start with
/// `from` so they start with `to`, fixing their length prefix.
fn rename_strings(bytes: &[u8], from: &str, to: &str) -> Vec<u8> {
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'X' && i + 5 <= bytes.len() {
            let len = u32::from_le_bytes(bytes[i + 1..i + 5].try_into().unwrap()) as usize;
            let body = bytes.get(i + 5..i + 5 + len);
            if let Some(rest) = body
                .and_then(|b| std::str::from_utf8(b).ok())
                .and_then(|s| s.strip_prefix(from))
            {
                let renamed = format!("{to}{rest}");
                out.push(b'X');
                out.extend_from_slice(&(renamed.len() as u32).to_le_bytes());
                out.extend_from_slice(renamed.as_bytes());
                i += 5 + len;
                continue;
            }
        }
        out.push(bytes[i]);
        i += 1;
    }
    out
}

fn open_error(path: &Path) -> String {
    match TorchCheckpoint::open(path) {
        Ok(_) => panic!("{} opened", path.display()),
        Err(err) => err.to_string(),
    }
}

fn adaptor_error(checkpoint: &TorchCheckpoint, name: &str) -> String {
    match backbone().with_adaptor(checkpoint, name) {
        Ok(_) => panic!("adaptor {name} loaded"),
        Err(err) => err.to_string(),
    }
}

#[test]
fn checkpoint_args_and_heads_parse() {
    let checkpoint = TorchCheckpoint::open(&checkpoint_path()).unwrap();
    let args = checkpoint.args();
    let names: Vec<&str> = args.teachers.iter().map(|t| t.name.as_str()).collect();
    assert_eq!(names, ["siglip2-g", "dino_v3", "sam3"]);
    assert_eq!(args.teachers[0].kind, "siglip2");
    assert_eq!(args.mlp_version, "v2");
    assert!(args.cls_token_per_teacher);
    assert_eq!(args.teacher("dino_v3").map(|(i, _)| i), Some(1));
    let weight = checkpoint.tensor("_heads.siglip2-g.fc1.weight").unwrap();
    assert_eq!(weight.dims(), [96, 64]);
    assert_eq!(weight.dtype(), DType::F16);
    let mean = checkpoint.tensor("input_conditioner.norm_mean").unwrap();
    assert_eq!(mean.dtype(), DType::F32);

    let model = backbone().with_adaptor(&checkpoint, "siglip2-g").unwrap();
    let adaptor = &model.adaptors()[0];
    assert_eq!((adaptor.summary_dim(), adaptor.feature_dim()), (48, 48));
}

#[test]
fn siglip2g_matches_the_official_outputs() {
    let checkpoint = TorchCheckpoint::open(&checkpoint_path()).unwrap();
    check_siglip2g(&backbone().with_adaptor(&checkpoint, "siglip2-g").unwrap());
}

#[test]
fn heads_named_by_teacher_index_load_the_same() {
    let dir = TempDir::new("adaptor-index");
    let path = rewritten(dir.path(), |pickle| {
        let pickle = rename_strings(&pickle, "_heads.siglip2-g.", "_heads.0.");
        rename_strings(
            &pickle,
            "_feature_projections.siglip2-g.",
            "_feature_projections.0.",
        )
    });
    let checkpoint = TorchCheckpoint::open(&path).unwrap();
    assert!(checkpoint.keys().any(|k| k == "_heads.0.fc1.weight"));
    assert!(
        !checkpoint
            .keys()
            .any(|k| k.starts_with("_heads.siglip2-g."))
    );
    check_siglip2g(&backbone().with_adaptor(&checkpoint, "siglip2-g").unwrap());
}

#[test]
fn a_pickle_naming_a_foreign_class_is_refused() {
    let dir = TempDir::new("adaptor-class");
    let path = rewritten(dir.path(), |pickle| {
        replace(&pickle, b"argparse\nNamespace\n", b"os\nsystem\n")
    });
    let err = open_error(&path);
    assert!(err.contains("`os.system`"), "{err}");
    assert!(err.contains("refusing"), "{err}");
}

#[test]
fn a_truncated_archive_is_refused() {
    let dir = TempDir::new("adaptor-truncated");
    let bytes = std::fs::read(checkpoint_path()).unwrap();
    let path = dir.join("truncated.pth.tar");
    std::fs::write(&path, &bytes[..bytes.len() / 2]).unwrap();
    let err = open_error(&path);
    assert!(err.contains("not a PyTorch zip archive"), "{err}");
}

#[test]
fn missing_or_unknown_heads_are_named() {
    let checkpoint = TorchCheckpoint::open(&checkpoint_path()).unwrap();
    let err = adaptor_error(&checkpoint, "sam3");
    assert!(
        err.contains("no `_heads.sam3.*` or `_heads.2.*` weights"),
        "{err}"
    );
    let err = adaptor_error(&checkpoint, "clip");
    assert!(err.contains("no teacher `clip`"), "{err}");
    assert!(
        err.contains("\"siglip2-g\", \"dino_v3\", \"sam3\""),
        "{err}"
    );
}

#[test]
fn an_unsupported_mlp_version_is_refused() {
    let dir = TempDir::new("adaptor-mlp");
    // The value of `args.mlp_version`: BINUNICODE of length 2.
    let path = rewritten(dir.path(), |pickle| {
        replace(&pickle, b"X\x02\x00\x00\x00v2", b"X\x02\x00\x00\x00v9")
    });
    let checkpoint = TorchCheckpoint::open(&path).unwrap();
    assert_eq!(checkpoint.args().mlp_version, "v9");
    let err = adaptor_error(&checkpoint, "siglip2-g");
    assert!(err.contains("MLP version `v9` is not supported"), "{err}");
}

#[test]
fn cli_forward_writes_the_adaptor_outputs() {
    let dir = TempDir::new("adaptor-cli");
    // A model folder with the checkpoint beside model.safetensors, as in a snapshot:
    // the checkpoint is found without --adaptor-checkpoint.
    let model = dir.join("model");
    std::fs::create_dir(&model).unwrap();
    for file in ["config.json", "model.safetensors"] {
        std::fs::copy(fixture("tiny-so400m").join(file), model.join(file)).unwrap();
    }
    std::fs::copy(
        checkpoint_path(),
        model.join("c-radio_v4-tiny_half.pth.tar"),
    )
    .unwrap();
    let output = dir.join("out.safetensors");
    let input = fixture("textsearch/cases.safetensors");
    let forward = || {
        run_cli(&[
            "forward",
            "--model",
            model.to_str().unwrap(),
            "--input",
            input.to_str().unwrap(),
            "--output",
            output.to_str().unwrap(),
            "--adaptor",
            "siglip2-g",
        ])
    };
    let run = forward();
    assert!(run.status.success(), "{}", text(&run.stderr));
    let written = candle_core::safetensors::load(&output, &Device::Cpu).unwrap();
    let expected = cases("textsearch");
    for id in case_ids(&expected) {
        for key in [
            "siglip2g_summary",
            "siglip2g_features",
            "summary",
            "features",
        ] {
            let reference = expected
                .get(&format!("{id}.{key}"))
                .or_else(|| expected.get(&format!("{id}.backbone_{key}")))
                .unwrap();
            let err = max_abs_diff(&written[&format!("{id}.{key}")], reference);
            assert!(err <= OUTPUT_TOL, "{id}.{key} off by {err}");
        }
    }

    // Two checkpoints in the folder: the user has to name one.
    std::fs::copy(checkpoint_path(), model.join("other.pth.tar")).unwrap();
    let run = forward();
    assert!(!run.status.success());
    assert!(
        text(&run.stderr).contains("it has several"),
        "{}",
        text(&run.stderr)
    );
}

#[test]
fn model_errors_keep_their_type() {
    let err = TorchCheckpoint::open(Path::new("/nonexistent/x.pth.tar"))
        .err()
        .unwrap();
    assert!(matches!(err, ModelError::Io { .. }), "{err}");
}

#[test]
fn a_summary_only_forward_skips_the_feature_head_and_keeps_the_summary() {
    let checkpoint = TorchCheckpoint::open(&checkpoint_path()).unwrap();
    let model = backbone().with_adaptor(&checkpoint, "siglip2-g").unwrap();
    let cases = cases("textsearch");
    let input = &cases["case0.input"];
    let normalized = input
        .broadcast_sub(
            &candle_core::Tensor::new(&model.info().dims.norm_mean, &Device::Cpu)
                .unwrap()
                .reshape((1, 3, 1, 1))
                .unwrap(),
        )
        .unwrap()
        .broadcast_div(
            &candle_core::Tensor::new(&model.info().dims.norm_std, &Device::Cpu)
                .unwrap()
                .reshape((1, 3, 1, 1))
                .unwrap(),
        )
        .unwrap();
    let full = model.forward_normalized_with(&normalized, true).unwrap();
    let lean = model.forward_normalized_with(&normalized, false).unwrap();
    let (full, lean) = (
        full.adaptor("siglip2-g").unwrap(),
        lean.adaptor("siglip2-g").unwrap(),
    );
    assert!(full.features.is_some() && lean.features.is_none());
    assert_eq!(max_abs_diff(&full.summary, &lean.summary), 0.0);
    let err = max_abs_diff(&lean.summary, &cases["case0.siglip2g_summary"]);
    assert!(err <= OUTPUT_TOL, "summary off by {err}");
}

#[test]
fn cli_bench_prices_the_adaptor_heads() {
    let model = fixture("tiny-so400m");
    let checkpoint = fixture("textsearch/c-radio_v4-tiny_half.pth.tar");
    for (extra, heads) in [
        (None, "adaptor summary and feature heads: "),
        (Some("--adaptor-summary-only"), "adaptor summary heads: "),
    ] {
        let mut args = vec![
            "bench",
            "--model",
            model.to_str().unwrap(),
            "--size",
            "64x64",
            "--iters",
            "3",
            "--adaptor",
            "siglip2-g",
            "--adaptor-checkpoint",
            checkpoint.to_str().unwrap(),
        ];
        args.extend(extra);
        let out = run_cli(&args);
        let stdout = text(&out.stdout);
        assert!(out.status.success(), "{}", text(&out.stderr));
        let line = stdout
            .lines()
            .find(|l| l.starts_with(heads))
            .unwrap_or_else(|| {
                panic!("no `{heads}` line in:\n{stdout}");
            });
        assert!(
            line.contains("% of the backbone's time (median of 3 paired forwards: backbone "),
            "{line}"
        );
    }
}

#[test]
fn a_cropped_region_gets_the_adaptor_summary_of_its_crop() {
    use gst::prelude::*;
    common::init();
    // A box over the whole frame, cropped to 64 × 64 with no padding, is the
    // same model input as the frame itself at 64 × 64: its vectors are the
    // frame's summaries.
    let pipeline = gst::parse::launch(&format!(
        "videotestsrc num-buffers=3 pattern=smpte ! video/x-raw,width=160,height=120 ! \
         identity name=detector ! radioembed model={} adaptor=siglip2-g adaptor-checkpoint={} \
         width=64 height=64 roi-mode=crop roi-resolution=64 roi-padding=0 ! \
         appsink name=sink sync=false",
        fixture("tiny-so400m").display(),
        checkpoint_path().display()
    ))
    .unwrap()
    .downcast::<gst::Pipeline>()
    .unwrap();
    common::detect(
        &pipeline,
        "detector",
        &[("scene", (0, 0, 160, 120)), ("corner", (0, 0, 40, 40))],
    );
    let sink = pipeline.by_name("sink").unwrap();
    pipeline.set_state(gst::State::Playing).unwrap();
    for _ in 0..3 {
        let sample = sink
            .emit_by_name::<Option<gst::Sample>>("pull-sample", &[])
            .expect("a frame");
        let buffer = sample.buffer().unwrap();
        let frame = gstradio::meta::Embedding::from_buffer(buffer)
            .unwrap()
            .unwrap();
        let regions = gstradio::meta::regions(buffer).unwrap();
        assert_eq!(regions.len(), 2);
        let (scene, corner) = (&regions[0], &regions[1]);
        let adaptor = frame.adaptor("siglip2-g").unwrap();
        assert_eq!(scene.adaptors.len(), 1);
        assert_eq!(scene.adaptors[0].name, "siglip2-g");
        let diff = common::max_abs_diff_slices(&scene.adaptors[0].vector, &adaptor.summary);
        assert!(diff <= OUTPUT_TOL, "adaptor vector off by {diff}");
        let diff = common::max_abs_diff_slices(&scene.vector, frame.summary.as_ref().unwrap());
        assert!(diff <= OUTPUT_TOL, "backbone vector off by {diff}");
        // Another crop, another vector of the same length.
        assert_eq!(corner.adaptors[0].vector.len(), adaptor.summary.len());
        let diff = common::max_abs_diff_slices(&corner.adaptors[0].vector, &adaptor.summary);
        assert!(diff > 1e-3, "the corner's crop is not the frame");
    }
    common::finish_at_eos(&pipeline);
}
