//! No restart spike (issue 6, item 5): the real binary, 2,000 loopback targets × 50
//! series, restarted on a full spool with a receiver that must catch up from all of it.
//!
//! Run 1 scrapes with no receiver (spool only) until retention has kept the spool at its
//! size limit for a while; its VmRSS then is the steady-state figure, and each target's
//! request arrival time modulo the interval (measured here, on the server side) is its
//! phase. SIGTERM. Run 2 opens the same data directory with a `[[remote_write]]` receiver
//! that has no cursor yet, so its shipper sends the whole spool while 2,000 targets are
//! scraped for the first time. Asserted: run 2's peak RSS (VmHWM, which covers spool
//! open, catch-up shipping and the first scrapes) stays near run 1's steady RSS, and every
//! target's first scrape in run 2 arrives on its run-1 phase, spread over the interval.
//!
//! All 2,000 targets are paths (`/m/<i>`) on one loopback port, served by a small raw
//! HTTP/1.1 server in this file: a thread per connection, and the agent keeps only a few
//! connections open, so the test does not need 2,000 listeners or threads.

mod common;

use common::*;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

const TARGETS: usize = 2_000;
const SERIES: usize = 50;
const INTERVAL_US: i64 = 2_000_000;
/// The spool's size limit and segment size (the default segment size, so a reader that
/// took a whole segment into memory would show).
const RETENTION: u64 = 48 << 20;
const SEGMENT: u64 = 16 << 20;

fn unix_us() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .expect("clock after 1970")
        .as_micros() as i64
}

// ---------------------------------------------------------------------------------------
// A raw loopback HTTP/1.1 server

/// Answers a request: (path, body length, arrival in Unix µs) → (status, body).
type Handler = dyn Fn(&str, usize, i64) -> (u16, Arc<Vec<u8>>) + Send + Sync;

/// Keep-alive HTTP/1.1 on 127.0.0.1, a thread per connection. Each request's arrival is
/// taken as soon as its request line is read, before headers and body, so it is the
/// moment the agent sent it (plus loopback latency), not when a pool got round to it.
struct RawServer {
    addr: SocketAddr,
    stop: Arc<AtomicBool>,
    accept: Option<JoinHandle<()>>,
}

impl RawServer {
    fn start(handler: Arc<Handler>) -> RawServer {
        let listener = TcpListener::bind("127.0.0.1:0").expect("listen");
        let addr = listener.local_addr().expect("addr");
        let stop = Arc::new(AtomicBool::new(false));
        let s = stop.clone();
        let accept = std::thread::spawn(move || {
            for conn in listener.incoming() {
                if s.load(Ordering::SeqCst) {
                    break;
                }
                let Ok(conn) = conn else { continue };
                let (h, s) = (handler.clone(), s.clone());
                std::thread::spawn(move || serve(conn, &*h, &s));
            }
        });
        RawServer {
            addr,
            stop,
            accept: Some(accept),
        }
    }
}

impl Drop for RawServer {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        // Wakes the accept loop, which then sees the flag.
        let _ = TcpStream::connect(self.addr);
        if let Some(t) = self.accept.take() {
            let _ = t.join();
        }
    }
}

