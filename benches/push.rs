//! Push benchmark: how much CPU scrapewheel spends to ship a spool to a remote-write
//! receiver, next to vmagent pushing the same samples, in one run.
//!
//! Scenario: a spool of `PUSH_SAMPLES` samples (default 1,000,000) is written with the
//! library the way the flusher writes it: 10,000 series (50 metric names × 50 targets ×
//! 4 label values) scraped every 10 s, each target's samples in one of 16 stripes, blocks
//! of at most 2,000 samples. An in-process receiver on loopback accepts every request
//! (204), decompresses it and counts samples and body bytes; its CPU is not counted.
//!
//! 1. `scrapewheel run` with no scrape jobs and one `[[remote_write]]` to the receiver
//!    ships the spool from its oldest block: the blocks go out as stored.
//! 2. The same with an external label, which makes every block decoded and re-encoded.
//! 3. vmagent (Debian's victoria-metrics package) gets the same blocks POSTed to its
//!    `/api/v1/write` and forwards them to the receiver: it must decode, queue and
//!    re-encode, as any relay does.
//!
//! For each: CPU seconds of the shipping process (utime + stime from /proc, scrapewheel's
//! from its start, vmagent's from the first POST) until the receiver has every sample,
//! samples per CPU-second (per core), and compressed body bytes per sample on the wire.
//!
//! Run: `cargo bench --bench push` (`PUSH_SAMPLES=3000000 cargo bench --bench push` for a
//! longer run). vmagent is skipped with a note when it is not installed.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use scrapewheel::spool::{BlockMeta, Spool, SpoolOptions};
use scrapewheel::wire;

const SERIES: usize = 10_000;
const STRIPES: usize = 16;
const BLOCK_SAMPLES: usize = 2_000;
const INTERVAL_MS: i64 = 10_000;

/// Counts what reaches the receiver.
#[derive(Default)]
struct Counts {
    samples: AtomicU64,
    bytes: AtomicU64,
    requests: AtomicU64,
}

struct Discard {
    addr: String,
    counts: Arc<Counts>,
    server: Arc<tiny_http::Server>,
    threads: Vec<std::thread::JoinHandle<()>>,
}

impl Discard {
    fn start() -> Discard {
        let server = Arc::new(tiny_http::Server::http("127.0.0.1:0").expect("listen"));
        let addr = server.server_addr().to_ip().expect("ip").to_string();
        let counts = Arc::new(Counts::default());
        let threads = (0..4)
            .map(|_| {
                let (s, c) = (server.clone(), counts.clone());
                std::thread::spawn(move || {
                    let mut body = Vec::new();
                    let mut decoder = snap::raw::Decoder::new();
                    while let Ok(mut req) = s.recv() {
                        body.clear();
                        let _ = std::io::Read::read_to_end(req.as_reader(), &mut body);
                        let mut n = 0u64;
                        if let Ok(plain) = decoder.decompress_vec(&body) {
                            let _ =
                                wire::decode_write_request(&plain, |s| n += s.samples.len() as u64);
                        }
                        c.samples.fetch_add(n, Ordering::SeqCst);
                        c.bytes.fetch_add(body.len() as u64, Ordering::SeqCst);
                        c.requests.fetch_add(1, Ordering::SeqCst);
                        let _ = req.respond(tiny_http::Response::empty(204));
                    }
                })
            })
            .collect();
        Discard {
            addr,
            counts,
            server,
            threads,
        }
    }

    fn url(&self) -> String {
        format!("http://{}/api/v1/write", self.addr)
    }

    fn reset(&self) {
        self.counts.samples.store(0, Ordering::SeqCst);
        self.counts.bytes.store(0, Ordering::SeqCst);
        self.counts.requests.store(0, Ordering::SeqCst);
    }

