//! The worker pool: a fixed set of named threads ("sw-worker-N") that take due scrapes
//! from the wheel over a bounded channel and turn each into exactly one commit to the
//! append buffer.
//!
//! A scrape: HTTP GET (scrape) → pick the parser by Content-Type → walk the body
//! (pipeline) into a worker-local batch → staleness diff against the target's last scrape
//! (state) → report series → one commit. A failed scrape's batch is dropped (the rollback
//! is free), and the commit carries only staleness markers and the report series with
//! up=0. A `Final` job writes end-of-run markers for a removed target.
//!
//! The pool stops when the job queue ([`crate::queue`]) closes: each worker finishes the scrape in
//! hand (bounded by its timeout) and exits. A panic while scraping one target is caught,
//! logged and counted; the worker carries on with the next job.

pub mod cache;
pub mod pipeline;
mod seen;
pub mod state;
pub mod stream;

use crate::append::AppendBuffer;
use crate::budget::{Charge, MemoryBudget, Part};
use crate::hash::HashKeyed;
use crate::metrics::{Counter, Gauge, IntervalSummary, Registry};
use crate::parse::Format;
use crate::queue::Receiver;
use crate::scrape::{BodyStream, HttpClient, ScrapeRequest};
use crate::target::Target;
use crate::wheel::DueKind;
use crate::wire;
use parking_lot::Mutex;
use pipeline::{ScrapeFailure, Series, WalkConfig, WalkStats, WalkStream, Walker};
use seen::SeriesSet;
use state::{diff_sorted, BodyWriter, ScrapeState};
use std::io::Read;
use std::path::{Path, PathBuf};
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};
use stream::{walk_parts, Piece, ReadMore, Staging};

/// A due scrape handed from the wheel to a worker.
pub struct Job {
    pub target: Arc<Target>,
    /// The slot's due time, Unix ns; becomes the samples' timestamp when the worker starts
    /// within tolerance of it.
    pub due_ns: u64,
    pub kind: DueKind,
}

/// Counters shared by all workers.
pub struct WorkerMetrics {
    pub scrapes: Arc<Counter>,
    pub failures: Arc<Counter>,
    pub samples_scraped: Arc<Counter>,
    pub samples_appended: Arc<Counter>,
    pub stale_markers: Arc<Counter>,
    pub body_bytes: Arc<Counter>,
    pub busy_ns: Arc<Counter>,
    pub panics: Arc<Counter>,
    pub exceeded_sample_limit: Arc<Counter>,
    pub exceeded_body_size_limit: Arc<Counter>,
    pub exceeded_label_limits: Arc<Counter>,
    pub duplicate_samples: Arc<Counter>,
    pub out_of_order_samples: Arc<Counter>,
    pub out_of_bounds_samples: Arc<Counter>,
    /// Workers in a scrape (or an end-of-run) right now.
    pub busy: Arc<Gauge>,
    pub workers: Arc<Gauge>,
    pub interval_length: IntervalLengths,
}

/// `prometheus_target_interval_length_seconds`, one summary per configured interval,
/// registered when a worker first scrapes a target with that interval.
pub struct IntervalLengths {
    registry: Arc<Registry>,
    known: Mutex<Vec<(Duration, Arc<IntervalSummary>)>>,
}

impl IntervalLengths {
    /// The summary for `interval`; takes a lock, so workers cache the result.
    pub fn get(&self, interval: Duration) -> Arc<IntervalSummary> {
        let mut known = self.known.lock();
        if let Some((_, s)) = known.iter().find(|(i, _)| *i == interval) {
            return s.clone();
        }
        let s = Arc::new(IntervalSummary::new(interval));
        let s2 = s.clone();
        self.registry.summary_fn(
            "prometheus_target_interval_length_seconds",
            "Actual intervals between scrapes.",
            &[("interval", &crate::metrics::go_duration(interval))],
            move || s2.snapshot(crate::time::unix_ns()),
        );
        known.push((interval, s.clone()));
        s
    }
}

impl WorkerMetrics {
    pub fn new(reg: &Arc<Registry>) -> Self {
        Self {
            busy: reg.gauge(
                "scrapewheel_workers_busy",
                "Workers busy with a scrape right now.",
                &[],
            ),
            workers: reg.gauge("scrapewheel_workers", "Scrape worker threads.", &[]),
            interval_length: IntervalLengths {
                registry: reg.clone(),
                known: Mutex::new(Vec::new()),
            },
            scrapes: reg.counter("scrapewheel_scrapes_total", "Scrapes performed.", &[]),
            failures: reg.counter(
                "scrapewheel_scrape_failures_total",
                "Scrapes that ended with up=0.",
                &[],
            ),
            samples_scraped: reg.counter(
                "scrapewheel_samples_scraped_total",
                "Samples parsed from target bodies.",
                &[],
            ),
            samples_appended: reg.counter(
                "scrapewheel_samples_appended_total",
                "Samples committed to the append buffer, report series and staleness markers included.",
                &[],
            ),
            stale_markers: reg.counter(
                "scrapewheel_stale_markers_total",
                "Staleness markers written.",
                &[],
            ),
            body_bytes: reg.counter(
                "scrapewheel_scrape_body_bytes_total",
                "Decompressed body bytes read from targets.",
                &[],
            ),
            busy_ns: {
                // Counted in ns (an integer add per scrape), shown in the base unit.
                let c = Arc::new(Counter::default());
                let c2 = c.clone();
                reg.counter_fn(
                    "scrapewheel_worker_busy_seconds_total",
                    "Time workers spent on scrapes.",
                    &[],
                    move || c2.get() as f64 / 1e9,
                );
                c
            },
            panics: reg.counter(
                "scrapewheel_worker_panics_total",
                "Scrapes aborted by a panic (a bug: please report it).",
                &[],
            ),
            exceeded_sample_limit: reg.counter(
                "prometheus_target_scrapes_exceeded_sample_limit_total",
                "Scrapes that hit the sample limit and were rejected.",
                &[],
            ),
            exceeded_body_size_limit: reg.counter(
                "prometheus_target_scrapes_exceeded_body_size_limit_total",
                "Scrapes that hit the body size limit.",
                &[],
            ),
            exceeded_label_limits: reg.counter(
                "prometheus_target_scrape_pool_exceeded_label_limits_total",
                "Scrapes that hit a label limit.",
                &[],
            ),
            duplicate_samples: reg.counter(
                "prometheus_target_scrapes_sample_duplicate_timestamp_total",
                "Samples dropped because the same series appeared twice in one scrape.",
                &[],
            ),
            out_of_order_samples: reg.counter(
                "prometheus_target_scrapes_sample_out_of_order_total",
                "Samples dropped because their series already has a newer sample.",
                &[],
            ),
            out_of_bounds_samples: reg.counter(
                "prometheus_target_scrapes_sample_out_of_bounds_total",
                "Samples dropped because their timestamp is more than 10 minutes ahead.",
                &[],
            ),
        }
    }
}

/// What every worker shares.
pub struct WorkerContext {
    pub client: HttpClient,
    pub append: Arc<AppendBuffer>,
    pub metrics: WorkerMetrics,
    /// Set at shutdown: jobs still queued are skipped (the scrape in hand finishes), and
    /// no end-of-run markers are written, as in Prometheus.
    pub stopping: std::sync::atomic::AtomicBool,
    pub budget: Arc<MemoryBudget>,
    /// Where workers keep stored bodies and stage streamed scrapes (`<data>/work`,
    /// emptied at start); `None` keeps both in memory.
    pub work_dir: Option<PathBuf>,
}

