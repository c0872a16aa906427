//! The HTTP stage of a scrape: one blocking `GET` of a target's metrics with
//! Prometheus's request semantics (`scrape/scrape.go`, `targetScraper`).
//!
//! Owns: the request headers (`Accept` from the scrape protocols, `Accept-Encoding`,
//! `User-Agent`, `X-Prometheus-Scrape-Timeout-Seconds`, `Authorization`), the scrape
//! timeout, the status check, gzip decoding and `body_size_limit`.
//!
//! Input: a [`ScrapeRequest`] (URL, headers to send, timeout, limit, auth) and a
//! worker's reusable body buffer. Output: the decompressed body in that buffer plus a
//! [`Fetched`] summary, or a [`ScrapeError`] that names the URL (without userinfo) and
//! the phase that failed. For bodies too large to hold at once, [`HttpClient::open`]
//! stops at the response headers and returns a [`BodyStream`] that hands out the
//! decompressed body in pieces under the same timeout, limit and error rules;
//! [`HttpClient::fetch`] is `open` plus one read to the end, so both share one path. It runs on the calling worker thread and starts no threads
//! of its own (ureq spawns a short-lived one for each DNS lookup of a new connection,
//! so that the lookup honours the timeout).
//!
//! Semantics, as in Prometheus:
//! - The timeout is one deadline over connect, request, response headers, redirects
//!   and the whole body read, so a target that trickles an endless body fails at the
//!   deadline rather than holding a worker.
//! - Only status 200 is success: `server returned HTTP status 500 Internal Server Error`.
//! - The body is gunzipped only when the response says exactly `Content-Encoding: gzip`
//!   (concatenated gzip members are decoded, as Go does). `body_size_limit` (0 = none)
//!   counts decompressed bytes and the read stops as soon as it reaches the limit, so a
//!   gzip bomb costs at most `limit` bytes of memory and a body exactly at the limit
//!   fails (`bytes read >= limit`).
//! - Up to 10 redirects are followed; `Authorization` survives a redirect only to the
//!   same host (same scheme or an upgrade to https).
//! - `basic_auth.password_file` and `authorization.credentials_file` are read on every
//!   request and trimmed, so rotated secrets take effect without a reload.
//!
//! Connections: the [`HttpClient`] is shared by all workers and keeps idle connections
//! open between scrapes (keep-alive). ureq's connection pool scans its idle list
//! linearly on every checkout and return, and its per-host bookkeeping is quadratic in
//! the list length, so the client spreads hosts over several ureq agents (a fixed
//! number, chosen by hashing `scheme://host:port`); each agent's pool then stays short.
//! Every agent uses ureq's connector chain with its own TCP transport (`conn`), which
//! holds I/O buffers only while a connection is in use, so an idle connection costs a
//! socket and a few hundred bytes instead of two buffers.
//! The agents never time out on their own (each request carries its timeout), never
//! turn statuses into errors and never decompress (ureq is built without its `gzip`,
//! `brotli` and `charset` features; the gzip test would fail if one were enabled).
//! No proxy is taken from the environment (Prometheus's default).
//!
//! Must not: allocate per line, parse the body, retry, log, or put credentials in an
//! error message or a `Debug` string.

use std::borrow::Cow;
use std::fmt;
use std::hash::{Hash, Hasher};
use std::io::{self, Read};
use std::path::PathBuf;
use std::time::Duration;

use flate2::read::MultiGzDecoder;
use ureq::config::RedirectAuthHeaders;
use ureq::http::{header, StatusCode, Uri};
use ureq::unversioned::transport::{ConnectProxyConnector, Connector, RustlsConnector};
use ureq::Agent;

/// `User-Agent` sent with every scrape (Prometheus sends `Prometheus/<version>`).
pub const USER_AGENT: &str = concat!("scrapewheel/", env!("CARGO_PKG_VERSION"));

/// Number of ureq agents the client spreads targets over; see the module docs. An agent
/// is made when the first host hashing to it is scraped, so this many only at scale:
/// 2,000 hosts use about 880 of them, two or three connections each.
const AGENT_SHARDS: usize = 1024;

/// Idle connections kept overall and per `host:port` across all shards. Prometheus
/// (prometheus/common `http_config.go`) keeps up to 20000 idle connections, 1000 per
/// host, for 5 minutes; an idle pooled connection costs a socket and a few hundred bytes
/// (its buffers are released while it is idle; see `conn`).
const MAX_IDLE_CONNECTIONS: usize = 20_000;
const MAX_IDLE_CONNECTIONS_PER_HOST: usize = 1_000;
/// All of a host's connections share one agent, so its pool caps a host with many
/// targets (a blackbox exporter probing for a whole job): at least this many stay idle.
const MIN_IDLE_CONNECTIONS_PER_AGENT: usize = 80;
const MAX_IDLE_AGE: Duration = Duration::from_secs(5 * 60);

