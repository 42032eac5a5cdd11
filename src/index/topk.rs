// SPDX-License-Identifier: MPL-2.0
//! What every store's exact search shares: the running top-k and a dot product
//! that vectorises.

use crate::cpu::avx2_fma_dispatch;

/// The k best `(score, payload)` pairs seen so far, best first.
pub(super) struct TopK<T> {
    k: usize,
    items: Vec<(f32, T)>,
}

impl<T> TopK<T> {
    /// An empty top-k.
    pub(super) fn new(k: usize) -> Self {
        Self {
            k,
            items: Vec::with_capacity(k + 1),
        }
    }

    /// Keeps `score` if it is among the k best; `payload` is only made then.
    pub(super) fn offer(&mut self, score: f32, payload: impl FnOnce() -> T) {
        if self.items.len() == self.k && self.items.last().is_none_or(|(s, _)| *s >= score) {
            return;
        }
        let at = self.items.partition_point(|(s, _)| *s >= score);
        self.items.insert(at, (score, payload()));
        self.items.truncate(self.k);
    }

    /// Merges another top-k into this one.
    pub(super) fn merge(&mut self, other: Self) {
        for (score, payload) in other.items {
            self.offer(score, || payload);
        }
    }

    /// The kept pairs, best first.
    pub(super) fn into_sorted(self) -> Vec<(f32, T)> {
        self.items
    }
}

/// Runs `scan(t)` for `t` in `0..threads` on scoped threads and merges their
/// top-k lists; the first error wins.
pub(super) fn scan_in_parallel<T: Send, E: Send>(
    threads: usize,
    k: usize,
    scan: impl Fn(usize) -> Result<TopK<T>, E> + Sync,
) -> Result<TopK<T>, E> {
    let partials = std::thread::scope(|scope| {
        let workers: Vec<_> = (0..threads)
            .map(|t| {
                let scan = &scan;
                scope.spawn(move || scan(t))
            })
            .collect();
        workers
            .into_iter()
            .map(|w| w.join().expect("search worker panicked"))
            .collect::<Result<Vec<_>, _>>()
    })?;
    let mut best = TopK::new(k);
    for partial in partials {
        best.merge(partial);
    }
    Ok(best)
}

/// A vector of f32 read in chunks of 8, whatever its storage.
pub(super) trait Lanes {
    /// Number of values.
    fn len(&self) -> usize;
    /// Values `8 * chunk .. 8 * chunk + 8`.
    fn chunk(&self, chunk: usize) -> [f32; 8];
    /// Value `i`.
    fn at(&self, i: usize) -> f32;
}

impl Lanes for [f32] {
    fn len(&self) -> usize {
        <[f32]>::len(self)
    }

    #[inline(always)]
    fn chunk(&self, chunk: usize) -> [f32; 8] {
        self[8 * chunk..8 * chunk + 8].try_into().expect("8 values")
    }

    #[inline(always)]
    fn at(&self, i: usize) -> f32 {
        self[i]
    }
}

/// Little-endian f32 bytes as stored in a BLOB (not necessarily aligned).
pub(super) struct LeBytes<'a>(pub(super) &'a [u8]);

impl Lanes for LeBytes<'_> {
    fn len(&self) -> usize {
        self.0.len() / 4
    }

    #[inline(always)]
    fn chunk(&self, chunk: usize) -> [f32; 8] {
        let b = &self.0[32 * chunk..32 * chunk + 32];
        std::array::from_fn(|i| {
            f32::from_le_bytes([b[4 * i], b[4 * i + 1], b[4 * i + 2], b[4 * i + 3]])
        })
    }

    #[inline(always)]
    fn at(&self, i: usize) -> f32 {
        let b = &self.0[4 * i..4 * i + 4];
        f32::from_le_bytes([b[0], b[1], b[2], b[3]])
    }
}

avx2_fma_dispatch! {
    /// Dot product of `v` with `query` over their common length, 8 independent
    /// lanes so that it vectorises.
    pub(super) fn dot[V: Lanes + ?Sized](v: &V, query: &[f32]) -> f32 {
        let n = query.len().min(v.len());
        let mut lanes = [0f32; 8];
        for c in 0..n / 8 {
            let (x, q) = (v.chunk(c), query.chunk(c));
            for l in 0..8 {
                lanes[l] += x[l] * q[l];
            }
        }
        let tail: f32 = (n / 8 * 8..n).map(|i| v.at(i) * query[i]).sum();
        lanes.iter().sum::<f32>() + tail
    }
}

/// The Euclidean norm, never zero (so that a cosine never divides by zero).
pub(super) fn norm(v: &[f32]) -> f32 {
    dot(v, v).sqrt().max(f32::MIN_POSITIVE)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn top_k_keeps_the_best_in_order() {
        let mut t = TopK::new(3);
        for (s, id) in [(0.1, 1), (0.9, 2), (0.5, 3), (0.7, 4), (0.2, 5)] {
            t.offer(s, || id);
        }
        let mut other = TopK::new(3);
        other.offer(0.8, || 6);
        t.merge(other);
        assert_eq!(t.into_sorted(), vec![(0.9, 2), (0.8, 6), (0.7, 4)]);
    }

    #[test]
    fn dot_of_bytes_and_of_floats_equal_the_plain_dot() {
        let a: Vec<f32> = (0..37).map(|i| (i as f32 * 0.37).sin()).collect();
        let b: Vec<f32> = (0..37).map(|i| (i as f32 * 0.11).cos()).collect();
        let expected: f32 = a.iter().zip(&b).map(|(x, y)| x * y).sum();
        let bytes: Vec<u8> = a.iter().flat_map(|v| v.to_le_bytes()).collect();
        assert!((dot(&LeBytes(&bytes), &b) - expected).abs() < 1e-5);
        assert!((dot(a.as_slice(), &b) - expected).abs() < 1e-5);
    }
}
