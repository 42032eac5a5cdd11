// SPDX-License-Identifier: MPL-2.0
//! The `radiometapublish` GObject subclass: a passthrough transform that turns
//! each buffer's `RadioEmbedMeta` into a message for the [`Outbox`].
//!
//! Locks: `settings` and `state` are never held together; the outbox has its
//! own lock, taken inside its calls only.

use std::sync::{Arc, LazyLock, Mutex, MutexGuard};
use std::time::Duration;

use gst::glib;
use gst::prelude::*;
use gst::subclass::prelude::*;
use gst_base::prelude::*;
use gst_base::subclass::prelude::*;

use super::{DEFAULT_MAX_QUEUED, Method, VectorEncoding};
use crate::meta::{Embedding, regions};
use crate::publish::{
    self, FilePublisher, FrameInfo, MessageOptions, MqttPublisher, MqttSettings, Outbox,
    OutboxEvent, PublishError, Publisher, frame_message,
};

static CAT: LazyLock<gst::DebugCategory> = LazyLock::new(|| {
    gst::DebugCategory::new(
        "radiometapublish",
        gst::DebugColorFlags::empty(),
        Some("Embedding publisher"),
    )
});

/// How long EOS waits for the queued messages to go out.
const EOS_DRAIN: Duration = Duration::from_secs(10);
/// How long a stop waits for them.
const STOP_GRACE: Duration = Duration::from_secs(1);
/// How long start waits for an MQTT broker before it warns (or, with
/// `fail-on-unreachable`, fails).
const BROKER_WAIT: Duration = Duration::from_secs(2);

#[derive(Debug, Clone)]
struct Settings {
    method: Method,
    location: String,
    max_file_size: u64,
    source_id: Option<String>,
    vector_encoding: VectorEncoding,
    spatial: bool,
    max_queued: u32,
    address: String,
    /// `None`: the method's default topic.
    topic: Option<String>,
    compression: String,
    qos: u32,
    username: Option<String>,
    password: Option<String>,
    ca_file: Option<String>,
    fail_on_unreachable: bool,
}

impl Default for Settings {
    fn default() -> Self {
        Self {
            method: Method::File,
            location: "-".into(),
            max_file_size: 0,
            source_id: None,
            vector_encoding: VectorEncoding::Json,
            spatial: false,
            max_queued: DEFAULT_MAX_QUEUED,
            address: "mqtt://127.0.0.1:1883".into(),
            topic: None,
            compression: "none".into(),
            qos: 0,
            username: None,
            password: None,
            ca_file: None,
            fail_on_unreachable: false,
        }
    }
}

impl Settings {
    fn message_options(&self) -> MessageOptions {
        MessageOptions {
            encoding: match self.vector_encoding {
                VectorEncoding::Json => publish::VectorEncoding::Json,
                VectorEncoding::Base64F32 => publish::VectorEncoding::Base64F32,
                VectorEncoding::Base64F16 => publish::VectorEncoding::Base64F16,
            },
            spatial: self.spatial,
        }
    }

    /// The publisher the settings name for `source_id`, or why there is none;
    /// a warning for the bus when an MQTT broker does not answer yet.
    fn publisher(
        &self,
        source_id: &str,
    ) -> Result<(Box<dyn Publisher>, Option<String>), PublishError> {
        let topic = self
            .topic
            .clone()
            .unwrap_or_else(|| self.method.default_topic().into());
        match self.method {
            Method::File => Ok((
                Box::new(FilePublisher::open(&self.location, self.max_file_size)?),
                None,
            )),
            Method::Mqtt => {
                let env = |name: &str| std::env::var(name).ok().filter(|v| !v.is_empty());
                let settings = MqttSettings {
                    address: self.address.clone(),
                    topic,
                    qos: self.qos as u8,
                    username: self.username.clone().or_else(|| env("RADIO_MQTT_USERNAME")),
                    password: self.password.clone().or_else(|| env("RADIO_MQTT_PASSWORD")),
                    client_id: format!("radiometapublish-{}-{source_id}", std::process::id()),
                    ca_file: self
                        .ca_file
                        .clone()
                        .or_else(|| env("RADIO_MQTT_CA_FILE"))
                        .map(Into::into),
                };
                if self.fail_on_unreachable {
                    let publisher =
                        MqttPublisher::connect(&settings, source_id, Some(BROKER_WAIT))?;
                    return Ok((Box::new(publisher), None));
                }
                let publisher = MqttPublisher::connect(&settings, source_id, None)?;
                let warning = publisher
                    .wait_connected(BROKER_WAIT)
                    .err()
                    .map(|e| format!("{e}; messages wait and the connection is retried"));
                Ok((Box::new(publisher), warning))
            }
            Method::Kafka => kafka_publisher(&self.address, topic, &self.compression, source_id),
        }
    }
}