/// Sizes of a connection's input and output buffers while it is in use (ureq's default
/// is 128 KiB each). They exist only for the scrapes in flight, not for idle connections.
/// The input buffer sets the size of each socket read: at 64 KiB a typical exporter body
/// arrives in one or two reads instead of eight. The output buffer bounds the longest
/// single request line (the request line with the URL, or one header such as
/// `Authorization`), which is nginx's own default limit (`large_client_header_buffers 4
/// 8k`). A request longer than the buffer is sent in several writes.
const INPUT_BUFFER_SIZE: usize = 64 * 1024;
const OUTPUT_BUFFER_SIZE: usize = 8 * 1024;

/// A response header larger than this fails the scrape ("response header is too big").
/// Metrics endpoints send a few hundred bytes; nginx's default proxy buffer for upstream
/// headers is 4–8 KiB.
const MAX_RESPONSE_HEADER_SIZE: usize = 8 * 1024 - 1;

/// Error bodies up to this size (by `Content-Length`) are read and dropped so that the
/// connection can be reused; larger or unsized ones close the connection instead of
/// spending the worker's time on them.
const DRAIN_LIMIT: u64 = 16 * 1024;

/// An exposition format that can be asked for in `Accept`; mirrors the config's
/// `scrape_protocols` entries that scrapewheel can parse.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Protocol {
    /// `PrometheusText0.0.4`
    PrometheusText0_0_4,
    /// `PrometheusText1.0.0` (UTF-8 names)
    PrometheusText1_0_0,
    /// `OpenMetricsText0.0.1`
    OpenMetricsText0_0_1,
    /// `OpenMetricsText1.0.0`
    OpenMetricsText1_0_0,
}

impl Protocol {
    /// Prometheus's default `scrape_protocols` (without native histograms), in order.
    pub const DEFAULTS: [Protocol; 4] = [
        Protocol::OpenMetricsText1_0_0,
        Protocol::OpenMetricsText0_0_1,
        Protocol::PrometheusText1_0_0,
        Protocol::PrometheusText0_0_4,
    ];

    fn media_type(self) -> &'static str {
        match self {
            Protocol::PrometheusText0_0_4 => "text/plain;version=0.0.4",
            Protocol::PrometheusText1_0_0 => "text/plain;version=1.0.0",
            Protocol::OpenMetricsText0_0_1 => "application/openmetrics-text;version=0.0.1",
            Protocol::OpenMetricsText1_0_0 => "application/openmetrics-text;version=1.0.0",
        }
    }

    /// Only the formats that can carry UTF-8 names negotiate an escaping scheme.
    fn negotiates_escaping(self) -> bool {
        matches!(
            self,
            Protocol::PrometheusText1_0_0 | Protocol::OpenMetricsText1_0_0
        )
    }
}

/// Builds the `Accept` header for the configured protocols, in preference order.
///
/// Weights start at `q=0.6` and drop by 0.1 per entry, `*/*` comes last. The start is
/// one more than the number of protocols Prometheus knows (five, counting protobuf,
/// which scrapewheel does not ask for), so the header is byte-for-byte Prometheus's for
/// the same list. Config validation rejects duplicates, so at most four entries arrive
/// and the weight never goes below 0.2.
pub fn accept_header(protocols: &[Protocol]) -> String {
    const FIRST_WEIGHT: usize = 6;
    let mut out = String::with_capacity(48 * (protocols.len() + 1));
    let mut weight = FIRST_WEIGHT;
    for p in protocols {
        out.push_str(p.media_type());
        if p.negotiates_escaping() {
            out.push_str(";escaping=allow-utf-8");
        }
        push_weight(&mut out, weight);
        out.push(',');
        weight = weight.saturating_sub(1);
    }
    out.push_str("*/*");
    push_weight(&mut out, weight);
    out
}

fn push_weight(out: &mut String, weight: usize) {
    out.push_str(";q=0.");
    out.push_str(&weight.to_string());
}

/// The `X-Prometheus-Scrape-Timeout-Seconds` value: seconds in the shortest decimal
/// form that reads back as the same number (`10`, `0.5`, `1.25`), as Go's
/// `strconv.FormatFloat(s, 'f', -1, 64)` writes it.
pub fn timeout_header_value(d: Duration) -> String {
    // Rust's float Display is also shortest-round-trip and never uses an exponent.
    d.as_secs_f64().to_string()
}

