//! `radio-embed`: inspect, run, benchmark and check C-RADIOv4 models and the frame
//! preprocessing, without GStreamer.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::Instant;

use candle_core::{DType, Device, Tensor};
use clap::{Parser, Subcommand};
use gstradio::model::{RadioModel, parse_device, parse_dtype};
use gstradio::model_store::{DownloadProgress, locate};
use gstradio::preprocess::{
    CpuPreprocessor, FrameLayout, Normalization, PixelFormat, SizeLimits, TargetSize,
};

#[derive(Parser)]
#[command(
    name = "radio-embed",
    version,
    about = "C-RADIOv4 embeddings from the command line"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Print what a model folder holds: layout, dimensions, token counts, parameters.
    Info {
        /// Folder with config.json and model.safetensors, or a Hugging Face repo id.
        #[arg(long)]
        model: String,
    },
    /// Run the model on every `*input` tensor of a safetensors file.
    Forward {
        /// Folder with config.json and model.safetensors, or a Hugging Face repo id.
        #[arg(long)]
        model: String,
        /// safetensors file whose `<prefix>input` tensors are (B,3,H,W) f32 in 0..1.
        #[arg(long)]
        input: PathBuf,
        /// Output safetensors with `<prefix>summary` and `<prefix>features` (f32).
        #[arg(long)]
        output: PathBuf,
        /// cpu or cuda:N.
        #[arg(long, default_value = "cpu")]
        device: String,
        /// f32, f16 or bf16.
        #[arg(long, default_value = "f32")]
        dtype: String,
    },
    /// Time forwards on random input: median ms per forward and images per second.
    Bench {
        /// Folder with config.json and model.safetensors, or a Hugging Face repo id.
        #[arg(long)]
        model: String,
        /// Input size as HxW.
        #[arg(long, default_value = "224x224")]
        size: String,
        /// Images per forward.
        #[arg(long, default_value_t = 1)]
        batch: usize,
        /// Timed forwards (after 2 warm-up runs).
        #[arg(long, default_value_t = 10)]
        iters: usize,
        /// CPU threads (default: all cores).
        #[arg(long)]
        threads: Option<usize>,
        /// cpu or cuda:N.
        #[arg(long, default_value = "cpu")]
        device: String,
        /// f32, f16 or bf16.
        #[arg(long, default_value = "f32")]
        dtype: String,
    },
    /// Show what the model sees: resize (and antialias) an image as the element does.
    Preprocess {
        /// A PNG/JPEG file, or FILE.safetensors:KEY holding a uint8 HWC RGB tensor.
        #[arg(long)]
        input: String,
        /// Output size as HxW.
        #[arg(long, conflicts_with = "resolution")]
        size: Option<String>,
        /// Shorter side of the output (aspect kept, sides snapped to 16).
        #[arg(long)]
        resolution: Option<usize>,
        /// Antialias when shrinking.
        #[arg(long, default_value_t = true, action = clap::ArgAction::Set)]
        antialias: bool,
        /// cpu (the GPU path needs the `cuda` feature).
        #[arg(long, default_value = "cpu")]
        device: String,
        /// `.png` (resized RGB) or `.safetensors` (`resized`, (1,3,h,w) f32 in 0..1).
        #[arg(long)]
        output: PathBuf,
    },
    /// Embed videos frame by frame into an index (one row per sampled frame).
    Index {
        /// Video files or URIs.
        #[arg(required = true)]
        inputs: Vec<String>,
        /// Index file: .sqlite or .parquet; created if missing.
        #[arg(long)]
        db: PathBuf,
        /// Frames per second to embed.
        #[arg(long, default_value_t = 1.0)]
        fps: f64,
        /// Model folder or Hugging Face repo id.
        #[arg(long, default_value = "nvidia/C-RADIOv4-SO400M")]
        model: String,
        /// auto, cpu or cuda:N.
        #[arg(long, default_value = "auto")]
        device: String,
        /// Shorter side of the model input.
        #[arg(long, default_value_t = 512)]
        resolution: u32,
        /// Rows per SQLite write transaction or Parquet row group (the rows
        /// held in memory).
        #[arg(long, default_value_t = 256)]
        transaction_rows: u32,
        /// Also store each frame's patch grid, average-pooled over K x K
        /// patches, in f16 (default: summaries only, all that search reads).
        #[arg(long, value_name = "K", value_parser = clap::value_parser!(u32).range(1..=64))]
        spatial_pool: Option<u32>,
    },
    /// Find the indexed frames most similar to an image or a video frame.
    Search {
        /// Index file made by `radio-embed index`.
        #[arg(long)]
        db: PathBuf,
        /// Query image (PNG/JPEG).
        #[arg(long, conflicts_with = "frame", required_unless_present = "frame")]
        image: Option<PathBuf>,
        /// Query frame as VIDEO@SECONDS.
        #[arg(long)]
        frame: Option<String>,
        /// Number of results.
        #[arg(short, default_value_t = 10)]
        k: usize,
        /// Print a JSON array instead of a table.
        #[arg(long)]
        json: bool,
    },
}

