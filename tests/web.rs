//! The operator-facing web endpoints against a real agent: `/api/v1/targets` in
//! Prometheus's exact shape with its filters, and the `/targets` page loaded, filtered
//! and photographed in Debian's headless Chromium.

#[path = "browser/cdp.rs"]
mod cdp;
mod common;

use common::{free_port, require_peers, wait_for, Agent, Reply, Target};
use serde_json::Value;
use std::collections::BTreeSet;
use std::time::Duration;

/// Three jobs: `node` (two healthy targets and one answering 500), `api` (one healthy,
/// one refusing connections, one dropped by relabeling) and `batch` (a weekly interval,
/// so it stays unscraped, with a label value full of markup).
struct Scene {
    _targets: Vec<Target>,
    closed: String,
    agent: Agent,
    _dir: tempfile::TempDir,
}

fn scene() -> Scene {
    let body = "# TYPE requests_total counter\nrequests_total 7\n";
    let ok: Vec<Target> = (0..3).map(|_| Target::start(Reply::text(body))).collect();
    let bad = Target::start(Reply {
        status: 500,
        ..Reply::text("oops")
    });
    let closed = format!("127.0.0.1:{}", free_port());
    let dir = tempfile::tempdir().expect("tempdir");
    let config = format!(
        r#"
[global]
scrape_interval = "1s"
scrape_timeout = "500ms"

[[scrape_configs]]
job_name = "node"
[[scrape_configs.static_configs]]
targets = ["{ok0}", "{ok1}", "{bad}"]
labels = {{ env = "prod", dc = "eu-west-1" }}

[[scrape_configs]]
job_name = "api"
keep_dropped_targets = 10
[[scrape_configs.static_configs]]
targets = ["{ok2}", "{closed}", "drop.me:1"]
[[scrape_configs.relabel_configs]]
action = "drop"
source_labels = ["__address__"]
regex = "drop\\..*"

[[scrape_configs]]
job_name = "batch"
scrape_interval = "1w"
scrape_timeout = "10s"
[[scrape_configs.static_configs]]
targets = ["{ok0}"]
labels = {{ owner = "<b>ops</b> & co" }}
"#,
        ok0 = ok[0].addr,
        ok1 = ok[1].addr,
        ok2 = ok[2].addr,
        bad = bad.addr,
    );
    let agent = Agent::start(dir.path(), &config);
    // Every target but the weekly one has been scraped at least once.
    wait_for("first scrapes", Duration::from_secs(30), || {
        let t = agent.targets();
        let active = t["data"]["activeTargets"]
            .as_array()
            .cloned()
            .unwrap_or_default();
        active.len() == 6
            && active
                .iter()
                .filter(|t| t["scrapePool"] != "batch")
                .all(|t| t["health"] != "unknown")
    });
    let mut targets = ok;
    targets.push(bad);
    Scene {
        _targets: targets,
        closed,
        agent,
        _dir: dir,
    }
}

fn api(agent: &Agent, query: &str) -> Value {
    let (status, body) = agent
        .get(&format!("/api/v1/targets{query}"))
        .expect("targets api");
    assert_eq!(status, 200, "{body}");
    serde_json::from_str(&body).expect("json")
}

fn keys(v: &Value) -> BTreeSet<&str> {
    v.as_object()
        .expect("object")
        .keys()
        .map(String::as_str)
        .collect()
}

/// Go's time.Time JSON: RFC 3339, UTC here, fraction without trailing zeros.
fn assert_rfc3339_nano(s: &str) {
    let b = s.as_bytes();
    assert!(s.len() >= 20 && s.ends_with('Z'), "{s}");
    for (i, c) in b[..19].iter().enumerate() {
        let want_digit = !matches!(i, 4 | 7 | 10 | 13 | 16);
        assert_eq!(c.is_ascii_digit(), want_digit, "{s} at {i}");
    }
    assert_eq!(
        (b[4], b[7], b[10], b[13], b[16]),
        (b'-', b'-', b'T', b':', b':')
    );
    let frac = &s[19..s.len() - 1];
    if !frac.is_empty() {
        assert!(frac.starts_with('.') && frac.len() > 1, "{s}");
        assert!(frac[1..].bytes().all(|c| c.is_ascii_digit()), "{s}");
        assert!(!frac.ends_with('0'), "trailing zero in {s}");
    }
}

