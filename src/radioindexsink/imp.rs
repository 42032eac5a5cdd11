// SPDX-License-Identifier: MPL-2.0
//! The `radioindexsink` GObject subclass.
//!
//! One run of the index writer per stream: opened at the stream's first
//! embedded frame, completed at its EOS (or when a STREAM_START begins another
//! stream), abandoned on a stop before that, so the index keeps its previous
//! rows of that source. Rows carry stream time, so frames seen again after a
//! seek back are not stored twice. `settings` and `state` are never held together.

use std::sync::{LazyLock, Mutex, MutexGuard};

use gst::glib;
use gst::prelude::*;
use gst::subclass::prelude::*;
use gst_base::prelude::*;
use gst_base::subclass::prelude::*;

use super::thumbnail::ThumbnailEncoder;
use super::{DEFAULT_THUMBNAIL_SIZE, DEFAULT_TRANSACTION_ROWS};
use crate::index::{
    AdaptorRow, IndexError, IndexSettings, IndexWriter, ObjectRow, Row, StoreFormat,
};
use crate::meta::{Embedding, regions};

pub(super) static CAT: LazyLock<gst::DebugCategory> = LazyLock::new(|| {
    gst::DebugCategory::new(
        "radioindexsink",
        gst::DebugColorFlags::empty(),
        Some("Embedding index sink"),
    )
});

#[derive(Debug, Clone)]
struct Settings {
    location: Option<String>,
    source_id: Option<String>,
    transaction_rows: u32,
    spatial: bool,
    /// Cosine at or above which a frame extends the last row; 0: off.
    dedup_threshold: f64,
    thumbnails: bool,
    thumbnail_size: u32,
}

impl Default for Settings {
    fn default() -> Self {
        Self {
            location: None,
            source_id: None,
            transaction_rows: DEFAULT_TRANSACTION_ROWS,
            spatial: false,
            dedup_threshold: 0.0,
            thumbnails: false,
            thumbnail_size: DEFAULT_THUMBNAIL_SIZE,
        }
    }
}

#[derive(Default)]
struct State {
    writer: Option<IndexWriter>,
    /// The frames' layout, when the caps are raw video.
    video: Option<gst_video::VideoInfo>,
    /// With `thumbnails`, the open run's encoder.
    thumbnails: Option<ThumbnailEncoder>,
    stream_id: Option<String>,
    /// The warnings already posted about what this index drops.
    warned: std::collections::HashSet<&'static str>,
}

/// The element.
#[derive(Default)]
pub struct RadioIndexSink {
    settings: Mutex<Settings>,
    state: Mutex<State>,
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

impl RadioIndexSink {
    /// The frame's regions that carry a vector, as the index keeps them; says
    /// once when the index (Parquet) does not keep them.
    fn objects(&self, buffer: &gst::BufferRef, state: &mut State) -> Vec<ObjectRow> {
        let found = regions(buffer).unwrap_or_else(|err| {
            gst::warning!(CAT, imp = self, "unreadable region vector: {err}");
            Vec::new()
        });
        if !found.is_empty() {
            self.warn_unless_stored(
                state,
                "frames carry object vectors, but a Parquet index keeps frames only; index \
                 into *.sqlite to search objects",
            );
        }
        found
            .into_iter()
            .map(|r| ObjectRow {
                roi_type: r.roi_type,
                rect: r.rect,
                kind: r.kind,
                vector: r.vector,
                adaptors: r.adaptors,
            })
            .collect()
    }

    /// Posts `message` as a warning, once per stream and message, when the
    /// index (Parquet) does not keep objects and adaptor grids.
    fn warn_unless_stored(&self, state: &mut State, message: &'static str) {
        let stores = state
            .writer
            .as_ref()
            .is_some_and(IndexWriter::stores_objects);
        if !stores && state.warned.insert(message) {
            gst::element_imp_warning!(self, gst::ResourceError::Write, ("{message}"));
        }
    }

    /// The frame's adaptor vectors as the index keeps them (the patch grid only
    /// with `spatial`); says once when the index (Parquet) keeps no grids.
    fn adaptors(
        &self,
        embedding: &mut Embedding,
        spatial: bool,
        state: &mut State,
    ) -> Vec<AdaptorRow> {
        let found = std::mem::take(&mut embedding.adaptors);
        if spatial && found.iter().any(|a| a.spatial.is_some()) {
            self.warn_unless_stored(
                state,
                "frames carry adaptor grids, but a Parquet index keeps the adaptors' \
                 summaries only (text hits name no best patch); index into *.sqlite for them",
            );
        }
        let grid = embedding.grid;
        found
            .into_iter()
            .map(|a| AdaptorRow {
                name: a.name,
                summary: a.summary,
                spatial: a
                    .spatial
                    .filter(|_| spatial)
                    .map(|values| (values, grid, a.spatial_dim)),
            })
            .collect()
    }

