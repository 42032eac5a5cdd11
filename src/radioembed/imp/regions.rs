// SPDX-License-Identifier: MPL-2.0
//! Per-object vectors: which of a frame's `GstVideoRegionOfInterestMeta`s get
//! one, their boxes for the engine, and the vectors put back on them.

use super::super::RoiMode;
use super::Settings;
use crate::meta::{MetaDtype, RegionKind, RegionVectors, region_param};
use crate::postprocess::RegionBox;

/// The regions of one frame that get vectors: their positions among the
/// frame's region metas, and their boxes.
#[derive(Debug)]
pub(super) struct Regions {
    /// How the vectors are made (`roi-mode` when the batch began).
    kind: RegionKind,
    positions: Vec<usize>,
    /// `pool` mode: boxes as fractions of the frame, in `positions` order.
    pub boxes: Vec<RegionBox>,
    /// `crop` mode: the padded rectangles (x, y, width, height) to crop.
    pub crops: Vec<(usize, usize, usize, usize)>,
}

impl Regions {
    /// The regions of `buffer` that `settings` asks vectors for, in a frame of
    /// `frame` (width, height) pixels.
    pub fn of(buffer: &gst::BufferRef, settings: &Settings, frame: (u32, u32)) -> Self {
        let mut regions = Self {
            kind: match settings.roi_mode {
                RoiMode::Crop => RegionKind::Crop,
                _ => RegionKind::Pool,
            },
            positions: Vec::new(),
            boxes: Vec::new(),
            crops: Vec::new(),
        };
        for (position, meta) in buffer
            .iter_meta::<gst_video::VideoRegionOfInterestMeta>()
            .enumerate()
        {
            if !settings.wants_region(meta.roi_type()) {
                continue;
            }
            regions.positions.push(position);
            match regions.kind {
                RegionKind::Crop => regions
                    .crops
                    .push(padded(meta.rect(), settings.roi_padding)),
                RegionKind::Pool => regions
                    .boxes
                    .push(RegionBox::from_pixels(meta.rect(), frame)),
            }
        }
        regions
    }

    /// Whether no region gets a vector.
    pub fn is_empty(&self) -> bool {
        self.positions.is_empty()
    }

    /// Adds each region's vectors as a `radio-embedding` parameter to its meta.
    pub fn attach(&self, buffer: &mut gst::BufferRef, vectors: &[RegionVectors], dtype: MetaDtype) {
        let mut wanted = self.positions.iter().zip(vectors).peekable();
        for (position, mut meta) in buffer
            .iter_meta_mut::<gst_video::VideoRegionOfInterestMeta>()
            .enumerate()
        {
            let Some((_, vector)) = wanted.next_if(|(p, _)| **p == position) else {
                continue;
            };
            meta.add_param(region_param(vector, dtype, self.kind));
        }
    }
}

/// A box grown by `padding` of its size on each side (the crop clips it).
fn padded((x, y, w, h): (u32, u32, u32, u32), padding: f64) -> (usize, usize, usize, usize) {
    let (dx, dy) = (
        (f64::from(w) * padding).round() as usize,
        (f64::from(h) * padding).round() as usize,
    );
    let (x, y) = (x as usize, y as usize);
    let (x0, y0) = (x.saturating_sub(dx), y.saturating_sub(dy));
    (x0, y0, x + w as usize + dx - x0, y + h as usize + dy - y0)
}
