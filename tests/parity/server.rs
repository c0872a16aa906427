//! Script targets: one loopback HTTP/1.1 listener per target that answers each agent's
//! n-th request with step n of the target's script (the last step repeats). Agents are
//! told apart by User-Agent, so both see the same sequence of bodies whenever they
//! scrape. A target with a `Refuse` closes its listener (and its open connections) for a
//! while once both agents have made enough requests, then listens again on the same port.
//!
//! Threads: one accept thread per target ("parity-accept") that polls a non-blocking
//! listener, and one thread per connection ("parity-conn"). All stop when the target is
//! dropped: the stop flag is checked between polls and on every 200ms read timeout.

use super::model::{Refuse, Step, TargetSpec};
use std::io::{ErrorKind, Read, Write};
use std::net::{Shutdown, SocketAddr, TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

/// The agent behind a request, by index: 0 is Prometheus, 1 is scrapewheel.
fn agent_of(user_agent: &str) -> Option<usize> {
    if user_agent.starts_with("Prometheus/") {
        Some(0)
    } else if user_agent.starts_with("scrapewheel/") {
        Some(1)
    } else {
        None
    }
}

/// A step with its body resolved (timestamps filled in, gzipped if asked).
enum Resolved {
    Reply {
        status: u16,
        content_type: Option<String>,
        body: Vec<u8>,
        gzip: bool,
        delay: Duration,
    },
    Echo,
    Close,
}

enum Phase {
    Serving,
    Refusing { until: Instant },
    Recovered { base: [u64; 2] },
}

struct Shared {
    addr: SocketAddr,
    script: Vec<Resolved>,
    counts: [AtomicU64; 2],
    refuse: Option<Refuse>,
    phase: Mutex<Phase>,
    stop: AtomicBool,
    conns: Mutex<Vec<TcpStream>>,
    handlers: Mutex<Vec<JoinHandle<()>>>,
}

pub struct ScriptTarget {
    pub addr: String,
    shared: Arc<Shared>,
    accept: Option<JoinHandle<()>>,
}

/// Fills `{T+N}` (base + N ms) and `{Ts+N}` (the same in seconds) into `body`.
pub fn resolve_timestamps(body: &str, base_ms: i64) -> String {
    let mut out = String::with_capacity(body.len());
    let mut rest = body;
    while let Some(start) = rest.find("{T") {
        out.push_str(&rest[..start]);
        let tail = &rest[start..];
        let (seconds, skip) = if tail.starts_with("{Ts+") {
            (true, 4)
        } else if tail.starts_with("{T+") {
            (false, 3)
        } else {
            out.push_str("{T");
            rest = &tail[2..];
            continue;
        };
        let end = tail.find('}').expect("placeholder closes");
        let n: f64 = tail[skip..end].parse().expect("placeholder offset");
        let ms = base_ms as f64 + n;
        if seconds {
            out.push_str(&format!("{}", ms / 1000.0));
        } else {
            out.push_str(&format!("{}", ms as i64));
        }
        rest = &tail[end + 1..];
    }
    out.push_str(rest);
    out
}

fn resolve(step: &Step, base_ms: i64) -> Resolved {
    match step {
        Step::Reply {
            status,
            content_type,
            body,
            gzip,
            delay,
        } => {
            let text = resolve_timestamps(body, base_ms);
            let body = if *gzip {
                let mut enc =
                    flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
                enc.write_all(text.as_bytes()).expect("gzip to memory");
                enc.finish().expect("gzip to memory")
            } else {
                text.into_bytes()
            };
            Resolved::Reply {
                status: *status,
                content_type: content_type.clone(),
                body,
                gzip: *gzip,
                delay: *delay,
            }
        }
        Step::Echo => Resolved::Echo,
        Step::Close => Resolved::Close,
    }
}

impl ScriptTarget {
    pub fn start(spec: &TargetSpec, base_ms: i64) -> ScriptTarget {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind script target");
        let addr = listener.local_addr().expect("local addr");
        listener.set_nonblocking(true).expect("nonblocking");
        let shared = Arc::new(Shared {
            addr,
            script: spec.script.iter().map(|s| resolve(s, base_ms)).collect(),
            counts: [AtomicU64::new(0), AtomicU64::new(0)],
            refuse: spec.refuse,
            phase: Mutex::new(Phase::Serving),
            stop: AtomicBool::new(false),
            conns: Mutex::new(Vec::new()),
            handlers: Mutex::new(Vec::new()),
        });
        let s = shared.clone();
        let accept = std::thread::Builder::new()
            .name("parity-accept".into())
            .spawn(move || accept_loop(s, listener))
            .expect("spawn accept thread");
        ScriptTarget {
            addr: addr.to_string(),
            shared,
            accept: Some(accept),
        }
    }

    /// Requests `agent` has made so far.
    pub fn requests(&self, agent: usize) -> u64 {
        self.shared.counts[agent].load(Ordering::SeqCst)
    }

    /// False while a refusing target has not yet recovered and been scraped again.
    pub fn settled(&self) -> bool {
        let Some(r) = self.shared.refuse else {
            return true;
        };
        match &*self.shared.phase.lock().expect("phase lock") {
            Phase::Recovered { base } => {
                (0..2).all(|a| self.requests(a) >= base[a] + r.recover_requests)
            }
            _ => false,
        }
    }
}

impl Drop for ScriptTarget {
    fn drop(&mut self) {
        self.shared.stop.store(true, Ordering::SeqCst);
        if let Some(t) = self.accept.take() {
            let _ = t.join();
        }
        let handlers = std::mem::take(&mut *self.shared.handlers.lock().expect("handlers"));
        for h in handlers {
            let _ = h.join();
        }
    }
}

fn accept_loop(shared: Arc<Shared>, listener: TcpListener) {
    let mut listener = Some(listener);
    while !shared.stop.load(Ordering::SeqCst) {
        {
            let mut phase = shared.phase.lock().expect("phase lock");
            if let Phase::Refusing { until } = *phase {
                if listener.take().is_some() {
                    for c in shared.conns.lock().expect("conns").drain(..) {
                        let _ = c.shutdown(Shutdown::Both);
                    }
                }
                if Instant::now() >= until {
                    // std sets SO_REUSEADDR, so the port is free again at once unless
                    // another process took it meanwhile (then we retry until stopped).
                    if let Ok(l) = TcpListener::bind(shared.addr) {
                        l.set_nonblocking(true).expect("nonblocking");
                        listener = Some(l);
                        let base = [0, 1].map(|a| shared.counts[a].load(Ordering::SeqCst));
                        *phase = Phase::Recovered { base };
                    }
                }
            }
        }
        match listener.as_ref().map(TcpListener::accept) {
            Some(Ok((stream, _))) => {
                let _ = stream.set_nonblocking(false);
                if let Ok(c) = stream.try_clone() {
                    shared.conns.lock().expect("conns").push(c);
                }
                let s = shared.clone();
                let h = std::thread::Builder::new()
                    .name("parity-conn".into())
                    .spawn(move || serve_connection(&s, stream))
                    .expect("spawn connection thread");
                shared.handlers.lock().expect("handlers").push(h);
            }
            _ => std::thread::sleep(Duration::from_millis(20)),
        }
    }
}

struct Request {
    path: String,
    query: String,
    user_agent: String,
    timeout_header: String,
    close: bool,
}

/// Reads one request head; None when the peer closed, sent garbage or we are stopping.
fn read_head(shared: &Shared, stream: &mut TcpStream, buf: &mut Vec<u8>) -> Option<Request> {
    let mut chunk = [0u8; 4096];
    let end = loop {
        if let Some(i) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
            break i;
        }
        if buf.len() > 64 * 1024 || shared.stop.load(Ordering::SeqCst) {
            return None;
        }
        match stream.read(&mut chunk) {
            Ok(0) => return None,
            Ok(n) => buf.extend_from_slice(&chunk[..n]),
            Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => {}
            Err(_) => return None,
        }
    };
    let head = String::from_utf8_lossy(&buf[..end]).into_owned();
    buf.drain(..end + 4);
    let mut lines = head.split("\r\n");
    let mut first = lines.next()?.split(' ');
    let (method, target) = (first.next()?, first.next()?);
    if method != "GET" {
        return None;
    }
    let (path, query) = match target.split_once('?') {
        Some((p, q)) => (p.to_string(), q.to_string()),
        None => (target.to_string(), String::new()),
    };
    let mut req = Request {
        path,
        query,
        user_agent: String::new(),
        timeout_header: String::new(),
        close: false,
    };
    for line in lines {
        let Some((name, value)) = line.split_once(':') else {
            continue;
        };
        let value = value.trim().to_string();
        match name.trim().to_ascii_lowercase().as_str() {
            "user-agent" => req.user_agent = value,
            "x-prometheus-scrape-timeout-seconds" => req.timeout_header = value,
            "connection" => req.close = value.eq_ignore_ascii_case("close"),
            _ => {}
        }
    }
    Some(req)
}

