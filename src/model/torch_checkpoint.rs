// SPDX-License-Identifier: MPL-2.0
//! The torch.hub checkpoints that the Hugging Face repos ship beside
//! `model.safetensors` (`c-radio_v4-so400m_half.pth.tar`, …), read as data.
//!
//! Such a file is a `torch.save` zip archive: `<name>/data.pkl` holds a pickled dict
//! with `args` (an `argparse.Namespace`) and `state_dict` or `state_dict_ema`, and
//! `<name>/data/<key>` the raw storage of each tensor. The pickle is decoded by
//! candle's pickle reader, which builds values and never runs code; on top of that
//! every class the pickle names must be one a checkpoint legitimately holds, because
//! a checkpoint is untrusted input. Follows what `hubconf.radio_model` reads in
//! NVlabs/RADIO
//! [`hubconf.py`](https://github.com/NVlabs/RADIO/blob/c0f37017930e9dda53f93424cf4bf39fc51f287e/hubconf.py).

use std::collections::HashMap;
use std::fs::File;
use std::io::{BufReader, Read};
use std::path::{Path, PathBuf};

use candle_core::pickle::{Object, Stack, TensorInfo};
use candle_core::{Device, Tensor};

use super::error::{ModelError, Result};

/// The largest `data.pkl` read: the real checkpoints' are a few hundred kB. The cap
/// bounds what an untrusted pickle can make the parser hold.
const MAX_PICKLE_BYTES: u64 = 64 << 20;

/// Classes a checkpoint may name: containers, tensor rebuilding, dtypes, and the
/// plain data types training scripts put in `args`. Anything else is refused.
const ALLOWED_CLASSES: &[(&str, &str)] = &[
    ("collections", "OrderedDict"),
    ("argparse", "Namespace"),
    ("torch._utils", "_rebuild_tensor_v2"),
    ("torch._utils", "_rebuild_parameter"),
    ("torch", "device"),
    ("pathlib", "PosixPath"),
];

/// Storage classes `_rebuild_tensor_v2` may point at.
const STORAGE_CLASSES: &[&str] = &[
    "FloatStorage",
    "HalfStorage",
    "BFloat16Storage",
    "DoubleStorage",
    "LongStorage",
    "ByteStorage",
];

/// dtypes `args.dtype` may name (pickled as `torch.<name>`).
const DTYPES: &[&str] = &["float32", "float16", "bfloat16", "float64", "float", "half"];

/// One entry of `args.teachers`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Teacher {
    /// `name`, what an adaptor is requested by (`siglip2-g`, `dino_v3`, …).
    pub name: String,
    /// `type`, the adaptor class (`siglip2`, `dino_v3`, …).
    pub kind: String,
    /// `token_slot`, when the teacher names the cls token it reads.
    pub token_slot: Option<usize>,
    /// `fd_upsample_factor` of its feature head, when set.
    pub feature_upsample: Option<usize>,
    /// `mlp_version` / `spatial_mlp_version` overrides of the teacher's heads.
    pub mlp_version: Option<String>,
    /// See `mlp_version`.
    pub spatial_mlp_version: Option<String>,
}

/// The training arguments a loader needs (`chk["args"]`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TrainingArgs {
    /// `teachers`, in order: a teacher's index is its head index in the weights.
    pub teachers: Vec<Teacher>,
    /// `mlp_version` of the summary heads (`v1`, `v2`).
    pub mlp_version: String,
    /// `spatial_mlp_version` of the feature heads, when it differs.
    pub spatial_mlp_version: Option<String>,
    /// `cls_token_per_teacher`: each teacher reads its own cls token (default true).
    pub cls_token_per_teacher: bool,
    /// `spectral_heads`: the heads' weights are spectrally reparametrised.
    pub spectral_heads: bool,
}

/// An opened torch.hub checkpoint: its arguments and the tensors of its state dict,
/// read from the archive on demand.
pub struct TorchCheckpoint {
    path: PathBuf,
    args: TrainingArgs,
    tensors: HashMap<String, TensorInfo>,
}

