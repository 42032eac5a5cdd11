// SPDX-License-Identifier: MPL-2.0
//! Downloading a model from the Hugging Face hub into the local cache, with the
//! hf-hub crate (the same cache layout `hf download` writes).

use std::path::{Path, PathBuf};

use hf_hub::Cache;
use hf_hub::api::sync::ApiBuilder;

use super::DownloadProgress;

/// The files a model folder needs, in download order (small one first, so a
/// wrong repo id fails before the long transfer).
const FILES: [&str; 2] = ["config.json", "model.safetensors"];

/// Passes hf-hub's byte counts on as [`DownloadProgress`], once per percent.
struct Reporter<'a> {
    file: &'static str,
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
                file: self.file,
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

/// Downloads `repo`'s config.json and model.safetensors into `cache` (the hub
/// cache folder; `HF_ENDPOINT` picks another hub) and returns the snapshot
/// folder holding them.
pub(super) fn download(
    repo: &str,
    cache: &Path,
    report: &mut dyn FnMut(DownloadProgress),
) -> Result<PathBuf, String> {
    let mut builder = ApiBuilder::from_cache(Cache::new(cache.to_path_buf())).with_progress(false);
    if let Some(endpoint) = std::env::var("HF_ENDPOINT").ok().filter(|e| !e.is_empty()) {
        builder = builder.with_endpoint(endpoint);
    }
    let api = builder.build().map_err(|e| e.to_string())?;
    let repo = api.model(repo.to_string());
    let mut folder = None;
    for file in FILES {
        let reporter = Reporter {
            file,
            done: 0,
            total: 0,
            sent: None,
            report: &mut *report,
        };
        // hf-hub asserts on its own cache writes; keep such a panic inside.
        let fetched = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
            repo.download_with_progress(file, reporter)
        }))
        .map_err(|_| format!("{file}: the download stopped on an internal error"))?
        .map_err(|e| format!("{file}: {e}"))?;
        folder = fetched.parent().map(Path::to_path_buf);
    }
    folder.ok_or_else(|| "the download returned no folder".into())
}
