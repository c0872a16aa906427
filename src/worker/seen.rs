//! The set of series one scrape wrote: the duplicate check on every sample, and the
//! sorted list the staleness diff and the scrape cache walk once the body is done.
//!
//! A general hash set costs a probe per sample and then a sort of every hash for the
//! diff. Series hashes ([`crate::hash::series_hash`]) are uniform over 64 bits, so this
//! set places each at the slot its top bits name and probes forward (linear probing, no
//! wrap-around). Keys then lie in slot order cluster by cluster: a key's cluster starts
//! at or before its home slot and holds no empty slot, and homes grow with the keys, so
//! every key of one cluster is below every key of the next. Reading the slots and sorting
//! each (short) cluster gives the sorted list in linear time.
//!
//! Bodies choose their label values, so a hostile target could pick series whose hashes
//! share their top bits and turn probing quadratic. A probe longer than [`MAX_PROBE`]
//! therefore moves the set, for the rest of the scrape, to a general hash set and a sort.
//!
//! Owns its slots only; knows nothing of scrapes.

use crate::hash::HashSetKeyed;

/// Slots probed before the set gives up on ordered placement for this scrape.
const MAX_PROBE: usize = 64;

/// Fewest slots the table keeps: small scrapes cost a few hundred bytes to clear.
const MIN_SLOTS: usize = 64;

/// A set of 64-bit series hashes, reset per scrape.
#[derive(Default)]
pub struct SeriesSet {
    /// `2^bits` home slots plus `MAX_PROBE` of overflow room at the end; 0 is empty.
    slots: Vec<u64>,
    /// `64 - bits`: a key's home slot is `key >> shift`.
    shift: u32,
    /// Keys in `slots` and `zero`.
    len: usize,
    /// 0 is the empty marker, so the key 0 is kept aside.
    zero: bool,
    /// Set once ordered placement failed this scrape: every key moves here, and the slots
    /// and `zero` stay empty until the next reset.
    general: Option<HashSetKeyed>,
}

impl SeriesSet {
    /// Empties the set, sized for about `expected` keys (the target's last scrape).
    pub fn reset(&mut self, expected: usize) {
        self.len = 0;
        self.zero = false;
        self.general = None;
        let homes = (expected.saturating_mul(2))
            .max(MIN_SLOTS)
            .checked_next_power_of_two()
            .unwrap_or(MIN_SLOTS);
        self.resize_empty(homes);
    }

    fn resize_empty(&mut self, homes: usize) {
        let want = homes + MAX_PROBE;
        if self.slots.len() == want {
            self.slots.fill(0);
        } else {
            // One huge scrape must not pin its table in the worker for good.
            if self.slots.capacity() > 4 * want {
                self.slots = Vec::new();
            }
            self.slots.clear();
            self.slots.resize(want, 0);
        }
        self.shift = 64 - homes.trailing_zeros();
    }

    /// Adds `key`; false when it was already in the set.
    pub fn insert(&mut self, key: u64) -> bool {
        if let Some(g) = &mut self.general {
            return g.insert(key);
        }
        if key == 0 {
            let new = !self.zero;
            self.zero = true;
            self.len += usize::from(new);
            return new;
        }
        if self.slots.is_empty() {
            self.reset(0);
        }
        let home = (key >> self.shift) as usize;
        let end = (home + MAX_PROBE).min(self.slots.len());
        for i in home..end {
            let k = self.slots[i];
            if k == key {
                return false;
            }
            if k == 0 {
                self.slots[i] = key;
                self.len += 1;
                if 2 * self.len > self.slots.len() - MAX_PROBE {
                    self.grow();
                }
                return true;
            }
        }
        self.fall_back();
        self.insert(key)
    }

    /// Doubles the home slots and places every key again.
    fn grow(&mut self) {
        let old = std::mem::take(&mut self.slots);
        let homes = 2 * (old.len() - MAX_PROBE);
        self.resize_empty(homes);
        self.len = usize::from(self.zero);
        for k in old.into_iter().filter(|&k| k != 0) {
            self.insert(k);
        }
    }

    fn fall_back(&mut self) {
        let mut g = HashSetKeyed::default();
        g.reserve(self.len + 1);
        g.extend(self.iter());
        self.slots.fill(0);
        self.zero = false;
        self.len = 0;
        self.general = Some(g);
    }

    /// Keys in the set.
    pub fn len(&self) -> usize {
        self.len + self.general.as_ref().map_or(0, |g| g.len())
    }

