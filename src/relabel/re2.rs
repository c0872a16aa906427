//! RE2 (Go `regexp`) syntax → Rust `regex` syntax, for relabel regexes.
//!
//! Prometheus compiles relabel regexes with Go's RE2 engine. The Rust `regex` crate
//! accepts almost the same language, but a handful of constructs that users copy from
//! working prometheus.yml files would be rejected or would match differently:
//!
//! | RE2 (Go) | Rust default | rewritten to |
//! |---|---|---|
//! | `\d \s \w` (and negations) are ASCII-only | Unicode-aware | explicit ASCII classes |
//! | `\b \B` ASCII word boundary | Unicode word boundary | `(?-u:\b)` / `(?-u:\B)` |
//! | `\Q…\E` quotes a literal | unsupported | each character escaped |
//! | `{` not starting a valid `{n}`, `{n,}`, `{n,m}` is a literal | error | `\{` |
//! | `\<` `\>` are literal `<` `>` | word-start/end assertions | `<` / `>` |
//! | `[` inside a class is literal (bar `[:name:]`) | nested class | `\[` |
//! | `&&`, `--`, `~~` inside a class are literals | set operations | escaped |
//! | `\0`, `\012` octal escapes | off by default | kept; compiled with `octal(true)` |
//! | `\1`…`\7` alone (a backreference) | octal under `octal(true)` | rejected, as RE2 does |
//!
//! Everything else is copied byte for byte; the `regex` crate then reports any remaining
//! syntax error. The rewrite runs once per rule at config load, never per sample.
//!
//! Known, accepted differences: RE2 caps counted repetitions at 1000 and rejects `a**`,
//! Rust accepts both; RE2 allows capture-group names that start with a digit, Rust does
//! not.

/// Go's `\d`, `\s`, `\w` and their negations, spelled as ASCII classes. They are valid
/// both on their own and nested inside another class (`[a\d]` → `[a[0-9]]`).
fn perl_class(c: char) -> Option<&'static str> {
    Some(match c {
        'd' => "[0-9]",
        'D' => "[^0-9]",
        's' => r"[\t\n\f\r ]",
        'S' => r"[^\t\n\f\r ]",
        'w' => "[0-9A-Za-z_]",
        'W' => "[^0-9A-Za-z_]",
        _ => return None,
    })
}

/// Rewrites an RE2 pattern into an equivalent Rust `regex` pattern. The error is a short
/// reason for constructs RE2 itself rejects but Rust would accept with another meaning.
pub(super) fn translate(src: &str) -> Result<String, String> {
    let mut out = String::with_capacity(src.len() + 16);
    let mut rest = src;
    while let Some(c) = rest.chars().next() {
        rest = match c {
            '\\' => escape(rest, &mut out)?,
            '[' => class(rest, &mut out)?,
            '{' => {
                let n = repeat_len(rest);
                if n == 0 {
                    out.push_str(r"\{");
                    &rest[1..]
                } else {
                    out.push_str(&rest[..n]);
                    &rest[n..]
                }
            }
            _ => {
                out.push(c);
                &rest[c.len_utf8()..]
            }
        };
    }
    Ok(out)
}

/// Length of a counted repetition `{n}`, `{n,}` or `{n,m}` at the start of `s` as RE2
/// parses it (decimal, no leading zeros, no spaces), or 0 when `{` is a literal.
fn repeat_len(s: &str) -> usize {
    let b = s.as_bytes();
    let int = |from: usize| -> Option<usize> {
        let len = b[from..].iter().take_while(|c| c.is_ascii_digit()).count();
        match len {
            0 => None,
            // RE2 reads `{01}` as literal text, not as a repetition.
            _ if len > 1 && b[from] == b'0' => None,
            _ => Some(from + len),
        }
    };
    let Some(mut i) = int(1) else { return 0 };
    if b.get(i) == Some(&b',') {
        i += 1;
        if b.get(i) != Some(&b'}') {
            match int(i) {
                Some(end) => i = end,
                None => return 0,
            }
        }
    }
    if b.get(i) == Some(&b'}') {
        i + 1
    } else {
        0
    }
}

