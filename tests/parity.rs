//! Differential test: real Prometheus (Debian's 2.42, agent mode, remote-writing to a
//! capture receiver) and scrapewheel scrape the same loopback script targets with the same
//! scrape config, and what each sends is compared scrape by scrape.
//!
//! One Prometheus and one scrapewheel run every case at once, one job per case (cases in
//! `parity/cases.rs`, the shared config generator in `parity/config.rs`). The suite
//! prints one line per case — `case <name>: ok | DIFF <summary> | known difference:
//! <reason>` — and fails on any unexpected DIFF. A custom harness (`harness = false`)
//! so those lines are printed on every run, not only on failure.
//!
//! Filters work as for libtest on the one test name, `prometheus_parity`; set
//! `PARITY_CASES=name,name` to run only some cases and `PARITY_VERBOSE=1` to print every
//! difference instead of the first. Without the `prometheus` binary the suite is skipped
//! with a note, unless SCRAPEWHEEL_REQUIRE_PEERS=1 (scripts/test.sh), which makes it fail.

#[path = "parity/capture.rs"]
mod capture;
#[path = "parity/cases.rs"]
mod cases;
mod common;
#[path = "parity/compare.rs"]
mod compare;
#[path = "parity/config.rs"]
mod config;
#[path = "parity/model.rs"]
mod model;
#[path = "parity/server.rs"]
mod server;

use capture::Receiver;
use model::{Addr, Case};
use server::ScriptTarget;
use std::io::Write;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

const TEST_NAME: &str = "prometheus_parity";
/// How long the agents get to produce every case's scrapes.
const DEADLINE: Duration = Duration::from_secs(150);

/// libtest's command line, as far as one test needs it: whether to run, or list.
fn selected() -> bool {
    let mut args = std::env::args().skip(1);
    let (mut filters, mut exact, mut ignored_only) = (Vec::new(), false, false);
    while let Some(a) = args.next() {
        match a.as_str() {
            "--list" => {
                println!("{TEST_NAME}: test");
                std::process::exit(0);
            }
            "--exact" => exact = true,
            "--ignored" => ignored_only = true,
            "--test-threads" | "--skip" | "--format" | "--color" | "--logfile" | "-Z" => {
                let value = args.next().unwrap_or_default();
                if a == "--skip" && TEST_NAME.contains(&value) {
                    return false;
                }
            }
            f if f.starts_with('-') => {}
            f => filters.push(f.to_string()),
        }
    }
    !ignored_only
        && (filters.is_empty()
            || filters.iter().any(|f| {
                if exact {
                    f == TEST_NAME
                } else {
                    TEST_NAME.contains(f.as_str())
                }
            }))
}

fn main() {
    if !selected() {
        return;
    }
    let Some(prometheus) = common::find_exe("prometheus") else {
        if common::require_peers() {
            eprintln!("{TEST_NAME}: FAILED: prometheus is required but not installed");
            std::process::exit(1);
        }
        println!("{TEST_NAME}: skipped: prometheus not installed");
        return;
    };
    let mut cases = cases::all();
    if let Ok(only) = std::env::var("PARITY_CASES") {
        let only: Vec<&str> = only.split(',').map(str::trim).collect();
        cases.retain(|c| only.contains(&c.name));
    }
    let started = Instant::now();
    let failed = run(&prometheus, &cases);
    println!(
        "{TEST_NAME}: {} cases in {:.1}s: {}",
        cases.len(),
        started.elapsed().as_secs_f64(),
        if failed > 0 { "FAILED" } else { "ok" }
    );
    // The plain closing line test runners are read by.
    println!("parity: {} passed, {failed} failed", cases.len() - failed);
    if failed > 0 {
        std::process::exit(1);
    }
}

/// Whole milliseconds of Unix time.
fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as i64)
}

