//! Structured logging to stderr, logfmt by default, JSON on request.
//!
//! One line per event, written with a single `write` so lines from different threads never
//! interleave. Callers must not pass secrets: URLs are logged through
//! [`redact_url`], which strips userinfo.

use std::fmt::Write as _;
use std::io::Write as _;
use std::sync::atomic::{AtomicU8, Ordering};

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Level {
    Debug = 0,
    Info = 1,
    Warn = 2,
    Error = 3,
}

impl Level {
    fn as_str(self) -> &'static str {
        match self {
            Level::Debug => "debug",
            Level::Info => "info",
            Level::Warn => "warn",
            Level::Error => "error",
        }
    }
}

static MIN_LEVEL: AtomicU8 = AtomicU8::new(Level::Info as u8);
static JSON: AtomicU8 = AtomicU8::new(0);

/// Sets the lowest level written and the output format.
pub fn configure(min: Level, json: bool) {
    MIN_LEVEL.store(min as u8, Ordering::Relaxed);
    JSON.store(u8::from(json), Ordering::Relaxed);
}

pub fn enabled(level: Level) -> bool {
    level as u8 >= MIN_LEVEL.load(Ordering::Relaxed)
}

/// Writes one event. `fields` are key/value pairs rendered after the message.
pub fn event(level: Level, msg: &str, fields: &[(&str, &dyn std::fmt::Display)]) {
    if !enabled(level) {
        return;
    }
    let ts = crate::time::rfc3339_millis(crate::time::unix_ms());
    let mut line = String::with_capacity(128);
    if JSON.load(Ordering::Relaxed) == 1 {
        line.push('{');
        push_json_pair(&mut line, "ts", &ts);
        line.push(',');
        push_json_pair(&mut line, "level", level.as_str());
        line.push(',');
        push_json_pair(&mut line, "msg", msg);
        for (k, v) in fields {
            line.push(',');
            push_json_pair(&mut line, k, &v.to_string());
        }
        line.push('}');
    } else {
        let _ = write!(line, "ts={ts} level={} msg=", level.as_str());
        push_logfmt_value(&mut line, msg);
        for (k, v) in fields {
            let _ = write!(line, " {k}=");
            push_logfmt_value(&mut line, &v.to_string());
        }
    }
    line.push('\n');
    let _ = std::io::stderr().lock().write_all(line.as_bytes());
}

fn push_logfmt_value(out: &mut String, v: &str) {
    let needs_quotes = v.is_empty() || v.bytes().any(|b| b <= b' ' || b == b'"' || b == b'=');
    if !needs_quotes {
        out.push_str(v);
        return;
    }
    out.push('"');
    for c in v.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            c => out.push(c),
        }
    }
    out.push('"');
}

fn push_json_pair(out: &mut String, k: &str, v: &str) {
    out.push_str(&serde_json::Value::from(k).to_string());
    out.push(':');
    out.push_str(&serde_json::Value::from(v).to_string());
}

/// A URL with any `user:password@` removed, safe for logs, errors and the API.
pub fn redact_url(url: &str) -> std::borrow::Cow<'_, str> {
    let Some(scheme_end) = url.find("://") else {
        return url.into();
    };
    let rest = &url[scheme_end + 3..];
    let authority_end = rest.find(['/', '?', '#']).unwrap_or(rest.len());
    match rest[..authority_end].rfind('@') {
        Some(at) => format!("{}://{}", &url[..scheme_end], &rest[at + 1..]).into(),
        None => url.into(),
    }
}

/// A `host:port` target address with any `user:password@` replaced by `xxxxx@`, so it
/// still shows that credentials were there. Discovery may hand out such addresses; the
/// pool refuses them as targets, and this keeps the refusal (and the discovered labels
/// shown by the API) from repeating the secret.
pub fn redact_address(addr: &str) -> std::borrow::Cow<'_, str> {
    match addr.rsplit_once('@') {
        Some((_, host)) => format!("xxxxx@{host}").into(),
        None => addr.into(),
    }
}

#[macro_export]
macro_rules! log_at {
    ($level:expr, $msg:expr $(, $k:ident = $v:expr)* $(,)?) => {
        if $crate::log::enabled($level) {
            $crate::log::event($level, $msg, &[$((stringify!($k), &$v as &dyn std::fmt::Display)),*]);
        }
    };
}

#[macro_export]
macro_rules! info { ($($t:tt)*) => { $crate::log_at!($crate::log::Level::Info, $($t)*) }; }
#[macro_export]
macro_rules! warn { ($($t:tt)*) => { $crate::log_at!($crate::log::Level::Warn, $($t)*) }; }
#[macro_export]
macro_rules! error { ($($t:tt)*) => { $crate::log_at!($crate::log::Level::Error, $($t)*) }; }
#[macro_export]
macro_rules! debug { ($($t:tt)*) => { $crate::log_at!($crate::log::Level::Debug, $($t)*) }; }

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn redacts_userinfo_only() {
        assert_eq!(redact_url("http://u:p@h:1/x?a=@"), "http://h:1/x?a=@");
        assert_eq!(redact_url("https://h/x"), "https://h/x");
        assert_eq!(redact_url("not a url"), "not a url");
    }

    #[test]
    fn redacts_address_userinfo() {
        assert_eq!(redact_address("u:p@h:1"), "xxxxx@h:1");
        assert_eq!(redact_address("u:p@x@h:1"), "xxxxx@h:1");
        assert_eq!(redact_address("h:1"), "h:1");
    }

    #[test]
    fn logfmt_quotes_when_needed() {
        let mut s = String::new();
        push_logfmt_value(&mut s, "a b\"c");
        assert_eq!(s, r#""a b\"c""#);
        s.clear();
        push_logfmt_value(&mut s, "plain");
        assert_eq!(s, "plain");
    }
}
