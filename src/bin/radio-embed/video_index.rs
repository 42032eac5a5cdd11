// SPDX-License-Identifier: MPL-2.0
//! `radio-embed index`: a GStreamer pipeline around radioembed and
//! radioindexsink per input, with progress printing; and the pipeline helpers
//! `search` and `serve` share.

use std::path::{Path, PathBuf};
use std::time::Instant;

use anyhow::{Context, bail};
use clap::Args;
use gst::prelude::*;
use gstradio::index;
use gstradio::radioembed::{DEFAULT_DEVICE, DEFAULT_MODEL, DEFAULT_RESOLUTION};
use gstradio::radioindexsink::{DEFAULT_THUMBNAIL_SIZE, DEFAULT_TRANSACTION_ROWS};

use crate::pipeline::{self, IndexSettings};

/// `radio-embed index`.
#[derive(Debug, Args)]
pub struct Index {
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
    #[arg(long, default_value = DEFAULT_MODEL)]
    model: String,
    /// auto, cpu or cuda:N.
    #[arg(long, default_value = DEFAULT_DEVICE)]
    device: String,
    /// Shorter side of the model input.
    #[arg(long, default_value_t = DEFAULT_RESOLUTION)]
    resolution: u32,
    /// Rows per SQLite write transaction or Parquet row group (the rows
    /// held in memory).
    #[arg(long, default_value_t = DEFAULT_TRANSACTION_ROWS)]
    transaction_rows: u32,
    /// Also store each frame's patch grid, average-pooled over K x K
    /// patches, in f16 (default: summaries only, all that search reads).
    #[arg(long, value_name = "K", value_parser = clap::value_parser!(u32).range(1..=64))]
    spatial_pool: Option<u32>,
    /// Also store this adaptor's vectors (`siglip2-g`: what `search --text`
    /// compares with; with --spatial-pool its patch grid too, for where a text
    /// matches). SQLite indexes only.
    #[arg(long)]
    adaptor: Option<String>,
    /// The torch.hub checkpoint with the adaptor heads; by default the one
    /// `*.pth.tar` in the model's folder.
    #[arg(long, requires = "adaptor")]
    adaptor_checkpoint: Option<PathBuf>,
    /// Near-duplicate suppression: a frame whose summary has at least this
    /// cosine with the source's last stored row extends that row's time range
    /// instead of adding one (fixed cameras repeat the same picture); 0 = off.
    #[arg(long, default_value_t = DEFAULT_DEDUP_THRESHOLD, value_parser = unit_interval)]
    dedup_threshold: f64,
    /// Longest side of the JPEG thumbnail stored with each row (what `serve`
    /// shows).
    #[arg(long, default_value_t = DEFAULT_THUMBNAIL_SIZE,
          value_parser = clap::value_parser!(u32).range(16..=4096))]
    thumbnail_size: u32,
    /// Store no thumbnails (a smaller index).
    #[arg(long)]
    no_thumbnails: bool,
}

/// `radio-embed index`'s near-duplicate threshold: high enough that a person
/// entering a fixed camera's view (a few percent of the picture) starts a new row,
/// low enough to merge sensor noise and compression changes of a still scene.
const DEFAULT_DEDUP_THRESHOLD: f64 = 0.98;

fn unit_interval(text: &str) -> Result<f64, String> {
    match text.parse::<f64>() {
        Ok(v) if (0.0..=1.0).contains(&v) => Ok(v),
        _ => Err(format!("`{text}` is not a cosine between 0 and 1")),
    }
}

pub(crate) fn init() -> anyhow::Result<()> {
    gst::init()?;
    gstradio::plugin_register_static()?;
    Ok(())
}

/// A file path or URI as a URI.
pub(crate) fn to_uri(input: &str) -> anyhow::Result<String> {
    if input.contains("://") {
        return Ok(input.to_string());
    }
    let path = Path::new(input)
        .canonicalize()
        .with_context(|| format!("cannot read {input}"))?;
    Ok(glib::filename_to_uri(&path, None)
        .with_context(|| input.to_string())?
        .to_string())
}

/// Local model folders are stored absolute, so a search from elsewhere finds them.
fn model_id(model: &str) -> String {
    let path = Path::new(model);
    match path.is_dir().then(|| path.canonicalize()) {
        Some(Ok(abs)) => abs.display().to_string(),
        _ => model.to_string(),
    }
}

pub(crate) fn bus_error(msg: &gst::Message) -> Option<String> {
    match msg.view() {
        gst::MessageView::Error(e) => Some(format!(
            "{}{}",
            e.error(),
            e.debug().map(|d| format!(" ({d})")).unwrap_or_default()
        )),
        _ => None,
    }
}

pub(crate) fn hms(ns: u64) -> String {
    let ms = ns / 1_000_000;
    format!(
        "{:02}:{:02}:{:02}.{:03}",
        ms / 3_600_000,
        ms / 60_000 % 60,
        ms / 1000 % 60,
        ms % 1000
    )
}