    /// Every key, in no particular order.
    pub fn iter(&self) -> impl Iterator<Item = u64> + '_ {
        let general = self.general.iter().flatten().copied();
        let slots = self.slots.iter().copied().filter(|&k| k != 0);
        general.chain(self.zero.then_some(0)).chain(slots)
    }

    /// Appends every key to `out` in ascending order.
    pub fn sorted_into(&self, out: &mut Vec<u64>) {
        out.reserve(self.len());
        if let Some(g) = &self.general {
            let start = out.len();
            out.extend(g.iter().copied());
            out[start..].sort_unstable();
            return;
        }
        if self.zero {
            out.push(0);
        }
        let mut cluster = out.len();
        for &k in &self.slots {
            if k == 0 {
                sort_short(&mut out[cluster..]);
                cluster = out.len();
            } else {
                out.push(k);
            }
        }
        sort_short(&mut out[cluster..]);
    }

    /// Heap bytes held.
    pub fn heap_bytes(&self) -> usize {
        self.slots.capacity() * 8 + self.general.as_ref().map_or(0, |g| g.capacity() * 16)
    }
}

/// Insertion sort: clusters are a few keys long at a load under one half.
fn sort_short(keys: &mut [u64]) {
    for i in 1..keys.len() {
        let k = keys[i];
        let mut j = i;
        while j > 0 && keys[j - 1] > k {
            keys[j] = keys[j - 1];
            j -= 1;
        }
        keys[j] = k;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A deterministic stream of well-spread keys (splitmix64).
    fn keys(seed: u64, n: usize) -> Vec<u64> {
        let mut x = seed;
        (0..n)
            .map(|_| {
                x = x.wrapping_add(0x9e37_79b9_7f4a_7c15);
                let mut z = x;
                z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
                z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
                z ^ (z >> 31)
            })
            .collect()
    }

    /// Inserts `input` and checks every answer and the sorted list against a BTreeSet.
    fn check(set: &mut SeriesSet, expected: usize, input: &[u64]) {
        set.reset(expected);
        let mut model = std::collections::BTreeSet::new();
        for &k in input {
            assert_eq!(set.insert(k), model.insert(k), "insert {k:#x}");
        }
        assert_eq!(set.len(), model.len());
        let mut got = vec![7];
        set.sorted_into(&mut got);
        assert_eq!(got[0], 7, "appends after what is there");
        assert!(got[1..].iter().copied().eq(model.iter().copied()));
        let mut any: Vec<u64> = set.iter().collect();
        any.sort_unstable();
        assert!(any.iter().copied().eq(model.iter().copied()));
    }

    #[test]
    fn answers_and_sorts_like_an_ordered_set_at_any_size() {
        let mut set = SeriesSet::default();
        for (seed, n, expected) in [
            (1, 0, 0),
            (2, 1, 0),
            (3, 500, 500),
            (4, 5000, 10),
            (5, 3000, 100_000),
        ] {
            let mut input = keys(seed, n);
            // Every fifth sample repeats an earlier series.
            for i in (0..input.len()).step_by(5).skip(1) {
                input.insert(i, input[i / 3]);
            }
            check(&mut set, expected, &input);
        }
    }

    #[test]
    fn zero_and_the_extremes_are_keys_like_any_other() {
        let mut set = SeriesSet::default();
        check(
            &mut set,
            4,
            &[0, u64::MAX, 0, 1, u64::MAX - 1, u64::MAX, 1 << 63],
        );
    }

    #[test]
    fn keys_crowding_one_home_fall_back_and_stay_correct() {
        // Top 40 bits all equal: every key has the same home slot at any table size.
        let hostile: Vec<u64> = keys(9, 2000)
            .iter()
            .map(|k| (0x00ab_cdef << 40) | (k >> 24))
            .collect();
        let mut set = SeriesSet::default();
        check(&mut set, 2000, &hostile);
        assert!(set.general.is_some(), "moved to the general set");
        // The next scrape starts ordered again.
        check(&mut set, 10, &keys(10, 100));
        assert!(set.general.is_none());
    }

    #[test]
    fn keys_at_the_top_of_the_range_use_the_overflow_room() {
        let top: Vec<u64> = (0..40).map(|i| u64::MAX - i * 3).collect();
        let mut set = SeriesSet::default();
        check(&mut set, 1000, &top);
        assert!(
            set.general.is_none(),
            "40 keys fit the room past the last home"
        );
    }
}