    fn wait_for(&self, n: u64, limit: Duration) -> bool {
        let start = Instant::now();
        while self.counts.samples.load(Ordering::SeqCst) < n {
            if start.elapsed() > limit {
                return false;
            }
            std::thread::sleep(Duration::from_millis(5));
        }
        true
    }
}

impl Drop for Discard {
    fn drop(&mut self) {
        self.server.unblock();
        for _ in &self.threads {
            self.server.unblock();
        }
        for t in self.threads.drain(..) {
            let _ = t.join();
        }
    }
}

/// Writes the spool; returns the blocks' snappy bytes (for feeding vmagent).
fn make_spool(dir: &Path, samples: usize) -> Vec<Vec<u8>> {
    let names: Vec<String> = (0..50)
        .map(|i| format!("node_subsystem_{i}_operations_total"))
        .collect();
    let labels: Vec<Vec<u8>> = (0..SERIES)
        .map(|i| {
            let mut l = Vec::new();
            wire::put_label(&mut l, b"__name__", names[i % 50].as_bytes());
            let target = (i / 50) % 50;
            wire::put_label(
                &mut l,
                b"instance",
                format!("10.20.{}.{}:9100", target / 8, target).as_bytes(),
            );
            wire::put_label(&mut l, b"job", b"node");
            wire::put_label(&mut l, b"mode", format!("m{}", i / 2500).as_bytes());
            l
        })
        .collect();
    let (mut spool, _) = Spool::open(
        dir,
        SpoolOptions {
            segment_size: 16 << 20,
            retention_size: 0,
            retention_time_ms: 0,
        },
    )
    .expect("open spool");
    let mut stripes: Vec<(Vec<u8>, u32, i64, i64)> = vec![(Vec::new(), 0, 0, 0); STRIPES];
    let mut blocks = Vec::new();
    let mut encoder = snap::raw::Encoder::new();
    let t0 = now_ms() - (samples / SERIES) as i64 * INTERVAL_MS - 60_000;
    let mut flush = |spool: &mut Spool, s: usize, b: &mut (Vec<u8>, u32, i64, i64)| {
        spool
            .append(
                &b.0,
                BlockMeta {
                    samples: b.1,
                    stripe: s as u32,
                    min_ts: b.2,
                    max_ts: b.3,
                },
            )
            .expect("append");
        blocks.push(encoder.compress_vec(&b.0).expect("compress"));
        *b = (Vec::new(), 0, 0, 0);
    };
    for k in 0..samples {
        let round = (k / SERIES) as i64;
        let i = k % SERIES;
        // A target's series share a stripe, as the append buffer arranges.
        let s = (i / 50) % STRIPES;
        let ts = t0 + round * INTERVAL_MS;
        let b = &mut stripes[s];
        if b.1 == 0 {
            b.2 = ts;
        }
        wire::put_series(
            &mut b.0,
            &labels[i],
            (round * 7 + i as i64) as f64 * 1.5,
            ts,
        );
        b.1 += 1;
        b.3 = ts;
        if b.1 as usize >= BLOCK_SAMPLES {
            flush(&mut spool, s, b);
        }
    }
    for (s, b) in stripes.iter_mut().enumerate() {
        if b.1 > 0 {
            flush(&mut spool, s, b);
        }
    }
    spool.close().expect("close spool");
    blocks
}

fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as i64)
}

/// utime + stime of a process, seconds.
fn cpu_seconds(pid: u32) -> f64 {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    // Fields after the parenthesised command name; utime and stime are fields 14 and 15.
    let rest = stat.rsplit_once(')').map_or("", |(_, r)| r);
    let f: Vec<&str> = rest.split_whitespace().collect();
    let ticks = |i: usize| f.get(i).and_then(|v| v.parse::<f64>().ok()).unwrap_or(0.0);
    // SAFETY: sysconf has no memory preconditions.
    let hz = unsafe { libc::sysconf(libc::_SC_CLK_TCK) } as f64;
    (ticks(11) + ticks(12)) / hz
}

