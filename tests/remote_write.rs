//! Remote write end to end: the real binary scraping real loopback targets and shipping
//! to real receivers on loopback (Debian's Prometheus with
//! `--web.enable-remote-write-receiver`, and VictoriaMetrics), plus in-test receivers
//! that capture raw requests or reject everything.
//!
//! What reaches a receiver is compared with what the spool holds (`scrapewheel export`),
//! with the external labels and write relabeling the config asks for applied.

mod common;

use common::*;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// One sample as a receiver stores it: labels, timestamp (ms), value bits.
type Key = (BTreeMap<String, String>, i64);

// ---------------------------------------------------------------------------------------
// Peers

#[derive(Clone, Copy, Debug)]
enum Kind {
    Prometheus,
    Victoria,
}

/// A real receiver process on a fixed loopback port and data dir, so it can be stopped
/// and started again as the same receiver.
struct Peer {
    kind: Kind,
    port: u16,
    dir: PathBuf,
    proc: Option<KillOnDrop>,
}

impl Peer {
    /// The peer, not yet started; `None` (test skipped) when it is not installed.
    fn new(kind: Kind, dir: &Path) -> Option<Peer> {
        let exe = match kind {
            Kind::Prometheus => "prometheus",
            Kind::Victoria => "victoria-metrics",
        };
        if find_exe(exe).is_none() {
            assert!(!require_peers(), "{exe} is required but not installed");
            eprintln!("skipped: {exe} not installed");
            return None;
        }
        let dir = dir.join(exe);
        std::fs::create_dir_all(&dir).expect("peer dir");
        Some(Peer {
            kind,
            port: free_port(),
            dir,
            proc: None,
        })
    }