#[cfg(feature = "kafka")]
fn kafka_publisher(
    address: &str,
    topic: String,
    compression: &str,
    source_id: &str,
) -> Result<(Box<dyn Publisher>, Option<String>), PublishError> {
    let settings = publish::KafkaSettings {
        brokers: address.trim_start_matches("kafka://").to_string(),
        topic,
        compression: compression.to_string(),
    };
    let publisher = publish::KafkaPublisher::connect(&settings, source_id)?;
    Ok((Box::new(publisher), None))
}

#[cfg(not(feature = "kafka"))]
fn kafka_publisher(
    _address: &str,
    _topic: String,
    _compression: &str,
    _source_id: &str,
) -> Result<(Box<dyn Publisher>, Option<String>), PublishError> {
    Err(PublishError::Start(
        "this build has no Kafka support; rebuild with `cargo build --features kafka`".into(),
    ))
}

/// Made at start, dropped at stop.
struct State {
    outbox: Outbox,
    options: MessageOptions,
    /// The `source-id` property, else the stream id, else the element's name:
    /// names the connection and the topic.
    source_id: String,
    /// Whether `source-id` was set: then it names every message; else each
    /// message names the stream its meta says it came from, which survives a
    /// `funnel` of several cameras.
    source_id_set: bool,
}

/// The element.
#[derive(Default)]
pub struct RadioMetaPublish {
    settings: Mutex<Settings>,
    state: Mutex<Option<State>>,
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

impl RadioMetaPublish {
    /// What the outbox reports goes on the bus: a warning when messages start
    /// being dropped, an info message when the destination is back.
    fn notifier(&self) -> Arc<dyn Fn(OutboxEvent) + Send + Sync> {
        let element = self.obj().downgrade();
        Arc::new(move |event| {
            let Some(element) = element.upgrade() else {
                return;
            };
            let imp = element.imp();
            match event {
                OutboxEvent::Dropping(why) => gst::element_imp_warning!(
                    imp,
                    gst::ResourceError::Write,
                    (
                        "the destination does not keep up: dropping the oldest messages ({})",
                        why.unwrap_or_else(|| "queue full".into())
                    )
                ),
                OutboxEvent::Recovered => gst::element_imp_info!(
                    imp,
                    gst::ResourceError::Write,
                    ("the destination takes messages again")
                ),
            }
        })
    }

    /// Where and when the frame in `buffer` is.
    fn frame_info(&self, buffer: &gst::BufferRef, source_id: &str) -> FrameInfo {
        let segment = self.obj().segment();
        let segment = segment.downcast_ref::<gst::ClockTime>();
        let stream_time = segment
            .zip(buffer.pts())
            .and_then(|(segment, pts)| segment.to_stream_time(pts));
        let unix_ns = reference_timestamp(buffer).or_else(|| {
            let running = segment.zip(buffer.pts())?;
            self.realtime_clock_at(running.0.to_running_time(running.1)?)
        });
        FrameInfo {
            source_id: source_id.to_string(),
            stream_time_ns: stream_time.map(|t| t.nseconds()),
            pts_ns: buffer.pts().map(|t| t.nseconds()),
            timestamp: unix_ns.and_then(rfc3339),
        }
    }

    /// The wall-clock time (Unix ns) at `running_time`, when the pipeline runs
    /// on a real-time clock: a system clock of type REALTIME (as an application
    /// sets with `pipeline.use_clock`), whose times are Unix times.
    fn realtime_clock_at(&self, running_time: gst::ClockTime) -> Option<u64> {
        let clock = self.obj().clock()?.downcast::<gst::SystemClock>().ok()?;
        if clock.property::<gst::ClockType>("clock-type") != gst::ClockType::Realtime {
            return None;
        }
        let base = self.obj().base_time()?;
        Some((base + running_time).nseconds())
    }

