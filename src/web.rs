//! The web thread ("sw-web"): a tiny_http server on `web.listen_address` serving the
//! self-metrics, the lifecycle endpoints, the targets API and the targets page.
//!
//! Requests are answered one at a time on this one thread; every handler is cheap (a
//! render of atomics or a snapshot of `Arc`s). Lifecycle requests are turned into
//! coordinator control messages; the web thread never touches pools or the wheel.
//! It stops when `Web::stop` unblocks the server.
//!
//! `/api/v1/targets` answers exactly as Prometheus's does (web/api/v1): pools in name
//! order, `state` = `active` | `dropped` | `any` (case-insensitive; empty means any, any
//! other value shows nothing), `scrapePool` filters both lists but not
//! `droppedTargetCounts` (which is `null` unless dropped targets are asked for),
//! `lastScrape` in RFC 3339 with trimmed fractional seconds and Go's zero time for a target
//! never scraped, `scrapeInterval`/`scrapeTimeout` as the target's labels say them, and
//! `globalUrl` with a loopback host replaced by this host's name. Within a pool, targets
//! are sorted by scrape URL (Prometheus leaves them in map order). `/targets` is the same
//! view as a self-contained HTML page (the `page` module).

mod page;

use crate::coordinator::{Control, JobView, TargetsView};
use crate::labels::{LabelSet, SCRAPE_INTERVAL, SCRAPE_TIMEOUT};
use crate::metrics::Registry;
use crate::target::Target;
use crossbeam_channel::{bounded, Sender};
use serde::ser::SerializeMap;
use serde::Serialize;
use std::borrow::Cow;
use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::Duration;
use tiny_http::{Header, Method, Request, Response, Server};

/// What the handlers need.
pub struct WebState {
    pub registry: Arc<Registry>,
    pub targets: TargetsView,
    pub ready: Arc<AtomicBool>,
    pub control: Sender<Control>,
    pub enable_lifecycle: bool,
}

pub struct Web {
    server: Arc<Server>,
    handle: JoinHandle<()>,
    pub local_addr: String,
}

#[derive(Debug, thiserror::Error)]
#[error("cannot listen on {addr}: {reason}")]
pub struct ListenError {
    pub addr: String,
    pub reason: String,
}

impl Web {
    pub fn start(addr: &str, state: WebState) -> Result<Web, ListenError> {
        let server = Server::http(addr).map_err(|e| ListenError {
            addr: addr.to_string(),
            reason: e.to_string(),
        })?;
        let local_addr = server
            .server_addr()
            .to_ip()
            .map_or_else(|| addr.to_string(), |a| a.to_string());
        let server = Arc::new(server);
        let s2 = server.clone();
        // Prometheus's default external URL: http://<hostname>:<listen port>.
        let global = GlobalUrl {
            host: crate::coordinator::hostname(),
            port: split_host_port(&local_addr).1.to_string(),
        };
        let handle = std::thread::Builder::new()
            .name("sw-web".into())
            .spawn(move || {
                for req in s2.incoming_requests() {
                    handle(req, &state, &global);
                }
            })
            .map_err(|e| ListenError {
                addr: addr.to_string(),
                reason: e.to_string(),
            })?;
        Ok(Web {
            server,
            handle,
            local_addr,
        })
    }

    pub fn stop(self) {
        self.server.unblock();
        let _ = self.handle.join();
    }
}

/// What `globalUrl` puts in place of a loopback host.
struct GlobalUrl {
    host: String,
    port: String,
}

fn header(k: &'static str, v: &'static str) -> Header {
    Header::from_bytes(k.as_bytes(), v.as_bytes())
        .expect("static header names and values are ASCII")
}

fn text(status: u16, body: impl Into<String>) -> Response<std::io::Cursor<Vec<u8>>> {
    Response::from_string(body.into())
        .with_status_code(status)
        .with_header(header("Content-Type", "text/plain; charset=utf-8"))
}

