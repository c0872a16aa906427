//! Token scanners shared by both formats: names, quoted strings, the duplicate-label
//! check and unescaping helpers. Everything works on byte offsets into the body.

use super::{fail, PResult, ParseErrorKind, RawLabel, RawStr};

const METRIC_START: u8 = 1; // [a-zA-Z_:]
const METRIC_CONT: u8 = 2; // [a-zA-Z0-9_:]
const LABEL_START: u8 = 4; // [a-zA-Z_]
const LABEL_CONT: u8 = 8; // [a-zA-Z0-9_]

static CLASS: [u8; 256] = {
    let mut t = [0u8; 256];
    let mut c = 0;
    while c < 256 {
        let b = c as u8;
        let alpha = b.is_ascii_alphabetic() || b == b'_';
        let digit = b.is_ascii_digit();
        let mut class = 0;
        if alpha || b == b':' {
            class |= METRIC_START | METRIC_CONT;
        }
        if digit {
            class |= METRIC_CONT | LABEL_CONT;
        }
        if alpha {
            class |= LABEL_START | LABEL_CONT;
        }
        t[c] = class;
        c += 1;
    }
    t
};

/// Whether `b` can start a legacy metric name (`[a-zA-Z_:]`).
#[inline]
pub(super) fn is_metric_start(b: u8) -> bool {
    CLASS[b as usize] & METRIC_START != 0
}

/// Whether `b` can start a legacy label name (`[a-zA-Z_]`).
#[inline]
pub(super) fn is_label_start(b: u8) -> bool {
    CLASS[b as usize] & LABEL_START != 0
}

/// End of the metric name starting at `start` (whose first byte was already checked).
#[inline]
pub(super) fn metric_name_end(b: &[u8], start: usize) -> usize {
    name_end(b, start + 1, true)
}

/// End of the label name starting at `start` (whose first byte was already checked).
#[inline]
pub(super) fn label_name_end(b: &[u8], start: usize) -> usize {
    name_end(b, start + 1, false)
}

/// The first offset at or after `i` that is not `[a-zA-Z0-9_]` (`[a-zA-Z0-9_:]` if
/// `colon`). Metric names run to 30–60 bytes and are the longest tokens a parse
/// classifies byte by byte, so this classifies eight bytes per step: each byte's flag
/// is computed in its own 7 bits (the `hasbetween` trick of Bit Twiddling Hacks), so
/// no carry crosses into the next byte, and bytes with the high bit set never qualify.
#[inline]
fn name_end(b: &[u8], mut i: usize, colon: bool) -> usize {
    const ONES: u64 = 0x0101_0101_0101_0101;
    const LOW7: u64 = 0x7f7f_7f7f_7f7f_7f7f;
    const HIGHS: u64 = 0x8080_8080_8080_8080;
    /// High bit of each byte whose low 7 bits `v` satisfy `m < v < n` (m < 128, n ≤ 128).
    #[inline(always)]
    fn between(v: u64, m: u64, n: u64) -> u64 {
        (ONES * (127 + n) - v) & (v + ONES * (127 - m)) & HIGHS
    }
    let digits_end = if colon { b':' + 1 } else { b'9' + 1 };
    while let Some(chunk) = b.get(i..i + 8) {
        let Ok(chunk) = <[u8; 8]>::try_from(chunk) else {
            break;
        };
        let x = u64::from_le_bytes(chunk);
        let v = x & LOW7;
        let lower = (x | 0x2020_2020_2020_2020) & LOW7;
        let ok = (between(lower, u64::from(b'a') - 1, u64::from(b'z') + 1)
            | between(v, u64::from(b'0') - 1, u64::from(digits_end))
            | between(v, u64::from(b'_') - 1, u64::from(b'_') + 1))
            & !x;
        let bad = !ok & HIGHS;
        if bad != 0 {
            return i + (bad.trailing_zeros() / 8) as usize;
        }
        i += 8;
    }
    let class = if colon { METRIC_CONT } else { LABEL_CONT };
    while i < b.len() && CLASS[b[i] as usize] & class != 0 {
        i += 1;
    }
    i
}

/// First offset at or after `i` that is not a space or tab.
#[inline]
pub(super) fn skip_blanks(b: &[u8], mut i: usize) -> usize {
    // Called between every two tokens, and there is nearly never a blank to skip: one
    // compare decides that (space and tab are the only blanks, both at most b' ').
    match b.get(i) {
        Some(&c) if c > b' ' => return i,
        None => return i,
        _ => {}
    }
    while i < b.len() && (b[i] == b' ' || b[i] == b'\t') {
        i += 1;
    }
    i
}

