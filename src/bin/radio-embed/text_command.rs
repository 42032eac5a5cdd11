// SPDX-License-Identifier: MPL-2.0
//! `radio-embed embed-text`: text queries through the SigLIP text tower.

use std::collections::HashMap;
use std::path::PathBuf;

use anyhow::Context;
use candle_core::{DType, Device, Tensor};
use clap::Args;
use gstradio::model_store::locate_text_model;
use gstradio::text::{DEFAULT_TEXT_MODEL, TEXT_LENGTH, TextEncoder};

/// `radio-embed embed-text`.
#[derive(Debug, Args)]
pub struct EmbedText {
    /// SigLIP / SigLIP2 model folder or Hugging Face repo id (in the local cache).
    #[arg(long, default_value = DEFAULT_TEXT_MODEL)]
    text_model: String,
    /// Output safetensors: `text<i>.input_ids` (i64), `text<i>.embedding` and
    /// `text<i>.embedding_normalized` (f32) for the i-th text.
    #[arg(long)]
    output: PathBuf,
    /// The texts.
    #[arg(required = true)]
    texts: Vec<String>,
}

impl EmbedText {
    pub fn run(self) -> anyhow::Result<()> {
        let folder = locate_text_model(&self.text_model)?;
        let encoder = TextEncoder::load(&folder, &Device::Cpu, DType::F32)
            .with_context(|| format!("cannot load text model {}", self.text_model))?;
        let texts: Vec<&str> = self.texts.iter().map(String::as_str).collect();
        let embeddings = encoder.embed(&texts)?;
        let mut out: HashMap<String, Tensor> = HashMap::new();
        for (i, text) in embeddings.into_iter().enumerate() {
            println!(
                "text{i}: {:?} → {} values",
                text.canonical,
                text.embedding.len()
            );
            let ids: Vec<i64> = text.input_ids.iter().map(|&id| i64::from(id)).collect();
            out.insert(
                format!("text{i}.input_ids"),
                Tensor::from_vec(ids, TEXT_LENGTH, &Device::Cpu)?,
            );
            let width = text.embedding.len();
            out.insert(
                format!("text{i}.embedding"),
                Tensor::from_vec(text.embedding, width, &Device::Cpu)?,
            );
            out.insert(
                format!("text{i}.embedding_normalized"),
                Tensor::from_vec(text.normalized, width, &Device::Cpu)?,
            );
        }
        candle_core::safetensors::save(&out, &self.output)
            .with_context(|| format!("cannot write {}", self.output.display()))
    }
}
