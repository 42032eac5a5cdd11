// SPDX-License-Identifier: MPL-2.0
//! Separable bilinear resampling weights, computed exactly as PyTorch's
//! `interpolate(mode="bilinear", align_corners=False, antialias=...)` does.
//!
//! Both the model (resizing its position-embedding table) and the frame
//! preprocessing use these taps, so they live apart from either. All coordinate
//! arithmetic is in `f32`, as PyTorch's CPU kernels do it: computing it in `f64`
//! moves results by up to 1e-5 for non-power-of-two ratios.

/// The input samples that contribute to one output sample, and their weights.
#[derive(Debug, Clone, PartialEq)]
pub struct Tap {
    /// Index of the first contributing input sample.
    pub start: usize,
    /// Weights of the input samples `start`, `start + 1`, … (they sum to 1).
    pub weights: Vec<f32>,
}

/// Resampling taps for one axis: one [`Tap`] per output sample.
#[derive(Debug, Clone, PartialEq)]
pub struct AxisTaps {
    taps: Vec<Tap>,
}

impl AxisTaps {
    /// Taps resizing an axis of `n_in` samples to `n_out` samples with half-pixel
    /// centres. With `antialias`, a shrinking resize widens the triangle filter by the
    /// scale factor (PIL / PyTorch `antialias=True`); enlarging is plain bilinear either way.
    pub fn bilinear(n_in: usize, n_out: usize, antialias: bool) -> Self {
        assert!(n_in > 0 && n_out > 0, "resampling needs non-empty axes");
        let scale = n_in as f32 / n_out as f32;
        let taps = (0..n_out)
            .map(|o| {
                if antialias && scale > 1.0 {
                    antialiased_tap(o, n_in, scale)
                } else {
                    plain_tap(o, n_in, scale)
                }
            })
            .collect();
        Self { taps }
    }

    /// The taps, in output order.
    pub fn taps(&self) -> &[Tap] {
        &self.taps
    }

    /// Number of output samples.
    pub fn len(&self) -> usize {
        self.taps.len()
    }

    /// Whether there are no output samples (never true for a constructed axis).
    pub fn is_empty(&self) -> bool {
        self.taps.is_empty()
    }

    /// The largest number of input samples any output sample reads.
    pub fn max_support(&self) -> usize {
        self.taps.iter().map(|t| t.weights.len()).max().unwrap_or(0)
    }

    /// Resamples one strided line: `out[o] = Σ w · input[(start + j) · stride]`.
    #[inline]
    pub fn apply(&self, o: usize, input: &[f32], stride: usize) -> f32 {
        let tap = &self.taps[o];
        tap.weights
            .iter()
            .enumerate()
            .map(|(j, w)| w * input[(tap.start + j) * stride])
            .sum()
    }
}

/// [`AxisTaps`] in a flat layout for inner loops: every output reads exactly
/// `support` inputs starting at `starts[o]` (always in bounds), with weights
/// `weights[o · support ..][.. support]`, zero-padded where a tap is narrower.
#[derive(Debug, Clone, PartialEq)]
pub struct PackedTaps {
    /// Inputs read per output.
    pub support: usize,
    /// First input of each output.
    pub starts: Vec<usize>,
    /// `support` weights per output.
    pub weights: Vec<f32>,
}

impl PackedTaps {
    /// Packs the taps of an axis with `n_in` input samples.
    pub fn new(taps: &AxisTaps, n_in: usize) -> Self {
        let support = taps.max_support();
        let mut starts = Vec::with_capacity(taps.len());
        let mut weights = vec![0f32; taps.len() * support];
        for (o, tap) in taps.taps().iter().enumerate() {
            // Shift windows that would run past the end left; the extra leading
            // weights stay zero.
            let start = tap.start.min(n_in - support);
            let shift = tap.start - start;
            weights[o * support + shift..][..tap.weights.len()].copy_from_slice(&tap.weights);
            starts.push(start);
        }
        Self {
            support,
            starts,
            weights,
        }
    }
}

/// PyTorch `upsample_bilinear2d` (align_corners=False) for one output index.
fn plain_tap(o: usize, n_in: usize, scale: f32) -> Tap {
    let src = (scale * (o as f32 + 0.5) - 0.5).max(0.0);
    let i0 = (src as usize).min(n_in - 1);
    let lambda = src - i0 as f32;
    if i0 + 1 < n_in {
        Tap {
            start: i0,
            weights: vec![1.0 - lambda, lambda],
        }
    } else {
        Tap {
            start: i0,
            weights: vec![1.0],
        }
    }
}

