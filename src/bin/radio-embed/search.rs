// SPDX-License-Identifier: MPL-2.0
//! `radio-embed search`, and the ranking that `serve` shares with it: query
//! embedding, frames or moments, and the JSON both return.

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use anyhow::{Context, bail};
use clap::Args;
use gst::prelude::*;
use gstradio::index::{self, AdaptorVectors, Hit, Moment, ObjectHit, PatchHit};
use gstradio::meta::{Embedding, RegionKind};
use gstradio::radioembed::Outputs;
use gstradio::text::{DEFAULT_TEXT_MODEL, TEXT_ADAPTOR, TextEncoder};

use crate::args::resolve_text_model;
use crate::pipeline::{self, QuerySource};
use crate::video_index::{hms, init, pop_error, preroll, to_uri};

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
    /// adaptor's grid. With --objects, compared with the objects' siglip2-g
    /// vectors (radioembed adaptor=siglip2-g with roi-mode).
    #[arg(long, conflicts_with = "frame")]
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
    /// taken as the object, a query text is compared with each object's
    /// siglip2-g vector.
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
    /// The filter these arguments describe.
    pub fn filter(&self) -> index::SearchFilter {
        index::SearchFilter {
            source: self.source.clone(),
            after_ns: self.after,
            before_ns: self.before,
            min_score: self.min_score,
        }
    }
}

pub(crate) fn source_glob(text: &str) -> Result<glob::Pattern, String> {
    glob::Pattern::new(text).map_err(|e| format!("`{text}` is not a glob: {e}"))
}