impl Index {
    /// Embeds every input into the index at `db`.
    pub fn run(self) -> anyhow::Result<()> {
        init()?;
        // One load of the weights for all inputs, though each has its own pipeline.
        let _keep = gstradio::model_store::keep_loaded();
        if self.fps.is_nan() || self.fps <= 0.0 {
            bail!("--fps must be positive");
        }
        let settings = IndexSettings {
            model: model_id(&self.model),
            device: self.device.clone(),
            resolution: self.resolution,
            transaction_rows: self.transaction_rows,
            spatial_pool: self.spatial_pool,
            rate: gst::Fraction::approximate_f64(self.fps).context("--fps is out of range")?,
            dedup_threshold: self.dedup_threshold,
            thumbnail_size: (!self.no_thumbnails).then_some(self.thumbnail_size),
            adaptor: self.adaptor.clone().map(|name| {
                let checkpoint = self.adaptor_checkpoint.as_ref();
                (name, checkpoint.map(|p| p.display().to_string()))
            }),
        };
        let db = self.db.display().to_string();
        let started = Instant::now();
        let (mut total, mut stored) = (0u64, 0u64);
        for input in &self.inputs {
            let uri = to_uri(input)?;
            let pipeline = pipeline::index(&uri, &db, &settings)?;
            total += run_with_progress(&pipeline, input)?;
            stored += index::count_rows(&self.db, Some(&uri))?;
        }
        let secs = started.elapsed().as_secs_f64();
        println!(
            "indexed {total} frames from {} source(s) into {db} in {secs:.1} s ({:.1} frames/s); \
             the index holds {} rows",
            self.inputs.len(),
            total as f64 / secs,
            index::count_rows(&self.db, None)?
        );
        if self.dedup_threshold > 0.0 && total > 0 {
            let merged = total.saturating_sub(stored);
            println!(
                "near-duplicates (cosine >= {}): {stored} rows for {total} frames, {merged} merged \
                 ({:.0} % fewer rows)",
                self.dedup_threshold,
                100.0 * merged as f64 / total as f64
            );
        }
        Ok(())
    }
}

/// Plays a pipeline to EOS, printing position / duration and frames/s on stderr.
fn run_with_progress(pipeline: &gst::Pipeline, name: &str) -> anyhow::Result<u64> {
    let embed = pipeline
        .by_name("embed")
        .context("no radioembed in pipeline")?;
    let bus = pipeline.bus().context("pipeline without bus")?;
    if pipeline.set_state(gst::State::Playing).is_err() {
        bail!(pop_error(&bus).unwrap_or_else(|| format!("{name}: cannot start")));
    }
    let started = Instant::now();
    let frames = || {
        embed
            .property::<gst::Structure>("stats")
            .get::<u64>("frames-embedded")
            .unwrap_or(0)
    };
    let result = loop {
        if let Some(msg) = bus.timed_pop_filtered(
            gst::ClockTime::from_mseconds(250),
            &[gst::MessageType::Eos, gst::MessageType::Error],
        ) {
            break match bus_error(&msg) {
                Some(err) => Err(anyhow::anyhow!("{name}: {err}")),
                None => Ok(frames()),
            };
        }
        let pos = pipeline.query_position::<gst::ClockTime>();
        let dur = pipeline.query_duration::<gst::ClockTime>();
        if let (Some(pos), Some(dur)) = (pos, dur) {
            let done = frames();
            eprint!(
                "\r{name}: {} / {} ({:3.0} %), {done} frames, {:.1} frames/s   ",
                hms(pos.nseconds()),
                hms(dur.nseconds()),
                100.0 * pos.nseconds() as f64 / dur.nseconds().max(1) as f64,
                done as f64 / started.elapsed().as_secs_f64().max(1e-3)
            );
        }
    };
    eprintln!();
    pipeline
        .set_state(gst::State::Null)
        .with_context(|| format!("{name}: cannot stop"))?;
    result
}

/// Waits for the pipeline to preroll (the model loads meanwhile): its
/// ASYNC_DONE, or the error that stops it.
pub(crate) fn preroll(bus: &gst::Bus) -> Result<(), String> {
    let msg = bus.timed_pop_filtered(
        gst::ClockTime::from_seconds(600),
        &[gst::MessageType::AsyncDone, gst::MessageType::Error],
    );
    match msg {
        Some(msg) => bus_error(&msg).map_or(Ok(()), Err),
        None => Err("the query pipeline did not preroll in 10 minutes".into()),
    }
}

pub(crate) fn pop_error(bus: &gst::Bus) -> Option<String> {
    bus.timed_pop_filtered(gst::ClockTime::from_seconds(1), &[gst::MessageType::Error])
        .and_then(|m| bus_error(&m))
}
