// SPDX-License-Identifier: MPL-2.0
//! `info`, `forward` and `bench`: the model on its own, without GStreamer.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Instant;

use anyhow::{Context, bail};
use candle_core::{DType, Device, Tensor};
use clap::Args;
use gstradio::engine::{Batch, Engine, EngineOptions, FrameJob};
use gstradio::meta::MetaDtype;
use gstradio::model::{CPU_MATMUL_ENV, CpuMatmul, Isa, RadioModel};
use gstradio::postprocess::{HostStaging, OutputOptions, embeddings};
use gstradio::preprocess::{Frame, FrameLayout, TargetSize};

use crate::args::{AdaptorArgs, ModelArgs, SourceFrames, resolve, size, source_frames};

/// `radio-embed info`.
#[derive(Debug, Args)]
pub struct Info {
    /// Folder with config.json and model.safetensors, or a Hugging Face repo id.
    #[arg(long)]
    model: String,
}

impl Info {
    pub fn run(self) -> anyhow::Result<()> {
        let folder = resolve(&self.model)?;
        let model = RadioModel::load(&folder, &Device::Cpu, DType::F32)
            .with_context(|| format!("cannot load model {}", self.model))?;
        let (c, d) = (&model.info().config, &model.info().dims);
        println!("config layout     {}", c.layout);
        println!("tensor names      {}", d.key_scheme);
        println!("version           {}", c.version.as_deref().unwrap_or("-"));
        println!("width             {}", d.width);
        println!("depth             {}", d.depth);
        let head_dim = d.width / c.num_heads;
        println!("heads             {} (head dim {head_dim})", c.num_heads);
        println!("mlp hidden        {}", d.mlp_hidden);
        println!("patch size        {}", c.patch_size);
        println!("position grid     {0}x{0}", d.pos_grid);
        println!(
            "prefix tokens     {} (summary from {:?})",
            d.num_prefix_tokens, d.summary_idxs
        );
        println!("summary dim       {}", d.summary_dim());
        let fnorm = if c.feature_normalizer { "yes" } else { "no" };
        println!("feature normalizer {fnorm}");
        println!(
            "resolution step   {} (max {})",
            c.resolution_step(),
            c.max_resolution
        );
        let params = d.parameter_count;
        println!("parameters        {params} ({:.1} M)", params as f64 / 1e6);
        println!("cpu matmul        {}", CpuMatmul::current()?);
        Ok(())
    }
}

/// `radio-embed forward`.
#[derive(Debug, Args)]
pub struct Forward {
    #[command(flatten)]
    model: ModelArgs,
    /// safetensors file whose `<prefix>input` tensors are (B,3,H,W) f32 in 0..1.
    #[arg(long)]
    input: PathBuf,
    /// Output safetensors with `<prefix>summary` and `<prefix>features` (f32), and
    /// `<prefix><adaptor>_summary` / `<prefix><adaptor>_features` for each adaptor
    /// (its name without punctuation: `siglip2g_summary`).
    #[arg(long)]
    output: PathBuf,
    #[command(flatten)]
    adaptors: AdaptorArgs,
}

impl Forward {
    pub fn run(self) -> anyhow::Result<()> {
        let folder = self.model.folder()?;
        let model = self.adaptors.attach(self.model.load(&folder)?, &folder)?;
        let input = &self.input;
        let tensors = candle_core::safetensors::load(input, &Device::Cpu)
            .with_context(|| format!("cannot read {}", input.display()))?;
        let mut names: Vec<&String> = tensors.keys().filter(|k| k.ends_with("input")).collect();
        names.sort();
        if names.is_empty() {
            bail!(
                "{} has no tensor whose name ends in `input`",
                input.display()
            );
        }
        let mut out: HashMap<String, Tensor> = HashMap::new();
        for name in names {
            let prefix = name.strip_suffix("input").expect("filtered on the suffix");
            let result = model
                .forward(&tensors[name].to_dtype(DType::F32)?)
                .with_context(|| name.clone())?;
            println!(
                "{name}: summary {:?}, features {:?}",
                result.summary.dims(),
                result.features.dims()
            );
            for adaptor in result.adaptors {
                let key: String = adaptor
                    .name
                    .chars()
                    .filter(|c| c.is_alphanumeric())
                    .collect();
                println!(
                    "{name}: {} summary {:?}, features {:?}",
                    adaptor.name,
                    adaptor.summary.dims(),
                    adaptor.features.as_ref().map(Tensor::dims)
                );
                out.insert(format!("{prefix}{key}_summary"), adaptor.summary);
                if let Some(features) = adaptor.features {
                    out.insert(format!("{prefix}{key}_features"), features);
                }
            }
            out.insert(format!("{prefix}summary"), result.summary);
            out.insert(format!("{prefix}features"), result.features);
        }
        candle_core::safetensors::save(&out, &self.output)
            .with_context(|| format!("cannot write {}", self.output.display()))
    }
}