    fn open_writer(
        &self,
        embedding: &Embedding,
        summary_dim: usize,
    ) -> Result<IndexWriter, gst::ErrorMessage> {
        let settings = lock(&self.settings).clone();
        let location = settings
            .location
            .ok_or_else(|| gst::error_msg!(gst::ResourceError::NotFound, ("no location set")))?;
        let source = settings
            .source_id
            .or_else(|| lock(&self.state).stream_id.clone())
            .unwrap_or_else(|| "unknown".into());
        let index = IndexSettings {
            model: embedding.model.clone(),
            input: format!("{}x{}", embedding.input_size.0, embedding.input_size.1),
            summary_dim,
        };
        gst::info!(CAT, imp = self, "indexing {source} into {location}");
        let writer = IndexWriter::open(
            location.as_ref(),
            &index,
            &source,
            settings.transaction_rows as usize,
        )
        .map_err(|e| gst::error_msg!(gst::ResourceError::OpenWrite, ("{}", e)))?;
        Ok(match settings.dedup_threshold {
            t if t > 0.0 => writer.dedup(t as f32),
            _ => writer,
        })
    }

    /// The open run's encoder of `size` thumbnails, for frames of raw video;
    /// says why there is none otherwise.
    fn thumbnail_encoder(&self, state: &State, size: u32) -> Option<ThumbnailEncoder> {
        let started = match state.video {
            Some(_) => ThumbnailEncoder::start(size, self.obj().upcast_ref())
                .map_err(|e| format!("cannot start the thumbnail encoder: {e}")),
            None => Err("the sink's caps are not raw video".to_string()),
        };
        started
            .inspect_err(|why| {
                gst::element_imp_warning!(
                    self,
                    gst::StreamError::Encode,
                    ("Frames are indexed without thumbnails"),
                    ["{why}"]
                );
            })
            .ok()
    }

    /// Completes the open run: its rows replace the source's old ones.
    fn finish(&self) -> Result<(), gst::ErrorMessage> {
        let writer = {
            let mut state = lock(&self.state);
            state.thumbnails = None;
            state.writer.take()
        };
        if let Some(writer) = writer {
            let merged = writer.merged_frames();
            let rows = writer
                .finish()
                .map_err(|e| gst::error_msg!(gst::ResourceError::Write, ("{}", e)))?;
            gst::info!(
                CAT,
                imp = self,
                "committed, {rows} rows in total, {merged} near-duplicate frames merged"
            );
        }
        Ok(())
    }

    /// A new stream begins: the previous one (if any) ended, so its run is
    /// complete; without a `source-id` the new stream is a new source.
    fn stream_start(&self, stream_id: &str) -> Result<(), gst::ErrorMessage> {
        let changed = lock(&self.state).stream_id.as_deref() != Some(stream_id);
        if changed {
            self.finish()?;
            lock(&self.state).stream_id = Some(stream_id.to_string());
        }
        Ok(())
    }