impl TorchCheckpoint {
    /// Opens `path` and decodes its pickle; tensor data is read later, by
    /// [`TorchCheckpoint::tensor`].
    pub fn open(path: &Path) -> Result<Self> {
        let fail = |message: String| ModelError::TorchCheckpoint {
            path: path.to_path_buf(),
            message,
        };
        let file = File::open(path).map_err(|source| ModelError::Io {
            path: path.to_path_buf(),
            source,
        })?;
        let mut archive = zip::ZipArchive::new(BufReader::new(file))
            .map_err(|e| fail(format!("not a PyTorch zip archive ({e})")))?;
        let pickle_name = archive
            .file_names()
            .filter_map(|name| name.ok())
            .find(|name| name.ends_with("/data.pkl") || name == "data.pkl")
            .map(|name| name.into_owned())
            .ok_or_else(|| fail("the archive has no data.pkl".into()))?;
        let root = {
            let entry = archive
                .by_name(&pickle_name)
                .map_err(|e| fail(format!("cannot read {pickle_name}: {e}")))?;
            if entry.size() > MAX_PICKLE_BYTES {
                return Err(fail(format!(
                    "{pickle_name} is {} bytes, more than a checkpoint's pickle holds",
                    entry.size()
                )));
            }
            let mut stack = Stack::empty();
            stack
                .read_loop(&mut BufReader::new(entry.take(MAX_PICKLE_BYTES)))
                .and_then(|()| stack.finalize())
                .map_err(|e| fail(format!("cannot decode {pickle_name}: {e}")))?
        };
        check_classes(&root).map_err(fail)?;
        let mut entries = as_dict(root)
            .ok_or_else(|| fail("the pickle does not hold a dict".into()))?
            .into_iter()
            .filter_map(|(key, value)| Some((key.unicode().ok()?, value)))
            .collect::<HashMap<_, _>>();
        let args = entries
            .remove("args")
            .ok_or_else(|| fail("no `args` in the checkpoint".into()))?;
        let mut args = TrainingArgs::from_namespace(args).map_err(fail)?;
        // As the official loader: the EMA weights, when present, are stored with
        // spectral reparametrisation already applied.
        let state = match entries.remove("state_dict_ema") {
            Some(ema) => {
                args.spectral_heads = false;
                ema
            }
            None => entries
                .remove("state_dict")
                .ok_or_else(|| fail("neither `state_dict` nor `state_dict_ema`".into()))?,
        };
        let dir = Path::new(pickle_name.strip_suffix(".pkl").unwrap_or(&pickle_name));
        let mut tensors = HashMap::new();
        for (key, value) in
            as_dict(state).ok_or_else(|| fail("the state dict is no dict".into()))?
        {
            if let Some(info) = value
                .into_tensor_info(key, dir)
                .map_err(|e| fail(format!("a state dict entry is no tensor: {e}")))?
            {
                tensors.insert(info.name.clone(), info);
            }
        }
        Ok(Self {
            path: path.to_path_buf(),
            args,
            tensors,
        })
    }

    /// The file this was read from.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// `chk["args"]`.
    pub fn args(&self) -> &TrainingArgs {
        &self.args
    }

    /// Names of the state dict's tensors.
    pub fn keys(&self) -> impl Iterator<Item = &str> {
        self.tensors.keys().map(String::as_str)
    }

    /// Reads one tensor of the state dict onto the CPU, in its stored dtype.
    pub fn tensor(&self, key: &str) -> Result<Tensor> {
        let info = self
            .tensors
            .get(key)
            .ok_or_else(|| ModelError::MissingTensor {
                key: key.to_string(),
            })?;
        let fail = |message: String| ModelError::TorchCheckpoint {
            path: self.path.clone(),
            message: format!("tensor `{key}`: {message}"),
        };
        if !info.layout.is_contiguous() {
            return Err(fail("its storage is not contiguous".into()));
        }
        let file = File::open(&self.path).map_err(|source| ModelError::Io {
            path: self.path.clone(),
            source,
        })?;
        let mut archive =
            zip::ZipArchive::new(BufReader::new(file)).map_err(|e| fail(e.to_string()))?;
        let mut entry = archive
            .by_name(&info.path)
            .map_err(|e| fail(format!("{}: {e}", info.path)))?;
        let skip = info.layout.start_offset() as u64;
        let shape = info.layout.shape();
        let len = shape.elem_count() * info.dtype.size_in_bytes();
        // The storage entry bounds what is read, whatever the pickle claims.
        if skip + len as u64 > entry.size() {
            return Err(fail(format!(
                "its storage {} holds {} bytes, the tensor needs {}",
                info.path,
                entry.size(),
                skip + len as u64
            )));
        }
        let mut bytes = vec![0u8; len];
        std::io::copy(&mut (&mut entry).take(skip), &mut std::io::sink())
            .and_then(|_| entry.read_exact(&mut bytes))
            .map_err(|e| fail(format!("truncated or unreadable storage ({e})")))?;
        Ok(Tensor::from_raw_buffer(
            &bytes,
            info.dtype,
            shape.dims(),
            &Device::Cpu,
        )?)
    }
}

impl TrainingArgs {
    fn from_namespace(args: Object) -> std::result::Result<Self, String> {
        let mut fields =
            Fields::of(namespace_fields(args).ok_or("`args` is not an argparse.Namespace")?);
        let teachers = match fields.take("teachers") {
            Some(Object::List(list) | Object::Tuple(list)) => list
                .into_iter()
                .map(Teacher::from_object)
                .collect::<std::result::Result<Vec<_>, _>>()?,
            _ => return Err("`args.teachers` is missing or not a list".into()),
        };
        Ok(Self {
            teachers,
            mlp_version: fields.text("mlp_version").unwrap_or_else(|| "v1".into()),
            spatial_mlp_version: fields.text("spatial_mlp_version"),
            cls_token_per_teacher: fields.flag("cls_token_per_teacher").unwrap_or(true),
            spectral_heads: fields.flag("spectral_heads").unwrap_or(false),
        })
    }

