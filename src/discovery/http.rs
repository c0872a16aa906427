//! `http_sd_configs`: target groups from an HTTP endpoint, polled every `refresh_interval`.
//!
//! Runs on its provider thread (see the parent module) with its own ureq agent, built
//! from the config's HTTP client keys on the first refresh (and again after a refresh
//! that could not build it, e.g. while a CA file is missing): `basic_auth` or
//! `authorization` (credential files are read on every request, as for scrapes),
//! `tls_config` (`ca_file` replaces the built-in roots, `cert_file`/`key_file` present a
//! client certificate, `insecure_skip_verify`) and `proxy_url` (http or https CONNECT
//! proxies; `tls_config.server_name` and socks proxies are not supported and fail the
//! refresh with a message saying so).
//!
//! Semantics, as in Prometheus (`discovery/http`): `GET` with `Accept: application/json`
//! and `X-Prometheus-Refresh-Interval-Seconds`; the request times out after
//! `refresh_interval`; only status 200 with `Content-Type: application/json` (optionally
//! `; charset=utf-8`) is accepted; the body is a JSON list of
//! `{"targets": [...], "labels": {...}}`; each group's source is `<url>:<index>` and
//! its labels get `__meta_url`. Any failure is logged, counted in
//! `prometheus_sd_http_failures_total` and keeps the last good groups.
//!
//! Difference: `__meta_url` and the sources carry the URL with any `user:password@`
//! removed, so credentials never reach the targets API. The body is limited to
//! [`MAX_BODY`] (Prometheus reads without a limit).

use super::{decode_groups, DecodeError, Format, Provider, ProviderContext, TargetGroup};
use crate::config::HttpSdConfig;
use crate::scrape::{Auth, ScrapeError, SecretSource, Transport, USER_AGENT};
use std::time::{Duration, Instant};
use ureq::Agent;

/// The meta label naming the URL a group came from.
pub const URL_LABEL: &str = "__meta_url";

/// The largest response body accepted.
pub const MAX_BODY: u64 = 64 << 20;

/// Why a refresh failed. URLs are shown without credentials.
#[derive(Debug, thiserror::Error)]
pub enum HttpSdError {
    /// The client could not be built from the config (TLS files, proxy).
    #[error("{url}: {reason}")]
    Client { url: String, reason: String },
    /// The credentials could not be read or are not a valid header value.
    #[error(transparent)]
    Credentials(ScrapeError),
    /// No usable response: connection, TLS, timeout, broken exchange.
    #[error("Get {url:?}: {reason}")]
    Request { url: String, reason: String },
    /// Any status other than 200.
    #[error("{url}: server returned HTTP status {status}")]
    Status { url: String, status: String },
    /// The response is not `application/json`.
    #[error("{url}: unsupported content type {content_type:?}")]
    ContentType { url: String, content_type: String },
    /// The body is larger than [`MAX_BODY`].
    #[error("{url}: response body exceeds {limit} bytes")]
    TooLarge { url: String, limit: u64 },
    /// The body is not a valid target-group document.
    #[error("{url}: {error}")]
    Decode { url: String, error: DecodeError },
}

pub(super) struct HttpProvider {
    config: HttpSdConfig,
    ctx: ProviderContext,
    /// The URL without credentials, for labels, sources and messages.
    shown_url: String,
    agent: Option<Agent>,
    auth: Option<Auth>,
    first: bool,
}

impl HttpProvider {
    pub(super) fn new(config: HttpSdConfig, ctx: ProviderContext) -> HttpProvider {
        let shown_url = crate::log::redact_url(&config.url).into_owned();
        let auth = auth_of(&config);
        HttpProvider {
            config,
            ctx,
            shown_url,
            agent: None,
            auth,
            first: true,
        }
    }

