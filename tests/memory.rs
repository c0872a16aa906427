//! The memory budget and streamed scrapes, end to end: the real binary scrapes a
//! 100 MB exposition under a tight `engine.memory_limit`, and its peak RSS stays flat
//! while every sample reaches the spool; a streamed body past its sample limit commits
//! nothing, exactly as a buffered one.

mod common;

use common::{export_jsonl, wait_for, Agent};
use std::io::{BufRead, BufReader, Write};
use std::net::{TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::Duration;

/// A target that writes its exposition as it goes, so the test process does not hold
/// the 100 MB either: `lines` samples of `big_series`, each with a `pad` label of
/// `pad` bytes.
struct Generator {
    addr: String,
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
}

fn line(i: usize, pad: &str) -> String {
    format!("big_series{{idx=\"{i:07}\",pad=\"{pad}\"}} {i}\n")
}

const HEADER: &str = "# HELP big_series A large family.\n# TYPE big_series gauge\n";

fn body_len(lines: usize, pad: usize) -> usize {
    let pad = "p".repeat(pad);
    HEADER.len() + (0..lines).map(|i| line(i, &pad).len()).sum::<usize>()
}

impl Generator {
    fn start(lines: usize, pad: usize) -> Generator {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
        listener.set_nonblocking(true).expect("nonblocking");
        let addr = listener.local_addr().expect("addr").to_string();
        let stop = Arc::new(AtomicBool::new(false));
        let stop2 = stop.clone();
        let len = body_len(lines, pad);
        let thread = std::thread::spawn(move || {
            let pad = "p".repeat(pad);
            while !stop2.load(Ordering::Relaxed) {
                match listener.accept() {
                    Ok((conn, _)) => {
                        let _ = serve(conn, lines, &pad, len);
                    }
                    Err(_) => std::thread::sleep(Duration::from_millis(20)),
                }
            }
        });
        Generator {
            addr,
            stop,
            thread: Some(thread),
        }
    }
}

fn serve(conn: TcpStream, lines: usize, pad: &str, len: usize) -> std::io::Result<()> {
    conn.set_nonblocking(false)?;
    let mut reader = BufReader::new(conn.try_clone()?);
    let mut l = String::new();
    // The request head; its content does not matter.
    while reader.read_line(&mut l)? > 2 {
        l.clear();
    }
    let mut w = std::io::BufWriter::with_capacity(1 << 16, conn);
    write!(
        w,
        "HTTP/1.1 200 OK\r\nContent-Type: text/plain; version=0.0.4\r\nContent-Length: {len}\r\nConnection: close\r\n\r\n{HEADER}"
    )?;
    for i in 0..lines {
        w.write_all(line(i, pad).as_bytes())?;
    }
    w.flush()
}

impl Drop for Generator {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

fn status_kib(pid: i32, field: &str) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).expect("status");
    status
        .lines()
        .find_map(|l| l.strip_prefix(field))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap_or_else(|| panic!("{field} in {status}"))
}

fn last_scrape(agent: &Agent) -> Option<(String, String)> {
    let t = agent.targets();
    let a = t["data"]["activeTargets"].get(0)?;
    if a["lastScrape"].as_str()?.starts_with("0001") {
        return None;
    }
    Some((
        a["health"].as_str()?.to_string(),
        a["lastError"].as_str()?.to_string(),
    ))
}

fn config(target: &str, interval: &str, extra_job: &str, engine: &str) -> String {
    format!(
        r#"[global]
scrape_interval = "{interval}"
scrape_timeout = "{interval}"

[engine]
workers = 2
{engine}

[storage]
flush_interval = "1s"

[[scrape_configs]]
job_name = "big"
{extra_job}
[[scrape_configs.static_configs]]
targets = ["{target}"]
"#
    )
}

