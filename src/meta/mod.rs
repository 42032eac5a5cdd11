// SPDX-License-Identifier: MPL-2.0
//! `RadioEmbedMeta`: the embeddings of one frame, attached to its buffer.
//!
//! The meta is a `GstCustomMeta` whose `GstStructure` any language reads without a
//! header (C: `gst_buffer_get_custom_meta (buf, "RadioEmbedMeta")`; Python:
//! `buf.get_custom_meta("RadioEmbedMeta").get_structure()`). Fields:
//!
//! | field | type | meaning |
//! |---|---|---|
//! | `summary` | `GstBuffer` | `summary-dim` little-endian floats of `dtype` |
//! | `spatial` | `GstBuffer` (optional) | `grid-height · grid-width · spatial-dim` floats, row-major |
//! | `summary-dim`, `spatial-dim` | `guint` | vector lengths |
//! | `grid-height`, `grid-width` | `guint` | patch grid of `spatial` (after pooling) |
//! | `dtype` | string | `f32` or `f16` |
//! | `model` | string | repo id or folder the embeddings come from |
//! | `input-width`, `input-height` | `guint` | the model input size in pixels |
//! | `frame-index` | `guint64` | running index of the frame in the stream (0-based) |
//! | `source-id` | string | the stream the frame belongs to (`radioembed`'s `source-id`) |
//! | `adaptors` | string (optional) | comma-separated adaptor names (`radioembed adaptor=siglip2-g`) |
//! | `<name>-summary` | `GstBuffer` (optional) | the adaptor's summary, `<name>-summary-dim` floats of `dtype` |
//! | `<name>-spatial` | `GstBuffer` (optional) | the adaptor's patch features on the same grid, `<name>-spatial-dim` floats each |
//! | `<name>-summary-dim`, `<name>-spatial-dim` | `guint` | the adaptor's vector lengths |
//!
//! [`Embedding`] is the typed Rust view of the same data. Built with the `v1_26`
//! feature, the same vectors also travel as GStreamer's standard tensor meta
//! (see [`tensor`]).

use std::sync::Once;

pub use region::{
    REGION_PARAM, RegionAdaptor, RegionEmbedding, RegionKind, RegionVectors, region_param, regions,
};

mod region;
#[cfg(feature = "v1_26")]
pub mod tensor;

/// Name the custom meta is registered under.
pub const META_NAME: &str = "RadioEmbedMeta";

/// Element type of the stored vectors.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum MetaDtype {
    /// IEEE single precision.
    #[default]
    F32,
    /// IEEE half precision (halves the memory per frame).
    F16,
}

impl MetaDtype {
    /// The string stored in the `dtype` field.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::F32 => "f32",
            Self::F16 => "f16",
        }
    }

    fn from_str(s: &str) -> Option<Self> {
        match s {
            "f32" => Some(Self::F32),
            "f16" => Some(Self::F16),
            _ => None,
        }
    }

    /// `values` as little-endian bytes of this type: how the meta, and an
    /// index, store a vector.
    pub fn le_bytes(self, values: &[f32]) -> Vec<u8> {
        match self {
            Self::F32 => values.iter().flat_map(|v| v.to_le_bytes()).collect(),
            Self::F16 => values
                .iter()
                .flat_map(|v| half::f16::from_f32(*v).to_le_bytes())
                .collect(),
        }
    }

    /// The values of little-endian `bytes` of this type: the inverse of
    /// [`MetaDtype::le_bytes`] (a trailing partial value is ignored).
    pub fn values(self, bytes: &[u8]) -> Vec<f32> {
        match self {
            Self::F32 => bytes
                .chunks_exact(4)
                .map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]]))
                .collect(),
            Self::F16 => bytes
                .chunks_exact(2)
                .map(|b| half::f16::from_le_bytes([b[0], b[1]]).to_f32())
                .collect(),
        }
    }

    /// Bytes per stored value.
    pub fn size(self) -> usize {
        match self {
            Self::F32 => 4,
            Self::F16 => 2,
        }
    }
}