fn handle(req: Request, st: &WebState, global: &GlobalUrl) {
    let url = req.url().to_string();
    let (path, query) = url.split_once('?').unwrap_or((&url, ""));
    let method = req.method().clone();
    let resp = match (method, path) {
        (Method::Get | Method::Head, "/metrics") => Response::from_string(st.registry.render())
            .with_header(header(
                "Content-Type",
                "text/plain; version=0.0.4; charset=utf-8",
            )),
        (Method::Get | Method::Head, "/-/healthy") => text(200, "scrapewheel is Healthy.\n"),
        (Method::Get | Method::Head, "/-/ready") => {
            if st.ready.load(Ordering::Acquire) {
                text(200, "scrapewheel is Ready.\n")
            } else {
                text(503, "Service Unavailable\n")
            }
        }
        (Method::Post | Method::Put, "/-/reload") => {
            if !st.enable_lifecycle {
                text(403, "Lifecycle API is not enabled.\n")
            } else {
                let (tx, rx) = bounded(1);
                let _ = st.control.send(Control::Reload { reply: Some(tx) });
                match rx.recv_timeout(Duration::from_secs(60)) {
                    Ok(Ok(())) => text(200, ""),
                    Ok(Err(e)) => text(500, format!("failed to reload config: {e}\n")),
                    Err(_) => text(500, "failed to reload config: no answer\n"),
                }
            }
        }
        (Method::Post | Method::Put, "/-/quit") => {
            if !st.enable_lifecycle {
                text(403, "Lifecycle API is not enabled.\n")
            } else {
                let _ = st.control.send(Control::Shutdown);
                text(200, "Requesting termination... Goodbye!\n")
            }
        }
        (Method::Get, "/api/v1/targets") => {
            let view = st.targets.read().clone();
            Response::from_string(targets_json(&view, query, global))
                .with_header(header("Content-Type", "application/json"))
        }
        (Method::Get | Method::Head, "/targets") => {
            let view = st.targets.read().clone();
            Response::from_string(page::render(&view))
                .with_header(header("Content-Type", "text/html; charset=utf-8"))
                // Everything the page needs is inline; nothing may be fetched from
                // anywhere, and label values are escaped, so nothing can be injected.
                .with_header(header(
                    "Content-Security-Policy",
                    "default-src 'none'; style-src 'unsafe-inline'; script-src 'unsafe-inline'; img-src data:; base-uri 'none'; form-action 'none'",
                ))
                .with_header(header("X-Content-Type-Options", "nosniff"))
        }
        (Method::Get | Method::Head, "/") => {
            text(302, "").with_header(header("Location", "/targets"))
        }
        _ => text(404, "404 page not found\n"),
    };
    let _ = req.respond(resp);
}

/// The first value of `key` in a query string, percent-decoded as Go's `url.ParseQuery`
/// does (`+` is a space; a malformed escape is kept as written).
fn query_param<'q>(query: &'q str, key: &str) -> Option<Cow<'q, str>> {
    query
        .split('&')
        .map(|kv| kv.split_once('=').unwrap_or((kv, "")))
        .find(|(k, _)| percent_decode(k) == key)
        .map(|(_, v)| percent_decode(v))
}

fn percent_decode(s: &str) -> Cow<'_, str> {
    if !s.contains(['%', '+']) {
        return Cow::Borrowed(s);
    }
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        let hex = |c: u8| (c as char).to_digit(16);
        match b[i] {
            b'+' => out.push(b' '),
            b'%' if i + 2 < b.len() => match (hex(b[i + 1]), hex(b[i + 2])) {
                (Some(h), Some(l)) => {
                    out.push((h * 16 + l) as u8);
                    i += 2;
                }
                _ => out.push(b'%'),
            },
            c => out.push(c),
        }
        i += 1;
    }
    Cow::Owned(String::from_utf8_lossy(&out).into_owned())
}

/// Prometheus's three target healths.
pub(crate) fn health_str(up: Option<bool>) -> &'static str {
    match up {
        None => "unknown",
        Some(true) => "up",
        Some(false) => "down",
    }
}

