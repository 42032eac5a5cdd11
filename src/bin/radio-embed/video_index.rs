// SPDX-License-Identifier: MPL-2.0
//! `radio-embed index` and `radio-embed search`: GStreamer pipelines around
//! radioembed and radioindexsink, with progress and result printing.

use std::path::{Path, PathBuf};
use std::time::Instant;

use anyhow::{Context, bail};
use clap::Args;
use gst::prelude::*;
use gstradio::index::{self, AdaptorHit, Hit, ObjectHit};
use gstradio::meta::{Embedding, RegionKind};
use gstradio::model_store::locate_text_model;
use gstradio::radioembed::{DEFAULT_DEVICE, DEFAULT_MODEL, DEFAULT_RESOLUTION, Outputs};
use gstradio::radioindexsink::{DEFAULT_THUMBNAIL_SIZE, DEFAULT_TRANSACTION_ROWS};
use gstradio::text::{DEFAULT_TEXT_MODEL, TEXT_ADAPTOR, TextEncoder};

use crate::pipeline::{self, IndexSettings, QuerySource};

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

/// `radio-embed search`.
#[derive(Debug, Args)]
pub struct Search {
    /// Index file made by `radio-embed index`.
    #[arg(long)]
    db: PathBuf,
    /// Query image (PNG/JPEG).
    #[arg(long, conflicts_with_all = ["frame", "text"], required_unless_present_any = ["frame", "text"])]
    image: Option<PathBuf>,
    /// Query text ("a red car"), embedded by the SigLIP text tower and compared
    /// with the frames' siglip2-g vectors (an index built with --adaptor
    /// siglip2-g); prints the best-matching patch too when the index has the
    /// adaptor's grid.
    #[arg(long, conflicts_with_all = ["frame", "objects"])]
    text: Option<String>,
    /// The SigLIP text model for --text: a folder or a repo id in the
    /// Hugging Face cache.
    #[arg(long, default_value = DEFAULT_TEXT_MODEL)]
    text_model: String,
    /// Query frame as VIDEO@SECONDS.
    #[arg(long, value_parser = video_at)]
    frame: Option<(String, f64)>,
    /// Number of results.
    #[arg(short, default_value_t = 10)]
    k: usize,
    /// Print a JSON array instead of a table.
    #[arg(long)]
    json: bool,
    /// Search the objects the index keeps (regions embedded by radioembed
    /// roi-mode, SQLite indexes) instead of whole frames; the query image is
    /// taken as the object.
    #[arg(long)]
    objects: bool,
    /// One result per matching frame; by default hits of one source on
    /// consecutive indexed frames merge into one moment (start, end, best frame).
    #[arg(long)]
    frames: bool,
    #[command(flatten)]
    filter: FilterArgs,
}

/// The filters of `radio-embed search`.
#[derive(Debug, Args)]
pub struct FilterArgs {
    /// Only sources matching this glob (`*`, `?`, `[...]`), as the index names them
    /// (file URIs for `radio-embed index`): `--source '*gate*'`.
    #[arg(long, value_name = "GLOB", value_parser = source_glob)]
    source: Option<glob::Pattern>,
    /// Only frames at or after this stream time (seconds or HH:MM:SS[.mmm]).
    #[arg(long, value_name = "TIME", value_parser = stream_time)]
    after: Option<u64>,
    /// Only frames before this stream time (seconds or HH:MM:SS[.mmm]).
    #[arg(long, value_name = "TIME", value_parser = stream_time)]
    before: Option<u64>,
    /// Only hits scoring at least this cosine.
    #[arg(long, value_name = "COSINE")]
    min_score: Option<f32>,
}

impl FilterArgs {
    fn filter(&self) -> index::SearchFilter {
        index::SearchFilter {
            source: self.source.clone(),
            after_ns: self.after,
            before_ns: self.before,
            min_score: self.min_score,
        }
    }
}

fn source_glob(text: &str) -> Result<glob::Pattern, String> {
    glob::Pattern::new(text).map_err(|e| format!("`{text}` is not a glob: {e}"))
}

