//! A null remote-write receiver for the load rig (`scripts/bench.py`).
//!
//! Accepts remote-write 1.0 POSTs on any path (`/api/v1/write` for Prometheus and
//! scrapewheel, whatever URL vmagent is given), decodes each body (snappy, then the
//! `WriteRequest` protobuf with [`scrapewheel::wire::decode_write_request`]), counts
//! requests, bytes, series and samples, and answers 204 No Content. A body it cannot
//! decode is answered 400 and counted, so a broken sender shows up in the figures.
//!
//! `GET /stats` returns the counters as JSON; on SIGTERM or SIGINT the same JSON is
//! written to `--stats-file` and the process exits 0.
//!
//! Threads: `--threads` handler threads (named `sink-N`) share one tiny_http server; each
//! waits for a request at most 100 ms at a time, so all of them notice the stop flag the
//! signal handler sets, and main joins them before writing the stats file.
//!
//! ```sh
//! cargo run --release --example null_sink -- --listen 127.0.0.1:9201 --stats-file sink.json
//! ```

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering::Relaxed};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use scrapewheel::wire::decode_write_request;

/// What the sink has received since it started.
#[derive(Default)]
struct Counters {
    requests: AtomicU64,
    /// Request bodies as sent (compressed).
    bytes: AtomicU64,
    /// Request bodies after snappy decompression.
    raw_bytes: AtomicU64,
    series: AtomicU64,
    samples: AtomicU64,
    /// Bodies that were not snappy-compressed remote-write 1.0 requests.
    rejected: AtomicU64,
}

impl Counters {
    fn json(&self, started: Instant) -> String {
        let now = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map(|d| d.as_secs_f64())
            .unwrap_or(0.0);
        format!(
            "{{\"time\":{now:.6},\"uptime_s\":{:.3},\"requests\":{},\"bytes\":{},\"raw_bytes\":{},\
             \"series\":{},\"samples\":{},\"rejected\":{}}}\n",
            started.elapsed().as_secs_f64(),
            self.requests.load(Relaxed),
            self.bytes.load(Relaxed),
            self.raw_bytes.load(Relaxed),
            self.series.load(Relaxed),
            self.samples.load(Relaxed),
            self.rejected.load(Relaxed),
        )
    }
}

struct Args {
    listen: String,
    stats_file: Option<String>,
    threads: usize,
}

fn parse_args() -> Result<Args, String> {
    let mut args = Args {
        listen: "127.0.0.1:9201".into(),
        stats_file: None,
        threads: 2,
    };
    let mut it = std::env::args().skip(1);
    while let Some(flag) = it.next() {
        let mut value = || it.next().ok_or_else(|| format!("{flag} needs a value"));
        match flag.as_str() {
            "--listen" => args.listen = value()?,
            "--stats-file" => args.stats_file = Some(value()?),
            "--threads" => {
                let v = value()?;
                args.threads = v
                    .parse()
                    .ok()
                    .filter(|n| (1..=64).contains(n))
                    .ok_or_else(|| format!("--threads {v:?}: want 1 to 64"))?;
            }
            "-h" | "--help" => {
                return Err(
                    "usage: null_sink [--listen ADDR] [--stats-file FILE] [--threads N]".into(),
                )
            }
            other => return Err(format!("unknown argument {other:?}")),
        }
    }
    Ok(args)
}

/// Per-thread buffers, reused from request to request.
#[derive(Default)]
struct Buffers {
    body: Vec<u8>,
    raw: Vec<u8>,
}

fn handle(mut req: tiny_http::Request, c: &Counters, b: &mut Buffers, started: Instant) {
    let status = match req.method() {
        tiny_http::Method::Get if req.url() == "/stats" => {
            let resp = tiny_http::Response::from_string(c.json(started));
            // Nothing to do when the client has gone away.
            let _ = req.respond(resp);
            return;
        }
        tiny_http::Method::Post => receive(&mut req, c, b),
        _ => 404,
    };
    let _ = req.respond(tiny_http::Response::empty(status));
}

/// Reads, decompresses and decodes one remote-write body; returns the HTTP status.
fn receive(req: &mut tiny_http::Request, c: &Counters, b: &mut Buffers) -> u16 {
    c.requests.fetch_add(1, Relaxed);
    b.body.clear();
    if req.as_reader().read_to_end(&mut b.body).is_err() {
        c.rejected.fetch_add(1, Relaxed);
        return 400;
    }
    c.bytes.fetch_add(b.body.len() as u64, Relaxed);
    let snappy = req.headers().iter().all(|h| {
        !h.field.equiv("Content-Encoding") || h.value.as_str().eq_ignore_ascii_case("snappy")
    });
    let Some(len) = snappy
        .then(|| snap::raw::decompress_len(&b.body).ok())
        .flatten()
    else {
        c.rejected.fetch_add(1, Relaxed);
        return 415;
    };
    b.raw.resize(len, 0);
    if snap::raw::Decoder::new()
        .decompress(&b.body, &mut b.raw)
        .is_err()
    {
        c.rejected.fetch_add(1, Relaxed);
        return 400;
    }
    c.raw_bytes.fetch_add(len as u64, Relaxed);
    let (mut series, mut samples) = (0u64, 0u64);
    let decoded = decode_write_request(&b.raw, |s| {
        series += 1;
        samples += s.samples.len() as u64;
    });
    if decoded.is_err() {
        c.rejected.fetch_add(1, Relaxed);
        return 400;
    }
    c.series.fetch_add(series, Relaxed);
    c.samples.fetch_add(samples, Relaxed);
    204
}

fn main() {
    let args = match parse_args() {
        Ok(a) => a,
        Err(e) => {
            eprintln!("null_sink: {e}");
            std::process::exit(2);
        }
    };
    let server = match tiny_http::Server::http(&args.listen) {
        Ok(s) => Arc::new(s),
        Err(e) => {
            eprintln!("null_sink: listen on {}: {e}", args.listen);
            std::process::exit(1);
        }
    };
    let stop = Arc::new(AtomicBool::new(false));
    for sig in [signal_hook::consts::SIGTERM, signal_hook::consts::SIGINT] {
        if let Err(e) = signal_hook::flag::register(sig, stop.clone()) {
            eprintln!("null_sink: signal handler: {e}");
            std::process::exit(1);
        }
    }
    let counters = Arc::new(Counters::default());
    let started = Instant::now();
    let mut handlers = Vec::with_capacity(args.threads);
    for n in 0..args.threads {
        let (server, stop, counters) = (server.clone(), stop.clone(), counters.clone());
        let spawned = std::thread::Builder::new()
            .name(format!("sink-{n}"))
            .spawn(move || {
                let mut buffers = Buffers::default();
                while !stop.load(Relaxed) {
                    match server.recv_timeout(Duration::from_millis(100)) {
                        Ok(Some(req)) => handle(req, &counters, &mut buffers, started),
                        Ok(None) => {}
                        Err(e) => {
                            eprintln!("null_sink: accept: {e}");
                            break;
                        }
                    }
                }
            });
        match spawned {
            Ok(h) => handlers.push(h),
            Err(e) => {
                eprintln!("null_sink: spawn handler thread: {e}");
                std::process::exit(1);
            }
        }
    }
    eprintln!("null_sink: listening on {}", args.listen);
    for h in handlers {
        let _ = h.join();
    }
    if let Some(path) = &args.stats_file {
        if let Err(e) = std::fs::write(path, counters.json(started)) {
            eprintln!("null_sink: write {path}: {e}");
            std::process::exit(1);
        }
    }
}
