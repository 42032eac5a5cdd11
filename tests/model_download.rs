// SPDX-License-Identifier: MPL-2.0
//! Models named by Hugging Face repo id: downloaded into the cache from a hub
//! (a local stand-in for huggingface.co, serving the tiny fixture through the
//! same `resolve` URLs and headers), found there offline afterwards, and clear
//! errors when offline or when the hub has no such repo.

mod common;

use std::path::{Path, PathBuf};
use std::process::Output;
use std::sync::atomic::Ordering;

use common::hub::{COMMIT, Hub, REPO};
use common::{TempDir, fixture};

/// `radio-embed info --model MODEL` with only the given hub settings.
fn info(model: &str, cache: &Path, endpoint: &str, offline: bool) -> Output {
    let mut cmd = common::cli();
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
