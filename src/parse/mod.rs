//! Exposition parsing: turns a scraped body (Prometheus text 0.0.4/1.0.0 or OpenMetrics
//! 1.0 text) into a stream of borrowed entries.
//!
//! Owns: tokenising and validating both text formats, choosing the format from a
//! `Content-Type`, and the OpenMetrics float spelling used for `le`/`quantile` label
//! values ([`normalize_float_label`]).
//!
//! Input: the whole decompressed body as `&[u8]` (the worker's reused buffer), or one
//! part of it at a time for a streamed scrape ([`Parser::new_part`]: parts start at line
//! boundaries, a cut entry is handed back to be parsed again with the next part). Output:
//! [`Entry`] values that borrow from the body. A sample's labels are read with
//! [`Parser::labels`] right after [`Parser::next`] returned it; they live in one `Vec`
//! that is reused for every line, so parsing allocates nothing per line. Names and values
//! stay escaped ([`RawStr`]); unescaping, label-name validation, `le`/`quantile`
//! normalisation, NaN canonicalisation and metadata bookkeeping are the caller's job,
//! done only for the series that need it.
//!
//! Errors abort the parse (Prometheus rejects the whole scrape on any syntax error): the
//! first error is returned with its 1-based line and column, and every later call to
//! `next` returns it again. The body is validated as UTF-8 once, up front. An empty body
//! is a valid text-format body but an OpenMetrics error (no `# EOF`); Prometheus treats
//! an empty 200 response as an empty scrape before choosing a parser, and so should the
//! caller.
//!
//! Limits: none of its own beyond what the body size limit implies; nothing is
//! quadratic in the input (a line with thousands of labels is checked for duplicates by
//! sorting hashes), and error messages quote at most 64 characters of the body.
//!
//! Must not: allocate per line, panic on any input, or keep state between bodies. It
//! does not know about targets, relabeling or storage.
//!
//! Behaviour follows Prometheus 3.x `model/textparse` (promlex/promparse and
//! openmetricslex/openmetricsparse), summarised in the shared reference notes
//! (prometheus-scrape.md §5). Deliberate differences:
//! - a text-format HELP text keeps `\"` as written in Prometheus, but
//!   [`RawStr::unescape_into`] turns it into `"` (one escape set serves both formats);
//! - a NUL byte where a token should start is an error (Prometheus ends the body there);
//! - a duplicate label name, including a `__name__` label beside the metric name, fails
//!   the parse here rather than at append time (where Prometheus fails the scrape too);
//! - [`Sample::series`] starts at the metric name or `{`, without leading blanks.

mod float;
mod lex;
mod openmetrics;
mod text;

#[cfg(test)]
mod corpus_tests;
#[cfg(test)]
mod fuzz_tests;
/// The benchmarks' realistic body generator, for the parser's and the pipeline's tests.
#[cfg(test)]
#[path = "../../benches/common/mod.rs"]
pub(crate) mod generator;
#[cfg(test)]
mod part_tests;
#[cfg(test)]
mod test_util;

use std::borrow::Cow;
use std::fmt;

pub use float::normalize_float_label;

/// An exposition format this module can parse.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Format {
    /// Prometheus text format 0.0.4 and 1.0.0 (`text/plain`).
    PromText,
    /// OpenMetrics 1.0 text (`application/openmetrics-text`).
    OpenMetrics,
}

impl Format {
    /// The parser for a response's `Content-Type`, or `None` when the media type is
    /// missing, malformed or neither text format (the caller applies its fallback).
    /// Parameters such as `version` and `charset` are ignored, as Prometheus does.
    pub fn from_content_type(ct: &str) -> Option<Format> {
        let media = ct.split(';').next().unwrap_or("");
        let media = media.trim_matches(|c| c == ' ' || c == '\t');
        if media.eq_ignore_ascii_case("application/openmetrics-text") {
            Some(Format::OpenMetrics)
        } else if media.eq_ignore_ascii_case("text/plain") {
            Some(Format::PromText)
        } else {
            None
        }
    }
}

/// A metric family type from a `# TYPE` line. The text format's `untyped` is `Unknown`,
/// which is also the type of samples before any `# TYPE` line (the default).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub enum MetricType {
    Counter,
    Gauge,
    Histogram,
    GaugeHistogram,
    Summary,
    Info,
    StateSet,
    #[default]
    Unknown,
}