/// The embeddings of one frame.
#[derive(Debug, Clone, PartialEq)]
pub struct Embedding {
    /// Image-level vector (`summary-dim` values), if requested.
    pub summary: Option<Vec<f32>>,
    /// Patch features, row-major (grid-height · grid-width, spatial-dim), if requested.
    pub spatial: Option<Vec<f32>>,
    /// Width of one patch feature.
    pub spatial_dim: usize,
    /// Patch grid (rows, columns) of `spatial`.
    pub grid: (usize, usize),
    /// Element type the vectors are stored in on the buffer.
    pub dtype: MetaDtype,
    /// Model id (repo id or folder).
    pub model: String,
    /// Model input size (width, height) in pixels.
    pub input_size: (usize, usize),
    /// Running index of the frame in its stream.
    pub frame_index: u64,
    /// The stream the frame belongs to, so embeddings stay attributable after a
    /// `funnel` or in a shared index.
    pub source_id: String,
    /// What the model's adaptor heads give for the frame (`siglip2-g`, …).
    pub adaptors: Vec<AdaptorEmbedding>,
}

/// One adaptor's vectors for a frame: in its teacher's space (`siglip2-g`: SigLIP2's
/// text-aligned space).
#[derive(Debug, Clone, PartialEq)]
pub struct AdaptorEmbedding {
    /// The adaptor's name; its meta fields are `<name>-summary`, `<name>-spatial`.
    pub name: String,
    /// The summary head's output.
    pub summary: Vec<f32>,
    /// The feature head's output on the frame's patch grid (pooled as `spatial`),
    /// row-major, if spatial outputs were requested.
    pub spatial: Option<Vec<f32>>,
    /// Width of one adaptor patch feature.
    pub spatial_dim: usize,
}

/// Why a meta could not be read back.
#[derive(Debug, thiserror::Error)]
pub enum MetaError {
    /// A field is missing or of the wrong type.
    #[error("RadioEmbedMeta field `{0}` is missing or malformed")]
    Field(&'static str),
    /// A vector buffer has a size that does not match its dimensions.
    #[error("RadioEmbedMeta `{field}` holds {found} bytes, expected {expected}")]
    Size {
        /// The field.
        field: &'static str,
        /// Bytes expected from the dims and dtype.
        expected: usize,
        /// Bytes present.
        found: usize,
    },
}

/// Registers the meta with GStreamer (idempotent). Requires `gst::init()`.
pub fn register() {
    static ONCE: Once = Once::new();
    ONCE.call_once(|| {
        // The grid describes the frame's pixels: elements that scale, crop or flip
        // them (videoscale, videocrop, videoflip) drop metas with these tags.
        let tags = ["video", "size", "orientation"];
        gst::meta::CustomMeta::register_with_transform(
            META_NAME,
            &tags,
            |dest, meta, _src, kind| {
                if kind != <gst::meta::MetaTransformCopy as gst::meta::MetaTransform>::quark() {
                    return false;
                }
                match gst::meta::CustomMeta::add(dest, META_NAME) {
                    Ok(mut copy) => {
                        let fields = copy.mut_structure();
                        for (name, value) in meta.structure().iter() {
                            fields.set_value(name, value.clone());
                        }
                        true
                    }
                    Err(_) => false,
                }
            },
        );
    });
}

fn encode(values: &[f32], dtype: MetaDtype) -> gst::Buffer {
    gst::Buffer::from_mut_slice(dtype.le_bytes(values))
}

/// [`encode`], keeping `values`' own memory where its bytes are already the
/// stored ones (f32, little-endian CPU).
fn encode_owned(values: Vec<f32>, dtype: MetaDtype) -> gst::Buffer {
    if cfg!(target_endian = "little") && dtype == MetaDtype::F32 {
        gst::Buffer::from_mut_slice(F32Bytes(values))
    } else {
        encode(&values, dtype)
    }
}

/// f32 values seen as their native-endian bytes.
struct F32Bytes(Vec<f32>);

impl AsRef<[u8]> for F32Bytes {
    fn as_ref(&self) -> &[u8] {
        // SAFETY: f32 has no padding and every byte of it is initialised;
        // u8 needs no alignment; the length covers the same memory.
        unsafe { std::slice::from_raw_parts(self.0.as_ptr().cast(), self.0.len() * 4) }
    }
}

impl AsMut<[u8]> for F32Bytes {
    fn as_mut(&mut self) -> &mut [u8] {
        // SAFETY: as for `as_ref`, and any bytes written are a valid f32.
        unsafe { std::slice::from_raw_parts_mut(self.0.as_mut_ptr().cast(), self.0.len() * 4) }
    }
}

fn decode(
    s: &gst::StructureRef,
    field: &'static str,
    len: usize,
    dtype: MetaDtype,
) -> Result<Option<Vec<f32>>, MetaError> {
    decode_as(s, field, field, len, dtype)
}

/// [`decode`] of a field whose name is made at run time (an adaptor's), reported
/// in errors as `label`.
fn decode_as(
    s: &gst::StructureRef,
    field: &str,
    label: &'static str,
    len: usize,
    dtype: MetaDtype,
) -> Result<Option<Vec<f32>>, MetaError> {
    let Ok(buffer) = s.get::<gst::Buffer>(field) else {
        return Ok(None);
    };
    let map = buffer.map_readable().map_err(|_| MetaError::Field(label))?;
    let expected = len * dtype.size();
    if map.len() != expected {
        return Err(MetaError::Size {
            field: label,
            expected,
            found: map.len(),
        });
    }
    Ok(Some(dtype.values(&map)))
}

impl Embedding {
    /// Length of the summary vector (0 when absent).
    pub fn summary_dim(&self) -> usize {
        self.summary.as_ref().map_or(0, Vec::len)
    }

