//! Relabeling throughput.
//!
//! - `metric_relabel/20_rules`: 1,000 realistic series (5–10 labels: HTTP, node, Go
//!   runtime, app and nginx metrics) through a 20-rule `metric_relabel_configs` mix of
//!   keep/drop on `__name__`, replace with captures, labelmap, labeldrop, labelkeep,
//!   hashmod, dropequal and lowercase/uppercase. This is the cost a worker pays per
//!   series on a metric-relabel cache miss. Divide the time by 1,000 (or read the
//!   elements/s figure) for ns per series.
//! - `target_relabel/10k_targets_10_rules`: 10,000 Kubernetes-pod-style targets (about 20
//!   labels each, mostly `__meta_*`) through 10 typical `relabel_configs`; the time is
//!   the total for all 10,000, i.e. the relabel share of one discovery sync of a large
//!   job.
//!
//! Cloning the inputs is done in criterion's setup and not timed.

use std::hint::black_box;

mod k8s;

use criterion::{criterion_group, criterion_main, BatchSize, Criterion, Throughput};
use scrapewheel::labels::LabelSet;
use scrapewheel::relabel::{process, RelabelConfig, Rule};

/// Builds one rule from `key=value` pairs (the config keys), `source_labels` split on ','.
fn rule(pairs: &[(&str, &str)]) -> Rule {
    let mut c = RelabelConfig::default();
    for &(k, v) in pairs {
        let v = v.to_owned();
        match k {
            "source_labels" => c.source_labels = Some(v.split(',').map(str::to_owned).collect()),
            "separator" => c.separator = Some(v),
            "regex" => c.regex = Some(v),
            "modulus" => c.modulus = v.parse().ok(),
            "target_label" => c.target_label = Some(v),
            "replacement" => c.replacement = Some(v),
            "action" => c.action = Some(v),
            other => panic!("unknown key {other}"),
        }
    }
    match Rule::compile(&c) {
        Ok(r) => r,
        Err(e) => panic!("bench rule {pairs:?}: {e}"),
    }
}

fn metric_rules() -> Vec<Rule> {
    vec![
        rule(&[
            ("source_labels", "__name__"),
            (
                "regex",
                "go_gc_duration_seconds.*|go_memstats_(alloc|frees|mallocs)_.*",
            ),
            ("action", "drop"),
        ]),
        rule(&[
            ("source_labels", "__name__"),
            ("regex", "(http|node|process|go|app|nginx)_.+"),
            ("action", "keep"),
        ]),
        rule(&[
            ("source_labels", "__name__"),
            ("regex", "(.+)_seconds_(total|count|sum|bucket)"),
            ("target_label", "__tmp_unit"),
            ("replacement", "seconds"),
        ]),
        rule(&[
            ("source_labels", "instance"),
            ("regex", r"(.+):\d+"),
            ("target_label", "host"),
        ]),
        rule(&[
            ("regex", "label_(.+)"),
            ("replacement", "$1"),
            ("action", "labelmap"),
        ]),
        rule(&[("regex", "label_.+"), ("action", "labeldrop")]),
        rule(&[
            ("source_labels", "instance,__name__"),
            ("modulus", "16"),
            ("target_label", "__tmp_shard"),
            ("action", "hashmod"),
        ]),
        rule(&[
            ("source_labels", "__tmp_shard"),
            ("regex", "15"),
            ("action", "drop"),
        ]),
        rule(&[
            ("source_labels", "method"),
            ("target_label", "method"),
            ("action", "lowercase"),
        ]),
        rule(&[
            ("source_labels", "code"),
            ("regex", r"([1-5])\d\d"),
            ("target_label", "code_class"),
            ("replacement", "${1}xx"),
        ]),
        rule(&[
            ("source_labels", "path"),
            ("regex", "/(healthz|readyz|livez)"),
            ("action", "drop"),
        ]),
        rule(&[
            ("source_labels", "namespace"),
            ("regex", "prod-(.+)"),
            ("target_label", "env"),
            ("replacement", "production"),
        ]),
        rule(&[("target_label", "cluster"), ("replacement", "edge-eu-1")]),
        rule(&[
            ("source_labels", "dc"),
            ("target_label", "dc"),
            ("action", "uppercase"),
        ]),
        rule(&[
            ("source_labels", "pod"),
            ("regex", "(.+)-[a-z0-9]{8,10}-[a-z0-9]{5}"),
            ("target_label", "workload"),
        ]),
        rule(&[
            ("source_labels", "__name__,le"),
            (
                "regex",
                r"http_request_duration_seconds_bucket;(0\.005|0\.01|0\.025)",
            ),
            ("action", "drop"),
        ]),
        rule(&[
            ("source_labels", "handler"),
            ("regex", r"/api/v1/(\w+).*"),
            ("target_label", "api"),
        ]),
        rule(&[
            ("source_labels", "host"),
            ("target_label", "instance"),
            ("action", "dropequal"),
        ]),
        rule(&[("regex", "__tmp_.+"), ("action", "labeldrop")]),
        rule(&[
            (
                "regex",
                "__name__|instance|job|method|code|code_class|path|host|env|cluster|le|\
                 quantile|handler|api|namespace|pod|workload|dc|device|mode|cpu|team|tier|queue",
            ),
            ("action", "labelkeep"),
        ]),
    ]
}

