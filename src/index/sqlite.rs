// SPDX-License-Identifier: MPL-2.0
//! The SQLite store: one file (bundled SQLite, WAL journal) whose `frames`
//! view holds one row per embedded frame, and an `index_info` table holding the
//! [`IndexSettings`]. Search reads the vectors straight from SQLite's mapped
//! pages, split over threads by row id.
//!
//! A run (one writer indexing one source) is a row of `runs`; its rows go into
//! `frame_rows` under its id, in short transactions, and `frames` shows only the
//! rows of complete runs. Completing a run (at EOS) deletes the source's old
//! rows and marks the run complete in one transaction, copying nothing: the old
//! rows stay visible until then, and an error, a kill or a stop before EOS
//! leaves `frames` exactly as it was (a dead run's rows are deleted by the
//! source's next run). Several writers may share one index (WAL, a busy
//! timeout, transactions of milliseconds), one per source.
//!
//! A frame's objects go into `object_rows` under the same run, pointing at
//! their frame's row; the `objects` view shows those of complete runs with
//! their frame's source and time. Its adaptor vectors (`siglip2-g`, …) go into
//! `adaptor_rows` the same way, shown by the `adaptor_frames` view, and its
//! objects' adaptor vectors into `object_adaptor_rows`, shown by the
//! `object_adaptors` view.

use std::path::{Path, PathBuf};
use std::time::Duration;

use rusqlite::{Connection, OpenFlags, OptionalExtension, params};

use super::topk::{LeBytes, TopK, dot, norm, scan_in_parallel};
use super::{
    AdaptorHit, AdaptorVectors, GRID_DTYPE, Hit, IndexError, IndexSettings, ObjectHit, PatchHit,
    Row, SearchFilter,
};
use crate::meta::{MetaDtype, RegionKind};

/// How long a writer waits for another one's transaction to end.
const BUSY_TIMEOUT: Duration = Duration::from_secs(60);

/// The tables whose rows belong to a frame row and go with its run. Thumbnails
/// have a table of their own so that a search's scan of `frame_rows` does not
/// page through them.
const FRAME_PARTS: [&str; 4] = [
    "object_rows",
    "object_adaptor_rows",
    "adaptor_rows",
    "thumbnails",
];

/// The columns of a row as `frames` shows them (besides `id`).
const COLUMNS: &str = "source, pts_ns, frame_index, input_width, input_height, summary, \
                       summary_norm, spatial, grid_height, grid_width, spatial_dim, spatial_dtype, \
                       pts_end_ns";

const SCHEMA: &str = "
    PRAGMA journal_mode = WAL;
    PRAGMA synchronous = NORMAL;
    CREATE TABLE IF NOT EXISTS index_info (key TEXT PRIMARY KEY, value TEXT NOT NULL);
    CREATE TABLE IF NOT EXISTS runs (
        id INTEGER PRIMARY KEY,
        source TEXT NOT NULL,
        complete INTEGER NOT NULL DEFAULT 0
    );
";

/// The rows table of a new index (indexes made before runs had a `frames`
/// table, which [`migrate`] renames into this).
const ROWS_TABLE: &str = "
    CREATE TABLE frame_rows (
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
        spatial_dim INTEGER,
        spatial_dtype TEXT,
        run INTEGER,
        pts_end_ns INTEGER
    );
";

