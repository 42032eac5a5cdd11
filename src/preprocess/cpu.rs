//! The CPU preprocessing path: colour conversion, separable resize and
//! normalisation in two multi-threaded passes over reused buffers.
//!
//! Pass 1 converts each frame row to planar RGB floats and resamples it
//! horizontally; pass 2 resamples columns and normalises, writing the output
//! planes. Both inner loops read a fixed number of taps per output (a const
//! generic, so they unroll) and are compiled a second time for AVX2 + FMA, picked
//! at run time (the crate itself targets baseline x86-64).

use rayon::prelude::*;

use super::convert::RowConverter;
use super::frame::FrameLayout;
use super::simd::avx2_fma;
use super::{Normalization, PreprocessError};
use crate::resample::{AxisTaps, PackedTaps};

/// Rows handled by one parallel task of the horizontal pass.
const ROWS_PER_TASK: usize = 16;

/// What a plan was made for; a new frame size or target rebuilds it.
#[derive(Debug, Clone, PartialEq, Eq)]
struct PlanKey {
    frame: (usize, usize),
    target: (usize, usize),
    antialias: bool,
}

/// Taps and buffers for one (frame size, target size) pair, reused across frames.
struct Plan {
    key: PlanKey,
    rows: PackedTaps,
    cols: PackedTaps,
    /// Horizontally resized frame: per input row, R, G and B rows of target width.
    horizontal: Vec<f32>,
    /// Per task: the converted full-width R, G, B rows.
    scratch: Vec<Vec<f32>>,
}

impl Plan {
    fn new(key: PlanKey) -> Self {
        let (fw, fh) = key.frame;
        let (th, tw) = key.target;
        let tasks = fh.div_ceil(ROWS_PER_TASK);
        Self {
            rows: PackedTaps::new(&AxisTaps::bilinear(fh, th, key.antialias), fh),
            cols: PackedTaps::new(&AxisTaps::bilinear(fw, tw, key.antialias), fw),
            horizontal: vec![0.0; fh * 3 * tw],
            scratch: vec![vec![0.0; 3 * fw]; tasks],
            key,
        }
    }
}

/// Converts frames to normalised model input on the CPU.
#[derive(Default)]
pub struct CpuPreprocessor {
    plan: Option<Plan>,
}

impl CpuPreprocessor {
    /// A preprocessor with no buffers yet; the first frame allocates them.
    pub fn new() -> Self {
        Self::default()
    }

    /// Converts one frame to a normalised (3, h, w) planar RGB image in `out`.
    ///
    /// `target` is (height, width). Values are `(rgb − mean) / std` with `rgb` in 0..1.
    pub fn process(
        &mut self,
        data: &[u8],
        layout: &FrameLayout,
        target: (usize, usize),
        antialias: bool,
        norm: &Normalization,
        out: &mut [f32],
    ) -> Result<(), PreprocessError> {
        super::check_frame(data, layout)?;
        let (th, tw) = target;
        if out.len() != 3 * th * tw {
            return Err(PreprocessError::OutputSize {
                expected: 3 * th * tw,
                found: out.len(),
            });
        }
        let key = PlanKey {
            frame: (layout.width, layout.height),
            target,
            antialias,
        };
        if self.plan.as_ref().is_none_or(|p| p.key != key) {
            self.plan = Some(Plan::new(key));
        }
        let plan = self.plan.as_mut().expect("plan was just made");
        let converter = RowConverter::new(data, layout);
        let fw = layout.width;
        let cols = &plan.cols;

        plan.horizontal
            .par_chunks_mut(ROWS_PER_TASK * 3 * tw)
            .zip(plan.scratch.par_iter_mut())
            .enumerate()
            .for_each(|(task, (rows_out, scratch))| {
                for (i, row_out) in rows_out.chunks_exact_mut(3 * tw).enumerate() {
                    let (r, gb) = scratch.split_at_mut(fw);
                    let (g, b) = gb.split_at_mut(fw);
                    converter.convert(task * ROWS_PER_TASK + i, r, g, b);
                    for (channel, dst) in scratch.chunks_exact(fw).zip(row_out.chunks_exact_mut(tw))
                    {
                        resample_line(cols, channel, dst);
                    }
                }
            });

        let horizontal = &plan.horizontal;
        let rows = &plan.rows;
        out.par_chunks_mut(tw).enumerate().for_each(|(i, dst)| {
            let (c, y) = (i / th, i % th);
            let (scale, bias) = norm.scale_bias(c);
            let k = rows.support;
            let weights = &rows.weights[y * k..][..k];
            let first = (rows.starts[y] * 3 + c) * tw;
            blend_rows(horizontal, first, 3 * tw, weights, dst, scale, bias);
        });
        Ok(())
    }
}

