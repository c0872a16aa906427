//! Self-metrics: a small registry of counters, gauges, histograms and summaries rendered in
//! the Prometheus text format on `/metrics`.
//!
//! Registration takes a lock and allocates; it happens when a component or job starts.
//! The hot path only touches the returned `Arc<Counter>`/`Arc<Gauge>` (one relaxed atomic
//! add) or an [`IntervalSummary`] (two). Histograms and summaries are registered as
//! closures that take a snapshot at render time, so their owners keep whatever cheap
//! representation suits them ([`RecentSummary`] for rare events, [`IntervalSummary`] for
//! per-scrape ones, the wheel's own lag histogram). Rendering walks the registry under its
//! lock; it must stay cheap because the default config scrapes it every 10s.

use parking_lot::Mutex;
use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

/// A monotonically increasing count.
#[derive(Debug, Default)]
pub struct Counter(AtomicU64);

impl Counter {
    #[inline]
    pub fn inc(&self) {
        self.0.fetch_add(1, Ordering::Relaxed);
    }
    #[inline]
    pub fn add(&self, n: u64) {
        self.0.fetch_add(n, Ordering::Relaxed);
    }
    pub fn get(&self) -> u64 {
        self.0.load(Ordering::Relaxed)
    }
}

/// A value that goes up and down, stored as f64 bits.
#[derive(Debug, Default)]
pub struct Gauge(AtomicU64);

impl Gauge {
    pub fn set(&self, v: f64) {
        self.0.store(v.to_bits(), Ordering::Relaxed);
    }
    pub fn get(&self) -> f64 {
        f64::from_bits(self.0.load(Ordering::Relaxed))
    }
    pub fn add(&self, d: f64) {
        let _ = self
            .0
            .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |b| {
                Some((f64::from_bits(b) + d).to_bits())
            });
    }
}

type GaugeFn = Box<dyn Fn() -> f64 + Send + Sync>;
type HistogramFn = Box<dyn Fn() -> HistogramSnapshot + Send + Sync>;
type SummaryFn = Box<dyn Fn() -> SummarySnapshot + Send + Sync>;

/// A histogram at render time.
#[derive(Debug, Clone, PartialEq)]
pub struct HistogramSnapshot {
    /// `(upper bound, cumulative count)`, ascending; `+Inf` is added from `count`.
    pub buckets: Vec<(f64, u64)>,
    pub sum: f64,
    pub count: u64,
}

/// A summary at render time.
#[derive(Debug, Clone, PartialEq)]
pub struct SummarySnapshot {
    /// `(quantile, value)`; the value is NaN when the window holds no observation, as in
    /// client_golang.
    pub quantiles: Vec<(f64, f64)>,
    pub sum: f64,
    pub count: u64,
}

/// client_golang's default summary objectives, which Prometheus's own summaries use.
pub const QUANTILES: [f64; 5] = [0.01, 0.05, 0.5, 0.9, 0.99];

enum Metric {
    Counter(Arc<Counter>),
    Gauge(Arc<Gauge>),
    GaugeFn(GaugeFn),
    Recent(Arc<RecentSummary>),
    Histogram(HistogramFn),
    Summary(SummaryFn),
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Kind {
    Counter,
    Gauge,
    Histogram,
    Summary,
}

struct Family {
    help: &'static str,
    kind: Kind,
    /// Rendered label set (`{a="b"}` or "") → metric.
    series: BTreeMap<String, Metric>,
}

/// The process-wide set of self-metrics.
#[derive(Default)]
pub struct Registry {
    families: Mutex<BTreeMap<&'static str, Family>>,
}

fn render_labels(labels: &[(&str, &str)]) -> String {
    if labels.is_empty() {
        return String::new();
    }
    let mut sorted: Vec<_> = labels.to_vec();
    sorted.sort();
    let mut s = String::from("{");
    for (i, (k, v)) in sorted.iter().enumerate() {
        if i > 0 {
            s.push(',');
        }
        let _ = write!(s, "{k}=\"");
        let _ = crate::labels::write_escaped(&mut s, v);
        s.push('"');
    }
    s.push('}');
    s
}

impl Registry {
    pub fn new() -> Arc<Self> {
        Arc::new(Self::default())
    }