/// What every index has once migrated: the run and source indexes and the
/// `frames` view (rows of complete runs; a NULL run is a row from before runs).
const VIEW: &str = "
    CREATE INDEX IF NOT EXISTS frames_by_source ON frame_rows (source);
    CREATE INDEX IF NOT EXISTS frame_rows_by_run ON frame_rows (run);
    CREATE VIEW IF NOT EXISTS frames AS
        SELECT id, source, pts_ns, frame_index, input_width, input_height, summary,
               summary_norm, spatial, grid_height, grid_width, spatial_dim, spatial_dtype,
               pts_end_ns
        FROM frame_rows
        WHERE run IS NULL OR run IN (SELECT id FROM runs WHERE complete);
    CREATE TABLE IF NOT EXISTS object_rows (
        id INTEGER PRIMARY KEY,
        frame_row INTEGER NOT NULL,
        run INTEGER NOT NULL,
        roi_type TEXT NOT NULL,
        x INTEGER NOT NULL,
        y INTEGER NOT NULL,
        width INTEGER NOT NULL,
        height INTEGER NOT NULL,
        kind TEXT NOT NULL,
        vector BLOB NOT NULL,
        vector_norm REAL NOT NULL
    );
    CREATE INDEX IF NOT EXISTS object_rows_by_run ON object_rows (run);
    CREATE VIEW IF NOT EXISTS objects AS
        SELECT o.id, f.source, f.pts_ns, f.frame_index, o.roi_type, o.x, o.y, o.width,
               o.height, o.kind, o.vector, o.vector_norm
        FROM object_rows o JOIN frame_rows f ON f.id = o.frame_row
        WHERE o.run IN (SELECT id FROM runs WHERE complete);
    CREATE TABLE IF NOT EXISTS adaptor_rows (
        id INTEGER PRIMARY KEY,
        frame_row INTEGER NOT NULL,
        run INTEGER NOT NULL,
        name TEXT NOT NULL,
        summary BLOB NOT NULL,
        summary_norm REAL NOT NULL,
        spatial BLOB,
        grid_height INTEGER,
        grid_width INTEGER,
        spatial_dim INTEGER,
        spatial_dtype TEXT
    );
    CREATE INDEX IF NOT EXISTS adaptor_rows_by_run ON adaptor_rows (run);
    CREATE TABLE IF NOT EXISTS thumbnails (
        frame_row INTEGER PRIMARY KEY,
        run INTEGER NOT NULL,
        jpeg BLOB NOT NULL
    );
    CREATE INDEX IF NOT EXISTS thumbnails_by_run ON thumbnails (run);
    CREATE VIEW IF NOT EXISTS adaptor_frames AS
        SELECT a.id, a.name, f.source, f.pts_ns, f.frame_index, a.summary, a.summary_norm,
               a.spatial, a.grid_height, a.grid_width, a.spatial_dim, a.spatial_dtype
        FROM adaptor_rows a JOIN frame_rows f ON f.id = a.frame_row
        WHERE a.run IN (SELECT id FROM runs WHERE complete);
    CREATE TABLE IF NOT EXISTS object_adaptor_rows (
        id INTEGER PRIMARY KEY,
        object_row INTEGER NOT NULL,
        run INTEGER NOT NULL,
        name TEXT NOT NULL,
        vector BLOB NOT NULL,
        vector_norm REAL NOT NULL
    );
    CREATE INDEX IF NOT EXISTS object_adaptor_rows_by_run ON object_adaptor_rows (run);
    CREATE VIEW IF NOT EXISTS object_adaptors AS
        SELECT a.id, a.name, f.source, f.pts_ns, f.frame_index, o.roi_type, o.x, o.y,
               o.width, o.height, o.kind, a.vector, a.vector_norm
        FROM object_adaptor_rows a
            JOIN object_rows o ON o.id = a.object_row
            JOIN frame_rows f ON f.id = o.frame_row
        WHERE a.run IN (SELECT id FROM runs WHERE complete);
";

fn sqlite(path: &Path) -> impl Fn(rusqlite::Error) -> IndexError + '_ {
    move |source| IndexError::Sqlite {
        path: path.display().to_string(),
        source,
    }
}

/// Brings an index of any earlier layout to this one, in the open
/// transaction: a `frames` table becomes `frame_rows` (its rows, with no run,
/// stay visible), gaining the columns added since (`spatial_dtype`: NULL means
/// an f32 grid).
fn migrate(conn: &Connection) -> rusqlite::Result<()> {
    let kind = |name: &str| -> rusqlite::Result<Option<String>> {
        conn.query_row(
            "SELECT type FROM sqlite_master WHERE name = ?1",
            [name],
            |r| r.get(0),
        )
        .optional()
    };
    let has_column = |column: &str| -> rusqlite::Result<bool> {
        conn.query_row(
            "SELECT count(*) > 0 FROM pragma_table_info('frame_rows') WHERE name = ?1",
            [column],
            |r| r.get(0),
        )
    };
    if kind("frames")?.as_deref() == Some("table") {
        conn.execute_batch("ALTER TABLE frames RENAME TO frame_rows")?;
    }
    if kind("frame_rows")?.is_none() {
        conn.execute_batch(ROWS_TABLE)?;
    }
    for (column, kind) in [
        ("spatial_dtype", "TEXT"),
        ("run", "INTEGER"),
        ("pts_end_ns", "INTEGER"),
    ] {
        if !has_column(column)? {
            conn.execute_batch(&format!(
                "ALTER TABLE frame_rows ADD COLUMN {column} {kind}"
            ))?;
        }
    }
    // A `frames` view from before pts_end_ns is made again with it.
    let view_has_end: bool = conn.query_row(
        "SELECT count(*) > 0 FROM pragma_table_info('frames') WHERE name = 'pts_end_ns'",
        [],
        |r| r.get(0),
    )?;
    if !view_has_end {
        conn.execute_batch("DROP VIEW IF EXISTS frames")?;
    }
    conn.execute_batch(VIEW)
}

