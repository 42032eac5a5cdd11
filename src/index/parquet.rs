// SPDX-License-Identifier: MPL-2.0
//! The Parquet store: one Apache Parquet file, one row per embedded frame, the
//! summary a fixed-size list of float32 (DuckDB reads it as `FLOAT[]`), the
//! [`IndexSettings`] in the file's key/value metadata under `radioembed.*`.
//!
//! A Parquet file is written once, so a writer starts `<file>.partial` with the
//! rows of the other sources in the existing file, appends its own rows in row
//! groups written out as they fill (memory holds one row group), and renames
//! the finished file over the old one when its source reached EOS. An error, a
//! kill or a stop before that leaves the previous index as it was, and
//! indexing a source again replaces its rows. One writer per file at a time: the
//! `.partial` is locked while written, and a second writer is refused.

use std::fs::File;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use arrow_array::builder::{
    ArrayBuilder, Float32Builder, ListBuilder, StringBuilder, StructBuilder,
};
use arrow_array::cast::AsArray;
use arrow_array::types::{Float32Type, Int64Type};
use arrow_array::{
    Array, ArrayRef, BinaryArray, BooleanArray, FixedSizeListArray, Float32Array, Int32Array,
    Int64Array, RecordBatch, StringArray,
};
use arrow_schema::{ArrowError, DataType, Field, FieldRef, Fields, Schema, SchemaRef};
use bytes::Bytes;
use parquet::arrow::arrow_reader::{ParquetRecordBatchReaderBuilder, RowSelection, RowSelector};
use parquet::arrow::{ArrowWriter, ProjectionMask};
use parquet::errors::ParquetError;
use parquet::file::metadata::KeyValue;
use parquet::file::properties::WriterProperties;
use parquet::schema::types::ColumnPath;

use super::topk::{TopK, dot, norm, scan_in_parallel};
use super::{GRID_DTYPE, Hit, IndexError, IndexSettings, Row, SearchFilter};

/// Rows decoded at a time by search: small enough that a batch's values and
/// levels stay in the L2 cache (on this project's 2-core machine 32 rows scan
/// 100k x 2304 in about half the time 1024 rows take).
const BATCH_ROWS: usize = 32;

/// Prefix of the settings' keys in the file's key/value metadata.
const KEY_PREFIX: &str = "radioembed.";

/// The columns of an index of `dim`-dimensional summaries.
fn schema(dim: usize) -> SchemaRef {
    let item = || Arc::new(Field::new_list_field(DataType::Float32, false));
    let dim = i32::try_from(dim).expect("summary dimension fits in i32");
    Arc::new(Schema::new(vec![
        Field::new("source", DataType::Utf8, false),
        Field::new("pts_ns", DataType::Int64, true),
        Field::new("frame_index", DataType::Int64, false),
        Field::new("model", DataType::Utf8, false),
        Field::new("input_width", DataType::Int32, false),
        Field::new("input_height", DataType::Int32, false),
        Field::new("summary", DataType::FixedSizeList(item(), dim), false),
        // Little-endian GRID_DTYPE bytes (spatial_dtype names it): a list of
        // Float16 would cost the encoder an object per value.
        Field::new("spatial", DataType::Binary, true),
        Field::new("grid_height", DataType::Int32, true),
        Field::new("grid_width", DataType::Int32, true),
        Field::new("spatial_dim", DataType::Int32, true),
        Field::new("spatial_dtype", DataType::Utf8, true),
        // The last frame a deduplicated row stands for (NULL: one frame).
        Field::new("pts_end_ns", DataType::Int64, true),
        // A small JPEG of the frame, if the writer made one.
        Field::new("thumbnail", DataType::Binary, true),
        // Each adaptor head's summary (siglip2-g: what a text query is compared with).
        Field::new("adaptors", DataType::List(adaptor_entry()), true),
    ]))
}

/// An entry of the `adaptors` list: the adaptor's name and its summary.
fn adaptor_entry() -> FieldRef {
    let fields = Fields::from(vec![
        Field::new("name", DataType::Utf8, false),
        Field::new("summary", DataType::List(float_item()), false),
    ]);
    Arc::new(Field::new_list_field(DataType::Struct(fields), false))
}

