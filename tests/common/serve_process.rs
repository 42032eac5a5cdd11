// SPDX-License-Identifier: MPL-2.0
//! A `radio-embed serve` process on a free loopback port, and plain HTTP
//! requests to it (ureq, or bytes on a socket): for the search page's test and
//! benchmark.

#![allow(dead_code)]

use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use serde_json::Value;

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

/// A running `radio-embed serve`, stopped when dropped.
pub struct Server {
    child: Child,
    /// `http://127.0.0.1:PORT`, no trailing slash.
    pub url: String,
}

impl Server {
    /// Serves `db` with `extra` arguments; returns once it listens.
    pub fn start(db: &Path, extra: &[&str]) -> Self {
        let mut child = Command::new(env!("CARGO_BIN_EXE_radio-embed"))
            .args([
                "serve",
                "--db",
                db.to_str().unwrap(),
                "--addr",
                "127.0.0.1:0",
            ])
            .args(extra)
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let mut line = Vec::new();
        let mut stdout = child.stdout.take().unwrap();
        let mut byte = [0u8; 1];
        while stdout.read(&mut byte).unwrap() == 1 && byte[0] != b'\n' {
            line.push(byte[0]);
        }
        let line = String::from_utf8(line).unwrap();
        let Some(url) = line.split_whitespace().find(|w| w.starts_with("http://")) else {
            let mut err = String::new();
            child
                .stderr
                .take()
                .unwrap()
                .read_to_string(&mut err)
                .unwrap();
            panic!("serve did not start: {line} {err}");
        };
        Self {
            child,
            url: url.trim_end_matches('/').to_string(),
        }
    }

    /// The status, content type and body of a request.
    pub fn request(&self, request: ureq::Request) -> (u16, String, Vec<u8>) {
        let response = match request.call() {
            Ok(r) => r,
            Err(ureq::Error::Status(_, r)) => r,
            Err(e) => panic!("{e}"),
        };
        let (status, kind) = (response.status(), response.content_type().to_string());
        let mut body = Vec::new();
        response.into_reader().read_to_end(&mut body).unwrap();
        (status, kind, body)
    }

    pub fn get(&self, path: &str) -> (u16, String, Vec<u8>) {
        self.request(ureq::get(&format!("{}{path}", self.url)))
    }

    pub fn json(&self, path: &str) -> Value {
        let (status, _, body) = self.get(path);
        assert_eq!(status, 200, "{path}: {}", text(&body));
        serde_json::from_slice(&body).unwrap()
    }

    pub fn search_image(&self, png: &Path, query: &str) -> Value {
        let response = ureq::post(&format!("{}/api/search?{query}", self.url))
            .set("Content-Type", "image/png")
            .send_bytes(&std::fs::read(png).unwrap())
            .unwrap();
        response.into_json().unwrap()
    }

    /// The status line of a request sent byte for byte, as no client library
    /// would send it (a path with `..` in it).
    pub fn raw_status(&self, path: &str) -> String {
        self.raw(&format!("GET {path} HTTP/1.1\r\n"))
    }

    /// The status line of the response to a request line and headers sent as
    /// they are.
    pub fn raw(&self, head: &str) -> String {
        let addr = self.url.trim_start_matches("http://");
        let mut stream = TcpStream::connect(addr).unwrap();
        stream
            .set_read_timeout(Some(Duration::from_secs(20)))
            .unwrap();
        write!(stream, "{head}Host: {addr}\r\nConnection: close\r\n\r\n").unwrap();
        let mut response = String::new();
        let _ = stream.read_to_string(&mut response);
        response.lines().next().unwrap_or_default().to_string()
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
