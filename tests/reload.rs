//! Reload semantics end to end: SIGHUP and POST /-/reload on the real binary. An
//! unchanged job keeps scraping on its phase (checked at the target and in the exported
//! timestamps), a changed job restarts only its own targets, a removed job's series go
//! stale, and a broken reload changes nothing and says why.

mod common;

use common::*;
use std::time::{Duration, Instant};

const WAIT: Duration = Duration::from_secs(20);

/// POST with an empty body: (status, body).
fn post(url: &str) -> (u16, String) {
    let agent: ureq::Agent = ureq::Agent::config_builder()
        .http_status_as_error(false)
        .timeout_global(Some(Duration::from_secs(30)))
        .build()
        .into();
    let mut resp = agent.post(url).send_empty().expect("POST");
    let status = resp.status().as_u16();
    let body = resp.body_mut().read_to_string().unwrap_or_default();
    (status, body)
}

fn reload(agent: &Agent) -> (u16, String) {
    post(&format!("http://{}/-/reload", agent.listen))
}

/// Two jobs: `steady` (never changes) and `churn`, whose extra text varies.
fn config(steady: &str, churn: &str, churn_extra: &str) -> String {
    format!(
        r#"
[global]
scrape_interval = "1s"
scrape_timeout = "500ms"

[engine]
reload_throttle = "100ms"

[storage]
flush_interval = "200ms"

[web]
enable_lifecycle = true

[[scrape_configs]]
job_name = "steady"
[[scrape_configs.static_configs]]
targets = ["{steady}"]

[[scrape_configs]]
job_name = "churn"
{churn_extra}
[[scrape_configs.static_configs]]
targets = ["{churn}"]
"#
    )
}

fn last_reload_ts(agent: &Agent) -> f64 {
    agent
        .metric("scrapewheel_config_last_reload_success_timestamp_seconds")
        .unwrap_or(0.0)
}

/// Sends SIGHUP and waits until a reload has been applied.
fn sighup(agent: &Agent) {
    let before = last_reload_ts(agent);
    agent.signal(libc::SIGHUP);
    wait_for("SIGHUP reload applied", WAIT, || {
        last_reload_ts(agent) > before
    });
}

#[test]
fn unchanged_job_keeps_its_phase_with_no_gap_and_no_extra_scrape() {
    let dir = tempfile::tempdir().expect("tempdir");
    let steady = Target::start(Reply::text("steady_metric 1\n"));
    let churn = Target::start(Reply::text("churn_metric 1\n"));
    let churn2 = Target::start(Reply::text("churn_metric 2\n"));
    let mut agent = Agent::start(dir.path(), &config(&steady.addr, &churn.addr, ""));
    wait_for("steady scraped twice", WAIT, || steady.hits() >= 2);
    let started = Instant::now();

    // Reload after reload, by SIGHUP and by POST: the churn job changes (honor_labels,
    // then sample_limit: each restarts its pool), is reloaded unchanged, and gets a
    // second target; the steady job never changes.
    std::thread::sleep(Duration::from_millis(700));
    write_config(
        dir.path(),
        &config(&steady.addr, &churn.addr, "honor_labels = true\n"),
    );
    sighup(&agent);
    std::thread::sleep(Duration::from_millis(700));
    write_config(
        dir.path(),
        &config(
            &steady.addr,
            &churn.addr,
            "honor_labels = true\nsample_limit = 100\n",
        ),
    );
    assert_eq!(reload(&agent), (200, String::new()));
    std::thread::sleep(Duration::from_millis(700));
    assert_eq!(reload(&agent), (200, String::new()), "an identical file");
    std::thread::sleep(Duration::from_millis(700));
    write_config(
        dir.path(),
        &config(
            &steady.addr,
            &format!("{}\", \"{}", churn.addr, churn2.addr),
            "honor_labels = true\nsample_limit = 100\n",
        ),
    );
    sighup(&agent);
    wait_for("the new churn target is scraped", WAIT, || {
        churn2.hits() >= 1
    });
    let n = steady.hits();
    wait_for("steady scraped on", WAIT, || steady.hits() >= n + 2);
    assert!(
        agent
            .metric("prometheus_target_scrape_pool_reloads_total")
            .is_some_and(|v| v >= 2.0),
        "the churn job was reloaded"
    );
    assert_eq!(agent.terminate(), 0, "{}", agent.stderr());

    // At the target: one request per second, throughout.
    let arrivals = steady.arrivals();
    let gaps: Vec<f64> = arrivals
        .windows(2)
        .map(|w| w[1].duration_since(w[0]).as_secs_f64())
        .collect();
    assert!(
        arrivals.iter().filter(|t| **t >= started).count() >= 4,
        "{gaps:?}"
    );
    assert!(
        gaps.iter().all(|g| (0.5..1.5).contains(g)),
        "no gap and no duplicate at the target: {gaps:?}"
    );

    // In the spool: one `up` sample per second, every timestamp on the same phase.
    let mut up: Vec<i64> = export_jsonl(&dir.path().join("data"), &["up"])
        .into_iter()
        .filter(|s| s.labels.get("instance") == Some(&steady.addr))
        .map(|s| {
            assert!(!s.stale, "the steady target never goes stale");
            s.timestamp_ms
        })
        .collect();
    up.sort_unstable();
    assert_eq!(up.len(), arrivals.len(), "one sample per request: {up:?}");
    assert!(
        up.windows(2).all(|w| (900..=1100).contains(&(w[1] - w[0]))),
        "no gap and no duplicate in the spool: {up:?}"
    );
    // A scrape that starts within 10ms (interval/100) of its slot is stamped with the
    // slot time; on a busy machine a scrape may start later and carry its real start
    // time instead. So: every timestamp sits at or shortly after one phase.
    // (The phase may sit just before a whole second, so try each offset as the start.)
    assert!(
        up.iter()
            .any(|p| up.iter().all(|t| (t - p).rem_euclid(1000) < 100)),
        "timestamps keep their phase: {up:?}"
    );

    // Untouched rather than restarted: the target kept its series state, so only its
    // first scrape added series (a restarted target would count them as new again).
    let mut added: Vec<(i64, f64)> =
        export_jsonl(&dir.path().join("data"), &["scrape_series_added"])
            .into_iter()
            .filter(|s| s.labels.get("instance") == Some(&steady.addr))
            .map(|s| (s.timestamp_ms, s.value))
            .collect();
    added.sort_by_key(|a| a.0);
    assert!(
        added.len() > 1 && added[0].1 == 1.0 && added[1..].iter().all(|a| a.1 == 0.0),
        "{added:?}"
    );
}