fn serve(conn: TcpStream, handler: &Handler, stop: &AtomicBool) {
    let _ = conn.set_nodelay(true);
    // Idle connections wake up now and then to notice the server stopping.
    let _ = conn.set_read_timeout(Some(Duration::from_millis(500)));
    let Ok(mut out) = conn.try_clone() else {
        return;
    };
    let mut rd = BufReader::new(conn);
    let mut line = String::new();
    loop {
        line.clear();
        match rd.read_line(&mut line) {
            Ok(0) => return,
            Ok(_) => {}
            Err(e)
                if line.is_empty()
                    && matches!(
                        e.kind(),
                        std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
                    ) =>
            {
                if stop.load(Ordering::SeqCst) {
                    return;
                }
                continue;
            }
            Err(_) => return,
        }
        let arrival = unix_us();
        let path = line.split(' ').nth(1).unwrap_or("").to_owned();
        let mut length = 0usize;
        loop {
            let mut h = String::new();
            match rd.read_line(&mut h) {
                Ok(0) | Err(_) => return,
                Ok(_) => {}
            }
            let h = h.trim_end();
            if h.is_empty() {
                break;
            }
            if let Some((k, v)) = h.split_once(':') {
                if k.eq_ignore_ascii_case("content-length") {
                    length = v.trim().parse().unwrap_or(0);
                }
            }
        }
        let mut body = vec![0u8; length];
        if rd.read_exact(&mut body).is_err() {
            return;
        }
        let (status, reply) = handler(&path, length, arrival);
        let head = format!(
            "HTTP/1.1 {status} X\r\nContent-Type: text/plain; version=0.0.4\r\nContent-Length: {}\r\n\r\n",
            reply.len()
        );
        if out.write_all(head.as_bytes()).is_err() || out.write_all(&reply).is_err() {
            return;
        }
    }
}

// ---------------------------------------------------------------------------------------
// The farm and the sink

/// One series of a farm target: its labels without the target's (`__name__` first) and
/// its value.
type Series = (Vec<(String, String)>, f64);

/// 50 series in the shape of a small exporter: counters, gauges and a histogram.
fn series() -> Vec<Series> {
    let l = |name: &str, pairs: &[(&str, &str)]| {
        let mut v = vec![("__name__".to_owned(), name.to_owned())];
        v.extend(
            pairs
                .iter()
                .map(|(k, v)| ((*k).to_owned(), (*v).to_owned())),
        );
        v
    };
    let mut out = Vec::new();
    let codes = [
        "200", "201", "204", "301", "304", "400", "401", "403", "404", "500",
    ];
    for (i, code) in codes.iter().enumerate() {
        for method in ["GET", "POST"] {
            let labels = [
                ("code", *code),
                ("handler", "/api/v1/items"),
                ("method", method),
            ];
            out.push((l("http_requests_total", &labels), (1000 * i + 17) as f64));
        }
    }
    for i in 0..10 {
        let queue = format!("q{i}");
        let labels = [("pool", "default"), ("queue", queue.as_str())];
        out.push((l("worker_queue_depth", &labels), (i * 3) as f64));
    }
    let les = [
        "0.005", "0.01", "0.025", "0.05", "0.1", "0.25", "0.5", "1", "2.5", "5", "10", "25", "+Inf",
    ];
    for (i, le) in les.iter().enumerate() {
        let labels = [("handler", "/api/v1/items"), ("le", *le)];
        out.push((
            l("request_duration_seconds_bucket", &labels),
            (100 * (i + 1)) as f64,
        ));
    }
    let h = [("handler", "/api/v1/items")];
    out.push((l("request_duration_seconds_sum", &h), 123.5));
    out.push((l("request_duration_seconds_count", &h), 1300.0));
    for i in out.len()..SERIES {
        let version = format!("1.2.{i}");
        let labels = [("version", version.as_str())];
        out.push((l(&format!("build_info_{i}"), &labels), 1.0));
    }
    out
}

/// The text exposition of [`series`], with HELP and TYPE lines.
fn exposition() -> Vec<u8> {
    let mut b = String::new();
    let mut family = String::new();
    for (labels, value) in series() {
        let name = &labels[0].1;
        let fam = name
            .trim_end_matches("_bucket")
            .trim_end_matches("_sum")
            .trim_end_matches("_count");
        if fam != family {
            family = fam.to_owned();
            let kind = match fam {
                "http_requests_total" => "counter",
                "request_duration_seconds" => "histogram",
                _ => "gauge",
            };
            b.push_str(&format!(
                "# HELP {fam} A farm metric.\n# TYPE {fam} {kind}\n"
            ));
        }
        let pairs: Vec<String> = labels[1..]
            .iter()
            .map(|(k, v)| format!("{k}=\"{v}\""))
            .collect();
        b.push_str(&format!("{name}{{{}}} {value}\n", pairs.join(",")));
    }
    b.into_bytes()
}