    fn stats_structure(&self) -> gst::Structure {
        let stats = lock(&self.state)
            .as_ref()
            .map(|s| s.outbox.stats())
            .unwrap_or_default();
        gst::Structure::builder("radiometapublish-stats")
            .field("published", stats.published)
            .field("dropped", stats.dropped)
            .field("reconnects", stats.reconnects)
            .field("queued", stats.queued as u64)
            .build()
    }
}

/// The capture time (Unix ns) in a reference timestamp meta: `timestamp/x-ntp`,
/// as `rtspsrc add-reference-timestamp-meta=true` adds, or `timestamp/x-unix`.
fn reference_timestamp(buffer: &gst::BufferRef) -> Option<u64> {
    /// Seconds from the NTP epoch (1900) to the Unix epoch (1970).
    const NTP_TO_UNIX: u64 = 2_208_988_800;
    buffer
        .iter_meta::<gst::ReferenceTimestampMeta>()
        .find_map(|meta| {
            let name = meta.reference().structure(0)?.name();
            let ns = meta.timestamp().nseconds();
            match name.as_str() {
                "timestamp/x-ntp" => ns.checked_sub(NTP_TO_UNIX * 1_000_000_000),
                "timestamp/x-unix" => Some(ns),
                _ => None,
            }
        })
}

/// Unix ns as RFC 3339, UTC, to the microsecond.
fn rfc3339(unix_ns: u64) -> Option<String> {
    let secs = i64::try_from(unix_ns / 1_000_000_000).ok()?;
    let micros = (unix_ns % 1_000_000_000 / 1000) as i64;
    let time = glib::DateTime::from_unix_utc(secs)
        .ok()?
        .add(glib::TimeSpan::from_microseconds(micros))
        .ok()?;
    time.format("%Y-%m-%dT%H:%M:%S.%fZ")
        .ok()
        .map(|s| s.to_string())
}

#[glib::object_subclass]
impl ObjectSubclass for RadioMetaPublish {
    const NAME: &'static str = "GstRadioMetaPublish";
    type Type = super::RadioMetaPublish;
    type ParentType = gst_base::BaseTransform;
}

impl ObjectImpl for RadioMetaPublish {
    fn properties() -> &'static [glib::ParamSpec] {
        static PROPERTIES: LazyLock<Vec<glib::ParamSpec>> = LazyLock::new(|| {
            vec![
                glib::ParamSpecEnum::builder_with_default("method", Method::File)
                    .nick("Method")
                    .blurb("Where messages go")
                    .mutable_ready()
                    .build(),
                glib::ParamSpecString::builder("location")
                    .nick("Location")
                    .blurb("method=file: the file JSON lines are appended to; - = standard output")
                    .default_value(Some("-"))
                    .mutable_ready()
                    .build(),
                glib::ParamSpecUInt64::builder("max-file-size")
                    .nick("Max file size")
                    .blurb(
                        "method=file: bytes after which FILE moves to FILE.1 and a new FILE \
                         starts (0 = never)",
                    )
                    .mutable_ready()
                    .build(),
                glib::ParamSpecString::builder("address")
                    .nick("Address")
                    .blurb(
                        "method=mqtt: the broker, mqtt://HOST[:PORT] or mqtts://HOST[:PORT] \
                         (TLS); method=kafka: bootstrap servers HOST:PORT[,HOST:PORT...]",
                    )
                    .default_value(Some("mqtt://127.0.0.1:1883"))
                    .mutable_ready()
                    .build(),
                glib::ParamSpecString::builder("topic")
                    .nick("Topic")
                    .blurb(
                        "The topic; {source-id} is replaced by the source id (default: \
                         radioembed/{source-id} for MQTT, radioembed for Kafka, whose \
                         records are keyed by the source id)",
                    )
                    .mutable_ready()
                    .build(),
                glib::ParamSpecString::builder("compression")
                    .nick("Compression")
                    .blurb("method=kafka: compression.type, none, gzip, snappy or lz4")
                    .default_value(Some("none"))
                    .mutable_ready()
                    .build(),
                glib::ParamSpecUInt::builder("qos")
                    .nick("QoS")
                    .blurb("method=mqtt: 0 (at most once) or 1 (at least once)")
                    .maximum(1)
                    .default_value(0)
                    .mutable_ready()
                    .build(),
                glib::ParamSpecString::builder("username")
                    .nick("User name")
                    .blurb("method=mqtt: user name for the broker; default: $RADIO_MQTT_USERNAME")
                    .mutable_ready()
                    .build(),
                glib::ParamSpecString::builder("password")
                    .nick("Password")
                    .blurb(
                        "method=mqtt: password for the broker (write-only); default: \
                         $RADIO_MQTT_PASSWORD",
                    )
                    .write_only()
                    .mutable_ready()
                    .build(),
                glib::ParamSpecString::builder("ca-file")
                    .nick("CA file")
                    .blurb(
                        "method=mqtt with mqtts://: PEM file of the CA that signed the \
                         broker's certificate; default: $RADIO_MQTT_CA_FILE, else the \
                         system's root certificates",
                    )
                    .mutable_ready()
                    .build(),
                glib::ParamSpecBoolean::builder("fail-on-unreachable")
                    .nick("Fail on unreachable")
                    .blurb(
                        "method=mqtt: fail at start when the broker does not answer in 2 s \
                         (default: warn, queue and retry)",
                    )
                    .default_value(false)
                    .mutable_ready()
                    .build(),
                glib::ParamSpecString::builder("source-id")
                    .nick("Source id")
                    .blurb(
                        "The stream's name in messages and topics; default: each message \
                         names the source-id of its RadioEmbedMeta, the topic the stream id",
                    )
                    .mutable_ready()
                    .build(),
                glib::ParamSpecEnum::builder_with_default("vector-encoding", VectorEncoding::Json)
                    .nick("Vector encoding")
                    .blurb(
                        "How vectors are written: JSON arrays, or base64 of little-endian f32/f16",
                    )
                    .mutable_ready()
                    .build(),
                glib::ParamSpecBoolean::builder("spatial")
                    .nick("Spatial")
                    .blurb("Also publish the (pooled) patch grid when the meta has it")
                    .default_value(false)
                    .mutable_ready()
                    .build(),
                glib::ParamSpecUInt::builder("max-queued")
                    .nick("Max queued")
                    .blurb("Messages waiting for the destination before the oldest are dropped")
                    .minimum(1)
                    .maximum(10_000_000)
                    .default_value(DEFAULT_MAX_QUEUED)
                    .mutable_ready()
                    .build(),
                glib::ParamSpecBoxed::builder::<gst::Structure>("stats")
                    .nick("Statistics")
                    .blurb("published, dropped, reconnects, queued")
                    .read_only()
                    .build(),
            ]
        });
        PROPERTIES.as_ref()
    }

