// SPDX-License-Identifier: MPL-2.0
//! The candle port against the official PyTorch outputs of every fixture model, in
//! every checkpoint layout. Tolerances are those of `tests/fixtures/README.md`.

mod common;

use candle_core::{DType, Device};
use common::{case_ids, cases, fixture, max_abs_diff, min_row_cosine};
use gstradio::model::{ConfigLayout, KeyScheme, RadioModel};

/// max abs error allowed on `summary` and `features` in f32.
const OUTPUT_TOL: f32 = 1e-4;
/// max abs error allowed on the interpolated position embedding.
const POS_EMBED_TOL: f32 = 1e-5;

fn check_model(folder: &str, cases_of: &str) {
    let model = RadioModel::load(&fixture(folder), &Device::Cpu, DType::F32).unwrap();
    let cases = cases(cases_of);
    let ids = case_ids(&cases);
    assert!(ids.len() >= 2, "{cases_of} has too few cases");
    for id in ids {
        let input = &cases[&format!("{id}.input")];
        let out = model.forward(input).unwrap();
        let summary = max_abs_diff(&out.summary, &cases[&format!("{id}.summary")]);
        let features = max_abs_diff(&out.features, &cases[&format!("{id}.features")]);
        assert!(
            summary <= OUTPUT_TOL,
            "{folder} {id}: summary off by {summary}"
        );
        assert!(
            features <= OUTPUT_TOL,
            "{folder} {id}: features off by {features}"
        );

        let (_, _, h, w) = input.dims4().unwrap();
        let (gh, gw) = model.info().grid(h, w);
        assert_eq!(out.grid, (gh, gw));
        let pos = model.position_embedding(gh, gw).unwrap();
        let pos_err = max_abs_diff(&pos, &cases[&format!("{id}.pos_embed")]);
        assert!(
            pos_err <= POS_EMBED_TOL,
            "{folder} {id}: pos_embed off by {pos_err}"
        );
    }
}

#[test]
fn tiny_so400m_legacy() {
    check_model("tiny-so400m", "tiny-so400m");
}

#[test]
fn tiny_so400m_native() {
    check_model("tiny-so400m-native", "tiny-so400m");
}

#[test]
fn tiny_so400m_native_config_legacy_keys() {
    check_model("tiny-so400m-native-legacykeys", "tiny-so400m");
}

#[test]
fn tiny_h_legacy() {
    check_model("tiny-h", "tiny-h");
}

#[test]
fn tiny_h_native() {
    check_model("tiny-h-native", "tiny-h");
}

#[test]
fn tiny_h_native_config_legacy_keys() {
    check_model("tiny-h-native-legacykeys", "tiny-h");
}

#[test]
fn feature_normalizer() {
    check_model("optional-fnorm-so400m", "optional-fnorm-so400m");
}

#[test]
fn info_derived_from_weights_and_config() {
    let legacy = RadioModel::load(&fixture("tiny-so400m"), &Device::Cpu, DType::F32).unwrap();
    let info = legacy.info();
    assert_eq!(info.config.layout, ConfigLayout::Legacy);
    assert_eq!(info.dims.key_scheme, KeyScheme::Legacy);
    assert_eq!(
        (
            info.dims.width,
            info.dims.depth,
            info.config.num_heads,
            info.dims.mlp_hidden
        ),
        (64, 2, 4, 239)
    );
    assert_eq!((info.dims.pos_grid, info.dims.num_prefix_tokens), (8, 10));
    assert_eq!(info.dims.summary_idxs, vec![0, 1]);
    assert_eq!(info.summary_dim(), 128);
    assert_eq!(
        info.dims.norm_mean,
        [0.481_454_67, 0.457_827_5, 0.408_210_73]
    );
    assert_eq!(info.config.version.as_deref(), Some("c-radio_v4-so400m"));
    // 64×64 px: 16 patches of 16×16×3 and 10 prefix tokens, so T = 26; per block
    // 2·T·(4·64² + 2·64·239) for the projections and 4·T²·64 for attention;
    // 2·16·768·64 for the patch embedding.
    let expected =
        2 * 16 * 768 * 64 + 2 * (2 * 26 * (4 * 64 * 64 + 2 * 64 * 239) + 4 * 26 * 26 * 64);
    assert_eq!(expected, 6_804_480);
    assert_eq!(info.forward_flops(64, 64), expected as f64);

    let native = RadioModel::load(&fixture("tiny-h-native"), &Device::Cpu, DType::F32).unwrap();
    let info = native.info();
    assert_eq!(info.config.layout, ConfigLayout::Native);
    assert_eq!(info.dims.key_scheme, KeyScheme::Native);
    assert_eq!(
        (info.dims.width, info.dims.depth, info.dims.mlp_hidden),
        (96, 3, 384)
    );
    assert_eq!(info.dims.pos_grid, 7);
}

#[test]
fn conditioner_fusion_matches_plain_forward() {
    let model = RadioModel::load(&fixture("tiny-h"), &Device::Cpu, DType::F32).unwrap();
    let cases = cases("tiny-h");
    let conditioned = &cases["case1.conditioned"];
    let out = model.forward_normalized(conditioned).unwrap();
    let err = max_abs_diff(&out.summary, &cases["case1.summary"]);
    assert!(err <= OUTPUT_TOL, "summary off by {err}");
}

/// Half precision on CPU: the same numbers within a cosine similarity of 0.999 for
/// the summary and 0.995 for every patch feature.
#[test]
fn half_precision_tracks_f32() {
    let cases = cases("tiny-so400m");
    let input = &cases["case2.input"];
    let reference = RadioModel::load(&fixture("tiny-so400m"), &Device::Cpu, DType::F32)
        .unwrap()
        .forward(input)
        .unwrap();
    for dtype in [DType::BF16, DType::F16] {
        let model = RadioModel::load(&fixture("tiny-so400m"), &Device::Cpu, dtype).unwrap();
        let out = model.forward(input).unwrap();
        assert_eq!(out.summary.dtype(), DType::F32);
        let summary = min_row_cosine(&out.summary, &reference.summary);
        let (b, t, d) = out.features.dims3().unwrap();
        let features = min_row_cosine(
            &out.features.reshape((b * t, d)).unwrap(),
            &reference.features.reshape((b * t, d)).unwrap(),
        );
        assert!(summary >= 0.999, "{dtype:?}: summary cosine {summary}");
        assert!(features >= 0.995, "{dtype:?}: features cosine {features}");
    }
}