/// `radio-embed bench`.
#[derive(Debug, Args)]
pub struct Bench {
    #[command(flatten)]
    model: ModelArgs,
    /// Input size as HxW.
    #[arg(long, default_value = "224x224", value_parser = size)]
    size: (usize, usize),
    /// Images per forward.
    #[arg(long, default_value_t = 1)]
    batch: usize,
    /// Timed forwards (after 2 warm-up runs).
    #[arg(long, default_value_t = 10)]
    iters: usize,
    /// CPU threads (default: all cores).
    #[arg(long)]
    threads: Option<usize>,
    #[command(flatten)]
    adaptors: AdaptorArgs,
    /// Run the adaptors' summary heads only, not their feature heads over every
    /// patch (as `radioembed outputs=summary` does).
    #[arg(long)]
    adaptor_summary_only: bool,
    /// Also time the element's path without GStreamer on host frames of this
    /// format and size, `FORMAT:WIDTHxHEIGHT` (e.g. `NV12:1920x1080`):
    /// preprocessing on the model's device to `--size`, the forward, and the
    /// summaries and patch grids copied to host memory, as on every buffer.
    #[arg(long, value_parser = source_frames)]
    frames: Option<SourceFrames>,
}

impl Bench {
    pub fn run(self) -> anyhow::Result<()> {
        if let Some(n) = self.threads {
            // candle's CPU kernels size their pools from RAYON_NUM_THREADS.
            // SAFETY: set before any thread pool or other thread exists.
            unsafe { std::env::set_var("RAYON_NUM_THREADS", n.to_string()) };
            rayon::ThreadPoolBuilder::new()
                .num_threads(n)
                .build_global()?;
        }
        // The clock printed with the peak below is the one /proc/cpuinfo
        // reports; what the cores reach with the f32 path's FMAs is the truer
        // peak. Measured before the model's threads exist to compete with it.
        let fma_peak = match CpuMatmul::current().ok().map(CpuMatmul::isa) {
            Some(isa @ (Isa::Avx2Fma | Isa::Avx512)) if self.model.device.name == "cpu" => {
                let threads = self.threads.unwrap_or_else(rayon::current_num_threads);
                gstradio::cpu::measured_fma_gflops(isa == Isa::Avx512, threads)
            }
            _ => None,
        };
        let folder = self.model.folder()?;
        let model = Arc::new(self.adaptors.attach(self.model.load(&folder)?, &folder)?);
        print_resident(&folder)?;
        let threads = rayon::current_num_threads();
        println!(
            "CPU: {} ({threads} threads used)",
            gstradio::cpu::model_name()
        );
        let matmul = model
            .device()
            .is_cpu()
            .then(CpuMatmul::current)
            .transpose()?;
        if let Some(matmul) = matmul {
            println!(
                "CPU matmul: {matmul} (override: {CPU_MATMUL_ENV}=gemm|openblas|bf16|bf16-amx|bf16-avx512)"
            );
        }
        #[cfg(feature = "cuda")]
        if model.device().is_cuda() {
            use gstradio::model::{ATTENTION_ENV, AttentionPath};
            let path = AttentionPath::current().map_err(anyhow::Error::msg)?;
            println!("GPU attention: {path:?} (override: {ATTENTION_ENV}=reference|fused)");
        }
        let (h, w) = self.size;
        let input = Tensor::rand(0f32, 1f32, (self.batch, 3, h, w), model.device())?;
        let adaptor_features = !self.adaptor_summary_only;
        for _ in 0..2 {
            time_forward(&model, &input, adaptor_features)?;
        }
        let mut times = (0..self.iters.max(1))
            .map(|_| time_forward(&model, &input, adaptor_features))
            .collect::<anyhow::Result<Vec<f64>>>()?;
        times.sort_by(f64::total_cmp);
        let median = times[times.len() / 2];
        let gflops = model.info().forward_flops(h, w) * self.batch as f64 / median / 1e6;
        println!(
            "{h}x{w} batch {} {} on {} ({threads} threads): median {median:.2} ms/forward, \
             {:.2} images/s, {gflops:.1} GFLOP/s",
            self.batch,
            self.model.dtype,
            self.model.device.name,
            self.batch as f64 * 1000.0 / median
        );
        if let Some(frames) = &self.frames {
            self.print_frames_path(&model, frames, median)?;
        }
        if !self.adaptors.adaptor.is_empty() {
            self.print_adaptor_cost(&folder, &model, &input)?;
        }
        if let (Some(matmul), Some(ghz)) = (matmul, gstradio::cpu::clock_ghz()) {
            let isa = matmul.isa();
            let peak = isa.peak_gflops(threads, ghz);
            println!(
                "{:.0} % of the {isa} peak, {peak:.0} GFLOP/s = {threads} cores x {} FLOP/cycle \
                 x {ghz:.2} GHz",
                100.0 * gflops / peak,
                isa.flops_per_cycle(),
            );
        }
        if let (Some(isa), Some(fma)) = (matmul.map(CpuMatmul::isa), fma_peak) {
            println!(
                "{:.0} % of the {isa} FMA rate measured here, {fma:.0} GFLOP/s ({threads} threads \
                 of independent FMAs)",
                100.0 * gflops / fma
            );
        }
        Ok(())
    }
}

