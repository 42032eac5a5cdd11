// SPDX-License-Identifier: MPL-2.0
//! One JSON message per embedded frame, in the versioned schema of
//! `schema/radioembed-message.schema.json`.
//!
//! Vectors are JSON arrays of numbers, or base64 of their little-endian bytes
//! (`f32` or `f16`). In Python:
//!
//! ```python
//! import base64, json, numpy as np
//! m = json.loads(line)
//! v = m["summary"]
//! summary = (np.asarray(v, np.float32) if isinstance(v, list) else
//!            np.frombuffer(base64.b64decode(v["data"]), "<" + v["dtype"]))
//! ```

use base64::Engine as _;
use serde_json::{Map, Value, json};

use crate::meta::{Embedding, RegionEmbedding};

/// The schema this module writes; a consumer checks it before reading on.
pub const SCHEMA: &str = "radioembed/1";

/// How vectors are written.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum VectorEncoding {
    /// A JSON array of numbers (f32 values).
    #[default]
    Json,
    /// `{"dtype": "f32", "data": base64}` of the little-endian f32 bytes.
    Base64F32,
    /// `{"dtype": "f16", "data": base64}` of the little-endian f16 bytes.
    Base64F16,
}

/// Where and when a frame was, beside its embeddings.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct FrameInfo {
    /// The stream it came from.
    pub source_id: String,
    /// Its stream time in ns, if its buffer had a PTS inside the segment.
    pub stream_time_ns: Option<u64>,
    /// Its buffer's PTS in ns.
    pub pts_ns: Option<u64>,
    /// Its wall-clock capture time as RFC 3339, when a reference timestamp says.
    pub timestamp: Option<String>,
}

/// What goes into a message besides the summary.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct MessageOptions {
    /// How vectors are written.
    pub encoding: VectorEncoding,
    /// Whether the (pooled) patch grid goes in too, when the meta has it.
    pub spatial: bool,
}

/// The message of one embedded frame and the vectors of its `objects` (regions),
/// as one line of JSON.
pub fn frame_message(
    e: &Embedding,
    frame: &FrameInfo,
    objects: &[RegionEmbedding],
    options: MessageOptions,
) -> String {
    let mut m = Map::new();
    m.insert("schema".into(), SCHEMA.into());
    m.insert("source-id".into(), frame.source_id.clone().into());
    let mut optional = |key: &str, value: Option<Value>| {
        if let Some(value) = value {
            m.insert(key.into(), value);
        }
    };
    optional("stream-time-ns", frame.stream_time_ns.map(Value::from));
    optional("pts-ns", frame.pts_ns.map(Value::from));
    optional("timestamp", frame.timestamp.clone().map(Value::from));
    m.insert("frame-index".into(), e.frame_index.into());
    m.insert("model".into(), e.model.clone().into());
    m.insert("input-width".into(), e.input_size.0.into());
    m.insert("input-height".into(), e.input_size.1.into());
    if let Some(summary) = &e.summary {
        m.insert("summary".into(), vector(summary, options.encoding));
    }
    if options.spatial
        && let Some(spatial) = &e.spatial
    {
        let grid = json!({
            "grid-height": e.grid.0,
            "grid-width": e.grid.1,
            "dim": e.spatial_dim,
            "values": vector(spatial, options.encoding),
        });
        m.insert("spatial".into(), grid);
    }
    if !e.adaptors.is_empty() {
        let adaptors = e
            .adaptors
            .iter()
            .map(|a| {
                let summary = vector(&a.summary, options.encoding);
                (a.name.clone(), json!({ "summary": summary }))
            })
            .collect();
        m.insert("adaptors".into(), Value::Object(adaptors));
    }
    if !objects.is_empty() {
        let objects = objects
            .iter()
            .map(|o| {
                let mut object = json!({
                    "id": o.id,
                    "type": o.roi_type,
                    "box": { "x": o.rect.0, "y": o.rect.1, "width": o.rect.2, "height": o.rect.3 },
                    "kind": o.kind.as_str(),
                    "vector": vector(&o.vector, options.encoding),
                });
                if !o.adaptors.is_empty() {
                    object["adaptors"] = o
                        .adaptors
                        .iter()
                        .map(|a| (a.name.clone(), vector(&a.vector, options.encoding)))
                        .collect::<Map<_, _>>()
                        .into();
                }
                object
            })
            .collect();
        m.insert("objects".into(), Value::Array(objects));
    }
    Value::Object(m).to_string()
}