struct Result {
    what: String,
    cpu: f64,
    wall: f64,
    samples: u64,
    bytes: u64,
    requests: u64,
}

struct KillOnDrop(Child);

impl Drop for KillOnDrop {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("port")
}

fn run_scrapewheel(
    data: &Path,
    recv: &Discard,
    n: u64,
    name: &str,
    global: &str,
) -> Option<Result> {
    recv.reset();
    let cfg = data.with_file_name(format!("{name}.toml"));
    std::fs::write(
        &cfg,
        format!(
            "[global]\n{global}\n[storage]\nretention_time = \"0s\"\nretention_size = \"0B\"\n\
             [[remote_write]]\nname = \"{name}\"\nurl = \"{}\"\n",
            recv.url()
        ),
    )
    .expect("config");
    let start = Instant::now();
    let child = Command::new(env!("CARGO_BIN_EXE_scrapewheel"))
        .args(["run", "--log-level", "warn", "--config"])
        .arg(&cfg)
        .args(["--listen", &format!("127.0.0.1:{}", free_port()), "--data"])
        .arg(data)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .spawn()
        .expect("start scrapewheel");
    let child = KillOnDrop(child);
    let pid = child.0.id();
    if !recv.wait_for(n, Duration::from_secs(600)) {
        eprintln!("{name}: receiver did not get every sample in time");
        return None;
    }
    let cpu = cpu_seconds(pid);
    let wall = start.elapsed().as_secs_f64();
    let c = &recv.counts;
    Some(Result {
        what: name.to_owned(),
        cpu,
        wall,
        samples: c.samples.load(Ordering::SeqCst),
        bytes: c.bytes.load(Ordering::SeqCst),
        requests: c.requests.load(Ordering::SeqCst),
    })
}

fn find_exe(name: &str) -> Option<PathBuf> {
    std::env::var_os("PATH")
        .map(|p| std::env::split_paths(&p).collect::<Vec<_>>())
        .unwrap_or_default()
        .into_iter()
        .chain([PathBuf::from("/usr/bin")])
        .map(|d| d.join(name))
        .find(|p| p.is_file())
}

