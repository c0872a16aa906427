//! The memory budget, `engine.memory_limit`: the accounting of the agent's large
//! allocations and the back-pressure that keeps them under the limit.
//!
//! Three parts are accounted, each by the code that owns the memory:
//!
//! - `bodies`: the workers' scrape buffers (the body being read, the batch being built,
//!   a body re-read for staleness markers), updated by each worker around every scrape;
//! - `series`: what targets remember between scrapes (series hashes, caches), updated
//!   by the worker after each scrape and released when a target is dropped ([`Charge`]);
//! - `append`: bytes committed to the append buffer and not yet flushed.
//!
//! Near the limit (above the high-water mark, 7/8 of it) the budget pushes back instead
//! of letting the process grow: a worker asks the flusher to flush early and waits for
//! room before it starts a scrape ([`MemoryBudget::admit`]), commits of a streamed scrape
//! wait for the flusher ([`MemoryBudget::wait_for_append_room`]), and bodies are parsed
//! in small streamed parts ([`MemoryBudget::part_size`]). Waits are bounded: the budget
//! never deadlocks a worker, it only slows it down, and every wait is counted.
//!
//! The budget owns no thread. It must not allocate on the hot path: accounting is a few
//! relaxed atomic adds; only a worker that has to wait takes the lock.

use crate::metrics::{Counter, Registry};
use parking_lot::{Condvar, Mutex};
use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// What an accounted allocation belongs to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Part {
    Bodies,
    Series,
    Append,
}

impl Part {
    const ALL: [Part; 3] = [Part::Bodies, Part::Series, Part::Append];

    fn name(self) -> &'static str {
        match self {
            Part::Bodies => "bodies",
            Part::Series => "series",
            Part::Append => "append",
        }
    }
}

/// The smallest part a streamed body is read and parsed in: below this the per-part
/// overhead (a syscall, a parser restart) starts to show.
pub const MIN_PART: usize = 64 * 1024;

/// Shares of the limit: in-flight bodies may use a quarter, the append buffer a quarter;
/// series state takes what it needs (it is the one thing that cannot be flushed).
const BODIES_SHARE: u64 = 4;
const APPEND_SHARE: u64 = 4;

/// The process-wide budget. Shared by workers, the append buffer and the flusher.
pub struct MemoryBudget {
    /// Bytes, 0 = no limit (accounting still runs for the gauges).
    limit: u64,
    /// Largest body kept whole before streaming (`engine.stream_threshold`).
    stream_threshold: usize,
    workers: usize,
    parts: [AtomicI64; 3],
    lock: Mutex<()>,
    room: Condvar,
    flush_hook: Mutex<Option<Box<dyn Fn() + Send + Sync>>>,
    delayed: Arc<Counter>,
    delay_ns: Arc<Counter>,
}

impl MemoryBudget {
    pub fn new(
        limit: u64,
        stream_threshold: usize,
        workers: usize,
        reg: &Registry,
    ) -> Arc<MemoryBudget> {
        let delay_ns = Arc::new(Counter::default());
        let b = Arc::new(MemoryBudget {
            limit,
            stream_threshold: stream_threshold.max(MIN_PART),
            workers: workers.max(1),
            parts: Default::default(),
            lock: Mutex::new(()),
            room: Condvar::new(),
            flush_hook: Mutex::new(None),
            delayed: reg.counter(
                "scrapewheel_memory_delayed_scrapes_total",
                "Scrapes and commits that waited for room under engine.memory_limit.",
                &[],
            ),
            delay_ns: delay_ns.clone(),
        });
        reg.counter_fn(
            "scrapewheel_memory_delay_seconds_total",
            "Time spent waiting for room under engine.memory_limit.",
            &[],
            move || delay_ns.get() as f64 / 1e9,
        );
        reg.gauge_fn(
            "scrapewheel_memory_limit_bytes",
            "engine.memory_limit (0: none).",
            &[],
            move || limit as f64,
        );
        for part in Part::ALL {
            let w = Arc::downgrade(&b);
            reg.gauge_fn(
                "scrapewheel_memory_accounted_bytes",
                "Large allocations accounted against engine.memory_limit, by part.",
                &[("part", part.name())],
                move || w.upgrade().map_or(0.0, |b| b.part_bytes(part) as f64),
            );
        }
        b
    }

