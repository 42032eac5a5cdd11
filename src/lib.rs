// SPDX-License-Identifier: MPL-2.0
//! `radio`: a GStreamer plugin that turns video frames into C-RADIOv4 embeddings.
//!
//! The data flows one way: caps + raw frame → [`preprocess`] → [`model`] →
//! [`postprocess`] → [`meta`] on the buffer. The element in [`radioembed`] is only
//! GStreamer glue around them; [`model_store`] finds and shares models;
//! [`radioindexsink`] writes embeddings into an [`index`].

use gst::glib;

pub mod cpu;
#[cfg(feature = "cuda")]
pub mod cuda;
pub mod engine;
pub mod index;
pub mod meta;
pub mod model;
pub mod model_store;
pub mod postprocess;
pub mod preprocess;
pub mod publish;
pub mod radioembed;
pub mod radioindexsink;
pub mod radiometapublish;
pub mod resample;
pub mod text;

fn plugin_init(plugin: &gst::Plugin) -> Result<(), glib::BoolError> {
    radioembed::register(plugin)?;
    radioindexsink::register(plugin)?;
    radiometapublish::register(plugin)
}

gst::plugin_define!(
    radio,
    env!("CARGO_PKG_DESCRIPTION"),
    plugin_init,
    concat!(env!("CARGO_PKG_VERSION"), "-", env!("COMMIT_ID")),
    "MPL",
    env!("CARGO_PKG_NAME"),
    env!("CARGO_PKG_NAME"),
    // No public repository yet: GStreamer's own wording for an unknown origin.
    "Unknown package origin",
    env!("BUILD_REL_DATE")
);