/// Seconds (`12.5`) or `[HH:]MM:SS[.mmm]` as nanoseconds.
fn stream_time(text: &str) -> Result<u64, String> {
    let fail = || format!("`{text}` is not a time: give seconds (12.5) or HH:MM:SS[.mmm]");
    let seconds = text
        .split(':')
        .try_fold(0f64, |total, part| {
            Ok::<_, ()>(total * 60.0 + part.parse::<f64>().map_err(|_| ())?)
        })
        .map_err(|()| fail())?;
    if !seconds.is_finite() || seconds < 0.0 || text.split(':').count() > 3 {
        return Err(fail());
    }
    Ok((seconds * 1e9).round() as u64)
}

/// Candidates fetched per result when hits merge into moments: a moment of
/// many frames takes that many hits.
const CANDIDATES_PER_MOMENT: usize = 20;

fn init() -> anyhow::Result<()> {
    gst::init()?;
    gstradio::plugin_register_static()?;
    Ok(())
}

/// Parses VIDEO@SECONDS.
fn video_at(text: &str) -> Result<(String, f64), String> {
    text.rsplit_once('@')
        .and_then(|(v, s)| Some((v.to_string(), s.parse::<f64>().ok()?)))
        .ok_or_else(|| format!("`{text}` is not VIDEO@SECONDS"))
}

