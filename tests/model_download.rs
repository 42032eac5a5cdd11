// SPDX-License-Identifier: MPL-2.0
//! Models named by Hugging Face repo id: downloaded into the cache from a hub
//! (a local stand-in for huggingface.co, serving the tiny fixture through the
//! same `resolve` URLs and headers), found there offline afterwards, and clear
//! errors when offline or when the hub has no such repo.

mod common;

use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::sync::atomic::Ordering;

use common::hub::{COMMIT, Hub, REPO};
use common::{TempDir, fixture};

/// `radio-embed` with only the given hub settings: cache, hub address, offline
/// or not, and no proxy.
fn cli_with_hub(cache: &Path, endpoint: &str, offline: bool) -> Command {
    let mut cmd = common::cli();
    cmd.env("HF_HUB_CACHE", cache)
        .env("HF_ENDPOINT", endpoint)
        .env_remove("HF_HUB_OFFLINE");
    for proxy in ["http_proxy", "HTTP_PROXY", "all_proxy", "ALL_PROXY"] {
        cmd.env_remove(proxy);
    }
    if offline {
        cmd.env("HF_HUB_OFFLINE", "1");
    }
    cmd
}

/// `radio-embed info --model MODEL` with only the given hub settings.
fn info(model: &str, cache: &Path, endpoint: &str, offline: bool) -> Output {
    let mut cmd = cli_with_hub(cache, endpoint, offline);
    cmd.args(["info", "--model", model]).output().unwrap()
}

/// An empty Hugging Face cache folder, removed with the returned guard.
fn scratch(tag: &str) -> (TempDir, PathBuf) {
    let dir = TempDir::new(&format!("hub-{tag}"));
    let cache = dir.join("cache");
    (dir, cache)
}

#[test]
fn a_repo_id_is_downloaded_once_then_found_offline() {
    let hub = Hub::start();
    let (_dir, cache) = scratch("cache");
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
    let direct = common::cli()
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
}

#[test]
fn offline_and_unknown_repos_are_clear_errors() {
    let hub = Hub::start();
    let (_dir, cache) = scratch("errors");

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
}

/// The repo id the text-model tests serve the SigLIP fixture as.
const TEXT_REPO: &str = "test-org/tiny-siglip";

/// `radio-embed embed-text --text-model MODEL` of one text into `output`, with
/// only the given hub settings.
fn embed_text(model: &str, cache: &Path, endpoint: &str, output: &Path) -> Output {
    let mut cmd = cli_with_hub(cache, endpoint, false);
    cmd.args(["embed-text", "--text-model", model, "--output"])
        .arg(output)
        .arg("a red car")
        .output()
        .unwrap()
}

/// A file of the SigLIP text fixture, to serve.
fn siglip_file(name: &str) -> (String, Vec<u8>) {
    let bytes = std::fs::read(fixture("textsearch/siglip-text").join(name)).unwrap();
    (name.to_string(), bytes)
}

/// The embedding `embed-text` writes for the fixture folder itself.
fn direct_embedding(dir: &TempDir) -> Vec<u8> {
    let output = dir.join("direct.safetensors");
    let model = fixture("textsearch/siglip-text");
    let out = embed_text(
        model.to_str().unwrap(),
        &dir.join("unused"),
        "http://127.0.0.1:9",
        &output,
    );
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    std::fs::read(output).unwrap()
}

#[test]
fn a_text_model_is_downloaded_by_repo_id() {
    let hub = Hub::serving(
        TEXT_REPO,
        ["config.json", "tokenizer.json", "model.safetensors"]
            .map(siglip_file)
            .into(),
    );
    let (dir, cache) = scratch("text");
    let output = dir.join("out.safetensors");
    let out = embed_text(TEXT_REPO, &cache, &hub.endpoint, &output);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stderr}");
    assert!(
        stderr.contains(&format!("downloading {TEXT_REPO} model.safetensors: 100 %")),
        "{stderr}"
    );
    assert_eq!(std::fs::read(&output).unwrap(), direct_embedding(&dir));
    // No index on the hub: the single file was fetched after the index's 404.
    let paths = hub.paths.lock().unwrap().clone();
    let asked = |file: &str| {
        paths
            .iter()
            .any(|p| p.ends_with(&format!("/resolve/main/{file}")))
    };
    assert!(
        asked("model.safetensors.index.json") && asked("model.safetensors"),
        "{paths:?}"
    );
}

