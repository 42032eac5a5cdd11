// SPDX-License-Identifier: MPL-2.0
//! From a batch of model outputs to one [`Embedding`] per frame: choosing the
//! outputs, pooling the patch grid, and choosing the stored precision.

use candle_core::{DType, IndexOp, Tensor};
use rayon::prelude::*;

use crate::meta::{AdaptorEmbedding, Embedding, MetaDtype, RegionAdaptor, RegionVectors};
use crate::model::{ModelError, RadioOutput};

/// Which outputs go on the buffers, and in what form.
#[derive(Debug, Clone, PartialEq)]
pub struct OutputOptions {
    /// Attach the summary vector.
    pub summary: bool,
    /// Attach the patch features.
    pub spatial: bool,
    /// Average-pool the patch grid by k × k (1 = none); partial windows at the
    /// right and bottom edges are dropped, as `avg_pool2d` does.
    pub spatial_pool: usize,
    /// Stored element type.
    pub dtype: MetaDtype,
    /// Model id written into the meta.
    pub model: String,
    /// Model input size (width, height).
    pub input_size: (usize, usize),
    /// The stream the frames belong to.
    pub source_id: String,
}

/// Host memory a batch's outputs cross into. On CUDA, page-locked buffers
/// kept from batch to batch, grown to the largest output: a copy into them
/// runs at the bus's speed, where one into fresh pageable memory goes through
/// the driver's bounce buffers and faults in every page. Empty on the CPU.
#[derive(Default)]
pub struct HostStaging {
    #[cfg(feature = "cuda")]
    f32: Option<cudarc::driver::PinnedHostSlice<f32>>,
    #[cfg(feature = "cuda")]
    f16: Option<cudarc::driver::PinnedHostSlice<half::f16>>,
}

/// Splits a batch output into per-frame embeddings, numbered by `frame_indices`.
/// Each output crosses to host memory once for the whole batch, through
/// `staging` (on CUDA a per-frame copy would copy the batch's storage each
/// time).
pub fn embeddings(
    output: &RadioOutput,
    options: &OutputOptions,
    frame_indices: &[u64],
    staging: &mut HostStaging,
) -> Result<Vec<Embedding>, ModelError> {
    let (h, w) = output.grid;
    let (batch, _, width) = output.features.dims3()?;
    let mut per_frame = |t: &Tensor| to_host(t, options.dtype, staging);
    let mut summaries = if options.summary {
        Some(per_frame(&output.summary)?.into_iter())
    } else {
        None
    };
    let (mut grids, grid) = if options.spatial {
        let (pooled, grid) = pool(&output.features, (h, w), options.spatial_pool)?;
        (Some(per_frame(&pooled)?.into_iter()), grid)
    } else {
        (None, (0, 0))
    };
    // Each adaptor's summary always (it is what a text query is compared with),
    // its patch features when spatial outputs are asked for, pooled alike.
    let mut adaptors = output
        .adaptors
        .iter()
        .map(|a| {
            let summary = per_frame(&a.summary)?.into_iter();
            let features = a.features.as_ref().filter(|_| options.spatial);
            let spatial = features
                .map(|f| {
                    let (pooled, _) = pool(f, (h, w), options.spatial_pool)?;
                    per_frame(&pooled)
                })
                .transpose()?
                .map(Vec::into_iter);
            let dim = features.map(|f| f.dim(2)).transpose()?.unwrap_or(0);
            Ok((a.name.as_str(), summary, spatial, dim))
        })
        .collect::<Result<Vec<_>, ModelError>>()?;
    let embeddings = frame_indices
        .iter()
        .take(batch)
        .map(|&frame_index| Embedding {
            summary: summaries.as_mut().and_then(Iterator::next),
            spatial: grids.as_mut().and_then(Iterator::next),
            spatial_dim: if options.spatial { width } else { 0 },
            grid,
            dtype: options.dtype,
            model: options.model.clone(),
            input_size: options.input_size,
            frame_index,
            source_id: options.source_id.clone(),
            adaptors: adaptors
                .iter_mut()
                .map(|(name, summary, spatial, dim)| AdaptorEmbedding {
                    name: name.to_string(),
                    summary: summary.next().unwrap_or_default(),
                    spatial: spatial.as_mut().and_then(Iterator::next),
                    spatial_dim: if spatial.is_some() { *dim } else { 0 },
                })
                .collect(),
        })
        .collect();
    Ok(embeddings)
}

