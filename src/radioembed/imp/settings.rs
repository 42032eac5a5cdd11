// SPDX-License-Identifier: MPL-2.0
//! The element's properties: their table, their values ([`Settings`]) and what
//! follows from them (device, dtype, model input size, batching, latency).

use std::sync::LazyLock;

use candle_core::DType;
use gst::glib;
use gst::prelude::*;

use super::super::{
    DEFAULT_DEVICE, DEFAULT_MODEL, DEFAULT_RESOLUTION, MetaDtype, Outputs, Precision, RoiMode,
};
use crate::engine::EngineOptions;
use crate::model::parse_device;
use crate::postprocess::OutputOptions;
use crate::preprocess::TargetSize;

const DEFAULT_BATCH_SIZE: u32 = 1;
const DEFAULT_BATCH_TIMEOUT: gst::ClockTime = gst::ClockTime::from_mseconds(50);
const DEFAULT_PROCESSING_LATENCY: gst::ClockTime = gst::ClockTime::from_mseconds(100);
const MAX_SIDE: u32 = 2048;
const DEFAULT_ROI_RESOLUTION: u32 = 224;

/// Property values, as set by the user.
#[derive(Debug, Clone)]
pub(super) struct Settings {
    pub(super) model: String,
    /// The adaptor heads to run too (`siglip2-g`); `None`: the backbone only.
    pub(super) adaptor: Option<String>,
    /// The torch.hub checkpoint holding the adaptor; `None`: the one in the
    /// model's folder.
    pub(super) adaptor_checkpoint: Option<String>,
    pub(super) device: String,
    pub(super) precision: Precision,
    pub(super) resolution: u32,
    pub(super) width: u32,
    pub(super) height: u32,
    pub(super) antialias: bool,
    pub(super) batch_size: u32,
    /// `None`: no timeout, batches run when full or closed by an event.
    pub(super) batch_timeout: Option<gst::ClockTime>,
    pub(super) inference_interval: u32,
    pub(super) outputs: Outputs,
    pub(super) spatial_pool: u32,
    pub(super) meta_dtype: MetaDtype,
    pub(super) processing_latency: gst::ClockTime,
    /// Load the model on a thread of its own, READY→PAUSED returning ASYNC.
    pub(super) async_load: bool,
    /// The stream's name in the meta; `None`: the element's name.
    pub(super) source_id: Option<String>,
    /// Whether regions of interest get vectors.
    pub(super) roi_mode: RoiMode,
    /// The region types that get vectors; empty: all.
    pub(super) roi_types: Vec<String>,
    /// `crop` mode: each side of a box grows by this share of its size.
    pub(super) roi_padding: f64,
    /// `crop` mode: the side of the square model input of a crop.
    pub(super) roi_resolution: u32,
    /// Pass frames on without embeddings while a whole batch is pending.
    pub(super) leaky: bool,
    /// Elements with the same id (and model) batch their frames together;
    /// empty: this element batches alone.
    pub(super) model_instance_id: String,
}

impl Default for Settings {
    fn default() -> Self {
        Self {
            model: DEFAULT_MODEL.into(),
            adaptor: None,
            adaptor_checkpoint: None,
            device: DEFAULT_DEVICE.into(),
            precision: Precision::Auto,
            resolution: DEFAULT_RESOLUTION,
            width: 0,
            height: 0,
            antialias: true,
            batch_size: DEFAULT_BATCH_SIZE,
            batch_timeout: Some(DEFAULT_BATCH_TIMEOUT),
            inference_interval: 1,
            outputs: Outputs::Both,
            spatial_pool: 1,
            meta_dtype: MetaDtype::F32,
            processing_latency: DEFAULT_PROCESSING_LATENCY,
            async_load: true,
            source_id: None,
            roi_mode: RoiMode::default(),
            roi_types: Vec::new(),
            roi_padding: 0.0,
            roi_resolution: DEFAULT_ROI_RESOLUTION,
            leaky: false,
            model_instance_id: String::new(),
        }
    }
}

