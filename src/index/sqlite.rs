//! The SQLite store: one file (bundled SQLite, WAL journal) with a `frames`
//! table, one row per embedded frame, and an `index_info` table holding the
//! [`IndexSettings`]. Rows are written in transactions, so a crash loses at most
//! the open one and the file stays valid; indexing a source again replaces its
//! rows. Search reads the vectors straight from SQLite's mapped pages, split
//! over threads by row id.

use std::path::{Path, PathBuf};

use rusqlite::{Connection, OpenFlags, OptionalExtension, params};

use super::topk::{LeBytes, TopK, dot, norm, scan_in_parallel};
use super::{Hit, IndexError, IndexSettings, Row};

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
fn to_bytes(values: &[f32]) -> Vec<u8> {
    values.iter().flat_map(|v| v.to_le_bytes()).collect()
}

fn open_read_only(path: &Path) -> Result<Connection, IndexError> {
    Connection::open_with_flags(path, OpenFlags::SQLITE_OPEN_READ_ONLY).map_err(sqlite(path))
}

/// The settings stored in an index, if it has any.
pub(super) fn read_settings(path: &Path) -> Result<Option<IndexSettings>, IndexError> {
    read_settings_from(&open_read_only(path)?, path)
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
    let mut st = conn
        .prepare("SELECT value FROM index_info WHERE key = ?1")
        .map_err(sqlite(path))?;
    let mut get = |key: &str| st.query_row([key], |r| r.get(0)).optional();
    IndexSettings::from_pairs(&mut get).map_err(sqlite(path))
}

/// Number of rows, optionally of one source.
pub(super) fn count_rows(path: &Path, source: Option<&str>) -> Result<u64, IndexError> {
    let conn = open_read_only(path)?;
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
pub(super) struct SqliteWriter {
    conn: Connection,
    path: PathBuf,
    settings: IndexSettings,
    source: String,
    transaction_rows: usize,
    pending: usize,
    written: u64,
}

impl SqliteWriter {
    /// Opens (or creates) the index, checks its settings against `settings`
    /// (a new index records them) and removes earlier rows of `source`.
    pub(super) fn open(
        path: &Path,
        settings: &IndexSettings,
        source: &str,
        transaction_rows: usize,
    ) -> Result<Self, IndexError> {
        let conn = Connection::open(path).map_err(sqlite(path))?;
        conn.execute_batch(SCHEMA).map_err(sqlite(path))?;
        match read_settings_from(&conn, path)? {
            Some(stored) => stored.expect_same(settings, path)?,
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
            settings: settings.clone(),
            source: source.to_string(),
            transaction_rows,
            pending: 0,
            written: 0,
        })
    }

    /// The settings the index was built with.
    pub(super) fn settings(&self) -> &IndexSettings {
        &self.settings
    }

    /// Adds one row; commits when the transaction is full.
    pub(super) fn append(&mut self, row: &Row) -> Result<(), IndexError> {
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
    pub(super) fn finish(mut self) -> Result<u64, IndexError> {
        self.commit()?;
        Ok(self.written)
    }
}

/// The `k` rows most similar (cosine) to `query`, best first, scanning every
/// row with `threads` readers over disjoint row-id ranges.
pub(super) fn search(
    path: &Path,
    query: &[f32],
    k: usize,
    threads: usize,
) -> Result<Vec<Hit>, IndexError> {
    let err = sqlite(path);
    let open = || {
        let conn = open_read_only(path)?;
        // Read blobs from the mapped file rather than through the page cache copy.
        conn.execute_batch("PRAGMA mmap_size = 68719476736;")
            .map_err(&err)?;
        Ok::<_, IndexError>(conn)
    };
    let (lo, hi): (i64, i64) = open()?
        .query_row(
            "SELECT coalesce(min(id), 0), coalesce(max(id), -1) FROM frames",
            [],
            |r| Ok((r.get(0)?, r.get(1)?)),
        )
        .map_err(&err)?;
    let qnorm = norm(query);
    let threads = threads.max(1) as i64;
    let span = (hi - lo + 1).max(0);
    let scan = |from: i64, to: i64| -> Result<TopK<i64>, IndexError> {
        let conn = open()?;
        let mut st = conn
            .prepare("SELECT id, summary, summary_norm FROM frames WHERE id >= ?1 AND id < ?2")
            .map_err(&err)?;
        let mut rows = st.query([from, to]).map_err(&err)?;
        let mut best = TopK::new(k);
        while let Some(row) = rows.next().map_err(&err)? {
            let id: i64 = row.get(0).map_err(&err)?;
            let blob = row
                .get_ref(1)
                .and_then(|v| Ok(v.as_blob()?))
                .map_err(&err)?;
            let rnorm: f64 = row.get(2).map_err(&err)?;
            let score =
                dot(&LeBytes(blob), query) / (qnorm * (rnorm as f32).max(f32::MIN_POSITIVE));
            best.offer(score, || id);
        }
        Ok(best)
    };
    let best = scan_in_parallel(threads as usize, k, |t| {
        let t = t as i64;
        scan(lo + span * t / threads, lo + span * (t + 1) / threads)
    })?;
    let conn = open()?;
    let mut st = conn
        .prepare("SELECT source, pts_ns, frame_index FROM frames WHERE id = ?1")
        .map_err(&err)?;
    best.into_sorted()
        .into_iter()
        .map(|(score, id)| {
            st.query_row([id], |r| {
                Ok(Hit {
                    source: r.get(0)?,
                    pts_ns: r.get::<_, Option<i64>>(1)?.map(|p| p as u64),
                    frame_index: r.get::<_, i64>(2)? as u64,
                    score,
                })
            })
            .map_err(&err)
        })
        .collect()
}
