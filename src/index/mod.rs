// SPDX-License-Identifier: MPL-2.0
//! Frame-level video indexing: embedded frames into a store, and exact cosine
//! search over it.
//!
//! The store is picked by the file's extension:
//! - `.sqlite` (also `.sqlite3`, `.db`): an embedded SQLite database; a run's
//!   rows become visible together when it completes, several writers may share
//!   it;
//! - `.parquet`: an Apache Parquet file with the summary as a fixed-size list of
//!   float32, for DuckDB, Spark or LanceDB once an index outgrows one machine;
//!   it is written beside the old file and renamed over it when complete, so a
//!   crash leaves the previous index as it was.
//!
//! Both record the [`IndexSettings`] the vectors were made with, so that a query
//! is embedded the same way, and both replace a source's rows when it is indexed
//! again, only once the new run completed: an error, a kill or a stop before the
//! end leaves the index as it was. Patch grids, when stored, are f16. Search is
//! an exact scan split over threads.
//!
//! An SQLite index also keeps the frames' objects (regions with a vector,
//! from `radioembed roi-mode`): type, box and vector, searched on their own
//! with [`search_objects`]. A Parquet index keeps frames only.

mod filter;
mod parquet;
mod sqlite;
mod thumbnail;
mod topk;

pub use filter::{Moment, SearchFilter, moments};
pub use thumbnail::Thumbnail;

use std::collections::HashSet;
use std::path::Path;

use crate::meta::{MetaDtype, RegionAdaptor, RegionKind};

/// Everything that can go wrong with an index.
#[derive(Debug, thiserror::Error)]
pub enum IndexError {
    /// SQLite refused an operation (unwritable path, corrupt file, …).
    #[error("index {path}: {source}")]
    Sqlite {
        /// The index file.
        path: String,
        /// SQLite's error.
        source: rusqlite::Error,
    },
    /// Reading or writing a Parquet index failed.
    #[error("index {path}: {source}")]
    Parquet {
        /// The index file.
        path: String,
        /// The Parquet or Arrow error.
        source: ::parquet::errors::ParquetError,
    },
    /// A file could not be created, read or renamed.
    #[error("index {path}: {source}")]
    Io {
        /// The file.
        path: String,
        /// The operating system's error.
        source: std::io::Error,
    },
    /// The path's extension names no store.
    #[error("index {path}: unknown format; name it *.sqlite or *.parquet")]
    UnknownFormat {
        /// The index file.
        path: String,
    },
    /// The index was built with other settings than the ones now used.
    #[error(
        "index {path} was built with {key} = `{stored}`, not `{requested}`; use the same \
         settings or another --db"
    )]
    Mismatch {
        /// The index file.
        path: String,
        /// The setting that differs.
        key: String,
        /// Its value in the index.
        stored: String,
        /// The value now requested.
        requested: String,
    },
    /// The file is not an index of this tool.
    #[error("{path} is not a radioembed index (it records no model, input size or dimension)")]
    NotAnIndex {
        /// The file.
        path: String,
    },
    /// Another writer is writing this Parquet index.
    #[error(
        "index {path} is being written by another indexer (its .partial file is locked); \
         a Parquet index takes one writer at a time: wait for it, or index into SQLite"
    )]
    Busy {
        /// The index file.
        path: String,
    },
    /// A frame's model input size differs from the one the index records.
    #[error(
        "frames are embedded at {found} but index {path} holds {expected} embeddings; keep \
         one input size per index (set radioembed width/height, or another index)"
    )]
    InputSize {
        /// The index file.
        path: String,
        /// The size the index records.
        expected: String,
        /// The size of the frame.
        found: String,
    },
    /// A search in an adaptor's space on an index that holds no such vectors.
    #[error(
        "index {path} holds no `{adaptor}` vectors; build an index with them: \
         radio-embed index --adaptor {adaptor} --db INDEX.sqlite VIDEO... (the model folder \
         needs its torch.hub checkpoint, or pass --adaptor-checkpoint), or radioembed \
         adaptor={adaptor} ! radioindexsink"
    )]
    NoAdaptor {
        /// The index file.
        path: String,
        /// The adaptor asked for.
        adaptor: String,
    },
    /// A search of objects in an adaptor's space on an index whose objects
    /// have no such vectors.
    #[error(
        "index {path} holds no objects with `{adaptor}` vectors; build a SQLite index with \
         them from frames that carry GstVideoRegionOfInterestMeta (a detector upstream): \
         ... ! radioembed adaptor={adaptor} roi-mode=pool (or crop) ! radioindexsink \
         location=INDEX.sqlite"
    )]
    NoObjectAdaptor {
        /// The index file.
        path: String,
        /// The adaptor asked for.
        adaptor: String,
    },
    /// A vector has another length than the indexed ones.
    #[error("a vector has {found} values but the index holds {expected}-dimensional vectors")]
    Dimension {
        /// Length of the indexed vectors.
        expected: usize,
        /// Length of the offending vector.
        found: usize,
    },
}

