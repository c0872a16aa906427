//! Service discovery end to end: the real binary follows target files, an HTTP SD
//! endpoint and a real DNS server (Debian's dnsmasq on a loopback port) as they change.

mod common;

use common::*;
use std::collections::BTreeMap;
use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

const WAIT: Duration = Duration::from_secs(20);

/// The global part of every config here: 1s scrapes, syncs at most every 100ms.
const HEAD: &str = r#"
[global]
scrape_interval = "1s"
scrape_timeout = "500ms"

[engine]
reload_throttle = "100ms"

[storage]
flush_interval = "200ms"
"#;

/// Active targets of `job` as instance → discovered labels.
fn active(agent: &Agent, job: &str) -> BTreeMap<String, BTreeMap<String, String>> {
    let v = agent.targets();
    let mut out = BTreeMap::new();
    for t in v["data"]["activeTargets"].as_array().into_iter().flatten() {
        if t["scrapePool"] != job {
            continue;
        }
        let instance = t["labels"]["instance"].as_str().unwrap_or("").to_string();
        let discovered = t["discoveredLabels"]
            .as_object()
            .into_iter()
            .flatten()
            .map(|(k, v)| (k.clone(), v.as_str().unwrap_or("").to_string()))
            .collect();
        out.insert(instance, discovered);
    }
    out
}

fn instances(agent: &Agent, job: &str) -> Vec<String> {
    active(agent, job).into_keys().collect()
}

/// Writes a file atomically (temp file + rename), as tools that generate target files do.
fn write_atomic(path: &Path, body: &str) {
    let tmp = path.with_extension("tmp");
    std::fs::write(&tmp, body).expect("write temp");
    std::fs::rename(&tmp, path).expect("rename");
}

fn wait_instances(agent: &Agent, job: &str, want: &[&str]) {
    let mut want: Vec<String> = want.iter().map(|s| s.to_string()).collect();
    want.sort();
    wait_for(&format!("{job} targets {want:?}"), WAIT, || {
        instances(agent, job) == want
    });
}

#[test]
fn file_sd_follows_json_yaml_and_toml_files() {
    let dir = tempfile::tempdir().expect("tempdir");
    let sd = dir.path().join("sd");
    std::fs::create_dir(&sd).expect("sd dir");
    let (t1, t2, t3) = (
        Target::start(Reply::text("a 1\n")),
        Target::start(Reply::text("b 1\n")),
        Target::start(Reply::text("c 1\n")),
    );
    write_atomic(
        &sd.join("a.json"),
        &format!(
            r#"[{{"targets": ["{}"], "labels": {{"team": "a"}}}}]"#,
            t1.addr
        ),
    );
    // A 5m refresh: every change below must be picked up by the change poll.
    let cfg = format!(
        r#"{HEAD}
[[scrape_configs]]
job_name = "files"
[[scrape_configs.file_sd_configs]]
files = ["sd/*.json", "sd/*.yml"]
[[scrape_configs.file_sd_configs]]
files = ["sd/*.toml"]
"#
    );
    let mut agent = Agent::start(dir.path(), &cfg);
    wait_instances(&agent, "files", &[&t1.addr]);
    let a = &active(&agent, "files")[&t1.addr];
    assert_eq!(a["team"], "a");
    assert_eq!(Path::new(&a["__meta_filepath"]), sd.join("a.json"), "{a:?}");
    wait_for("t1 scraped", WAIT, || t1.hits() >= 1);

    write_atomic(
        &sd.join("b.yml"),
        &format!(
            "# generated\n- targets: ['{}']\n  labels:\n    team: b\n",
            t2.addr
        ),
    );
    write_atomic(
        &sd.join("c.toml"),
        &format!(
            "[[groups]]\ntargets = [\"{}\"]\nlabels = {{ team = \"c\" }}\n",
            t3.addr
        ),
    );
    wait_instances(&agent, "files", &[&t1.addr, &t2.addr, &t3.addr]);
    assert_eq!(active(&agent, "files")[&t3.addr]["team"], "c");
    assert_eq!(
        agent.metric("prometheus_sd_discovered_targets{config=\"files\",name=\"scrape\"}"),
        Some(3.0)
    );

    // A broken file keeps its last good targets and the error names file:line.
    write_atomic(
        &sd.join("b.yml"),
        &format!("- targets: ['{}']\n  labels: [oops\n", t2.addr),
    );
    wait_for("read error counted", WAIT, || {
        agent
            .metric("prometheus_sd_file_read_errors_total")
            .is_some_and(|v| v >= 1.0)
    });
    let shown = format!("{}:", sd.join("b.yml").display());
    assert!(
        agent
            .stderr()
            .lines()
            .any(|l| l.contains(&shown) && l.contains("file_sd")),
        "the log names the file and line: {}",
        agent.stderr()
    );
    assert_eq!(
        instances(&agent, "files").len(),
        3,
        "the broken file keeps its targets"
    );

    // A removed file takes its targets with it, and they stop being scraped.
    std::fs::remove_file(sd.join("a.json")).expect("remove");
    wait_instances(&agent, "files", &[&t2.addr, &t3.addr]);
    let hits = t1.hits();
    std::thread::sleep(Duration::from_millis(2500));
    assert!(
        t1.hits() <= hits + 1,
        "a removed target is no longer scraped"
    );
    assert_eq!(agent.terminate(), 0, "{}", agent.stderr());

    let mut samples = export_jsonl(&dir.path().join("data"), &["a"]);
    samples.sort_by_key(|s| s.timestamp_ms);
    assert!(
        samples.last().is_some_and(|s| s.stale),
        "the removed target's series end stale: {samples:?}"
    );
}

