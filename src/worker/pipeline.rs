//! Turns a scraped body into encoded series: parse → label merge with the target's labels
//! (honor_labels) → metric relabeling (cached per raw series) → label limits → remote-write
//! bytes and a 64-bit series hash, handed to an `emit` callback.
//!
//! The same walk serves the scrape itself and the staleness pass over a previous body, so a
//! vanished series' marker carries exactly the labels its samples had. Per sample it
//! allocates nothing: strings stay borrowed from the body unless an escape or an
//! `exported_` rename needs the per-worker arena, and label bytes go to a reused buffer.

use crate::labels::{Label, LabelSet, METRIC_NAME};
use crate::parse::{self, Entry, Format, MetricType, ParseError, ParseErrorKind, RawLabel, RawStr};
use crate::relabel;
use crate::scrape::ScrapeError;
use crate::wire;
use thiserror::Error;
use xxhash_rust::xxh3::xxh3_64;

use super::state::{Cached, HashKeyed};

/// Why a scrape failed. Every variant ends as up=0 and staleness markers; the text is what
/// the API shows as lastError.
#[derive(Debug, Error)]
pub enum ScrapeFailure {
    #[error(transparent)]
    Http(#[from] ScrapeError),
    #[error("non-compliant scrape target sending blank Content-Type and no fallback_scrape_protocol specified for target")]
    BlankContentType,
    #[error("received unsupported Content-Type {0:?} and no fallback_scrape_protocol specified for target")]
    UnsupportedContentType(String),
    #[error("{0}")]
    Parse(#[from] ParseError),
    #[error("sample limit exceeded (limit: {limit})")]
    SampleLimit { limit: u64 },
    #[error("label_limit exceeded (metric: {metric}, number of labels: {count}, limit: {limit})")]
    LabelLimit {
        metric: String,
        count: usize,
        limit: u64,
    },
    #[error("label_name_length_limit exceeded (metric: {metric}, label name: {name}, length: {len}, limit: {limit})")]
    LabelNameLength {
        metric: String,
        name: String,
        len: usize,
        limit: u64,
    },
    #[error("label_value_length_limit exceeded (metric: {metric}, label name: {name}, value: {value:?}, length: {len}, limit: {limit})")]
    LabelValueLength {
        metric: String,
        name: String,
        value: String,
        len: usize,
        limit: u64,
    },
    #[error("missing metric name (__name__ label) after metric relabeling of {series}")]
    MissingMetricName { series: String },
    #[error("{0}")]
    Forced(String),
}

impl ScrapeFailure {
    pub fn is_label_limit(&self) -> bool {
        matches!(
            self,
            ScrapeFailure::LabelLimit { .. }
                | ScrapeFailure::LabelNameLength { .. }
                | ScrapeFailure::LabelValueLength { .. }
        )
    }
}

/// What one walk needs: the job's settings, the target's labels and the scrape time.
#[derive(Debug, Clone, Copy)]
pub struct WalkConfig<'c> {
    pub target_labels: &'c LabelSet,
    /// Timestamp (ms) of samples that carry none, or when honor_timestamps is off.
    pub scrape_ts: i64,
    pub honor_labels: bool,
    pub honor_timestamps: bool,
    pub label_limit: u64,
    pub label_name_length_limit: u64,
    pub label_value_length_limit: u64,
    pub metric_relabel: &'c [relabel::Rule],
}

/// Counts from one walk.
#[derive(Debug, Default, Clone, Copy)]
pub struct WalkStats {
    /// Samples parsed (`scrape_samples_scraped`).
    pub scraped: u64,
    /// Samples left after metric relabeling (`scrape_samples_post_metric_relabeling`).
    pub post_relabel: u64,
}

/// One output series: encoded labels, their hash, the value and timestamp, and whether
/// the timestamp came from the exposition.
pub struct Series<'s> {
    pub labels: &'s [u8],
    pub hash: u64,
    pub value: f64,
    pub timestamp: i64,
    pub explicit_timestamp: bool,
}

#[derive(Clone, Copy)]
enum Str<'a> {
    Borrowed(&'a str),
    Arena(u32, u32),
}

#[derive(Clone, Copy)]
struct LRef<'a> {
    name: Str<'a>,
    value: Str<'a>,
}

