// SPDX-License-Identifier: MPL-2.0
//! Everything that can stop a stream from being embedded, by cause.

use super::SharedError;
use crate::model::ModelError;
use crate::model_store::LocateError;
use crate::preprocess::{PreprocessError, SizeError};

/// Why a model could not be set up or a batch not be embedded. Callers map each
/// variant to their own error vocabulary (GStreamer error domains, exit codes).
#[derive(Debug, thiserror::Error)]
pub enum EngineError {
    /// The model name is neither a folder nor a cached (or downloadable) repo.
    #[error(transparent)]
    Locate(#[from] LocateError),
    /// Loading the model or running it failed.
    #[error(transparent)]
    Model(#[from] ModelError),
    /// The frames could not be turned into a model input.
    #[error(transparent)]
    Preprocess(#[from] PreprocessError),
    /// No model input size fits the frames and the settings.
    #[error(transparent)]
    Size(#[from] SizeError),
    /// A forward shared with other streams failed or was cancelled.
    #[error(transparent)]
    Shared(#[from] SharedError),
    /// The frames are in a pixel format the preprocessing does not read.
    #[error("video format {0} is not supported")]
    UnsupportedFormat(String),
    /// The frames are smaller than one patch.
    #[error("frames of {width}x{height} are smaller than the model's {patch}x{patch} patch")]
    FrameTooSmall {
        /// Frame width.
        width: usize,
        /// Frame height.
        height: usize,
        /// The model's patch side.
        patch: usize,
    },
}
