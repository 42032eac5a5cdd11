//! Writing rows into the SQLite store.

use std::path::Path;

use rusqlite::{Connection, OptionalExtension, params};

use super::IndexError;

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
    fn pairs(&self) -> [(&'static str, String); 3] {
        [
            ("model", self.model.clone()),
            ("input", self.input.clone()),
            ("summary_dim", self.summary_dim.to_string()),
        ]
    }
}

/// One embedded frame.
#[derive(Debug, Clone, PartialEq)]
pub struct Row {
    /// Stream timestamp in nanoseconds, if the buffer had one.
    pub pts_ns: Option<u64>,
    /// Running index of the frame in its stream.
    pub frame_index: u64,
    /// Model input size (width, height).
    pub input_size: (usize, usize),
    /// The summary vector.
    pub summary: Vec<f32>,
    /// The pooled patch grid, row-major (grid-height, grid-width, dim), if stored.
    pub spatial: Option<(Vec<f32>, (usize, usize), usize)>,
}

const SCHEMA: &str = "
    PRAGMA journal_mode = WAL;
    PRAGMA synchronous = NORMAL;
    CREATE TABLE IF NOT EXISTS index_info (key TEXT PRIMARY KEY, value TEXT NOT NULL);
    CREATE TABLE IF NOT EXISTS frames (
        id INTEGER PRIMARY KEY,
        source TEXT NOT NULL,
        pts_ns INTEGER,
        frame_index INTEGER NOT NULL,
        input_width INTEGER NOT NULL,
        input_height INTEGER NOT NULL,
        summary BLOB NOT NULL,
        summary_norm REAL NOT NULL,
        spatial BLOB,
        grid_height INTEGER,
        grid_width INTEGER,
        spatial_dim INTEGER
    );
    CREATE INDEX IF NOT EXISTS frames_by_source ON frames (source);
";

fn sqlite(path: &Path) -> impl Fn(rusqlite::Error) -> IndexError + '_ {
    move |source| IndexError::Sqlite {
        path: path.display().to_string(),
        source,
    }
}

/// Little-endian f32 bytes.
pub(crate) fn to_bytes(values: &[f32]) -> Vec<u8> {
    values.iter().flat_map(|v| v.to_le_bytes()).collect()
}

/// The settings stored in an index, if it has any.
pub fn read_settings(path: &Path) -> Result<IndexSettings, IndexError> {
    let conn = Connection::open_with_flags(path, rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY)
        .map_err(sqlite(path))?;
    read_settings_from(&conn, path)?.ok_or_else(|| IndexError::NotAnIndex {
        path: path.display().to_string(),
    })
}

fn read_settings_from(conn: &Connection, path: &Path) -> Result<Option<IndexSettings>, IndexError> {
    let has_table: bool = conn
        .query_row(
            "SELECT count(*) > 0 FROM sqlite_master WHERE name = 'index_info'",
            [],
            |r| r.get(0),
        )
        .map_err(sqlite(path))?;
    if !has_table {
        return Ok(None);
    }
    let get = |key: &str| -> Result<Option<String>, IndexError> {
        conn.query_row("SELECT value FROM index_info WHERE key = ?1", [key], |r| {
            r.get(0)
        })
        .optional()
        .map_err(sqlite(path))
    };
    let (Some(model), Some(input), Some(dim)) = (get("model")?, get("input")?, get("summary_dim")?)
    else {
        return Ok(None);
    };
    Ok(Some(IndexSettings {
        model,
        input,
        summary_dim: dim.parse().unwrap_or(0),
    }))
}

/// Number of rows, optionally of one source.
pub fn count_rows(path: &Path, source: Option<&str>) -> Result<u64, IndexError> {
    let conn = Connection::open_with_flags(path, rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY)
        .map_err(sqlite(path))?;
    let n: i64 = match source {
        Some(s) => conn.query_row("SELECT count(*) FROM frames WHERE source = ?1", [s], |r| {
            r.get(0)
        }),
        None => conn.query_row("SELECT count(*) FROM frames", [], |r| r.get(0)),
    }
    .map_err(sqlite(path))?;
    Ok(n as u64)
}

/// Appends the rows of one source, committing every `transaction_rows` rows.
pub struct IndexWriter {
    conn: Connection,
    path: std::path::PathBuf,
    source: String,
    transaction_rows: usize,
    pending: usize,
    written: u64,
}

impl IndexWriter {
    /// Opens (or creates) the index, checks its settings against `settings`
    /// (a new index records them) and removes earlier rows of `source`.
    pub fn open(
        path: &Path,
        settings: &IndexSettings,
        source: &str,
        transaction_rows: usize,
    ) -> Result<Self, IndexError> {
        let conn = Connection::open(path).map_err(sqlite(path))?;
        conn.execute_batch(SCHEMA).map_err(sqlite(path))?;
        match read_settings_from(&conn, path)? {
            Some(stored) => {
                for ((key, have), (_, want)) in stored.pairs().into_iter().zip(settings.pairs()) {
                    if have != want {
                        return Err(IndexError::Mismatch {
                            path: path.display().to_string(),
                            key: key.into(),
                            stored: have,
                            requested: want,
                        });
                    }
                }
            }
            None => {
                for (key, value) in settings.pairs() {
                    conn.execute(
                        "INSERT OR REPLACE INTO index_info (key, value) VALUES (?1, ?2)",
                        params![key, value],
                    )
                    .map_err(sqlite(path))?;
                }
            }
        }
        conn.execute_batch("BEGIN").map_err(sqlite(path))?;
        conn.execute("DELETE FROM frames WHERE source = ?1", [source])
            .map_err(sqlite(path))?;
        Ok(Self {
            conn,
            path: path.to_path_buf(),
            source: source.to_string(),
            transaction_rows: transaction_rows.max(1),
            pending: 0,
            written: 0,
        })
    }

    /// Adds one row; commits when the transaction is full.
    pub fn append(&mut self, row: &Row) -> Result<(), IndexError> {
        let norm = row.summary.iter().map(|v| v * v).sum::<f32>().sqrt();
        let (spatial, grid, dim) = match &row.spatial {
            Some((values, grid, dim)) => (Some(to_bytes(values)), Some(*grid), Some(*dim)),
            None => (None, None, None),
        };
        self.conn
            .prepare_cached(
                "INSERT INTO frames (source, pts_ns, frame_index, input_width, input_height,
                 summary, summary_norm, spatial, grid_height, grid_width, spatial_dim)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11)",
            )
            .and_then(|mut st| {
                st.execute(params![
                    self.source,
                    row.pts_ns.map(|p| p as i64),
                    row.frame_index as i64,
                    row.input_size.0 as i64,
                    row.input_size.1 as i64,
                    to_bytes(&row.summary),
                    norm,
                    spatial,
                    grid.map(|g| g.0 as i64),
                    grid.map(|g| g.1 as i64),
                    dim.map(|d| d as i64),
                ])
            })
            .map_err(sqlite(&self.path))?;
        self.pending += 1;
        self.written += 1;
        if self.pending >= self.transaction_rows {
            self.commit()?;
            self.conn
                .execute_batch("BEGIN")
                .map_err(sqlite(&self.path))?;
        }
        Ok(())
    }

    fn commit(&mut self) -> Result<(), IndexError> {
        self.conn
            .execute_batch("COMMIT")
            .map_err(sqlite(&self.path))?;
        self.pending = 0;
        Ok(())
    }

    /// Commits what is left; returns the number of rows written.
    pub fn finish(mut self) -> Result<u64, IndexError> {
        self.commit()?;
        Ok(self.written)
    }
}
