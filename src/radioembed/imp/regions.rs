// SPDX-License-Identifier: MPL-2.0
//! Per-object vectors: which of a frame's `GstVideoRegionOfInterestMeta`s get
//! one, their boxes for the engine, and the vectors put back on them.

use super::Settings;
use crate::meta::{MetaDtype, region_param};
use crate::postprocess::RegionBox;

/// The regions of one frame that get vectors: their positions among the
/// frame's region metas, and their boxes.
#[derive(Debug, Default)]
pub(super) struct Regions {
    positions: Vec<usize>,
    /// Boxes as fractions of the frame, in `positions` order.
    pub boxes: Vec<RegionBox>,
}

impl Regions {
    /// The regions of `buffer` that `settings` asks vectors for, in a frame of
    /// `frame` (width, height) pixels.
    pub fn of(buffer: &gst::BufferRef, settings: &Settings, frame: (u32, u32)) -> Self {
        let mut regions = Self::default();
        for (position, meta) in buffer
            .iter_meta::<gst_video::VideoRegionOfInterestMeta>()
            .enumerate()
        {
            if settings.wants_region(meta.roi_type()) {
                regions.positions.push(position);
                regions
                    .boxes
                    .push(RegionBox::from_pixels(meta.rect(), frame));
            }
        }
        regions
    }

    /// Adds each vector as a `radio-embedding` parameter to its region's meta.
    pub fn attach(&self, buffer: &mut gst::BufferRef, vectors: &[Vec<f32>], dtype: MetaDtype) {
        let mut wanted = self.positions.iter().zip(vectors).peekable();
        for (position, mut meta) in buffer
            .iter_meta_mut::<gst_video::VideoRegionOfInterestMeta>()
            .enumerate()
        {
            let Some((_, vector)) = wanted.next_if(|(p, _)| **p == position) else {
                continue;
            };
            meta.add_param(region_param(vector, dtype));
        }
    }
}
