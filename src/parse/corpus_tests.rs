//! The data-driven corpus: every `*.prom` (text format) and `*.om` (OpenMetrics) file in
//! `tests/data/exposition/` is parsed and compared with `<file name>.expected` (e.g.
//! `histogram.prom.expected`).
//!
//! Expected-file form, one entry per line, each prefixed with the entry's line number;
//! strings are unescaped and then written in Rust debug form:
//!
//! ```text
//! 3 sample "name"{"label"="value",...} <value as {:?}>[ @<timestamp ms>]
//! 1 help "name" "text"
//! 2 type "name" counter
//! 4 unit "name" "seconds"
//! 5 comment
//! error line 7 column 12: <message>
//! ```
//!
//! Run with `SCRAPEWHEEL_BLESS=1` to rewrite the expected files from the current
//! behaviour (then review the diff: it is the spec).

use std::fmt::Write as _;
use std::path::{Path, PathBuf};

use super::{Entry, Format, Parser};

/// Renders a whole body in the expected-file form.
pub(super) fn render(body: &[u8], format: Format) -> String {
    let mut out = String::new();
    let mut parser = match Parser::new(body, format) {
        Ok(p) => p,
        Err(e) => {
            let _ = writeln!(out, "error {e}");
            return out;
        }
    };
    loop {
        let entry = match parser.next() {
            Ok(Some(entry)) => entry,
            Ok(None) => return out,
            Err(e) => {
                let _ = writeln!(out, "error {e}");
                return out;
            }
        };
        render_entry(&parser, entry, &mut out);
    }
}

/// Appends one entry, just returned by `parser`, in the expected-file form.
pub(super) fn render_entry(parser: &Parser<'_>, entry: Entry<'_>, out: &mut String) {
    let _ = write!(out, "{} ", parser.line());
    let _ = match entry {
        Entry::Sample(s) => {
            let labels: Vec<String> = parser
                .labels()
                .iter()
                .map(|l| format!("{:?}={:?}", l.name.to_cow(), l.value.to_cow()))
                .collect();
            let ts = s.timestamp.map(|t| format!(" @{t}")).unwrap_or_default();
            writeln!(
                out,
                "sample {:?}{{{}}} {:?}{ts}",
                s.name.to_cow(),
                labels.join(","),
                s.value
            )
        }
        Entry::Help { name, text } => writeln!(out, "help {name:?} {:?}", text.to_cow()),
        Entry::Type { name, kind } => writeln!(out, "type {name:?} {kind}"),
        Entry::Unit { name, unit } => writeln!(out, "unit {name:?} {unit:?}"),
        Entry::Comment => writeln!(out, "comment"),
    };
}

pub(super) fn corpus_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/data/exposition")
}

/// Every corpus input with its format, sorted by name.
pub(super) fn corpus_files() -> Vec<(PathBuf, Format)> {
    let mut files: Vec<(PathBuf, Format)> = std::fs::read_dir(corpus_dir())
        .unwrap_or_else(|e| panic!("reading {}: {e}", corpus_dir().display()))
        .filter_map(|entry| {
            let path = entry.ok()?.path();
            let format = match path.extension()?.to_str()? {
                "prom" => Format::PromText,
                "om" => Format::OpenMetrics,
                _ => return None,
            };
            Some((path, format))
        })
        .collect();
    files.sort_by(|a, b| a.0.cmp(&b.0));
    files
}

#[test]
fn corpus_matches_expected_output() {
    let bless = std::env::var_os("SCRAPEWHEEL_BLESS").is_some();
    let files = corpus_files();
    assert!(files.len() >= 30, "corpus has only {} files", files.len());
    let mut failures = Vec::new();
    for (path, format) in &files {
        let body = std::fs::read(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
        let got = render(&body, *format);
        let mut expected_path = path.clone().into_os_string();
        expected_path.push(".expected");
        let expected_path = PathBuf::from(expected_path);
        if bless {
            std::fs::write(&expected_path, &got)
                .unwrap_or_else(|e| panic!("{}: {e}", expected_path.display()));
            continue;
        }
        match std::fs::read_to_string(&expected_path) {
            Ok(want) if want == got => {}
            Ok(want) => failures.push(format!(
                "{}:\n--- expected\n{want}--- got\n{got}",
                path.display()
            )),
            Err(e) => failures.push(format!("{}: {e}", expected_path.display())),
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

use super::generator;

#[test]
fn generated_benchmark_body_parses_in_both_formats() {
    let body = generator::realistic_exposition(200_000);
    assert!(body.len() >= 200_000);
    assert_eq!(
        body,
        generator::realistic_exposition(200_000),
        "not deterministic"
    );
    let text = render(body.as_bytes(), Format::PromText);
    assert!(
        !text.contains("error"),
        "{}",
        &text[text.len().saturating_sub(300)..]
    );
    let om = render(format!("{body}# EOF\n").as_bytes(), Format::OpenMetrics);
    assert_eq!(text, om);
    let samples = text.lines().filter(|l| l.contains(" sample ")).count();
    assert!(samples > 2_000, "{samples} samples");
    assert!(text.contains("\"le\"=\"+Inf\"") && text.contains(" NaN"));
}