#[test]
fn a_100mb_body_under_a_tight_limit_streams_with_flat_memory() {
    // ~340 bytes a line: 300,000 series, 102 MB.
    let (lines, pad) = (300_000, 300);
    let len = body_len(lines, pad);
    assert!(len > 100_000_000, "{len}");
    let gen = Generator::start(lines, pad);
    let dir = tempfile::tempdir().expect("tempdir");
    let limit_mib = 48;
    let mut agent = Agent::start(
        dir.path(),
        &config(
            &gen.addr,
            "10s",
            "",
            &format!("memory_limit = \"{limit_mib}MiB\""),
        ),
    );
    wait_for("the big scrape", Duration::from_secs(90), || {
        last_scrape(&agent).is_some()
    });
    let (health, err) = last_scrape(&agent).expect("scraped");
    assert_eq!((health.as_str(), err.as_str()), ("up", ""));
    // Read before shutdown: the peak over the whole scrape, parse and commit. A buffered
    // scrape would hold the 102 MB body, and its batch (larger still) on top.
    let hwm_mib = status_kib(agent.pid(), "VmHWM:") / 1024;
    eprintln!("memory test: peak RSS {hwm_mib} MiB scraping a {len}-byte body under a {limit_mib} MiB limit");
    assert!(
        hwm_mib < limit_mib + 16,
        "peak RSS {hwm_mib} MiB for a {len}-byte body under a {limit_mib} MiB limit"
    );
    assert!(
        agent
            .metric("scrapewheel_memory_accounted_bytes{part=\"series\"}")
            .is_some_and(|v| v > 0.0),
        "series state accounted"
    );
    assert_eq!(agent.terminate(), 0, "{}", agent.stderr());
    // A second scrape may have started before the signal; the drain finishes it. Each
    // scrape that ended up=1 must be in the spool whole.
    let data = dir.path().join("data");
    let scraped = export_jsonl(&data, &["{__name__=\"scrape_samples_scraped\"}"]);
    let up = export_jsonl(&data, &["{__name__=\"up\"}"]);
    assert!(
        scraped.iter().all(|s| s.value == lines as f64),
        "{scraped:?}"
    );
    let complete = up.iter().filter(|s| s.value == 1.0).count();
    assert!(complete >= 1, "{up:?}");
    assert_eq!(
        count_exported(&data, "big_series"),
        complete * lines,
        "every sample of each streamed body is in the spool"
    );
}

/// Samples of `name` in the spool, counted off `export`'s OpenMetrics text (parsing
/// 300,000 JSON lines would dominate the test).
fn count_exported(data: &std::path::Path, name: &str) -> usize {
    let out = std::process::Command::new(common::bin())
        .args(["export", "--format", "openmetrics", "--data"])
        .arg(data)
        .args(["--match", &format!("{{__name__=\"{name}\"}}")])
        .output()
        .expect("export runs");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let prefix = format!("{name}{{");
    out.stdout
        .split(|b| *b == b'\n')
        .filter(|l| l.starts_with(prefix.as_bytes()))
        .count()
}

#[test]
fn a_streamed_body_over_its_sample_limit_commits_nothing() {
    // 5 MB streamed in 64 KiB parts, one sample over the limit.
    let (lines, pad) = (20_000, 200);
    let gen = Generator::start(lines, pad);
    let dir = tempfile::tempdir().expect("tempdir");
    let mut agent = Agent::start(
        dir.path(),
        &config(
            &gen.addr,
            "1m",
            &format!("sample_limit = {}", lines - 1),
            "stream_threshold = \"64KiB\"",
        ),
    );
    wait_for("the scrape", Duration::from_secs(60), || {
        last_scrape(&agent).is_some()
    });
    let (health, err) = last_scrape(&agent).expect("scraped");
    assert_eq!(health, "down");
    assert!(err.contains("sample limit exceeded"), "{err}");
    assert_eq!(agent.terminate(), 0, "{}", agent.stderr());
    let data = dir.path().join("data");
    assert_eq!(count_exported(&data, "big_series"), 0);
    let up = export_jsonl(&data, &["{__name__=\"up\"}"]);
    assert_eq!(up.first().map(|s| s.value), Some(0.0));
}