#[test]
fn removed_job_series_go_stale() {
    let dir = tempfile::tempdir().expect("tempdir");
    let steady = Target::start(Reply::text("steady_metric 1\n"));
    let gone = Target::start(Reply::text("gone_metric 1\n"));
    let mut agent = Agent::start(dir.path(), &config(&steady.addr, &gone.addr, ""));
    wait_for("both scraped", WAIT, || {
        steady.hits() >= 2 && gone.hits() >= 2
    });
    let only_steady = config(&steady.addr, &gone.addr, "").replace(
        &format!(
            "[[scrape_configs]]\njob_name = \"churn\"\n\n[[scrape_configs.static_configs]]\ntargets = [\"{}\"]\n",
            gone.addr
        ),
        "",
    );
    assert!(!only_steady.contains("churn"), "{only_steady}");
    write_config(dir.path(), &only_steady);
    assert_eq!(reload(&agent).0, 200);
    let n = gone.hits();
    // Its last slot writes the markers: wait past it.
    std::thread::sleep(Duration::from_millis(2500));
    assert!(gone.hits() <= n + 1, "a removed job is no longer scraped");
    assert!(agent
        .targets()
        .to_string()
        .contains(&format!("\"{}\"", steady.addr)));
    assert!(!agent.targets().to_string().contains("\"churn\""));
    assert_eq!(agent.terminate(), 0, "{}", agent.stderr());

    let samples = export_jsonl(&dir.path().join("data"), &[]);
    for name in ["gone_metric", "up", "scrape_duration_seconds"] {
        let mut s: Vec<&Sample> = samples
            .iter()
            .filter(|s| {
                s.name() == name && s.labels.get("job").map(String::as_str) == Some("churn")
            })
            .collect();
        s.sort_by_key(|s| s.timestamp_ms);
        assert!(
            s.last().is_some_and(|s| s.stale),
            "{name} of the removed job ends stale: {s:?}"
        );
    }
}

#[test]
fn broken_reload_via_post_is_a_500_and_keeps_the_running_config() {
    let dir = tempfile::tempdir().expect("tempdir");
    let steady = Target::start(Reply::text("steady_metric 1\n"));
    let churn = Target::start(Reply::text("churn_metric 1\n"));
    let good = config(&steady.addr, &churn.addr, "");
    let mut agent = Agent::start(dir.path(), &good);
    wait_for("scraped", WAIT, || steady.hits() >= 1);

    let broken = config(&steady.addr, &churn.addr, "scrape_interval = \"soon\"\n");
    let line = 1 + broken
        .lines()
        .position(|l| l == "scrape_interval = \"soon\"")
        .expect("the bad line");
    write_config(dir.path(), &broken);
    let (status, body) = reload(&agent);
    assert_eq!(status, 500, "{body}");
    let at = format!(
        "{}:{line}:19: scrape_configs[1].scrape_interval",
        agent.config.display()
    );
    assert!(
        body.starts_with("failed to reload config: ") && body.contains(&at),
        "{body}"
    );
    assert_eq!(
        agent.metric("scrapewheel_config_last_reload_successful"),
        Some(0.0)
    );
    let n = (steady.hits(), churn.hits());
    wait_for("both still scraped", WAIT, || {
        steady.hits() >= n.0 + 2 && churn.hits() >= n.1 + 2
    });
    assert!(
        agent.stderr().contains("reload failed"),
        "{}",
        agent.stderr()
    );

    // A fixed file applies, and the gauge says so.
    write_config(
        dir.path(),
        &config(&steady.addr, &churn.addr, "scrape_interval = \"2s\"\n"),
    );
    assert_eq!(reload(&agent), (200, String::new()));
    assert_eq!(
        agent.metric("scrapewheel_config_last_reload_successful"),
        Some(1.0)
    );
    assert!(agent
        .targets()
        .to_string()
        .contains("\"scrapeInterval\":\"2s\""));
    assert_eq!(agent.terminate(), 0, "{}", agent.stderr());
}