    fn register(
        &self,
        name: &'static str,
        help: &'static str,
        kind: Kind,
        labels: &[(&str, &str)],
        make: impl FnOnce() -> Metric,
        existing: impl FnOnce(&Metric) -> Option<Metric>,
    ) -> Option<Metric> {
        let mut families = self.families.lock();
        let family = families.entry(name).or_insert_with(|| Family {
            help,
            kind,
            series: BTreeMap::new(),
        });
        let key = render_labels(labels);
        if let Some(m) = family.series.get(&key) {
            if let Some(found) = existing(m) {
                return Some(found);
            }
        }
        family.series.insert(key, make());
        None
    }

    /// Returns the metric `name{labels}` of type `T`, creating it on first use (a series
    /// registered under another type is replaced).
    fn shared<T: Default>(
        &self,
        name: &'static str,
        help: &'static str,
        kind: Kind,
        labels: &[(&str, &str)],
        wrap: fn(Arc<T>) -> Metric,
        unwrap: fn(&Metric) -> Option<&Arc<T>>,
    ) -> Arc<T> {
        let fresh = Arc::new(T::default());
        let made = fresh.clone();
        match self.register(
            name,
            help,
            kind,
            labels,
            move || wrap(made),
            |m| unwrap(m).map(|t| wrap(t.clone())),
        ) {
            Some(existing) => unwrap(&existing).cloned().unwrap_or(fresh),
            None => fresh,
        }
    }

    /// Returns the counter `name{labels}`, creating it on first use.
    pub fn counter(
        &self,
        name: &'static str,
        help: &'static str,
        labels: &[(&str, &str)],
    ) -> Arc<Counter> {
        self.shared(
            name,
            help,
            Kind::Counter,
            labels,
            Metric::Counter,
            |m| match m {
                Metric::Counter(c) => Some(c),
                _ => None,
            },
        )
    }

    /// Returns the gauge `name{labels}`, creating it on first use.
    pub fn gauge(
        &self,
        name: &'static str,
        help: &'static str,
        labels: &[(&str, &str)],
    ) -> Arc<Gauge> {
        self.shared(
            name,
            help,
            Kind::Gauge,
            labels,
            Metric::Gauge,
            |m| match m {
                Metric::Gauge(g) => Some(g),
                _ => None,
            },
        )
    }

    /// Returns the summary `name{labels}` over its recent observations, creating it on
    /// first use.
    pub fn summary(
        &self,
        name: &'static str,
        help: &'static str,
        labels: &[(&str, &str)],
    ) -> Arc<RecentSummary> {
        self.shared(
            name,
            help,
            Kind::Summary,
            labels,
            Metric::Recent,
            |m| match m {
                Metric::Recent(s) => Some(s),
                _ => None,
            },
        )
    }

    /// Registers a gauge computed at render time (replacing any previous one).
    pub fn gauge_fn(
        &self,
        name: &'static str,
        help: &'static str,
        labels: &[(&str, &str)],
        f: impl Fn() -> f64 + Send + Sync + 'static,
    ) {
        self.register(
            name,
            help,
            Kind::Gauge,
            labels,
            move || Metric::GaugeFn(Box::new(f)),
            |_| None,
        );
    }

    /// Like [`Registry::gauge_fn`] but rendered with counter type.
    pub fn counter_fn(
        &self,
        name: &'static str,
        help: &'static str,
        labels: &[(&str, &str)],
        f: impl Fn() -> f64 + Send + Sync + 'static,
    ) {
        self.register(
            name,
            help,
            Kind::Counter,
            labels,
            move || Metric::GaugeFn(Box::new(f)),
            |_| None,
        );
    }