/// The (B, …) tensor `t` in host memory, one `Vec` a frame. From a GPU, after
/// one copy of the whole batch, converted to f16 on the device first when the
/// meta stores f16 (half the bytes to copy; the values come back widened, as
/// the meta will store them); from the CPU's f32, copied once, frame by frame.
fn to_host(
    t: &Tensor,
    dtype: MetaDtype,
    staging: &mut HostStaging,
) -> Result<Vec<Vec<f32>>, ModelError> {
    #[cfg(test)]
    tests::HOST_COPIES.with(|n| n.set(n.get() + 1));
    let batch = t.dim(0)?;
    let flat = t.flatten_all()?;
    let per_frame = flat.elem_count() / batch.max(1);
    // One frame a thread: each frame's `Vec` is fresh memory, and faulting
    // its pages in costs more than the copy (a 512 px SO400M grid in f32 is
    // 4.7 MB a frame).
    let split = |all: &[f32]| -> Vec<Vec<f32>> {
        (0..batch)
            .into_par_iter()
            .map(|i| all[i * per_frame..(i + 1) * per_frame].to_vec())
            .collect()
    };
    let widen = |all: &[half::f16]| -> Vec<Vec<f32>> {
        (0..batch)
            .into_par_iter()
            .map(|i| {
                all[i * per_frame..(i + 1) * per_frame]
                    .iter()
                    .map(|v| v.to_f32())
                    .collect()
            })
            .collect()
    };
    #[cfg(feature = "cuda")]
    if flat.device().is_cuda() {
        return match dtype {
            MetaDtype::F32 => pinned_copy(&flat.to_dtype(DType::F32)?, &mut staging.f32, split),
            MetaDtype::F16 => pinned_copy(&flat.to_dtype(DType::F16)?, &mut staging.f16, widen),
        };
    }
    let _ = staging;
    // An f32 output already in host memory is split straight from its
    // storage: `to_vec1` first would copy the whole batch once more.
    if dtype == MetaDtype::F32
        && let Some(frames) = crate::model::with_f32(&flat, split)
    {
        return Ok(frames);
    }
    Ok(match dtype {
        MetaDtype::F32 => split(&flat.to_dtype(DType::F32)?.to_vec1::<f32>()?),
        MetaDtype::F16 => widen(&flat.to_dtype(DType::F16)?.to_vec1::<half::f16>()?),
    })
}

/// `read` of a CUDA tensor's values, copied into the page-locked buffer
/// `slot` (allocated, or replaced by a larger one, as needed).
#[cfg(feature = "cuda")]
fn pinned_copy<T, R>(
    t: &Tensor,
    slot: &mut Option<cudarc::driver::PinnedHostSlice<T>>,
    read: impl FnOnce(&[T]) -> R,
) -> Result<R, ModelError>
where
    T: candle_core::cuda_backend::CudaDType
        + cudarc::driver::DeviceRepr
        + cudarc::driver::ValidAsZeroBits,
{
    let n = t.elem_count();
    if n == 0 {
        return Ok(read(&[]));
    }
    let t = t.contiguous()?;
    let (storage, layout) = t.storage_and_layout();
    let candle_core::Storage::Cuda(cuda) = &*storage else {
        return Err(candle_core::Error::Msg("pinned_copy: not a CUDA tensor".into()).into());
    };
    let start = layout.start_offset();
    let source = cuda.as_cuda_slice::<T>()?.slice(start..start + n);
    let stream = cuda.device.cuda_stream();
    let cuda_error = |e: cudarc::driver::DriverError| candle_core::Error::wrap(e);
    if slot.as_ref().is_none_or(|pinned| pinned.len() < n) {
        // The old buffer goes first: both need not fit at once.
        *slot = None;
        // SAFETY: left unset; only the first `n` values are read, after the
        // copy below has written them. Flags 0, not cudarc's default
        // write-combined memory, which the CPU reads uncached.
        *slot = Some(
            unsafe { stream.context().alloc_pinned_with_flags::<T>(n, 0) }.map_err(cuda_error)?,
        );
    }
    let pinned = slot.as_mut().expect("allocated above");
    let host = &mut pinned.as_mut_slice().map_err(cuda_error)?[..n];
    stream.memcpy_dtoh(&source, host).map_err(cuda_error)?;
    // Into page-locked memory the copy is asynchronous, and with one stream a
    // device cudarc records no events of its own: wait for an event after
    // the copy (not for the stream, where another thread's forward may follow).
    stream
        .record_event(Some(
            cudarc::driver::sys::CUevent_flags::CU_EVENT_BLOCKING_SYNC,
        ))
        .and_then(|copied| copied.synchronize())
        .map_err(cuda_error)?;
    Ok(read(host))
}