/// Runs `f` again while it fails because another connection holds a lock,
/// for up to [`BUSY_TIMEOUT`]: SQLite's busy handler does not wait in every
/// case, e.g. for writers that open a new file at once and each set its
/// journal mode.
fn retry_busy<T>(mut f: impl FnMut() -> rusqlite::Result<T>) -> rusqlite::Result<T> {
    let started = std::time::Instant::now();
    loop {
        match f() {
            Err(rusqlite::Error::SqliteFailure(e, _))
                if matches!(
                    e.code,
                    rusqlite::ErrorCode::DatabaseBusy | rusqlite::ErrorCode::DatabaseLocked
                ) && started.elapsed() < BUSY_TIMEOUT =>
            {
                std::thread::sleep(Duration::from_millis(10));
            }
            other => return other,
        }
    }
}

fn open_read_only(path: &Path) -> Result<Connection, IndexError> {
    let conn = Connection::open_with_flags(path, OpenFlags::SQLITE_OPEN_READ_ONLY)
        .map_err(sqlite(path))?;
    conn.busy_timeout(BUSY_TIMEOUT).map_err(sqlite(path))?;
    Ok(conn)
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

/// Writes one run of one source: its rows into `frame_rows`, a transaction a
/// [`write_rows`](Self::write_rows), shown in `frames` once [`Self::finish`]ed.
pub(super) struct SqliteWriter {
    conn: Connection,
    path: PathBuf,
    settings: IndexSettings,
    source: String,
    run: i64,
    /// False once finished or abandoned.
    open: bool,
}

impl SqliteWriter {
    /// Opens (or creates) the index, checks its settings against `settings`
    /// (a new index records them) and starts a run of `source`.
    pub(super) fn open(
        path: &Path,
        settings: &IndexSettings,
        source: &str,
    ) -> Result<Self, IndexError> {
        let err = sqlite(path);
        let conn = Connection::open(path).map_err(&err)?;
        conn.busy_timeout(BUSY_TIMEOUT).map_err(&err)?;
        retry_busy(|| conn.execute_batch(SCHEMA)).map_err(&err)?;
        conn.execute_batch("BEGIN IMMEDIATE").map_err(&err)?;
        let run = Self::start_run(&conn, path, settings, source);
        let run = match run {
            Ok(run) => {
                conn.execute_batch("COMMIT").map_err(&err)?;
                run
            }
            Err(e) => {
                let _ = conn.execute_batch("ROLLBACK");
                return Err(e);
            }
        };
        Ok(Self {
            conn,
            path: path.to_path_buf(),
            settings: settings.clone(),
            source: source.to_string(),
            run,
            open: true,
        })
    }

    /// In the open transaction: migrates the layout, checks or records the
    /// settings, drops what a dead run of `source` left, and registers the new run.
    fn start_run(
        conn: &Connection,
        path: &Path,
        settings: &IndexSettings,
        source: &str,
    ) -> Result<i64, IndexError> {
        let err = sqlite(path);
        migrate(conn).map_err(&err)?;
        match read_settings_from(conn, path)? {
            Some(stored) => stored.expect_same(settings, path)?,
            None => {
                for (key, value) in settings.pairs() {
                    conn.execute(
                        "INSERT OR REPLACE INTO index_info (key, value) VALUES (?1, ?2)",
                        params![key, value],
                    )
                    .map_err(&err)?;
                }
            }
        }
        for table in std::iter::once("frame_rows").chain(FRAME_PARTS) {
            conn.execute(
                &format!(
                    "DELETE FROM {table}
                     WHERE run IN (SELECT id FROM runs WHERE source = ?1 AND NOT complete)"
                ),
                [source],
            )
            .map_err(&err)?;
        }
        conn.execute(
            "DELETE FROM runs WHERE source = ?1 AND NOT complete",
            [source],
        )
        .map_err(&err)?;
        conn.execute("INSERT INTO runs (source) VALUES (?1)", [source])
            .map_err(&err)?;
        Ok(conn.last_insert_rowid())
    }

    /// The settings the index was built with.
    pub(super) fn settings(&self) -> &IndexSettings {
        &self.settings
    }

    /// Writes `rows` in one short transaction.
    pub(super) fn write_rows(&mut self, rows: &[Row]) -> Result<(), IndexError> {
        let err = sqlite(&self.path);
        let tx = self
            .conn
            .transaction_with_behavior(rusqlite::TransactionBehavior::Immediate);
        let tx = tx.map_err(&err)?;
        {
            let mut st = tx
                .prepare_cached(&format!(
                    "INSERT INTO frame_rows (run, {COLUMNS})
                     VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?14)"
                ))
                .map_err(&err)?;
            let mut objects = tx
                .prepare_cached(
                    "INSERT INTO object_rows (frame_row, run, roi_type, x, y, width, height,
                         kind, vector, vector_norm)
                     VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10)",
                )
                .map_err(&err)?;
            let mut object_adaptors = tx
                .prepare_cached(
                    "INSERT INTO object_adaptor_rows (object_row, run, name, vector, vector_norm)
                     VALUES (?1, ?2, ?3, ?4, ?5)",
                )
                .map_err(&err)?;
            let mut adaptors = tx
                .prepare_cached(
                    "INSERT INTO adaptor_rows (frame_row, run, name, summary, summary_norm,
                         spatial, grid_height, grid_width, spatial_dim, spatial_dtype)
                     VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10)",
                )
                .map_err(&err)?;
            let mut thumbnails = tx
                .prepare_cached("INSERT INTO thumbnails (frame_row, run, jpeg) VALUES (?1, ?2, ?3)")
                .map_err(&err)?;
            for row in rows {
                let norm = norm_of(&row.summary);
                let spatial = row.spatial.as_ref();
                st.execute(params![
                    self.run,
                    self.source,
                    row.pts_ns.map(|p| p as i64),
                    row.frame_index as i64,
                    row.input_size.0 as i64,
                    row.input_size.1 as i64,
                    MetaDtype::F32.le_bytes(&row.summary),
                    norm,
                    spatial.map(|(values, _, _)| GRID_DTYPE.le_bytes(values)),
                    spatial.map(|(_, grid, _)| grid.0 as i64),
                    spatial.map(|(_, grid, _)| grid.1 as i64),
                    spatial.map(|(_, _, dim)| *dim as i64),
                    spatial.map(|_| GRID_DTYPE.as_str()),
                    row.pts_end_ns.map(|p| p as i64),
                ])
                .map_err(&err)?;
                let frame_row = tx.last_insert_rowid();
                if let Some(jpeg) = row.thumbnail.as_ref().and_then(|t| t.bytes()) {
                    thumbnails
                        .execute(params![frame_row, self.run, jpeg])
                        .map_err(&err)?;
                }
                for o in &row.objects {
                    objects
                        .execute(params![
                            frame_row,
                            self.run,
                            o.roi_type,
                            o.rect.0,
                            o.rect.1,
                            o.rect.2,
                            o.rect.3,
                            o.kind.as_str(),
                            MetaDtype::F32.le_bytes(&o.vector),
                            norm_of(&o.vector),
                        ])
                        .map_err(&err)?;
                    let object_row = tx.last_insert_rowid();
                    for a in &o.adaptors {
                        object_adaptors
                            .execute(params![
                                object_row,
                                self.run,
                                a.name,
                                MetaDtype::F32.le_bytes(&a.vector),
                                norm_of(&a.vector),
                            ])
                            .map_err(&err)?;
                    }
                }
                for a in &row.adaptors {
                    let spatial = a.spatial.as_ref();
                    adaptors
                        .execute(params![
                            frame_row,
                            self.run,
                            a.name,
                            MetaDtype::F32.le_bytes(&a.summary),
                            norm_of(&a.summary),
                            spatial.map(|(values, _, _)| GRID_DTYPE.le_bytes(values)),
                            spatial.map(|(_, grid, _)| grid.0 as i64),
                            spatial.map(|(_, grid, _)| grid.1 as i64),
                            spatial.map(|(_, _, dim)| *dim as i64),
                            spatial.map(|_| GRID_DTYPE.as_str()),
                        ])
                        .map_err(&err)?;
                }
            }
        }
        tx.commit().map_err(&err)
    }

    /// In one transaction, deletes the source's old rows and marks the run
    /// complete; returns the number of rows it stored.
    pub(super) fn finish(mut self) -> Result<u64, IndexError> {
        let err = sqlite(&self.path);
        let tx = self
            .conn
            .transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)
            .map_err(&err)?;
        tx.execute(
            "DELETE FROM frame_rows WHERE source = ?1 AND (run IS NULL
             OR run IN (SELECT id FROM runs WHERE source = ?1 AND complete))",
            [&self.source],
        )
        .map_err(&err)?;
        for table in FRAME_PARTS {
            tx.execute(
                &format!(
                    "DELETE FROM {table}
                     WHERE run IN (SELECT id FROM runs WHERE source = ?1 AND complete)"
                ),
                [&self.source],
            )
            .map_err(&err)?;
        }
        tx.execute(
            "DELETE FROM runs WHERE source = ?1 AND complete",
            [&self.source],
        )
        .map_err(&err)?;
        tx.execute("UPDATE runs SET complete = 1 WHERE id = ?1", [self.run])
            .map_err(&err)?;
        let rows: i64 = tx
            .query_row(
                "SELECT count(*) FROM frame_rows WHERE run = ?1",
                [self.run],
                |r| r.get(0),
            )
            .map_err(&err)?;
        tx.commit().map_err(&err)?;
        self.open = false;
        Ok(rows as u64)
    }
}

