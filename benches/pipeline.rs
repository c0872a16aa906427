//! The whole per-scrape path after the HTTP read, for a target already scraped once
//! (its state warm): parse → label merge → metric relabel (cached) → limits → encode →
//! staleness diff → report series → commit to the striped buffer.
//!
//! Scenario: the realistic ~1 MiB exposition of `common` (node_exporter-like plus
//! high-cardinality histograms) served by one target of a job with the usual target
//! labels. `plain` has no metric_relabel_configs; `relabel5` has five typical rules
//! (drop two families, a labeldrop, a replace, a keep-all regex), so every series goes
//! through the per-target relabel cache. Goal: ≥ 200 MB/s on one core. `plain_50k` is the
//! plain case at the size of one load-rig target (about 50 KB, 500 series), where the
//! per-scrape costs (report series, staleness diff, commit) weigh more.

use criterion::{criterion_group, criterion_main, BatchSize, Criterion, Throughput};
use scrapewheel::append::AppendBuffer;
use scrapewheel::config::Config;
use scrapewheel::discovery::static_groups;
use scrapewheel::metrics::Registry;
use scrapewheel::parse::Format;
use scrapewheel::pool::ScrapePool;
use scrapewheel::worker::{process_scrape, Scratch};
use std::path::Path;
use std::sync::Arc;
use std::time::Instant;

mod common;

const RELABEL5: &str = r#"
[[scrape_configs.metric_relabel_configs]]
source_labels = ["__name__"]
regex = "go_memstats_.*"
action = "drop"
[[scrape_configs.metric_relabel_configs]]
source_labels = ["__name__"]
regex = "node_scrape_collector_.*"
action = "drop"
[[scrape_configs.metric_relabel_configs]]
regex = "pod"
action = "labeldrop"
[[scrape_configs.metric_relabel_configs]]
source_labels = ["method", "code"]
separator = "_"
target_label = "route"
regex = "(GET|POST)_(2..)"
replacement = "${1}-ok"
[[scrape_configs.metric_relabel_configs]]
source_labels = ["__name__"]
regex = ".+"
action = "keep"
"#;

fn target(extra: &str) -> Arc<scrapewheel::target::Target> {
    let text = format!(
        "[[scrape_configs]]\njob_name = \"node\"\n[[scrape_configs.static_configs]]\ntargets = [\"10.1.2.3:9100\"]\nlabels = {{ env = \"prod\", dc = \"eu-west-1\", team = \"infra\" }}\n{extra}"
    );
    let cfg = Config::from_str(&text, Path::new("bench.toml")).expect("bench config");
    let reg = Registry::default();
    let mut pool = ScrapePool::new(cfg.scrape_configs[0].clone(), &reg);
    let out = pool.sync(&static_groups(&cfg.scrape_configs[0].static_configs));
    out.added[0].clone()
}

fn bench(c: &mut Criterion) {
    let large = common::realistic_exposition(1 << 20);
    let small = common::realistic_exposition(50_000);
    let mut g = c.benchmark_group("scrape_path");
    for (name, body, extra) in [
        ("plain", &large, ""),
        ("relabel5", &large, RELABEL5),
        ("plain_50k", &small, ""),
    ] {
        g.throughput(Throughput::Bytes(body.len() as u64));
        let t = target(extra);
        let mut scratch = Scratch::default();
        scratch.body_mut().extend_from_slice(body.as_bytes());
        // Warm the target's state: the first scrape stores its body and caches.
        let out = process_scrape(
            &mut scratch,
            &t,
            Ok(Some(Format::PromText)),
            1,
            Instant::now(),
        );
        assert!(out.result.is_ok(), "{:?}", out.result.err());
        let mut ts = 2;
        g.bench_function(name, |b| {
            b.iter_batched(
                || AppendBuffer::new(16, 2000, scrapewheel::budget::MemoryBudget::unlimited()),
                |buf| {
                    ts += 1;
                    let out = process_scrape(
                        &mut scratch,
                        &t,
                        Ok(Some(Format::PromText)),
                        ts,
                        Instant::now(),
                    );
                    buf.commit(t.key, scratch.batch(), out.appended, out.min_ts, out.max_ts);
                    buf
                },
                BatchSize::SmallInput,
            )
        });
    }
    g.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
