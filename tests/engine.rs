//! End-to-end tests of the engine: the real binary scraping real loopback targets, then
//! `scrapewheel export` reading the spool back.

mod common;

use common::*;
use std::time::Duration;

fn config(targets: &[&str], extra_job: &str) -> String {
    let list = targets
        .iter()
        .map(|t| format!("\"{t}\""))
        .collect::<Vec<_>>()
        .join(", ");
    format!(
        r#"
[global]
scrape_interval = "1s"
scrape_timeout = "500ms"

[engine]
reload_throttle = "100ms"

[storage]
flush_interval = "200ms"

[[scrape_configs]]
job_name = "app"
{extra_job}
[[scrape_configs.static_configs]]
targets = [{list}]
labels = {{ env = "test" }}
"#
    )
}

fn series<'a>(samples: &'a [Sample], name: &str, instance: &str) -> Vec<&'a Sample> {
    samples
        .iter()
        .filter(|s| {
            s.name() == name && s.labels.get("instance").map(String::as_str) == Some(instance)
        })
        .collect()
}

#[test]
fn scraped_samples_reach_the_spool_with_target_labels() {
    let dir = tempfile::tempdir().expect("tempdir");
    let t = Target::start(Reply::text(
        "# TYPE requests_total counter\nrequests_total{code=\"200\",path=\"/a\"} 42\nlatency_seconds 0.25\n",
    ));
    let mut agent = Agent::start(dir.path(), &config(&[&t.addr], ""));
    wait_for("two scrapes", Duration::from_secs(15), || t.hits() >= 2);
    assert_eq!(agent.terminate(), 0, "stderr: {}", agent.stderr());

    let samples = export_jsonl(&dir.path().join("data"), &[]);
    let req = series(&samples, "requests_total", &t.addr);
    assert!(req.len() >= 2, "{samples:#?}");
    let s = req[0];
    assert_eq!(s.value, 42.0);
    assert_eq!(s.labels["job"], "app");
    assert_eq!(s.labels["env"], "test");
    assert_eq!(s.labels["code"], "200");
    assert_eq!(s.labels["path"], "/a");
    assert_eq!(s.labels.len(), 6, "{:?}", s.labels);
    let up = series(&samples, "up", &t.addr);
    assert!(up.iter().all(|s| s.value == 1.0));
    let scraped = series(&samples, "scrape_samples_scraped", &t.addr);
    assert!(scraped.iter().all(|s| s.value == 2.0));
    let added = series(&samples, "scrape_series_added", &t.addr);
    assert_eq!(added[0].value, 2.0);
    assert!(added[1..].iter().all(|s| s.value == 0.0));
    // One timestamp per scrape, shared by the samples and the report, spaced by the interval.
    let ts: Vec<i64> = up.iter().map(|s| s.timestamp_ms).collect();
    assert_eq!(ts[0], req[0].timestamp_ms);
    // Slots are pinned to the interval: every timestamp sits on one phase, or shortly
    // after it when a busy machine started the scrape past the 10ms tolerance.
    assert!(
        ts.iter()
            .any(|p| ts.iter().all(|t| (t - p).rem_euclid(1000) < 100)),
        "slots are pinned to the interval: {ts:?}"
    );

    let only = export_jsonl(&dir.path().join("data"), &["requests_total{code=~\"2..\"}"]);
    assert!(!only.is_empty() && only.iter().all(|s| s.name() == "requests_total"));

    backfill_with_promtool(&dir.path().join("data"), samples.len());
}