    /// Registers a histogram whose snapshot is taken at render time (replacing any
    /// previous one).
    pub fn histogram_fn(
        &self,
        name: &'static str,
        help: &'static str,
        labels: &[(&str, &str)],
        f: impl Fn() -> HistogramSnapshot + Send + Sync + 'static,
    ) {
        self.register(
            name,
            help,
            Kind::Histogram,
            labels,
            move || Metric::Histogram(Box::new(f)),
            |_| None,
        );
    }

    /// Registers a summary whose snapshot is taken at render time (replacing any previous
    /// one).
    pub fn summary_fn(
        &self,
        name: &'static str,
        help: &'static str,
        labels: &[(&str, &str)],
        f: impl Fn() -> SummarySnapshot + Send + Sync + 'static,
    ) {
        self.register(
            name,
            help,
            Kind::Summary,
            labels,
            move || Metric::Summary(Box::new(f)),
            |_| None,
        );
    }

    /// Removes every series of every family that carries `label=value` (used when a job
    /// goes away so its per-job series do not linger).
    pub fn remove_labelled(&self, label: &str, value: &str) {
        let needle = render_labels(&[(label, value)]);
        let needle = &needle[1..needle.len() - 1];
        let mut families = self.families.lock();
        for f in families.values_mut() {
            f.series.retain(|k, _| {
                !(k.starts_with('{') && k[1..k.len() - 1].split(',').any(|part| part == needle))
            });
        }
    }

    /// The whole registry in the Prometheus text format 0.0.4.
    pub fn render(&self) -> String {
        let families = self.families.lock();
        let mut out = String::with_capacity(8192);
        for (name, f) in families.iter() {
            if f.series.is_empty() {
                continue;
            }
            let kind = match f.kind {
                Kind::Counter => "counter",
                Kind::Gauge => "gauge",
                Kind::Histogram => "histogram",
                Kind::Summary => "summary",
            };
            let _ = writeln!(out, "# HELP {name} {}", f.help);
            let _ = writeln!(out, "# TYPE {name} {kind}");
            for (labels, m) in &f.series {
                let v = match m {
                    Metric::Counter(c) => c.get() as f64,
                    Metric::Gauge(g) => g.get(),
                    Metric::GaugeFn(func) => func(),
                    Metric::Recent(s) => {
                        render_summary(&mut out, name, labels, &s.snapshot());
                        continue;
                    }
                    Metric::Histogram(func) => {
                        render_histogram(&mut out, name, labels, &func());
                        continue;
                    }
                    Metric::Summary(func) => {
                        render_summary(&mut out, name, labels, &func());
                        continue;
                    }
                };
                let _ = writeln!(out, "{name}{labels} {}", format_value(v));
            }
        }
        out
    }
}

/// `{a="b"}` + `le="x"` → `{a="b",le="x"}`.
fn with_label(labels: &str, name: &str, value: &str) -> String {
    match labels.strip_suffix('}') {
        Some(open) => format!("{open},{name}=\"{value}\"}}"),
        None => format!("{{{name}=\"{value}\"}}"),
    }
}

fn render_histogram(out: &mut String, name: &str, labels: &str, h: &HistogramSnapshot) {
    for (le, n) in &h.buckets {
        let l = with_label(labels, "le", &format_value(*le));
        let _ = writeln!(out, "{name}_bucket{l} {n}");
    }
    let l = with_label(labels, "le", "+Inf");
    let _ = writeln!(out, "{name}_bucket{l} {}", h.count);
    let _ = writeln!(out, "{name}_sum{labels} {}", format_value(h.sum));
    let _ = writeln!(out, "{name}_count{labels} {}", h.count);
}

fn render_summary(out: &mut String, name: &str, labels: &str, s: &SummarySnapshot) {
    for (q, v) in &s.quantiles {
        let l = with_label(labels, "quantile", &format_value(*q));
        let _ = writeln!(out, "{name}{l} {}", format_value(*v));
    }
    let _ = writeln!(out, "{name}_sum{labels} {}", format_value(s.sum));
    let _ = writeln!(out, "{name}_count{labels} {}", s.count);
}

/// A summary over the last [`RecentSummary::CAPACITY`] observations, with exact
/// quantiles. For events that happen a few times a minute at most (pool syncs): a ring of
/// f64 under a mutex costs nothing there and needs no bucket layout.
#[derive(Debug, Default)]
pub struct RecentSummary {
    inner: Mutex<RecentInner>,
}

#[derive(Debug, Default)]
struct RecentInner {
    ring: std::collections::VecDeque<f64>,
    sum: f64,
    count: u64,
}

impl RecentSummary {
    pub const CAPACITY: usize = 128;