/// The kinds of file an index can be.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StoreFormat {
    /// An SQLite database (`.sqlite`, `.sqlite3`, `.db`).
    Sqlite,
    /// An Apache Parquet file (`.parquet`).
    Parquet,
}

impl StoreFormat {
    /// The store a path names by its extension.
    pub fn of(path: &Path) -> Result<Self, IndexError> {
        let ext = path
            .extension()
            .map(|e| e.to_string_lossy().to_ascii_lowercase());
        match ext.as_deref() {
            Some("sqlite" | "sqlite3" | "db") => Ok(Self::Sqlite),
            Some("parquet") => Ok(Self::Parquet),
            _ => Err(IndexError::UnknownFormat {
                path: path.display().to_string(),
            }),
        }
    }
}

/// How an index's vectors were made; a query must be embedded the same way.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IndexSettings {
    /// Model id (repo id or folder) as given to radioembed.
    pub model: String,
    /// Model input size of the indexed frames, `WIDTHxHEIGHT`.
    pub input: String,
    /// Length of the summary vectors.
    pub summary_dim: usize,
}

impl IndexSettings {
    /// The settings as the key/value pairs a store records.
    fn pairs(&self) -> [(&'static str, String); 3] {
        [
            ("model", self.model.clone()),
            ("input", self.input.clone()),
            ("summary_dim", self.summary_dim.to_string()),
        ]
    }

    /// Reads the pairs back through `get`; `None` when one is missing.
    fn from_pairs<E>(
        get: &mut impl FnMut(&str) -> Result<Option<String>, E>,
    ) -> Result<Option<Self>, E> {
        let (Some(model), Some(input), Some(dim)) =
            (get("model")?, get("input")?, get("summary_dim")?)
        else {
            return Ok(None);
        };
        Ok(dim.parse().ok().map(|summary_dim| Self {
            model,
            input,
            summary_dim,
        }))
    }

    /// Fails with [`IndexError::Mismatch`] on the first setting that differs
    /// between these (stored) settings and the `requested` ones.
    fn expect_same(&self, requested: &Self, path: &Path) -> Result<(), IndexError> {
        for ((key, stored), (_, want)) in self.pairs().into_iter().zip(requested.pairs()) {
            if stored != want {
                return Err(IndexError::Mismatch {
                    path: path.display().to_string(),
                    key: key.into(),
                    stored,
                    requested: want,
                });
            }
        }
        Ok(())
    }
}

/// One embedded frame.
#[derive(Debug)]
pub struct Row {
    /// Stream timestamp in nanoseconds, if the buffer had one.
    pub pts_ns: Option<u64>,
    /// Stream time of the last near-duplicate frame merged into this row
    /// (see [`IndexWriter::dedup`]); `None`: the row is one frame.
    pub pts_end_ns: Option<u64>,
    /// Running index of the frame in its stream.
    pub frame_index: u64,
    /// Model input size (width, height).
    pub input_size: (usize, usize),
    /// The summary vector.
    pub summary: Vec<f32>,
    /// The pooled patch grid, row-major (grid-height, grid-width, dim), if stored
    /// (the store keeps it in f16).
    pub spatial: Option<(Vec<f32>, (usize, usize), usize)>,
    /// The frame's objects (kept by SQLite indexes).
    pub objects: Vec<ObjectRow>,
    /// The frame's adaptor vectors (SQLite keeps them all, Parquet the summaries).
    pub adaptors: Vec<AdaptorRow>,
    /// A small JPEG of the frame, made only if the row is kept.
    pub thumbnail: Option<Thumbnail>,
}

/// What [`IndexWriter::append`] did with a row.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[must_use]
pub enum Appended {
    /// It is a new row of the index.
    Row,
    /// It extended the previous row's time range (a near-duplicate).
    Merged,
    /// Its stream time is stored already (a frame seen again after a seek).
    Repeated,
}

/// One adaptor's vectors of a frame (`siglip2-g`: what a text query is compared with).
#[derive(Debug, Clone, PartialEq)]
pub struct AdaptorRow {
    /// The adaptor's name.
    pub name: String,
    /// Its summary.
    pub summary: Vec<f32>,
    /// Its pooled patch grid, row-major (grid-height, grid-width, dim), if stored
    /// (in f16, like the frame's grid).
    pub spatial: Option<(Vec<f32>, (usize, usize), usize)>,
}

/// One result of a search in an adaptor's space.
#[derive(Debug, Clone, PartialEq)]
pub struct AdaptorHit {
    /// The frame, scored by its adaptor summary.
    pub frame: Hit,
    /// Where in the frame the query matches best, when the index holds the
    /// adaptor's patch grid.
    pub best_patch: Option<PatchHit>,
}

/// The patch of a frame's grid that matches a query best.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct PatchHit {
    /// Its grid row.
    pub row: usize,
    /// Its grid column.
    pub column: usize,
    /// The grid (rows, columns).
    pub grid: (usize, usize),
    /// Cosine similarity of its feature with the query.
    pub score: f32,
}