/// A file path or URI as a URI.
fn to_uri(input: &str) -> anyhow::Result<String> {
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

fn bus_error(msg: &gst::Message) -> Option<String> {
    match msg.view() {
        gst::MessageView::Error(e) => Some(format!(
            "{}{}",
            e.error(),
            e.debug().map(|d| format!(" ({d})")).unwrap_or_default()
        )),
        _ => None,
    }
}

fn hms(ns: u64) -> String {
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
fn preroll(bus: &gst::Bus) -> Result<(), String> {
    let msg = bus.timed_pop_filtered(
        gst::ClockTime::from_seconds(600),
        &[gst::MessageType::AsyncDone, gst::MessageType::Error],
    );
    match msg {
        Some(msg) => bus_error(&msg).map_or(Ok(()), Err),
        None => Err("the query pipeline did not preroll in 10 minutes".into()),
    }
}

fn pop_error(bus: &gst::Bus) -> Option<String> {
    bus.timed_pop_filtered(gst::ClockTime::from_seconds(1), &[gst::MessageType::Error])
        .and_then(|m| bus_error(&m))
}

impl Search {
    /// Embeds the query with the index's model and input size and prints the top k.
    pub fn run(self) -> anyhow::Result<()> {
        if let Some(text) = &self.text {
            return self.run_text(text);
        }
        init()?;
        let settings = index::read_settings(&self.db)?;
        let size = settings
            .input
            .split_once('x')
            .and_then(|(w, h)| Some((w.parse::<u32>().ok()?, h.parse::<u32>().ok()?)))
            .with_context(|| format!("index input size `{}` is malformed", settings.input))?;
        let (source, seek, uri);
        match (&self.image, &self.frame) {
            (Some(image), _) => (source, seek) = (QuerySource::Image(image), None),
            (None, Some((video, secs))) => {
                uri = to_uri(video)?;
                source = QuerySource::Video(&uri);
                seek = Some(gst::ClockTime::from_nseconds((secs * 1e9) as u64));
            }
            (None, None) => bail!("give --image FILE or --frame VIDEO@SECONDS"),
        }
        let kind = if self.objects {
            let kind = index::object_kind(&self.db)?;
            Some(kind.with_context(|| {
                format!(
                    "{} holds no objects; index into SQLite with radioembed roi-mode=pool or \
                     crop on frames that carry GstVideoRegionOfInterestMeta",
                    self.db.display()
                )
            })?)
        } else {
            None
        };
        let outputs = match kind {
            Some(RegionKind::Pool) => Outputs::Spatial,
            _ => Outputs::Summary,
        };
        let pipeline = pipeline::query(source, &settings.model, size, outputs)?;
        let embedding = embed_query(pipeline, seek)?;
        let threads = std::thread::available_parallelism().map_or(2, |n| n.get());
        if let Some(kind) = kind {
            let query = object_query(embedding, kind)?;
            let filter = self.filter.filter();
            let hits = index::search_objects(&self.db, &query, self.k, threads, &filter)?;
            print_object_hits(&hits, self.json);
            return Ok(());
        }
        let query = embedding
            .summary
            .context("the query frame has no summary")?;
        if query.len() != settings.summary_dim {
            bail!(
                "the query has {} values but the index holds {}; was the index built with \
                 another model?",
                query.len(),
                settings.summary_dim
            );
        }
        let filter = self.filter.filter();
        let hits = index::search_filtered(&self.db, &query, self.candidates(), threads, &filter)?;
        if self.frames {
            print_hits(&hits, self.json);
        } else {
            let mut moments = index::moments(hits);
            moments.truncate(self.k);
            print_moments(&moments, self.json);
        }
        Ok(())
    }

    /// Hits to fetch: `k`, or enough to form `k` moments.
    fn candidates(&self) -> usize {
        if self.frames {
            self.k
        } else {
            self.k.saturating_mul(CANDIDATES_PER_MOMENT)
        }
    }
}

impl Search {
    /// `--text`: embeds the text and ranks the frames by their siglip2-g summary.
    fn run_text(&self, text: &str) -> anyhow::Result<()> {
        // Refused before the text model loads: an index without the vectors.
        index::require_adaptor(&self.db, TEXT_ADAPTOR)?;
        let folder = locate_text_model(&self.text_model)?;
        let encoder =
            TextEncoder::load(&folder, &candle_core::Device::Cpu, candle_core::DType::F32)
                .with_context(|| format!("cannot load text model {}", self.text_model))?;
        let query = encoder
            .embed(&[text])?
            .pop()
            .context("no embedding for the text")?
            .normalized;
        let threads = std::thread::available_parallelism().map_or(2, |n| n.get());
        let filter = self.filter.filter();
        let hits = index::search_adaptor(
            &self.db,
            TEXT_ADAPTOR,
            &query,
            self.candidates(),
            threads,
            &filter,
        )?;
        if self.frames {
            print_text_hits(&hits, self.json);
        } else {
            // Each moment keeps the best patch of its best frame.
            let patches: std::collections::HashMap<(String, u64), index::PatchHit> = hits
                .iter()
                .filter_map(|h| {
                    Some(((h.frame.source.clone(), h.frame.frame_index), h.best_patch?))
                })
                .collect();
            let mut moments = index::moments(hits.into_iter().map(|h| h.frame).collect());
            moments.truncate(self.k);
            let best_patches: Vec<Option<index::PatchHit>> = moments
                .iter()
                .map(|m| {
                    patches
                        .get(&(m.best.source.clone(), m.best.frame_index))
                        .copied()
                })
                .collect();
            print_moments_with(&moments, &best_patches, self.json);
        }
        Ok(())
    }
}

/// The vector an object of `kind` is compared with: the query's summary
/// (`crop`), or the mean of its patch features (`pool`: the query image is
/// one box over the whole frame).
fn object_query(query: Embedding, kind: RegionKind) -> anyhow::Result<Vec<f32>> {
    match kind {
        RegionKind::Crop => query.summary.context("the query frame has no summary"),
        RegionKind::Pool => {
            let grid = query
                .spatial
                .context("the query frame has no patch features")?;
            let dim = query.spatial_dim.max(1);
            let patches = (grid.len() / dim).max(1) as f32;
            let mut mean = vec![0f32; dim];
            for patch in grid.chunks_exact(dim) {
                mean.iter_mut()
                    .zip(patch)
                    .for_each(|(m, v)| *m += v / patches);
            }
            Ok(mean)
        }
    }
}

/// Prerolls a query pipeline (seeking first if asked) and returns its embeddings.
fn embed_query(pipeline: gst::Pipeline, seek: Option<gst::ClockTime>) -> anyhow::Result<Embedding> {
    let bus = pipeline.bus().context("pipeline without bus")?;
    let prerolled = if pipeline.set_state(gst::State::Paused).is_err() {
        Err(pop_error(&bus).unwrap_or_else(|| "query pipeline failed".into()))
    } else {
        preroll(&bus)
    };
    let sought = prerolled.and_then(|()| match seek {
        Some(at) => pipeline
            .seek_simple(gst::SeekFlags::FLUSH | gst::SeekFlags::ACCURATE, at)
            .map_err(|_| format!("cannot seek to {}", hms(at.nseconds())))
            .and_then(|()| preroll(&bus)),
        None => Ok(()),
    });
    if let Err(err) = sought {
        let _ = pipeline.set_state(gst::State::Null);
        bail!(err);
    }
    let sink = pipeline.by_name("sink").context("no appsink")?;
    let sample = sink.emit_by_name::<Option<gst::Sample>>("pull-preroll", &[]);
    let _ = pipeline.set_state(gst::State::Null);
    let buffer = sample
        .and_then(|s| s.buffer_owned())
        .context("the query produced no frame")?;
    Embedding::from_buffer(&buffer)?.context("the query frame was not embedded")
}

fn print_hits(hits: &[Hit], json: bool) {
    if json {
        let rows = hits.iter().map(|h| hit_json(h, None)).collect();
        println!("{}", serde_json::Value::Array(rows));
    } else {
        for h in hits {
            println!("{:.4}  {}  {}", h.score, time_of(h.pts_ns), h.source);
        }
    }
}

/// A hit as JSON: its frame, and its best patch when it has one.
fn hit_json(hit: &Hit, patch: Option<index::PatchHit>) -> serde_json::Value {
    let mut row = serde_json::json!({
        "source": hit.source,
        "pts_ns": hit.pts_ns,
        "timestamp": hit.pts_ns.map(hms),
        "frame_index": hit.frame_index,
        "score": hit.score,
    });
    if let Some(p) = patch {
        let (x0, y0, x1, y1) = p.bounds();
        row["patch"] = serde_json::json!({
            "row": p.row, "column": p.column,
            "grid": [p.grid.0, p.grid.1],
            "box": [x0, y0, x1, y1],
            "score": p.score,
        });
    }
    row
}

/// A moment as JSON: its best frame's fields, its time range and size.
fn moment_json(moment: &index::Moment, patch: Option<index::PatchHit>) -> serde_json::Value {
    let mut row = hit_json(&moment.best, patch);
    row["start_ns"] = moment.start_ns.into();
    row["end_ns"] = moment.end_ns.into();
    row["frames"] = moment.frames.into();
    row
}

fn time_of(pts_ns: Option<u64>) -> String {
    pts_ns.map(hms).unwrap_or_else(|| "--:--:--.---".into())
}

fn patch_text(patch: Option<index::PatchHit>) -> String {
    patch.map_or(String::new(), |p| {
        let (x0, y0, x1, y1) = p.bounds();
        format!(
            "  best patch {x0:.2},{y0:.2}-{x1:.2},{y1:.2} ({:.4})",
            p.score
        )
    })
}

fn print_text_hits(hits: &[AdaptorHit], json: bool) {
    if json {
        let rows = hits
            .iter()
            .map(|h| hit_json(&h.frame, h.best_patch))
            .collect();
        println!("{}", serde_json::Value::Array(rows));
    } else {
        for h in hits {
            let (f, patch) = (&h.frame, patch_text(h.best_patch));
            println!("{:.4}  {}  {}{patch}", f.score, time_of(f.pts_ns), f.source);
        }
    }
}

fn print_moments(moments: &[index::Moment], json: bool) {
    print_moments_with(moments, &vec![None; moments.len()], json);
}

fn print_moments_with(moments: &[index::Moment], patches: &[Option<index::PatchHit>], json: bool) {
    if json {
        let rows = moments
            .iter()
            .zip(patches)
            .map(|(m, p)| moment_json(m, *p))
            .collect();
        println!("{}", serde_json::Value::Array(rows));
    } else {
        for (m, patch) in moments.iter().zip(patches) {
            println!(
                "{:.4}  {} - {} (best {}, {} frames)  {}{}",
                m.best.score,
                time_of(m.start_ns),
                time_of(m.end_ns),
                time_of(m.best.pts_ns),
                m.frames,
                m.best.source,
                patch_text(*patch)
            );
        }
    }
}

fn print_object_hits(hits: &[ObjectHit], json: bool) {
    if json {
        let rows: Vec<serde_json::Value> = hits
            .iter()
            .map(|h| {
                let (x, y, width, height) = h.rect;
                serde_json::json!({
                    "source": h.frame.source,
                    "pts_ns": h.frame.pts_ns,
                    "timestamp": h.frame.pts_ns.map(hms),
                    "score": h.frame.score,
                    "type": h.roi_type,
                    "box": { "x": x, "y": y, "width": width, "height": height },
                })
            })
            .collect();
        println!("{}", serde_json::Value::Array(rows));
    } else {
        for h in hits {
            let (x, y, w, hh) = h.rect;
            println!(
                "{:.4}  {}  {}  {} {w}x{hh}+{x}+{y}",
                h.frame.score,
                h.frame
                    .pts_ns
                    .map(hms)
                    .unwrap_or_else(|| "--:--:--.---".into()),
                h.frame.source,
                h.roi_type,
            );
        }
    }
}