    /// A budget with no limit and no metrics, for benches and tests.
    pub fn unlimited() -> Arc<MemoryBudget> {
        MemoryBudget::new(0, 1 << 20, 1, &Registry::default())
    }

    /// Called when the budget wants the append buffer flushed now (set once the flusher
    /// runs).
    pub fn set_flush_hook(&self, hook: Box<dyn Fn() + Send + Sync>) {
        *self.flush_hook.lock() = Some(hook);
    }

    pub fn limit(&self) -> u64 {
        self.limit
    }

    /// Accounts `delta` bytes to `part` (negative: released).
    pub fn add(&self, part: Part, delta: i64) {
        if delta == 0 {
            return;
        }
        self.parts[part as usize].fetch_add(delta, Ordering::Relaxed);
        if delta < 0 && self.limit > 0 {
            self.room.notify_all();
        }
    }

    pub fn part_bytes(&self, part: Part) -> u64 {
        self.parts[part as usize].load(Ordering::Relaxed).max(0) as u64
    }

    pub fn used(&self) -> u64 {
        Part::ALL.iter().map(|p| self.part_bytes(*p)).sum()
    }

    fn high_water(&self) -> u64 {
        self.limit - self.limit / 8
    }

    /// Whether usage is above the high-water mark (never, without a limit).
    pub fn under_pressure(&self) -> bool {
        self.limit > 0 && self.used() > self.high_water()
    }

    /// The size a body is read and parsed in: the stream threshold, cut so that every
    /// worker's buffers (a part, the carry, the batch) fit the bodies' share of the limit,
    /// and the minimum while the budget is under pressure.
    pub fn part_size(&self) -> usize {
        if self.limit == 0 {
            return self.stream_threshold;
        }
        if self.under_pressure() {
            return MIN_PART;
        }
        let share = self.limit / BODIES_SHARE / self.workers as u64 / 3;
        (share as usize).clamp(MIN_PART, self.stream_threshold)
    }

    /// Called by a worker before a scrape: above the high-water mark it asks for an
    /// early flush and waits, until usage falls below the mark or `max_wait` passes.
    /// Returns whether it had to wait.
    pub fn admit(&self, max_wait: Duration) -> bool {
        if !self.under_pressure() {
            return false;
        }
        self.wait_until(max_wait, || !self.under_pressure());
        true
    }

    /// Called before committing a part of a streamed scrape: while the append buffer is
    /// over its share, asks for a flush and waits (at most `max_wait`).
    pub fn wait_for_append_room(&self, max_wait: Duration) {
        if self.limit == 0 {
            return;
        }
        let share = self.limit / APPEND_SHARE;
        if self.part_bytes(Part::Append) <= share {
            return;
        }
        self.wait_until(max_wait, || self.part_bytes(Part::Append) <= share);
    }

    /// Whether the append buffer has outgrown its share, so the flusher should run now
    /// rather than at its next interval.
    pub fn append_over_share(&self) -> bool {
        self.limit > 0 && self.part_bytes(Part::Append) > self.limit / APPEND_SHARE
    }

    fn wait_until(&self, max_wait: Duration, done: impl Fn() -> bool) {
        let start = Instant::now();
        let deadline = start + max_wait;
        self.delayed.inc();
        if let Some(hook) = &*self.flush_hook.lock() {
            hook();
        }
        let mut guard = self.lock.lock();
        // Woken by every release; the timeout also covers a release that raced the
        // check (notify without the lock held).
        while !done() && Instant::now() < deadline {
            let step = (deadline - Instant::now()).min(Duration::from_millis(50));
            self.room.wait_for(&mut guard, step);
        }
        drop(guard);
        self.delay_ns.add(start.elapsed().as_nanos() as u64);
    }
}