/// Where a secret comes from. `File` is read on every request and trimmed, so a
/// rotated token is picked up by the next scrape.
#[derive(Clone, PartialEq, Eq)]
pub enum SecretSource {
    Inline(String),
    File(PathBuf),
}

impl fmt::Debug for SecretSource {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            SecretSource::Inline(_) => f.write_str("Inline(<secret>)"),
            SecretSource::File(p) => f.debug_tuple("File").field(p).finish(),
        }
    }
}

impl SecretSource {
    /// The secret's bytes; a file's content is trimmed of surrounding whitespace like
    /// Go's `strings.TrimSpace` (Unicode whitespace for UTF-8 content, ASCII otherwise).
    fn read(&self, url: &str) -> Result<Cow<'_, [u8]>, ScrapeError> {
        match self {
            SecretSource::Inline(s) => Ok(Cow::Borrowed(s.as_bytes())),
            SecretSource::File(path) => {
                let bytes = std::fs::read(path).map_err(|source| ScrapeError::Secret {
                    url: redact_url(url),
                    path: path.clone(),
                    source,
                })?;
                let trimmed = match std::str::from_utf8(&bytes) {
                    Ok(s) => s.trim().as_bytes(),
                    Err(_) => bytes.trim_ascii(),
                };
                Ok(Cow::Owned(trimmed.to_vec()))
            }
        }
    }
}

/// How a scrape authenticates (`basic_auth` or `authorization` in the config).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Auth {
    /// `Authorization: Basic base64(username:password)`.
    Basic {
        username: String,
        password: SecretSource,
    },
    /// `Authorization: <kind> <credentials>`; `kind` is `Bearer` unless configured.
    Bearer {
        kind: String,
        credentials: SecretSource,
    },
}

impl Auth {
    /// The `Authorization` value, checked to be a valid header value. (ureq's debug
    /// logging redacts every header but a fixed list of harmless ones.)
    pub(crate) fn header_value(&self, url: &str) -> Result<Vec<u8>, ScrapeError> {
        let mut value = Vec::with_capacity(64);
        match self {
            Auth::Basic { username, password } => {
                let password = password.read(url)?;
                let mut plain = Vec::with_capacity(username.len() + 1 + password.len());
                plain.extend_from_slice(username.as_bytes());
                plain.push(b':');
                plain.extend_from_slice(&password);
                value.extend_from_slice(b"Basic ");
                base64_encode(&plain, &mut value);
            }
            Auth::Bearer { kind, credentials } => {
                let credentials = credentials.read(url)?;
                value.extend_from_slice(kind.as_bytes());
                value.push(b' ');
                value.extend_from_slice(&credentials);
            }
        }
        if !is_header_value(&value) {
            return Err(ScrapeError::InvalidHeader {
                url: redact_url(url),
                name: "Authorization",
            });
        }
        Ok(value)
    }
}

/// Standard base64 with padding (RFC 4648), as `Authorization: Basic` needs.
pub(crate) fn base64_encode(input: &[u8], out: &mut Vec<u8>) {
    const ALPHABET: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    out.reserve(input.len().div_ceil(3) * 4);
    for chunk in input.chunks(3) {
        let b = [
            chunk[0],
            chunk.get(1).copied().unwrap_or(0),
            chunk.get(2).copied().unwrap_or(0),
        ];
        let n = (u32::from(b[0]) << 16) | (u32::from(b[1]) << 8) | u32::from(b[2]);
        out.push(ALPHABET[(n >> 18) as usize & 63]);
        out.push(ALPHABET[(n >> 12) as usize & 63]);
        out.push(if chunk.len() > 1 {
            ALPHABET[(n >> 6) as usize & 63]
        } else {
            b'='
        });
        out.push(if chunk.len() > 2 {
            ALPHABET[n as usize & 63]
        } else {
            b'='
        });
    }
}

/// One scrape's request, built by the worker from the target and its job's config.
#[derive(Clone, Debug)]
pub struct ScrapeRequest {
    /// Full target URL, `http` or `https`, with the query already encoded.
    pub url: String,
    /// `Accept` value, from [`accept_header`] (computed once per job, not per scrape).
    pub accept: String,
    /// `enable_compression`: `Accept-Encoding: gzip`, else `identity`.
    pub accept_encoding_gzip: bool,
    /// `scrape_timeout`: covers connect, headers, redirects and the body.
    pub timeout: Duration,
    /// `body_size_limit` in decompressed bytes; 0 means no limit.
    pub body_size_limit: u64,
    pub auth: Option<Auth>,
}