/// `promtool tsdb create-blocks-from openmetrics` accepts the export and the block holds
/// every sample.
fn backfill_with_promtool(data: &std::path::Path, samples: usize) {
    let Some(promtool) = find_exe("promtool") else {
        assert!(
            !require_peers(),
            "promtool (Debian package prometheus) is required"
        );
        eprintln!("skipped: promtool not installed");
        return;
    };
    let out = std::process::Command::new(bin())
        .args(["export", "--format", "openmetrics", "--data"])
        .arg(data)
        .output()
        .expect("export");
    assert!(out.status.success());
    let om = data.join("export.om");
    std::fs::write(&om, &out.stdout).expect("write export");
    let blocks = data.join("blocks");
    let run = std::process::Command::new(&promtool)
        .args(["tsdb", "create-blocks-from", "openmetrics"])
        .arg(&om)
        .arg(&blocks)
        .output()
        .expect("promtool");
    assert!(
        run.status.success(),
        "promtool rejected the export: {}{}",
        String::from_utf8_lossy(&run.stdout),
        String::from_utf8_lossy(&run.stderr)
    );
    let list = std::process::Command::new(&promtool)
        .args(["tsdb", "list"])
        .arg(&blocks)
        .output()
        .expect("promtool list");
    let text = String::from_utf8_lossy(&list.stdout);
    // Columns: ULID, min time, max time, duration, number of samples, ...
    let in_blocks: usize = text
        .lines()
        .skip(1)
        .filter_map(|l| l.split_whitespace().nth(4)?.parse::<usize>().ok())
        .sum();
    assert_eq!(
        in_blocks, samples,
        "every exported sample is in the blocks:\n{text}"
    );
}

#[test]
fn failing_target_reports_down_and_marks_its_series_stale() {
    let dir = tempfile::tempdir().expect("tempdir");
    let good = Target::start(Reply::text("g 1\n"));
    let bad = Target::start(Reply::text("x{a=\"1\"} 1\ny 2\n"));
    let mut agent = Agent::start(dir.path(), &config(&[&good.addr, &bad.addr], ""));
    wait_for("bad scraped", Duration::from_secs(15), || bad.hits() >= 2);
    bad.set(Reply {
        status: 500,
        ..Reply::text("oops")
    });
    let before = bad.hits();
    wait_for("failed scrapes", Duration::from_secs(15), || {
        bad.hits() >= before + 2
    });
    let targets = agent.targets();
    let active = targets["data"]["activeTargets"].as_array().expect("active");
    let bad_entry = active
        .iter()
        .find(|t| t["labels"]["instance"] == bad.addr.as_str())
        .expect("bad target listed");
    assert_eq!(bad_entry["health"], "down");
    assert!(
        bad_entry["lastError"]
            .as_str()
            .is_some_and(|e| e.contains("500")),
        "{bad_entry}"
    );
    assert_eq!(agent.terminate(), 0);

    let samples = export_jsonl(&dir.path().join("data"), &[]);
    let up = series(&samples, "up", &bad.addr);
    assert!(up.iter().any(|s| s.value == 1.0) && up.iter().any(|s| s.value == 0.0));
    for name in ["x", "y"] {
        let s = series(&samples, name, &bad.addr);
        let stale: Vec<_> = s.iter().filter(|s| s.stale).collect();
        assert_eq!(stale.len(), 1, "{name} gets exactly one marker: {s:#?}");
        assert!(s.last().is_some_and(|l| l.stale), "marker comes last");
    }
    let g = series(&samples, "up", &good.addr);
    assert!(
        !g.is_empty() && g.iter().all(|s| s.value == 1.0),
        "the good target is untouched"
    );
}

#[test]
fn vanished_series_and_removed_targets_go_stale() {
    let dir = tempfile::tempdir().expect("tempdir");
    let a = Target::start(Reply::text("keep 1\ngone{x=\"y\"} 2\n"));
    let b = Target::start(Reply::text("b_metric 3\n"));
    let mut agent = Agent::start(dir.path(), &config(&[&a.addr, &b.addr], ""));
    wait_for("scrapes", Duration::from_secs(15), || {
        a.hits() >= 2 && b.hits() >= 2
    });
    a.set(Reply::text("keep 1\n"));
    let n = a.hits();
    wait_for("scrape after change", Duration::from_secs(15), || {
        a.hits() >= n + 2
    });
    // Remove target b by reloading a config without it.
    write_config(dir.path(), &config(&[&a.addr], ""));
    agent.signal(libc::SIGHUP);
    wait_for("b removed from the API", Duration::from_secs(15), || {
        agent.targets()["data"]["activeTargets"]
            .as_array()
            .is_some_and(|a| a.len() == 1)
    });
    let hits_b = b.hits();
    // Its last slot writes the markers: wait one interval past it.
    std::thread::sleep(Duration::from_millis(2500));
    assert!(
        b.hits() <= hits_b + 1,
        "a removed target is no longer scraped"
    );
    assert_eq!(agent.terminate(), 0);

    let samples = export_jsonl(&dir.path().join("data"), &[]);
    let gone = series(&samples, "gone", &a.addr);
    assert_eq!(gone.iter().filter(|s| s.stale).count(), 1, "{gone:#?}");
    assert!(series(&samples, "keep", &a.addr).iter().all(|s| !s.stale));
    let bm = series(&samples, "b_metric", &b.addr);
    assert!(
        bm.last().is_some_and(|s| s.stale),
        "removed target's series end stale: {bm:#?}"
    );
    let bup = series(&samples, "up", &b.addr);
    assert!(
        bup.last().is_some_and(|s| s.stale),
        "and its report series too"
    );
}