impl Settings {
    /// The concrete device: `auto` is `cuda:0` when this build and machine can use
    /// it, else `cpu`.
    pub(super) fn device(&self) -> String {
        if self.device != "auto" {
            return self.device.clone();
        }
        if parse_device("cuda:0").is_ok() {
            "cuda:0".into()
        } else {
            "cpu".into()
        }
    }

    pub(super) fn dtype(&self, device: &str) -> DType {
        match self.precision {
            Precision::F32 => DType::F32,
            Precision::F16 => DType::F16,
            Precision::Bf16 => DType::BF16,
            Precision::Auto if device == "cpu" => DType::F32,
            Precision::Auto => DType::BF16,
        }
    }

    pub(super) fn target(&self) -> TargetSize {
        if self.width > 0 && self.height > 0 {
            TargetSize::Fixed {
                width: self.width as usize,
                height: self.height as usize,
            }
        } else {
            TargetSize::ShortSide(self.resolution as usize)
        }
    }

    /// Whether regions of type `roi_type` get vectors.
    pub(super) fn wants_region(&self, roi_type: &str) -> bool {
        self.roi_mode != RoiMode::None
            && (self.roi_types.is_empty() || self.roi_types.iter().any(|t| t == roi_type))
    }

    /// What shapes each batch of the stream named `source_id`.
    pub(super) fn engine_options(&self, source_id: String) -> EngineOptions {
        EngineOptions {
            target: self.target(),
            antialias: self.antialias,
            outputs: OutputOptions {
                summary: self.outputs != Outputs::Spatial,
                spatial: self.outputs != Outputs::Summary,
                spatial_pool: self.spatial_pool as usize,
                dtype: match self.meta_dtype {
                    MetaDtype::F32 => crate::meta::MetaDtype::F32,
                    MetaDtype::F16 => crate::meta::MetaDtype::F16,
                },
                model: self.model.clone(),
                input_size: (0, 0),
                source_id,
            },
        }
    }

    /// The element queue's batching: frames per forward, the longest wait of
    /// a batch (`None`: no limit), leaky. A member of a shared model instance
    /// hands its frames over at once: the waiting for a batch happens there.
    pub(super) fn batching(&self) -> (usize, Option<gst::ClockTime>, bool) {
        let timeout = if self.model_instance_id.is_empty() {
            self.batch_timeout
        } else {
            Some(gst::ClockTime::ZERO)
        };
        (self.batch_size as usize, timeout, self.leaky)
    }

    /// What this element adds to the pipeline latency, saturated at the
    /// largest clock time (an endless batch timeout is an unbounded latency).
    pub(super) fn own_latency(&self) -> gst::ClockTime {
        let batching = if self.batch_size > 1 {
            self.batch_timeout.unwrap_or(gst::ClockTime::MAX)
        } else {
            gst::ClockTime::ZERO
        };
        batching.saturating_add(self.processing_latency)
    }