impl PatchHit {
    /// The patch as fractions of the frame: left, top, right, bottom.
    pub fn bounds(&self) -> (f64, f64, f64, f64) {
        let (rows, columns) = (self.grid.0.max(1) as f64, self.grid.1.max(1) as f64);
        (
            self.column as f64 / columns,
            self.row as f64 / rows,
            (self.column + 1) as f64 / columns,
            (self.row + 1) as f64 / rows,
        )
    }
}

/// One object of a frame: a region with a vector.
#[derive(Debug, Clone, PartialEq)]
pub struct ObjectRow {
    /// Its type (`person`, `car`, ...).
    pub roi_type: String,
    /// Its box in frame pixels: x, y, width, height.
    pub rect: (u32, u32, u32, u32),
    /// How its vectors were made.
    pub kind: RegionKind,
    /// Its backbone vector.
    pub vector: Vec<f32>,
    /// Its adaptor vectors, made the same way.
    pub adaptors: Vec<RegionAdaptor>,
}

/// One object search result.
#[derive(Debug, Clone, PartialEq)]
pub struct ObjectHit {
    /// The frame the object is in.
    pub frame: Hit,
    /// Its type.
    pub roi_type: String,
    /// Its box in frame pixels: x, y, width, height.
    pub rect: (u32, u32, u32, u32),
}

/// How the stores keep a patch grid: half the size of f32, and search never
/// reads it.
const GRID_DTYPE: MetaDtype = MetaDtype::F16;

/// One search result.
#[derive(Debug, Clone, PartialEq)]
pub struct Hit {
    /// The indexed source (URI or source id).
    pub source: String,
    /// Stream timestamp in nanoseconds.
    pub pts_ns: Option<u64>,
    /// Stream time of the last frame the row stands for, when near-duplicate
    /// frames were merged into it (`dedup-threshold`); `None`: one frame.
    pub pts_end_ns: Option<u64>,
    /// Running frame index in the source.
    pub frame_index: u64,
    /// Cosine similarity with the query.
    pub score: f32,
}

/// Writes the rows of one source into an index of either format.
pub struct IndexWriter {
    store: Writer,
    path: std::path::PathBuf,
    /// Stream times stored by this run: a frame seen again after a seek back
    /// is not stored twice.
    seen: HashSet<u64>,
    /// Rows not written yet: one transaction or row group's worth at most.
    pending: Vec<Row>,
    rows_per_write: usize,
    /// Near-duplicate suppression: the cosine at or above which a frame extends
    /// the held row instead of adding one.
    dedup: Option<f32>,
    /// The last row, held back while following frames may extend it.
    held: Option<Row>,
    /// Frames merged into an earlier row so far.
    merged: u64,
}

#[expect(
    clippy::large_enum_variant,
    reason = "one writer per stream, never moved in a loop"
)]
enum Writer {
    Sqlite(sqlite::SqliteWriter),
    Parquet(parquet::ParquetWriter),
}