/// The running pool.
pub struct WorkerPool {
    handles: Vec<JoinHandle<()>>,
}

impl WorkerPool {
    pub fn start(n: usize, rx: Receiver<Job>, ctx: Arc<WorkerContext>) -> std::io::Result<Self> {
        let mut handles = Vec::with_capacity(n);
        ctx.metrics.workers.set(n as f64);
        for i in 0..n {
            let rx = rx.clone();
            let ctx = ctx.clone();
            handles.push(
                std::thread::Builder::new()
                    .name(format!("sw-worker-{i}"))
                    .spawn(move || {
                        crate::priority::scrape_path();
                        run(i, rx, ctx)
                    })?,
            );
        }
        Ok(Self { handles })
    }

    /// Waits for every worker to exit (they do once the job channel disconnects).
    pub fn join(self) {
        for h in self.handles {
            let _ = h.join();
        }
    }
}

fn run(id: usize, rx: Receiver<Job>, ctx: Arc<WorkerContext>) {
    let new_scratch = || {
        Scratch::with_work_dir(
            ctx.work_dir.as_deref(),
            &format!("worker-{id}"),
            &ctx.budget,
        )
    };
    let mut scratch = new_scratch();
    while let Some(job) = rx.recv() {
        if ctx.stopping.load(Ordering::Acquire) {
            job.target.in_flight.store(false, Ordering::Release);
            continue;
        }
        let started = Instant::now();
        let target = job.target.clone();
        ctx.metrics.busy.add(1.0);
        let outcome = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| match job.kind {
            DueKind::Scrape => scrape_target(&ctx, &mut scratch, &job),
            DueKind::Final => end_of_run(&ctx, &mut scratch, &job),
        }));
        if outcome.is_err() {
            ctx.metrics.panics.inc();
            crate::error!(
                "scrape panicked; the target keeps its schedule",
                target = target.display_url(),
                job = target.job_name()
            );
            scratch = new_scratch();
        }
        if job.kind == DueKind::Scrape {
            target.in_flight.store(false, Ordering::Release);
        }
        ctx.metrics.busy.add(-1.0);
        ctx.metrics.busy_ns.add(started.elapsed().as_nanos() as u64);
    }
}

/// Per-worker buffers, reused across scrapes so the steady state allocates nothing per
/// sample.
pub struct Scratch {
    /// The body (buffered), or the current part and its carry (streamed).
    body: Vec<u8>,
    old_body: Vec<u8>,
    batch: Vec<u8>,
    walker: Walker,
    /// Series written this scrape without an explicit timestamp.
    seen: SeriesSet,
    /// Series tracked for staleness this scrape: during the walk only those with an
    /// explicit timestamp (when tracked), then sorted together with `seen`.
    cur: Vec<u64>,
    vanished: Vec<u64>,
    /// Samples written with an explicit timestamp: (series, timestamp).
    explicit: Vec<(u64, i64)>,
    /// Series of samples dropped as out of bounds or out of order.
    rejected: Vec<u64>,
    /// Series written, sorted (when that differs from `cur`).
    acc: Vec<u64>,
    /// Series looked up in or added to the scrape cache, sorted.
    looked_up: Vec<u64>,
    /// This worker's handles on the interval-length summaries (a few intervals at most).
    intervals: Vec<(Duration, Arc<IntervalSummary>)>,
    /// Where stored bodies go (`None`: memory).
    bodies_dir: Option<PathBuf>,
    /// A streamed scrape's batch, until it is known to succeed.
    staging: Staging,
    /// Size of a streamed part; bodies up to this size are walked whole.
    part_size: usize,
    /// The buffers' bytes in the memory budget.
    charge: Charge,
    /// Tests: never follow the last scrape's order, to compare with following.
    #[cfg(test)]
    never_follow: bool,
}

impl Default for Scratch {
    /// Everything in memory, no budget: for benches and tests.
    fn default() -> Self {
        Scratch {
            body: Vec::new(),
            old_body: Vec::new(),
            batch: Vec::new(),
            walker: Walker::default(),
            seen: SeriesSet::default(),
            cur: Vec::new(),
            vanished: Vec::new(),
            explicit: Vec::new(),
            rejected: Vec::new(),
            acc: Vec::new(),
            looked_up: Vec::new(),
            intervals: Vec::new(),
            bodies_dir: None,
            staging: Staging::new(None),
            part_size: 1 << 20,
            charge: Charge::default(),
            #[cfg(test)]
            never_follow: false,
        }
    }
}

impl Scratch {
    /// A worker's scratch: stored bodies and staged pieces in `dir` (memory without one),
    /// its buffers accounted in `budget`.
    pub fn with_work_dir(dir: Option<&Path>, name: &str, budget: &Arc<MemoryBudget>) -> Self {
        Scratch {
            bodies_dir: dir.map(Path::to_path_buf),
            staging: Staging::new(dir.map(|d| d.join(format!("{name}.staging")))),
            part_size: budget.part_size(),
            charge: Charge::new(budget, Part::Bodies),
            ..Scratch::default()
        }
    }

    /// Sets the size above which bodies are streamed, in parts of that size.
    pub fn set_part_size(&mut self, n: usize) {
        self.part_size = n.max(1);
    }

    /// Bytes held by the buffers that grow with a body.
    fn buffer_bytes(&self) -> u64 {
        (self.body.capacity()
            + self.old_body.capacity()
            + self.batch.capacity()
            + self.seen.heap_bytes()
            + (self.cur.capacity() + self.vanished.capacity() + self.acc.capacity()) * 8)
            as u64
    }

    /// The body buffer the HTTP stage fills (benches and tests fill it directly).
    pub fn body_mut(&mut self) -> &mut Vec<u8> {
        &mut self.body
    }

    /// The commit-ready batch left by [`process_scrape`].
    pub fn batch(&self) -> &[u8] {
        &self.batch
    }
}

/// Prometheus's timestamp tolerance: a scrape that starts within min(interval/100, 2ms)
/// of its slot is stamped with the slot time, so series get perfectly regular timestamps.
fn scrape_timestamp_ms(due_ns: u64, now_ns: u64, interval: Duration) -> i64 {
    let tolerance = (interval.as_nanos() as u64 / 100).min(2_000_000);
    let t = if now_ns.abs_diff(due_ns) <= tolerance {
        due_ns
    } else {
        now_ns
    };
    (t / 1_000_000) as i64
}

#[derive(Default)]
struct BatchInfo {
    samples: u64,
    min_ts: i64,
    max_ts: i64,
}

impl BatchInfo {
    fn piece(&self) -> Piece {
        Piece {
            len: 0,
            samples: self.samples,
            min_ts: self.min_ts,
            max_ts: self.max_ts,
        }
    }

    fn note(&mut self, ts: i64) {
        if self.samples == 0 {
            self.min_ts = ts;
            self.max_ts = ts;
        } else {
            self.min_ts = self.min_ts.min(ts);
            self.max_ts = self.max_ts.max(ts);
        }
        self.samples += 1;
    }
}

fn walk_config(target: &Target, scrape_ts: i64) -> WalkConfig<'_> {
    let c = &target.job.config;
    WalkConfig {
        target_labels: &target.series_labels,
        scrape_ts,
        honor_labels: c.honor_labels,
        honor_timestamps: c.honor_timestamps,
        label_limit: c.label_limit,
        label_name_length_limit: c.label_name_length_limit,
        label_value_length_limit: c.label_value_length_limit,
        metric_relabel: &c.metric_relabel_configs,
    }
}

