// SPDX-License-Identifier: MPL-2.0
//! Text queries: a typed text turned into a vector in the space of the `siglip2-g`
//! adaptor, so frames can be searched by what they show.
//!
//! The path is RADIO's `SigLIP2Adaptor.encode_text`
//! ([`radio/siglip2_adaptor.py`](https://github.com/NVlabs/RADIO/blob/c0f37017930e9dda53f93424cf4bf39fc51f287e/radio/siglip2_adaptor.py)):
//! canonicalise, tokenize to exactly 64 ids (truncated with the `<eos>` kept, padded
//! on the right), run SigLIP's text tower on the ids alone (no attention mask), and
//! take its pooled output. Nothing here knows about GStreamer.

mod canonical;
mod siglip;

use std::path::{Path, PathBuf};

use crate::model::CpuMatmul;
use candle_core::{DType, Device, Tensor};
use candle_nn::VarBuilder;
use tokenizers::{PaddingParams, PaddingStrategy, Tokenizer, TruncationParams};

pub use canonical::canonicalize;
pub use siglip::{TextConfig, TextTower, l2_normalize};

/// Token ids per text, as RADIO's tokenizer call asks (`max_length=64`).
pub const TEXT_LENGTH: usize = 64;

/// The adaptor whose space the text tower embeds into.
pub const TEXT_ADAPTOR: &str = "siglip2-g";

/// The default text model: the SigLIP2 model C-RADIOv4 was distilled from.
pub const DEFAULT_TEXT_MODEL: &str = "google/siglip2-giant-opt-patch16-384";

