//! The wheel's counters and its dispatch-lag histogram, written by the wheel thread and
//! read by /metrics. Plain relaxed atomics: one writer, readers want totals, not a
//! consistent cut.

use std::sync::atomic::{AtomicU64, Ordering::Relaxed};

use super::scheduler::Dispatch;
use super::slots::Due;

/// Upper bounds (inclusive, ns) of the lag histogram's buckets; larger lags only count in
/// `count`, `sum_ns` and `max_ns` (the `+Inf` bucket).
pub const LAG_BUCKETS_NS: [u64; 16] = [
    50_000,
    100_000,
    250_000,
    500_000,
    1_000_000,
    2_000_000,
    5_000_000,
    10_000_000,
    25_000_000,
    50_000_000,
    100_000_000,
    250_000_000,
    500_000_000,
    1_000_000_000,
    5_000_000_000,
    10_000_000_000,
];

/// What the wheel thread did.
#[derive(Debug, Default)]
pub struct WheelStats {
    /// Due slots handed to a worker (`Dispatch::Sent`).
    pub dispatched: AtomicU64,
    /// Due slots skipped because the target's previous scrape was still in flight.
    pub skipped_busy: AtomicU64,
    /// Due slots skipped because the worker queue was full.
    pub skipped_queue_full: AtomicU64,
    /// Slots that passed without a dispatch because the wheel thread ran late.
    pub missed_slots: AtomicU64,
    /// Backward wall-clock steps that made the wheel re-place every entry.
    pub clock_resets: AtomicU64,
    /// Dispatch time minus due time, for every due slot (sent or skipped). The dispatch
    /// time is the clock reading the wheel thread advanced to, shared by one batch.
    pub lag: LagHistogram,
}

impl WheelStats {
    pub(super) fn record(&self, due: &Due, now_ns: u64, outcome: Dispatch) {
        self.lag.observe(now_ns.saturating_sub(due.due_ns));
        if due.missed > 0 {
            self.missed_slots.fetch_add(due.missed, Relaxed);
        }
        let counter = match outcome {
            Dispatch::Sent => &self.dispatched,
            Dispatch::Busy => &self.skipped_busy,
            Dispatch::QueueFull => &self.skipped_queue_full,
        };
        counter.fetch_add(1, Relaxed);
    }
}

/// A fixed-bucket histogram of lags in ns, with the maximum.
#[derive(Debug, Default)]
pub struct LagHistogram {
    buckets: [AtomicU64; LAG_BUCKETS_NS.len()],
    sum_ns: AtomicU64,
    count: AtomicU64,
    max_ns: AtomicU64,
}

/// A copy of a [`LagHistogram`], ready for the Prometheus histogram exposition.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LagSnapshot {
    /// `(upper bound ns, cumulative count)` for each of [`LAG_BUCKETS_NS`].
    pub buckets: [(u64, u64); LAG_BUCKETS_NS.len()],
    pub sum_ns: u64,
    pub count: u64,
    pub max_ns: u64,
}

impl LagHistogram {
    pub fn observe(&self, lag_ns: u64) {
        let i = LAG_BUCKETS_NS.partition_point(|&le| le < lag_ns);
        if let Some(b) = self.buckets.get(i) {
            b.fetch_add(1, Relaxed);
        }
        self.sum_ns.fetch_add(lag_ns, Relaxed);
        self.count.fetch_add(1, Relaxed);
        self.max_ns.fetch_max(lag_ns, Relaxed);
    }

    pub fn snapshot(&self) -> LagSnapshot {
        let mut cumulative = 0;
        let buckets = std::array::from_fn(|i| {
            cumulative += self.buckets[i].load(Relaxed);
            (LAG_BUCKETS_NS[i], cumulative)
        });
        LagSnapshot {
            buckets,
            sum_ns: self.sum_ns.load(Relaxed),
            count: self.count.load(Relaxed),
            max_ns: self.max_ns.load(Relaxed),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::wheel::DueKind;

    #[test]
    fn lag_histogram_is_cumulative_with_inclusive_bounds_and_max() {
        let h = LagHistogram::default();
        for lag in [0, 50_000, 50_001, 3_000_000, 60_000_000_000] {
            h.observe(lag);
        }
        let s = h.snapshot();
        assert_eq!(s.buckets[0], (50_000, 2));
        assert_eq!(s.buckets[1], (100_000, 3));
        assert_eq!(s.buckets[6], (5_000_000, 4));
        // The 60 s lag is only in +Inf, i.e. in count.
        assert_eq!(s.buckets[LAG_BUCKETS_NS.len() - 1].1, 4);
        assert_eq!(s.count, 5);
        assert_eq!(s.sum_ns, 60_003_100_001);
        assert_eq!(s.max_ns, 60_000_000_000);
    }

    #[test]
    fn record_counts_outcomes_missed_slots_and_lag() {
        let stats = WheelStats::default();
        let due = |missed| Due {
            key: 1,
            due_ns: 1_000,
            kind: DueKind::Scrape,
            missed,
        };
        stats.record(&due(0), 1_500, Dispatch::Sent);
        stats.record(&due(2), 2_000, Dispatch::Busy);
        stats.record(&due(0), 1_000, Dispatch::QueueFull);
        stats.record(&due(0), 900, Dispatch::Sent);
        assert_eq!(stats.dispatched.load(Relaxed), 2);
        assert_eq!(stats.skipped_busy.load(Relaxed), 1);
        assert_eq!(stats.skipped_queue_full.load(Relaxed), 1);
        assert_eq!(stats.missed_slots.load(Relaxed), 2);
        let lag = stats.lag.snapshot();
        assert_eq!((lag.count, lag.sum_ns, lag.max_ns), (4, 1_500, 1_000));
    }
}