/// The items of a list of float32.
fn float_item() -> FieldRef {
    Arc::new(Field::new_list_field(DataType::Float32, false))
}

/// The columns added at the end of the layout since its first version, in
/// order: an older file's batches get them as nulls.
const LATER_COLUMNS: [&str; 3] = ["pts_end_ns", "thumbnail", "adaptors"];

fn pq(path: &Path) -> impl Fn(ParquetError) -> IndexError + '_ {
    move |source| IndexError::Parquet {
        path: path.display().to_string(),
        source,
    }
}

fn arrow(path: &Path) -> impl Fn(ArrowError) -> IndexError + '_ {
    move |e| pq(path)(e.into())
}

fn io(path: &Path) -> impl Fn(std::io::Error) -> IndexError + '_ {
    move |source| IndexError::Io {
        path: path.display().to_string(),
        source,
    }
}

type Reader = ParquetRecordBatchReaderBuilder<Bytes>;

/// A reader over the memory-mapped file: pages are decoded straight from the
/// page cache instead of being read into fresh buffers first.
fn reader(path: &Path) -> Result<Reader, IndexError> {
    let file = File::open(path).map_err(io(path))?;
    // SAFETY: index files are replaced by rename, never rewritten in place, so
    // the mapped bytes do not change while they are mapped.
    let map = unsafe { memmap2::Mmap::map(&file) }.map_err(io(path))?;
    Reader::try_new(Bytes::from_owner(map)).map_err(pq(path))
}

/// A mask reading only the named top-level columns.
fn columns(builder: &Reader, names: &[&str], path: &Path) -> Result<ProjectionMask, IndexError> {
    let indices = names
        .iter()
        .map(|name| builder.schema().index_of(name))
        .collect::<Result<Vec<_>, _>>()
        .map_err(arrow(path))?;
    Ok(ProjectionMask::roots(builder.parquet_schema(), indices))
}

fn settings_of(builder: &Reader) -> Option<IndexSettings> {
    let pairs = builder.metadata().file_metadata().key_value_metadata();
    let mut get = |key: &str| -> Result<_, std::convert::Infallible> {
        Ok(pairs
            .and_then(|pairs| {
                pairs
                    .iter()
                    .find(|p| p.key.strip_prefix(KEY_PREFIX) == Some(key))
            })
            .and_then(|p| p.value.clone()))
    };
    let Ok(settings) = IndexSettings::from_pairs(&mut get);
    settings
}

/// The settings stored in an index, if it has any.
pub(super) fn read_settings(path: &Path) -> Result<Option<IndexSettings>, IndexError> {
    Ok(settings_of(&reader(path)?))
}

/// Number of rows, optionally of one source.
pub(super) fn count_rows(path: &Path, source: Option<&str>) -> Result<u64, IndexError> {
    let builder = reader(path)?;
    let Some(source) = source else {
        return Ok(builder.metadata().file_metadata().num_rows() as u64);
    };
    let mask = columns(&builder, &["source"], path)?;
    let mut n = 0;
    for batch in builder.with_projection(mask).build().map_err(pq(path))? {
        let batch = batch.map_err(arrow(path))?;
        let sources = batch.column(0).as_string::<i32>();
        n += sources.iter().filter(|s| *s == Some(source)).count() as u64;
    }
    Ok(n)
}

/// Creates and locks `partial` for writing `path`; refused while another
/// writer holds it (the lock goes with its process, so a killed writer's file
/// is taken over).
fn lock_partial(partial: &Path, path: &Path) -> Result<File, IndexError> {
    let file = std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(false)
        .open(partial)
        .map_err(io(partial))?;
    match file.try_lock() {
        Ok(()) => {}
        Err(std::fs::TryLockError::WouldBlock) => {
            return Err(IndexError::Busy {
                path: path.display().to_string(),
            });
        }
        Err(std::fs::TryLockError::Error(e)) => return Err(io(partial)(e)),
    }
    file.set_len(0).map_err(io(partial))?;
    Ok(file)
}