impl Drop for SqliteWriter {
    /// A run that did not finish leaves `frames` as it was and takes its
    /// rows along (a killed one's go with the source's next run).
    fn drop(&mut self) {
        if self.open {
            let run = self.run;
            let deletes: String = std::iter::once("frame_rows")
                .chain(FRAME_PARTS)
                .map(|table| format!("DELETE FROM {table} WHERE run = {run};"))
                .collect();
            let _ = self.conn.execute_batch(&format!(
                "BEGIN IMMEDIATE; {deletes} DELETE FROM runs WHERE id = {run}; COMMIT;"
            ));
        }
    }
}

/// The thumbnail of the source's frame `frame_index`; none in an index from
/// before thumbnails.
pub(super) fn thumbnail(
    path: &Path,
    source: &str,
    frame_index: u64,
) -> Result<Option<Vec<u8>>, IndexError> {
    let err = sqlite(path);
    let conn = open_read_only(path)?;
    let has_table: bool = conn
        .query_row(
            "SELECT count(*) > 0 FROM sqlite_master WHERE name = 'thumbnails'",
            [],
            |r| r.get(0),
        )
        .map_err(&err)?;
    if !has_table {
        return Ok(None);
    }
    conn.query_row(
        "SELECT t.jpeg FROM frames f JOIN thumbnails t ON t.frame_row = f.id
         WHERE f.source = ?1 AND f.frame_index = ?2",
        params![source, frame_index as i64],
        |r| r.get(0),
    )
    .optional()
    .map_err(&err)
}

