// SPDX-License-Identifier: MPL-2.0
//! The GPU preprocessing path (feature `cuda`): the frame goes up once as raw
//! planes from pinned host memory, and two NVRTC-compiled kernels
//! (`kernels.cu`) convert, resize and normalise it straight into the device
//! buffer that becomes the model's input tensor, in f32, f16 or bf16, on
//! candle's own stream.

use candle_core::cuda_backend::{CudaDevice, CudaStorage};
use candle_core::op::BackpropOp;
use candle_core::{DType, Device, Storage, Tensor};
use cudarc::driver::sys::CUevent_flags;
use cudarc::driver::{
    CudaEvent, CudaFunction, CudaSlice, DeviceRepr, LaunchConfig, PinnedHostSlice, PushKernelArg,
};

use rayon::prelude::*;

use crate::cuda::KernelSource;

use super::convert::YuvCoefficients;
use super::frame::FrameLayout;
use super::{Normalization, PreprocessError, check_frame};
use crate::resample::{AxisTaps, PackedTaps};

const BLOCK: u32 = 256;

/// `struct Frame` of kernels.cu.
#[repr(C)]
#[derive(Debug, Clone, Copy)]
struct FrameDesc {
    format: i32,
    width: i32,
    height: i32,
    bpp: i32,
    ro: i32,
    go: i32,
    bo: i32,
    strides: [i32; 3],
    offsets: [i64; 3],
    yuv: [f32; 6],
}

// SAFETY: plain `repr(C)` data matching the kernel's struct.
unsafe impl DeviceRepr for FrameDesc {}

/// `struct Norm` of kernels.cu.
#[repr(C)]
#[derive(Debug, Clone, Copy)]
struct NormDesc {
    scale: [f32; 3],
    bias: [f32; 3],
}

// SAFETY: plain `repr(C)` data matching the kernel's struct.
unsafe impl DeviceRepr for NormDesc {}

fn gpu(err: impl std::fmt::Display) -> PreprocessError {
    PreprocessError::Gpu(err.to_string())
}

/// The preprocessing kernels: the vertical pass, then the horizontal pass
/// writing f32, f16 and bf16.
pub static PREPROCESS_KERNELS: KernelSource = KernelSource {
    file: "radio_preprocess.cu",
    code: include_str!("kernels.cu"),
    kernels: &[
        "vertical",
        "horizontal_f32",
        "horizontal_f16",
        "horizontal_bf16",
    ],
};

/// The preprocessing kernels, loaded on one device.
struct Kernels {
    vertical: CudaFunction,
    horizontal_f32: CudaFunction,
    horizontal_f16: CudaFunction,
    horizontal_bf16: CudaFunction,
}

impl Kernels {
    /// The kernels on `device`'s GPU (compiled and loaded once per process).
    fn load(device: &CudaDevice) -> Result<Self, PreprocessError> {
        let context = device.cuda_stream().context().clone();
        let functions = crate::cuda::load_kernels(&context, &PREPROCESS_KERNELS)
            .map_err(PreprocessError::Gpu)?;
        Ok(Self {
            vertical: functions[0].clone(),
            horizontal_f32: functions[1].clone(),
            horizontal_f16: functions[2].clone(),
            horizontal_bf16: functions[3].clone(),
        })
    }
}

/// Taps on the device.
struct DeviceTaps {
    starts: CudaSlice<i32>,
    weights: CudaSlice<f32>,
    support: i32,
}

