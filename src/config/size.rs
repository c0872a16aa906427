//! Byte sizes as Prometheus writes them (`units.Base2Bytes`, used by `body_size_limit`):
//! `"64MiB"`, `"100MB"`, `"512KB"`, `"1024B"`, `"1.5GiB"`, `"1GiB512MiB"`.
//!
//! Every multiplier is base 2: `KB` and `KiB` both mean 1024, as in Prometheus. Units are
//! case-sensitive (`kB`, `mb` are rejected rather than guessed). Unlike Prometheus, a bare
//! number is accepted as a count of bytes (`"1024"`), since a TOML user will expect it.

/// Why a size string was rejected.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SizeError {
    /// The string is empty.
    #[error("empty size string (write e.g. \"64MiB\")")]
    Empty,
    /// Not `<number><unit>` repeated, e.g. a sign or a space.
    #[error("not a valid size: {0:?} (expected e.g. \"64MiB\", \"100MB\", \"1024B\" or a number of bytes)")]
    Invalid(String),
    /// A unit that is not one of B, KB/KiB, MB/MiB, GB/GiB, TB/TiB, PB/PiB, EB/EiB.
    #[error("unknown unit {unit:?} in size {input:?} (units: B, KiB or KB, MiB or MB, GiB or GB, TiB or TB, PiB or PB, EiB or EB; all base 2)")]
    UnknownUnit { unit: String, input: String },
    /// Larger than 2^64 - 1 bytes.
    #[error("size {0:?} is out of range")]
    OutOfRange(String),
}

/// Base-2 units, largest first. The `iB` and `B` spellings are synonyms.
const UNITS: [(&str, &str, u32); 7] = [
    ("EiB", "EB", 60),
    ("PiB", "PB", 50),
    ("TiB", "TB", 40),
    ("GiB", "GB", 30),
    ("MiB", "MB", 20),
    ("KiB", "KB", 10),
    ("B", "B", 0),
];

fn unit_shift(unit: &str) -> Option<u32> {
    UNITS
        .iter()
        .find(|(long, short, _)| *long == unit || *short == unit)
        .map(|(_, _, shift)| *shift)
}

/// Parses a size such as `"64MiB"` into bytes. Fractions are allowed (`"1.5KiB"` = 1536)
/// and truncated to whole bytes; components add up (`"1GiB512MiB"`).
pub fn parse_size(s: &str) -> Result<u64, SizeError> {
    if s.is_empty() {
        return Err(SizeError::Empty);
    }
    let invalid = || SizeError::Invalid(s.to_owned());
    let out_of_range = || SizeError::OutOfRange(s.to_owned());
    if s.bytes().all(|b| b.is_ascii_digit()) {
        return s.parse().map_err(|_| out_of_range());
    }
    let bytes = s.as_bytes();
    let mut pos = 0;
    // u128 keeps `integer << 60` and the fraction arithmetic exact before the range check.
    let mut total: u128 = 0;
    while pos < bytes.len() {
        let int_start = pos;
        while pos < bytes.len() && bytes[pos].is_ascii_digit() {
            pos += 1;
        }
        let int_digits = &s[int_start..pos];
        let mut frac_digits = "";
        if pos < bytes.len() && bytes[pos] == b'.' {
            pos += 1;
            let frac_start = pos;
            while pos < bytes.len() && bytes[pos].is_ascii_digit() {
                pos += 1;
            }
            frac_digits = &s[frac_start..pos];
        }
        if int_digits.is_empty() && frac_digits.is_empty() {
            return Err(invalid());
        }
        let unit_start = pos;
        while pos < bytes.len() && !bytes[pos].is_ascii_digit() && bytes[pos] != b'.' {
            pos += 1;
        }
        let unit = &s[unit_start..pos];
        if unit.is_empty() || !unit.bytes().all(|b| b.is_ascii_alphabetic()) {
            return Err(invalid());
        }
        let shift = unit_shift(unit).ok_or_else(|| SizeError::UnknownUnit {
            unit: unit.to_owned(),
            input: s.to_owned(),
        })?;
        let int: u128 = if int_digits.is_empty() {
            0
        } else {
            int_digits.parse().map_err(|_| out_of_range())?
        };
        // Digits past the 19th cannot change a u64 result; dropping them keeps 10^k in range.
        let frac_digits = &frac_digits[..frac_digits.len().min(19)];
        let frac: u128 = if frac_digits.is_empty() {
            0
        } else {
            frac_digits.parse().map_err(|_| invalid())?
        };
        let scale = 10u128.pow(frac_digits.len() as u32);
        let component = int
            .checked_mul(1u128 << shift)
            .ok_or_else(out_of_range)?
            .checked_add((frac << shift) / scale)
            .ok_or_else(out_of_range)?;
        total = total.checked_add(component).ok_or_else(out_of_range)?;
        if total > u128::from(u64::MAX) {
            return Err(out_of_range());
        }
    }
    u64::try_from(total).map_err(|_| out_of_range())
}