impl Bench {
    /// Times host frames through [`Engine::embed`], the path each batch of the
    /// element takes, and prints what it adds to `forward_ms`, the median of
    /// the bare forwards on the same input size.
    fn print_frames_path(
        &self,
        model: &Arc<RadioModel>,
        source: &SourceFrames,
        forward_ms: f64,
    ) -> anyhow::Result<()> {
        let (h, w) = self.size;
        let options = EngineOptions {
            target: TargetSize::Fixed {
                width: w,
                height: h,
            },
            antialias: true,
            outputs: OutputOptions {
                summary: true,
                spatial: !self.adaptor_summary_only,
                spatial_pool: 1,
                dtype: MetaDtype::F32,
                model: self.model.model.clone(),
                input_size: (w, h),
                source_id: "bench".into(),
            },
        };
        let outputs = options.outputs.clone();
        let engine = Engine::new(Arc::clone(model), options, None)?;
        let mut preprocessor = engine.preprocessor()?;
        let layout = FrameLayout::packed(source.format, source.width, source.height);
        // A ramp, not a constant: the same bytes each time, every value used.
        let pixels: Vec<u8> = (0..layout.min_size()).map(|i| (i % 251) as u8).collect();
        let frames = vec![
            Frame {
                data: &pixels,
                layout: &layout,
            };
            self.batch
        ];
        let jobs: Vec<FrameJob> = (0..self.batch as u64)
            .map(|index| FrameJob {
                index,
                regions: &[],
            })
            .collect();
        let batch = Batch {
            frames: &frames,
            jobs: &jobs,
            size: (h, w),
            deadline: None,
        };
        let mut run = || -> anyhow::Result<f64> {
            let started = Instant::now();
            // Returns once the embeddings are in host memory.
            let out = engine.embed(&mut preprocessor, &batch)?;
            anyhow::ensure!(out.frames.len() == self.batch, "one embedding a frame");
            Ok(started.elapsed().as_secs_f64() * 1000.0)
        };
        for _ in 0..2 {
            run()?;
        }
        let mut times = (0..self.iters.max(1))
            .map(|_| run())
            .collect::<anyhow::Result<Vec<f64>>>()?;
        times.sort_by(f64::total_cmp);
        let median = times[times.len() / 2];
        println!(
            "frames {} {}x{} -> {h}x{w} batch {} (preprocess, forward, embeddings to host): \
             median {median:.2} ms/batch, {:.2} frames/s; beyond the forward {:.3} ms a frame",
            source.format.gst_name(),
            source.width,
            source.height,
            self.batch,
            self.batch as f64 * 1000.0 / median,
            (median - forward_ms) / self.batch as f64
        );
        // The same path stage by stage, each waited for: where the time beyond
        // the forward goes.
        let spec = engine.batch_spec((h, w));
        let indices: Vec<u64> = (0..self.batch as u64).collect();
        let mut staging = HostStaging::default();
        gst::init()?;
        gstradio::meta::register();
        let mut stage = || -> anyhow::Result<[f64; 4]> {
            let started = Instant::now();
            let input = preprocessor.batch(&frames, &spec)?;
            model.device().synchronize()?;
            let preprocessed = Instant::now();
            let output = model.forward_normalized_with(&input, !self.adaptor_summary_only)?;
            model.device().synchronize()?;
            let forwarded = Instant::now();
            let mut frames = embeddings(&output, &outputs, &indices, &mut staging)?;
            let copied = Instant::now();
            // As the element does: each frame's vectors move into its meta.
            let mut buffers = Vec::with_capacity(frames.len());
            for embedding in &mut frames {
                let mut buffer = gst::Buffer::new();
                embedding.move_into_meta(buffer.get_mut().expect("a new buffer"))?;
                buffers.push(buffer);
            }
            let ms = |from: Instant, to: Instant| (to - from).as_secs_f64() * 1000.0;
            Ok([
                ms(started, preprocessed),
                ms(preprocessed, forwarded),
                ms(forwarded, copied),
                ms(copied, Instant::now()),
            ])
        };
        stage()?;
        let runs = (0..self.iters.max(1))
            .map(|_| stage())
            .collect::<anyhow::Result<Vec<_>>>()?;
        let [pre, forward, out, metas] = [0, 1, 2, 3].map(|i| {
            let mut times: Vec<f64> = runs.iter().map(|run| run[i]).collect();
            times.sort_by(f64::total_cmp);
            times[times.len() / 2]
        });
        let per_frame = |ms: f64| ms / self.batch as f64;
        println!(
            "  stage by stage, each waited for (medians): preprocess {pre:.2} ms ({:.3} ms a \
             frame), forward {forward:.2} ms, outputs to host {out:.2} ms ({:.3} ms a frame), \
             metas {metas:.2} ms ({:.3} ms a frame)",
            per_frame(pre),
            per_frame(out),
            per_frame(metas)
        );
        Ok(())
    }

