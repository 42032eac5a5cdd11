// SPDX-License-Identifier: MPL-2.0
//! Adaptor heads: the small MLPs that map RADIO's tokens into a teacher's space
//! (`siglip2-g` maps the image into SigLIP2's text-aligned space).
//!
//! Follows NVlabs/RADIO at c0f3701:
//! [`adaptor_mlp.py`](https://github.com/NVlabs/RADIO/blob/c0f37017930e9dda53f93424cf4bf39fc51f287e/radio/adaptor_mlp.py)
//! (`MLP` = "v1", `MLP2` = "v2"),
//! [`adaptor_module_factory.py`](https://github.com/NVlabs/RADIO/blob/c0f37017930e9dda53f93424cf4bf39fc51f287e/radio/adaptor_module_factory.py)
//! (dims read from the weights) and the adaptor part of
//! [`hubconf.py`](https://github.com/NVlabs/RADIO/blob/c0f37017930e9dda53f93424cf4bf39fc51f287e/hubconf.py)
//! (`_heads.<name or index>`, `_feature_projections.<name or index>`, the token slot).

use std::collections::{BTreeSet, HashMap};

use candle_core::{DType, Device, IndexOp, Tensor};
use candle_nn::{Module, VarBuilder};

use super::error::{ModelError, Result};
use super::fused::{Activation, FusedLayerNorm, FusedLinear, layer_norm};
use super::torch_checkpoint::TorchCheckpoint;

/// RADIO's LayerNorm eps in the heads (PyTorch's default).
const HEAD_LAYER_NORM_EPS: f64 = 1e-5;

/// What one adaptor computes for a batch.
#[derive(Debug, Clone)]
pub struct AdaptorOutput {
    /// The teacher's name (`siglip2-g`).
    pub name: String,
    /// The summary head on the teacher's cls token: (B, C), f32.
    pub summary: Tensor,
    /// The feature head on the patch tokens: (B, T, C), f32; `None` when the
    /// forward was asked for summaries only.
    pub features: Option<Tensor>,
}

impl AdaptorOutput {
    /// The outputs of `len` frames from frame `start` on.
    pub fn rows(&self, start: usize, len: usize) -> Result<Self> {
        Ok(Self {
            name: self.name.clone(),
            summary: self.summary.narrow(0, start, len)?,
            features: self
                .features
                .as_ref()
                .map(|f| f.narrow(0, start, len))
                .transpose()?,
        })
    }
}

/// One teacher's summary and feature heads, loaded from a torch.hub checkpoint.
pub struct Adaptor {
    name: String,
    token_slot: usize,
    summary_head: Mlp,
    feature_head: Mlp,
    dtype: DType,
}

impl Adaptor {
    /// Loads the heads of the teacher called `name` from `checkpoint`, for a backbone
    /// of `width` channels with `prefix_tokens` cls and register tokens, onto
    /// `device` in `dtype`.
    pub fn load(
        checkpoint: &TorchCheckpoint,
        name: &str,
        width: usize,
        prefix_tokens: usize,
        device: &Device,
        dtype: DType,
    ) -> Result<Self> {
        let fail = |message: String| ModelError::TorchCheckpoint {
            path: checkpoint.path().to_path_buf(),
            message,
        };
        let args = checkpoint.args();
        let (index, teacher) = args.teacher(name).ok_or_else(|| {
            let known: Vec<&str> = args.teachers.iter().map(|t| t.name.as_str()).collect();
            fail(format!(
                "no teacher `{name}` (the checkpoint has {known:?})"
            ))
        })?;
        if let Some(factor) = teacher.feature_upsample.filter(|&f| f > 1) {
            return Err(fail(format!(
                "`{name}` has an upsampling feature head (fd_upsample_factor {factor}), \
                 which is not supported"
            )));
        }
        let summary_version = teacher.mlp_version.as_deref().unwrap_or(&args.mlp_version);
        let feature_version = teacher
            .spatial_mlp_version
            .as_deref()
            .or(args.spatial_mlp_version.as_deref())
            .unwrap_or(summary_version);
        // The official loader matches both prefixes, the teacher's index and its name.
        let prefixes = |head: &str| [format!("{head}.{index}."), format!("{head}.{name}.")];
        let load_head = |head: &str, version: &str| -> Result<Mlp> {
            let tensors = head_tensors(checkpoint, &prefixes(head))?;
            if tensors.is_empty() {
                return Err(fail(format!(
                    "no `{head}.{name}.*` or `{head}.{index}.*` weights"
                )));
            }
            if tensors.keys().any(|k| k.contains("parametrizations")) {
                return Err(fail(format!(
                    "`{head}.{name}` holds spectrally reparametrised weights, which are not \
                     supported; use a checkpoint with `state_dict_ema`"
                )));
            }
            Mlp::load(version, tensors, width, device, dtype)
                .map_err(|message| fail(format!("`{head}.{name}`: {message}")))
        };
        let token_slot = if args.cls_token_per_teacher {
            teacher.token_slot.unwrap_or(index)
        } else {
            0
        };
        if token_slot >= prefix_tokens {
            return Err(fail(format!(
                "`{name}` reads cls token {token_slot}, but the model has {prefix_tokens} \
                 prefix tokens"
            )));
        }
        Ok(Self {
            name: name.to_string(),
            token_slot,
            summary_head: load_head("_heads", summary_version)?,
            feature_head: load_head("_feature_projections", feature_version)?,
            dtype,
        })
    }

