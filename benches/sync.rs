//! Target sync: `ScrapePool::sync` of 10,000 discovered targets through 10 relabel rules,
//! the work the coordinator hands to rayon for one job on every discovery update.
//!
//! Scenario: Kubernetes-pod-style targets (about 20 labels each, mostly `__meta_*`), in
//! 100 groups of 100, through the 10 `relabel_configs` most pod jobs use (keep on the
//! scrape annotation, drop finished pods, path/port/scheme from annotations, labelmap,
//! namespace/pod/node, hashmod). One pod in ten is not annotated, so relabeling drops it:
//! 9,000 targets survive.
//!
//! - `initial`: an empty pool takes all 10,000: label population, relabeling, URL and
//!   hash, dedupe, and a new `Target` (with its scrape state) for each survivor.
//! - `unchanged`: the same groups again, the common discovery refresh: everything but
//!   building targets.
//! - `churn_10pct`: one pod in ten replaced by a new one (new name and address).
//!
//! The budget is one reload interval: `engine.reload_throttle` defaults to 5 s, as does
//! Prometheus's discovery reload. Creating and dropping pools is not timed.

mod k8s;

use criterion::{criterion_group, criterion_main, BatchSize, Criterion, Throughput};
use scrapewheel::config::Config;
use scrapewheel::discovery::TargetGroup;
use scrapewheel::labels::LabelSet;
use scrapewheel::metrics::Registry;
use scrapewheel::pool::ScrapePool;
use std::path::Path;
use std::sync::Arc;

const JOB: &str = r#"
[[scrape_configs]]
job_name = "kubernetes-pods"
scrape_interval = "15s"
[[scrape_configs.relabel_configs]]
source_labels = ["__meta_kubernetes_pod_annotation_prometheus_io_scrape"]
regex = "true"
action = "keep"
[[scrape_configs.relabel_configs]]
source_labels = ["__meta_kubernetes_pod_phase"]
regex = "Pending|Succeeded|Failed|Completed"
action = "drop"
[[scrape_configs.relabel_configs]]
source_labels = ["__meta_kubernetes_pod_annotation_prometheus_io_path"]
regex = "(.+)"
target_label = "__metrics_path__"
[[scrape_configs.relabel_configs]]
source_labels = ["__address__", "__meta_kubernetes_pod_annotation_prometheus_io_port"]
regex = '([^:]+)(?::\d+)?;(\d+)'
replacement = "$1:$2"
target_label = "__address__"
[[scrape_configs.relabel_configs]]
source_labels = ["__meta_kubernetes_pod_annotation_prometheus_io_scheme"]
regex = "(https?)"
target_label = "__scheme__"
[[scrape_configs.relabel_configs]]
regex = "__meta_kubernetes_pod_label_(.+)"
action = "labelmap"
[[scrape_configs.relabel_configs]]
source_labels = ["__meta_kubernetes_namespace"]
target_label = "namespace"
[[scrape_configs.relabel_configs]]
source_labels = ["__meta_kubernetes_pod_name"]
target_label = "pod"
[[scrape_configs.relabel_configs]]
source_labels = ["__meta_kubernetes_pod_node_name"]
target_label = "node"
[[scrape_configs.relabel_configs]]
source_labels = ["__address__"]
modulus = 4
target_label = "__tmp_hash"
action = "hashmod"
"#;

/// 10,000 pods in 100 groups; pods with `i % churn_every == 1` are of generation 1
/// (restarted; the unannotated pods, `i % 10 == 0`, stay as they were).
fn groups(churn_every: usize) -> Vec<TargetGroup> {
    (0..100)
        .map(|g| TargetGroup {
            source: format!("pods/{g}"),
            targets: (0..100)
                .map(|k| {
                    let i = g * 100 + k;
                    let gen = usize::from(churn_every > 0 && i % churn_every == 1);
                    k8s::pod(i, gen)
                })
                .collect(),
            labels: LabelSet::from_pairs([("cluster", "edge-eu-1")]),
        })
        .collect()
}

fn job() -> Arc<scrapewheel::config::ScrapeConfig> {
    let cfg = Config::from_str(JOB, Path::new("bench.toml")).expect("bench config");
    cfg.scrape_configs[0].clone()
}

fn bench(c: &mut Criterion) {
    let cfg = job();
    let base = groups(0);
    let churned = groups(10);
    let mut g = c.benchmark_group("pool_sync/10k_targets_10_rules");
    g.sample_size(10);
    g.throughput(Throughput::Elements(10_000));

    // Sanity: the scenario is what the docs say.
    let reg = Registry::default();
    let mut pool = ScrapePool::new(cfg.clone(), &reg);
    let out = pool.sync(&base);
    assert_eq!(
        (out.added.len(), out.errors.len(), pool.dropped().1),
        (9_000, 0, 1_000)
    );
    let out = pool.sync(&churned);
    assert_eq!((out.added.len(), out.removed.len()), (1_000, 1_000));

    g.bench_function("initial", |b| {
        b.iter_batched(
            || ScrapePool::new(cfg.clone(), &Registry::default()),
            |mut pool| {
                let out = pool.sync(&base);
                (pool, out)
            },
            BatchSize::PerIteration,
        )
    });
    g.bench_function("unchanged", |b| {
        b.iter_batched(
            || {
                let mut pool = ScrapePool::new(cfg.clone(), &Registry::default());
                pool.sync(&base);
                pool
            },
            |mut pool| {
                let out = pool.sync(&base);
                (pool, out)
            },
            BatchSize::PerIteration,
        )
    });
    g.bench_function("churn_10pct", |b| {
        b.iter_batched(
            || {
                let mut pool = ScrapePool::new(cfg.clone(), &Registry::default());
                pool.sync(&base);
                pool
            },
            |mut pool| {
                let out = pool.sync(&churned);
                (pool, out)
            },
            BatchSize::PerIteration,
        )
    });
    g.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
