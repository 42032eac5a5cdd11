// SPDX-License-Identifier: MPL-2.0
//! The AMX micro-kernel of [`bf16_matmul`](super::bf16_matmul): one 32 × 32
//! block of `x · Wᵀ` in four tile registers, by `tdpbf16ps`.
//!
//! AMX (Intel Sapphire Rapids on) adds eight tile registers of 16 rows × 64
//! bytes and a unit that multiplies two of them into a third: one `tdpbf16ps`
//! does 16 × 16 × 32 bfloat16 multiply-adds into f32 sums, 16 times the work
//! of a 512-bit `vdpbf16ps`. Its operands are the ones the dot-product kernel
//! already reads: activation rows of bf16 pairs (tile A: 16 rows × 16 pairs)
//! and weight panels of [`NR`](super::bf16_matmul) columns × pairs (tile B: 16
//! pairs × 16 columns, each entry the two weights of one column, which Intel
//! calls the VNNI layout), so both kernels share one packing.
//!
//! The block is the usual 2 × 2 register blocking (tmm0–3 accumulate the four
//! 16 × 16 quarters, tmm4–5 hold two A tiles, tmm6–7 two B tiles), so each
//! loaded tile feeds two multiplies. Rust has no stable AMX intrinsics; the
//! loop is one `asm!` block, which owns the tile registers while it runs.
//! Linux must have granted the process AMX ([`crate::cpu::amx_bf16`]) and the
//! thread must have loaded the tile shapes ([`Tiles::configure`]).

/// K pairs one step of the kernel consumes: the 16 u32 columns of an A tile.
pub(super) const PAIRS_PER_STEP: usize = 16;
/// Rows of the output block (two A tiles).
pub(super) const BLOCK_ROWS: usize = 32;
/// Columns of the output block (two B tiles), equal to the weight panel width.
pub(super) const BLOCK_COLS: usize = 32;

/// The 64-byte tile configuration `ldtilecfg` reads: palette 1, and tiles 0–7
/// each 16 rows of 64 bytes.
#[repr(C, align(64))]
struct TileConfig([u8; 64]);

impl TileConfig {
    const fn every_tile_full() -> Self {
        let mut bytes = [0u8; 64];
        bytes[0] = 1; // palette 1: 8 tiles of at most 16 × 64 bytes
        let mut tile = 0;
        while tile < 8 {
            bytes[16 + 2 * tile] = 64; // bytes per row, little-endian u16
            bytes[48 + tile] = 16; // rows
            tile += 1;
        }
        Self(bytes)
    }
}

static CONFIG: TileConfig = TileConfig::every_tile_full();

/// Where a block's 32 rows of 32 f32 sums lie in memory.
#[derive(Debug, Clone, Copy)]
pub(super) struct Sums {
    /// The first sum.
    pub first: *mut f32,
    /// f32s from the start of one row to the next's.
    pub row_stride: usize,
}

/// The tile registers configured on this thread for as long as it lives;
/// released (`tilerelease`) on drop, so the kernel does not save 8 KiB of tile
/// state at every context switch after the work is done.
pub(super) struct Tiles(std::marker::PhantomData<*const ()>);

impl Tiles {
    /// Loads the tile shapes on this thread.
    ///
    /// # Safety
    /// The CPU has AMX-BF16 and Linux granted it ([`crate::cpu::amx_bf16`]).
    #[cfg(target_arch = "x86_64")]
    pub unsafe fn configure() -> Self {
        // SAFETY: AMX is usable (the caller's contract); CONFIG is a valid
        // 64-byte, 64-aligned configuration.
        unsafe {
            std::arch::asm!(
                "ldtilecfg [{cfg}]",
                cfg = in(reg) &CONFIG,
                options(nostack, preserves_flags, readonly)
            );
        }
        Tiles(std::marker::PhantomData)
    }

    /// `c` = the 32 × 32 block of `A · B`: `a` points at 32 rows of `steps` ×
    /// 16 u32 bf16 pairs, `lda` bytes apart; `b` at a weight panel of `steps`
    /// × 16 pairs, each pair 32 u32s (one per column).
    ///
    /// # Safety
    /// `a` and `b` hold what is said above, readable; `c`'s block is
    /// writable.
    #[cfg(target_arch = "x86_64")]
    pub unsafe fn block(&self, a: *const u32, lda: usize, b: *const u32, steps: usize, c: Sums) {
        debug_assert!(steps > 0);
        let c0 = c.first;
        // SAFETY: row 16 of the 32 rows of c.
        let c1 = unsafe { c0.add(16 * c.row_stride) };
        let ldc = c.row_stride * 4;
        // SAFETY: the tiles are configured (self exists on this thread);
        // every load stays inside the caller's buffers (16 rows × 64 bytes
        // per tile, the second A tile 16 rows down, the second B tile 64
        // bytes right); the stores write the block of `c`.
        unsafe {
            std::arch::asm!(
                "tilezero tmm0",
                "tilezero tmm1",
                "tilezero tmm2",
                "tilezero tmm3",
                "2:",
                "tileloadd tmm4, [{a0} + {lda} * 1]",
                "tileloadd tmm6, [{b} + {ldb} * 1]",
                "tdpbf16ps tmm0, tmm4, tmm6",
                "tileloadd tmm7, [{b} + {ldb} * 1 + 64]",
                "tdpbf16ps tmm1, tmm4, tmm7",
                "tileloadd tmm5, [{a1} + {lda} * 1]",
                "tdpbf16ps tmm2, tmm5, tmm6",
                "tdpbf16ps tmm3, tmm5, tmm7",
                "add {a0}, 64",
                "add {a1}, 64",
                "add {b}, {bstep}",
                "dec {steps}",
                "jnz 2b",
                "tilestored [{c0} + {ldc} * 1], tmm0",
                "tilestored [{c0} + {ldc} * 1 + 64], tmm1",
                "tilestored [{c1} + {ldc} * 1], tmm2",
                "tilestored [{c1} + {ldc} * 1 + 64], tmm3",
                a0 = inout(reg) a => _,
                a1 = inout(reg) a.byte_add(16 * lda) => _,
                lda = in(reg) lda,
                b = inout(reg) b => _,
                ldb = in(reg) BLOCK_COLS * 4,
                bstep = in(reg) PAIRS_PER_STEP * BLOCK_COLS * 4,
                steps = inout(reg) steps => _,
                c0 = in(reg) c0,
                c1 = in(reg) c1,
                ldc = in(reg) ldc,
                options(nostack)
            );
        }
    }
}

impl Drop for Tiles {
    fn drop(&mut self) {
        #[cfg(target_arch = "x86_64")]
        // SAFETY: the tiles were configured on this thread (Tiles is !Send);
        // nothing holds tile data past the last `block`.
        unsafe {
            std::arch::asm!("tilerelease", options(nostack, preserves_flags, nomem));
        }
    }
}
