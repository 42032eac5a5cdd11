// SPDX-License-Identifier: MPL-2.0
//! Finding a model by name and sharing loaded models between elements.
//!
//! A model is named by a local folder (config.json + model.safetensors) or by a
//! Hugging Face repo id (`nvidia/C-RADIOv4-SO400M`) found in the local Hugging Face
//! cache or, with the `hf-hub` feature (on by default) and unless `HF_HUB_OFFLINE`
//! is set, downloaded into it. Elements in one process that ask for the same
//! model, device and dtype get the same [`RadioModel`], so the weights are in
//! memory once.

#[cfg(feature = "hf-hub")]
mod hub;

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, LazyLock, Mutex, MutexGuard, Weak};

use candle_core::DType;

use crate::model::{Config, ModelError, RadioModel, TorchCheckpoint, parse_device};

/// Why a model name could not be turned into a folder.
#[derive(Debug, thiserror::Error)]
pub enum LocateError {
    /// Neither a folder nor a cached Hugging Face repo.
    #[error(
        "model `{name}` not found: it is not a folder with config.json and model.safetensors, \
         and the Hugging Face cache has no snapshot of it (looked in {cache}); {download}. \
         Download it with `hf download {name}` (pip install huggingface_hub), or set \
         model=/path/to/folder"
    )]
    NotFound {
        /// The name as given.
        name: String,
        /// The cache folder searched.
        cache: String,
        /// Why it was not downloaded either.
        download: String,
    },
    /// A text model that is neither a folder nor in (nor downloadable into) the
    /// Hugging Face cache.
    #[error(
        "text model `{name}` not found: it is not a folder with config.json, tokenizer.json \
         and model.safetensors, and the Hugging Face cache ({cache}) has no snapshot of it; \
         {download}. Download it with `hf download {name} --include '*.json' \
         '*.safetensors'`, or pass a folder"
    )]
    TextModelNotFound {
        /// The name as given.
        name: String,
        /// The cache folder searched.
        cache: String,
        /// Why it was not downloaded either.
        download: String,
    },
    /// A model folder without the torch.hub checkpoint that holds the adaptor heads.
    #[error(
        "no adaptor checkpoint in {dir}: the adaptor heads are in the torch.hub checkpoint \
         the model's repo ships beside model.safetensors (c-radio_v4-so400m_half.pth.tar, \
         c-radio_v4-h_half.pth.tar){detail}; download it there (`hf download {repo_hint} \
         <file>.pth.tar`) or name the file explicitly"
    )]
    NoAdaptorCheckpoint {
        /// The folder searched.
        dir: String,
        /// How to name the repo in the hint.
        repo_hint: String,
        /// The candidates when there were several, or why none was downloaded.
        detail: String,
    },
}

/// How far a model download has come, reported once per whole percent of
/// each file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DownloadProgress {
    /// The file being downloaded (`config.json`, `model.safetensors`).
    pub file: String,
    /// Percent of it downloaded so far (0..=100).
    pub percent: u32,
    /// Its size in bytes.
    pub total: u64,
}

/// Resolves a SigLIP text model (a folder with config.json, tokenizer.json and
/// model.safetensors or its index) by folder, by repo id in the Hugging Face
/// cache, or (as [`locate`] does for models) downloaded into that cache: only the
/// files and shards the text tower needs, with progress to `report`.
pub fn locate_text_model(
    name: &str,
    report: &mut dyn FnMut(DownloadProgress),
) -> Result<PathBuf, LocateError> {
    let cache = hf_cache_dir();
    if let Some(dir) = find_where(name, &cache, is_text_model_dir) {
        return Ok(dir);
    }
    download(name, &cache, Fetch::TextModel, report).map_err(|download| {
        LocateError::TextModelNotFound {
            name: name.to_string(),
            cache: cache.display().to_string(),
            download,
        }
    })
}

fn is_text_model_dir(dir: &Path) -> bool {
    dir.join("config.json").is_file()
        && dir.join("tokenizer.json").is_file()
        && (dir.join("model.safetensors").is_file()
            || dir.join("model.safetensors.index.json").is_file())
}