#[test]
fn sigterm_under_load_keeps_every_scrape() {
    let dir = tempfile::tempdir().expect("tempdir");
    let body: String = (0..200)
        .map(|i| format!("load_metric{{i=\"{i}\",kind=\"k{}\"}} {i}\n", i % 7))
        .collect();
    let targets: Vec<Target> = (0..20).map(|_| Target::start(Reply::text(&body))).collect();
    let addrs: Vec<&str> = targets.iter().map(|t| t.addr.as_str()).collect();
    let mut agent = Agent::start(
        dir.path(),
        &config(
            &addrs,
            "scrape_interval = \"200ms\"\nscrape_timeout = \"150ms\"\n",
        ),
    );
    wait_for("load", Duration::from_secs(20), || {
        targets.iter().all(|t| t.hits() >= 5)
    });
    assert_eq!(agent.terminate(), 0, "{}", agent.stderr());
    // Every scrape a target answered is in the spool: its samples and its report.
    let samples = export_jsonl(&dir.path().join("data"), &[]);
    for t in &targets {
        let ups = series(&samples, "up", &t.addr);
        assert_eq!(
            ups.len() as u64,
            t.hits(),
            "scrapes of {} in the spool",
            t.addr
        );
        let metric = series(&samples, "load_metric", &t.addr);
        assert_eq!(metric.len() as u64, 200 * t.hits());
    }
}

#[test]
fn kill_9_then_restart_recovers_the_spool() {
    let dir = tempfile::tempdir().expect("tempdir");
    let t = Target::start(Reply::text("survivor 7\n"));
    let cfg = config(&[&t.addr], "");
    let mut agent = Agent::start(dir.path(), &cfg);
    wait_for("scrapes", Duration::from_secs(15), || t.hits() >= 3);
    // Let one flush interval pass so the early scrapes are durable.
    std::thread::sleep(Duration::from_millis(500));
    agent.kill9();
    let before = export_jsonl(&dir.path().join("data"), &["survivor"]);
    assert!(!before.is_empty(), "flushed samples survive kill -9");
    // Tear the tail as a crash mid-write would.
    let seg = std::fs::read_dir(dir.path().join("data/spool"))
        .expect("spool dir")
        .filter_map(Result::ok)
        .map(|e| e.path())
        .filter(|p| p.extension().is_some_and(|e| e == "seg"))
        .max()
        .expect("a segment");
    let mut f = std::fs::OpenOptions::new()
        .append(true)
        .open(&seg)
        .expect("open segment");
    std::io::Write::write_all(&mut f, &[0x55; 37]).expect("append garbage");
    drop(f);

    let mut agent = Agent::start_with(dir.path(), agent_config(&dir));
    let n = t.hits();
    wait_for("scrapes after restart", Duration::from_secs(15), || {
        t.hits() >= n + 2
    });
    assert_eq!(agent.terminate(), 0, "{}", agent.stderr());
    assert!(
        agent.stderr().contains("truncated"),
        "recovery is reported: {}",
        agent.stderr()
    );
    let after = export_jsonl(&dir.path().join("data"), &["survivor"]);
    assert!(
        after.len() >= before.len() + 2,
        "{} then {}",
        before.len(),
        after.len()
    );
    for b in &before {
        assert!(after.iter().any(|a| a.timestamp_ms == b.timestamp_ms));
    }
}