    /// The teacher called `name`, with its index.
    pub fn teacher(&self, name: &str) -> Option<(usize, &Teacher)> {
        self.teachers
            .iter()
            .enumerate()
            .find(|(_, t)| t.name == name)
    }
}

impl Teacher {
    fn from_object(object: Object) -> std::result::Result<Self, String> {
        let mut fields =
            Fields::of(as_dict(object).ok_or("an entry of `args.teachers` is not a dict")?);
        let name = fields.text("name").ok_or("a teacher has no `name`")?;
        Ok(Self {
            kind: fields.text("type").unwrap_or_else(|| name.clone()),
            token_slot: fields.count("token_slot"),
            feature_upsample: fields.count("fd_upsample_factor"),
            mlp_version: fields.text("mlp_version"),
            spatial_mlp_version: fields.text("spatial_mlp_version"),
            name,
        })
    }
}

/// The string-keyed entries of a pickled dict or Namespace, taken by type.
struct Fields(HashMap<String, Object>);

impl Fields {
    fn of(entries: Vec<(Object, Object)>) -> Self {
        Self(
            entries
                .into_iter()
                .filter_map(|(k, v)| Some((k.unicode().ok()?, v)))
                .collect(),
        )
    }

    fn take(&mut self, key: &str) -> Option<Object> {
        self.0.remove(key)
    }

    fn text(&mut self, key: &str) -> Option<String> {
        match self.take(key) {
            Some(Object::Unicode(s)) => Some(s),
            _ => None,
        }
    }

    fn flag(&mut self, key: &str) -> Option<bool> {
        match self.take(key) {
            Some(Object::Bool(b)) => Some(b),
            _ => None,
        }
    }

    fn count(&mut self, key: &str) -> Option<usize> {
        match self.take(key) {
            Some(Object::Int(i)) => usize::try_from(i).ok(),
            Some(Object::Long(i)) => usize::try_from(i).ok(),
            _ => None,
        }
    }
}

/// The entries of a dict (an `OrderedDict` decodes to one too).
fn as_dict(object: Object) -> Option<Vec<(Object, Object)>> {
    match object {
        Object::Dict(entries) => Some(entries),
        _ => None,
    }
}

/// The attributes of an `argparse.Namespace`: `NEWOBJ` then `BUILD` with its dict.
fn namespace_fields(object: Object) -> Option<Vec<(Object, Object)>> {
    match object {
        Object::Build { callable, args } => match *callable {
            Object::Reduce { callable, .. }
                if *callable
                    == (Object::Class {
                        module_name: "argparse".into(),
                        class_name: "Namespace".into(),
                    }) =>
            {
                as_dict(*args)
            }
            _ => None,
        },
        _ => None,
    }
}

/// How deep values may nest: a checkpoint's `args` nest three or four levels.
const MAX_DEPTH: usize = 64;

/// Fails with the first class outside the allowed set, named as Python would, or
/// when values nest deeper than any checkpoint does.
fn check_classes(object: &Object) -> std::result::Result<(), String> {
    check_classes_at(object, 0)
}

fn check_classes_at(object: &Object, depth: usize) -> std::result::Result<(), String> {
    if depth > MAX_DEPTH {
        return Err(format!(
            "the pickle nests values more than {MAX_DEPTH} deep"
        ));
    }
    let check = |inner: &Object| check_classes_at(inner, depth + 1);
    match object {
        Object::Class {
            module_name,
            class_name,
        } => {
            let allowed = ALLOWED_CLASSES.contains(&(module_name.as_str(), class_name.as_str()))
                || (module_name == "torch"
                    && (STORAGE_CLASSES.contains(&class_name.as_str())
                        || DTYPES.contains(&class_name.as_str())));
            if allowed {
                Ok(())
            } else {
                Err(format!(
                    "the pickle names `{module_name}.{class_name}`, which a checkpoint does not \
                     hold; refusing to read it (only tensors, dicts, lists and \
                     argparse.Namespace are accepted)"
                ))
            }
        }
        Object::Tuple(items) | Object::List(items) => items.iter().try_for_each(check),
        Object::Dict(entries) => entries.iter().try_for_each(|(key, value)| {
            check(key)?;
            check(value)
        }),
        Object::Reduce { callable, args } | Object::Build { callable, args } => {
            check(callable)?;
            check(args)
        }
        Object::PersistentLoad(inner) => check(inner),
        Object::Int(_)
        | Object::Long(_)
        | Object::Float(_)
        | Object::Unicode(_)
        | Object::Bool(_)
        | Object::None
        | Object::Mark => Ok(()),
    }
}