#[test]
fn targets_api_has_prometheus_shape_order_and_filters() {
    let sc = scene();
    let v = api(&sc.agent, "");
    assert_eq!(v["status"], "success");
    let data = &v["data"];
    assert_eq!(
        keys(data),
        ["activeTargets", "droppedTargetCounts", "droppedTargets"].into()
    );
    let active = data["activeTargets"].as_array().expect("active");
    let pools: Vec<&str> = active
        .iter()
        .map(|t| t["scrapePool"].as_str().expect("pool"))
        .collect();
    assert_eq!(pools, ["api", "api", "batch", "node", "node", "node"]);
    for pool in ["api", "node"] {
        let urls: Vec<&str> = active
            .iter()
            .filter(|t| t["scrapePool"] == pool)
            .map(|t| t["scrapeUrl"].as_str().expect("url"))
            .collect();
        let mut sorted = urls.clone();
        sorted.sort();
        assert_eq!(urls, sorted, "{pool} is sorted by URL");
    }
    let want_keys: BTreeSet<&str> = [
        "discoveredLabels",
        "labels",
        "scrapePool",
        "scrapeUrl",
        "globalUrl",
        "lastError",
        "lastScrape",
        "lastScrapeDuration",
        "health",
        "scrapeInterval",
        "scrapeTimeout",
    ]
    .into();
    for t in active {
        assert_eq!(keys(t), want_keys, "{t}");
        let labels = t["labels"].as_object().expect("labels");
        assert!(labels.keys().all(|k| !k.starts_with("__")), "{t}");
        assert_eq!(labels["job"], t["scrapePool"]);
        let disc = &t["discoveredLabels"];
        for k in [
            "__address__",
            "__scheme__",
            "__metrics_path__",
            "__scrape_interval__",
            "__scrape_timeout__",
            "job",
        ] {
            assert!(disc[k].is_string(), "{k} missing in {disc}");
        }
        assert_eq!(
            disc["__address__"], labels["instance"],
            "instance defaults to the address"
        );
        // globalUrl: the loopback host is replaced by this host's name, the rest kept.
        let url = t["scrapeUrl"].as_str().expect("url");
        let global = t["globalUrl"].as_str().expect("globalUrl");
        assert!(url.starts_with("http://127.0.0.1:"), "{url}");
        assert!(!global.contains("127.0.0.1"), "{global}");
        let port_and_path = &url["http://127.0.0.1".len()..];
        assert!(global.ends_with(port_and_path), "{global} vs {url}");
        assert_rfc3339_nano(t["lastScrape"].as_str().expect("lastScrape"));
        assert!(t["lastScrapeDuration"].is_number());
    }
    let by_addr = |pool: &str, addr: &str| -> &Value {
        active
            .iter()
            .find(|t| t["scrapePool"] == pool && t["labels"]["instance"] == addr)
            .unwrap_or_else(|| panic!("{pool} {addr} missing"))
    };
    // The weekly job has not been scraped: Go's zero time, no duration, no error.
    let batch = active
        .iter()
        .find(|t| t["scrapePool"] == "batch")
        .expect("batch");
    assert_eq!(batch["health"], "unknown");
    assert_eq!(batch["lastScrape"], "0001-01-01T00:00:00Z");
    assert_eq!(batch["lastScrapeDuration"], 0.0);
    assert_eq!(batch["lastError"], "");
    assert_eq!(batch["scrapeInterval"], "1w");
    assert_eq!(batch["scrapeTimeout"], "10s");
    assert_eq!(batch["labels"]["owner"], "<b>ops</b> & co");
    // A refused connection: down, and the error names the URL.
    let refused = by_addr("api", &sc.closed);
    assert_eq!(refused["health"], "down");
    let err = refused["lastError"].as_str().expect("error");
    assert!(err.contains(&sc.closed), "{err}");
    assert_eq!(refused["scrapeInterval"], "1s");
    assert_eq!(refused["scrapeTimeout"], "500ms");
    let node: Vec<&Value> = active
        .iter()
        .filter(|t| t["scrapePool"] == "node")
        .collect();
    let down: Vec<&&Value> = node.iter().filter(|t| t["health"] == "down").collect();
    assert_eq!(down.len(), 1);
    assert!(
        down[0]["lastError"]
            .as_str()
            .is_some_and(|e| e.contains("500")),
        "{}",
        down[0]
    );
    for t in node.iter().filter(|t| t["health"] == "up") {
        assert_eq!(t["lastError"], "");
        assert_eq!(t["labels"]["env"], "prod");
        assert_eq!(t["labels"]["dc"], "eu-west-1");
    }
    // Dropped targets carry their pool; counts cover every pool.
    let dropped = data["droppedTargets"].as_array().expect("dropped");
    assert_eq!(dropped.len(), 1);
    assert_eq!(keys(&dropped[0]), ["discoveredLabels", "scrapePool"].into());
    assert_eq!(dropped[0]["scrapePool"], "api");
    assert_eq!(dropped[0]["discoveredLabels"]["__address__"], "drop.me:1");
    assert_eq!(
        data["droppedTargetCounts"],
        serde_json::json!({"api": 1, "batch": 0, "node": 0})
    );

    // state=active: no dropped list, and counts are null as in Prometheus.
    let v = api(&sc.agent, "?state=active");
    assert_eq!(v["data"]["activeTargets"].as_array().map(Vec::len), Some(6));
    assert_eq!(v["data"]["droppedTargets"], serde_json::json!([]));
    assert!(v["data"]["droppedTargetCounts"].is_null());
    // state is case-insensitive.
    let v = api(&sc.agent, "?state=Dropped");
    assert_eq!(v["data"]["activeTargets"], serde_json::json!([]));
    assert_eq!(
        v["data"]["droppedTargets"].as_array().map(Vec::len),
        Some(1)
    );
    let v = api(&sc.agent, "?state=any");
    assert_eq!(v["data"]["activeTargets"].as_array().map(Vec::len), Some(6));
    assert_eq!(
        v["data"]["droppedTargets"].as_array().map(Vec::len),
        Some(1)
    );
    // Any other state shows nothing (Prometheus does the same).
    let v = api(&sc.agent, "?state=bogus");
    assert_eq!(v["data"]["activeTargets"], serde_json::json!([]));
    assert_eq!(v["data"]["droppedTargets"], serde_json::json!([]));
    // scrapePool filters both lists but not the counts.
    let v = api(&sc.agent, "?scrapePool=node");
    let a = v["data"]["activeTargets"].as_array().expect("active");
    assert_eq!(a.len(), 3);
    assert!(a.iter().all(|t| t["scrapePool"] == "node"));
    assert_eq!(v["data"]["droppedTargets"], serde_json::json!([]));
    assert_eq!(v["data"]["droppedTargetCounts"]["api"], 1);
    let v = api(&sc.agent, "?scrapePool=api&state=dropped");
    assert_eq!(
        v["data"]["droppedTargets"].as_array().map(Vec::len),
        Some(1)
    );
    assert_eq!(v["data"]["activeTargets"], serde_json::json!([]));
    let v = api(&sc.agent, "?scrapePool=nope");
    assert_eq!(v["data"]["activeTargets"], serde_json::json!([]));
}