/// Writes one source's rows (and keeps the other sources') into a Parquet file.
pub(super) struct ParquetWriter {
    /// `None` once finished.
    writer: Option<ArrowWriter<File>>,
    path: PathBuf,
    partial: PathBuf,
    schema: SchemaRef,
    settings: IndexSettings,
    source: String,
    written: u64,
}

impl ParquetWriter {
    /// Starts `<path>.partial` with the other sources' rows of the file at
    /// `path` (if there is one, and only if it was built with `settings`).
    pub(super) fn open(
        path: &Path,
        settings: &IndexSettings,
        source: &str,
        rows_per_group: usize,
    ) -> Result<Self, IndexError> {
        let existing = match path.try_exists().map_err(io(path))? {
            true => {
                let builder = reader(path)?;
                let stored = settings_of(&builder).ok_or_else(|| IndexError::NotAnIndex {
                    path: path.display().to_string(),
                })?;
                stored.expect_same(settings, path)?;
                Some(builder)
            }
            false => None,
        };
        let mut name = path.as_os_str().to_owned();
        name.push(".partial");
        let partial = PathBuf::from(name);
        let file = lock_partial(&partial, path)?;
        let schema = schema(settings.summary_dim);
        let metadata = settings
            .pairs()
            .into_iter()
            .map(|(key, value)| KeyValue::new(format!("{KEY_PREFIX}{key}"), value))
            .collect();
        let properties = WriterProperties::builder()
            .set_max_row_group_row_count(Some(rows_per_group))
            .set_dictionary_enabled(false)
            .set_column_dictionary_enabled(ColumnPath::from("source"), true)
            .set_column_dictionary_enabled(ColumnPath::from("model"), true)
            .set_key_value_metadata(Some(metadata))
            .build();
        let writer = ArrowWriter::try_new(file, schema.clone(), Some(properties));
        let mut this = Self {
            writer: Some(writer.map_err(pq(&partial))?),
            path: path.to_path_buf(),
            partial,
            schema,
            settings: settings.clone(),
            source: source.to_string(),
            written: 0,
        };
        if let Some(builder) = existing {
            this.keep_other_sources(builder)?;
        }
        Ok(this)
    }

    fn keep_other_sources(&mut self, builder: Reader) -> Result<(), IndexError> {
        let path = self.path.clone();
        for batch in builder.build().map_err(pq(&path))? {
            let batch = batch.map_err(arrow(&path))?;
            let sources = batch
                .column_by_name("source")
                .ok_or_else(|| arrow(&path)(ArrowError::SchemaError("no source column".into())))?
                .as_string::<i32>();
            let keep: BooleanArray = sources
                .iter()
                .map(|s| Some(s != Some(self.source.as_str())))
                .collect();
            let kept = arrow_select::filter::filter_record_batch(&batch, &keep)
                .and_then(|b| self.upgrade(b))
                .map_err(arrow(&path))?;
            self.write(&kept)?;
        }
        Ok(())
    }

    /// A batch of an index written before grids were f16 bytes (a list of
    /// float32 and no `spatial_dtype`) or before the [`LATER_COLUMNS`], in this
    /// layout; others pass as they are.
    fn upgrade(&self, batch: RecordBatch) -> Result<RecordBatch, ArrowError> {
        let batch = self.upgrade_grids(batch)?;
        let mut columns = batch.columns().to_vec();
        for name in LATER_COLUMNS {
            if batch.schema().column_with_name(name).is_none() {
                let field = self.schema.field_with_name(name)?;
                columns.push(arrow_array::new_null_array(
                    field.data_type(),
                    batch.num_rows(),
                ));
            }
        }
        RecordBatch::try_new(self.schema.clone(), columns)
    }

