//! The `radioindexsink` GObject subclass.

use std::sync::{LazyLock, Mutex, MutexGuard};

use gst::glib;
use gst::prelude::*;
use gst::subclass::prelude::*;
use gst_base::prelude::*;
use gst_base::subclass::prelude::*;

use crate::index::{IndexSettings, IndexWriter, Row, StoreFormat};
use crate::meta::Embedding;

static CAT: LazyLock<gst::DebugCategory> = LazyLock::new(|| {
    gst::DebugCategory::new(
        "radioindexsink",
        gst::DebugColorFlags::empty(),
        Some("Embedding index sink"),
    )
});

const DEFAULT_TRANSACTION_ROWS: u32 = 256;

#[derive(Debug, Clone)]
struct Settings {
    location: Option<String>,
    source_id: Option<String>,
    transaction_rows: u32,
}

impl Default for Settings {
    fn default() -> Self {
        Self {
            location: None,
            source_id: None,
            transaction_rows: DEFAULT_TRANSACTION_ROWS,
        }
    }
}

#[derive(Default)]
struct State {
    writer: Option<IndexWriter>,
    stream_id: Option<String>,
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
        IndexWriter::open(
            location.as_ref(),
            &index,
            &source,
            settings.transaction_rows as usize,
        )
        .map_err(|e| gst::error_msg!(gst::ResourceError::OpenWrite, ("{}", e)))
    }

    fn finish(&self) -> Result<(), gst::ErrorMessage> {
        if let Some(writer) = lock(&self.state).writer.take() {
            let rows = writer
                .finish()
                .map_err(|e| gst::error_msg!(gst::ResourceError::Write, ("{}", e)))?;
            gst::info!(CAT, imp = self, "committed, {rows} rows in total");
        }
        Ok(())
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
                        "Rows per SQLite transaction (a crash loses at most these) or per \
                         Parquet row group",
                    )
                    .minimum(1)
                    .maximum(1_000_000)
                    .default_value(DEFAULT_TRANSACTION_ROWS)
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
            other => unreachable!("unknown property {other}"),
        }
    }

    fn property(&self, _id: usize, pspec: &glib::ParamSpec) -> glib::Value {
        let s = lock(&self.settings);
        match pspec.name() {
            "location" => s.location.to_value(),
            "source-id" => s.source_id.to_value(),
            "transaction-rows" => s.transaction_rows.to_value(),
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

    fn stop(&self) -> Result<(), gst::ErrorMessage> {
        self.finish()
    }

    fn event(&self, event: gst::Event) -> bool {
        match event.view() {
            gst::EventView::StreamStart(s) => {
                lock(&self.state).stream_id = Some(s.stream_id().to_string());
            }
            gst::EventView::Eos(_) => {
                if let Err(message) = self.finish() {
                    self.post_error_message(message);
                    return false;
                }
            }
            _ => (),
        }
        self.parent_event(event)
    }

    fn render(&self, buffer: &gst::Buffer) -> Result<gst::FlowSuccess, gst::FlowError> {
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
        }
        // The embedding's vectors move into the row uncopied.
        let row = Row {
            pts_ns: buffer.pts().map(|p| p.nseconds()),
            frame_index: embedding.frame_index,
            input_size: embedding.input_size,
            summary,
            spatial: embedding
                .spatial
                .map(|s| (s, embedding.grid, embedding.spatial_dim)),
        };
        let writer = state.writer.as_mut().expect("opened above");
        writer.append(row).map_err(|e| {
            gst::element_imp_error!(self, gst::ResourceError::Write, ("{}", e));
            gst::FlowError::Error
        })?;
        Ok(gst::FlowSuccess::Ok)
    }
}
