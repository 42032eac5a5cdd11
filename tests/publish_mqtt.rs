// SPDX-License-Identifier: MPL-2.0
//! `radiometapublish method=mqtt` against a real broker: Debian's `mosquitto`,
//! started by the test on 127.0.0.1 at a free port, with a rumqttc subscriber.
//! Every frame's message arrives in order and equal to its meta; a broker that
//! dies and comes back mid-stream neither stalls the video nor loses count.

mod common;

use std::net::TcpListener;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use common::{TempDir, fixture, init};
use gst::prelude::*;
use gstradio::meta::Embedding;
use rumqttc::{Client, Event, MqttOptions, Packet, QoS};
use serde_json::Value;

/// A mosquitto broker on 127.0.0.1:`port`, killed when dropped.
struct Broker {
    config: std::path::PathBuf,
    child: Child,
}

impl Broker {
    fn start(dir: &Path, port: u16) -> Self {
        Self::start_with(dir, port, "allow_anonymous true\n")
    }

    /// A broker with more `config` lines for its listener (TLS, passwords).
    fn start_with(dir: &Path, port: u16, config: &str) -> Self {
        let path = dir.join("mosquitto.conf");
        let text = format!("persistence false\nlistener {port} 127.0.0.1\n{config}");
        std::fs::write(&path, text).unwrap();
        let config = path;
        let child = Self::spawn(&config);
        let broker = Self { config, child };
        broker.wait_for_port(port);
        broker
    }

    /// Runs mosquitto, its log in `mosquitto.log` beside the config.
    fn spawn(config: &Path) -> Child {
        let log = std::fs::File::create(config.with_file_name("mosquitto.log")).unwrap();
        Command::new("/usr/sbin/mosquitto")
            .arg("-c")
            .arg(config)
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .expect("mosquitto runs (Debian package mosquitto, installed by .ci/run)")
    }

