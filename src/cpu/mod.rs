// SPDX-License-Identifier: MPL-2.0
//! The CPU's instruction sets, checked in one place, and the one way a hot loop is
//! compiled for them.
//!
//! The crate targets baseline x86-64, where vectors are 4 wide and `mul_add` is a
//! libm call. A kernel written once inside [`avx2_fma_dispatch!`] is compiled
//! twice, for that baseline and for AVX2 + FMA, and the variant is picked at run
//! time (the answer is cached by std), as `candle-core/src/cpu/` does for its own
//! kernels.

/// Whether this CPU runs AVX2 and FMA code.
#[inline]
pub fn avx2_fma() -> bool {
    #[cfg(target_arch = "x86_64")]
    return is_x86_feature_detected!("avx2") && is_x86_feature_detected!("fma");
    #[cfg(not(target_arch = "x86_64"))]
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