/// What a successful fetch produced (the body itself is in the caller's buffer).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Fetched {
    /// The response's `Content-Type`, verbatim, for parser selection.
    pub content_type: Option<String>,
    /// Decompressed body length (`scrape_body_size_bytes`).
    pub body_len: usize,
    /// Bytes received for the body before decompression (after de-chunking).
    pub compressed_len: u64,
}

/// The step a timeout interrupted.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum TimeoutPhase {
    /// Resolving the host or establishing the connection (only when ureq can tell).
    Connect,
    /// Anywhere before the response headers were complete: connecting, sending the
    /// request, waiting for the server, following redirects.
    Headers,
    /// Reading the response body.
    Body,
}

impl fmt::Display for TimeoutPhase {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            TimeoutPhase::Connect => "while connecting",
            TimeoutPhase::Headers => "before the response headers arrived",
            TimeoutPhase::Body => "while reading the body",
        })
    }
}

/// Why a scrape's HTTP stage failed. Every variant carries the target URL with any
/// userinfo removed; no variant ever contains a credential.
#[derive(Debug, thiserror::Error)]
pub enum ScrapeError {
    /// The URL does not parse or is not `http`/`https` with a host.
    #[error("invalid scrape URL {url:?}: {reason}")]
    InvalidUrl { url: String, reason: &'static str },
    /// A password or credentials file could not be read (the secret is never shown).
    #[error("Get {url:?}: unable to read authorization credentials file {}: {source}", path.display())]
    Secret {
        url: String,
        path: PathBuf,
        source: io::Error,
    },
    /// A header value (e.g. credentials with a newline) is not a valid HTTP header.
    #[error("Get {url:?}: invalid value for the {name} header")]
    InvalidHeader { url: String, name: &'static str },
    /// No connection: DNS failure, refused, unreachable, TLS handshake failure.
    #[error("Get {url:?}: {reason}")]
    Connect { url: String, reason: String },
    /// The scrape timeout expired.
    #[error("Get {url:?}: scrape timeout of {timeout:?} exceeded {phase}")]
    Timeout {
        url: String,
        phase: TimeoutPhase,
        timeout: Duration,
    },
    /// The exchange failed after connecting and before a usable response: connection
    /// closed or reset, malformed response, oversized response header, redirect loop.
    #[error("Get {url:?}: {reason}")]
    Request { url: String, reason: String },
    /// Any status other than 200.
    #[error("Get {url:?}: server returned HTTP status {}", StatusText(*status, reason))]
    Status {
        url: String,
        status: u16,
        reason: String,
    },
    /// The decompressed body reached `body_size_limit`.
    #[error("Get {url:?}: body size limit exceeded (limit {limit} bytes)")]
    BodySizeLimit { url: String, limit: u64 },
    /// `Content-Encoding: gzip` but the body is not valid gzip.
    #[error("Get {url:?}: gzip: {source}")]
    Gzip { url: String, source: io::Error },
    /// The connection failed while reading the body (closed early, reset, bad chunking).
    #[error("Get {url:?}: reading body: {reason}")]
    Read { url: String, reason: String },
}

/// Formats `500 Internal Server Error` like Go's `Response.Status`.
struct StatusText<'a>(u16, &'a str);

impl fmt::Display for StatusText<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.1.is_empty() {
            write!(f, "{}", self.0)
        } else {
            write!(f, "{} {}", self.0, self.1)
        }
    }
}

impl ScrapeError {
    /// The body reached `body_size_limit` (`prometheus_target_scrapes_exceeded_body_size_limit_total`,
    /// `scrape_body_size_bytes` = -1).
    pub fn is_body_size_limit(&self) -> bool {
        matches!(self, ScrapeError::BodySizeLimit { .. })
    }

    /// The scrape timeout expired, in whatever phase.
    pub fn is_timeout(&self) -> bool {
        matches!(self, ScrapeError::Timeout { .. })
    }

    /// The target URL as shown in messages (userinfo removed).
    pub fn url(&self) -> &str {
        match self {
            ScrapeError::InvalidUrl { url, .. }
            | ScrapeError::Secret { url, .. }
            | ScrapeError::InvalidHeader { url, .. }
            | ScrapeError::Connect { url, .. }
            | ScrapeError::Timeout { url, .. }
            | ScrapeError::Request { url, .. }
            | ScrapeError::Status { url, .. }
            | ScrapeError::BodySizeLimit { url, .. }
            | ScrapeError::Gzip { url, .. }
            | ScrapeError::Read { url, .. } => url,
        }
    }
}