impl IndexWriter {
    /// Opens (or creates) the index at `path`, checks its settings against
    /// `settings` (a new index records them) and drops earlier rows of
    /// `source`. `rows_per_write` rows make one SQLite transaction or one
    /// Parquet row group.
    pub fn open(
        path: &Path,
        settings: &IndexSettings,
        source: &str,
        rows_per_write: usize,
    ) -> Result<Self, IndexError> {
        let rows_per_write = rows_per_write.max(1);
        let writer = match StoreFormat::of(path)? {
            StoreFormat::Sqlite => {
                Writer::Sqlite(sqlite::SqliteWriter::open(path, settings, source)?)
            }
            StoreFormat::Parquet => Writer::Parquet(parquet::ParquetWriter::open(
                path,
                settings,
                source,
                rows_per_write,
            )?),
        };
        Ok(Self {
            store: writer,
            path: path.to_path_buf(),
            seen: HashSet::new(),
            pending: Vec::with_capacity(rows_per_write),
            rows_per_write,
            dedup: None,
            held: None,
            merged: 0,
        })
    }

    /// Turns on near-duplicate suppression: a frame whose summary has a cosine of
    /// at least `threshold` with the last stored row's extends that row's time
    /// range (`pts_end_ns`) instead of adding a row; the row keeps its first
    /// frame's vectors and objects. Frames of fixed cameras are mostly the same
    /// picture again; 0.98 keeps a scene change or a person walking in.
    pub fn dedup(mut self, threshold: f32) -> Self {
        self.dedup = Some(threshold);
        self
    }

    /// Frames merged into an earlier row by [`IndexWriter::dedup`] so far.
    pub fn merged_frames(&self) -> u64 {
        self.merged
    }

    /// Whether this index keeps the rows' objects and adaptor grids (SQLite
    /// does; Parquet keeps frames and their adaptor summaries).
    pub fn stores_objects(&self) -> bool {
        matches!(self.store, Writer::Sqlite(_))
    }

    /// The settings rows must match.
    fn settings(&self) -> &IndexSettings {
        match &self.store {
            Writer::Sqlite(w) => w.settings(),
            Writer::Parquet(w) => w.settings(),
        }
    }

    /// Adds one row; writes out a transaction or row group when one is full.
    /// A row at a stream time this writer already stored is dropped. A kept
    /// row's thumbnail starts encoding now and is waited for when the row is
    /// written out.
    pub fn append(&mut self, mut row: Row) -> Result<Appended, IndexError> {
        let settings = self.settings();
        if row.summary.len() != settings.summary_dim {
            return Err(IndexError::Dimension {
                expected: settings.summary_dim,
                found: row.summary.len(),
            });
        }
        let input = format!("{}x{}", row.input_size.0, row.input_size.1);
        if input != settings.input {
            return Err(IndexError::InputSize {
                path: self.path.display().to_string(),
                expected: settings.input.clone(),
                found: input,
            });
        }
        if let Some(pts) = row.pts_ns
            && !self.seen.insert(pts)
        {
            return Ok(Appended::Repeated);
        }
        if let (Some(threshold), Some(held)) = (self.dedup, &mut self.held)
            && cosine(&held.summary, &row.summary) >= threshold
        {
            held.pts_end_ns = held.pts_end_ns.max(row.pts_ns);
            self.merged += 1;
            return Ok(Appended::Merged);
        }
        if let Some(thumbnail) = &mut row.thumbnail {
            thumbnail.start();
        }
        let done = match self.dedup {
            Some(_) => self.held.replace(row),
            None => Some(row),
        };
        if let Some(done) = done {
            self.push(done)?;
        }
        Ok(Appended::Row)
    }

    /// Queues a complete row; writes out a transaction or row group when full.
    fn push(&mut self, row: Row) -> Result<(), IndexError> {
        self.pending.push(row);
        if self.pending.len() >= self.rows_per_write {
            self.write_pending()?;
        }
        Ok(())
    }

    /// Writes the pending rows: one SQLite transaction or one Parquet row group.
    fn write_pending(&mut self) -> Result<(), IndexError> {
        if self.pending.is_empty() {
            return Ok(());
        }
        for row in &mut self.pending {
            if let Some(thumbnail) = &mut row.thumbnail {
                thumbnail.wait();
            }
        }
        match &mut self.store {
            Writer::Sqlite(w) => w.write_rows(&self.pending)?,
            Writer::Parquet(w) => w.write_rows(&self.pending)?,
        }
        self.pending.clear();
        Ok(())
    }

