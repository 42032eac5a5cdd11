// SPDX-License-Identifier: MPL-2.0
//! The pipelines `index` and `search` run, built element by element.

use anyhow::Context;
use gst::prelude::*;
use gstradio::radioembed::Outputs;

/// Makes a factory's element, saying which plugin to install when it is missing.
pub fn make(factory: &str) -> anyhow::Result<gst::Element> {
    gst::ElementFactory::make(factory).build().with_context(|| {
        format!("no GStreamer element `{factory}`: install the plugin that provides it")
    })
}

/// A pipeline of `decoder` (a decodebin or uridecodebin) whose video pad is
/// linked to the first of `chain` once it appears, then `chain` in order.
pub fn decoded(decoder: gst::Element, chain: &[gst::Element]) -> anyhow::Result<gst::Pipeline> {
    let pipeline = gst::Pipeline::new();
    pipeline.add(&decoder)?;
    pipeline.add_many(chain)?;
    gst::Element::link_many(chain)?;
    let first = chain.first().context("empty chain")?.downgrade();
    decoder.connect_pad_added(move |_, pad| {
        let Some(first) = first.upgrade() else { return };
        let is_video = pad
            .current_caps()
            .and_then(|caps| caps.structure(0).map(|s| s.name().starts_with("video/")))
            .unwrap_or(false);
        let sink = first.static_pad("sink").expect("filters have a sink pad");
        if is_video && !sink.is_linked() {
            let _ = pad.link(&sink);
        }
    });
    Ok(pipeline)
}

/// How `index` embeds and stores each sampled frame.
#[derive(Debug, Clone)]
pub struct IndexSettings {
    /// Model folder or repo id.
    pub model: String,
    /// `auto`, `cpu` or `cuda:N`.
    pub device: String,
    /// Shorter side of the model input.
    pub resolution: u32,
    /// Rows per write transaction or row group.
    pub transaction_rows: u32,
    /// Store the patch grid pooled over k x k patches; `None`: summaries only.
    pub spatial_pool: Option<u32>,
    /// Frames per second to embed.
    pub rate: gst::Fraction,
    /// The adaptor whose vectors are stored too (`siglip2-g`), and its checkpoint.
    pub adaptor: Option<(String, Option<String>)>,
    /// radioindexsink `dedup-threshold` (0: off).
    pub dedup_threshold: f64,
    /// radioindexsink `thumbnail-size`; `None`: no thumbnails.
    pub thumbnail_size: Option<u32>,
}

/// `uridecodebin ! videoconvert ! videorate ! capsfilter ! radioembed ! radioindexsink`
/// for one input; the radioembed is named `embed`.
pub fn index(uri: &str, db: &str, settings: &IndexSettings) -> anyhow::Result<gst::Pipeline> {
    let decoder = make("uridecodebin")?;
    decoder.set_property("uri", uri);
    decoder.set_property("caps", gst::Caps::new_empty_simple("video/x-raw"));
    let rate = make("videorate")?;
    rate.set_property("drop-only", true);
    let filter = make("capsfilter")?;
    let caps = gst::Caps::builder("video/x-raw")
        .field("framerate", settings.rate)
        .build();
    filter.set_property("caps", caps);
    let embed = make("radioembed")?;
    embed.set_property("name", "embed");
    embed.set_property("model", &settings.model);
    embed.set_property("device", &settings.device);
    embed.set_property("resolution", settings.resolution);
    if let Some((name, checkpoint)) = &settings.adaptor {
        embed.set_property("adaptor", name);
        embed.set_property("adaptor-checkpoint", checkpoint);
    }
    let sink = make("radioindexsink")?;
    sink.set_property("location", db);
    sink.set_property("source-id", uri);
    sink.set_property("transaction-rows", settings.transaction_rows);
    sink.set_property("dedup-threshold", settings.dedup_threshold);
    if let Some(size) = settings.thumbnail_size {
        sink.set_property("thumbnails", true);
        sink.set_property("thumbnail-size", size);
    }
    match settings.spatial_pool {
        Some(k) => {
            embed.set_property("outputs", Outputs::Both);
            embed.set_property("spatial-pool", k);
            sink.set_property("spatial", true);
        }
        None => embed.set_property("outputs", Outputs::Summary),
    }
    let convert = make("videoconvert")?;
    decoded(decoder, &[convert, rate, filter, embed, sink])
}

/// Where a search query comes from.
pub enum QuerySource<'a> {
    /// An image file, decoded and frozen to one frame.
    Image(&'a std::path::Path),
    /// A video by URI (the caller seeks to the frame).
    Video(&'a str),
}

/// `… ! videoconvert ! radioembed ! appsink` embedding one query frame at the
/// index's model and input size with `outputs`; the appsink is named `sink`.
pub fn query(
    source: QuerySource,
    model: &str,
    (width, height): (u32, u32),
    outputs: Outputs,
) -> anyhow::Result<gst::Pipeline> {
    let embed = make("radioembed")?;
    embed.set_property("model", model);
    embed.set_property("width", width);
    embed.set_property("height", height);
    embed.set_property("outputs", outputs);
    let sink = make("appsink")?;
    sink.set_property("name", "sink");
    let tail = [make("videoconvert")?, embed, sink];
    match source {
        QuerySource::Image(path) => {
            let file = make("filesrc")?;
            file.set_property("location", path.display().to_string());
            let decoder = make("decodebin")?;
            let freeze = make("imagefreeze")?;
            freeze.set_property("num-buffers", 1i32);
            let mut chain = vec![make("videoconvert")?, freeze];
            chain.extend(tail);
            let pipeline = decoded(decoder.clone(), &chain)?;
            pipeline.add(&file)?;
            file.link(&decoder)?;
            Ok(pipeline)
        }
        QuerySource::Video(uri) => {
            let decoder = make("uridecodebin")?;
            decoder.set_property("uri", uri);
            decoder.set_property("caps", gst::Caps::new_empty_simple("video/x-raw"));
            decoded(decoder, &tail)
        }
    }
}