/// Fills the spool in `data` to `bytes` with what run 1's agent would write for the farm
/// (the same series, 2,000 samples a block, the last ten minutes' timestamps), through the
/// crate's own `Spool`. Scraping 2,000 × 50 at 2 s in a debug build spools under 1 MiB/s,
/// far too little for a spool big enough that reading it into memory would show.
fn prefill(data: &Path, farm: SocketAddr, bytes: u64) {
    use scrapewheel::spool::{BlockMeta, Spool, SpoolOptions};
    use scrapewheel::wire::{put_label, put_series};
    let opts = SpoolOptions {
        segment_size: SEGMENT,
        retention_size: RETENTION,
        retention_time_ms: 0,
    };
    let (mut spool, _) =
        Spool::open(&scrapewheel::agent::spool_dir(data), opts).expect("open spool");
    let instance = farm.to_string();
    let mut encoded = Vec::with_capacity(TARGETS * SERIES);
    for t in 0..TARGETS {
        let t = t.to_string();
        for (labels, value) in series() {
            let mut all = labels.clone();
            all.push(("instance".into(), instance.clone()));
            all.push(("job".into(), "farm".into()));
            all.push(("t".into(), t.clone()));
            all.sort();
            let mut e = Vec::new();
            for (k, v) in &all {
                put_label(&mut e, k.as_bytes(), v.as_bytes());
            }
            encoded.push((e, value));
        }
    }
    let start_ms = unix_us() / 1000 - 600_000;
    let (mut block, mut samples, mut blocks) = (Vec::new(), 0u32, 0u32);
    for round in 0.. {
        let ts = start_ms + round * 2000;
        for (labels, value) in &encoded {
            put_series(&mut block, labels, value + round as f64, ts);
            samples += 1;
            if samples == 2000 {
                let meta = BlockMeta {
                    samples,
                    stripe: blocks % 16,
                    min_ts: ts - 2000,
                    max_ts: ts,
                };
                spool.append(&block, meta).expect("append");
                (block, samples, blocks) = (Vec::new(), 0, blocks + 1);
                if spool.disk_bytes() >= bytes {
                    spool.close().expect("close spool");
                    return;
                }
            }
        }
    }
}

/// Every scrape the farm answered: (target index, arrival in Unix µs).
type Arrivals = Arc<Mutex<Vec<(usize, i64)>>>;

fn farm() -> (RawServer, Arrivals) {
    let body = Arc::new(exposition());
    let arrivals: Arrivals = Arc::new(Mutex::new(Vec::with_capacity(TARGETS * 16)));
    let a = arrivals.clone();
    let not_found = Arc::new(Vec::new());
    let server = RawServer::start(Arc::new(move |path: &str, _, at| {
        match path
            .strip_prefix("/m/")
            .and_then(|i| i.parse::<usize>().ok())
        {
            Some(i) if i < TARGETS => {
                a.lock().expect("lock").push((i, at));
                (200, body.clone())
            }
            _ => (404, not_found.clone()),
        }
    }));
    (server, arrivals)
}

/// Every POST the sink accepted: (arrival in Unix µs, body bytes).
type Posts = Arc<Mutex<Vec<(i64, usize)>>>;

/// A remote-write receiver that accepts and drops everything.
fn sink() -> (RawServer, Posts) {
    let posts: Posts = Arc::new(Mutex::new(Vec::new()));
    let p = posts.clone();
    let empty = Arc::new(Vec::new());
    let server = RawServer::start(Arc::new(move |_: &str, len, at| {
        p.lock().expect("lock").push((at, len));
        (200, empty.clone())
    }));
    (server, posts)
}