fn scrape_target(ctx: &WorkerContext, s: &mut Scratch, job: &Job) {
    let target = &job.target;
    let cfg = &target.job.config;
    // Near the memory limit, wait for the flusher to make room before taking more in.
    ctx.budget.admit(target.timeout.min(target.interval) / 2);
    s.part_size = ctx.budget.part_size();
    let start = Instant::now();
    let start_ms = crate::time::unix_ms();
    let now_ns = crate::time::unix_ns();
    let ts = scrape_timestamp_ms(job.due_ns, now_ns, target.interval);
    let last_ns = std::mem::replace(&mut target.state.lock().last_start_ns, now_ns);
    if last_ns > 0 && now_ns > last_ns {
        interval_summary(ctx, s, target.interval).observe(now_ns - last_ns, now_ns);
    }
    let forced = target
        .forced_error
        .lock()
        .clone()
        .or_else(|| target.job.transport_error.clone());
    let mut opened: Option<BodyStream> = None;
    // The format, and whether the body was read whole (else the rest is streamed).
    let fetched: Result<Option<(Format, bool)>, ScrapeFailure> = match forced {
        Some(err) => Err(ScrapeFailure::Forced(err)),
        None => {
            s.body.clear();
            s.body
                .reserve(target.state.lock().body_hint.min(s.part_size));
            let req = ScrapeRequest {
                url: target.url.clone(),
                accept: target.job.accept.clone(),
                accept_encoding_gzip: cfg.enable_compression,
                timeout: target.timeout,
                body_size_limit: cfg.body_size_limit,
                auth: target.job.auth.clone(),
            };
            let client = target.job.client.as_ref().unwrap_or(&ctx.client);
            client
                .open(&req)
                .map_err(ScrapeFailure::from)
                .and_then(|mut st| {
                    let whole = read_up_to(&mut st, &mut s.body, s.part_size)?;
                    let format = body_format(st.content_type(), cfg.fallback_scrape_protocol);
                    opened = Some(st);
                    if whole && s.body.is_empty() {
                        return Ok(None);
                    }
                    format.map(|f| Some((f, whole)))
                })
        }
    };
    let out = match (fetched, opened.as_mut()) {
        (Ok(Some((f, false))), Some(st)) => {
            let mut rest =
                |buf: &mut Vec<u8>, max: usize| st.read_into(buf, max).map_err(ScrapeFailure::from);
            process_body(s, target, Ok(Some(f)), Some(&mut rest), ts, start)
        }
        (fetched, _) => process_body(
            s,
            target,
            fetched.map(|o| o.map(|(f, _)| f)),
            None,
            ts,
            start,
        ),
    };
    if let Some(st) = &opened {
        ctx.metrics.body_bytes.add(st.body_len() as u64);
    }
    drop(opened);
    if !s.staging.is_empty() {
        let (append, budget, key) = (&ctx.append, &ctx.budget, target.key);
        let replayed = s.staging.replay(&mut s.old_body, &mut |piece, p| {
            // Each part waits for the flusher rather than piling up in the buffer.
            budget.wait_for_append_room(STAGED_COMMIT_WAIT);
            append.commit(key, piece, p.samples, p.min_ts, p.max_ts);
        });
        if let Err(e) = replayed {
            crate::error!(
                "reading back a streamed scrape's staged samples failed; part of that scrape is lost",
                target = target.display_url(),
                err = e
            );
        }
    }
    ctx.append
        .commit(target.key, &s.batch, out.appended, out.min_ts, out.max_ts);
    {
        let mut state = target.state.lock();
        if !state.charge.is_attached() {
            state.charge = Charge::new(&ctx.budget, Part::Series);
        }
        let bytes = state.heap_bytes() as u64;
        state.charge.set(bytes);
    }

    let m = &ctx.metrics;
    m.scrapes.inc();
    m.samples_scraped.add(out.scraped);
    m.samples_appended.add(out.appended + out.staged);
    m.stale_markers.add(out.stale_markers);
    m.duplicate_samples.add(out.duplicates);
    m.out_of_order_samples.add(out.out_of_order);
    m.out_of_bounds_samples.add(out.out_of_bounds);
    match &out.result {
        Ok(()) => {}
        Err(e) => {
            m.failures.inc();
            // As Prometheus: a failed scrape is routine (it shows as up=0 and in the
            // API), so it is logged at debug only. The error names the URL without
            // credentials.
            crate::debug!(
                "scrape failed",
                job = target.job_name(),
                target = target.display_url(),
                err = e
            );
            match e {
                ScrapeFailure::SampleLimit { .. } => m.exceeded_sample_limit.inc(),
                ScrapeFailure::Http(h) if h.is_body_size_limit() => {
                    m.exceeded_body_size_limit.inc()
                }
                e if e.is_label_limit() => m.exceeded_label_limits.inc(),
                _ => {}
            }
        }
    }
    let mut h = target.health.lock();
    h.up = Some(out.result.is_ok());
    h.last_scrape_ms = start_ms;
    h.last_duration_s = out.duration_s;
    h.last_samples = out.scraped;
    h.last_error = out
        .result
        .as_ref()
        .err()
        .map(ToString::to_string)
        .unwrap_or_default();
    drop(h);
    // One huge body must not pin its buffers in this worker for good.
    if s.body.capacity() > 4 * s.body.len().max(s.part_size) {
        s.body = Vec::new();
    }
    if s.old_body.capacity() > 2 * s.part_size {
        s.old_body = Vec::new();
    }
    if s.batch.capacity() > 4 * s.batch.len().max(s.part_size) {
        s.batch = Vec::new();
    }
    let bytes = s.buffer_bytes();
    s.charge.set(bytes);
}

/// How long one staged part of a streamed scrape waits for the flusher to make room.
const STAGED_COMMIT_WAIT: Duration = Duration::from_secs(5);

/// Reads the body into `body` until it ends (returns true) or holds `limit` bytes
/// (returns false: the rest is to be streamed).
fn read_up_to(
    st: &mut BodyStream,
    body: &mut Vec<u8>,
    limit: usize,
) -> Result<bool, ScrapeFailure> {
    loop {
        let room = limit.saturating_sub(body.len());
        if room == 0 {
            return Ok(false);
        }
        if st.read_into(body, room)? == 0 {
            return Ok(true);
        }
    }
}

fn interval_summary<'s>(
    ctx: &WorkerContext,
    s: &'s mut Scratch,
    interval: Duration,
) -> &'s IntervalSummary {
    let i = match s.intervals.iter().position(|(i, _)| *i == interval) {
        Some(i) => i,
        None => {
            s.intervals
                .push((interval, ctx.metrics.interval_length.get(interval)));
            s.intervals.len() - 1
        }
    };
    &s.intervals[i].1
}

/// Picks the parser from the response's Content-Type, or the job's fallback.
fn body_format(
    content_type: Option<&str>,
    fallback: Option<crate::config::ScrapeProtocol>,
) -> Result<Format, ScrapeFailure> {
    match content_type {
        Some(ct) => match (Format::from_content_type(ct), fallback) {
            (Some(f), _) => Ok(f),
            (None, Some(p)) => Ok(fallback_format(p)),
            (None, None) => Err(ScrapeFailure::UnsupportedContentType(ct.to_string())),
        },
        None => fallback
            .map(fallback_format)
            .ok_or(ScrapeFailure::BlankContentType),
    }
}