    fn refresh(&mut self) -> Result<Vec<TargetGroup>, HttpSdError> {
        let url = self.shown_url.clone();
        let agent = match &self.agent {
            Some(a) => a.clone(),
            None => {
                let a = build_agent(&self.config, &url)?;
                self.agent = Some(a.clone());
                a
            }
        };
        let refresh = self.config.refresh_interval;
        let mut req = agent
            .get(&self.config.url)
            .header("User-Agent", USER_AGENT)
            .header("Accept", "application/json")
            .header(
                "X-Prometheus-Refresh-Interval-Seconds",
                refresh.as_secs_f64().to_string(),
            );
        if let Some(auth) = &self.auth {
            let value = auth
                .header_value(&self.config.url)
                .map_err(HttpSdError::Credentials)?;
            req = req.header("Authorization", value.as_slice());
        }
        let mut resp = req.call().map_err(|e| HttpSdError::Request {
            url: url.clone(),
            reason: request_reason(e, refresh),
        })?;
        let status = resp.status();
        if status != ureq::http::StatusCode::OK {
            return Err(HttpSdError::Status {
                url,
                status: match status.canonical_reason() {
                    Some(r) => format!("{} {r}", status.as_u16()),
                    None => status.as_u16().to_string(),
                },
            });
        }
        let content_type = resp
            .headers()
            .get("Content-Type")
            .map(|v| String::from_utf8_lossy(v.as_bytes()).into_owned())
            .unwrap_or_default();
        if !is_json_content_type(&content_type) {
            return Err(HttpSdError::ContentType { url, content_type });
        }
        let body = resp
            .body_mut()
            .with_config()
            .limit(MAX_BODY)
            .read_to_vec()
            .map_err(|e| match e {
                ureq::Error::BodyExceedsLimit(_) => HttpSdError::TooLarge {
                    url: url.clone(),
                    limit: MAX_BODY,
                },
                e => HttpSdError::Request {
                    url: url.clone(),
                    reason: request_reason(e, refresh),
                },
            })?;
        decode_groups(&body, Format::Json, &url, (URL_LABEL, &url))
            .map_err(|error| HttpSdError::Decode { url, error })
    }
}

impl Provider for HttpProvider {
    fn step(&mut self) -> (Option<Vec<TargetGroup>>, Duration) {
        let started = Instant::now();
        let first = std::mem::take(&mut self.first);
        let view = match self.refresh() {
            Ok(groups) => Some(groups),
            Err(e) => {
                if matches!(e, HttpSdError::Client { .. }) {
                    self.agent = None;
                }
                self.ctx.metrics.http_failures.inc();
                self.ctx.refresh_failures.inc();
                crate::error!(
                    "http_sd: refresh failed; keeping the last good targets",
                    job = self.ctx.job,
                    err = e
                );
                // A new provider has no last good groups: say so, so that the groups of
                // the provider it replaces do not linger.
                first.then(Vec::new)
            }
        };
        self.ctx
            .refresh_duration
            .observe(started.elapsed().as_secs_f64());
        (view, self.config.refresh_interval)
    }
}

/// `application/json`, optionally with `charset=utf-8`, case-insensitively (Prometheus's
/// `^(?i:application\/json(;\s*charset=("utf-8"|utf-8))?)$` on the trimmed value).
fn is_json_content_type(v: &str) -> bool {
    let v = v.trim().to_ascii_lowercase();
    let Some(rest) = v.strip_prefix("application/json") else {
        return false;
    };
    if rest.is_empty() {
        return true;
    }
    let Some(params) = rest.strip_prefix(';') else {
        return false;
    };
    matches!(
        params.trim_start_matches([' ', '\t', '\n', '\r', '\x0b', '\x0c']),
        "charset=utf-8" | "charset=\"utf-8\""
    )
}

fn auth_of(c: &HttpSdConfig) -> Option<Auth> {
    if let Some(b) = &c.basic_auth {
        return Some(Auth::Basic {
            username: b.username.clone(),
            password: match (&b.password, &b.password_file) {
                (_, Some(f)) => SecretSource::File(f.clone()),
                (Some(p), None) => SecretSource::Inline(p.expose().to_string()),
                (None, None) => SecretSource::Inline(String::new()),
            },
        });
    }
    c.authorization.as_ref().map(|a| Auth::Bearer {
        kind: a.kind.clone(),
        credentials: match (&a.credentials, &a.credentials_file) {
            (_, Some(f)) => SecretSource::File(f.clone()),
            (Some(v), None) => SecretSource::Inline(v.expose().to_string()),
            (None, None) => SecretSource::Inline(String::new()),
        },
    })
}

