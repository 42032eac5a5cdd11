// SPDX-License-Identifier: MPL-2.0
//! `radio-embed serve`: the JSON API against `search --json`, what the server
//! refuses to open, and the page in a real browser (Debian's chromium, headless,
//! driven through chromedriver's WebDriver protocol).

mod common;
#[path = "common/serve_process.rs"]
mod serve_process;
#[path = "common/webdriver.rs"]
mod webdriver;

use std::path::{Path, PathBuf};

use common::{TempDir, cli, fixture, run_cli, text};
use gst::prelude::*;
use serde_json::{Value, json};
use serve_process::Server;

/// Runs a gst-launch line to EOS.
fn play(launch: &str) {
    gst::init().unwrap();
    let pipeline = gst::parse::launch(launch)
        .unwrap()
        .downcast::<gst::Pipeline>()
        .unwrap();
    pipeline.set_state(gst::State::Playing).unwrap();
    common::finish_at_eos(&pipeline);
}

/// A WebM (VP8) clip a browser plays: three still scenes (smpte, checkers,
/// red) of 2 s each at 10 frames/s.
fn make_webm(path: &Path) {
    let branch = |pattern: &str| {
        format!(
            "videotestsrc pattern={pattern} num-buffers=20 ! \
             video/x-raw,width=160,height=120,framerate=10/1 ! c. "
        )
    };
    play(&format!(
        "concat name=c ! videoconvert ! vp8enc deadline=1 keyframe-max-dist=10 ! webmmux ! \
         filesink location={} {}{}{}",
        path.display(),
        branch("smpte"),
        branch("checkers-8"),
        branch("red")
    ));
}

/// A PNG of one videotestsrc pattern, as the clip shows it.
fn pattern_png(pattern: &str, path: &Path) {
    play(&format!(
        "videotestsrc pattern={pattern} num-buffers=1 ! video/x-raw,width=160,height=120 ! \
         pngenc ! filesink location={}",
        path.display()
    ));
}

/// Indexes `clips` into `db` with the CLI's defaults (dedup and thumbnails on).
fn index(db: &Path, clips: &[&Path]) {
    let model = fixture("tiny-so400m").display().to_string();
    let mut args = vec!["index".to_string()];
    args.extend(clips.iter().map(|c| c.display().to_string()));
    args.extend(
        [
            "--db",
            &db.display().to_string(),
            "--fps",
            "5",
            "--model",
            &model,
        ]
        .map(String::from),
    );
    args.extend(["--resolution", "64"].map(String::from));
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let out = run_cli(&args);
    assert!(out.status.success(), "{}", text(&out.stderr));
}

/// `radio-embed search --json` with `args`.
fn search_json(db: &Path, png: &Path, args: &[&str]) -> Value {
    let out = cli()
        .args([
            "search",
            "--db",
            db.to_str().unwrap(),
            "--image",
            png.to_str().unwrap(),
            "--json",
        ])
        .args(args)
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", text(&out.stderr));
    serde_json::from_slice(&out.stdout).unwrap()
}

/// The fields `search --json` gives, of each result.
fn ranking(results: &Value) -> Vec<Value> {
    results
        .as_array()
        .unwrap()
        .iter()
        .map(|r| {
            json!([
                r["source"],
                r["frame_index"],
                r["score"],
                r["start_ns"],
                r["end_ns"],
                r["pts_ns"]
            ])
        })
        .collect()
}

struct Indexed {
    dir: TempDir,
    clip: PathBuf,
    db: PathBuf,
}

fn indexed(tag: &str, db: &str) -> Indexed {
    let dir = TempDir::new(tag);
    let clip = dir.join("scenes.webm");
    make_webm(&clip);
    let db = dir.join(db);
    index(&db, &[&clip]);
    Indexed { dir, clip, db }
}

