//! Byte offsets in the config text → what an error message shows: the line and column,
//! and for errors reported by the TOML parser, the dotted key path at that offset.
//!
//! The TOML parser gives a byte span and a message (which names the key but not the
//! tables above it). [`key_path_at`] recovers the full path, e.g.
//! `scrape_configs[1].static_configs[0].labels.env`, by scanning the text the way a TOML
//! reader walks it: table headers (counting `[[array]]` entries), dotted keys, arrays and
//! inline tables. The scan is tolerant: it runs on text that may have failed to parse, it
//! never panics, and on anything it does not understand it returns the deepest path it
//! has seen so far.

use std::collections::HashMap;

/// 1-based line and column of a byte offset. Columns count characters, as the TOML
/// parser's own messages do.
pub(super) fn line_column(text: &str, offset: usize) -> (usize, usize) {
    let before = &text.as_bytes()[..offset.min(text.len())];
    let line_start = before
        .iter()
        .rposition(|&b| b == b'\n')
        .map_or(0, |i| i + 1);
    let line = before.iter().filter(|&&b| b == b'\n').count() + 1;
    let column = String::from_utf8_lossy(&before[line_start..])
        .chars()
        .count()
        + 1;
    (line, column)
}

/// The dotted key path of the key, value or table header at byte `offset`, e.g.
/// `global.scrape_interval` or `scrape_configs[2].static_configs[0].targets[1]`. Empty
/// when the offset is outside any key (top-level whitespace before the first table).
pub(super) fn key_path_at(text: &str, offset: usize) -> String {
    let mut scanner = Scanner {
        b: text.as_bytes(),
        pos: 0,
        target: offset,
        array_tables: HashMap::new(),
        best: String::new(),
    };
    scanner.document();
    scanner.best
}

/// Renders one key segment: bare keys as they are, others quoted.
pub(super) fn key_segment(name: &str) -> String {
    if !name.is_empty() && name.bytes().all(is_bare_key_byte) {
        name.to_owned()
    } else {
        format!("{name:?}")
    }
}

fn is_bare_key_byte(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b == b'_' || b == b'-'
}

/// Nesting deeper than this (arrays in arrays ...) is not followed; the path stops there.
const MAX_DEPTH: usize = 32;

struct Scanner<'a> {
    b: &'a [u8],
    pos: usize,
    target: usize,
    /// Entry counts of `[[array]]` tables, keyed by the array's concrete path.
    array_tables: HashMap<String, usize>,
    best: String,
}

