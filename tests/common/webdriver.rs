// SPDX-License-Identifier: MPL-2.0
//! A WebDriver client for Debian's chromium, headless, under chromedriver
//! (package chromium-driver): just what the search page's test and benchmark
//! use, over plain HTTP with ureq.

use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::{Value, json};

/// A chromedriver session of headless chromium, ended when dropped.
pub struct Browser {
    driver: Child,
    session: String,
    base: String,
}

impl Browser {
    /// Starts chromedriver on a free port and a chromium session under it.
    pub fn start() -> Self {
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let driver = Command::new("chromedriver")
            .arg(format!("--port={port}"))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("chromedriver (Debian's chromium-driver) runs; .ci/run installs it");
        let base = format!("http://127.0.0.1:{port}");
        let started = Instant::now();
        while ureq::get(&format!("{base}/status")).call().is_err() {
            assert!(
                started.elapsed() < Duration::from_secs(30),
                "chromedriver did not start"
            );
            std::thread::sleep(Duration::from_millis(100));
        }
        let session: Value = ureq::post(&format!("{base}/session"))
            .send_json(json!({ "capabilities": { "alwaysMatch": {
                "browserName": "chrome",
                "goog:chromeOptions": {
                    "binary": "/usr/bin/chromium",
                    "args": ["--headless=new", "--no-sandbox", "--disable-gpu",
                             "--disable-dev-shm-usage", "--window-size=1200,900",
                             "--autoplay-policy=no-user-gesture-required"]
                }
            }}}))
            .expect("chromium starts under chromedriver")
            .into_json()
            .unwrap();
        let session = session["value"]["sessionId"].as_str().unwrap().to_string();
        Self {
            driver,
            session,
            base,
        }
    }

    /// A WebDriver command of the session: its `value`.
    pub fn call(&self, method: &str, path: &str, body: Value) -> Value {
        let url = format!("{}/session/{}{path}", self.base, self.session);
        let response = match method {
            "GET" => ureq::get(&url).call(),
            _ => ureq::post(&url).send_json(body),
        };
        let response = match response {
            Ok(r) => r,
            Err(ureq::Error::Status(_, r)) => panic!("{path}: {}", r.into_string().unwrap()),
            Err(e) => panic!("{path}: {e}"),
        };
        response.into_json::<Value>().unwrap()["value"].take()
    }

    /// Runs `script` in the page: what it returns.
    pub fn script(&self, script: &str) -> Value {
        self.call(
            "POST",
            "/execute/sync",
            json!({ "script": script, "args": [] }),
        )
    }

    /// The id of the first element `css` selects.
    pub fn element(&self, css: &str) -> String {
        let found = self.call(
            "POST",
            "/element",
            json!({ "using": "css selector", "value": css }),
        );
        found
            .as_object()
            .and_then(|o| o.values().next())
            .and_then(Value::as_str)
            .unwrap()
            .to_string()
    }

    /// Polls `script` until it returns true, for up to `secs` seconds.
    pub fn wait_for(&self, script: &str, secs: u64) {
        let started = Instant::now();
        while self.script(script) != Value::Bool(true) {
            assert!(
                started.elapsed() < Duration::from_secs(secs),
                "timed out waiting for: {script}; status: {}",
                self.script("return document.getElementById('status').textContent")
            );
            std::thread::sleep(Duration::from_millis(100));
        }
    }
}

impl Drop for Browser {
    fn drop(&mut self) {
        let _ = ureq::delete(&format!("{}/session/{}", self.base, self.session)).call();
        let _ = self.driver.kill();
        let _ = self.driver.wait();
    }
}
