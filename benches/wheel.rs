//! Timer wheel costs at the scale the design allows (100,000 targets).
//!
//! * `insert_100k` / `remove_100k`: building and tearing down the whole schedule, as a
//!   start-up or a reload that replaces every target does; reported per entry.
//! * `add_remove_at_100k`: one add plus one remove against a full wheel (a target churning
//!   in discovery), on the bare `Wheel` and through the `Scheduler` handle (lock, clock
//!   read, wake check) while its thread dispatches the other 100k in the background.
//! * `advance_*`: one interval of wheel time in 1 ms steps, the way the thread drives it
//!   when busy, with a no-op dispatch; reported per dispatched slot, so it includes the
//!   cascades between levels and the `next_deadline` call after every step.

use std::hint::black_box;
use std::sync::Arc;
use std::time::Duration;

use criterion::{criterion_group, criterion_main, BatchSize, Criterion, Throughput};
use scrapewheel::wheel::{
    fnv1a64, offset_for, Clock, Dispatch, DispatchFn, Scheduler, SystemClock, Wheel, DEFAULT_TICK,
};

const N: u64 = 100_000;
const S: u64 = 1_000_000_000;
const MS: u64 = 1_000_000;
const T0: u64 = 1_699_999_200 * S;

/// A target hash for key `k`: FNV of an address, as discovery would produce.
fn target_hash(k: u64) -> u64 {
    fnv1a64(format!("10.{}.{}.{}:9100", k >> 16, (k >> 8) & 255, k & 255).as_bytes())
}

/// Scrape intervals seen in the wild, weighted towards the common ones.
fn interval_for(k: u64, mixed: bool) -> Duration {
    const MIX: [u64; 8] = [1, 10, 10, 15, 30, 60, 300, 3600];
    Duration::from_secs(if mixed { MIX[(k % 8) as usize] } else { 10 })
}

fn populated(mixed: bool) -> Wheel<Arc<u64>> {
    let seed = fnv1a64(b"bench-host{}");
    let mut w = Wheel::new(DEFAULT_TICK, T0);
    for k in 0..N {
        let i = interval_for(k, mixed);
        w.insert(k, i, offset_for(target_hash(k), seed, i), Arc::new(k), T0);
    }
    w
}

fn add_remove(c: &mut Criterion) {
    let seed = fnv1a64(b"bench-host{}");
    let hashes: Vec<u64> = (0..N).map(target_hash).collect();
    let mut g = c.benchmark_group("wheel");
    g.sample_size(20);
    g.throughput(Throughput::Elements(N));
    g.bench_function("insert_100k", |b| {
        b.iter_batched(
            || Wheel::new(DEFAULT_TICK, T0),
            |mut w| {
                for (k, &h) in hashes.iter().enumerate() {
                    let i = interval_for(k as u64, true);
                    w.insert(k as u64, i, offset_for(h, seed, i), (), T0);
                }
                w
            },
            BatchSize::LargeInput,
        );
    });
    g.bench_function("remove_100k", |b| {
        b.iter_batched(
            || populated(true),
            |mut w| {
                for k in 0..N {
                    black_box(w.remove(k));
                }
                w
            },
            BatchSize::LargeInput,
        );
    });
    g.throughput(Throughput::Elements(1));
    let mut w = populated(true);
    let mut k = N;
    g.bench_function("add_remove_at_100k", |b| {
        b.iter(|| {
            k += 1;
            let i = Duration::from_secs(15);
            w.insert(k, i, offset_for(k, seed, i), Arc::new(k), T0);
            black_box(w.remove(k));
        });
    });
    let dispatch: DispatchFn<u64> = Box::new(|job, due, _| {
        black_box((job, due));
        Dispatch::Sent
    });
    let clock: Arc<dyn Clock> = Arc::new(SystemClock);
    if let Ok(s) = Scheduler::start(clock, DEFAULT_TICK, dispatch) {
        for k in 0..N {
            let i = interval_for(k, true);
            s.add(k, i, offset_for(hashes[k as usize], seed, i), Arc::new(k));
        }
        g.bench_function("scheduler_add_remove_at_100k", |b| {
            b.iter(|| {
                k += 1;
                let i = Duration::from_secs(15);
                s.add(k, i, offset_for(k, seed, i), Arc::new(k));
                s.remove(k);
            });
        });
        s.stop();
    }
    g.finish();
}

fn advance(c: &mut Criterion) {
    let mut g = c.benchmark_group("wheel");
    g.sample_size(20);
    for (name, mixed, window) in [
        ("advance_100k_at_10s", false, 10 * S),
        ("advance_100k_mixed_1s_to_1h", true, 60 * S),
    ] {
        let mut w = populated(mixed);
        let mut now = T0;
        // Run one window first: the counts per window are then steady (every entry has
        // been placed relative to a moving wheel at least once).
        let mut window_fires = 0u64;
        for _ in 0..2 {
            window_fires = 0;
            let end = now + window;
            while now < end {
                now += MS;
                window_fires += w.advance(now, |_, _| true) as u64;
            }
        }
        g.throughput(Throughput::Elements(window_fires));
        g.bench_function(name, |b| {
            b.iter(|| {
                let end = now + window;
                while now < end {
                    now += MS;
                    w.advance(now, |d, job| {
                        black_box((d, job));
                        true
                    });
                    black_box(w.next_deadline());
                }
            });
        });
    }
    g.finish();
}

criterion_group!(benches, add_remove, advance);
criterion_main!(benches);
