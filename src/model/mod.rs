// SPDX-License-Identifier: MPL-2.0
//! The C-RADIOv4 vision transformer in candle.
//!
//! A port of what `AutoModel.from_pretrained("nvidia/C-RADIOv4-SO400M",
//! trust_remote_code=True)(pixel_values)` computes, following NVlabs/RADIO at
//! [c0f3701](https://github.com/NVlabs/RADIO/tree/c0f37017930e9dda53f93424cf4bf39fc51f287e/radio):
//! an input conditioner, a patch generator with a resolution-flexible position
//! embedding, pre-norm ViT blocks, and the summary / spatial outputs. It reads the
//! published checkpoints unchanged, in both the legacy remote-code layout and the
//! native transformers layout. Nothing here knows about GStreamer.

mod adaptor;
#[cfg(target_arch = "x86_64")]
mod amx_tiles;
#[cfg(target_arch = "x86_64")]
mod avx512_softmax;
#[cfg(target_arch = "x86_64")]
mod bf16_attention;
mod bf16_matmul;
#[cfg(feature = "openblas")]
mod blas;
mod block;
mod checkpoint;
mod config;
mod cpu_matmul;
#[cfg(feature = "cuda")]
mod cuda_attention;
#[cfg(feature = "cuda")]
mod cuda_epilogue;
mod device;
mod dims;
mod error;
#[cfg(all(target_arch = "x86_64", feature = "openblas"))]
mod f32_attention;
mod fused;
#[cfg(any(target_arch = "x86_64", feature = "openblas"))]
mod head_tasks;
mod patch_generator;
mod radio;
mod torch_checkpoint;

pub use adaptor::{Adaptor, AdaptorOutput};
pub use checkpoint::KeyScheme;
pub use config::{Config, ConfigLayout};
pub use cpu_matmul::{CPU_MATMUL_ENV, CpuMatmul, CpuMatmulError, Isa};
#[cfg(feature = "cuda")]
pub use cuda_attention::{ATTENTION_ENV, ATTENTION_KERNELS, AttentionPath};
#[cfg(feature = "cuda")]
pub use cuda_epilogue::EPILOGUE_KERNELS;
pub use device::{parse_device, parse_dtype};
pub use dims::Dims;
pub use error::{ModelError, Result};
pub(crate) use fused::{Activation, FusedLayerNorm, FusedLinear, layer_norm, with_f32};
pub use radio::{ModelInfo, RadioModel, RadioOutput};
pub use torch_checkpoint::{Teacher, TorchCheckpoint, TrainingArgs};
