// SPDX-License-Identifier: MPL-2.0
//! Embeddings out of the pipeline: one JSON message per embedded frame
//! ([`message`]), handed off the streaming thread through a bounded
//! [`Outbox`] to a [`Publisher`]: JSON lines in a file ([`FilePublisher`]), an
//! MQTT broker ([`MqttPublisher`]) or, with the `kafka` feature, Kafka
//! (`KafkaPublisher`).

mod file;
#[cfg(feature = "kafka")]
mod kafka;
pub mod message;
mod mqtt;
mod outbox;

pub use file::FilePublisher;
#[cfg(feature = "kafka")]
pub use kafka::{KafkaPublisher, KafkaSettings};
pub use message::{FrameInfo, MessageOptions, VectorEncoding, frame_message};
pub use mqtt::{MqttPublisher, MqttSettings};
pub use outbox::{Outbox, OutboxEvent, PublishStats};

/// Why a message could not be published, or a publisher not started.
#[derive(Debug, thiserror::Error)]
pub enum PublishError {
    /// The publisher cannot start: bad settings or an unwritable destination.
    #[error("cannot start publishing: {0}")]
    Start(String),
    /// The destination does not take messages now; they are tried again.
    #[error("destination unavailable: {0}")]
    Unavailable(String),
    /// Writing failed.
    #[error("write failed: {0}")]
    Io(#[from] std::io::Error),
}

/// A destination for messages, fed by an [`Outbox`] on its own thread.
pub trait Publisher: Send {
    /// Hands one message to the destination. An error keeps the message, to
    /// be tried again after a wait.
    fn publish(&mut self, message: &str) -> Result<(), PublishError>;

    /// Pushes out what the destination buffers (at EOS and when stopping).
    fn flush(&mut self) -> Result<(), PublishError> {
        Ok(())
    }
}