/// Bytes accounted to one owner (a target's series state, a worker's buffers), kept in
/// step with [`Charge::set`] and released when dropped.
#[derive(Default)]
pub struct Charge {
    account: Option<(Arc<MemoryBudget>, Part)>,
    bytes: u64,
}

impl Charge {
    pub fn new(budget: &Arc<MemoryBudget>, part: Part) -> Charge {
        Charge {
            account: Some((budget.clone(), part)),
            bytes: 0,
        }
    }

    /// Sets the owner's current size; the difference goes to the budget.
    pub fn set(&mut self, bytes: u64) {
        if let Some((budget, part)) = &self.account {
            budget.add(*part, bytes as i64 - self.bytes as i64);
        }
        self.bytes = bytes;
    }

    pub fn bytes(&self) -> u64 {
        self.bytes
    }

    /// Whether this charge counts against a budget (a default one does not).
    pub fn is_attached(&self) -> bool {
        self.account.is_some()
    }
}

impl Drop for Charge {
    fn drop(&mut self) {
        self.set(0);
    }
}

impl std::fmt::Debug for Charge {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Charge")
            .field("bytes", &self.bytes)
            .finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::AtomicUsize;

    #[test]
    fn charges_follow_their_owner_and_release_on_drop() {
        let b = MemoryBudget::new(1000, 1 << 20, 1, &Registry::default());
        let mut c = Charge::new(&b, Part::Series);
        c.set(300);
        c.set(200);
        assert_eq!(b.part_bytes(Part::Series), 200);
        b.add(Part::Append, 50);
        assert_eq!(b.used(), 250);
        drop(c);
        assert_eq!(b.used(), 50);
    }

    #[test]
    fn part_size_shrinks_with_the_limit_and_under_pressure() {
        let reg = Registry::default();
        assert_eq!(MemoryBudget::new(0, 1 << 20, 8, &reg).part_size(), 1 << 20);
        assert_eq!(
            MemoryBudget::new(1 << 30, 1 << 20, 8, &reg).part_size(),
            1 << 20
        );
        // 32 MiB over 8 workers: a quarter, three buffers each → 341 KiB parts.
        let b = MemoryBudget::new(32 << 20, 1 << 20, 8, &reg);
        assert_eq!(b.part_size(), (32 << 20) / 4 / 8 / 3);
        b.add(Part::Series, 30 << 20);
        assert!(b.under_pressure());
        assert_eq!(b.part_size(), MIN_PART);
    }

    #[test]
    fn admit_asks_for_a_flush_and_returns_when_room_is_made() {
        let b = MemoryBudget::new(1000, 1 << 20, 1, &Registry::default());
        let flushes = Arc::new(AtomicUsize::new(0));
        {
            let (b2, f) = (Arc::downgrade(&b), flushes.clone());
            b.set_flush_hook(Box::new(move || {
                f.fetch_add(1, Ordering::Relaxed);
                if let Some(b) = b2.upgrade() {
                    // The flusher runs on its own thread; so does this stand-in.
                    std::thread::spawn(move || {
                        std::thread::sleep(Duration::from_millis(20));
                        b.add(Part::Append, -900);
                    });
                }
            }));
        }
        assert!(!b.admit(Duration::from_secs(5)), "no wait below the mark");
        b.add(Part::Append, 950);
        let t = Instant::now();
        assert!(b.admit(Duration::from_secs(30)));
        assert!(
            t.elapsed() < Duration::from_secs(30),
            "woken by the release"
        );
        assert_eq!(flushes.load(Ordering::Relaxed), 1);
        assert_eq!(b.used(), 50);
    }

    #[test]
    fn waits_are_bounded_when_nothing_can_be_freed() {
        let b = MemoryBudget::new(1000, 1 << 20, 1, &Registry::default());
        b.add(Part::Series, 5000);
        let t = Instant::now();
        assert!(b.admit(Duration::from_millis(30)));
        assert!(t.elapsed() >= Duration::from_millis(30));
        b.add(Part::Append, 5000);
        b.wait_for_append_room(Duration::from_millis(10));
        assert!(b.append_over_share());
    }
}