impl Scanner<'_> {
    fn peek(&self) -> Option<u8> {
        self.b.get(self.pos).copied()
    }

    fn at(&self, s: &[u8]) -> bool {
        self.b[self.pos.min(self.b.len())..].starts_with(s)
    }

    fn skip_blank(&mut self) {
        while matches!(self.peek(), Some(b' ' | b'\t')) {
            self.pos += 1;
        }
    }

    /// Skips blanks, newlines and comments.
    fn skip_space(&mut self) {
        loop {
            match self.peek() {
                Some(b' ' | b'\t' | b'\r' | b'\n') => self.pos += 1,
                Some(b'#') => self.skip_line(),
                _ => return,
            }
        }
    }

    fn skip_line(&mut self) {
        while let Some(c) = self.peek() {
            self.pos += 1;
            if c == b'\n' {
                return;
            }
        }
    }

    fn document(&mut self) {
        let mut table = String::new();
        loop {
            self.skip_space();
            let start = self.pos;
            if start >= self.b.len() || start > self.target {
                return;
            }
            if self.peek() == Some(b'[') {
                table = self.header();
                self.best = table.clone();
                if self.target < self.pos {
                    return;
                }
            } else {
                let keys = self.key();
                let path = join(&table, &keys);
                if self.target < self.pos {
                    self.best = path;
                    return;
                }
                self.skip_blank();
                if self.peek() == Some(b'=') {
                    self.pos += 1;
                }
                self.skip_blank();
                if self.target < self.pos {
                    self.best = path;
                    return;
                }
                if self.value(&path, 0) {
                    return;
                }
                self.best = table.clone();
            }
            if self.pos == start {
                // Not something this scanner understands; step over it.
                self.pos += 1;
            }
        }
    }

    /// Parses `[a.b]` or `[[a.b]]` and returns its concrete path, e.g. `a[2].b`.
    fn header(&mut self) -> String {
        let array = self.at(b"[[");
        self.pos += if array { 2 } else { 1 };
        self.skip_blank();
        let keys = self.key();
        self.skip_blank();
        if self.at(b"]]") {
            self.pos += 2;
        } else if self.peek() == Some(b']') {
            self.pos += 1;
        }
        let mut path = String::new();
        for (i, key) in keys.iter().enumerate() {
            if !path.is_empty() {
                path.push('.');
            }
            path.push_str(&key_segment(key));
            if array && i + 1 == keys.len() {
                let count = self.array_tables.entry(path.clone()).or_insert(0);
                let index = *count;
                *count += 1;
                path.push_str(&format!("[{index}]"));
            } else if let Some(count) = self.array_tables.get(&path) {
                path.push_str(&format!("[{}]", count.saturating_sub(1)));
            }
        }
        self.skip_blank();
        if self.peek() == Some(b'#') {
            self.skip_line();
        }
        path
    }

    /// Parses a possibly dotted key and returns its segments (quotes removed).
    fn key(&mut self) -> Vec<String> {
        let mut keys = Vec::new();
        loop {
            self.skip_blank();
            match self.peek() {
                Some(q @ (b'"' | b'\'')) => {
                    let start = self.pos + 1;
                    self.skip_string(q);
                    let end = self.pos.saturating_sub(1).max(start);
                    keys.push(String::from_utf8_lossy(&self.b[start..end]).into_owned());
                }
                Some(c) if is_bare_key_byte(c) => {
                    let start = self.pos;
                    while self.peek().is_some_and(is_bare_key_byte) {
                        self.pos += 1;
                    }
                    keys.push(String::from_utf8_lossy(&self.b[start..self.pos]).into_owned());
                }
                _ => return keys,
            }
            self.skip_blank();
            if self.peek() == Some(b'.') {
                self.pos += 1;
            } else {
                return keys;
            }
        }
    }

    /// Skips a string starting at the current quote (basic, literal, or either multi-line
    /// form). An unterminated single-line string ends at the end of its line.
    fn skip_string(&mut self, quote: u8) {
        let triple = [quote; 3];
        if self.at(&triple) {
            self.pos += 3;
            while self.pos < self.b.len() {
                if quote == b'"' && self.peek() == Some(b'\\') {
                    self.pos += 2;
                } else if self.at(&triple) {
                    self.pos += 3;
                    // Up to two more quotes may belong to the content.
                    while self.peek() == Some(quote) {
                        self.pos += 1;
                    }
                    return;
                } else {
                    self.pos += 1;
                }
            }
            self.pos = self.pos.min(self.b.len());
            return;
        }
        self.pos += 1;
        while let Some(c) = self.peek() {
            match c {
                b'\\' if quote == b'"' => self.pos += 2,
                b'\n' => return,
                c if c == quote => {
                    self.pos += 1;
                    return;
                }
                _ => self.pos += 1,
            }
        }
        self.pos = self.pos.min(self.b.len());
    }

    /// Walks one value. Returns true once the target offset lies inside it, with `best`
    /// set to the deepest path containing the target.
    fn value(&mut self, path: &str, depth: usize) -> bool {
        let start = self.pos;
        if depth > MAX_DEPTH {
            self.best = path.to_owned();
            return true;
        }
        match self.peek() {
            Some(b'[') => {
                self.pos += 1;
                let mut index = 0;
                loop {
                    self.skip_space();
                    match self.peek() {
                        None => break,
                        Some(b']') => {
                            self.pos += 1;
                            break;
                        }
                        Some(b',') => {
                            self.pos += 1;
                            index += 1;
                            continue;
                        }
                        Some(_) => {}
                    }
                    if self.pos > self.target {
                        self.best = path.to_owned();
                        return true;
                    }
                    let element_start = self.pos;
                    if self.value(&format!("{path}[{index}]"), depth + 1) {
                        return true;
                    }
                    if self.pos == element_start {
                        self.pos += 1;
                    }
                }
            }
            Some(b'{') => {
                self.pos += 1;
                loop {
                    self.skip_blank();
                    match self.peek() {
                        None | Some(b'\n') => break,
                        Some(b'}') => {
                            self.pos += 1;
                            break;
                        }
                        Some(b',') => {
                            self.pos += 1;
                            continue;
                        }
                        Some(_) => {}
                    }
                    if self.pos > self.target {
                        self.best = path.to_owned();
                        return true;
                    }
                    let key_start = self.pos;
                    let keys = self.key();
                    let key_path = join(path, &keys);
                    if self.target < self.pos {
                        self.best = key_path;
                        return true;
                    }
                    self.skip_blank();
                    if self.peek() == Some(b'=') {
                        self.pos += 1;
                    }
                    self.skip_blank();
                    if self.value(&key_path, depth + 1) {
                        return true;
                    }
                    if self.pos == key_start {
                        self.pos += 1;
                    }
                }
            }
            Some(q @ (b'"' | b'\'')) => {
                self.skip_string(q);
                // The parser reports an unterminated string at the end of its line, just
                // past what was skipped.
                if start <= self.target && self.target <= self.pos {
                    self.best = path.to_owned();
                    return true;
                }
            }
            Some(_) => {
                while let Some(c) = self.peek() {
                    if matches!(c, b' ' | b'\t' | b'\r' | b'\n' | b',' | b']' | b'}' | b'#') {
                        break;
                    }
                    self.pos += 1;
                }
            }
            None => {}
        }
        if start <= self.target && self.target < self.pos {
            self.best = path.to_owned();
            return true;
        }
        false
    }
}