fn agent_config(dir: &tempfile::TempDir) -> std::path::PathBuf {
    dir.path().join("scrapewheel.toml")
}

#[test]
fn bad_targets_fail_alone_with_clear_errors() {
    let dir = tempfile::tempdir().expect("tempdir");
    let good = Target::start(Reply::text("fine 1\n"));
    let malformed = Target::start(Reply::text("ok 1\nbroken{a=\"1\" 2\n"));
    let utf8 = Target::start(Reply {
        body: b"m{a=\"\xff\xfe\"} 1\n".to_vec(),
        ..Reply::text("")
    });
    let huge = Target::start(Reply::text(&"x 1\n".repeat(100_000)));
    let hang = Target::start(Reply {
        delay: Duration::from_secs(5),
        ..Reply::text("late 1\n")
    });
    let blank_ct = Target::start(Reply {
        content_type: None,
        ..Reply::text("m 1\n")
    });
    let addrs = [&good, &malformed, &utf8, &huge, &hang, &blank_ct].map(|t| t.addr.as_str());
    let mut agent = Agent::start(dir.path(), &config(&addrs, "body_size_limit = \"64KiB\"\n"));
    wait_for("every target tried", Duration::from_secs(20), || {
        agent.targets()["data"]["activeTargets"]
            .as_array()
            .is_some_and(|a| a.iter().all(|t| t["health"] != "unknown"))
    });
    let api = agent.targets();
    let err = |t: &Target| -> (String, String) {
        let e = api["data"]["activeTargets"]
            .as_array()
            .and_then(|a| {
                a.iter()
                    .find(|x| x["labels"]["instance"] == t.addr.as_str())
            })
            .expect("listed");
        (
            e["health"].as_str().unwrap_or("").to_string(),
            e["lastError"].as_str().unwrap_or("").to_string(),
        )
    };
    assert_eq!(err(&good), ("up".to_string(), String::new()));
    let (h, e) = err(&malformed);
    assert_eq!(h, "down");
    assert!(e.contains("line 2"), "parse error names the line: {e}");
    let (h, e) = err(&utf8);
    assert_eq!(h, "down");
    assert!(
        e.to_lowercase().contains("utf-8") || e.to_lowercase().contains("utf8"),
        "{e}"
    );
    let (h, e) = err(&huge);
    assert_eq!(h, "down");
    assert!(e.contains("body size limit"), "{e}");
    let (h, e) = err(&hang);
    assert_eq!(h, "down");
    assert!(
        e.to_lowercase().contains("timeout") || e.to_lowercase().contains("timed out"),
        "{e}"
    );
    let (h, e) = err(&blank_ct);
    assert_eq!(h, "down");
    assert!(e.contains("Content-Type"), "{e}");
    assert!(
        agent
            .metric("prometheus_target_scrapes_exceeded_body_size_limit_total")
            .unwrap_or(0.0)
            >= 1.0
    );
    assert!(
        agent
            .metric("scrapewheel_scrape_failures_total")
            .unwrap_or(0.0)
            >= 5.0
    );
    assert_eq!(agent.terminate(), 0);
    let samples = export_jsonl(&dir.path().join("data"), &["up"]);
    let g = series(&samples, "up", &good.addr);
    assert!(!g.is_empty() && g.iter().all(|s| s.value == 1.0));
}