/// What one scrape produced; the batch itself is in the scratch.
pub struct ScrapeOutcome {
    pub result: Result<(), ScrapeFailure>,
    /// Samples in the batch: series, staleness markers and report series.
    pub appended: u64,
    /// Samples of a streamed scrape staged in the scratch, to be committed before the
    /// batch.
    pub staged: u64,
    pub min_ts: i64,
    pub max_ts: i64,
    pub scraped: u64,
    pub post_relabel: u64,
    pub series_added: u64,
    pub stale_markers: u64,
    pub duplicates: u64,
    /// Samples older than their series' newest committed explicit timestamp.
    pub out_of_order: u64,
    /// Samples stamped more than 10 minutes after the scrape.
    pub out_of_bounds: u64,
    pub duration_s: f64,
}

/// How far ahead of the scrape an explicit timestamp may be (Prometheus's
/// `maxAheadTime`); later samples are dropped as out of bounds.
const MAX_AHEAD_MS: i64 = 10 * 60 * 1000;

/// Samples a scrape dropped without failing, by reason.
#[derive(Default)]
struct Tally {
    duplicates: u64,
    out_of_order: u64,
    out_of_bounds: u64,
}

/// Everything after the HTTP request: walks the body in `s` (when `fetched` says there is
/// one), diffs the series against the target's last scrape, writes staleness markers and
/// the report series, and leaves the commit-ready batch in the scratch. A failure leaves
/// only markers and the report (up=0) in the batch.
///
/// Per sample it does what Prometheus 3.x's append loop does (scrape/scrape.go): a
/// sample past `sample_limit` (which counts every sample left after relabeling), stamped
/// more than 10 minutes ahead, or older than its series' newest committed sample is not
/// written; the scrape goes on, and only the limit fails it. A series the same body
/// exposed before without a timestamp is not written twice. Only written samples are
/// tracked for staleness, and which count as added follows Prometheus's scrape cache
/// (`cache`).
pub fn process_scrape(
    s: &mut Scratch,
    target: &Target,
    fetched: Result<Option<Format>, ScrapeFailure>,
    ts: i64,
    started: Instant,
) -> ScrapeOutcome {
    process_body(s, target, fetched, None, ts, started)
}

/// [`process_scrape`], with the body either whole in the scratch (`more` is `None`) or
/// begun there and streamed from `more` in parts: walked part by part, its samples
/// staged (see [`stream`]) and its copy for staleness written as it goes.
fn process_body(
    s: &mut Scratch,
    target: &Target,
    fetched: Result<Option<Format>, ScrapeFailure>,
    more: Option<ReadMore<'_>>,
    ts: i64,
    started: Instant,
) -> ScrapeOutcome {
    let cfg = &target.job.config;
    let mut state = target.state.lock();
    let state = &mut *state;
    s.batch.clear();
    #[cfg(not(test))]
    let follow = state.prev_in_body_order;
    #[cfg(test)]
    let follow = state.prev_in_body_order && !s.never_follow;
    s.seen.reset(state.prev.len(), follow);
    s.cur.clear();
    s.vanished.clear();
    s.explicit.clear();
    s.rejected.clear();
    let mut info = BatchInfo::default();
    let mut stats = WalkStats::default();
    let mut tally = Tally::default();
    s.staging.clear();
    let mut staged = 0u64;
    let mut writer: Option<BodyWriter> = None;
    let streamed = more.is_some();
    let mut format = Format::PromText;
    let body_walked = matches!(fetched, Ok(Some(_)));
    let track_explicit = cfg.track_timestamps_staleness;
    let result = match fetched {
        Err(e) => Err(e),
        Ok(None) => Ok(()),
        Ok(Some(f)) => {
            format = f;
            let sample_limit = cfg.sample_limit;
            let max_ts = ts.saturating_add(MAX_AHEAD_MS);
            let mut attempts = 0u64;
            let mut limit_hit = false;
            let walked = {
                let ScrapeState {
                    relabel_cache,
                    ts_floor,
                    prev,
                    ..
                } = &mut *state;
                let floors = &*ts_floor;
                let prev: &[u64] = prev;
                let (batch, seen, cur, explicit, rejected, info, tally) = (
                    &mut s.batch,
                    &mut s.seen,
                    &mut s.cur,
                    &mut s.explicit,
                    &mut s.rejected,
                    &mut info,
                    &mut tally,
                );
                let (staging, staged) = (&mut s.staging, &mut staged);
                let spill_at = if streamed { s.part_size } else { usize::MAX };
                let mut emit = |x: Series<'_>| -> Result<(), ScrapeFailure> {
                    attempts += 1;
                    if sample_limit > 0 && attempts > sample_limit {
                        limit_hit = true;
                    }
                    if limit_hit {
                        // Not written, not tracked, and (as the scrape fails) nothing the
                        // cache needs: a failed scrape only adds what it saw.
                        return Ok(());
                    }
                    let rejected_now = if x.explicit_timestamp && x.timestamp > max_ts {
                        tally.out_of_bounds += 1;
                        true
                    } else if !floors.is_empty()
                        && floors.get(&x.hash).is_some_and(|f| x.timestamp < *f)
                    {
                        tally.out_of_order += 1;
                        true
                    } else {
                        false
                    };
                    if rejected_now {
                        rejected.push(x.hash);
                        return Ok(());
                    }
                    if x.explicit_timestamp {
                        explicit.push((x.hash, x.timestamp));
                        if track_explicit {
                            cur.push(x.hash);
                        }
                    } else if !seen.insert(x.hash, prev) {
                        tally.duplicates += 1;
                        return Ok(());
                    }
                    wire::put_series(batch, x.labels, x.value, x.timestamp);
                    info.note(x.timestamp);
                    if batch.len() >= spill_at {
                        staging
                            .spill(batch, info.piece())
                            .map_err(ScrapeFailure::Staging)?;
                        *staged += info.samples;
                        batch.clear();
                        *info = BatchInfo::default();
                    }
                    Ok(())
                };
                let wcfg = walk_config(target, ts);
                match more {
                    None => {
                        s.walker
                            .walk(&s.body, format, &wcfg, relabel_cache, &mut stats, &mut emit)
                    }
                    Some(read) => 'streamed: {
                        let created = BodyWriter::create(s.bodies_dir.as_deref(), format)
                            .and_then(|mut w| w.write(&s.body).map(|()| w));
                        let w = match created {
                            Ok(w) => writer.insert(w),
                            Err(e) => break 'streamed Err(ScrapeFailure::Staging(e)),
                        };
                        let mut tee = |buf: &mut Vec<u8>, max: usize| {
                            let at = buf.len();
                            let n = read(buf, max)?;
                            w.write(&buf[at..]).map_err(ScrapeFailure::Staging)?;
                            Ok(n)
                        };
                        let mut stream = WalkStream::new(format);
                        let walker = &mut s.walker;
                        walk_parts(&mut s.body, s.part_size, &mut tee, &mut |part, last| {
                            walker.walk_part(
                                part,
                                last,
                                &mut stream,
                                &wcfg,
                                relabel_cache,
                                &mut stats,
                                &mut emit,
                            )
                        })
                    }
                }
            };
            match walked {
                Err(e) => Err(e),
                Ok(()) if limit_hit => Err(ScrapeFailure::SampleLimit {
                    limit: sample_limit,
                }),
                Ok(()) => Ok(()),
            }
        }
    };
    if result.is_err() {
        // Rollback: nothing from the body is kept, only markers and the report.
        s.batch.clear();
        s.staging.clear();
        staged = 0;
        info = BatchInfo::default();
    }
    // The usual scrape: the same series as last time, in the same order, each once and
    // none dropped. Then nothing is new to the cache or to tracking and nothing vanished,
    // so the cache, the diff and the tracked list are left as they are.
    let unchanged = result.is_ok()
        && body_walked
        && s.seen.followed_all(&state.prev)
        && s.explicit.is_empty()
        && s.rejected.is_empty()
        && state.ts_floor.is_empty()
        && state.cache.is_steady();
    let (series_added, new_tracked) = if unchanged {
        state.cache.finish_unchanged(state.prev.len());
        (0, 0)
    } else {
        s.seen.stop_following(&state.prev);
        if state.prev_in_body_order {
            // Sorted from now on: kept so while its set does not change, so a target
            // whose order varies from scrape to scrape is not sorted again every time.
            state.prev.sort_unstable();
            state.prev_in_body_order = false;
        }
        let added = settle_cache(s, state, result.is_ok() && body_walked);
        (added, diff_sorted(&state.prev, &s.cur, &mut s.vanished))
    };
    let stale_markers = if s.vanished.is_empty() {
        0
    } else {
        write_stale_markers(s, state, target, ts, &mut info)
    };
    // After the markers: like Prometheus's out-of-order check, they compare with what was
    // committed before this scrape.
    if result.is_ok() {
        raise_floors(s, state, ts);
    }
    if new_tracked > 0 {
        // This body introduced a series: keep it so that series' labels can be recovered
        // when it vanishes.
        let stored = match writer.take() {
            Some(w) => w.finish(),
            None => BodyWriter::create(s.bodies_dir.as_deref(), format).and_then(|mut w| {
                w.write(&s.body)?;
                w.finish()
            }),
        };
        match stored {
            Ok(b) => state.body = Some(b),
            Err(e) => crate::warn!(
                "keeping the body for staleness markers failed; series that vanish from it get none",
                target = target.display_url(),
                err = e
            ),
        }
    }
    if let Some(w) = writer {
        w.discard();
    }
    if new_tracked > 0 || !s.vanished.is_empty() {
        // In body order when that is the whole tracked set, for the next scrape to follow.
        match s.seen.order() {
            Some(order)
                if result.is_ok() && s.explicit.is_empty() && order.len() == s.cur.len() =>
            {
                state.prev = order.into();
                state.prev_in_body_order = true;
            }
            _ => state.prev = s.cur.as_slice().into(),
        }
    }
    if state.prev.is_empty() {
        state.body = None;
    }
    state.body_hint = if streamed { s.part_size } else { s.body.len() };
    let duration_s = started.elapsed().as_secs_f64();
    let values = [
        if result.is_ok() { 1.0 } else { 0.0 },
        duration_s,
        stats.scraped as f64,
        stats.post_relabel as f64,
        series_added as f64,
    ];
    for (labels, v) in state.report_labels.iter().zip(values) {
        wire::put_series(&mut s.batch, labels, v, ts);
        info.note(ts);
    }
    ScrapeOutcome {
        result,
        appended: info.samples,
        staged,
        min_ts: info.min_ts,
        max_ts: info.max_ts,
        scraped: stats.scraped,
        post_relabel: stats.post_relabel,
        series_added,
        stale_markers,
        duplicates: tally.duplicates,
        out_of_order: tally.out_of_order,
        out_of_bounds: tally.out_of_bounds,
        duration_s,
    }
}

