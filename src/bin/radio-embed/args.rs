// SPDX-License-Identifier: MPL-2.0
//! Arguments several subcommands share, parsed into types by clap.

use std::path::{Path, PathBuf};

use anyhow::Context;
use candle_core::{DType, Device};
use clap::{Args, ValueEnum};
use gstradio::model::{RadioModel, TorchCheckpoint, parse_device};
use gstradio::model_store::{DownloadProgress, locate, locate_text_model};
use gstradio::preprocess::PixelFormat;

/// The precision a model computes in.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Dtype {
    /// 32-bit floats.
    F32,
    /// IEEE half precision.
    F16,
    /// bfloat16.
    Bf16,
}

impl std::fmt::Display for Dtype {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let value = self.to_possible_value().expect("no variant is skipped");
        f.write_str(value.get_name())
    }
}

impl Dtype {
    /// The candle dtype.
    pub fn dtype(self) -> DType {
        match self {
            Self::F32 => DType::F32,
            Self::F16 => DType::F16,
            Self::Bf16 => DType::BF16,
        }
    }
}

/// A compute device, opened when the argument is parsed, with its name.
#[derive(Debug, Clone)]
pub struct DeviceArg {
    /// As given: `cpu` or `cuda:N`.
    pub name: String,
    /// The opened device.
    pub device: Device,
}

/// Parses `cpu` or `cuda:N`, refusing a device this build or machine lacks.
pub fn device(name: &str) -> Result<DeviceArg, String> {
    let device = parse_device(name).map_err(|e| e.to_string())?;
    Ok(DeviceArg {
        name: name.to_string(),
        device,
    })
}

/// The model, where it runs, and in what precision.
#[derive(Debug, Args)]
pub struct ModelArgs {
    /// Folder with config.json and model.safetensors, or a Hugging Face repo id.
    #[arg(long)]
    pub model: String,
    /// cpu or cuda:N.
    #[arg(long, default_value = "cpu", value_parser = device)]
    pub device: DeviceArg,
    /// Compute precision.
    #[arg(long, value_enum, default_value_t = Dtype::F32)]
    pub dtype: Dtype,
}

impl ModelArgs {
    /// The model's folder, downloaded first if it is not local.
    pub fn folder(&self) -> anyhow::Result<PathBuf> {
        resolve(&self.model)
    }

    /// Loads the model from `folder` onto the device.
    pub fn load(&self, folder: &std::path::Path) -> anyhow::Result<RadioModel> {
        RadioModel::load(folder, &self.device.device, self.dtype.dtype())
            .with_context(|| format!("cannot load model {}", self.model))
    }
}

/// Adaptor heads to run besides the backbone.
#[derive(Debug, Args)]
pub struct AdaptorArgs {
    /// Also run this adaptor's heads (a teacher of the checkpoint: `siglip2-g`).
    #[arg(long)]
    pub adaptor: Vec<String>,
    /// The torch.hub checkpoint with the adaptor heads; by default the one
    /// `*.pth.tar` in the model's folder.
    #[arg(long)]
    pub adaptor_checkpoint: Option<PathBuf>,
}

impl AdaptorArgs {
    /// `model` (loaded from `folder`) with the adaptors asked for.
    pub fn attach(&self, mut model: RadioModel, folder: &Path) -> anyhow::Result<RadioModel> {
        if self.adaptor.is_empty() {
            return Ok(model);
        }
        let path = match &self.adaptor_checkpoint {
            Some(path) => path.clone(),
            None => with_progress(&folder.display().to_string(), |report| {
                gstradio::model_store::adaptor_checkpoint(folder, report)
            })?,
        };
        let checkpoint = TorchCheckpoint::open(&path)?;
        for name in &self.adaptor {
            model = model.with_adaptor(&checkpoint, name)?;
        }
        Ok(model)
    }
}

/// The folder of a model named by folder or repo id, downloading it (with a
/// progress line on stderr) when it is in neither place.
pub fn resolve(model: &str) -> anyhow::Result<PathBuf> {
    Ok(with_progress(model, |report| locate(model, report))?)
}

/// [`resolve`] for a SigLIP text model: only the text tower's files download.
pub fn resolve_text_model(model: &str) -> anyhow::Result<PathBuf> {
    Ok(with_progress(model, |report| {
        locate_text_model(model, report)
    })?)
}

/// `find`, with a progress line on stderr for what it downloads of `name`.
fn with_progress<T>(name: &str, find: impl FnOnce(&mut dyn FnMut(DownloadProgress)) -> T) -> T {
    let mut shown = false;
    let found = find(&mut |p: DownloadProgress| {
        shown = true;
        eprint!(
            "\rdownloading {name} {}: {:3} % of {:.1} MiB ",
            p.file,
            p.percent,
            p.total as f64 / 1048576.0
        );
    });
    if shown {
        eprintln!();
    }
    found
}

/// Host frames a benchmark feeds: a pixel format and a size.
#[derive(Debug, Clone)]
pub struct SourceFrames {
    pub format: PixelFormat,
    pub width: usize,
    pub height: usize,
}

/// Parses `FORMAT:WIDTHxHEIGHT` with a GStreamer format name (`NV12:1920x1080`).
pub fn source_frames(text: &str) -> Result<SourceFrames, String> {
    let (name, dims) = text.split_once(':').ok_or_else(|| {
        format!("frames `{text}` are not FORMAT:WIDTHxHEIGHT (e.g. NV12:1920x1080)")
    })?;
    let format = PixelFormat::ALL
        .into_iter()
        .find(|f| f.gst_name().eq_ignore_ascii_case(name))
        .ok_or_else(|| {
            let names: Vec<&str> = PixelFormat::ALL.iter().map(|f| f.gst_name()).collect();
            format!("unknown format `{name}`; one of {}", names.join(", "))
        })?;
    let (width, height) = dims
        .split_once('x')
        .and_then(|(w, h)| Some((w.parse().ok()?, h.parse().ok()?)))
        .filter(|&(w, h): &(usize, usize)| w > 0 && h > 0)
        .ok_or_else(|| format!("frame size `{dims}` is not WIDTHxHEIGHT (e.g. 1920x1080)"))?;
    Ok(SourceFrames {
        format,
        width,
        height,
    })
}

/// An image size given as HxW.
pub fn size(text: &str) -> Result<(usize, usize), String> {
    let parse = || {
        let (h, w) = text.split_once('x')?;
        Some((h.parse().ok()?, w.parse().ok()?))
    };
    parse().ok_or_else(|| format!("size `{text}` is not HxW (e.g. 224x224)"))
}