fn escape_label_value(s: &str) -> String {
    s.replace('\\', "\\\\")
        .replace('"', "\\\"")
        .replace('\n', "\\n")
}

fn serve_connection(shared: &Shared, mut stream: TcpStream) {
    let _ = stream.set_read_timeout(Some(Duration::from_millis(200)));
    let mut buf = Vec::new();
    while let Some(req) = read_head(shared, &mut stream, &mut buf) {
        let agent = agent_of(&req.user_agent);
        let n = agent.map(|a| shared.counts[a].fetch_add(1, Ordering::SeqCst));
        if let (Some(r), Some(_)) = (shared.refuse, agent) {
            let mut phase = shared.phase.lock().expect("phase lock");
            let both = (0..2).all(|a| shared.counts[a].load(Ordering::SeqCst) >= r.after);
            if matches!(*phase, Phase::Serving) && both {
                *phase = Phase::Refusing {
                    until: Instant::now() + r.window,
                };
            }
        }
        let last = shared.script.len() - 1;
        let step = &shared.script[n.map_or(last, |n| (n as usize).min(last))];
        let (status, content_type, body, gzip, delay) = match step {
            Resolved::Close => return,
            Resolved::Echo => {
                let body = format!(
                    "echo_request{{path=\"{}\",query=\"{}\",timeout=\"{}\"}} 1\n",
                    escape_label_value(&req.path),
                    escape_label_value(&req.query),
                    escape_label_value(&req.timeout_header)
                );
                (
                    200,
                    Some(super::model::TEXT.to_string()),
                    body.into_bytes(),
                    false,
                    Duration::ZERO,
                )
            }
            Resolved::Reply {
                status,
                content_type,
                body,
                gzip,
                delay,
            } => (*status, content_type.clone(), body.clone(), *gzip, *delay),
        };
        if !delay.is_zero() {
            std::thread::sleep(delay);
        }
        let reason = match status {
            200 => "OK",
            500 => "Internal Server Error",
            503 => "Service Unavailable",
            _ => "Status",
        };
        let mut head = format!(
            "HTTP/1.1 {status} {reason}\r\nContent-Length: {}\r\n",
            body.len()
        );
        if let Some(ct) = content_type {
            head.push_str(&format!("Content-Type: {ct}\r\n"));
        }
        if gzip {
            head.push_str("Content-Encoding: gzip\r\n");
        }
        head.push_str("\r\n");
        let mut out = head.into_bytes();
        out.extend_from_slice(&body);
        if stream.write_all(&out).is_err() || req.close {
            return;
        }
    }
}