/// `dst[x] = Σ_k w[x, k] · src[start[x] + k]` for every output of one line.
fn resample_line(taps: &PackedTaps, src: &[f32], dst: &mut [f32]) {
    macro_rules! dispatch {
        ($($k:literal)*) => {
            match taps.support {
                $($k => {
                    #[cfg(target_arch = "x86_64")]
                    if avx2_fma() {
                        // SAFETY: the CPU has AVX2 and FMA.
                        return unsafe { resample_line_avx2::<$k>(taps, src, dst) };
                    }
                    resample_line_k::<$k>(taps, src, dst)
                })*
                _ => resample_line_dyn(taps, src, dst),
            }
        };
    }
    dispatch!(1 2 3 4 5 6 7 8 9 10 11 12);
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2,fma")]
unsafe fn resample_line_avx2<const K: usize>(taps: &PackedTaps, src: &[f32], dst: &mut [f32]) {
    resample_line_k::<K>(taps, src, dst)
}

#[inline(always)]
fn resample_line_k<const K: usize>(taps: &PackedTaps, src: &[f32], dst: &mut [f32]) {
    for ((d, &start), w) in dst
        .iter_mut()
        .zip(&taps.starts)
        .zip(taps.weights.chunks_exact(K))
    {
        let window = &src[start..start + K];
        let mut acc = 0.0;
        for k in 0..K {
            acc += w[k] * window[k];
        }
        *d = acc;
    }
}

fn resample_line_dyn(taps: &PackedTaps, src: &[f32], dst: &mut [f32]) {
    let k = taps.support;
    for ((d, &start), w) in dst
        .iter_mut()
        .zip(&taps.starts)
        .zip(taps.weights.chunks_exact(k))
    {
        *d = w
            .iter()
            .zip(&src[start..start + k])
            .map(|(w, x)| w * x)
            .sum();
    }
}

/// `dst = scale · Σ_k w[k] · src[first + k · stride ..][.. dst.len()] + bias`.
fn blend_rows(
    src: &[f32],
    first: usize,
    stride: usize,
    weights: &[f32],
    dst: &mut [f32],
    scale: f32,
    bias: f32,
) {
    #[cfg(target_arch = "x86_64")]
    if avx2_fma() {
        // SAFETY: the CPU has AVX2 and FMA.
        return unsafe { blend_rows_avx2(src, first, stride, weights, dst, scale, bias) };
    }
    blend_rows_generic(src, first, stride, weights, dst, scale, bias)
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2,fma")]
unsafe fn blend_rows_avx2(
    src: &[f32],
    first: usize,
    stride: usize,
    weights: &[f32],
    dst: &mut [f32],
    scale: f32,
    bias: f32,
) {
    blend_rows_generic(src, first, stride, weights, dst, scale, bias)
}

#[inline(always)]
fn blend_rows_generic(
    src: &[f32],
    first: usize,
    stride: usize,
    weights: &[f32],
    dst: &mut [f32],
    scale: f32,
    bias: f32,
) {
    dst.fill(0.0);
    for (k, &w) in weights.iter().enumerate() {
        let row = &src[first + k * stride..][..dst.len()];
        for (d, s) in dst.iter_mut().zip(row) {
            *d += w * s;
        }
    }
    for d in dst.iter_mut() {
        *d = *d * scale + bias;
    }
}