/// Why a text model cannot be loaded or run.
#[derive(Debug, thiserror::Error)]
pub enum TextError {
    /// A file of the text model folder is missing or unreadable.
    #[error("cannot read {path}: {message}")]
    Read {
        /// The file.
        path: PathBuf,
        /// What went wrong.
        message: String,
    },
    /// config.json describes no SigLIP text tower.
    #[error("{path} is not a SigLIP config: {message}")]
    Config {
        /// The config file.
        path: PathBuf,
        /// What is wrong with it.
        message: String,
    },
    /// Tokenizing failed.
    #[error("cannot tokenize: {0}")]
    Tokenize(String),
    /// The environment asks for a CPU matmul path this build has not.
    #[error(transparent)]
    CpuMatmul(#[from] crate::model::CpuMatmulError),
    /// Building or running the tower failed (a missing tensor, a shape, memory).
    #[error("text tower: {0}")]
    Tensor(#[from] candle_core::Error),
}

/// One text's embedding and what it was computed from.
#[derive(Debug, Clone)]
pub struct TextEmbedding {
    /// The text after [`canonicalize`].
    pub canonical: String,
    /// The [`TEXT_LENGTH`] token ids the tower ran on.
    pub input_ids: Vec<u32>,
    /// The pooled output (`projection_size` values).
    pub embedding: Vec<f32>,
    /// `embedding` divided by its L2 norm: what is compared by cosine.
    pub normalized: Vec<f32>,
}

/// A SigLIP tokenizer and text tower, loaded from a model folder.
pub struct TextEncoder {
    tokenizer: Tokenizer,
    tower: TextTower,
    config: TextConfig,
    device: Device,
}

impl TextEncoder {
    /// Loads `tokenizer.json`, `config.json` and the `text_model.*` tensors of a
    /// SigLIP / SigLIP2 folder (`model.safetensors`, or the shards a
    /// `model.safetensors.index.json` lists). The vision tower's tensors are never
    /// read: the weights are memory-mapped and only the text tower's are touched.
    pub fn load(dir: &Path, device: &Device, dtype: DType) -> Result<Self, TextError> {
        if device.is_cpu() {
            CpuMatmul::current()?;
        }
        let config = read_config(&dir.join("config.json"))?;
        let tokenizer_path = dir.join("tokenizer.json");
        let mut tokenizer = Tokenizer::from_file(&tokenizer_path).map_err(|e| TextError::Read {
            path: tokenizer_path.clone(),
            message: e.to_string(),
        })?;
        let pad = ["<pad>", "[PAD]"]
            .into_iter()
            .find_map(|token| Some((token, tokenizer.token_to_id(token)?)))
            .ok_or_else(|| TextError::Read {
                path: tokenizer_path.clone(),
                message: "the tokenizer has no <pad> token".into(),
            })?;
        tokenizer
            .with_truncation(Some(TruncationParams {
                max_length: TEXT_LENGTH,
                ..Default::default()
            }))
            .map_err(|e| TextError::Tokenize(e.to_string()))?;
        tokenizer.with_padding(Some(PaddingParams {
            strategy: PaddingStrategy::Fixed(TEXT_LENGTH),
            pad_id: pad.1,
            pad_token: pad.0.to_string(),
            ..Default::default()
        }));
        if config.max_position_embeddings < TEXT_LENGTH {
            return Err(TextError::Config {
                path: dir.join("config.json"),
                message: format!(
                    "max_position_embeddings {} is below the {TEXT_LENGTH} tokens of a query",
                    config.max_position_embeddings
                ),
            });
        }
        let paths = weight_files(dir)?;
        // SAFETY: the files are mapped read-only; like every safetensors user we rely
        // on nobody truncating them while the tower is being loaded.
        let vb = unsafe { VarBuilder::from_mmaped_safetensors(&paths, dtype, device) }?;
        let tower = TextTower::new(vb.pp("text_model"), &config)?;
        Ok(Self {
            tokenizer,
            tower,
            config,
            device: device.clone(),
        })
    }

    /// The tower's configuration.
    pub fn config(&self) -> &TextConfig {
        &self.config
    }

    /// The [`TEXT_LENGTH`] token ids of `text` after [`canonicalize`].
    pub fn tokenize(&self, text: &str) -> Result<Vec<u32>, TextError> {
        self.tokenize_canonical(&canonicalize(text))
    }

    /// The token ids of an already canonical text.
    fn tokenize_canonical(&self, canonical: &str) -> Result<Vec<u32>, TextError> {
        let encoding = self
            .tokenizer
            .encode(canonical, true)
            .map_err(|e| TextError::Tokenize(e.to_string()))?;
        Ok(encoding.get_ids().to_vec())
    }

    /// Embeds `texts` in one batch.
    pub fn embed(&self, texts: &[&str]) -> Result<Vec<TextEmbedding>, TextError> {
        if texts.is_empty() {
            return Ok(Vec::new());
        }
        let canonical: Vec<String> = texts.iter().map(|t| canonicalize(t)).collect();
        let ids = canonical
            .iter()
            .map(|t| self.tokenize_canonical(t))
            .collect::<Result<Vec<_>, _>>()?;
        let flat: Vec<u32> = ids.iter().flatten().copied().collect();
        let input = Tensor::from_vec(flat, (texts.len(), TEXT_LENGTH), &self.device)?;
        let pooled = self.tower.forward(&input)?;
        let normalized = l2_normalize(&pooled)?.to_vec2::<f32>()?;
        let pooled = pooled.to_vec2::<f32>()?;
        Ok(canonical
            .into_iter()
            .zip(ids)
            .zip(pooled.into_iter().zip(normalized))
            .map(
                |((canonical, input_ids), (embedding, normalized))| TextEmbedding {
                    canonical,
                    input_ids,
                    embedding,
                    normalized,
                },
            )
            .collect())
    }
}

/// The text config of a SigLIP config.json: its `text_config`, or the file itself
/// for a SiglipTextModel.
fn read_config(path: &Path) -> Result<TextConfig, TextError> {
    let text = std::fs::read_to_string(path).map_err(|e| TextError::Read {
        path: path.to_path_buf(),
        message: e.to_string(),
    })?;
    let config_error = |message: String| TextError::Config {
        path: path.to_path_buf(),
        message,
    };
    let mut json: serde_json::Value =
        serde_json::from_str(&text).map_err(|e| config_error(e.to_string()))?;
    let section = if let Some(section) = json.get_mut("text_config") {
        section.take()
    } else if json["model_type"] == "siglip_text_model" {
        json
    } else {
        return Err(config_error("it has no `text_config`".into()));
    };
    serde_json::from_value(section).map_err(|e| config_error(e.to_string()))
}

/// `model.safetensors`, or every shard `model.safetensors.index.json` names.
fn weight_files(dir: &Path) -> Result<Vec<PathBuf>, TextError> {
    let single = dir.join("model.safetensors");
    if single.is_file() {
        return Ok(vec![single]);
    }
    let index = dir.join("model.safetensors.index.json");
    let read_error = |message: String| TextError::Read {
        path: index.clone(),
        message,
    };
    let text = std::fs::read_to_string(&index)
        .map_err(|e| read_error(format!("{e} (and there is no model.safetensors)")))?;
    let json: serde_json::Value =
        serde_json::from_str(&text).map_err(|e| read_error(e.to_string()))?;
    let map = json["weight_map"]
        .as_object()
        .ok_or_else(|| read_error("no `weight_map`".into()))?;
    // Only the shards that hold text tower tensors.
    let mut files: Vec<PathBuf> = map
        .iter()
        .filter(|(key, _)| key.starts_with("text_model."))
        .filter_map(|(_, file)| file.as_str().map(|f| dir.join(f)))
        .collect();
    files.sort();
    files.dedup();
    Ok(files)
}
