//! The per-scrape path allocates nothing per sample once a target is warm: the number of
//! allocations of a steady-state scrape does not grow with the number of series.

use scrapewheel::config::Config;
use scrapewheel::discovery::static_groups;
use scrapewheel::metrics::Registry;
use scrapewheel::parse::Format;
use scrapewheel::pool::ScrapePool;
use scrapewheel::worker::{process_scrape, Scratch};
use std::alloc::{GlobalAlloc, Layout, System};
use std::cell::Cell;
use std::path::Path;
use std::time::Instant;

struct Counting;

thread_local! {
    /// Allocations made by this thread only: the test harness's own threads allocate
    /// at times of their own, and counting them made the comparison flaky.
    static ALLOCS: Cell<u64> = const { Cell::new(0) };
}

fn count() {
    // `try_with`: a thread being torn down may still allocate.
    let _ = ALLOCS.try_with(|n| n.set(n.get() + 1));
}

fn allocs() -> u64 {
    ALLOCS.with(Cell::get)
}

// SAFETY: forwards to the system allocator unchanged; only counts calls.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        count();
        // SAFETY: same contract as the caller's.
        unsafe { System.alloc(layout) }
    }
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        // SAFETY: same contract as the caller's.
        unsafe { System.dealloc(ptr, layout) }
    }
    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        count();
        // SAFETY: same contract as the caller's.
        unsafe { System.realloc(ptr, layout, new_size) }
    }
}

#[global_allocator]
static GLOBAL: Counting = Counting;

fn body(series: usize) -> String {
    let mut b = String::from("# HELP req Requests.\n# TYPE req counter\n");
    for i in 0..series {
        b.push_str(&format!(
            "req{{code=\"{}\",path=\"/p/{i}\",esc=\"a\\\"b\"}} {i}\n",
            200 + i % 3
        ));
    }
    b.push_str("# TYPE lat histogram\n");
    for le in ["0.1", "1", "+Inf"] {
        b.push_str(&format!("lat_bucket{{le=\"{le}\"}} 3\n"));
    }
    b
}

/// Allocations of the third scrape of one target (the first two warm its state and the
/// scratch buffers).
fn steady_allocs(series: usize, relabel: &str) -> u64 {
    let text = format!(
        "[[scrape_configs]]\njob_name = \"j\"\n[[scrape_configs.static_configs]]\ntargets = [\"h:1\"]\nlabels = {{ code = \"clash\" }}\n{relabel}"
    );
    let cfg = Config::from_str(&text, Path::new("alloc.toml")).expect("config");
    let mut pool = ScrapePool::new(cfg.scrape_configs[0].clone(), &Registry::default());
    let t = pool
        .sync(&static_groups(&cfg.scrape_configs[0].static_configs))
        .added[0]
        .clone();
    let mut s = Scratch::default();
    s.body_mut().extend_from_slice(body(series).as_bytes());
    for ts in 1..=2 {
        let out = process_scrape(&mut s, &t, Ok(Some(Format::PromText)), ts, Instant::now());
        assert!(out.result.is_ok(), "{:?}", out.result.err());
    }
    let before = allocs();
    let out = process_scrape(&mut s, &t, Ok(Some(Format::PromText)), 3, Instant::now());
    let n = allocs() - before;
    assert!(out.result.is_ok());
    assert_eq!(out.scraped as usize, series + 3);
    n
}

#[test]
fn steady_scrape_allocations_do_not_grow_with_series() {
    for relabel in [
        "",
        "[[scrape_configs.metric_relabel_configs]]\ntarget_label = \"x\"\nreplacement = \"y\"\n",
    ] {
        let small = steady_allocs(100, relabel);
        let large = steady_allocs(10_000, relabel);
        assert_eq!(
            small, large,
            "allocations per scrape must not depend on series count"
        );
        assert!(
            large < 32,
            "a steady scrape allocates only a few buffers, got {large}"
        );
    }
}