/// After a walk: builds the sorted tracked list in `s.cur`, counts the series new to the scrape
/// cache, and moves the cache on (a flush when the scrape succeeded with a body).
/// Returns `scrape_series_added`.
fn settle_cache(s: &mut Scratch, state: &mut ScrapeState, flush: bool) -> u64 {
    let explicit_tracked = !s.cur.is_empty();
    s.seen.sorted_into(&mut s.cur);
    if explicit_tracked {
        s.cur.sort_unstable();
        s.cur.dedup();
    }
    // What the scrape appended; in the common case (no explicit timestamps) exactly the
    // tracked list.
    let appended: &[u64] = if s.explicit.is_empty() {
        &s.cur
    } else {
        s.acc.clear();
        s.acc.extend(s.seen.iter());
        s.acc.extend(s.explicit.iter().map(|(h, _)| *h));
        s.acc.sort_unstable();
        s.acc.dedup();
        &s.acc
    };
    let added = state.cache.count_missing(&state.prev, appended);
    // A dropped sample of a cached series still refreshes its cache entry (it was looked
    // up); one of a new series is neither cached nor tracked (Prometheus 3.7+).
    let looked_up: &[u64] = if s.rejected.is_empty() {
        appended
    } else {
        s.looked_up.clear();
        s.looked_up.extend_from_slice(appended);
        s.looked_up.extend(
            s.rejected
                .iter()
                .copied()
                .filter(|h| state.cache.contains(&state.prev, *h)),
        );
        s.looked_up.sort_unstable();
        s.looked_up.dedup();
        &s.looked_up
    };
    state.cache.finish(looked_up, flush, &state.prev, &s.cur);
    if flush && !state.ts_floor.is_empty() {
        let (cache, prev) = (&state.cache, &s.cur);
        state.ts_floor.retain(|h, _| cache.contains(prev, *h));
    }
    added
}

/// A committed scrape raises each explicit-timestamp series' floor to its newest sample
/// (and keeps the floor of such a series current when it is scraped without one).
fn raise_floors(s: &Scratch, state: &mut ScrapeState, ts: i64) {
    for &(h, t) in &s.explicit {
        let floor = state.ts_floor.entry(h).or_insert(t);
        *floor = (*floor).max(t);
    }
    if !state.ts_floor.is_empty() {
        for h in s.seen.iter() {
            if let Some(floor) = state.ts_floor.get_mut(&h) {
                *floor = (*floor).max(ts);
            }
        }
    }
}

fn fallback_format(p: crate::config::ScrapeProtocol) -> Format {
    use crate::config::ScrapeProtocol as P;
    match p {
        P::OpenMetricsText0_0_1 | P::OpenMetricsText1_0_0 => Format::OpenMetrics,
        P::PrometheusText0_0_4 | P::PrometheusText1_0_0 => Format::PromText,
    }
}

/// Re-walks the stored body and writes a staleness marker for each series in
/// `s.vanished`. Returns the number written.
fn write_stale_markers(
    s: &mut Scratch,
    state: &mut ScrapeState,
    target: &Target,
    ts: i64,
    info: &mut BatchInfo,
) -> u64 {
    let ScrapeState {
        body,
        relabel_cache,
        ts_floor,
        ..
    } = state;
    let Some(stored) = body else {
        return 0;
    };
    let Ok(mut reader) = stored.reader() else {
        return 0;
    };
    let mut done = vec![false; s.vanished.len()];
    let mut written = 0u64;
    let vanished = &s.vanished;
    let batch = &mut s.batch;
    let floors = &*ts_floor;
    let mut emit = |x: Series<'_>| -> Result<(), ScrapeFailure> {
        if let Ok(i) = vanished.binary_search(&x.hash) {
            if !done[i] {
                done[i] = true;
                // A marker older than the series' newest sample would be out of order;
                // Prometheus drops it silently.
                if floors.get(&x.hash).is_some_and(|f| ts < *f) {
                    return Ok(());
                }
                wire::put_series(batch, x.labels, wire::stale_nan(), ts);
                info.note(ts);
                written += 1;
            }
        }
        Ok(())
    };
    let mut read = |buf: &mut Vec<u8>, max: usize| -> Result<usize, ScrapeFailure> {
        let at = buf.len();
        buf.resize(at + max, 0);
        let n = reader.read(&mut buf[at..]).map_err(ScrapeFailure::Staging);
        buf.truncate(at + *n.as_ref().unwrap_or(&0));
        n
    };
    let wcfg = walk_config(target, ts);
    let mut stream = WalkStream::new(stored.format);
    let walker = &mut s.walker;
    s.old_body.clear();
    // The body parsed before (up to any error); an error now only ends the pass early.
    let _ = walk_parts(
        &mut s.old_body,
        s.part_size,
        &mut read,
        &mut |part, last| {
            walker.walk_part(
                part,
                last,
                &mut stream,
                &wcfg,
                relabel_cache,
                &mut WalkStats::default(),
                &mut emit,
            )
        },
    );
    written
}