    /// Grids as f16 bytes with `spatial_dtype` (the columns up to it only).
    fn upgrade_grids(&self, batch: RecordBatch) -> Result<RecordBatch, ArrowError> {
        if batch.schema().column_with_name("spatial_dtype").is_some() {
            return Ok(batch);
        }
        let old = batch
            .column_by_name("spatial")
            .ok_or_else(|| ArrowError::SchemaError("no spatial column".into()))?
            .as_list::<i32>();
        let spatial: BinaryArray = old
            .iter()
            .map(|grid| grid.map(|g| GRID_DTYPE.le_bytes(g.as_primitive::<Float32Type>().values())))
            .collect();
        let dtypes: StringArray = old.iter().map(|g| g.map(|_| GRID_DTYPE.as_str())).collect();
        let mut columns = batch.columns().to_vec();
        let at = batch.schema().index_of("spatial")?;
        columns[at] = Arc::new(spatial);
        columns.push(Arc::new(dtypes));
        let mut fields: Vec<_> = batch.schema().fields().iter().cloned().collect();
        fields[at] = Arc::new(Field::new("spatial", DataType::Binary, true));
        fields.push(Arc::new(Field::new("spatial_dtype", DataType::Utf8, true)));
        RecordBatch::try_new(Arc::new(Schema::new(fields)), columns)
    }

    /// The settings the index was built with.
    pub(super) fn settings(&self) -> &IndexSettings {
        &self.settings
    }

    /// Writes `rows` as one row group, flushed and synced to the file.
    pub(super) fn write_rows(&mut self, rows: &[Row]) -> Result<(), IndexError> {
        let batch = self.batch(rows).map_err(arrow(&self.partial))?;
        self.write(&batch)?;
        self.written += rows.len() as u64;
        let writer = self.writer.as_mut().expect("writer open until finish");
        writer.flush().map_err(pq(&self.partial))?;
        writer.sync().map_err(io(&self.partial))
    }

    fn write(&mut self, batch: &RecordBatch) -> Result<(), IndexError> {
        let writer = self.writer.as_mut().expect("writer open until finish");
        writer.write(batch).map_err(pq(&self.partial))
    }

    /// The rows as a record batch of this index's schema.
    fn batch(&self, rows: &[Row]) -> Result<RecordBatch, ArrowError> {
        let n = rows.len();
        let int32 = |f: &dyn Fn(&Row) -> Option<usize>| -> ArrayRef {
            Arc::new(Int32Array::from_iter(
                rows.iter().map(|r| f(r).map(|v| v as i32)),
            ))
        };
        let summaries: Float32Array = rows
            .iter()
            .flat_map(|r| r.summary.iter().copied())
            .collect();
        let summary = FixedSizeListArray::try_new(
            float_item(),
            self.settings.summary_dim as i32,
            Arc::new(summaries),
            None,
        )?;
        let spatial: BinaryArray = rows
            .iter()
            .map(|r| r.spatial.as_ref().map(|(v, _, _)| GRID_DTYPE.le_bytes(v)))
            .collect();
        let dtypes: StringArray = rows
            .iter()
            .map(|r| r.spatial.as_ref().map(|_| GRID_DTYPE.as_str()))
            .collect();
        let columns: Vec<ArrayRef> = vec![
            Arc::new(StringArray::from(vec![self.source.as_str(); n])),
            Arc::new(Int64Array::from_iter(
                rows.iter().map(|r| r.pts_ns.map(|p| p as i64)),
            )),
            Arc::new(Int64Array::from_iter_values(
                rows.iter().map(|r| r.frame_index as i64),
            )),
            Arc::new(StringArray::from(vec![self.settings.model.as_str(); n])),
            int32(&|r| Some(r.input_size.0)),
            int32(&|r| Some(r.input_size.1)),
            Arc::new(summary),
            Arc::new(spatial),
            int32(&|r| r.spatial.as_ref().map(|(_, grid, _)| grid.0)),
            int32(&|r| r.spatial.as_ref().map(|(_, grid, _)| grid.1)),
            int32(&|r| r.spatial.as_ref().map(|(_, _, dim)| *dim)),
            Arc::new(dtypes),
            Arc::new(Int64Array::from_iter(
                rows.iter().map(|r| r.pts_end_ns.map(|p| p as i64)),
            )),
            Arc::new(BinaryArray::from_iter(
                rows.iter()
                    .map(|r| r.thumbnail.as_ref().and_then(|t| t.bytes())),
            )),
            adaptor_summaries(rows),
        ];
        RecordBatch::try_new(self.schema.clone(), columns)
    }

