//! Floats as Prometheus reads and writes them.
//!
//! Sample values and OpenMetrics timestamps use Go's `strconv.ParseFloat` minus any
//! string holding `p`, `P` or `_` (so no hex floats and no digit separators). `le` and
//! `quantile` label values are re-spelled with Prometheus's `FormatOpenMetricsFloat`
//! when the full Go `ParseFloat` accepts them.
//!
//! Go's grammar differs from Rust's `f64::from_str` only in a few places, handled here:
//! Go rejects a sign before `nan`, reports overflow (`1e400`) as an error instead of
//! returning infinity, and (for the full grammar) accepts hex floats and `_` separators.

use std::fmt::Write as _;

/// Powers of ten that are exact in an f64 (up to 10^22), for the fast path.
const POW10: [f64; 23] = [
    1e0, 1e1, 1e2, 1e3, 1e4, 1e5, 1e6, 1e7, 1e8, 1e9, 1e10, 1e11, 1e12, 1e13, 1e14, 1e15, 1e16,
    1e17, 1e18, 1e19, 1e20, 1e21, 1e22,
];

/// A sample value or OpenMetrics timestamp, as Prometheus's `parseFloat` reads it.
#[inline]
pub(super) fn parse_value(s: &str) -> Option<f64> {
    if let Some(v) = parse_simple_decimal(s.as_bytes()) {
        return Some(v);
    }
    parse_go_decimal(s)
}

/// Fast path for `[+-]?digits[.digits]` with at most 15 digits in all.
///
/// Exact by Clinger's argument: the digits form an integer below 10^15 < 2^53, which an
/// f64 holds exactly, as it does 10^k for k ≤ 22; IEEE division of two exact operands
/// is correctly rounded, so the quotient is the correctly rounded decimal value.
#[inline]
fn parse_simple_decimal(b: &[u8]) -> Option<f64> {
    const MAX_DIGITS: usize = 15;
    let (neg, mut i) = match b.first() {
        Some(b'-') => (true, 1),
        Some(b'+') => (false, 1),
        _ => (false, 0),
    };
    let mut mant: u64 = 0;
    let mut digits = 0;
    let mut frac_digits = 0;
    let mut seen_dot = false;
    while i < b.len() {
        let c = b[i];
        if c.is_ascii_digit() {
            digits += 1;
            if digits > MAX_DIGITS {
                return None;
            }
            mant = mant * 10 + u64::from(c - b'0');
            if seen_dot {
                frac_digits += 1;
            }
        } else if c == b'.' && !seen_dot {
            seen_dot = true;
        } else {
            return None;
        }
        i += 1;
    }
    if digits == 0 {
        return None;
    }
    let v = mant as f64 / POW10[frac_digits];
    Some(if neg { -v } else { v })
}

/// Go's `ParseFloat` for everything but hex floats and `_` separators (which
/// Prometheus's sample parser rejects and Rust's grammar does not accept either).
fn parse_go_decimal(s: &str) -> Option<f64> {
    if let Some(special) = parse_go_special(s) {
        return special;
    }
    let v: f64 = s.parse().ok()?;
    // Rust returns ±inf on overflow where Go returns ErrRange; real infinities were
    // handled as specials above.
    if v.is_infinite() {
        return None;
    }
    Some(v)
}

/// `Some(result)` when `s` is in Go's special-value syntax (a sign or a letter first):
/// `[+-]?(inf|infinity)` or unsigned `nan`, ignoring case. `None` means "a number".
fn parse_go_special(s: &str) -> Option<Option<f64>> {
    let (neg, signed, rest) = match s.as_bytes().first() {
        Some(b'+') => (false, true, &s[1..]),
        Some(b'-') => (true, true, &s[1..]),
        _ => (false, false, s),
    };
    match rest.as_bytes().first() {
        Some(b'i' | b'I') => Some(
            (rest.eq_ignore_ascii_case("inf") || rest.eq_ignore_ascii_case("infinity")).then_some(
                if neg {
                    f64::NEG_INFINITY
                } else {
                    f64::INFINITY
                },
            ),
        ),
        Some(b'n' | b'N') => {
            Some((!signed && rest.eq_ignore_ascii_case("nan")).then_some(f64::NAN))
        }
        _ => None,
    }
}