    /// The buffer's timestamp in stream time, as the index records it.
    fn stream_time(&self, buffer: &gst::BufferRef) -> Option<u64> {
        let pts = buffer.pts()?;
        let segment = self.obj().segment();
        let segment = segment.downcast_ref::<gst::ClockTime>()?;
        segment.to_stream_time(pts).map(|t| t.nseconds())
    }
}

#[glib::object_subclass]
impl ObjectSubclass for RadioIndexSink {
    const NAME: &'static str = "GstRadioIndexSink";
    type Type = super::RadioIndexSink;
    type ParentType = gst_base::BaseSink;
}

impl ObjectImpl for RadioIndexSink {
    fn properties() -> &'static [glib::ParamSpec] {
        static PROPERTIES: LazyLock<Vec<glib::ParamSpec>> = LazyLock::new(|| {
            vec![
                glib::ParamSpecString::builder("location")
                    .nick("Location")
                    .blurb("Index file: .sqlite (SQLite) or .parquet (Apache Parquet); created if missing")
                    .mutable_ready()
                    .build(),
                glib::ParamSpecString::builder("source-id")
                    .nick("Source id")
                    .blurb("Name of the indexed source (e.g. its URI); default: the stream id")
                    .mutable_ready()
                    .build(),
                glib::ParamSpecUInt::builder("transaction-rows")
                    .nick("Transaction rows")
                    .blurb(
                        "Rows per SQLite write transaction or per Parquet row group (the \
                         rows the sink holds in memory)",
                    )
                    .minimum(1)
                    .maximum(1_000_000)
                    .default_value(DEFAULT_TRANSACTION_ROWS)
                    .mutable_ready()
                    .build(),
                glib::ParamSpecBoolean::builder("spatial")
                    .nick("Spatial")
                    .blurb(
                        "Also store each frame's patch grid (as pooled by radioembed \
                         spatial-pool) in f16; search reads only the summaries",
                    )
                    .default_value(false)
                    .mutable_ready()
                    .build(),
                glib::ParamSpecDouble::builder("dedup-threshold")
                    .nick("Deduplication threshold")
                    .blurb(
                        "Near-duplicate suppression: a frame whose summary has at least \
                         this cosine with the last stored row of the source extends that \
                         row's time range (pts_end_ns) instead of adding a row; 0 = off \
                         (radio-embed index uses 0.98)",
                    )
                    .minimum(0.0)
                    .maximum(1.0)
                    .default_value(0.0)
                    .mutable_ready()
                    .build(),
                glib::ParamSpecBoolean::builder("thumbnails")
                    .nick("Thumbnails")
                    .blurb(
                        "Store a small JPEG of each stored row's frame in the index \
                         (radio-embed index turns this on)",
                    )
                    .default_value(false)
                    .mutable_ready()
                    .build(),
                glib::ParamSpecUInt::builder("thumbnail-size")
                    .nick("Thumbnail size")
                    .blurb("Longest side of the thumbnails in pixels (smaller frames keep their size)")
                    .minimum(16)
                    .maximum(4096)
                    .default_value(DEFAULT_THUMBNAIL_SIZE)
                    .mutable_ready()
                    .build(),
            ]
        });
        PROPERTIES.as_ref()
    }

    fn set_property(&self, _id: usize, value: &glib::Value, pspec: &glib::ParamSpec) {
        let mut s = lock(&self.settings);
        match pspec.name() {
            "location" => s.location = value.get().expect("type checked upstream"),
            "source-id" => s.source_id = value.get().expect("type checked upstream"),
            "transaction-rows" => s.transaction_rows = value.get().expect("type checked upstream"),
            "spatial" => s.spatial = value.get().expect("type checked upstream"),
            "dedup-threshold" => s.dedup_threshold = value.get().expect("type checked upstream"),
            "thumbnails" => s.thumbnails = value.get().expect("type checked upstream"),
            "thumbnail-size" => s.thumbnail_size = value.get().expect("type checked upstream"),
            other => unreachable!("unknown property {other}"),
        }
    }

    fn property(&self, _id: usize, pspec: &glib::ParamSpec) -> glib::Value {
        let s = lock(&self.settings);
        match pspec.name() {
            "location" => s.location.to_value(),
            "source-id" => s.source_id.to_value(),
            "transaction-rows" => s.transaction_rows.to_value(),
            "spatial" => s.spatial.to_value(),
            "dedup-threshold" => s.dedup_threshold.to_value(),
            "thumbnails" => s.thumbnails.to_value(),
            "thumbnail-size" => s.thumbnail_size.to_value(),
            other => unreachable!("unknown property {other}"),
        }
    }

    fn constructed(&self) {
        self.parent_constructed();
        // Indexing runs as fast as frames come; there is nothing to show in time.
        self.obj().set_sync(false);
    }
}

impl GstObjectImpl for RadioIndexSink {}

impl ElementImpl for RadioIndexSink {
    fn metadata() -> Option<&'static gst::subclass::ElementMetadata> {
        static METADATA: LazyLock<gst::subclass::ElementMetadata> = LazyLock::new(|| {
            gst::subclass::ElementMetadata::new(
                "C-RADIOv4 embedding index sink",
                "Sink/Analyzer/Video",
                "Writes the RadioEmbedMeta of each frame into a searchable index",
                "radioembed developers",
            )
        });
        Some(&*METADATA)
    }

    fn pad_templates() -> &'static [gst::PadTemplate] {
        static TEMPLATES: LazyLock<Vec<gst::PadTemplate>> = LazyLock::new(|| {
            vec![
                gst::PadTemplate::new(
                    "sink",
                    gst::PadDirection::Sink,
                    gst::PadPresence::Always,
                    &gst::Caps::new_any(),
                )
                .expect("valid template"),
            ]
        });
        TEMPLATES.as_ref()
    }
}