/// PyTorch's antialiased bilinear (`_upsample_bilinear2d_aa`) for one output index
/// of a shrinking resize (`scale > 1`).
fn antialiased_tap(o: usize, n_in: usize, scale: f32) -> Tap {
    let centre = scale * (o as f32 + 0.5);
    let support = scale;
    let inv_scale = 1.0 / scale;
    let start = ((centre - support + 0.5) as isize).max(0) as usize;
    let end = ((centre + support + 0.5) as usize).min(n_in);
    let mut weights: Vec<f32> = (start..end)
        .map(|j| {
            let x = (j as f32 - centre + 0.5) * inv_scale;
            (1.0 - x.abs()).max(0.0)
        })
        .collect();
    let total: f32 = weights.iter().sum();
    if total != 0.0 {
        weights.iter_mut().for_each(|w| *w /= total);
    }
    Tap { start, weights }
}

/// Resizes a planar `(channels, h_in, w_in)` image to `(channels, h_out, w_out)`.
pub fn resize_planar(
    input: &[f32],
    channels: usize,
    (h_in, w_in): (usize, usize),
    (h_out, w_out): (usize, usize),
    antialias: bool,
) -> Vec<f32> {
    assert_eq!(input.len(), channels * h_in * w_in, "input size mismatch");
    let rows = AxisTaps::bilinear(h_in, h_out, antialias);
    let cols = AxisTaps::bilinear(w_in, w_out, antialias);
    let mut horizontal = vec![0f32; channels * h_in * w_out];
    for (src, dst) in input
        .chunks_exact(w_in)
        .zip(horizontal.chunks_exact_mut(w_out))
    {
        for (x, d) in dst.iter_mut().enumerate() {
            *d = cols.apply(x, src, 1);
        }
    }
    let mut out = vec![0f32; channels * h_out * w_out];
    for (src, dst) in horizontal
        .chunks_exact(h_in * w_out)
        .zip(out.chunks_exact_mut(h_out * w_out))
    {
        for y in 0..h_out {
            for x in 0..w_out {
                dst[y * w_out + x] = rows.apply(y, &src[x..], w_out);
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn identity_resize_keeps_samples() {
        let taps = AxisTaps::bilinear(5, 5, true);
        for (o, tap) in taps.taps().iter().enumerate() {
            assert_eq!(tap.start, o);
            assert_eq!(tap.weights[0], 1.0);
        }
    }

    #[test]
    fn halving_without_antialias_averages_neighbours() {
        let taps = AxisTaps::bilinear(4, 2, false);
        assert_eq!(
            taps.taps()[0],
            Tap {
                start: 0,
                weights: vec![0.5, 0.5]
            }
        );
        assert_eq!(taps.taps()[1].start, 2);
    }

    #[test]
    fn antialiased_halving_uses_four_taps() {
        let taps = AxisTaps::bilinear(8, 4, true);
        let tap = &taps.taps()[1];
        assert_eq!(tap.start, 1);
        assert_eq!(tap.weights, vec![0.125, 0.375, 0.375, 0.125]);
        assert_eq!(taps.max_support(), 4);
    }

    #[test]
    fn packed_taps_stay_in_bounds_and_keep_weights() {
        for (n_in, n_out) in [(97, 48), (131, 208), (1920, 912), (3, 1)] {
            let taps = AxisTaps::bilinear(n_in, n_out, true);
            let packed = PackedTaps::new(&taps, n_in);
            let input: Vec<f32> = (0..n_in).map(|i| (i * i % 17) as f32).collect();
            for o in 0..n_out {
                let s = packed.starts[o];
                assert!(s + packed.support <= n_in);
                let w = &packed.weights[o * packed.support..][..packed.support];
                let got: f32 = w.iter().zip(&input[s..]).map(|(w, x)| w * x).sum();
                assert!((got - taps.apply(o, &input, 1)).abs() < 1e-4);
            }
        }
    }

    #[test]
    fn weights_sum_to_one() {
        for (n_in, n_out) in [(97, 48), (131, 208), (1080, 512), (7, 3)] {
            for aa in [false, true] {
                for tap in AxisTaps::bilinear(n_in, n_out, aa).taps() {
                    let s: f32 = tap.weights.iter().sum();
                    assert!((s - 1.0).abs() < 1e-5, "{n_in}->{n_out} aa={aa}: {s}");
                    assert!(tap.start + tap.weights.len() <= n_in);
                }
            }
        }
    }
}
