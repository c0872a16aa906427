//! Test harness: the real `scrapewheel` binary, real loopback HTTP targets, temp dirs.
//! Every process a test starts is killed when its handle drops, so tests clean up after
//! themselves even when an assertion fails.

#![allow(dead_code)]

use std::collections::BTreeMap;
use std::io::Read;
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

pub fn bin() -> PathBuf {
    PathBuf::from(env!("CARGO_BIN_EXE_scrapewheel"))
}

/// A free loopback port (bound, then released).
pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("bind port 0")
}

/// What a test target answers.
#[derive(Clone)]
pub struct Reply {
    pub status: u16,
    pub content_type: Option<String>,
    pub body: Vec<u8>,
    pub delay: Duration,
}

impl Reply {
    pub fn text(body: &str) -> Reply {
        Reply {
            status: 200,
            content_type: Some("text/plain; version=0.0.4".into()),
            body: body.as_bytes().to_vec(),
            delay: Duration::ZERO,
        }
    }
}

/// A loopback HTTP target whose reply can be changed while the agent scrapes it.
pub struct Target {
    pub addr: String,
    reply: Arc<Mutex<Reply>>,
    hits: Arc<AtomicU64>,
    arrivals: Arc<Mutex<Vec<Instant>>>,
    server: Arc<tiny_http::Server>,
    thread: Option<JoinHandle<()>>,
}

impl Target {
    pub fn start(reply: Reply) -> Target {
        let server = Arc::new(tiny_http::Server::http("127.0.0.1:0").expect("target listens"));
        let addr = server
            .server_addr()
            .to_ip()
            .expect("ip listener")
            .to_string();
        let reply = Arc::new(Mutex::new(reply));
        let hits = Arc::new(AtomicU64::new(0));
        let arrivals = Arc::new(Mutex::new(Vec::new()));
        let (s, r, h, a) = (
            server.clone(),
            reply.clone(),
            hits.clone(),
            arrivals.clone(),
        );
        let thread = std::thread::spawn(move || {
            for req in s.incoming_requests() {
                a.lock().expect("lock").push(Instant::now());
                let rep = r.lock().expect("lock").clone();
                let r2 = rep.clone();
                let h2 = h.clone();
                // Answer on its own thread so a slow reply does not hold others up.
                std::thread::spawn(move || {
                    std::thread::sleep(r2.delay);
                    let mut resp =
                        tiny_http::Response::from_data(r2.body).with_status_code(r2.status);
                    if let Some(ct) = &r2.content_type {
                        resp = resp.with_header(
                            tiny_http::Header::from_bytes(&b"Content-Type"[..], ct.as_bytes())
                                .expect("header"),
                        );
                    }
                    let _ = req.respond(resp);
                    h2.fetch_add(1, Ordering::SeqCst);
                });
                let _ = rep;
            }
        });
        Target {
            addr,
            reply,
            hits,
            arrivals,
            server,
            thread: Some(thread),
        }
    }

    pub fn set(&self, reply: Reply) {
        *self.reply.lock().expect("lock") = reply;
    }

    /// Requests answered so far.
    pub fn hits(&self) -> u64 {
        self.hits.load(Ordering::SeqCst)
    }

    pub fn arrivals(&self) -> Vec<Instant> {
        self.arrivals.lock().expect("lock").clone()
    }
}

