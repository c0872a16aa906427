//! One generator for both agents' configs. Each case becomes one scrape job, built once
//! as a JSON tree whose keys are prometheus.yml's; Prometheus reads that tree as YAML
//! (JSON is YAML) and scrapewheel reads the same tree as TOML, its keys mirroring
//! prometheus.yml's one to one. The only per-agent keys are the remote-write receiver
//! (Prometheus), the engine and storage sections (scrapewheel), and a case's
//! `scrapewheel_only` keys, each of which Prometheus 2.42 does not know.

use super::model::Case;
use serde_json::{json, Map, Value};

/// Global settings of both agents: 1s scrapes so a case takes seconds, and a timeout
/// below the interval so a hanging target fails before its next slot.
pub const SCRAPE_INTERVAL: &str = "1s";
pub const SCRAPE_TIMEOUT: &str = "800ms";

fn global() -> Value {
    json!({ "scrape_interval": SCRAPE_INTERVAL, "scrape_timeout": SCRAPE_TIMEOUT })
}

/// The job both agents get for `case`, whose targets listen on `addrs` (in order).
pub fn job(case: &Case, addrs: &[String]) -> Map<String, Value> {
    let mut job = Map::new();
    job.insert("job_name".into(), Value::from(case.name));
    for (k, v) in &case.job {
        job.insert(k.clone(), v.clone());
    }
    let groups: Vec<Value> = case
        .targets
        .iter()
        .zip(addrs)
        .map(|(t, addr)| {
            let labels: Map<String, Value> = t
                .labels
                .iter()
                .map(|(k, v)| (k.clone(), Value::from(v.as_str())))
                .collect();
            json!({ "targets": [addr], "labels": labels })
        })
        .collect();
    job.insert("static_configs".into(), Value::Array(groups));
    let rules = |rs: &[super::model::Rule]| -> Value {
        Value::Array(rs.iter().map(|r| Value::Object(r.0.clone())).collect())
    };
    if !case.relabel.is_empty() {
        job.insert("relabel_configs".into(), rules(&case.relabel));
    }
    if !case.metric_relabel.is_empty() {
        job.insert("metric_relabel_configs".into(), rules(&case.metric_relabel));
    }
    job
}

/// prometheus.yml (as JSON): every job, remote-writing to `receiver` in commit order
/// (one shard), quickly (200ms batches), without metadata requests.
pub fn prometheus(cases: &[Case], addrs: &[Vec<String>], receiver: &str) -> String {
    let jobs: Vec<Value> = cases
        .iter()
        .zip(addrs)
        .map(|(c, a)| Value::Object(job(c, a)))
        .collect();
    let cfg = json!({
        "global": global(),
        "scrape_configs": jobs,
        "remote_write": [{
            "url": receiver,
            "remote_timeout": "5s",
            "queue_config": {
                "min_shards": 1,
                "max_shards": 1,
                "max_samples_per_send": 500,
                "batch_send_deadline": "200ms",
                "min_backoff": "10ms",
                "max_backoff": "100ms"
            },
            "metadata_config": { "send": false }
        }]
    });
    serde_json::to_string_pretty(&cfg).expect("serialise prometheus config")
}

/// scrapewheel's TOML: the same jobs, plus its own sections tuned for a quick test
/// (targets synced 100ms after start, spool flushed every 200ms).
pub fn scrapewheel(cases: &[Case], addrs: &[Vec<String>], receiver: &str) -> String {
    let jobs: Vec<Value> = cases
        .iter()
        .zip(addrs)
        .map(|(c, a)| {
            let mut j = job(c, a);
            for (k, v) in &c.scrapewheel_only {
                j.insert(k.clone(), v.clone());
            }
            Value::Object(j)
        })
        .collect();
    let cfg = json!({
        "global": global(),
        "engine": { "reload_throttle": "100ms" },
        "storage": { "flush_interval": "200ms" },
        "scrape_configs": jobs,
        // One sender, like Prometheus's one shard above: samples arrive in commit order.
        "remote_write": [{
            "url": receiver,
            "remote_timeout": "5s",
            "queue_config": { "min_shards": 1, "max_shards": 1 },
        }],
    });
    let value = toml::Value::try_from(&cfg).expect("json config converts to toml");
    toml::to_string(&value).expect("serialise scrapewheel config")
}