    pub fn observe(&self, v: f64) {
        let mut i = self.inner.lock();
        if i.ring.len() == Self::CAPACITY {
            i.ring.pop_front();
        }
        i.ring.push_back(v);
        i.sum += v;
        i.count += 1;
    }

    pub fn snapshot(&self) -> SummarySnapshot {
        let (mut sorted, sum, count) = {
            let i = self.inner.lock();
            (i.ring.iter().copied().collect::<Vec<f64>>(), i.sum, i.count)
        };
        sorted.sort_by(f64::total_cmp);
        SummarySnapshot {
            quantiles: QUANTILES
                .iter()
                .map(|&q| (q, nearest_rank(&sorted, q)))
                .collect(),
            sum,
            count,
        }
    }
}

/// The nearest-rank quantile of sorted values; NaN for none.
fn nearest_rank(sorted: &[f64], q: f64) -> f64 {
    if sorted.is_empty() {
        return f64::NAN;
    }
    let rank = (q * sorted.len() as f64).ceil() as usize;
    sorted[rank.clamp(1, sorted.len()) - 1]
}

/// Bounds (ns) of the deviation buckets of an [`IntervalSummary`], mirrored for early
/// scrapes: 10µs resolution where a healthy wheel lives, coarse beyond a second.
const DEVIATION_BOUNDS_NS: [u64; 20] = [
    10_000,
    50_000,
    100_000,
    250_000,
    500_000,
    1_000_000,
    2_500_000,
    5_000_000,
    10_000_000,
    25_000_000,
    50_000_000,
    100_000_000,
    250_000_000,
    500_000_000,
    1_000_000_000,
    2_500_000_000,
    5_000_000_000,
    10_000_000_000,
    30_000_000_000,
    60_000_000_000,
];
/// Buckets: below -60s, the 19 negative ranges, (-10µs, 10µs], the 19 positive ranges,
/// above 60s.
const DEVIATION_BUCKETS: usize = 2 * DEVIATION_BOUNDS_NS.len() + 1;
/// Observations older than one to two windows leave the quantiles (client_golang keeps a
/// 10-minute window in 5 age buckets; two 5-minute generations come close enough).
const WINDOW_NS: u64 = 300_000_000_000;

/// The actual time between consecutive scrapes of targets that share an interval
/// (Prometheus's `prometheus_target_interval_length_seconds`), kept cheap for the
/// per-scrape path: an observation is two relaxed atomic adds into fixed buckets of the
/// deviation from the nominal interval, and quantiles are interpolated from those buckets
/// at render time over the last 5 to 10 minutes. Concurrent observations during a window
/// rotation may land in the older window; a metric can afford that.
#[derive(Debug)]
pub struct IntervalSummary {
    interval_ns: u64,
    generations: [[AtomicU64; DEVIATION_BUCKETS]; 2],
    /// The window (`now / WINDOW_NS`) that `generations[epoch % 2]` collects.
    epoch: AtomicU64,
    sum_ns: AtomicU64,
    count: AtomicU64,
}

impl IntervalSummary {
    pub fn new(interval: std::time::Duration) -> Self {
        Self {
            interval_ns: u64::try_from(interval.as_nanos()).unwrap_or(u64::MAX),
            generations: std::array::from_fn(|_| std::array::from_fn(|_| AtomicU64::new(0))),
            epoch: AtomicU64::new(0),
            sum_ns: AtomicU64::new(0),
            count: AtomicU64::new(0),
        }
    }