fn run_vmagent(dir: &Path, blocks: &[Vec<u8>], recv: &Discard, n: u64) -> Option<Result> {
    let Some(exe) = find_exe("vmagent") else {
        eprintln!("vmagent not installed: skipped (apt-get install victoria-metrics)");
        return None;
    };
    recv.reset();
    let port = free_port();
    let child = Command::new(exe)
        .arg(format!("-httpListenAddr=127.0.0.1:{port}"))
        .arg(format!("-remoteWrite.url={}", recv.url()))
        .arg(format!(
            "-remoteWrite.tmpDataPath={}",
            dir.join("vmagent").display()
        ))
        .arg("-loggerLevel=ERROR")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("start vmagent");
    let child = KillOnDrop(child);
    let agent: ureq::Agent = ureq::Agent::config_builder()
        .http_status_as_error(false)
        .timeout_global(Some(Duration::from_secs(30)))
        .build()
        .into();
    let health = format!("http://127.0.0.1:{port}/health");
    let start = Instant::now();
    while !agent
        .get(&health)
        .call()
        .is_ok_and(|r| r.status().as_u16() == 200)
    {
        if start.elapsed() > Duration::from_secs(30) {
            eprintln!("vmagent did not become healthy");
            return None;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    let pid = child.0.id();
    let cpu0 = cpu_seconds(pid);
    let start = Instant::now();
    let write = format!("http://127.0.0.1:{port}/api/v1/write");
    // Two feeders, as two scraping sources would push; the bench's CPU is not counted.
    std::thread::scope(|s| {
        for half in blocks.chunks(blocks.len().div_ceil(2).max(1)) {
            let (agent, write) = (&agent, &write);
            s.spawn(move || {
                for b in half {
                    let _ = agent
                        .post(write)
                        .header("Content-Encoding", "snappy")
                        .header("Content-Type", "application/x-protobuf")
                        .header("X-Prometheus-Remote-Write-Version", "0.1.0")
                        .send(&b[..]);
                }
            });
        }
    });
    if !recv.wait_for(n, Duration::from_secs(600)) {
        eprintln!("vmagent: receiver did not get every sample in time");
        return None;
    }
    let cpu = cpu_seconds(pid) - cpu0;
    let c = &recv.counts;
    Some(Result {
        what: "vmagent (relay)".to_owned(),
        cpu,
        wall: start.elapsed().as_secs_f64(),
        samples: c.samples.load(Ordering::SeqCst),
        bytes: c.bytes.load(Ordering::SeqCst),
        requests: c.requests.load(Ordering::SeqCst),
    })
}

fn main() {
    // `cargo bench` passes `--bench`; `cargo test --benches` runs this with no argument
    // and gets a quick smoke run instead of the measurement.
    let measuring = std::env::args().any(|a| a == "--bench");
    let n: usize = std::env::var("PUSH_SAMPLES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(if measuring { 1_000_000 } else { 20_000 });
    let tmp = tempfile::tempdir().expect("tempdir");
    let data = tmp.path().join("data");
    let t = Instant::now();
    let blocks = make_spool(&data.join("spool"), n);
    let spool_bytes: u64 = std::fs::read_dir(data.join("spool"))
        .map(|d| {
            d.flatten()
                .filter_map(|e| e.metadata().ok())
                .map(|m| m.len())
                .sum()
        })
        .unwrap_or(0);
    println!(
        "push benchmark: {n} samples, {} blocks, {SERIES} series, spool {:.1} MiB (written in {:.1}s)",
        blocks.len(),
        spool_bytes as f64 / (1 << 20) as f64,
        t.elapsed().as_secs_f64()
    );
    let recv = Discard::start();
    let n = n as u64;
    let mut results = Vec::new();
    results.extend(run_scrapewheel(
        &data,
        &recv,
        n,
        "scrapewheel-as-stored",
        "",
    ));
    results.extend(run_scrapewheel(
        &data,
        &recv,
        n,
        "scrapewheel-re-encoded",
        "external_labels = { replica = \"a\" }",
    ));
    results.extend(run_vmagent(tmp.path(), &blocks, &recv, n));
    let scrapewheel_runs = results
        .iter()
        .filter(|r| r.what.starts_with("scrapewheel"))
        .count();
    assert_eq!(
        scrapewheel_runs, 2,
        "a scrapewheel run did not deliver every sample"
    );
    println!(
        "{:<24} {:>8} {:>8} {:>16} {:>13} {:>9}",
        "shipper", "cpu_s", "wall_s", "samples/s/core", "bytes/sample", "requests"
    );
    for r in &results {
        println!(
            "{:<24} {:>8.3} {:>8.2} {:>16.0} {:>13.2} {:>9}",
            r.what,
            r.cpu,
            r.wall,
            r.samples as f64 / r.cpu.max(1e-9),
            r.bytes as f64 / r.samples.max(1) as f64,
            r.requests
        );
    }
    let per = |r: &Result| r.cpu / r.samples.max(1) as f64;
    if let (Some(sw), Some(vm)) = (
        results.iter().find(|r| r.what == "scrapewheel-as-stored"),
        results.iter().find(|r| r.what.starts_with("vmagent")),
    ) {
        println!(
            "vmagent / scrapewheel CPU per sample: {:.1}x (as stored)",
            per(vm) / per(sw).max(1e-12)
        );
        if let Some(re) = results.iter().find(|r| r.what == "scrapewheel-re-encoded") {
            println!(
                "vmagent / scrapewheel CPU per sample: {:.1}x (re-encoded)",
                per(vm) / per(re).max(1e-12)
            );
        }
    }
}