/// Go's full `strconv.ParseFloat(s, 64)`, errors (including overflow) as `None`.
fn parse_go_float(s: &str) -> Option<f64> {
    if let Some(special) = parse_go_special(s) {
        return special;
    }
    if s.contains('_') {
        if !underscores_ok(s) {
            return None;
        }
        let stripped: String = s.chars().filter(|&c| c != '_').collect();
        return parse_go_number(&stripped);
    }
    parse_go_number(s)
}

fn parse_go_number(s: &str) -> Option<f64> {
    let b = s.as_bytes();
    let (neg, body) = match b.first() {
        Some(b'-') => (true, &b[1..]),
        Some(b'+') => (false, &b[1..]),
        _ => (false, b),
    };
    if body.len() > 2 && body[0] == b'0' && (body[1] | 0x20) == b'x' {
        return parse_go_hex(&body[2..]).map(|v| if neg { -v } else { v });
    }
    parse_go_decimal(s)
}

/// Go's `underscoreOK`: `_` only between digits, or between a base prefix and a digit.
fn underscores_ok(s: &str) -> bool {
    let mut b = s.as_bytes();
    if let Some(b'+' | b'-') = b.first() {
        b = &b[1..];
    }
    // What came before: b'^' start, b'0' digit or prefix, b'_' underscore, b'!' other.
    let mut saw = b'^';
    let mut i = 0;
    let mut hex = false;
    if b.len() >= 2 && b[0] == b'0' && matches!(b[1] | 0x20, b'b' | b'o' | b'x') {
        i = 2;
        saw = b'0';
        hex = (b[1] | 0x20) == b'x';
    }
    while i < b.len() {
        let c = b[i];
        if c.is_ascii_digit() || (hex && c.is_ascii_hexdigit()) {
            saw = b'0';
        } else if c == b'_' {
            if saw != b'0' {
                return false;
            }
            saw = b'_';
        } else {
            if saw == b'_' {
                return false;
            }
            saw = b'!';
        }
        i += 1;
    }
    saw != b'_'
}

/// A hex float after its `0x`: `mantissa p exponent`, the exponent being required.
/// Rounds to nearest, ties to even, like Go's `atofHex`.
fn parse_go_hex(b: &[u8]) -> Option<f64> {
    let mut mant: u64 = 0;
    let mut taken = 0; // significant hex digits held in `mant` (at most 16)
    let mut exp2: i64 = 0; // value = mant * 2^exp2 (before the written exponent)
    let mut sticky = false; // a dropped non-zero digit
    let mut any_digit = false;
    let mut seen_dot = false;
    let mut i = 0;
    while i < b.len() {
        let c = b[i];
        if c == b'.' {
            if seen_dot {
                return None;
            }
            seen_dot = true;
        } else if let Some(d) = (c as char).to_digit(16) {
            any_digit = true;
            if mant == 0 && d == 0 {
                if seen_dot {
                    exp2 -= 4;
                }
            } else if taken < 16 {
                mant = mant << 4 | u64::from(d);
                taken += 1;
                if seen_dot {
                    exp2 -= 4;
                }
            } else {
                sticky |= d != 0;
                if !seen_dot {
                    exp2 += 4;
                }
            }
        } else {
            break;
        }
        i += 1;
    }
    if !any_digit || i >= b.len() || (b[i] | 0x20) != b'p' {
        return None;
    }
    i += 1;
    let neg_exp = match b.get(i) {
        Some(b'-') => {
            i += 1;
            true
        }
        Some(b'+') => {
            i += 1;
            false
        }
        _ => false,
    };
    if i >= b.len() {
        return None;
    }
    let mut e: i64 = 0;
    for &c in &b[i..] {
        if !c.is_ascii_digit() {
            return None;
        }
        // Saturate: anything this large is far outside the f64 range either way.
        if e < 100_000 {
            e = e * 10 + i64::from(c - b'0');
        }
    }
    exp2 += if neg_exp { -e } else { e };
    binary_to_f64(mant, exp2, sticky)
}