/// A region of a frame as fractions of its width and height: left, top,
/// right, bottom, each in 0..=1.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct RegionBox {
    /// Left edge.
    pub x0: f64,
    /// Top edge.
    pub y0: f64,
    /// Right edge.
    pub x1: f64,
    /// Bottom edge.
    pub y1: f64,
}

impl RegionBox {
    /// The box of a region at (`x`, `y`) of `width` × `height` pixels in a
    /// frame of `frame` (width, height) pixels, clipped to the frame.
    pub fn from_pixels((x, y, width, height): (u32, u32, u32, u32), frame: (u32, u32)) -> Self {
        let (fw, fh) = (f64::from(frame.0.max(1)), f64::from(frame.1.max(1)));
        let clip = |v: f64| v.clamp(0.0, 1.0);
        Self {
            x0: clip(f64::from(x) / fw),
            y0: clip(f64::from(y) / fh),
            x1: clip((f64::from(x) + f64::from(width)) / fw),
            y1: clip((f64::from(y) + f64::from(height)) / fh),
        }
    }

    /// The patches (rows, columns) the box overlaps on an `n`-patch axis
    /// spanning 0..1: every patch whose span meets the open box, at least the
    /// one holding its edge when the box is thinner than a patch.
    fn patches(start: f64, end: f64, n: usize) -> std::ops::Range<usize> {
        let n_f = n as f64;
        let first = ((start * n_f).floor() as usize).min(n - 1);
        let last = ((end * n_f).ceil() as usize).clamp(first + 1, n);
        first..last
    }

    /// The patch rows and columns the box overlaps on a `grid` (rows, columns).
    pub fn on_grid(
        &self,
        (h, w): (usize, usize),
    ) -> (std::ops::Range<usize>, std::ops::Range<usize>) {
        (
            Self::patches(self.y0, self.y1, h),
            Self::patches(self.x0, self.x1, w),
        )
    }
}

/// Per-object vectors: for each box, the mean of frame `frame`'s patch
/// features over every patch the box overlaps (the frame maps onto the whole
/// model input, so the box maps onto the grid by its fractions), and the same
/// mean of each adaptor's patch features where the forward computed them. The
/// full, unpooled grid is used whatever `spatial-pool` says.
pub fn region_vectors(
    output: &RadioOutput,
    frame: usize,
    boxes: &[RegionBox],
) -> Result<Vec<RegionVectors>, ModelError> {
    if boxes.is_empty() {
        return Ok(Vec::new());
    }
    let grid = output.grid;
    let backbone = frame_grid(&output.features, frame, grid)?;
    let adaptors = output
        .adaptors
        .iter()
        .filter_map(|a| Some((a.name.as_str(), a.features.as_ref()?)))
        .map(|(name, features)| Ok((name, frame_grid(features, frame, grid)?)))
        .collect::<Result<Vec<_>, ModelError>>()?;
    boxes
        .iter()
        .map(|b| {
            let cells = b.on_grid(grid);
            Ok(RegionVectors {
                vector: mean_under(&backbone, &cells)?,
                adaptors: adaptors
                    .iter()
                    .map(|(name, grid)| {
                        Ok(RegionAdaptor {
                            name: name.to_string(),
                            vector: mean_under(grid, &cells)?,
                        })
                    })
                    .collect::<Result<_, ModelError>>()?,
            })
        })
        .collect()
}