    /// Sets property `name` to `value` (its type checked by GObject).
    pub(super) fn set(&mut self, name: &str, value: &glib::Value) {
        match name {
            "model" => {
                self.model = value
                    .get::<Option<String>>()
                    .expect("type checked upstream")
                    .unwrap_or_else(|| DEFAULT_MODEL.into())
            }
            "adaptor" => {
                let name: Option<String> = value.get().expect("type checked upstream");
                self.adaptor = name.filter(|n| !n.trim().is_empty());
            }
            "adaptor-checkpoint" => {
                let path: Option<String> = value.get().expect("type checked upstream");
                self.adaptor_checkpoint = path.filter(|p| !p.is_empty());
            }
            "device" => {
                self.device = value
                    .get::<Option<String>>()
                    .expect("type checked upstream")
                    .unwrap_or_else(|| DEFAULT_DEVICE.into())
            }
            "precision" => self.precision = value.get().expect("type checked upstream"),
            "resolution" => self.resolution = value.get().expect("type checked upstream"),
            "width" => self.width = value.get().expect("type checked upstream"),
            "height" => self.height = value.get().expect("type checked upstream"),
            "antialias" => self.antialias = value.get().expect("type checked upstream"),
            "batch-size" => self.batch_size = value.get().expect("type checked upstream"),
            "batch-timeout" => {
                let ns: u64 = value.get().expect("type checked upstream");
                self.batch_timeout = (ns != u64::MAX).then(|| gst::ClockTime::from_nseconds(ns))
            }
            "inference-interval" => {
                self.inference_interval = value.get().expect("type checked upstream")
            }
            "outputs" => self.outputs = value.get().expect("type checked upstream"),
            "spatial-pool" => self.spatial_pool = value.get().expect("type checked upstream"),
            "meta-dtype" => self.meta_dtype = value.get().expect("type checked upstream"),
            "processing-latency" => {
                self.processing_latency =
                    gst::ClockTime::from_nseconds(value.get().expect("type checked upstream"))
            }
            "async" => self.async_load = value.get().expect("type checked upstream"),
            "source-id" => self.source_id = value.get().expect("type checked upstream"),
            "roi-mode" => self.roi_mode = value.get().expect("type checked upstream"),
            "roi-types" => {
                let types: Option<String> = value.get().expect("type checked upstream");
                self.roi_types = types
                    .iter()
                    .flat_map(|t| t.split(','))
                    .map(str::trim)
                    .filter(|t| !t.is_empty())
                    .map(String::from)
                    .collect();
            }
            "roi-padding" => self.roi_padding = value.get().expect("type checked upstream"),
            "roi-resolution" => self.roi_resolution = value.get().expect("type checked upstream"),
            "leaky" => self.leaky = value.get().expect("type checked upstream"),
            "model-instance-id" => {
                self.model_instance_id = value
                    .get::<Option<String>>()
                    .expect("type checked upstream")
                    .unwrap_or_default()
            }
            other => unreachable!("unknown property {other}"),
        }
    }

    /// The value of property `name`; `stats` is the element's own.
    pub(super) fn get(&self, name: &str) -> glib::Value {
        match name {
            "model" => self.model.to_value(),
            "adaptor" => self.adaptor.to_value(),
            "adaptor-checkpoint" => self.adaptor_checkpoint.to_value(),
            "device" => self.device.to_value(),
            "precision" => self.precision.to_value(),
            "resolution" => self.resolution.to_value(),
            "width" => self.width.to_value(),
            "height" => self.height.to_value(),
            "antialias" => self.antialias.to_value(),
            "batch-size" => self.batch_size.to_value(),
            "batch-timeout" => self
                .batch_timeout
                .map_or(u64::MAX, |t| t.nseconds())
                .to_value(),
            "inference-interval" => self.inference_interval.to_value(),
            "outputs" => self.outputs.to_value(),
            "spatial-pool" => self.spatial_pool.to_value(),
            "meta-dtype" => self.meta_dtype.to_value(),
            "processing-latency" => self.processing_latency.nseconds().to_value(),
            "async" => self.async_load.to_value(),
            "source-id" => self.source_id.to_value(),
            "roi-mode" => self.roi_mode.to_value(),
            "roi-types" => self.roi_types.join(",").to_value(),
            "roi-padding" => self.roi_padding.to_value(),
            "roi-resolution" => self.roi_resolution.to_value(),
            "leaky" => self.leaky.to_value(),
            "model-instance-id" => self.model_instance_id.to_value(),
            other => unreachable!("unknown property {other}"),
        }
    }
}