    /// Completes the run: writes out what is left and puts the source's new
    /// rows in place of its old ones; returns how many rows it stored. A
    /// writer dropped without `finish` leaves the index as it was.
    pub fn finish(mut self) -> Result<u64, IndexError> {
        if let Some(held) = self.held.take() {
            self.pending.push(held);
        }
        self.write_pending()?;
        match self.store {
            Writer::Sqlite(w) => w.finish(),
            Writer::Parquet(w) => w.finish(),
        }
    }
}

/// Cosine similarity of two vectors, with the search's vectorised kernels.
fn cosine(a: &[f32], b: &[f32]) -> f32 {
    topk::dot(a, b) / (topk::norm(a) * topk::norm(b))
}

/// The settings an index was built with.
pub fn read_settings(path: &Path) -> Result<IndexSettings, IndexError> {
    let stored = match StoreFormat::of(path)? {
        StoreFormat::Sqlite => sqlite::read_settings(path)?,
        StoreFormat::Parquet => parquet::read_settings(path)?,
    };
    stored.ok_or_else(|| IndexError::NotAnIndex {
        path: path.display().to_string(),
    })
}

/// Number of rows, optionally of one source.
pub fn count_rows(path: &Path, source: Option<&str>) -> Result<u64, IndexError> {
    match StoreFormat::of(path)? {
        StoreFormat::Sqlite => sqlite::count_rows(path, source),
        StoreFormat::Parquet => parquet::count_rows(path, source),
    }
}

/// The `k` rows most similar (cosine) to `query`, best first, scanning every
/// row with `threads` threads.
pub fn search(
    path: &Path,
    query: &[f32],
    k: usize,
    threads: usize,
) -> Result<Vec<Hit>, IndexError> {
    search_filtered(path, query, k, threads, &SearchFilter::default())
}

/// [`search`] among the rows `filter` accepts.
pub fn search_filtered(
    path: &Path,
    query: &[f32],
    k: usize,
    threads: usize,
    filter: &SearchFilter,
) -> Result<Vec<Hit>, IndexError> {
    let settings = read_settings(path)?;
    if settings.summary_dim != query.len() {
        return Err(IndexError::Dimension {
            expected: settings.summary_dim,
            found: query.len(),
        });
    }
    let threads = threads.max(1);
    match StoreFormat::of(path)? {
        StoreFormat::Sqlite => sqlite::search(path, query, k, threads, filter),
        StoreFormat::Parquet => parquet::search(path, query, k, threads, filter),
    }
}

/// The JPEG thumbnail of a source's frame (by its `frame_index`), if the index
/// holds one.
pub fn thumbnail(
    path: &Path,
    source: &str,
    frame_index: u64,
) -> Result<Option<Vec<u8>>, IndexError> {
    match StoreFormat::of(path)? {
        StoreFormat::Sqlite => sqlite::thumbnail(path, source, frame_index),
        StoreFormat::Parquet => parquet::thumbnail(path, source, frame_index),
    }
}

/// The summary vector stored for a source's frame (by its `frame_index`):
/// what "more like this" searches with.
pub fn summary(
    path: &Path,
    source: &str,
    frame_index: u64,
) -> Result<Option<Vec<f32>>, IndexError> {
    match StoreFormat::of(path)? {
        StoreFormat::Sqlite => sqlite::summary(path, source, frame_index),
        StoreFormat::Parquet => parquet::summary(path, source, frame_index),
    }
}

/// The sources the index holds rows of, in name order.
pub fn sources(path: &Path) -> Result<Vec<String>, IndexError> {
    match StoreFormat::of(path)? {
        StoreFormat::Sqlite => sqlite::sources(path),
        StoreFormat::Parquet => parquet::sources(path),
    }
}

/// Whose adaptor vectors a question is about.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AdaptorVectors {
    /// The frames' (from each frame's adaptor summary).
    Frames,
    /// The objects' (made like the objects' backbone vectors).
    Objects,
}

/// The adaptors whose vectors the index holds (`siglip2-g`, …), of frames or
/// of objects.
pub fn adaptor_names(path: &Path, of: AdaptorVectors) -> Result<Vec<String>, IndexError> {
    match (StoreFormat::of(path)?, of) {
        (StoreFormat::Sqlite, _) => sqlite::adaptor_names(path, of),
        (StoreFormat::Parquet, AdaptorVectors::Frames) => Ok(parquet::adaptors(path)?
            .into_iter()
            .map(|(name, _)| name)
            .collect()),
        (StoreFormat::Parquet, AdaptorVectors::Objects) => Ok(Vec::new()),
    }
}