/// Frame `frame` of (B, h·w, D) features as an (h, w, D) grid.
fn frame_grid(
    features: &Tensor,
    frame: usize,
    (h, w): (usize, usize),
) -> Result<Tensor, ModelError> {
    let d = features.dim(2)?;
    Ok(features.i(frame)?.reshape((h, w, d))?)
}

/// The mean of an (h, w, D) grid's vectors over the rows and columns `cells`.
fn mean_under(
    grid: &Tensor,
    (rows, cols): &(std::ops::Range<usize>, std::ops::Range<usize>),
) -> Result<Vec<f32>, ModelError> {
    let patches = grid
        .narrow(0, rows.start, rows.len())?
        .narrow(1, cols.start, cols.len())?;
    Ok(patches
        .mean((0, 1))?
        .to_dtype(candle_core::DType::F32)?
        .to_vec1::<f32>()?)
}

/// Average-pools (B, h·w, D) features over k × k windows → (B, h'·w', D).
fn pool(
    features: &Tensor,
    (h, w): (usize, usize),
    k: usize,
) -> Result<(Tensor, (usize, usize)), ModelError> {
    let k = k.clamp(1, h.min(w).max(1));
    if k == 1 {
        return Ok((features.clone(), (h, w)));
    }
    let (b, _, d) = features.dims3()?;
    let grid = features.reshape((b, h, w, d))?.permute((0, 3, 1, 2))?;
    let pooled = grid.contiguous()?.avg_pool2d(k)?;
    let (ph, pw) = (pooled.dim(2)?, pooled.dim(3)?);
    let tokens = pooled
        .permute((0, 2, 3, 1))?
        .contiguous()?
        .reshape((b, ph * pw, d))?;
    Ok((tokens, (ph, pw)))
}

#[cfg(test)]
mod tests {
    use super::*;
    use candle_core::Device;

    fn output() -> RadioOutput {
        // Batch of 2, grid 2 × 4, width 1: feature value = token index (+100 for frame 1).
        let f: Vec<f32> = (0..2)
            .flat_map(|b| (0..8).map(move |t| t as f32 + 100.0 * b as f32))
            .collect();
        RadioOutput {
            summary: Tensor::new(&[[1f32, 2.0], [3.0, 4.0]], &Device::Cpu).unwrap(),
            features: Tensor::from_vec(f, (2, 8, 1), &Device::Cpu).unwrap(),
            grid: (2, 4),
            adaptors: Vec::new(),
        }
    }

    fn options(pool: usize) -> OutputOptions {
        OutputOptions {
            summary: true,
            spatial: true,
            spatial_pool: pool,
            dtype: MetaDtype::F32,
            model: "m".into(),
            input_size: (64, 32),
            source_id: "cam".into(),
        }
    }

    #[test]
    fn pooling_averages_windows() {
        let e = embeddings(&output(), &options(2), &[5, 6], &mut HostStaging::default()).unwrap();
        assert_eq!(e[0].grid, (1, 2));
        // Window of tokens 0, 1, 4, 5 → 2.5; tokens 2, 3, 6, 7 → 4.5.
        assert_eq!(e[0].spatial, Some(vec![2.5, 4.5]));
        assert_eq!(e[1].spatial, Some(vec![102.5, 104.5]));
        assert_eq!(e[1].summary, Some(vec![3.0, 4.0]));
        assert_eq!((e[0].frame_index, e[1].frame_index), (5, 6));
    }