#[inline]
fn resolve<'x>(s: Str<'x>, arena: &'x str) -> &'x str {
    match s {
        Str::Borrowed(b) => b,
        Str::Arena(a, b) => &arena[a as usize..b as usize],
    }
}

/// Per-worker scratch reused across scrapes.
#[derive(Default)]
pub struct Walker {
    arena: String,
    tmp: String,
    label_bytes: Vec<u8>,
}

impl Walker {
    fn intern<'a>(&mut self, raw: RawStr<'a>) -> Str<'a> {
        if !raw.escaped {
            return Str::Borrowed(raw.raw);
        }
        let start = self.arena.len() as u32;
        raw.unescape_into(&mut self.arena);
        Str::Arena(start, self.arena.len() as u32)
    }

    fn push_arena(&mut self, parts: &[&str]) -> Str<'static> {
        let start = self.arena.len() as u32;
        for p in parts {
            self.arena.push_str(p);
        }
        Str::Arena(start, self.arena.len() as u32)
    }

    /// Builds the merged label refs of one sample into `out`, sorted by name. `family` is
    /// the type of the last TYPE line: like Prometheus, only a histogram's `le` and a
    /// summary's `quantile` values are re-spelled (`1` → `1.0`). `scraped` is scratch.
    ///
    /// The parser has already rejected duplicate names within a line, so after sorting,
    /// the scraped labels and the (sorted) target labels merge in one pass. Only a clash
    /// between the two takes the slow path.
    #[allow(clippy::too_many_arguments)] // one call site; the refs are caller-owned scratch
    fn build_refs<'a>(
        &mut self,
        name: RawStr<'a>,
        labels: &[RawLabel<'a>],
        family: MetricType,
        target: &'a [Label],
        honor_labels: bool,
        scraped: &mut Vec<LRef<'a>>,
        out: &mut Vec<LRef<'a>>,
    ) {
        self.arena.clear();
        scraped.clear();
        out.clear();
        // Names of empty-valued labels; allocates only when there are some.
        let mut empty: Vec<Str<'a>> = Vec::new();
        let name = self.intern(name);
        scraped.push(LRef {
            name: Str::Borrowed(METRIC_NAME),
            value: name,
        });
        for l in labels {
            let lname = self.intern(l.name);
            let mut value = self.intern(l.value);
            let n = resolve(lname, &self.arena);
            let normalize = match family {
                MetricType::Histogram | MetricType::GaugeHistogram => n == "le",
                MetricType::Summary => n == "quantile",
                _ => false,
            };
            if normalize {
                let v = resolve(value, &self.arena);
                if parse::normalize_float_label(v, &mut self.tmp) {
                    let tmp = std::mem::take(&mut self.tmp);
                    value = self.push_arena(&[&tmp]);
                    self.tmp = tmp;
                }
            }
            if resolve(value, &self.arena).is_empty() {
                // An empty value is no label, but under honor_labels it still keeps the
                // target's label of that name away, as in Prometheus (`lset.Has`).
                if honor_labels {
                    empty.push(lname);
                }
                continue;
            }
            scraped.push(LRef { name: lname, value });
        }
        let arena = self.arena.as_str();
        // Exporters usually write labels sorted already: insertion sort is then linear.
        scraped.sort_by(|a, b| resolve(a.name, arena).cmp(resolve(b.name, arena)));
        let mut conflicts = 0usize;
        let (mut i, mut j) = (0, 0);
        while i < scraped.len() || j < target.len() {
            let ord = match (scraped.get(i), target.get(j)) {
                (Some(r), Some(t)) => resolve(r.name, arena).cmp(t.name.as_str()),
                (Some(_), None) => std::cmp::Ordering::Less,
                _ => std::cmp::Ordering::Greater,
            };
            let from_target = |t: &'a Label| LRef {
                name: Str::Borrowed(&t.name),
                value: Str::Borrowed(&t.value),
            };
            match ord {
                std::cmp::Ordering::Less => {
                    out.push(scraped[i]);
                    i += 1;
                }
                std::cmp::Ordering::Greater => {
                    let t = &target[j];
                    if !(honor_labels && empty.iter().any(|e| resolve(*e, arena) == t.name)) {
                        out.push(from_target(t));
                    }
                    j += 1;
                }
                std::cmp::Ordering::Equal if honor_labels => {
                    out.push(scraped[i]);
                    i += 1;
                    j += 1;
                }
                std::cmp::Ordering::Equal => {
                    // Park the clashing scraped label at the end for renaming below.
                    scraped[conflicts] = scraped[i];
                    conflicts += 1;
                    out.push(from_target(&target[j]));
                    i += 1;
                    j += 1;
                }
            }
        }
        if conflicts > 0 {
            self.rename_conflicts(&mut scraped[..conflicts], out);
        }
    }

    /// Target labels win a clash: each clashing scraped label becomes exported_<name>
    /// (prefixed again while that is taken too), shortest names first, as Prometheus.
    fn rename_conflicts<'a>(&mut self, conflicts: &mut [LRef<'a>], out: &mut Vec<LRef<'a>>) {
        conflicts.sort_by_key(|r| resolve(r.name, &self.arena).len());
        let mut candidate = std::mem::take(&mut self.tmp);
        for c in conflicts.iter() {
            let mut prefixes = 1;
            loop {
                candidate.clear();
                for _ in 0..prefixes {
                    candidate.push_str("exported_");
                }
                candidate.push_str(resolve(c.name, &self.arena));
                if !out
                    .iter()
                    .any(|r| resolve(r.name, &self.arena) == candidate)
                {
                    break;
                }
                prefixes += 1;
            }
            let name = self.push_arena(&[&candidate]);
            out.push(LRef {
                name,
                value: c.value,
            });
        }
        self.tmp = candidate;
        let arena = self.arena.as_str();
        out.sort_by(|a, b| resolve(a.name, arena).cmp(resolve(b.name, arena)));
    }

    /// Parses `body` and calls `emit` for every sample that survives relabeling.
    /// `cache` is the target's relabel cache; it is used only when metric relabeling is
    /// configured.
    pub fn walk<'a>(
        &mut self,
        body: &'a [u8],
        format: Format,
        cfg: &WalkConfig<'a>,
        cache: &mut HashKeyed<Cached>,
        stats: &mut WalkStats,
        emit: &mut dyn FnMut(Series<'_>) -> Result<(), ScrapeFailure>,
    ) -> Result<(), ScrapeFailure> {
        let mut parser = parse::Parser::new(body, format)?;
        let mut scratch_refs: Vec<LRef<'a>> = Vec::with_capacity(16);
        let mut refs: Vec<LRef<'a>> = Vec::with_capacity(24);
        let target = cfg.target_labels.as_slice();
        let scrape_ts = cfg.scrape_ts;
        let mut family = MetricType::Unknown;
        loop {
            let entry = match parser.next() {
                Ok(Some(entry)) => entry,
                Ok(None) => break,
                Err(e) => {
                    // Prometheus parses a sample with a repeated label name and fails only
                    // when appending it, so it counts as scraped.
                    if matches!(e.kind, ParseErrorKind::DuplicateLabel(_)) {
                        stats.scraped += 1;
                    }
                    return Err(e.into());
                }
            };
            let s = match entry {
                Entry::Sample(s) => s,
                Entry::Type { kind, .. } => {
                    family = kind;
                    continue;
                }
                _ => continue,
            };
            stats.scraped += 1;
            let (timestamp, explicit_timestamp) = match s.timestamp {
                Some(t) if cfg.honor_timestamps => (t, true),
                _ => (scrape_ts, false),
            };
            let value = normalize_value(s.value);
            if !cfg.metric_relabel.is_empty() {
                let key = xxh3_64(s.series.as_bytes());
                if let Some(hit) = cache.get(&key) {
                    if let Cached::Keep { labels, hash } = hit {
                        stats.post_relabel += 1;
                        emit(Series {
                            labels,
                            hash: *hash,
                            value,
                            timestamp,
                            explicit_timestamp,
                        })?;
                    }
                    continue;
                }
                self.build_refs(
                    s.name,
                    parser.labels(),
                    family,
                    target,
                    cfg.honor_labels,
                    &mut scratch_refs,
                    &mut refs,
                );
                let mut set = LabelSet::new();
                for r in &refs {
                    set.set(resolve(r.name, &self.arena), resolve(r.value, &self.arena));
                }
                if !relabel::process(cfg.metric_relabel, &mut set) {
                    cache.insert(key, Cached::Drop);
                    continue;
                }
                if set.get(METRIC_NAME).is_none() {
                    return Err(ScrapeFailure::MissingMetricName {
                        series: s.series.to_string(),
                    });
                }
                check_limits(
                    cfg,
                    set.iter().map(|l| (l.name.as_str(), l.value.as_str())),
                    set.len(),
                    || set.get_or_empty(METRIC_NAME).to_string(),
                )?;
                self.label_bytes.clear();
                for l in &set {
                    wire::put_label(&mut self.label_bytes, l.name.as_bytes(), l.value.as_bytes());
                }
                let hash = xxh3_64(&self.label_bytes);
                cache.insert(
                    key,
                    Cached::Keep {
                        labels: self.label_bytes.clone().into_boxed_slice(),
                        hash,
                    },
                );
            } else {
                self.build_refs(
                    s.name,
                    parser.labels(),
                    family,
                    target,
                    cfg.honor_labels,
                    &mut scratch_refs,
                    &mut refs,
                );
                let arena = self.arena.as_str();
                check_limits(
                    cfg,
                    refs.iter()
                        .map(|r| (resolve(r.name, arena), resolve(r.value, arena))),
                    refs.len(),
                    || {
                        refs.iter()
                            .find(|r| resolve(r.name, arena) == METRIC_NAME)
                            .map_or("", |r| resolve(r.value, arena))
                            .to_string()
                    },
                )?;
                self.label_bytes.clear();
                for r in &refs {
                    wire::put_label(
                        &mut self.label_bytes,
                        resolve(r.name, arena).as_bytes(),
                        resolve(r.value, arena).as_bytes(),
                    );
                }
            }
            stats.post_relabel += 1;
            let hash = xxh3_64(&self.label_bytes);
            emit(Series {
                labels: &self.label_bytes,
                hash,
                value,
                timestamp,
                explicit_timestamp,
            })?;
        }
        Ok(())
    }
}