#[test]
fn a_sharded_text_model_downloads_only_the_text_shards() {
    // The fixture's tensors in two shards: text_model.* and the rest (the vision
    // tower and the logit scale), with the index the hub would serve.
    let tensors = candle_core::safetensors::load(
        fixture("textsearch/siglip-text/model.safetensors"),
        &candle_core::Device::Cpu,
    )
    .unwrap();
    let (text, rest): (Vec<_>, Vec<_>) = tensors
        .into_iter()
        .partition(|(k, _)| k.starts_with("text_model."));
    assert!(
        !rest.is_empty(),
        "the fixture has no non-text tensors to leave out"
    );
    let dir = TempDir::new("hub-shards");
    let mut files = vec![siglip_file("config.json"), siglip_file("tokenizer.json")];
    let mut weight_map = serde_json::Map::new();
    for (shard, part) in [
        ("model-00001-of-00002.safetensors", text),
        ("model-00002-of-00002.safetensors", rest),
    ] {
        for (name, _) in &part {
            weight_map.insert(name.clone(), shard.into());
        }
        let map: std::collections::HashMap<_, _> = part.into_iter().collect();
        candle_core::safetensors::save(&map, dir.join(shard)).unwrap();
        files.push((shard.to_string(), std::fs::read(dir.join(shard)).unwrap()));
    }
    let index = serde_json::json!({ "metadata": {}, "weight_map": weight_map });
    files.push((
        "model.safetensors.index.json".into(),
        index.to_string().into_bytes(),
    ));
    let hub = Hub::serving(TEXT_REPO, files);

    let cache = dir.join("cache");
    let output = dir.join("out.safetensors");
    let out = embed_text(TEXT_REPO, &cache, &hub.endpoint, &output);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(std::fs::read(&output).unwrap(), direct_embedding(&dir));
    let paths = hub.paths.lock().unwrap().clone();
    assert!(
        paths
            .iter()
            .any(|p| p.ends_with("model-00001-of-00002.safetensors")),
        "{paths:?}"
    );
    assert!(
        !paths
            .iter()
            .any(|p| p.ends_with("model-00002-of-00002.safetensors")),
        "the vision shard was downloaded: {paths:?}"
    );
}

#[test]
fn a_text_model_the_hub_lacks_is_a_clear_error() {
    let hub = Hub::serving(TEXT_REPO, Vec::new());
    let (dir, cache) = scratch("text-missing");
    let out = embed_text(
        "test-org/no-such-siglip",
        &cache,
        &hub.endpoint,
        &dir.join("x"),
    );
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("text model `test-org/no-such-siglip` not found"),
        "{err}"
    );
    assert!(
        err.contains("downloading it failed: config.json: "),
        "{err}"
    );
    assert!(
        err.contains("hf download test-org/no-such-siglip --include"),
        "{err}"
    );
}

#[test]
fn the_adaptor_checkpoint_is_downloaded_beside_a_downloaded_model() {
    // The tiny model's repo, now with the checkpoint the C-RADIO repos ship,
    // named after config.json's `version` as theirs are.
    let checkpoint = fixture("textsearch/c-radio_v4-tiny_half.pth.tar");
    let mut files: Vec<(String, Vec<u8>)> = ["config.json", "model.safetensors"]
        .map(|name| {
            (
                name.to_string(),
                std::fs::read(fixture("tiny-so400m").join(name)).unwrap(),
            )
        })
        .into();
    files.push((
        "c-radio_v4-so400m_half.pth.tar".into(),
        std::fs::read(&checkpoint).unwrap(),
    ));
    let hub = Hub::serving(REPO, files);
    let (dir, cache) = scratch("adaptor");
    let input = fixture("tiny-so400m/cases.safetensors");
    let forward = |model: &str, extra: &[&std::ffi::OsStr], output: &Path, offline: bool| {
        let mut cmd = cli_with_hub(&cache, &hub.endpoint, offline);
        cmd.args([
            "forward",
            "--model",
            model,
            "--adaptor",
            "siglip2-g",
            "--input",
        ])
        .arg(&input)
        .arg("--output")
        .arg(output)
        .args(extra)
        .output()
        .unwrap()
    };

    // Offline, the model is not there yet: nothing is fetched.
    let out = forward(REPO, &[], &dir.join("x"), true);
    assert!(!out.status.success());

    let downloaded = dir.join("downloaded.safetensors");
    let out = forward(REPO, &[], &downloaded, false);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stderr}");
    assert!(
        stderr.contains("c-radio_v4-so400m_half.pth.tar: 100 %"),
        "{stderr}"
    );
    let named = dir.join("named.safetensors");
    let model = fixture("tiny-so400m");
    let out = forward(
        model.to_str().unwrap(),
        &["--adaptor-checkpoint".as_ref(), checkpoint.as_os_str()],
        &named,
        false,
    );
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let (a, b) = (
        std::fs::read(&downloaded).unwrap(),
        std::fs::read(&named).unwrap(),
    );
    assert!(a == b, "the downloaded checkpoint gives other outputs");

    // Once cached, it is found offline.
    let out = forward(REPO, &[], &dir.join("again.safetensors"), true);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

#[test]
fn an_adaptor_checkpoint_the_hub_lacks_is_a_clear_error() {
    let hub = Hub::start();
    let (dir, cache) = scratch("adaptor-missing");
    let out = cli_with_hub(&cache, &hub.endpoint, false)
        .args([
            "forward",
            "--model",
            REPO,
            "--adaptor",
            "siglip2-g",
            "--input",
        ])
        .arg(fixture("tiny-so400m/cases.safetensors"))
        .arg("--output")
        .arg(dir.join("x"))
        .output()
        .unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("no adaptor checkpoint in "), "{err}");
    assert!(
        err.contains("(downloading it failed: c-radio_v4-so400m_half.pth.tar: "),
        "{err}"
    );
    assert!(err.contains("status code 404"), "{err}");
    assert!(
        err.contains(&format!("hf download {REPO} <file>.pth.tar")),
        "{err}"
    );
}
