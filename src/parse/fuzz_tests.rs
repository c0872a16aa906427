//! Bounded, deterministic fuzzing: random bytes and random mutations of the corpus must
//! never panic, loop or return positions outside the body, in either format.

use super::corpus_tests::corpus_files;
use super::{normalize_float_label, Entry, Format, Parser};

/// xorshift64*: deterministic and dependency-free.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }

    fn below(&mut self, n: usize) -> usize {
        (self.next() % n.max(1) as u64) as usize
    }
}

/// Bytes that steer the parsers into their interesting states.
const ALPHABET: &[u8] = b"{}\"=,\\ \t\n#abcle_:01.eE+-pxINnaf\xc3\xa9\xff\x00\r";
const TOKENS: &[&str] = &[
    "# HELP ", "# TYPE ", "# UNIT ", "# EOF", "# {", "counter", "NaN", "+Inf", "1e308", "\"", "\\",
    "{\"a.b\"", "le=\"", "1.5", " 123", "_total", "\n",
];

/// Parses the whole body, checking the invariants that hold for any input. Returns the
/// number of entries parsed.
fn exercise(body: &[u8], format: Format) -> usize {
    let mut parser = match Parser::new(body, format) {
        Ok(p) => p,
        Err(e) => {
            assert!(e.line >= 1 && e.column >= 1);
            return 0;
        }
    };
    let text = std::str::from_utf8(body).unwrap_or_default();
    let mut entries = 0;
    loop {
        match parser.next() {
            Ok(Some(entry)) => {
                entries += 1;
                // Every entry consumes at least one byte, so this bounds the loop.
                assert!(entries <= body.len(), "parser does not advance");
                assert!(parser.line() >= 1);
                if let Entry::Sample(s) = entry {
                    assert!(text.contains(s.series));
                    let mut out = String::new();
                    for l in parser.labels() {
                        l.name.unescape_into(&mut out);
                        l.value.unescape_into(&mut out);
                        normalize_float_label(l.value.raw, &mut out);
                    }
                }
            }
            Ok(None) => return entries,
            Err(e) => {
                assert!(e.line >= 1 && e.line <= 1 + body.iter().filter(|&&b| b == b'\n').count());
                assert!(e.column >= 1 && e.column <= body.len() + 1);
                assert_eq!(parser.next().err(), Some(e));
                return entries;
            }
        }
    }
}

#[test]
fn random_bytes_never_panic() {
    let mut rng = Rng(0x5EED_1234_ABCD_0001);
    for _ in 0..20_000 {
        let len = rng.below(120);
        let mut body = Vec::with_capacity(len);
        while body.len() < len {
            match rng.below(4) {
                0 => body.push(rng.next() as u8),
                1 => body.extend_from_slice(TOKENS[rng.below(TOKENS.len())].as_bytes()),
                _ => body.push(ALPHABET[rng.below(ALPHABET.len())]),
            }
        }
        exercise(&body, Format::PromText);
        exercise(&body, Format::OpenMetrics);
    }
}

#[test]
fn mutated_corpus_never_panics() {
    let mut rng = Rng(0xC0FF_EE00_0000_0042);
    let seeds: Vec<Vec<u8>> = corpus_files()
        .iter()
        .filter_map(|(path, _)| std::fs::read(path).ok())
        .filter(|b| !b.is_empty())
        .collect();
    assert!(!seeds.is_empty());
    // Mutants must still parse partly, or the test only exercises the first line.
    let mut entries = 0;
    for _ in 0..10_000 {
        let mut body = seeds[rng.below(seeds.len())].clone();
        for _ in 0..1 + rng.below(4) {
            let at = rng.below(body.len() + 1);
            match rng.below(5) {
                0 if at < body.len() => body[at] = ALPHABET[rng.below(ALPHABET.len())],
                1 => body.insert(at, ALPHABET[rng.below(ALPHABET.len())]),
                2 => {
                    let end = (at + rng.below(8)).min(body.len());
                    body.drain(at..end);
                }
                3 => {
                    let t = TOKENS[rng.below(TOKENS.len())].as_bytes();
                    body.splice(at..at, t.iter().copied());
                }
                _ => body.truncate(at),
            }
        }
        entries += exercise(&body, Format::PromText);
        entries += exercise(&body, Format::OpenMetrics);
    }
    assert!(entries > 15_000, "{entries}");
}

#[test]
fn label_normalisation_never_panics() {
    let mut rng = Rng(0xF10A_7000_0000_0003);
    let alphabet = b"0123456789.eEpPxX+-_infaINFAtyNn";
    let mut out = String::new();
    for _ in 0..20_000 {
        let len = rng.below(24);
        let s: String = (0..len)
            .map(|_| alphabet[rng.below(alphabet.len())] as char)
            .collect();
        if normalize_float_label(&s, &mut out) {
            // A normalised spelling is a fixed point.
            let again = out.clone();
            assert!(!normalize_float_label(&again, &mut out), "{s} -> {again}");
        }
    }
}
