//! Prometheus series selectors, as `--match` takes them: `up`, `up{job="x", env!="dev"}`,
//! `{__name__=~"node_.*", instance!~"10\\..*"}`, and the UTF-8 forms of Prometheus 3
//! (`{"my.metric", "my.label"="v"}`).
//!
//! The lexical rules are PromQL's: strings in double quotes, single quotes or backticks
//! (raw), with Go's escapes (`\a \b \f \n \r \t \v \\`, the enclosing quote, `\xHH`, octal
//! `\OOO`, `\uHHHH`, `\UHHHHHHHH`); a trailing comma inside the braces is allowed.
//! Regexes are fully anchored and `.` matches a newline, as in Prometheus 3
//! (`^(?s:re)$`); they are compiled with the `regex` crate, whose syntax is RE2's (one
//! difference: `\d`, `\w`, `\s` and `\b` are Unicode-aware here, ASCII-only in Go). As in
//! PromQL, a selector must have at least one matcher that does not match the empty string,
//! and the metric name may not be given both before the braces and inside them. A label
//! that a series does not have matches as the empty string.
//!
//! Errors carry the 1-based column (in characters) where the problem starts.

use std::fmt;

use regex::Regex;
use thiserror::Error;

use crate::labels::{is_legacy_label_name, METRIC_NAME};

/// How a matcher compares a label's value.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MatchOp {
    Equal,
    NotEqual,
    RegexMatch,
    RegexNoMatch,
}

impl MatchOp {
    fn as_str(self) -> &'static str {
        match self {
            Self::Equal => "=",
            Self::NotEqual => "!=",
            Self::RegexMatch => "=~",
            Self::RegexNoMatch => "!~",
        }
    }
}

/// One `name op "value"` condition.
#[derive(Debug, Clone)]
pub struct Matcher {
    pub name: String,
    pub op: MatchOp,
    pub value: String,
    /// The anchored regex, for the two regex operators.
    re: Option<Regex>,
}

impl Matcher {
    /// True when a label value (`""` for an absent label) satisfies the matcher.
    pub fn matches(&self, value: &str) -> bool {
        match (self.op, &self.re) {
            (MatchOp::Equal, _) => value == self.value,
            (MatchOp::NotEqual, _) => value != self.value,
            (MatchOp::RegexMatch, Some(re)) => re.is_match(value),
            (MatchOp::RegexNoMatch, Some(re)) => !re.is_match(value),
            // Regex matchers are only ever built with their regex.
            (MatchOp::RegexMatch | MatchOp::RegexNoMatch, None) => false,
        }
    }
}

/// A parsed series selector: a series is selected when every matcher matches.
#[derive(Debug, Clone)]
pub struct Selector {
    matchers: Vec<Matcher>,
}

/// A selector that does not parse; `column` is 1-based, in characters.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum SelectorError {
    #[error("column {column}: unexpected {found}, expected {expected}")]
    Unexpected {
        column: usize,
        found: String,
        expected: &'static str,
    },
    #[error("column {column}: unterminated quoted string")]
    UnterminatedString { column: usize },
    #[error("column {column}: invalid escape sequence {sequence:?}")]
    InvalidEscape { column: usize, sequence: String },
    #[error("column {column}: string is not valid UTF-8")]
    InvalidUtf8 { column: usize },
    #[error("column {column}: invalid regex {pattern:?}: {reason}")]
    InvalidRegex {
        column: usize,
        pattern: String,
        reason: String,
    },
    #[error("column {column}: metric name must not be set twice: {first:?} or {second:?}")]
    NameTwice {
        column: usize,
        first: String,
        second: String,
    },
    #[error("column {column}: vector selector must contain at least one non-empty matcher")]
    EmptyMatchers { column: usize },
}

impl SelectorError {
    pub fn column(&self) -> usize {
        match self {
            Self::Unexpected { column, .. }
            | Self::UnterminatedString { column }
            | Self::InvalidEscape { column, .. }
            | Self::InvalidUtf8 { column }
            | Self::InvalidRegex { column, .. }
            | Self::NameTwice { column, .. }
            | Self::EmptyMatchers { column } => *column,
        }
    }
}