    /// Records `actual_ns` between two scrapes, observed at Unix time `now_ns`.
    pub fn observe(&self, actual_ns: u64, now_ns: u64) {
        let e = now_ns / WINDOW_NS;
        let seen = self.epoch.load(Ordering::Relaxed);
        if e > seen
            && self
                .epoch
                .compare_exchange(seen, e, Ordering::AcqRel, Ordering::Relaxed)
                .is_ok()
        {
            // The generation for `e` last held `e - 2` or older: start it over, and the
            // other one too when it is older than `e - 1`.
            clear(&self.generations[(e % 2) as usize]);
            if e - seen >= 2 {
                clear(&self.generations[((e + 1) % 2) as usize]);
            }
        }
        let i = deviation_bucket(actual_ns as i128 - self.interval_ns as i128);
        self.generations[(e % 2) as usize][i].fetch_add(1, Ordering::Relaxed);
        self.sum_ns.fetch_add(actual_ns, Ordering::Relaxed);
        self.count.fetch_add(1, Ordering::Relaxed);
    }

    pub fn snapshot(&self, now_ns: u64) -> SummarySnapshot {
        let now_e = now_ns / WINDOW_NS;
        let epoch = self.epoch.load(Ordering::Acquire);
        let mut counts = [0u64; DEVIATION_BUCKETS];
        // generations[epoch % 2] holds `epoch`, the other one `epoch - 1`.
        for (g, e) in [(epoch % 2, epoch), ((epoch + 1) % 2, epoch.wrapping_sub(1))] {
            if e.saturating_add(1) >= now_e && e <= now_e {
                for (c, b) in counts.iter_mut().zip(&self.generations[g as usize]) {
                    *c += b.load(Ordering::Relaxed);
                }
            }
        }
        let total: u64 = counts.iter().sum();
        let nominal = self.interval_ns as f64;
        SummarySnapshot {
            quantiles: QUANTILES
                .iter()
                .map(|&q| {
                    let v = bucket_quantile(&counts, total, q).map_or(f64::NAN, |d| nominal + d);
                    (q, v / 1e9)
                })
                .collect(),
            sum: self.sum_ns.load(Ordering::Relaxed) as f64 / 1e9,
            count: self.count.load(Ordering::Relaxed),
        }
    }
}

fn clear(buckets: &[AtomicU64]) {
    for b in buckets {
        b.store(0, Ordering::Relaxed);
    }
}

/// The bucket of a signed deviation (ns).
fn deviation_bucket(d: i128) -> usize {
    let n = DEVIATION_BOUNDS_NS.len();
    let mag = d.unsigned_abs().min(u128::from(u64::MAX)) as u64;
    // Index of the first bound >= |d|: 0 means within ±10µs.
    let k = DEVIATION_BOUNDS_NS.partition_point(|&b| b < mag);
    if k == 0 {
        n
    } else if d > 0 {
        n + k
    } else {
        n - k
    }
}

/// The lower and upper edge (ns) of bucket `i`; the open-ended outer buckets are given
/// the outermost bound as their far edge.
fn bucket_edges(i: usize) -> (f64, f64) {
    let n = DEVIATION_BOUNDS_NS.len();
    let b = |k: usize| DEVIATION_BOUNDS_NS[k.min(n - 1)] as f64;
    match i.cmp(&n) {
        std::cmp::Ordering::Equal => (-b(0), b(0)),
        std::cmp::Ordering::Greater => {
            let k = i - n;
            (b(k - 1), if k == n { b(n - 1) } else { b(k) })
        }
        std::cmp::Ordering::Less => {
            let k = n - i;
            (if k == n { -b(n - 1) } else { -b(k) }, -b(k - 1))
        }
    }
}

/// The `q` quantile of the deviation, interpolated linearly inside its bucket.
fn bucket_quantile(counts: &[u64], total: u64, q: f64) -> Option<f64> {
    if total == 0 {
        return None;
    }
    let rank = q * total as f64;
    let mut below = 0u64;
    for (i, &c) in counts.iter().enumerate() {
        if c > 0 && (below + c) as f64 >= rank {
            let (lo, hi) = bucket_edges(i);
            let frac = ((rank - below as f64) / c as f64).clamp(0.0, 1.0);
            return Some(lo + (hi - lo) * frac);
        }
        below += c;
    }
    None
}

/// A duration as Go's `time.Duration.String` writes it ("500ms", "15s", "1m0s",
/// "1h30m0s"), which is what Prometheus puts in its `interval` label.
pub fn go_duration(d: std::time::Duration) -> String {
    let ns = d.as_nanos();
    if ns == 0 {
        return "0s".into();
    }
    if ns < 1_000_000_000 {
        let (unit, div) = match ns {
            n if n < 1_000 => ("ns", 1u128),
            n if n < 1_000_000 => ("µs", 1_000),
            _ => ("ms", 1_000_000),
        };
        return format!("{}{unit}", fraction(ns, div));
    }
    let total_s = ns / 1_000_000_000;
    let (h, m) = (total_s / 3600, (total_s / 60) % 60);
    let secs = fraction(ns % 60_000_000_000, 1_000_000_000);
    match (h, m) {
        (0, 0) => format!("{secs}s"),
        (0, m) => format!("{m}m{secs}s"),
        (h, m) => format!("{h}h{m}m{secs}s"),
    }
}

/// `n / div` with the fractional digits Go prints (trailing zeros trimmed).
fn fraction(n: u128, div: u128) -> String {
    let (whole, frac) = (n / div, n % div);
    if frac == 0 {
        return whole.to_string();
    }
    let width = div.ilog10() as usize;
    let digits = format!("{frac:0width$}");
    format!("{whole}.{}", digits.trim_end_matches('0'))
}

/// Formats a sample value the way the exposition format expects.
pub fn format_value(v: f64) -> String {
    if v.is_nan() {
        "NaN".into()
    } else if v.is_infinite() {
        if v > 0.0 { "+Inf" } else { "-Inf" }.into()
    } else {
        let mut s = format!("{v}");
        if s == "-0" {
            s = "0".into();
        }
        s
    }
}

/// Process figures read from /proc (Linux); zero elsewhere.
pub mod process {
    /// (cpu seconds, resident bytes, threads)
    pub fn stat() -> (f64, f64, f64) {
        let Ok(s) = std::fs::read_to_string("/proc/self/stat") else {
            return (0.0, 0.0, 0.0);
        };
        // Fields after the command name, which is in parentheses and may hold spaces.
        let Some(rest) = s.rfind(')').map(|i| &s[i + 2..]) else {
            return (0.0, 0.0, 0.0);
        };
        let f: Vec<&str> = rest.split_whitespace().collect();
        let num = |i: usize| f.get(i).and_then(|v| v.parse::<f64>().ok()).unwrap_or(0.0);
        // SAFETY: sysconf has no preconditions.
        let tck = unsafe { libc::sysconf(libc::_SC_CLK_TCK) } as f64;
        // SAFETY: as above.
        let page = unsafe { libc::sysconf(libc::_SC_PAGESIZE) } as f64;
        let tck = if tck > 0.0 { tck } else { 100.0 };
        // utime=14, stime=15, num_threads=20, rss=24 (1-based fields 14.. minus 3)
        ((num(11) + num(12)) / tck, num(21) * page, num(17))
    }

