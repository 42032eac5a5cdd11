// SPDX-License-Identifier: MPL-2.0
//! Compiling CUDA C kernels with NVRTC to a CUBIN for one GPU architecture,
//! keeping the compiler log so that warnings are seen.
//!
//! A CUBIN, not PTX: the driver JIT-compiles PTX and refuses PTX from an NVRTC
//! newer than itself (`CUDA_ERROR_UNSUPPORTED_PTX_VERSION`), whereas a CUBIN
//! for the device's own architecture needs no JIT at all.

use std::ffi::{CStr, CString};

use cudarc::nvrtc::{result, sys};

/// CUDA C kernels compiled at run time: their source and entry points.
#[derive(Debug)]
pub struct KernelSource {
    /// The name NVRTC gives the source in its messages (`radio_preprocess.cu`).
    pub file: &'static str,
    /// The CUDA C code (no headers: NVRTC has none of the toolkit's).
    pub code: &'static str,
    /// The `extern "C"` kernels it defines, in the order they are loaded.
    pub kernels: &'static [&'static str],
}

/// A compiled kernel image and the compiler's log.
#[derive(Debug, Clone)]
pub struct Compiled {
    /// The CUBIN (an ELF image) for the architecture compiled for.
    pub cubin: Vec<u8>,
    /// Everything NVRTC printed (empty when there were no warnings).
    pub log: String,
}

/// NVRTC's version (major, minor): which CUDA release compiled the kernels.
pub fn nvrtc_version() -> Result<(i32, i32), String> {
    let (mut major, mut minor) = (0, 0);
    // SAFETY: two valid out-pointers.
    unsafe { sys::nvrtcVersion(&mut major, &mut minor) }
        .result()
        .map_err(|e| format!("nvrtc: {e}"))?;
    Ok((major, minor))
}

/// Compiles `source` to a CUBIN for compute capability `(major, minor)`
/// (`sm_XY`). Needs libnvrtc, not a GPU.
pub fn compile(source: &KernelSource, (major, minor): (i32, i32)) -> Result<Compiled, String> {
    let src = CString::new(source.code).expect("kernel source has no NUL");
    let name = CString::new(source.file).expect("no NUL");
    let prog = result::create_program(&src, Some(&name)).map_err(|e| format!("nvrtc: {e}"))?;
    let arch = format!("--gpu-architecture=sm_{major}{minor}");
    let options = ["--std=c++17", "--fmad=false", arch.as_str()];
    // SAFETY: `prog` is a live program; it is destroyed exactly once below.
    let compiled = unsafe { result::compile_program(prog, &options) };
    let log = unsafe { result::get_program_log(prog) }
        .map(|raw| {
            // SAFETY: NVRTC returns a NUL-terminated log.
            unsafe { CStr::from_ptr(raw.as_ptr()) }
                .to_string_lossy()
                .trim()
                .to_string()
        })
        .unwrap_or_default();
    let cubin = compiled
        .map_err(|e| format!("nvrtc ({arch}): {e}\n{log}"))
        // SAFETY: the program compiled.
        .and_then(|()| unsafe { cubin_of(prog) });
    // SAFETY: created above and not used after this.
    let _ = unsafe { result::destroy_program(prog) };
    Ok(Compiled { cubin: cubin?, log })
}

/// The CUBIN of a compiled program.
///
/// # Safety
/// `prog` must be a live, successfully compiled program.
unsafe fn cubin_of(prog: sys::nvrtcProgram) -> Result<Vec<u8>, String> {
    let mut size = 0usize;
    // SAFETY: a live program and a valid out-pointer.
    unsafe { sys::nvrtcGetCUBINSize(prog, &mut size) }
        .result()
        .map_err(|e| format!("nvrtc: no CUBIN: {e}"))?;
    let mut cubin = vec![0u8; size];
    // SAFETY: the buffer holds the `size` bytes NVRTC reported.
    unsafe { sys::nvrtcGetCUBIN(prog, cubin.as_mut_ptr().cast()) }
        .result()
        .map_err(|e| format!("nvrtc: no CUBIN: {e}"))?;
    Ok(cubin)
}