/// An HTTP SD endpoint whose answer can be changed, recording each request's headers.
struct SdServer {
    url: String,
    answer: Arc<Mutex<(u16, String, String)>>,
    requests: Arc<Mutex<Vec<BTreeMap<String, String>>>>,
    count: Arc<AtomicU64>,
    server: Arc<tiny_http::Server>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl SdServer {
    fn start() -> SdServer {
        let server = Arc::new(tiny_http::Server::http("127.0.0.1:0").expect("listen"));
        let addr = server.server_addr().to_ip().expect("ip").to_string();
        let answer = Arc::new(Mutex::new((
            200,
            "application/json".to_string(),
            "[]".to_string(),
        )));
        let requests = Arc::new(Mutex::new(Vec::new()));
        let count = Arc::new(AtomicU64::new(0));
        let (s, a, r, c) = (
            server.clone(),
            answer.clone(),
            requests.clone(),
            count.clone(),
        );
        let thread = std::thread::spawn(move || {
            for req in s.incoming_requests() {
                let headers = req
                    .headers()
                    .iter()
                    .map(|h| {
                        (
                            h.field.to_string().to_ascii_lowercase(),
                            h.value.to_string(),
                        )
                    })
                    .collect();
                r.lock().expect("lock").push(headers);
                let (status, ct, body) = a.lock().expect("lock").clone();
                let resp = tiny_http::Response::from_string(body)
                    .with_status_code(status)
                    .with_header(
                        tiny_http::Header::from_bytes(&b"Content-Type"[..], ct.as_bytes())
                            .expect("header"),
                    );
                let _ = req.respond(resp);
                c.fetch_add(1, Ordering::SeqCst);
            }
        });
        SdServer {
            url: format!("http://{addr}/sd"),
            answer,
            requests,
            count,
            server,
            thread: Some(thread),
        }
    }

    fn set(&self, status: u16, content_type: &str, body: &str) {
        *self.answer.lock().expect("lock") = (status, content_type.into(), body.into());
    }

    fn serve_targets(&self, addrs: &[&str]) {
        let list: Vec<String> = addrs.iter().map(|a| format!("\"{a}\"")).collect();
        self.set(
            200,
            "application/json; charset=utf-8",
            &format!(
                r#"[{{"targets": [{}], "labels": {{"source": "inventory"}}}}]"#,
                list.join(", ")
            ),
        );
    }

    fn requests(&self) -> u64 {
        self.count.load(Ordering::SeqCst)
    }
}

impl Drop for SdServer {
    fn drop(&mut self) {
        self.server.unblock();
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

#[test]
fn http_sd_follows_the_endpoint_and_keeps_the_last_good_targets() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (t1, t2) = (
        Target::start(Reply::text("a 1\n")),
        Target::start(Reply::text("b 1\n")),
    );
    let sd = SdServer::start();
    sd.serve_targets(&[&t1.addr]);
    std::fs::write(dir.path().join("token"), "s3cret\n").expect("token");
    let cfg = format!(
        r#"{HEAD}
[[scrape_configs]]
job_name = "inventory"
[[scrape_configs.http_sd_configs]]
url = "{}"
refresh_interval = "1s"
authorization = {{ credentials_file = "token" }}
"#,
        sd.url
    );
    let mut agent = Agent::start(dir.path(), &cfg);
    wait_instances(&agent, "inventory", &[&t1.addr]);
    let d = &active(&agent, "inventory")[&t1.addr];
    assert_eq!(d["__meta_url"], sd.url);
    assert_eq!(d["source"], "inventory");
    let first = sd.requests.lock().expect("lock")[0].clone();
    assert_eq!(first["authorization"], "Bearer s3cret");
    assert_eq!(first["accept"], "application/json");
    assert_eq!(first["x-prometheus-refresh-interval-seconds"], "1");
    assert!(first["user-agent"].starts_with("scrapewheel/"), "{first:?}");

    sd.serve_targets(&[&t1.addr, &t2.addr]);
    wait_instances(&agent, "inventory", &[&t1.addr, &t2.addr]);

    // Failures keep the last good targets and are counted.
    let failures = || {
        agent
            .metric("prometheus_sd_http_failures_total")
            .unwrap_or(0.0)
    };
    sd.set(503, "text/plain", "down for maintenance");
    wait_for("a 503 counted", WAIT, || failures() >= 1.0);
    sd.set(200, "text/html", "<html>");
    wait_for("a bad content type counted", WAIT, || failures() >= 2.0);
    sd.set(
        200,
        "application/json",
        r#"[{"targets": ["x:1"], "lables": {}}]"#,
    );
    wait_for("a bad document counted", WAIT, || failures() >= 3.0);
    assert_eq!(
        instances(&agent, "inventory").len(),
        2,
        "last good targets kept"
    );
    assert!(agent.stderr().contains("server returned HTTP status 503"));
    assert!(
        agent.stderr().contains("unknown field `lables`"),
        "{}",
        agent.stderr()
    );

    sd.serve_targets(&[&t2.addr]);
    wait_instances(&agent, "inventory", &[&t2.addr]);
    assert!(sd.requests() >= 5);
    assert_eq!(agent.terminate(), 0, "{}", agent.stderr());
}

/// A dnsmasq answering for `sd.test` from a hosts file and SRV records, on a loopback
/// port, restartable on the same port (SRV records are only read at start).
struct Dnsmasq {
    exe: std::path::PathBuf,
    dir: std::path::PathBuf,
    port: u16,
    proc: Option<KillOnDrop>,
}

impl Dnsmasq {
    fn start(exe: std::path::PathBuf, dir: &Path, hosts: &str, srv: &[(&str, u16)]) -> Dnsmasq {
        // dnsmasq listens on UDP and TCP: the port must be free for both, or it exits.
        let port = (0..100)
            .find_map(|_| {
                let udp = std::net::UdpSocket::bind("127.0.0.1:0").ok()?;
                let port = udp.local_addr().ok()?.port();
                std::net::TcpListener::bind(("127.0.0.1", port)).ok()?;
                Some(port)
            })
            .expect("a port free for UDP and TCP");
        let mut d = Dnsmasq {
            exe,
            dir: dir.to_path_buf(),
            port,
            proc: None,
        };
        d.restart(hosts, srv);
        d
    }