type CliResult<T> = Result<T, String>;

#[path = "radio-embed/video_index.rs"]
mod video_index;

fn dtype(name: &str) -> CliResult<DType> {
    parse_dtype(name).ok_or_else(|| format!("unknown dtype `{name}`: use f32, f16 or bf16"))
}

/// The folder of a model named by folder or repo id, downloading it (with a
/// progress line on stderr) when it is in neither place.
fn resolve(model: &str) -> CliResult<PathBuf> {
    let mut shown = false;
    let dir = locate(model, &mut |p: DownloadProgress| {
        shown = true;
        eprint!(
            "\rdownloading {model} {}: {:3} % of {:.1} MiB ",
            p.file,
            p.percent,
            p.total as f64 / 1048576.0
        );
    });
    if shown {
        eprintln!();
    }
    dir.map_err(|e| e.to_string())
}

fn load(dir: &Path, device: &str, dtype_name: &str) -> CliResult<RadioModel> {
    let device = parse_device(device).map_err(|e| e.to_string())?;
    RadioModel::load(dir, &device, dtype(dtype_name)?).map_err(|e| e.to_string())
}

fn parse_size(size: &str) -> CliResult<(usize, usize)> {
    let parse = || {
        let (h, w) = size.split_once('x')?;
        Some((h.parse().ok()?, w.parse().ok()?))
    };
    parse().ok_or_else(|| format!("size `{size}` is not HxW (e.g. 224x224)"))
}

fn info(model: &Path) -> CliResult<()> {
    let model = load(model, "cpu", "f32")?;
    let (c, d) = (&model.info().config, &model.info().dims);
    println!("config layout     {}", c.layout);
    println!("tensor names      {}", d.key_scheme);
    println!("version           {}", c.version.as_deref().unwrap_or("-"));
    println!("width             {}", d.width);
    println!("depth             {}", d.depth);
    println!(
        "heads             {} (head dim {})",
        c.num_heads,
        d.width / c.num_heads
    );
    println!("mlp hidden        {}", d.mlp_hidden);
    println!("patch size        {}", c.patch_size);
    println!("position grid     {0}x{0}", d.pos_grid);
    println!(
        "prefix tokens     {} (summary from {:?})",
        d.num_prefix_tokens, d.summary_idxs
    );
    println!("summary dim       {}", d.summary_dim());
    println!(
        "feature normalizer {}",
        if c.feature_normalizer { "yes" } else { "no" }
    );
    println!(
        "resolution step   {} (max {})",
        c.resolution_step(),
        c.max_resolution
    );
    println!(
        "parameters        {} ({:.1} M)",
        d.parameter_count,
        d.parameter_count as f64 / 1e6
    );
    Ok(())
}

