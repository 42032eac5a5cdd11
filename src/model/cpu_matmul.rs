// SPDX-License-Identifier: MPL-2.0
//! Which code multiplies the CPU forward's matrices, chosen once per process and
//! named, so that every benchmark number says what ran.
//!
//! Two paths exist. The `gemm` crate, which candle calls, is built here with its
//! AVX2 + FMA kernels only: its AVX-512 kernels (the crate's `x86-v4` feature)
//! cannot be switched off at run time, and they made ViT-B 26 % slower on an AMD
//! EPYC (Zen 4) while speeding Intel Xeons up (README: Performance). OpenBLAS
//! (cargo feature `openblas`, on by default) builds every x86 kernel into one
//! library and picks one per CPU when it loads: AVX-512 on Intel Xeons and Zen 4
//! (`SkylakeX`, `Cooperlake`, `SapphireRapids`), AVX2 + FMA on older ones
//! (`Haswell`, `Zen`). Its own `OPENBLAS_CORETYPE` forces a kernel family, which
//! is how the tests run both on one AVX-512 machine. With AVX-512 kernels,
//! attention runs on fused AVX-512 kernels of this crate (`f32_attention`),
//! else as OpenBLAS products around a softmax (`blas`).
//!
//! A third path, asked for by name only (`bf16`), trades precision for speed
//! on CPUs with AVX512-BF16: the linear layers as bfloat16 products with f32
//! sums (see `bf16_matmul`), attention as on the default path. It runs on AMX
//! tiles where the CPU has them (Intel Sapphire Rapids on), else as AVX512-BF16
//! dot products; `bf16-amx` and `bf16-avx512` ask for one of the two.

use std::fmt;
use std::sync::OnceLock;

/// [`CPU_MATMUL_ENV`] asks for a path this build or this value cannot give.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct CpuMatmulError(String);

/// The environment variable that overrides the choice: `gemm`, `openblas`,
/// `bf16` (`bf16-amx`, `bf16-avx512`).
pub const CPU_MATMUL_ENV: &str = "RADIOEMBED_CPU_MATMUL";

/// The code that runs the CPU forward's linear layers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CpuMatmul {
    /// The `gemm` crate, through candle's matmul.
    Gemm,
    /// OpenBLAS's `sgemm`, kernels chosen per CPU by OpenBLAS.
    OpenBlas,
    /// The linear layers' weights and inputs rounded to bfloat16, multiplied
    /// by AVX512-BF16 dot products and summed in f32 (about three significant
    /// digits); attention as the default path. Only by name.
    Bf16,
    /// As [`CpuMatmul::Bf16`], multiplied on AMX tiles. Only by name.
    Amx,
}

/// The vector instructions a path's kernels use.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Isa {
    /// SSE2 (baseline x86-64), 4 f32 lanes, no FMA.
    Sse2,
    /// AVX, 8 f32 lanes, no FMA.
    Avx,
    /// AVX2 + FMA, 8 f32 lanes.
    Avx2Fma,
    /// AVX-512, 16 f32 lanes.
    Avx512,
    /// AVX512-BF16 dot products: 16 f32 lanes, each summing two products.
    Avx512Bf16,
    /// AMX-BF16 tile multiplies: 16 × 16 × 32 products per `tdpbf16ps`.
    AmxBf16,
}

impl Isa {
    /// f32 values per vector register (the 16 × 16 sums of a tile for AMX).
    fn f32_lanes(self) -> usize {
        match self {
            Isa::Sse2 => 4,
            Isa::Avx | Isa::Avx2Fma => 8,
            Isa::Avx512 | Isa::Avx512Bf16 => 16,
            Isa::AmxBf16 => 256,
        }
    }

    /// Floating-point operations one instruction does per lane: 2 for a fused
    /// multiply-add, 4 for a two-product dot, 64 for a tile multiply's 32
    /// products, 1 otherwise.
    fn flops_per_lane(self) -> usize {
        match self {
            Isa::Sse2 | Isa::Avx => 1,
            Isa::Avx2Fma | Isa::Avx512 => 2,
            Isa::Avx512Bf16 => 4,
            Isa::AmxBf16 => 64,
        }
    }

    /// Cycles per instruction on one core, as a fraction: two vector pipes on
    /// every x86 server core since Haswell and Zen 2 (1/2), but Zen 4 spends
    /// both of its 256-bit pipes on one AVX-512 instruction (1/1); Sapphire
    /// Rapids' tile unit starts a `tdpbf16ps` every 16 cycles.
    fn cycles_per_instruction(self) -> (usize, usize) {
        match self {
            Isa::Avx512 | Isa::Avx512Bf16 if crate::cpu::avx512_half_rate() => (1, 1),
            Isa::AmxBf16 => (16, 1),
            _ => (1, 2),
        }
    }