/// Runs every case; returns how many failed (all of them when the agents could not run).
fn run(prometheus: &std::path::Path, cases: &[Case]) -> usize {
    let version = Command::new(prometheus)
        .arg("--version")
        .output()
        .map(|o| {
            String::from_utf8_lossy(&o.stdout)
                .lines()
                .next()
                .unwrap_or("")
                .to_string()
        })
        .unwrap_or_default();
    println!("{TEST_NAME}: against {version}");

    // Explicit timestamps sit two minutes ahead: after Prometheus's remote-write watcher
    // started, and within its 10-minute bound on samples from the future.
    let base_ms = (now_ms() / 1000) * 1000 + 120_000;
    let mut servers: Vec<ScriptTarget> = Vec::new();
    let addrs: Vec<Vec<String>> = cases
        .iter()
        .map(|c| {
            c.targets
                .iter()
                .map(|t| match t.addr {
                    Addr::Fixed(a) => a.to_string(),
                    Addr::Served => {
                        let s = ScriptTarget::start(t, base_ms);
                        let a = s.addr.clone();
                        servers.push(s);
                        a
                    }
                })
                .collect()
        })
        .collect();

    let receiver = Receiver::start();
    let dir = tempfile::tempdir().expect("tempdir");
    let prom_yml = dir.path().join("prometheus.yml");
    std::fs::write(&prom_yml, config::prometheus(cases, &addrs, &receiver.url))
        .expect("write prometheus.yml");
    let prom_log = dir.path().join("prometheus.log");
    let prom_listen = format!("127.0.0.1:{}", common::free_port());
    let mut prom = common::KillOnDrop(
        Command::new(prometheus)
            .arg("--enable-feature=agent")
            .arg(format!("--config.file={}", prom_yml.display()))
            .arg(format!(
                "--storage.agent.path={}",
                dir.path().join("prometheus-data").display()
            ))
            .arg(format!("--web.listen-address={prom_listen}"))
            // Hidden flag: apply discovered targets every 500ms instead of every 5s.
            .arg("--scrape.discovery-reload-interval=500ms")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(&prom_log).expect("prometheus log"))
            .spawn()
            .expect("start prometheus"),
    );
    // scrapewheel remote-writes to a capture receiver of its own, the same kind as
    // Prometheus's.
    let sw_receiver = Receiver::start();
    let mut sw = common::Agent::start(
        dir.path(),
        &config::scrapewheel(cases, &addrs, &sw_receiver.url),
    );

    // Wait until both agents have delivered every case's scrapes.
    let wait_start = Instant::now();
    let (mut p, mut s);
    loop {
        std::thread::sleep(Duration::from_millis(1000));
        if let Ok(Some(status)) = prom.0.try_wait() {
            let log = std::fs::read_to_string(&prom_log).unwrap_or_default();
            eprintln!("{TEST_NAME}: prometheus exited with {status}:\n{log}");
            return cases.len();
        }
        p = compare::segment(&receiver.samples());
        s = compare::segment(&sw_receiver.samples());
        let pending: Vec<&str> = cases
            .iter()
            .filter(|c| !compare::complete(c, &p) || !compare::complete(c, &s))
            .map(|c| c.name)
            .collect();
        let unsettled = servers.iter().any(|t| !t.settled());
        if pending.is_empty() && !unsettled {
            break;
        }
        if wait_start.elapsed() > DEADLINE {
            eprintln!(
                "{TEST_NAME}: gave up waiting after {DEADLINE:?}; incomplete: {}",
                pending.join(", ")
            );
            break;
        }
    }
    // For PARITY_DUMP: Prometheus's own view of the dumped cases' targets.
    let dump: Vec<String> = std::env::var("PARITY_DUMP")
        .map(|d| d.split(',').map(str::to_string).collect())
        .unwrap_or_default();
    if !dump.is_empty() {
        if let Some((_, body)) = common::http_get(&format!("http://{prom_listen}/api/v1/targets")) {
            let v: serde_json::Value = serde_json::from_str(&body).unwrap_or_default();
            for t in v["data"]["activeTargets"].as_array().into_iter().flatten() {
                let pool = t["scrapePool"].as_str().unwrap_or("");
                if dump.iter().any(|d| d == pool) {
                    println!(
                        "{pool}: prometheus says {} lastError={:?}",
                        t["scrapeUrl"], t["lastError"]
                    );
                }
            }
        }
    }
    let code = sw.terminate();
    if code != 0 {
        eprintln!("{TEST_NAME}: scrapewheel exited {code}:\n{}", sw.stderr());
        return cases.len();
    }
    s = compare::segment(&sw_receiver.samples());
    drop(prom);
    drop(servers);
    if !sw_receiver.errors().is_empty() {
        eprintln!(
            "{TEST_NAME}: undecodable remote-write requests from scrapewheel: {:?}",
            sw_receiver.errors()
        );
        return cases.len();
    }
    if !receiver.errors().is_empty() {
        eprintln!(
            "{TEST_NAME}: undecodable remote-write requests: {:?}",
            receiver.errors()
        );
        return cases.len();
    }

    let verbose = std::env::var("PARITY_VERBOSE").is_ok_and(|v| v == "1");
    // The known differences are those of 2.42: against it, one that does not show means
    // scrapewheel drifted back to old behaviour. Another version may legitimately agree.
    let calibrated = version.contains("version 2.42.");
    let mut failed = 0usize;
    let mut out = std::io::stdout().lock();
    for case in cases {
        let diffs = compare::compare(case, &p, &s, base_ms);
        let line = match (diffs.first(), case.known) {
            (None, None) => "ok".to_string(),
            (None, Some(known)) if calibrated => {
                failed += 1;
                format!("DIFF expected a known difference but the agents agree ({known})")
            }
            (None, Some(known)) => format!("ok (known difference not seen: {known})"),
            (Some(_), Some(known)) => format!("known difference: {known}"),
            (Some(first), None) => {
                failed += 1;
                if verbose {
                    format!("DIFF {}", diffs.join("\n    "))
                } else if diffs.len() > 1 {
                    format!("DIFF {first} (+{} more)", diffs.len() - 1)
                } else {
                    format!("DIFF {first}")
                }
            }
        };
        let _ = writeln!(out, "case {}: {line}", case.name);
        if std::env::var("PARITY_DUMP").is_ok_and(|d| d.split(',').any(|n| n == case.name)) {
            let _ = write!(
                out,
                " prometheus:\n{} scrapewheel:\n{}",
                compare::dump(case, &p, base_ms),
                compare::dump(case, &s, base_ms)
            );
        }
        if verbose && case.known.is_some() {
            for d in &diffs {
                let _ = writeln!(out, "    {d}");
            }
        }
    }
    if failed > 0 {
        let log = std::fs::read_to_string(&prom_log).unwrap_or_default();
        let tail: Vec<&str> = log.lines().rev().take(20).collect();
        let _ = writeln!(
            out,
            "{TEST_NAME}: prometheus log tail:\n{}",
            tail.into_iter().rev().collect::<Vec<_>>().join("\n")
        );
    }
    failed
}