fn forward(model: &Path, input: &Path, output: &Path, device: &str, dtype: &str) -> CliResult<()> {
    let model = load(model, device, dtype)?;
    let tensors = candle_core::safetensors::load(input, &Device::Cpu)
        .map_err(|e| format!("cannot read {}: {e}", input.display()))?;
    let mut names: Vec<&String> = tensors.keys().filter(|k| k.ends_with("input")).collect();
    names.sort();
    if names.is_empty() {
        return Err(format!(
            "{} has no tensor whose name ends in `input`",
            input.display()
        ));
    }
    let mut out: HashMap<String, Tensor> = HashMap::new();
    for name in names {
        let prefix = name.strip_suffix("input").expect("filtered on the suffix");
        let result = model
            .forward(
                &tensors[name]
                    .to_dtype(DType::F32)
                    .map_err(|e| e.to_string())?,
            )
            .map_err(|e| format!("{name}: {e}"))?;
        println!(
            "{name}: summary {:?}, features {:?}",
            result.summary.dims(),
            result.features.dims()
        );
        out.insert(format!("{prefix}summary"), result.summary);
        out.insert(format!("{prefix}features"), result.features);
    }
    candle_core::safetensors::save(&out, output)
        .map_err(|e| format!("cannot write {}: {e}", output.display()))
}

#[allow(clippy::too_many_arguments)]
fn bench(
    model: &Path,
    size: &str,
    batch: usize,
    iters: usize,
    threads: Option<usize>,
    device: &str,
    dtype: &str,
) -> CliResult<()> {
    if let Some(n) = threads {
        // candle's CPU kernels size their pools from RAYON_NUM_THREADS.
        // SAFETY: set before any thread pool or other thread exists.
        unsafe { std::env::set_var("RAYON_NUM_THREADS", n.to_string()) };
        rayon::ThreadPoolBuilder::new()
            .num_threads(n)
            .build_global()
            .map_err(|e| e.to_string())?;
    }
    let (h, w) = parse_size(size)?;
    let weights_bytes = std::fs::metadata(model.join("model.safetensors"))
        .map_err(|e| format!("cannot read {}: {e}", model.display()))?
        .len();
    let model = load(model, device, dtype)?;
    if let Some(rss) = resident_bytes() {
        println!(
            "resident after load: {:.0} MiB = {:.2}x the weight file ({:.0} MiB)",
            rss as f64 / 1048576.0,
            rss as f64 / weights_bytes as f64,
            weights_bytes as f64 / 1048576.0
        );
    }
    let input =
        Tensor::rand(0f32, 1f32, (batch, 3, h, w), model.device()).map_err(|e| e.to_string())?;
    let run = || -> CliResult<f64> {
        let started = Instant::now();
        let out = model.forward(&input).map_err(|e| e.to_string())?;
        // Reading a value back waits for asynchronous (GPU) work to finish.
        out.summary
            .sum_all()
            .and_then(|s| s.to_scalar::<f32>())
            .map_err(|e| e.to_string())?;
        Ok(started.elapsed().as_secs_f64() * 1000.0)
    };
    for _ in 0..2 {
        run()?;
    }
    let mut times = (0..iters.max(1))
        .map(|_| run())
        .collect::<CliResult<Vec<f64>>>()?;
    times.sort_by(f64::total_cmp);
    let median = times[times.len() / 2];
    println!(
        "{size} batch {batch} {dtype} on {device} ({} threads): median {median:.2} ms/forward, {:.2} images/s",
        threads.map_or_else(|| "all".to_string(), |n| n.to_string()),
        batch as f64 * 1000.0 / median
    );
    Ok(())
}

/// Resident memory of this process (Linux), in bytes.
fn resident_bytes() -> Option<u64> {
    let statm = std::fs::read_to_string("/proc/self/statm").ok()?;
    let pages: u64 = statm.split_whitespace().nth(1)?.parse().ok()?;
    Some(pages * 4096)
}

