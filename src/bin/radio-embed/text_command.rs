// SPDX-License-Identifier: MPL-2.0
//! `radio-embed embed-text`: text queries through the SigLIP text tower.

use std::collections::HashMap;
use std::path::PathBuf;

use anyhow::Context;
use candle_core::{DType, Device, Tensor};
use clap::Args;
use gstradio::text::{DEFAULT_TEXT_MODEL, TEXT_LENGTH, TextEncoder};

use crate::args::resolve_text_model;

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
    /// Also time N more embeddings of the texts (after one warm-up) and print the
    /// median ms and the resident memory after loading.
    #[arg(long, value_name = "N")]
    time: Option<usize>,
    /// CPU threads (default: all cores).
    #[arg(long)]
    threads: Option<usize>,
}

impl EmbedText {
    pub fn run(self) -> anyhow::Result<()> {
        if let Some(n) = self.threads {
            set_threads(n)?;
        }
        let folder = resolve_text_model(&self.text_model)?;
        let encoder = TextEncoder::load(&folder, &Device::Cpu, DType::F32)
            .with_context(|| format!("cannot load text model {}", self.text_model))?;
        let texts: Vec<&str> = self.texts.iter().map(String::as_str).collect();
        let embeddings = encoder.embed(&texts)?;
        if let Some(runs) = self.time {
            let (median, rss) = time_embeddings(&encoder, &texts, runs)?;
            println!(
                "text tower: {} texts, median {median:.1} ms per embedding batch ({} threads); \
                 resident after load {:.0} MiB",
                texts.len(),
                self.threads
                    .map_or_else(|| "all".to_string(), |n| n.to_string()),
                rss as f64 / 1048576.0
            );
        }
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

/// Sizes candle's CPU thread pools.
fn set_threads(n: usize) -> anyhow::Result<()> {
    // SAFETY: set before any thread pool or other thread exists.
    unsafe { std::env::set_var("RAYON_NUM_THREADS", n.to_string()) };
    rayon::ThreadPoolBuilder::new()
        .num_threads(n)
        .build_global()?;
    Ok(())
}

/// The median ms of `runs` embeddings of `texts`, and the resident memory.
fn time_embeddings(
    encoder: &TextEncoder,
    texts: &[&str],
    runs: usize,
) -> anyhow::Result<(f64, u64)> {
    let mut times = (0..runs.max(1))
        .map(|_| {
            let started = std::time::Instant::now();
            encoder.embed(texts)?;
            Ok(started.elapsed().as_secs_f64() * 1000.0)
        })
        .collect::<anyhow::Result<Vec<f64>>>()?;
    times.sort_by(f64::total_cmp);
    Ok((
        times[times.len() / 2],
        crate::model_commands::resident_bytes().unwrap_or(0),
    ))
}
