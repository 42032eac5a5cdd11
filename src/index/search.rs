//! Exact cosine search over an index.

use std::path::Path;

use rusqlite::{Connection, OpenFlags};

use super::IndexError;
use super::store::read_settings;

/// One search result.
#[derive(Debug, Clone, PartialEq)]
pub struct Hit {
    /// The indexed source (URI or source id).
    pub source: String,
    /// Stream timestamp in nanoseconds.
    pub pts_ns: Option<u64>,
    /// Running frame index in the source.
    pub frame_index: u64,
    /// Cosine similarity with the query.
    pub score: f32,
}

/// The `k` rows most similar (cosine) to `query`, best first, scanning every
/// row with `threads` readers over disjoint row-id ranges.
pub fn search(
    path: &Path,
    query: &[f32],
    k: usize,
    threads: usize,
) -> Result<Vec<Hit>, IndexError> {
    let settings = read_settings(path)?;
    if settings.summary_dim != query.len() {
        return Err(IndexError::Dimension {
            expected: settings.summary_dim,
            found: query.len(),
        });
    }
    let err = |source| IndexError::Sqlite {
        path: path.display().to_string(),
        source,
    };
    let open = || {
        let conn =
            Connection::open_with_flags(path, OpenFlags::SQLITE_OPEN_READ_ONLY).map_err(err)?;
        // Read blobs from the mapped file rather than through the page cache copy.
        conn.execute_batch("PRAGMA mmap_size = 68719476736;")
            .map_err(err)?;
        Ok::<_, IndexError>(conn)
    };
    let (lo, hi): (i64, i64) = open()?
        .query_row(
            "SELECT coalesce(min(id), 0), coalesce(max(id), -1) FROM frames",
            [],
            |r| Ok((r.get(0)?, r.get(1)?)),
        )
        .map_err(err)?;
    let qnorm = query
        .iter()
        .map(|v| v * v)
        .sum::<f32>()
        .sqrt()
        .max(f32::MIN_POSITIVE);
    let threads = threads.max(1) as i64;
    let span = (hi - lo + 1).max(0);
    let ranges: Vec<(i64, i64)> = (0..threads)
        .map(|t| (lo + span * t / threads, lo + span * (t + 1) / threads))
        .collect();
    let partials = std::thread::scope(|scope| {
        let workers: Vec<_> = ranges
            .iter()
            .map(|&(from, to)| {
                let open = &open;
                scope.spawn(move || -> Result<Vec<(f32, i64)>, IndexError> {
                    let conn = open()?;
                    let mut st = conn
                        .prepare("SELECT id, summary, summary_norm FROM frames WHERE id >= ?1 AND id < ?2")
                        .map_err(err)?;
                    let mut rows = st.query([from, to]).map_err(err)?;
                    let mut best = TopK::new(k);
                    while let Some(row) = rows.next().map_err(err)? {
                        let id: i64 = row.get(0).map_err(err)?;
                        let blob = row.get_ref(1).map_err(err)?.as_blob().map_err(|e| err(e.into()))?;
                        let norm: f64 = row.get(2).map_err(err)?;
                        let score = dot_le(blob, query) / (qnorm * (norm as f32).max(f32::MIN_POSITIVE));
                        best.offer(score, id);
                    }
                    Ok(best.into_sorted())
                })
            })
            .collect();
        workers
            .into_iter()
            .map(|w| w.join().expect("search worker panicked"))
            .collect::<Result<Vec<_>, _>>()
    })?;
    let mut best = TopK::new(k);
    for (score, id) in partials.into_iter().flatten() {
        best.offer(score, id);
    }
    let conn = open()?;
    let mut st = conn
        .prepare("SELECT source, pts_ns, frame_index FROM frames WHERE id = ?1")
        .map_err(err)?;
    best.into_sorted()
        .into_iter()
        .map(|(score, id)| {
            st.query_row([id], |r| {
                Ok(Hit {
                    source: r.get(0)?,
                    pts_ns: r.get::<_, Option<i64>>(1)?.map(|p| p as u64),
                    frame_index: r.get::<_, i64>(2)? as u64,
                    score,
                })
            })
            .map_err(err)
        })
        .collect()
}

/// The k best (score, id) pairs seen so far.
struct TopK {
    k: usize,
    items: Vec<(f32, i64)>,
}

impl TopK {
    fn new(k: usize) -> Self {
        Self {
            k,
            items: Vec::with_capacity(k + 1),
        }
    }

    fn offer(&mut self, score: f32, id: i64) {
        if self.items.len() == self.k && self.items.last().is_some_and(|&(s, _)| s >= score) {
            return;
        }
        let at = self.items.partition_point(|&(s, _)| s >= score);
        self.items.insert(at, (score, id));
        self.items.truncate(self.k);
    }

    fn into_sorted(self) -> Vec<(f32, i64)> {
        self.items
    }
}

/// Dot product of little-endian f32 bytes with a query, 8 independent lanes so
/// that it vectorises (compiled for AVX2 + FMA when the CPU has them).
fn dot_le(bytes: &[u8], query: &[f32]) -> f32 {
    #[cfg(target_arch = "x86_64")]
    if is_x86_feature_detected!("avx2") && is_x86_feature_detected!("fma") {
        // SAFETY: the features were detected on this CPU.
        return unsafe { dot_le_avx2(bytes, query) };
    }
    dot_le_generic(bytes, query)
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2,fma")]
unsafe fn dot_le_avx2(bytes: &[u8], query: &[f32]) -> f32 {
    dot_le_generic(bytes, query)
}

#[inline(always)]
fn dot_le_generic(bytes: &[u8], query: &[f32]) -> f32 {
    let mut lanes = [0f32; 8];
    let n = query.len().min(bytes.len() / 4);
    let (q, b) = (&query[..n], &bytes[..4 * n]);
    let chunks = n / 8;
    for (qc, bc) in q.chunks_exact(8).zip(b.chunks_exact(32)) {
        for ((lane, &qv), v) in lanes.iter_mut().zip(qc).zip(bc.chunks_exact(4)) {
            *lane += f32::from_le_bytes([v[0], v[1], v[2], v[3]]) * qv;
        }
    }
    let mut sum: f32 = lanes.iter().sum();
    for i in chunks * 8..n {
        sum += f32::from_le_bytes([b[4 * i], b[4 * i + 1], b[4 * i + 2], b[4 * i + 3]]) * q[i];
    }
    sum
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn top_k_keeps_the_best_in_order() {
        let mut t = TopK::new(3);
        for (s, id) in [(0.1, 1), (0.9, 2), (0.5, 3), (0.7, 4), (0.2, 5)] {
            t.offer(s, id);
        }
        assert_eq!(t.into_sorted(), vec![(0.9, 2), (0.7, 4), (0.5, 3)]);
    }

    #[test]
    fn dot_of_bytes_equals_plain_dot() {
        let a: Vec<f32> = (0..37).map(|i| (i as f32 * 0.37).sin()).collect();
        let b: Vec<f32> = (0..37).map(|i| (i as f32 * 0.11).cos()).collect();
        let expected: f32 = a.iter().zip(&b).map(|(x, y)| x * y).sum();
        let got = dot_le(&super::super::store::to_bytes(&a), &b);
        assert!((got - expected).abs() < 1e-5);
    }
}
