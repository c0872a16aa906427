//! The web thread ("sw-web"): a tiny_http server on `web.listen_address` serving the
//! self-metrics, the lifecycle endpoints and the targets API.
//!
//! Requests are answered one at a time on this one thread; every handler is cheap (a
//! render of atomics or a snapshot of `Arc`s). Lifecycle requests are turned into
//! coordinator control messages; the web thread never touches pools or the wheel.
//! It stops when `Web::stop` unblocks the server.

use crate::coordinator::{Control, TargetsView};
use crate::metrics::Registry;
use crossbeam_channel::{bounded, Sender};
use serde_json::{json, Map, Value};
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
        let handle = std::thread::Builder::new()
            .name("sw-web".into())
            .spawn(move || {
                for req in s2.incoming_requests() {
                    handle(req, &state);
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

fn header(k: &'static str, v: &'static str) -> Header {
    Header::from_bytes(k.as_bytes(), v.as_bytes())
        .expect("static header names and values are ASCII")
}

fn text(status: u16, body: impl Into<String>) -> Response<std::io::Cursor<Vec<u8>>> {
    Response::from_string(body.into())
        .with_status_code(status)
        .with_header(header("Content-Type", "text/plain; charset=utf-8"))
}

fn handle(req: Request, st: &WebState) {
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
            Response::from_string(targets_json(st, query).to_string())
                .with_header(header("Content-Type", "application/json"))
        }
        _ => text(404, "404 page not found\n"),
    };
    let _ = req.respond(resp);
}

fn query_param<'q>(query: &'q str, key: &str) -> Option<&'q str> {
    query
        .split('&')
        .filter_map(|kv| kv.split_once('='))
        .find(|(k, _)| *k == key)
        .map(|(_, v)| v)
}

fn labels_json(l: &crate::labels::LabelSet) -> Value {
    let mut m = Map::new();
    for x in l {
        m.insert(x.name.clone(), Value::from(x.value.clone()));
    }
    Value::Object(m)
}

/// Prometheus's `/api/v1/targets` shape.
fn targets_json(st: &WebState, query: &str) -> Value {
    let state = query_param(query, "state").unwrap_or("any");
    let pool_filter = query_param(query, "scrapePool");
    let (want_active, want_dropped) = match state {
        "active" => (true, false),
        "dropped" => (false, true),
        _ => (true, true),
    };
    let view = st.targets.read().clone();
    let mut active = Vec::new();
    let mut dropped = Vec::new();
    let mut dropped_counts = Map::new();
    for (job, jv) in &view {
        if pool_filter.is_some_and(|p| p != job) {
            continue;
        }
        dropped_counts.insert(job.clone(), Value::from(jv.dropped_count));
        if want_active {
            let mut ts: Vec<_> = jv.targets.iter().collect();
            ts.sort_by(|a, b| a.url.cmp(&b.url));
            for t in ts {
                let h = t.health.lock().clone();
                let health = match h.up {
                    None => "unknown",
                    Some(true) => "up",
                    Some(false) => "down",
                };
                let last = if h.up.is_some() {
                    crate::time::rfc3339_millis(h.last_scrape_ms)
                } else {
                    "0001-01-01T00:00:00Z".to_string()
                };
                active.push(json!({
                    "discoveredLabels": labels_json(&t.discovered),
                    "labels": labels_json(&t.series_labels),
                    "scrapePool": job,
                    "scrapeUrl": t.display_url(),
                    "globalUrl": t.display_url(),
                    "lastError": h.last_error,
                    "lastScrape": last,
                    "lastScrapeDuration": h.last_duration_s,
                    "health": health,
                    "scrapeInterval": crate::config::format_duration(t.interval),
                    "scrapeTimeout": crate::config::format_duration(t.timeout),
                }));
            }
        }
        if want_dropped {
            for d in &jv.dropped {
                dropped.push(json!({ "discoveredLabels": labels_json(d), "scrapePool": job }));
            }
        }
    }
    json!({
        "status": "success",
        "data": {
            "activeTargets": active,
            "droppedTargets": dropped,
            "droppedTargetCounts": dropped_counts,
        }
    })
}