/// The torch.hub checkpoint (`*.pth.tar`) in a model folder or snapshot, which holds
/// the adaptor heads (`siglip2-g`, …) that model.safetensors lacks. Exactly one must
/// be there; with several, the caller names one. A snapshot of the Hugging Face
/// cache without one gets its repo's `<version>_half.pth.tar` (the name the C-RADIO
/// repos give it, `version` from config.json) downloaded beside it, with progress
/// to `report`, unless `HF_HUB_OFFLINE` is set.
pub fn adaptor_checkpoint(
    dir: &Path,
    report: &mut dyn FnMut(DownloadProgress),
) -> Result<PathBuf, LocateError> {
    let mut found: Vec<PathBuf> = std::fs::read_dir(dir)
        .into_iter()
        .flatten()
        .flatten()
        .map(|entry| entry.path())
        .filter(|path| path.to_string_lossy().ends_with(".pth.tar"))
        .collect();
    found.sort();
    let repo = cached_repo(dir);
    let missing = |detail: String| LocateError::NoAdaptorCheckpoint {
        dir: dir.display().to_string(),
        repo_hint: repo
            .as_ref()
            .map_or("nvidia/C-RADIOv4-SO400M".into(), |(id, _)| id.clone()),
        detail,
    };
    match found.len() {
        1 => Ok(found.remove(0)),
        0 => {
            let Some((id, cache)) = &repo else {
                return Err(missing(String::new()));
            };
            let version = Config::from_file(&dir.join("config.json"))
                .ok()
                .and_then(|c| c.version)
                .ok_or_else(|| {
                    missing(" (config.json has no `version` to name the file by)".into())
                })?;
            let file = format!("{version}_half.pth.tar");
            download(id, cache, Fetch::File(&file), report).map_err(|e| missing(format!(" ({e})")))
        }
        _ => {
            let names: Vec<String> = found.iter().map(|p| p.display().to_string()).collect();
            Err(missing(format!(" (it has several: {})", names.join(", "))))
        }
    }
}

/// The repo id and cache folder of a Hugging Face cache snapshot
/// (`<cache>/models--org--name/snapshots/<revision>`).
fn cached_repo(dir: &Path) -> Option<(String, PathBuf)> {
    let snapshots = dir.parent()?;
    if snapshots.file_name()? != "snapshots" {
        return None;
    }
    let repo_dir = snapshots.parent()?;
    let (org, name) = repo_dir
        .file_name()?
        .to_str()?
        .strip_prefix("models--")?
        .split_once("--")?;
    Some((format!("{org}/{name}"), repo_dir.parent()?.to_path_buf()))
}

/// The Hugging Face hub cache folder: `HF_HUB_CACHE`, else `HF_HOME/hub`, else
/// `XDG_CACHE_HOME/huggingface/hub`, else `~/.cache/huggingface/hub`.
pub fn hf_cache_dir() -> PathBuf {
    let var = |name: &str| {
        std::env::var_os(name)
            .filter(|v| !v.is_empty())
            .map(PathBuf::from)
    };
    var("HF_HUB_CACHE")
        .or_else(|| var("HF_HOME").map(|h| h.join("hub")))
        .or_else(|| var("XDG_CACHE_HOME").map(|c| c.join("huggingface/hub")))
        .or_else(|| var("HOME").map(|h| h.join(".cache/huggingface/hub")))
        .unwrap_or_else(|| PathBuf::from(".cache/huggingface/hub"))
}

fn is_model_dir(dir: &Path) -> bool {
    dir.join("config.json").is_file() && dir.join("model.safetensors").is_file()
}

/// Resolves a model name to a folder holding config.json and model.safetensors:
/// the name itself, a snapshot in the Hugging Face cache ([`hf_cache_dir`]), or
/// (for an `org/name` repo id, with the `hf-hub` feature, when `HF_HUB_OFFLINE`
/// is not set) a fresh download into that cache, whose progress goes to `report`.
pub fn locate(
    name: &str,
    report: &mut dyn FnMut(DownloadProgress),
) -> Result<PathBuf, LocateError> {
    let cache = hf_cache_dir();
    if let Some(dir) = find(name, &cache) {
        return Ok(dir);
    }
    download(name, &cache, Fetch::Model, report).map_err(|download| LocateError::NotFound {
        name: name.to_string(),
        cache: cache.display().to_string(),
        download,
    })
}

/// What [`download`] fetches from a repo.
#[derive(Clone, Copy)]
#[cfg_attr(not(feature = "hf-hub"), allow(dead_code))]
enum Fetch<'a> {
    /// config.json and model.safetensors.
    Model,
    /// What a SigLIP text tower needs.
    TextModel,
    /// One file.
    File(&'a str),
}

/// Downloads `what` of the repo `name` into `cache` (the snapshot folder, or the
/// file for [`Fetch::File`]), or says why it was not: not a repo id, offline, no
/// downloader built in, or the download failed.
fn download(
    name: &str,
    cache: &Path,
    what: Fetch,
    report: &mut dyn FnMut(DownloadProgress),
) -> Result<PathBuf, String> {
    if !is_repo_id(name) {
        return Err(format!(
            "`{name}` is not a Hugging Face repo id (org/name) to download either"
        ));
    }
    if offline() {
        return Err("HF_HUB_OFFLINE is set, so it was not downloaded".into());
    }
    #[cfg(not(feature = "hf-hub"))]
    {
        let _ = (cache, what, report);
        Err("this build cannot download (it was built without the `hf-hub` feature)".into())
    }
    #[cfg(feature = "hf-hub")]
    {
        let fetched = match what {
            Fetch::Model => hub::download(name, cache, report),
            Fetch::TextModel => hub::download_text_model(name, cache, report),
            Fetch::File(file) => hub::download_file(name, cache, file, report),
        };
        fetched.map_err(|e| format!("downloading it failed: {e}"))
    }
}

