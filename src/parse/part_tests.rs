//! A body parsed in parts ([`Parser::new_part`]) gives the entries, entry lines and error
//! of the whole body, wherever it is cut. Every corpus file is cut at every line boundary,
//! into single lines, into single bytes and into pseudo-random chunks; each way goes
//! through the carry loop the worker uses (parts cut after their last line break, the
//! unconsumed rest prefixed to the next part).

#![allow(clippy::unwrap_used)]

use std::fmt::Write as _;

use super::corpus_tests::{corpus_files, render, render_entry};
use super::{Format, ParseError, ParseErrorKind, Parser};

/// The carry loop at the parser level: renders the entries of a body read as `chunks`,
/// in the form of [`render`]. `retry` applies the worker's doubling rule for cut
/// entries (without it, a cut entry is tried again with every new line).
fn render_parts<'c>(
    chunks: impl IntoIterator<Item = &'c [u8]>,
    format: Format,
    retry: bool,
) -> String {
    struct State {
        out: String,
        line: usize,
        eof: bool,
    }
    /// Parses one part; the bytes consumed, or `None` after an error.
    fn part(st: &mut State, part: &[u8], format: Format, last: bool) -> Option<usize> {
        if st.eof {
            if part.is_empty() {
                return Some(0);
            }
            let e = ParseError {
                line: st.line,
                column: 1,
                kind: ParseErrorKind::DataAfterEof,
            };
            let _ = writeln!(st.out, "error {e}");
            return None;
        }
        let mut p = match Parser::new_part(part, format, st.line, last) {
            Ok(p) => p,
            Err(e) => {
                let _ = writeln!(st.out, "error {e}");
                return None;
            }
        };
        loop {
            match p.next() {
                Ok(Some(entry)) => render_entry(&p, entry, &mut st.out),
                Ok(None) => {
                    st.line = p.next_line();
                    st.eof = p.saw_eof();
                    let n = p.consumed();
                    assert!(last || n == part.len() || n == 0 || part[n - 1] == b'\n');
                    assert!(!last || n == part.len(), "the last part is parsed whole");
                    return Some(n);
                }
                Err(e) => {
                    let _ = writeln!(st.out, "error {e}");
                    return None;
                }
            }
        }
    }
    let mut st = State {
        out: String::new(),
        line: 1,
        eof: false,
    };
    let mut pending: Vec<u8> = Vec::new();
    let mut retry_at = 0;
    for chunk in chunks {
        pending.extend_from_slice(chunk);
        let Some(nl) = memchr::memrchr(b'\n', &pending) else {
            continue;
        };
        let cut = nl + 1;
        if retry && cut < retry_at {
            continue;
        }
        let Some(n) = part(&mut st, &pending[..cut], format, false) else {
            return st.out;
        };
        pending.drain(..n);
        retry_at = if n < cut { 2 * (cut - n) } else { 0 };
    }
    part(&mut st, &pending, format, true);
    st.out
}

/// Asserts that `chunks` render as the whole body does. Invalid UTF-8 is found only when
/// its part arrives, so then only the error must match.
fn check<'c>(
    what: &str,
    body: &[u8],
    chunks: impl IntoIterator<Item = &'c [u8]> + Clone,
    format: Format,
) {
    let want = render(body, format);
    for retry in [false, true] {
        let got = render_parts(chunks.clone(), format, retry);
        if want.starts_with("error") && want.contains("invalid UTF-8") {
            assert!(
                got.ends_with(&want),
                "{what}:\n{got}\nshould end with\n{want}"
            );
        } else {
            assert_eq!(got, want, "{what} (retry rule {retry})");
        }
    }
}

/// Deterministic chunk lengths in `1..=max` (xorshift).
pub(super) fn chunk_lengths(seed: u64, max: usize) -> impl Iterator<Item = usize> {
    let mut x = seed | 1;
    std::iter::repeat_with(move || {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        1 + (x % max as u64) as usize
    })
}

/// `body` cut into chunks of pseudo-random lengths.
pub(super) fn random_chunks(body: &[u8], seed: u64, max: usize) -> Vec<&[u8]> {
    let mut out = Vec::new();
    let mut rest = body;
    for len in chunk_lengths(seed, max) {
        if rest.is_empty() {
            break;
        }
        let (a, b) = rest.split_at(len.min(rest.len()));
        out.push(a);
        rest = b;
    }
    out
}

/// Every way this module cuts a body, named.
fn all_cuts(body: &[u8], format: Format, name: &str) {
    let lines: Vec<&[u8]> = body.split_inclusive(|&c| c == b'\n').collect();
    check(
        &format!("{name} by lines"),
        body,
        lines.iter().copied(),
        format,
    );
    check(&format!("{name} by bytes"), body, body.chunks(1), format);
    let mut at = 0;
    for line in &lines {
        at += line.len();
        let (a, b) = body.split_at(at);
        check(&format!("{name} cut at {at}"), body, [a, b], format);
    }
    for seed in 1..=8 {
        let chunks = random_chunks(body, seed, 24);
        check(&format!("{name} seed {seed}"), body, chunks, format);
    }
}

