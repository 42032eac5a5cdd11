// SPDX-License-Identifier: MPL-2.0
//! model.safetensors: opening it, and the tensor names of its two key schemes.
//!
//! The legacy scheme (`radio_model.model.blocks.{i}.attn.qkv`, …) is what the
//! published repos and transformers' default `save_pretrained` write; the native one
//! (`encoder.layer.{i}.attention.q_proj`, …) is what transformers writes with
//! `save_original_format=False`. The scheme is read off the tensor names, never off
//! config.json: a native config can come with legacy names.

use std::collections::BTreeSet;
use std::path::Path;

use candle_core::safetensors::MmapedSafetensors;

use super::error::{ModelError, Result};

/// Tensor naming of a checkpoint.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum KeyScheme {
    /// `radio_model.*` names with a fused `attn.qkv`.
    Legacy,
    /// transformers' `embeddings.*` / `encoder.layer.*` names with split q/k/v.
    Native,
}

impl std::fmt::Display for KeyScheme {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Self::Legacy => "legacy (radio_model.*)",
            Self::Native => "native (embeddings.*, encoder.layer.*)",
        })
    }
}

/// Where each part of the model lives in a key scheme.
#[derive(Debug, Clone, Copy)]
pub(crate) struct KeyNames {
    pub summary_idxs: &'static str,
    pub input_conditioner: &'static str,
    pub patch_embedder: &'static str,
    pub pos_embed: &'static str,
    pub prefix_tokens: &'static str,
    pub blocks: &'static str,
    pub attention: &'static str,
    pub attention_out: &'static str,
    pub final_norm: &'static str,
    pub feature_normalizer: &'static str,
}

const LEGACY_NAMES: KeyNames = KeyNames {
    summary_idxs: "radio_model.summary_idxs",
    input_conditioner: "radio_model.input_conditioner",
    patch_embedder: "radio_model.model.patch_generator.embedder",
    pos_embed: "radio_model.model.patch_generator.pos_embed",
    prefix_tokens: "radio_model.model.patch_generator.cls_token.token",
    blocks: "radio_model.model.blocks",
    attention: "attn",
    attention_out: "proj",
    final_norm: "radio_model.model.norm",
    feature_normalizer: "radio_model.feature_normalizer",
};

const NATIVE_NAMES: KeyNames = KeyNames {
    summary_idxs: "summary_idxs",
    input_conditioner: "input_conditioner",
    patch_embedder: "embeddings.patch_projection",
    pos_embed: "embeddings.position_embedding",
    prefix_tokens: "embeddings.cls_register_token",
    blocks: "encoder.layer",
    attention: "attention",
    attention_out: "o_proj",
    final_norm: "norm",
    feature_normalizer: "feature_normalizer",
};

impl KeyScheme {
    pub(crate) fn names(self) -> &'static KeyNames {
        match self {
            Self::Legacy => &LEGACY_NAMES,
            Self::Native => &NATIVE_NAMES,
        }
    }
}

/// An opened, memory-mapped model.safetensors with its key scheme.
pub(crate) struct Checkpoint {
    pub tensors: MmapedSafetensors,
    pub scheme: KeyScheme,
}

impl Checkpoint {
    /// Maps the file and detects its key scheme.
    pub fn open(path: &Path) -> Result<Self> {
        if let Err(source) = std::fs::metadata(path) {
            return Err(ModelError::Io {
                path: path.to_path_buf(),
                source,
            });
        }
        // SAFETY: the file is mapped read-only; like every safetensors user we rely on
        // nobody truncating it while the model is being loaded.
        let tensors =
            unsafe { MmapedSafetensors::new(path) }.map_err(|e| ModelError::CorruptWeights {
                path: path.to_path_buf(),
                message: root_message(&e),
            })?;
        let scheme = if tensors
            .get(&format!("{}.weight", LEGACY_NAMES.patch_embedder))
            .is_ok()
        {
            KeyScheme::Legacy
        } else if tensors
            .get(&format!("{}.weight", NATIVE_NAMES.patch_embedder))
            .is_ok()
        {
            KeyScheme::Native
        } else {
            let mut names: Vec<String> = tensors.tensors().into_iter().map(|(n, _)| n).collect();
            names.sort();
            names.truncate(5);
            return Err(ModelError::UnknownLayout {
                path: path.to_path_buf(),
                message: format!(
                    "no `{}.weight` (legacy) nor `{}.weight` (native) tensor; first tensors: {}",
                    LEGACY_NAMES.patch_embedder,
                    NATIVE_NAMES.patch_embedder,
                    if names.is_empty() {
                        "none".into()
                    } else {
                        names.join(", ")
                    }
                ),
            });
        };
        Ok(Self { tensors, scheme })
    }

    /// Number of transformer blocks: the distinct `{blocks}.{i}.` indices.
    pub fn depth(&self) -> usize {
        let prefix = format!("{}.", self.scheme.names().blocks);
        self.tensors
            .tensors()
            .iter()
            .filter_map(|(name, _)| {
                let rest = name.strip_prefix(&prefix)?;
                rest.split('.').next()?.parse::<usize>().ok()
            })
            .collect::<BTreeSet<_>>()
            .len()
    }

    /// The stored shape of a tensor.
    pub fn shape(&self, key: &str) -> Result<Vec<usize>> {
        self.tensors
            .get(key)
            .map(|view| view.shape().to_vec())
            .map_err(|_| ModelError::MissingTensor {
                key: key.to_string(),
            })
    }

    /// Total number of elements of every tensor but the `summary_idxs` buffer.
    pub fn parameter_count(&self) -> usize {
        let idxs = self.scheme.names().summary_idxs;
        self.tensors
            .tensors()
            .iter()
            .filter(|(name, _)| name != idxs)
            .map(|(_, view)| view.shape().iter().product::<usize>())
            .sum()
    }
}

/// The weights as a VarBuilder backend that reports a missing tensor as
/// `CannotFindTensor` (the mmap backend reports a parser error instead).
pub(crate) struct WeightsBackend(pub MmapedSafetensors);

impl candle_nn::var_builder::SimpleBackend for WeightsBackend {
    fn get(
        &self,
        shape: candle_core::Shape,
        name: &str,
        hints: candle_nn::Init,
        dtype: candle_core::DType,
        dev: &candle_core::Device,
    ) -> candle_core::Result<candle_core::Tensor> {
        self.require(name)?;
        candle_nn::var_builder::SimpleBackend::get(&self.0, shape, name, hints, dtype, dev)
    }

    fn get_unchecked(
        &self,
        name: &str,
        dtype: candle_core::DType,
        dev: &candle_core::Device,
    ) -> candle_core::Result<candle_core::Tensor> {
        self.require(name)?;
        candle_nn::var_builder::SimpleBackend::get_unchecked(&self.0, name, dtype, dev)
    }

    fn contains_tensor(&self, name: &str) -> bool {
        self.0.get(name).is_ok()
    }
}

impl WeightsBackend {
    fn require(&self, name: &str) -> candle_core::Result<()> {
        if self.0.get(name).is_err() {
            return Err(candle_core::Error::CannotFindTensor {
                path: name.to_string(),
            });
        }
        Ok(())
    }
}

/// The innermost message of a candle error, without backtraces.
fn root_message(err: &candle_core::Error) -> String {
    use candle_core::Error as E;
    match err {
        E::WithBacktrace { inner, .. } | E::Context { inner, .. } | E::WithPath { inner, .. } => {
            root_message(inner)
        }
        other => other.to_string(),
    }
}