    /// Waits until the broker listens; fails with its log if it never does.
    fn wait_for_port(&self, port: u16) {
        let deadline = Instant::now() + Duration::from_secs(10);
        while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
            if Instant::now() > deadline {
                let log = std::fs::read_to_string(self.config.with_file_name("mosquitto.log"));
                panic!(
                    "the broker never listened on {port}: {}",
                    log.unwrap_or_default()
                );
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// Kills the broker without warning.
    fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    /// Starts it again on the same port.
    fn restart(&mut self, port: u16) {
        self.child = Self::spawn(&self.config);
        self.wait_for_port(port);
    }
}

impl Drop for Broker {
    fn drop(&mut self) {
        self.kill();
    }
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// A subscriber to `topic` that collects the messages and subscribes again
/// after every reconnection.
struct Subscriber {
    received: Arc<Mutex<Vec<Value>>>,
}

impl Subscriber {
    fn start(port: u16, topic: &str) -> Self {
        Self::start_with(port, topic, None)
    }

    /// A subscriber over TLS with this CA (PEM) and these credentials.
    fn start_with(port: u16, topic: &str, tls: Option<(Vec<u8>, &str, &str)>) -> Self {
        let mut options = MqttOptions::new("test-subscriber", "127.0.0.1", port);
        options.set_keep_alive(Duration::from_secs(5));
        if let Some((ca, user, password)) = tls {
            let _ = rustls::crypto::ring::default_provider().install_default();
            options.set_transport(rumqttc::Transport::tls(ca, None, None));
            options.set_credentials(user, password);
        }
        let (client, mut connection) = Client::new(options, 16);
        let received = Arc::new(Mutex::new(Vec::new()));
        let subscribed = Arc::new(AtomicBool::new(false));
        let (sink, flag, topic) = (received.clone(), subscribed.clone(), topic.to_string());
        std::thread::spawn(move || {
            for event in connection.iter() {
                match event {
                    Ok(Event::Incoming(Packet::ConnAck(_))) => {
                        client.try_subscribe(&topic, QoS::AtLeastOnce).unwrap();
                    }
                    Ok(Event::Incoming(Packet::SubAck(_))) => flag.store(true, Ordering::SeqCst),
                    Ok(Event::Incoming(Packet::Publish(p))) => {
                        sink.lock()
                            .unwrap()
                            .push(serde_json::from_slice(&p.payload).unwrap());
                    }
                    Ok(_) => {}
                    Err(_) => std::thread::sleep(Duration::from_millis(100)),
                }
            }
        });
        let deadline = Instant::now() + Duration::from_secs(10);
        while !subscribed.load(Ordering::SeqCst) {
            assert!(Instant::now() < deadline, "the subscriber never subscribed");
            std::thread::sleep(Duration::from_millis(10));
        }
        Self { received }
    }

    fn messages(&self) -> Vec<Value> {
        self.received.lock().unwrap().clone()
    }
}

/// Plays `frames` live frames at 20 fps through radioembed and
/// radiometapublish (`props`), running `meanwhile` beside it. Returns the
/// embeddings the appsink got, the publisher's stats and how long it played.
fn play(
    frames: u32,
    props: &str,
    meanwhile: impl FnOnce() + Send + 'static,
) -> (Vec<Embedding>, gst::Structure, Duration) {
    init();
    let pipeline = gst::parse::launch(&format!(
        "videotestsrc is-live=true num-buffers={frames} ! \
         video/x-raw,width=64,height=48,framerate=20/1 ! \
         radioembed model={} resolution=32 ! radiometapublish name=publish {props} ! \
         appsink name=sink sync=false",
        fixture("tiny-so400m").display()
    ))
    .unwrap()
    .downcast::<gst::Pipeline>()
    .unwrap();
    let sink = pipeline.by_name("sink").unwrap();
    let started = Instant::now();
    pipeline.set_state(gst::State::Playing).unwrap();
    let side = std::thread::spawn(meanwhile);
    let mut embeddings = Vec::new();
    while let Some(sample) = sink.emit_by_name::<Option<gst::Sample>>("pull-sample", &[]) {
        embeddings.push(
            Embedding::from_buffer(sample.buffer().unwrap())
                .unwrap()
                .unwrap(),
        );
    }
    let played = started.elapsed();
    side.join().unwrap();
    let stats = pipeline
        .by_name("publish")
        .unwrap()
        .property::<gst::Structure>("stats");
    pipeline.set_state(gst::State::Null).unwrap();
    (embeddings, stats, played)
}

/// Checks that `messages` are in frame order and equal to the frames' metas.
fn check_messages(messages: &[Value], embeddings: &[Embedding]) {
    let mut last = None;
    for m in messages {
        let index = m["frame-index"].as_u64().unwrap();
        assert!(
            last.is_none_or(|l| index >= l),
            "frame {index} after {last:?}"
        );
        last = Some(index);
        let e = &embeddings[index as usize];
        let summary: Vec<f32> = m["summary"]
            .as_array()
            .unwrap()
            .iter()
            .map(|v| v.as_f64().unwrap() as f32)
            .collect();
        assert_eq!(summary, *e.summary.as_ref().unwrap(), "frame {index}");
        assert_eq!(m["source-id"], "cam-1");
    }
}

fn wait_for_messages(subscriber: &Subscriber, count: usize) {
    let deadline = Instant::now() + Duration::from_secs(10);
    while subscriber.messages().len() < count && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(20));
    }
}

#[test]
fn every_frame_arrives_at_the_broker_in_order() {
    let dir = TempDir::new("mqtt-order");
    let port = free_port();
    let _broker = Broker::start(dir.path(), port);
    let subscriber = Subscriber::start(port, "radioembed/cam-1");
    let (embeddings, stats, _) = play(
        20,
        &format!("method=mqtt address=mqtt://127.0.0.1:{port} source-id=cam-1 qos=1"),
        || {},
    );
    assert_eq!(embeddings.len(), 20);
    assert_eq!(stats.get::<u64>("published").unwrap(), 20);
    wait_for_messages(&subscriber, 20);
    let messages = subscriber.messages();
    assert_eq!(messages.len(), 20);
    check_messages(&messages, &embeddings);
    let indices: Vec<u64> = messages
        .iter()
        .map(|m| m["frame-index"].as_u64().unwrap())
        .collect();
    assert_eq!(indices, (0..20).collect::<Vec<u64>>());
}

#[test]
fn a_broker_that_dies_and_returns_neither_stalls_the_video_nor_loses_count() {
    let dir = TempDir::new("mqtt-restart");
    let port = free_port();
    let broker = Arc::new(Mutex::new(Broker::start(dir.path(), port)));
    let subscriber = Subscriber::start(port, "radioembed/cam-1");
    let frames = 60; // 3 s at 20 fps
    let outage = broker.clone();
    let (embeddings, stats, played) = play(
        frames,
        &format!("method=mqtt address=mqtt://127.0.0.1:{port} source-id=cam-1 max-queued=10"),
        move || {
            std::thread::sleep(Duration::from_millis(800));
            outage.lock().unwrap().kill();
            std::thread::sleep(Duration::from_millis(1200));
            outage.lock().unwrap().restart(port);
        },
    );
    // The video ran at its own pace: 3 s of frames, plus at most the EOS drain.
    assert_eq!(embeddings.len(), frames as usize);
    assert!(
        played < Duration::from_secs(8),
        "the video stalled: {played:?}"
    );
    let published = stats.get::<u64>("published").unwrap();
    let dropped = stats.get::<u64>("dropped").unwrap();
    assert_eq!(published + dropped, u64::from(frames), "{stats}");
    assert!(
        dropped > 0,
        "a 1.2 s outage at 20 fps overflows 10 queued: {stats}"
    );
    assert!(stats.get::<u64>("reconnects").unwrap() >= 1, "{stats}");
    wait_for_messages(&subscriber, 1);
    std::thread::sleep(Duration::from_millis(500));
    let messages = subscriber.messages();
    check_messages(&messages, &embeddings);
    let last = messages.last().unwrap()["frame-index"].as_u64().unwrap();
    assert_eq!(
        last,
        u64::from(frames) - 1,
        "the last frame arrived after the restart"
    );
}

/// Starts `videotestsrc ! radiometapublish PROPS ! fakesink`; returns whether
/// the state change succeeded and the first error or warning on the bus.
fn start_with(props: &str) -> (bool, Option<(gst::MessageType, String)>) {
    init();
    let pipeline = gst::parse::launch(&format!(
        "videotestsrc ! radiometapublish {props} ! fakesink"
    ))
    .unwrap();
    let bus = pipeline.bus().unwrap();
    let started = pipeline.set_state(gst::State::Paused).is_ok();
    let msg = bus
        .timed_pop_filtered(
            gst::ClockTime::from_seconds(5),
            &[gst::MessageType::Error, gst::MessageType::Warning],
        )
        .map(|msg| {
            let text = match msg.view() {
                gst::MessageView::Error(e) => e.error().to_string(),
                gst::MessageView::Warning(w) => w.error().to_string(),
                _ => unreachable!(),
            };
            (msg.type_(), text)
        });
    pipeline.set_state(gst::State::Null).unwrap();
    (started, msg)
}

#[test]
fn bad_addresses_and_absent_brokers_are_clear_at_start() {
    let (started, msg) = start_with("method=mqtt address=http://broker");
    assert!(!started);
    let (kind, text) = msg.unwrap();
    assert_eq!(kind, gst::MessageType::Error);
    assert!(
        text.contains("bad MQTT address `http://broker` (unknown scheme http)"),
        "{text}"
    );

    // Nothing listens there: an error with fail-on-unreachable, else a warning.
    let address = format!("mqtt://127.0.0.1:{}", free_port());
    let (started, msg) = start_with(&format!(
        "method=mqtt address={address} fail-on-unreachable=true"
    ));
    assert!(!started);
    let (kind, text) = msg.unwrap();
    assert_eq!(kind, gst::MessageType::Error);
    assert!(
        text.contains("the MQTT broker did not answer in 2s"),
        "{text}"
    );
    let (started, msg) = start_with(&format!("method=mqtt address={address}"));
    assert!(started, "an absent broker is not an error by default");
    let (kind, text) = msg.unwrap();
    assert_eq!(kind, gst::MessageType::Warning);
    assert!(text.contains("the connection is retried"), "{text}");
}

/// A CA and a certificate for 127.0.0.1 signed by it, made with openssl in
/// `dir`: ca.crt, server.crt, server.key.
fn make_certificates(dir: &Path) {
    let openssl = |args: &[&str]| {
        let out = Command::new("openssl")
            .args(args)
            .current_dir(dir)
            .output()
            .expect("openssl runs");
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
    };
    openssl(&[
        "req",
        "-x509",
        "-newkey",
        "rsa:2048",
        "-nodes",
        "-keyout",
        "ca.key",
        "-out",
        "ca.crt",
        "-days",
        "1",
        "-subj",
        "/CN=radioembed test CA",
    ]);
    openssl(&[
        "req",
        "-newkey",
        "rsa:2048",
        "-nodes",
        "-keyout",
        "server.key",
        "-out",
        "server.csr",
        "-subj",
        "/CN=127.0.0.1",
    ]);
    std::fs::write(
        dir.join("ext.cnf"),
        "subjectAltName=IP:127.0.0.1\nbasicConstraints=CA:FALSE\n",
    )
    .unwrap();
    // Readable by the mosquitto user the broker drops to when started as root.
    use std::os::unix::fs::PermissionsExt;
    let readable = |mode| std::fs::Permissions::from_mode(mode);
    std::fs::set_permissions(dir.join("server.key"), readable(0o644)).unwrap();
    std::fs::set_permissions(dir, readable(0o755)).unwrap();
    openssl(&[
        "x509",
        "-req",
        "-in",
        "server.csr",
        "-CA",
        "ca.crt",
        "-CAkey",
        "ca.key",
        "-CAcreateserial",
        "-out",
        "server.crt",
        "-days",
        "1",
        "-extfile",
        "ext.cnf",
    ]);
}

#[test]
fn tls_and_a_password_reach_a_broker_that_asks_for_them() {
    let dir = TempDir::new("mqtt-tls");
    make_certificates(dir.path());
    let passwords = dir.join("passwords");
    let made = Command::new("/usr/bin/mosquitto_passwd")
        .args(["-c", "-b"])
        .arg(&passwords)
        .args(["cam", "s3cret"])
        .status()
        .unwrap();
    assert!(made.success());
    std::fs::set_permissions(
        &passwords,
        std::os::unix::fs::PermissionsExt::from_mode(0o644),
    )
    .unwrap();
    let port = free_port();
    let (ca, crt, key) = (
        dir.join("ca.crt"),
        dir.join("server.crt"),
        dir.join("server.key"),
    );
    let _broker = Broker::start_with(
        dir.path(),
        port,
        &format!(
            "cafile {}\ncertfile {}\nkeyfile {}\npassword_file {}\nallow_anonymous false\n",
            ca.display(),
            crt.display(),
            key.display(),
            passwords.display()
        ),
    );
    let subscriber = Subscriber::start_with(
        port,
        "radioembed/cam-1",
        Some((std::fs::read(&ca).unwrap(), "cam", "s3cret")),
    );
    let props = |password: &str| {
        format!(
            "method=mqtt address=mqtts://127.0.0.1:{port} ca-file={} username=cam \
             password={password} source-id=cam-1 fail-on-unreachable=true",
            ca.display()
        )
    };
    let (embeddings, stats, _) = play(5, &props("s3cret"), || {});
    assert_eq!(stats.get::<u64>("published").unwrap(), 5);
    wait_for_messages(&subscriber, 5);
    let messages = subscriber.messages();
    assert_eq!(messages.len(), 5);
    check_messages(&messages, &embeddings);

    let (started, msg) = start_with(&props("wrong"));
    assert!(
        !started,
        "a refused password fails with fail-on-unreachable"
    );
    let (kind, text) = msg.unwrap();
    assert_eq!(kind, gst::MessageType::Error);
    assert!(
        text.contains("did not answer") && text.contains("NotAuthorized"),
        "{text}"
    );
}