/// A removed target: staleness markers for every series it last exposed and for its
/// report series, at the slot time, then its memory is released.
fn end_of_run(ctx: &WorkerContext, s: &mut Scratch, job: &Job) {
    let target = &job.target;
    let mut state = target.state.lock();
    let ts = (job.due_ns / 1_000_000) as i64;
    s.batch.clear();
    s.vanished.clear();
    s.vanished.extend_from_slice(&state.prev);
    if state.prev_in_body_order {
        s.vanished.sort_unstable();
    }
    let mut info = BatchInfo::default();
    let mut n = write_stale_markers(s, &mut state, target, ts, &mut info);
    let scraped_before = target.health.lock().up.is_some();
    if scraped_before {
        for labels in &state.report_labels {
            wire::put_series(&mut s.batch, labels, wire::stale_nan(), ts);
            info.note(ts);
            n += 1;
        }
    }
    state.prev = Box::new([]);
    state.prev_in_body_order = false;
    state.body = None;
    state.relabel_cache = HashKeyed::default();
    state.cache = cache::SeriesCache::default();
    state.ts_floor = HashKeyed::default();
    let bytes = state.heap_bytes() as u64;
    state.charge.set(bytes);
    drop(state);
    if info.samples > 0 {
        ctx.append
            .commit(target.key, &s.batch, info.samples, info.min_ts, info.max_ts);
    }
    ctx.metrics.stale_markers.add(n);
    ctx.metrics.samples_appended.add(info.samples);
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::labels::{LabelSet, ADDRESS};

    /// The `__name__` of a decoded series ("" without one).
    fn metric_name<'a>(d: &wire::DecodedSeries<'a>) -> &'a str {
        d.labels
            .iter()
            .find(|l| l.0 == "__name__")
            .map_or("", |l| l.1)
    }

    fn target(extra: &str) -> Target {
        let cfg = crate::target::tests::job(extra);
        let labels = LabelSet::from_pairs([(ADDRESS, "h:1"), ("instance", "h:1"), ("job", "j")]);
        Target::new(
            Arc::new(crate::pool::job_context(cfg)),
            labels,
            LabelSet::new(),
        )
    }

    /// One scrape of `body` (None: the request failed) at `ts`: the batch as sorted
    /// `name{labels} value@ts` lines without the target labels, and the outcome.
    fn scrape(
        s: &mut Scratch,
        t: &Target,
        body: Option<&str>,
        ts: i64,
    ) -> (Vec<String>, ScrapeOutcome) {
        s.body.clear();
        let fetched = match body {
            None => Err(ScrapeFailure::Forced("down".into())),
            Some("") => Ok(None),
            Some(b) => {
                s.body.extend_from_slice(b.as_bytes());
                Ok(Some(Format::PromText))
            }
        };
        let out = process_scrape(s, t, fetched, ts, Instant::now());
        let mut lines = Vec::new();
        wire::decode_write_request(&s.batch, |d| {
            let name = metric_name(&d);
            if name == "scrape_duration_seconds" {
                return;
            }
            let rest: Vec<String> = d
                .labels
                .iter()
                .filter(|l| !matches!(l.0, "__name__" | "job" | "instance"))
                .map(|(n, v)| format!("{n}={v}"))
                .collect();
            let (v, at) = d.samples[0];
            let v = if wire::is_stale_nan(v) {
                "stale".to_string()
            } else {
                v.to_string()
            };
            let at = if at == ts {
                String::new()
            } else {
                format!("@{at}")
            };
            lines.push(format!("{name}{{{}}} {v}{at}", rest.join(",")));
        })
        .expect("batch decodes");
        lines.sort();
        (lines, out)
    }

    fn find<'a>(lines: &'a [String], prefix: &str) -> Vec<&'a str> {
        lines
            .iter()
            .filter(|l| l.starts_with(prefix))
            .map(String::as_str)
            .collect()
    }

    #[test]
    fn series_added_follows_prometheus_scrape_cache() {
        let (t, mut s) = (target(""), Scratch::default());
        let (_, o) = scrape(&mut s, &t, Some("a 1\nb 1\n"), 1000);
        assert_eq!(o.series_added, 2);
        // Failed and empty scrapes mark the series stale but forget nothing: when the
        // target recovers, nothing counts as added (as Prometheus reports it).
        let (l, o) = scrape(&mut s, &t, None, 2000);
        assert_eq!(find(&l, "a{}"), ["a{} stale"]);
        assert_eq!((o.series_added, o.stale_markers), (0, 2));
        let (_, o) = scrape(&mut s, &t, Some(""), 3000);
        assert_eq!(o.series_added, 0);
        let (l, o) = scrape(&mut s, &t, Some("a 1\nb 1\n"), 4000);
        assert_eq!((o.series_added, find(&l, "up{}")[0]), (0, "up{} 1"));
        // A series gone for a whole successful scrape is new again when it returns.
        let (_, o) = scrape(&mut s, &t, Some("a 1\n"), 5000);
        assert_eq!((o.series_added, o.stale_markers), (0, 1));
        let (_, o) = scrape(&mut s, &t, Some("a 1\nb 1\n"), 6000);
        assert_eq!(o.series_added, 1);
    }

    #[test]
    fn samples_past_the_limit_are_not_tracked() {
        let (t, mut s) = (target("sample_limit = 2\n"), Scratch::default());
        scrape(&mut s, &t, Some("s1 1\ns2 1\n"), 1000);
        let (l, o) = scrape(&mut s, &t, Some("s1 2\ns2 2\ns3 2\n"), 2000);
        assert!(o.result.is_err());
        assert_eq!((o.series_added, o.stale_markers), (0, 0), "{l:?}");
        // s3 (new, past the limit) was never written, so it gets no marker when it goes.
        let (_, o) = scrape(&mut s, &t, Some("s1 3\n"), 3000);
        assert_eq!(o.stale_markers, 1);
        // A cached series past the limit is not tracked either, so it is marked stale
        // although still exposed, exactly as in Prometheus.
        let (l, o) = scrape(&mut s, &t, Some("s3 4\ns2 4\ns1 4\n"), 4000);
        assert!(o.result.is_err());
        let series: Vec<&String> = l.iter().filter(|l| !l.starts_with("scrape_")).collect();
        assert_eq!(series, ["s1{} stale", "up{} 0"]);
        // s3 and s2 were appended (under the limit) and were not cached: they count.
        assert_eq!((o.post_relabel, o.series_added), (3, 2));
    }

    #[test]
    fn explicit_timestamps_are_bounded_and_ordered() {
        let (t, mut s) = (target(""), Scratch::default());
        let ahead = 1_000_000 + MAX_AHEAD_MS;
        let body = format!("far 1 {}\nedge 1 {ahead}\nn 1 5000\nplain 1\n", ahead + 1);
        let (l, o) = scrape(&mut s, &t, Some(&body), 1_000_000);
        assert_eq!(o.out_of_bounds, 1);
        assert!(find(&l, "far").is_empty() && find(&l, "edge").len() == 1);
        // Explicitly stamped series are new to the cache like any other.
        assert_eq!(o.series_added, 3);
        let (l, o) = scrape(&mut s, &t, Some("n 2 4000\nplain 2\n"), 1_001_000);
        assert_eq!(o.out_of_order, 1);
        assert!(find(&l, "n{}").is_empty());
        let (l, o) = scrape(&mut s, &t, Some("n 3 5000\nplain 3\n"), 1_002_000);
        assert_eq!((o.out_of_order, find(&l, "n{}")), (0, vec!["n{} 3@5000"]));
        assert!(o.result.is_ok());
        // A tracked series that turns up stamped ahead is no longer tracked: its marker
        // goes out at the scrape time, checked against what was committed before.
        let (l, _) = scrape(&mut s, &t, Some("n 4 5000\nplain 4 1063000\n"), 1_003_000);
        assert_eq!(find(&l, "plain"), ["plain{} 4@1063000", "plain{} stale"]);
    }

    #[test]
    fn a_body_that_repeats_its_series_is_followed_and_every_change_is_caught() {
        let (t, mut s) = (target(""), Scratch::default());
        let mut step = |body: Option<&str>, ts: i64| {
            let (l, o) = scrape(&mut s, &t, body, ts);
            let in_order = t.state.lock().prev_in_body_order;
            (l, (o.series_added, o.stale_markers, o.duplicates), in_order)
        };
        assert_eq!(step(Some("a 1\nb 1\nc 1\n"), 1000).1, (3, 0, 0));
        let (_, counts, in_order) = step(Some("a 2\nb 2\nc 2\n"), 2000);
        assert_eq!((counts, in_order), ((0, 0, 0), true));
        let (l, counts, _) = step(Some("a 3\nc 3\n"), 3000);
        assert_eq!((counts, find(&l, "b{}")), ((0, 1, 0), vec!["b{} stale"]));
        assert_eq!(step(Some("a 4\nc 4\n"), 4000).1, (0, 0, 0));
        // The same series in another order: nothing changes, and the list is kept sorted.
        let (_, counts, in_order) = step(Some("c 5\na 5\n"), 5000);
        assert_eq!((counts, in_order), ((0, 0, 0), false));
        let (_, counts, in_order) = step(Some("c 6\na 6\nb 6\n"), 6000);
        assert_eq!((counts, in_order), ((1, 0, 0), true));
        // A repeat of a followed series is a duplicate.
        let (l, counts, _) = step(Some("c 7\na 7\nb 7\nc 8\n"), 7000);
        assert_eq!((counts, find(&l, "c{}")), ((0, 0, 1), vec!["c{} 7"]));
        // A prefix of the sequence: the rest goes stale.
        assert_eq!(step(Some("c 9\n"), 9000).1, (0, 2, 0));
        assert_eq!(step(Some("c 10\na 10\nb 10\n"), 10_000).1, (2, 0, 0));
        // A failure, then the same body: markers, then nothing new to the cache.
        assert_eq!(step(None, 11_000).1, (0, 3, 0));
        assert_eq!(step(Some("c 12\na 12\nb 12\n"), 12_000).1, (0, 0, 0));
        // A followed series turning up with a timestamp is no longer tracked.
        let (l, counts, _) = step(Some("c 13\na 13\nb 13 12500\n"), 13_000);
        assert_eq!(counts, (0, 1, 0));
        assert_eq!(find(&l, "b{}"), ["b{} 13@12500", "b{} stale"]);
    }

    #[test]
    fn a_removed_target_marks_every_series_of_a_followed_body_stale() {
        let t = Arc::new(target(""));
        let mut s = Scratch::default();
        let body: String = (0..20).map(|i| format!("s{i:02} 1\n")).collect();
        scrape(&mut s, &t, Some(&body), 1000);
        scrape(&mut s, &t, Some(&body), 2000);
        assert!(t.state.lock().prev_in_body_order, "kept in body order");
        let ctx = WorkerContext {
            client: HttpClient::new(),
            append: AppendBuffer::new(4, 2000, MemoryBudget::unlimited()),
            metrics: WorkerMetrics::new(&Arc::new(crate::metrics::Registry::default())),
            stopping: std::sync::atomic::AtomicBool::new(false),
            budget: MemoryBudget::unlimited(),
            work_dir: None,
        };
        let job = Job {
            target: t.clone(),
            due_ns: 3_000_000_000,
            kind: DueKind::Final,
        };
        end_of_run(&ctx, &mut s, &job);
        let mut stale = Vec::new();
        wire::decode_write_request(&s.batch, |d| {
            let name = metric_name(&d);
            if name.starts_with('s')
                && !name.starts_with("scrape_")
                && wire::is_stale_nan(d.samples[0].0)
            {
                stale.push(name.to_string());
            }
        })
        .expect("batch decodes");
        stale.sort();
        let want: Vec<String> = (0..20).map(|i| format!("s{i:02}")).collect();
        assert_eq!(stale, want, "every series of the last body ends stale");
    }

    #[test]
    fn following_changes_no_outcome_over_a_random_run_of_bodies() {
        let (t1, t2) = (target(""), target(""));
        let mut follows = Scratch::default();
        let mut never = Scratch {
            never_follow: true,
            ..Scratch::default()
        };
        let names = ["a", "b{x=\"1\"}", "b{x=\"2\"}", "c", "d", "e"];
        let mut x = 0x2545_f491_4f6c_dd1du64;
        let mut rand = move |n: u64| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x % n
        };
        let mut last = String::new();
        let mut followed = 0;
        for i in 0..400i64 {
            let ts = 1_000_000 + i * 1000;
            let body = match rand(10) {
                // Most often the body repeats its series in the same order.
                0..=4 if !last.is_empty() => last.clone(),
                5 => String::new(),
                // The same series plus one with a timestamp, or one far ahead.
                6 if !last.is_empty() => {
                    let stamp = if rand(2) == 0 { ts - 1 } else { ts + 3_600_000 };
                    format!("{last}z 1 {stamp}\n")
                }
                _ => {
                    let mut b = String::new();
                    for _ in 0..rand(8) {
                        let n = names[rand(names.len() as u64) as usize];
                        let stamp = if rand(12) == 0 {
                            format!(" {}", ts - 1)
                        } else {
                            String::new()
                        };
                        b.push_str(&format!("{n} {i}{stamp}\n"));
                    }
                    b
                }
            };
            let body = if rand(25) == 0 {
                None
            } else {
                Some(body.as_str())
            };
            if body.is_some_and(|b| b == last) && t1.state.lock().prev_in_body_order {
                followed += 1;
            }
            let (l1, o1) = scrape(&mut follows, &t1, body, ts);
            let (l2, o2) = scrape(&mut never, &t2, body, ts);
            assert_eq!(l1, l2, "scrape {i}: {body:?}");
            let counts = |o: &ScrapeOutcome| {
                (
                    o.result.is_ok(),
                    o.appended,
                    o.series_added,
                    o.stale_markers,
                    o.duplicates,
                    o.out_of_order,
                )
            };
            assert_eq!(counts(&o1), counts(&o2), "scrape {i}: {body:?}");
            let sorted = |t: &Target| {
                let mut p = t.state.lock().prev.to_vec();
                p.sort_unstable();
                p
            };
            assert_eq!(sorted(&t1), sorted(&t2), "scrape {i}");
            if let Some(b) = body {
                last = b.to_string();
            }
        }
        assert!(
            followed > 50,
            "the run follows often enough to test it: {followed}"
        );
    }

    #[test]
    fn timestamp_snaps_to_slot_within_tolerance() {
        let i = Duration::from_secs(10);
        let due = 1_700_000_000_000_000_000u64;
        assert_eq!(
            scrape_timestamp_ms(due, due + 1_500_000, i),
            1_700_000_000_000
        );
        assert_eq!(
            scrape_timestamp_ms(due, due + 2_500_000, i),
            1_700_000_000_002
        );
        // A 100ms interval has a 1ms tolerance.
        assert_eq!(
            scrape_timestamp_ms(due, due + 1_500_000, Duration::from_millis(100)),
            1_700_000_000_001
        );
    }
}

