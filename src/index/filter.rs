// SPDX-License-Identifier: MPL-2.0
//! What a search considers ([`SearchFilter`]) and how its hits become moments
//! ([`moments`]).

use super::Hit;

/// Which rows a search considers. Rows outside are skipped during the scan, so
/// a filtered search still returns its `k` best.
#[derive(Debug, Clone, Default)]
pub struct SearchFilter {
    /// Sources matching this glob (`*`, `?`, `[...]`), as written in the index.
    pub source: Option<glob::Pattern>,
    /// Rows at or after this stream time (ns).
    pub after_ns: Option<u64>,
    /// Rows before this stream time (ns).
    pub before_ns: Option<u64>,
    /// Hits scoring at least this cosine.
    pub min_score: Option<f32>,
}

impl SearchFilter {
    /// Whether a row of `source` at `pts_ns` is considered. A row without a
    /// timestamp passes no time bound.
    pub fn accepts(&self, source: &str, pts_ns: Option<u64>) -> bool {
        if self.source.as_ref().is_some_and(|p| !p.matches(source)) {
            return false;
        }
        match (pts_ns, self.after_ns, self.before_ns) {
            (None, None, None) => true,
            (None, ..) => false,
            (Some(pts), after, before) => {
                after.is_none_or(|a| pts >= a) && before.is_none_or(|b| pts < b)
            }
        }
    }

    /// Whether a score counts as a hit.
    pub fn scores(&self, score: f32) -> bool {
        self.min_score.is_none_or(|min| score >= min)
    }

    /// Whether the rows need their source and time to be filtered.
    pub(super) fn reads_rows(&self) -> bool {
        self.source.is_some() || self.after_ns.is_some() || self.before_ns.is_some()
    }
}

/// Adjacent hits of one source merged into one result.
#[derive(Debug, Clone, PartialEq)]
pub struct Moment {
    /// The best-scoring frame of the moment.
    pub best: Hit,
    /// Stream time of its first frame (ns), if the frames have timestamps.
    pub start_ns: Option<u64>,
    /// Stream time of its last frame (ns).
    pub end_ns: Option<u64>,
    /// How many hits it merges.
    pub frames: usize,
}

/// The largest change of score between two neighbouring frames of one moment. A
/// scene that matches scores alike frame after frame; where the picture changes
/// (a cut, someone leaving), the score jumps and a new moment starts.
pub const MOMENT_SCORE_STEP: f32 = 0.05;

/// Merges the hits of each source on consecutive indexed frames (frame indexes
/// that follow each other, scores within [`MOMENT_SCORE_STEP`] of the previous
/// frame's) into moments, best moment first: a scene that matches for twenty
/// seconds is one result, not twenty.
pub fn moments(mut hits: Vec<Hit>) -> Vec<Moment> {
    hits.sort_by(|a, b| (&a.source, a.frame_index).cmp(&(&b.source, b.frame_index)));
    let mut moments: Vec<Moment> = Vec::new();
    let mut last: Option<(String, u64, f32)> = None;
    for hit in hits {
        let follows = last.as_ref().is_some_and(|(source, index, score)| {
            *source == hit.source
                && hit.frame_index == index + 1
                && (hit.score - score).abs() <= MOMENT_SCORE_STEP
        });
        last = Some((hit.source.clone(), hit.frame_index, hit.score));
        match moments.last_mut() {
            Some(moment) if follows => {
                moment.frames += 1;
                moment.start_ns = min_some(moment.start_ns, hit.pts_ns);
                moment.end_ns = moment.end_ns.max(hit.pts_end_ns.or(hit.pts_ns));
                if hit.score > moment.best.score {
                    moment.best = hit;
                }
            }
            _ => moments.push(Moment {
                start_ns: hit.pts_ns,
                end_ns: hit.pts_end_ns.or(hit.pts_ns),
                frames: 1,
                best: hit,
            }),
        }
    }
    moments.sort_by(|a, b| b.best.score.total_cmp(&a.best.score));
    moments
}

fn min_some(a: Option<u64>, b: Option<u64>) -> Option<u64> {
    match (a, b) {
        (Some(a), Some(b)) => Some(a.min(b)),
        (a, b) => a.or(b),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn hit(source: &str, frame_index: u64, score: f32) -> Hit {
        Hit {
            source: source.into(),
            pts_ns: Some(frame_index * 1_000_000_000),
            pts_end_ns: None,
            frame_index,
            score,
        }
    }

    #[test]
    fn adjacent_hits_of_a_source_merge_and_gaps_and_jumps_split() {
        let hits = vec![
            hit("a", 3, 0.82),
            hit("a", 1, 0.80),
            hit("a", 2, 0.84),
            hit("b", 4, 0.95),
            hit("a", 7, 0.7),
            hit("b", 5, 0.92),
            // Follows b/5 but its score jumps: another moment.
            hit("b", 6, 0.5),
        ];
        let m = moments(hits);
        assert_eq!(m.len(), 4);
        assert_eq!((m[0].best.source.as_str(), m[0].best.frame_index), ("b", 4));
        let s = |x: u64| Some(x * 1_000_000_000);
        assert_eq!((m[0].start_ns, m[0].end_ns, m[0].frames), (s(4), s(5), 2));
        assert_eq!((m[1].best.frame_index, m[1].frames), (2, 3));
        assert_eq!((m[1].start_ns, m[1].end_ns), (s(1), s(3)));
        assert_eq!((m[2].best.frame_index, m[2].frames), (7, 1));
        assert_eq!((m[3].best.frame_index, m[3].frames), (6, 1));
    }

    #[test]
    fn filters_cut_sources_times_and_scores() {
        let filter = SearchFilter {
            source: Some(glob::Pattern::new("file:///cams/gate-*").unwrap()),
            after_ns: Some(10),
            before_ns: Some(20),
            min_score: Some(0.5),
        };
        assert!(filter.accepts("file:///cams/gate-1.mp4", Some(10)));
        assert!(!filter.accepts("file:///cams/gate-1.mp4", Some(20)));
        assert!(!filter.accepts("file:///cams/gate-1.mp4", Some(9)));
        assert!(!filter.accepts("file:///cams/gate-1.mp4", None));
        assert!(!filter.accepts("file:///cams/yard.mp4", Some(15)));
        assert!(filter.scores(0.5) && !filter.scores(0.49));
        let open = SearchFilter::default();
        assert!(open.accepts("x", None) && open.scores(-1.0) && !open.reads_rows());
    }
}