/// The property table.
pub(super) fn properties() -> &'static [glib::ParamSpec] {
    static PROPERTIES: LazyLock<Vec<glib::ParamSpec>> = LazyLock::new(|| {
        vec![
            glib::ParamSpecString::builder("model")
                .nick("Model")
                .blurb(
                    "Folder with config.json and model.safetensors, or a Hugging Face \
                        repo id found in the local Hugging Face cache",
                )
                .default_value(Some(DEFAULT_MODEL))
                .mutable_ready()
                .build(),
            glib::ParamSpecString::builder("adaptor")
                .nick("Adaptor")
                .blurb(
                    "Adaptor heads to run too, by teacher name (siglip2-g: vectors in \
                        SigLIP2's text-aligned space, for text search); their outputs go \
                        into the meta as <name>-summary and, when outputs include spatial, \
                        <name>-spatial. Empty: none",
                )
                .mutable_ready()
                .build(),
            glib::ParamSpecString::builder("adaptor-checkpoint")
                .nick("Adaptor checkpoint")
                .blurb(
                    "The torch.hub checkpoint (*.pth.tar) with the adaptor heads; empty: \
                        the one *.pth.tar in the model's folder",
                )
                .mutable_ready()
                .build(),
            glib::ParamSpecString::builder("device")
                .nick("Device")
                .blurb(
                    "Where the model runs: auto (cuda:0 when available, else cpu), \
                        cpu, or cuda:N",
                )
                .default_value(Some(DEFAULT_DEVICE))
                .mutable_ready()
                .build(),
            glib::ParamSpecEnum::builder_with_default("precision", Precision::Auto)
                .nick("Precision")
                .blurb("Compute precision of the model")
                .mutable_ready()
                .build(),
            glib::ParamSpecUInt::builder("resolution")
                .nick("Resolution")
                .blurb(
                    "Shorter side of the model input in pixels (snapped to a multiple \
                        of 16, aspect ratio kept); ignored when width and height are set",
                )
                .minimum(16)
                .maximum(MAX_SIDE)
                .default_value(DEFAULT_RESOLUTION)
                .mutable_ready()
                .build(),
            glib::ParamSpecUInt::builder("width")
                .nick("Width")
                .blurb("Fixed model input width (multiple of 16); 0 = follow resolution")
                .maximum(MAX_SIDE)
                .mutable_ready()
                .build(),
            glib::ParamSpecUInt::builder("height")
                .nick("Height")
                .blurb("Fixed model input height (multiple of 16); 0 = follow resolution")
                .maximum(MAX_SIDE)
                .mutable_ready()
                .build(),
            glib::ParamSpecBoolean::builder("antialias")
                .nick("Antialias")
                .blurb("Antialias when shrinking frames (as PyTorch antialias=True)")
                .default_value(true)
                .mutable_ready()
                .build(),
            glib::ParamSpecUInt::builder("batch-size")
                .nick("Batch size")
                .blurb("Frames per model forward")
                .minimum(1)
                .maximum(256)
                .default_value(DEFAULT_BATCH_SIZE)
                .mutable_playing()
                .build(),
            glib::ParamSpecUInt64::builder("batch-timeout")
                .nick("Batch timeout")
                .blurb(
                    "Longest time (ns) a frame waits for its batch to fill; a partial \
                        batch runs when it expires (18446744073709551615 = \
                        GST_CLOCK_TIME_NONE: no timeout, not for live sources)",
                )
                .minimum(0)
                .maximum(u64::MAX)
                .default_value(DEFAULT_BATCH_TIMEOUT.nseconds())
                .mutable_playing()
                .build(),
            glib::ParamSpecUInt::builder("inference-interval")
                .nick("Inference interval")
                .blurb("Embed every Nth frame; the frames between pass without meta")
                .minimum(1)
                .maximum(u32::MAX)
                .default_value(1)
                .mutable_playing()
                .build(),
            glib::ParamSpecEnum::builder_with_default("outputs", Outputs::Both)
                .nick("Outputs")
                .blurb("Which embeddings to attach")
                .mutable_ready()
                .build(),
            glib::ParamSpecUInt::builder("spatial-pool")
                .nick("Spatial pool")
                .blurb(
                    "Average-pool the patch grid over k x k windows before attaching \
                        (1 = full grid)",
                )
                .minimum(1)
                .maximum(64)
                .default_value(1)
                .mutable_ready()
                .build(),
            glib::ParamSpecEnum::builder_with_default("meta-dtype", MetaDtype::F32)
                .nick("Meta dtype")
                .blurb("Element type of the vectors stored in the meta")
                .mutable_ready()
                .build(),
            glib::ParamSpecUInt64::builder("processing-latency")
                .nick("Processing latency")
                .blurb(
                    "Time (ns) budgeted for one batch's inference, added to the \
                        reported latency (with batch-timeout when batch-size > 1)",
                )
                .maximum(u64::MAX - 1)
                .default_value(DEFAULT_PROCESSING_LATENCY.nseconds())
                .mutable_playing()
                .build(),
            glib::ParamSpecBoolean::builder("async")
                .nick("Async")
                .blurb(
                    "Load the model on a thread of its own: READY->PAUSED returns ASYNC \
                        and completes (ASYNC_DONE) once the model is loaded, as a sink \
                        prerolls; false loads inside the state change",
                )
                .default_value(true)
                .mutable_ready()
                .build(),
            glib::ParamSpecString::builder("source-id")
                .nick("Source id")
                .blurb(
                    "Name of the stream written into every meta (source-id), so \
                        embeddings stay attributable after a funnel or in a shared \
                        index; default: the element's name",
                )
                .mutable_ready()
                .build(),
            glib::ParamSpecEnum::builder_with_default("roi-mode", RoiMode::default())
                .nick("ROI mode")
                .blurb(
                    "Per-object vectors for the frame's GstVideoRegionOfInterestMeta \
                        boxes, attached to each as a radio-embedding parameter: pool \
                        (spatial-dim values, no extra forward) or crop (summary-dim); \
                        with adaptor heads, each adaptor's vector of the region too",
                )
                .mutable_playing()
                .build(),
            glib::ParamSpecString::builder("roi-types")
                .nick("ROI types")
                .blurb(
                    "Comma-separated region types that get vectors (e.g. person,car); \
                        empty: every region",
                )
                .mutable_playing()
                .build(),
            glib::ParamSpecDouble::builder("roi-padding")
                .nick("ROI padding")
                .blurb(
                    "roi-mode=crop: each side of a region's box grows by this share of \
                        the box's size before cropping (clipped to the frame)",
                )
                .minimum(0.0)
                .maximum(1.0)
                .default_value(0.0)
                .mutable_playing()
                .build(),
            glib::ParamSpecUInt::builder("roi-resolution")
                .nick("ROI resolution")
                .blurb(
                    "roi-mode=crop: side in pixels of the square model input each \
                        region is resized to (a multiple of the patch size)",
                )
                .minimum(16)
                .maximum(MAX_SIDE)
                .default_value(DEFAULT_ROI_RESOLUTION)
                .mutable_playing()
                .build(),
            glib::ParamSpecBoolean::builder("leaky")
                .nick("Leaky")
                .blurb(
                    "For live sources: while a whole batch is already waiting, new \
                        frames pass downstream without embeddings (counted in stats as \
                        frames-skipped) instead of blocking upstream",
                )
                .default_value(false)
                .mutable_playing()
                .build(),
            glib::ParamSpecString::builder("model-instance-id")
                .nick("Model instance id")
                .blurb(
                    "Elements of one process with the same id, model, device and \
                        precision batch their frames together in one forward; empty: \
                        this element batches alone",
                )
                .mutable_ready()
                .build(),
            glib::ParamSpecBoxed::builder::<gst::Structure>("stats")
                .nick("Statistics")
                .blurb(
                    "frames-in, frames-embedded, frames-skipped, regions-embedded, \
                        batches, shared-batches, mean-batch-fill, mean-inference-ms, \
                        max-inference-ms, latency-ms; with model-instance-id also \
                        instance-forwards and instance-frames (all its streams)",
                )
                .read_only()
                .build(),
        ]
    });
    PROPERTIES.as_ref()
}