#[cfg(test)]
mod streamed_tests {
    use super::*;
    use crate::labels::{LabelSet, ADDRESS};

    fn target(extra: &str) -> Target {
        let cfg = crate::target::tests::job(extra);
        let labels = LabelSet::from_pairs([(ADDRESS, "h:1"), ("instance", "h:1"), ("job", "j")]);
        Target::new(
            Arc::new(crate::pool::job_context(cfg)),
            labels,
            LabelSet::new(),
        )
    }

    /// A body with what crosses parts: families whose TYPE is parts before their
    /// samples (le/quantile re-spelling), escaped and multi-line label values.
    fn body(n: usize, skip: impl Fn(usize) -> bool) -> String {
        let mut b = String::from("# TYPE h histogram\n");
        for i in 0..n {
            if skip(i) {
                continue;
            }
            b.push_str(&format!("h_bucket{{i=\"{i}\",le=\"{}\"}} {i}\n", i % 7));
            b.push_str(&format!(
                "c_total{{i=\"{i}\",esc=\"a\\\"b\\\\c\\n\"}} {i}.5\n"
            ));
            if i % 50 == 0 {
                b.push_str(&format!("m{{i=\"{i}\",raw=\"line\nbreak\"}} 1\n"));
            }
        }
        b.push_str("# TYPE s summary\ns{quantile=\"1\"} 3\n");
        b
    }

