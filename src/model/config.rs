// SPDX-License-Identifier: MPL-2.0
//! `config.json` of a C-RADIO checkpoint, in either layout the Hugging Face repos use.
//!
//! * Legacy "remote code" layout (`nvidia/C-RADIOv4-*` as published): hyper-parameters
//!   live in `args` (the training namespace), the timm model name in `args.model`.
//! * Native transformers layout (`model_type: "radio"`): flat fields such as
//!   `hidden_size` and `num_attention_heads`.
//!
//! Only what the weights cannot tell is taken from here: the head count, the
//! LayerNorm epsilon, the resolution step, whether a final norm or a feature
//! normalizer exists. Widths and depths come from the tensors themselves.

use std::collections::HashMap;
use std::path::Path;

use serde::Deserialize;
use serde_json::Value;

use super::error::{ModelError, Result};

/// Which of the two config.json layouts a file uses.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ConfigLayout {
    /// The remote-code `RADIOConfig` with an `args` namespace.
    Legacy,
    /// transformers' built-in `RadioConfig` (`model_type: "radio"`).
    Native,
}

impl std::fmt::Display for ConfigLayout {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Self::Legacy => "legacy (remote code)",
            Self::Native => "native (transformers RadioModel)",
        })
    }
}

/// The architecture facts a C-RADIO config.json declares.
#[derive(Debug, Clone, PartialEq)]
pub struct Config {
    /// Layout of the file.
    pub layout: ConfigLayout,
    /// Model name (`version` in legacy configs, e.g. `c-radio_v4-so400m`), if any.
    pub version: Option<String>,
    /// Side of a square patch in pixels.
    pub patch_size: usize,
    /// Attention heads per block.
    pub num_heads: usize,
    /// Epsilon of every LayerNorm.
    pub layer_norm_eps: f64,
    /// Width declared by the config, checked against the weights when present.
    pub hidden_size: Option<usize>,
    /// Depth declared by the config, checked against the weights when present.
    pub depth: Option<usize>,
    /// Whether a final LayerNorm follows the last block (`args.model_norm`).
    pub final_norm: bool,
    /// Whether a PHI-S feature normalizer is applied to the spatial features.
    pub feature_normalizer: bool,
    /// ViTDet window size, which multiplies the resolution step.
    pub vitdet_window_size: Option<usize>,
    /// Largest advertised input side in pixels.
    pub max_resolution: usize,
}

/// Heads of the timm ViTs RADIO names in `args.model`: timm's `vit_*_patch16_224`
/// definitions and RADIO's
/// [`extra_timm_models.py`](https://github.com/NVlabs/RADIO/blob/c0f37017930e9dda53f93424cf4bf39fc51f287e/radio/extra_timm_models.py).
fn timm_heads(model: &str) -> Option<usize> {
    Some(match model {
        "vit_so400m_patch16_224"
        | "vit_so400m_v2_patch16_224"
        | "vit_huge_patch16_224"
        | "vit_huge_patch16_224_mlpnorm"
        | "vit_large_patch16_224" => 16,
        "vit_base_patch16_224" => 12,
        "vit_giant_patch16_224" => 24,
        _ => return None,
    })
}

/// The fields of a legacy config.json this crate reads.
#[derive(Debug, Deserialize)]
struct LegacyFile {
    args: LegacyArgs,
    #[serde(default)]
    patch_size: Option<usize>,
    #[serde(default)]
    feature_normalizer_config: Option<Value>,
    #[serde(default)]
    vitdet_window_size: Option<usize>,
    #[serde(default)]
    version: Option<String>,
    #[serde(default)]
    max_resolution: Option<usize>,
}

#[derive(Debug, Deserialize)]
struct LegacyArgs {
    model: String,
    #[serde(default)]
    model_kwargs: Option<HashMap<String, Value>>,
    #[serde(default)]
    model_norm: Option<bool>,
}

/// The fields of a native config.json this crate reads.
#[derive(Debug, Deserialize)]
struct NativeFile {
    hidden_size: usize,
    num_hidden_layers: usize,
    num_attention_heads: usize,
    #[serde(default = "default_eps")]
    layer_norm_eps: f64,
    #[serde(default = "default_patch")]
    patch_size: usize,
    #[serde(default)]
    use_swiglu_ffn: bool,
    #[serde(default)]
    video_temporal_patch_size: Option<usize>,
    #[serde(default)]
    hidden_act: Option<String>,
}

fn default_eps() -> f64 {
    1e-6
}

fn default_patch() -> usize {
    16
}

/// Largest input side the released models advertise.
const DEFAULT_MAX_RESOLUTION: usize = 2048;

impl Config {
    /// Reads and interprets a config.json file.
    pub fn from_file(path: &Path) -> Result<Self> {
        let text = std::fs::read_to_string(path).map_err(|source| ModelError::Io {
            path: path.to_path_buf(),
            source,
        })?;
        Self::from_json(&text).map_err(|message| match message {
            ConfigProblem::Invalid(message) => ModelError::Config {
                path: path.to_path_buf(),
                message,
            },
            ConfigProblem::Unknown(message) => ModelError::UnknownLayout {
                path: path.to_path_buf(),
                message,
            },
        })
    }