    #[test]
    fn regions_average_the_patches_they_overlap() {
        let out = output();
        let boxes = [
            // The whole frame: tokens 0..8 of frame 1 → 103.5.
            RegionBox::from_pixels((0, 0, 64, 32), (64, 32)),
            // Columns 1..3 (x 16..40 of 64 touches patches 1 and 2), row 1: tokens 5, 6.
            RegionBox::from_pixels((16, 16, 24, 16), (64, 32)),
            // A box thinner than a patch still takes the patch it lies in: token 3.
            RegionBox::from_pixels((60, 0, 1, 1), (64, 32)),
        ];
        let v = region_vectors(&out, 1, &boxes).unwrap();
        let backbone: Vec<Vec<f32>> = v.iter().map(|r| r.vector.clone()).collect();
        assert_eq!(backbone, [vec![103.5], vec![105.5], vec![103.0]]);
        assert!(v.iter().all(|r| r.adaptors.is_empty()));
        assert!(region_vectors(&out, 0, &[]).unwrap().is_empty());
    }

    #[test]
    fn regions_pool_each_adaptors_patch_features_alike() {
        let mut out = output();
        // An adaptor of width 2 whose feature = (token index, -token index).
        let f: Vec<f32> = (0..2)
            .flat_map(|b| (0..8).flat_map(move |t| [(t + 10 * b) as f32, -((t + 10 * b) as f32)]))
            .collect();
        out.adaptors = vec![
            crate::model::AdaptorOutput {
                name: "siglip2-g".into(),
                summary: Tensor::zeros((2, 3), candle_core::DType::F32, &Device::Cpu).unwrap(),
                features: Some(Tensor::from_vec(f, (2, 8, 2), &Device::Cpu).unwrap()),
            },
            // Summary only (the feature head did not run): no region vector.
            crate::model::AdaptorOutput {
                name: "clip".into(),
                summary: Tensor::zeros((2, 3), candle_core::DType::F32, &Device::Cpu).unwrap(),
                features: None,
            },
        ];
        let boxes = [RegionBox::from_pixels((16, 16, 24, 16), (64, 32))];
        let v = region_vectors(&out, 1, &boxes).unwrap();
        assert_eq!(v[0].vector, [105.5]);
        // Tokens 5 and 6 of frame 1: 15, 16.
        assert_eq!(
            v[0].adaptors,
            [RegionAdaptor {
                name: "siglip2-g".into(),
                vector: vec![15.5, -15.5],
            }]
        );
    }

    #[test]
    fn boxes_are_clipped_to_the_frame() {
        let b = RegionBox::from_pixels((50, 20, 100, 100), (64, 32));
        assert_eq!((b.x1, b.y1), (1.0, 1.0));
        assert_eq!(b.on_grid((2, 4)), (1..2, 3..4));
    }

    thread_local! {
        /// Device-to-host copies made by [`to_host`] on this thread.
        pub(super) static HOST_COPIES: std::cell::Cell<usize> = const { std::cell::Cell::new(0) };
    }

    #[test]
    fn each_output_is_copied_once_per_batch_and_f16_rounds_as_the_meta() {
        HOST_COPIES.with(|n| n.set(0));
        let mut o = options(1);
        o.dtype = MetaDtype::F16;
        let mut out = output();
        // 1/3 is not an f16: the meta's rounding shows.
        out.summary = Tensor::new(&[[1f32 / 3.0, 2.0], [3.0, 4.0]], &Device::Cpu).unwrap();
        let e = embeddings(&out, &o, &[0, 1], &mut HostStaging::default()).unwrap();
        assert_eq!(
            HOST_COPIES.with(|n| n.get()),
            2,
            "one copy a output, not one a frame"
        );
        let third = half::f16::from_f32(1.0 / 3.0).to_f32();
        assert_eq!(e[0].summary, Some(vec![third, 2.0]));
        assert_eq!(e[1].spatial.as_ref().unwrap()[7], 107.0);
    }