fn build_agent(c: &HttpSdConfig, url: &str) -> Result<Agent, HttpSdError> {
    let client_err = |reason: String| HttpSdError::Client {
        url: url.to_string(),
        reason,
    };
    let mut builder = Agent::config_builder()
        .http_status_as_error(false)
        .timeout_global(Some(c.refresh_interval))
        // As Go's client: follow up to 10 redirects, credentials only to the same host,
        // and no proxy from the environment unless configured.
        .max_redirects(10)
        .redirect_auth_headers(ureq::config::RedirectAuthHeaders::SameHost)
        .user_agent(USER_AGENT)
        .proxy(None);
    let t = Transport::new(c.tls_config.as_ref(), c.proxy_url.as_deref())
        .map_err(|e| client_err(e.to_string()))?;
    if let Some(p) = t.proxy {
        builder = builder.proxy(Some(p));
    }
    if let Some(tls) = t.tls {
        builder = builder.tls_config(tls);
    }
    Ok(builder.build().new_agent())
}

/// A failed exchange, described without the URL (ureq's own messages about URIs may
/// quote one, credentials included).
fn request_reason(e: ureq::Error, timeout: Duration) -> String {
    match e {
        ureq::Error::Timeout(_) => format!(
            "timeout after {} (the refresh_interval)",
            crate::config::format_duration(timeout)
        ),
        ureq::Error::Io(io) => io.to_string(),
        ureq::Error::HostNotFound => "no such host".to_string(),
        ureq::Error::ConnectionFailed => "connection failed".to_string(),
        ureq::Error::TooManyRedirects => "stopped after 10 redirects".to_string(),
        ureq::Error::BadUri(_) | ureq::Error::Http(_) | ureq::Error::RedirectFailed => {
            "invalid URL or redirect".to_string()
        }
        e @ (ureq::Error::Tls(_) | ureq::Error::Rustls(_) | ureq::Error::Pem(_)) => {
            format!("TLS: {e}")
        }
        other => other.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::Config;

    fn provider(extra: &str) -> HttpProvider {
        let text = format!(
            "[[scrape_configs]]\njob_name = \"j\"\n[[scrape_configs.http_sd_configs]]\n{extra}\n"
        );
        let c =
            Config::from_str(&text, std::path::Path::new("/nonexistent/c.toml")).expect("config");
        let reg = crate::metrics::Registry::new();
        let metrics = super::super::SdMetrics::new(&reg);
        HttpProvider::new(
            c.scrape_configs[0].http_sd_configs[0].clone(),
            ProviderContext {
                job: "j".into(),
                refresh_failures: metrics.refresh_failures("http"),
                refresh_duration: metrics.refresh_duration("http"),
                metrics,
            },
        )
    }

    #[test]
    fn client_problems_are_reported_and_never_show_credentials() {
        let mut p = provider("url = \"http://u:hunter2@127.0.0.1:1/sd\"");
        let e = p.refresh().expect_err("refused");
        assert!(
            matches!(e, HttpSdError::Request { .. }) && !e.to_string().contains("hunter2"),
            "{e}"
        );
        assert_eq!(p.shown_url, "http://127.0.0.1:1/sd");

        let mut p = provider("url = \"http://h/sd\"\ntls_config = { ca_file = \"ca.pem\" }");
        let e = p.refresh().expect_err("missing CA");
        assert!(e.to_string().contains("/nonexistent/ca.pem"), "{e}");
        let (view, _) = p.step();
        assert_eq!(view, Some(vec![]), "a first failure is an empty view");
        assert_eq!(p.ctx.metrics.http_failures.get(), 1);
        let (view, _) = p.step();
        assert_eq!(view, None, "later failures keep the last view");

        let mut p = provider("url = \"https://h/sd\"\ntls_config = { server_name = \"x\" }");
        let e = p.refresh().expect_err("server_name");
        assert!(
            e.to_string().contains("server_name is not supported"),
            "{e}"
        );

        let mut p = provider("url = \"http://h/sd\"\nproxy_url = \"socks5://127.0.0.1:1080\"");
        let e = p.refresh().expect_err("socks");
        assert!(e.to_string().contains("only http and https proxies"), "{e}");
    }

    #[test]
    fn content_types_follow_prometheus() {
        for ok in [
            "application/json",
            "Application/JSON",
            " application/json ",
            "application/json; charset=utf-8",
            "application/json;charset=\"utf-8\"",
            "application/json;  charset=UTF-8",
        ] {
            assert!(is_json_content_type(ok), "{ok}");
        }
        for bad in [
            "",
            "text/plain",
            "application/json; charset=latin1",
            "application/jsonx",
            "application/json;",
        ] {
            assert!(!is_json_content_type(bad), "{bad}");
        }
    }
}
