//! Where the wheel thread gets "now": the system's Unix time, or a clock tests move by hand.

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// A source of Unix time in ns.
pub trait Clock: Send + Sync + 'static {
    fn now_ns(&self) -> u64;
}

/// The real-time clock. Phases are pinned to Unix time, so this is wall-clock time, not a
/// monotonic clock; the wheel copes with steps (see the module docs).
#[derive(Debug, Clone, Copy, Default)]
pub struct SystemClock;

impl Clock for SystemClock {
    fn now_ns(&self) -> u64 {
        SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| u64::try_from(d.as_nanos()).unwrap_or(u64::MAX))
    }
}

/// A clock that moves only when told, for tests. After moving it under a running
/// [`Scheduler`](super::Scheduler), call [`Scheduler::wake`](super::Scheduler::wake):
/// the thread sleeps in real time and cannot see a manual clock move.
#[derive(Debug, Default)]
pub struct ManualClock {
    now_ns: AtomicU64,
}

impl ManualClock {
    pub fn new(now_ns: u64) -> Self {
        Self {
            now_ns: AtomicU64::new(now_ns),
        }
    }

    pub fn set(&self, now_ns: u64) {
        self.now_ns.store(now_ns, Ordering::SeqCst);
    }

    pub fn advance(&self, by: Duration) {
        self.now_ns
            .fetch_add(super::duration_ns(by), Ordering::SeqCst);
    }
}

impl Clock for ManualClock {
    fn now_ns(&self) -> u64 {
        self.now_ns.load(Ordering::SeqCst)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn system_clock_is_unix_time_and_manual_clock_moves_only_when_told() {
        // 2020-09-13 in ns: any sane host is past it.
        assert!(SystemClock.now_ns() > 1_600_000_000_000_000_000);
        let c = ManualClock::new(5);
        assert_eq!(c.now_ns(), 5);
        c.advance(Duration::from_nanos(10));
        assert_eq!(c.now_ns(), 15);
        c.set(3);
        assert_eq!(c.now_ns(), 3);
    }
}
