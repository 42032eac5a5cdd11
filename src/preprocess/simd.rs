//! Run-time CPU feature checks for the kernels compiled twice (baseline and
//! AVX2 + FMA): the crate targets baseline x86-64, so without this the hot loops
//! would be 4 wide and `mul_add` a libm call.

/// Whether this CPU runs AVX2 and FMA code (the answer is cached by std).
#[inline]
pub(crate) fn avx2_fma() -> bool {
    #[cfg(target_arch = "x86_64")]
    return is_x86_feature_detected!("avx2") && is_x86_feature_detected!("fma");
    #[cfg(not(target_arch = "x86_64"))]
    return false;
}