fn api_ranks_like_search_json(db: &str) {
    let idx = indexed("serve-api", db);
    let png = idx.dir.join("checkers.png");
    pattern_png("checkers-8", &png);
    let server = Server::start(&idx.db, &[]);

    let info = server.json("/api/info");
    let source = format!("file://{}", idx.clip.canonicalize().unwrap().display());
    assert_eq!(
        info["sources"],
        json!([{ "source": source, "media": "/media/0" }])
    );
    assert_eq!(info["rows"], 3, "{info}");
    assert_eq!(info["text"], false);

    // Moments and frames, with and without filters: the same ranking and
    // scores as the CLI, bit for bit.
    for (query, args) in [
        ("k=3", vec!["-k", "3"]),
        ("k=2&frames=true", vec!["-k", "2", "--frames"]),
        ("after=2&before=4", vec!["--after", "2", "--before", "4"]),
        ("min_score=0.9", vec!["--min-score", "0.9"]),
        ("source=*nowhere*", vec!["--source", "*nowhere*"]),
    ] {
        let api = server.search_image(&png, query);
        let cli = search_json(&idx.db, &png, &args);
        assert_eq!(ranking(&api), ranking(&cli), "{query}");
    }
    let best = server.search_image(&png, "k=3");
    let first = &best[0];
    assert_eq!(first["start_ns"], 2_000_000_000u64, "{best}");
    assert_eq!(first["end_ns"], 3_800_000_000u64, "{best}");
    assert_eq!(first["media"], "/media/0");
    assert_eq!(
        server
            .search_image(&png, "after=4")
            .as_array()
            .unwrap()
            .len(),
        1
    );
    assert_eq!(server.search_image(&png, "source=*nowhere*"), json!([]));

    // Its thumbnail is the checkers frame: red and green squares, half each.
    let (status, kind, jpeg) = server.get(first["thumbnail"].as_str().unwrap());
    assert_eq!((status, kind.as_str()), (200, "image/jpeg"));
    let thumb = image::load_from_memory(&jpeg).unwrap().to_rgb8();
    assert_eq!(thumb.dimensions(), (160, 120));
    let n = thumb.pixels().len() as f64;
    let mean = |c: usize| thumb.pixels().map(|p| p[c] as f64).sum::<f64>() / n;
    let (r, g, b) = (mean(0), mean(1), mean(2));
    assert!(
        (90.0..170.0).contains(&r) && (90.0..170.0).contains(&g) && b < 40.0,
        "{r} {g} {b}"
    );

    // More like this: the stored frame finds itself first, scoring 1.
    let like = server.json(&format!(
        "/api/similar?like_source={}&like_frame={}&k=1",
        form(&source),
        first["frame_index"]
    ));
    assert_eq!(like[0]["frame_index"], first["frame_index"]);
    assert!(
        (like[0]["score"].as_f64().unwrap() - 1.0).abs() < 1e-5,
        "{like}"
    );
    let (status, _, body) = server.get(&format!(
        "/api/similar?like_source={}&like_frame=999",
        form(&source)
    ));
    assert_eq!(status, 404, "{}", text(&body));

    // Bad parameters are a 400 with a message.
    let response = ureq::post(&format!("{}/api/search?after=soon", server.url))
        .send_bytes(&std::fs::read(&png).unwrap());
    let Err(ureq::Error::Status(400, response)) = response else {
        panic!("not a 400");
    };
    let body: Value = response.into_json().unwrap();
    assert!(
        body["error"]
            .as_str()
            .unwrap()
            .contains("`soon` is not a time"),
        "{body}"
    );
}

fn form(text: &str) -> String {
    form_urlencoded::byte_serialize(text.as_bytes()).collect()
}

#[test]
fn the_api_ranks_like_search_json_sqlite() {
    api_ranks_like_search_json("idx.sqlite");
}

#[test]
fn the_api_ranks_like_search_json_parquet() {
    api_ranks_like_search_json("idx.parquet");
}

#[test]
fn a_text_query_ranks_like_search_text_json() {
    let dir = TempDir::new("serve-text");
    let clip = dir.join("scenes.webm");
    make_webm(&clip);
    let db = dir.join("idx.sqlite");
    common::index_with_siglip2g(&clip, &db, &[]);
    let text_model = fixture("textsearch/siglip-text");
    let server = Server::start(&db, &["--text-model", text_model.to_str().unwrap()]);
    assert_eq!(server.json("/api/info")["text"], true);
    for params in ["k=5", "k=4&frames=true&after=1"] {
        let api = server.json(&format!("/api/search?text={}&{params}", form("a RED car")));
        let mut args = vec![
            "--text",
            "a RED car",
            "--text-model",
            text_model.to_str().unwrap(),
        ];
        args.extend(
            params
                .split('&')
                .flat_map(|p| match p.split_once('=').unwrap() {
                    ("k", k) => vec!["-k", k],
                    ("frames", _) => vec!["--frames"],
                    ("after", t) => vec!["--after", t],
                    other => panic!("{other:?}"),
                }),
        );
        let out = cli()
            .args(["search", "--db", db.to_str().unwrap(), "--json"])
            .args(&args)
            .output()
            .unwrap();
        assert!(out.status.success(), "{}", text(&out.stderr));
        let cli: Value = serde_json::from_slice(&out.stdout).unwrap();
        assert!(!cli.as_array().unwrap().is_empty());
        assert_eq!(ranking(&api), ranking(&cli), "{params}");
    }
    // An index without the vectors says how to build one.
    let plain = dir.join("plain.sqlite");
    index(&plain, &[&clip]);
    let server = Server::start(&plain, &[]);
    let (status, _, body) = server.get("/api/search?text=car");
    assert_eq!(status, 400);
    assert!(
        text(&body).contains("--adaptor siglip2-g"),
        "{}",
        text(&body)
    );
}