/// Go's `time.Time` JSON form (RFC 3339 with nanoseconds, trailing zeros trimmed) of
/// Unix milliseconds; `None` is Go's zero time, which Prometheus shows for a target never
/// scraped.
pub(crate) fn rfc3339_nano(ms: Option<i64>) -> String {
    let Some(ms) = ms else {
        return "0001-01-01T00:00:00Z".to_string();
    };
    let full = crate::time::rfc3339_millis(ms);
    // "…:SS.mmmZ": drop trailing zeros of the fraction, and the dot with them.
    let body = full.trim_end_matches('Z').trim_end_matches('0');
    let body = body.strip_suffix('.').unwrap_or(body);
    format!("{body}Z")
}

/// A target's pool-local order: by scrape URL, then labels (two targets may share a URL).
fn sorted_targets(jv: &JobView) -> Vec<&Arc<Target>> {
    let mut ts: Vec<&Arc<Target>> = jv.targets.iter().collect();
    ts.sort_by(|a, b| {
        a.url
            .cmp(&b.url)
            .then_with(|| a.labels.as_slice().cmp(b.labels.as_slice()))
    });
    ts
}

/// `host:port` (or `[v6]:port`) → (host, port); port is empty when absent.
fn split_host_port(authority: &str) -> (&str, &str) {
    if let Some(rest) = authority.strip_prefix('[') {
        if let Some((host, after)) = rest.split_once(']') {
            return (host, after.strip_prefix(':').unwrap_or(""));
        }
    }
    match authority.rsplit_once(':') {
        Some((h, p)) if !h.contains(':') => (h, p),
        _ => (authority, ""),
    }
}

/// Prometheus's `getGlobalURL` with its default external URL: a target on a loopback
/// host gets this host's name instead, and if it is this agent's own port the target is
/// this agent, so the whole authority becomes the external one.
fn global_url<'u>(url: &'u str, g: &GlobalUrl) -> Cow<'u, str> {
    let Some((scheme, rest)) = url.split_once("://") else {
        return Cow::Borrowed(url);
    };
    let end = rest.find(['/', '?', '#']).unwrap_or(rest.len());
    let (authority, tail) = rest.split_at(end);
    let (host, port) = split_host_port(authority);
    if !["127.0.0.1", "localhost", "::1"].contains(&host) {
        return Cow::Borrowed(url);
    }
    let external = if g.host.contains(':') {
        format!("[{}]", g.host)
    } else {
        g.host.clone()
    };
    if port == g.port {
        Cow::Owned(format!("http://{external}:{}{tail}", g.port))
    } else if port.is_empty() {
        Cow::Owned(format!("{scheme}://{external}{tail}"))
    } else {
        Cow::Owned(format!("{scheme}://{external}:{port}{tail}"))
    }
}

/// Label sets serialize as JSON objects, as Prometheus's `labels.Labels` do.
struct LabelMap<'a>(&'a LabelSet);

impl Serialize for LabelMap<'_> {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let mut m = s.serialize_map(Some(self.0.len()))?;
        for l in self.0 {
            m.serialize_entry(&l.name, &l.value)?;
        }
        m.end()
    }
}

#[derive(Serialize)]
struct Answer<'a> {
    status: &'static str,
    data: Discovery<'a>,
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct Discovery<'a> {
    active_targets: Vec<ActiveTarget<'a>>,
    dropped_targets: Vec<DroppedTarget<'a>>,
    /// `null` when dropped targets are not asked for (a nil map in Prometheus).
    dropped_target_counts: Option<BTreeMap<&'a str, usize>>,
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct ActiveTarget<'a> {
    discovered_labels: LabelMap<'a>,
    labels: LabelMap<'a>,
    scrape_pool: &'a str,
    scrape_url: Cow<'a, str>,
    global_url: String,
    last_error: String,
    last_scrape: String,
    last_scrape_duration: f64,
    health: &'static str,
    scrape_interval: &'a str,
    scrape_timeout: &'a str,
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct DroppedTarget<'a> {
    discovered_labels: LabelMap<'a>,
    scrape_pool: &'a str,
}

