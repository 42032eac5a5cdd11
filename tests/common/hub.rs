// SPDX-License-Identifier: MPL-2.0
//! A local stand-in for huggingface.co serving the tiny fixture as [`REPO`] (or
//! any files as any repo) through the same `resolve` URLs and headers, on
//! 127.0.0.1. It can hold the
//! requests for one file until released, to make a download that takes as long
//! as a test needs.

use std::collections::HashMap;
use std::io::{BufRead, BufReader, Write};
use std::net::{TcpListener, TcpStream};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Condvar, Mutex};

use super::fixture;

/// The commit the hub says its files are at.
pub const COMMIT: &str = "0123456789abcdef0123456789abcdef01234567";
/// The repo id the hub serves.
pub const REPO: &str = "test-org/tiny-radio";

/// Requests for the held file wait here until the hold is released.
#[derive(Default)]
struct Hold {
    file: Mutex<Option<String>>,
    released: Condvar,
    /// Requests for the held file that came in.
    waiting: AtomicUsize,
}

/// A hub serving one repo's files; counts the requests it answers.
pub struct Hub {
    /// Its address, for `HF_ENDPOINT`.
    pub endpoint: String,
    /// Requests answered so far.
    pub requests: Arc<AtomicUsize>,
    /// The paths asked for, in order.
    pub paths: Arc<Mutex<Vec<String>>>,
    hold: Arc<Hold>,
}

impl Hub {
    /// Starts the hub on a free loopback port, serving the tiny fixture as [`REPO`].
    pub fn start() -> Self {
        let files = ["config.json", "model.safetensors"].map(|name| {
            (
                name.to_string(),
                std::fs::read(fixture("tiny-so400m").join(name)).unwrap(),
            )
        });
        Self::serving(REPO, files.into())
    }

    /// Starts the hub on a free loopback port, serving `files` (name, bytes) as
    /// `repo`; any other file is a 404, as on the hub.
    pub fn serving(repo: &str, files: Vec<(String, Vec<u8>)>) -> Self {
        let files: HashMap<String, (String, Vec<u8>)> = files
            .into_iter()
            .enumerate()
            .map(|(i, (name, bytes))| {
                (
                    format!("/{repo}/resolve/main/{name}"),
                    (format!("etag{i}"), bytes),
                )
            })
            .collect();
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let endpoint = format!("http://{}", listener.local_addr().unwrap());
        let requests = Arc::new(AtomicUsize::new(0));
        let paths = Arc::new(Mutex::new(Vec::new()));
        let hold = Arc::new(Hold::default());
        let files = Arc::new(files);
        let (count, asked, held) = (requests.clone(), paths.clone(), hold.clone());
        std::thread::spawn(move || {
            for stream in listener.incoming().flatten() {
                count.fetch_add(1, Ordering::SeqCst);
                let (files, asked, held) = (files.clone(), asked.clone(), held.clone());
                std::thread::spawn(move || answer(stream, &files, &asked, &held));
            }
        });
        Self {
            endpoint,
            requests,
            paths,
            hold,
        }
    }

    /// Holds every request for `file` (`model.safetensors`) until [`release`](Self::release).
    pub fn hold(&self, file: &str) {
        *self.hold.file.lock().unwrap() = Some(file.to_string());
    }

    /// Answers the held requests, and those to come.
    pub fn release(&self) {
        *self.hold.file.lock().unwrap() = None;
        self.hold.released.notify_all();
    }

    /// How many requests for the held file came in.
    pub fn held_requests(&self) -> usize {
        self.hold.waiting.load(Ordering::SeqCst)
    }
}

/// Answers one GET with the requested byte range, as the hub's `resolve` does.
fn answer(
    mut stream: TcpStream,
    files: &HashMap<String, (String, Vec<u8>)>,
    asked: &Mutex<Vec<String>>,
    hold: &Hold,
) {
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
    asked.lock().unwrap().push(path.to_string());
    wait_while_held(path, hold);
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

/// Blocks a request for the held file until the hold is released.
fn wait_while_held(path: &str, hold: &Hold) {
    let mut file = hold.file.lock().unwrap();
    if !file.as_ref().is_some_and(|f| path.ends_with(f.as_str())) {
        return;
    }
    hold.waiting.fetch_add(1, Ordering::SeqCst);
    while file.as_ref().is_some_and(|f| path.ends_with(f.as_str())) {
        file = hold.released.wait(file).unwrap();
    }
}
