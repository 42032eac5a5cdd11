// SPDX-License-Identifier: MPL-2.0
//! Every CPU matmul path against the official outputs: in f32 the `gemm` crate
//! and each OpenBLAS kernel family this CPU can run, forced through OpenBLAS's
//! own `OPENBLAS_CORETYPE`; the bf16 path's kernels where the CPU has them
//! (AVX512-BF16, AMX-BF16), to bfloat16's precision. OpenBLAS reads it once, when the library loads, so
//! each path runs in a `radio-embed` process of its own, which also prints the
//! path it took (`info`).

mod common;

use candle_core::Device;
use common::{TempDir, cases, cli, fixture, max_abs_diff, min_row_cosine, text};

/// max abs error allowed on `summary` and `features` in f32
/// (tests/fixtures/README.md).
const OUTPUT_TOL: f32 = 1e-4;

/// The bf16 path's bounds: every row's cosine with the official output, and the
/// max abs error relative to the output's largest value. Factors rounded to 8
/// significant bits give 0.99998 and 0.7 % on the fixtures.
const BF16_MIN_COSINE: f32 = 0.9999;
const BF16_REL_TOL: f32 = 1e-2;

/// One path: the environment that forces it and how `radio-embed info` names it.
struct MatmulPath {
    tag: &'static str,
    env: &'static [(&'static str, &'static str)],
    named: &'static str,
    /// Whether it rounds to bfloat16 (checked to that precision).
    bf16: bool,
}

/// The paths this CPU can run.
fn paths() -> Vec<MatmulPath> {
    assert!(
        gstradio::cpu::avx2_fma(),
        "these tests expect an x86-64 server CPU with AVX2 and FMA"
    );
    let mut paths = vec![MatmulPath {
        tag: "gemm",
        env: &[("RADIOEMBED_CPU_MATMUL", "gemm")],
        named: "gemm crate, AVX2+FMA kernels",
        bf16: false,
    }];
    if cfg!(feature = "openblas") {
        paths.push(MatmulPath {
            tag: "haswell",
            env: &[("OPENBLAS_CORETYPE", "Haswell")],
            named: "Haswell kernels (AVX2+FMA); attention: OpenBLAS",
            bf16: false,
        });
        if std::arch::is_x86_feature_detected!("avx512f") {
            paths.push(MatmulPath {
                tag: "skylakex",
                env: &[("OPENBLAS_CORETYPE", "SkylakeX")],
                named: "SkylakeX kernels (AVX-512); attention: fused AVX-512",
                bf16: false,
            });
        } else {
            println!("this CPU has no AVX-512: OpenBLAS's SkylakeX kernels cannot run here");
        }
    }
    if gstradio::cpu::avx512_bf16() {
        paths.push(MatmulPath {
            tag: "bf16-avx512",
            env: &[("RADIOEMBED_CPU_MATMUL", "bf16-avx512")],
            named: "bf16 linear layers and attention (AVX512-BF16 dot products, f32 sums)",
            bf16: true,
        });
    } else {
        println!("this CPU has no AVX512-BF16: the bf16 path cannot run here");
    }
    if gstradio::cpu::amx_bf16() {
        paths.push(MatmulPath {
            tag: "bf16-amx",
            env: &[("RADIOEMBED_CPU_MATMUL", "bf16-amx")],
            named: "bf16 linear layers and attention (AMX-BF16 tiles, f32 sums)",
            bf16: true,
        });
    } else {
        println!("this CPU (or its kernel) has no AMX-BF16: the AMX path cannot run here");
    }
    paths
}

/// `radio-embed info` and `forward` of `model` on its fixture cases through
/// `path`, each output checked against the official one.
fn check(model: &str, path: &MatmulPath) {
    let folder = fixture(model);
    let info = cli()
        .args(["info", "--model", folder.to_str().unwrap()])
        .envs(path.env.iter().copied())
        .output()
        .unwrap();
    let (stdout, stderr) = (text(&info.stdout), text(&info.stderr));
    assert!(info.status.success(), "{stderr}");
    let line = stdout
        .lines()
        .find(|l| l.starts_with("cpu matmul"))
        .unwrap();
    assert!(line.contains(path.named), "{:?}: {line}", path.env);

    let dir = TempDir::new(&format!("cpu-matmul-{model}-{}", path.tag));
    let output = dir.join("out.safetensors");
    let forward = cli()
        .args(["forward", "--model", folder.to_str().unwrap(), "--input"])
        .arg(folder.join("cases.safetensors"))
        .arg("--output")
        .arg(&output)
        .envs(path.env.iter().copied())
        .output()
        .unwrap();
    assert!(forward.status.success(), "{}", text(&forward.stderr));
    let got = candle_core::safetensors::load(&output, &Device::Cpu).unwrap();
    let expected = cases(model);
    let mut checked = 0;
    for (key, want) in &expected {
        let Some(case) = key.strip_suffix(".input") else {
            continue;
        };
        for out in ["summary", "features"] {
            let key = format!("{case}.{out}");
            let (got, want) = (&got[&key], &expected[&key]);
            let err = max_abs_diff(got, want);
            if path.bf16 {
                let scale = want
                    .abs()
                    .unwrap()
                    .max_all()
                    .unwrap()
                    .to_scalar::<f32>()
                    .unwrap();
                assert!(
                    err <= BF16_REL_TOL * scale,
                    "bf16 {model} {key}: off by {err} of {scale}"
                );
                // Per vector: each summary, each patch feature.
                let rows = |t: &candle_core::Tensor| {
                    let width = *t.dims().last().unwrap();
                    t.reshape((t.elem_count() / width, width)).unwrap()
                };
                let cosine = min_row_cosine(&rows(got), &rows(want));
                assert!(
                    cosine >= BF16_MIN_COSINE,
                    "bf16 {model} {key}: cosine {cosine}"
                );
            } else {
                assert!(
                    err <= OUTPUT_TOL,
                    "{:?} {model} {key}: off by {err}",
                    path.env
                );
            }
        }
        assert_eq!(
            want.dim(0).unwrap(),
            got[&format!("{case}.summary")].dim(0).unwrap()
        );
        checked += 1;
    }
    assert!(checked >= 2, "{model}: only {checked} cases");
}

#[test]
fn every_path_matches_the_so400m_fixture() {
    for path in paths() {
        check("tiny-so400m", &path);
    }
}

#[test]
fn every_path_matches_the_h_fixture() {
    for path in paths() {
        check("tiny-h", &path);
    }
}

#[test]
fn an_unknown_path_is_refused_with_the_choices() {
    let out = cli()
        .args(["info", "--model"])
        .arg(fixture("tiny-so400m"))
        .env("RADIOEMBED_CPU_MATMUL", "mkl")
        .output()
        .unwrap();
    assert!(!out.status.success());
    let stderr = text(&out.stderr);
    assert!(
        stderr.contains(
            r#"RADIOEMBED_CPU_MATMUL="mkl" is not a CPU matmul path; use gemm, openblas or bf16"#
        ),
        "{stderr}"
    );
}