impl MetricType {
    /// The OpenMetrics spelling (`unknown` for the text format's `untyped`).
    pub fn as_str(self) -> &'static str {
        match self {
            MetricType::Counter => "counter",
            MetricType::Gauge => "gauge",
            MetricType::Histogram => "histogram",
            MetricType::GaugeHistogram => "gaugehistogram",
            MetricType::Summary => "summary",
            MetricType::Info => "info",
            MetricType::StateSet => "stateset",
            MetricType::Unknown => "unknown",
        }
    }
}

impl fmt::Display for MetricType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A string exactly as written in the body, without its quotes. `escaped` is true when
/// `raw` contains a backslash, i.e. when it must go through [`RawStr::unescape_into`].
///
/// Escapes: `\\` → `\`, `\"` → `"`, `\n` → newline; any other backslash is kept as
/// written (Prometheus does the same).
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct RawStr<'a> {
    pub raw: &'a str,
    pub escaped: bool,
}

impl<'a> RawStr<'a> {
    /// A string with nothing to unescape.
    pub fn plain(raw: &'a str) -> Self {
        RawStr {
            raw,
            escaped: false,
        }
    }

    /// Appends the unescaped string to `out` (it does not clear `out`).
    pub fn unescape_into(&self, out: &mut String) {
        if !self.escaped {
            out.push_str(self.raw);
            return;
        }
        let mut rest = self.raw;
        while let Some(i) = memchr::memchr(b'\\', rest.as_bytes()) {
            out.push_str(&rest[..i]);
            let (unescaped, skip) = match rest.as_bytes().get(i + 1) {
                Some(b'\\') => ('\\', 2),
                Some(b'"') => ('"', 2),
                Some(b'n') => ('\n', 2),
                _ => ('\\', 1),
            };
            out.push(unescaped);
            rest = &rest[i + skip..];
        }
        out.push_str(rest);
    }

    /// The unescaped string, borrowed when there is nothing to unescape.
    pub fn to_cow(&self) -> Cow<'a, str> {
        if self.escaped {
            let mut s = String::with_capacity(self.raw.len());
            self.unescape_into(&mut s);
            Cow::Owned(s)
        } else {
            Cow::Borrowed(self.raw)
        }
    }

    /// Whether both strings are equal once unescaped, without allocating.
    pub fn eq_unescaped(&self, other: &RawStr<'_>) -> bool {
        if !self.escaped && !other.escaped {
            return self.raw == other.raw;
        }
        lex::unescaped_bytes(self).eq(lex::unescaped_bytes(other))
    }
}

/// One `name="value"` pair of a sample, in body order.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct RawLabel<'a> {
    pub name: RawStr<'a>,
    pub value: RawStr<'a>,
}

/// One sample line.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Sample<'a> {
    /// The series exactly as in the body, from the first character of the metric name
    /// (or `{`) to the end of the name or the closing `}`: a cache key, e.g. `foo{a="b"}`.
    pub series: &'a str,
    /// The metric name (from before the braces, or the quoted name inside them).
    pub name: RawStr<'a>,
    /// The value as parsed; NaN payloads are not canonicalised.
    pub value: f64,
    /// The sample's own timestamp in milliseconds, if it has one.
    pub timestamp: Option<i64>,
    /// Its label names are those of the previous sample this parser returned, in the
    /// same order and spelt alike (the buckets of a histogram, a family's series), so
    /// whatever follows from the names alone holds for both. False for the first.
    pub same_names: bool,
}

/// One parsed line (or, for a text-format label value with raw newlines, a few lines).
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Entry<'a> {
    /// A sample; its labels are in [`Parser::labels`].
    Sample(Sample<'a>),
    /// `# HELP name text`. A quoted name is given without its quotes, still escaped.
    Help { name: &'a str, text: RawStr<'a> },
    /// `# TYPE name type`.
    Type { name: &'a str, kind: MetricType },
    /// `# UNIT name unit` (OpenMetrics only).
    Unit { name: &'a str, unit: &'a str },
    /// Any other `#` line (text format only).
    Comment,
}

/// What the parser found where it expected something else.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Found {
    Char(char),
    Space,
    Tab,
    EndOfLine,
    EndOfInput,
}

impl fmt::Display for Found {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Found::Char(c) => write!(f, "{c:?}"),
            Found::Space => f.write_str("a space"),
            Found::Tab => f.write_str("a tab"),
            Found::EndOfLine => f.write_str("the end of the line"),
            Found::EndOfInput => f.write_str("the end of the input"),
        }
    }
}