impl Selector {
    pub fn parse(s: &str) -> Result<Selector, SelectorError> {
        Parser {
            chars: s.chars().collect(),
            i: 0,
        }
        .selector()
    }

    /// True when every matcher matches `labels` (name, value pairs in any order).
    pub fn matches(&self, labels: &[(&str, &str)]) -> bool {
        self.matchers.iter().all(|m| {
            let value = labels
                .iter()
                .find(|(n, _)| *n == m.name)
                .map_or("", |(_, v)| *v);
            m.matches(value)
        })
    }

    pub fn matchers(&self) -> &[Matcher] {
        &self.matchers
    }
}

impl fmt::Display for Selector {
    /// The canonical `{name op "value", ...}` form.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("{")?;
        for (i, m) in self.matchers.iter().enumerate() {
            if i > 0 {
                f.write_str(", ")?;
            }
            if is_legacy_label_name(&m.name) {
                f.write_str(&m.name)?;
            } else {
                write!(f, "{:?}", m.name)?;
            }
            write!(f, "{}{:?}", m.op.as_str(), m.value)?;
        }
        f.write_str("}")
    }
}

struct Parser {
    chars: Vec<char>,
    i: usize,
}

impl Parser {
    fn peek(&self) -> Option<char> {
        self.chars.get(self.i).copied()
    }

    fn bump(&mut self) -> Option<char> {
        let c = self.peek()?;
        self.i += 1;
        Some(c)
    }

    fn column(&self) -> usize {
        self.i + 1
    }

    fn skip_ws(&mut self) {
        while self.peek().is_some_and(char::is_whitespace) {
            self.i += 1;
        }
    }

    fn unexpected(&self, expected: &'static str) -> SelectorError {
        SelectorError::Unexpected {
            column: self.column(),
            found: match self.peek() {
                Some(c) => format!("{c:?}"),
                None => "end of input".to_string(),
            },
            expected,
        }
    }

    fn selector(mut self) -> Result<Selector, SelectorError> {
        self.skip_ws();
        let mut name = None;
        if self.peek().is_some_and(is_metric_start) {
            let column = self.column();
            name = Some((self.ident(is_metric_char), column));
            self.skip_ws();
        }
        let mut matchers = Vec::new();
        match self.peek() {
            Some('{') => {
                self.i += 1;
                matchers = self.matchers()?;
            }
            _ if name.is_none() => return Err(self.unexpected("a metric name or '{'")),
            _ => {}
        }
        self.skip_ws();
        if self.peek().is_some() {
            return Err(self.unexpected("the end of the selector"));
        }
        if let Some((name, column)) = name {
            if let Some(m) = matchers.iter().find(|m| m.name == METRIC_NAME) {
                return Err(SelectorError::NameTwice {
                    column,
                    first: name,
                    second: m.value.clone(),
                });
            }
            matchers.push(Matcher {
                name: METRIC_NAME.to_string(),
                op: MatchOp::Equal,
                value: name,
                re: None,
            });
        }
        if matchers.iter().all(|m| m.matches("")) {
            return Err(SelectorError::EmptyMatchers { column: 1 });
        }
        Ok(Selector { matchers })
    }

