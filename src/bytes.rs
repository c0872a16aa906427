//! Copies and comparisons of the short byte strings a scrape handles per sample: label
//! names, label values, metric names, a target's encoded labels.
//!
//! Most are 2–64 bytes, and for those a call into libc's `memcpy` or `memcmp` costs more
//! than the work: the call and its size dispatch where two overlapping word loads and
//! stores do the job. The per-scrape path made about five such calls per sample
//! (callgrind), and in `perf` the one `memcmp` per sample of two-byte strings alone took
//! 7% of its time. Longer strings still go to libc.
//!
//! Owns no state; safe code only (fixed-size subslices compile to plain moves).

/// Copies `src` into `dst`, which must be as long.
///
/// # Panics
/// If the lengths differ, as `copy_from_slice` does.
#[inline(always)]
pub fn copy(dst: &mut [u8], src: &[u8]) {
    let n = src.len();
    assert_eq!(dst.len(), n, "bytes::copy: length mismatch");
    // Two windows of `w` bytes, one at each end, overlap in the middle and cover
    // every length from w to 2w.
    macro_rules! ends {
        ($w:literal) => {{
            dst[..$w].copy_from_slice(&src[..$w]);
            dst[n - $w..].copy_from_slice(&src[n - $w..]);
        }};
    }
    match n {
        0 => {}
        1..=3 => {
            dst[0] = src[0];
            dst[n / 2] = src[n / 2];
            dst[n - 1] = src[n - 1];
        }
        4..=7 => ends!(4),
        8..=16 => ends!(8),
        17..=32 => ends!(16),
        33..=64 => ends!(32),
        _ => dst.copy_from_slice(src),
    }
}

/// Whether `a` and `b` are equal.
#[inline(always)]
pub fn eq(a: &[u8], b: &[u8]) -> bool {
    let n = a.len();
    if b.len() != n {
        return false;
    }
    macro_rules! ends {
        ($w:literal) => {
            a[..$w] == b[..$w] && a[n - $w..] == b[n - $w..]
        };
    }
    match n {
        0 => true,
        1..=3 => a[0] == b[0] && a[n / 2] == b[n / 2] && a[n - 1] == b[n - 1],
        4..=7 => ends!(4),
        8..=16 => ends!(8),
        17..=32 => ends!(16),
        33..=64 => ends!(32),
        _ => a == b,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Every length up to past the longest window, with the difference at every
    /// position: a window that misses a byte fails here.
    #[test]
    fn copy_and_eq_agree_with_the_slice_operations_at_every_length_and_position() {
        let src: Vec<u8> = (0..100u8)
            .map(|i| i.wrapping_mul(37).wrapping_add(1))
            .collect();
        for n in 0..=100 {
            let s = &src[..n];
            let mut dst = vec![0u8; n];
            copy(&mut dst, s);
            assert_eq!(dst, s, "copy of {n} bytes");
            assert!(eq(s, &dst), "eq of {n} equal bytes");
            for at in 0..n {
                let mut other = dst.clone();
                other[at] ^= 0x40;
                assert!(!eq(s, &other), "eq of {n} bytes differing at {at}");
                assert!(!eq(&other, s), "eq of {n} bytes differing at {at}, swapped");
            }
            if n > 0 {
                assert!(!eq(s, &src[..n - 1]), "eq of {n} and {} bytes", n - 1);
            }
        }
    }

    #[test]
    #[should_panic(expected = "length mismatch")]
    fn copy_into_a_shorter_slice_panics() {
        copy(&mut [0u8; 3], b"abcd");
    }
}