    fn write(&self, hosts: &str, srv: &[(&str, u16)]) {
        std::fs::write(self.dir.join("hosts"), hosts).expect("hosts");
        let conf: String = srv
            .iter()
            .map(|(target, port)| format!("srv-host=_metrics._tcp.sd.test,{target},{port}\n"))
            .collect();
        std::fs::write(self.dir.join("dnsmasq.conf"), conf).expect("conf");
    }

    fn restart(&mut self, hosts: &str, srv: &[(&str, u16)]) {
        self.proc = None;
        self.write(hosts, srv);
        let mut cmd = std::process::Command::new(&self.exe);
        cmd.arg("--keep-in-foreground")
            .args([
                "--no-resolv",
                "--no-hosts",
                "--no-poll",
                "--bind-interfaces",
            ])
            .args([
                "--listen-address=127.0.0.1",
                "--local=/sd.test/",
                "--pid-file=",
            ])
            .arg(format!("--port={}", self.port))
            .arg(format!("--addn-hosts={}", self.dir.join("hosts").display()))
            .arg(format!(
                "--conf-file={}",
                self.dir.join("dnsmasq.conf").display()
            ))
            .arg(format!("--log-facility={}", self.dir.join("log").display()))
            .stdin(std::process::Stdio::null())
            .stdout(std::process::Stdio::null())
            .stderr(std::fs::File::create(self.dir.join("stderr")).expect("stderr file"));
        // SAFETY: geteuid has no preconditions.
        if unsafe { libc::geteuid() } == 0 {
            // Stay root so the test's private temp dir stays readable after a SIGHUP.
            cmd.arg("--user=root");
        }
        let child = cmd.spawn().expect("start dnsmasq");
        self.proc = Some(KillOnDrop(child));
        let addr: std::net::SocketAddr = ([127, 0, 0, 1], self.port).into();
        let dir = &self.dir;
        let proc = &mut self.proc;
        wait_for("dnsmasq answers", WAIT, || {
            if let Some(Ok(Some(status))) = proc.as_mut().map(|p| p.0.try_wait()) {
                let said: String = ["log", "stderr"]
                    .map(|f| std::fs::read_to_string(dir.join(f)).unwrap_or_default())
                    .concat();
                panic!("dnsmasq exited ({status}) on port {}: {said}", addr.port());
            }
            scrapewheel::discovery::dns::exchange(
                addr,
                "node.sd.test",
                1,
                Duration::from_millis(200),
            )
            .is_ok()
        });
    }