/// Why a body was rejected. Strings taken from the body are cut to a short excerpt.
#[derive(Clone, Debug, PartialEq, thiserror::Error)]
pub enum ParseErrorKind {
    /// The body is not valid UTF-8 (the position is the first bad byte).
    #[error("invalid UTF-8")]
    InvalidUtf8,
    /// A line starts with something that is not a metric name, `{` or `#` (in
    /// OpenMetrics this includes blank lines and leading spaces).
    #[error("expected a metric name, '{{' or '#' at the start of a line, found {0}")]
    ExpectedStart(Found),
    /// `# HELP`, `# TYPE` or `# UNIT` is not followed by a metric name.
    #[error("expected a metric name after {keyword}, found {found}")]
    ExpectedMetadataName { keyword: &'static str, found: Found },
    /// OpenMetrics: the metric name of a metadata line is not followed by one space.
    #[error("expected a space after the metric name in {keyword}, found {found}")]
    ExpectedMetadataText { keyword: &'static str, found: Found },
    /// A `# TYPE` line names a type the format does not have.
    #[error("invalid metric type {0:?}")]
    InvalidMetricType(String),
    /// Text format: the HELP text would start inside a multi-byte character (Prometheus
    /// drops one byte after the name and finds invalid UTF-8).
    #[error("help text is not valid UTF-8")]
    InvalidHelpText,
    /// OpenMetrics: a `# UNIT` that is not `_<unit>` at the end of the metric name.
    #[error("unit {unit:?} is not a suffix of metric name {name:?}")]
    UnitNotSuffix { unit: String, name: String },
    /// OpenMetrics: a `#` line other than `# HELP`, `# TYPE`, `# UNIT` and `# EOF`.
    #[error("OpenMetrics allows only '# HELP', '# TYPE', '# UNIT' and '# EOF' comment lines")]
    InvalidComment,
    /// Inside braces: neither a label name, a quoted name nor `}`.
    #[error("expected a label name or '}}', found {0}")]
    ExpectedLabelName(Found),
    /// A label name that is not followed by `=`.
    #[error("expected '=' after label name {name:?}, found {found}")]
    ExpectedEquals { name: String, found: Found },
    /// `name=` that is not followed by a quoted value.
    #[error("expected a quoted value for label {name:?}, found {found}")]
    ExpectedLabelValue { name: String, found: Found },
    /// OpenMetrics: a label value that is not followed by `,` or `}`.
    #[error("expected ',' or '}}' after the value of label {name:?}, found {found}")]
    ExpectedCommaOrBrace { name: String, found: Found },
    /// A quoted string without its closing quote.
    #[error("unterminated quoted string")]
    UnterminatedString,
    /// A backslash at the end of a line inside a quoted string.
    #[error("backslash before a line break in a quoted string")]
    InvalidEscape,
    /// OpenMetrics: a raw line break inside a label value (it must be written `\n`).
    #[error("raw line break in the value of label {name:?}")]
    NewlineInLabelValue { name: String },
    /// Both a name before the braces and a quoted name inside them, or two quoted names.
    #[error("metric name is set twice")]
    MetricNameSetTwice,
    /// `{...}` with no quoted metric name inside.
    #[error("metric name is missing")]
    MissingMetricName,
    /// The same label name twice in one series (a `__name__` label counts as the name).
    #[error("duplicate label name {0:?}")]
    DuplicateLabel(String),
    /// A metric (or exemplar) without a value.
    #[error("expected a value after the {after}, found {found}")]
    ExpectedValue { after: &'static str, found: Found },
    /// A value that is not a float in Prometheus's syntax (no hex, no `_`, no overflow).
    #[error("invalid value {0:?}")]
    InvalidValue(String),
    /// Something other than a timestamp (or an exemplar) after the value.
    #[error("expected a timestamp or the end of the line, found {0}")]
    ExpectedTimestamp(Found),
    /// A timestamp that is not an int64 of milliseconds (text) or a finite float of
    /// seconds (OpenMetrics).
    #[error("invalid timestamp {0:?}")]
    InvalidTimestamp(String),
    /// Trailing data after the timestamp or exemplar.
    #[error("expected the end of the line after the {after}, found {found}")]
    ExpectedLineEnd { after: &'static str, found: Found },
    /// OpenMetrics: the body ends without `# EOF`.
    #[error("data does not end with # EOF")]
    MissingEof,
    /// OpenMetrics: anything after `# EOF` and its optional line break.
    #[error("unexpected data after # EOF")]
    DataAfterEof,
}

/// A parse failure with its 1-based position: `column` counts characters, not bytes.
#[derive(Clone, Debug, PartialEq, thiserror::Error)]
#[error("line {line}, column {column}: {kind}")]
pub struct ParseError {
    pub line: usize,
    pub column: usize,
    pub kind: ParseErrorKind,
}

impl ParseError {
    /// The error at byte offset `pos` of `body` (which need not be valid UTF-8 after
    /// `pos`).
    fn at(body: &[u8], pos: usize, kind: ParseErrorKind) -> Self {
        let pos = pos.min(body.len());
        let before = &body[..pos];
        let line = 1 + memchr::memchr_iter(b'\n', before).count();
        let line_start = memchr::memrchr(b'\n', before).map_or(0, |i| i + 1);
        // Count characters by their first byte, so a prefix that is not valid UTF-8
        // (only possible for `InvalidUtf8`, whose prefix is valid) still gives a number.
        let column = 1 + before[line_start..]
            .iter()
            .filter(|&&b| (b & 0xC0) != 0x80)
            .count();
        ParseError { line, column, kind }
    }

    /// The same error in a part that starts after `lines` lines of the body.
    fn offset_lines(mut self, lines: usize) -> Self {
        self.line += lines;
        self
    }
}

/// An error found at a byte offset; turned into a [`ParseError`] at the API boundary so
/// the hot path never counts lines.
#[derive(Debug)]
struct Fail {
    pos: usize,
    kind: ParseErrorKind,
}

type PResult<T> = Result<T, Fail>;

fn fail<T>(pos: usize, kind: ParseErrorKind) -> PResult<T> {
    Err(Fail { pos, kind })
}

/// A streaming parser over one body. Create one per scrape; it borrows the body.
pub struct Parser<'a> {
    src: &'a str,
    pos: usize,
    format: Format,
    /// Line number at `pos`, kept up to date as line breaks are consumed.
    cur_line: usize,
    /// Line on which the entry last returned starts.
    entry_line: usize,
    labels: Vec<RawLabel<'a>>,
    /// Scratch for the duplicate-label check of series with many labels.
    dup_scratch: Vec<(u64, u32)>,
    /// Label names of the previous sample returned (`None` before the first): a sample
    /// with the same names has no duplicate either, and is told so
    /// (`Sample::same_names`).
    prev_names: Option<Vec<RawStr<'a>>>,
    finished: bool,
    failed: Option<ParseError>,
    /// Lines of the whole body before `src` (0 unless parsing a part).
    line_offset: usize,
    /// Whether `src` ends where the body ends. Read only at the end of the input and on
    /// errors, so the per-line path does not pay for parts.
    last: bool,
    /// OpenMetrics `# EOF` was read.
    saw_eof: bool,
}

impl<'a> Parser<'a> {
    /// Checks that `body` is UTF-8 and prepares to parse it in `format`.
    pub fn new(body: &'a [u8], format: Format) -> Result<Parser<'a>, ParseError> {
        Parser::new_part(body, format, 1, true)
    }

    /// Prepares to parse one part of a longer body, which the caller hands over in parts
    /// so that it never holds the whole body.
    ///
    /// `part` starts at a line boundary of the body, on its 1-based line `first_line`;
    /// error lines and [`Parser::line`] count from there (columns need no offset). `last`
    /// says whether the body ends where `part` ends. A part that is not the last must end
    /// right after a `\n` (so it is also cut on a UTF-8 boundary).
    ///
    /// In a part that is not the last, [`Parser::next`] returns `Ok(None)` where the part
    /// ends, without OpenMetrics' `# EOF` check, and also where the part ends inside an
    /// entry (only a quoted string can hold a line break, so that is an unterminated
    /// string or, in OpenMetrics, a missing `# EOF` reached at the end of the input). Then
    /// [`Parser::consumed`] is where the unfinished entry starts: the caller prefixes
    /// `part[consumed..]` to the next part, which starts on line [`Parser::next_line`].
    /// Every other error is the one the whole body gives, at the same line and column.
    ///
    /// The one exception is invalid UTF-8, which [`Parser::new`] finds before any entry:
    /// here it is found only when its part arrives, after the entries of earlier parts.
    pub fn new_part(
        part: &'a [u8],
        format: Format,
        first_line: usize,
        last: bool,
    ) -> Result<Parser<'a>, ParseError> {
        let line_offset = first_line.saturating_sub(1);
        let src = std::str::from_utf8(part).map_err(|e| {
            ParseError::at(part, e.valid_up_to(), ParseErrorKind::InvalidUtf8)
                .offset_lines(line_offset)
        })?;
        Ok(Parser {
            src,
            pos: 0,
            format,
            cur_line: line_offset + 1,
            entry_line: line_offset + 1,
            labels: Vec::with_capacity(16),
            dup_scratch: Vec::new(),
            prev_names: None,
            finished: false,
            failed: None,
            line_offset,
            last,
            saw_eof: false,
        })
    }

    /// The format this parser reads.
    pub fn format(&self) -> Format {
        self.format
    }

    /// The next entry, `None` at the end of the body (after `# EOF` for OpenMetrics).
    // Not an Iterator: `labels()` must be read between calls, and the name is the
    // worker's contract.
    #[allow(clippy::should_implement_trait)]
    pub fn next(&mut self) -> Result<Option<Entry<'a>>, ParseError> {
        if let Some(e) = &self.failed {
            return Err(e.clone());
        }
        if self.finished {
            return Ok(None);
        }
        let result = match self.format {
            Format::PromText => self.next_text(),
            Format::OpenMetrics => self.next_openmetrics(),
        };
        match result {
            Ok(Some(entry)) => Ok(Some(entry)),
            Ok(None) => {
                self.finished = true;
                self.labels.clear();
                Ok(None)
            }
            Err(fail) => self.stop(fail),
        }
    }

    /// Ends the parse at a failure: an error, or in a part that is not the last, the end
    /// of the part inside an entry (or, in OpenMetrics, before `# EOF`). Out of line so
    /// that parts cost the per-entry path nothing.
    #[cold]
    #[inline(never)]
    fn stop(&mut self, Fail { pos, kind }: Fail) -> Result<Option<Entry<'a>>, ParseError> {
        self.labels.clear();
        if !self.last
            && matches!(
                kind,
                ParseErrorKind::UnterminatedString | ParseErrorKind::MissingEof
            )
        {
            // The entry starts at `pos`, on `entry_line`, and is parsed again with the
            // next part. `cur_line` may have counted line breaks inside it.
            self.cur_line = self.entry_line;
            self.finished = true;
            return Ok(None);
        }
        let e = ParseError::at(self.src.as_bytes(), pos, kind).offset_lines(self.line_offset);
        self.failed = Some(e.clone());
        Err(e)
    }

    /// The labels, in body order, of the sample last returned by [`Parser::next`] (empty
    /// after any other entry).
    pub fn labels(&self) -> &[RawLabel<'a>] {
        &self.labels
    }

    /// The 1-based line on which the entry last returned starts.
    pub fn line(&self) -> usize {
        self.entry_line
    }

    /// After [`Parser::next`] returned `Ok(None)`: how many bytes of the input were
    /// parsed. Less than the input's length only in a part that is not the last and
    /// ends inside an entry, which starts at this offset (a line boundary).
    pub fn consumed(&self) -> usize {
        self.pos
    }

    /// After [`Parser::next`] returned `Ok(None)`: the 1-based line of the body at
    /// [`Parser::consumed`], on which the next part starts.
    pub fn next_line(&self) -> usize {
        self.cur_line
    }

    /// Whether OpenMetrics' `# EOF` was read: the body must end there, so any byte in a
    /// later part is [`ParseErrorKind::DataAfterEof`].
    pub fn saw_eof(&self) -> bool {
        self.saw_eof
    }

    /// The label-name token at `p` (quoted or bare), after which the caller checks for
    /// `=`: `(name, quoted, offset after it)`, or `None` at the closing `}` (then the
    /// offset is past it). Shared by both formats.
    #[inline(always)] // on every label of every line: the call must not survive
    fn label_token(&mut self, p: usize) -> PResult<(Option<(RawStr<'a>, bool)>, usize)> {
        let b = self.src.as_bytes();
        match b.get(p) {
            Some(b'}') => Ok((None, p + 1)),
            Some(b'"') => {
                let q = lex::scan_quoted(b, p, true, || ParseErrorKind::UnterminatedString)?;
                self.cur_line += q.newlines;
                let raw = RawStr {
                    raw: &self.src[p + 1..q.end - 1],
                    escaped: q.escaped,
                };
                Ok((Some((raw, true)), q.end))
            }
            Some(&c) if lex::is_label_start(c) => {
                let end = lex::label_name_end(b, p);
                Ok((Some((RawStr::plain(&self.src[p..end]), false)), end))
            }
            _ => fail(p, ParseErrorKind::ExpectedLabelName(self.found_at(p))),
        }
    }

    /// What is at byte offset `pos`, for error messages.
    fn found_at(&self, pos: usize) -> Found {
        match self.src.as_bytes().get(pos) {
            None => Found::EndOfInput,
            Some(b'\n') => Found::EndOfLine,
            Some(b' ') => Found::Space,
            Some(b'\t') => Found::Tab,
            Some(_) => self
                .src
                .get(pos..)
                .and_then(|s| s.chars().next())
                .map_or(Found::EndOfInput, Found::Char),
        }
    }

    /// The byte offset of `s`, which must be a slice of the body.
    fn offset_of(&self, s: &str) -> usize {
        (s.as_ptr() as usize).saturating_sub(self.src.as_ptr() as usize)
    }

    /// Fails if two labels of the sample just parsed share a name, or a label is called
    /// `__name__` (the metric name is a label too). Returns whether the names are the
    /// previous sample's: then they passed this check already, and most samples of a
    /// real body are such (a comparison of each name against one, where the check
    /// compares pairs).
    fn check_duplicate_labels(&mut self) -> PResult<bool> {
        // Equal raw spellings have equal escape flags: the flag says the raw has a `\`.
        let same = self.prev_names.as_ref().is_some_and(|prev| {
            prev.len() == self.labels.len()
                && self
                    .labels
                    .iter()
                    .zip(prev)
                    .all(|(l, p)| crate::bytes::eq(l.name.raw.as_bytes(), p.raw.as_bytes()))
        });
        if same {
            return Ok(true);
        }
        if let Some(i) = lex::find_duplicate(&self.labels, &mut self.dup_scratch) {
            let name = self.labels[i].name;
            return fail(
                self.offset_of(name.raw),
                ParseErrorKind::DuplicateLabel(lex::excerpt(&name.to_cow())),
            );
        }
        let prev = self.prev_names.get_or_insert_with(Vec::new);
        prev.clear();
        prev.extend(self.labels.iter().map(|l| l.name));
        Ok(false)
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn content_types() {
        let om = Some(Format::OpenMetrics);
        let text = Some(Format::PromText);
        let cases = [
            ("application/openmetrics-text", om),
            (
                "application/openmetrics-text; version=1.0.0; charset=utf-8",
                om,
            ),
            ("Application/OpenMetrics-Text;version=0.0.1", om),
            (" \tapplication/openmetrics-text \t; version=1.0.0", om),
            ("text/plain", text),
            ("text/plain; version=0.0.4; charset=utf-8", text),
            ("text/plain;version=1.0.0;escaping=allow-utf-8", text),
            ("TEXT/PLAIN", text),
            ("", None),
            ("  ", None),
            ("text/html", None),
            ("text/plainx", None),
            ("text / plain", None),
            ("application/json", None),
            (
                "application/vnd.google.protobuf; proto=io.prometheus.client.MetricFamily",
                None,
            ),
            (";text/plain", None),
        ];
        for (ct, want) in cases {
            assert_eq!(Format::from_content_type(ct), want, "{ct:?}");
        }
    }

    /// Each sample's `same_names`, or the error's (line, column, kind).
    fn same_names(body: &str, format: Format) -> Result<Vec<bool>, (usize, usize, ParseErrorKind)> {
        let err = |e: ParseError| (e.line, e.column, e.kind);
        let mut p = Parser::new(body.as_bytes(), format).map_err(err)?;
        let mut out = Vec::new();
        while let Some(e) = p.next().map_err(err)? {
            if let Entry::Sample(s) = e {
                out.push(s.same_names);
            }
        }
        Ok(out)
    }

    #[test]
    fn a_sample_knows_whether_it_has_the_previous_samples_label_names() {
        let body = "a 1\nb 2\nc{x=\"1\",y=\"2\"} 3\nc{x=\"3\",y=\"4\"} 4\n\
                    # TYPE d gauge\nd{x=\"5\",y=\"6\"} 5\nd{y=\"5\",x=\"6\"} 6\n\
                    d{x=\"1\",yy=\"2\"} 7\nd{x=\"1\",\"yy\"=\"2\"} 8\nd{x=\"1\"} 9\n";
        assert_eq!(
            same_names(body, Format::PromText),
            Ok(vec![
                false, true, false, true, true, false, false, true, false
            ])
        );
        let body = "# TYPE c gauge\nc{x=\"1\"} 1\nc{x=\"2\"} 2\nc{y=\"2\"} 3\n# EOF\n";
        assert_eq!(
            same_names(body, Format::OpenMetrics),
            Ok(vec![false, true, false])
        );
        // As many names as the previous sample's, but a repeated one: still found.
        assert_eq!(
            same_names(
                "m{a=\"1\",b=\"2\"} 1\nm{a=\"1\",a=\"2\"} 2\n",
                Format::PromText
            ),
            Err((2, 9, ParseErrorKind::DuplicateLabel("a".into())))
        );
    }

    #[test]
    fn raw_strings_unescape() {
        let mut out = String::from(">");
        RawStr {
            raw: r#"a\\b\"c\nd\te\x"#,
            escaped: true,
        }
        .unescape_into(&mut out);
        assert_eq!(out, ">a\\b\"c\nd\\te\\x");
        let plain = RawStr::plain("as is \\n");
        assert_eq!(plain.to_cow(), Cow::Borrowed("as is \\n"));
        let escaped = RawStr {
            raw: r"\\n",
            escaped: true,
        };
        assert_eq!(escaped.to_cow(), Cow::<str>::Owned("\\n".into()));
        // Escaped and plain spellings of the same name are equal.
        assert!(RawStr {
            raw: r#"a\"b"#,
            escaped: true
        }
        .eq_unescaped(&RawStr::plain("a\"b")));
        assert!(!RawStr {
            raw: r"a\nb",
            escaped: true
        }
        .eq_unescaped(&RawStr::plain("a\\nb")));
        // Multi-byte characters around escapes survive.
        let mut out = String::new();
        RawStr {
            raw: r"é\\ü\n€",
            escaped: true,
        }
        .unescape_into(&mut out);
        assert_eq!(out, "é\\ü\n€");
    }

    #[test]
    fn metric_type_names() {
        let all = [
            (MetricType::Counter, "counter"),
            (MetricType::Gauge, "gauge"),
            (MetricType::Histogram, "histogram"),
            (MetricType::GaugeHistogram, "gaugehistogram"),
            (MetricType::Summary, "summary"),
            (MetricType::Info, "info"),
            (MetricType::StateSet, "stateset"),
            (MetricType::Unknown, "unknown"),
        ];
        for (kind, name) in all {
            assert_eq!(kind.to_string(), name);
        }
    }

    #[test]
    fn error_display_and_positions() {
        let e = ParseError::at(b"ab\ncd\xc3\xa9ef", 8, ParseErrorKind::MissingEof);
        assert_eq!((e.line, e.column), (2, 5));
        assert_eq!(
            e.to_string(),
            "line 2, column 5: data does not end with # EOF"
        );
        let e = ParseError::at(b"a\n", 2, ParseErrorKind::MissingEof);
        assert_eq!((e.line, e.column), (2, 1));
        let kind = ParseErrorKind::ExpectedEquals {
            name: "a".into(),
            found: Found::Char('x'),
        };
        assert_eq!(
            ParseError::at(b"m{a x", 4, kind).to_string(),
            "line 1, column 5: expected '=' after label name \"a\", found 'x'"
        );
    }

    #[test]
    fn labels_are_cleared_between_entries_and_reused() {
        let body = b"a{x=\"1\",y=\"2\"} 1\n# TYPE b gauge\nb 2\n";
        let mut p = Parser::new(body, Format::PromText).unwrap();
        assert!(matches!(p.next().unwrap(), Some(Entry::Sample(_))));
        assert_eq!(p.labels().len(), 2);
        let capacity = p.labels.capacity();
        assert!(matches!(p.next().unwrap(), Some(Entry::Type { .. })));
        assert!(p.labels().is_empty());
        assert!(matches!(p.next().unwrap(), Some(Entry::Sample(_))));
        assert!(p.labels().is_empty());
        assert_eq!(p.labels.capacity(), capacity);
        assert_eq!(p.next().unwrap(), None);
        assert_eq!(p.next().unwrap(), None);
        assert_eq!(p.format(), Format::PromText);
    }
}