/// `mant * 2^exp2` rounded to an f64 (ties to even, `sticky` meaning "a little more
/// than `mant`"); `None` on overflow.
fn binary_to_f64(mant: u64, exp2: i64, sticky: bool) -> Option<f64> {
    if mant == 0 {
        return Some(0.0);
    }
    let lz = i64::from(mant.leading_zeros());
    let mant = mant << lz;
    // Value = mant * 2^(e - 63) with mant in [2^63, 2^64): e is the leading bit's exponent.
    let e = exp2 - lz + 63;
    if e > 1023 {
        return None;
    }
    // Bits kept: 53 for normal numbers, fewer for subnormals.
    let keep = if e >= -1022 { 53 } else { 53 - (-1022 - e) };
    if keep < 0 {
        // Below half the smallest subnormal: rounds to zero.
        return Some(0.0);
    }
    let drop = (64 - keep) as u32; // 11..=64
    let wide = u128::from(mant);
    let mut q = (wide >> drop) as u64;
    let rem = wide & ((1u128 << drop) - 1);
    let half = 1u128 << (drop - 1);
    if rem > half || (rem == half && (sticky || q & 1 == 1)) {
        q += 1;
    }
    if e >= -1022 {
        let (q, e) = if q == 1 << 53 {
            (q >> 1, e + 1)
        } else {
            (q, e)
        };
        if e > 1023 {
            return None;
        }
        let bits = ((e + 1023) as u64) << 52 | (q & ((1 << 52) - 1));
        Some(f64::from_bits(bits))
    } else {
        // A subnormal is q * 2^-1074, which is exactly the bit pattern q (a carry into
        // bit 52 correctly yields the smallest normal number).
        Some(f64::from_bits(q))
    }
}

/// Rewrites an `le` or `quantile` label value the way Prometheus 3.x does
/// (`FormatOpenMetricsFloat` of Go's `ParseFloat`): `1` → `1.0`, `0` → `0.0`,
/// `+inf` → `+Inf`, `1e6` → `1e+06`, `0.00001` → `1e-05`.
///
/// Returns true, with the new spelling in `out`, when it differs from `value`; returns
/// false, with `out` empty, when `value` is not a float or is already normalised. `out`
/// is cleared first.
pub fn normalize_float_label(value: &str, out: &mut String) -> bool {
    out.clear();
    let formatted = match simple_decimal_digits(value) {
        // Typical bucket bounds ("0.005", "1", "2.5") never go through a float.
        Some((_, digits, _)) if digits.as_str().is_empty() => {
            out.push_str("0.0");
            Ok(())
        }
        Some((neg, digits, exp)) => layout_go_shortest(neg, digits.as_str(), exp, out),
        None => match parse_go_float(value) {
            Some(f) => format_openmetrics_float(f, out),
            None => Err(std::fmt::Error),
        },
    };
    if formatted.is_err() || out.as_str() == value {
        out.clear();
        return false;
    }
    true
}

/// For `[+-]?digits[.digits]` with at most 15 digits: the sign, the significant digits
/// (no leading or trailing zeros; empty for zero) and the decimal exponent of the first
/// one. These are exactly the digits Go's shortest formatting prints: no other decimal
/// of at most 15 significant digits rounds to the same f64 (such decimals lie at least
/// 1e-15 apart relatively, an f64 rounding interval spans at most 2.2e-16), so the
/// shortest round-trip digits are its own.
fn simple_decimal_digits(s: &str) -> Option<(bool, StackBuf, i32)> {
    const MAX_DIGITS: usize = 15;
    let (neg, body) = match s.as_bytes().first() {
        Some(b'-') => (true, &s[1..]),
        Some(b'+') => (false, &s[1..]),
        _ => (false, s),
    };
    let (int, frac) = body.split_once('.').unwrap_or((body, ""));
    let count = int.len() + frac.len();
    if count == 0
        || count > MAX_DIGITS
        || !int.bytes().chain(frac.bytes()).all(|c| c.is_ascii_digit())
    {
        return None;
    }
    let int_trimmed = int.trim_start_matches('0');
    let mut digits = StackBuf::default();
    let exp = if int_trimmed.is_empty() {
        let frac_trimmed = frac.trim_start_matches('0');
        digits.write_str(frac_trimmed).ok()?;
        -((frac.len() - frac_trimmed.len()) as i32) - 1
    } else {
        digits.write_str(int_trimmed).ok()?;
        digits.write_str(frac).ok()?;
        int_trimmed.len() as i32 - 1
    };
    while digits.len > 0 && digits.buf[digits.len - 1] == b'0' {
        digits.len -= 1;
    }
    Some((neg, digits, exp))
}

