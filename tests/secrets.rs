//! Secrets planted in a config — basic_auth passwords, bearer credentials, header values,
//! passwords in a target address, a proxy URL, a discovery URL and a remote_write URL —
//! appear in no log line (logfmt and JSON, debug level), no API answer, no page, no
//! metric, no `check` output and no reload error, while the failures around them
//! (refused connections, HTTP 500s, a bad reload) are still reported with their URLs.

mod common;

use common::{bin, free_port, wait_for, write_config, Agent, Reply, Target};
use std::path::Path;
use std::process::Command;
use std::time::Duration;

/// Every planted secret. Distinct, so a leak names its source.
const SECRETS: [&str; 9] = [
    "basic-PW-4f1c9a",
    "bearer-TOKEN-77d0e2",
    "target-PW-a93b51",
    "rw-url-PW-0c6e3d",
    "rw-basic-PW-5b2f88",
    "rw-header-KEY-e41d07",
    "proxy-PW-9a7c15",
    "sd-url-PW-d2084f",
    "bearer-file-TOKEN-61ab3c",
];

fn config(ok: &str, failing: &str, closed: &str, token_file: &Path) -> String {
    let [basic, bearer, target, rw_url, rw_basic, rw_header, proxy, sd_url, _] = SECRETS;
    format!(
        r#"
[global]
scrape_interval = "1s"
scrape_timeout = "500ms"

[web]
enable_lifecycle = true

# A healthy target and a refused one, with basic auth.
[[scrape_configs]]
job_name = "basic"
[scrape_configs.basic_auth]
username = "scraper"
password = "{basic}"
[[scrape_configs.static_configs]]
targets = ["{ok}", "{closed}"]

# A target that fails with 500, with a bearer token.
[[scrape_configs]]
job_name = "bearer"
[scrape_configs.authorization]
credentials = "{bearer}"
[[scrape_configs.static_configs]]
targets = ["{failing}"]

# A token read from a file, and a proxy URL with a password.
[[scrape_configs]]
job_name = "file"
proxy_url = "http://proxyuser:{proxy}@{closed}"
[scrape_configs.authorization]
credentials_file = "{token_file}"
[[scrape_configs.static_configs]]
targets = ["{failing}"]

# A password in the target address, and a discovery URL with one.
[[scrape_configs]]
job_name = "userinfo"
[[scrape_configs.static_configs]]
targets = ["admin:{target}@{closed}"]
[[scrape_configs.http_sd_configs]]
url = "http://sd:{sd_url}@{closed}/targets"

[[remote_write]]
url = "http://rw:{rw_url}@{closed}/api/v1/write"
[remote_write.headers]
X-Api-Key = "{rw_header}"

[[remote_write]]
url = "http://{closed}/other/write"
[remote_write.basic_auth]
username = "rw"
password = "{rw_basic}"
"#,
        token_file = token_file.display(),
    )
}

fn assert_clean(what: &str, text: &str) {
    for s in SECRETS {
        assert!(!text.contains(s), "{what} leaks {s}:\n{text}");
    }
}

fn post(url: &str) -> (u16, String) {
    let agent: ureq::Agent = ureq::Agent::config_builder()
        .http_status_as_error(false)
        .timeout_global(Some(Duration::from_secs(60)))
        .build()
        .into();
    let mut resp = agent.post(url).send_empty().expect("post");
    let status = resp.status().as_u16();
    (status, resp.body_mut().read_to_string().unwrap_or_default())
}