/// 1,000 series cycling through realistic shapes; a few are dropped by the rules, as in
/// real metric_relabel_configs.
fn series() -> Vec<LabelSet> {
    let methods = ["GET", "POST", "PUT", "DELETE"];
    let codes = ["200", "201", "304", "404", "500"];
    let les = ["0.005", "0.05", "0.1", "0.5", "1", "+Inf"];
    (0..1000)
        .map(|i| {
            let instance = format!("10.0.{}.{}:8080", i % 7, i % 250);
            let pod = format!("api-7d9f8c6b5d-x{:04}", i % 97);
            let l = |pairs: &[(&str, &str)]| {
                let mut s = LabelSet::from_pairs(pairs.iter().copied());
                s.set("instance", instance.clone());
                s
            };
            match i % 8 {
                0 => l(&[
                    ("__name__", "http_requests_total"),
                    ("job", "api"),
                    ("method", methods[i % 4]),
                    ("code", codes[i % 5]),
                    ("handler", "/api/v1/query_range"),
                    ("namespace", "prod-payments"),
                    ("pod", &pod),
                ]),
                1 => l(&[
                    ("__name__", "http_request_duration_seconds_bucket"),
                    ("job", "api"),
                    ("method", methods[i % 4]),
                    ("handler", "/api/v1/series"),
                    ("le", les[i % 6]),
                    ("dc", "fra1"),
                ]),
                2 => l(&[
                    ("__name__", "node_cpu_seconds_total"),
                    ("job", "node"),
                    ("cpu", "3"),
                    ("mode", "iowait"),
                ]),
                3 => l(&[
                    ("__name__", "go_gc_duration_seconds"),
                    ("job", "api"),
                    ("quantile", "0.75"),
                ]),
                4 => l(&[
                    ("__name__", "node_filesystem_avail_bytes"),
                    ("job", "node"),
                    ("device", "/dev/nvme0n1p2"),
                    ("fstype", "ext4"),
                    ("mountpoint", "/var/lib"),
                ]),
                5 => l(&[
                    ("__name__", "app_jobs_processed_total"),
                    ("job", "worker"),
                    ("label_team", "core"),
                    ("label_tier", "backend"),
                    ("queue", "emails"),
                    ("namespace", "prod-mail"),
                ]),
                6 => l(&[
                    ("__name__", "nginx_http_requests_total"),
                    ("job", "nginx"),
                    (
                        "path",
                        if i % 3 == 0 {
                            "/healthz"
                        } else {
                            "/index.html"
                        },
                    ),
                    ("code", codes[i % 5]),
                ]),
                _ => l(&[
                    ("__name__", "process_resident_memory_bytes"),
                    ("job", "api"),
                    ("pod", &pod),
                    ("namespace", "staging-payments"),
                ]),
            }
        })
        .collect()
}

