// SPDX-License-Identifier: MPL-2.0
//! The embeddings as a `GstTensorMeta` (GStreamer ≥ 1.26, feature `v1_26`), the
//! tensor meta of GStreamer's analytics library that its inference elements
//! exchange. Two row-major tensors, `Float32` or `Float16` as the meta's `dtype`:
//!
//! | id | dims |
//! |---|---|
//! | `radio-summary` | (1, summary-dim) |
//! | `radio-spatial` | (1, grid-height, grid-width, spatial-dim) |
//!
//! Their data are the very buffers `RadioEmbedMeta` holds (shared, not copied).

use gst_analytics::{Tensor, TensorDataType, TensorDimOrder, TensorMeta};

use super::{Embedding, MetaDtype};

/// Tensor id of the image-level vector.
pub const SUMMARY_TENSOR: &str = "radio-summary";
/// Tensor id of the patch features.
pub const SPATIAL_TENSOR: &str = "radio-spatial";

/// The tensor element type of a meta dtype.
pub fn data_type(dtype: MetaDtype) -> TensorDataType {
    match dtype {
        MetaDtype::F32 => TensorDataType::Float32,
        MetaDtype::F16 => TensorDataType::Float16,
    }
}

/// Adds a `GstTensorMeta` holding `summary` and `spatial` (the encoded vectors of
/// `embedding`), when there is at least one of them.
pub(super) fn attach(
    buffer: &mut gst::BufferRef,
    embedding: &Embedding,
    summary: Option<gst::Buffer>,
    spatial: Option<gst::Buffer>,
) {
    let tensor = |id: &str, data: gst::Buffer, dims: &[usize]| {
        Tensor::new_simple(
            glib::Quark::from_str(id),
            data_type(embedding.dtype),
            data,
            TensorDimOrder::RowMajor,
            dims,
        )
    };
    let (rows, columns) = embedding.grid;
    let tensors: Vec<Tensor> = [
        summary.map(|data| {
            let values = data.size() / embedding.dtype.size();
            tensor(SUMMARY_TENSOR, data, &[1, values])
        }),
        spatial.map(|data| {
            tensor(
                SPATIAL_TENSOR,
                data,
                &[1, rows, columns, embedding.spatial_dim],
            )
        }),
    ]
    .into_iter()
    .flatten()
    .collect();
    if !tensors.is_empty() {
        TensorMeta::add(buffer).set(tensors.into());
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::meta::META_NAME;
    use crate::meta::tests::{sample, with_meta};

    #[test]
    fn tensors_share_the_custom_meta_vectors() {
        for dtype in [MetaDtype::F32, MetaDtype::F16] {
            let buffer = with_meta(&sample(dtype));
            let custom = gst::meta::CustomMeta::from_buffer(&buffer, META_NAME).unwrap();
            let meta = buffer.meta::<TensorMeta>().expect("tensor meta attached");
            let tensors = meta.as_slice();
            assert_eq!(tensors.len(), 2);
            for (tensor, id, field, dims) in [
                (&tensors[0], SUMMARY_TENSOR, "summary", &[1, 3][..]),
                (&tensors[1], SPATIAL_TENSOR, "spatial", &[1, 2, 3, 2][..]),
            ] {
                assert_eq!(tensor.id(), glib::Quark::from_str(id));
                assert_eq!(tensor.dims(), dims);
                assert_eq!(tensor.data_type(), data_type(dtype));
                assert_eq!(tensor.dims_order(), TensorDimOrder::RowMajor);
                let shared = custom.structure().get::<gst::Buffer>(field).unwrap();
                assert_eq!(tensor.data().as_ptr(), shared.as_ptr(), "{id} is shared");
            }
        }
    }

    #[test]
    fn summary_only_embeddings_carry_one_tensor() {
        let buffer = with_meta(&Embedding {
            summary: Some(vec![1.0; 4]),
            spatial: None,
            spatial_dim: 0,
            grid: (0, 0),
            dtype: MetaDtype::F32,
            model: "tiny".into(),
            input_size: (16, 16),
            frame_index: 0,
            source_id: "cam".into(),
            adaptors: Vec::new(),
        });
        let meta = buffer.meta::<TensorMeta>().unwrap();
        let ids: Vec<_> = meta.as_slice().iter().map(|t| t.id()).collect();
        assert_eq!(ids, [glib::Quark::from_str(SUMMARY_TENSOR)]);
        assert_eq!(meta.as_slice()[0].dims(), [1, 4]);
    }
}
