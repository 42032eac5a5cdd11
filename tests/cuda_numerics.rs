// SPDX-License-Identifier: MPL-2.0
//! The model on CUDA (feature `cuda`) against the official outputs of every
//! fixture: f32 within 1e-4, as on the CPU; bf16 and f16 within a cosine of
//! 0.999 for each summary and 0.995 for every patch feature. Where no GPU can be
//! used, each test prints why it was skipped.

#![cfg(feature = "cuda")]

mod common;

use candle_core::{DType, Device, Tensor};
use common::{case_ids, cases, fixture, max_abs_diff, min_row_cosine};
use gstradio::model::{RadioModel, parse_device};

/// (checkpoint folder, the fixture whose cases it must reproduce).
const FIXTURES: [(&str, &str); 7] = [
    ("tiny-so400m", "tiny-so400m"),
    ("tiny-so400m-native", "tiny-so400m"),
    ("tiny-so400m-native-legacykeys", "tiny-so400m"),
    ("tiny-h", "tiny-h"),
    ("tiny-h-native", "tiny-h"),
    ("tiny-h-native-legacykeys", "tiny-h"),
    ("optional-fnorm-so400m", "optional-fnorm-so400m"),
];

/// The first GPU, or `None` after printing why there is none.
fn gpu(test: &str) -> Option<Device> {
    match parse_device("cuda:0") {
        Ok(device) => Some(device),
        Err(err) => {
            eprintln!("SKIPPED {test}: no usable GPU ({err})");
            None
        }
    }
}

/// (B·T, D) rows of a (B, T, D) feature tensor.
fn patches(features: &Tensor) -> Tensor {
    let (b, t, d) = features.dims3().unwrap();
    features.reshape((b * t, d)).unwrap()
}

fn check_every_fixture(test: &str, dtype: DType) {
    let Some(device) = gpu(test) else { return };
    for (folder, cases_of) in FIXTURES {
        let model = RadioModel::load(&fixture(folder), &device, dtype).unwrap();
        let cases = cases(cases_of);
        for id in case_ids(&cases) {
            let input = cases[&format!("{id}.input")].to_device(&device).unwrap();
            let out = model.forward(&input).unwrap();
            let summary = out.summary.to_device(&Device::Cpu).unwrap();
            let features = out.features.to_device(&Device::Cpu).unwrap();
            let (want_summary, want_features) = (
                &cases[&format!("{id}.summary")],
                &cases[&format!("{id}.features")],
            );
            if dtype == DType::F32 {
                let s = max_abs_diff(&summary, want_summary);
                let f = max_abs_diff(&features, want_features);
                assert!(s <= 1e-4, "{folder} {id} f32: summary off by {s}");
                assert!(f <= 1e-4, "{folder} {id} f32: features off by {f}");
            } else {
                let s = min_row_cosine(&summary, want_summary);
                let f = min_row_cosine(&patches(&features), &patches(want_features));
                assert!(s >= 0.999, "{folder} {id} {dtype:?}: summary cosine {s}");
                assert!(f >= 0.995, "{folder} {id} {dtype:?}: patch cosine {f}");
            }
        }
    }
}

#[test]
fn every_fixture_on_cuda_in_f32() {
    check_every_fixture("every_fixture_on_cuda_in_f32", DType::F32);
}

#[test]
fn every_fixture_on_cuda_in_bf16() {
    check_every_fixture("every_fixture_on_cuda_in_bf16", DType::BF16);
}

#[test]
fn every_fixture_on_cuda_in_f16() {
    check_every_fixture("every_fixture_on_cuda_in_f16", DType::F16);
}