    fn from_json(text: &str) -> std::result::Result<Self, ConfigProblem> {
        let value: Value =
            serde_json::from_str(text).map_err(|e| ConfigProblem::Invalid(e.to_string()))?;
        let object = value
            .as_object()
            .ok_or_else(|| ConfigProblem::Invalid("top level is not a JSON object".into()))?;
        if object.contains_key("args") {
            let file: LegacyFile =
                serde_json::from_value(value).map_err(|e| ConfigProblem::Invalid(e.to_string()))?;
            Self::from_legacy(file)
        } else if object.get("model_type").and_then(Value::as_str) == Some("radio") {
            let file: NativeFile =
                serde_json::from_value(value).map_err(|e| ConfigProblem::Invalid(e.to_string()))?;
            Self::from_native(file)
        } else {
            let model_type = object
                .get("model_type")
                .map(|v| v.to_string())
                .unwrap_or_else(|| "none".into());
            Err(ConfigProblem::Unknown(format!(
                "config.json has neither `args` (RADIO remote-code layout) nor \
                 `model_type: \"radio\"` (transformers layout); model_type is {model_type}"
            )))
        }
    }

    fn from_legacy(file: LegacyFile) -> std::result::Result<Self, ConfigProblem> {
        let kwargs = file.args.model_kwargs.unwrap_or_default();
        let kwarg = |name: &str| kwargs.get(name).and_then(Value::as_u64).map(|v| v as usize);
        let num_heads = kwarg("num_heads")
            .or_else(|| timm_heads(&file.args.model))
            .ok_or_else(|| {
                ConfigProblem::Unknown(format!(
                    "args.model `{}` is not a ViT this crate knows and args.model_kwargs \
                     has no num_heads",
                    file.args.model
                ))
            })?;
        Ok(Self {
            layout: ConfigLayout::Legacy,
            version: file.version,
            patch_size: file.patch_size.unwrap_or(16),
            num_heads,
            layer_norm_eps: 1e-6,
            hidden_size: kwarg("embed_dim"),
            depth: kwarg("depth"),
            final_norm: file.args.model_norm.unwrap_or(false),
            feature_normalizer: file.feature_normalizer_config.is_some_and(|v| !v.is_null()),
            vitdet_window_size: file.vitdet_window_size,
            max_resolution: file.max_resolution.unwrap_or(DEFAULT_MAX_RESOLUTION),
        })
    }

    fn from_native(file: NativeFile) -> std::result::Result<Self, ConfigProblem> {
        if file.use_swiglu_ffn {
            return Err(ConfigProblem::Unknown(
                "use_swiglu_ffn is true: only the GELU MLP of C-RADIO is supported".into(),
            ));
        }
        if file.video_temporal_patch_size.is_some() {
            return Err(ConfigProblem::Unknown(
                "video_temporal_patch_size is set: video patch embeddings are not supported".into(),
            ));
        }
        if let Some(act) = file.hidden_act.filter(|a| a != "gelu") {
            return Err(ConfigProblem::Unknown(format!(
                "hidden_act `{act}` is not supported (C-RADIO uses exact `gelu`)"
            )));
        }
        Ok(Self {
            layout: ConfigLayout::Native,
            version: None,
            patch_size: file.patch_size,
            num_heads: file.num_attention_heads,
            layer_norm_eps: file.layer_norm_eps,
            hidden_size: Some(file.hidden_size),
            depth: Some(file.num_hidden_layers),
            final_norm: false,
            feature_normalizer: false,
            vitdet_window_size: None,
            max_resolution: DEFAULT_MAX_RESOLUTION,
        })
    }

    /// Input sides must be multiples of this many pixels.
    pub fn resolution_step(&self) -> usize {
        self.patch_size * self.vitdet_window_size.unwrap_or(1)
    }
}

enum ConfigProblem {
    Invalid(String),
    Unknown(String),
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(text: &str) -> std::result::Result<Config, String> {
        Config::from_json(text).map_err(|p| match p {
            ConfigProblem::Invalid(m) => format!("invalid: {m}"),
            ConfigProblem::Unknown(m) => format!("unknown: {m}"),
        })
    }

    #[test]
    fn legacy_heads_come_from_timm_name() {
        let cfg =
            parse(r#"{"args": {"model": "vit_huge_patch16_224"}, "patch_size": 16}"#).unwrap();
        assert_eq!(cfg.layout, ConfigLayout::Legacy);
        assert_eq!(cfg.num_heads, 16);
        assert_eq!(cfg.hidden_size, None);
        assert_eq!(cfg.resolution_step(), 16);
    }

    #[test]
    fn legacy_unknown_model_is_refused() {
        let err = parse(r#"{"args": {"model": "resnet50"}}"#).unwrap_err();
        assert!(err.contains("unknown: args.model `resnet50`"), "{err}");
    }

    #[test]
    fn vitdet_window_multiplies_step() {
        let cfg =
            parse(r#"{"args": {"model": "vit_so400m_patch16_224"}, "vitdet_window_size": 8}"#)
                .unwrap();
        assert_eq!(cfg.resolution_step(), 128);
    }

    #[test]
    fn foreign_config_is_unknown_layout() {
        let err = parse(r#"{"model_type": "bert", "hidden_size": 8}"#).unwrap_err();
        assert!(
            err.starts_with("unknown:") && err.contains("\"bert\""),
            "{err}"
        );
    }

    #[test]
    fn native_swiglu_is_refused() {
        let err = parse(
            r#"{"model_type": "radio", "hidden_size": 8, "num_hidden_layers": 1,
                "num_attention_heads": 2, "use_swiglu_ffn": true}"#,
        )
        .unwrap_err();
        assert!(err.contains("use_swiglu_ffn"), "{err}");
    }
}
