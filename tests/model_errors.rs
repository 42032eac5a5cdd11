// SPDX-License-Identifier: MPL-2.0
//! Every way a model folder or an input can be wrong gives its own error.

mod common;

use std::collections::HashMap;
use std::path::Path;

use candle_core::{DType, Device, Tensor};
use common::{TempDir, fixture};
use gstradio::model::{ModelError, RadioModel};

/// A scratch copy of a fixture folder whose weights can be edited.
struct Scratch(TempDir);

impl Scratch {
    fn of(name: &str, tag: &str) -> Self {
        let dir = TempDir::new(&format!("err-{tag}"));
        for file in ["config.json", "model.safetensors"] {
            std::fs::copy(fixture(name).join(file), dir.join(file)).unwrap();
        }
        Self(dir)
    }

    /// Rewrites model.safetensors through `edit`.
    fn edit_weights(&self, edit: impl FnOnce(&mut HashMap<String, Tensor>)) {
        let path = self.0.join("model.safetensors");
        let mut tensors = candle_core::safetensors::load(&path, &Device::Cpu).unwrap();
        edit(&mut tensors);
        candle_core::safetensors::save(&tensors, &path).unwrap();
    }

    fn load(&self) -> ModelError {
        load(self.0.path())
    }
}

fn load(dir: &Path) -> ModelError {
    match RadioModel::load(dir, &Device::Cpu, DType::F32) {
        Ok(_) => panic!("{} loaded", dir.display()),
        Err(e) => e,
    }
}

#[test]
fn missing_files() {
    let err = load(Path::new("/no/such/folder"));
    assert!(matches!(err, ModelError::Io { .. }), "{err}");
    assert!(
        err.to_string()
            .starts_with("cannot read /no/such/folder/config.json"),
        "{err}"
    );

    let s = Scratch::of("tiny-so400m", "nofile");
    std::fs::remove_file(s.0.join("model.safetensors")).unwrap();
    let err = s.load();
    assert!(err.to_string().contains("model.safetensors"), "{err}");
}

#[test]
fn truncated_weights() {
    let s = Scratch::of("tiny-so400m", "trunc");
    let path = s.0.join("model.safetensors");
    let bytes = std::fs::read(&path).unwrap();
    std::fs::write(&path, &bytes[..bytes.len() - 1000]).unwrap();
    let err = s.load();
    assert!(matches!(err, ModelError::CorruptWeights { .. }), "{err}");
}

#[test]
fn missing_tensor_is_named() {
    let s = Scratch::of("tiny-so400m", "missing");
    s.edit_weights(|t| {
        t.remove("radio_model.model.blocks.1.mlp.fc2.bias");
    });
    let err = s.load();
    assert_eq!(
        err.to_string(),
        "checkpoint has no tensor `radio_model.model.blocks.1.mlp.fc2.bias`"
    );
}

#[test]
fn wrong_shape_names_expected_and_found() {
    let s = Scratch::of("tiny-h", "shape");
    s.edit_weights(|t| {
        let key = "radio_model.model.blocks.0.attn.proj.weight";
        t.insert(
            key.into(),
            Tensor::zeros((96, 95), DType::F32, &Device::Cpu).unwrap(),
        );
    });
    let err = s.load();
    assert_eq!(
        err.to_string(),
        "tensor `radio_model.model.blocks.0.attn.proj.weight` has shape [96, 95], expected [96, 96]"
    );
}

#[test]
fn unknown_layouts() {
    let s = Scratch::of("tiny-so400m", "layout");
    std::fs::write(
        s.0.join("config.json"),
        r#"{"architectures": ["BertModel"]}"#,
    )
    .unwrap();
    let err = s.load();
    assert!(matches!(err, ModelError::UnknownLayout { .. }), "{err}");

    let s = Scratch::of("tiny-so400m", "keys");
    s.edit_weights(|t| {
        let w = t
            .remove("radio_model.model.patch_generator.embedder.weight")
            .unwrap();
        t.insert("vision.patch_embed.weight".into(), w);
    });
    let err = s.load().to_string();
    assert!(
        err.contains("no `radio_model.model.patch_generator.embedder.weight`"),
        "{err}"
    );
}

#[test]
fn unsupported_resolutions_and_inputs() {
    let model = RadioModel::load(&fixture("tiny-so400m"), &Device::Cpu, DType::F32).unwrap();
    let input = |h, w| Tensor::zeros((1, 3, h, w), DType::F32, &Device::Cpu).unwrap();
    let err = model.forward(&input(64, 70)).unwrap_err().to_string();
    assert_eq!(
        err,
        "unsupported input resolution 64x70: both sides must be positive multiples of 16 \
         (nearest supported: (64, 64))"
    );
    let err = model.forward(&input(2064, 64)).unwrap_err().to_string();
    assert_eq!(
        err,
        "unsupported input resolution 2064x64: sides above 2048 pixels are not supported"
    );
    let gray = Tensor::zeros((1, 1, 64, 64), DType::F32, &Device::Cpu).unwrap();
    let err = model.forward(&gray).unwrap_err().to_string();
    assert_eq!(
        err,
        "invalid input tensor: expected 3 channels (RGB), got shape [1, 1, 64, 64]"
    );
}

#[test]
fn nearest_supported_resolution_rounds_half_to_even() {
    let model = RadioModel::load(&fixture("tiny-so400m"), &Device::Cpu, DType::F32).unwrap();
    let info = model.info();
    assert_eq!(info.nearest_supported_resolution(24, 40), (32, 32));
    assert_eq!(info.nearest_supported_resolution(56, 8), (64, 16));
    assert_eq!(info.nearest_supported_resolution(97, 131), (96, 128));
    assert_eq!(info.nearest_supported_resolution(5000, 100), (2048, 96));
}
