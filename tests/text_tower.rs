// SPDX-License-Identifier: MPL-2.0
//! The SigLIP text path (canonicalise, tokenize to 64 ids, text tower, pooled
//! output) against what the official NVlabs/RADIO code computes for the tiny
//! stand-in in `tests/fixtures/textsearch/siglip-text` (its README says how).

mod common;

use candle_core::{DType, Device};
use common::{TempDir, cases, fixture, max_abs_diff_slices, run_cli, text};
use gstradio::text::{TEXT_LENGTH, TextEncoder, canonicalize};

/// max abs error allowed on the text embeddings in f32.
const OUTPUT_TOL: f32 = 1e-4;

/// The fixture texts with their official canonical form and token ids.
fn fixture_texts() -> Vec<(String, String, String, Vec<u32>)> {
    let json: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(fixture("textsearch/cases.json")).unwrap())
            .unwrap();
    json["texts"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| {
            let ids = t["input_ids"].as_array().unwrap();
            (
                t["name"].as_str().unwrap().to_string(),
                t["text"].as_str().unwrap().to_string(),
                t["canonical"].as_str().unwrap().to_string(),
                ids.iter().map(|v| v.as_u64().unwrap() as u32).collect(),
            )
        })
        .collect()
}

fn encoder() -> TextEncoder {
    TextEncoder::load(&fixture("textsearch/siglip-text"), &Device::Cpu, DType::F32).unwrap()
}

#[test]
fn canonical_text_and_token_ids_are_the_official_ones() {
    let encoder = encoder();
    let texts = fixture_texts();
    assert!(texts.len() >= 5, "too few fixture texts");
    for (name, text, canonical, ids) in texts {
        assert_eq!(canonicalize(&text), canonical, "{name}");
        let got = encoder.tokenize(&text).unwrap();
        assert_eq!(got.len(), TEXT_LENGTH, "{name}");
        assert_eq!(got, ids, "{name}: {canonical:?}");
    }
}

#[test]
fn a_truncated_text_keeps_its_eos() {
    let (_, text, _, ids) = fixture_texts()
        .into_iter()
        .find(|t| t.0 == "text4")
        .unwrap();
    assert!(!ids.contains(&0), "text4 fills all 64 positions");
    let got = encoder().tokenize(&text).unwrap();
    assert_eq!(got.last(), Some(&1), "the last id is <eos>");
    assert_eq!(got, ids);
}

#[test]
fn embeddings_match_the_official_ones() {
    let reference = cases("textsearch");
    let texts = fixture_texts();
    let inputs: Vec<&str> = texts.iter().map(|t| t.1.as_str()).collect();
    let embedded = encoder().embed(&inputs).unwrap();
    assert_eq!(embedded.len(), texts.len());
    for ((name, ..), got) in texts.iter().zip(&embedded) {
        for (key, values) in [
            ("embedding", &got.embedding),
            ("embedding_normalized", &got.normalized),
        ] {
            let want = reference[&format!("{name}.{key}")]
                .to_vec1::<f32>()
                .unwrap();
            assert_eq!(values.len(), 48, "{name}.{key}");
            let err = max_abs_diff_slices(values, &want);
            assert!(err <= OUTPUT_TOL, "{name}.{key} off by {err}");
        }
    }
}

#[test]
fn cli_embed_text_writes_ids_and_embeddings() {
    let dir = TempDir::new("embed-text");
    let output = dir.join("text.safetensors");
    let texts = fixture_texts();
    let mut args = vec![
        "embed-text".to_string(),
        "--text-model".into(),
        fixture("textsearch/siglip-text").display().to_string(),
        "--output".into(),
        output.display().to_string(),
    ];
    args.extend(texts.iter().map(|t| t.1.clone()));
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let run = run_cli(&args);
    assert!(run.status.success(), "{}", text(&run.stderr));
    let written = candle_core::safetensors::load(&output, &Device::Cpu).unwrap();
    let reference = cases("textsearch");
    for (name, _, _, ids) in &texts {
        let got = written[&format!("{name}.input_ids")]
            .to_vec1::<i64>()
            .unwrap();
        let want: Vec<i64> = ids.iter().map(|&i| i64::from(i)).collect();
        assert_eq!(got, want, "{name}.input_ids");
        let key = format!("{name}.embedding");
        let err = max_abs_diff_slices(
            &written[&key].to_vec1::<f32>().unwrap(),
            &reference[&key].to_vec1::<f32>().unwrap(),
        );
        assert!(err <= OUTPUT_TOL, "{key} off by {err}");
    }
}

#[test]
fn a_missing_text_model_says_how_to_get_it() {
    let dir = TempDir::new("embed-text-missing");
    let run = common::cli()
        .env("HF_HUB_CACHE", dir.path())
        .args(["embed-text", "--output", "/dev/null", "a red car"])
        .output()
        .unwrap();
    assert!(!run.status.success());
    let err = text(&run.stderr);
    assert!(
        err.contains("text model `google/siglip2-giant-opt-patch16-384` not found"),
        "{err}"
    );
    assert!(
        err.contains("hf download google/siglip2-giant-opt-patch16-384"),
        "{err}"
    );
}