    /// Writes the last row group and the footer, and renames the file into
    /// place; returns the number of rows this writer added.
    pub(super) fn finish(mut self) -> Result<u64, IndexError> {
        let mut writer = self.writer.take().expect("writer open until finish");
        writer.finish().map_err(pq(&self.partial))?;
        writer.inner().sync_all().map_err(io(&self.partial))?;
        std::fs::rename(&self.partial, &self.path).map_err(io(&self.path))?;
        Ok(self.written)
    }
}

/// The `adaptors` column of `rows`: each row's list of adaptor summaries.
fn adaptor_summaries(rows: &[Row]) -> ArrayRef {
    let entry = adaptor_entry();
    let DataType::Struct(fields) = entry.data_type() else {
        unreachable!("an adaptor entry is a struct")
    };
    let parts: Vec<Box<dyn ArrayBuilder>> = vec![
        Box::new(StringBuilder::new()),
        Box::new(ListBuilder::new(Float32Builder::new()).with_field(float_item())),
    ];
    let mut lists = ListBuilder::new(StructBuilder::new(fields.clone(), parts)).with_field(entry);
    for row in rows {
        let entries = lists.values();
        for adaptor in &row.adaptors {
            let names = entries
                .field_builder::<StringBuilder>(0)
                .expect("the name builder");
            names.append_value(&adaptor.name);
            let summaries = entries
                .field_builder::<ListBuilder<Float32Builder>>(1)
                .expect("the summary builder");
            summaries.values().append_slice(&adaptor.summary);
            summaries.append(true);
            entries.append(true);
        }
        lists.append(true);
    }
    Arc::new(lists.finish())
}

impl Drop for ParquetWriter {
    /// An unfinished writer leaves the old index alone and no partial file.
    fn drop(&mut self) {
        if self.writer.take().is_some() {
            let _ = std::fs::remove_file(&self.partial);
        }
    }
}

/// The position in the file of the source's frame `frame_index`, found by
/// reading the `source` and `frame_index` columns only.
fn find_row(path: &Path, source: &str, frame_index: u64) -> Result<Option<usize>, IndexError> {
    let builder = reader(path)?;
    let mask = columns(&builder, &["source", "frame_index"], path)?;
    let mut offset = 0;
    for batch in builder.with_projection(mask).build().map_err(pq(path))? {
        let batch = batch.map_err(arrow(path))?;
        let sources = batch.column(0).as_string::<i32>();
        let frames = batch.column(1).as_primitive::<Int64Type>();
        if let Some(row) = (0..batch.num_rows())
            .find(|&r| sources.value(r) == source && frames.value(r) == frame_index as i64)
        {
            return Ok(Some(offset + row));
        }
        offset += batch.num_rows();
    }
    Ok(None)
}

/// Column `name` of the row at position `at`, decoding that row only.
fn read_cell(path: &Path, name: &str, at: usize) -> Result<Option<ArrayRef>, IndexError> {
    let builder = reader(path)?;
    let mask = columns(&builder, &[name], path)?;
    let only = RowSelection::from(vec![RowSelector::skip(at), RowSelector::select(1)]);
    let mut batches = builder
        .with_projection(mask)
        .with_row_selection(only)
        .build()
        .map_err(pq(path))?;
    let batch = batches.next().transpose().map_err(arrow(path))?;
    Ok(batch
        .filter(|b| b.num_rows() == 1)
        .map(|b| b.column(0).clone()))
}

/// The thumbnail of the source's frame `frame_index`; none in a file from
/// before thumbnails.
pub(super) fn thumbnail(
    path: &Path,
    source: &str,
    frame_index: u64,
) -> Result<Option<Vec<u8>>, IndexError> {
    if reader(path)?
        .schema()
        .column_with_name("thumbnail")
        .is_none()
    {
        return Ok(None);
    }
    let Some(at) = find_row(path, source, frame_index)? else {
        return Ok(None);
    };
    let cell = read_cell(path, "thumbnail", at)?;
    Ok(cell.and_then(|c| {
        let jpegs = c.as_binary::<i32>();
        jpegs.is_valid(0).then(|| jpegs.value(0).to_vec())
    }))
}