/// The summary of the source's frame `frame_index`.
pub(super) fn summary(
    path: &Path,
    source: &str,
    frame_index: u64,
) -> Result<Option<Vec<f32>>, IndexError> {
    let conn = open_read_only(path)?;
    let bytes: Option<Vec<u8>> = conn
        .query_row(
            "SELECT summary FROM frames WHERE source = ?1 AND frame_index = ?2",
            params![source, frame_index as i64],
            |r| r.get(0),
        )
        .optional()
        .map_err(sqlite(path))?;
    Ok(bytes.map(|b| MetaDtype::F32.values(&b)))
}

/// The sources the index holds complete rows of, in name order: from the
/// runs table (and rows from before runs) rather than a scan of every row.
pub(super) fn sources(path: &Path) -> Result<Vec<String>, IndexError> {
    let conn = open_read_only(path)?;
    let has_runs: bool = conn
        .query_row(
            "SELECT count(*) > 0 FROM sqlite_master WHERE name = 'frame_rows'",
            [],
            |r| r.get(0),
        )
        .map_err(sqlite(path))?;
    let sql = if has_runs {
        "SELECT source FROM runs WHERE complete AND EXISTS
             (SELECT 1 FROM frame_rows f WHERE f.run = runs.id)
         UNION SELECT DISTINCT source FROM frame_rows WHERE run IS NULL
         ORDER BY source"
    } else {
        "SELECT DISTINCT source FROM frames ORDER BY source"
    };
    let mut st = conn.prepare(sql).map_err(sqlite(path))?;
    st.query_map([], |r| r.get(0))
        .and_then(|rows| rows.collect())
        .map_err(sqlite(path))
}

/// The `k` rows most similar (cosine) to `query`, best first, scanning every
/// row with `threads` readers over disjoint row-id ranges.
pub(super) fn search(
    path: &Path,
    query: &[f32],
    k: usize,
    threads: usize,
    filter: &SearchFilter,
) -> Result<Vec<Hit>, IndexError> {
    let scan = Scan {
        // The view: an index from before runs has a `frames` table and no frame_rows.
        table: "frames",
        sql: "SELECT id, summary, summary_norm, source, pts_ns FROM frames
              WHERE id >= ?1 AND id < ?2 AND length(summary) = ?3",
        name: None,
    };
    let best = scan.run(path, query, k, threads, filter)?;
    hits(path, best.into_sorted())
}