fn join(base: &str, keys: &[String]) -> String {
    let mut path = base.to_owned();
    for key in keys {
        if !path.is_empty() {
            path.push('.');
        }
        path.push_str(&key_segment(key));
    }
    path
}

#[cfg(test)]
mod tests {
    use super::*;

    fn path_at(text: &str, needle: &str) -> String {
        let offset = text.find(needle).expect("needle in text");
        key_path_at(text, offset)
    }

    #[test]
    fn line_column_counts_characters() {
        let text = "a = 1\nbé = \"x\"\n";
        assert_eq!(line_column(text, 0), (1, 1));
        assert_eq!(line_column(text, 6), (2, 1));
        assert_eq!(
            line_column(text, 10),
            (2, 4),
            "'=' after a two-byte character"
        );
        assert_eq!(line_column(text, 10_000), (3, 1));
    }

    #[test]
    fn finds_keys_under_headers_and_array_tables() {
        let text = "[global]\nscrape_interval = \"1m\"\n\n[[scrape_configs]]\njob_name = \"a\"\n\
                    [[scrape_configs.static_configs]]\ntargets = [\"x\", \"y/z\"]\n\
                    [[scrape_configs]]\njob_name = \"b\"\nscrape_timeout = \"9m\"\n\
                    [[scrape_configs.static_configs]]\nlabels = { env = \"p\", \"a b\" = 1 }\n";
        assert_eq!(path_at(text, "scrape_interval"), "global.scrape_interval");
        assert_eq!(path_at(text, "\"1m\""), "global.scrape_interval");
        assert_eq!(path_at(text, "\"a\""), "scrape_configs[0].job_name");
        assert_eq!(
            path_at(text, "\"y/z\""),
            "scrape_configs[0].static_configs[0].targets[1]"
        );
        assert_eq!(path_at(text, "\"9m\""), "scrape_configs[1].scrape_timeout");
        assert_eq!(
            path_at(text, "env"),
            "scrape_configs[1].static_configs[0].labels.env"
        );
        assert_eq!(
            path_at(text, "1 }"),
            "scrape_configs[1].static_configs[0].labels.\"a b\""
        );
        let second = text.rfind("[[scrape_configs]]").unwrap_or(0);
        assert_eq!(key_path_at(text, second), "scrape_configs[1]");
    }

    #[test]
    fn follows_inline_arrays_of_tables_and_dotted_keys() {
        let text = "scrape_configs = [\n  { job_name = \"a\" },\n  { job_name = \"b\", basic_auth.usernme = \"u\" },\n]\n";
        assert_eq!(path_at(text, "\"b\""), "scrape_configs[1].job_name");
        assert_eq!(
            path_at(text, "usernme"),
            "scrape_configs[1].basic_auth.usernme"
        );
    }

    #[test]
    fn skips_strings_and_comments_that_look_like_syntax() {
        let text = "# [[scrape_configs]]\n[web]\nlisten_address = \"[[x]] # = {\" # [storage]\n\
                    enable_lifecycle = '''\n[not]\n''' \nbad = 1\n";
        assert_eq!(path_at(text, "bad"), "web.bad");
    }

    #[test]
    fn tolerates_broken_text() {
        for text in [
            "[global\nfoo",
            "a = [1, 2",
            "a = {b = ",
            "\"unterminated",
            "[[",
            "]]]",
            "a.=.b",
        ] {
            for offset in 0..=text.len() + 1 {
                let _ = key_path_at(text, offset);
            }
        }
        assert_eq!(key_path_at("[global\nfoo = 1", 8), "global.foo");
        let deep = "a = ".to_owned() + &"[".repeat(10_000);
        assert!(key_path_at(&deep, deep.len() - 1).starts_with("a[0]"));
    }
}