/// Removes `user:password@` from a URL for display.
fn redact_url(url: &str) -> String {
    let Some(scheme_end) = url.find("://") else {
        // Not a URL with an authority; still never show anything before an '@'.
        return match url.rfind('@') {
            Some(at) => url[at + 1..].to_owned(),
            None => url.to_owned(),
        };
    };
    let authority_start = scheme_end + 3;
    let rest = &url[authority_start..];
    let authority_len = rest.find(['/', '?', '#']).unwrap_or(rest.len());
    match rest[..authority_len].rfind('@') {
        Some(at) => {
            let mut out = String::with_capacity(url.len());
            out.push_str(&url[..authority_start]);
            out.push_str(&rest[at + 1..]);
            out
        }
        None => url.to_owned(),
    }
}

/// The scrape HTTP client shared by all workers.
///
/// Cheap to share by reference (`Send + Sync`); it owns the idle connections, so keep
/// one for the life of the process (dropping it closes them).
pub struct HttpClient {
    /// Made on first use, so a shard no host hashes to costs nothing.
    agents: Box<[std::sync::OnceLock<Agent>]>,
    config: ureq::config::Config,
    /// Bytes of I/O buffers the client's connections hold right now (see [`conn`]).
    held: conn::HeldBytes,
}

impl Default for HttpClient {
    fn default() -> Self {
        Self::new()
    }
}

impl fmt::Debug for HttpClient {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("HttpClient")
            .field("agents", &self.agents.len())
            .finish()
    }
}

impl HttpClient {
    pub fn new() -> HttpClient {
        Self::build(AGENT_SHARDS, Transport::default())
    }

    /// A client for one job whose `tls_config` or `proxy_url` differ from the defaults:
    /// such a job needs connection pools of its own. It has few targets in practice, so
    /// a few agents suffice.
    pub fn with_transport(t: Transport) -> HttpClient {
        Self::build(4, t)
    }

    fn build(shards: usize, t: Transport) -> HttpClient {
        let mut config = Agent::config_builder()
            .http_status_as_error(false)
            .timeout_global(None)
            .proxy(None)
            .max_redirects(10)
            .max_redirects_will_error(true)
            .redirect_auth_headers(RedirectAuthHeaders::SameHost)
            // Set explicitly on every request; these stop ureq adding its own.
            .user_agent(USER_AGENT)
            .accept_encoding("")
            .input_buffer_size(INPUT_BUFFER_SIZE)
            .output_buffer_size(OUTPUT_BUFFER_SIZE)
            .max_response_header_size(MAX_RESPONSE_HEADER_SIZE)
            .max_idle_connections(
                MAX_IDLE_CONNECTIONS
                    .div_ceil(shards)
                    .max(MIN_IDLE_CONNECTIONS_PER_AGENT),
            )
            .max_idle_connections_per_host(MAX_IDLE_CONNECTIONS_PER_HOST)
            .max_idle_age(MAX_IDLE_AGE);
        if let Some(tls) = t.tls {
            config = config.tls_config(tls);
        }
        if let Some(p) = t.proxy {
            config = config.proxy(Some(p));
        }
        HttpClient {
            agents: (0..shards).map(|_| std::sync::OnceLock::new()).collect(),
            config: config.build(),
            held: conn::HeldBytes::default(),
        }
    }

    /// Bytes of I/O buffers held by this client's connections now: those of the
    /// connections in use (scrapes in flight), never those idle in the pool.
    pub fn connection_buffer_bytes(&self) -> usize {
        self.held.load(std::sync::atomic::Ordering::Relaxed)
    }

    /// All connections to one `scheme://host:port` go through one agent, so they share
    /// that agent's pool.
    fn agent_for(&self, uri: &Uri) -> &Agent {
        let mut h = std::collections::hash_map::DefaultHasher::new();
        uri.scheme_str().hash(&mut h);
        if let Some(a) = uri.authority() {
            a.as_str().hash(&mut h);
        }
        self.agents[(h.finish() % self.agents.len() as u64) as usize].get_or_init(|| {
            // ureq's default chain (CONNECT proxy, TCP, rustls) with our TCP transport,
            // which releases its buffers while a connection is idle.
            let connector = ()
                .chain(ConnectProxyConnector::default())
                .chain(conn::TcpConnector {
                    held: self.held.clone(),
                })
                .chain(RustlsConnector::default());
            Agent::with_parts(
                self.config.clone(),
                connector,
                conn::LiteralResolver::default(),
            )
        })
    }