/// `HF_HUB_OFFLINE` set to a true value, as huggingface_hub reads it.
fn offline() -> bool {
    std::env::var("HF_HUB_OFFLINE").is_ok_and(|v| {
        matches!(
            v.trim().to_ascii_lowercase().as_str(),
            "1" | "true" | "yes" | "on"
        )
    })
}

/// `org/name`, as the hub spells repo ids (and no local path would).
fn is_repo_id(name: &str) -> bool {
    let valid = |part: &str| {
        !part.is_empty()
            && !part.starts_with(['.', '-'])
            && part
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || "-_.".contains(c))
    };
    matches!(name.split_once('/'), Some((org, repo)) if valid(org) && valid(repo))
}

/// The folder itself, or the cached snapshot that `refs/main` names, else the
/// newest complete snapshot.
fn find(name: &str, cache: &Path) -> Option<PathBuf> {
    find_where(name, cache, is_model_dir)
}

/// [`find`] for folders that `is_model_dir` accepts.
fn find_where(name: &str, cache: &Path, is_model_dir: fn(&Path) -> bool) -> Option<PathBuf> {
    let direct = PathBuf::from(name);
    if is_model_dir(&direct) {
        return Some(direct);
    }
    let repo = cache.join(format!("models--{}", name.replace('/', "--")));
    let by_ref = std::fs::read_to_string(repo.join("refs/main"))
        .ok()
        .map(|rev| repo.join("snapshots").join(rev.trim()));
    let any_snapshot = || {
        let mut dirs: Vec<PathBuf> = std::fs::read_dir(repo.join("snapshots"))
            .ok()?
            .filter_map(|e| e.ok().map(|e| e.path()))
            .filter(|p| is_model_dir(p))
            .collect();
        dirs.sort();
        dirs.pop()
    };
    by_ref.filter(|p| is_model_dir(p)).or_else(any_snapshot)
}

/// A model's folder, device, dtype, and its adaptor (name and checkpoint), if any.
type CacheKey = (PathBuf, String, DType, Option<(String, PathBuf)>);

/// One model's slot: its lock is held while that model loads, so callers for
/// the same model wait for one load and callers for others do not wait at all.
type Slot = Arc<Mutex<Weak<RadioModel>>>;

static MODELS: LazyLock<Mutex<HashMap<CacheKey, Slot>>> =
    LazyLock::new(|| Mutex::new(HashMap::new()));
static LOADS: LazyLock<Mutex<HashMap<PathBuf, usize>>> =
    LazyLock::new(|| Mutex::new(HashMap::new()));
/// Models kept loaded while any [`KeepLoaded`] guard lives, and how many do.
static KEPT: Mutex<Kept> = Mutex::new(Kept {
    guards: 0,
    models: Vec::new(),
});

struct Kept {
    guards: usize,
    models: Vec<Arc<RadioModel>>,
}

fn kept() -> MutexGuard<'static, Kept> {
    KEPT.lock().unwrap_or_else(|e| e.into_inner())
}

/// While this guard lives, every model [`shared_model`] hands out stays loaded
/// even when no element holds it, so a process that runs one pipeline after
/// another (`radio-embed index a.mp4 b.mp4`) loads the weights once.
#[must_use = "models stay loaded only while the guard lives"]
pub struct KeepLoaded(());

/// Starts keeping loaded models until the returned guard (and every other
/// live one) is dropped.
pub fn keep_loaded() -> KeepLoaded {
    kept().guards += 1;
    KeepLoaded(())
}

impl Drop for KeepLoaded {
    fn drop(&mut self) {
        let mut kept = kept();
        kept.guards -= 1;
        if kept.guards == 0 {
            kept.models.clear();
        }
    }
}

/// Adaptor heads to load with a model: a teacher's name and the torch.hub
/// checkpoint that holds them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AdaptorRequest {
    /// The teacher (`siglip2-g`).
    pub name: String,
    /// The `*.pth.tar` file.
    pub checkpoint: PathBuf,
}

