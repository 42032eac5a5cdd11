// SPDX-License-Identifier: MPL-2.0
//! Messages to an MQTT broker with the rumqttc client: one topic per source
//! (`{source-id}` in the topic is replaced), QoS 0 or 1, plain TCP or TLS
//! (`mqtts://`, the system's root certificates or a given CA), username and
//! password.
//!
//! rumqttc reconnects by itself while its connection is polled; a thread of
//! ours polls it and tells [`MqttPublisher::publish`] whether the broker is
//! there, so that messages wait in the outbox while it is not.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use rumqttc::{Client, ConnectionError, Event, MqttOptions, Packet, QoS, Transport};

use super::{PublishError, Publisher};

/// How long rumqttc waits between reconnection attempts (it retries on every poll).
const RECONNECT_WAIT: Duration = Duration::from_millis(500);

/// Where and how to publish.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MqttSettings {
    /// `mqtt://host[:port]`, `mqtts://host[:port]` or `host[:port]`.
    pub address: String,
    /// The topic; `{source-id}` is replaced by the stream's source id.
    pub topic: String,
    /// 0 (at most once) or 1 (at least once).
    pub qos: u8,
    /// Credentials, when the broker asks for them.
    pub username: Option<String>,
    /// The password that goes with `username`.
    pub password: Option<String>,
    /// The MQTT client id.
    pub client_id: String,
    /// PEM file of the certificate authority that signed the broker's
    /// certificate, for `mqtts://`; `None`: the system's root certificates.
    pub ca_file: Option<std::path::PathBuf>,
}

/// A broker address taken apart.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Address {
    host: String,
    port: u16,
    tls: bool,
}

/// Parses `mqtt://host[:port]`, `mqtts://host[:port]` or `host[:port]`.
fn parse_address(address: &str) -> Result<Address, PublishError> {
    let bad = |why: &str| {
        PublishError::Start(format!(
            "bad MQTT address `{address}` ({why}): use mqtt://HOST[:PORT] or mqtts://HOST[:PORT]"
        ))
    };
    let (tls, rest) = match address.split_once("://") {
        Some(("mqtt" | "tcp", rest)) => (false, rest),
        Some(("mqtts" | "ssl", rest)) => (true, rest),
        Some((scheme, _)) => return Err(bad(&format!("unknown scheme {scheme}"))),
        None => (false, address),
    };
    let rest = rest.trim_end_matches('/');
    let (host, port) = match rest.rsplit_once(':') {
        Some((host, port)) => (host, port.parse().map_err(|_| bad("port is not a number"))?),
        None => (rest, if tls { 8883 } else { 1883 }),
    };
    if host.is_empty() || host.contains('/') {
        return Err(bad("no host"));
    }
    Ok(Address {
        host: host.to_string(),
        port,
        tls,
    })
}

/// Publishes each message on one topic of one broker.
pub struct MqttPublisher {
    client: Client,
    topic: String,
    qos: QoS,
    link: Arc<Link>,
}

/// What the polling thread knows of the connection.
#[derive(Default)]
struct Link {
    connected: AtomicBool,
    last_error: Mutex<Option<String>>,
    closing: AtomicBool,
}