    /// Re-reads the hosts file (SIGHUP).
    fn reload_hosts(&self, hosts: &str) {
        std::fs::write(self.dir.join("hosts"), hosts).expect("hosts");
        if let Some(p) = &self.proc {
            // SAFETY: kill has no memory preconditions; the pid is our own child.
            unsafe {
                libc::kill(p.0.id() as i32, libc::SIGHUP);
            }
        }
    }

    fn stop(&mut self) {
        self.proc = None;
    }
}

#[test]
fn dns_sd_follows_srv_a_and_aaaa_records_from_a_real_server() {
    let Some(exe) = find_exe("dnsmasq") else {
        assert!(
            !require_peers(),
            "dnsmasq is required (Debian package dnsmasq-base)"
        );
        eprintln!("skipping: dnsmasq not installed (apt-get install dnsmasq-base)");
        return;
    };
    let dir = tempfile::tempdir().expect("tempdir");
    let dns_dir = dir.path().join("dns");
    std::fs::create_dir(&dns_dir).expect("dns dir");
    let (t1, t2, t3) = (
        Target::start(Reply::text("a 1\n")),
        Target::start(Reply::text("b 1\n")),
        Target::start(Reply::text("c 1\n")),
    );
    let port = |t: &Target| {
        t.addr
            .rsplit(':')
            .next()
            .expect("port")
            .parse::<u16>()
            .expect("num")
    };
    let hosts = "127.0.0.1 node.sd.test\n::1 node.sd.test\n";
    let mut dns = Dnsmasq::start(exe, &dns_dir, hosts, &[("127.0.0.1", port(&t1))]);
    let ns = format!("127.0.0.1:{}", dns.port);
    let cfg = format!(
        r#"{HEAD}
[[scrape_configs]]
job_name = "srv"
[[scrape_configs.dns_sd_configs]]
names = ["_metrics._tcp.sd.test"]
refresh_interval = "1s"
nameservers = ["{ns}"]

[[scrape_configs]]
job_name = "a"
[[scrape_configs.dns_sd_configs]]
names = ["node.sd.test"]
type = "A"
port = {p3}
refresh_interval = "1s"
nameservers = ["{ns}"]

[[scrape_configs]]
job_name = "aaaa"
[[scrape_configs.dns_sd_configs]]
names = ["node.sd.test"]
type = "AAAA"
port = 9
refresh_interval = "1s"
nameservers = ["{ns}"]
"#,
        p3 = port(&t3)
    );
    let mut agent = Agent::start(dir.path(), &cfg);
    wait_instances(&agent, "srv", &[&t1.addr]);
    let d = &active(&agent, "srv")[&t1.addr];
    assert_eq!(d["__meta_dns_name"], "_metrics._tcp.sd.test");
    assert_eq!(d["__meta_dns_srv_record_target"], "127.0.0.1.");
    assert_eq!(d["__meta_dns_srv_record_port"], port(&t1).to_string());
    wait_instances(&agent, "a", &[&t3.addr]);
    assert_eq!(
        active(&agent, "a")[&t3.addr]["__meta_dns_name"],
        "node.sd.test"
    );
    assert!(!active(&agent, "a")[&t3.addr].contains_key("__meta_dns_srv_record_target"));
    wait_instances(&agent, "aaaa", &["[::1]:9"]);
    wait_for("scrapes of SRV and A targets", WAIT, || {
        t1.hits() >= 1 && t3.hits() >= 1
    });

    // New SRV records (dnsmasq reads them at start only).
    dns.restart(hosts, &[("127.0.0.1", port(&t1)), ("127.0.0.1", port(&t2))]);
    wait_instances(&agent, "srv", &[&t1.addr, &t2.addr]);
    // The A record goes away: its target disappears.
    dns.reload_hosts("::1 node.sd.test\n");
    wait_instances(&agent, "a", &[]);
    assert_eq!(
        agent.metric("prometheus_sd_discovered_targets{config=\"a\",name=\"scrape\"}"),
        Some(0.0)
    );

    // The server goes away: lookups fail, are counted, and the targets stay.
    dns.stop();
    wait_for("lookup failures counted", WAIT, || {
        agent
            .metric("prometheus_sd_dns_lookup_failures_total")
            .is_some_and(|v| v >= 3.0)
    });
    assert_eq!(instances(&agent, "srv").len(), 2);
    assert_eq!(instances(&agent, "aaaa"), ["[::1]:9"]);
    assert!(
        agent
            .metric("prometheus_sd_dns_lookups_total")
            .unwrap_or(0.0)
            >= 9.0,
        "three names, at least three rounds"
    );
    assert!(agent.stderr().contains("dns_sd: lookup failed"));
    assert_eq!(agent.terminate(), 0, "{}", agent.stderr());
}

/// POST /-/reload: (status, body).
fn reload(agent: &Agent) -> (u16, String) {
    let client: ureq::Agent = ureq::Agent::config_builder()
        .http_status_as_error(false)
        .timeout_global(Some(Duration::from_secs(30)))
        .build()
        .into();
    let mut resp = client
        .post(format!("http://{}/-/reload", agent.listen))
        .send_empty()
        .expect("POST /-/reload");
    let status = resp.status().as_u16();
    (status, resp.body_mut().read_to_string().unwrap_or_default())
}

#[test]
fn providers_restart_only_when_their_own_config_changed() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (t1, t2) = (
        Target::start(Reply::text("a 1\n")),
        Target::start(Reply::text("b 1\n")),
    );
    let sd = SdServer::start();
    sd.serve_targets(&[&t1.addr]);
    // An hour between refreshes: any further request means the provider restarted.
    let cfg = |inv_extra: &str, refresh: &str, other_label: &str| {
        format!(
            r#"{HEAD}
[web]
enable_lifecycle = true

[[scrape_configs]]
job_name = "inv"
{inv_extra}
[[scrape_configs.http_sd_configs]]
url = "{}"
refresh_interval = "{refresh}"

[[scrape_configs]]
job_name = "other"
[[scrape_configs.static_configs]]
targets = ["{}"]
labels = {{ l = "{other_label}" }}
"#,
            sd.url, t2.addr
        )
    };
    let mut agent = Agent::start(dir.path(), &cfg("", "1h", "x"));
    wait_instances(&agent, "inv", &[&t1.addr]);
    assert_eq!(sd.requests(), 1);