    /// Performs the GET, writing the decompressed body into `body` (cleared first,
    /// capacity reused across scrapes). On error `body` holds whatever was read before
    /// the failure and must not be parsed.
    pub fn fetch(&self, req: &ScrapeRequest, body: &mut Vec<u8>) -> Result<Fetched, ScrapeError> {
        body.clear();
        let mut stream = self.open(req)?;
        stream.read_into(body, usize::MAX)?;
        Ok(Fetched {
            content_type: stream.content_type,
            body_len: body.len(),
            compressed_len: stream.decoder.wire().count,
        })
    }

    /// Sends the GET and waits for the response headers: everything [`fetch`] does up to
    /// the body. The returned [`BodyStream`] owns the connection; read it to the end (a
    /// `read_into` that returns 0) so that the connection goes back to the pool, or drop
    /// it to close the connection. The scrape timeout keeps running while it is held.
    ///
    /// [`fetch`]: HttpClient::fetch
    pub fn open(&self, req: &ScrapeRequest) -> Result<BodyStream, ScrapeError> {
        let uri = parse_url(&req.url)?;
        let invalid_header = |name| ScrapeError::InvalidHeader {
            url: redact_url(&req.url),
            name,
        };
        if !is_header_value(req.accept.as_bytes()) {
            return Err(invalid_header("Accept"));
        }
        let auth = match &req.auth {
            Some(a) => Some(a.header_value(&req.url)?),
            None => None,
        };

        // Header names are sent in Go's canonical case, as Prometheus sends them.
        let mut builder = self
            .agent_for(&uri)
            .get(uri)
            .header_raw("Accept", req.accept.as_bytes())
            .header_raw(
                "Accept-Encoding",
                if req.accept_encoding_gzip {
                    b"gzip"
                } else {
                    b"identity"
                },
            )
            .header_raw("User-Agent", USER_AGENT.as_bytes())
            .header_raw(
                "X-Prometheus-Scrape-Timeout-Seconds",
                timeout_header_value(req.timeout).as_bytes(),
            );
        if let Some(auth) = &auth {
            builder = builder.header_raw("Authorization", auth);
        }
        let mut response = builder
            .config()
            .timeout_global(Some(req.timeout))
            .build()
            .call()
            .map_err(|e| call_error(e, req))?;

        let status = response.status();
        if status != StatusCode::OK {
            drain_small(response.body_mut());
            return Err(ScrapeError::Status {
                url: redact_url(&req.url),
                status: status.as_u16(),
                reason: status.canonical_reason().unwrap_or("").to_owned(),
            });
        }

        let headers = response.headers();
        let content_type = headers
            .get(header::CONTENT_TYPE)
            .map(|v| String::from_utf8_lossy(v.as_bytes()).into_owned());
        // Go compares the first value exactly: `Header.Get("Content-Encoding") != "gzip"`.
        let gzip = headers
            .get(header::CONTENT_ENCODING)
            .is_some_and(|v| v.as_bytes() == b"gzip");

        let wire = CountingReader {
            inner: response.into_body().into_reader(),
            count: 0,
            error: None,
        };
        Ok(BodyStream {
            decoder: if gzip {
                Decoder::Gzip(MultiGzDecoder::new(wire))
            } else {
                Decoder::Plain(wire)
            },
            content_type,
            url: redact_url(&req.url),
            timeout: req.timeout,
            limit: match req.body_size_limit {
                0 => u64::MAX,
                n => n,
            },
            body_len: 0,
        })
    }
}

/// A response body being read: the decompressed bytes of a 200 response, handed out
/// in pieces by [`read_into`](BodyStream::read_into) so that a large body can be
/// parsed without holding all of it. Made by [`HttpClient::open`].
///
/// It owns the connection (it is `'static` and `Send`). The scrape's timeout, started
/// by `open`, keeps covering every read. Reading up to the end (a `read_into` that
/// returns 0) returns the connection to the pool; dropping the stream earlier closes
/// it. After an error the stream must be dropped.
pub struct BodyStream {
    decoder: Decoder,
    content_type: Option<String>,
    /// The target URL without userinfo, for errors.
    url: String,
    timeout: Duration,
    /// `body_size_limit`, `u64::MAX` when unlimited.
    limit: u64,
    /// Decompressed bytes handed out so far.
    body_len: u64,
}

/// The wire reader, gunzipped when the response said `Content-Encoding: gzip`.
enum Decoder {
    Plain(CountingReader<ureq::BodyReader<'static>>),
    Gzip(MultiGzDecoder<CountingReader<ureq::BodyReader<'static>>>),
}

impl Decoder {
    fn wire(&self) -> &CountingReader<ureq::BodyReader<'static>> {
        match self {
            Decoder::Plain(w) => w,
            Decoder::Gzip(g) => g.get_ref(),
        }
    }

    fn wire_mut(&mut self) -> &mut CountingReader<ureq::BodyReader<'static>> {
        match self {
            Decoder::Plain(w) => w,
            Decoder::Gzip(g) => g.get_mut(),
        }
    }
}