/// Prometheus's `/api/v1/targets` answer. Serialized straight from borrowed views (no
/// intermediate JSON tree): 10,000 targets take tens of milliseconds.
fn targets_json(view: &BTreeMap<String, JobView>, query: &str, global: &GlobalUrl) -> String {
    let state = query_param(query, "state")
        .unwrap_or_default()
        .to_lowercase();
    let pool_filter = query_param(query, "scrapePool").filter(|p| !p.is_empty());
    let show_active = matches!(state.as_str(), "" | "any" | "active");
    let show_dropped = matches!(state.as_str(), "" | "any" | "dropped");
    let mut data = Discovery {
        active_targets: Vec::new(),
        dropped_targets: Vec::new(),
        dropped_target_counts: show_dropped.then(BTreeMap::new),
    };
    for (job, jv) in view {
        if let Some(counts) = &mut data.dropped_target_counts {
            counts.insert(job, jv.dropped_count);
        }
        if pool_filter.as_deref().is_some_and(|p| p != job) {
            continue;
        }
        if show_active {
            for t in sorted_targets(jv) {
                let h = t.health.lock().clone();
                let url = t.display_url();
                data.active_targets.push(ActiveTarget {
                    discovered_labels: LabelMap(&t.discovered),
                    labels: LabelMap(&t.series_labels),
                    scrape_pool: job,
                    global_url: global_url(&url, global).into_owned(),
                    scrape_url: url,
                    last_error: h.last_error,
                    last_scrape: rfc3339_nano(h.up.map(|_| h.last_scrape_ms)),
                    last_scrape_duration: h.last_duration_s,
                    health: health_str(h.up),
                    scrape_interval: t.labels.get_or_empty(SCRAPE_INTERVAL),
                    scrape_timeout: t.labels.get_or_empty(SCRAPE_TIMEOUT),
                });
            }
        }
        if show_dropped {
            for d in &jv.dropped {
                data.dropped_targets.push(DroppedTarget {
                    discovered_labels: LabelMap(d),
                    scrape_pool: job,
                });
            }
        }
    }
    let answer = Answer {
        status: "success",
        data,
    };
    serde_json::to_string(&answer).unwrap_or_else(|e| {
        format!(
            "{{\"status\":\"error\",\"errorType\":\"internal\",\"error\":{}}}",
            serde_json::Value::from(e.to_string())
        )
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn query_params_are_decoded_like_go() {
        assert_eq!(
            query_param("state=Active&scrapePool=my+job%2F1", "scrapePool").as_deref(),
            Some("my job/1")
        );
        assert_eq!(query_param("a=1&b", "b").as_deref(), Some(""));
        assert_eq!(query_param("a=%zz%4", "a").as_deref(), Some("%zz%4"));
        assert_eq!(query_param("a=1", "b"), None);
        assert_eq!(percent_decode("%e2%9c%93"), "✓");
    }

    #[test]
    fn last_scrape_is_rfc3339_nano() {
        assert_eq!(rfc3339_nano(None), "0001-01-01T00:00:00Z");
        assert_eq!(
            rfc3339_nano(Some(1_700_000_000_000)),
            "2023-11-14T22:13:20Z"
        );
        assert_eq!(
            rfc3339_nano(Some(1_700_000_000_120)),
            "2023-11-14T22:13:20.12Z"
        );
        assert_eq!(
            rfc3339_nano(Some(1_700_000_000_003)),
            "2023-11-14T22:13:20.003Z"
        );
    }

    #[test]
    fn global_url_replaces_loopback_hosts() {
        let g = GlobalUrl {
            host: "box".into(),
            port: "9464".into(),
        };
        let cases = [
            ("http://127.0.0.1:9464/metrics", "http://box:9464/metrics"),
            ("https://localhost:9100/m?x=1", "https://box:9100/m?x=1"),
            ("http://[::1]:9100/metrics", "http://box:9100/metrics"),
            (
                "http://10.0.0.1:9100/metrics",
                "http://10.0.0.1:9100/metrics",
            ),
            ("http://localhost/metrics", "http://box/metrics"),
        ];
        for (url, want) in cases {
            assert_eq!(global_url(url, &g), want, "{url}");
        }
    }

    #[test]
    fn host_port_split() {
        assert_eq!(split_host_port("h:1"), ("h", "1"));
        assert_eq!(split_host_port("[::1]:9"), ("::1", "9"));
        assert_eq!(split_host_port("h"), ("h", ""));
        assert_eq!(split_host_port("::1"), ("::1", ""));
    }
}