/// Length of the escape `\p…`, `\P…` or `\x…` at the start of `s`: either a braced
/// argument (through `}`) or `short` characters after the letter.
fn braced_escape_len(s: &str, short: usize) -> usize {
    let arg = &s[2..];
    if arg.starts_with('{') {
        arg.find('}').map_or(s.len(), |end| 2 + end + 1)
    } else {
        2 + arg.chars().take(short).map(char::len_utf8).sum::<usize>()
    }
}

/// Length of an octal escape at the start of `s` (`\` plus one to three octal digits),
/// or an error for `\1`…`\7` standing alone, which RE2 reads as an unsupported
/// backreference.
fn octal_len(s: &str) -> Result<usize, String> {
    let b = s.as_bytes();
    let digits = b[1..]
        .iter()
        .take(3)
        .take_while(|c| (b'0'..=b'7').contains(*c))
        .count();
    if b[1] != b'0' && digits == 1 {
        return Err(format!(
            "backreference {} is not supported (RE2 syntax)",
            &s[..2]
        ));
    }
    Ok(1 + digits)
}

/// Handles an escape outside a class; `s` starts with `\`. Returns the rest of `s`.
fn escape<'a>(s: &'a str, out: &mut String) -> Result<&'a str, String> {
    let Some(c) = s[1..].chars().next() else {
        // A trailing backslash: let the regex crate report it.
        out.push('\\');
        return Ok("");
    };
    let after = &s[1 + c.len_utf8()..];
    if let Some(class) = perl_class(c) {
        out.push_str(class);
        return Ok(after);
    }
    match c {
        'Q' => {
            let (lit, rest) = match after.find(r"\E") {
                Some(end) => (&after[..end], &after[end + 2..]),
                None => (after, ""),
            };
            out.push_str(&regex::escape(lit));
            Ok(rest)
        }
        'b' => {
            out.push_str(r"(?-u:\b)");
            Ok(after)
        }
        'B' => {
            out.push_str(r"(?-u:\B)");
            Ok(after)
        }
        '<' | '>' => {
            out.push(c);
            Ok(after)
        }
        'p' | 'P' | 'x' => {
            let n = braced_escape_len(s, if c == 'x' { 2 } else { 1 });
            out.push_str(&s[..n]);
            Ok(&s[n..])
        }
        '0'..='7' => {
            let n = octal_len(s)?;
            out.push_str(&s[..n]);
            Ok(&s[n..])
        }
        _ => {
            out.push_str(&s[..1 + c.len_utf8()]);
            Ok(after)
        }
    }
}

/// Translates one class item that can be a range endpoint; `s` is non-empty. Returns
/// the Rust spelling and the rest of `s`.
fn class_char(s: &str) -> Result<(String, &str), String> {
    let mut chars = s.chars();
    let Some(c) = chars.next() else {
        return Err("missing closing ]".to_owned());
    };
    if c != '\\' {
        let text = if "[]\\^-&~".contains(c) {
            format!("\\{c}")
        } else {
            c.to_string()
        };
        return Ok((text, &s[c.len_utf8()..]));
    }
    let Some(e) = chars.next() else {
        return Err("trailing backslash".to_owned());
    };
    let n = match e {
        'x' => braced_escape_len(s, 2),
        '0'..='7' => octal_len(s)?,
        '<' | '>' => return Ok((e.to_string(), &s[2..])),
        _ => 1 + e.len_utf8(),
    };
    Ok((s[..n].to_owned(), &s[n..]))
}