impl Drop for Target {
    fn drop(&mut self) {
        self.server.unblock();
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

/// Waits until `cond` holds, polling; panics with `what` after `limit`.
pub fn wait_for(what: &str, limit: Duration, mut cond: impl FnMut() -> bool) {
    let start = Instant::now();
    while !cond() {
        if start.elapsed() > limit {
            panic!("timed out after {limit:?} waiting for {what}");
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// A running agent. Killed on drop if still running.
pub struct Agent {
    pub child: Option<Child>,
    pub dir: PathBuf,
    pub config: PathBuf,
    pub listen: String,
    stderr: Arc<Mutex<String>>,
}

pub fn write_config(dir: &Path, body: &str) -> PathBuf {
    let path = dir.join("scrapewheel.toml");
    std::fs::write(&path, body).expect("write config");
    path
}

impl Agent {
    /// Starts the agent on `config_body` in `dir`, with a free listen port and `dir/data`.
    pub fn start(dir: &Path, config_body: &str) -> Agent {
        let config = write_config(dir, config_body);
        Self::start_with(dir, config)
    }

    pub fn start_with(dir: &Path, config: PathBuf) -> Agent {
        Self::start_with_args(dir, config, &[])
    }

    /// Like [`Agent::start_with`], with extra global flags (e.g. `--log-level debug`).
    pub fn start_with_args(dir: &Path, config: PathBuf, extra: &[&str]) -> Agent {
        let listen = format!("127.0.0.1:{}", free_port());
        let mut child = Command::new(bin())
            .args(extra)
            .args(["run", "--config"])
            .arg(&config)
            .args(["--listen", &listen, "--data"])
            .arg(dir.join("data"))
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .expect("start scrapewheel");
        let stderr = Arc::new(Mutex::new(String::new()));
        let mut pipe = child.stderr.take().expect("stderr");
        let s2 = stderr.clone();
        std::thread::spawn(move || {
            let mut buf = [0u8; 4096];
            while let Ok(n) = pipe.read(&mut buf) {
                if n == 0 {
                    break;
                }
                s2.lock()
                    .expect("lock")
                    .push_str(&String::from_utf8_lossy(&buf[..n]));
            }
        });
        let agent = Agent {
            child: Some(child),
            dir: dir.to_path_buf(),
            config,
            listen,
            stderr,
        };
        let url = format!("http://{}/-/ready", agent.listen);
        wait_for("agent ready", Duration::from_secs(20), || {
            http_get(&url).is_some_and(|(s, _)| s == 200)
        });
        agent
    }

    pub fn pid(&self) -> i32 {
        self.child.as_ref().map_or(0, |c| c.id() as i32)
    }

    pub fn signal(&self, sig: i32) {
        // SAFETY: kill has no memory preconditions; the pid is our own child.
        unsafe {
            libc::kill(self.pid(), sig);
        }
    }

    /// SIGTERM, then waits for exit; returns the exit code.
    pub fn terminate(&mut self) -> i32 {
        self.signal(libc::SIGTERM);
        self.wait(Duration::from_secs(30))
    }

    pub fn wait(&mut self, limit: Duration) -> i32 {
        let mut child = self.child.take().expect("running");
        let start = Instant::now();
        loop {
            if let Some(st) = child.try_wait().expect("wait") {
                return st.code().unwrap_or(-1);
            }
            if start.elapsed() > limit {
                let _ = child.kill();
                panic!(
                    "agent did not exit within {limit:?}; stderr:\n{}",
                    self.stderr()
                );
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    pub fn kill9(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    pub fn stderr(&self) -> String {
        self.stderr.lock().expect("lock").clone()
    }

    pub fn get(&self, path: &str) -> Option<(u16, String)> {
        http_get(&format!("http://{}{}", self.listen, path))
    }

    pub fn targets(&self) -> serde_json::Value {
        let (_, body) = self.get("/api/v1/targets").expect("targets api");
        serde_json::from_str(&body).expect("targets json")
    }

    /// The value of a self-metric line (exact `name{labels}` prefix) on /metrics.
    pub fn metric(&self, series: &str) -> Option<f64> {
        let (_, body) = self.get("/metrics")?;
        body.lines()
            .find_map(|l| l.strip_prefix(series).and_then(|r| r.strip_prefix(' ')))
            .and_then(|v| v.trim().parse().ok())
    }
}

impl Drop for Agent {
    fn drop(&mut self) {
        self.kill9();
    }
}

/// A minimal blocking GET for tests: (status, body).
pub fn http_get(url: &str) -> Option<(u16, String)> {
    let agent: ureq::Agent = ureq::Agent::config_builder()
        .http_status_as_error(false)
        .timeout_global(Some(Duration::from_secs(5)))
        .build()
        .into();
    let mut resp = agent.get(url).call().ok()?;
    let status = resp.status().as_u16();
    let body = resp.body_mut().read_to_string().ok()?;
    Some((status, body))
}

/// One exported sample.
#[derive(Debug, Clone)]
pub struct Sample {
    pub labels: BTreeMap<String, String>,
    pub value: f64,
    pub stale: bool,
    pub timestamp_ms: i64,
}

impl Sample {
    pub fn name(&self) -> &str {
        self.labels.get("__name__").map_or("", |s| s.as_str())
    }
}

/// Runs `scrapewheel export --format jsonl` on `data` and parses every line.
pub fn export_jsonl(data: &Path, matchers: &[&str]) -> Vec<Sample> {
    let mut cmd = Command::new(bin());
    cmd.args(["export", "--format", "jsonl", "--data"])
        .arg(data);
    for m in matchers {
        cmd.args(["--match", m]);
    }
    let out = cmd.output().expect("run export");
    assert!(
        out.status.success(),
        "export failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout)
        .expect("utf8 export")
        .lines()
        .map(|l| {
            let v: serde_json::Value = serde_json::from_str(l).expect("json line");
            let labels = v["labels"]
                .as_object()
                .expect("labels")
                .iter()
                .map(|(k, v)| (k.clone(), v.as_str().unwrap_or_default().to_string()))
                .collect();
            let value = match &v["value"] {
                serde_json::Value::Number(n) => n.as_f64().unwrap_or(f64::NAN),
                serde_json::Value::String(s) => match s.as_str() {
                    "+Inf" => f64::INFINITY,
                    "-Inf" => f64::NEG_INFINITY,
                    _ => f64::NAN,
                },
                _ => f64::NAN,
            };
            Sample {
                labels,
                value,
                stale: v["stale"].as_bool().unwrap_or(false),
                timestamp_ms: v["timestamp_ms"].as_i64().expect("timestamp"),
            }
        })
        .collect()
}

/// True when peers from Debian's packages must be present (the test script sets it).
pub fn require_peers() -> bool {
    std::env::var("SCRAPEWHEEL_REQUIRE_PEERS").is_ok_and(|v| v == "1")
}

/// Finds an executable on PATH or in the usual Debian places.
pub fn find_exe(name: &str) -> Option<PathBuf> {
    let mut dirs: Vec<PathBuf> = std::env::var_os("PATH")
        .map(|p| std::env::split_paths(&p).collect())
        .unwrap_or_default();
    dirs.push("/usr/bin".into());
    dirs.push("/usr/sbin".into());
    dirs.into_iter().map(|d| d.join(name)).find(|p| p.is_file())
}

/// Kills a peer process when the test ends, however it ends.
pub struct KillOnDrop(pub std::process::Child);

impl Drop for KillOnDrop {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}