    /// One scrape: everything the commit would carry (staged pieces, then the batch),
    /// decoded, and the outcome.
    fn scrape(
        s: &mut Scratch,
        t: &Target,
        body: &str,
        ts: i64,
        part: Option<usize>,
    ) -> (Vec<String>, ScrapeOutcome) {
        s.body.clear();
        let out = match part {
            None => {
                s.body.extend_from_slice(body.as_bytes());
                process_scrape(s, t, Ok(Some(Format::PromText)), ts, Instant::now())
            }
            Some(p) => {
                s.set_part_size(p);
                let first = p.min(body.len());
                s.body.extend_from_slice(&body.as_bytes()[..first]);
                let mut at = first;
                let mut rest = |buf: &mut Vec<u8>, max: usize| {
                    let n = max.min(body.len() - at).min(777);
                    buf.extend_from_slice(&body.as_bytes()[at..at + n]);
                    at += n;
                    Ok(n)
                };
                process_body(
                    s,
                    t,
                    Ok(Some(Format::PromText)),
                    Some(&mut rest),
                    ts,
                    Instant::now(),
                )
            }
        };
        let mut all = Vec::new();
        s.staging
            .replay(&mut Vec::new(), &mut |b, _| all.extend_from_slice(b))
            .expect("replays");
        all.extend_from_slice(&s.batch);
        let mut lines = Vec::new();
        wire::decode_write_request(&all, |d| {
            let labels: Vec<String> = d.labels.iter().map(|(n, v)| format!("{n}={v:?}")).collect();
            let (v, at) = d.samples[0];
            if !labels.iter().any(|l| l.contains("scrape_duration")) {
                let v = if wire::is_stale_nan(v) {
                    "stale".into()
                } else {
                    v.to_string()
                };
                lines.push(format!("{} {v} @{at}", labels.join(",")));
            }
        })
        .expect("decodes");
        (lines, out)
    }

    fn summary(o: &ScrapeOutcome) -> (bool, u64, u64, u64, u64, u64) {
        (
            o.result.is_ok(),
            o.appended + o.staged,
            o.scraped,
            o.post_relabel,
            o.series_added,
            o.stale_markers,
        )
    }

    #[test]
    fn a_streamed_scrape_equals_a_buffered_one_including_staleness() {
        let (tb, ts_) = (target(""), target(""));
        let (mut b, mut s) = (Scratch::default(), Scratch::default());
        let first = body(400, |_| false);
        let second = body(400, |i| i % 3 == 0);
        for (i, text) in [&first, &second, &first].into_iter().enumerate() {
            let ts = 1000 * (i as i64 + 1);
            let (lb, ob) = scrape(&mut b, &tb, text, ts, None);
            let (ls, os) = scrape(&mut s, &ts_, text, ts, Some(1024));
            assert!(os.staged > 0, "scrape {i} was not streamed");
            assert_eq!(ls, lb, "scrape {i}");
            assert_eq!(summary(&os), summary(&ob), "scrape {i}");
        }
        // The second scrape dropped a third of the series: markers came from the stored
        // body, re-read in parts.
        let (ls, _) = scrape(&mut s, &ts_, &body(400, |i| i % 2 == 0), 9000, Some(1024));
        assert!(ls.iter().filter(|l| l.contains(" stale ")).count() > 100);
    }

    #[test]
    fn a_streamed_scrape_fails_like_a_buffered_one_and_stages_nothing() {
        let text = body(300, |_| false);
        for extra in ["sample_limit = 500", "label_limit = 1"] {
            let (tb, ts_) = (target(extra), target(extra));
            let (mut b, mut s) = (Scratch::default(), Scratch::default());
            let (lb, ob) = scrape(&mut b, &tb, &text, 1000, None);
            let (ls, os) = scrape(&mut s, &ts_, &text, 1000, Some(1024));
            assert!(ob.result.is_err(), "{extra}");
            assert_eq!(
                os.result.as_ref().map_err(ToString::to_string),
                ob.result.as_ref().map_err(ToString::to_string)
            );
            assert_eq!((ls, summary(&os)), (lb, summary(&ob)));
            assert!(s.staging.is_empty());
        }
        let bad = format!("{text}bad{{ 1\n");
        let (tb, ts_) = (target(""), target(""));
        let (mut b, mut s) = (Scratch::default(), Scratch::default());
        let (_, ob) = scrape(&mut b, &tb, &bad, 1000, None);
        let (_, os) = scrape(&mut s, &ts_, &bad, 1000, Some(1024));
        let e = ob
            .result
            .as_ref()
            .map_err(ToString::to_string)
            .expect_err("fails");
        assert_eq!(os.result.as_ref().map_err(ToString::to_string), Err(e));
    }

    #[test]
    fn stored_bodies_live_in_the_work_dir_and_go_with_their_target() {
        let dir = tempfile::tempdir().expect("tempdir");
        let budget = crate::budget::MemoryBudget::unlimited();
        let mut s = Scratch::with_work_dir(Some(dir.path()), "w", &budget);
        let t = target("");
        let files = || std::fs::read_dir(dir.path()).map_or(0, |d| d.count());
        scrape(&mut s, &t, &body(50, |_| false), 1000, None);
        assert_eq!(files(), 1, "one stored body");
        assert_eq!(
            t.state.lock().body.as_ref().map(|b| b.heap_bytes()),
            Some(0),
            "kept on disk, not in memory"
        );
        let (lines, _) = scrape(&mut s, &t, &body(50, |i| i < 10), 2000, None);
        assert_eq!(
            lines.iter().filter(|l| l.contains(" stale ")).count(),
            10 * 2 + 1
        );
        drop(t);
        assert_eq!(files(), 0, "removed with its target");
    }
}