impl BaseSinkImpl for RadioIndexSink {
    fn start(&self) -> Result<(), gst::ErrorMessage> {
        let Some(location) = lock(&self.settings).location.clone() else {
            return Err(gst::error_msg!(
                gst::ResourceError::NotFound,
                ("radioindexsink needs a location (an .sqlite or .parquet file)")
            ));
        };
        StoreFormat::of(location.as_ref())
            .map_err(|e| gst::error_msg!(gst::ResourceError::Settings, ("{}", e)))?;
        *lock(&self.state) = State::default();
        Ok(())
    }

    fn set_caps(&self, caps: &gst::Caps) -> Result<(), gst::LoggableError> {
        lock(&self.state).video = gst_video::VideoInfo::from_caps(caps).ok();
        self.parent_set_caps(caps)
    }

    fn stop(&self) -> Result<(), gst::ErrorMessage> {
        // Stopped before EOS (an error, a stop): the run is incomplete.
        if lock(&self.state).writer.take().is_some() {
            gst::warning!(
                CAT,
                imp = self,
                "stopped before EOS: the index keeps its previous rows of this source"
            );
        }
        Ok(())
    }

    fn event(&self, event: gst::Event) -> bool {
        let done = match event.view() {
            gst::EventView::StreamStart(s) => self.stream_start(s.stream_id()),
            gst::EventView::Eos(_) => self.finish(),
            _ => Ok(()),
        };
        if let Err(message) = done {
            self.post_error_message(message);
            return false;
        }
        self.parent_event(event)
    }

    fn render(&self, buffer: &gst::Buffer) -> Result<gst::FlowSuccess, gst::FlowError> {
        let (spatial, thumbnail_size) = {
            let s = lock(&self.settings);
            (s.spatial, s.thumbnails.then_some(s.thumbnail_size))
        };
        let mut embedding = match Embedding::from_buffer(buffer) {
            Ok(Some(e)) => e,
            Ok(None) => return Ok(gst::FlowSuccess::Ok),
            Err(err) => {
                gst::element_imp_error!(self, gst::StreamError::Decode, ("{}", err));
                return Err(gst::FlowError::Error);
            }
        };
        let Some(summary) = embedding.summary.take() else {
            gst::element_imp_error!(
                self,
                gst::StreamError::Format,
                ("frames carry no summary vector: set radioembed outputs=summary or both")
            );
            return Err(gst::FlowError::Error);
        };
        let mut state = lock(&self.state);
        if state.writer.is_none() {
            drop(state);
            let writer = self
                .open_writer(&embedding, summary.len())
                .map_err(|message| {
                    self.post_error_message(message);
                    gst::FlowError::Error
                })?;
            state = lock(&self.state);
            state.writer = Some(writer);
            if let Some(size) = thumbnail_size {
                state.thumbnails = self.thumbnail_encoder(&state, size);
            }
        }
        let objects = self.objects(buffer, &mut state);
        let adaptors = self.adaptors(&mut embedding, spatial, &mut state);
        // The embedding's vectors move into the row uncopied.
        let row = Row {
            pts_ns: self.stream_time(buffer),
            pts_end_ns: None,
            frame_index: embedding.frame_index,
            input_size: embedding.input_size,
            summary,
            spatial: embedding
                .spatial
                .filter(|_| spatial)
                .map(|s| (s, embedding.grid, embedding.spatial_dim)),
            objects,
            adaptors,
            thumbnail: state
                .thumbnails
                .as_ref()
                .zip(state.video.clone())
                .map(|(encoder, info)| encoder.thumbnail(buffer.clone(), info)),
        };
        let writer = state.writer.as_mut().expect("opened above");
        writer.append(row).map(drop).map_err(|e| {
            match e {
                IndexError::InputSize { .. } => {
                    gst::element_imp_error!(self, gst::StreamError::Format, ("{}", e))
                }
                _ => gst::element_imp_error!(self, gst::ResourceError::Write, ("{}", e)),
            }
            gst::FlowError::Error
        })?;
        Ok(gst::FlowSuccess::Ok)
    }
}
