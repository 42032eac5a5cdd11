// SPDX-License-Identifier: MPL-2.0
//! Per-object vectors: a `radio-embedding` parameter structure on a region's
//! `GstVideoRegionOfInterestMeta`, holding the vector as `RadioEmbedMeta` does:
//! `summary` (a GstBuffer of little-endian floats), `summary-dim` and `dtype`,
//! and `kind`: `pool` (the mean of the frame's patch features under the box,
//! `spatial-dim` values) or `crop` (the model's summary of the cropped region).
//! C reads it with `gst_video_region_of_interest_meta_get_param (roi,
//! "radio-embedding")`, Python with `roi.get_param("radio-embedding")`.

use super::{MetaDtype, MetaError, decode, encode};

/// The name of the parameter structure on a region's meta.
pub const REGION_PARAM: &str = "radio-embedding";

/// How a region's vector was made, which says what it compares with.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RegionKind {
    /// The mean of the frame's patch features under the box: comparable with
    /// other pooled patch features.
    Pool,
    /// The model's summary of the cropped region: comparable with summaries.
    Crop,
}

impl RegionKind {
    /// The name stored in the `kind` field.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Pool => "pool",
            Self::Crop => "crop",
        }
    }

    /// The kind a stored name names.
    pub fn from_name(name: &str) -> Option<Self> {
        match name {
            "pool" => Some(Self::Pool),
            "crop" => Some(Self::Crop),
            _ => None,
        }
    }
}

/// A region of a frame and its vector.
#[derive(Debug, Clone, PartialEq)]
pub struct RegionEmbedding {
    /// The region meta's id.
    pub id: i32,
    /// Its type (`person`, `car`, ...).
    pub roi_type: String,
    /// Its box in frame pixels: x, y, width, height.
    pub rect: (u32, u32, u32, u32),
    /// How its vector was made.
    pub kind: RegionKind,
    /// Its vector.
    pub vector: Vec<f32>,
}

/// The `radio-embedding` parameter structure for `vector`.
pub fn region_param(vector: &[f32], dtype: MetaDtype, kind: RegionKind) -> gst::Structure {
    gst::Structure::builder(REGION_PARAM)
        .field("kind", kind.as_str())
        .field("summary", encode(vector, dtype))
        .field(
            "summary-dim",
            u32::try_from(vector.len()).unwrap_or(u32::MAX),
        )
        .field("dtype", dtype.as_str())
        .build()
}

/// The regions of `buffer` that carry a vector, in meta order.
pub fn regions(buffer: &gst::BufferRef) -> Result<Vec<RegionEmbedding>, MetaError> {
    let mut found = Vec::new();
    for meta in buffer.iter_meta::<gst_video::VideoRegionOfInterestMeta>() {
        let Some(s) = meta.param(REGION_PARAM) else {
            continue;
        };
        let dtype = s
            .get::<&str>("dtype")
            .ok()
            .and_then(MetaDtype::from_str)
            .ok_or(MetaError::Field("dtype"))?;
        let dim = s
            .get::<u32>("summary-dim")
            .map_err(|_| MetaError::Field("summary-dim"))?;
        let vector =
            decode(s, "summary", dim as usize, dtype)?.ok_or(MetaError::Field("summary"))?;
        let kind = s
            .get::<&str>("kind")
            .ok()
            .and_then(RegionKind::from_name)
            .ok_or(MetaError::Field("kind"))?;
        found.push(RegionEmbedding {
            id: meta.id(),
            roi_type: meta.roi_type().to_string(),
            rect: meta.rect(),
            kind,
            vector,
        });
    }
    Ok(found)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn region_vectors_round_trip_and_plain_regions_are_skipped() {
        gst::init().unwrap();
        let mut buffer = gst::Buffer::with_size(16).unwrap();
        {
            let b = buffer.get_mut().unwrap();
            gst_video::VideoRegionOfInterestMeta::add(b, "face", (1, 2, 3, 4));
            let mut person =
                gst_video::VideoRegionOfInterestMeta::add(b, "person", (10, 20, 30, 40));
            person.set_id(5);
            person.add_param(region_param(&[0.5, -2.0], MetaDtype::F16, RegionKind::Crop));
        }
        let found = regions(&buffer).unwrap();
        assert_eq!(
            found,
            [RegionEmbedding {
                id: 5,
                roi_type: "person".into(),
                rect: (10, 20, 30, 40),
                kind: RegionKind::Crop,
                vector: vec![0.5, -2.0],
            }]
        );
    }
}