/// Returns the loaded model for (folder, device, dtype, adaptor), loading it if no
/// live element (or [`KeepLoaded`] guard) holds it. Concurrent callers for the
/// same key wait for one load; loads of other models go on meanwhile.
pub fn shared_model(
    dir: &Path,
    device: &str,
    dtype: DType,
    adaptor: Option<&AdaptorRequest>,
) -> Result<Arc<RadioModel>, ModelError> {
    let canonical = |path: &Path| {
        path.canonicalize().map_err(|source| ModelError::Io {
            path: path.to_path_buf(),
            source,
        })
    };
    let adaptor_key = adaptor
        .map(|a| Ok::<_, ModelError>((a.name.clone(), canonical(&a.checkpoint)?)))
        .transpose()?;
    let key = (canonical(dir)?, device.to_string(), dtype, adaptor_key);
    let slot = {
        let mut models = MODELS.lock().unwrap_or_else(|e| e.into_inner());
        // A slot someone else holds is loading or about to; keep it.
        models.retain(|_, slot| Arc::strong_count(slot) > 1 || slot_is_live(slot));
        models.entry(key.clone()).or_default().clone()
    };
    let mut loaded = slot.lock().unwrap_or_else(|e| e.into_inner());
    if let Some(model) = loaded.upgrade() {
        return Ok(model);
    }
    let mut model = RadioModel::load(&key.0, &parse_device(device)?, dtype)?;
    if let Some((name, checkpoint)) = &key.3 {
        model = model.with_adaptor(&TorchCheckpoint::open(checkpoint)?, name)?;
    }
    let model = Arc::new(model);
    *LOADS
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .entry(key.0)
        .or_default() += 1;
    *loaded = Arc::downgrade(&model);
    let mut kept = kept();
    if kept.guards > 0 {
        kept.models.push(model.clone());
    }
    Ok(model)
}

/// Whether a slot's model is still held somewhere.
fn slot_is_live(slot: &Slot) -> bool {
    slot.try_lock().is_ok_and(|weak| weak.strong_count() > 0)
}

/// How many times [`shared_model`] has actually loaded the weights of the
/// model folder `dir` in this process (on any device, in any dtype).
pub fn load_count(dir: &Path) -> usize {
    let Ok(canonical) = dir.canonicalize() else {
        return 0;
    };
    let loads = LOADS.lock().unwrap_or_else(|e| e.into_inner());
    loads.get(&canonical).copied().unwrap_or(0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn missing_model_says_where_it_looked_and_how_to_fix() {
        let err = locate("no-such-model", &mut |_| ())
            .unwrap_err()
            .to_string();
        assert!(err.starts_with("model `no-such-model` not found"), "{err}");
        assert!(
            err.contains("`no-such-model` is not a Hugging Face repo id (org/name)"),
            "{err}"
        );
        assert!(err.contains("hf download no-such-model"), "{err}");
        assert!(err.contains(&hf_cache_dir().display().to_string()), "{err}");
    }

    #[test]
    fn repo_ids_are_told_from_paths() {
        for id in ["nvidia/C-RADIOv4-SO400M", "org/tiny_model.v2"] {
            assert!(is_repo_id(id), "{id}");
        }
        for not in ["/abs/path", "./rel", "a/b/c", "tiny", "../up", "org/", "/x"] {
            assert!(!is_repo_id(not), "{not}");
        }
    }

    #[test]
    fn cached_snapshot_is_found_through_refs_main() {
        let root = std::env::temp_dir().join(format!("radio-hf-{}", std::process::id()));
        let snap = root.join("models--org--tiny/snapshots/abc123");
        std::fs::create_dir_all(&snap).unwrap();
        std::fs::write(snap.join("config.json"), "{}").unwrap();
        std::fs::write(snap.join("model.safetensors"), "").unwrap();
        std::fs::create_dir_all(root.join("models--org--tiny/refs")).unwrap();
        std::fs::write(root.join("models--org--tiny/refs/main"), "abc123\n").unwrap();
        let found = find("org/tiny", &root);
        std::fs::remove_dir_all(&root).unwrap();
        assert_eq!(found, Some(snap));
    }

    #[test]
    fn a_keep_loaded_guard_spares_reloads_between_pipelines() {
        let fixture = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/tiny-so400m");
        // A folder of this test's own, so no other test's loads are counted.
        let dir = std::env::temp_dir().join(format!("radio-keep-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        for file in ["config.json", "model.safetensors"] {
            std::fs::copy(fixture.join(file), dir.join(file)).unwrap();
        }
        let load = || drop(shared_model(&dir, "cpu", DType::F32, None).unwrap());
        {
            let _keep = keep_loaded();
            load();
            // A second guard ending does not release what the first keeps.
            drop(keep_loaded());
            load();
            assert_eq!(load_count(&dir), 1, "reloaded while the guard lived");
        }
        load();
        load();
        assert_eq!(load_count(&dir), 3, "kept loaded without a guard");
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