    pub fn register(reg: &super::Registry) {
        reg.counter_fn(
            "process_cpu_seconds_total",
            "Total user and system CPU time spent in seconds.",
            &[],
            || stat().0,
        );
        reg.gauge_fn(
            "process_resident_memory_bytes",
            "Resident memory size in bytes.",
            &[],
            || stat().1,
        );
        reg.gauge_fn(
            "process_threads",
            "Number of OS threads in the process.",
            &[],
            || stat().2,
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counters_are_shared_by_name_and_labels() {
        let r = Registry::default();
        let a = r.counter("x_total", "X.", &[("job", "a")]);
        let a2 = r.counter("x_total", "X.", &[("job", "a")]);
        let b = r.counter("x_total", "X.", &[("job", "b")]);
        a.inc();
        a2.add(2);
        b.inc();
        let text = r.render();
        assert!(text.contains("# TYPE x_total counter\n"), "{text}");
        assert!(text.contains("x_total{job=\"a\"} 3\n"), "{text}");
        assert!(text.contains("x_total{job=\"b\"} 1\n"), "{text}");
    }

    #[test]
    fn remove_labelled_drops_only_that_job() {
        let r = Registry::default();
        r.gauge("g", "G.", &[("scrape_job", "a")]).set(1.5);
        r.gauge("g", "G.", &[("scrape_job", "b")]).set(2.0);
        r.remove_labelled("scrape_job", "a");
        let text = r.render();
        assert!(!text.contains("scrape_job=\"a\""), "{text}");
        assert!(text.contains("g{scrape_job=\"b\"} 2\n"), "{text}");
    }

    #[test]
    fn process_stat_reads_something_on_linux() {
        let (_, rss, threads) = process::stat();
        assert!(rss > 0.0);
        assert!(threads >= 1.0);
    }

    #[test]
    fn summaries_render_sum_and_count() {
        let r = Registry::default();
        let s = r.summary("d_seconds", "D.", &[("job", "a")]);
        s.observe(0.5);
        r.summary("d_seconds", "D.", &[("job", "a")]).observe(1.0);
        let text = r.render();
        assert!(text.contains("# TYPE d_seconds summary\n"), "{text}");
        assert!(text.contains("d_seconds_sum{job=\"a\"} 1.5\n"), "{text}");
        assert!(text.contains("d_seconds_count{job=\"a\"} 2\n"), "{text}");
    }

    #[test]
    fn histograms_and_summaries_render_in_the_text_format() {
        let r = Registry::default();
        r.histogram_fn("lag_seconds", "Lag.", &[], || HistogramSnapshot {
            buckets: vec![(0.001, 2), (0.01, 3)],
            sum: 0.5,
            count: 4,
        });
        let s = Arc::new(RecentSummary::default());
        for v in [3.0, 1.0, 2.0] {
            s.observe(v);
        }
        let s2 = s.clone();
        r.summary_fn("sync_seconds", "Sync.", &[("scrape_job", "j")], move || {
            s2.snapshot()
        });
        let text = r.render();
        for want in [
            "# TYPE lag_seconds histogram\n",
            "lag_seconds_bucket{le=\"0.001\"} 2\n",
            "lag_seconds_bucket{le=\"0.01\"} 3\n",
            "lag_seconds_bucket{le=\"+Inf\"} 4\n",
            "lag_seconds_sum 0.5\n",
            "lag_seconds_count 4\n",
            "# TYPE sync_seconds summary\n",
            "sync_seconds{scrape_job=\"j\",quantile=\"0.01\"} 1\n",
            "sync_seconds{scrape_job=\"j\",quantile=\"0.5\"} 2\n",
            "sync_seconds{scrape_job=\"j\",quantile=\"0.99\"} 3\n",
            "sync_seconds_sum{scrape_job=\"j\"} 6\n",
            "sync_seconds_count{scrape_job=\"j\"} 3\n",
        ] {
            assert!(text.contains(want), "missing {want:?} in\n{text}");
        }
    }

    #[test]
    fn recent_summary_keeps_a_bounded_window() {
        let s = RecentSummary::default();
        for i in 0..(RecentSummary::CAPACITY as u64 + 10) {
            s.observe(i as f64);
        }
        let snap = s.snapshot();
        assert_eq!(snap.count, RecentSummary::CAPACITY as u64 + 10);
        assert_eq!(snap.quantiles[0], (0.01, 11.0), "the oldest ten are gone");
        assert!(RecentSummary::default().snapshot().quantiles[2].1.is_nan());
    }

    #[test]
    fn deviation_buckets_are_symmetric_and_cover_everything() {
        let n = DEVIATION_BOUNDS_NS.len();
        assert_eq!(deviation_bucket(0), n);
        assert_eq!(deviation_bucket(10_000), n);
        assert_eq!(deviation_bucket(-10_000), n);
        assert_eq!(deviation_bucket(10_001), n + 1);
        assert_eq!(deviation_bucket(-10_001), n - 1);
        assert_eq!(
            deviation_bucket(i128::from(u64::MAX)),
            DEVIATION_BUCKETS - 1
        );
        assert_eq!(deviation_bucket(-i128::from(u64::MAX)), 0);
        for i in 0..DEVIATION_BUCKETS {
            let (lo, hi) = bucket_edges(i);
            assert!(lo <= hi, "bucket {i}: {lo} > {hi}");
        }
        assert_eq!(bucket_edges(n + 1), (10_000.0, 50_000.0));
        assert_eq!(bucket_edges(n - 1), (-50_000.0, -10_000.0));
    }

    #[test]
    fn interval_summary_estimates_quantiles_within_a_bucket() {
        let s = IntervalSummary::new(std::time::Duration::from_secs(10));
        let now = 1_700_000_000_000_000_000u64;
        for i in 0..100u64 {
            // 10s + 0..99µs: quantiles fall in the ±10µs and 10–50µs and 50–100µs buckets.
            s.observe(10_000_000_000 + i * 1_000, now);
        }
        let snap = s.snapshot(now);
        assert_eq!(snap.count, 100);
        for (q, v) in &snap.quantiles {
            assert!((*v - 10.0).abs() < 0.0001, "q{q} = {v}");
        }
        let p99 = snap.quantiles[4].1;
        assert!(p99 > 10.00005, "p99 {p99} is in the 50–100µs bucket");
        // Ten minutes on, the window is empty but the totals stay.
        let later = s.snapshot(now + 2 * WINDOW_NS);
        assert!(later.quantiles[2].1.is_nan());
        assert_eq!(later.count, 100);
        // A new observation after a long pause starts a fresh window.
        s.observe(9_000_000_000, now + 3 * WINDOW_NS);
        let fresh = s.snapshot(now + 3 * WINDOW_NS);
        assert!((fresh.quantiles[2].1 - 9.0).abs() < 0.5, "{fresh:?}");
    }

    #[test]
    fn go_durations() {
        use std::time::Duration as D;
        assert_eq!(go_duration(D::from_secs(15)), "15s");
        assert_eq!(go_duration(D::from_secs(60)), "1m0s");
        assert_eq!(go_duration(D::from_secs(5400)), "1h30m0s");
        assert_eq!(go_duration(D::from_millis(1500)), "1.5s");
        assert_eq!(go_duration(D::from_millis(500)), "500ms");
        assert_eq!(go_duration(D::from_micros(1500)), "1.5ms");
        assert_eq!(go_duration(D::from_millis(61_250)), "1m1.25s");
    }

    #[test]
    fn values_format() {
        assert_eq!(format_value(f64::INFINITY), "+Inf");
        assert_eq!(format_value(1.5), "1.5");
        assert_eq!(format_value(3.0), "3");
    }
}
