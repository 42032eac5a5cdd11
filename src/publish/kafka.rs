// SPDX-License-Identifier: MPL-2.0
//! Messages to Kafka with rdkafka (librdkafka, built from source by its crate,
//! behind the `kafka` cargo feature): one topic, the source id as the key so
//! that a camera's frames stay ordered in one partition, optional compression.

use std::time::Duration;

use rdkafka::ClientConfig;
use rdkafka::error::{KafkaError, RDKafkaErrorCode};
use rdkafka::producer::{BaseProducer, BaseRecord, Producer};

use super::{PublishError, Publisher};

/// How long a flush (EOS, stop) waits for Kafka to acknowledge.
const FLUSH_WAIT: Duration = Duration::from_secs(5);

/// Where and how to publish.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KafkaSettings {
    /// Bootstrap servers, `host:port[,host:port...]`.
    pub brokers: String,
    /// The topic.
    pub topic: String,
    /// librdkafka's `compression.type`: none, gzip, snappy, lz4 (zstd needs a
    /// librdkafka built with it).
    pub compression: String,
}

/// Publishes each message to one topic, keyed by the source id.
pub struct KafkaPublisher {
    producer: BaseProducer,
    topic: String,
    key: String,
}

impl KafkaPublisher {
    /// Makes the producer; librdkafka connects in the background.
    pub fn connect(settings: &KafkaSettings, source_id: &str) -> Result<Self, PublishError> {
        if settings.brokers.trim().is_empty() {
            return Err(PublishError::Start("no Kafka brokers in address".into()));
        }
        let producer = ClientConfig::new()
            .set("bootstrap.servers", &settings.brokers)
            .set("compression.type", &settings.compression)
            .set("client.id", "radiometapublish")
            .create()
            .map_err(|e| PublishError::Start(format!("Kafka producer: {e}")))?;
        Ok(Self {
            producer,
            topic: settings.topic.clone(),
            key: source_id.to_string(),
        })
    }
}

impl Publisher for KafkaPublisher {
    fn publish(&mut self, message: &str) -> Result<(), PublishError> {
        let record = BaseRecord::to(&self.topic).key(&self.key).payload(message);
        let sent = self.producer.send(record);
        // Serve delivery reports, so librdkafka's queue drains.
        self.producer.poll(Duration::ZERO);
        match sent {
            Ok(()) => Ok(()),
            Err((KafkaError::MessageProduction(RDKafkaErrorCode::QueueFull), _)) => {
                Err(PublishError::Unavailable(
                    "Kafka producer queue full (brokers slow or down)".into(),
                ))
            }
            Err((err, _)) => Err(PublishError::Unavailable(format!("Kafka: {err}"))),
        }
    }

    fn flush(&mut self) -> Result<(), PublishError> {
        self.producer
            .flush(FLUSH_WAIT)
            .map_err(|e| PublishError::Unavailable(format!("Kafka flush: {e}")))
    }
}