impl Read for Decoder {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        match self {
            Decoder::Plain(w) => w.read(buf),
            Decoder::Gzip(g) => g.read(buf),
        }
    }
}

impl fmt::Debug for BodyStream {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("BodyStream")
            .field("url", &self.url)
            .field("content_type", &self.content_type)
            .field("gzip", &matches!(self.decoder, Decoder::Gzip(_)))
            .field("body_len", &self.body_len)
            .field("compressed_len", &self.compressed_len())
            .finish()
    }
}

impl BodyStream {
    /// The response's `Content-Type`, verbatim, for parser selection.
    pub fn content_type(&self) -> Option<&str> {
        self.content_type.as_deref()
    }

    /// Appends up to `max` decompressed bytes to `buf` (without clearing it) and returns
    /// how many; 0 means the body has ended (a `max` of 0 reads nothing and also
    /// returns 0, so pass at least 1). It returns fewer than `max` only at the end of
    /// the body, so a short piece is the last one.
    ///
    /// Errors are [`fetch`](HttpClient::fetch)'s: `BodySizeLimit` as soon as the
    /// decompressed total reaches `body_size_limit`, `Timeout` (phase `Body`) at the
    /// scrape deadline, `Read` for a broken connection, `Gzip` for bad gzip data. On
    /// error `buf` may hold bytes of this piece read before the failure.
    pub fn read_into(&mut self, buf: &mut Vec<u8>, max: usize) -> Result<usize, ScrapeError> {
        let room = self.limit - self.body_len;
        let want = room.min(u64::try_from(max).unwrap_or(u64::MAX));
        let before = buf.len();
        // `read_to_end` fills the spare capacity first and grows `buf` only when it
        // must, so a caller reusing a buffer of `max` bytes never reallocates.
        let result = (&mut self.decoder).take(want).read_to_end(buf);
        let n = buf.len() - before;
        self.body_len += n as u64;
        if let Err(e) = result {
            return Err(match self.decoder.wire_mut().error.take() {
                Some(transport) => body_error(transport, &self.url, self.timeout),
                None => ScrapeError::Gzip {
                    url: self.url.clone(),
                    source: e,
                },
            });
        }
        if self.body_len >= self.limit {
            return Err(ScrapeError::BodySizeLimit {
                url: self.url.clone(),
                limit: self.limit,
            });
        }
        Ok(n)
    }

    /// Decompressed bytes read so far (`scrape_body_size_bytes` once the body ended).
    pub fn body_len(&self) -> usize {
        usize::try_from(self.body_len).unwrap_or(usize::MAX)
    }

    /// Bytes received for the body so far, before decompression (after de-chunking).
    pub fn compressed_len(&self) -> u64 {
        self.decoder.wire().count
    }
}

/// Parses and checks the URL up front, so that ureq's own messages (which quote the
/// URL, userinfo included) never reach an error.
fn parse_url(url: &str) -> Result<Uri, ScrapeError> {
    let invalid = |reason| ScrapeError::InvalidUrl {
        url: redact_url(url),
        reason,
    };
    let uri = Uri::try_from(url).map_err(|_| invalid("malformed URL"))?;
    match uri.scheme_str() {
        Some("http") | Some("https") => {}
        Some(_) => return Err(invalid("scheme must be http or https")),
        None => return Err(invalid("missing scheme")),
    }
    let Some(authority) = uri.authority() else {
        return Err(invalid("missing host"));
    };
    if uri.host().is_none_or(str::is_empty) {
        return Err(invalid("missing host"));
    }
    // `Uri` accepts any port text and ureq would then resolve "host:port" literally.
    let host_port = authority.as_str().rsplit('@').next().unwrap_or_default();
    let port = match host_port.strip_prefix('[') {
        Some(v6) => v6.split_once(']').map_or("", |(_, rest)| rest),
        None => host_port.rsplit_once(':').map_or("", |(_, port)| port),
    };
    let port = port.strip_prefix(':').unwrap_or(port);
    if !port.is_empty() && port.parse::<u16>().is_err() {
        return Err(invalid("invalid port"));
    }
    Ok(uri)
}

/// The `http` crate's rule for header values (visible ASCII, space, tab, obs-text),
/// checked without building a `HeaderValue`.
fn is_header_value(v: &[u8]) -> bool {
    v.iter().all(|&b| b == b'\t' || (b >= 0x20 && b != 0x7f))
}