fn config(farm: SocketAddr, receiver: Option<SocketAddr>) -> String {
    let mut c = format!(
        r#"
[global]
scrape_interval = "2s"
scrape_timeout = "1s"

[storage]
flush_interval = "500ms"
retention_size = "{RETENTION}"
segment_size = "{SEGMENT}"

[[scrape_configs]]
job_name = "farm"
[[scrape_configs.relabel_configs]]
source_labels = ["t"]
target_label = "__metrics_path__"
replacement = "/m/$1"
"#
    );
    for i in 0..TARGETS {
        c.push_str(&format!(
            "[[scrape_configs.static_configs]]\ntargets = [\"{farm}\"]\nlabels = {{ t = \"{i}\" }}\n"
        ));
    }
    if let Some(r) = receiver {
        c.push_str(&format!(
            "\n[[remote_write]]\nname = \"sink\"\nurl = \"http://{r}/api/v1/write\"\n"
        ));
    }
    c
}

// ---------------------------------------------------------------------------------------
// Measurements

/// A `Vm*:` figure of /proc/<pid>/status, in bytes.
fn proc_status(pid: i32, key: &str) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).expect("proc status");
    status
        .lines()
        .find_map(|l| l.strip_prefix(key)?.strip_prefix(':'))
        .and_then(|v| v.trim().strip_suffix("kB"))
        .and_then(|v| v.trim().parse::<u64>().ok())
        .map(|kb| kb * 1024)
        .unwrap_or_else(|| panic!("{key} in /proc/{pid}/status"))
}

fn spool_bytes(data: &Path) -> u64 {
    std::fs::read_dir(data.join("spool"))
        .map(|d| {
            d.flatten()
                .filter(|e| e.file_name().to_string_lossy().ends_with(".seg"))
                .filter_map(|e| e.metadata().ok())
                .map(|m| m.len())
                .sum()
        })
        .unwrap_or(0)
}

fn mib(b: u64) -> f64 {
    b as f64 / (1 << 20) as f64
}

/// `x` folded into (-interval/2, interval/2].
fn centred(x: i64) -> i64 {
    let m = x.rem_euclid(INTERVAL_US);
    if m > INTERVAL_US / 2 {
        m - INTERVAL_US
    } else {
        m
    }
}

/// Each target's phase (offset in the interval, µs) from its arrivals since `since`: the
/// median of its offsets, taken around its first one so the wrap at the interval's end
/// does not split them. `None` for a target not scraped since then.
fn phases(arrivals: &[(usize, i64)], since: i64) -> Vec<Option<i64>> {
    let mut per: Vec<Vec<i64>> = vec![Vec::new(); TARGETS];
    for &(t, at) in arrivals.iter().filter(|(_, at)| *at >= since) {
        per[t].push(at);
    }
    per.into_iter()
        .map(|mut ats| {
            let first = *ats.first()?;
            let mut d: Vec<i64> = ats.drain(..).map(|a| centred(a - first)).collect();
            d.sort_unstable();
            Some((first + d[d.len() / 2]).rem_euclid(INTERVAL_US))
        })
        .collect()
}

/// Each target's first arrival at or after `since` (Unix µs).
fn first_arrivals(arrivals: &[(usize, i64)], since: i64) -> Vec<Option<i64>> {
    let mut first = vec![None; TARGETS];
    for &(t, at) in arrivals.iter().filter(|(_, at)| *at >= since) {
        let f: &mut Option<i64> = &mut first[t];
        if f.is_none_or(|f| at < f) {
            *f = Some(at);
        }
    }
    first
}

fn scraped_since(arrivals: &Arrivals, since: i64) -> usize {
    first_arrivals(&arrivals.lock().expect("lock"), since)
        .iter()
        .flatten()
        .count()
}

