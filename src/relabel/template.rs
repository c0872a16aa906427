//! Replacement templates (`replacement`, and `target_label` of `replace`), parsed once at
//! compile time with the rules of Go's `regexp.Expand`, which Prometheus uses:
//!
//! - `$$` is a literal `$`;
//! - `$name` takes the longest run of letters, digits and `_` as the name, so `$1x` refers
//!   to a group named `1x` (usually absent, hence empty), not to group 1 and then `x`;
//! - `${name}` delimits the name explicitly;
//! - a name of ASCII digits without a leading zero is a group number; anything else is a
//!   group name (`$01` is the group *named* `01`);
//! - a reference to a group that does not exist, or did not take part in the match,
//!   expands to nothing;
//! - a `$` that starts no valid reference (`$`, `$-`, `${x`) is kept as a literal `$`.
//!
//! Parsing resolves names to group indexes up front, so expansion is a copy loop.

use regex::{CaptureLocations, Regex};

#[derive(Debug, Clone, PartialEq, Eq)]
enum Piece {
    Literal(Box<str>),
    Group(usize),
}

/// Where a template's group references read from.
pub(super) enum Groups<'a> {
    /// The regex matched the whole value and every group the template can name spans
    /// all of it (the `(.*)` / `(.+)` shortcut).
    Whole,
    /// Capture positions from a real match.
    Locs(&'a CaptureLocations),
}

/// A parsed template.
#[derive(Debug, Clone)]
pub(super) struct Template {
    pieces: Box<[Piece]>,
    /// The expansion when the template refers to no group that can exist in the regex.
    literal: Option<Box<str>>,
}

/// Go's `extract`: the name after a `$` (already removed), as `(name, rest)`.
fn extract(s: &str) -> Option<(&str, &str)> {
    let (body, braced) = match s.strip_prefix('{') {
        Some(b) => (b, true),
        None => (s, false),
    };
    // Go accepts any Unicode letter or digit here (unicode.IsLetter / IsDigit).
    let len: usize = body
        .chars()
        .take_while(|c| c.is_alphanumeric() || *c == '_')
        .map(char::len_utf8)
        .sum();
    if len == 0 {
        return None;
    }
    let name = &body[..len];
    let rest = &body[len..];
    if braced {
        rest.strip_prefix('}').map(|r| (name, r))
    } else {
        Some((name, rest))
    }
}

/// Go's group-number rule: ASCII digits, no leading zero, at most nine digits.
fn group_number(name: &str) -> Option<usize> {
    let digits = name.bytes().all(|b| b.is_ascii_digit());
    if !digits || name.len() > 9 || (name.len() > 1 && name.starts_with('0')) {
        return None;
    }
    name.parse().ok()
}

impl Template {
    /// Parses `template` against the groups of `regex`.
    pub(super) fn parse(template: &str, regex: &Regex) -> Template {
        let mut pieces: Vec<Piece> = Vec::new();
        let mut lit = String::new();
        let mut rest = template;
        while let Some(dollar) = rest.find('$') {
            lit.push_str(&rest[..dollar]);
            let after = &rest[dollar + 1..];
            if let Some(r) = after.strip_prefix('$') {
                lit.push('$');
                rest = r;
                continue;
            }
            let Some((name, r)) = extract(after) else {
                lit.push('$');
                rest = after;
                continue;
            };
            rest = r;
            let index = match group_number(name) {
                Some(n) => (n < regex.captures_len()).then_some(n),
                None => regex.capture_names().position(|n| n == Some(name)),
            };
            if let Some(i) = index {
                if !lit.is_empty() {
                    pieces.push(Piece::Literal(std::mem::take(&mut lit).into()));
                }
                pieces.push(Piece::Group(i));
            }
        }
        lit.push_str(rest);
        let literal = if pieces.is_empty() {
            Some(lit.clone().into_boxed_str())
        } else {
            None
        };
        if !lit.is_empty() {
            pieces.push(Piece::Literal(lit.into()));
        }
        Template {
            pieces: pieces.into(),
            literal,
        }
    }

    /// The expansion, when it does not depend on the match.
    pub(super) fn literal(&self) -> Option<&str> {
        self.literal.as_deref()
    }

    /// Appends the expansion for a match of the template's regex against `src`.
    pub(super) fn expand_into(&self, src: &str, groups: &Groups<'_>, out: &mut String) {
        for piece in self.pieces.iter() {
            match (piece, groups) {
                (Piece::Literal(s), _) => out.push_str(s),
                (Piece::Group(_), Groups::Whole) => out.push_str(src),
                (Piece::Group(i), Groups::Locs(locs)) => {
                    if let Some((start, end)) = locs.get(*i) {
                        out.push_str(&src[start..end]);
                    }
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn expand(regex: &str, template: &str, src: &str) -> String {
        let re = Regex::new(regex).expect("regex");
        let t = Template::parse(template, &re);
        let mut locs = re.capture_locations();
        re.captures_read(&mut locs, src).expect("matches");
        let mut out = String::new();
        t.expand_into(src, &Groups::Locs(&locs), &mut out);
        if let Some(lit) = t.literal() {
            assert_eq!(lit, out, "literal must equal the expansion");
        }
        out
    }

    #[test]
    fn numbered_and_named_references() {
        let re = r"^(\w+)-(?P<rest>\w+)$";
        assert_eq!(expand(re, "$1", "ab-cd"), "ab");
        assert_eq!(expand(re, "${2}", "ab-cd"), "cd");
        assert_eq!(expand(re, "$rest.$1", "ab-cd"), "cd.ab");
        assert_eq!(expand(re, "${rest}x", "ab-cd"), "cdx");
        assert_eq!(expand(re, "$0", "ab-cd"), "ab-cd");
    }

    #[test]
    fn greedy_names_follow_go() {
        let re = r"^(a)(b)$";
        // `$1x` names the (absent) group `1x`; `${1}x` is group 1 then `x`.
        assert_eq!(expand(re, "$1x", "ab"), "");
        assert_eq!(expand(re, "${1}x", "ab"), "ax");
        // A leading zero makes a name, not a number.
        assert_eq!(expand(re, "$01", "ab"), "");
        // Out-of-range groups are empty.
        assert_eq!(expand(re, "[$3]", "ab"), "[]");
        // Go reads any Unicode letter as part of the name.
        assert_eq!(expand(re, "$1é", "ab"), "");
    }

    #[test]
    fn dollar_escapes_and_malformed_references() {
        let re = r"^(a)$";
        assert_eq!(expand(re, "$$1", "a"), "$1");
        assert_eq!(expand(re, "cost: $", "a"), "cost: $");
        assert_eq!(expand(re, "$-$1", "a"), "$-a");
        assert_eq!(expand(re, "${1", "a"), "${1");
        assert_eq!(expand(re, "${}", "a"), "${}");
    }

    #[test]
    fn unmatched_optional_group_is_empty() {
        assert_eq!(expand(r"^(a)|(b)$", "[$1|$2]", "b"), "[|b]");
    }

    #[test]
    fn literal_detection() {
        let re = Regex::new("^(a)$").expect("regex");
        assert_eq!(Template::parse("x$$y", &re).literal(), Some("x$y"));
        assert_eq!(Template::parse("x$9", &re).literal(), Some("x"));
        assert_eq!(Template::parse("x$1", &re).literal(), None);
    }
}
