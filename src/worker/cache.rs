//! Prometheus's scrape cache, reduced to what shows in the output — which samples count
//! towards `scrape_series_added` — and kept as sorted 64-bit series hashes.
//!
//! Prometheus 3.x (scrape/scrape.go) caches every series a scrape looked up or appended.
//! A scrape that succeeds with a non-empty body then flushes the cache down to the
//! series that scrape saw; a failed or empty scrape removes nothing. A sample counts
//! towards `scrape_series_added` when its series was not in the cache and the append
//! succeeded (before any sample_limit breach). So a target that recovers from a failure
//! reports 0 series added for the series it had before, and a series that was absent
//! from a successful scrape counts as added when it returns. (Prometheus before 3.3 also
//! kept series seen in failed scrapes across the next flush; the parity suite shows that
//! difference against 2.42.)
//!
//! In the steady state the cache is exactly the set of series the last scrape tracked
//! for staleness (`ScrapeState::prev`), so `cached` is `None` and costs nothing beyond
//! that list. Prometheus keys its cache by the series text as exposed and scrapewheel by
//! the final label set, which differs only when the same series is spelt two ways (see
//! README.md).
//!
//! Prometheus also flushes a cache that grew past twice its size at the last flush plus
//! 1000 entries while scrapes fail; its count includes dropped-series and metadata
//! entries, which this one does not keep, so that forced flush can come later here.

use std::cmp::Ordering;

/// Entries a failing target may add beyond twice the size at the last flush before the
/// cache is flushed anyway (Prometheus's constant).
const FORCED_FLUSH_SLACK: usize = 1000;

#[derive(Debug, Default)]
pub struct SeriesCache {
    /// The cached series, sorted; `None` when they are exactly the target's tracked
    /// series (`ScrapeState::prev`).
    cached: Option<Box<[u64]>>,
    /// Entries at the last flush.
    flushed_len: usize,
}

/// The sorted union of two sorted, deduplicated lists.
fn union(a: &[u64], b: &[u64]) -> Vec<u64> {
    let mut out = Vec::with_capacity(a.len() + b.len());
    let (mut i, mut j) = (0, 0);
    while i < a.len() && j < b.len() {
        match a[i].cmp(&b[j]) {
            Ordering::Less => {
                out.push(a[i]);
                i += 1;
            }
            Ordering::Greater => {
                out.push(b[j]);
                j += 1;
            }
            Ordering::Equal => {
                out.push(a[i]);
                i += 1;
                j += 1;
            }
        }
    }
    out.extend_from_slice(&a[i..]);
    out.extend_from_slice(&b[j..]);
    out
}

impl SeriesCache {
    fn entries<'a>(&'a self, prev: &'a [u64]) -> &'a [u64] {
        self.cached.as_deref().unwrap_or(prev)
    }

    /// True when the cache holds exactly the target's tracked series.
    pub fn is_steady(&self) -> bool {
        self.cached.is_none()
    }

    /// Ends a successful scrape that saw exactly the `tracked` series the target tracked
    /// before, with the cache steady: the flush keeps the cache as it is.
    pub fn finish_unchanged(&mut self, tracked: usize) {
        debug_assert!(self.is_steady());
        self.flushed_len = tracked;
    }

    /// True if the cache held `h` when this scrape started. `prev` is the target's
    /// tracked series from its last scrape.
    pub fn contains(&self, prev: &[u64], h: u64) -> bool {
        self.entries(prev).binary_search(&h).is_ok()
    }

    /// How many of `sorted` (sorted, deduplicated) the cache did not hold.
    pub fn count_missing(&self, prev: &[u64], sorted: &[u64]) -> u64 {
        let entries = self.entries(prev);
        // A merge walk: one pass over both lists.
        let (mut j, mut missing) = (0usize, 0u64);
        for &h in sorted {
            while j < entries.len() && entries[j] < h {
                j += 1;
            }
            if j == entries.len() || entries[j] != h {
                missing += 1;
            }
        }
        missing
    }