/// The summary of the source's frame `frame_index`.
pub(super) fn summary(
    path: &Path,
    source: &str,
    frame_index: u64,
) -> Result<Option<Vec<f32>>, IndexError> {
    let Some(at) = find_row(path, source, frame_index)? else {
        return Ok(None);
    };
    let cell = read_cell(path, "summary", at)?;
    Ok(cell.map(|c| {
        let list = c.as_fixed_size_list();
        list.value(0)
            .as_primitive::<Float32Type>()
            .values()
            .to_vec()
    }))
}

/// The sources the file holds rows of, in name order.
pub(super) fn sources(path: &Path) -> Result<Vec<String>, IndexError> {
    let builder = reader(path)?;
    let mask = columns(&builder, &["source"], path)?;
    let mut sources = std::collections::BTreeSet::new();
    for batch in builder.with_projection(mask).build().map_err(pq(path))? {
        let batch = batch.map_err(arrow(path))?;
        let names = batch.column(0).as_string::<i32>();
        sources.extend(names.iter().flatten().map(str::to_string));
    }
    Ok(sources.into_iter().collect())
}

/// Which vector of a row a search compares with the query.
#[derive(Clone, Copy)]
enum Vectors<'a> {
    /// The backbone summary.
    Summary,
    /// The summary of the adaptor of this name (rows without one are skipped).
    Adaptor(&'a str),
}

impl<'a> Vectors<'a> {
    /// The column that holds them.
    fn column(self) -> &'static str {
        match self {
            Self::Summary => "summary",
            Self::Adaptor(_) => "adaptors",
        }
    }

    /// Each row's vector in a batch's `column`, if the row has one.
    fn of_rows<'c>(self, column: &'c dyn Array) -> Box<dyn Fn(usize) -> Option<&'c [f32]> + 'c>
    where
        'a: 'c,
    {
        match self {
            Self::Summary => {
                let list = column.as_fixed_size_list();
                let values = list.values().as_primitive::<Float32Type>().values();
                let dim = list.value_length() as usize;
                Box::new(move |row| {
                    let at = list.value_offset_at(row);
                    Some(&values[at..at + dim])
                })
            }
            Self::Adaptor(name) => {
                let lists = column.as_list::<i32>();
                let entries = lists.values().as_struct();
                let names = entries.column(0).as_string::<i32>();
                let summaries = entries.column(1).as_list::<i32>();
                let values = summaries.values().as_primitive::<Float32Type>().values();
                let offsets = summaries.value_offsets();
                Box::new(move |row| {
                    if lists.is_null(row) {
                        return None;
                    }
                    let entries = lists.value_offsets()[row]..lists.value_offsets()[row + 1];
                    let at = entries
                        .map(|e| e as usize)
                        .find(|&e| names.value(e) == name)?;
                    Some(&values[offsets[at] as usize..offsets[at + 1] as usize])
                })
            }
        }
    }
}

/// The `k` rows most similar (cosine) to `query`, best first, with `threads`
/// readers over interleaved row groups.
pub(super) fn search(
    path: &Path,
    query: &[f32],
    k: usize,
    threads: usize,
    filter: &SearchFilter,
) -> Result<Vec<Hit>, IndexError> {
    scan(path, Vectors::Summary, query, k, threads, filter)
}

/// The `k` rows whose `adaptor` summary is most similar (cosine) to `query`,
/// best first.
pub(super) fn search_adaptor(
    path: &Path,
    adaptor: &str,
    query: &[f32],
    k: usize,
    threads: usize,
    filter: &SearchFilter,
) -> Result<Vec<Hit>, IndexError> {
    if !has_column(path, "adaptors")? {
        return Ok(Vec::new());
    }
    scan(path, Vectors::Adaptor(adaptor), query, k, threads, filter)
}

