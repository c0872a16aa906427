//! The pure timer wheel: entries, their slots and their due times. No thread, no clock:
//! the caller passes "now" in, which is what makes the schedule testable to the ns.
//! The design is described in the module docs of [`crate::wheel`].

use std::collections::HashMap;
use std::time::Duration;

use super::duration_ns;
use super::phase::next_phase_after;

const SLOT_BITS: u32 = 6;
const SLOTS: usize = 1 << SLOT_BITS;
const SLOT_MASK: u64 = SLOTS as u64 - 1;
const LEVELS: usize = 6;
const TOP: usize = LEVELS - 1;
/// One turn of the top level. An entry due further ahead than this is parked at the far
/// edge of the top level and placed again when that slot comes round.
const SPAN_TICKS: u64 = 1 << (SLOT_BITS * LEVELS as u32);
const NIL: usize = usize::MAX;
const UNLINKED: u16 = u16::MAX;

/// Why an entry is due.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DueKind {
    /// An ordinary scheduled scrape.
    Scrape,
    /// The last slot of a retired entry: the worker writes end-of-run staleness markers.
    Final,
}

/// One due slot of one entry.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Due {
    pub key: u64,
    /// The slot's due time, Unix ns; always `<=` the `now` it was returned for.
    pub due_ns: u64,
    pub kind: DueKind,
    /// Earlier slots of this entry that passed without firing because the wheel was
    /// advanced late (by an interval or more).
    pub missed: u64,
}

struct Entry<T> {
    key: u64,
    interval_ns: u64,
    /// The next due time; always `≡ offset (mod interval)`, so the offset is not stored.
    due_ns: u64,
    prev: usize,
    next: usize,
    /// `level * SLOTS + slot` while in a slot list, `UNLINKED` otherwise.
    pos: u16,
    retired: bool,
    /// `None` marks a free slab slot.
    payload: Option<T>,
}

/// A hierarchical hashed timer wheel keyed by `u64`, carrying a payload per key.
pub struct Wheel<T> {
    tick_ns: u64,
    /// The tick up to which slots have been processed; every linked entry's slot starts
    /// after it, except the one being processed.
    elapsed: u64,
    /// The latest `now` passed to `advance` (or `new`).
    now_ns: u64,
    entries: Vec<Entry<T>>,
    free: Vec<usize>,
    index: HashMap<u64, usize>,
    heads: [[usize; SLOTS]; LEVELS],
    occupied: [u64; LEVELS],
    clock_resets: u64,
}

impl<T> Wheel<T> {
    /// An empty wheel with slots `tick` wide (at least 1 ns), positioned at `now_ns`.
    pub fn new(tick: Duration, now_ns: u64) -> Self {
        let tick_ns = duration_ns(tick).max(1);
        Self {
            tick_ns,
            elapsed: now_ns / tick_ns,
            now_ns,
            entries: Vec::new(),
            free: Vec::new(),
            index: HashMap::new(),
            heads: [[NIL; SLOTS]; LEVELS],
            occupied: [0; LEVELS],
            clock_resets: 0,
        }
    }

    pub fn tick(&self) -> Duration {
        Duration::from_nanos(self.tick_ns)
    }

    pub fn len(&self) -> usize {
        self.index.len()
    }

    pub fn is_empty(&self) -> bool {
        self.index.is_empty()
    }

    pub fn contains(&self, key: u64) -> bool {
        self.index.contains_key(&key)
    }

    /// The next due time of `key`, Unix ns.
    pub fn next_due(&self, key: u64) -> Option<u64> {
        self.index.get(&key).map(|&i| self.entries[i].due_ns)
    }

    /// How many times a backward clock step made the wheel re-place every entry.
    pub fn clock_resets(&self) -> u64 {
        self.clock_resets
    }

