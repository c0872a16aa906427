//! Prometheus duration strings (`model.Duration` in prometheus/common): parsing and the
//! canonical form Prometheus prints.
//!
//! Grammar: `"0"`, or one or more `<digits><unit>` with units `y` (365d), `w` (7d), `d`,
//! `h`, `m`, `s`, `ms`, each at most once and from the largest to the smallest, e.g.
//! `"1h30m"`, `"100ms"`, `"1d"`. No signs, fractions or spaces. The resolution is one
//! millisecond, and the total must fit in an i64 of nanoseconds (about 292 years), as in
//! Prometheus, so every parsed value converts to Go-compatible nanoseconds losslessly.

use std::time::Duration;

/// Why a duration string was rejected.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DurationError {
    /// The string is empty.
    #[error("empty duration string (write e.g. \"30s\")")]
    Empty,
    /// Not `<digits><unit>` repeated, e.g. a sign, a fraction, a space or a missing unit.
    #[error(
        "not a valid duration string: {0:?} (expected e.g. \"30s\", \"1m30s\", \"100ms\", \"1d\")"
    )]
    Invalid(String),
    /// A unit that Prometheus does not know (`ns`, `us`, `M`, ...).
    #[error("unknown unit {unit:?} in duration {input:?} (units: y, w, d, h, m, s, ms)")]
    UnknownUnit { unit: String, input: String },
    /// A unit repeated or out of order, e.g. `"30s1m"` or `"1m1m"`.
    #[error("units out of order in duration {0:?}: write each unit once, largest first (e.g. \"1h30m\")")]
    UnitOrder(String),
    /// More than about 292 years.
    #[error("duration {0:?} is out of range (at most about 292 years)")]
    OutOfRange(String),
}

const MS_PER_SECOND: u64 = 1000;
const MS_PER_MINUTE: u64 = 60 * MS_PER_SECOND;
const MS_PER_HOUR: u64 = 60 * MS_PER_MINUTE;
const MS_PER_DAY: u64 = 24 * MS_PER_HOUR;
const MS_PER_WEEK: u64 = 7 * MS_PER_DAY;
const MS_PER_YEAR: u64 = 365 * MS_PER_DAY;

/// Units from the largest to the smallest; the index gives the required order.
const UNITS: [(&str, u64); 7] = [
    ("y", MS_PER_YEAR),
    ("w", MS_PER_WEEK),
    ("d", MS_PER_DAY),
    ("h", MS_PER_HOUR),
    ("m", MS_PER_MINUTE),
    ("s", MS_PER_SECOND),
    ("ms", 1),
];

/// The largest duration Go's `time.Duration` (i64 nanoseconds) can hold, in whole ms.
const MAX_MS: u64 = (i64::MAX as u64) / 1_000_000;

/// Parses a Prometheus duration string such as `"1m30s"`; `"0"` alone means zero.
pub fn parse_duration(s: &str) -> Result<Duration, DurationError> {
    match s {
        "" => return Err(DurationError::Empty),
        "0" => return Ok(Duration::ZERO),
        _ => {}
    }
    let invalid = || DurationError::Invalid(s.to_owned());
    let bytes = s.as_bytes();
    let mut pos = 0;
    let mut total_ms: u64 = 0;
    // Index into UNITS of the last unit seen; the next one must come strictly after it.
    let mut next_unit = 0;
    while pos < bytes.len() {
        let digits_start = pos;
        while pos < bytes.len() && bytes[pos].is_ascii_digit() {
            pos += 1;
        }
        if pos == digits_start {
            return Err(invalid());
        }
        let unit_start = pos;
        while pos < bytes.len() && !bytes[pos].is_ascii_digit() {
            pos += 1;
        }
        if pos == unit_start {
            return Err(invalid());
        }
        // Both runs are ASCII digits or end at one, so these are char boundaries.
        let (digits, unit) = (&s[digits_start..unit_start], &s[unit_start..pos]);
        let Some(index) = UNITS.iter().position(|(name, _)| *name == unit) else {
            if !unit.bytes().all(|b| b.is_ascii_alphabetic()) {
                return Err(invalid());
            }
            return Err(DurationError::UnknownUnit {
                unit: unit.to_owned(),
                input: s.to_owned(),
            });
        };
        if index < next_unit {
            return Err(DurationError::UnitOrder(s.to_owned()));
        }
        next_unit = index + 1;
        let out_of_range = || DurationError::OutOfRange(s.to_owned());
        let value: u64 = digits.parse().map_err(|_| out_of_range())?;
        total_ms = value
            .checked_mul(UNITS[index].1)
            .and_then(|ms| total_ms.checked_add(ms))
            .filter(|ms| *ms <= MAX_MS)
            .ok_or_else(out_of_range)?;
    }
    Ok(Duration::from_millis(total_ms))
}

