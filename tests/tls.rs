//! Scrapes over HTTPS with a job's tls_config: a private CA, insecure_skip_verify, and
//! the default roots (which must refuse a self-signed certificate).

mod common;

use common::*;
use std::process::{Command, Stdio};
use std::time::Duration;

const SERVER: &str = r#"
import http.server, ssl, sys
class H(http.server.BaseHTTPRequestHandler):
    def do_GET(self):
        body = b"tls_metric 7\n"
        self.send_response(200)
        self.send_header("Content-Type", "text/plain; version=0.0.4")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)
    def log_message(self, *a):
        pass
srv = http.server.ThreadingHTTPServer(("127.0.0.1", 0), H)
ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
ctx.load_cert_chain(sys.argv[1], sys.argv[2])
srv.socket = ctx.wrap_socket(srv.socket, server_side=True)
print(srv.server_address[1], flush=True)
srv.serve_forever()
"#;

fn args(s: &str) -> impl Iterator<Item = std::ffi::OsString> + '_ {
    s.split(' ').map(Into::into)
}

#[test]
fn https_targets_use_the_jobs_tls_config() {
    let (Some(openssl), Some(python)) = (find_exe("openssl"), find_exe("python3")) else {
        assert!(!require_peers(), "openssl and python3 are required");
        eprintln!("skipped: openssl or python3 missing");
        return;
    };
    let dir = tempfile::tempdir().expect("tempdir");
    let p = |f: &str| dir.path().join(f);
    let (ca, cert, key) = (p("ca.pem"), p("cert.pem"), p("key.pem"));
    std::fs::write(
        p("ext.cnf"),
        "subjectAltName=IP:127.0.0.1\nbasicConstraints=CA:FALSE\n",
    )
    .expect("ext file");
    // A private CA, and a server certificate it signs for 127.0.0.1.
    let steps: [Vec<std::ffi::OsString>; 3] = [
        args("req -x509 -newkey rsa:2048 -nodes -days 1 -subj /CN=scrapewheel-test-ca -keyout")
            .chain([p("ca.key").into(), "-out".into(), ca.clone().into()])
            .collect(),
        args("req -newkey rsa:2048 -nodes -subj /CN=127.0.0.1 -keyout")
            .chain([key.clone().into(), "-out".into(), p("leaf.csr").into()])
            .collect(),
        args("x509 -req -days 1 -CAcreateserial -in")
            .chain([p("leaf.csr").into(), "-CA".into(), ca.clone().into()])
            .chain([
                "-CAkey".into(),
                p("ca.key").into(),
                "-extfile".into(),
                p("ext.cnf").into(),
            ])
            .chain(["-out".into(), cert.clone().into()])
            .collect(),
    ];
    for step in steps {
        let ok = Command::new(&openssl)
            .args(&step)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .expect("openssl");
        assert!(ok.success(), "openssl {step:?}");
    }
    let mut server = Command::new(python)
        .args(["-c", SERVER])
        .arg(&cert)
        .arg(&key)
        .stdout(Stdio::piped())
        .spawn()
        .expect("start https server");
    let mut line = String::new();
    std::io::BufRead::read_line(
        &mut std::io::BufReader::new(server.stdout.take().expect("stdout")),
        &mut line,
    )
    .expect("port");
    let _server = KillOnDrop(server);
    let addr = format!("127.0.0.1:{}", line.trim());

    let job = |name: &str, tls: &str| {
        format!(
            "[[scrape_configs]]\njob_name = \"{name}\"\nscheme = \"https\"\n{tls}\n[[scrape_configs.static_configs]]\ntargets = [\"{addr}\"]\n"
        )
    };
    let config = format!(
        "[global]\nscrape_interval = \"1s\"\nscrape_timeout = \"900ms\"\n[engine]\nreload_throttle = \"100ms\"\n{}{}{}",
        job("private_ca", &format!("tls_config = {{ ca_file = \"{}\" }}", ca.display())),
        job("skip_verify", "tls_config = { insecure_skip_verify = true }"),
        job("default_roots", ""),
    );
    let mut agent = Agent::start(dir.path(), &config);
    wait_for("all three jobs scraped", Duration::from_secs(20), || {
        agent.targets()["data"]["activeTargets"]
            .as_array()
            .is_some_and(|a| a.len() == 3 && a.iter().all(|t| t["health"] != "unknown"))
    });
    let api = agent.targets();
    let by_job = |job: &str| {
        api["data"]["activeTargets"]
            .as_array()
            .and_then(|a| a.iter().find(|t| t["scrapePool"] == job).cloned())
            .expect("listed")
    };
    assert_eq!(
        by_job("private_ca")["health"],
        "up",
        "{}",
        by_job("private_ca")
    );
    assert_eq!(
        by_job("skip_verify")["health"],
        "up",
        "{}",
        by_job("skip_verify")
    );
    let refused = by_job("default_roots");
    assert_eq!(refused["health"], "down");
    assert!(
        refused["lastError"]
            .as_str()
            .is_some_and(|e| e.to_lowercase().contains("certificate")),
        "{refused}"
    );
    assert_eq!(agent.terminate(), 0);
    let got = export_jsonl(&dir.path().join("data"), &["tls_metric"]);
    assert!(got
        .iter()
        .any(|s| s.labels["job"] == "private_ca" && s.value == 7.0));
}

#[test]
fn a_missing_ca_file_fails_the_jobs_scrapes_with_a_clear_error() {
    let dir = tempfile::tempdir().expect("tempdir");
    let t = Target::start(Reply::text("m 1\n"));
    let config = format!(
        "[global]\nscrape_interval = \"1s\"\n[engine]\nreload_throttle = \"100ms\"\n[[scrape_configs]]\njob_name = \"a\"\ntls_config = {{ ca_file = \"/nonexistent/ca.pem\" }}\n[[scrape_configs.static_configs]]\ntargets = [\"{}\"]\n[[scrape_configs]]\njob_name = \"b\"\n[[scrape_configs.static_configs]]\ntargets = [\"{}\"]\n",
        t.addr, t.addr
    );
    let mut agent = Agent::start(dir.path(), &config);
    wait_for("both jobs tried", Duration::from_secs(20), || {
        agent.targets()["data"]["activeTargets"]
            .as_array()
            .is_some_and(|a| a.len() == 2 && a.iter().all(|t| t["health"] != "unknown"))
    });
    let api = agent.targets();
    let active = api["data"]["activeTargets"].as_array().expect("active");
    let a = active.iter().find(|t| t["scrapePool"] == "a").expect("a");
    let b = active.iter().find(|t| t["scrapePool"] == "b").expect("b");
    assert_eq!(a["health"], "down");
    assert!(
        a["lastError"]
            .as_str()
            .is_some_and(|e| e.contains("/nonexistent/ca.pem")),
        "{a}"
    );
    assert_eq!(b["health"], "up", "another job is not affected");
    assert_eq!(agent.terminate(), 0);
}