    /// Inserts `key`, due at every Unix time `t` with `t % interval == offset`, first at the
    /// first such `t` after `now_ns`. An interval shorter than the tick counts as one tick.
    ///
    /// If `key` exists, its payload is replaced (and returned) and a retirement is
    /// cancelled; its schedule is kept if interval and offset are unchanged, so no slot is
    /// lost or doubled, and otherwise restarts from `now_ns` with the new phase.
    pub fn insert(
        &mut self,
        key: u64,
        interval: Duration,
        offset: Duration,
        payload: T,
        now_ns: u64,
    ) -> Option<T> {
        // Never schedule before a `now` the wheel has already processed.
        let now_ns = now_ns.max(self.now_ns);
        let interval_ns = duration_ns(interval).max(self.tick_ns);
        let offset_ns = duration_ns(offset) % interval_ns;
        if let Some(&idx) = self.index.get(&key) {
            let e = &mut self.entries[idx];
            e.retired = false;
            let old = e.payload.replace(payload);
            if e.interval_ns != interval_ns || e.due_ns % interval_ns != offset_ns {
                e.interval_ns = interval_ns;
                e.due_ns = next_phase_after(now_ns, interval_ns, offset_ns);
                self.unlink(idx);
                self.link(idx);
            }
            return old;
        }
        let entry = Entry {
            key,
            interval_ns,
            due_ns: next_phase_after(now_ns, interval_ns, offset_ns),
            prev: NIL,
            next: NIL,
            pos: UNLINKED,
            retired: false,
            payload: Some(payload),
        };
        let idx = match self.free.pop() {
            Some(i) => {
                self.entries[i] = entry;
                i
            }
            None => {
                self.entries.push(entry);
                self.entries.len() - 1
            }
        };
        self.index.insert(key, idx);
        self.link(idx);
        None
    }

    /// Removes `key` at once: it never fires again.
    pub fn remove(&mut self, key: u64) -> Option<T> {
        let idx = self.index.remove(&key)?;
        self.unlink(idx);
        self.free.push(idx);
        self.entries[idx].payload.take()
    }

    /// Marks `key` to fire once more, as [`DueKind::Final`], at its next due time, and then
    /// be removed. Returns whether the key exists.
    pub fn retire(&mut self, key: u64) -> bool {
        match self.index.get(&key) {
            Some(&idx) => {
                self.entries[idx].retired = true;
                true
            }
            None => false,
        }
    }

    /// When `advance` will next have something to fire: the earliest due time rounded up to
    /// its tick, in Unix ns. When the earliest entry sits on the top level (its due tick
    /// differs from the wheel's in bit 30 or above: across a 12.4-day boundary with a 1 ms
    /// tick) this may be earlier, the start of its slot, where it moves to a finer level.
    pub fn next_deadline(&self) -> Option<u64> {
        let (level, slot, start) = self.next_slot()?;
        let tick = if level == 0 || level == TOP {
            // Level 0 slots are one tick wide; top-level slots may hold parked entries
            // whose own due time is later than entries in later slots.
            start
        } else {
            // Entries on levels 1..TOP are placed by their own due tick, so the earliest
            // slot's minimum is the wheel's minimum.
            let mut min = u64::MAX;
            let mut idx = self.heads[level][slot];
            while idx != NIL {
                let e = &self.entries[idx];
                min = min.min(e.due_ns.div_ceil(self.tick_ns));
                idx = e.next;
            }
            min.max(start)
        };
        Some(tick.saturating_mul(self.tick_ns))
    }

    /// Moves the wheel to `now_ns` and calls `fire` for every entry whose due time has come,
    /// in due order (entries due in the same tick in no particular order). `fire` returns
    /// whether the job was handed over; a `Final` that was not is tried again next slot.
    /// Every fired entry moves to its first slot after `now_ns`. Returns how many fired.
    ///
    /// A `now_ns` before the previous one is ignored when it is within one tick (timer
    /// noise) and treated as a clock step otherwise: every entry is re-placed at its first
    /// phase time after `now_ns` and nothing fires in this call.
    pub fn advance(&mut self, now_ns: u64, mut fire: impl FnMut(Due, &T) -> bool) -> usize {
        if now_ns.saturating_add(self.tick_ns) < self.now_ns {
            self.rebase(now_ns);
            return 0;
        }
        let now_ns = now_ns.max(self.now_ns);
        self.now_ns = now_ns;
        let now_tick = now_ns / self.tick_ns;
        let mut fired = 0;
        while let Some((level, slot, start)) = self.next_slot() {
            if start > now_tick {
                break;
            }
            self.elapsed = start;
            let mut idx = std::mem::replace(&mut self.heads[level][slot], NIL);
            self.occupied[level] &= !(1u64 << slot);
            while idx != NIL {
                let e = &mut self.entries[idx];
                let next = e.next;
                e.prev = NIL;
                e.next = NIL;
                e.pos = UNLINKED;
                if e.due_ns.div_ceil(self.tick_ns) <= start {
                    fired += 1;
                    self.fire(idx, now_ns, &mut fire);
                } else {
                    // Cascade: relative to the new `elapsed` it belongs on a finer level.
                    self.link(idx);
                }
                idx = next;
            }
        }
        self.elapsed = self.elapsed.max(now_tick);
        fired
    }