/// A parsed value as Prometheus's remote write delivers it: every NaN becomes the one
/// normal NaN (so a target can never send a staleness marker), and -0 becomes 0, because
/// protobuf leaves a zero `double` out of the message and the receiver reads +0.
#[inline]
pub fn normalize_value(v: f64) -> f64 {
    if v == 0.0 {
        0.0
    } else {
        wire::normalize_nan(v)
    }
}

/// The metric name is built only when a limit is hit.
fn check_limits<'x>(
    cfg: &WalkConfig<'_>,
    labels: impl Iterator<Item = (&'x str, &'x str)>,
    count: usize,
    metric: impl Fn() -> String,
) -> Result<(), ScrapeFailure> {
    if cfg.label_limit > 0 && count as u64 > cfg.label_limit {
        return Err(ScrapeFailure::LabelLimit {
            metric: metric(),
            count,
            limit: cfg.label_limit,
        });
    }
    if cfg.label_name_length_limit == 0 && cfg.label_value_length_limit == 0 {
        return Ok(());
    }
    for (name, value) in labels {
        if cfg.label_name_length_limit > 0 && name.len() as u64 > cfg.label_name_length_limit {
            return Err(ScrapeFailure::LabelNameLength {
                metric: metric(),
                name: name.to_string(),
                len: name.len(),
                limit: cfg.label_name_length_limit,
            });
        }
        if cfg.label_value_length_limit > 0 && value.len() as u64 > cfg.label_value_length_limit {
            return Err(ScrapeFailure::LabelValueLength {
                metric: metric(),
                name: name.to_string(),
                value: value.to_string(),
                len: value.len(),
                limit: cfg.label_value_length_limit,
            });
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    static NO_LABELS: LabelSet = LabelSet::new();

    fn cfg() -> WalkConfig<'static> {
        WalkConfig {
            target_labels: &NO_LABELS,
            scrape_ts: 1000,
            honor_labels: false,
            honor_timestamps: true,
            label_limit: 0,
            label_name_length_limit: 0,
            label_value_length_limit: 0,
            metric_relabel: &[],
        }
    }

    /// Runs a walk and returns each emitted series as `{labels} value @ts`.
    fn run(
        body: &str,
        target: &LabelSet,
        cfg: &WalkConfig<'_>,
    ) -> Result<Vec<String>, ScrapeFailure> {
        let mut w = Walker::default();
        let mut cache = HashKeyed::default();
        let mut out = Vec::new();
        let mut stats = WalkStats::default();
        let cfg = WalkConfig {
            target_labels: target,
            ..*cfg
        };
        w.walk(
            body.as_bytes(),
            Format::PromText,
            &cfg,
            &mut cache,
            &mut stats,
            &mut |s| {
                let mut buf = Vec::new();
                wire::put_series(&mut buf, s.labels, s.value, s.timestamp);
                wire::decode_write_request(&buf, |d| {
                    let l: Vec<String> = d.labels.iter().map(|(n, v)| format!("{n}={v}")).collect();
                    out.push(format!(
                        "{{{}}} {} @{}",
                        l.join(","),
                        d.samples[0].0,
                        d.samples[0].1
                    ));
                })
                .expect("decodes");
                Ok(())
            },
        )?;
        Ok(out)
    }

    fn target() -> LabelSet {
        LabelSet::from_pairs([("instance", "h:1"), ("job", "j")])
    }

    #[test]
    fn merges_target_labels_sorted() {
        let got = run("m{b=\"2\",a=\"1\"} 3\n", &target(), &cfg()).expect("ok");
        assert_eq!(got, ["{__name__=m,a=1,b=2,instance=h:1,job=j} 3 @1000"]);
    }

    #[test]
    fn conflicts_become_exported() {
        let got = run(
            "m{job=\"x\",instance=\"y\",exported_job=\"z\"} 1 5\n",
            &target(),
            &cfg(),
        )
        .expect("ok");
        assert_eq!(
            got,
            ["{__name__=m,exported_exported_job=x,exported_instance=y,exported_job=z,instance=h:1,job=j} 1 @5"]
        );
    }

    #[test]
    fn honor_labels_keeps_scraped() {
        let c = WalkConfig {
            honor_labels: true,
            ..cfg()
        };
        let got = run("m{job=\"x\"} 1\n", &target(), &c).expect("ok");
        assert_eq!(got, ["{__name__=m,instance=h:1,job=x} 1 @1000"]);
    }

    #[test]
    fn honor_timestamps_false_uses_scrape_time() {
        let c = WalkConfig {
            honor_timestamps: false,
            ..cfg()
        };
        assert_eq!(
            run("m 1 5\n", &target(), &c).expect("ok"),
            ["{__name__=m,instance=h:1,job=j} 1 @1000"]
        );
    }

    #[test]
    fn empty_values_and_escapes() {
        let got = run("m{a=\"\",b=\"x\\\"y\"} 1\n", &LabelSet::new(), &cfg()).expect("ok");
        assert_eq!(got, ["{__name__=m,b=x\"y} 1 @1000"]);
    }

    #[test]
    fn le_and_quantile_are_normalised_only_in_their_families() {
        let body = "# TYPE h histogram\nh_bucket{le=\"1\"} 1\n# TYPE s summary\ns{quantile=\"1\"} 1\ng{le=\"1\"} 2\n# TYPE g gauge\ng{le=\"1\"} 3\n";
        let got = run(body, &LabelSet::new(), &cfg()).expect("ok");
        assert_eq!(
            got,
            [
                "{__name__=h_bucket,le=1.0} 1 @1000",
                "{__name__=s,quantile=1.0} 1 @1000",
                "{__name__=g,le=1} 2 @1000",
                "{__name__=g,le=1} 3 @1000"
            ]
        );
    }

    #[test]
    fn limits_fail_the_walk() {
        let c = WalkConfig {
            label_limit: 2,
            ..cfg()
        };
        assert!(matches!(
            run("m{a=\"1\",b=\"2\"} 1\n", &LabelSet::new(), &c),
            Err(ScrapeFailure::LabelLimit { count: 3, .. })
        ));
        let c = WalkConfig {
            label_value_length_limit: 3,
            ..cfg()
        };
        assert!(matches!(
            run("m{a=\"long\"} 1\n", &LabelSet::new(), &c),
            Err(ScrapeFailure::LabelValueLength { len: 4, .. })
        ));
        let c = WalkConfig {
            label_name_length_limit: 3,
            ..cfg()
        };
        assert!(matches!(
            run("m{abcd=\"1\"} 1\n", &LabelSet::new(), &c),
            Err(ScrapeFailure::LabelNameLength { .. })
        ));
    }

    #[test]
    fn metric_relabel_drops_and_rewrites() {
        let rules = [
            relabel::Rule::compile(&relabel::RelabelConfig {
                source_labels: Some(vec!["__name__".into()]),
                regex: Some("drop_.*".into()),
                action: Some("drop".into()),
                ..Default::default()
            })
            .expect("rule"),
            relabel::Rule::compile(&relabel::RelabelConfig {
                target_label: Some("extra".into()),
                replacement: Some("v".into()),
                ..Default::default()
            })
            .expect("rule"),
        ];
        let c = WalkConfig {
            metric_relabel: &rules,
            ..cfg()
        };
        let got = run("drop_me 1\nkeep 2\nkeep 3\n", &target(), &c).expect("ok");
        assert_eq!(
            got,
            [
                "{__name__=keep,extra=v,instance=h:1,job=j} 2 @1000",
                "{__name__=keep,extra=v,instance=h:1,job=j} 3 @1000"
            ]
        );
    }

    #[test]
    fn relabel_removing_name_fails() {
        let rules = [relabel::Rule::compile(&relabel::RelabelConfig {
            regex: Some("__name__".into()),
            action: Some("labeldrop".into()),
            ..Default::default()
        })
        .expect("rule")];
        let c = WalkConfig {
            metric_relabel: &rules,
            ..cfg()
        };
        assert!(matches!(
            run("m 1\n", &target(), &c),
            Err(ScrapeFailure::MissingMetricName { .. })
        ));
    }

    #[test]
    fn honor_labels_empty_scraped_label_keeps_target_label_out() {
        let c = WalkConfig {
            honor_labels: true,
            ..cfg()
        };
        let got = run("m{job=\"\",a=\"1\"} 1\n", &target(), &c).expect("ok");
        assert_eq!(got, ["{__name__=m,a=1,instance=h:1} 1 @1000"]);
        // Without honor_labels an empty value is no conflict: the target label is set.
        let got = run("m{job=\"\"} 1\n", &target(), &cfg()).expect("ok");
        assert_eq!(got, ["{__name__=m,instance=h:1,job=j} 1 @1000"]);
    }

    #[test]
    fn a_sample_with_a_repeated_label_counts_as_scraped() {
        let mut w = Walker::default();
        let mut stats = WalkStats::default();
        let r = w.walk(
            b"ok 1\nm{a=\"1\",a=\"2\"} 2\nnever 3\n",
            Format::PromText,
            &cfg(),
            &mut HashKeyed::default(),
            &mut stats,
            &mut |_| Ok(()),
        );
        assert!(matches!(r, Err(ScrapeFailure::Parse(_))));
        assert_eq!(stats.scraped, 2);
    }

    #[test]
    fn negative_zero_becomes_zero() {
        assert_eq!(normalize_value(-0.0).to_bits(), 0.0f64.to_bits());
        assert_eq!(normalize_value(-1.5), -1.5);
        assert_eq!(normalize_value(f64::NAN).to_bits(), wire::NORMAL_NAN_BITS);
        let got = run("z -0\n", &LabelSet::new(), &cfg()).expect("ok");
        assert_eq!(got, ["{__name__=z} 0 @1000"]);
    }

    #[test]
    fn nan_is_normalised() {
        let mut w = Walker::default();
        let mut bits = 0;
        w.walk(
            b"m NaN\n",
            Format::PromText,
            &cfg(),
            &mut HashKeyed::default(),
            &mut WalkStats::default(),
            &mut |s| {
                bits = s.value.to_bits();
                Ok(())
            },
        )
        .expect("ok");
        assert_eq!(bits, wire::NORMAL_NAN_BITS);
    }
}