/// CPU time (ms) of the threads of `pid` by name and nice value, highest first; trailing
/// digits and dashes are dropped from names, so "sw-worker-3" counts as "sw-worker".
fn cpu_by_thread(pid: i32) -> Vec<(String, u64)> {
    let mut by: std::collections::BTreeMap<String, u64> = Default::default();
    let tick_ms = 1000 / 100; // USER_HZ is 100 on Linux
    for task in std::fs::read_dir(format!("/proc/{pid}/task"))
        .into_iter()
        .flatten()
        .flatten()
    {
        let comm = std::fs::read_to_string(task.path().join("comm")).unwrap_or_default();
        let stat = std::fs::read_to_string(task.path().join("stat")).unwrap_or_default();
        // Fields after the ")" that ends comm, from the 3rd (state): utime is the 14th.
        let rest = stat.rsplit_once(')').map_or("", |r| r.1);
        let f: Vec<&str> = rest.split_whitespace().collect();
        let ticks = f.get(11).and_then(|u| u.parse::<u64>().ok()).unwrap_or(0)
            + f.get(12).and_then(|s| s.parse::<u64>().ok()).unwrap_or(0);
        let name = comm
            .trim()
            .trim_end_matches(|c: char| c.is_ascii_digit() || c == '-');
        // The 19th field: the thread's nice value.
        let nice = f.get(16).copied().unwrap_or("?");
        *by.entry(format!("{name} (nice {nice})")).or_default() += ticks * tick_ms;
    }
    let mut v: Vec<_> = by.into_iter().collect();
    v.sort_by_key(|e| std::cmp::Reverse(e.1));
    v
}

/// Samples a process's VmRSS every 20 ms, for the report: the highest in each half second.
struct RssSampler {
    running: Arc<AtomicBool>,
    thread: JoinHandle<Vec<u64>>,
}

impl RssSampler {
    fn start(pid: i32, since_us: i64) -> RssSampler {
        let running = Arc::new(AtomicBool::new(true));
        let r = running.clone();
        let thread = std::thread::spawn(move || {
            let mut peaks: Vec<u64> = Vec::new();
            while r.load(Ordering::SeqCst) {
                let slot = ((unix_us() - since_us) / 500_000) as usize;
                if peaks.len() <= slot {
                    peaks.resize(slot + 1, 0);
                }
                let rss = std::fs::read_to_string(format!("/proc/{pid}/status"))
                    .ok()
                    .and_then(|s| {
                        let v = s.lines().find_map(|l| l.strip_prefix("VmRSS:"))?;
                        v.trim().trim_end_matches("kB").trim().parse::<u64>().ok()
                    })
                    .unwrap_or(0);
                peaks[slot] = peaks[slot].max(rss << 10);
                std::thread::sleep(Duration::from_millis(20));
            }
            peaks
        });
        RssSampler { running, thread }
    }

    /// The peaks in MiB, one per half second from `since_us`.
    fn finish(self) -> String {
        self.running.store(false, Ordering::SeqCst);
        let peaks = self.thread.join().expect("sampler");
        let mib: Vec<String> = peaks.iter().map(|b| format!("{:.1}", mib(*b))).collect();
        mib.join(" ")
    }
}

fn percentile(sorted: &[i64], p: f64) -> i64 {
    sorted[((sorted.len() - 1) as f64 * p).round() as usize]
}