    /// Peak floating-point operations per cycle of one core (bfloat16 products
    /// for the bf16 kinds).
    pub fn flops_per_cycle(self) -> f64 {
        let (cycles, per) = self.cycles_per_instruction();
        (self.f32_lanes() * self.flops_per_lane()) as f64 * per as f64 / cycles as f64
    }

    /// Peak GFLOP/s of `cores` cores at `ghz`.
    pub fn peak_gflops(self, cores: usize, ghz: f64) -> f64 {
        cores as f64 * self.flops_per_cycle() * ghz
    }
}

impl fmt::Display for Isa {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Isa::Sse2 => "SSE2",
            Isa::Avx => "AVX",
            Isa::Avx2Fma => "AVX2+FMA",
            Isa::Avx512 => "AVX-512",
            Isa::Avx512Bf16 => "AVX512-BF16",
            Isa::AmxBf16 => "AMX-BF16",
        })
    }
}

impl CpuMatmul {
    /// The path of this process: [`CPU_MATMUL_ENV`] when set, else OpenBLAS when
    /// built in, else `gemm`. Read once; an unknown or unavailable value is an
    /// error every time it is asked for.
    pub fn current() -> Result<Self, CpuMatmulError> {
        static CHOICE: OnceLock<Result<CpuMatmul, CpuMatmulError>> = OnceLock::new();
        CHOICE
            .get_or_init(|| Self::from_env(std::env::var(CPU_MATMUL_ENV).ok().as_deref()))
            .clone()
    }

    /// The path `value` (the environment variable's value) asks for.
    pub(super) fn from_env(value: Option<&str>) -> Result<Self, CpuMatmulError> {
        match value.map(str::trim) {
            None | Some("") if cfg!(feature = "openblas") => Ok(CpuMatmul::OpenBlas),
            None | Some("") | Some("gemm") => Ok(CpuMatmul::Gemm),
            Some("openblas") if cfg!(feature = "openblas") => Ok(CpuMatmul::OpenBlas),
            Some("openblas") => Err(CpuMatmulError(format!(
                "{CPU_MATMUL_ENV}=openblas, but this build has no OpenBLAS \
                 (build with the `openblas` cargo feature)"
            ))),
            Some("bf16") if crate::cpu::amx_bf16() => Ok(CpuMatmul::Amx),
            Some("bf16" | "bf16-avx512") if crate::cpu::avx512_bf16() => Ok(CpuMatmul::Bf16),
            Some("bf16-amx") if crate::cpu::amx_bf16() => Ok(CpuMatmul::Amx),
            Some(path @ ("bf16" | "bf16-avx512")) => Err(CpuMatmulError(format!(
                "{CPU_MATMUL_ENV}={path} needs a CPU with AVX512-BF16 (Intel Cooper Lake or \
                 Sapphire Rapids on, AMD Zen 4 on); this one has none: use gemm or openblas"
            ))),
            Some("bf16-amx") => Err(CpuMatmulError(format!(
                "{CPU_MATMUL_ENV}=bf16-amx needs a CPU with AMX-BF16 (Intel Sapphire Rapids \
                 on) and Linux 5.16 or later; this one has none: use bf16, gemm or openblas"
            ))),
            Some(other) => Err(CpuMatmulError(format!(
                "{CPU_MATMUL_ENV}={other:?} is not a CPU matmul path; use gemm, openblas or bf16"
            ))),
        }
    }

    /// The kernels this path runs on this CPU.
    pub fn isa(self) -> Isa {
        match self {
            CpuMatmul::Gemm if crate::cpu::avx2_fma() => Isa::Avx2Fma,
            CpuMatmul::Gemm => Isa::Sse2,
            CpuMatmul::OpenBlas => openblas_isa(&self.kernels()),
            CpuMatmul::Bf16 => Isa::Avx512Bf16,
            CpuMatmul::Amx => Isa::AmxBf16,
        }
    }

    /// Whether attention runs on the fused AVX-512 kernels (`f32_attention`)
    /// instead of OpenBLAS: on the OpenBLAS path when OpenBLAS itself runs
    /// AVX-512 kernels, so that `OPENBLAS_CORETYPE=Haswell` (or any AVX2
    /// family) puts the whole forward on AVX2.
    pub fn fused_f32_attention(self) -> bool {
        self == CpuMatmul::OpenBlas && self.isa() == Isa::Avx512
    }

    /// The kernel family by the library's own name (OpenBLAS's core name).
    fn kernels(self) -> String {
        match self {
            CpuMatmul::Gemm => "gemm".to_string(),
            CpuMatmul::Bf16 => "bf16-avx512".to_string(),
            CpuMatmul::Amx => "bf16-amx".to_string(),
            #[cfg(feature = "openblas")]
            CpuMatmul::OpenBlas => super::blas::core_name(),
            // Never chosen then, but the enum is public: no panic for asking.
            #[cfg(not(feature = "openblas"))]
            CpuMatmul::OpenBlas => "none (not built in)".to_string(),
        }
    }
}

