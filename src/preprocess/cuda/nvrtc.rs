// SPDX-License-Identifier: MPL-2.0
//! Compiling the preprocessing kernels with NVRTC, keeping the compiler log so
//! that warnings are seen (cudarc's `compile_ptx` drops the log on success).

use std::ffi::{CStr, CString};

use cudarc::nvrtc::result;

/// CUDA C source of the preprocessing kernels.
pub const KERNEL_SOURCE: &str = include_str!("kernels.cu");

/// Entry points the source defines.
pub const KERNEL_NAMES: [&str; 4] = [
    "vertical",
    "horizontal_f32",
    "horizontal_f16",
    "horizontal_bf16",
];

/// PTX and the compiler's log.
#[derive(Debug, Clone)]
pub struct Compiled {
    /// The PTX module text.
    pub ptx: String,
    /// Everything NVRTC printed (empty when there were no warnings).
    pub log: String,
}

/// Compiles [`KERNEL_SOURCE`] to PTX. Needs libnvrtc, not a GPU.
pub fn compile_kernels() -> Result<Compiled, String> {
    let src = CString::new(KERNEL_SOURCE).expect("kernel source has no NUL");
    let name = CString::new("radio_preprocess.cu").expect("no NUL");
    let prog = result::create_program(&src, Some(&name)).map_err(|e| format!("nvrtc: {e}"))?;
    let options = ["--std=c++17", "--fmad=false"];
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
    let ptx = compiled
        .map_err(|e| format!("nvrtc: {e}\n{log}"))
        .and_then(|()| unsafe { result::get_ptx(prog) }.map_err(|e| format!("nvrtc: {e}")))
        .map(|raw| {
            // SAFETY: the PTX image is NUL-terminated text.
            unsafe { CStr::from_ptr(raw.as_ptr()) }
                .to_string_lossy()
                .into_owned()
        });
    // SAFETY: created above and not used after this.
    let _ = unsafe { result::destroy_program(prog) };
    Ok(Compiled { ptx: ptx?, log })
}
