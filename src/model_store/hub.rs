// SPDX-License-Identifier: MPL-2.0
//! Downloading a model from the Hugging Face hub into the local cache, with the
//! hf-hub crate (the same cache layout `hf download` writes).

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

use hf_hub::Cache;
use hf_hub::api::sync::{ApiBuilder, ApiRepo};

use super::DownloadProgress;

/// The files a model folder needs, in download order (small one first, so a
/// wrong repo id fails before the long transfer).
const FILES: [&str; 2] = ["config.json", "model.safetensors"];

/// Passes hf-hub's byte counts on as [`DownloadProgress`], once per percent.
struct Reporter<'a> {
    file: String,
    done: u64,
    total: u64,
    sent: Option<u32>,
    report: &'a mut dyn FnMut(DownloadProgress),
}

impl Reporter<'_> {
    fn send(&mut self) {
        let percent = (self.done * 100).checked_div(self.total).unwrap_or(0) as u32;
        if self.sent != Some(percent) {
            self.sent = Some(percent);
            (self.report)(DownloadProgress {
                file: self.file.clone(),
                percent,
                total: self.total,
            });
        }
    }
}

impl hf_hub::api::Progress for Reporter<'_> {
    fn init(&mut self, size: usize, _filename: &str) {
        self.total = size as u64;
        self.done = 0;
        self.sent = None;
        self.send();
    }

    fn update(&mut self, size: usize) {
        self.done += size as u64;
        self.send();
    }

    fn finish(&mut self) {}
}

/// The hub's `repo` (`HF_ENDPOINT` picks another hub than huggingface.co),
/// cached in `cache`.
fn open(repo: &str, cache: &Path) -> Result<ApiRepo, String> {
    let mut builder = ApiBuilder::from_cache(Cache::new(cache.to_path_buf())).with_progress(false);
    if let Some(endpoint) = std::env::var("HF_ENDPOINT").ok().filter(|e| !e.is_empty()) {
        builder = builder.with_endpoint(endpoint);
    }
    let api = builder.build().map_err(|e| e.to_string())?;
    Ok(api.model(repo.to_string()))
}

/// Downloads one file of `repo` (or finds it in the cache) and returns its path.
fn fetch(
    repo: &ApiRepo,
    file: &str,
    report: &mut dyn FnMut(DownloadProgress),
) -> Result<PathBuf, String> {
    let reporter = Reporter {
        file: file.to_string(),
        done: 0,
        total: 0,
        sent: None,
        report,
    };
    // hf-hub asserts on its own cache writes; keep such a panic inside.
    std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        repo.download_with_progress(file, reporter)
    }))
    .map_err(|_| format!("{file}: the download stopped on an internal error"))?
    .map_err(|e| format!("{file}: {e}"))
}

/// Downloads `repo`'s config.json and model.safetensors into `cache` (the hub
/// cache folder) and returns the snapshot folder holding them.
pub(super) fn download(
    repo: &str,
    cache: &Path,
    report: &mut dyn FnMut(DownloadProgress),
) -> Result<PathBuf, String> {
    let repo = open(repo, cache)?;
    let mut folder = None;
    for file in FILES {
        folder = fetch(&repo, file, report)?.parent().map(Path::to_path_buf);
    }
    folder.ok_or_else(|| "the download returned no folder".into())
}

/// Downloads one file of `repo` into `cache` and returns its path.
pub(super) fn download_file(
    repo: &str,
    cache: &Path,
    file: &str,
    report: &mut dyn FnMut(DownloadProgress),
) -> Result<PathBuf, String> {
    fetch(&open(repo, cache)?, file, report)
}

/// Downloads what a SigLIP text tower needs from `repo` into `cache`:
/// config.json and tokenizer.json, then the weights. A sharded checkpoint
/// (`model.safetensors.index.json`) gets only the shards holding `text_model.*`
/// tensors, so the vision tower's gigabytes stay on the hub; otherwise
/// model.safetensors comes whole. Returns the snapshot folder.
pub(super) fn download_text_model(
    repo: &str,
    cache: &Path,
    report: &mut dyn FnMut(DownloadProgress),
) -> Result<PathBuf, String> {
    let repo = open(repo, cache)?;
    fetch(&repo, "config.json", report)?;
    let tokenizer = fetch(&repo, "tokenizer.json", report)?;
    match fetch(&repo, "model.safetensors.index.json", report) {
        Ok(index) => {
            for shard in text_shards(&index)? {
                fetch(&repo, &shard, report)?;
            }
        }
        Err(no_index) => {
            fetch(&repo, "model.safetensors", report)
                .map_err(|e| format!("{e} (and {no_index})"))?;
        }
    }
    tokenizer
        .parent()
        .map(Path::to_path_buf)
        .ok_or_else(|| "the download returned no folder".into())
}

/// The shards an index's `weight_map` names for `text_model.*` tensors.
fn text_shards(index: &Path) -> Result<BTreeSet<String>, String> {
    #[derive(serde::Deserialize)]
    struct Index {
        weight_map: std::collections::HashMap<String, String>,
    }
    let text = std::fs::read_to_string(index).map_err(|e| format!("{}: {e}", index.display()))?;
    let index: Index =
        serde_json::from_str(&text).map_err(|e| format!("{}: {e}", index.display()))?;
    let shards: BTreeSet<String> = index
        .weight_map
        .into_iter()
        .filter(|(tensor, _)| tensor.starts_with("text_model."))
        .map(|(_, shard)| shard)
        .collect();
    if shards.is_empty() {
        return Err("model.safetensors.index.json names no text_model.* tensor".into());
    }
    if let Some(bad) = shards
        .iter()
        .find(|s| s.contains('/') || s.starts_with('.'))
    {
        return Err(format!(
            "model.safetensors.index.json names a shard `{bad}` outside the repo folder"
        ));
    }
    Ok(shards)
}
