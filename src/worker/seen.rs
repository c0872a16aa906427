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
//! Most targets expose the same series in the same order every time. So the set can
//! follow an expected sequence (the last scrape's keys in body order): while each insert
//! is the next expected key, it is counted and stored nowhere, and it cannot be a repeat
//! because the expected keys are distinct. The first key off the sequence places the
//! matched prefix in the slots and the set carries on as usual. A scrape that followed
//! to the end wrote exactly the expected series, each once, so the caller needs no
//! sorted list and no diff. Outside that mode the set records its keys in insertion
//! order ([`SeriesSet::order`]) for the next scrape to follow.
//!
//! Owns its slots and the recorded order only; knows nothing of scrapes.

use crate::hash::HashSetKeyed;

/// Slots probed before the set gives up on ordered placement for this scrape.
const MAX_PROBE: usize = 64;

/// Fewest slots the table keeps: small scrapes cost a few hundred bytes to clear.
const MIN_SLOTS: usize = 64;

/// Most keys recorded in insertion order: a larger scrape is not followed next time, so
/// a huge body does not keep a second copy of its hashes in the worker.
const MAX_ORDER: usize = 1 << 18;

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
    /// `Some(n)` while following: the keys so far are the expected sequence's first `n`,
    /// and the slots (not yet cleared) hold nothing of this scrape.
    following: Option<usize>,
    /// Keys in insertion order once not following; `None` past [`MAX_ORDER`] keys.
    order: Option<Vec<u64>>,
    /// Home slots wanted at the next clearing.
    homes: usize,
}