/// Formats a duration as Prometheus's `model.Duration.String()` does: whole milliseconds,
/// largest units first, zero components left out, `"0s"` for anything under 1ms.
/// E.g. 90s → `"1m30s"`, 1.5s → `"1s500ms"`, 7d → `"1w"`.
pub fn format_duration(d: Duration) -> String {
    let mut ms = u64::try_from(d.as_millis()).unwrap_or(u64::MAX);
    if ms == 0 {
        return "0s".to_owned();
    }
    let mut out = String::new();
    for (unit, unit_ms) in UNITS {
        let n = ms / unit_ms;
        if n > 0 {
            out.push_str(&n.to_string());
            out.push_str(unit);
            ms -= n * unit_ms;
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ms(n: u64) -> Duration {
        Duration::from_millis(n)
    }

    #[test]
    fn parses_single_units() {
        assert_eq!(parse_duration("100ms"), Ok(ms(100)));
        assert_eq!(parse_duration("15s"), Ok(ms(15_000)));
        assert_eq!(parse_duration("5m"), Ok(ms(300_000)));
        assert_eq!(parse_duration("2h"), Ok(ms(7_200_000)));
        assert_eq!(parse_duration("1d"), Ok(ms(MS_PER_DAY)));
        assert_eq!(parse_duration("1w"), Ok(ms(7 * MS_PER_DAY)));
        assert_eq!(parse_duration("1y"), Ok(ms(365 * MS_PER_DAY)));
    }

    #[test]
    fn parses_compound_and_zero() {
        assert_eq!(parse_duration("1m30s"), Ok(ms(90_000)));
        assert_eq!(parse_duration("1h30m15s250ms"), Ok(ms(5_415_250)));
        assert_eq!(
            parse_duration("1y2w3d"),
            Ok(ms((365 + 14 + 3) * MS_PER_DAY))
        );
        assert_eq!(parse_duration("0"), Ok(Duration::ZERO));
        assert_eq!(parse_duration("0s"), Ok(Duration::ZERO));
        assert_eq!(
            parse_duration("90s"),
            Ok(ms(90_000)),
            "overflowing a unit is fine"
        );
    }

    #[test]
    fn rejects_malformed() {
        assert_eq!(parse_duration(""), Err(DurationError::Empty));
        for bad in [
            "1", "s", "1.5s", "-1s", "+1s", " 1s", "1s ", "1 s", "1m 30s", "1S",
        ] {
            assert!(parse_duration(bad).is_err(), "{bad:?} should be rejected");
        }
        assert_eq!(
            parse_duration("10ns"),
            Err(DurationError::UnknownUnit {
                unit: "ns".into(),
                input: "10ns".into()
            })
        );
        assert_eq!(
            parse_duration("1x"),
            Err(DurationError::UnknownUnit {
                unit: "x".into(),
                input: "1x".into()
            })
        );
        assert!(matches!(
            parse_duration("1µs"),
            Err(DurationError::Invalid(_))
        ));
    }

    #[test]
    fn rejects_units_out_of_order_or_repeated() {
        assert_eq!(
            parse_duration("30s1m"),
            Err(DurationError::UnitOrder("30s1m".into()))
        );
        assert_eq!(
            parse_duration("1m1m"),
            Err(DurationError::UnitOrder("1m1m".into()))
        );
        assert_eq!(
            parse_duration("1ms1s"),
            Err(DurationError::UnitOrder("1ms1s".into()))
        );
    }

    #[test]
    fn rejects_out_of_range() {
        assert!(parse_duration("292y").is_ok());
        assert_eq!(
            parse_duration("293y"),
            Err(DurationError::OutOfRange("293y".into()))
        );
        let huge = "99999999999999999999999s";
        assert_eq!(
            parse_duration(huge),
            Err(DurationError::OutOfRange(huge.into()))
        );
    }

    #[test]
    fn formats_like_prometheus() {
        assert_eq!(format_duration(Duration::ZERO), "0s");
        assert_eq!(format_duration(Duration::from_micros(999)), "0s");
        assert_eq!(format_duration(ms(90_000)), "1m30s");
        assert_eq!(format_duration(ms(60_000)), "1m");
        assert_eq!(format_duration(ms(1_500)), "1s500ms");
        assert_eq!(format_duration(ms(MS_PER_DAY)), "1d");
        assert_eq!(format_duration(ms(MS_PER_WEEK)), "1w");
        assert_eq!(format_duration(ms(MS_PER_YEAR + MS_PER_DAY + 1)), "1y1d1ms");
        assert_eq!(format_duration(ms(10_000)), "10s");
        assert_eq!(format_duration(ms(3_600_000)), "1h");
    }

    #[test]
    fn format_then_parse_round_trips() {
        for n in [
            1,
            999,
            1000,
            61_001,
            MS_PER_HOUR + 1,
            8 * MS_PER_DAY,
            400 * MS_PER_DAY + 7,
        ] {
            assert_eq!(parse_duration(&format_duration(ms(n))), Ok(ms(n)));
        }
    }
}