/// The length of a vector, as stored beside it.
fn norm_of(v: &[f32]) -> f32 {
    v.iter().map(|x| x * x).sum::<f32>().sqrt()
}

/// How the index's object vectors were made, from its first object.
pub(super) fn object_kind(path: &Path) -> Result<Option<RegionKind>, IndexError> {
    let conn = open_read_only(path)?;
    let has_objects: bool = conn
        .query_row(
            "SELECT count(*) > 0 FROM sqlite_master WHERE name = 'objects'",
            [],
            |r| r.get(0),
        )
        .map_err(sqlite(path))?;
    if !has_objects {
        return Ok(None);
    }
    let kind: Option<String> = conn
        .query_row("SELECT kind FROM objects LIMIT 1", [], |r| r.get(0))
        .optional()
        .map_err(sqlite(path))?;
    Ok(kind.as_deref().and_then(RegionKind::from_name))
}

/// The `k` objects most similar to `query` (of its length), best first.
pub(super) fn search_objects(
    path: &Path,
    query: &[f32],
    k: usize,
    threads: usize,
    filter: &SearchFilter,
) -> Result<Vec<ObjectHit>, IndexError> {
    if object_kind(path)?.is_none() {
        return Ok(Vec::new());
    }
    let scan = Scan {
        table: "object_rows",
        sql: "SELECT id, vector, vector_norm, source, pts_ns FROM objects
              WHERE id >= ?1 AND id < ?2 AND length(vector) = ?3",
        name: None,
    };
    let best = scan.run(path, query, k, threads, filter)?;
    object_hits(path, "objects", best.into_sorted())
}

/// The `k` objects whose `adaptor` vector is most similar to `query` (of its
/// length), best first.
pub(super) fn search_object_adaptor(
    path: &Path,
    adaptor: &str,
    query: &[f32],
    k: usize,
    threads: usize,
    filter: &SearchFilter,
) -> Result<Vec<ObjectHit>, IndexError> {
    let scan = Scan {
        table: "object_adaptor_rows",
        sql: "SELECT id, vector, vector_norm, source, pts_ns FROM object_adaptors
              WHERE id >= ?1 AND id < ?2 AND length(vector) = ?3 AND name = ?4",
        name: Some(adaptor),
    };
    let best = scan.run(path, query, k, threads, filter)?;
    object_hits(path, "object_adaptors", best.into_sorted())
}

/// The objects of ranked (score, row id) pairs of `view` (`objects` or
/// `object_adaptors`), in their order.
fn object_hits(
    path: &Path,
    view: &str,
    ranked: Vec<(f32, i64)>,
) -> Result<Vec<ObjectHit>, IndexError> {
    let err = sqlite(path);
    let conn = open_for_scan(path)?;
    let mut st = conn
        .prepare(&format!(
            "SELECT source, pts_ns, frame_index, roi_type, x, y, width, height
             FROM {view} WHERE id = ?1"
        ))
        .map_err(&err)?;
    ranked
        .into_iter()
        .map(|(score, id)| {
            st.query_row([id], |r| {
                Ok(ObjectHit {
                    frame: Hit {
                        source: r.get(0)?,
                        pts_ns: r.get::<_, Option<i64>>(1)?.map(|p| p as u64),
                        pts_end_ns: None,
                        frame_index: r.get::<_, i64>(2)? as u64,
                        score,
                    },
                    roi_type: r.get(3)?,
                    rect: (r.get(4)?, r.get(5)?, r.get(6)?, r.get(7)?),
                })
            })
            .map_err(&err)
        })
        .collect()
}

/// The adaptor names the index holds vectors of, of frames or of objects.
pub(super) fn adaptor_names(path: &Path, of: AdaptorVectors) -> Result<Vec<String>, IndexError> {
    let conn = open_read_only(path)?;
    let err = sqlite(path);
    let view = adaptor_view(of);
    let has_view: bool = conn
        .query_row(
            "SELECT count(*) > 0 FROM sqlite_master WHERE name = ?1",
            [view],
            |r| r.get(0),
        )
        .map_err(&err)?;
    if !has_view {
        return Ok(Vec::new());
    }
    let mut st = conn
        .prepare(&format!("SELECT DISTINCT name FROM {view} ORDER BY name"))
        .map_err(&err)?;
    let names = st.query_map([], |r| r.get(0)).map_err(&err)?;
    names.collect::<rusqlite::Result<_>>().map_err(err)
}