/// A quoted string scanned by [`scan_quoted`].
pub(super) struct Quoted {
    /// Offset just past the closing quote.
    pub end: usize,
    /// Whether the contents hold a backslash.
    pub escaped: bool,
    /// Raw line breaks inside the quotes.
    pub newlines: usize,
}

/// Scans the string whose opening quote is at `open`. Any character may be escaped with
/// a backslash except a line break; raw line breaks are allowed only if `allow_newline`
/// (otherwise the error kind comes from `newline_error`).
#[inline]
pub(super) fn scan_quoted(
    b: &[u8],
    open: usize,
    allow_newline: bool,
    newline_error: impl FnOnce() -> ParseErrorKind,
) -> PResult<Quoted> {
    let mut i = open + 1;
    let mut escaped = false;
    let mut newlines = 0;
    loop {
        let Some(at) = find_quote_special(b, i) else {
            return fail(open, ParseErrorKind::UnterminatedString);
        };
        match b[at] {
            b'"' => {
                return Ok(Quoted {
                    end: at + 1,
                    escaped,
                    newlines,
                })
            }
            b'\\' => {
                escaped = true;
                match b.get(at + 1) {
                    None => return fail(open, ParseErrorKind::UnterminatedString),
                    Some(b'\n') => return fail(at, ParseErrorKind::InvalidEscape),
                    Some(_) => i = at + 2,
                }
            }
            _ => {
                if !allow_newline {
                    return fail(at, newline_error());
                }
                newlines += 1;
                i = at + 1;
            }
        }
    }
}

/// Offset of the first `"`, `\\` or line break at or after `i`.
///
/// Label values are short (typically under 32 bytes), where memchr's setup costs more
/// than it saves; this looks at 8 bytes per step with the classic "has zero byte" bit
/// trick and hands long values over to memchr.
#[inline]
fn find_quote_special(b: &[u8], mut i: usize) -> Option<usize> {
    const ONES: u64 = 0x0101_0101_0101_0101;
    const HIGHS: u64 = 0x8080_8080_8080_8080;
    /// High bit set in each byte of `w` equal to `c`. Bytes above a match may be
    /// flagged too (borrow), so only the lowest flag is trusted.
    #[inline(always)]
    fn eq_mask(w: u64, c: u8) -> u64 {
        let x = w ^ (ONES * u64::from(c));
        x.wrapping_sub(ONES) & !x & HIGHS
    }
    let swar_end = b.len().min(i.saturating_add(64));
    while i + 8 <= swar_end {
        let Ok(chunk) = <[u8; 8]>::try_from(&b[i..i + 8]) else {
            break;
        };
        let w = u64::from_le_bytes(chunk);
        let m = eq_mask(w, b'"') | eq_mask(w, b'\\') | eq_mask(w, b'\n');
        if m != 0 {
            return Some(i + (m.trailing_zeros() / 8) as usize);
        }
        i += 8;
    }
    let rest = b.get(i..)?;
    if rest.len() < 8 {
        return rest
            .iter()
            .position(|&c| c == b'"' || c == b'\\' || c == b'\n')
            .map(|d| i + d);
    }
    memchr::memchr3(b'"', b'\\', b'\n', rest).map(|d| i + d)
}

/// The bytes of `s` once unescaped (escapes only ever produce ASCII, so working on
/// bytes is exact).
pub(super) fn unescaped_bytes<'s>(s: &RawStr<'s>) -> impl Iterator<Item = u8> + 's {
    let b = s.raw.as_bytes();
    let escaped = s.escaped;
    let mut i = 0;
    std::iter::from_fn(move || {
        let c = *b.get(i)?;
        if c != b'\\' || !escaped {
            i += 1;
            return Some(c);
        }
        let (out, skip) = match b.get(i + 1) {
            Some(b'\\') => (b'\\', 2),
            Some(b'"') => (b'"', 2),
            Some(b'n') => (b'\n', 2),
            _ => (b'\\', 1),
        };
        i += skip;
        Some(out)
    })
}

/// Whether the label name is `__name__`, which duplicates the metric name.
#[inline]
fn is_name_label(name: &RawStr<'_>) -> bool {
    if name.escaped {
        name.eq_unescaped(&RawStr::plain("__name__"))
    } else {
        name.raw == "__name__"
    }
}

/// Whether two label names are the same once unescaped; the common unescaped case is
/// kept inline because it runs for every pair of labels of every sample.
#[inline]
fn same_name(a: &RawStr<'_>, b: &RawStr<'_>) -> bool {
    if !a.escaped && !b.escaped {
        a.raw == b.raw
    } else {
        a.eq_unescaped(b)
    }
}