impl DeviceTaps {
    fn upload(device: &CudaDevice, taps: &PackedTaps) -> Result<Self, PreprocessError> {
        let stream = device.cuda_stream();
        let starts: Vec<i32> = taps.starts.iter().map(|&s| s as i32).collect();
        Ok(Self {
            starts: stream.clone_htod(&starts).map_err(gpu)?,
            weights: stream.clone_htod(&taps.weights).map_err(gpu)?,
            support: taps.support as i32,
        })
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
struct PlanKey {
    frame: (usize, usize),
    target: (usize, usize),
    antialias: bool,
    frame_bytes: usize,
}

/// Device taps and buffers for one (frame size, target size) combination,
/// with room for `capacity` frames: a partial batch (a timeout, EOS) reuses
/// them instead of allocating pinned and device memory again.
struct Plan {
    key: PlanKey,
    capacity: usize,
    rows: DeviceTaps,
    cols: DeviceTaps,
    staging: PinnedHostSlice<u8>,
    /// Recorded after the last copy out of `staging`.
    uploaded: Option<CudaEvent>,
    frames: CudaSlice<u8>,
    intermediate: CudaSlice<f32>,
}

/// Converts batches of frames to normalised model input on a CUDA device.
pub struct GpuPreprocessor {
    device: CudaDevice,
    kernels: Kernels,
    plan: Option<Plan>,
}

impl GpuPreprocessor {
    /// Prepares the kernels for `device` (compiling them on first use).
    pub fn new(device: &Device) -> Result<Self, PreprocessError> {
        let Device::Cuda(device) = device else {
            return Err(PreprocessError::Gpu("not a CUDA device".into()));
        };
        Ok(Self {
            kernels: Kernels::load(device)?,
            device: device.clone(),
            plan: None,
        })
    }

    /// Converts frames of one layout into a (B, 3, h, w) tensor of `dtype` on the
    /// device. `frames[i]` is the i-th frame's memory, laid out as `layout` says.
    pub fn process_batch(
        &mut self,
        frames: &[&[u8]],
        layout: &FrameLayout,
        target: (usize, usize),
        antialias: bool,
        norm: &Normalization,
        dtype: DType,
    ) -> Result<Tensor, PreprocessError> {
        for frame in frames {
            check_frame(frame, layout)?;
        }
        let (th, tw) = target;
        let key = PlanKey {
            frame: (layout.width, layout.height),
            target,
            antialias,
            frame_bytes: layout.min_size(),
        };
        self.prepare_plan(key, frames.len())?;
        self.upload(frames)?;

        let desc = frame_desc(layout);
        let norm = NormDesc {
            scale: [0, 1, 2].map(|c| norm.scale_bias(c).0),
            bias: [0, 1, 2].map(|c| norm.scale_bias(c).1),
        };
        let per_image = 3 * th * tw;
        let n = frames.len();
        let storage = match dtype {
            DType::F32 => self.run::<f32>(n, &desc, &norm, per_image)?,
            DType::F16 => self.run::<half::f16>(n, &desc, &norm, per_image)?,
            DType::BF16 => self.run::<half::bf16>(n, &desc, &norm, per_image)?,
            other => {
                return Err(PreprocessError::Gpu(format!(
                    "dtype {other:?} not supported"
                )));
            }
        };
        Ok(Tensor::from_storage(
            storage,
            (n, 3, th, tw),
            BackpropOp::none(),
            false,
        ))
    }

    /// Makes the device taps and buffers for `key` and `batch` frames, unless
    /// the last batch's fit (same key, room for as many frames).
    fn prepare_plan(&mut self, key: PlanKey, batch: usize) -> Result<(), PreprocessError> {
        let last = self.plan.as_ref().map(|p| (&p.key, p.capacity));
        let Some(capacity) = new_capacity(last, &key, batch) else {
            return Ok(());
        };
        let ((fw, fh), (th, tw)) = (key.frame, key.target);
        let rows = PackedTaps::new(&AxisTaps::bilinear(fh, th, key.antialias), fh);
        let cols = PackedTaps::new(&AxisTaps::bilinear(fw, tw, key.antialias), fw);
        let bytes = key.frame_bytes * capacity;
        let stream = self.device.cuda_stream();
        self.plan = Some(Plan {
            rows: DeviceTaps::upload(&self.device, &rows)?,
            cols: DeviceTaps::upload(&self.device, &cols)?,
            // SAFETY (the three allocations, left unset instead of cleared):
            // `upload` writes a batch's frames into `staging` and copies them to
            // `frames` before a kernel reads them, and the vertical pass writes
            // every entry of `intermediate` that the horizontal pass reads.
            staging: unsafe { stream.context().alloc_pinned::<u8>(bytes) }.map_err(gpu)?,
            uploaded: None,
            frames: unsafe { stream.alloc::<u8>(bytes) }.map_err(gpu)?,
            intermediate: unsafe { stream.alloc::<f32>(3 * th * fw) }.map_err(gpu)?,
            key,
            capacity,
        });
        Ok(())
    }

    /// Copies the frames through the pinned staging buffer to the device.
    fn upload(&mut self, frames: &[&[u8]]) -> Result<(), PreprocessError> {
        let plan = self.plan.as_mut().expect("plan prepared");
        let stream = self.device.cuda_stream();
        let frame_bytes = plan.key.frame_bytes;
        // Waits for the staging buffer's own last copy, not for the whole
        // stream: the previous batch's model forward may still run. (With one
        // stream a device, cudarc records no events of its own, so the
        // buffer's `as_mut_slice` would not wait.)
        if let Some(copied) = plan.uploaded.take() {
            copied.synchronize().map_err(gpu)?;
        }
        // This batch's frames only: a partial batch (a timeout, EOS) copies
        // less than the plan's capacity.
        let staging = &mut plan.staging.as_mut_slice().map_err(gpu)?[..frames.len() * frame_bytes];
        // One frame a thread: a single core's memcpy does not fill the
        // memory bus (a batch of 1080p NV12 frames is 50 MB).
        staging
            .par_chunks_exact_mut(frame_bytes)
            .zip(frames.par_iter())
            .for_each(|(slot, frame)| slot.copy_from_slice(&frame[..frame_bytes]));
        // From the pinned memory as a plain slice, which cudarc copies
        // asynchronously as it would the whole buffer, without an event of
        // its own: `uploaded` below is what the next batch waits for.
        stream
            .memcpy_htod(&*staging, &mut plan.frames)
            .map_err(gpu)?;
        plan.uploaded = Some(
            stream
                .record_event(Some(CUevent_flags::CU_EVENT_BLOCKING_SYNC))
                .map_err(gpu)?,
        );
        Ok(())
    }

    /// Launches both passes for every frame into a fresh output buffer, handed to
    /// candle without a copy.
    fn run<T: DeviceRepr + candle_core::WithDType + candle_core::cuda_backend::CudaDType>(
        &mut self,
        batch: usize,
        desc: &FrameDesc,
        norm: &NormDesc,
        per_image: usize,
    ) -> Result<Storage, PreprocessError> {
        let plan = self.plan.as_mut().expect("plan exists");
        let stream = self.device.cuda_stream();
        let vertical = &self.kernels.vertical;
        let horizontal = match T::DTYPE {
            DType::F16 => &self.kernels.horizontal_f16,
            DType::BF16 => &self.kernels.horizontal_bf16,
            _ => &self.kernels.horizontal_f32,
        };
        let (fw, th) = (desc.width, (plan.key.target.0) as i32);
        let tw = plan.key.target.1 as i32;
        // SAFETY: the horizontal pass writes every element (3 × h × w per frame).
        let mut out = unsafe { stream.alloc::<T>(batch * per_image) }.map_err(gpu)?;
        for b in 0..batch {
            let frame = plan
                .frames
                .slice(b * plan.key.frame_bytes..(b + 1) * plan.key.frame_bytes);
            let mut args = stream.launch_builder(vertical);
            args.arg(&frame)
                .arg(desc)
                .arg(&plan.rows.starts)
                .arg(&plan.rows.weights)
                .arg(&plan.rows.support)
                .arg(&th)
                .arg(&mut plan.intermediate);
            // SAFETY: argument types and order match `vertical` in kernels.cu; the
            // grid covers exactly the intermediate's frame_w x out_h entries.
            unsafe { args.launch(grid(fw, th, 1)) }.map_err(gpu)?;

            let mut image = out.slice_mut(b * per_image..(b + 1) * per_image);
            let mut args = stream.launch_builder(horizontal);
            args.arg(&plan.intermediate)
                .arg(&fw)
                .arg(&th)
                .arg(&tw)
                .arg(&plan.cols.starts)
                .arg(&plan.cols.weights)
                .arg(&plan.cols.support)
                .arg(norm)
                .arg(&mut image);
            // SAFETY: as above for `horizontal_*`; the grid covers 3 x out_h x out_w.
            unsafe { args.launch(grid(tw, th, 3)) }.map_err(gpu)?;
        }
        Ok(Storage::Cuda(CudaStorage::wrap_cuda_slice(
            out,
            self.device.clone(),
        )))
    }
}

/// The frames a new plan makes room for, or `None` when the last plan (its key
/// and capacity) serves a batch of `batch` frames of `key`. A plan of the same
/// key grows, never shrinks, so batches that alternate full and partial
/// allocate once.
fn new_capacity(last: Option<(&PlanKey, usize)>, key: &PlanKey, batch: usize) -> Option<usize> {
    match last {
        Some((last, capacity)) if last == key && capacity >= batch => None,
        Some((last, capacity)) if last == key => Some(capacity.max(batch)),
        _ => Some(batch),
    }
}

/// One thread per element of `planes` planes of `height` rows of `width`.
fn grid(width: i32, height: i32, planes: u32) -> LaunchConfig {
    LaunchConfig {
        grid_dim: ((width as u32).div_ceil(BLOCK), height as u32, planes),
        block_dim: (BLOCK, 1, 1),
        shared_mem_bytes: 0,
    }
}

fn frame_desc(layout: &FrameLayout) -> FrameDesc {
    let (bpp, [ro, go, bo]) = layout.format.packed_rgb().unwrap_or((1, [0, 0, 0]));
    let k = YuvCoefficients::new(layout.colorimetry);
    FrameDesc {
        format: layout.format.kernel_code(),
        width: layout.width as i32,
        height: layout.height as i32,
        bpp: bpp as i32,
        ro: ro as i32,
        go: go as i32,
        bo: bo as i32,
        strides: layout.strides.map(|s| s as i32),
        offsets: layout.offsets.map(|o| o as i64),
        yuv: k.as_array(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(width: usize) -> PlanKey {
        PlanKey {
            frame: (width, 48),
            target: (32, 48),
            antialias: true,
            frame_bytes: width * 48 * 3,
        }
    }

    #[test]
    fn partial_batches_reuse_the_plan_and_a_new_size_replaces_it() {
        assert_eq!(new_capacity(None, &key(64), 8), Some(8));
        // A partial batch (timeout, EOS) fits the plan of a full one.
        assert_eq!(new_capacity(Some((&key(64), 8)), &key(64), 3), None);
        assert_eq!(new_capacity(Some((&key(64), 8)), &key(64), 8), None);
        // A bigger batch grows it; another frame size starts over.
        assert_eq!(new_capacity(Some((&key(64), 8)), &key(64), 12), Some(12));
        assert_eq!(new_capacity(Some((&key(64), 8)), &key(80), 2), Some(2));
    }
}
