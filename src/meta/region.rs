// SPDX-License-Identifier: MPL-2.0
//! Per-object vectors: a `radio-embedding` parameter structure on a region's
//! `GstVideoRegionOfInterestMeta`, holding the vector as `RadioEmbedMeta` does:
//! `summary` (a GstBuffer of little-endian floats), `summary-dim` and `dtype`,
//! and `kind`: `pool` (the mean of the frame's patch features under the box,
//! `spatial-dim` values) or `crop` (the model's summary of the cropped region).
//! C reads it with `gst_video_region_of_interest_meta_get_param (roi,
//! "radio-embedding")`, Python with `roi.get_param("radio-embedding")`.

use super::{MetaDtype, MetaError, decode, decode_as, encode};

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

/// A region's vectors, as the engine makes them.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct RegionVectors {
    /// The backbone's vector.
    pub vector: Vec<f32>,
    /// Each adaptor's vector, made the same way.
    pub adaptors: Vec<RegionAdaptor>,
}

/// One adaptor's vector of a region (`siglip2-g`: what a text query is
/// compared with).
#[derive(Debug, Clone, PartialEq)]
pub struct RegionAdaptor {
    /// The adaptor's name.
    pub name: String,
    /// Its vector.
    pub vector: Vec<f32>,
}

/// A region of a frame and its vectors.
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
    /// Its backbone vector.
    pub vector: Vec<f32>,
    /// Its adaptor vectors.
    pub adaptors: Vec<RegionAdaptor>,
}

/// The `radio-embedding` parameter structure for `vectors`.
pub fn region_param(vectors: &RegionVectors, dtype: MetaDtype, kind: RegionKind) -> gst::Structure {
    let dim = |v: &[f32]| u32::try_from(v.len()).unwrap_or(u32::MAX);
    let mut s = gst::Structure::builder(REGION_PARAM)
        .field("kind", kind.as_str())
        .field("summary", encode(&vectors.vector, dtype))
        .field("summary-dim", dim(&vectors.vector))
        .field("dtype", dtype.as_str())
        .build();
    if !vectors.adaptors.is_empty() {
        let names: Vec<&str> = vectors.adaptors.iter().map(|a| a.name.as_str()).collect();
        s.set("adaptors", names.join(","));
    }
    for adaptor in &vectors.adaptors {
        let name = &adaptor.name;
        s.set(format!("{name}-summary"), encode(&adaptor.vector, dtype));
        s.set(format!("{name}-summary-dim"), dim(&adaptor.vector));
    }
    s
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
        let adaptors = s
            .get::<&str>("adaptors")
            .ok()
            .into_iter()
            .flat_map(|names| names.split(','))
            .map(|name| read_adaptor(s, name, dtype))
            .collect::<Result<_, _>>()?;
        found.push(RegionEmbedding {
            id: meta.id(),
            roi_type: meta.roi_type().to_string(),
            rect: meta.rect(),
            kind,
            vector,
            adaptors,
        });
    }
    Ok(found)
}

/// The `<name>-summary` vector of one adaptor.
fn read_adaptor(
    s: &gst::StructureRef,
    name: &str,
    dtype: MetaDtype,
) -> Result<RegionAdaptor, MetaError> {
    let dim = s
        .get::<u32>(format!("{name}-summary-dim").as_str())
        .map_err(|_| MetaError::Field("adaptors"))?;
    let vector = decode_as(
        s,
        &format!("{name}-summary"),
        "adaptors",
        dim as usize,
        dtype,
    )?
    .ok_or(MetaError::Field("adaptors"))?;
    Ok(RegionAdaptor {
        name: name.to_string(),
        vector,
    })
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
            let vectors = RegionVectors {
                vector: vec![0.5, -2.0],
                adaptors: vec![RegionAdaptor {
                    name: "siglip2-g".into(),
                    vector: vec![1.0, 0.25, -4.0],
                }],
            };
            person.add_param(region_param(&vectors, MetaDtype::F16, RegionKind::Crop));
            let mut car = gst_video::VideoRegionOfInterestMeta::add(b, "car", (0, 0, 8, 8));
            car.set_id(6);
            let plain = RegionVectors {
                vector: vec![3.0],
                adaptors: Vec::new(),
            };
            car.add_param(region_param(&plain, MetaDtype::F32, RegionKind::Pool));
        }
        let found = regions(&buffer).unwrap();
        assert_eq!(
            found,
            [
                RegionEmbedding {
                    id: 5,
                    roi_type: "person".into(),
                    rect: (10, 20, 30, 40),
                    kind: RegionKind::Crop,
                    vector: vec![0.5, -2.0],
                    adaptors: vec![RegionAdaptor {
                        name: "siglip2-g".into(),
                        vector: vec![1.0, 0.25, -4.0],
                    }],
                },
                RegionEmbedding {
                    id: 6,
                    roi_type: "car".into(),
                    rect: (0, 0, 8, 8),
                    kind: RegionKind::Pool,
                    vector: vec![3.0],
                    adaptors: Vec::new(),
                }
            ]
        );
    }

    #[test]
    fn an_adaptor_vector_of_the_wrong_length_is_an_error() {
        gst::init().unwrap();
        let mut buffer = gst::Buffer::with_size(16).unwrap();
        {
            let b = buffer.get_mut().unwrap();
            let mut roi = gst_video::VideoRegionOfInterestMeta::add(b, "person", (0, 0, 4, 4));
            let vectors = RegionVectors {
                vector: vec![1.0],
                adaptors: vec![RegionAdaptor {
                    name: "siglip2-g".into(),
                    vector: vec![1.0, 2.0],
                }],
            };
            let mut param = region_param(&vectors, MetaDtype::F32, RegionKind::Pool);
            param.set("siglip2-g-summary-dim", 3u32);
            roi.add_param(param);
        }
        let err = regions(&buffer).unwrap_err().to_string();
        assert!(err.contains("adaptors"), "{err}");
    }
}
