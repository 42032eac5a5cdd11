// SPDX-License-Identifier: MPL-2.0
//! Errors of model loading and inference.

use std::path::PathBuf;

/// Everything that can go wrong while loading or running a C-RADIO model.
#[derive(Debug, thiserror::Error)]
pub enum ModelError {
    /// A file of the model folder could not be read.
    #[error("cannot read {path}: {source}")]
    Io {
        /// The file that failed.
        path: PathBuf,
        /// The underlying error.
        source: std::io::Error,
    },
    /// config.json is not valid JSON or misses a required field.
    #[error("invalid config {path}: {message}")]
    Config {
        /// The config file.
        path: PathBuf,
        /// What is wrong with it.
        message: String,
    },
    /// The files describe a model this crate does not know.
    #[error("unknown model layout in {path}: {message}")]
    UnknownLayout {
        /// The model folder.
        path: PathBuf,
        /// Why the layout was not recognised.
        message: String,
    },
    /// model.safetensors is truncated or not a safetensors file.
    #[error("corrupt weights file {path}: {message}")]
    CorruptWeights {
        /// The weights file.
        path: PathBuf,
        /// The parser's complaint.
        message: String,
    },
    /// A torch.hub checkpoint (`*.pth.tar`) cannot be read or used.
    #[error("cannot use torch checkpoint {path}: {message}")]
    TorchCheckpoint {
        /// The checkpoint file.
        path: PathBuf,
        /// What is wrong with it.
        message: String,
    },
    /// A tensor the model needs is not in the checkpoint.
    #[error("checkpoint has no tensor `{key}`")]
    MissingTensor {
        /// The tensor name looked up.
        key: String,
    },
    /// A tensor has another shape than the architecture requires.
    #[error("tensor `{key}` has shape {found:?}, expected {expected:?}")]
    ShapeMismatch {
        /// The tensor name.
        key: String,
        /// The shape the architecture requires.
        expected: Vec<usize>,
        /// The shape stored in the checkpoint.
        found: Vec<usize>,
    },
    /// The input image size is not one the model can take.
    #[error("unsupported input resolution {height}x{width}: {reason}")]
    Resolution {
        /// Input height in pixels.
        height: usize,
        /// Input width in pixels.
        width: usize,
        /// Why it is refused.
        reason: String,
    },
    /// The input tensor does not have the (B, 3, H, W) layout.
    #[error("invalid input tensor: {0}")]
    Input(String),
    /// The requested compute device cannot be used.
    #[error("device {device} is unavailable: {reason}")]
    Device {
        /// The device as requested (`cpu`, `cuda:0`, …).
        device: String,
        /// Why it cannot be used.
        reason: String,
    },
    /// The environment asks for a CPU matmul path this build has not.
    #[error(transparent)]
    CpuMatmul(#[from] super::CpuMatmulError),
    /// A tensor operation failed (out of memory, a backend error, …).
    #[error("tensor operation failed: {0}")]
    Tensor(#[from] candle_core::Error),
}

/// Result alias for model operations.
pub type Result<T> = std::result::Result<T, ModelError>;

/// Turns candle's errors about a checkpoint lookup into the typed variants above.
pub(crate) fn classify_load_error(err: candle_core::Error) -> ModelError {
    use candle_core::Error as E;
    match err {
        E::WithBacktrace { inner, .. } => classify_load_error(*inner),
        E::Context { inner, .. } => classify_load_error(*inner),
        E::CannotFindTensor { path } => ModelError::MissingTensor { key: path },
        E::UnexpectedShape { msg, expected, got } => ModelError::ShapeMismatch {
            key: msg
                .strip_prefix("shape mismatch for ")
                .unwrap_or(&msg)
                .to_string(),
            expected: expected.dims().to_vec(),
            found: got.dims().to_vec(),
        },
        other => ModelError::Tensor(other),
    }
}