impl MqttPublisher {
    /// Starts the client for `settings`, publishing on the topic for
    /// `source_id`. With `wait_for_broker`, fails unless the broker answers
    /// within that time.
    pub fn connect(
        settings: &MqttSettings,
        source_id: &str,
        wait_for_broker: Option<Duration>,
    ) -> Result<Self, PublishError> {
        let address = parse_address(&settings.address)?;
        let qos = match settings.qos {
            0 => QoS::AtMostOnce,
            1 => QoS::AtLeastOnce,
            other => return Err(PublishError::Start(format!("MQTT QoS {other}: use 0 or 1"))),
        };
        let mut options = MqttOptions::new(&settings.client_id, &address.host, address.port);
        options.set_keep_alive(Duration::from_secs(5));
        if address.tls {
            // rustls picks a crypto provider only when exactly one is built in;
            // make ring the process default (an error means one is set already).
            let _ = rustls::crypto::ring::default_provider().install_default();
            options.set_transport(match &settings.ca_file {
                Some(path) => {
                    let ca = std::fs::read(path).map_err(|e| {
                        PublishError::Start(format!("cannot read ca-file {}: {e}", path.display()))
                    })?;
                    Transport::tls(ca, None, None)
                }
                None => Transport::tls_with_default_config(),
            });
        }
        if let Some(user) = &settings.username {
            options.set_credentials(user, settings.password.clone().unwrap_or_default());
        }
        let (client, mut connection) = Client::new(options, 64);
        let link = Arc::new(Link::default());
        let polled = link.clone();
        std::thread::Builder::new()
            .name("radio-mqtt".into())
            .spawn(move || {
                for event in connection.iter() {
                    if polled.closing.load(Ordering::SeqCst) {
                        break;
                    }
                    polled.observe(event);
                }
            })
            .map_err(|e| PublishError::Start(format!("cannot start the MQTT thread: {e}")))?;
        let publisher = Self {
            client,
            topic: settings.topic.replace("{source-id}", source_id),
            qos,
            link,
        };
        if let Some(limit) = wait_for_broker {
            publisher.wait_connected(limit)?;
        }
        Ok(publisher)
    }

    /// Waits for the broker's CONNACK.
    pub fn wait_connected(&self, limit: Duration) -> Result<(), PublishError> {
        let deadline = Instant::now() + limit;
        while !self.link.connected.load(Ordering::SeqCst) {
            if Instant::now() >= deadline {
                return Err(PublishError::Start(format!(
                    "the MQTT broker did not answer in {limit:?}: {}",
                    self.link.why()
                )));
            }
            std::thread::sleep(Duration::from_millis(10));
        }
        Ok(())
    }
}

impl Link {
    fn observe(&self, event: Result<Event, ConnectionError>) {
        match event {
            Ok(Event::Incoming(Packet::ConnAck(_))) => {
                self.connected.store(true, Ordering::SeqCst);
            }
            Ok(_) => {}
            Err(err) => {
                self.connected.store(false, Ordering::SeqCst);
                *self.last_error.lock().unwrap_or_else(|e| e.into_inner()) = Some(err.to_string());
                std::thread::sleep(RECONNECT_WAIT);
            }
        }
    }

    fn why(&self) -> String {
        self.last_error
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
            .unwrap_or_else(|| "no answer yet".into())
    }
}

impl Publisher for MqttPublisher {
    fn publish(&mut self, message: &str) -> Result<(), PublishError> {
        if !self.link.connected.load(Ordering::SeqCst) {
            return Err(PublishError::Unavailable(format!(
                "MQTT broker not connected: {}",
                self.link.why()
            )));
        }
        self.client
            .try_publish(&self.topic, self.qos, false, message.as_bytes().to_vec())
            .map_err(|e| PublishError::Unavailable(format!("MQTT client: {e}")))
    }
}

impl Drop for MqttPublisher {
    fn drop(&mut self) {
        self.link.closing.store(true, Ordering::SeqCst);
        let _ = self.client.try_disconnect();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn addresses_parse_with_default_ports() {
        let parsed = |a: &str| parse_address(a).unwrap();
        let address = |host: &str, port, tls| Address {
            host: host.into(),
            port,
            tls,
        };
        assert_eq!(parsed("mqtt://broker"), address("broker", 1883, false));
        assert_eq!(parsed("mqtts://broker/"), address("broker", 8883, true));
        assert_eq!(parsed("127.0.0.1:1999"), address("127.0.0.1", 1999, false));
        for bad in [
            "http://broker",
            "mqtt://:1883",
            "mqtt://broker:port",
            "mqtt://a/b",
        ] {
            let err = parse_address(bad).unwrap_err().to_string();
            assert!(err.contains(&format!("bad MQTT address `{bad}`")), "{err}");
        }
    }
}