    fn base(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    fn write_url(&self) -> String {
        match self.kind {
            Kind::Prometheus => format!("{}/api/v1/write", self.base()),
            Kind::Victoria => format!("{}/api/v1/write", self.base()),
        }
    }

    fn start(&mut self) {
        let listen = format!("127.0.0.1:{}", self.port);
        let child = match self.kind {
            Kind::Prometheus => {
                let cfg = self.dir.join("prometheus.yml");
                std::fs::write(&cfg, "scrape_configs: []\n").expect("prometheus config");
                Command::new(find_exe("prometheus").expect("prometheus"))
                    .arg(format!("--config.file={}", cfg.display()))
                    .arg(format!(
                        "--storage.tsdb.path={}",
                        self.dir.join("tsdb").display()
                    ))
                    .arg(format!("--web.listen-address={listen}"))
                    .arg("--web.enable-remote-write-receiver")
                    .stdout(Stdio::null())
                    .stderr(Stdio::null())
                    .spawn()
                    .expect("start prometheus")
            }
            Kind::Victoria => Command::new(find_exe("victoria-metrics").expect("vm"))
                .arg(format!(
                    "-storageDataPath={}",
                    self.dir.join("vm").display()
                ))
                .arg(format!("-httpListenAddr={listen}"))
                .arg("-retentionPeriod=100y")
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .spawn()
                .expect("start victoria-metrics"),
        };
        self.proc = Some(KillOnDrop(child));
        let ready = match self.kind {
            Kind::Prometheus => format!("{}/-/ready", self.base()),
            Kind::Victoria => format!("{}/health", self.base()),
        };
        wait_for("receiver ready", Duration::from_secs(60), || {
            http_get(&ready).is_some_and(|(s, _)| s == 200)
        });
    }

    /// Graceful stop (SIGTERM), so what the peer acknowledged is on its disk.
    fn stop(&mut self) {
        if let Some(mut p) = self.proc.take() {
            // SAFETY: kill has no memory preconditions; the pid is our own child.
            unsafe {
                libc::kill(p.0.id() as i32, libc::SIGTERM);
            }
            let _ = p.0.wait();
        }
    }

    /// Every stored sample with a finite value, in any order, duplicates kept.
    fn samples(&self) -> Vec<(Key, f64)> {
        match self.kind {
            Kind::Prometheus => prometheus_samples(&self.base()),
            Kind::Victoria => victoria_samples(&self.base()),
        }
    }
}

fn get_json(url: &str) -> Option<serde_json::Value> {
    let (status, body) = http_get(url)?;
    if status != 200 {
        return None;
    }
    serde_json::from_str(&body).ok()
}

fn labels_of(v: &serde_json::Value) -> BTreeMap<String, String> {
    v.as_object()
        .map(|o| {
            o.iter()
                .map(|(k, v)| (k.clone(), v.as_str().unwrap_or_default().to_owned()))
                .collect()
        })
        .unwrap_or_default()
}

fn prometheus_samples(base: &str) -> Vec<(Key, f64)> {
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .expect("clock")
        .as_secs()
        + 60;
    let url = format!("{base}/api/v1/query?query=%7B__name__%3D~%22.%2B%22%7D%5B1h%5D&time={now}");
    let Some(v) = get_json(&url) else {
        return Vec::new();
    };
    let mut out = Vec::new();
    for series in v["data"]["result"].as_array().into_iter().flatten() {
        let labels = labels_of(&series["metric"]);
        for pair in series["values"].as_array().into_iter().flatten() {
            let ts = (pair[0].as_f64().unwrap_or(0.0) * 1000.0).round() as i64;
            let value: f64 = pair[1]
                .as_str()
                .and_then(|s| s.parse().ok())
                .unwrap_or(f64::NAN);
            if value.is_finite() {
                out.push(((labels.clone(), ts), value));
            }
        }
    }
    out
}

fn victoria_samples(base: &str) -> Vec<(Key, f64)> {
    let _ = http_get(&format!("{base}/internal/force_flush"));
    let Some((200, body)) = http_get(&format!(
        "{base}/api/v1/export?match%5B%5D=%7B__name__%3D~%22.%2B%22%7D"
    )) else {
        return Vec::new();
    };
    let mut out = Vec::new();
    for line in body.lines().filter(|l| !l.trim().is_empty()) {
        let Ok(v) = serde_json::from_str::<serde_json::Value>(line) else {
            continue;
        };
        let labels = labels_of(&v["metric"]);
        let values = v["values"].as_array().cloned().unwrap_or_default();
        let stamps = v["timestamps"].as_array().cloned().unwrap_or_default();
        for (val, ts) in values.iter().zip(stamps.iter()) {
            let Some(value) = val.as_f64() else { continue };
            if value.is_finite() {
                out.push(((labels.clone(), ts.as_i64().unwrap_or(0)), value));
            }
        }
    }
    out
}

// ---------------------------------------------------------------------------------------
// In-test receivers

/// What an in-test receiver saw of one request.
#[derive(Clone, Debug)]
struct Captured {
    headers: BTreeMap<String, String>,
    /// (labels, timestamp, value bits)
    samples: Vec<(BTreeMap<String, String>, i64, u64)>,
}

/// A receiver that answers `status(request index)` and records every request it decodes.
struct Mock {
    url: String,
    server: Arc<tiny_http::Server>,
    seen: Arc<Mutex<Vec<Captured>>>,
    requests: Arc<AtomicU64>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl Mock {
    fn start(
        answer: impl Fn(u64) -> (u16, Vec<(&'static str, String)>, String) + Send + 'static,
    ) -> Mock {
        let server = Arc::new(tiny_http::Server::http("127.0.0.1:0").expect("mock listens"));
        let addr = server.server_addr().to_ip().expect("ip").to_string();
        let seen = Arc::new(Mutex::new(Vec::new()));
        let requests = Arc::new(AtomicU64::new(0));
        let (s, seen2, n) = (server.clone(), seen.clone(), requests.clone());
        let thread = std::thread::spawn(move || {
            for mut req in s.incoming_requests() {
                let i = n.fetch_add(1, Ordering::SeqCst);
                let mut body = Vec::new();
                let _ = std::io::Read::read_to_end(req.as_reader(), &mut body);
                let headers = req
                    .headers()
                    .iter()
                    .map(|h| {
                        (
                            h.field.as_str().as_str().to_ascii_lowercase(),
                            h.value.as_str().to_owned(),
                        )
                    })
                    .collect();
                let (status, extra, text) = answer(i);
                if (200..300).contains(&status) {
                    let plain = snap::raw::Decoder::new()
                        .decompress_vec(&body)
                        .expect("snappy body");
                    let mut samples = Vec::new();
                    scrapewheel::wire::decode_write_request(&plain, |s| {
                        let labels: BTreeMap<String, String> = s
                            .labels
                            .iter()
                            .map(|(k, v)| (k.to_string(), v.to_string()))
                            .collect();
                        for (v, ts) in s.samples {
                            samples.push((labels.clone(), ts, v.to_bits()));
                        }
                    })
                    .expect("protobuf body");
                    seen2
                        .lock()
                        .expect("lock")
                        .push(Captured { headers, samples });
                }
                let mut resp = tiny_http::Response::from_string(text).with_status_code(status);
                for (k, v) in extra {
                    resp = resp.with_header(
                        tiny_http::Header::from_bytes(k.as_bytes(), v.as_bytes()).expect("header"),
                    );
                }
                let _ = req.respond(resp);
            }
        });
        Mock {
            url: format!("http://{addr}/api/v1/write"),
            server,
            seen,
            requests,
            thread: Some(thread),
        }
    }

    fn captured(&self) -> Vec<Captured> {
        self.seen.lock().expect("lock").clone()
    }

    fn requests(&self) -> u64 {
        self.requests.load(Ordering::SeqCst)
    }
}

impl Drop for Mock {
    fn drop(&mut self) {
        self.server.unblock();
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

// ---------------------------------------------------------------------------------------
// Configs and expectations

const TARGET_BODY: &str = "# TYPE requests_total counter\n\
requests_total{code=\"200\"} 42\n\
requests_total{code=\"500\"} 3\n\
dropped_metric 7\n\
temperature_celsius 21.5\n";

struct Receiver<'a> {
    name: &'a str,
    url: String,
    extra: &'a str,
}

fn config(target: &str, receivers: &[Receiver<'_>], storage_extra: &str) -> String {
    let mut rw = String::new();
    for r in receivers {
        rw.push_str(&format!(
            r#"
[[remote_write]]
name = "{}"
url = "{}"
remote_timeout = "5s"
{}
[remote_write.queue_config]
min_backoff = "50ms"
max_backoff = "200ms"
max_shards = 4
"#,
            r.name, r.url, r.extra
        ));
    }
    format!(
        r#"
[global]
scrape_interval = "500ms"
scrape_timeout = "400ms"
external_labels = {{ cluster = "c1", env = "from-external" }}

[storage]
flush_interval = "100ms"
drain_timeout = "2s"
{storage_extra}

[[scrape_configs]]
job_name = "app"
[[scrape_configs.static_configs]]
targets = ["{target}"]
labels = {{ env = "test" }}
{rw}"#
    )
}

/// Relabeling used by the label tests: drop one metric, add a label to the rest.
const RELABEL: &str = r#"
[[remote_write.write_relabel_configs]]
source_labels = ["__name__"]
regex = "dropped_metric"
action = "drop"
[[remote_write.write_relabel_configs]]
target_label = "shipped_by"
replacement = "scrapewheel"
"#;

/// What the receiver should hold for the spool's samples: external labels merged (the
/// series' own label wins), then `relabel` applied if set. Staleness markers are left out
/// (receivers do not return them from queries).
fn expected(data: &Path, relabel: bool) -> BTreeMap<Key, f64> {
    let mut out = BTreeMap::new();
    for s in export_jsonl(data, &[]) {
        if s.stale || !s.value.is_finite() {
            continue;
        }
        let mut labels = s.labels.clone();
        labels
            .entry("cluster".into())
            .or_insert_with(|| "c1".into());
        labels
            .entry("env".into())
            .or_insert_with(|| "from-external".into());
        if relabel {
            if s.name() == "dropped_metric" {
                continue;
            }
            labels.insert("shipped_by".into(), "scrapewheel".into());
        }
        out.insert((labels, s.timestamp_ms), s.value);
    }
    out
}

/// Waits until the peer holds every expected sample, then checks values, that nothing
/// unexpected arrived, and returns how many samples arrived more than once.
fn check_delivered(peer: &Peer, want: &BTreeMap<Key, f64>) -> usize {
    assert!(!want.is_empty(), "the spool holds no samples");
    let mut got = Vec::new();
    let mut missing = Vec::new();
    let deadline = std::time::Instant::now() + Duration::from_secs(60);
    while std::time::Instant::now() < deadline {
        got = peer.samples();
        let have: std::collections::BTreeSet<&Key> = got.iter().map(|(k, _)| k).collect();
        missing = want.keys().filter(|k| !have.contains(k)).cloned().collect();
        if missing.is_empty() {
            break;
        }
        std::thread::sleep(Duration::from_millis(300));
    }
    assert!(
        missing.is_empty(),
        "{} of {} samples never reached {:?}, e.g. {:?}",
        missing.len(),
        want.len(),
        peer.kind,
        &missing[..missing.len().min(3)]
    );
    let mut counts: BTreeMap<&Key, usize> = BTreeMap::new();
    for (k, v) in &got {
        let w = want.get(k);
        assert!(
            w.is_some(),
            "{:?} holds a sample scrapewheel never spooled: {k:?}",
            peer.kind
        );
        assert_eq!(Some(v), w, "value of {k:?}");
        *counts.entry(k).or_default() += 1;
    }
    counts.values().map(|n| n - 1).sum()
}

fn wait_for_metric(agent: &Agent, series: &str, min: f64, limit: Duration) {
    wait_for(series, limit, || {
        agent.metric(series).is_some_and(|v| v >= min)
    });
}

// ---------------------------------------------------------------------------------------
// Tests against real receivers

/// Samples arrive with the right labels (target labels, external labels, relabeling),
/// values and timestamps.
fn delivers_with_labels(kind: Kind) {
    let dir = tempfile::tempdir().expect("tempdir");
    let Some(mut peer) = Peer::new(kind, dir.path()) else {
        return;
    };
    peer.start();
    let t = Target::start(Reply::text(TARGET_BODY));
    let cfg = config(
        &t.addr,
        &[Receiver {
            name: "peer",
            url: peer.write_url(),
            extra: RELABEL,
        }],
        "",
    );
    let mut agent = Agent::start(dir.path(), &cfg);
    wait_for("four scrapes", Duration::from_secs(20), || t.hits() >= 4);
    assert_eq!(agent.terminate(), 0, "stderr: {}", agent.stderr());
    let want = expected(&dir.path().join("data"), true);
    assert!(want.keys().any(|(l, _)| l["__name__"] == "requests_total"
        && l["env"] == "test"
        && l["cluster"] == "c1"
        && l["code"] == "200"
        && l["shipped_by"] == "scrapewheel"));
    let dups = check_delivered(&peer, &want);
    assert_eq!(dups, 0, "nothing was retried, so nothing may arrive twice");
}

#[test]
fn prometheus_receives_samples_with_labels() {
    delivers_with_labels(Kind::Prometheus);
}

#[test]
fn victoria_metrics_receives_samples_with_labels() {
    delivers_with_labels(Kind::Victoria);
}

/// The receiver goes away for a while and comes back: every sample arrives, and a
/// sample arrives twice at most because a request in flight when it went away was
/// stored but not answered.
fn survives_outage(kind: Kind) {
    let dir = tempfile::tempdir().expect("tempdir");
    let Some(mut peer) = Peer::new(kind, dir.path()) else {
        return;
    };
    peer.start();
    let t = Target::start(Reply::text(TARGET_BODY));
    let cfg = config(
        &t.addr,
        &[Receiver {
            name: "peer",
            url: peer.write_url(),
            extra: "",
        }],
        "",
    );
    let mut agent = Agent::start(dir.path(), &cfg);
    let sent = "scrapewheel_remote_write_samples_sent_total{remote_name=\"peer\",url=\"";
    let sent = format!("{sent}{}\"}}", peer.write_url());
    wait_for_metric(&agent, &sent, 1.0, Duration::from_secs(20));
    peer.stop();
    let retried = format!(
        "scrapewheel_remote_write_requests_retried_total{{remote_name=\"peer\",status_class=\"network\",url=\"{}\"}}",
        peer.write_url()
    );
    wait_for_metric(&agent, &retried, 3.0, Duration::from_secs(20));
    let hits = t.hits();
    wait_for("scrapes while down", Duration::from_secs(20), || {
        t.hits() >= hits + 4
    });
    let lag = format!(
        "scrapewheel_remote_write_lag_bytes{{remote_name=\"peer\",url=\"{}\"}}",
        peer.write_url()
    );
    assert!(
        agent.metric(&lag).is_some_and(|v| v > 0.0),
        "lag while down"
    );
    peer.start();
    wait_for("caught up", Duration::from_secs(30), || {
        agent.metric(&lag).is_some_and(|v| v == 0.0)
    });
    assert_eq!(agent.terminate(), 0, "stderr: {}", agent.stderr());
    let want = expected(&dir.path().join("data"), false);
    let dups = check_delivered(&peer, &want);
    // One scrape is 8 samples (4 metrics + 4 report series, here without staleness).
    assert!(dups <= 4 * 8, "{dups} samples arrived twice");
    let log = agent.stderr();
    assert_eq!(
        log.matches("Connection refused").count(),
        1,
        "one outage, its error logged once: {log}"
    );
}

#[test]
fn prometheus_outage_loses_nothing() {
    survives_outage(Kind::Prometheus);
}

#[test]
fn victoria_metrics_outage_loses_nothing() {
    survives_outage(Kind::Victoria);
}

/// SIGTERM while the receiver is down exits 0 after the drain timeout; after a restart
/// with the receiver up, the first run's samples arrive.
fn sigterm_while_down(kind: Kind) {
    let dir = tempfile::tempdir().expect("tempdir");
    let Some(mut peer) = Peer::new(kind, dir.path()) else {
        return;
    };
    let t = Target::start(Reply::text(TARGET_BODY));
    let cfg = config(
        &t.addr,
        &[Receiver {
            name: "peer",
            url: peer.write_url(),
            extra: "",
        }],
        "",
    );
    let mut agent = Agent::start(dir.path(), &cfg);
    wait_for("four scrapes", Duration::from_secs(20), || t.hits() >= 4);
    let start = std::time::Instant::now();
    assert_eq!(agent.terminate(), 0, "stderr: {}", agent.stderr());
    assert!(
        start.elapsed() < Duration::from_secs(2 + 8),
        "drain took {:?}",
        start.elapsed()
    );
    assert!(
        agent.stderr().contains("remote write drain timeout"),
        "{}",
        agent.stderr()
    );
    let first_run = expected(&dir.path().join("data"), false);

    peer.start();
    let mut again = Agent::start_with(dir.path(), agent.config.clone());
    let hits = t.hits();
    wait_for("second run scrapes", Duration::from_secs(20), || {
        t.hits() >= hits + 2
    });
    assert_eq!(again.terminate(), 0, "stderr: {}", again.stderr());
    // Both runs' samples: everything the spool holds, the first run's among them.
    let all = expected(&dir.path().join("data"), false);
    assert!(first_run.keys().all(|k| all.contains_key(k)));
    assert_eq!(check_delivered(&peer, &all), 0);
    assert!(dir.path().join("data/remote_write/peer.cursor").is_file());
}

#[test]
fn prometheus_gets_everything_after_sigterm_while_down() {
    sigterm_while_down(Kind::Prometheus);
}

#[test]
fn victoria_metrics_gets_everything_after_sigterm_while_down() {
    sigterm_while_down(Kind::Victoria);
}

/// kill -9 while blocks are being sent: after a restart every sample that was fsynced
/// (what `export` reads after the kill) arrives.
#[test]
fn kill_9_mid_send_loses_nothing_fsynced() {
    let dir = tempfile::tempdir().expect("tempdir");
    let Some(mut peer) = Peer::new(Kind::Victoria, dir.path()) else {
        return;
    };
    peer.start();
    // Many series and small blocks keep requests in flight most of the time.
    let mut body = String::new();
    for i in 0..1500 {
        body.push_str(&format!("load_metric{{series=\"{i}\"}} {i}\n"));
    }
    let t = Target::start(Reply::text(&body));
    let cfg = config(
        &t.addr,
        &[Receiver {
            name: "peer",
            url: peer.write_url(),
            extra: "",
        }],
        "max_block_samples = 200",
    );
    let mut agent = Agent::start(dir.path(), &cfg);
    let sent = format!(
        "scrapewheel_remote_write_samples_sent_total{{remote_name=\"peer\",url=\"{}\"}}",
        peer.write_url()
    );
    wait_for_metric(&agent, &sent, 3000.0, Duration::from_secs(30));
    agent.kill9();
    let cursor = dir.path().join("data/remote_write/peer.cursor");
    assert!(cursor.is_file(), "acknowledged blocks left a cursor");
    let fsynced = expected(&dir.path().join("data"), false);

    let mut again = Agent::start_with(dir.path(), agent.config.clone());
    let hits = t.hits();
    wait_for("second run scrapes", Duration::from_secs(20), || {
        t.hits() >= hits + 2
    });
    assert_eq!(again.terminate(), 0, "stderr: {}", again.stderr());
    let all = expected(&dir.path().join("data"), false);
    assert!(fsynced.keys().all(|k| all.contains_key(k)));
    let dups = check_delivered(&peer, &all);
    // At-least-once: at most the blocks in flight or unacknowledged at the kill
    // (3 per shard, 4 shards, 200 samples each) arrive twice.
    eprintln!(
        "kill -9 test: {dups} samples arrived twice of {}",
        all.len()
    );
    assert!(dups <= 3 * 4 * 200, "{dups} duplicates");
}

/// A receiver that rejects everything has its samples counted as dropped and its answer
/// logged once; a healthy receiver next to it gets everything.
#[test]
fn rejecting_receiver_does_not_block_a_healthy_one() {
    let dir = tempfile::tempdir().expect("tempdir");
    let Some(mut peer) = Peer::new(Kind::Victoria, dir.path()) else {
        return;
    };
    peer.start();
    let bad = Mock::start(|_| (400, vec![], "out of bounds: sample too old".to_owned()));
    let t = Target::start(Reply::text(TARGET_BODY));
    let cfg = config(
        &t.addr,
        &[
            Receiver {
                name: "bad",
                url: bad.url.clone(),
                extra: "",
            },
            Receiver {
                name: "good",
                url: peer.write_url(),
                extra: "",
            },
        ],
        "",
    );
    let mut agent = Agent::start(dir.path(), &cfg);
    wait_for("four scrapes", Duration::from_secs(20), || t.hits() >= 4);
    wait_for("rejections", Duration::from_secs(20), || {
        bad.requests() >= 3
    });
    let dropped = format!(
        "scrapewheel_remote_write_samples_dropped_total{{reason=\"rejected\",remote_name=\"bad\",url=\"{}\"}}",
        bad.url
    );
    assert!(agent.metric(&dropped).is_some_and(|v| v > 0.0));
    assert_eq!(agent.terminate(), 0, "stderr: {}", agent.stderr());
    let want = expected(&dir.path().join("data"), false);
    assert_eq!(check_delivered(&peer, &want), 0);
    let log = agent.stderr();
    assert_eq!(
        log.matches("out of bounds: sample too old").count(),
        1,
        "the receiver's answer is logged once: {log}"
    );
    assert!(log.contains("status=400"), "{log}");
}

/// Runs openssl with `args` in `dir`.
fn openssl(dir: &Path, args: &[&str]) {
    let out = Command::new("openssl")
        .args(args)
        .current_dir(dir)
        .output()
        .expect("run openssl");
    assert!(
        out.status.success(),
        "openssl {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// A CA, a server certificate for `receiver.test` only, and a client certificate.
fn make_certs(dir: &Path) {
    let ec = [
        "-newkey",
        "ec",
        "-pkeyopt",
        "ec_paramgen_curve:prime256v1",
        "-nodes",
    ];
    let mut ca = vec!["req", "-x509", "-days", "2", "-subj", "/CN=test-ca"];
    ca.extend(ec);
    ca.extend(["-keyout", "ca.key", "-out", "ca.crt"]);
    openssl(dir, &ca);
    for (name, cn, ext) in [
        (
            "server",
            "receiver.test",
            "subjectAltName=DNS:receiver.test\n",
        ),
        ("client", "scrapewheel", "extendedKeyUsage=clientAuth\n"),
    ] {
        let mut req = vec!["req", "-subj"];
        let subj = format!("/CN={cn}");
        req.push(&subj);
        req.extend(ec);
        let (key, csr, crt, extfile) = (
            format!("{name}.key"),
            format!("{name}.csr"),
            format!("{name}.crt"),
            format!("{name}.ext"),
        );
        req.extend(["-keyout", &key, "-out", &csr]);
        openssl(dir, &req);
        std::fs::write(dir.join(&extfile), ext).expect("ext");
        openssl(
            dir,
            &[
                "x509",
                "-req",
                "-in",
                &csr,
                "-CA",
                "ca.crt",
                "-CAkey",
                "ca.key",
                "-CAcreateserial",
                "-days",
                "2",
                "-out",
                &crt,
                "-extfile",
                &extfile,
            ],
        );
    }
}

/// tls_config against Prometheus serving TLS and requiring client certificates:
/// `server_name` verifies the receiver under that name (without it the certificate does
/// not match the URL's host and nothing is sent), `cert_file`/`key_file` authenticate,
/// `insecure_skip_verify` skips verification.
#[test]
fn tls_config_with_server_name_and_client_certificates() {
    let dir = tempfile::tempdir().expect("tempdir");
    let Some(mut peer) = Peer::new(Kind::Prometheus, dir.path()) else {
        return;
    };
    if find_exe("openssl").is_none() {
        assert!(!require_peers(), "openssl is required but not installed");
        eprintln!("skipped: openssl not installed");
        return;
    }
    let certs = dir.path().join("certs");
    std::fs::create_dir_all(&certs).expect("certs dir");
    make_certs(&certs);
    let web = peer.dir.join("web.yml");
    std::fs::write(
        &web,
        format!(
            "tls_server_config:\n  cert_file: {0}/server.crt\n  key_file: {0}/server.key\n  \
             client_auth_type: RequireAndVerifyClientCert\n  client_ca_file: {0}/ca.crt\n",
            certs.display()
        ),
    )
    .expect("web config");
    let cfg = peer.dir.join("prometheus.yml");
    std::fs::write(&cfg, "scrape_configs: []\n").expect("prometheus config");
    let listen = format!("127.0.0.1:{}", peer.port);
    peer.proc = Some(KillOnDrop(
        Command::new(find_exe("prometheus").expect("prometheus"))
            .arg(format!("--config.file={}", cfg.display()))
            .arg(format!("--web.config.file={}", web.display()))
            .arg(format!(
                "--storage.tsdb.path={}",
                peer.dir.join("tsdb").display()
            ))
            .arg(format!("--web.listen-address={listen}"))
            .arg("--web.enable-remote-write-receiver")
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("start prometheus"),
    ));
    wait_for("prometheus listening", Duration::from_secs(60), || {
        std::net::TcpStream::connect(&listen).is_ok()
    });
    let url = format!("https://{listen}/api/v1/write");
    let c = certs.display();
    let client = format!("cert_file = \"{c}/client.crt\"\nkey_file = \"{c}/client.key\"\n");
    let named = format!(
        "[remote_write.tls_config]\nca_file = \"{c}/ca.crt\"\nserver_name = \"receiver.test\"\n{client}"
    );
    let unnamed = format!("[remote_write.tls_config]\nca_file = \"{c}/ca.crt\"\n{client}");
    let insecure = format!("[remote_write.tls_config]\ninsecure_skip_verify = true\n{client}");
    let t = Target::start(Reply::text(TARGET_BODY));
    let cfg = config(
        &t.addr,
        &[
            Receiver {
                name: "named",
                url: url.clone(),
                extra: &named,
            },
            Receiver {
                name: "unnamed",
                url: url.clone(),
                extra: &unnamed,
            },
            Receiver {
                name: "insecure",
                url: url.clone(),
                extra: &insecure,
            },
        ],
        "",
    );
    let mut agent = Agent::start(dir.path(), &cfg);
    let series = |m: &str, name: &str, extra: &str| {
        format!("scrapewheel_remote_write_{m}{{remote_name=\"{name}\",{extra}url=\"{url}\"}}")
    };
    wait_for_metric(
        &agent,
        &series("samples_sent_total", "named", ""),
        8.0,
        Duration::from_secs(30),
    );
    wait_for_metric(
        &agent,
        &series("samples_sent_total", "insecure", ""),
        8.0,
        Duration::from_secs(30),
    );
    wait_for_metric(
        &agent,
        &series(
            "requests_failed_total",
            "unnamed",
            "status_class=\"network\",",
        ),
        2.0,
        Duration::from_secs(30),
    );
    assert_eq!(
        agent.metric(&series("samples_sent_total", "unnamed", "")),
        Some(0.0)
    );
    assert_eq!(agent.terminate(), 0, "stderr: {}", agent.stderr());
    let log = agent.stderr();
    assert!(
        log.contains("remote_name=unnamed") && log.contains("certificate not valid for name"),
        "{log}"
    );
}

// ---------------------------------------------------------------------------------------
// Tests against in-test receivers

/// kill -9 while a request is in flight (the receiver holds it unanswered): after a
/// restart every fsynced sample arrives, the unacknowledged block arrives again, and
/// nothing before the cursor is sent twice.
#[test]
fn kill_9_while_a_request_is_held_resends_only_unacknowledged_blocks() {
    use std::sync::atomic::AtomicBool;
    let dir = tempfile::tempdir().expect("tempdir");
    let hold = Arc::new(AtomicBool::new(false));
    let held = Arc::new(AtomicBool::new(false));
    let (hold2, held2) = (hold.clone(), held.clone());
    let mock = Mock::start(move |_| {
        let start = std::time::Instant::now();
        while hold2.load(Ordering::SeqCst) && start.elapsed() < Duration::from_secs(30) {
            held2.store(true, Ordering::SeqCst);
            std::thread::sleep(Duration::from_millis(5));
        }
        (204, vec![], String::new())
    });
    let t = Target::start(Reply::text(TARGET_BODY));
    let cfg = config(
        &t.addr,
        &[Receiver {
            name: "mock",
            url: mock.url.clone(),
            extra: "",
        }],
        "",
    );
    let mut agent = Agent::start(dir.path(), &cfg);
    wait_for("acknowledged requests", Duration::from_secs(20), || {
        mock.requests() >= 3
    });
    hold.store(true, Ordering::SeqCst);
    wait_for("a request held", Duration::from_secs(20), || {
        held.load(Ordering::SeqCst)
    });
    agent.kill9();
    hold.store(false, Ordering::SeqCst);
    let cursor = scrapewheel::remote_write::persisted_cursor(&dir.path().join("data"), "mock")
        .expect("cursor readable")
        .expect("a cursor was persisted");
    assert!(cursor.offset > 16, "{cursor:?}");

    let mut again = Agent::start_with(dir.path(), agent.config.clone());
    let hits = t.hits();
    wait_for("second run scrapes", Duration::from_secs(20), || {
        t.hits() >= hits + 2
    });
    assert_eq!(again.terminate(), 0, "stderr: {}", again.stderr());

    let mut counts: BTreeMap<Key, usize> = BTreeMap::new();
    for c in mock.captured() {
        for (l, ts, _) in c.samples {
            *counts.entry((l, ts)).or_default() += 1;
        }
    }
    let spooled = export_jsonl(&dir.path().join("data"), &[]);
    for s in &spooled {
        let mut l = s.labels.clone();
        l.entry("cluster".into()).or_insert_with(|| "c1".into());
        l.entry("env".into())
            .or_insert_with(|| "from-external".into());
        assert!(counts.contains_key(&(l, s.timestamp_ms)), "missing {s:?}");
    }
    assert_eq!(
        counts.len(),
        spooled.len(),
        "nothing arrived that was not spooled"
    );
    let twice = counts.values().filter(|n| **n > 1).count();
    assert!(
        twice > 0,
        "the held block was never acknowledged, so it is sent again"
    );
    // At most the blocks in flight or queued at the kill: 3 per shard, 4 shards, one
    // target's flush (8 samples a scrape, a few scrapes) each.
    assert!(twice <= 3 * 4 * 16, "{twice} samples arrived twice");
    assert!(counts.values().all(|n| *n <= 2));
}

/// A receiver down longer than retention allows: the oldest data is dropped, counted for
/// that receiver and logged with the exact count, and everything still spooled arrives
/// once it is back.
#[test]
fn retention_drops_for_a_lagging_receiver_are_counted_and_logged() {
    let dir = tempfile::tempdir().expect("tempdir");
    let up = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let up2 = up.clone();
    let mock = Mock::start(move |_| {
        if up2.load(Ordering::SeqCst) {
            (204, vec![], String::new())
        } else {
            (503, vec![], "down for maintenance".to_owned())
        }
    });
    let mut body = String::new();
    for i in 0..1000 {
        body.push_str(&format!("filler_metric{{series=\"{i}\"}} {i}\n"));
    }
    let t = Target::start(Reply::text(&body));
    let cfg = config(
        &t.addr,
        &[Receiver {
            name: "lagging",
            url: mock.url.clone(),
            extra: "",
        }],
        "segment_size = \"16KiB\"\nretention_size = \"48KiB\"\nmax_block_samples = 500",
    );
    let mut agent = Agent::start(dir.path(), &cfg);
    let dropped = format!(
        "scrapewheel_remote_write_samples_dropped_total{{reason=\"retention\",remote_name=\"lagging\",url=\"{}\"}}",
        mock.url
    );
    // Nothing is read past the blocks in flight while the receiver is down, so the
    // reader meets the deleted segments once it is back.
    let removed = "scrapewheel_spool_retention_removed_bytes_total";
    wait_for_metric(&agent, removed, 100_000.0, Duration::from_secs(60));
    up.store(true, Ordering::SeqCst);
    wait_for_metric(&agent, &dropped, 1.0, Duration::from_secs(30));
    let counted = agent.metric(&dropped).unwrap_or(0.0) as u64;
    assert_eq!(agent.terminate(), 0, "stderr: {}", agent.stderr());

    let log = agent.stderr();
    let lines: Vec<&str> = log
        .lines()
        .filter(|l| l.contains("retention deleted spooled data"))
        .collect();
    assert!(!lines.is_empty(), "{log}");
    let logged: u64 = lines
        .iter()
        .filter_map(|l| l.split("lost_samples=").nth(1))
        .filter_map(|v| v.split_whitespace().next()?.parse::<u64>().ok())
        .sum();
    assert!(
        logged >= counted && counted > 0,
        "{counted} counted, {lines:?}"
    );
    assert!(lines.iter().all(|l| l.contains("remote_name=lagging")));

    // What retention left arrived, from the oldest remaining block on.
    let got: std::collections::BTreeSet<(BTreeMap<String, String>, i64)> = mock
        .captured()
        .into_iter()
        .flat_map(|c| c.samples)
        .map(|(l, ts, _)| (l, ts))
        .collect();
    for s in export_jsonl(&dir.path().join("data"), &[]) {
        let mut l = s.labels.clone();
        l.entry("cluster".into()).or_insert_with(|| "c1".into());
        l.entry("env".into())
            .or_insert_with(|| "from-external".into());
        assert!(got.contains(&(l, s.timestamp_ms)), "missing {s:?}");
    }
}

/// The raw requests: headers as Prometheus sends them, staleness markers with the
/// StaleNaN bit pattern, and 503 + Retry-After retried without loss.
#[test]
fn raw_requests_carry_headers_and_stale_nan() {
    let dir = tempfile::tempdir().expect("tempdir");
    let mock = Mock::start(|i| {
        if i < 2 {
            (
                503,
                vec![("Retry-After", "1".to_owned())],
                "busy".to_owned(),
            )
        } else {
            (204, vec![], String::new())
        }
    });
    let t = Target::start(Reply::text("stays 1\nvanishes 2\n"));
    let cfg = config(
        &t.addr,
        &[Receiver {
            name: "mock",
            url: mock.url.clone(),
            extra: "[remote_write.headers]\nX-Scope-OrgID = \"tenant-1\"\n",
        }],
        "",
    );
    let mut agent = Agent::start(dir.path(), &cfg);
    wait_for("two scrapes", Duration::from_secs(20), || t.hits() >= 2);
    t.set(Reply::text("stays 1\n"));
    let hits = t.hits();
    wait_for("scrapes after the change", Duration::from_secs(20), || {
        t.hits() >= hits + 2
    });
    assert_eq!(agent.terminate(), 0, "stderr: {}", agent.stderr());

    let captured = mock.captured();
    assert!(mock.requests() >= 3);
    let first = &captured[0];
    assert_eq!(first.headers["content-encoding"], "snappy");
    assert_eq!(first.headers["content-type"], "application/x-protobuf");
    assert_eq!(first.headers["x-prometheus-remote-write-version"], "0.1.0");
    assert!(first.headers["user-agent"].starts_with("scrapewheel/"));
    assert_eq!(first.headers["x-scope-orgid"], "tenant-1");

    let got: Vec<_> = captured.iter().flat_map(|c| c.samples.clone()).collect();
    let stale: Vec<_> = got
        .iter()
        .filter(|(l, _, bits)| l["__name__"] == "vanishes" && f64::from_bits(*bits).is_nan())
        .collect();
    assert_eq!(
        stale.len(),
        1,
        "one staleness marker for the vanished series"
    );
    assert_eq!(stale[0].2, scrapewheel::wire::STALE_NAN_BITS);
    assert_eq!(
        stale[0].0["cluster"], "c1",
        "external labels on markers too"
    );

    // Everything the spool holds arrived once, in spite of the 503s.
    let mut want: Vec<_> = export_jsonl(&dir.path().join("data"), &[])
        .into_iter()
        .map(|s| {
            let mut l = s.labels.clone();
            l.entry("cluster".into()).or_insert_with(|| "c1".into());
            l.entry("env".into())
                .or_insert_with(|| "from-external".into());
            (l, s.timestamp_ms)
        })
        .collect();
    let mut have: Vec<_> = got.iter().map(|(l, ts, _)| (l.clone(), *ts)).collect();
    want.sort();
    have.sort();
    assert_eq!(have, want);
}