fn target_rules() -> Vec<Rule> {
    vec![
        rule(&[
            (
                "source_labels",
                "__meta_kubernetes_pod_annotation_prometheus_io_scrape",
            ),
            ("regex", "true"),
            ("action", "keep"),
        ]),
        rule(&[
            ("source_labels", "__meta_kubernetes_pod_phase"),
            ("regex", "Pending|Succeeded|Failed|Completed"),
            ("action", "drop"),
        ]),
        rule(&[
            (
                "source_labels",
                "__meta_kubernetes_pod_annotation_prometheus_io_path",
            ),
            ("regex", "(.+)"),
            ("target_label", "__metrics_path__"),
        ]),
        rule(&[
            (
                "source_labels",
                "__address__,__meta_kubernetes_pod_annotation_prometheus_io_port",
            ),
            ("regex", r"([^:]+)(?::\d+)?;(\d+)"),
            ("replacement", "$1:$2"),
            ("target_label", "__address__"),
        ]),
        rule(&[
            (
                "source_labels",
                "__meta_kubernetes_pod_annotation_prometheus_io_scheme",
            ),
            ("regex", "(https?)"),
            ("target_label", "__scheme__"),
        ]),
        rule(&[
            ("regex", "__meta_kubernetes_pod_label_(.+)"),
            ("action", "labelmap"),
        ]),
        rule(&[
            ("source_labels", "__meta_kubernetes_namespace"),
            ("target_label", "namespace"),
        ]),
        rule(&[
            ("source_labels", "__meta_kubernetes_pod_name"),
            ("target_label", "pod"),
        ]),
        rule(&[
            ("source_labels", "__meta_kubernetes_pod_node_name"),
            ("target_label", "node"),
        ]),
        rule(&[
            ("source_labels", "__address__"),
            ("modulus", "4"),
            ("target_label", "__tmp_hash"),
            ("action", "hashmod"),
        ]),
    ]
}

/// 10,000 pod targets as Kubernetes discovery would hand them over, with the job
/// defaults already populated; one in ten is not annotated for scraping.
/// 10,000 discovered pods, with the labels a job's defaults add.
fn targets() -> Vec<LabelSet> {
    (0..10_000usize)
        .map(|i| {
            let mut s = k8s::pod(i, 0);
            for (k, v) in [
                ("__scheme__", "http"),
                ("__metrics_path__", "/metrics"),
                ("__scrape_interval__", "15s"),
                ("__scrape_timeout__", "10s"),
                ("job", "kubernetes-pods"),
            ] {
                s.set(k, v);
            }
            s
        })
        .collect()
}

fn run_all(rules: &[Rule], mut sets: Vec<LabelSet>) -> Vec<LabelSet> {
    for s in sets.iter_mut() {
        black_box(process(rules, s));
    }
    sets
}

fn metric_relabel(c: &mut Criterion) {
    let rules = metric_rules();
    let input = series();
    let mut g = c.benchmark_group("metric_relabel");
    g.throughput(Throughput::Elements(input.len() as u64));
    g.bench_function("20_rules", |b| {
        b.iter_batched(
            || input.clone(),
            |sets| run_all(&rules, sets),
            BatchSize::LargeInput,
        )
    });
    g.finish();
}

fn target_relabel(c: &mut Criterion) {
    let rules = target_rules();
    let input = targets();
    let mut g = c.benchmark_group("target_relabel");
    g.sample_size(20);
    g.throughput(Throughput::Elements(input.len() as u64));
    g.bench_function("10k_targets_10_rules", |b| {
        b.iter_batched(
            || input.clone(),
            |sets| run_all(&rules, sets),
            BatchSize::LargeInput,
        )
    });
    g.finish();
}

criterion_group!(benches, metric_relabel, target_relabel);
criterion_main!(benches);