/// Seconds (`12.5`) or `[HH:]MM:SS[.mmm]` as nanoseconds.
pub(crate) fn stream_time(text: &str) -> Result<u64, String> {
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

/// Parses VIDEO@SECONDS.
fn video_at(text: &str) -> Result<(String, f64), String> {
    text.rsplit_once('@')
        .and_then(|(v, s)| Some((v.to_string(), s.parse::<f64>().ok()?)))
        .ok_or_else(|| format!("`{text}` is not VIDEO@SECONDS"))
}

impl Search {
    /// Embeds the query with the index's model and input size and prints the top k.
    pub fn run(self) -> anyhow::Result<()> {
        let search = FrameSearch {
            k: self.k,
            frames: self.frames,
            filter: self.filter.filter(),
        };
        if let Some(text) = &self.text {
            let of = if self.objects {
                AdaptorVectors::Objects
            } else {
                AdaptorVectors::Frames
            };
            // Refused before the text model loads: an index without the vectors.
            index::require_adaptor(&self.db, TEXT_ADAPTOR, of)?;
            let query = embed_text(&load_text_encoder(&self.text_model)?, text)?;
            if of == AdaptorVectors::Objects {
                let hits = index::search_object_adaptor(
                    &self.db,
                    TEXT_ADAPTOR,
                    &query,
                    self.k,
                    threads(),
                    &search.filter,
                )?;
                print_object_hits(&hits, self.json);
                return Ok(());
            }
            return search.rank_text(&self.db, &query)?.print(self.json);
        }
        init()?;
        let settings = index::read_settings(&self.db)?;
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
        if self.objects {
            let kind = index::object_kind(&self.db)?.with_context(|| {
                format!(
                    "{} holds no objects; index into SQLite with radioembed roi-mode=pool or \
                     crop on frames that carry GstVideoRegionOfInterestMeta",
                    self.db.display()
                )
            })?;
            let outputs = match kind {
                RegionKind::Pool => Outputs::Spatial,
                RegionKind::Crop => Outputs::Summary,
            };
            let query = object_query(embed(&settings, source, seek, outputs)?, kind)?;
            let hits = index::search_objects(&self.db, &query, self.k, threads(), &search.filter)?;
            print_object_hits(&hits, self.json);
            return Ok(());
        }
        let embedding = embed(&settings, source, seek, Outputs::Summary)?;
        let query = summary_of(embedding, &settings)?;
        search.rank(&self.db, &query)?.print(self.json)
    }
}

/// How frames are ranked, by `search` and by `serve`'s API alike.
#[derive(Debug, Clone, Default)]
pub struct FrameSearch {
    /// Number of results.
    pub k: usize,
    /// One result per frame instead of moments.
    pub frames: bool,
    /// Which rows may be results.
    pub filter: index::SearchFilter,
}

impl FrameSearch {
    /// Hits to fetch: `k`, or enough to form `k` moments.
    fn candidates(&self) -> usize {
        if self.frames {
            self.k
        } else {
            self.k.saturating_mul(CANDIDATES_PER_MOMENT)
        }
    }

    /// The frames of `db` most like `query`, a summary in the index's space.
    pub fn rank(&self, db: &Path, query: &[f32]) -> anyhow::Result<Ranked> {
        let hits = index::search_filtered(db, query, self.candidates(), threads(), &self.filter)?;
        Ok(self.merge(hits.into_iter().map(|h| (h, None)).collect()))
    }

    /// The frames of `db` whose siglip2-g summary is most like `query`, a
    /// text's embedding; with the best-matching patch when the index has the
    /// adaptor's grid.
    pub fn rank_text(&self, db: &Path, query: &[f32]) -> anyhow::Result<Ranked> {
        let hits = index::search_adaptor(
            db,
            TEXT_ADAPTOR,
            query,
            self.candidates(),
            threads(),
            &self.filter,
        )?;
        Ok(self.merge(hits.into_iter().map(|h| (h.frame, h.best_patch)).collect()))
    }

    /// The hits as asked: as they are, or merged into `k` moments, each with
    /// its best frame's patch.
    fn merge(&self, hits: Vec<(Hit, Option<PatchHit>)>) -> Ranked {
        if self.frames {
            return Ranked::Frames(hits);
        }
        let patches: HashMap<(String, u64), PatchHit> = hits
            .iter()
            .filter_map(|(h, p)| Some(((h.source.clone(), h.frame_index), (*p)?)))
            .collect();
        let mut moments = index::moments(hits.into_iter().map(|(h, _)| h).collect());
        moments.truncate(self.k);
        Ranked::Moments(
            moments
                .into_iter()
                .map(|m| {
                    let patch = patches.get(&(m.best.source.clone(), m.best.frame_index));
                    (m, patch.copied())
                })
                .collect(),
        )
    }
}

/// Ranked frames, as `search` prints them and `serve` returns them.
pub enum Ranked {
    /// One result per frame (`--frames`), with its best patch if known.
    Frames(Vec<(Hit, Option<PatchHit>)>),
    /// Hits merged into moments, with their best frame's best patch if known.
    Moments(Vec<(Moment, Option<PatchHit>)>),
}

impl Ranked {
    /// The JSON array `search --json` prints.
    pub fn json(&self) -> Vec<serde_json::Value> {
        match self {
            Ranked::Frames(hits) => hits.iter().map(|(h, p)| hit_json(h, *p)).collect(),
            Ranked::Moments(moments) => moments.iter().map(|(m, p)| moment_json(m, *p)).collect(),
        }
    }

    /// Prints the JSON array, or a line per result.
    fn print(&self, json: bool) -> anyhow::Result<()> {
        if json {
            println!("{}", serde_json::Value::Array(self.json()));
            return Ok(());
        }
        match self {
            Ranked::Frames(hits) => {
                for (h, patch) in hits {
                    let patch = patch_text(*patch);
                    println!("{:.4}  {}  {}{patch}", h.score, time_of(h.pts_ns), h.source);
                }
            }
            Ranked::Moments(moments) => {
                for (m, patch) in moments {
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
        Ok(())
    }
}

/// Threads a search scans with: all the machine has.
fn threads() -> usize {
    std::thread::available_parallelism().map_or(2, |n| n.get())
}

/// Embeds a query frame as the index's frames were embedded: same model and
/// input size.
fn embed(
    settings: &index::IndexSettings,
    source: QuerySource,
    seek: Option<gst::ClockTime>,
    outputs: Outputs,
) -> anyhow::Result<Embedding> {
    let size = settings
        .input
        .split_once('x')
        .and_then(|(w, h)| Some((w.parse::<u32>().ok()?, h.parse::<u32>().ok()?)))
        .with_context(|| format!("index input size `{}` is malformed", settings.input))?;
    let pipeline = pipeline::query(source, &settings.model, size, outputs)?;
    embed_query(pipeline, seek)
}

/// The summary of a query frame, checked against the index's width.
fn summary_of(embedding: Embedding, settings: &index::IndexSettings) -> anyhow::Result<Vec<f32>> {
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
    Ok(query)
}

/// The summary of an image file (PNG, JPEG, ...) embedded as the index at
/// `db` embeds frames.
pub fn embed_image(db: &Path, image: &Path) -> anyhow::Result<Vec<f32>> {
    let settings = index::read_settings(db)?;
    let embedding = embed(&settings, QuerySource::Image(image), None, Outputs::Summary)?;
    summary_of(embedding, &settings)
}

/// The SigLIP text tower of `model` (a folder, or a repo id in or downloaded
/// into the Hugging Face cache).
pub fn load_text_encoder(model: &str) -> anyhow::Result<TextEncoder> {
    let folder = resolve_text_model(model)?;
    TextEncoder::load(&folder, &candle_core::Device::Cpu, candle_core::DType::F32)
        .with_context(|| format!("cannot load text model {model}"))
}

/// A text's normalized embedding, in the siglip2-g adaptor's space.
pub fn embed_text(encoder: &TextEncoder, text: &str) -> anyhow::Result<Vec<f32>> {
    Ok(encoder
        .embed(&[text])?
        .pop()
        .context("no embedding for the text")?
        .normalized)
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
