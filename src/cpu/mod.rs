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

/// f32 fused multiply-adds per second that `threads` threads reach together,
/// in GFLOP/s, measured by running independent chains of them (12 vector
/// accumulators each, enough to keep two pipes busy through their latency)
/// (the best of 8 rounds of about 25 ms): the peak a matmul can be held
/// against. Under a hypervisor
/// the clock in `/proc/cpuinfo` is often the nominal one, not the one the cores
/// run at (an Intel Xeon VM reporting 2.6 GHz ran AVX-512 FMAs at 3.85 GHz).
/// `avx512` picks 16-wide FMAs, else 8-wide AVX2 ones; `None` when the CPU
/// lacks them.
pub fn measured_fma_gflops(avx512: bool, threads: usize) -> Option<f64> {
    #[cfg(target_arch = "x86_64")]
    {
        // About 25 ms a round at 3 GHz; the best of 8 rounds, so that a clock
        // still ramping up or another thread's last spin does not count.
        const ITERS: u64 = 10_000_000;
        const ROUNDS: usize = 8;
        let lanes = if avx512 { 16 } else { 8 };
        let usable = if avx512 {
            is_x86_feature_detected!("avx512f")
        } else {
            avx2_fma()
        };
        if !usable || threads == 0 {
            return None;
        }
        let round = || {
            let started = std::time::Instant::now();
            std::thread::scope(|scope| {
                for _ in 0..threads {
                    // SAFETY: the CPU has the instructions (checked above).
                    scope.spawn(move || unsafe {
                        if avx512 {
                            fma_chains::avx512(ITERS)
                        } else {
                            fma_chains::avx2(ITERS)
                        }
                    });
                }
            });
            started.elapsed().as_secs_f64()
        };
        let seconds = (0..ROUNDS).map(|_| round()).fold(f64::INFINITY, f64::min);
        let flops = (ITERS * fma_chains::CHAINS as u64 * lanes * 2 * threads as u64) as f64;
        Some(flops / seconds / 1e9)
    }
    #[cfg(not(target_arch = "x86_64"))]
    {
        let _ = (avx512, threads);
        None
    }
}

#[cfg(target_arch = "x86_64")]
mod fma_chains {
    use std::arch::x86_64::*;

    /// Independent accumulators per thread.
    pub const CHAINS: usize = 12;

    /// `iters` rounds of [`CHAINS`] independent `fma`s, whose results are kept
    /// (so the rounds cannot be optimised away).
    #[inline(always)]
    fn chains<V: Copy>(iters: u64, start: V, fma: impl Fn(V) -> V) {
        let mut acc = [start; CHAINS];
        for _ in 0..iters {
            for r in acc.iter_mut() {
                *r = fma(*r);
            }
        }
        std::hint::black_box(acc);
    }

    /// `iters` rounds of [`CHAINS`] 16-wide FMAs.
    #[target_feature(enable = "avx512f")]
    pub fn avx512(iters: u64) {
        let (a, b) = (_mm512_set1_ps(0.999_999), _mm512_set1_ps(1e-7));
        chains(iters, _mm512_set1_ps(1.0), |r| _mm512_fmadd_ps(r, a, b));
    }

    /// `iters` rounds of [`CHAINS`] 8-wide FMAs.
    #[target_feature(enable = "avx2,fma")]
    pub fn avx2(iters: u64) {
        let (a, b) = (_mm256_set1_ps(0.999_999), _mm256_set1_ps(1e-7));
        chains(iters, _mm256_set1_ps(1.0), |r| _mm256_fmadd_ps(r, a, b));
    }
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

#[cfg(all(test, target_arch = "x86_64"))]
mod tests {
    use super::*;

    /// The measured rate is the chains' FLOPs over the time they took: more
    /// than 16 GFLOP/s (one 8-wide FMA a nanosecond) on any core with AVX2,
    /// and the AVX-512 one exactly when the CPU has AVX-512.
    #[test]
    fn the_fma_rate_is_measured_for_the_isas_the_cpu_has() {
        assert_eq!(measured_fma_gflops(false, 0), None);
        if !avx2_fma() {
            eprintln!("SKIPPED: no AVX2+FMA on this CPU, nothing to measure");
            return;
        }
        let one = measured_fma_gflops(false, 1).expect("AVX2+FMA is here");
        assert!(one > 16.0, "{one} GFLOP/s");
        let avx512 = is_x86_feature_detected!("avx512f");
        assert_eq!(measured_fma_gflops(true, 1).is_some(), avx512);
    }
}