/// Length of the `adaptor` vectors the index holds of frames or objects, if
/// it holds any.
fn adaptor_dim(
    path: &Path,
    adaptor: &str,
    of: AdaptorVectors,
) -> Result<Option<usize>, IndexError> {
    match StoreFormat::of(path)? {
        StoreFormat::Sqlite => sqlite::adaptor_dim(path, adaptor, of),
        StoreFormat::Parquet => Ok(parquet::adaptors(path)?
            .into_iter()
            .find(|(name, _)| name == adaptor)
            .map(|(_, dim)| dim)),
    }
}

/// Fails (saying how to build one) unless the index holds `adaptor` vectors
/// of frames or of objects; a caller checks it before costly work.
pub fn require_adaptor(path: &Path, adaptor: &str, of: AdaptorVectors) -> Result<(), IndexError> {
    if adaptor_names(path, of)?.iter().any(|name| name == adaptor) {
        return Ok(());
    }
    let (path, adaptor) = (path.display().to_string(), adaptor.to_string());
    Err(match of {
        AdaptorVectors::Frames => IndexError::NoAdaptor { path, adaptor },
        AdaptorVectors::Objects => IndexError::NoObjectAdaptor { path, adaptor },
    })
}

/// Refuses a query whose length is not that of the index's `adaptor`
/// vectors: it would match no row.
fn require_adaptor_dim(
    path: &Path,
    adaptor: &str,
    of: AdaptorVectors,
    query: &[f32],
) -> Result<(), IndexError> {
    require_adaptor(path, adaptor, of)?;
    match adaptor_dim(path, adaptor, of)? {
        Some(dim) if dim != query.len() => Err(IndexError::Dimension {
            expected: dim,
            found: query.len(),
        }),
        _ => Ok(()),
    }
}

/// The `k` frames whose `adaptor` summary is most similar (cosine) to `query`,
/// best first, each with its best-matching patch when the grid is stored.
/// An index without that adaptor's vectors is refused with what builds one.
pub fn search_adaptor(
    path: &Path,
    adaptor: &str,
    query: &[f32],
    k: usize,
    threads: usize,
    filter: &SearchFilter,
) -> Result<Vec<AdaptorHit>, IndexError> {
    require_adaptor_dim(path, adaptor, AdaptorVectors::Frames, query)?;
    match StoreFormat::of(path)? {
        StoreFormat::Sqlite => {
            sqlite::search_adaptor(path, adaptor, query, k, threads.max(1), filter)
        }
        // Parquet keeps the adaptor's summaries, not its grid: no best patch.
        StoreFormat::Parquet => {
            Ok(
                parquet::search_adaptor(path, adaptor, query, k, threads.max(1), filter)?
                    .into_iter()
                    .map(|frame| AdaptorHit {
                        frame,
                        best_patch: None,
                    })
                    .collect(),
            )
        }
    }
}

/// The `k` objects whose `adaptor` vector is most similar (cosine) to `query`
/// (a text's embedding, for `siglip2-g`), best first. An index whose objects
/// have no such vectors is refused with what builds one.
pub fn search_object_adaptor(
    path: &Path,
    adaptor: &str,
    query: &[f32],
    k: usize,
    threads: usize,
    filter: &SearchFilter,
) -> Result<Vec<ObjectHit>, IndexError> {
    require_adaptor_dim(path, adaptor, AdaptorVectors::Objects, query)?;
    sqlite::search_object_adaptor(path, adaptor, query, k, threads.max(1), filter)
}

/// How the index's object vectors were made (`None`: it holds no objects).
/// A query for objects is made the same way: a summary for `crop`, the mean
/// of the patch features for `pool`.
pub fn object_kind(path: &Path) -> Result<Option<RegionKind>, IndexError> {
    match StoreFormat::of(path)? {
        StoreFormat::Sqlite => sqlite::object_kind(path),
        StoreFormat::Parquet => Ok(None),
    }
}

/// The `k` objects most similar (cosine) to `query`, best first, among those
/// whose vectors have its length.
pub fn search_objects(
    path: &Path,
    query: &[f32],
    k: usize,
    threads: usize,
    filter: &SearchFilter,
) -> Result<Vec<ObjectHit>, IndexError> {
    match StoreFormat::of(path)? {
        StoreFormat::Sqlite => sqlite::search_objects(path, query, k, threads.max(1), filter),
        StoreFormat::Parquet => Ok(Vec::new()),
    }
}
