//! The HTTP side of remote write: one POST of one request body to one receiver, and what
//! the answer means for the block (sent, retry, or drop).
//!
//! Each receiver has its own ureq agent, shared by its shard threads, so connections are
//! kept alive per receiver. The agent follows no redirects (a 3xx is an answer like any
//! other non-2xx), never turns statuses into errors, takes no proxy from the environment
//! (only `proxy_url`), and carries the receiver's TLS settings. Every request has its own
//! timeout: `remote_timeout`, or less while draining at shutdown.
//!
//! Headers, as Prometheus sends them: `Content-Encoding: snappy`,
//! `Content-Type: application/x-protobuf`, `X-Prometheus-Remote-Write-Version: 0.1.0`,
//! `User-Agent: scrapewheel/<version>`, the configured `headers`, and `Authorization`
//! from `basic_auth` or `authorization` (`*_file` secrets re-read on every request, so a
//! rotated secret needs no reload).
//!
//! Errors never contain a credential: URLs are redacted and secrets are never formatted.

use crate::scrape::{LiteralResolver, TcpConnector};
use std::io::Read;
use std::path::{Path, PathBuf};
use std::time::Duration;

use ureq::http::header;
use ureq::tls::{Certificate, ClientCert, PemItem, PrivateKey, RootCerts, TlsConfig};
use ureq::Agent;

use crate::config::{RemoteWriteConfig, Secret, TlsConfig as TlsSettings};

/// The `User-Agent` of every request.
pub const USER_AGENT: &str = concat!("scrapewheel/", env!("CARGO_PKG_VERSION"));

/// Bytes of a receiver's error body kept for the log.
const ERROR_BODY_LIMIT: u64 = 512;

/// Why a receiver's client could not be built. Names the file or key involved.
#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    #[error("tls_config.{key}: reading {}: {source}", path.display())]
    ReadFile {
        key: &'static str,
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("tls_config.{key}: {}: {reason}", path.display())]
    Pem {
        key: &'static str,
        path: PathBuf,
        reason: String,
    },
    #[error("proxy_url {url:?}: {reason}")]
    Proxy { url: String, reason: String },
    #[error("tls_config: {0}")]
    Tls(String),
    #[error("{0}")]
    Unsupported(&'static str),
}

/// The status class a failed request is counted under.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Class {
    /// No HTTP answer: refused, reset, timed out, TLS failure.
    Network,
    Status1xx,
    Status3xx,
    Status4xx,
    Status5xx,
}

impl Class {
    pub const ALL: [Class; 5] = [
        Class::Network,
        Class::Status1xx,
        Class::Status3xx,
        Class::Status4xx,
        Class::Status5xx,
    ];

    pub fn label(self) -> &'static str {
        match self {
            Class::Network => "network",
            Class::Status1xx => "1xx",
            Class::Status3xx => "3xx",
            Class::Status4xx => "4xx",
            Class::Status5xx => "5xx",
        }
    }

    fn of(status: u16) -> Class {
        match status / 100 {
            1 => Class::Status1xx,
            3 => Class::Status3xx,
            5 => Class::Status5xx,
            _ => Class::Status4xx,
        }
    }
}

/// What one POST means for its body.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    /// 2xx: the receiver has it.
    Sent,
    /// Try again after a backoff (5xx, 429 with `retry_on_http_429`, no answer).
    Retry {
        class: Class,
        /// The receiver's `Retry-After`, when it sent one (5xx and 429 only).
        retry_after: Option<Duration>,
        error: String,
    },
    /// Any other answer: the receiver will never take this body.
    Drop {
        class: Class,
        status: u16,
        error: String,
    },
}

/// One receiver's HTTP client.
pub struct Client {
    agent: Agent,
    url: String,
    redacted: String,
    headers: Vec<(String, Secret)>,
    auth: Option<AuthSource>,
    retry_on_429: bool,
}

enum AuthSource {
    Basic {
        username: String,
        password: Option<Secret>,
        password_file: Option<PathBuf>,
    },
    Token {
        kind: String,
        credentials: Option<Secret>,
        credentials_file: Option<PathBuf>,
    },
}

