//! The per-scrape path of a warm target, run a fixed number of times, for an instruction
//! count that does not depend on the machine's load: `scripts/instructions.sh` runs it
//! under cachegrind and reports instructions per scrape.
//!
//! The scenario is the `plain_50k` case of `benches/pipeline.rs`: the realistic body of
//! about 50 KB (the load rig's target size) from one target of a job with the usual target
//! labels, walked, diffed and committed, with no metric relabeling. The first scrape warms
//! the target's state and is not counted; the append buffer is replaced every 64 scrapes
//! so it does not grow without bound.
//!
//! ```sh
//! cargo run --release --example scrape_path -- 300
//! ```
//!
//! Prints `scrapes=N samples=M` on stdout; the timing it prints on stderr is only a hint,
//! as wall-clock time on a shared VM swings by half.

#[path = "../benches/common/mod.rs"]
#[allow(dead_code)]
mod common;

use scrapewheel::append::AppendBuffer;
use scrapewheel::budget::MemoryBudget;
use scrapewheel::config::Config;
use scrapewheel::discovery::static_groups;
use scrapewheel::metrics::Registry;
use scrapewheel::parse::Format;
use scrapewheel::pool::ScrapePool;
use scrapewheel::worker::{process_scrape, Scratch};
use std::path::Path;
use std::time::Instant;

const JOB: &str = r#"
[[scrape_configs]]
job_name = "node"
[[scrape_configs.static_configs]]
targets = ["10.1.2.3:9100"]
labels = { env = "prod", dc = "eu-west-1", team = "infra" }
"#;

fn main() {
    let scrapes: u32 = match std::env::args().nth(1).map(|a| a.parse()) {
        None => 300,
        Some(Ok(n)) if n > 0 => n,
        Some(_) => {
            eprintln!("usage: scrape_path [SCRAPES > 0]");
            std::process::exit(2);
        }
    };
    let cfg = match Config::from_str(JOB, Path::new("scrape_path.toml")) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("scrape_path: {e}");
            std::process::exit(1);
        }
    };
    let reg = Registry::default();
    let mut pool = ScrapePool::new(cfg.scrape_configs[0].clone(), &reg);
    let synced = pool.sync(&static_groups(&cfg.scrape_configs[0].static_configs));
    let Some(target) = synced.added.first().cloned() else {
        eprintln!("scrape_path: the job has no target");
        std::process::exit(1);
    };
    let mut scratch = Scratch::default();
    scratch
        .body_mut()
        .extend_from_slice(common::realistic_exposition(50_000).as_bytes());
    let new_buffer = || AppendBuffer::new(16, 2000, MemoryBudget::unlimited());
    let mut buffer = new_buffer();
    let mut samples = 0u64;
    let mut started = Instant::now();
    for i in 0..=scrapes {
        let out = process_scrape(
            &mut scratch,
            &target,
            Ok(Some(Format::PromText)),
            1 + i64::from(i),
            Instant::now(),
        );
        if let Err(e) = out.result {
            eprintln!("scrape_path: scrape {i} failed: {e}");
            std::process::exit(1);
        }
        buffer.commit(
            target.key,
            scratch.batch(),
            out.appended,
            out.min_ts,
            out.max_ts,
        );
        if i == 0 {
            started = Instant::now();
            continue;
        }
        samples += out.appended;
        if i % 64 == 0 {
            buffer = new_buffer();
        }
    }
    eprintln!("{:?} per scrape (wall clock)", started.elapsed() / scrapes);
    println!("scrapes={scrapes} samples={samples}");
}
