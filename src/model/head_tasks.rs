// SPDX-License-Identifier: MPL-2.0
//! The task layout every CPU attention path shares (`blas`, `f32_attention`,
//! `bf16_attention`): one task per (image, head) on rayon's pool, reading the
//! qkv projection's output `(B, N, 3·D)` in place (q, k and v side by side in
//! each row, heads side by side in each) and storing its head's columns of
//! the `(B, N, D)` output, the layout the output projection reads.

use candle_core::{DType, Result, Tensor};

use super::fused::{SendPtr, with_f32, written_by};

/// A qkv projection's output split into heads.
#[derive(Debug, Clone, Copy)]
pub(super) struct Heads {
    /// Images (B).
    pub images: usize,
    /// Tokens per image (N).
    pub tokens: usize,
    /// Width of q, k and v each (D).
    pub dim: usize,
    pub heads: usize,
    pub head_dim: usize,
}

impl Heads {
    /// The heads of `qkv`: `None` unless it is an f32 CPU tensor `(B, N, 3·D)`
    /// with N > 0 and D a multiple of `heads`.
    pub fn of(qkv: &Tensor, heads: usize) -> Result<Option<Self>> {
        if !qkv.device().is_cpu() || qkv.dtype() != DType::F32 {
            return Ok(None);
        }
        let (images, tokens, width3) = qkv.dims3()?;
        let dim = width3 / 3;
        if heads == 0 || width3 % 3 != 0 || dim % heads != 0 || tokens == 0 {
            return Ok(None);
        }
        Ok(Some(Self {
            images,
            tokens,
            dim,
            heads,
            head_dim: dim / heads,
        }))
    }

    /// f32s from one qkv row to the next (3·D).
    pub fn stride(&self) -> usize {
        3 * self.dim
    }
}

/// One (image, head) of a [`run_heads`] call.
pub(super) struct HeadTask<'a> {
    /// The image's N rows of qkv, `stride` f32s apart.
    pub rows: &'a [f32],
    pub stride: usize,
    /// Where the head's q, k and v start in each row.
    pub columns: [usize; 3],
    pub head_dim: usize,
    /// The head's first output value: N rows of head_dim values, `ldo` apart.
    pub out: *mut f32,
    pub ldo: usize,
}

impl HeadTask<'_> {
    /// Token `t`'s head_dim values of q (`part` 0), k (1) or v (2).
    pub fn row(&self, t: usize, part: usize) -> &[f32] {
        &self.rows[t * self.stride + self.columns[part]..][..self.head_dim]
    }
}

/// Runs `run` on every (image, head) of `qkv`, each task with state made by
/// `init` (its buffers, reused for every head it runs), and returns the
/// `(B, N, D)` output; `None` if `qkv` is not contiguous f32 CPU memory.
///
/// # Safety
/// `run` stores every value of its task's N × head_dim output block and
/// writes nothing else through `out`.
pub(super) unsafe fn run_heads<S>(
    qkv: &Tensor,
    shape: Heads,
    init: impl Fn() -> S + Sync + Send,
    run: impl Fn(&mut S, HeadTask<'_>) + Sync + Send,
) -> Result<Option<Tensor>> {
    use rayon::prelude::*;
    let Heads {
        images,
        tokens: n,
        dim: d,
        heads,
        head_dim,
    } = shape;
    let stride = shape.stride();
    let run_all = |src: &[f32], out: *mut f32| {
        let out_ptr = SendPtr::new(out);
        (0..images * heads)
            .into_par_iter()
            .for_each_init(&init, |state, task| {
                let (image, head) = (task / heads, task % heads);
                let task = HeadTask {
                    rows: &src[image * n * stride..(image + 1) * n * stride],
                    stride,
                    columns: [0, d, 2 * d].map(|part| part + head * head_dim),
                    head_dim,
                    // SAFETY: inside the B × N × D output: its image's first
                    // row, its head's first column.
                    out: unsafe { out_ptr.get().add(image * n * d + head * head_dim) },
                    ldo: d,
                };
                run(state, task);
            })
    };
    // SAFETY: the tasks cover every (image, head), the heads' columns every
    // column of D, and each task stores all of its block (the caller's
    // contract) and nothing else, so no two write the same value.
    let output = with_f32(qkv, |src| unsafe {
        written_by(images * n * d, |out| run_all(src, out))
    });
    let Some(out) = output else {
        return Ok(None);
    };
    Tensor::from_vec(out, (images, n, d), qkv.device()).map(Some)
}