    /// Ends a scrape. `seen` (sorted, deduplicated) are the series it looked up or
    /// appended; `flush` is true when it succeeded with a non-empty body. `old_prev` and
    /// `new_prev` are the target's tracked series before and after it.
    pub fn finish(&mut self, seen: &[u64], flush: bool, old_prev: &[u64], new_prev: &[u64]) {
        if flush {
            // The steady state: what the scrape saw is what it tracked; nothing to keep.
            self.flushed_len = seen.len();
            self.cached = (seen != new_prev).then(|| seen.into());
            return;
        }
        let all = union(self.entries(old_prev), seen);
        let kept = if all.len() > 2 * self.flushed_len + FORCED_FLUSH_SLACK {
            // Prometheus keeps what this scrape saw and leaves the flushed size alone.
            seen.to_vec()
        } else {
            all
        };
        self.cached = (kept.as_slice() != new_prev).then(|| kept.into_boxed_slice());
    }

    /// Approximate heap bytes held.
    pub fn heap_bytes(&self) -> usize {
        self.cached.as_ref().map_or(0, |c| c.len()) * 8
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Drives a cache like a target's scrapes: each step is (series seen, flush), and the
    /// tracked set is what was seen.
    struct Sim {
        cache: SeriesCache,
        prev: Vec<u64>,
    }

    impl Sim {
        fn new() -> Self {
            Sim {
                cache: SeriesCache::default(),
                prev: Vec::new(),
            }
        }
        /// Returns how many of `seen` were new to the cache.
        fn scrape(&mut self, seen: &[u64], flush: bool) -> u64 {
            let added = self.cache.count_missing(&self.prev, seen);
            let old = std::mem::take(&mut self.prev);
            self.prev = seen.to_vec();
            self.cache.finish(seen, flush, &old, &self.prev);
            added
        }
    }

    #[test]
    fn steady_state_costs_nothing_extra() {
        let mut s = Sim::new();
        assert_eq!(s.scrape(&[1, 2, 3], true), 3);
        assert_eq!(s.scrape(&[1, 2, 3], true), 0);
        assert!(s.cache.cached.is_none());
        assert_eq!(s.cache.heap_bytes(), 0);
    }

    #[test]
    fn failed_scrapes_forget_nothing() {
        // x and y scraped, then the target fails (nothing seen), then recovers: neither
        // counts as added again.
        let mut s = Sim::new();
        assert_eq!(s.scrape(&[10, 20], true), 2);
        assert_eq!(s.scrape(&[], false), 0);
        assert_eq!(s.scrape(&[], false), 0);
        assert_eq!(s.scrape(&[10, 20], true), 0);
    }

    #[test]
    fn a_flush_keeps_only_what_its_scrape_saw() {
        let mut s = Sim::new();
        assert_eq!(s.scrape(&[1, 2, 3], true), 3);
        // 4 first seen in a failed scrape stays cached until the next flush...
        assert_eq!(s.scrape(&[1, 4], false), 1);
        assert_eq!(s.scrape(&[4], false), 0);
        // ...which drops 3 and 4, absent from it.
        assert_eq!(s.scrape(&[1, 2], true), 0);
        assert_eq!(s.scrape(&[1, 2, 3, 4], true), 2);
    }

    #[test]
    fn an_empty_successful_scrape_does_not_flush() {
        let mut s = Sim::new();
        assert_eq!(s.scrape(&[1, 2], true), 2);
        assert_eq!(s.scrape(&[], false), 0);
        assert_eq!(s.scrape(&[1, 5], true), 1);
    }

    #[test]
    fn growth_while_failing_forces_a_flush() {
        let mut s = Sim::new();
        s.scrape(&[1], true);
        let many: Vec<u64> = (100..1200).collect();
        s.scrape(&many, false);
        // Forced flush: only what that scrape saw is kept, so 1 is new again.
        assert_eq!(s.scrape(&[1], true), 1);
    }
}