/// Whether the file has the column `name` (files of older layouts lack some).
fn has_column(path: &Path, name: &str) -> Result<bool, IndexError> {
    Ok(reader(path)?.schema().column_with_name(name).is_some())
}

/// The `k` rows whose `vectors` are most similar to `query` (rows whose vector
/// has another length are skipped), with `threads` readers over interleaved
/// row groups.
fn scan(
    path: &Path,
    vectors: Vectors,
    query: &[f32],
    k: usize,
    threads: usize,
    filter: &SearchFilter,
) -> Result<Vec<Hit>, IndexError> {
    let groups = reader(path)?.metadata().num_row_groups();
    let qnorm = norm(query);
    let scan = |first: usize| -> Result<TopK<Hit>, IndexError> {
        let builder = reader(path)?;
        // Files from before deduplication have no pts_end_ns.
        let has_end = builder.schema().column_with_name("pts_end_ns").is_some();
        let mut names = vec!["source", "pts_ns", "frame_index", vectors.column()];
        if has_end {
            names.push("pts_end_ns");
        }
        let mask = columns(&builder, &names, path)?;
        let mine = (first..groups).step_by(threads).collect();
        let batches = builder
            .with_projection(mask)
            .with_row_groups(mine)
            .with_batch_size(BATCH_ROWS)
            .build()
            .map_err(pq(path))?;
        let mut best = TopK::new(k);
        for batch in batches {
            let batch = batch.map_err(arrow(path))?;
            // A projection keeps the file's column order, not the names'.
            let column = |name: &str| {
                batch.column_by_name(name).ok_or_else(|| {
                    arrow(path)(ArrowError::SchemaError(format!("no {name} column")))
                })
            };
            let sources = column("source")?.as_string::<i32>();
            let pts = column("pts_ns")?.as_primitive::<Int64Type>();
            let frames = column("frame_index")?.as_primitive::<Int64Type>();
            let vector_of = vectors.of_rows(column(vectors.column())?.as_ref());
            let ends = match has_end {
                true => Some(column("pts_end_ns")?.as_primitive::<Int64Type>()),
                false => None,
            };
            for row in 0..batch.num_rows() {
                let pts_ns = pts.is_valid(row).then(|| pts.value(row) as u64);
                if filter.reads_rows() && !filter.accepts(sources.value(row), pts_ns) {
                    continue;
                }
                let Some(v) = vector_of(row).filter(|v| v.len() == query.len()) else {
                    continue;
                };
                let score = dot(v, query) / (qnorm * norm(v));
                if !filter.scores(score) {
                    continue;
                }
                best.offer(score, || Hit {
                    source: sources.value(row).to_string(),
                    pts_ns,
                    pts_end_ns: ends
                        .filter(|e| e.is_valid(row))
                        .map(|e| e.value(row) as u64),
                    frame_index: frames.value(row) as u64,
                    score,
                });
            }
        }
        Ok(best)
    };
    let best = scan_in_parallel(threads.min(groups.max(1)), k, scan)?;
    Ok(best.into_sorted().into_iter().map(|(_, hit)| hit).collect())
}

/// The names of the adaptors whose summaries the file holds, and the length
/// of each one's (the first found), in name order; reads the `adaptors`
/// column only.
pub(super) fn adaptors(path: &Path) -> Result<Vec<(String, usize)>, IndexError> {
    let builder = reader(path)?;
    if builder.schema().column_with_name("adaptors").is_none() {
        return Ok(Vec::new());
    }
    let mask = columns(&builder, &["adaptors"], path)?;
    let mut found = std::collections::BTreeMap::new();
    for batch in builder.with_projection(mask).build().map_err(pq(path))? {
        let batch = batch.map_err(arrow(path))?;
        let entries = batch.column(0).as_list::<i32>().values().as_struct();
        let names = entries.column(0).as_string::<i32>();
        let summaries = entries.column(1).as_list::<i32>();
        for e in 0..entries.len() {
            found
                .entry(names.value(e).to_string())
                .or_insert_with(|| summaries.value_length(e) as usize);
        }
    }
    Ok(found.into_iter().collect())
}