impl Client {
    /// Builds the client, reading the TLS files once.
    pub fn new(cfg: &RemoteWriteConfig) -> Result<Client, ClientError> {
        let max_shards = cfg.queue_config.max_shards;
        let mut builder = Agent::config_builder()
            .http_status_as_error(false)
            .timeout_global(Some(cfg.remote_timeout))
            .max_redirects(0)
            .user_agent(USER_AGENT)
            .accept_encoding("")
            .max_idle_connections(max_shards.max(1))
            .max_idle_connections_per_host(max_shards.max(1))
            .proxy(None);
        if let Some(p) = &cfg.proxy_url {
            let proxy = ureq::Proxy::new(p).map_err(|e| ClientError::Proxy {
                url: crate::log::redact_url(p).into_owned(),
                reason: e.to_string(),
            })?;
            builder = builder.proxy(Some(proxy));
        }
        let named_tls = match &cfg.tls_config {
            Some(tls) => match &tls.server_name {
                Some(name) => Some(super::tls::NamedTls::new(tls, name)?),
                None => {
                    builder = builder.tls_config(tls_config(tls)?);
                    None
                }
            },
            None => None,
        };
        let auth = if let Some(b) = &cfg.basic_auth {
            Some(AuthSource::Basic {
                username: b.username.clone(),
                password: b.password.clone(),
                password_file: b.password_file.clone(),
            })
        } else {
            cfg.authorization.as_ref().map(|a| AuthSource::Token {
                kind: a.kind.clone(),
                credentials: a.credentials.clone(),
                credentials_file: a.credentials_file.clone(),
            })
        };
        let config = builder.build();
        // ureq's chain (CONNECT proxy, TCP, TLS) with the scrapers' TCP transport, which
        // sends a request's head and body in one write and probes a pooled connection with
        // one system call instead of three.
        use ureq::unversioned::transport::{ConnectProxyConnector, Connector, RustlsConnector};
        let tcp = ().chain(ConnectProxyConnector::default()).chain(TcpConnector::default());
        let agent = match named_tls {
            Some(tls) => Agent::with_parts(config, tcp.chain(tls), LiteralResolver::default()),
            None => Agent::with_parts(
                config,
                tcp.chain(RustlsConnector::default()),
                LiteralResolver::default(),
            ),
        };
        Ok(Client {
            agent,
            url: cfg.url.clone(),
            redacted: crate::log::redact_url(&cfg.url).into_owned(),
            headers: cfg.headers.clone(),
            auth,
            retry_on_429: cfg.queue_config.retry_on_http_429,
        })
    }

    /// POSTs one snappy-compressed `WriteRequest`.
    pub fn send(&self, body: &[u8], timeout: Duration) -> Outcome {
        let mut req = self
            .agent
            .post(&self.url)
            .header_raw("Content-Encoding", b"snappy")
            .header_raw("Content-Type", b"application/x-protobuf")
            .header_raw("User-Agent", USER_AGENT.as_bytes())
            .header_raw("X-Prometheus-Remote-Write-Version", b"0.1.0");
        for (name, value) in &self.headers {
            req = req.header_raw(name, value.expose().as_bytes());
        }
        if let Some(auth) = &self.auth {
            match auth.header_value() {
                Ok(v) => req = req.header_raw("Authorization", &v),
                // A missing secret file is a local problem that an operator can fix:
                // keep the data and retry rather than drop it.
                Err(error) => {
                    return Outcome::Retry {
                        class: Class::Network,
                        retry_after: None,
                        error,
                    }
                }
            }
        }
        let result = req
            .config()
            .timeout_global(Some(timeout))
            .build()
            .send(body);
        let mut resp = match result {
            Ok(r) => r,
            Err(e) => {
                return Outcome::Retry {
                    class: Class::Network,
                    retry_after: None,
                    error: format!("POST {}: {}", self.redacted, describe(&e)),
                }
            }
        };
        let status = resp.status().as_u16();
        let retry_after = resp
            .headers()
            .get(header::RETRY_AFTER)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| parse_retry_after(v, crate::time::unix_ms()));
        let mut text = String::new();
        if !(200..300).contains(&status) {
            let mut bytes = Vec::new();
            // The body only decorates the error message; a failed read leaves it empty.
            let _ = resp
                .body_mut()
                .as_reader()
                .take(ERROR_BODY_LIMIT)
                .read_to_end(&mut bytes);
            text = String::from_utf8_lossy(&bytes)
                .chars()
                .map(|c| if c.is_control() { ' ' } else { c })
                .collect::<String>()
                .trim()
                .to_owned();
        } else {
            // Drain a short success body so the connection can be reused.
            let _ = std::io::copy(
                &mut resp.body_mut().as_reader().take(ERROR_BODY_LIMIT),
                &mut std::io::sink(),
            );
        }
        classify(status, retry_after, self.retry_on_429, || {
            let reason = ureq::http::StatusCode::from_u16(status)
                .ok()
                .and_then(|s| s.canonical_reason())
                .unwrap_or("");
            format!(
                "server returned HTTP status {status} {reason}: {text}",
                reason = reason
            )
            .trim_end_matches([' ', ':'])
            .to_owned()
        })
    }
}

/// What a status means, as Prometheus's remote-write client decides it.
fn classify(
    status: u16,
    retry_after: Option<Duration>,
    retry_on_429: bool,
    error: impl FnOnce() -> String,
) -> Outcome {
    if (200..300).contains(&status) {
        return Outcome::Sent;
    }
    let class = Class::of(status);
    if status >= 500 || (status == 429 && retry_on_429) {
        Outcome::Retry {
            class,
            retry_after,
            error: error(),
        }
    } else {
        Outcome::Drop {
            class,
            status,
            error: error(),
        }
    }
}