/// The instructions of an OpenBLAS x86-64 kernel family (its
/// `openblas_get_corename`); older and unknown families count as SSE2.
fn openblas_isa(core: &str) -> Isa {
    match core.to_ascii_lowercase().as_str() {
        "skylakex" | "cooperlake" | "sapphirerapids" => Isa::Avx512,
        "haswell" | "zen" => Isa::Avx2Fma,
        "sandybridge" | "bulldozer" | "piledriver" | "steamroller" | "excavator" => Isa::Avx,
        _ => Isa::Sse2,
    }
}

impl fmt::Display for CpuMatmul {
    /// E.g. `OpenBLAS 0.3.21, Cooperlake kernels (AVX-512); attention: fused
    /// AVX-512` or `gemm crate, AVX2+FMA kernels`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            CpuMatmul::Gemm => write!(f, "gemm crate, {} kernels", self.isa()),
            CpuMatmul::Bf16 => {
                f.write_str("bf16 linear layers and attention (AVX512-BF16 dot products, f32 sums)")
            }
            CpuMatmul::Amx => {
                f.write_str("bf16 linear layers and attention (AMX-BF16 tiles, f32 sums)")
            }
            #[cfg(feature = "openblas")]
            CpuMatmul::OpenBlas => write!(
                f,
                "{}, {} kernels ({}); attention: {}",
                super::blas::version(),
                self.kernels(),
                self.isa(),
                if self.fused_f32_attention() {
                    "fused AVX-512"
                } else {
                    "OpenBLAS"
                }
            ),
            #[cfg(not(feature = "openblas"))]
            CpuMatmul::OpenBlas => f.write_str("OpenBLAS (not built in)"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn environment_choices() {
        let default = if cfg!(feature = "openblas") {
            CpuMatmul::OpenBlas
        } else {
            CpuMatmul::Gemm
        };
        assert_eq!(CpuMatmul::from_env(None), Ok(default));
        assert_eq!(CpuMatmul::from_env(Some(" ")), Ok(default));
        assert_eq!(CpuMatmul::from_env(Some("gemm")), Ok(CpuMatmul::Gemm));
        let openblas = CpuMatmul::from_env(Some("openblas"));
        if cfg!(feature = "openblas") {
            assert_eq!(openblas, Ok(CpuMatmul::OpenBlas));
        } else {
            assert!(openblas.unwrap_err().0.contains("`openblas` cargo feature"));
        }
        // bf16 takes the best bf16 kernel this CPU has.
        let bf16 = CpuMatmul::from_env(Some("bf16"));
        if crate::cpu::amx_bf16() {
            assert_eq!(bf16, Ok(CpuMatmul::Amx));
        } else if crate::cpu::avx512_bf16() {
            assert_eq!(bf16, Ok(CpuMatmul::Bf16));
        } else {
            assert!(bf16.unwrap_err().0.contains("needs a CPU with AVX512-BF16"));
        }
        if crate::cpu::avx512_bf16() {
            assert_eq!(
                CpuMatmul::from_env(Some("bf16-avx512")),
                Ok(CpuMatmul::Bf16)
            );
        }
        let err = CpuMatmul::from_env(Some("mkl")).unwrap_err();
        assert_eq!(
            err.to_string(),
            "RADIOEMBED_CPU_MATMUL=\"mkl\" is not a CPU matmul path; use gemm, openblas or bf16"
        );
    }

    #[test]
    fn openblas_families() {
        assert_eq!(openblas_isa("Cooperlake"), Isa::Avx512);
        assert_eq!(openblas_isa("SkylakeX"), Isa::Avx512);
        assert_eq!(openblas_isa("Haswell"), Isa::Avx2Fma);
        assert_eq!(openblas_isa("Zen"), Isa::Avx2Fma);
        assert_eq!(openblas_isa("Sandybridge"), Isa::Avx);
        assert_eq!(openblas_isa("Prescott"), Isa::Sse2);
    }

    #[test]
    fn peaks() {
        // 2 cores × 2 pipes × 16 lanes × 2 (FMA) × 2.5 GHz, halved on Zen 4.
        let avx512 = if crate::cpu::avx512_half_rate() {
            160.0
        } else {
            320.0
        };
        assert_eq!(Isa::Avx512.peak_gflops(2, 2.5), avx512);
        assert_eq!(Isa::Avx2Fma.peak_gflops(2, 2.5), 160.0);
        assert_eq!(Isa::Sse2.peak_gflops(1, 1.0), 8.0);
        // 16 × 16 × 32 products × 2 per 16 cycles: 1024 per cycle and core.
        assert_eq!(Isa::AmxBf16.peak_gflops(2, 2.0), 4096.0);
    }
}
