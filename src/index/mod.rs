//! Frame-level video indexing: embedded frames into a store, and exact cosine
//! search over it.
//!
//! The store is one SQLite file (bundled SQLite, WAL journal): a `frames` table
//! with one row per embedded frame and an `index_info` table recording the model
//! and settings the index was built with, so that a query is embedded the same
//! way. Rows are written in transactions of a few hundred, so a crash loses at
//! most the open transaction and the file stays valid; indexing a source again
//! replaces its rows. Search is an exact scan (the vectors are read straight from
//! SQLite's pages), split over threads by row id.

mod search;
mod store;

pub use search::{Hit, search};
pub use store::{IndexSettings, IndexWriter, Row, count_rows, read_settings};

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
    #[error("{path} is not a radioembed index (no index_info table)")]
    NotAnIndex {
        /// The file.
        path: String,
    },
    /// A query vector has another length than the indexed ones.
    #[error("query has {found} values but the index holds {expected}-dimensional summaries")]
    Dimension {
        /// Length of the indexed vectors.
        expected: usize,
        /// Length of the query.
        found: usize,
    },
}