fn run_agent(log_format: &str) {
    let ok = Target::start(Reply::text("x 1\n"));
    let failing = Target::start(Reply {
        status: 500,
        ..Reply::text("nope")
    });
    let closed = format!("127.0.0.1:{}", free_port());
    let dir = tempfile::tempdir().expect("tmp");
    let token_file = dir.path().join("token");
    std::fs::write(&token_file, format!("{}\n", SECRETS[8])).expect("token");
    let text = config(&ok.addr, &failing.addr, &closed, &token_file);
    let path = write_config(dir.path(), &text);

    // `check` prints a summary of everything, remote_write URLs included.
    let out = Command::new(bin())
        .args(["check", "--config"])
        .arg(&path)
        .output()
        .expect("check");
    let shown = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(out.status.success(), "{shown}");
    assert_clean("check", &shown);

    let mut agent = Agent::start_with_args(
        dir.path(),
        path.clone(),
        &["--log-level", "debug", "--log-format", log_format],
    );
    // Every scrape has failed or succeeded at least once, and the refused target address
    // has been reported.
    wait_for("scrapes and target errors", Duration::from_secs(30), || {
        let v = agent.targets();
        let active = v["data"]["activeTargets"]
            .as_array()
            .cloned()
            .unwrap_or_default();
        active.len() == 4
            && active.iter().all(|t| t["health"] != "unknown")
            && agent.stderr().contains("scrape failed")
    });
    let api = agent.get("/api/v1/targets").expect("api").1;
    assert_clean("/api/v1/targets", &api);
    let v: serde_json::Value = serde_json::from_str(&api).expect("json");
    let active = v["data"]["activeTargets"].as_array().expect("active");
    // The errors are there, and they name the URLs.
    let refused = active
        .iter()
        .find(|t| t["labels"]["instance"] == closed.as_str())
        .expect("refused target");
    assert!(
        refused["lastError"]
            .as_str()
            .is_some_and(|e| e.contains(&closed)),
        "{refused}"
    );
    let job = |name: &str| {
        active
            .iter()
            .find(|t| t["scrapePool"] == name)
            .and_then(|t| t["lastError"].as_str())
            .unwrap_or_default()
            .to_string()
    };
    let bearer = job("bearer");
    assert!(
        bearer.contains(&failing.addr) && bearer.contains("500"),
        "{bearer}"
    );
    // The file job goes through its proxy (a closed port): the error names the target,
    // never the proxy's credentials (checked with every other secret below).
    let via_proxy = job("file");
    assert!(via_proxy.contains(&failing.addr), "{via_proxy}");
    // The target with a password in its address is refused, and says why.
    assert!(
        !active.iter().any(|t| t["scrapePool"] == "userinfo"),
        "credentials in an address make no target"
    );
    for (path, what) in [
        ("/api/v1/targets?state=dropped", "dropped targets"),
        ("/api/v1/targets?scrapePool=userinfo", "userinfo pool"),
        ("/targets", "the targets page"),
        ("/metrics", "/metrics"),
    ] {
        let (status, body) = agent.get(path).expect(what);
        assert_eq!(status, 200, "{what}");
        assert_clean(what, &body);
    }

    // A reload that fails: the config now has an unknown key next to the secrets. The
    // error goes back to the caller and to the log.
    std::fs::write(&path, format!("{text}\n[web2]\nx = \"{}\"\n", "y")).expect("rewrite");
    let (status, body) = post(&format!("http://{}/-/reload", agent.listen));
    assert_eq!(status, 500, "{body}");
    assert!(body.contains("web2"), "{body}");
    assert_clean("reload error", &body);
    // And one that works, with the secrets still in it.
    std::fs::write(&path, &text).expect("rewrite");
    let (status, body) = post(&format!("http://{}/-/reload", agent.listen));
    assert_eq!(status, 200, "{body}");

    assert_eq!(agent.terminate(), 0);
    let log = agent.stderr();
    assert_clean("the log", &log);
    // The log did report the failures it must report, in the requested format.
    assert!(log.contains("holds credentials"), "{log}");
    assert!(
        log.contains(&closed),
        "refused scrape is logged with its URL:\n{log}"
    );
    assert!(log.contains("reload failed"), "{log}");
    for line in log.lines().filter(|l| !l.trim().is_empty()) {
        match log_format {
            "json" => {
                let v: serde_json::Value =
                    serde_json::from_str(line).unwrap_or_else(|e| panic!("not JSON ({e}): {line}"));
                assert!(v["level"].is_string() && v["msg"].is_string(), "{line}");
            }
            _ => assert!(
                line.starts_with("ts=") && line.contains(" level=") && line.contains(" msg="),
                "not logfmt: {line}"
            ),
        }
    }
}

#[test]
fn secrets_never_leak_with_logfmt_logs() {
    run_agent("logfmt");
}

#[test]
fn secrets_never_leak_with_json_logs() {
    run_agent("json");
}