/// What the page shows: for each visible row, [job, endpoint, health, error].
const VISIBLE_ROWS: &str = r#"Array.prototype.map.call(
  document.querySelectorAll("section.pool:not([hidden]) tbody tr:not([hidden])"),
  function (tr) {
    return [tr.closest("section").dataset.job, tr.querySelector("td.endpoint a").textContent,
            tr.dataset.health, tr.querySelector("td.error").textContent];
  })"#;

fn visible(b: &mut cdp::Browser) -> Vec<(String, String, String, String)> {
    let rows = b.eval(VISIBLE_ROWS);
    rows.as_array()
        .expect("rows")
        .iter()
        .map(|r| {
            let s = |i: usize| r[i].as_str().expect("cell").to_string();
            (s(0), s(1), s(2), s(3))
        })
        .collect()
}

fn healths(rows: &[(String, String, String, String)]) -> Vec<(&str, &str)> {
    rows.iter().map(|r| (r.0.as_str(), r.2.as_str())).collect()
}

#[test]
fn targets_page_lists_and_filters_in_headless_chromium() {
    let Some(chromium) = cdp::find_chromium() else {
        assert!(
            !require_peers(),
            "chromium is required (apt-get install chromium)"
        );
        eprintln!("skipping: chromium is not installed");
        return;
    };
    let sc = scene();
    let base = format!("http://{}", sc.agent.listen);
    let tmp = tempfile::tempdir().expect("tempdir");
    let mut b = cdp::Browser::launch(
        &chromium,
        &tmp.path().join("profile"),
        &tmp.path().join("chromium.log"),
    );

    b.navigate(&format!("{base}/targets"));
    assert_eq!(b.eval("document.title"), "Targets · scrapewheel");
    let rows = visible(&mut b);
    let jobs: Vec<&str> = rows.iter().map(|r| r.0.as_str()).collect();
    assert_eq!(
        jobs,
        ["api", "api", "batch", "node", "node", "node"],
        "jobs in name order"
    );
    let mut by_job: Vec<(&str, &str)> = healths(&rows);
    by_job.sort();
    assert_eq!(
        by_job,
        [
            ("api", "down"),
            ("api", "up"),
            ("batch", "unknown"),
            ("node", "down"),
            ("node", "up"),
            ("node", "up"),
        ]
    );
    let refused = rows
        .iter()
        .find(|r| r.1.contains(&sc.closed))
        .expect("refused row");
    assert_eq!(refused.2, "down");
    assert!(
        refused.3.contains(&sc.closed),
        "error shows the URL: {refused:?}"
    );
    // Scrape times are shown relative to now; durations are filled in.
    let last = b.eval(
        "Array.prototype.map.call(document.querySelectorAll('time[data-ms]'), function (t) { return t.textContent; })",
    );
    let last: Vec<&str> = last
        .as_array()
        .expect("times")
        .iter()
        .filter_map(Value::as_str)
        .collect();
    assert_eq!(last.len(), 5, "{last:?}");
    assert!(last.iter().all(|t| t.ends_with(" ago")), "{last:?}");
    // A label value with markup is text, not markup.
    assert_eq!(b.eval("document.querySelectorAll('td.labels b').length"), 0);
    let owner = b.eval("document.querySelector('section[data-job=batch] td.labels').textContent");
    assert!(
        owner
            .as_str()
            .is_some_and(|s| s.contains("<b>ops</b> & co")),
        "{owner}"
    );

    let png = b.screenshot();
    assert!(png.starts_with(b"\x89PNG\r\n\x1a\n"), "a PNG");
    // Kept after the test (cargo's per-target scratch dir), for a person to look at.
    let shot = std::path::Path::new(env!("CARGO_TARGET_TMPDIR")).join("targets.png");
    std::fs::write(&shot, &png).expect("write screenshot");
    eprintln!("screenshot: {}", shot.display());
    if std::env::var("SCRAPEWHEEL_UPDATE_DOCS").is_ok_and(|v| v == "1") {
        let docs = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("docs/targets.png");
        std::fs::copy(&shot, &docs).expect("copy screenshot to docs/");
    }

    // Unticking "up" with a real click hides the healthy targets and records the filter
    // in the URL.
    b.click("input[name=health][value=up]");
    let rows = visible(&mut b);
    let mut h = healths(&rows);
    h.sort();
    assert_eq!(
        h,
        [("api", "down"), ("batch", "unknown"), ("node", "down")],
        "{rows:?}"
    );
    assert_eq!(
        b.eval("new URLSearchParams(location.search).get('health')"),
        "down,unknown"
    );
    // Choosing a job narrows further.
    b.eval("var j = document.getElementById('job'); j.value = 'node'; j.dispatchEvent(new Event('change')); true");
    let rows = visible(&mut b);
    assert_eq!(healths(&rows), [("node", "down")], "{rows:?}");
    assert_eq!(
        b.eval("document.querySelectorAll('section.pool:not([hidden])').length"),
        1
    );
    assert_eq!(
        b.eval("document.getElementById('summary').textContent"),
        "1 of 6 targets shown in 1 of 3 jobs"
    );

    // The filter in the URL is applied on load, so a filtered view can be shared.
    b.navigate(&format!("{base}/targets?job=api&health=down"));
    let rows = visible(&mut b);
    assert_eq!(healths(&rows), [("api", "down")], "{rows:?}");
    assert_eq!(b.eval("document.getElementById('job').value"), "api");
    assert_eq!(
        b.eval("document.querySelector('input[name=health][value=up]').checked"),
        false
    );

    // Typing in the search box filters on endpoint and labels.
    b.navigate(&format!("{base}/targets"));
    b.click("#q");
    b.call("Input.insertText", serde_json::json!({"text": "eu-west"}));
    let rows = visible(&mut b);
    assert_eq!(
        healths(&rows).iter().filter(|r| r.0 == "node").count(),
        3,
        "{rows:?}"
    );
    assert_eq!(rows.len(), 3, "{rows:?}");
    b.call("Input.insertText", serde_json::json!({"text": "-nothing"}));
    assert!(visible(&mut b).is_empty());
    assert_eq!(b.eval("document.getElementById('none').hidden"), false);
}