    /// The inside of `{...}`, the opening brace already consumed.
    fn matchers(&mut self) -> Result<Vec<Matcher>, SelectorError> {
        let mut out = Vec::new();
        loop {
            self.skip_ws();
            let name = match self.peek() {
                Some('}') => {
                    self.i += 1;
                    return Ok(out);
                }
                Some('"' | '\'' | '`') => {
                    let quoted = self.string()?;
                    self.skip_ws();
                    if matches!(self.peek(), Some(',' | '}')) {
                        // A lone quoted string is the metric name (Prometheus 3).
                        out.push(Matcher {
                            name: METRIC_NAME.to_string(),
                            op: MatchOp::Equal,
                            value: quoted,
                            re: None,
                        });
                        self.after_matcher()?;
                        continue;
                    }
                    quoted
                }
                Some(c) if is_label_start(c) => self.ident(is_label_char),
                _ => return Err(self.unexpected("a label name or '}'")),
            };
            self.skip_ws();
            let op = self.op()?;
            self.skip_ws();
            if !matches!(self.peek(), Some('"' | '\'' | '`')) {
                return Err(self.unexpected("a quoted label value"));
            }
            let value_column = self.column();
            let value = self.string()?;
            let re = match op {
                MatchOp::RegexMatch | MatchOp::RegexNoMatch => Some(compile(&value, value_column)?),
                MatchOp::Equal | MatchOp::NotEqual => None,
            };
            out.push(Matcher {
                name,
                op,
                value,
                re,
            });
            self.after_matcher()?;
        }
    }

    /// Consumes the `,` after a matcher, or leaves a `}` for the loop.
    fn after_matcher(&mut self) -> Result<(), SelectorError> {
        self.skip_ws();
        match self.peek() {
            Some(',') => {
                self.i += 1;
                Ok(())
            }
            Some('}') => Ok(()),
            _ => Err(self.unexpected("',' or '}'")),
        }
    }

    fn ident(&mut self, part: fn(char) -> bool) -> String {
        let start = self.i;
        while self.peek().is_some_and(part) {
            self.i += 1;
        }
        self.chars[start..self.i].iter().collect()
    }

    fn op(&mut self) -> Result<MatchOp, SelectorError> {
        let op = match (self.peek(), self.chars.get(self.i + 1).copied()) {
            (Some('='), Some('~')) => MatchOp::RegexMatch,
            (Some('='), _) => MatchOp::Equal,
            (Some('!'), Some('=')) => MatchOp::NotEqual,
            (Some('!'), Some('~')) => MatchOp::RegexNoMatch,
            _ => return Err(self.unexpected("one of =, !=, =~, !~")),
        };
        self.i += if op == MatchOp::Equal { 1 } else { 2 };
        Ok(op)
    }

    /// A quoted string with PromQL's (Go's) escapes; the cursor is on the opening quote.
    fn string(&mut self) -> Result<String, SelectorError> {
        let start_column = self.column();
        let quote = self.bump().unwrap_or('"');
        let mut bytes = Vec::new();
        let mut utf8 = [0u8; 4];
        loop {
            let c = match self.bump() {
                None => {
                    return Err(SelectorError::UnterminatedString {
                        column: start_column,
                    })
                }
                Some(c) => c,
            };
            if c == quote {
                break;
            }
            if quote == '`' {
                // Raw strings take everything; Go drops carriage returns from them.
                if c != '\r' {
                    bytes.extend_from_slice(c.encode_utf8(&mut utf8).as_bytes());
                }
                continue;
            }
            match c {
                '\n' => {
                    return Err(SelectorError::UnterminatedString {
                        column: start_column,
                    })
                }
                '\\' => self.escape(quote, &mut bytes)?,
                c => bytes.extend_from_slice(c.encode_utf8(&mut utf8).as_bytes()),
            }
        }
        String::from_utf8(bytes).map_err(|_| SelectorError::InvalidUtf8 {
            column: start_column,
        })
    }

