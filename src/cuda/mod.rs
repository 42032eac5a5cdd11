// SPDX-License-Identifier: MPL-2.0
//! Our own CUDA kernels (feature `cuda`): CUDA C compiled by NVRTC at run time
//! to a CUBIN for the device's architecture, once per process, and loaded on
//! a device's context. The preprocessing kernels and the model's fused
//! epilogues both come through here.

mod nvrtc;

use std::collections::HashMap;
use std::sync::{Arc, LazyLock, Mutex};

use cudarc::driver::{CudaContext, CudaFunction};
use cudarc::nvrtc::Ptx;

pub use nvrtc::{Compiled, KernelSource, compile, nvrtc_version};

/// `source`'s kernels on `context`'s GPU, in the order of `source.kernels`:
/// compiled once per process and architecture, loaded once per GPU (a module
/// belongs to the device's primary context, which every stream on it shares,
/// and the functions keep it alive). A driver that cannot load them is named
/// with both versions in the error.
pub fn load_kernels(
    context: &Arc<CudaContext>,
    source: &'static KernelSource,
) -> Result<Arc<[CudaFunction]>, String> {
    type Loaded = Mutex<HashMap<(&'static str, usize), Arc<[CudaFunction]>>>;
    static LOADED: LazyLock<Loaded> = LazyLock::new(Default::default);
    let key = (source.file, context.ordinal());
    let mut loaded = LOADED.lock().unwrap_or_else(|e| e.into_inner());
    if let Some(functions) = loaded.get(&key) {
        return Ok(functions.clone());
    }
    let arch = context.compute_capability().map_err(|e| e.to_string())?;
    let image = cubin(source, arch)?;
    let module = context
        .load_module(Ptx::from_binary(image.as_ref().clone()))
        .map_err(|e| {
            let nvrtc = nvrtc_version().map_or_else(|e| e, |(a, b)| format!("{a}.{b}"));
            format!(
                "the CUDA driver ({}) cannot load the kernels of {} that NVRTC {nvrtc} compiled \
                 for sm_{}{}: {e}; update the driver or use an NVRTC of its release",
                driver_version(),
                source.file,
                arch.0,
                arch.1
            )
        })?;
    let functions = source
        .kernels
        .iter()
        .map(|name| module.load_function(name).map_err(|e| e.to_string()))
        .collect::<Result<Arc<[CudaFunction]>, String>>()?;
    loaded.insert(key, functions.clone());
    Ok(functions)
}

/// `source` compiled for compute capability `arch`, once per process.
fn cubin(source: &'static KernelSource, arch: (i32, i32)) -> Result<Arc<Vec<u8>>, String> {
    type Cache = Mutex<HashMap<(&'static str, (i32, i32)), Arc<Vec<u8>>>>;
    static CUBINS: LazyLock<Cache> = LazyLock::new(Default::default);
    let mut cubins = CUBINS.lock().unwrap_or_else(|e| e.into_inner());
    if let Some(cubin) = cubins.get(&(source.file, arch)) {
        return Ok(cubin.clone());
    }
    let cubin = Arc::new(compile(source, arch)?.cubin);
    cubins.insert((source.file, arch), cubin.clone());
    Ok(cubin)
}

/// The CUDA driver's version as `major.minor`, for error messages.
fn driver_version() -> String {
    let mut version = 0;
    // SAFETY: a valid out-pointer; the driver library is loaded (a device exists).
    match unsafe { cudarc::driver::sys::cuDriverGetVersion(&mut version) }.result() {
        Ok(()) => format!("{}.{}", version / 1000, version % 1000 / 10),
        Err(e) => format!("unknown ({e})"),
    }
}

/// Keeps device memory that is freed in the stream-ordered pool for the next
/// allocation, instead of handing it back to the driver at every
/// synchronisation (the pool's default release threshold is 0): each forward
/// allocates and frees the same sizes as the one before.
pub fn keep_freed_memory(context: &CudaContext) -> Result<(), String> {
    use cudarc::driver::{result, sys};
    if !context.has_async_alloc() {
        return Ok(());
    }
    let mut keep = u64::MAX;
    // SAFETY: the device handle is the live context's; the release threshold
    // attribute is a u64, which `keep` is.
    unsafe {
        let pool = result::device::get_mem_pool(context.cu_device()).map_err(|e| e.to_string())?;
        result::mem_pool::set_attribute(
            pool,
            sys::CUmemPool_attribute::CU_MEMPOOL_ATTR_RELEASE_THRESHOLD,
            (&mut keep as *mut u64).cast(),
        )
        .map_err(|e| e.to_string())
    }
}