#[test]
fn node_exporter_parses_with_no_errors() {
    let Some(exe) = find_exe("prometheus-node-exporter").or_else(|| find_exe("node_exporter"))
    else {
        assert!(
            !require_peers(),
            "prometheus-node-exporter is required but not installed"
        );
        eprintln!("skipped: prometheus-node-exporter not installed");
        return;
    };
    let port = free_port();
    let _ne = KillOnDrop(
        std::process::Command::new(exe)
            .arg(format!("--web.listen-address=127.0.0.1:{port}"))
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .expect("start node_exporter"),
    );
    let url = format!("http://127.0.0.1:{port}/metrics");
    wait_for("node_exporter up", Duration::from_secs(15), || {
        http_get(&url).is_some()
    });
    let dir = tempfile::tempdir().expect("tempdir");
    let addr = format!("127.0.0.1:{port}");
    let mut agent = Agent::start(
        dir.path(),
        &config(
            &[&addr],
            "scrape_interval = \"2s\"\nscrape_timeout = \"2s\"\n",
        ),
    );
    wait_for("node_exporter scraped", Duration::from_secs(20), || {
        agent.targets()["data"]["activeTargets"][0]["health"] != "unknown"
    });
    let api = agent.targets();
    let t = &api["data"]["activeTargets"][0];
    assert_eq!(t["health"], "up", "{t}");
    assert_eq!(t["lastError"], "");
    assert_eq!(agent.terminate(), 0);
    let samples = export_jsonl(&dir.path().join("data"), &["scrape_samples_scraped"]);
    assert!(samples.iter().all(|s| s.value > 100.0), "{samples:?}");
    let cpu = export_jsonl(&dir.path().join("data"), &["node_cpu_seconds_total"]);
    assert!(!cpu.is_empty());
}

#[test]
fn config_errors_name_file_line_and_column() {
    let dir = tempfile::tempdir().expect("tempdir");
    let cases = [
        ("[global]\nscrape_interval = \"10x\"\n", "2:"),
        ("[global]\nbogus = 1\n", "2:"),
        (
            "[[scrape_configs]]\njob_name = \"a\"\n[[scrape_configs]]\njob_name = \"a\"\n",
            "4:",
        ),
        (
            "[[scrape_configs]]\njob_name = \"a\"\nscrape_interval = \"5s\"\nscrape_timeout = \"10s\"\n",
            "4:",
        ),
        (
            "[[scrape_configs]]\njob_name = \"a\"\n[[scrape_configs.relabel_configs]]\nregex = \"(\"\n",
            "4:",
        ),
    ];
    for (body, line) in cases {
        let path = dir.path().join("bad.toml");
        std::fs::write(&path, body).expect("write");
        let out = std::process::Command::new(bin())
            .args(["check", "--config"])
            .arg(&path)
            .output()
            .expect("run check");
        assert_eq!(out.status.code(), Some(1), "{body}");
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(
            err.contains(&format!("bad.toml:{line}")),
            "error for {body:?} must name bad.toml:{line}: {err}"
        );
        // run refuses to start on the same file.
        let out = std::process::Command::new(bin())
            .args(["run", "--config"])
            .arg(&path)
            .args(["--listen", "127.0.0.1:0", "--data"])
            .arg(dir.path().join("data"))
            .output()
            .expect("run");
        assert_eq!(out.status.code(), Some(1));
    }
    let out = std::process::Command::new(bin())
        .args([
            "check",
            "--config",
            concat!(env!("CARGO_MANIFEST_DIR"), "/config/scrapewheel.toml"),
        ])
        .output()
        .expect("check default");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let out = std::process::Command::new(bin())
        .arg("frobnicate")
        .output()
        .expect("usage");
    assert_eq!(out.status.code(), Some(2));
}

#[test]
fn broken_reload_keeps_the_running_config() {
    let dir = tempfile::tempdir().expect("tempdir");
    let t = Target::start(Reply::text("m 1\n"));
    let mut agent = Agent::start(dir.path(), &config(&[&t.addr], ""));
    wait_for("scrape", Duration::from_secs(15), || t.hits() >= 1);
    write_config(dir.path(), "[global]\nscrape_interval = \"nope\"\n");
    agent.signal(libc::SIGHUP);
    wait_for("reload failure reported", Duration::from_secs(10), || {
        agent.metric("scrapewheel_config_last_reload_successful") == Some(0.0)
    });
    let n = t.hits();
    wait_for("still scraping", Duration::from_secs(10), || {
        t.hits() >= n + 2
    });
    assert!(
        agent.stderr().contains("reload failed"),
        "{}",
        agent.stderr()
    );
    assert_eq!(agent.terminate(), 0);
}