/// A transport error in words, without any URL ureq may have put in it.
fn describe(e: &ureq::Error) -> String {
    match e {
        ureq::Error::Timeout(t) => format!("timeout ({t})"),
        ureq::Error::Io(io) => io.to_string(),
        ureq::Error::HostNotFound => "no such host".to_owned(),
        ureq::Error::ConnectionFailed => "connection failed".to_owned(),
        ureq::Error::Tls(_) | ureq::Error::Rustls(_) | ureq::Error::Pem(_) => {
            format!("TLS: {e}")
        }
        ureq::Error::BadUri(_) | ureq::Error::Http(_) => "invalid request".to_owned(),
        other => other.to_string(),
    }
}

impl AuthSource {
    fn header_value(&self) -> Result<Vec<u8>, String> {
        let mut value = Vec::with_capacity(64);
        match self {
            AuthSource::Basic {
                username,
                password,
                password_file,
            } => {
                let password = secret(password.as_ref(), password_file.as_deref())?;
                let mut plain = Vec::with_capacity(username.len() + 1 + password.len());
                plain.extend_from_slice(username.as_bytes());
                plain.push(b':');
                plain.extend_from_slice(&password);
                value.extend_from_slice(b"Basic ");
                crate::scrape::base64_encode(&plain, &mut value);
            }
            AuthSource::Token {
                kind,
                credentials,
                credentials_file,
            } => {
                let credentials = secret(credentials.as_ref(), credentials_file.as_deref())?;
                value.extend_from_slice(kind.as_bytes());
                value.push(b' ');
                value.extend_from_slice(&credentials);
            }
        }
        if value.iter().any(|&b| b != b'\t' && (b < 0x20 || b == 0x7f)) {
            return Err("the configured credentials are not a valid header value".to_owned());
        }
        Ok(value)
    }
}

/// An inline secret, or a file's content trimmed (as Prometheus does).
fn secret(inline: Option<&Secret>, file: Option<&Path>) -> Result<Vec<u8>, String> {
    match (inline, file) {
        (_, Some(path)) => std::fs::read(path)
            .map(|b| match std::str::from_utf8(&b) {
                Ok(s) => s.trim().as_bytes().to_vec(),
                Err(_) => b.trim_ascii().to_vec(),
            })
            .map_err(|e| format!("reading credentials file {}: {e}", path.display())),
        (Some(s), None) => Ok(s.expose().as_bytes().to_vec()),
        (None, None) => Ok(Vec::new()),
    }
}

/// ureq's TLS settings for a receiver without `server_name` (see `tls` for those with).
fn tls_config(t: &TlsSettings) -> Result<TlsConfig, ClientError> {
    let mut b = TlsConfig::builder().disable_verification(t.insecure_skip_verify);
    if let Some(ca) = &t.ca_file {
        let pem = read("ca_file", ca)?;
        let mut roots = Vec::new();
        for item in ureq::tls::parse_pem(&pem) {
            match item {
                Ok(PemItem::Certificate(c)) => roots.push(c),
                Ok(_) => {}
                Err(e) => return Err(pem_err("ca_file", ca, e.to_string())),
            }
        }
        if roots.is_empty() {
            return Err(pem_err("ca_file", ca, "no certificate found".into()));
        }
        b = b.root_certs(RootCerts::Specific(std::sync::Arc::new(roots)));
    }
    if let (Some(cert), Some(key)) = (&t.cert_file, &t.key_file) {
        let pem = read("cert_file", cert)?;
        let chain: Vec<Certificate<'static>> = ureq::tls::parse_pem(&pem)
            .filter_map(|i| match i {
                Ok(PemItem::Certificate(c)) => Some(c),
                _ => None,
            })
            .collect();
        if chain.is_empty() {
            return Err(pem_err("cert_file", cert, "no certificate found".into()));
        }
        let key_pem = read("key_file", key)?;
        let private =
            PrivateKey::from_pem(&key_pem).map_err(|e| pem_err("key_file", key, e.to_string()))?;
        b = b.client_cert(Some(ClientCert::new_with_certs(&chain, private)));
    }
    Ok(b.build())
}

fn read(key: &'static str, path: &Path) -> Result<Vec<u8>, ClientError> {
    std::fs::read(path).map_err(|source| ClientError::ReadFile {
        key,
        path: path.to_path_buf(),
        source,
    })
}

fn pem_err(key: &'static str, path: &Path, reason: String) -> ClientError {
    ClientError::Pem {
        key,
        path: path.to_path_buf(),
        reason,
    }
}