    // Another job changes, then this job's scrape settings change: its pool restarts
    // but its provider does not, and the targets it found stay.
    write_config(dir.path(), &cfg("", "1h", "y"));
    assert_eq!(reload(&agent).0, 200);
    write_config(dir.path(), &cfg("scrape_interval = \"2s\"", "1h", "y"));
    assert_eq!(reload(&agent).0, 200);
    wait_for("the restarted pool scrapes at 2s", WAIT, || {
        agent
            .targets()
            .to_string()
            .contains("\"scrapeInterval\":\"2s\"")
    });
    let n = t1.hits();
    wait_for("t1 still scraped", WAIT, || t1.hits() > n);
    std::thread::sleep(Duration::from_millis(1000));
    assert_eq!(sd.requests(), 1, "an unchanged provider is not restarted");
    assert_eq!(instances(&agent, "inv"), std::slice::from_ref(&t1.addr));

    // Its own config changes: it restarts, asks at once, and its new view replaces the
    // old one.
    sd.serve_targets(&[&t2.addr]);
    write_config(dir.path(), &cfg("scrape_interval = \"2s\"", "59m", "y"));
    assert_eq!(reload(&agent).0, 200);
    wait_for("the restarted provider asks", WAIT, || sd.requests() == 2);
    wait_instances(&agent, "inv", &[&t2.addr]);

    // Its config goes away: its targets go with it.
    write_config(
        dir.path(),
        &cfg("scrape_interval = \"2s\"", "59m", "y").replace(
            &format!(
                "[[scrape_configs.http_sd_configs]]\nurl = \"{}\"\nrefresh_interval = \"59m\"\n",
                sd.url
            ),
            "",
        ),
    );
    assert_eq!(reload(&agent).0, 200);
    wait_instances(&agent, "inv", &[]);
    assert_eq!(sd.requests(), 2);
    assert_eq!(agent.terminate(), 0, "{}", agent.stderr());
}