/// Reads (and drops) a small error body so the connection can go back to the pool.
fn drain_small(body: &mut ureq::Body) {
    if body.content_length().is_some_and(|n| n <= DRAIN_LIMIT) {
        // The scrape has already failed on its status; a failed drain only costs the
        // connection.
        let _ = io::copy(&mut body.as_reader().take(DRAIN_LIMIT), &mut io::sink());
    }
}

/// Counts the bytes taken off the wire and keeps the transport's own error, so that a
/// failure surfacing through the gzip decoder can be told apart from bad gzip data.
struct CountingReader<R> {
    inner: R,
    count: u64,
    error: Option<io::Error>,
}

impl<R: Read> Read for CountingReader<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        match self.inner.read(buf) {
            Ok(n) => {
                self.count += n as u64;
                Ok(n)
            }
            Err(e) => {
                let kind = e.kind();
                self.error = Some(e);
                Err(io::Error::new(kind, "body transport failed"))
            }
        }
    }
}

/// Classifies an error from `call()`: everything up to complete response headers.
fn call_error(e: ureq::Error, req: &ScrapeRequest) -> ScrapeError {
    let url = redact_url(&req.url);
    match e {
        ureq::Error::Timeout(t) => ScrapeError::Timeout {
            url,
            phase: match t {
                ureq::Timeout::Resolve | ureq::Timeout::Connect => TimeoutPhase::Connect,
                ureq::Timeout::RecvBody => TimeoutPhase::Body,
                _ => TimeoutPhase::Headers,
            },
            timeout: req.timeout,
        },
        ureq::Error::Io(io) if is_mid_exchange(&io) => ScrapeError::Request {
            url,
            reason: io.to_string(),
        },
        // rustls reports handshake failures (e.g. a plain-HTTP peer) as invalid data.
        ureq::Error::Io(io) if io.kind() == io::ErrorKind::InvalidData && is_https(&req.url) => {
            ScrapeError::Connect {
                url,
                reason: format!("TLS handshake: {io}"),
            }
        }
        // Refused, unreachable, DNS failures (std reports those as uncategorised).
        ureq::Error::Io(io) => ScrapeError::Connect {
            url,
            reason: io.to_string(),
        },
        ureq::Error::HostNotFound => ScrapeError::Connect {
            url,
            reason: "no such host".to_owned(),
        },
        ureq::Error::ConnectionFailed => ScrapeError::Connect {
            url,
            reason: "connection failed".to_owned(),
        },
        e @ (ureq::Error::Tls(_) | ureq::Error::Rustls(_) | ureq::Error::Pem(_)) => {
            ScrapeError::Connect {
                url,
                reason: format!("TLS: {e}"),
            }
        }
        ureq::Error::TooManyRedirects => ScrapeError::Request {
            url,
            reason: "stopped after 10 redirects".to_owned(),
        },
        // ureq's BadUri and Http messages quote the URI (a redirect's Location may carry
        // userinfo), so they are reduced to their kind.
        ureq::Error::BadUri(_) | ureq::Error::Http(_) | ureq::Error::RedirectFailed => {
            ScrapeError::Request {
                url,
                reason: "invalid redirect".to_owned(),
            }
        }
        other => ScrapeError::Request {
            url,
            reason: other.to_string(),
        },
    }
}

fn is_https(url: &str) -> bool {
    url.get(..8)
        .is_some_and(|s| s.eq_ignore_ascii_case("https://"))
}

/// I/O errors that mean an established connection broke, as opposed to one that
/// could not be made.
fn is_mid_exchange(e: &io::Error) -> bool {
    matches!(
        e.kind(),
        io::ErrorKind::UnexpectedEof
            | io::ErrorKind::ConnectionReset
            | io::ErrorKind::ConnectionAborted
            | io::ErrorKind::BrokenPipe
    )
}

/// Classifies a transport error met while reading the body.
fn body_error(e: io::Error, url: &str, timeout: Duration) -> ScrapeError {
    let url = url.to_owned();
    match ureq::Error::from(e) {
        ureq::Error::Timeout(_) => ScrapeError::Timeout {
            url,
            phase: TimeoutPhase::Body,
            timeout,
        },
        ureq::Error::Io(io) => ScrapeError::Read {
            url,
            reason: io.to_string(),
        },
        other => ScrapeError::Read {
            url,
            reason: other.to_string(),
        },
    }
}

mod conn;
pub use conn::LiteralResolver;
pub(crate) use conn::TcpConnector;
mod transport;
pub use transport::{Transport, TransportError};

#[cfg(test)]
mod tests;