#[test]
fn restart_on_a_full_spool_has_no_memory_spike_and_keeps_phases() {
    let dir = tempfile::tempdir().expect("tempdir");
    let data = dir.path().join("data");
    let (farm, arrivals) = farm();
    let filling = Instant::now();
    prefill(&data, farm.addr, RETENTION - (2 << 20));
    let prefill_ms = filling.elapsed().as_millis();

    // ---- Run 1: spool only, until retention has held the spool at its limit a while.
    let t1 = unix_us();
    let mut agent = Agent::start(dir.path(), &config(farm.addr, None));
    let pid = agent.pid();
    let sampler1 = RssSampler::start(pid, t1);
    wait_for("every target scraped", Duration::from_secs(20), || {
        scraped_since(&arrivals, t1) == TARGETS
    });
    wait_for(
        "the spool to reach retention",
        Duration::from_secs(30),
        || {
            agent
                .metric("scrapewheel_spool_retention_removed_bytes_total")
                .is_some_and(|b| b > 0.0)
        },
    );
    // Two more intervals at the limit, then the steady figure: the highest VmRSS seen
    // over one more interval (the flusher and the workers' buffers breathe within it).
    std::thread::sleep(Duration::from_micros(2 * INTERVAL_US as u64));
    let steady_from = unix_us();
    let mut steady_rss = 0;
    while unix_us() - steady_from < INTERVAL_US {
        steady_rss = steady_rss.max(proc_status(pid, "VmRSS"));
        std::thread::sleep(Duration::from_millis(100));
    }
    let hwm1 = proc_status(pid, "VmHWM");
    let timeline1 = sampler1.finish();
    let phase1 = phases(
        &arrivals.lock().expect("lock"),
        steady_from - 2 * INTERVAL_US,
    );
    // Run 1's own jitter in steady state, the yardstick for run 2's deviations.
    let mut jitter1: Vec<i64> = arrivals
        .lock()
        .expect("lock")
        .iter()
        .filter(|(_, at)| *at >= steady_from - 2 * INTERVAL_US)
        .filter_map(|&(t, at)| Some(centred(at - phase1[t]?).abs()))
        .collect();
    jitter1.sort_unstable();
    assert_eq!(agent.terminate(), 0, "stderr: {}", agent.stderr());
    let full = spool_bytes(&data);
    assert!(
        full >= RETENTION - SEGMENT,
        "the spool should be full: {full} bytes of {RETENTION}"
    );

    // ---- Run 2: same data, a new receiver that must be sent the whole spool.
    let (sink, posts) = sink();
    let t2 = unix_us();
    let mut agent = Agent::start(dir.path(), &config(farm.addr, Some(sink.addr)));
    let pid = agent.pid();
    let started = Instant::now();
    let ready_ms = (unix_us() - t2) / 1000;
    let ready_hwm = proc_status(pid, "VmHWM");
    let sampler = RssSampler::start(pid, t2);
    wait_for(
        "every target scraped after the restart",
        Duration::from_secs(20),
        || scraped_since(&arrivals, t2) == TARGETS,
    );
    // The whole spool sent (what it held at the restart; run 2 adds more meanwhile).
    wait_for("the receiver to catch up", Duration::from_secs(20), || {
        posts
            .lock()
            .expect("lock")
            .iter()
            .map(|p| p.1 as u64)
            .sum::<u64>()
            >= full * 9 / 10
    });
    // One more interval: the second round of scrapes and the tail of the catch-up.
    let settle = Duration::from_micros(INTERVAL_US as u64);
    std::thread::sleep(settle.saturating_sub(started.elapsed()).max(settle / 2));
    let hwm2 = proc_status(pid, "VmHWM");
    let rss2 = proc_status(pid, "VmRSS");
    let cpu2 = cpu_by_thread(pid);
    let timeline = sampler.finish();
    assert_eq!(agent.terminate(), 0, "stderr: {}", agent.stderr());

    // ---- Figures.
    let posts = posts.lock().expect("lock").clone();
    let mut sent = 0u64;
    let caught_up = posts.iter().find_map(|&(at, len)| {
        sent += len as u64;
        (sent >= full * 9 / 10).then_some(at - t2)
    });
    let arrivals = arrivals.lock().expect("lock").clone();
    let first2 = first_arrivals(&arrivals, t2);
    // Run 1's first scrapes against run 1's steady phase: what a first scrape costs
    // without a restart's catch-up.
    let mut dev1: Vec<i64> = phase1
        .iter()
        .zip(&first_arrivals(&arrivals, t1))
        .filter_map(|(p, f)| Some(centred(f.as_ref()? - p.as_ref()?).abs()))
        .collect();
    dev1.sort_unstable();
    eprintln!(
        "run 1 first scrapes vs run 1 phase: p50 {} µs, p99 {} µs; run 2 CPU ms by thread: {cpu2:?}",
        percentile(&dev1, 0.5),
        percentile(&dev1, 0.99)
    );
    let mut dev: Vec<i64> = phase1
        .iter()
        .zip(&first2)
        .map(|(p, f)| match (p, f) {
            (Some(p), Some(f)) => centred(f - p).abs(),
            _ => i64::MAX,
        })
        .collect();
    dev.sort_unstable();
    // "On phase" can mean no more than the machine allows: 50 ms, or twice run 1's own
    // steady-state p99 jitter on a box too loaded for that, but never more than 10% of
    // the interval, where a random phase would pass for one target in five.
    let tolerance = (2 * percentile(&jitter1, 0.99)).clamp(50_000, INTERVAL_US / 10);
    let within = dev.iter().filter(|d| **d <= tolerance).count();
    let mut windows = [0usize; 10];
    for f in first2.iter().flatten() {
        windows[(f.rem_euclid(INTERVAL_US) * 10 / INTERVAL_US) as usize] += 1;
    }
    let max_window = windows.iter().copied().max().unwrap_or(0);
    let spread =
        first2.iter().flatten().max().unwrap_or(&0) - first2.iter().flatten().min().unwrap_or(&0);
    eprintln!(
        "prefill {prefill_ms} ms; run 1: steady VmRSS {:.1} MiB, VmHWM {:.1} MiB; spool {:.2} MiB \
         at restart; steady jitter p50 {} µs, p99 {} µs, max {} µs\n\
         run 2: VmHWM {:.1} MiB, VmRSS {:.1} MiB at the end; catch-up {} ms after start \
         ({} posts, {:.2} MiB)\n\
         phase deviation of first scrapes: p50 {} µs, p99 {} µs, max {} µs; {within}/{TARGETS} \
         within {} ms\n\
         first scrapes per 10% window: {windows:?} (share {}); spread over {} ms\n\
         run 1 VmRSS per 0.5 s from start (MiB): {timeline1}\n\
         run 2 ready after {ready_ms} ms with VmHWM {:.1} MiB; VmRSS per 0.5 s from start \
         (MiB): {}",
        mib(steady_rss),
        mib(hwm1),
        mib(full),
        percentile(&jitter1, 0.5),
        percentile(&jitter1, 0.99),
        jitter1[jitter1.len() - 1],
        mib(hwm2),
        mib(rss2),
        caught_up.map_or(-1, |c| c / 1000),
        posts.len(),
        mib(sent),
        percentile(&dev, 0.5),
        percentile(&dev, 0.99),
        dev[dev.len() - 1],
        tolerance / 1000,
        TARGETS / 10,
        spread / 1000,
        mib(ready_hwm),
        timeline,
    );

    // ---- (a) No memory spike. Run 2's peak covers the config parse, spool open (a scan
    // of every segment), the shipper sending the whole spool (~35 MiB) and 2,000 first
    // scrapes (each building its series cache); run 1 did all of that but the shipping.
    // Measured in a debug build: run 1's plateau varies from 40 to 46 MiB between
    // processes (malloc arenas spread differently over the workers), and run 2's peak
    // came out between 45 and 53 MiB, up to 1.3× a low run 1. The bound, 1.25× + 8 MiB
    // (58–66 MiB), absorbs that; what it catches is a spike of the spool's order: the
    // spool read into memory (~35 MiB), the shipper buffering its catch-up, or the first
    // scrapes' bodies and caches held twice over. One 16 MiB segment read whole would
    // not reliably show at this scale.
    let bound = steady_rss + steady_rss / 4 + (8 << 20);
    assert!(
        hwm2 <= bound,
        "restart spike: run 2 VmHWM {:.1} MiB > bound {:.1} MiB (run 1 steady VmRSS {:.1} MiB)",
        mib(hwm2),
        mib(bound),
        mib(steady_rss)
    );

    // ---- (b) Phases kept, no thundering herd. A phase chosen at random per start would
    // put 5% (100 ms of 2 s) to at most 20% (the tolerance's cap) of targets within the
    // tolerance of their old phase; a herd (all first scrapes at start-up, or at one
    // shared moment) would fail that too and fill one window.
    assert!(
        within * 100 >= TARGETS * 99,
        "only {within}/{TARGETS} first scrapes within {} ms of their run-1 phase \
         (p50 {} µs, p99 {} µs)",
        tolerance / 1000,
        percentile(&dev, 0.5),
        percentile(&dev, 0.99)
    );
    assert!(
        max_window <= 2 * TARGETS / 10,
        "thundering herd: first scrapes per 10% of the interval {windows:?}"
    );
    drop(sink);
    drop(farm);
}