    /// What the adaptor heads add to a forward: the same backbone loaded a
    /// second time without them, the two run in turn, and the median of the
    /// paired differences (this machine's drift hits both sides of a pair).
    fn print_adaptor_cost(
        &self,
        folder: &Path,
        model: &RadioModel,
        input: &Tensor,
    ) -> anyhow::Result<()> {
        let backbone = self.model.load(folder)?;
        let features = !self.adaptor_summary_only;
        time_forward(&backbone, input, false)?;
        let mut shares = Vec::new();
        let (mut alone, mut with_heads) = (Vec::new(), Vec::new());
        for _ in 0..self.iters.max(1) {
            let a = time_forward(&backbone, input, false)?;
            let b = time_forward(model, input, features)?;
            shares.push((b - a) / a * 100.0);
            alone.push(a);
            with_heads.push(b);
        }
        let median = |mut v: Vec<f64>| {
            v.sort_by(f64::total_cmp);
            v[v.len() / 2]
        };
        let heads = if features {
            "summary and feature"
        } else {
            "summary"
        };
        println!(
            "adaptor {heads} heads: {:+.1} % of the backbone's time (median of {} paired \
             forwards: backbone {:.2} ms, with the heads {:.2} ms)",
            median(shares),
            self.iters.max(1),
            median(alone),
            median(with_heads)
        );
        Ok(())
    }
}

/// One forward in milliseconds, waiting for asynchronous (GPU) work to finish;
/// the adaptors' feature heads run only with `adaptor_features`.
fn time_forward(model: &RadioModel, input: &Tensor, adaptor_features: bool) -> anyhow::Result<f64> {
    let started = Instant::now();
    let out = model.forward_with(input, adaptor_features)?;
    // Reading a value back waits for the device.
    out.summary.sum_all()?.to_scalar::<f32>()?;
    Ok(started.elapsed().as_secs_f64() * 1000.0)
}

/// Prints this process's resident memory against the size of the weight file.
fn print_resident(folder: &Path) -> anyhow::Result<()> {
    let weights = folder.join("model.safetensors");
    let weights_bytes = std::fs::metadata(&weights)
        .with_context(|| format!("cannot read {}", weights.display()))?
        .len();
    if let Some(rss) = resident_bytes() {
        println!(
            "resident after load: {:.0} MiB = {:.2}x the weight file ({:.0} MiB)",
            rss as f64 / 1048576.0,
            rss as f64 / weights_bytes as f64,
            weights_bytes as f64 / 1048576.0
        );
    }
    Ok(())
}

/// Resident memory of this process (Linux), in bytes.
pub fn resident_bytes() -> Option<u64> {
    let statm = std::fs::read_to_string("/proc/self/statm").ok()?;
    let pages: u64 = statm.split_whitespace().nth(1)?.parse().ok()?;
    Some(pages * 4096)
}
