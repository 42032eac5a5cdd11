// SPDX-License-Identifier: MPL-2.0
//! `radio-embed preprocess`: what the model sees of an image.

use std::collections::HashMap;
use std::path::PathBuf;

use anyhow::{Context, bail};
use candle_core::{DType, Device, Tensor};
use clap::Args;
use gstradio::preprocess::{
    CpuPreprocessor, FrameLayout, Normalization, PixelFormat, SizeLimits, TargetSize,
};

use crate::args::size;

/// The input limits of the C-RADIOv4 models: 16-pixel patches, sides up to 2048.
const RADIO_LIMITS: SizeLimits = SizeLimits {
    step: 16,
    max: 2048,
};

/// `radio-embed preprocess`.
#[derive(Debug, Args)]
pub struct Preprocess {
    /// A PNG/JPEG file, or FILE.safetensors:KEY holding a uint8 HWC RGB tensor.
    #[arg(long)]
    input: String,
    /// Output size as HxW.
    #[arg(long, value_parser = size, conflicts_with = "resolution",
          required_unless_present = "resolution")]
    size: Option<(usize, usize)>,
    /// Shorter side of the output (aspect kept, sides snapped to 16).
    #[arg(long)]
    resolution: Option<usize>,
    /// Antialias when shrinking.
    #[arg(long, default_value_t = true, action = clap::ArgAction::Set)]
    antialias: bool,
    /// `.png` (resized RGB) or `.safetensors` (`resized`, (1,3,h,w) f32 in 0..1).
    #[arg(long)]
    output: PathBuf,
}

impl Preprocess {
    pub fn run(self) -> anyhow::Result<()> {
        let (data, w, h) = read_rgb(&self.input)?;
        let target = match (self.size, self.resolution) {
            (Some((height, width)), _) => TargetSize::Fixed { width, height },
            (None, Some(side)) => TargetSize::ShortSide(side),
            (None, None) => bail!("give --size HxW or --resolution N"),
        };
        let (th, tw) = target.resolve(w, h, RADIO_LIMITS)?;
        let mut layout = FrameLayout::packed(PixelFormat::Rgb, w, h);
        layout.strides[0] = w * 3;
        let mut planar = vec![0f32; 3 * th * tw];
        CpuPreprocessor::new().process(
            &data,
            &layout,
            (th, tw),
            self.antialias,
            &Normalization::IDENTITY,
            &mut planar,
        )?;
        self.write(planar, (th, tw))?;
        println!(
            "{w}x{h} -> {tw}x{th} (antialias {}) -> {}",
            self.antialias,
            self.output.display()
        );
        Ok(())
    }

    /// Writes the planar RGB image as `.safetensors` or `.png`.
    fn write(&self, planar: Vec<f32>, (th, tw): (usize, usize)) -> anyhow::Result<()> {
        let output = &self.output;
        match output.extension().and_then(|e| e.to_str()) {
            Some("safetensors") => {
                let t = Tensor::from_vec(planar, (1, 3, th, tw), &Device::Cpu)?;
                candle_core::safetensors::save(&HashMap::from([("resized".to_string(), t)]), output)
                    .with_context(|| format!("cannot write {}", output.display()))
            }
            Some("png") => {
                let plane = th * tw;
                let pixels: Vec<u8> = (0..plane)
                    .flat_map(|p| (0..3).map(move |c| (c, p)))
                    .map(|(c, p)| (planar[c * plane + p] * 255.0).round().clamp(0.0, 255.0) as u8)
                    .collect();
                image::RgbImage::from_raw(tw as u32, th as u32, pixels)
                    .expect("buffer matches the size")
                    .save(output)
                    .with_context(|| format!("cannot write {}", output.display()))
            }
            _ => bail!("--output must end in .png or .safetensors"),
        }
    }
}

/// Reads an RGB image as packed bytes and its (width, height).
fn read_rgb(input: &str) -> anyhow::Result<(Vec<u8>, usize, usize)> {
    if let Some((file, key)) = input.split_once(".safetensors:") {
        let path = format!("{file}.safetensors");
        let tensors = candle_core::safetensors::load(&path, &Device::Cpu)
            .with_context(|| format!("cannot read {path}"))?;
        let t = tensors
            .get(key)
            .with_context(|| format!("{path} has no tensor `{key}`"))?;
        let (h, w, c) = t.dims3().with_context(|| format!("`{key}` is not HWC"))?;
        if c != 3 || t.dtype() != DType::U8 {
            bail!("`{key}` must be uint8 HxWx3 RGB");
        }
        return Ok((t.flatten_all()?.to_vec1::<u8>()?, w, h));
    }
    let image = image::open(input)
        .with_context(|| format!("cannot read {input}"))?
        .to_rgb8();
    let (w, h) = (image.width() as usize, image.height() as usize);
    Ok((image.into_raw(), w, h))
}