    fn set_property(&self, _id: usize, value: &glib::Value, pspec: &glib::ParamSpec) {
        let mut s = lock(&self.settings);
        match pspec.name() {
            "method" => s.method = value.get().expect("type checked upstream"),
            "location" => {
                s.location = value
                    .get::<Option<String>>()
                    .expect("type checked upstream")
                    .unwrap_or_else(|| "-".into())
            }
            "max-file-size" => s.max_file_size = value.get().expect("type checked upstream"),
            "source-id" => s.source_id = value.get().expect("type checked upstream"),
            "vector-encoding" => s.vector_encoding = value.get().expect("type checked upstream"),
            "spatial" => s.spatial = value.get().expect("type checked upstream"),
            "max-queued" => s.max_queued = value.get().expect("type checked upstream"),
            "address" => {
                s.address = value
                    .get::<Option<String>>()
                    .expect("type checked upstream")
                    .unwrap_or_default()
            }
            "topic" => s.topic = value.get().expect("type checked upstream"),
            "compression" => {
                s.compression = value
                    .get::<Option<String>>()
                    .expect("type checked upstream")
                    .unwrap_or_else(|| "none".into())
            }
            "qos" => s.qos = value.get().expect("type checked upstream"),
            "username" => s.username = value.get().expect("type checked upstream"),
            "password" => s.password = value.get().expect("type checked upstream"),
            "ca-file" => s.ca_file = value.get().expect("type checked upstream"),
            "fail-on-unreachable" => {
                s.fail_on_unreachable = value.get().expect("type checked upstream")
            }
            other => unreachable!("unknown property {other}"),
        }
    }

    fn property(&self, _id: usize, pspec: &glib::ParamSpec) -> glib::Value {
        if pspec.name() == "stats" {
            return self.stats_structure().to_value();
        }
        let s = lock(&self.settings);
        match pspec.name() {
            "method" => s.method.to_value(),
            "location" => s.location.to_value(),
            "max-file-size" => s.max_file_size.to_value(),
            "source-id" => s.source_id.to_value(),
            "vector-encoding" => s.vector_encoding.to_value(),
            "spatial" => s.spatial.to_value(),
            "max-queued" => s.max_queued.to_value(),
            "address" => s.address.to_value(),
            "topic" => s.topic.to_value(),
            "compression" => s.compression.to_value(),
            "qos" => s.qos.to_value(),
            "username" => s.username.to_value(),
            "ca-file" => s.ca_file.to_value(),
            "fail-on-unreachable" => s.fail_on_unreachable.to_value(),
            other => unreachable!("unknown property {other}"),
        }
    }
}

impl GstObjectImpl for RadioMetaPublish {}