    /// Attaches these embeddings to a buffer as a `RadioEmbedMeta` and, with the
    /// `v1_26` feature, as a `GstTensorMeta` sharing the same vector buffers.
    pub fn attach(&self, buffer: &mut gst::BufferRef) -> Result<(), glib::BoolError> {
        let summary = self.summary.as_ref().map(|v| encode(v, self.dtype));
        let spatial = self.spatial.as_ref().map(|v| encode(v, self.dtype));
        self.attach_encoded(buffer, summary, spatial)
    }

    /// [`attach`](Self::attach), moving the summary and patch vectors into the
    /// meta's buffers instead of copying them (f32 on a little-endian CPU:
    /// no copy at all; a 512 px SO400M grid is 4.7 MB a frame). They are
    /// `None` afterwards; the rest of the embedding stays.
    pub fn move_into_meta(&mut self, buffer: &mut gst::BufferRef) -> Result<(), glib::BoolError> {
        let summary = self.summary.take().map(|v| encode_owned(v, self.dtype));
        let spatial = self.spatial.take().map(|v| encode_owned(v, self.dtype));
        self.attach_encoded(buffer, summary, spatial)
    }

    /// The metas of these embeddings with the summary and patch vectors
    /// already encoded (their sizes say their lengths: the vectors themselves
    /// may have moved into them).
    fn attach_encoded(
        &self,
        buffer: &mut gst::BufferRef,
        summary: Option<gst::Buffer>,
        spatial: Option<gst::Buffer>,
    ) -> Result<(), glib::BoolError> {
        let mut meta = gst::meta::CustomMeta::add(buffer, META_NAME)?;
        let s = meta.mut_structure();
        let uint = |v: usize| u32::try_from(v).unwrap_or(u32::MAX);
        let summary_dim = summary.as_ref().map_or(0, |b| b.size() / self.dtype.size());
        if let Some(summary) = &summary {
            s.set("summary", summary);
        }
        if let Some(spatial) = &spatial {
            s.set("spatial", spatial);
        }
        s.set("summary-dim", uint(summary_dim));
        s.set("spatial-dim", uint(self.spatial_dim));
        s.set("grid-height", uint(self.grid.0));
        s.set("grid-width", uint(self.grid.1));
        s.set("dtype", self.dtype.as_str());
        s.set("model", self.model.as_str());
        s.set("input-width", uint(self.input_size.0));
        s.set("input-height", uint(self.input_size.1));
        s.set("frame-index", self.frame_index);
        s.set("source-id", self.source_id.as_str());
        if !self.adaptors.is_empty() {
            let names: Vec<&str> = self.adaptors.iter().map(|a| a.name.as_str()).collect();
            s.set("adaptors", names.join(","));
        }
        for adaptor in &self.adaptors {
            let name = &adaptor.name;
            s.set(
                format!("{name}-summary"),
                encode(&adaptor.summary, self.dtype),
            );
            s.set(format!("{name}-summary-dim"), uint(adaptor.summary.len()));
            if let Some(spatial) = &adaptor.spatial {
                s.set(format!("{name}-spatial"), encode(spatial, self.dtype));
                s.set(format!("{name}-spatial-dim"), uint(adaptor.spatial_dim));
            }
        }
        #[cfg(feature = "v1_26")]
        tensor::attach(buffer, self, summary, spatial);
        Ok(())
    }