/// The view that shows adaptor vectors of frames or of objects.
fn adaptor_view(of: AdaptorVectors) -> &'static str {
    match of {
        AdaptorVectors::Frames => "adaptor_frames",
        AdaptorVectors::Objects => "object_adaptors",
    }
}

/// Length of the `adaptor` vectors the index holds of frames or objects, if
/// it holds any.
pub(super) fn adaptor_dim(
    path: &Path,
    adaptor: &str,
    of: AdaptorVectors,
) -> Result<Option<usize>, IndexError> {
    let (table, column) = match of {
        AdaptorVectors::Frames => ("adaptor_rows", "summary"),
        AdaptorVectors::Objects => ("object_adaptor_rows", "vector"),
    };
    let bytes: Option<i64> = open_read_only(path)?
        .query_row(
            &format!("SELECT length({column}) FROM {table} WHERE name = ?1 LIMIT 1"),
            [adaptor],
            |r| r.get(0),
        )
        .optional()
        .map_err(sqlite(path))?;
    Ok(bytes.map(|b| b as usize / MetaDtype::F32.size()))
}

/// The `k` frames whose `adaptor` summary is most similar to `query`, best first,
/// each with the patch whose adaptor feature is most similar (when stored).
pub(super) fn search_adaptor(
    path: &Path,
    adaptor: &str,
    query: &[f32],
    k: usize,
    threads: usize,
    filter: &SearchFilter,
) -> Result<Vec<AdaptorHit>, IndexError> {
    let scan = Scan {
        table: "adaptor_rows",
        sql: "SELECT id, summary, summary_norm, source, pts_ns FROM adaptor_frames
              WHERE id >= ?1 AND id < ?2 AND length(summary) = ?3 AND name = ?4",
        name: Some(adaptor),
    };
    let best = scan.run(path, query, k, threads, filter)?;
    let err = sqlite(path);
    let conn = open_for_scan(path)?;
    let mut st = conn
        .prepare(
            "SELECT f.source, f.pts_ns, f.frame_index, a.spatial, a.grid_height, a.grid_width,
                    a.spatial_dim, f.pts_end_ns
             FROM adaptor_rows a JOIN frame_rows f ON f.id = a.frame_row WHERE a.id = ?1",
        )
        .map_err(&err)?;
    best.into_sorted()
        .into_iter()
        .map(|(score, id)| {
            st.query_row([id], |r| {
                let grid: Option<(i64, i64, i64)> = match (r.get(4)?, r.get(5)?, r.get(6)?) {
                    (Some(h), Some(w), Some(d)) => Some((h, w, d)),
                    _ => None,
                };
                let spatial: Option<Vec<u8>> = r.get(3)?;
                Ok(AdaptorHit {
                    frame: Hit {
                        source: r.get(0)?,
                        pts_ns: r.get::<_, Option<i64>>(1)?.map(|p| p as u64),
                        pts_end_ns: r.get::<_, Option<i64>>(7)?.map(|p| p as u64),
                        frame_index: r.get::<_, i64>(2)? as u64,
                        score,
                    },
                    best_patch: spatial.zip(grid).and_then(|(bytes, (h, w, d))| {
                        best_patch(&bytes, (h as usize, w as usize), d as usize, query)
                    }),
                })
            })
            .map_err(&err)
        })
        .collect()
}

/// The patch of an f16 (h, w, dim) grid most similar (cosine) to `query`.
fn best_patch(bytes: &[u8], grid: (usize, usize), dim: usize, query: &[f32]) -> Option<PatchHit> {
    if dim != query.len() || bytes.len() != grid.0 * grid.1 * dim * GRID_DTYPE.size() {
        return None;
    }
    let qnorm = norm(query);
    let values: Vec<f32> = bytes
        .chunks_exact(2)
        .map(|b| half::f16::from_le_bytes([b[0], b[1]]).to_f32())
        .collect();
    values
        .chunks_exact(dim)
        .enumerate()
        .map(|(i, patch)| {
            let score = dot(patch, query) / (qnorm * norm(patch));
            (i, score)
        })
        .max_by(|a, b| a.1.total_cmp(&b.1))
        .map(|(i, score)| PatchHit {
            row: i / grid.1,
            column: i % grid.1,
            grid,
            score,
        })
}

/// A read-only connection that reads blobs from the mapped file rather than
/// through a copy in the page cache.
fn open_for_scan(path: &Path) -> Result<Connection, IndexError> {
    let conn = open_read_only(path)?;
    conn.execute_batch("PRAGMA mmap_size = 68719476736;")
        .map_err(sqlite(path))?;
    Ok(conn)
}

