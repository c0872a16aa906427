//! What idle keep-alive connections cost the scrape client, and what a scrape costs in
//! CPU, measured against a farm of loopback targets (issue 6).
//!
//! Reads target addresses (`host:port`, one a line, as `scripts/nginx_farm.py` prints
//! them) from stdin, then on this one thread: one warm-up scrape (so the body buffer and
//! the client's lazily built parts are in the baseline), one scrape of every target
//! (each leaves an idle pooled connection), and `--passes` more rounds over all targets
//! that reuse those connections. It prints, as `key=value` lines: RSS before and after
//! the first round and the bytes per idle connection, open sockets after the first and
//! the last round (equal when every connection was reused), and the CPU time (user +
//! system, this process only, not the server's) per scrape of the reuse rounds.
//!
//! ```sh
//! scripts/nginx_farm.py --targets 2000 --series 500 > /tmp/farm.txt &   # wait for the list
//! cargo run --release --example idle_conns -- --passes 5 < /tmp/farm.txt
//! ```
//!
//! It stops after the last round; every loop is bounded by the input.

use std::io::{self, BufRead};
use std::time::Duration;

use scrapewheel::scrape::{accept_header, HttpClient, Protocol, ScrapeRequest};

fn main() {
    if let Err(e) = run() {
        eprintln!("idle_conns: {e}");
        std::process::exit(1);
    }
}

fn run() -> Result<(), String> {
    let mut passes = 5usize;
    let mut args = std::env::args().skip(1);
    while let Some(a) = args.next() {
        match a.as_str() {
            "--passes" => {
                passes = args
                    .next()
                    .and_then(|v| v.parse().ok())
                    .ok_or("--passes needs a number")?;
            }
            other => return Err(format!("unknown argument {other:?}")),
        }
    }
    let mut targets = Vec::new();
    for line in io::stdin().lock().lines() {
        let line = line.map_err(|e| format!("reading stdin: {e}"))?;
        let line = line.trim();
        if !line.is_empty() && !line.starts_with('#') {
            targets.push(format!("http://{line}/metrics"));
        }
    }
    let first = targets.first().ok_or("no targets on stdin")?.clone();

    let client = HttpClient::new();
    let accept = accept_header(&Protocol::DEFAULTS);
    let request = |url: &str| ScrapeRequest {
        url: url.to_owned(),
        accept: accept.clone(),
        accept_encoding_gzip: true,
        timeout: Duration::from_secs(10),
        body_size_limit: 0,
        auth: None,
    };
    let mut body = Vec::new();
    let scrape = |url: &str, body: &mut Vec<u8>| -> Result<u64, String> {
        let got = client
            .fetch(&request(url), body)
            .map_err(|e| e.to_string())?;
        Ok(got.body_len as u64)
    };

    scrape(&first, &mut body)?;
    let rss_before = rss_bytes()?;
    for t in &targets {
        scrape(t, &mut body)?;
    }
    let rss_after = rss_bytes()?;
    let sockets_first = sockets()?;

    let cpu_start = cpu_time();
    let mut bytes = 0u64;
    for _ in 0..passes {
        for t in &targets {
            bytes += scrape(t, &mut body)?;
        }
    }
    let cpu = cpu_time() - cpu_start;
    let scrapes = (passes * targets.len()) as f64;

    println!("targets={}", targets.len());
    println!("rss_before_kib={}", rss_before / 1024);
    println!("rss_after_kib={}", rss_after / 1024);
    println!(
        "bytes_per_idle_connection={}",
        rss_after.saturating_sub(rss_before) / targets.len() as u64
    );
    println!("sockets_after_first_round={sockets_first}");
    println!("sockets_after_last_round={}", sockets()?);
    if scrapes > 0.0 {
        println!("mean_body_bytes={}", bytes / (scrapes as u64));
        println!("cpu_us_per_scrape={:.1}", cpu.as_secs_f64() * 1e6 / scrapes);
    }
    Ok(())
}

/// Resident set size from `/proc/self/status` (`VmRSS`, in kB).
fn rss_bytes() -> Result<u64, String> {
    let status = std::fs::read_to_string("/proc/self/status")
        .map_err(|e| format!("reading /proc/self/status: {e}"))?;
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<u64>().ok())
        .map(|kb| kb * 1024)
        .ok_or_else(|| "no VmRSS in /proc/self/status".to_owned())
}

/// Open sockets of this process (entries of `/proc/self/fd` that link to `socket:`).
fn sockets() -> Result<usize, String> {
    let dir = std::fs::read_dir("/proc/self/fd").map_err(|e| format!("/proc/self/fd: {e}"))?;
    Ok(dir
        .filter_map(Result::ok)
        .filter(|e| {
            std::fs::read_link(e.path()).is_ok_and(|l| l.to_string_lossy().starts_with("socket:"))
        })
        .count())
}

/// User plus system CPU time of this process.
fn cpu_time() -> Duration {
    let mut usage = std::mem::MaybeUninit::<libc::rusage>::zeroed();
    // SAFETY: `usage` is a valid, writable rusage; getrusage only writes into it.
    let rc = unsafe { libc::getrusage(libc::RUSAGE_SELF, usage.as_mut_ptr()) };
    if rc != 0 {
        return Duration::ZERO;
    }
    // SAFETY: getrusage returned 0, so it initialised the struct (and it was zeroed).
    let u = unsafe { usage.assume_init() };
    let tv = |t: libc::timeval| {
        Duration::from_secs(t.tv_sec as u64) + Duration::from_micros(t.tv_usec as u64)
    };
    tv(u.ru_utime) + tv(u.ru_stime)
}
