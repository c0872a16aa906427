//! Helpers shared by the parsers' unit tests: every entry of a body as a compact string.

#![allow(clippy::unwrap_used)]

use super::{Entry, Format, ParseError, ParseErrorKind, Parser};

/// Every entry as a compact string, labels unescaped, or the error.
pub(super) fn parse(body: &str, format: Format) -> Result<Vec<String>, ParseError> {
    let mut p = Parser::new(body.as_bytes(), format)?;
    let mut out = Vec::new();
    while let Some(e) = p.next()? {
        out.push(match e {
            Entry::Sample(s) => {
                let labels: Vec<String> = p
                    .labels()
                    .iter()
                    .map(|l| format!("{}={:?}", l.name.to_cow(), l.value.to_cow()))
                    .collect();
                let ts = s.timestamp.map(|t| format!(" @{t}")).unwrap_or_default();
                format!(
                    "{}{{{}}} {:?}{ts}",
                    s.name.to_cow(),
                    labels.join(","),
                    s.value
                )
            }
            Entry::Help { name, text } => format!("help {name} {:?}", text.to_cow()),
            Entry::Type { name, kind } => format!("type {name} {kind}"),
            Entry::Unit { name, unit } => format!("unit {name} {unit}"),
            Entry::Comment => "comment".to_owned(),
        });
    }
    Ok(out)
}

/// The entries of a body that must parse.
pub(super) fn ok(body: &str, format: Format) -> Vec<String> {
    parse(body, format).unwrap_or_else(|e| panic!("{body:?}: {e}"))
}

/// The error's (line, column, kind) for a body that must not parse.
pub(super) fn err(body: &str, format: Format) -> (usize, usize, ParseErrorKind) {
    match parse(body, format) {
        Ok(v) => panic!("{body:?} parsed: {v:?}"),
        Err(e) => (e.line, e.column, e.kind),
    }
}