    /// One escape sequence, the backslash already consumed. `\x` and octal escapes give
    /// raw bytes (checked for UTF-8 with the whole string), `\u` and `\U` give characters.
    fn escape(&mut self, quote: char, out: &mut Vec<u8>) -> Result<(), SelectorError> {
        let column = self.column() - 1;
        let c = self
            .bump()
            .ok_or(SelectorError::UnterminatedString { column })?;
        let invalid = |p: &Parser| SelectorError::InvalidEscape {
            column,
            sequence: p.chars[column - 1..p.i.min(p.chars.len())].iter().collect(),
        };
        let simple = match c {
            'a' => Some(0x07),
            'b' => Some(0x08),
            'f' => Some(0x0c),
            'n' => Some(b'\n'),
            'r' => Some(b'\r'),
            't' => Some(b'\t'),
            'v' => Some(0x0b),
            '\\' => Some(b'\\'),
            '\'' | '"' if c == quote => Some(c as u8),
            _ => None,
        };
        if let Some(b) = simple {
            out.push(b);
            return Ok(());
        }
        let (digits, radix) = match c {
            'x' => (2, 16),
            'u' => (4, 16),
            'U' => (8, 16),
            '0'..='7' => (3, 8),
            _ => return Err(invalid(self)),
        };
        let first = if radix == 8 { 1 } else { 0 };
        let mut value: u32 = if radix == 8 { c as u32 - '0' as u32 } else { 0 };
        for _ in first..digits {
            let d = self.peek().and_then(|d| d.to_digit(radix));
            match d {
                Some(d) => {
                    value = value * radix + d;
                    self.i += 1;
                }
                None => {
                    self.i += usize::from(self.peek().is_some());
                    return Err(invalid(self));
                }
            }
        }
        match c {
            'x' => out.push(value as u8),
            '0'..='7' => match u8::try_from(value) {
                Ok(b) => out.push(b),
                Err(_) => return Err(invalid(self)),
            },
            _ => match char::from_u32(value) {
                Some(ch) => out.extend_from_slice(ch.encode_utf8(&mut [0u8; 4]).as_bytes()),
                None => return Err(invalid(self)),
            },
        }
        Ok(())
    }
}

fn compile(pattern: &str, column: usize) -> Result<Regex, SelectorError> {
    let invalid = |e: regex::Error| SelectorError::InvalidRegex {
        column,
        pattern: pattern.to_string(),
        reason: e.to_string(),
    };
    // Compiled alone first so that a pattern like `a)|(b` cannot escape the anchoring
    // group it is wrapped in below.
    Regex::new(pattern).map_err(invalid)?;
    Regex::new(&format!("^(?s:{pattern})$")).map_err(invalid)
}

fn is_metric_start(c: char) -> bool {
    c.is_ascii_alphabetic() || c == '_' || c == ':'
}

fn is_metric_char(c: char) -> bool {
    c.is_ascii_alphanumeric() || c == '_' || c == ':'
}

fn is_label_start(c: char) -> bool {
    c.is_ascii_alphabetic() || c == '_'
}

