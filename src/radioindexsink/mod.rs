// SPDX-License-Identifier: MPL-2.0
//! `radioindexsink`: writes the `RadioEmbedMeta` of every embedded frame into an
//! index that `radio-embed search` queries.
//!
//! ```text
//! gst-launch-1.0 uridecodebin uri=file:///videos/a.mp4 ! videoconvert ! videorate ! \
//!     video/x-raw,framerate=1/1 ! radioembed ! \
//!     radioindexsink location=videos.sqlite source-id=file:///videos/a.mp4
//! ```
//!
//! One row per embedded frame (buffers without meta are skipped): source, stream
//! timestamp, frame index, model input size, summary and, when radioembed attached
//! it, the (pooled) spatial grid. Rows are committed every `transaction-rows`
//! rows and at EOS; indexing a source again replaces its rows. With
//! `thumbnails=true` each row also keeps a small JPEG of its frame (longest
//! side `thumbnail-size`), encoded off the streaming thread, in the index
//! itself.

use gst::glib;
use gst::prelude::*;

mod imp;
mod thumbnail;

/// The `transaction-rows` property's default: rows per write transaction.
pub const DEFAULT_TRANSACTION_ROWS: u32 = 256;

/// The `thumbnail-size` property's default: the thumbnails' longest side in pixels.
pub const DEFAULT_THUMBNAIL_SIZE: u32 = 256;

glib::wrapper! {
    /// The `radioindexsink` element.
    pub struct RadioIndexSink(ObjectSubclass<imp::RadioIndexSink>)
        @extends gst_base::BaseSink, gst::Element, gst::Object;
}

/// Registers `radioindexsink` with a plugin.
pub fn register(plugin: &gst::Plugin) -> Result<(), glib::BoolError> {
    gst::Element::register(
        Some(plugin),
        "radioindexsink",
        gst::Rank::NONE,
        RadioIndexSink::static_type(),
    )
}