    fn fire(&mut self, idx: usize, now_ns: u64, fire: &mut impl FnMut(Due, &T) -> bool) {
        let e = &mut self.entries[idx];
        let Some(payload) = &e.payload else { return };
        let interval = e.interval_ns;
        // `now_ns >= due_ns` here: the entry's tick has been reached.
        let missed = now_ns.saturating_sub(e.due_ns) / interval;
        let due_ns = e.due_ns + missed * interval;
        let kind = if e.retired {
            DueKind::Final
        } else {
            DueKind::Scrape
        };
        let due = Due {
            key: e.key,
            due_ns,
            kind,
            missed,
        };
        if fire(due, payload) && kind == DueKind::Final {
            let key = e.key;
            e.payload = None;
            self.index.remove(&key);
            self.free.push(idx);
        } else {
            e.due_ns = due_ns.saturating_add(interval);
            self.link(idx);
        }
    }

    /// After a backward clock step: every entry restarts at its first phase time after
    /// `now_ns`, as if the wheel had been built then.
    fn rebase(&mut self, now_ns: u64) {
        self.clock_resets += 1;
        self.now_ns = now_ns;
        self.elapsed = now_ns / self.tick_ns;
        self.heads = [[NIL; SLOTS]; LEVELS];
        self.occupied = [0; LEVELS];
        for idx in 0..self.entries.len() {
            let e = &mut self.entries[idx];
            if e.payload.is_none() {
                continue;
            }
            e.pos = UNLINKED;
            e.due_ns = next_phase_after(now_ns, e.interval_ns, e.due_ns % e.interval_ns);
            self.link(idx);
        }
    }

    /// The earliest non-empty slot: `(level, slot, first tick of the slot)`. The lowest
    /// non-empty level always holds it, because level `L` only holds entries inside the
    /// level-`L+1` slot that contains `elapsed`.
    fn next_slot(&self) -> Option<(usize, usize, u64)> {
        (0..LEVELS).find_map(|level| {
            let occupied = self.occupied[level];
            if occupied == 0 {
                return None;
            }
            let shift = SLOT_BITS * level as u32;
            let current = self.elapsed >> shift;
            let now_slot = (current & SLOT_MASK) as u32;
            let mut rotated = occupied.rotate_right(now_slot);
            if level > 0 {
                // Above level 0 an entry in the slot containing `elapsed` would sit lower,
                // so it can only be a top-level entry a whole turn ahead: every other
                // occupied slot comes first.
                rotated &= !1;
            }
            let ahead = match rotated {
                0 => SLOTS as u64,
                r => u64::from(r.trailing_zeros()),
            };
            let slot = ((u64::from(now_slot) + ahead) & SLOT_MASK) as usize;
            let start = (current + ahead).saturating_mul(1u64 << shift);
            Some((level, slot, start))
        })
    }

    fn link(&mut self, idx: usize) {
        let due_tick = self.entries[idx].due_ns.div_ceil(self.tick_ns);
        let when = due_tick.min(self.elapsed.saturating_add(SPAN_TICKS - 1));
        let level = level_for(self.elapsed, when);
        let slot = ((when >> (SLOT_BITS * level as u32)) & SLOT_MASK) as usize;
        let head = self.heads[level][slot];
        if head != NIL {
            self.entries[head].prev = idx;
        }
        let e = &mut self.entries[idx];
        e.prev = NIL;
        e.next = head;
        e.pos = (level * SLOTS + slot) as u16;
        self.heads[level][slot] = idx;
        self.occupied[level] |= 1u64 << slot;
    }

    fn unlink(&mut self, idx: usize) {
        let Entry {
            prev, next, pos, ..
        } = self.entries[idx];
        if pos == UNLINKED {
            return;
        }
        let (level, slot) = (usize::from(pos) / SLOTS, usize::from(pos) % SLOTS);
        if prev == NIL {
            self.heads[level][slot] = next;
            if next == NIL {
                self.occupied[level] &= !(1u64 << slot);
            }
        } else {
            self.entries[prev].next = next;
        }
        if next != NIL {
            self.entries[next].prev = prev;
        }
        let e = &mut self.entries[idx];
        e.prev = NIL;
        e.next = NIL;
        e.pos = UNLINKED;
    }
}