    /// The teacher's name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// Width of the adaptor's summary (and feature) vectors.
    pub fn summary_dim(&self) -> usize {
        self.summary_head.output_dim()
    }

    /// Width of the adaptor's patch features.
    pub fn feature_dim(&self) -> usize {
        self.feature_head.output_dim()
    }

    /// Runs the summary head on the model's final tokens (B, N, D) and, with
    /// `features`, the feature head on its patch features (B, T, D), both f32; the
    /// outputs are f32. The feature head runs on every patch, so a caller that
    /// keeps summaries only skips it.
    pub(crate) fn forward(
        &self,
        tokens: &Tensor,
        features: Option<&Tensor>,
    ) -> Result<AdaptorOutput> {
        let cls = tokens.i((.., self.token_slot, ..))?.to_dtype(self.dtype)?;
        let summary = self.summary_head.forward(&cls)?.to_dtype(DType::F32)?;
        let features = features
            .map(|f| {
                self.feature_head
                    .forward(&f.to_dtype(self.dtype)?.contiguous()?)?
                    .to_dtype(DType::F32)
            })
            .transpose()?;
        Ok(AdaptorOutput {
            name: self.name.clone(),
            summary,
            features,
        })
    }
}

/// The tensors under the first of `prefixes` that has any, with the prefix removed.
fn head_tensors(
    checkpoint: &TorchCheckpoint,
    prefixes: &[String],
) -> Result<HashMap<String, Tensor>> {
    for prefix in prefixes {
        let keys: Vec<&str> = checkpoint
            .keys()
            .filter(|k| k.starts_with(prefix.as_str()))
            .collect();
        if keys.is_empty() {
            continue;
        }
        return keys
            .into_iter()
            .map(|key| Ok((key[prefix.len()..].to_string(), checkpoint.tensor(key)?)))
            .collect();
    }
    Ok(HashMap::new())
}

/// RADIO's two MLP head designs.
enum Mlp {
    /// `MLP`: fc1 → LayerNorm → ReLU → fc2.
    V1 {
        fc1: FusedLinear,
        norm: FusedLayerNorm,
        fc2: FusedLinear,
    },
    /// `MLP2`: fc1 → residual blocks x + Linear(GELU(LayerNorm(x))) → LayerNorm →
    /// GELU → Linear (exact, erf GELU).
    V2 {
        fc1: FusedLinear,
        blocks: Vec<(FusedLayerNorm, FusedLinear)>,
        final_norm: FusedLayerNorm,
        final_fc: FusedLinear,
    },
}

