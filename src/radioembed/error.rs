// SPDX-License-Identifier: MPL-2.0
//! The one place where the engine's errors get their GStreamer error domain.

use crate::engine::EngineError;
use crate::model::ModelError;
use crate::preprocess::PreprocessError;

/// The bus message for `err`, its text prefixed with `context` when given.
///
/// A model that is not there is `ResourceError::NotFound`, a model file that
/// cannot be opened `OpenRead` and one whose content is not a usable checkpoint
/// `Read`; a device, GPU kernel or CPU matmul path that cannot be set up is
/// `LibraryError::Init`, a
/// fixed size the model refuses `LibraryError::Settings`; caps and frames the
/// model cannot take are `StreamError::Format`; a failing forward is
/// `StreamError::Failed`.
pub(super) fn error_message(err: &EngineError, context: Option<&str>) -> gst::ErrorMessage {
    use EngineError as E;
    use ModelError as M;
    let text = match context {
        Some(context) => format!("{context}: {err}"),
        None => err.to_string(),
    };
    macro_rules! message {
        ($domain:expr) => {
            gst::error_msg!($domain, ("{}", text))
        };
    }
    match err {
        E::Locate(_) => message!(gst::ResourceError::NotFound),
        E::Model(M::Io { source, .. }) if source.kind() == std::io::ErrorKind::NotFound => {
            message!(gst::ResourceError::NotFound)
        }
        E::Model(M::Io { .. }) => message!(gst::ResourceError::OpenRead),
        E::Model(
            M::Config { .. }
            | M::UnknownLayout { .. }
            | M::CorruptWeights { .. }
            | M::TorchCheckpoint { .. }
            | M::MissingTensor { .. }
            | M::ShapeMismatch { .. },
        ) => message!(gst::ResourceError::Read),
        E::Model(M::Device { .. } | M::CpuMatmul(_)) | E::Preprocess(PreprocessError::Gpu(_)) => {
            message!(gst::LibraryError::Init)
        }
        E::Model(M::Resolution { .. }) => message!(gst::LibraryError::Settings),
        E::Model(M::Input(_) | M::Tensor(_))
        | E::Preprocess(PreprocessError::Tensor(_))
        | E::Shared(_) => {
            message!(gst::StreamError::Failed)
        }
        E::Preprocess(_) | E::Size(_) | E::UnsupportedFormat(_) | E::FrameTooSmall { .. } => {
            message!(gst::StreamError::Format)
        }
    }
}