/// The value of the first `/metrics` line that starts with `series` followed by a space.
fn sample(text: &str, series: &str) -> Option<f64> {
    text.lines()
        .find_map(|l| l.strip_prefix(series).and_then(|r| r.strip_prefix(' ')))
        .and_then(|v| v.trim().parse().ok())
}

#[test]
fn self_metrics_use_prometheus_names_and_valid_exposition() {
    let sc = scene();
    // A few intervals pass, so there are intervals to measure.
    wait_for("three intervals measured", Duration::from_secs(30), || {
        sc.agent
            .get("/metrics")
            .and_then(|(_, m)| {
                sample(
                    &m,
                    "prometheus_target_interval_length_seconds_count{interval=\"1s\"}",
                )
            })
            .is_some_and(|n| n >= 3.0)
    });
    let (status, m) = sc.agent.get("/metrics").expect("metrics");
    assert_eq!(status, 200);
    for (family, kind) in [
        ("prometheus_target_interval_length_seconds", "summary"),
        ("prometheus_target_sync_length_seconds", "summary"),
        ("prometheus_target_scrape_pools_total", "counter"),
        ("prometheus_target_scrape_pools_failed_total", "counter"),
        ("prometheus_target_scrape_pool_targets", "gauge"),
        ("scrapewheel_wheel_lag_seconds", "histogram"),
        ("scrapewheel_worker_queue_length", "gauge"),
        ("scrapewheel_workers_busy", "gauge"),
    ] {
        assert!(
            m.contains(&format!("# TYPE {family} {kind}\n")),
            "{family} {kind} missing:\n{m}"
        );
    }
    let median = sample(
        &m,
        "prometheus_target_interval_length_seconds{interval=\"1s\",quantile=\"0.5\"}",
    )
    .expect("median interval");
    assert!((0.9..1.1).contains(&median), "median interval {median}");
    assert_eq!(
        sample(&m, "prometheus_target_scrape_pools_total"),
        Some(3.0)
    );
    assert_eq!(
        sample(&m, "prometheus_target_scrape_pools_failed_total"),
        Some(0.0)
    );
    assert_eq!(
        sample(
            &m,
            "prometheus_target_scrape_pool_targets{scrape_job=\"node\"}"
        ),
        Some(3.0)
    );
    assert!(sample(
        &m,
        "prometheus_target_sync_length_seconds_count{scrape_job=\"node\"}"
    )
    .is_some_and(|n| n >= 1.0));
    assert!(sample(&m, "scrapewheel_workers").is_some_and(|n| n >= 1.0));
    assert!(sample(&m, "scrapewheel_workers_busy").is_some());
    assert!(sample(&m, "scrapewheel_worker_queue_length").is_some());
    // The lag histogram is cumulative and its +Inf bucket is its count.
    let buckets: Vec<f64> = m
        .lines()
        .filter(|l| l.starts_with("scrapewheel_wheel_lag_seconds_bucket{"))
        .map(|l| {
            l.rsplit(' ')
                .next()
                .and_then(|v| v.parse().ok())
                .expect("value")
        })
        .collect();
    assert!(buckets.len() > 2);
    assert!(buckets.windows(2).all(|w| w[0] <= w[1]), "{buckets:?}");
    let count = sample(&m, "scrapewheel_wheel_lag_seconds_count").expect("count");
    assert!(count > 0.0);
    assert_eq!(buckets.last().copied(), Some(count));
    assert!(m.contains("scrapewheel_wheel_lag_seconds_bucket{le=\"+Inf\"}"));

    // promtool parses and lints the whole exposition.
    let Some(promtool) = common::find_exe("promtool") else {
        assert!(
            !require_peers(),
            "promtool is required (apt-get install prometheus)"
        );
        eprintln!("skipping the promtool check: promtool is not installed");
        return;
    };
    let mut child = std::process::Command::new(promtool)
        .args(["check", "metrics"])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("promtool");
    use std::io::Write as _;
    child
        .stdin
        .take()
        .expect("stdin")
        .write_all(m.as_bytes())
        .expect("write metrics");
    let out = child.wait_with_output().expect("promtool output");
    assert!(
        out.status.success(),
        "promtool check metrics: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}