/// The level for an entry due at tick `when`: the 6-bit group of the highest bit in which
/// `when` differs from `elapsed` (capped at the top level).
fn level_for(elapsed: u64, when: u64) -> usize {
    let differing = (elapsed ^ when) | SLOT_MASK;
    let highest = 63 - differing.leading_zeros();
    ((highest / SLOT_BITS) as usize).min(TOP)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::wheel::{fnv1a64, offset_for};
    use std::collections::BTreeMap;

    const MS: u64 = 1_000_000;
    const S: u64 = 1_000_000_000;
    /// 2023-11-14T22:00:00Z: a whole hour, so every test interval starts a turn here.
    const T0: u64 = 1_699_999_200 * S;

    fn tick_1ms<T>(now: u64) -> Wheel<T> {
        Wheel::new(Duration::from_millis(1), now)
    }

    /// Advances and collects what fired, every dispatch accepted.
    fn run<T>(w: &mut Wheel<T>, now: u64) -> Vec<Due> {
        let mut out = Vec::new();
        w.advance(now, |d, _| {
            out.push(d);
            true
        });
        out
    }

    /// Advances in `step` increments up to `until`, collecting everything that fired.
    fn run_until<T>(w: &mut Wheel<T>, from: u64, until: u64, step: u64) -> Vec<Due> {
        let mut out = Vec::new();
        let mut now = from;
        while now < until {
            now = (now + step).min(until);
            out.extend(run(w, now));
        }
        out
    }

    fn scrape(key: u64, due_ns: u64) -> Due {
        Due {
            key,
            due_ns,
            kind: DueKind::Scrape,
            missed: 0,
        }
    }

    #[test]
    fn fires_exactly_at_phase_and_not_before() {
        let mut w = tick_1ms(T0 + 123);
        let off = 2 * S + 345 * MS + 17; // not tick-aligned
        w.insert(
            1,
            Duration::from_secs(10),
            Duration::from_nanos(off),
            (),
            T0 + 123,
        );
        assert_eq!(w.next_due(1), Some(T0 + off));
        // The slot is the tick at or after the due time, so it never fires early.
        assert_eq!(w.next_deadline(), Some(T0 + off - 17 + MS));
        assert!(run(&mut w, T0 + off).is_empty());
        assert!(run(&mut w, T0 + off - 17 + MS - 1).is_empty());
        assert_eq!(run(&mut w, T0 + off - 17 + MS), vec![scrape(1, T0 + off)]);
        // Then every interval, on the same phase.
        let later = run_until(&mut w, T0 + 3 * S, T0 + 45 * S, 7 * MS);
        let dues: Vec<u64> = later.iter().map(|d| d.due_ns).collect();
        assert_eq!(dues, [1, 2, 3, 4].map(|k| T0 + off + k * 10 * S));
    }

    #[test]
    fn first_fire_is_the_next_phase_strictly_after_insert() {
        // Added exactly on its phase point: no immediate scrape, one interval later.
        let mut w = tick_1ms(T0);
        w.insert(1, Duration::from_secs(5), Duration::ZERO, (), T0);
        assert!(run(&mut w, T0).is_empty());
        assert_eq!(w.next_due(1), Some(T0 + 5 * S));
        // Added just after its phase point: almost a whole interval later.
        w.insert(
            2,
            Duration::from_secs(5),
            Duration::from_millis(100),
            (),
            T0 + 101 * MS,
        );
        assert_eq!(w.next_due(2), Some(T0 + 5 * S + 100 * MS));
    }

    #[test]
    fn phase_survives_recreation_at_another_time() {
        // Two agent runs started at unrelated times compute the same slots for a target.
        let i = Duration::from_secs(30);
        let off = offset_for(fnv1a64(b"10.0.0.7:9100"), 0x5eed, i);
        let mut a = tick_1ms(T0 + 3 * S + 7);
        a.insert(9, i, off, (), T0 + 3 * S + 7);
        let mut b = tick_1ms(T0 + 1234 * S + 999);
        b.insert(9, i, off, (), T0 + 1234 * S + 999);
        let first_a = a.next_due(9).unwrap_or_default();
        let first_b = b.next_due(9).unwrap_or_default();
        assert_eq!(first_a % 30_000_000_000, off.as_nanos() as u64);
        assert_eq!((first_b - first_a) % 30_000_000_000, 0);
        let fired_a = run_until(&mut a, T0 + 3 * S, T0 + 2000 * S, 500 * MS);
        assert!(fired_a.iter().any(|d| d.due_ns == first_b));
    }

    #[test]
    fn thousand_targets_spread_evenly_over_the_interval() {
        let seed = fnv1a64(br#"host1{dc="a", replica="1"}"#);
        let i = Duration::from_secs(10);
        let mut w = tick_1ms(T0);
        for n in 0..1000u64 {
            let hash = fnv1a64(format!("10.1.{}.{}:9100", n / 250, n % 250).as_bytes());
            w.insert(n, i, offset_for(hash, seed, i), (), T0);
        }
        let fired = run_until(&mut w, T0, T0 + 10 * S, MS);
        assert_eq!(fired.len(), 1000);
        // 100 buckets of 100 ms: mean 10 per bucket.
        let mut buckets = [0u32; 100];
        for d in &fired {
            buckets[((d.due_ns - T0) / (100 * MS)) as usize] += 1;
        }
        let max = buckets.iter().copied().max().unwrap_or(0);
        assert!(
            max <= 30,
            "fullest 100 ms bucket holds {max} of 1000: {buckets:?}"
        );
        let busiest_tick = {
            let mut per_tick = BTreeMap::new();
            for d in &fired {
                *per_tick.entry(d.due_ns.div_ceil(MS)).or_insert(0u32) += 1;
            }
            per_tick.values().copied().max().unwrap_or(0)
        };
        assert!(
            busiest_tick <= 3,
            "{busiest_tick} targets share one 1 ms slot"
        );
    }

    #[test]
    fn removal_stops_dispatches() {
        let mut w = tick_1ms(T0);
        w.insert(
            1,
            Duration::from_secs(1),
            Duration::from_millis(10),
            "a",
            T0,
        );
        w.insert(
            2,
            Duration::from_secs(1),
            Duration::from_millis(10),
            "b",
            T0,
        );
        assert_eq!(run(&mut w, T0 + 10 * MS).len(), 2);
        assert_eq!(w.remove(1), Some("a"));
        assert_eq!(w.remove(1), None);
        let fired = run_until(&mut w, T0 + 10 * MS, T0 + 5 * S, 3 * MS);
        assert!(fired.iter().all(|d| d.key == 2));
        assert_eq!(fired.len(), 4);
        assert_eq!(w.len(), 1);
        // The freed slab slot is reused by the next insert without disturbing key 2.
        w.insert(
            3,
            Duration::from_secs(1),
            Duration::from_millis(20),
            "c",
            T0 + 5 * S,
        );
        let fired = run_until(&mut w, T0 + 5 * S, T0 + 6 * S, 3 * MS);
        assert_eq!(fired.len(), 2);
    }

    #[test]
    fn retired_entry_fires_once_as_final_then_never() {
        let mut w = tick_1ms(T0);
        w.insert(
            1,
            Duration::from_secs(2),
            Duration::from_millis(500),
            'x',
            T0,
        );
        assert_eq!(run(&mut w, T0 + 500 * MS), vec![scrape(1, T0 + 500 * MS)]);
        assert!(w.retire(1));
        assert!(!w.retire(2));
        // Not immediately: at its next due time.
        assert!(run(&mut w, T0 + 2 * S).is_empty());
        let mut payloads = Vec::new();
        w.advance(T0 + 2 * S + 500 * MS, |d, p| {
            payloads.push((d, *p));
            true
        });
        assert_eq!(
            payloads,
            vec![(
                Due {
                    kind: DueKind::Final,
                    ..scrape(1, T0 + 2 * S + 500 * MS)
                },
                'x'
            )]
        );
        assert!(!w.contains(1));
        assert!(w.is_empty());
        assert!(run_until(&mut w, T0 + 3 * S, T0 + 20 * S, 100 * MS).is_empty());
        assert_eq!(w.next_deadline(), None);
    }

    #[test]
    fn refused_final_is_retried_next_slot() {
        let mut w = tick_1ms(T0);
        w.insert(1, Duration::from_secs(1), Duration::ZERO, (), T0);
        w.retire(1);
        let mut kinds = Vec::new();
        w.advance(T0 + S, |d, _| {
            kinds.push(d.kind);
            false
        });
        assert_eq!(kinds, [DueKind::Final]);
        assert!(w.contains(1));
        assert_eq!(
            run(&mut w, T0 + 2 * S),
            vec![Due {
                kind: DueKind::Final,
                ..scrape(1, T0 + 2 * S)
            }]
        );
        assert!(w.is_empty());
    }

    #[test]
    fn readding_cancels_retirement_and_keeps_phase() {
        let mut w = tick_1ms(T0);
        w.insert(1, Duration::from_secs(1), Duration::from_millis(250), 1, T0);
        w.retire(1);
        // Re-added (same interval and offset) before the final slot: payload replaced,
        // schedule untouched, kind back to Scrape.
        assert_eq!(
            w.insert(
                1,
                Duration::from_secs(1),
                Duration::from_millis(250),
                2,
                T0 + 100 * MS
            ),
            Some(1)
        );
        let mut seen = Vec::new();
        w.advance(T0 + 250 * MS, |d, p| {
            seen.push((d, *p));
            true
        });
        assert_eq!(seen, vec![(scrape(1, T0 + 250 * MS), 2)]);
        let later = run_until(&mut w, T0 + 250 * MS, T0 + 3 * S, 10 * MS);
        assert_eq!(later.len(), 2);
        assert!(later.iter().all(|d| d.kind == DueKind::Scrape));
    }

    #[test]
    fn readding_with_new_interval_or_offset_reschedules() {
        let mut w = tick_1ms(T0);
        w.insert(1, Duration::from_secs(60), Duration::from_secs(59), (), T0);
        assert_eq!(w.next_due(1), Some(T0 + 59 * S));
        // Shorter interval: the new phase from now, not the old far slot.
        w.insert(
            1,
            Duration::from_secs(5),
            Duration::from_secs(1),
            (),
            T0 + 2 * S,
        );
        assert_eq!(w.next_due(1), Some(T0 + 6 * S));
        assert_eq!(w.next_deadline(), Some(T0 + 6 * S));
        let fired = run_until(&mut w, T0 + 2 * S, T0 + 60 * S, 50 * MS);
        let dues: Vec<u64> = fired.iter().map(|d| d.due_ns).collect();
        let expected: Vec<u64> = (0..11).map(|k| T0 + 6 * S + k * 5 * S).collect();
        assert_eq!(dues, expected);
        // Same interval, new offset.
        w.insert(
            1,
            Duration::from_secs(5),
            Duration::from_secs(3),
            (),
            T0 + 60 * S,
        );
        assert_eq!(w.next_due(1), Some(T0 + 63 * S));
        assert_eq!(w.len(), 1);
    }

    #[test]
    fn late_advance_fires_once_and_counts_missed_slots() {
        let mut w = tick_1ms(T0);
        w.insert(
            1,
            Duration::from_secs(1),
            Duration::from_millis(100),
            (),
            T0,
        );
        // The thread stalls 3.5 s past the first due time: slots at +0.1, 1.1, 2.1 pass,
        // only the latest (3.1) fires, and the next is 4.1, in the future.
        let fired = run(&mut w, T0 + 3 * S + 600 * MS);
        assert_eq!(
            fired,
            vec![Due {
                missed: 3,
                ..scrape(1, T0 + 3 * S + 100 * MS)
            }]
        );
        assert_eq!(w.next_due(1), Some(T0 + 4 * S + 100 * MS));
        // Late by less than an interval: fires for that slot, nothing missed.
        assert_eq!(
            run(&mut w, T0 + 4 * S + 900 * MS),
            vec![scrape(1, T0 + 4 * S + 100 * MS)]
        );
    }

    #[test]
    fn next_deadline_is_the_earliest_due_not_a_cascade_point() {
        // A lone 1 h target: the driver must sleep until it, not wake at every level
        // boundary on the way.
        let mut w = tick_1ms(T0);
        assert_eq!(w.next_deadline(), None);
        let off = 1_234 * S + 567 * MS;
        w.insert(
            1,
            Duration::from_secs(3600),
            Duration::from_nanos(off),
            (),
            T0,
        );
        assert_eq!(w.next_deadline(), Some(T0 + off));
        let mut wakes = 0;
        let mut now = T0;
        let mut fired = Vec::new();
        while let Some(d) = w.next_deadline() {
            if d > T0 + 3 * 3600 * S {
                break;
            }
            now = d;
            wakes += 1;
            fired.extend(run(&mut w, now));
        }
        assert_eq!(wakes, 3);
        assert_eq!(fired.len(), 3);
        assert_eq!(fired[2].due_ns, T0 + off + 2 * 3600 * S);
        assert!(now > T0);
    }

    #[test]
    fn interval_shorter_than_tick_is_one_tick() {
        let mut w = tick_1ms(T0);
        w.insert(1, Duration::ZERO, Duration::ZERO, (), T0);
        w.insert(
            2,
            Duration::from_micros(10),
            Duration::from_micros(3),
            (),
            T0,
        );
        let fired = run_until(&mut w, T0, T0 + 10 * MS, MS);
        assert_eq!(fired.len(), 20);
        assert!(fired.iter().all(|d| d.missed == 0));
    }

    #[test]
    fn backward_clock_step_replaces_entries_on_their_phase() {
        let mut w = tick_1ms(T0 + 3600 * S);
        w.insert(
            1,
            Duration::from_secs(10),
            Duration::from_secs(4),
            (),
            T0 + 3600 * S,
        );
        // The wall clock steps back an hour: without a re-base nothing would fire for an
        // hour.
        assert!(run(&mut w, T0 + S).is_empty());
        assert_eq!(w.clock_resets(), 1);
        assert_eq!(w.next_due(1), Some(T0 + 4 * S));
        assert_eq!(run(&mut w, T0 + 4 * S), vec![scrape(1, T0 + 4 * S)]);
        // Timer noise under one tick is not a step.
        assert!(run(&mut w, T0 + 4 * S - MS / 2).is_empty());
        assert_eq!(w.clock_resets(), 1);
    }

    #[test]
    fn entries_beyond_one_top_turn_fire_on_time() {
        // With a 1 µs tick one top-level turn is 2^36 µs ≈ 19 h: a 2-day interval must be
        // parked and re-placed, and still fire exactly on its phase.
        let tick = Duration::from_micros(1);
        let mut w: Wheel<()> = Wheel::new(tick, T0);
        let day = 86_400 * S;
        let off = day + 12_345_678_901;
        w.insert(
            1,
            Duration::from_nanos(2 * day),
            Duration::from_nanos(off),
            (),
            T0,
        );
        w.insert(2, Duration::from_secs(3600), Duration::from_secs(7), (), T0);
        let first = w.next_due(1).unwrap_or_default();
        let mut fired = Vec::new();
        while let Some(d) = w.next_deadline() {
            if d > first + 2 * day + S {
                break;
            }
            fired.extend(run(&mut w, d).into_iter().filter(|d| d.key == 1));
        }
        assert_eq!(fired, vec![scrape(1, first), scrape(1, first + 2 * day)]);
        assert_eq!(first % (2 * day), off);
    }

    /// A naive schedule: what the wheel must do, computed the slow way.
    struct Model {
        tick: u64,
        now: u64,
        entries: BTreeMap<u64, (u64, u64, bool)>, // key → (interval, due, retired)
    }

    impl Model {
        fn insert(&mut self, key: u64, interval: u64, offset: u64, now: u64) {
            let now = now.max(self.now);
            let interval = interval.max(self.tick);
            let offset = offset % interval;
            match self.entries.get_mut(&key) {
                Some(e) => {
                    e.2 = false;
                    if e.0 != interval || e.1 % interval != offset {
                        *e = (interval, next_phase_after(now, interval, offset), false);
                    }
                }
                None => {
                    self.entries.insert(
                        key,
                        (interval, next_phase_after(now, interval, offset), false),
                    );
                }
            }
        }

        fn advance(&mut self, now: u64, accept: impl Fn(&Due) -> bool) -> Vec<Due> {
            let now = now.max(self.now);
            self.now = now;
            let mut out = Vec::new();
            let mut gone = Vec::new();
            for (&key, e) in &mut self.entries {
                if e.1.div_ceil(self.tick) > now / self.tick {
                    continue;
                }
                let missed = (now - e.1) / e.0;
                let due_ns = e.1 + missed * e.0;
                let kind = if e.2 { DueKind::Final } else { DueKind::Scrape };
                let d = Due {
                    key,
                    due_ns,
                    kind,
                    missed,
                };
                if accept(&d) && kind == DueKind::Final {
                    gone.push(key);
                } else {
                    e.1 = due_ns + e.0;
                }
                out.push(d);
            }
            for k in gone {
                self.entries.remove(&k);
            }
            out.sort_by_key(|d| (d.due_ns.div_ceil(self.tick), d.key));
            out
        }

        fn next_deadline(&self) -> Option<u64> {
            let min = self
                .entries
                .values()
                .map(|e| e.1.div_ceil(self.tick))
                .min()?;
            Some(min * self.tick)
        }
    }

    /// xorshift64*: deterministic, dependency-free.
    struct Rng(u64);
    impl Rng {
        fn next(&mut self) -> u64 {
            self.0 ^= self.0 >> 12;
            self.0 ^= self.0 << 25;
            self.0 ^= self.0 >> 27;
            self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
        }
        fn below(&mut self, n: u64) -> u64 {
            self.next() % n
        }
    }

    /// Random inserts, removes, retires, refusals and advances of every size; the wheel
    /// must fire exactly what the naive model fires, and predict the same next deadline.
    fn check_against_model(tick_ns: u64, intervals: &[u64], seed: u64, steps: usize) {
        let mut rng = Rng(seed);
        let mut w: Wheel<u64> = Wheel::new(Duration::from_nanos(tick_ns), T0);
        let mut m = Model {
            tick: tick_ns,
            now: T0,
            entries: BTreeMap::new(),
        };
        let mut now = T0;
        let accept = |d: &Due| (d.key ^ d.due_ns) % 3 != 0;
        for step in 0..steps {
            match rng.below(10) {
                0..=2 => {
                    let key = rng.below(64);
                    let interval = intervals[rng.below(intervals.len() as u64) as usize];
                    let offset = rng.next();
                    // Adds read the clock before the lock: they may lag the wheel a bit.
                    let at = now - rng.below(3) * tick_ns;
                    w.insert(
                        key,
                        Duration::from_nanos(interval),
                        Duration::from_nanos(offset),
                        key,
                        at,
                    );
                    m.insert(key, interval, offset, at);
                }
                3 => {
                    let key = rng.below(64);
                    assert_eq!(w.remove(key).is_some(), m.entries.remove(&key).is_some());
                }
                4 => {
                    let key = rng.below(64);
                    let exists = m.entries.get_mut(&key).map(|e| e.2 = true).is_some();
                    assert_eq!(w.retire(key), exists);
                }
                _ => {
                    now += match rng.below(8) {
                        0 => 0,
                        1..=3 => rng.below(4 * tick_ns),
                        4 | 5 => rng.below(intervals[0] * 2),
                        6 => rng.below(intervals[intervals.len() - 1]),
                        _ => w.next_deadline().map_or(0, |d| d.saturating_sub(now)),
                    };
                    let mut got = Vec::new();
                    w.advance(now, |d, p| {
                        assert_eq!(*p, d.key, "payload follows its key");
                        got.push(d);
                        accept(&d)
                    });
                    got.sort_by_key(|d| (d.due_ns.div_ceil(tick_ns), d.key));
                    let want = m.advance(now, accept);
                    assert_eq!(got, want, "step {step}, now {now}");
                }
            }
            assert_eq!(w.len(), m.entries.len());
            match (w.next_deadline(), m.next_deadline()) {
                (Some(a), Some(b)) => assert!(a <= b, "deadline {a} after earliest due {b}"),
                (a, b) => assert_eq!(a, b),
            }
        }
    }

    #[test]
    fn matches_naive_model_with_ms_tick_and_scrape_intervals() {
        let s = [1, 5, 10, 15, 30, 60, 300, 3600];
        check_against_model(MS, &s.map(|x| x * S), 0x9e37_79b9_7f4a_7c15, 30_000);
    }

    #[test]
    fn matches_naive_model_with_tiny_tick_and_huge_intervals() {
        // 1 µs tick, intervals up to 3 days: exercises the top level's wrap and parking.
        let i = [S / 2, 7 * S, 3600 * S, 86_400 * S, 3 * 86_400 * S];
        check_against_model(1_000, &i, 0xdead_beef_cafe_f00d, 20_000);
    }

    #[test]
    fn matches_naive_model_with_1ns_tick_where_everything_is_far() {
        // One top-level turn is 68.7 s: minute and hour intervals are parked, and entries
        // keep crossing top-level slot boundaries.
        let i = [S, 10 * S, 60 * S, 600 * S, 3600 * S];
        check_against_model(1, &i, 0x0123_4567_89ab_cdef, 20_000);
    }

    #[test]
    fn next_deadline_is_exact_below_the_top_level() {
        let mut rng = Rng(77);
        let mut w: Wheel<()> = tick_1ms(T0);
        let mut min = u64::MAX;
        for key in 0..2000 {
            let interval = (1 + rng.below(3600)) * S;
            w.insert(
                key,
                Duration::from_nanos(interval),
                Duration::from_nanos(rng.next()),
                (),
                T0,
            );
            min = min.min(w.next_due(key).unwrap_or(u64::MAX));
        }
        assert_eq!(w.next_deadline(), Some(min.div_ceil(MS) * MS));
    }
}
