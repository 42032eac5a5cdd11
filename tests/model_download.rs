// SPDX-License-Identifier: MPL-2.0
//! Models named by Hugging Face repo id: downloaded into the cache from a hub
//! (a local stand-in for huggingface.co, serving the tiny fixture through the
//! same `resolve` URLs and headers), found there offline afterwards, and clear
//! errors when offline or when the hub has no such repo.

mod common;

use std::collections::HashMap;
use std::io::{BufRead, BufReader, Write};
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use common::fixture;

const COMMIT: &str = "0123456789abcdef0123456789abcdef01234567";
const REPO: &str = "test-org/tiny-radio";

/// A hub serving `REPO`'s files; counts the requests it answers.
struct Hub {
    endpoint: String,
    requests: Arc<AtomicUsize>,
}

impl Hub {
    fn start() -> Self {
        let mut files = HashMap::new();
        for (i, name) in ["config.json", "model.safetensors"].iter().enumerate() {
            let bytes = std::fs::read(fixture("tiny-so400m").join(name)).unwrap();
            files.insert(
                format!("/{REPO}/resolve/main/{name}"),
                (format!("etag{i}"), bytes),
            );
        }
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let endpoint = format!("http://{}", listener.local_addr().unwrap());
        let requests = Arc::new(AtomicUsize::new(0));
        let count = requests.clone();
        std::thread::spawn(move || {
            for stream in listener.incoming().flatten() {
                count.fetch_add(1, Ordering::SeqCst);
                answer(stream, &files);
            }
        });
        Self { endpoint, requests }
    }
}

/// Answers one GET with the requested byte range, as the hub's `resolve` does.
fn answer(mut stream: TcpStream, files: &HashMap<String, (String, Vec<u8>)>) {
    let mut reader = BufReader::new(stream.try_clone().unwrap());
    let mut head = Vec::new();
    loop {
        let mut line = String::new();
        if reader.read_line(&mut line).unwrap_or(0) == 0 || line == "\r\n" {
            break;
        }
        head.push(line.trim_end().to_string());
    }
    let path = head
        .first()
        .and_then(|l| l.split_whitespace().nth(1))
        .unwrap_or("");
    let range_start = head
        .iter()
        .find_map(|h| {
            h.to_ascii_lowercase()
                .strip_prefix("range: bytes=")
                .map(str::to_string)
        })
        .and_then(|r| {
            let (start, end) = r.split_once('-')?;
            Some((start.parse::<usize>().ok()?, end.parse::<usize>().ok()))
        });
    let Some((etag, bytes)) = files.get(path) else {
        let _ = stream
            .write_all(b"HTTP/1.1 404 Not Found\r\nContent-Length: 0\r\nConnection: close\r\n\r\n");
        return;
    };
    let (start, end) = match range_start {
        Some((start, end)) => (start, end.unwrap_or(bytes.len() - 1).min(bytes.len() - 1)),
        None => (0, bytes.len() - 1),
    };
    let body = &bytes[start..=end];
    let head = format!(
        "HTTP/1.1 206 Partial Content\r\nETag: \"{etag}\"\r\nX-Repo-Commit: {COMMIT}\r\n\
         Content-Range: bytes {start}-{end}/{}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
        bytes.len(),
        body.len()
    );
    let _ = stream.write_all(head.as_bytes());
    let _ = stream.write_all(body);
}

/// `radio-embed info --model MODEL` with only the given hub settings.
fn info(model: &str, cache: &Path, endpoint: &str, offline: bool) -> Output {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_radio-embed"));
    cmd.args(["info", "--model", model])
        .env("HF_HUB_CACHE", cache)
        .env("HF_ENDPOINT", endpoint)
        .env_remove("HF_HUB_OFFLINE");
    for proxy in ["http_proxy", "HTTP_PROXY", "all_proxy", "ALL_PROXY"] {
        cmd.env_remove(proxy);
    }
    if offline {
        cmd.env("HF_HUB_OFFLINE", "1");
    }
    cmd.output().unwrap()
}

fn scratch(tag: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("radio-hub-{tag}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    dir
}

#[test]
fn a_repo_id_is_downloaded_once_then_found_offline() {
    let hub = Hub::start();
    let cache = scratch("cache");
    let out = info(REPO, &cache, &hub.endpoint, false);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stderr}");
    assert!(
        stderr.contains(&format!("downloading {REPO} model.safetensors: 100 %")),
        "{stderr}"
    );
    let snapshot = cache.join(format!("models--test-org--tiny-radio/snapshots/{COMMIT}"));
    for file in ["config.json", "model.safetensors"] {
        assert_eq!(
            std::fs::read(snapshot.join(file)).unwrap(),
            std::fs::read(fixture("tiny-so400m").join(file)).unwrap(),
            "{file} differs from the served one"
        );
    }
    let direct = Command::new(env!("CARGO_BIN_EXE_radio-embed"))
        .args(["info", "--model", fixture("tiny-so400m").to_str().unwrap()])
        .output()
        .unwrap();
    assert_eq!(out.stdout, direct.stdout, "the downloaded model differs");

    let served = hub.requests.load(Ordering::SeqCst);
    let again = info(REPO, &cache, &hub.endpoint, true);
    assert!(
        again.status.success(),
        "{}",
        String::from_utf8_lossy(&again.stderr)
    );
    assert_eq!(again.stdout, direct.stdout);
    assert_eq!(
        hub.requests.load(Ordering::SeqCst),
        served,
        "a cached model was fetched again"
    );
    std::fs::remove_dir_all(&cache).unwrap();
}

#[test]
fn offline_and_unknown_repos_are_clear_errors() {
    let hub = Hub::start();
    let cache = scratch("errors");

    let out = info("test-org/other", &cache, &hub.endpoint, true);
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("model `test-org/other` not found"), "{err}");
    assert!(
        err.contains("HF_HUB_OFFLINE is set, so it was not downloaded"),
        "{err}"
    );
    assert!(err.contains(&cache.display().to_string()), "{err}");
    assert_eq!(
        hub.requests.load(Ordering::SeqCst),
        0,
        "offline, yet the hub was asked"
    );

    let out = info("test-org/other", &cache, &hub.endpoint, false);
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("downloading it failed: config.json: "),
        "{err}"
    );
    assert!(err.contains("404"), "{err}");
    assert!(err.contains("hf download test-org/other"), "{err}");
    let _ = std::fs::remove_dir_all(&cache);
}
