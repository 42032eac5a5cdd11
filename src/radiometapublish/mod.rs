// SPDX-License-Identifier: MPL-2.0
//! `radiometapublish`: publishes the `RadioEmbedMeta` of every embedded frame as
//! one JSON message (schema `radioembed/1`, `schema/radioembed-message.schema.json`)
//! and passes every buffer on unchanged.
//!
//! ```text
//! gst-launch-1.0 videotestsrc num-buffers=30 ! radioembed ! \
//!     radiometapublish method=file location=frames.jsonl ! fakesink
//! ```
//!
//! Messages go out on a thread of their own through a bounded queue: a slow or
//! absent destination never stalls the video; past `max-queued` messages the
//! oldest are dropped and counted in `stats`.

use gst::glib;
use gst::prelude::*;

mod imp;

/// The `max-queued` property's default: messages waiting before the oldest drop.
pub const DEFAULT_MAX_QUEUED: u32 = 1000;

/// Where messages go.
#[derive(Debug, Eq, PartialEq, Hash, Clone, Copy, glib::Enum, Default)]
#[repr(u32)]
#[enum_type(name = "GstRadioMetaPublishMethod")]
pub enum Method {
    /// JSON lines appended to `location` (`-`: standard output).
    #[default]
    #[enum_value(name = "JSON lines in a file", nick = "file")]
    File,
    /// One MQTT message per frame on `topic` at the broker `address`.
    #[enum_value(name = "MQTT broker", nick = "mqtt")]
    Mqtt,
    /// One Kafka record per frame on `topic`, keyed by the source id (builds
    /// with the `kafka` feature).
    #[enum_value(name = "Kafka (builds with the kafka feature)", nick = "kafka")]
    Kafka,
}

impl Method {
    /// The topic when the `topic` property is not set.
    pub fn default_topic(self) -> &'static str {
        match self {
            Self::File => "",
            Self::Mqtt => "radioembed/{source-id}",
            // Kafka topic names take no `/`; the source id is the record key.
            Self::Kafka => "radioembed",
        }
    }
}

/// How vectors are written in a message.
#[derive(Debug, Eq, PartialEq, Hash, Clone, Copy, glib::Enum, Default)]
#[repr(u32)]
#[enum_type(name = "GstRadioMetaPublishVectorEncoding")]
pub enum VectorEncoding {
    /// JSON arrays of numbers.
    #[default]
    #[enum_value(name = "JSON arrays of numbers", nick = "json")]
    Json,
    /// base64 of the little-endian f32 bytes.
    #[enum_value(name = "base64 of little-endian f32", nick = "base64-f32")]
    Base64F32,
    /// base64 of the little-endian f16 bytes.
    #[enum_value(name = "base64 of little-endian f16", nick = "base64-f16")]
    Base64F16,
}

glib::wrapper! {
    /// The `radiometapublish` element.
    pub struct RadioMetaPublish(ObjectSubclass<imp::RadioMetaPublish>)
        @extends gst_base::BaseTransform, gst::Element, gst::Object;
}

/// Registers `radiometapublish` (and its enums as plugin API) with a plugin.
pub fn register(plugin: &gst::Plugin) -> Result<(), glib::BoolError> {
    for ty in [Method::static_type(), VectorEncoding::static_type()] {
        ty.mark_as_plugin_api(gst::PluginAPIFlags::empty());
    }
    gst::Element::register(
        Some(plugin),
        "radiometapublish",
        gst::Rank::NONE,
        RadioMetaPublish::static_type(),
    )
}