    /// Reads the `RadioEmbedMeta` of a buffer; `Ok(None)` if it has none.
    pub fn from_buffer(buffer: &gst::BufferRef) -> Result<Option<Self>, MetaError> {
        let Ok(meta) = gst::meta::CustomMeta::from_buffer(buffer, META_NAME) else {
            return Ok(None);
        };
        let s = meta.structure();
        let uint = |field: &'static str| {
            s.get::<u32>(field)
                .map(|v| v as usize)
                .map_err(|_| MetaError::Field(field))
        };
        let dtype = s
            .get::<&str>("dtype")
            .ok()
            .and_then(MetaDtype::from_str)
            .ok_or(MetaError::Field("dtype"))?;
        let grid = (uint("grid-height")?, uint("grid-width")?);
        let spatial_dim = uint("spatial-dim")?;
        let adaptors = s
            .get::<&str>("adaptors")
            .map_or(Vec::new(), |names| names.split(',').collect())
            .into_iter()
            .filter(|name| !name.is_empty())
            .map(|name| read_adaptor(s, name, grid.0 * grid.1, dtype))
            .collect::<Result<_, _>>()?;
        Ok(Some(Self {
            summary: decode(s, "summary", uint("summary-dim")?, dtype)?,
            spatial: decode(s, "spatial", grid.0 * grid.1 * spatial_dim, dtype)?,
            spatial_dim,
            grid,
            dtype,
            model: s
                .get::<String>("model")
                .map_err(|_| MetaError::Field("model"))?,
            input_size: (uint("input-width")?, uint("input-height")?),
            frame_index: s
                .get::<u64>("frame-index")
                .map_err(|_| MetaError::Field("frame-index"))?,
            source_id: s
                .get::<String>("source-id")
                .map_err(|_| MetaError::Field("source-id"))?,
            adaptors,
        }))
    }

    /// The vectors of the adaptor called `name`, if the frame has them.
    pub fn adaptor(&self, name: &str) -> Option<&AdaptorEmbedding> {
        self.adaptors.iter().find(|a| a.name == name)
    }
}

