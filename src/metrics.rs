//! Self-metrics: a small registry of counters and gauges rendered in the Prometheus text
//! format on `/metrics`.
//!
//! Registration takes a lock and allocates; it happens when a component or job starts.
//! The hot path only touches the returned `Arc<Counter>`/`Arc<Gauge>` (one relaxed atomic
//! add). Rendering walks the registry under its lock; it must stay cheap because the
//! default config scrapes it every 10s.

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

/// A summary without quantiles: the count and the sum of the observations, rendered as
/// `<name>_count` and `<name>_sum` (as Prometheus's summaries with no objectives are).
#[derive(Debug, Default)]
pub struct Summary {
    count: Counter,
    sum: Gauge,
}

impl Summary {
    pub fn observe(&self, v: f64) {
        self.sum.add(v);
        self.count.inc();
    }
    pub fn count(&self) -> u64 {
        self.count.get()
    }
    pub fn sum(&self) -> f64 {
        self.sum.get()
    }
}

type GaugeFn = Box<dyn Fn() -> f64 + Send + Sync>;

enum Metric {
    Counter(Arc<Counter>),
    Gauge(Arc<Gauge>),
    GaugeFn(GaugeFn),
    Summary(Arc<Summary>),
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Kind {
    Counter,
    Gauge,
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

    /// Returns the counter `name{labels}`, creating it on first use.
    pub fn counter(
        &self,
        name: &'static str,
        help: &'static str,
        labels: &[(&str, &str)],
    ) -> Arc<Counter> {
        let c = Arc::new(Counter::default());
        let c2 = c.clone();
        match self.register(
            name,
            help,
            Kind::Counter,
            labels,
            move || Metric::Counter(c2),
            |m| match m {
                Metric::Counter(c) => Some(Metric::Counter(c.clone())),
                _ => None,
            },
        ) {
            Some(Metric::Counter(existing)) => existing,
            _ => c,
        }
    }

    /// Returns the gauge `name{labels}`, creating it on first use.
    pub fn gauge(
        &self,
        name: &'static str,
        help: &'static str,
        labels: &[(&str, &str)],
    ) -> Arc<Gauge> {
        let g = Arc::new(Gauge::default());
        let g2 = g.clone();
        match self.register(
            name,
            help,
            Kind::Gauge,
            labels,
            move || Metric::Gauge(g2),
            |m| match m {
                Metric::Gauge(g) => Some(Metric::Gauge(g.clone())),
                _ => None,
            },
        ) {
            Some(Metric::Gauge(existing)) => existing,
            _ => g,
        }
    }

    /// Returns the summary `name{labels}`, creating it on first use.
    pub fn summary(
        &self,
        name: &'static str,
        help: &'static str,
        labels: &[(&str, &str)],
    ) -> Arc<Summary> {
        let s = Arc::new(Summary::default());
        let s2 = s.clone();
        match self.register(
            name,
            help,
            Kind::Summary,
            labels,
            move || Metric::Summary(s2),
            |m| match m {
                Metric::Summary(s) => Some(Metric::Summary(s.clone())),
                _ => None,
            },
        ) {
            Some(Metric::Summary(existing)) => existing,
            _ => s,
        }
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
                Kind::Summary => "summary",
            };
            let _ = writeln!(out, "# HELP {name} {}", f.help);
            let _ = writeln!(out, "# TYPE {name} {kind}");
            for (labels, m) in &f.series {
                let v = match m {
                    Metric::Counter(c) => c.get() as f64,
                    Metric::Gauge(g) => g.get(),
                    Metric::GaugeFn(func) => func(),
                    Metric::Summary(s) => {
                        let _ = writeln!(out, "{name}_sum{labels} {}", format_value(s.sum()));
                        let _ = writeln!(out, "{name}_count{labels} {}", s.count());
                        continue;
                    }
                };
                let _ = writeln!(out, "{name}{labels} {}", format_value(v));
            }
        }
        out
    }
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
    fn values_format() {
        assert_eq!(format_value(f64::INFINITY), "+Inf");
        assert_eq!(format_value(1.5), "1.5");
        assert_eq!(format_value(3.0), "3");
    }
}