#[test]
fn the_server_opens_only_the_index_sources_and_refuses_big_uploads() {
    let idx = indexed("serve-security", "idx.sqlite");
    // A second source that is gone by the time the page asks for it.
    let gone = idx.dir.join("gone.webm");
    std::fs::copy(&idx.clip, &gone).unwrap();
    index(&idx.db, &[&gone]);
    std::fs::remove_file(&gone).unwrap();
    let server = Server::start(&idx.db, &["--max-upload-mib", "1"]);
    let info = server.json("/api/info");
    let sources = info["sources"].as_array().unwrap();
    assert_eq!(sources.len(), 2, "{info}");
    assert!(
        sources[0]["source"]
            .as_str()
            .unwrap()
            .ends_with("gone.webm")
    );
    assert_eq!(sources[0]["media"], Value::Null);

    // Range requests on the indexed file: exactly its bytes.
    let clip = std::fs::read(&idx.clip).unwrap();
    let (status, kind, body) =
        server.request(ureq::get(&format!("{}/media/1", server.url)).set("Range", "bytes=100-199"));
    assert_eq!((status, kind.as_str()), (206, "video/webm"));
    assert_eq!(body, clip[100..200]);
    let (status, _, body) = server.get("/media/1");
    assert_eq!((status, body.len()), (200, clip.len()));

    // Nothing else: a path, a number out of range, a source that is no file.
    for path in [
        "/media/../../etc/passwd",
        "/media/..%2F..%2Fetc%2Fpasswd",
        "/media/%2Fetc%2Fpasswd",
        "/media/2",
        "/media/-1",
        "/etc/passwd",
        "/api/../../etc/passwd",
    ] {
        let status = server.raw_status(path);
        assert!(status.contains(" 404 "), "{path}: {status}");
    }
    assert!(server.raw_status("/media/0").contains(" 403 "));

    // An upload over --max-upload-mib is refused with 413, before its body is
    // read: the request's headers announce 2 MiB and no body follows.
    let status = server.raw(&format!(
        "POST /api/search HTTP/1.1\r\nContent-Type: image/png\r\nContent-Length: {}\r\n",
        2 << 20
    ));
    assert!(status.contains(" 413 "), "{status}");
    let (status, _, _) = server.get("/api/thumbnail?source=nowhere&frame=0");
    assert_eq!(status, 404);
}

#[test]
fn a_browser_finds_the_scene_of_an_uploaded_frame_and_plays_it_from_there() {
    let idx = indexed("serve-browser", "idx.sqlite");
    let png = idx.dir.join("checkers.png");
    pattern_png("checkers-8", &png);
    let server = Server::start(&idx.db, &[]);
    let browser = webdriver::Browser::start();
    browser.call("POST", "/url", json!({ "url": format!("{}/", server.url) }));
    browser.wait_for(
        "return document.getElementById('index-info').textContent.includes('3 rows')",
        30,
    );

    // Upload the frame through the file picker.
    let picker = browser.element("#image");
    browser.call(
        "POST",
        &format!("/element/{picker}/value"),
        json!({ "text": png.canonicalize().unwrap().display().to_string() }),
    );
    browser.wait_for(
        "return document.querySelectorAll('.result').length === 3",
        60,
    );
    let first = browser.script(
        "const r = document.querySelector('.result'); \
         return { start: r.dataset.start, frame: r.dataset.frame, \
                  text: r.innerText, thumb: r.querySelector('img').src };",
    );
    assert_eq!(first["start"], "2000000000", "{first}");
    assert!(
        first["text"]
            .as_str()
            .unwrap()
            .contains("00:00:02.000 – 00:00:03.800"),
        "{first}"
    );
    browser.wait_for(
        "return [...document.querySelectorAll('.result img')] \
         .every(i => i.complete && i.naturalWidth === 160)",
        30,
    );

    // Click it: the player loads the clip from the server and seeks to 2 s.
    let card = browser.element(".result");
    browser.call("POST", &format!("/element/{card}/click"), json!({}));
    browser.wait_for(
        "const p = document.getElementById('player'); \
         return !p.hidden && p.readyState >= 1 && p.currentTime >= 2.0 && p.currentTime < 3.9",
        60,
    );
    let src = browser.script("return document.getElementById('player').currentSrc");
    assert_eq!(src, format!("{}/media/0", server.url));

    // The page as it looks now, for the README.
    browser.script("document.getElementById('player').pause(); window.scrollTo(0, 0)");
    let png = browser.call("GET", "/screenshot", Value::Null);
    let shot = base64_decode(png.as_str().unwrap());
    let out = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("serve-page.png");
    std::fs::write(&out, &shot).unwrap();
    let decoded = image::load_from_memory(&shot).unwrap();
    assert!(
        decoded.width() >= 1000,
        "screenshot {}x{}",
        decoded.width(),
        decoded.height()
    );
}

fn base64_decode(text: &str) -> Vec<u8> {
    use base64::Engine;
    base64::engine::general_purpose::STANDARD
        .decode(text)
        .unwrap()
}