/// A `Retry-After` value: delay seconds, or an HTTP date (IMF-fixdate) relative to
/// `now_ms`. A date in the past is no delay; anything unparsable is ignored.
pub fn parse_retry_after(value: &str, now_ms: i64) -> Option<Duration> {
    let v = value.trim();
    if let Ok(secs) = v.parse::<u64>() {
        return Some(Duration::from_secs(secs));
    }
    let at_ms = parse_imf_fixdate(v)?;
    Some(Duration::from_millis(
        at_ms.saturating_sub(now_ms).max(0) as u64
    ))
}

/// `Sun, 06 Nov 1994 08:49:37 GMT` → Unix milliseconds.
fn parse_imf_fixdate(v: &str) -> Option<i64> {
    let (_, rest) = v.split_once(", ")?;
    let mut parts = rest.split(' ');
    let day: i64 = parts.next()?.parse().ok()?;
    let month = match parts.next()? {
        "Jan" => 1,
        "Feb" => 2,
        "Mar" => 3,
        "Apr" => 4,
        "May" => 5,
        "Jun" => 6,
        "Jul" => 7,
        "Aug" => 8,
        "Sep" => 9,
        "Oct" => 10,
        "Nov" => 11,
        "Dec" => 12,
        _ => return None,
    };
    let year: i64 = parts.next()?.parse().ok()?;
    let mut hms = parts.next()?.split(':').map(|p| p.parse::<i64>().ok());
    let (h, m, s) = (hms.next()??, hms.next()??, hms.next()??);
    if parts.next()? != "GMT" || !(1..=31).contains(&day) || h > 23 || m > 59 || s > 60 {
        return None;
    }
    // Days from the civil date (Howard Hinnant's algorithm).
    let y = if month <= 2 { year - 1 } else { year };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let mp = (month + 9) % 12;
    let doy = (153 * mp + 2) / 5 + day - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    let days = era * 146_097 + doe - 719_468;
    Some(((days * 86_400) + h * 3600 + m * 60 + s) * 1000)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn statuses_map_to_prometheus_decisions() {
        let e = || "e".to_owned();
        assert_eq!(classify(204, None, false, e), Outcome::Sent);
        assert!(matches!(
            classify(503, Some(Duration::from_secs(2)), false, e),
            Outcome::Retry {
                class: Class::Status5xx,
                retry_after: Some(d),
                ..
            } if d == Duration::from_secs(2)
        ));
        assert!(matches!(
            classify(429, None, false, e),
            Outcome::Drop { status: 429, .. }
        ));
        assert!(matches!(
            classify(429, None, true, e),
            Outcome::Retry {
                class: Class::Status4xx,
                ..
            }
        ));
        assert!(matches!(
            classify(400, None, true, e),
            Outcome::Drop { status: 400, .. }
        ));
        assert!(matches!(
            classify(301, None, true, e),
            Outcome::Drop {
                class: Class::Status3xx,
                ..
            }
        ));
    }

    #[test]
    fn retry_after_seconds_and_dates() {
        let now = 784_111_777_000; // Sun, 06 Nov 1994 08:49:37 GMT
        assert_eq!(
            parse_imf_fixdate("Sun, 06 Nov 1994 08:49:37 GMT"),
            Some(now)
        );
        assert_eq!(
            parse_retry_after("120", now),
            Some(Duration::from_secs(120))
        );
        assert_eq!(
            parse_retry_after("Sun, 06 Nov 1994 08:50:07 GMT", now),
            Some(Duration::from_secs(30))
        );
        assert_eq!(
            parse_retry_after("Sun, 06 Nov 1994 08:00:00 GMT", now),
            Some(Duration::ZERO)
        );
        for bad in ["", "-1", "soon", "Sun, 06 Nov 1994 08:49:37 PST", "1.5"] {
            assert_eq!(parse_retry_after(bad, now), None, "{bad:?}");
        }
    }

    #[test]
    fn credentials_files_are_trimmed_and_reread() {
        let dir = tempfile::tempdir().expect("tempdir");
        let f = dir.path().join("token");
        std::fs::write(&f, " abc\n").expect("write");
        let a = AuthSource::Token {
            kind: "Bearer".into(),
            credentials: None,
            credentials_file: Some(f.clone()),
        };
        assert_eq!(a.header_value().expect("value"), b"Bearer abc");
        std::fs::write(&f, "def").expect("write");
        assert_eq!(a.header_value().expect("value"), b"Bearer def");
        std::fs::remove_file(&f).expect("rm");
        let err = a.header_value().expect_err("missing file");
        assert!(err.contains("token"), "{err}");
        let b = AuthSource::Basic {
            username: "u".into(),
            password: Some(Secret::new("p")),
            password_file: None,
        };
        assert_eq!(b.header_value().expect("value"), b"Basic dTpw");
    }
}