#[test]
fn sigint_and_the_quit_endpoint_drain_like_sigterm() {
    let t = Target::start(Reply::text("m 1\n"));
    for how in ["SIGINT", "/-/quit"] {
        let dir = tempfile::tempdir().expect("tempdir");
        let mut agent = Agent::start(
            dir.path(),
            &config(&[&t.addr], "")
                .replace("[storage]", "[web]\nenable_lifecycle = true\n[storage]"),
        );
        let n = t.hits();
        wait_for("a scrape", Duration::from_secs(15), || t.hits() > n);
        if how == "SIGINT" {
            agent.signal(libc::SIGINT);
        } else {
            let http: ureq::Agent = ureq::Agent::config_builder()
                .http_status_as_error(false)
                .build()
                .into();
            let resp = http
                .post(format!("http://{}/-/quit", agent.listen))
                .send_empty()
                .expect("quit answered");
            assert_eq!(resp.status().as_u16(), 200);
        }
        assert_eq!(
            agent.wait(Duration::from_secs(30)),
            0,
            "{how}: {}",
            agent.stderr()
        );
        assert!(agent.stderr().contains("shutdown complete"), "{how}");
        let up = export_jsonl(&dir.path().join("data"), &["up"]);
        assert!(
            !up.is_empty(),
            "{how}: the scrapes before it are in the spool"
        );
    }
}

/// `sched_getattr` of thread `tid`: (nice, requested slice in ns). The kernel's struct
/// sched_attr (SCHED_ATTR_SIZE_VER1) as plain words: size, policy, flags (u64), nice,
/// priority, runtime (u64), deadline, period, util_min/max.
fn sched_attr(tid: i32) -> Option<(i32, u64)> {
    let mut attr = [0u64; 7];
    // SAFETY: the kernel writes at most 56 bytes (the size passed) into the live array.
    let r = unsafe {
        libc::syscall(
            libc::SYS_sched_getattr,
            tid,
            attr.as_mut_ptr(),
            std::mem::size_of_val(&attr) as libc::c_uint,
            0,
        )
    };
    (r == 0).then(|| ((attr[2] & 0xffff_ffff) as u32 as i32, attr[3]))
}

#[test]
fn the_wheel_and_workers_run_with_the_short_slice_and_the_agents_nice_value() {
    let has_custom_slices = {
        let release = std::fs::read_to_string("/proc/sys/kernel/osrelease").unwrap_or_default();
        let mut v = release
            .split(['.', '-'])
            .map(|p| p.parse::<u32>().unwrap_or(0));
        (v.next().unwrap_or(0), v.next().unwrap_or(0)) >= (6, 12)
    };
    let dir = tempfile::tempdir().expect("tempdir");
    let t = Target::start(Reply::text("up_metric 1\n"));
    let mut agent = Agent::start(dir.path(), &config(&[&t.addr], ""));
    wait_for("a scrape", Duration::from_secs(15), || t.hits() >= 1);
    let pid = agent.pid();
    let (main_nice, _) = sched_attr(pid).expect("sched_getattr of the main thread");
    let mut seen = Vec::new();
    for task in std::fs::read_dir(format!("/proc/{pid}/task")).expect("task dir") {
        let task = task.expect("task entry");
        let Ok(tid) = task.file_name().to_string_lossy().parse::<i32>() else {
            continue;
        };
        let comm = std::fs::read_to_string(task.path().join("comm")).unwrap_or_default();
        let name = comm.trim().to_string();
        let Some((nice, slice)) = sched_attr(tid) else {
            continue; // the thread ended meanwhile
        };
        let scrape_path = name == "sw-wheel" || name.starts_with("sw-worker-");
        if scrape_path {
            assert_eq!(nice, main_nice, "{name} keeps the agent's nice value");
        }
        if has_custom_slices {
            assert_eq!(
                slice == 100_000,
                scrape_path,
                "{name}: slice {slice} ns (only the wheel and the workers ask for 100 µs)"
            );
        }
        seen.push(name);
    }
    assert!(seen.iter().any(|n| n == "sw-wheel"), "{seen:?}");
    assert!(seen.iter().any(|n| n.starts_with("sw-worker-")), "{seen:?}");
    assert!(seen.iter().any(|n| n == "sw-coordinator"), "{seen:?}");
    assert_eq!(agent.terminate(), 0, "stderr: {}", agent.stderr());
}
