// SPDX-License-Identifier: MPL-2.0
//! Choosing the model's input size for a frame.

/// How the model input size follows from the frame size.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum TargetSize {
    /// Keep the aspect ratio: the shorter side becomes this many pixels, the longer
    /// side scales with it; both are snapped to the model's step.
    ShortSide(usize),
    /// Exactly this size (each side a multiple of the model's step).
    Fixed {
        /// Width in pixels.
        width: usize,
        /// Height in pixels.
        height: usize,
    },
}

/// The limits the model puts on its input sides.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SizeLimits {
    /// Sides must be multiples of this (the patch size, 16).
    pub step: usize,
    /// Largest side in pixels (2048 for C-RADIOv4).
    pub max: usize,
}

/// Why a target size cannot be produced.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SizeError {
    /// A fixed size is not a multiple of the step or outside the range.
    #[error(
        "model input {width}x{height} is not supported: sides must be multiples of {step} \
         between {step} and {max}"
    )]
    Unsupported {
        /// Requested width.
        width: usize,
        /// Requested height.
        height: usize,
        /// The model's step.
        step: usize,
        /// The model's largest side.
        max: usize,
    },
    /// The frame has no pixels.
    #[error("frame of {width}x{height} pixels cannot be embedded")]
    EmptyFrame {
        /// Frame width.
        width: usize,
        /// Frame height.
        height: usize,
    },
}

impl TargetSize {
    /// The (height, width) the model sees for a `frame_width` × `frame_height` frame.
    pub fn resolve(
        self,
        frame_width: usize,
        frame_height: usize,
        limits: SizeLimits,
    ) -> Result<(usize, usize), SizeError> {
        if frame_width == 0 || frame_height == 0 {
            return Err(SizeError::EmptyFrame {
                width: frame_width,
                height: frame_height,
            });
        }
        let SizeLimits { step, max } = limits;
        let largest = (max / step).max(1) * step;
        let snap = |side: f64| {
            let steps = (side / step as f64).round_ties_even().max(1.0) as usize;
            (steps * step).min(largest)
        };
        match self {
            Self::Fixed { width, height } => {
                let ok = |s: usize| s >= step && s <= max && s.is_multiple_of(step);
                if ok(width) && ok(height) {
                    Ok((height, width))
                } else {
                    Err(SizeError::Unsupported {
                        width,
                        height,
                        step,
                        max,
                    })
                }
            }
            Self::ShortSide(short) => {
                let short_out = snap(short as f64);
                let (short_in, long_in) = if frame_width <= frame_height {
                    (frame_width, frame_height)
                } else {
                    (frame_height, frame_width)
                };
                let long_out = snap(long_in as f64 * short_out as f64 / short_in as f64);
                Ok(if frame_width <= frame_height {
                    (long_out, short_out)
                } else {
                    (short_out, long_out)
                })
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const LIMITS: SizeLimits = SizeLimits {
        step: 16,
        max: 2048,
    };

    #[test]
    fn full_hd_at_512_keeps_aspect() {
        let size = TargetSize::ShortSide(512)
            .resolve(1920, 1080, LIMITS)
            .unwrap();
        // 1920 · 512 / 1080 = 910.2 → 56.9 steps → 57 · 16 = 912.
        assert_eq!(size, (512, 912));
    }

    #[test]
    fn portrait_frames_swap_sides() {
        let size = TargetSize::ShortSide(224)
            .resolve(480, 640, LIMITS)
            .unwrap();
        assert_eq!(size, (304, 224));
    }

    #[test]
    fn snapping_rounds_half_to_even() {
        // 40 px = 2.5 steps → 2 steps (ties to even), as Python's round.
        assert_eq!(
            TargetSize::ShortSide(40).resolve(100, 100, LIMITS).unwrap(),
            (32, 32)
        );
        assert_eq!(
            TargetSize::ShortSide(8).resolve(10, 10, LIMITS).unwrap(),
            (16, 16)
        );
    }

    #[test]
    fn long_side_is_capped() {
        let size = TargetSize::ShortSide(512)
            .resolve(8000, 500, LIMITS)
            .unwrap();
        assert_eq!(size, (512, 2048));
    }

    #[test]
    fn fixed_size_must_fit_the_model() {
        assert_eq!(
            TargetSize::Fixed {
                width: 640,
                height: 480
            }
            .resolve(3, 3, LIMITS),
            Ok((480, 640))
        );
        let err = TargetSize::Fixed {
            width: 650,
            height: 480,
        }
        .resolve(3, 3, LIMITS)
        .unwrap_err();
        assert_eq!(
            err.to_string(),
            "model input 650x480 is not supported: sides must be multiples of 16 between 16 and 2048"
        );
    }
}