impl SeriesSet {
    /// Empties the set, sized for about `expected` keys (the target's last scrape). With
    /// `follow`, the set starts following the sequence that every [`SeriesSet::insert`]
    /// of this scrape is then given.
    pub fn reset(&mut self, expected: usize, follow: bool) {
        self.len = 0;
        self.zero = false;
        self.general = None;
        let mut order = self.order.take().unwrap_or_default();
        order.clear();
        self.order = Some(order);
        self.homes = (expected.saturating_mul(2))
            .max(MIN_SLOTS)
            .checked_next_power_of_two()
            .unwrap_or(MIN_SLOTS);
        if follow {
            // The slots are cleared only if the scrape leaves the sequence.
            self.following = Some(0);
        } else {
            self.following = None;
            self.resize_empty(self.homes);
        }
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

    /// Adds `key`; false when it was already in the set. `expected` is the sequence given
    /// at every insert of a scrape that follows one (ignored otherwise).
    pub fn insert(&mut self, key: u64, expected: &[u64]) -> bool {
        if let Some(n) = self.following {
            if expected.get(n) == Some(&key) {
                self.following = Some(n + 1);
                return true;
            }
            self.stop_following(expected);
        }
        let new = self.place(key);
        if new {
            if let Some(order) = &mut self.order {
                if order.len() < MAX_ORDER {
                    order.push(key);
                } else {
                    self.order = None;
                }
            }
        }
        new
    }

    /// True if every insert so far followed `expected` and all of it was inserted.
    pub fn followed_all(&self, expected: &[u64]) -> bool {
        self.following == Some(expected.len())
    }

    /// Ends following (if the set was): the matched prefix of `expected` becomes ordinary
    /// keys, so that [`SeriesSet::len`], [`SeriesSet::iter`] and
    /// [`SeriesSet::sorted_into`] see it.
    pub fn stop_following(&mut self, expected: &[u64]) {
        let Some(n) = self.following.take() else {
            return;
        };
        self.resize_empty(self.homes);
        for &k in &expected[..n.min(expected.len())] {
            // Distinct keys: each is new.
            self.insert(k, &[]);
        }
    }

    /// The keys in the order they were first inserted, unless there were more than
    /// [`MAX_ORDER`]. Only meaningful when the set is not following.
    pub fn order(&self) -> Option<&[u64]> {
        self.order.as_deref()
    }

    fn place(&mut self, key: u64) -> bool {
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
            self.resize_empty(MIN_SLOTS);
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
        self.place(key)
    }

    /// Doubles the home slots and places every key again.
    fn grow(&mut self) {
        let old = std::mem::take(&mut self.slots);
        let homes = 2 * (old.len() - MAX_PROBE);
        self.resize_empty(homes);
        self.len = usize::from(self.zero);
        for k in old.into_iter().filter(|&k| k != 0) {
            self.place(k);
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

    /// Keys in the set (not counting a followed prefix: see [`SeriesSet::stop_following`]).
    pub fn len(&self) -> usize {
        debug_assert!(self.following.is_none(), "len of a following set");
        self.len + self.general.as_ref().map_or(0, |g| g.len())
    }

    /// Every key, in no particular order.
    pub fn iter(&self) -> impl Iterator<Item = u64> + '_ {
        debug_assert!(self.following.is_none(), "iter of a following set");
        let general = self.general.iter().flatten().copied();
        let slots = self.slots.iter().copied().filter(|&k| k != 0);
        general.chain(self.zero.then_some(0)).chain(slots)
    }

    /// Appends every key to `out` in ascending order.
    pub fn sorted_into(&self, out: &mut Vec<u64>) {
        debug_assert!(self.following.is_none(), "sorted_into of a following set");
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
        self.slots.capacity() * 8
            + self.general.as_ref().map_or(0, |g| g.capacity() * 16)
            + self.order.as_ref().map_or(0, |o| o.capacity() * 8)
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
        set.reset(expected, false);
        let mut model = std::collections::BTreeSet::new();
        let mut order = Vec::new();
        for &k in input {
            let new = model.insert(k);
            if new {
                order.push(k);
            }
            assert_eq!(set.insert(k, &[]), new, "insert {k:#x}");
        }
        assert_eq!(set.order(), Some(order.as_slice()), "insertion order");
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

    /// One scrape of `input` following `expected`: (answers, followed all, sorted keys,
    /// recorded order).
    fn follow(
        set: &mut SeriesSet,
        expected: &[u64],
        input: &[u64],
    ) -> (Vec<bool>, bool, Vec<u64>, Vec<u64>) {
        set.reset(expected.len(), true);
        let answers = input.iter().map(|&k| set.insert(k, expected)).collect();
        let all = set.followed_all(expected);
        set.stop_following(expected);
        let mut sorted = Vec::new();
        set.sorted_into(&mut sorted);
        let order = set.order().map(<[u64]>::to_vec).unwrap_or_default();
        (answers, all, sorted, order)
    }

    #[test]
    fn following_a_repeated_sequence_stores_nothing_and_leaving_it_loses_nothing() {
        let expected = keys(11, 300);
        let mut set = SeriesSet::default();
        // Stale keys in the slots from an earlier scrape must not leak into a followed one.
        check(&mut set, 10, &keys(12, 50));

        let (answers, all, sorted, _) = follow(&mut set, &expected, &expected);
        assert!(all && answers.iter().all(|&a| a));
        let mut want = expected.clone();
        want.sort_unstable();
        assert_eq!(sorted, want, "stopping after a full follow gives every key");

        // A prefix only: not followed to the end, and the prefix is in the set.
        let (_, all, sorted, order) = follow(&mut set, &expected, &expected[..120]);
        assert!(!all);
        let mut want = expected[..120].to_vec();
        want.sort_unstable();
        assert_eq!(sorted, want);
        assert_eq!(order, expected[..120]);

        // Off the sequence at 200 (a new series), then a repeat of a followed key and of
        // a key after the break: both are caught.
        let mut input = expected[..200].to_vec();
        input.push(42);
        input.extend_from_slice(&expected[200..]);
        input.push(expected[5]);
        input.push(expected[250]);
        let (answers, all, sorted, order) = follow(&mut set, &expected, &input);
        assert!(!all);
        assert_eq!(answers.iter().filter(|&&a| !a).count(), 2, "two repeats");
        assert!(!answers[input.len() - 1] && !answers[input.len() - 2]);
        let mut want = expected.clone();
        want.push(42);
        want.sort_unstable();
        assert_eq!(sorted, want);
        assert_eq!(order.len(), 301);
        assert_eq!(order[200], 42);

        // A repeat right away (the first key twice) leaves the sequence at once.
        let (answers, all, _, _) = follow(&mut set, &expected, &[expected[0], expected[0]]);
        assert_eq!(answers, [true, false]);
        assert!(!all);

        // The same keys in another order: every answer new, not followed.
        let mut shuffled = expected.clone();
        shuffled.reverse();
        let (answers, all, sorted, order) = follow(&mut set, &expected, &shuffled);
        assert!(!all && answers.iter().all(|&a| a));
        let mut want = expected.clone();
        want.sort_unstable();
        assert_eq!(sorted, want);
        assert_eq!(order, shuffled);

        // An empty sequence is followed by an empty scrape only.
        let (_, all, sorted, _) = follow(&mut set, &[], &[]);
        assert!(all && sorted.is_empty());
        let (_, all, _, _) = follow(&mut set, &[], &[7]);
        assert!(!all);
    }
}