fn is_label_char(c: char) -> bool {
    c.is_ascii_alphanumeric() || c == '_'
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sel(s: &str) -> Selector {
        Selector::parse(s).unwrap_or_else(|e| panic!("{s}: {e}"))
    }

    fn err(s: &str) -> SelectorError {
        match Selector::parse(s) {
            Ok(sel) => panic!("{s} parsed as {sel}"),
            Err(e) => e,
        }
    }

    const UP: &[(&str, &str)] = &[("__name__", "up"), ("instance", "h:9100"), ("job", "node")];

    #[test]
    fn metric_name_alone() {
        let s = sel("up");
        assert!(s.matches(UP));
        assert!(!s.matches(&[("__name__", "upx")]));
        assert!(!s.matches(&[("job", "node")]));
        assert_eq!(s.to_string(), r#"{__name__="up"}"#);
        assert!(
            sel(" node:cpu_seconds:rate5m ").matches(&[("__name__", "node:cpu_seconds:rate5m")])
        );
    }

    #[test]
    fn all_four_operators() {
        let s = sel(r#"up{job="node", instance!="other", instance=~"h:.*", env!~"prod|stage"}"#);
        assert!(s.matches(UP));
        assert!(!s.matches(&[
            ("__name__", "up"),
            ("instance", "h:1"),
            ("job", "node"),
            ("env", "prod")
        ]));
        assert!(s.matches(&[
            ("__name__", "up"),
            ("instance", "h:1"),
            ("job", "node"),
            ("env", "dev")
        ]));
        assert!(!s.matches(&[("__name__", "up"), ("instance", "other"), ("job", "node")]));
        assert_eq!(s.matchers().len(), 5);
    }

    #[test]
    fn regexes_are_fully_anchored_and_dot_matches_newline() {
        let s = sel(r#"{__name__=~"node_.*"}"#);
        assert!(s.matches(&[("__name__", "node_load1")]));
        assert!(!s.matches(&[("__name__", "x_node_load1")]));
        let s = sel(r#"{job=~"a|b"}"#);
        assert!(s.matches(&[("job", "a")]));
        assert!(
            !s.matches(&[("job", "ab")]),
            "alternation is inside the anchors"
        );
        assert!(sel(r#"{a=~"x.y"}"#).matches(&[("a", "x\ny")]));
        // An unbalanced pattern cannot break out of the anchoring group.
        assert!(matches!(
            err(r#"{a=~"x)|(y"}"#),
            SelectorError::InvalidRegex { column: 5, .. }
        ));
    }

    #[test]
    fn absent_labels_match_as_empty() {
        let s = sel(r#"up{env=""}"#);
        assert!(s.matches(UP));
        assert!(!s.matches(&[("__name__", "up"), ("env", "x")]));
        assert!(sel(r#"up{env!~".+"}"#).matches(UP));
        assert!(!sel(r#"up{env=~".+"}"#).matches(UP));
    }

    #[test]
    fn quoting_and_escapes_follow_promql() {
        let s = sel(r#"{a="x\"y\\z\n\t\x41\101\u00e9\U0001F600", b='it\'s', c=`raw\n`}"#);
        let m = s.matchers();
        assert_eq!(m[0].value, "x\"y\\z\n\tAAé😀");
        assert_eq!(m[1].value, "it's");
        assert_eq!(m[2].value, "raw\\n");
        // Trailing comma and spacing.
        assert_eq!(sel(" up { job = \"node\" , } ").matchers().len(), 2);
    }

    #[test]
    fn utf8_names_in_quotes() {
        let s = sel(r#"{"my.metric", "my.label"="v"}"#);
        assert!(s.matches(&[("__name__", "my.metric"), ("my.label", "v")]));
        assert!(!s.matches(&[("__name__", "my.metric"), ("my.label", "w")]));
        assert_eq!(s.to_string(), r#"{__name__="my.metric", "my.label"="v"}"#);
    }

    #[test]
    fn errors_name_the_column() {
        let cases: &[(&str, usize)] = &[
            ("", 1),
            ("{}", 1),
            (r#"{job=~".*"}"#, 1),
            (r#"{job=""}"#, 1),
            ("up{", 4),
            ("up{job}", 7),
            ("up{job=node}", 8),
            (r#"up{job=="x"}"#, 8),
            (r#"up{job!"x"}"#, 7),
            (r#"up{job="x" env="y"}"#, 12),
            (r#"up{job="x"} extra"#, 13),
            (r#"up{job="x}"#, 8),
            (r#"up{job="a\qb"}"#, 10),
            (r#"up{job='a\"b'}"#, 10),
            (r#"up{job="\xZZ"}"#, 9),
            (r#"up{job="\400"}"#, 9),
            (r#"up{job="\uD800"}"#, 9),
            (r#"up{job="\xff"}"#, 8),
            (r#"up{job=~"("}"#, 9),
            (r#"up{__name__="x"}"#, 1),
            (r#"up{"x"}"#, 1),
            ("up{1a=\"x\"}", 4),
            ("up{a:b=\"x\"}", 5),
            ("{job=\"a\nb\"}", 6),
            ("é", 1),
        ];
        for (input, column) in cases {
            let e = err(input);
            assert_eq!(e.column(), *column, "{input:?}: {e}");
            assert!(
                e.to_string().starts_with(&format!("column {column}: ")),
                "{e}"
            );
        }
        assert!(matches!(
            err(r#"up{__name__="x"}"#),
            SelectorError::NameTwice { .. }
        ));
        assert!(matches!(err("{}"), SelectorError::EmptyMatchers { .. }));
        assert!(matches!(
            err(r#"up{job="x}"#),
            SelectorError::UnterminatedString { .. }
        ));
        assert!(matches!(
            err(r#"up{job="\xff"}"#),
            SelectorError::InvalidUtf8 { .. }
        ));
    }
}