/// Index of the first label (in body order) whose name was already used by an earlier
/// label or is `__name__`.
///
/// Few labels are compared pairwise; many are hashed and sorted so that a hostile line
/// with thousands of labels costs O(n log n), not O(n²).
pub(super) fn find_duplicate(
    labels: &[RawLabel<'_>],
    scratch: &mut Vec<(u64, u32)>,
) -> Option<usize> {
    const PAIRWISE_MAX: usize = 12;
    let n = labels.len();
    if n <= PAIRWISE_MAX && labels.iter().all(|l| !l.name.escaped) {
        // Each pair compares a fingerprint (length, first and last byte) before the
        // names: a `str` comparison is a call into memcmp, and most pairs differ there.
        let mut prints = [0u32; PAIRWISE_MAX];
        for (i, l) in labels.iter().enumerate() {
            let b = l.name.raw.as_bytes();
            let print = (b.len() as u32) << 16
                | u32::from(b.first().copied().unwrap_or(0)) << 8
                | u32::from(b.last().copied().unwrap_or(0));
            if b == b"__name__"
                || (0..i).any(|j| prints[j] == print && labels[j].name.raw == l.name.raw)
            {
                return Some(i);
            }
            prints[i] = print;
        }
        return None;
    }
    if n <= PAIRWISE_MAX {
        for i in 0..n {
            let name = &labels[i].name;
            if is_name_label(name) || labels[..i].iter().any(|l| same_name(&l.name, name)) {
                return Some(i);
            }
        }
        return None;
    }
    scratch.clear();
    for (i, l) in labels.iter().enumerate() {
        if is_name_label(&l.name) {
            return Some(i);
        }
        scratch.push((hash_unescaped(&l.name), i as u32));
    }
    scratch.sort_unstable();
    let mut first_dup: Option<usize> = None;
    let mut run_start = 0;
    for k in 1..=scratch.len() {
        if k < scratch.len() && scratch[k].0 == scratch[run_start].0 {
            continue;
        }
        // Every pair in a run of equal hashes (entries sorted by index within the run).
        for a in run_start..k {
            for c in a + 1..k {
                let (i, j) = (scratch[a].1 as usize, scratch[c].1 as usize);
                if same_name(&labels[i].name, &labels[j].name) {
                    first_dup = Some(first_dup.map_or(j, |d| d.min(j)));
                }
            }
        }
        run_start = k;
    }
    first_dup
}

fn hash_unescaped(s: &RawStr<'_>) -> u64 {
    // FNV-1a: collisions only cost an extra comparison.
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    let mut feed = |b: u8| {
        h ^= u64::from(b);
        h = h.wrapping_mul(0x0100_0000_01b3);
    };
    unescaped_bytes(s).for_each(&mut feed);
    h
}

/// A short copy of `s` for an error message: bodies are untrusted and may hold
/// megabyte-long tokens.
pub(super) fn excerpt(s: &str) -> String {
    const MAX_CHARS: usize = 64;
    match s.char_indices().nth(MAX_CHARS) {
        None => s.to_owned(),
        Some((cut, _)) => format!("{}…", &s[..cut]),
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    fn label<'a>(name: &'a str, escaped: bool) -> RawLabel<'a> {
        RawLabel {
            name: RawStr { raw: name, escaped },
            value: RawStr::plain("v"),
        }
    }

    #[test]
    fn classes() {
        assert!(is_metric_start(b':') && is_metric_start(b'_') && is_metric_start(b'Z'));
        assert!(!is_metric_start(b'0') && !is_metric_start(b'.'));
        assert!(!is_label_start(b':') && is_label_start(b'a'));
        assert_eq!(metric_name_end(b"a:b_9.x", 0), 5);
        // Every byte value at every position of a long name, against the table.
        let base = b"abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789_:".to_vec();
        for at in [1, 5, 8, 9, 15, 16, 40, base.len() - 1] {
            for c in 0..=255u8 {
                let mut name = base.clone();
                name[at] = c;
                let metric = CLASS[c as usize] & METRIC_CONT != 0;
                let label = CLASS[c as usize] & LABEL_CONT != 0;
                let colon = name.iter().position(|&x| x == b':').unwrap_or(name.len());
                let want_metric = if metric { name.len() } else { at };
                let want_label = if label {
                    colon.min(name.len())
                } else {
                    at.min(colon)
                };
                assert_eq!(metric_name_end(&name, 0), want_metric, "byte {c} at {at}");
                assert_eq!(label_name_end(&name, 0), want_label, "byte {c} at {at}");
            }
        }
        assert_eq!(label_name_end(b"a_9:x", 0), 3);
    }

    #[test]
    fn quoted_strings() {
        let nl = || ParseErrorKind::NewlineInLabelValue { name: "l".into() };
        let q = scan_quoted(br#""ab\"c" x"#, 0, false, nl).unwrap();
        assert_eq!((q.end, q.escaped, q.newlines), (7, true, 0));
        let long = format!("\"{}\"", "x".repeat(100));
        let q = scan_quoted(long.as_bytes(), 0, false, nl).unwrap();
        assert_eq!(q.end, 102);
        let q = scan_quoted(b"\"a\nb\"", 0, true, nl).unwrap();
        assert_eq!((q.end, q.newlines), (5, 1));
        let e = scan_quoted(b"\"a\nb\"", 0, false, nl)
            .err()
            .map(|f| (f.pos, f.kind));
        assert_eq!(e, Some((2, nl())));
        let e = scan_quoted(b"\"abc", 0, false, nl).err().map(|f| f.kind);
        assert_eq!(e, Some(ParseErrorKind::UnterminatedString));
        let e = scan_quoted(b"\"ab\\", 0, false, nl).err().map(|f| f.kind);
        assert_eq!(e, Some(ParseErrorKind::UnterminatedString));
        let e = scan_quoted(b"\"ab\\\n\"", 0, true, nl)
            .err()
            .map(|f| (f.pos, f.kind));
        assert_eq!(e, Some((3, ParseErrorKind::InvalidEscape)));
    }

    #[test]
    fn special_byte_search_matches_naive_search() {
        // Every position of every special byte, in haystacks shorter and longer than the
        // word-at-a-time window, with high bytes and 0x01 bytes that trip naive tricks.
        for len in [0, 1, 7, 8, 9, 15, 16, 63, 64, 65, 100, 200] {
            for special in [b'"', b'\\', b'\n'] {
                for at in 0..=len {
                    let mut hay: Vec<u8> =
                        (0..len).map(|k| [b'a', 0x01, 0xff, 0x80][k % 4]).collect();
                    if at < len {
                        hay[at] = special;
                    }
                    for start in [0, 1, 5] {
                        let naive = hay
                            .iter()
                            .enumerate()
                            .skip(start)
                            .find(|(_, &c)| c == b'"' || c == b'\\' || c == b'\n')
                            .map(|(k, _)| k);
                        assert_eq!(find_quote_special(&hay, start), naive, "{len} {at} {start}");
                    }
                }
            }
        }
    }

    #[test]
    fn unescaping_bytes() {
        let raw = RawStr {
            raw: r#"a\\b\"c\nd\te\"#,
            escaped: true,
        };
        let s: Vec<u8> = unescaped_bytes(&raw).collect();
        assert_eq!(s, b"a\\b\"c\nd\\te\\");
        let plain = RawStr::plain(r"a\n");
        assert_eq!(unescaped_bytes(&plain).collect::<Vec<u8>>(), b"a\\n");
    }

    #[test]
    fn duplicates_few_and_many() {
        let mut scratch = Vec::new();
        let few = [label("a", false), label("b", false), label("a", false)];
        assert_eq!(find_duplicate(&few, &mut scratch), Some(2));
        let escaped = [label("a\"", false), label("a\\\"", true)];
        assert_eq!(find_duplicate(&escaped, &mut scratch), Some(1));
        let name = [label("a", false), label("__name__", false)];
        assert_eq!(find_duplicate(&name, &mut scratch), Some(1));
        // Same length, first and last byte: only the full comparison tells them apart.
        let alike = [
            label("ab_c", false),
            label("ax_c", false),
            label("le", false),
        ];
        assert_eq!(find_duplicate(&alike, &mut scratch), None);
        let late = [
            label("ab_c", false),
            label("le", false),
            label("ax_c", false),
            label("le", false),
        ];
        assert_eq!(find_duplicate(&late, &mut scratch), Some(3));
        let twelve: Vec<String> = (0..12).map(|i| format!("n{i:02}")).collect();
        let mut up_to: Vec<RawLabel<'_>> = twelve.iter().map(|n| label(n, false)).collect();
        assert_eq!(find_duplicate(&up_to, &mut scratch), None);
        up_to[11] = label("n03", false);
        assert_eq!(find_duplicate(&up_to, &mut scratch), Some(11));

        let names: Vec<String> = (0..1000).map(|i| format!("l{i}")).collect();
        let mut many: Vec<RawLabel<'_>> = names.iter().map(|n| label(n, false)).collect();
        assert_eq!(find_duplicate(&many, &mut scratch), None);
        many.push(label("l500", false));
        many.push(label("l7", false));
        assert_eq!(find_duplicate(&many, &mut scratch), Some(1000));
        many.truncate(1000);
        many.push(label("__name__", false));
        assert_eq!(find_duplicate(&many, &mut scratch), Some(1000));
    }

    #[test]
    fn excerpts_are_bounded() {
        assert_eq!(excerpt("short"), "short");
        let long = "é".repeat(100);
        let e = excerpt(&long);
        assert_eq!(e.chars().count(), 65);
        assert!(e.ends_with('…'));
    }
}