impl Mlp {
    /// Builds a head of `version` from its tensors (prefix removed); every tensor
    /// must be used, so that another head design is refused instead of misread.
    fn load(
        version: &str,
        tensors: HashMap<String, Tensor>,
        width: usize,
        device: &Device,
        dtype: DType,
    ) -> std::result::Result<Self, String> {
        let blocks = (0..)
            .take_while(|k| tensors.contains_key(&format!("blocks.{k}.0.weight")))
            .count();
        let (modules, last) = match version {
            "v1" => (vec!["fc1".to_string(), "norm".into(), "fc2".into()], "fc2"),
            "v2" => {
                let mut modules = vec!["fc1".to_string()];
                for k in 0..blocks {
                    modules.extend([format!("blocks.{k}.0"), format!("blocks.{k}.2")]);
                }
                modules.extend(["final.0".to_string(), "final.2".into()]);
                (modules, "final.2")
            }
            "attn" => return Err("attention feature heads are not supported".into()),
            other => {
                return Err(format!(
                    "MLP version `{other}` is not supported (v1, v2 are)"
                ));
            }
        };
        let expected: BTreeSet<String> = modules
            .iter()
            .flat_map(|m| [format!("{m}.weight"), format!("{m}.bias")])
            .collect();
        let found: BTreeSet<String> = tensors.keys().cloned().collect();
        if let Some(extra) = found.difference(&expected).next() {
            return Err(format!(
                "unexpected tensor `{extra}` for a `{version}` MLP head"
            ));
        }
        if let Some(missing) = expected.difference(&found).next() {
            return Err(format!(
                "missing tensor `{missing}` of a `{version}` MLP head"
            ));
        }
        let shape = |module: &str| tensors[&format!("{module}.weight")].dims().to_vec();
        let (hidden, input) = match shape("fc1")[..] {
            [hidden, input] => (hidden, input),
            ref other => return Err(format!("fc1.weight has shape {other:?}")),
        };
        if input != width {
            return Err(format!(
                "the head takes {input} channels, the backbone gives {width}"
            ));
        }
        let output = shape(last)[0];
        let vb = VarBuilder::from_tensors(tensors, dtype, device);
        let linear =
            |m: &str, i: usize, o: usize| FusedLinear::new(candle_nn::linear(i, o, vb.pp(m))?);
        let norm = |m: &str| layer_norm(hidden, HEAD_LAYER_NORM_EPS, vb.pp(m));
        let built = if version == "v1" {
            (|| {
                Ok(Self::V1 {
                    fc1: linear("fc1", input, hidden)?,
                    norm: norm("norm")?,
                    fc2: linear("fc2", hidden, output)?,
                })
            })()
        } else {
            (|| {
                Ok(Self::V2 {
                    fc1: linear("fc1", input, hidden)?,
                    blocks: (0..blocks)
                        .map(|k| {
                            let norm = norm(&format!("blocks.{k}.0"))?;
                            Ok((norm, linear(&format!("blocks.{k}.2"), hidden, hidden)?))
                        })
                        .collect::<candle_core::Result<_>>()?,
                    final_norm: norm("final.0")?,
                    final_fc: linear("final.2", hidden, output)?,
                })
            })()
        };
        built.map_err(|e: candle_core::Error| e.to_string())
    }

    fn output_dim(&self) -> usize {
        let fc = match self {
            Self::V1 { fc2, .. } => fc2,
            Self::V2 { final_fc, .. } => final_fc,
        };
        fc.out_dim()
    }
}

impl Module for Mlp {
    fn forward(&self, x: &Tensor) -> candle_core::Result<Tensor> {
        match self {
            Self::V1 { fc1, norm, fc2 } => {
                let x = norm.forward(&fc1.forward(x, Activation::None)?)?.relu()?;
                fc2.forward(&x, Activation::None)
            }
            Self::V2 {
                fc1,
                blocks,
                final_norm,
                final_fc,
            } => {
                let mut x = fc1.forward(x, Activation::None)?;
                for (norm, fc) in blocks {
                    x = fc.forward_residual(&norm.forward(&x)?.gelu_erf()?, &x)?;
                }
                final_fc.forward(&final_norm.forward(&x)?.gelu_erf()?, Activation::None)
            }
        }
    }
}