/// A vector in `encoding`.
fn vector(values: &[f32], encoding: VectorEncoding) -> Value {
    let base64 = |dtype: crate::meta::MetaDtype| {
        let data = base64::engine::general_purpose::STANDARD.encode(dtype.le_bytes(values));
        json!({ "dtype": dtype.as_str(), "data": data })
    };
    match encoding {
        VectorEncoding::Json => values.iter().map(|&v| Value::from(v)).collect(),
        VectorEncoding::Base64F32 => base64(crate::meta::MetaDtype::F32),
        VectorEncoding::Base64F16 => base64(crate::meta::MetaDtype::F16),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::meta::MetaDtype;

    fn embedding() -> Embedding {
        Embedding {
            summary: Some(vec![1.5, -0.25, 3.0]),
            spatial: Some(vec![0.5; 2 * 3 * 4]),
            spatial_dim: 4,
            grid: (2, 3),
            dtype: MetaDtype::F32,
            model: "m".into(),
            input_size: (48, 32),
            frame_index: 7,
            source_id: "cam-1".into(),
            adaptors: Vec::new(),
        }
    }

    #[test]
    fn a_message_has_the_frame_and_its_summary() {
        let frame = FrameInfo {
            source_id: "cam-1".into(),
            stream_time_ns: Some(2_000_000_000),
            pts_ns: Some(5_000_000_000),
            timestamp: None,
        };
        let line = frame_message(&embedding(), &frame, &[], MessageOptions::default());
        assert!(!line.contains('\n'));
        let m: Value = serde_json::from_str(&line).unwrap();
        assert_eq!(m["schema"], "radioembed/1");
        assert_eq!(m["source-id"], "cam-1");
        assert_eq!(m["stream-time-ns"], 2_000_000_000u64);
        assert_eq!(m["pts-ns"], 5_000_000_000u64);
        assert!(m.get("timestamp").is_none());
        assert_eq!(m["frame-index"], 7);
        assert_eq!(
            (m["input-width"].clone(), m["input-height"].clone()),
            (48.into(), 32.into())
        );
        assert_eq!(m["summary"], json!([1.5, -0.25, 3.0]));
        assert!(m.get("spatial").is_none(), "the grid only when asked for");
        assert!(m.get("objects").is_none(), "no regions, no objects");
        assert!(m.get("adaptors").is_none(), "no adaptor heads, no adaptors");
    }

    #[test]
    fn adaptor_vectors_go_with_the_frame_and_its_objects() {
        use crate::meta::{AdaptorEmbedding, RegionAdaptor, RegionEmbedding, RegionKind};
        let mut e = embedding();
        e.adaptors = vec![AdaptorEmbedding {
            name: "siglip2-g".into(),
            summary: vec![0.5, 2.0],
            spatial: Some(vec![1.0; 2 * 3 * 2]),
            spatial_dim: 2,
        }];
        let object = RegionEmbedding {
            id: 3,
            roi_type: "person".into(),
            rect: (1, 2, 3, 4),
            kind: RegionKind::Crop,
            vector: vec![1.0, 0.0, 0.0],
            adaptors: vec![RegionAdaptor {
                name: "siglip2-g".into(),
                vector: vec![-1.0, 0.25],
            }],
        };
        let line = frame_message(
            &e,
            &FrameInfo::default(),
            &[object],
            MessageOptions::default(),
        );
        let m: Value = serde_json::from_str(&line).unwrap();
        assert_eq!(
            m["adaptors"],
            json!({ "siglip2-g": { "summary": [0.5, 2.0] } })
        );
        assert_eq!(
            m["objects"][0]["adaptors"],
            json!({ "siglip2-g": [-1.0, 0.25] })
        );
        assert_eq!(m["objects"][0]["vector"], json!([1.0, 0.0, 0.0]));
    }

    #[test]
    fn base64_vectors_decode_to_the_values() {
        let options = MessageOptions {
            encoding: VectorEncoding::Base64F16,
            spatial: true,
        };
        let m: Value = serde_json::from_str(&frame_message(
            &embedding(),
            &FrameInfo::default(),
            &[],
            options,
        ))
        .unwrap();
        assert_eq!(m["summary"]["dtype"], "f16");
        let bytes = base64::engine::general_purpose::STANDARD
            .decode(m["summary"]["data"].as_str().unwrap())
            .unwrap();
        let values: Vec<f32> = bytes
            .chunks_exact(2)
            .map(|b| half::f16::from_le_bytes([b[0], b[1]]).to_f32())
            .collect();
        assert_eq!(values, [1.5, -0.25, 3.0]);
        assert_eq!(m["spatial"]["grid-height"], 2);
        assert_eq!(m["spatial"]["grid-width"], 3);
        assert_eq!(m["spatial"]["dim"], 4);
        assert_eq!(m["spatial"]["values"]["dtype"], "f16");
    }
}
