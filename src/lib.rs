//! `radio`: a GStreamer plugin that turns video frames into C-RADIOv4 embeddings.
//!
//! The data flows one way: caps + raw frame → [`preprocess`] → [`model`] → [`meta`]
//! on the buffer. The element in [`radioembed`] is only GStreamer glue around them.

pub mod model;
pub mod preprocess;
pub mod resample;