impl ElementImpl for RadioMetaPublish {
    fn metadata() -> Option<&'static gst::subclass::ElementMetadata> {
        static METADATA: LazyLock<gst::subclass::ElementMetadata> = LazyLock::new(|| {
            gst::subclass::ElementMetadata::new(
                "C-RADIOv4 embedding publisher",
                "Filter/Video",
                "Publishes each frame's RadioEmbedMeta as a JSON message (file or stdout) \
                 and passes buffers on unchanged",
                "radioembed developers",
            )
        });
        Some(&*METADATA)
    }

    fn pad_templates() -> &'static [gst::PadTemplate] {
        static TEMPLATES: LazyLock<Vec<gst::PadTemplate>> = LazyLock::new(|| {
            let caps = gst::Caps::new_any();
            [gst::PadDirection::Sink, gst::PadDirection::Src]
                .into_iter()
                .map(|direction| {
                    let name = if direction == gst::PadDirection::Sink {
                        "sink"
                    } else {
                        "src"
                    };
                    gst::PadTemplate::new(name, direction, gst::PadPresence::Always, &caps)
                        .expect("valid template")
                })
                .collect()
        });
        TEMPLATES.as_ref()
    }
}

impl BaseTransformImpl for RadioMetaPublish {
    const MODE: gst_base::subclass::BaseTransformMode =
        gst_base::subclass::BaseTransformMode::AlwaysInPlace;
    const PASSTHROUGH_ON_SAME_CAPS: bool = true;
    const TRANSFORM_IP_ON_PASSTHROUGH: bool = true;

    fn start(&self) -> Result<(), gst::ErrorMessage> {
        let settings = lock(&self.settings).clone();
        let source_id = settings
            .source_id
            .clone()
            .unwrap_or_else(|| self.obj().name().to_string());
        let (publisher, warning) = settings
            .publisher(&source_id)
            .map_err(|e| gst::error_msg!(gst::ResourceError::OpenWrite, ("{}", e)))?;
        if let Some(warning) = warning {
            gst::element_imp_warning!(self, gst::ResourceError::OpenWrite, ("{}", warning));
        }
        let outbox = Outbox::start(publisher, settings.max_queued as usize, self.notifier())
            .map_err(|e| gst::error_msg!(gst::CoreError::Thread, ("{}", e)))?;
        *lock(&self.state) = Some(State {
            outbox,
            options: settings.message_options(),
            source_id,
            source_id_set: settings.source_id.is_some(),
        });
        Ok(())
    }

    fn stop(&self) -> Result<(), gst::ErrorMessage> {
        // Taken out first: closing waits for the thread, with no lock held.
        let state = lock(&self.state).take();
        if let Some(state) = state {
            let stats = state.outbox.close(STOP_GRACE);
            gst::info!(CAT, imp = self, "stopped: {stats:?}");
        }
        Ok(())
    }

    fn sink_event(&self, event: gst::Event) -> bool {
        match event.view() {
            gst::EventView::StreamStart(start) if lock(&self.settings).source_id.is_none() => {
                if let Some(state) = lock(&self.state).as_mut() {
                    state.source_id = start.stream_id().to_string();
                }
            }
            gst::EventView::Eos(_) => {
                // The messages of the stream are out (or given up on) before its EOS.
                let drained = lock(&self.state)
                    .as_ref()
                    .is_none_or(|s| s.outbox.drain(EOS_DRAIN));
                if !drained {
                    gst::warning!(CAT, imp = self, "messages still queued at EOS");
                }
            }
            _ => (),
        }
        self.parent_sink_event(event)
    }

    fn transform_ip_passthrough(
        &self,
        buffer: &gst::Buffer,
    ) -> Result<gst::FlowSuccess, gst::FlowError> {
        let embedding = match Embedding::from_buffer(buffer.as_ref()) {
            Ok(Some(embedding)) => embedding,
            Ok(None) => return Ok(gst::FlowSuccess::Ok),
            Err(err) => {
                gst::warning!(CAT, imp = self, "unreadable meta: {err}");
                return Ok(gst::FlowSuccess::Ok);
            }
        };
        let state = lock(&self.state);
        let Some(state) = state.as_ref() else {
            return Err(gst::FlowError::Flushing);
        };
        let source_id = if state.source_id_set {
            &state.source_id
        } else {
            &embedding.source_id
        };
        let frame = self.frame_info(buffer.as_ref(), source_id);
        let objects = regions(buffer.as_ref()).unwrap_or_else(|err| {
            gst::warning!(CAT, imp = self, "unreadable region vector: {err}");
            Vec::new()
        });
        state
            .outbox
            .push(frame_message(&embedding, &frame, &objects, state.options));
        Ok(gst::FlowSuccess::Ok)
    }
}
