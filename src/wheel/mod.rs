//! The scheduler: a hierarchical timer wheel on its own thread ("sw-wheel") that makes every
//! target due at a stable phase inside its interval and hands due targets to the workers.
//!
//! # What it owns
//!
//! The schedule, and nothing else: which keys exist, each key's interval and phase, the
//! next due time of each, and whether a key is retired. It does not know what a target
//! is (jobs are an opaque `Arc<J>`), never blocks on the workers and never scrapes.
//!
//! # Inputs and outputs
//!
//! * In: [`Scheduler::add`] / [`Scheduler::remove`] / [`Scheduler::retire`] from the
//!   coordinator. They take effect under the wheel's lock before they return: after
//!   `remove(k)` returns, no dispatch of `k` starts, and [`Scheduler::len`] is exact.
//! * Out: one call of the dispatch callback per due slot, on the wheel thread, with the
//!   job, the slot's due time (Unix ns, which the worker uses as the scrape timestamp
//!   when it starts within tolerance) and a [`DueKind`]. The callback must not block and
//!   must not call back into the `Scheduler` (it runs under the wheel's lock); it answers
//!   [`Dispatch::Sent`], [`Dispatch::Busy`] or [`Dispatch::QueueFull`], and skips are
//!   counted in [`WheelStats`], as are missed slots and the dispatch lag.
//!
//! # Phase
//!
//! As in Prometheus, a target with interval `i` is due at every Unix time `t` (ns) with
//! `t % i == offset`, where `offset = (target_hash ^ seed) % i` ([`offset_for`]) and the
//! seed is FNV-1a-64 over `<hostname><external labels>` ([`jitter_seed`]). The phase is
//! pinned to Unix time, so it survives restarts and reloads, and HA replicas (which differ
//! in their external labels) scrape at different moments. A new key first fires at its
//! first due time strictly after it was added: never at once, so a reload adding 10,000
//! targets does not make a thundering herd.
//!
//! # The wheel ([`Wheel`], pure: no thread, no clock)
//!
//! Six levels of 64 slots; level `L` slots are `64^L` ticks wide (tick: 1 ms by default),
//! so the levels span 64 ms, 4.1 s, 4.4 min, 4.7 h, 12.4 d and 2.2 y. An entry sits at the
//! level of the highest 6-bit group in which its due tick differs from the wheel's
//! current tick, so an entry is moved down at most five times before it fires, and each
//! level keeps a 64-bit occupancy mask, so finding the next non-empty slot costs a
//! rotate and a trailing-zero count per level. Slots are intrusive doubly linked lists
//! over one entry slab, and a key → slab index map makes add, remove and retire O(1).
//! An entry due at `d` ns sits in tick `ceil(d / tick)`, so it never fires before `d`.
//! [`Wheel::next_deadline`] is the earliest due time rounded up to its tick (not a
//! cascade point), so the thread wakes about once per due slot, never on an idle tick.
//!
//! Lateness: if the wheel is advanced later than an entry's due time by one interval or
//! more, the entry fires once, for the latest slot that has passed, and the slots before
//! it are counted as missed: there is never a burst of catch-up scrapes. A skipped
//! dispatch (busy or full) still moves the entry to its next slot. A retired entry fires
//! once more, with [`DueKind::Final`], at its next due time and is then removed; if that
//! final dispatch is not accepted it is retried at the next slot, because it is the
//! target's only chance to write its staleness markers. Re-adding the key first cancels
//! the retirement. If the clock steps backwards by more than a tick, every entry is put
//! back at its first phase time after the new now (counted in `clock_resets`); a forward
//! step is ordinary lateness.
//!
//! # The thread
//!
//! [`Scheduler::start`] spawns "sw-wheel". It advances the wheel to the clock's now,
//! dispatches what is due, then sleeps on a bounded control channel until the next
//! deadline. An `add` that moves the earliest deadline forward posts a wake-up; nothing
//! else does, so 100,000 adds at start-up cost at most a handful of wake-ups. It stops on
//! [`Scheduler::stop`] or when the control channel disconnects (the `Scheduler` is
//! dropped), and no dispatch happens after either returns. Time comes from a [`Clock`],
//! so tests drive it with a [`ManualClock`].

mod clock;
mod phase;
mod scheduler;
mod slots;
mod stats;

pub use clock::{Clock, ManualClock, SystemClock};
pub use phase::{fnv1a64, jitter_seed, next_phase_after, offset_for};
pub use scheduler::{Dispatch, DispatchFn, Scheduler, DEFAULT_TICK};
pub use slots::{Due, DueKind, Wheel};
pub use stats::{LagHistogram, LagSnapshot, WheelStats, LAG_BUCKETS_NS};

use std::time::Duration;

/// A duration in ns, saturating at `u64::MAX` (584 years): longer intervals never come due.
fn duration_ns(d: Duration) -> u64 {
    u64::try_from(d.as_nanos()).unwrap_or(u64::MAX)
}