/// Translates a bracketed class; `s` starts with `[`. Returns the rest after `]`.
fn class<'a>(s: &'a str, out: &mut String) -> Result<&'a str, String> {
    let mut s = &s[1..];
    out.push('[');
    if let Some(r) = s.strip_prefix('^') {
        out.push('^');
        s = r;
    }
    // A `]` right after `[` or `[^` is a literal member, in RE2 as in Rust.
    let mut first = true;
    loop {
        if s.is_empty() {
            return Err("missing closing ]".to_owned());
        }
        if !first {
            if let Some(r) = s.strip_prefix(']') {
                out.push(']');
                return Ok(r);
            }
        }
        first = false;
        if s.starts_with("[:") {
            if let Some(end) = s[2..].find(":]") {
                let n = 2 + end + 2;
                out.push_str(&s[..n]);
                s = &s[n..];
                continue;
            }
        }
        if let Some(e) = s.strip_prefix('\\').and_then(|r| r.chars().next()) {
            if let Some(class) = perl_class(e) {
                out.push_str(class);
                s = &s[2..];
                continue;
            }
            if e == 'p' || e == 'P' {
                let n = braced_escape_len(s, 1);
                out.push_str(&s[..n]);
                s = &s[n..];
                continue;
            }
        }
        let (lo, rest) = class_char(s)?;
        out.push_str(&lo);
        s = rest;
        // `a-z` is a range; `a-]` is `a` and a literal `-`.
        if let Some(r) = s.strip_prefix('-') {
            if !r.is_empty() && !r.starts_with(']') {
                let (hi, rest) = class_char(r)?;
                out.push('-');
                out.push_str(&hi);
                s = rest;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::translate;

    fn re(pattern: &str) -> regex::Regex {
        let t = translate(pattern).expect("translates");
        regex::RegexBuilder::new(&format!("^(?s:{t})$"))
            .octal(true)
            .build()
            .expect("compiles")
    }

    #[test]
    fn perl_classes_are_ascii_only() {
        assert!(re(r"\d+").is_match("0129"));
        assert!(
            !re(r"\d").is_match("٣"),
            "Arabic-Indic digit is not \\d in RE2"
        );
        assert!(!re(r"\w").is_match("é"));
        assert!(re(r"\W").is_match("é"));
        assert!(!re(r"\s").is_match("\u{a0}"));
        assert!(!re(r"\s").is_match("\u{b}"), "RE2 \\s excludes \\v");
        assert!(re(r"[\d.]+").is_match("1.2"));
        assert!(re(r"[^\D]").is_match("7"));
        assert!(!re(r"[^\D]").is_match("x"));
    }

    #[test]
    fn word_boundary_is_ascii() {
        assert!(re(r".*\bfoo\b.*").is_match("a foo b"));
        // Between 'é' and 'f' RE2 sees a boundary, since 'é' is not an ASCII word char.
        assert!(re(r"é\bfoo").is_match("éfoo"));
    }

    #[test]
    fn quoted_literals() {
        assert!(re(r"\Qa.b*\E+").is_match("a.b*"));
        assert!(!re(r"\Qa.b\E").is_match("axb"));
        assert!(
            re(r"x\Q(.*").is_match("x(.*"),
            "\\Q without \\E runs to the end"
        );
    }

    #[test]
    fn brace_is_literal_unless_repetition() {
        assert!(re("a{2}").is_match("aa"));
        assert!(re("a{1,}").is_match("aaa"));
        assert!(re("a{1,2}").is_match("aa"));
        assert!(re("a{").is_match("a{"));
        assert!(re("a{,5}").is_match("a{,5}"));
        assert!(re("a{01}").is_match("a{01}"));
        assert!(re("{foo}").is_match("{foo}"));
        assert!(re(r"\p{Greek}+").is_match("αβ"));
        assert!(re(r"\x{41}").is_match("A"));
    }

    #[test]
    fn angle_escapes_are_literals() {
        assert!(re(r"\<a\>").is_match("<a>"));
        assert!(re(r"[\<]").is_match("<"));
    }

    #[test]
    fn class_punctuation_is_literal() {
        assert!(re("[[]").is_match("["));
        assert!(re("[a[b]+").is_match("a[b"));
        assert!(re("[a&&b]").is_match("&"));
        assert!(re("[a~~b]").is_match("~"));
        assert!(re("[+--]").is_match(","), "range from + to -");
        assert!(re("[a-]").is_match("-"));
        assert!(re("[]a]").is_match("]"));
        assert!(re("[^]a]").is_match("b"));
        assert!(re("[[:alpha:]]+").is_match("abc"));
        assert!(re("[[:^digit:]]").is_match("a"));
    }

    #[test]
    fn octal_and_backreferences() {
        assert!(re(r"\0").is_match("\0"));
        assert!(re(r"\101").is_match("A"));
        assert!(re(r"\1012").is_match("A2"), "at most three octal digits");
        assert!(translate(r"(a)\1").is_err());
        assert!(translate(r"[\1]").is_err());
    }

    #[test]
    fn unclosed_class_is_an_error() {
        assert!(translate("[abc").is_err());
    }
}
