//! Prometheus's scrape cache, reduced to what decides `scrape_series_added` and which
//! rejected samples are tracked for staleness, kept as sorted 64-bit series hashes.
//!
//! Prometheus (scrape/scrape.go, 2.x and 3.x alike) caches every series a scrape looked up
//! or appended. The cache's iteration counter advances only when a scrape succeeds with a
//! non-empty body; that flush drops every entry not seen since the previous flush. So a
//! failed or empty scrape forgets nothing, and a series seen in a failed scrape survives
//! the next flush. A sample counts towards `scrape_series_added` when its series was not
//! in the cache and the append succeeded. Consequences the parity suite checks against
//! real Prometheus: a target that recovers from a failure reports 0 series added for the
//! series it had before, and a series that vanished in a successful scrape counts as
//! added when it returns.
//!
//! The cache here is the set of series seen in the previous epoch (`cached`) plus those
//! seen in the current epoch's failed or empty scrapes (`epoch`, usually empty). In the
//! steady state the previous epoch is exactly the set of series the last scrape tracked
//! for staleness, so `cached` is `None` and costs nothing beyond that list. Prometheus
//! keys its cache by the series text as exposed and scrapewheel by the final label set,
//! which differs only for a series exposed twice in one body (see README.md).
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
    /// Series seen in the previous epoch, sorted; `None` when that equals the target's
    /// tracked series (`ScrapeState::prev`) as of the flush.
    cached: Option<Box<[u64]>>,
    /// Series seen in this epoch's scrapes that did not flush, sorted.
    epoch: Box<[u64]>,
    /// Entries at the last flush.
    flushed_len: usize,
}

/// True if sorted `list` holds `h`.
fn has(list: &[u64], h: u64) -> bool {
    list.binary_search(&h).is_ok()
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
    fn previous<'a>(&'a self, prev: &'a [u64]) -> &'a [u64] {
        self.cached.as_deref().unwrap_or(prev)
    }

    /// True if the cache held `h` when this scrape started. `prev` is the target's
    /// tracked series from its last scrape.
    pub fn contains(&self, prev: &[u64], h: u64) -> bool {
        has(self.previous(prev), h) || has(&self.epoch, h)
    }

    /// How many of `sorted` (sorted, deduplicated) the cache did not hold.
    pub fn count_missing(&self, prev: &[u64], sorted: &[u64]) -> u64 {
        let previous = self.previous(prev);
        if self.epoch.is_empty() && previous.is_empty() {
            return sorted.len() as u64;
        }
        // A merge walk against the previous epoch: one pass over both lists.
        let (mut j, mut missing) = (0usize, 0u64);
        for &h in sorted {
            while j < previous.len() && previous[j] < h {
                j += 1;
            }
            let found = (j < previous.len() && previous[j] == h) || has(&self.epoch, h);
            if !found {
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
            let all = if self.epoch.is_empty() {
                seen.to_vec()
            } else {
                union(&self.epoch, seen)
            };
            self.flushed_len = all.len();
            self.epoch = Box::new([]);
            self.cached = (all.as_slice() != new_prev).then(|| all.into_boxed_slice());
            return;
        }
        if self.cached.is_none() && old_prev != new_prev {
            self.cached = Some(old_prev.into());
        }
        if !seen.is_empty() {
            self.epoch = union(&self.epoch, seen).into_boxed_slice();
        }
        let size = union(self.previous(new_prev), &self.epoch).len();
        if size > 2 * self.flushed_len + FORCED_FLUSH_SLACK {
            // Prometheus keeps what this epoch saw and leaves the flushed size alone.
            let kept = std::mem::take(&mut self.epoch);
            self.cached = (&*kept != new_prev).then_some(kept);
        }
    }

    /// Approximate heap bytes held.
    pub fn heap_bytes(&self) -> usize {
        (self.cached.as_ref().map_or(0, |c| c.len()) + self.epoch.len()) * 8
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
        assert!(s.cache.cached.is_none() && s.cache.epoch.is_empty());
        assert_eq!(s.cache.heap_bytes(), 0);
    }

    #[test]
    fn failed_scrapes_forget_nothing() {
        // As Prometheus: x and y scraped, then the target fails (nothing seen), then
        // recovers: neither counts as added again.
        let mut s = Sim::new();
        assert_eq!(s.scrape(&[10, 20], true), 2);
        assert_eq!(s.scrape(&[], false), 0);
        assert_eq!(s.scrape(&[], false), 0);
        assert_eq!(s.scrape(&[10, 20], true), 0);
    }

    #[test]
    fn a_flush_keeps_what_the_failed_scrapes_of_its_epoch_saw() {
        // Prometheus's sample_limit case: s3 seen in a failed scrape, absent from the next
        // successful one, is still cached and not added when it returns.
        let mut s = Sim::new();
        assert_eq!(s.scrape(&[1, 2, 3], true), 3);
        assert_eq!(s.scrape(&[1, 2, 3], false), 0);
        assert_eq!(s.scrape(&[1, 2], true), 0);
        assert_eq!(s.scrape(&[1, 2, 3], true), 0);
        // But a series gone for a whole epoch is new again.
        assert_eq!(s.scrape(&[1, 2], true), 0);
        assert_eq!(s.scrape(&[1, 2], true), 0);
        assert_eq!(s.scrape(&[1, 2, 3], true), 1);
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
        // Forced flush: only what this epoch saw is kept, so 1 is new again.
        assert_eq!(s.scrape(&[1], true), 1);
    }
}