/// Go's `FormatOpenMetricsFloat`: `strconv.FormatFloat(f, 'g', -1, 64)` plus `.0` when
/// the result has neither `.` nor `e`, with `+Inf`, `-Inf` and `NaN` spelled out.
fn format_openmetrics_float(f: f64, out: &mut String) -> std::fmt::Result {
    if f.is_nan() {
        out.push_str("NaN");
        return Ok(());
    }
    if f.is_infinite() {
        out.push_str(if f > 0.0 { "+Inf" } else { "-Inf" });
        return Ok(());
    }
    if f == 0.0 {
        // Go's `f == 0` is true for -0 too.
        out.push_str("0.0");
        return Ok(());
    }
    // Rust's `{:e}` prints the shortest digits that round-trip, as Go's 'g' with
    // precision -1 does; only the layout differs. Example: "-1.2345e-7".
    let mut buf = StackBuf::default();
    write!(buf, "{f:e}")?;
    let s = buf.as_str();
    let (mantissa, exp) = s.split_once('e').ok_or(std::fmt::Error)?;
    let exp: i32 = exp.parse().map_err(|_| std::fmt::Error)?;
    let (neg, mantissa) = match mantissa.strip_prefix('-') {
        Some(m) => (true, m),
        None => (false, mantissa),
    };
    let mut digits = StackBuf::default();
    for c in mantissa.chars().filter(|&c| c != '.') {
        digits.write_char(c)?;
    }
    layout_go_shortest(neg, digits.as_str(), exp, out)
}

/// Lays out shortest significant digits `d1 d2 …` (value `d1.d2… × 10^exp`, no leading
/// or trailing zeros, at least one digit) the way Go's 'g' format with precision -1
/// does, then adds `.0` when there is neither `.` nor `e`.
fn layout_go_shortest(neg: bool, digits: &str, exp: i32, out: &mut String) -> std::fmt::Result {
    if digits.is_empty() {
        return Err(std::fmt::Error);
    }
    if neg {
        out.push('-');
    }
    // Go's 'g' with the shortest precision picks %e when exp < -4 || exp >= 6
    // (strconv/ftoa.go: "if precision was the shortest possible, use precision 6").
    if !(-4..6).contains(&exp) {
        out.push_str(&digits[..1]);
        if digits.len() > 1 {
            out.push('.');
            out.push_str(&digits[1..]);
        }
        out.push('e');
        out.push(if exp < 0 { '-' } else { '+' });
        return write!(out, "{:02}", exp.unsigned_abs());
    }
    if exp < 0 {
        out.push_str("0.");
        for _ in 0..(-exp - 1) {
            out.push('0');
        }
        out.push_str(digits);
        return Ok(());
    }
    let int_digits = exp as usize + 1;
    if digits.len() > int_digits {
        out.push_str(&digits[..int_digits]);
        out.push('.');
        out.push_str(&digits[int_digits..]);
    } else {
        out.push_str(digits);
        for _ in digits.len()..int_digits {
            out.push('0');
        }
        out.push_str(".0");
    }
    Ok(())
}

/// A fixed buffer for formatting one float without allocating (the longest `{:e}` of
/// an f64, "-2.2250738585072014e-308", is 24 bytes).
struct StackBuf {
    buf: [u8; 40],
    len: usize,
}

impl Default for StackBuf {
    fn default() -> Self {
        StackBuf {
            buf: [0; 40],
            len: 0,
        }
    }
}

impl StackBuf {
    fn as_str(&self) -> &str {
        std::str::from_utf8(&self.buf[..self.len]).unwrap_or("")
    }
}