    /// f32 outputs are split straight from the model's storage: views that
    /// start inside it (a batch's later frames) and views whose rows are not
    /// contiguous (the patch tokens after the prefix tokens) each give every
    /// frame its own values.
    #[test]
    fn f32_outputs_split_from_views_of_the_model_output() {
        let o = options(1);
        // Three frames of 10 tokens: 2 prefix tokens, then the 2 × 4 grid;
        // value = 100 · frame + token.
        let tokens: Vec<f32> = (0..3)
            .flat_map(|b| (0..10).map(move |t| (100 * b + t) as f32))
            .collect();
        let tokens = Tensor::from_vec(tokens, (3, 10, 1), &Device::Cpu).unwrap();
        let summaries = Tensor::new(&[[0f32, 1.0], [2.0, 3.0], [4.0, 5.0]], &Device::Cpu).unwrap();
        let out = RadioOutput {
            // Frames 1 and 2: contiguous, from an offset into the storage.
            summary: summaries.narrow(0, 1, 2).unwrap(),
            // Frames 1 and 2, tokens 2..10: neither contiguous nor at 0.
            features: tokens.narrow(0, 1, 2).unwrap().narrow(1, 2, 8).unwrap(),
            grid: (2, 4),
            adaptors: Vec::new(),
        };
        let e = embeddings(&out, &o, &[7, 8], &mut HostStaging::default()).unwrap();
        assert_eq!(e[0].summary, Some(vec![2.0, 3.0]));
        assert_eq!(e[1].summary, Some(vec![4.0, 5.0]));
        let grid = |f: usize| (2..10).map(|t| (100 * f + t) as f32).collect::<Vec<_>>();
        assert_eq!(e[0].spatial, Some(grid(1)));
        assert_eq!(e[1].spatial, Some(grid(2)));
        assert_eq!((e[0].frame_index, e[1].frame_index), (7, 8));
    }

    /// On a GPU, the outputs cross through the page-locked staging as they do
    /// on the CPU, in both stored dtypes, with the staging reused by smaller
    /// outputs (the summary) after larger ones (the features).
    #[cfg(feature = "cuda")]
    #[test]
    fn cuda_outputs_reach_the_host_as_on_the_cpu() {
        let device = match crate::model::parse_device("cuda:0") {
            Ok(device) => device,
            Err(err) => {
                eprintln!(
                    "SKIPPED cuda_outputs_reach_the_host_as_on_the_cpu: no usable GPU ({err})"
                );
                return;
            }
        };
        let on_cpu = output();
        let on_gpu = RadioOutput {
            summary: on_cpu.summary.to_device(&device).unwrap(),
            features: on_cpu.features.to_device(&device).unwrap(),
            grid: on_cpu.grid,
            adaptors: Vec::new(),
        };
        let mut staging = HostStaging::default();
        for dtype in [MetaDtype::F32, MetaDtype::F16] {
            let mut o = options(1);
            o.dtype = dtype;
            let expected = embeddings(&on_cpu, &o, &[0, 1], &mut HostStaging::default()).unwrap();
            for _ in 0..2 {
                let ours = embeddings(&on_gpu, &o, &[0, 1], &mut staging).unwrap();
                for (ours, expected) in ours.iter().zip(&expected) {
                    assert_eq!(ours.summary, expected.summary, "{dtype:?}");
                    assert_eq!(ours.spatial, expected.spatial, "{dtype:?}");
                }
            }
        }
    }

    #[test]
    fn outputs_can_be_left_out() {
        let mut o = options(1);
        o.spatial = false;
        let e = embeddings(&output(), &o, &[0, 1], &mut HostStaging::default()).unwrap();
        assert_eq!(
            (e[0].spatial.as_ref(), e[0].spatial_dim, e[0].grid),
            (None, 0, (0, 0))
        );
        o.summary = false;
        o.spatial = true;
        let e = embeddings(&output(), &o, &[0, 1], &mut HostStaging::default()).unwrap();
        assert_eq!(e[0].summary, None);
        assert_eq!(e[0].spatial.as_ref().unwrap().len(), 8);
    }
}