/// Formats bytes in the style of Prometheus's `Base2Bytes.String()`: one component per
/// non-zero base-2 digit group, largest first, e.g. 1536 → `"1KiB512B"`, 0 → `"0B"`.
pub fn format_size(bytes: u64) -> String {
    if bytes == 0 {
        return "0B".to_owned();
    }
    let mut out = String::new();
    for (long, _, shift) in UNITS {
        let n = (bytes >> shift) & 1023;
        // The top unit holds everything above it (EiB values up to 15).
        let n = if shift == 60 { bytes >> shift } else { n };
        if n > 0 {
            out.push_str(&n.to_string());
            out.push_str(long);
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_units_base_two() {
        assert_eq!(parse_size("64MiB"), Ok(64 << 20));
        assert_eq!(parse_size("100MB"), Ok(100 << 20));
        assert_eq!(parse_size("1GB"), Ok(1 << 30));
        assert_eq!(parse_size("512KB"), Ok(512 << 10));
        assert_eq!(parse_size("512KiB"), Ok(512 << 10));
        assert_eq!(parse_size("1024B"), Ok(1024));
        assert_eq!(parse_size("2TiB"), Ok(2 << 40));
        assert_eq!(parse_size("1PB"), Ok(1 << 50));
        assert_eq!(parse_size("1EiB"), Ok(1 << 60));
    }

    #[test]
    fn parses_bare_numbers_fractions_and_sums() {
        assert_eq!(parse_size("1024"), Ok(1024));
        assert_eq!(parse_size("0"), Ok(0));
        assert_eq!(parse_size("1.5KiB"), Ok(1536));
        assert_eq!(parse_size(".5MiB"), Ok(512 << 10));
        assert_eq!(parse_size("1GiB512MiB"), Ok((1 << 30) + (512 << 20)));
        assert_eq!(
            parse_size("1.0000001B"),
            Ok(1),
            "fractions of a byte truncate"
        );
    }

    #[test]
    fn rejects_bad_sizes() {
        assert_eq!(parse_size(""), Err(SizeError::Empty));
        for bad in ["MiB", "-1MiB", "1 MiB", "1.MiB.", ".MiB", "1..5MiB", "ten"] {
            assert!(parse_size(bad).is_err(), "{bad:?} should be rejected");
        }
        assert_eq!(
            parse_size("10kB"),
            Err(SizeError::UnknownUnit {
                unit: "kB".into(),
                input: "10kB".into()
            })
        );
        assert!(matches!(
            parse_size("1mb"),
            Err(SizeError::UnknownUnit { .. })
        ));
    }

    #[test]
    fn rejects_out_of_range() {
        assert_eq!(
            parse_size("16EiB"),
            Err(SizeError::OutOfRange("16EiB".into()))
        );
        assert_eq!(parse_size("15EiB"), Ok(15 << 60));
        assert!(matches!(
            parse_size("99999999999999999999999"),
            Err(SizeError::OutOfRange(_))
        ));
    }

    #[test]
    fn formats_base_two() {
        assert_eq!(format_size(0), "0B");
        assert_eq!(format_size(1536), "1KiB512B");
        assert_eq!(format_size(64 << 20), "64MiB");
        assert_eq!(format_size(1 << 30), "1GiB");
        assert_eq!(
            format_size(u64::MAX),
            "15EiB1023PiB1023TiB1023GiB1023MiB1023KiB1023B"
        );
        for n in [1, 1023, 1024, 12345678, 1 << 40] {
            assert_eq!(parse_size(&format_size(n)), Ok(n));
        }
    }
}
