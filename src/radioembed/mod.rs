// SPDX-License-Identifier: MPL-2.0
//! `radioembed`: attaches C-RADIOv4 embeddings to raw video buffers.
//!
//! ```text
//! gst-launch-1.0 videotestsrc num-buffers=30 ! radioembed model=nvidia/C-RADIOv4-SO400M \
//!     batch-size=8 ! fakesink
//! ```
//!
//! Buffers pass through unchanged, in order, with their timestamps; every embedded
//! frame carries a `RadioEmbedMeta` (see [`crate::meta`]). Frames are batched on a
//! source-pad task: a batch runs when `batch-size` frames are in, when its oldest
//! frame has waited `batch-timeout`, or when a serialized event (caps, segment, gap,
//! EOS) arrives, which is forwarded after the frames before it.

use gst::glib;
use gst::prelude::*;

/// The `model` property's default: the SO400M checkpoint on Hugging Face.
pub const DEFAULT_MODEL: &str = "nvidia/C-RADIOv4-SO400M";
/// The `device` property's default: CUDA when this build and machine have it.
pub const DEFAULT_DEVICE: &str = "auto";
/// The `resolution` property's default: the shorter side of the model input.
pub const DEFAULT_RESOLUTION: u32 = 512;

mod caps;
mod error;
mod imp;
mod load_slot;
mod queue;

/// Compute precision of the model.
#[derive(Debug, Eq, PartialEq, Ord, PartialOrd, Hash, Clone, Copy, glib::Enum, Default)]
#[repr(u32)]
#[enum_type(name = "GstRadioEmbedPrecision")]
pub enum Precision {
    /// bf16 on CUDA, f32 on the CPU.
    #[default]
    #[enum_value(name = "Auto: bf16 on CUDA, f32 on CPU", nick = "auto")]
    Auto,
    /// 32-bit floats everywhere.
    #[enum_value(name = "32-bit float", nick = "f32")]
    F32,
    /// IEEE half precision.
    #[enum_value(name = "16-bit float", nick = "f16")]
    F16,
    /// bfloat16.
    #[enum_value(name = "bfloat16", nick = "bf16")]
    Bf16,
}

/// Which model outputs go into the meta.
#[derive(Debug, Eq, PartialEq, Ord, PartialOrd, Hash, Clone, Copy, glib::Enum, Default)]
#[repr(u32)]
#[enum_type(name = "GstRadioEmbedOutputs")]
pub enum Outputs {
    /// The image-level summary vector only.
    #[enum_value(name = "Summary vector only", nick = "summary")]
    Summary,
    /// The patch features only.
    #[enum_value(name = "Spatial patch features only", nick = "spatial")]
    Spatial,
    /// Both.
    #[default]
    #[enum_value(name = "Summary and spatial features", nick = "both")]
    Both,
}

/// Element type of the vectors stored in the meta.
#[derive(Debug, Eq, PartialEq, Ord, PartialOrd, Hash, Clone, Copy, glib::Enum, Default)]
#[repr(u32)]
#[enum_type(name = "GstRadioEmbedMetaDtype")]
pub enum MetaDtype {
    /// 32-bit floats.
    #[default]
    #[enum_value(name = "32-bit float", nick = "f32")]
    F32,
    /// 16-bit floats (half the memory).
    #[enum_value(name = "16-bit float", nick = "f16")]
    F16,
}

/// Whether and how frames' regions of interest get vectors of their own.
#[derive(Debug, Eq, PartialEq, Ord, PartialOrd, Hash, Clone, Copy, glib::Enum, Default)]
#[repr(u32)]
#[enum_type(name = "GstRadioEmbedRoiMode")]
pub enum RoiMode {
    /// Regions are left alone.
    #[enum_value(name = "No per-region vectors", nick = "none")]
    None,
    /// The mean of the frame's patch features under each region's box: no
    /// extra model cost.
    #[default]
    #[enum_value(name = "Mean of the patch features under the box", nick = "pool")]
    Pool,
    /// The model's summary of each region, cropped (with `roi-padding`) and
    /// resized to `roi-resolution`: one more model input per region.
    #[enum_value(name = "Summary of the region cropped and resized", nick = "crop")]
    Crop,
}

glib::wrapper! {
    /// The `radioembed` element.
    pub struct RadioEmbed(ObjectSubclass<imp::RadioEmbed>) @extends gst::Element, gst::Object;
}

/// Registers `radioembed` (and its enums as plugin API) with a plugin.
pub fn register(plugin: &gst::Plugin) -> Result<(), glib::BoolError> {
    for ty in [
        Precision::static_type(),
        Outputs::static_type(),
        MetaDtype::static_type(),
        RoiMode::static_type(),
    ] {
        ty.mark_as_plugin_api(gst::PluginAPIFlags::empty());
    }
    crate::meta::register();
    gst::Element::register(
        Some(plugin),
        "radioembed",
        gst::Rank::NONE,
        RadioEmbed::static_type(),
    )
}
