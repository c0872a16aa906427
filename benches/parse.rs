//! Exposition parsing throughput on a realistic ~1 MiB body (see `common`).
//!
//! Scenario: one core parses the whole body the way a worker does: every entry, every
//! sample's labels touched. `parse/prom_text` and `parse/openmetrics` measure the
//! parser alone (the goal is ≥ 500 MB/s); `parse/prom_text_normalize_le` adds what the
//! consumer does for histogram buckets (re-spelling `le` values) to show its cost.

use std::hint::black_box;

use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use scrapewheel::parse::{normalize_float_label, Entry, Format, Parser};

mod common;

/// Parses the whole body; returns numbers derived from every sample so nothing is
/// optimised away.
fn parse_all(body: &[u8], format: Format, normalize_le: bool) -> (usize, usize, f64) {
    let mut parser = match Parser::new(body, format) {
        Ok(p) => p,
        Err(e) => panic!("benchmark body rejected: {e}"),
    };
    let (mut samples, mut label_bytes, mut sum) = (0, 0, 0.0);
    let mut scratch = String::new();
    loop {
        match parser.next() {
            Ok(Some(Entry::Sample(s))) => {
                samples += 1;
                sum += s.value;
                for l in parser.labels() {
                    label_bytes += l.name.raw.len() + l.value.raw.len();
                    if normalize_le
                        && l.name.raw == "le"
                        && normalize_float_label(l.value.raw, &mut scratch)
                    {
                        label_bytes += scratch.len();
                    }
                }
            }
            Ok(Some(_)) => {}
            Ok(None) => return (samples, label_bytes, sum),
            Err(e) => panic!("benchmark body rejected: {e}"),
        }
    }
}

fn bench_parse(c: &mut Criterion) {
    let text = common::realistic_exposition(1 << 20);
    let om = format!("{text}# EOF\n");
    // A broken generator must not produce a fast but meaningless number.
    let (samples, _, _) = parse_all(text.as_bytes(), Format::PromText, false);
    assert!(samples > 5_000, "only {samples} samples");
    assert_eq!(
        parse_all(om.as_bytes(), Format::OpenMetrics, false).0,
        samples
    );

    let mut group = c.benchmark_group("parse");
    group.throughput(Throughput::Bytes(text.len() as u64));
    group.bench_function("prom_text", |b| {
        b.iter(|| parse_all(black_box(text.as_bytes()), Format::PromText, false))
    });
    group.bench_function("prom_text_normalize_le", |b| {
        b.iter(|| parse_all(black_box(text.as_bytes()), Format::PromText, true))
    });
    group.throughput(Throughput::Bytes(om.len() as u64));
    group.bench_function("openmetrics", |b| {
        b.iter(|| parse_all(black_box(om.as_bytes()), Format::OpenMetrics, false))
    });
    group.finish();
}

criterion_group!(benches, bench_parse);
criterion_main!(benches);