impl std::fmt::Write for StackBuf {
    fn write_str(&mut self, s: &str) -> std::fmt::Result {
        let end = self.len + s.len();
        if end > self.buf.len() {
            return Err(std::fmt::Error);
        }
        self.buf[self.len..end].copy_from_slice(s.as_bytes());
        self.len = end;
        Ok(())
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    fn norm(s: &str) -> String {
        let mut out = String::from("garbage");
        if normalize_float_label(s, &mut out) {
            out
        } else {
            assert!(out.is_empty());
            s.to_owned()
        }
    }

    #[test]
    fn values_follow_go_parse_float() {
        let ok: &[(&str, f64)] = &[
            ("1", 1.0),
            ("-1.5", -1.5),
            ("+2", 2.0),
            (".5", 0.5),
            ("5.", 5.0),
            ("1e3", 1000.0),
            ("1E-3", 0.001),
            ("1.5e+2", 150.0),
            ("0.1", 0.1),
            ("123456789012345", 123456789012345.0),
            ("1234567890123456789", 1234567890123456789.0),
            ("0.30000000000000004", 0.30000000000000004),
            ("1e-400", 0.0),
            ("Inf", f64::INFINITY),
            ("+inf", f64::INFINITY),
            ("-Inf", f64::NEG_INFINITY),
            ("infinity", f64::INFINITY),
            ("-INFINITY", f64::NEG_INFINITY),
        ];
        for &(s, want) in ok {
            assert_eq!(parse_value(s), Some(want), "{s}");
        }
        assert!(parse_value("NaN").unwrap().is_nan());
        assert!(parse_value("nan").unwrap().is_nan());
        assert!(parse_value("-0").unwrap().is_sign_negative());
        let bad = [
            "", "-", "+", ".", "e5", "1e", "1e+", "1.2.3", "1_000", "0x1p3", "0x10", "1p3", "+nan",
            "-NaN", "nan1", "infin", "inf1", "1e400", "-1e400", "1,5", "1 ", " 1", "abc", "1.5f",
        ];
        for s in bad {
            assert_eq!(parse_value(s).map(f64::to_bits), None, "{s}");
        }
    }

    #[test]
    fn fast_path_agrees_with_std() {
        let mut x: u64 = 0x9E37_79B9_7F4A_7C15;
        for _ in 0..20_000 {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            let int = x % 1_000_000_000;
            let frac = (x >> 32) % 1_000_000;
            let s = format!("{int}.{frac:06}");
            assert_eq!(parse_simple_decimal(s.as_bytes()), s.parse().ok(), "{s}");
            let s = format!("-{}", x % 1_000_000_000_000_000);
            assert_eq!(parse_simple_decimal(s.as_bytes()), s.parse().ok(), "{s}");
        }
    }

    #[test]
    fn go_full_grammar() {
        assert_eq!(parse_go_float("0x1p-2"), Some(0.25));
        assert_eq!(parse_go_float("0X1P+2"), Some(4.0));
        assert_eq!(parse_go_float("0x.1p-2"), Some(0.015625));
        assert_eq!(parse_go_float("-0x1.8p1"), Some(-3.0));
        assert_eq!(parse_go_float("0x_1_2.3_4_5p+1_2"), Some(74565.0));
        assert_eq!(parse_go_float("0x1.fffffffffffffp1023"), Some(f64::MAX));
        assert_eq!(parse_go_float("0x1p-1074"), Some(f64::from_bits(1)));
        assert_eq!(parse_go_float("0x1p-1075"), Some(0.0)); // tie, rounds to even 0
        assert_eq!(parse_go_float("0x1.8p-1075"), Some(f64::from_bits(1)));
        assert_eq!(parse_go_float("0x1.00000000000008p0"), Some(1.0)); // tie to even
        assert_eq!(
            parse_go_float("0x1.000000000000081p0"),
            Some(1.0000000000000002)
        );
        assert_eq!(
            parse_go_float("0x1.00000000000018p0"),
            Some(1.0000000000000004)
        );
        assert_eq!(parse_go_float("0x1p1024"), None);
        for bad in ["0x1", "0x", "0x.p1", "0x1p", "0x1p+", "0x1.2.3p1", "0x1q1"] {
            assert_eq!(parse_go_float(bad), None, "{bad}");
        }
        assert_eq!(parse_go_float("1_23.50_0_0e+1_2"), Some(1.235e14));
        for bad in [
            "_1", "1__2", "1_", "123_.5", "123._5", "1e_1", "+_1", "0x__1p0",
        ] {
            assert_eq!(parse_go_float(bad), None, "{bad}");
        }
    }

    #[test]
    fn label_normalisation_matches_prometheus() {
        let cases = [
            ("1", "1.0"),
            ("1.0", "1.0"),
            ("0", "0.0"),
            ("-0", "0.0"),
            ("-1", "-1.0"),
            ("0.5", "0.5"),
            ("+Inf", "+Inf"),
            ("+inf", "+Inf"),
            ("Inf", "+Inf"),
            ("-inf", "-Inf"),
            ("nan", "NaN"),
            ("NaN", "NaN"),
            ("10", "10.0"),
            ("2.50", "2.5"),
            ("100000", "100000.0"),
            ("999999", "999999.0"),
            ("1000000", "1e+06"),
            ("1e6", "1e+06"),
            ("1234567", "1.234567e+06"),
            ("0.0001", "0.0001"),
            ("0.00001", "1e-05"),
            ("0.000123", "0.000123"),
            ("1.5e-7", "1.5e-07"),
            ("1e100", "1e+100"),
            ("5e-324", "5e-324"),
            ("1.7976931348623157e308", "1.7976931348623157e+308"),
            ("0.1", "0.1"),
            ("0.30000000000000004", "0.30000000000000004"),
            ("123456.7", "123456.7"),
            ("0x1p-2", "0.25"),
            ("1_0", "10.0"),
            // Not floats (or out of range): left alone.
            ("foo", "foo"),
            ("", ""),
            ("1e400", "1e400"),
            ("+nan", "+nan"),
            ("1,5", "1,5"),
        ];
        for (input, want) in cases {
            assert_eq!(norm(input), want, "{input}");
        }
        let mut out = String::new();
        assert!(!normalize_float_label("0.25", &mut out));
        assert!(normalize_float_label("0.250", &mut out));
        assert_eq!(out, "0.25");
    }

    #[test]
    fn label_fast_path_agrees_with_float_formatting() {
        let mut x: u64 = 0x1234_5678_9ABC_DEF1;
        let (mut fast, mut slow) = (String::new(), String::new());
        let mut checked = 0;
        for i in 0..50_000u32 {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            let digits = format!("{}", x % 10u64.pow(1 + i % 15));
            let cut = (x >> 40) as usize % (digits.len() + 1);
            let zeros = "0".repeat((x >> 50) as usize % 4);
            let sign = ["", "-", "+"][(x >> 60) as usize % 3];
            let s = format!("{sign}{zeros}{}.{}", &digits[..cut], &digits[cut..]);
            let s = if s.len() > 16 || (x >> 62) == 0 {
                digits.clone()
            } else {
                s
            };
            let Some((neg, d, exp)) = simple_decimal_digits(&s) else {
                continue;
            };
            fast.clear();
            slow.clear();
            if d.as_str().is_empty() {
                fast.push_str("0.0");
            } else {
                layout_go_shortest(neg, d.as_str(), exp, &mut fast).unwrap();
            }
            format_openmetrics_float(parse_go_float(&s).unwrap(), &mut slow).unwrap();
            assert_eq!(fast, slow, "{s}");
            checked += 1;
        }
        assert!(checked > 20_000, "{checked}");
    }

    #[test]
    fn format_matches_go_g_layout_for_many_magnitudes() {
        // Spot checks of Go's FormatFloat(f, 'g', -1, 64) around the layout switches.
        let cases = [
            (123456.0, "123456.0"),
            (1e5, "100000.0"),
            (1.5e5, "150000.0"),
            (999999.5, "999999.5"),
            (1e15, "1e+15"),
            (1e21, "1e+21"),
            (1.25e-4, "0.000125"),
            (9.99e-5, "9.99e-05"),
            (-2.5e-10, "-2.5e-10"),
            (f64::MIN_POSITIVE, "2.2250738585072014e-308"),
        ];
        for (f, want) in cases {
            let mut out = String::new();
            format_openmetrics_float(f, &mut out).unwrap();
            assert_eq!(out, want, "{f:e}");
        }
    }
}