#[test]
fn corpus_files_parse_the_same_in_parts() {
    let files = corpus_files();
    assert!(files.len() >= 30, "corpus has only {} files", files.len());
    for (path, format) in files {
        let body = std::fs::read(&path).expect("corpus file reads");
        all_cuts(&body, format, &path.display().to_string());
    }
}

#[test]
fn hand_written_bodies_parse_the_same_in_parts() {
    let text: &[&[u8]] = &[
        b"a 1\nm{x=\"one\ntwo\n\nfour\",y=\"z\"} 2\nb 3\n",
        b"{\"quoted\nname\",l=\"v\"} 4\n# HELP \"multi\nline\" text\n# TYPE \"t\ny\" gauge\nc 5",
        b"m{x=\"a\nb\"} 1\nn{y=\"c\nd\"} 2 junk\nnever 3\n",
        b"a 1\nm{x=\"never\nclosed\n\n",
        b"a 1\nm{x=\"a\\\nb\"} 1\n",
        b"ok 1\nm{a=\"1\",a=\"2\"} 2\nnever 3\n",
        b"a 1\nb{x=\"\xff\"} 2\n",
        b"\n\n  a 1\n\t\n b{x=\"1\"} 2 123\n\n",
        b"# HELP \"unterminated\nname\n",
        b"m{a=\"x\\",
        b"",
    ];
    for body in text {
        all_cuts(
            body,
            Format::PromText,
            &format!("{:?}", String::from_utf8_lossy(body)),
        );
    }
    let om: &[&[u8]] = &[
        b"# TYPE h histogram\nh_bucket{le=\"1\"} 1\n# EOF\n",
        b"# TYPE h histogram\nh_bucket{le=\"1\"} 1\n",
        b"a 1\n# EOF\nb 2\n",
        b"a 1\n# EOF\n\n",
        b"# EOF\n# EOF\n",
        b"a 1\n# EOF",
        b"a 1\n# EOF ",
        b"# HELP \"a\nb\" text\na 1\n# EOF\n",
        b"{\"a\nb\",c=\"d\"} 1\n# EOF\n",
        b"a{x=\"1\n\"} 1\n# EOF\n",
        b"a 1\nb 2",
        b"# HELP a x",
        b"",
    ];
    for body in om {
        all_cuts(
            body,
            Format::OpenMetrics,
            &format!("{:?}", String::from_utf8_lossy(body)),
        );
    }
}

#[test]
fn a_part_reports_where_it_stopped() {
    // Cut inside a quoted label value: the entry is left for the next part.
    let part = b"a 1\n\nm{x=\"one\n";
    let mut p = Parser::new_part(part, Format::PromText, 10, false).expect("valid UTF-8 part");
    assert!(p.next().expect("entry parses").is_some());
    assert_eq!(p.line(), 10);
    assert_eq!(p.next().expect("entry parses"), None);
    assert_eq!((p.consumed(), p.next_line()), (5, 12));
    // The same bytes as the last part: an error, at the body's line.
    let mut p = Parser::new_part(part, Format::PromText, 10, true).expect("valid UTF-8 part");
    assert!(p.next().expect("entry parses").is_some());
    let e = p.next().unwrap_err();
    assert_eq!(
        (e.line, e.column, e.kind),
        (12, 5, ParseErrorKind::UnterminatedString)
    );
    // OpenMetrics: the end of a middle part is not the end of the body.
    let mut p =
        Parser::new_part(b"a 1\n", Format::OpenMetrics, 3, false).expect("valid UTF-8 part");
    assert!(p.next().expect("entry parses").is_some());
    assert_eq!(p.next().expect("entry parses"), None);
    assert_eq!((p.consumed(), p.next_line(), p.saw_eof()), (4, 4, false));
    let mut p =
        Parser::new_part(b"# EOF\n", Format::OpenMetrics, 3, false).expect("valid UTF-8 part");
    assert_eq!(p.next().expect("entry parses"), None);
    assert_eq!((p.consumed(), p.next_line(), p.saw_eof()), (6, 4, true));
    let mut p = Parser::new_part(b"", Format::OpenMetrics, 4, true).expect("valid UTF-8 part");
    let e = p.next().unwrap_err();
    assert_eq!(
        (e.line, e.column, e.kind),
        (4, 1, ParseErrorKind::MissingEof)
    );
    // Invalid UTF-8 is reported at the body's line.
    let e = Parser::new_part(b"a 1\nb\xff 1\n", Format::PromText, 7, false)
        .err()
        .expect("invalid UTF-8 is refused");
    assert_eq!(
        (e.line, e.column, e.kind),
        (8, 2, ParseErrorKind::InvalidUtf8)
    );
}
