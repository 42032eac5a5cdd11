//! The CPU preprocessing path: colour conversion, separable resize and
//! normalisation in two multi-threaded passes over reused buffers.

use rayon::prelude::*;

use super::convert::RowConverter;
use super::frame::FrameLayout;
use super::{Normalization, PreprocessError};
use crate::resample::AxisTaps;

/// Rows handled by one parallel task of the horizontal pass.
const ROWS_PER_TASK: usize = 32;

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
    rows: AxisTaps,
    cols: AxisTaps,
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
            rows: AxisTaps::bilinear(fh, th, key.antialias),
            cols: AxisTaps::bilinear(fw, tw, key.antialias),
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
                let (r, gb) = scratch.split_at_mut(fw);
                let (g, b) = gb.split_at_mut(fw);
                for (i, row_out) in rows_out.chunks_exact_mut(3 * tw).enumerate() {
                    converter.convert(task * ROWS_PER_TASK + i, r, g, b);
                    for (channel, dst) in [&*r, &*g, &*b]
                        .into_iter()
                        .zip(row_out.chunks_exact_mut(tw))
                    {
                        for (x, d) in dst.iter_mut().enumerate() {
                            *d = cols.apply(x, channel, 1);
                        }
                    }
                }
            });

        let horizontal = &plan.horizontal;
        let rows = &plan.rows;
        out.par_chunks_mut(tw).enumerate().for_each(|(i, dst)| {
            let (c, y) = (i / th, i % th);
            let tap = &rows.taps()[y];
            dst.fill(0.0);
            for (j, &w) in tap.weights.iter().enumerate() {
                let start = ((tap.start + j) * 3 + c) * tw;
                for (d, s) in dst.iter_mut().zip(&horizontal[start..start + tw]) {
                    *d += w * s;
                }
            }
            let (scale, bias) = norm.scale_bias(c);
            dst.iter_mut().for_each(|d| *d = *d * scale + bias);
        });
        Ok(())
    }
}
