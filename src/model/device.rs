// SPDX-License-Identifier: MPL-2.0
//! Parsing device and dtype names as users type them (`cpu`, `cuda:1`, `bf16`).

use candle_core::{DType, Device};

use super::error::{ModelError, Result};

/// Opens `cpu` or `cuda:N` (`cuda` alone means `cuda:0`).
///
/// A CUDA request on a build without the `cuda` feature, or on a machine whose
/// driver or GPU cannot serve it, is an error that says so; it never panics.
pub fn parse_device(name: &str) -> Result<Device> {
    let unavailable = |reason: String| ModelError::Device {
        device: name.to_string(),
        reason,
    };
    match name {
        "cpu" => Ok(Device::Cpu),
        _ => {
            let ordinal = match name.strip_prefix("cuda") {
                Some("") => 0,
                Some(rest) => rest
                    .strip_prefix(':')
                    .and_then(|n| n.parse::<usize>().ok())
                    .ok_or_else(|| unavailable("expected `cpu` or `cuda:N`".into()))?,
                None => return Err(unavailable("expected `cpu` or `cuda:N`".into())),
            };
            #[cfg(not(feature = "cuda"))]
            {
                let _ = ordinal;
                Err(unavailable(
                    "this build has no CUDA support; rebuild with `cargo build --features cuda`"
                        .into(),
                ))
            }
            #[cfg(feature = "cuda")]
            std::panic::catch_unwind(|| open_cuda(ordinal))
                .map_err(|_| unavailable("the CUDA driver could not be initialised".into()))?
                // candle appends a backtrace to driver errors: the first line is the reason.
                .map_err(|e| unavailable(e.to_string().lines().next().unwrap_or("").to_string()))
        }
    }
}

/// A CUDA device with one stream of its own, not CUDA's per-thread default
/// streams (what `Device::new_cuda` gives): a model shared by several elements
/// is called from each element's thread, and with one stream its kernels, its
/// cuBLAS handle (bound to that stream) and its cached tensors are used in one
/// order whichever thread launches them.
///
/// With one stream, cudarc's per-allocation events (a read and a write event
/// recorded around every launch, which a second stream switches on) order
/// nothing that the stream does not already order, so they are switched off;
/// freed memory stays in the device's pool for the next batch
/// ([`keep_freed_memory`](crate::cuda::keep_freed_memory)).
#[cfg(feature = "cuda")]
fn open_cuda(ordinal: usize) -> candle_core::Result<Device> {
    let device = candle_core::CudaDevice::new_with_stream(ordinal)?;
    // SAFETY: every tensor of this device is made and used on its one stream
    // (the model, its preprocessor and its outputs all take the model's
    // device); what is freed goes back through the stream-ordered pool, whose
    // reuse across streams the driver orders itself. Done before any tensor
    // of the device exists.
    unsafe { device.disable_event_tracking() };
    crate::cuda::keep_freed_memory(device.cuda_stream().context())
        .map_err(candle_core::Error::msg)?;
    Ok(Device::Cuda(device))
}

/// Maps `f32`, `f16` or `bf16` to a dtype.
pub fn parse_dtype(name: &str) -> Option<DType> {
    match name {
        "f32" => Some(DType::F32),
        "f16" => Some(DType::F16),
        "bf16" => Some(DType::BF16),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cpu_is_always_there() {
        assert!(parse_device("cpu").unwrap().is_cpu());
    }

    #[test]
    fn malformed_device_is_explained() {
        let err = parse_device("gpu0").unwrap_err().to_string();
        assert_eq!(
            err,
            "device gpu0 is unavailable: expected `cpu` or `cuda:N`"
        );
    }

    #[cfg(not(feature = "cuda"))]
    #[test]
    fn cuda_without_the_feature_says_how_to_get_it() {
        let err = parse_device("cuda:0").unwrap_err().to_string();
        assert!(
            err.contains("rebuild with `cargo build --features cuda`"),
            "{err}"
        );
    }

    #[test]
    fn dtypes() {
        assert_eq!(parse_dtype("bf16"), Some(DType::BF16));
        assert_eq!(parse_dtype("f64"), None);
    }
}
