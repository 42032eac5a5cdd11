// SPDX-License-Identifier: MPL-2.0
//! The CPU preprocessing path: colour conversion, separable resize and
//! normalisation in one multi-threaded pass over reused buffers.
//!
//! Each task owns a band of output rows. It converts the frame rows the band's
//! vertical taps read into planar RGB floats (a band-sized buffer that stays in
//! cache), blends them vertically into one full-width row per output row
//! (contiguous, vectorised), then resamples that row horizontally and normalises
//! straight into the output planes. Going vertical-first means the gathering
//! horizontal filter runs on output rows only (512 instead of 1080 for a 1080p
//! frame). The inner loops read a fixed number of taps per output (a const
//! generic, so they unroll) and are compiled a second time for AVX2 + FMA, picked
//! at run time (the crate itself targets baseline x86-64).

use rayon::prelude::*;

use super::convert::RowConverter;
use super::frame::FrameLayout;
use super::{Normalization, PreprocessError};
use crate::cpu::avx2_fma_dispatch;
use crate::resample::{AxisTaps, PackedTaps};

/// Output rows handled by one parallel task.
const ROWS_PER_TASK: usize = 16;

/// What a plan was made for; a new frame size or target rebuilds it.
#[derive(Debug, Clone, PartialEq, Eq)]
struct PlanKey {
    frame: (usize, usize),
    target: (usize, usize),
    antialias: bool,
}

/// Per-task buffers.
struct Scratch {
    /// Converted frame rows of the band: per row, full-width R, G and B.
    converted: Vec<f32>,
    /// One vertically blended full-width row per channel.
    blended: Vec<f32>,
}

/// Taps and buffers for one (frame size, target size) pair, reused across frames.
struct Plan {
    key: PlanKey,
    rows: PackedTaps,
    cols: PackedTaps,
    scratch: Vec<Scratch>,
}

impl Plan {
    fn new(key: PlanKey) -> Self {
        let (fw, fh) = key.frame;
        let (th, tw) = key.target;
        let rows = PackedTaps::new(&AxisTaps::bilinear(fh, th, key.antialias), fh);
        let cols = PackedTaps::new(&AxisTaps::bilinear(fw, tw, key.antialias), fw);
        let tasks = th.div_ceil(ROWS_PER_TASK);
        let band_rows = (0..tasks)
            .map(|t| band(&rows, t, th).len())
            .max()
            .unwrap_or(0);
        let scratch = (0..tasks)
            .map(|_| Scratch {
                converted: vec![0.0; band_rows * 3 * fw],
                blended: vec![0.0; 3 * fw],
            })
            .collect();
        Self {
            key,
            rows,
            cols,
            scratch,
        }
    }
}

/// The frame rows that output rows of task `t` read.
fn band(rows: &PackedTaps, t: usize, th: usize) -> std::ops::Range<usize> {
    let first = t * ROWS_PER_TASK;
    let last = (first + ROWS_PER_TASK).min(th) - 1;
    rows.starts[first]..rows.starts[last] + rows.support
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
        let job = BandJob {
            converter: &converter,
            rows: &plan.rows,
            cols: &plan.cols,
            channels: [0, 1, 2].map(|c| norm.scale_bias(c)),
            frame_width: layout.width,
            target,
        };
        let band_len = ROWS_PER_TASK * tw;
        let (r_plane, gb) = out.split_at_mut(th * tw);
        let (g_plane, b_plane) = gb.split_at_mut(th * tw);
        r_plane
            .par_chunks_mut(band_len)
            .zip(g_plane.par_chunks_mut(band_len))
            .zip(b_plane.par_chunks_mut(band_len))
            .zip(plan.scratch.par_iter_mut())
            .enumerate()
            .for_each(|(t, (((r, g), b), scratch))| job.run(t, scratch, [r, g, b]));
        Ok(())
    }
}

/// What the bands of one frame share: the frame, the taps, the normalisation.
struct BandJob<'a> {
    converter: &'a RowConverter<'a>,
    rows: &'a PackedTaps,
    cols: &'a PackedTaps,
    /// (scale, bias) of the R, G and B planes.
    channels: [(f32, f32); 3],
    frame_width: usize,
    /// (height, width) of the output.
    target: (usize, usize),
}

impl BandJob<'_> {
    /// Output rows of band `t` into the three planes' `outputs`: converts the
    /// frame rows they read, then blends rows and resamples each line.
    fn run(&self, t: usize, scratch: &mut Scratch, mut outputs: [&mut [f32]; 3]) {
        let (th, tw) = self.target;
        let fw = self.frame_width;
        let input_rows = band(self.rows, t, th);
        for (i, y) in input_rows.clone().enumerate() {
            let row = &mut scratch.converted[i * 3 * fw..][..3 * fw];
            let (r, gb) = row.split_at_mut(fw);
            let (g, b) = gb.split_at_mut(fw);
            self.converter.convert(y, r, g, b);
        }
        let k = self.rows.support;
        for j in 0..outputs[0].len() / tw {
            let y = t * ROWS_PER_TASK + j;
            let weights = &self.rows.weights[y * k..][..k];
            let first = (self.rows.starts[y] - input_rows.start) * 3 * fw;
            for (c, plane) in outputs.iter_mut().enumerate() {
                let blended = &mut scratch.blended[c * fw..][..fw];
                blend_rows(&scratch.converted, first + c * fw, 3 * fw, weights, blended);
                let (scale, bias) = self.channels[c];
                resample_line(self.cols, blended, &mut plane[j * tw..][..tw], scale, bias);
            }
        }
    }
}

/// `dst[x] = scale · Σ_k w[x, k] · src[start[x] + k] + bias` for one line.
fn resample_line(taps: &PackedTaps, src: &[f32], dst: &mut [f32], scale: f32, bias: f32) {
    macro_rules! dispatch {
        ($($k:literal)*) => {
            match taps.support {
                $($k => {
                    resample_line_fixed::<$k>(taps, src, dst, scale, bias)
                })*
                _ => resample_line_dyn(taps, src, dst, scale, bias),
            }
        };
    }
    dispatch!(1 2 3 4 5 6 7 8 9 10 11 12);
}

avx2_fma_dispatch! {
    /// [`resample_line`] for a support of exactly `K` taps, unrolled.
    fn resample_line_fixed[const K: usize]::<K>(
        taps: &PackedTaps,
        src: &[f32],
        dst: &mut [f32],
        scale: f32,
        bias: f32,
    ) {
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
            *d = acc * scale + bias;
        }
    }
}

fn resample_line_dyn(taps: &PackedTaps, src: &[f32], dst: &mut [f32], scale: f32, bias: f32) {
    let k = taps.support;
    for ((d, &start), w) in dst
        .iter_mut()
        .zip(&taps.starts)
        .zip(taps.weights.chunks_exact(k))
    {
        let acc: f32 = w
            .iter()
            .zip(&src[start..start + k])
            .map(|(w, x)| w * x)
            .sum();
        *d = acc * scale + bias;
    }
}

avx2_fma_dispatch! {
    /// `dst = Σ_k w[k] · src[first + k · stride ..][.. dst.len()]`.
    fn blend_rows(src: &[f32], first: usize, stride: usize, weights: &[f32], dst: &mut [f32]) {
        dst.fill(0.0);
        for (k, &w) in weights.iter().enumerate() {
            let row = &src[first + k * stride..][..dst.len()];
            for (d, s) in dst.iter_mut().zip(row) {
                *d += w * s;
            }
        }
    }
}