/// The `<name>-*` fields of one adaptor; `patches` is the grid's size.
fn read_adaptor(
    s: &gst::StructureRef,
    name: &str,
    patches: usize,
    dtype: MetaDtype,
) -> Result<AdaptorEmbedding, MetaError> {
    let uint = |field: String| s.get::<u32>(field.as_str()).ok().map(|v| v as usize);
    let summary_dim = uint(format!("{name}-summary-dim")).ok_or(MetaError::Field("adaptors"))?;
    let summary = decode_as(
        s,
        &format!("{name}-summary"),
        "adaptors",
        summary_dim,
        dtype,
    )?
    .ok_or(MetaError::Field("adaptors"))?;
    let spatial_dim = uint(format!("{name}-spatial-dim")).unwrap_or(0);
    let spatial = decode_as(
        s,
        &format!("{name}-spatial"),
        "adaptors",
        patches * spatial_dim,
        dtype,
    )?;
    Ok(AdaptorEmbedding {
        name: name.to_string(),
        summary,
        spatial,
        spatial_dim,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A small embedding with every field set.
    pub(super) fn sample(dtype: MetaDtype) -> Embedding {
        Embedding {
            summary: Some(vec![0.5, -1.25, 3.0]),
            spatial: Some((0..12).map(|i| i as f32 * 0.25).collect()),
            spatial_dim: 2,
            grid: (2, 3),
            dtype,
            model: "tiny".into(),
            input_size: (48, 32),
            frame_index: 7,
            source_id: "cam-1".into(),
            adaptors: vec![AdaptorEmbedding {
                name: "siglip2-g".into(),
                summary: vec![0.25, -0.5],
                spatial: Some((0..18).map(|i| i as f32 * -0.5).collect()),
                spatial_dim: 3,
            }],
        }
    }

    /// A buffer carrying the metas of `embedding` (GStreamer and the meta set up).
    pub(super) fn with_meta(embedding: &Embedding) -> gst::Buffer {
        gst::init().unwrap();
        register();
        let mut buffer = gst::Buffer::with_size(16).unwrap();
        embedding.attach(buffer.get_mut().unwrap()).unwrap();
        buffer
    }

    #[test]
    fn round_trips_in_both_dtypes_and_survives_copies() {
        for dtype in [MetaDtype::F32, MetaDtype::F16] {
            let embedding = sample(dtype);
            let buffer = with_meta(&embedding);
            assert_eq!(
                Embedding::from_buffer(&buffer).unwrap(),
                Some(embedding.clone())
            );
            let copy = buffer.copy();
            assert_eq!(Embedding::from_buffer(&copy).unwrap(), Some(embedding));
        }
    }

    /// Moving the vectors into the meta reads back as attaching copies does,
    /// in both dtypes; for f32 the spatial buffer holds the vector's own
    /// memory (no copy).
    #[test]
    fn moving_into_the_meta_reads_back_as_attaching() {
        gst::init().unwrap();
        register();
        for dtype in [MetaDtype::F32, MetaDtype::F16] {
            let expected = sample(dtype);
            let mut moved = expected.clone();
            let spatial_at = moved.spatial.as_ref().unwrap().as_ptr().cast::<u8>();
            let mut buffer = gst::Buffer::with_size(16).unwrap();
            moved.move_into_meta(buffer.get_mut().unwrap()).unwrap();
            assert_eq!((&moved.summary, &moved.spatial), (&None, &None));
            assert_eq!(moved.adaptors, expected.adaptors, "the rest stays");
            assert_eq!(Embedding::from_buffer(&buffer).unwrap(), Some(expected));
            let meta = gst::meta::CustomMeta::from_buffer(&buffer, META_NAME).unwrap();
            let stored = meta.structure().get::<gst::Buffer>("spatial").unwrap();
            let map = stored.map_readable().unwrap();
            let same_memory = map.as_slice().as_ptr() == spatial_at;
            assert_eq!(same_memory, dtype == MetaDtype::F32, "{dtype:?}");
        }
    }

    #[test]
    fn buffers_without_meta_read_as_none() {
        gst::init().unwrap();
        register();
        let buffer = gst::Buffer::with_size(4).unwrap();
        assert_eq!(Embedding::from_buffer(&buffer).unwrap(), None);
    }
}