/// Reads an RGB image as packed bytes and its (width, height).
fn read_rgb(input: &str) -> CliResult<(Vec<u8>, usize, usize)> {
    if let Some((file, key)) = input.split_once(".safetensors:") {
        let path = format!("{file}.safetensors");
        let tensors = candle_core::safetensors::load(&path, &Device::Cpu)
            .map_err(|e| format!("cannot read {path}: {e}"))?;
        let t = tensors
            .get(key)
            .ok_or_else(|| format!("{path} has no tensor `{key}`"))?;
        let (h, w, c) = t.dims3().map_err(|_| format!("`{key}` is not HWC"))?;
        if c != 3 || t.dtype() != DType::U8 {
            return Err(format!("`{key}` must be uint8 HxWx3 RGB"));
        }
        let data = t
            .flatten_all()
            .and_then(|t| t.to_vec1::<u8>())
            .map_err(|e| e.to_string())?;
        return Ok((data, w, h));
    }
    let image = image::open(input)
        .map_err(|e| format!("cannot read {input}: {e}"))?
        .to_rgb8();
    let (w, h) = (image.width() as usize, image.height() as usize);
    Ok((image.into_raw(), w, h))
}

fn preprocess(
    input: &str,
    size: Option<&str>,
    resolution: Option<usize>,
    antialias: bool,
    device: &str,
    output: &Path,
) -> CliResult<()> {
    if device != "cpu" {
        return Err(format!(
            "device `{device}`: this tool preprocesses on the cpu only"
        ));
    }
    let (data, w, h) = read_rgb(input)?;
    let target = match (size, resolution) {
        (Some(s), _) => {
            let (th, tw) = parse_size(s)?;
            TargetSize::Fixed {
                width: tw,
                height: th,
            }
        }
        (None, Some(r)) => TargetSize::ShortSide(r),
        (None, None) => return Err("give --size HxW or --resolution N".into()),
    };
    let (th, tw) = target
        .resolve(
            w,
            h,
            SizeLimits {
                step: 16,
                max: 2048,
            },
        )
        .map_err(|e| e.to_string())?;
    let mut layout = FrameLayout::packed(PixelFormat::Rgb, w, h);
    layout.strides[0] = w * 3;
    let mut planar = vec![0f32; 3 * th * tw];
    CpuPreprocessor::new()
        .process(
            &data,
            &layout,
            (th, tw),
            antialias,
            &Normalization::IDENTITY,
            &mut planar,
        )
        .map_err(|e| e.to_string())?;
    match output.extension().and_then(|e| e.to_str()) {
        Some("safetensors") => {
            let t = Tensor::from_vec(planar, (1, 3, th, tw), &Device::Cpu)
                .map_err(|e| e.to_string())?;
            candle_core::safetensors::save(&HashMap::from([("resized".to_string(), t)]), output)
                .map_err(|e| e.to_string())?;
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
                .map_err(|e| format!("cannot write {}: {e}", output.display()))?;
        }
        _ => return Err("--output must end in .png or .safetensors".into()),
    }
    println!(
        "{w}x{h} -> {tw}x{th} (antialias {antialias}) -> {}",
        output.display()
    );
    Ok(())
}

fn main() -> ExitCode {
    let result = match Cli::parse().command {
        Command::Info { model } => resolve(&model).and_then(|dir| info(&dir)),
        Command::Forward {
            model,
            input,
            output,
            device,
            dtype,
        } => resolve(&model).and_then(|dir| forward(&dir, &input, &output, &device, &dtype)),
        Command::Bench {
            model,
            size,
            batch,
            iters,
            threads,
            device,
            dtype,
        } => resolve(&model)
            .and_then(|dir| bench(&dir, &size, batch, iters, threads, &device, &dtype)),
        Command::Preprocess {
            input,
            size,
            resolution,
            antialias,
            device,
            output,
        } => preprocess(
            &input,
            size.as_deref(),
            resolution,
            antialias,
            &device,
            &output,
        ),
        Command::Index {
            inputs,
            db,
            fps,
            model,
            device,
            resolution,
            transaction_rows,
            spatial_pool,
        } => video_index::index(
            &inputs,
            &db,
            fps,
            &model,
            &device,
            &video_index::Storage {
                resolution,
                transaction_rows,
                spatial_pool,
            },
        ),
        Command::Search {
            db,
            image,
            frame,
            k,
            json,
        } => video_index::search(&db, image.as_deref(), frame.as_deref(), k, json),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(message) => {
            eprintln!("radio-embed: {message}");
            ExitCode::FAILURE
        }
    }
}
