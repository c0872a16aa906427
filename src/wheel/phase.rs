//! Phase arithmetic: the jitter seed, each target's offset inside its interval, and the
//! next Unix time at which a phase comes round. Pure functions, no state.

use std::fmt::{self, Write as _};
use std::time::Duration;

use super::duration_ns;
use crate::labels::LabelSet;

pub use crate::hash::fnv1a64;
use crate::hash::Fnv1a;

/// Lets `Display` output stream into the hash without building the string.
impl fmt::Write for Fnv1a {
    fn write_str(&mut self, s: &str) -> fmt::Result {
        self.update(s.as_bytes());
        Ok(())
    }
}

/// The seed that shifts every target's phase on this agent: FNV-1a-64 over
/// `<hostname><external_labels>`, the labels in Prometheus's `{a="1", b="2"}` form
/// (`{}` when there are none), e.g. `host1{dc="a", replica="1"}`. Replicas that differ in
/// an external label therefore scrape the same target at different moments.
pub fn jitter_seed(hostname: &str, external_labels: &LabelSet) -> u64 {
    let mut h = Fnv1a::default();
    h.update(hostname.as_bytes());
    // Fnv1a's write_str never fails and LabelSet's Display only forwards writer errors.
    let _ = write!(h, "{external_labels}");
    h.0
}

/// A target's offset inside its interval: `(target_hash ^ seed) % interval`, in ns. Zero
/// for a zero interval.
pub fn offset_for(target_hash: u64, seed: u64, interval: Duration) -> Duration {
    match duration_ns(interval) {
        0 => Duration::ZERO,
        i => Duration::from_nanos((target_hash ^ seed) % i),
    }
}

/// The first Unix time strictly after `now_ns` with `t % interval_ns == offset_ns`
/// (`offset_ns` is taken modulo the interval; a zero interval counts as 1 ns). Saturates
/// at `u64::MAX`, which never comes due.
pub fn next_phase_after(now_ns: u64, interval_ns: u64, offset_ns: u64) -> u64 {
    let interval_ns = interval_ns.max(1);
    let t = (now_ns - now_ns % interval_ns).saturating_add(offset_ns % interval_ns);
    if t > now_ns {
        t
    } else {
        t.saturating_add(interval_ns)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn jitter_seed_hashes_hostname_then_prometheus_label_string() {
        let labels = LabelSet::from_pairs([("replica", "1"), ("dc", "a")]);
        assert_eq!(
            jitter_seed("host1", &labels),
            fnv1a64(br#"host1{dc="a", replica="1"}"#)
        );
        assert_eq!(jitter_seed("host1", &LabelSet::new()), fnv1a64(b"host1{}"));
        let other = LabelSet::from_pairs([("replica", "2"), ("dc", "a")]);
        assert_ne!(jitter_seed("host1", &labels), jitter_seed("host1", &other));
    }

    #[test]
    fn offset_is_hash_xor_seed_modulo_interval() {
        let i = Duration::from_secs(15);
        let off = offset_for(0xdead_beef_1234_5678, 0x0f0f_0f0f_0f0f_0f0f, i);
        assert_eq!(
            off.as_nanos(),
            u128::from((0xdead_beef_1234_5678u64 ^ 0x0f0f_0f0f_0f0f_0f0f) % 15_000_000_000)
        );
        assert!(off < i);
        assert_eq!(offset_for(42, 7, Duration::ZERO), Duration::ZERO);
    }

    #[test]
    fn next_phase_is_strictly_after_now_and_in_phase() {
        let s = 1_000_000_000;
        // Before, at and after the phase point within the current interval.
        assert_eq!(next_phase_after(100 * s + 200, s, 300), 100 * s + 300);
        assert_eq!(next_phase_after(100 * s + 300, s, 300), 101 * s + 300);
        assert_eq!(next_phase_after(100 * s + 400, s, 300), 101 * s + 300);
        // An offset beyond the interval wraps; a zero interval does not divide by zero.
        assert_eq!(next_phase_after(100 * s, s, s + 5), 100 * s + 5);
        assert_eq!(next_phase_after(7, 0, 0), 8);
        assert_eq!(next_phase_after(u64::MAX - 1, u64::MAX, 0), u64::MAX);
    }
}
