// SPDX-License-Identifier: MPL-2.0
//! The CPU's instruction sets, checked in one place, and the one way a hot loop is
//! compiled for them.
//!
//! The crate targets baseline x86-64, where vectors are 4 wide and `mul_add` is a
//! libm call. A kernel written once inside [`avx2_fma_dispatch!`] is compiled
//! twice, for that baseline and for AVX2 + FMA, and the variant is picked at run
//! time (the answer is cached by std), as `candle-core/src/cpu/` does for its own
//! kernels.

/// A field of the first processor in `/proc/cpuinfo`.
fn cpuinfo(field: &str) -> Option<String> {
    let info = std::fs::read_to_string("/proc/cpuinfo").ok()?;
    info.lines()
        .filter_map(|line| line.split_once(':'))
        .find(|(name, _)| name.trim() == field)
        .map(|(_, value)| value.trim().to_string())
}

/// The CPU's model name, printed with every benchmark result: a speed holds only
/// for the CPU it was measured on.
pub fn model_name() -> String {
    cpuinfo("model name").unwrap_or_else(|| "unknown CPU".into())
}

/// The clock the kernel reports for the first core, in GHz (under a hypervisor,
/// usually the nominal one).
pub fn clock_ghz() -> Option<f64> {
    Some(cpuinfo("cpu MHz")?.parse::<f64>().ok()? / 1000.0)
}

/// Whether this CPU splits each 512-bit instruction over two 256-bit halves:
/// AMD's Zen 4 (family 25, the only one of that family with AVX-512) does, so
/// its AVX-512 peak equals its AVX2 peak; Intel's server cores and Zen 5 have
/// full-width units.
pub fn avx512_half_rate() -> bool {
    cpuinfo("vendor_id").as_deref() == Some("AuthenticAMD")
        && cpuinfo("cpu family").as_deref() == Some("25")
}

/// Whether this CPU runs AVX2 and FMA code.
#[inline]
pub fn avx2_fma() -> bool {
    #[cfg(target_arch = "x86_64")]
    return is_x86_feature_detected!("avx2") && is_x86_feature_detected!("fma");
    #[cfg(not(target_arch = "x86_64"))]
    return false;
}

/// Whether this CPU runs AVX-512 bfloat16 dot products (`vdpbf16ps`): Intel
/// Cooper Lake and Sapphire Rapids on, AMD Zen 4 on.
#[inline]
pub fn avx512_bf16() -> bool {
    #[cfg(target_arch = "x86_64")]
    return is_x86_feature_detected!("avx512f") && is_x86_feature_detected!("avx512bf16");
    #[cfg(not(target_arch = "x86_64"))]
    return false;
}

/// Whether this CPU runs AMX bfloat16 tile multiplies (`tdpbf16ps`, Intel
/// Sapphire Rapids on) and Linux lets this process use the tile registers.
///
/// Linux keeps AMX's 8 KiB of tile state off until a process asks for it
/// (`arch_prctl(ARCH_REQ_XCOMP_PERM)`, kernel 5.16 on); the first call asks,
/// and a refusal (an older kernel, a hypervisor that hides the state) reads as
/// no AMX.
pub fn amx_bf16() -> bool {
    #[cfg(all(target_arch = "x86_64", target_os = "linux"))]
    {
        static USABLE: std::sync::OnceLock<bool> = std::sync::OnceLock::new();
        *USABLE.get_or_init(|| {
            // CPUID leaf 7: EDX bit 22 AMX-BF16, bit 24 AMX-TILE.
            let edx = std::arch::x86_64::__cpuid_count(7, 0).edx;
            let cpu = edx & (1 << 22) != 0 && edx & (1 << 24) != 0;
            const ARCH_REQ_XCOMP_PERM: libc::c_long = 0x1023;
            const XFEATURE_XTILEDATA: libc::c_long = 18;
            // SAFETY: arch_prctl with these arguments only changes which
            // register state the kernel lets this process use.
            cpu && avx512_bf16()
                && unsafe {
                    libc::syscall(
                        libc::SYS_arch_prctl,
                        ARCH_REQ_XCOMP_PERM,
                        XFEATURE_XTILEDATA,
                    )
                } == 0
        })
    }
    #[cfg(not(all(target_arch = "x86_64", target_os = "linux")))]
    return false;
}

/// Defines `fn $name(args) -> ret { body }` whose body, an `#[inline(always)]`
/// kernel, is compiled twice: for AVX2 + FMA, run when [`avx2_fma`] says the CPU
/// has them, and for baseline x86-64 otherwise.
///
/// Generic parameters go in square brackets; those the arguments do not determine
/// (const generics) are named again with a turbofish after them:
///
/// ```ignore
/// avx2_fma_dispatch! {
///     /// One line with a support of `K` taps.
///     fn resample_fixed[const K: usize]::<K>(taps: &Taps, dst: &mut [f32]) {
///         /* ... */
///     }
/// }
/// ```
macro_rules! avx2_fma_dispatch {
    (
        $(#[$attr:meta])*
        $vis:vis fn $name:ident $([$($generics:tt)*])? $(::<$($targ:tt),*>)?
            ($($arg:ident : $ty:ty),* $(,)?) $(-> $ret:ty)? $body:block
    ) => {
        $(#[$attr])*
        $vis fn $name $(<$($generics)*>)? ($($arg: $ty),*) $(-> $ret)? {
            #[inline(always)]
            fn kernel $(<$($generics)*>)? ($($arg: $ty),*) $(-> $ret)? $body
            #[cfg(target_arch = "x86_64")]
            {
                #[target_feature(enable = "avx2,fma")]
                unsafe fn with_avx2_fma $(<$($generics)*>)? ($($arg: $ty),*) $(-> $ret)? {
                    kernel $(::<$($targ),*>)? ($($arg),*)
                }
                if $crate::cpu::avx2_fma() {
                    // SAFETY: the features were detected on this CPU.
                    return unsafe { with_avx2_fma $(::<$($targ),*>)? ($($arg),*) };
                }
            }
            kernel $(::<$($targ),*>)? ($($arg),*)
        }
    };
}
pub(crate) use avx2_fma_dispatch;