/// An exact scan of one table's vectors, split over threads by row id.
struct Scan<'a> {
    /// The table (or view) whose ids are split.
    table: &'static str,
    /// Selects (id, vector, norm, source, pts_ns) for an id range (`?1`, `?2`),
    /// a vector length in bytes (`?3`) and, with `name`, an adaptor name (`?4`).
    sql: &'static str,
    name: Option<&'a str>,
}

impl Scan<'_> {
    /// The `k` best rows for `query` among those `filter` accepts, with
    /// `threads` readers over disjoint row-id ranges.
    fn run(
        &self,
        path: &Path,
        query: &[f32],
        k: usize,
        threads: usize,
        filter: &SearchFilter,
    ) -> Result<TopK<i64>, IndexError> {
        let (lo, hi): (i64, i64) = open_for_scan(path)?
            .query_row(
                &format!(
                    "SELECT coalesce(min(id), 0), coalesce(max(id), -1) FROM {}",
                    self.table
                ),
                [],
                |r| Ok((r.get(0)?, r.get(1)?)),
            )
            .map_err(sqlite(path))?;
        let threads = threads.max(1) as i64;
        let span = (hi - lo + 1).max(0);
        scan_in_parallel(threads as usize, k, |t| {
            let t = t as i64;
            let ids = lo + span * t / threads..lo + span * (t + 1) / threads;
            scan_vectors(path, self.sql, query, k, ids, self.name, filter)
        })
    }
}

/// The `k` best of the (id, vector, norm, source, pts_ns) rows `sql` selects for
/// an id range (`?1`, `?2`), a vector length in bytes (`?3`) and, when given, one
/// more text parameter (`?4`), among those `filter` accepts.
fn scan_vectors(
    path: &Path,
    sql: &str,
    query: &[f32],
    k: usize,
    ids: std::ops::Range<i64>,
    extra: Option<&str>,
    filter: &SearchFilter,
) -> Result<TopK<i64>, IndexError> {
    let err = sqlite(path);
    let qnorm = norm(query);
    let conn = open_for_scan(path)?;
    let mut st = conn.prepare(sql).map_err(&err)?;
    let bytes = (4 * query.len()) as i64;
    let mut rows = match extra {
        Some(text) => st.query(params![ids.start, ids.end, bytes, text]),
        None => st.query(params![ids.start, ids.end, bytes]),
    }
    .map_err(&err)?;
    let mut best = TopK::new(k);
    while let Some(row) = rows.next().map_err(&err)? {
        if filter.reads_rows() {
            let source = row.get_ref(3).and_then(|v| Ok(v.as_str()?)).map_err(&err)?;
            let pts: Option<i64> = row.get(4).map_err(&err)?;
            if !filter.accepts(source, pts.map(|p| p as u64)) {
                continue;
            }
        }
        let id: i64 = row.get(0).map_err(&err)?;
        let blob = row
            .get_ref(1)
            .and_then(|v| Ok(v.as_blob()?))
            .map_err(&err)?;
        let rnorm: f64 = row.get(2).map_err(&err)?;
        let score = dot(&LeBytes(blob), query) / (qnorm * (rnorm as f32).max(f32::MIN_POSITIVE));
        if filter.scores(score) {
            best.offer(score, || id);
        }
    }
    Ok(best)
}

/// The hits of ranked (score, row id) pairs, in their order.
fn hits(path: &Path, ranked: Vec<(f32, i64)>) -> Result<Vec<Hit>, IndexError> {
    let err = sqlite(path);
    let conn = open_for_scan(path)?;
    // An index not written since deduplication came has no pts_end_ns.
    let has_end: bool = conn
        .query_row(
            "SELECT count(*) > 0 FROM pragma_table_info('frames') WHERE name = 'pts_end_ns'",
            [],
            |r| r.get(0),
        )
        .map_err(&err)?;
    let end = if has_end { "pts_end_ns" } else { "NULL" };
    let mut st = conn
        .prepare(&format!(
            "SELECT source, pts_ns, frame_index, {end} FROM frames WHERE id = ?1"
        ))
        .map_err(&err)?;
    ranked
        .into_iter()
        .map(|(score, id)| {
            st.query_row([id], |r| {
                Ok(Hit {
                    source: r.get(0)?,
                    pts_ns: r.get::<_, Option<i64>>(1)?.map(|p| p as u64),
                    pts_end_ns: r.get::<_, Option<i64>>(3)?.map(|p| p as u64),
                    frame_index: r.get::<_, i64>(2)? as u64,
                    score,
                })
            })
            .map_err(&err)
        })
        .collect()
}
