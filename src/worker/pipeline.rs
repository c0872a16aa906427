//! Turns a scraped body into encoded series: parse → label merge with the target's labels
//! (honor_labels) → metric relabeling (cached per raw series) → label limits → remote-write
//! bytes and a 64-bit series hash, handed to an `emit` callback.
//!
//! A body can also be walked in parts as it arrives ([`Walker::walk_part`], with what
//! crosses part boundaries in a [`WalkStream`]); [`Walker::walk`] is the one-part case, so
//! both give the same series, counts and errors.
//!
//! The same walk serves the scrape itself and the staleness pass over a previous body, so a
//! vanished series' marker carries exactly the labels its samples had. Per sample it
//! allocates nothing: strings stay borrowed from the body unless an escape or an
//! `exported_` rename needs the per-worker arena, and label bytes go to a reused buffer.

use crate::hash::series_hash;
use crate::labels::{Label, LabelSet, METRIC_NAME};
use crate::parse::{self, Entry, Format, MetricType, ParseError, ParseErrorKind, RawLabel, RawStr};
use crate::relabel;
use crate::scrape::ScrapeError;
use crate::wire;
use thiserror::Error;

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
    /// A streamed scrape could not stage its samples on disk; nothing was committed.
    #[error("staging a streamed scrape's samples: {0}")]
    Staging(std::io::Error),
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

/// Label name order (byte order). Names are short and often share a prefix
/// (`grpc_code`, `grpc_method`), and a call into `memcmp` for each comparison was a
/// twentieth of a scrape's CPU: this compares eight bytes at a time inline, as big-endian
/// words so that integer order is byte order.
#[inline]
fn name_cmp(a: &str, b: &str) -> std::cmp::Ordering {
    let (a, b) = (a.as_bytes(), b.as_bytes());
    let n = a.len().min(b.len());
    let mut i = 0;
    while i + 8 <= n {
        let (Ok(x), Ok(y)) = (
            <[u8; 8]>::try_from(&a[i..i + 8]),
            <[u8; 8]>::try_from(&b[i..i + 8]),
        ) else {
            break;
        };
        let (x, y) = (u64::from_be_bytes(x), u64::from_be_bytes(y));
        if x != y {
            return x.cmp(&y);
        }
        i += 8;
    }
    while i < n {
        if a[i] != b[i] {
            return a[i].cmp(&b[i]);
        }
        i += 1;
    }
    a.len().cmp(&b.len())
}

/// The label whose values a family re-spells as floats (`1` → `1.0`), as Prometheus does:
/// only a histogram's `le` and a summary's `quantile`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
enum Respelt {
    #[default]
    Nothing,
    Le,
    Quantile,
}

impl Respelt {
    fn of(family: MetricType) -> Respelt {
        match family {
            MetricType::Histogram | MetricType::GaugeHistogram => Respelt::Le,
            MetricType::Summary => Respelt::Quantile,
            _ => Respelt::Nothing,
        }
    }

    /// Whether the label named `name` is the re-spelt one.
    fn is(self, name: &str) -> bool {
        match self {
            Respelt::Nothing => false,
            Respelt::Le => name == "le",
            Respelt::Quantile => name == "quantile",
        }
    }
}

/// The direct path's steps for these label names: false when the names cannot take it.
/// `target_ends[i]` is where the target's `i`-th encoded label ends.
fn plan_steps(
    labels: &[RawLabel<'_>],
    respelt: Respelt,
    target: &[Label],
    target_ends: &[usize],
    honor_labels: bool,
    steps: &mut Vec<Step>,
) -> bool {
    use std::cmp::Ordering::{Equal, Greater, Less};
    if labels.len() > MAX_DIRECT_LABELS || labels.iter().any(|l| l.name.escaped) {
        return false;
    }
    // Label order as exposed is usually sorted but for a histogram's `le` or a
    // summary's `quantile`, which client libraries put last: insertion sort on indices
    // is then linear.
    let mut order = [0u8; MAX_DIRECT_LABELS];
    let order = &mut order[..labels.len()];
    for i in 0..labels.len() {
        let mut j = i;
        while j > 0
            && name_cmp(
                labels[usize::from(order[j - 1])].name.raw,
                labels[i].name.raw,
            ) == Greater
        {
            order[j] = order[j - 1];
            j -= 1;
        }
        order[j] = i as u8;
    }
    let (mut t, mut t_from) = (0, 0);
    // Steps for the target labels that sort before `n`, then for `n` itself; false on a
    // clash that honor_labels does not settle.
    let mut put = |n: &str, step: Step, steps: &mut Vec<Step>| -> bool {
        let mut ord = Less;
        while let Some(tl) = target.get(t) {
            ord = name_cmp(&tl.name, n);
            if ord != Less {
                break;
            }
            t += 1;
        }
        if t > 0 && target_ends[t - 1] > t_from {
            steps.push(Step::Target(t_from as u32, target_ends[t - 1] as u32));
            t_from = target_ends[t - 1];
        }
        if t < target.len() && ord == Equal {
            if !honor_labels {
                return false;
            }
            t_from = target_ends[t];
            t += 1;
        }
        steps.push(step);
        true
    };
    let mut name_pending = true;
    for &i in order.iter() {
        let n = labels[usize::from(i)].name.raw;
        if name_pending {
            match name_cmp(METRIC_NAME, n) {
                Less => {
                    name_pending = false;
                    if !put(METRIC_NAME, Step::Name, steps) {
                        return false;
                    }
                }
                Equal => return false,
                Greater => {}
            }
        }
        if !put(n, Step::Label(i, respelt.is(n)), steps) {
            return false;
        }
    }
    if name_pending && !put(METRIC_NAME, Step::Name, steps) {
        return false;
    }
    if let Some(&end) = target_ends.last() {
        if end > t_from {
            steps.push(Step::Target(t_from as u32, end as u32));
        }
    }
    true
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
    label_bytes: wire::LabelBuf,
    /// The target's labels, encoded once per walk, and where each one ends: the direct
    /// path copies runs of them between scraped labels.
    target_enc: Vec<u8>,
    target_ends: Vec<usize>,
    floats: FloatMemo,
    /// How the direct path merged the last sample's label names (see [`DirectPlan`]).
    plan: DirectPlan,
    /// Tests turn the direct path off to check it against the general one, and count
    /// the samples it encoded.
    #[cfg(test)]
    general_only: bool,
    #[cfg(test)]
    direct: usize,
}

/// Samples with more scraped labels than this take the general path.
const MAX_DIRECT_LABELS: usize = 32;

/// One step of writing a sample's labels on the direct path.
#[derive(Debug, Clone, Copy)]
enum Step {
    /// The target's encoded labels `target_enc[from..to]`.
    Target(u32, u32),
    /// `__name__` with the sample's metric name.
    Name,
    /// The scraped label at this index (as exposed), its value re-spelt as a float
    /// when it is the family's `le` or `quantile`.
    Label(u8, bool),
}

/// The direct path's merge of the sample's label names with `__name__` and the target's
/// labels, in output order, for one sequence of label names as exposed. It depends on
/// nothing but those names, the family's re-spelt label and the walk's target labels
/// and honor_labels, and consecutive samples (a family's series, a histogram's buckets)
/// nearly always share their names: so the sort and the merge's name comparisons are
/// done once per run of alike samples, and each sample only checks its names against
/// the plan's and copies.
#[derive(Debug, Default)]
struct DirectPlan {
    /// False until a plan is made in this walk (a new walk may have other target labels).
    planned: bool,
    /// The label names as exposed, back to back, and where each one ends.
    names: Vec<u8>,
    ends: Vec<u32>,
    respelt: Respelt,
    /// `None`: these names cannot take the direct path (a clash honor_labels does not
    /// settle, an escaped name, or a scraped `__name__`).
    steps: Option<Vec<Step>>,
    /// The plan was checked or made for the last sample handed to the direct path, so
    /// the next one, if the parser finds it has that sample's names
    /// (`Sample::same_names`), fits without comparing them again.
    for_last: bool,
}

impl DirectPlan {
    fn reset(&mut self) {
        self.planned = false;
        self.for_last = false;
    }

    /// True if the plan is for exactly these label names and re-spelt label.
    fn fits(&self, labels: &[RawLabel<'_>], respelt: Respelt) -> bool {
        if !self.planned || self.ends.len() != labels.len() || self.respelt != respelt {
            return false;
        }
        let mut from = 0;
        for (l, &end) in labels.iter().zip(&self.ends) {
            let end = end as usize;
            match self.names.get(from..end) {
                Some(name) if crate::bytes::eq(name, l.name.raw.as_bytes()) => {}
                _ => return false,
            }
            from = end;
        }
        true
    }
}

/// Re-spelt `le`/`quantile` values by their exposed spelling. A histogram repeats its
/// dozen bucket bounds on every label combination, and re-spelling one costs more than
/// the rest of its label's encoding. Direct-mapped, so a collision only costs a miss;
/// the entries are a pure function of the key, so nothing ever needs invalidating.
struct FloatMemo {
    slots: Vec<(String, String)>,
}

impl Default for FloatMemo {
    fn default() -> Self {
        FloatMemo {
            slots: vec![(String::new(), String::new()); Self::SLOTS],
        }
    }
}

impl FloatMemo {
    const SLOTS: usize = 64;
    /// Longer spellings are re-spelt every time rather than stored.
    const MAX_KEY: usize = 24;

    /// `value` as Prometheus spells it, borrowing from the memo or from `value`.
    fn get<'s>(&'s mut self, value: &'s str, tmp: &'s mut String) -> &'s str {
        let b = value.as_bytes();
        if b.is_empty() || b.len() > Self::MAX_KEY {
            return if parse::normalize_float_label(value, tmp) {
                tmp
            } else {
                value
            };
        }
        let mix = b.len()
            ^ (usize::from(b[0]) << 1)
            ^ (usize::from(b[b.len() / 2]) << 2)
            ^ (usize::from(b[b.len() - 1]) << 3);
        let slot = &mut self.slots[mix % Self::SLOTS];
        if !crate::bytes::eq(slot.0.as_bytes(), b) {
            slot.0.clear();
            slot.0.push_str(value);
            // An empty second half means "spelt as exposed".
            parse::normalize_float_label(value, &mut slot.1);
        }
        if slot.1.is_empty() {
            value
        } else {
            &slot.1
        }
    }
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
        let respelt = Respelt::of(family);
        for l in labels {
            let lname = self.intern(l.name);
            let mut value = self.intern(l.value);
            if respelt.is(resolve(lname, &self.arena)) {
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
        scraped.sort_by(|a, b| name_cmp(resolve(a.name, arena), resolve(b.name, arena)));
        let mut conflicts = 0usize;
        let (mut i, mut j) = (0, 0);
        while i < scraped.len() || j < target.len() {
            let ord = match (scraped.get(i), target.get(j)) {
                (Some(r), Some(t)) => name_cmp(resolve(r.name, arena), t.name.as_str()),
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

    /// Encodes the target's labels for [`Walker::encode_direct`].
    fn encode_target(&mut self, target: &[Label]) {
        self.plan.reset();
        self.target_enc.clear();
        self.target_ends.clear();
        for l in target {
            wire::put_label(&mut self.target_enc, l.name.as_bytes(), l.value.as_bytes());
            self.target_ends.push(self.target_enc.len());
        }
    }

    /// Encodes one sample's merged labels straight into `label_bytes`, without the refs
    /// [`Walker::build_refs`] builds and renames, for the common case: nothing escaped,
    /// no empty value, at most [`MAX_DIRECT_LABELS`] scraped labels, no clash with a
    /// target label (unless honor_labels settles it) and no label length limits. Returns false,
    /// with `label_bytes` to be discarded, for any sample outside that case, which then
    /// takes the general path; both give the same bytes.
    fn encode_direct(
        &mut self,
        name: RawStr<'_>,
        labels: &[RawLabel<'_>],
        same_names: bool,
        family: MetricType,
        cfg: &WalkConfig<'_>,
    ) -> bool {
        #[cfg(test)]
        if self.general_only {
            return false;
        }
        // Taken first: a sample refused before the plan is checked leaves it unknown.
        let for_last = std::mem::take(&mut self.plan.for_last);
        let target = cfg.target_labels.as_slice();
        if name.escaped
            || labels.len() > MAX_DIRECT_LABELS
            || cfg.label_name_length_limit > 0
            || cfg.label_value_length_limit > 0
        {
            return false;
        }
        // Exact when the direct path succeeds: no empty value and no clash drops a label.
        let count = 1 + labels.len() + target.len();
        if cfg.label_limit > 0 && count as u64 > cfg.label_limit {
            return false;
        }
        let respelt = Respelt::of(family);
        if labels
            .iter()
            .any(|l| l.value.escaped || l.value.raw.is_empty())
        {
            return false;
        }
        let known = same_names && for_last && self.plan.respelt == respelt;
        if !known && !self.plan.fits(labels, respelt) {
            self.make_plan(labels, respelt, cfg);
        }
        self.plan.for_last = true;
        let Walker {
            tmp,
            label_bytes: out,
            target_enc,
            floats,
            plan,
            ..
        } = self;
        let Some(steps) = &plan.steps else {
            return false;
        };
        out.clear();
        for step in steps {
            match *step {
                Step::Target(from, to) => out.extend(&target_enc[from as usize..to as usize]),
                Step::Name => out.put_label(METRIC_NAME.as_bytes(), name.raw.as_bytes()),
                Step::Label(i, respell) => {
                    let l = &labels[usize::from(i)];
                    let v = if respell {
                        floats.get(l.value.raw, tmp)
                    } else {
                        l.value.raw
                    };
                    out.put_label(l.name.raw.as_bytes(), v.as_bytes());
                }
            }
        }
        #[cfg(test)]
        {
            self.direct += 1;
        }
        true
    }

    /// Plans the direct path for these label names (see [`DirectPlan`]).
    fn make_plan(&mut self, labels: &[RawLabel<'_>], respelt: Respelt, cfg: &WalkConfig<'_>) {
        let plan = &mut self.plan;
        plan.planned = true;
        plan.respelt = respelt;
        plan.names.clear();
        plan.ends.clear();
        for l in labels {
            plan.names.extend_from_slice(l.name.raw.as_bytes());
            plan.ends.push(plan.names.len() as u32);
        }
        let mut steps = plan.steps.take().unwrap_or_default();
        steps.clear();
        let ok = plan_steps(
            labels,
            respelt,
            cfg.target_labels.as_slice(),
            &self.target_ends,
            cfg.honor_labels,
            &mut steps,
        );
        plan.steps = ok.then_some(steps);
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
    /// configured. The same as one [`Walker::walk_part`] call with the whole body.
    pub fn walk<'a>(
        &mut self,
        body: &'a [u8],
        format: Format,
        cfg: &WalkConfig<'a>,
        cache: &mut HashKeyed<Cached>,
        stats: &mut WalkStats,
        emit: &mut dyn FnMut(Series<'_>) -> Result<(), ScrapeFailure>,
    ) -> Result<(), ScrapeFailure> {
        let mut stream = WalkStream::new(format);
        self.walk_part(body, true, &mut stream, cfg, cache, stats, emit)
            .map(|_| ())
    }

    /// Walks one part of a body that arrives in parts (a streamed scrape), with what
    /// crosses part boundaries kept in `stream`. Emits, counts and fails exactly as
    /// [`Walker::walk`] on the whole body (same series, [`WalkStats`], error kind, line
    /// and column), with one exception: invalid UTF-8 is found only when its part
    /// arrives, after the samples of earlier parts were emitted (the walk fails all the
    /// same). Returns how many bytes of `part` were consumed; the rest is the start of an
    /// entry that the part boundary cut (a quoted label value can hold raw line breaks
    /// in the text format) and must be prefixed to the next part.
    ///
    /// The carry loop (the tests' `walk_in_parts` is this loop):
    ///
    /// ```text
    /// stream = WalkStream::new(format)
    /// pending = []             // bytes read but not consumed yet
    /// retry_at = 0
    /// for each chunk read from the body:
    ///     pending += chunk
    ///     cut = 1 + offset of the last b'\n' in pending, or read on if there is none
    ///     if cut < retry_at: read on
    ///     n = walk_part(pending[..cut], last = false, &mut stream, ...)?
    ///     pending.drain(..n)
    ///     retry_at = if n < cut { 2 * (cut - n) } else { 0 }
    /// walk_part(pending, last = true, &mut stream, ...)?   // also when pending is empty
    /// ```
    ///
    /// A part that is not the last must end right after a b'\n', and the next part must
    /// start with the bytes the last call did not consume. `retry_at` keeps a long cut
    /// entry (a label value with many raw line breaks) from being parsed again at every
    /// read: the next try waits until the part is twice the carried bytes, so re-parsing
    /// stays linear in the body; skipping a call never changes the result. After an
    /// error, or after the `last` part, the stream is done.
    #[allow(clippy::too_many_arguments)] // the walk's inputs, each owned by another party
    pub fn walk_part<'a>(
        &mut self,
        part: &'a [u8],
        last: bool,
        stream: &mut WalkStream,
        cfg: &WalkConfig<'a>,
        cache: &mut HashKeyed<Cached>,
        stats: &mut WalkStats,
        emit: &mut dyn FnMut(Series<'_>) -> Result<(), ScrapeFailure>,
    ) -> Result<usize, ScrapeFailure> {
        if stream.saw_eof {
            // The parser ended the body at `# EOF`; a later part may only be empty.
            if part.is_empty() {
                return Ok(0);
            }
            return Err(ParseError {
                line: stream.next_line,
                column: 1,
                kind: ParseErrorKind::DataAfterEof,
            }
            .into());
        }
        let mut parser = parse::Parser::new_part(part, stream.format, stream.next_line, last)?;
        let mut scratch_refs: Vec<LRef<'a>> = Vec::with_capacity(16);
        let mut refs: Vec<LRef<'a>> = Vec::with_capacity(24);
        let target = cfg.target_labels.as_slice();
        self.encode_target(target);
        let scrape_ts = cfg.scrape_ts;
        let mut family = stream.family;
        loop {
            let entry = match parser.next() {
                Ok(Some(entry)) => entry,
                Ok(None) => {
                    stream.family = family;
                    stream.next_line = parser.next_line();
                    stream.saw_eof = parser.saw_eof();
                    return Ok(parser.consumed());
                }
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
                let key = series_hash(s.series.as_bytes());
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
                    self.label_bytes
                        .put_label(l.name.as_bytes(), l.value.as_bytes());
                }
                let labels = self.label_bytes.as_slice();
                let hash = series_hash(labels);
                cache.insert(
                    key,
                    Cached::Keep {
                        labels: labels.into(),
                        hash,
                    },
                );
            } else if !self.encode_direct(s.name, parser.labels(), s.same_names, family, cfg) {
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
                    self.label_bytes.put_label(
                        resolve(r.name, arena).as_bytes(),
                        resolve(r.value, arena).as_bytes(),
                    );
                }
            }
            stats.post_relabel += 1;
            let labels = self.label_bytes.as_slice();
            let hash = series_hash(labels);
            emit(Series {
                labels,
                hash,
                value,
                timestamp,
                explicit_timestamp,
            })?;
        }
    }
}

/// What a walk in parts carries from one part to the next (see [`Walker::walk_part`]).
#[derive(Debug, Clone)]
pub struct WalkStream {
    format: Format,
    /// The type of the last `# TYPE` line, for `le`/`quantile` re-spelling.
    family: MetricType,
    /// The body's 1-based line on which the next part starts.
    next_line: usize,
    /// OpenMetrics `# EOF` was read: the body must end there.
    saw_eof: bool,
}

impl WalkStream {
    /// The state before the first part of a body in `format`.
    pub fn new(format: Format) -> Self {
        WalkStream {
            format,
            family: MetricType::Unknown,
            next_line: 1,
            saw_eof: false,
        }
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
    fn name_order_is_byte_order() {
        let names = [
            "",
            "A",
            "_",
            "__name__",
            "a",
            "ab",
            "grpc_code",
            "grpc_method",
            "grpc_method2",
            "grpc_service",
            "grpc_type",
            "le",
            "quantile",
            "zzzzzzzzzzzzzzzzzz",
            "zzzzzzzzzzzzzzzzzzz",
            "é",
        ];
        for a in names {
            for b in names {
                assert_eq!(name_cmp(a, b), a.cmp(b), "{a:?} vs {b:?}");
            }
        }
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

/// A walk in parts ([`Walker::walk_part`]) emits, counts and fails exactly as the walk of
/// the whole body, wherever the body is cut.
#[cfg(test)]
mod part_tests {
    use super::*;

    use crate::parse::generator;

    /// Everything a walk produced.
    #[derive(Debug, PartialEq)]
    struct Outcome {
        /// Labels, hash, value bits, timestamp and whether it was explicit, per series.
        series: Vec<(Vec<u8>, u64, u64, i64, bool)>,
        scraped: u64,
        post_relabel: u64,
        /// A parse error as (line, column, kind); any other failure as its text.
        parse_error: Option<ParseError>,
        other_error: Option<String>,
    }

    impl Outcome {
        fn new(series: Vec<(Vec<u8>, u64, u64, i64, bool)>, stats: WalkStats) -> Self {
            Outcome {
                series,
                scraped: stats.scraped,
                post_relabel: stats.post_relabel,
                parse_error: None,
                other_error: None,
            }
        }

        fn fail(&mut self, e: ScrapeFailure) {
            match e {
                ScrapeFailure::Parse(e) => self.parse_error = Some(e),
                e => self.other_error = Some(e.to_string()),
            }
        }

        fn is_invalid_utf8(&self) -> bool {
            self.parse_error
                .as_ref()
                .is_some_and(|e| e.kind == ParseErrorKind::InvalidUtf8)
        }
    }

    fn collect(out: &mut Vec<(Vec<u8>, u64, u64, i64, bool)>, s: Series<'_>) {
        out.push((
            s.labels.to_vec(),
            s.hash,
            s.value.to_bits(),
            s.timestamp,
            s.explicit_timestamp,
        ));
    }

    fn walk_whole(body: &[u8], format: Format, cfg: &WalkConfig<'_>) -> Outcome {
        walk_whole_with(&mut Walker::default(), body, format, cfg)
    }

    fn walk_whole_with(
        walker: &mut Walker,
        body: &[u8],
        format: Format,
        cfg: &WalkConfig<'_>,
    ) -> Outcome {
        let mut series = Vec::new();
        let mut stats = WalkStats::default();
        let r = walker.walk(
            body,
            format,
            cfg,
            &mut HashKeyed::default(),
            &mut stats,
            &mut |s| {
                collect(&mut series, s);
                Ok(())
            },
        );
        let mut o = Outcome::new(series, stats);
        if let Err(e) = r {
            o.fail(e);
        }
        o
    }

    /// The worker's carry loop (documented on [`Walker::walk_part`]) over `chunks`, the
    /// reads of one body. `retry` applies the doubling rule for cut entries; without it
    /// a cut entry is tried again with every read that brings a line break.
    fn walk_in_parts<'c>(
        chunks: impl IntoIterator<Item = &'c [u8]>,
        format: Format,
        cfg: &WalkConfig<'_>,
        retry: bool,
    ) -> Outcome {
        let mut walker = Walker::default();
        let mut cache = HashKeyed::default();
        let mut series = Vec::new();
        let mut stats = WalkStats::default();
        let mut stream = WalkStream::new(format);
        let mut pending: Vec<u8> = Vec::new();
        let mut retry_at = 0;
        let mut emit = |s: Series<'_>| {
            collect(&mut series, s);
            Ok(())
        };
        let mut result = Ok(());
        for chunk in chunks {
            pending.extend_from_slice(chunk);
            let Some(nl) = memchr::memrchr(b'\n', &pending) else {
                continue;
            };
            let cut = nl + 1;
            if retry && cut < retry_at {
                continue;
            }
            match walker.walk_part(
                &pending[..cut],
                false,
                &mut stream,
                cfg,
                &mut cache,
                &mut stats,
                &mut emit,
            ) {
                Ok(n) => {
                    assert!(n == 0 || pending[n - 1] == b'\n', "consumed {n} of {cut}");
                    pending.drain(..n);
                    retry_at = if n < cut { 2 * (cut - n) } else { 0 };
                }
                Err(e) => {
                    result = Err(e);
                    break;
                }
            }
        }
        if result.is_ok() {
            result = walker
                .walk_part(
                    &pending,
                    true,
                    &mut stream,
                    cfg,
                    &mut cache,
                    &mut stats,
                    &mut emit,
                )
                .map(|n| assert_eq!(n, pending.len(), "the last part is walked whole"));
        }
        let mut o = Outcome::new(series, stats);
        if let Err(e) = result {
            o.fail(e);
        }
        o
    }

    /// Chunk lengths in `1..=max` from a xorshift seed.
    fn random_chunks(body: &[u8], seed: u64, max: usize) -> Vec<&[u8]> {
        let mut x = seed | 1;
        let mut out = Vec::new();
        let mut rest = body;
        while !rest.is_empty() {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            let len = 1 + (x % max as u64) as usize;
            let (a, b) = rest.split_at(len.min(rest.len()));
            out.push(a);
            rest = b;
        }
        out
    }

    fn target_labels() -> LabelSet {
        LabelSet::from_pairs([("instance", "h:1"), ("job", "j")])
    }

    fn rules() -> Vec<relabel::Rule> {
        let rule = |c: relabel::RelabelConfig| relabel::Rule::compile(&c).expect("rule");
        vec![
            rule(relabel::RelabelConfig {
                source_labels: Some(vec!["__name__".into()]),
                regex: Some(".*_(sum|gsum)".into()),
                action: Some("drop".into()),
                ..Default::default()
            }),
            rule(relabel::RelabelConfig {
                target_label: Some("extra".into()),
                replacement: Some("v".into()),
                ..Default::default()
            }),
        ]
    }

    /// Compares the whole walk with walks in parts cut every way; returns the whole
    /// walk's outcome for the caller's own checks.
    fn check(
        what: &str,
        body: &[u8],
        format: Format,
        cfg: &WalkConfig<'_>,
        small: bool,
    ) -> Outcome {
        let want = walk_whole(body, format, cfg);
        let mut general = Walker {
            general_only: true,
            ..Walker::default()
        };
        assert_eq!(
            walk_whole_with(&mut general, body, format, cfg),
            want,
            "{what}: the general path"
        );
        let same = |how: &str, got: Outcome| {
            if want.is_invalid_utf8() {
                // Found only when its part arrives, after earlier parts were walked.
                assert_eq!(got.parse_error, want.parse_error, "{what} {how}");
            } else {
                assert_eq!(got, want, "{what} {how}");
            }
        };
        let lines: Vec<&[u8]> = body.split_inclusive(|&c| c == b'\n').collect();
        for retry in [false, true] {
            same(
                &format!("by lines, retry {retry}"),
                walk_in_parts(lines.iter().copied(), format, cfg, retry),
            );
            for seed in 1..=6 {
                let chunks = random_chunks(body, seed, if small { 16 } else { 4096 });
                same(
                    &format!("seed {seed}, retry {retry}"),
                    walk_in_parts(chunks, format, cfg, retry),
                );
            }
        }
        if small {
            same(
                "by bytes",
                walk_in_parts(body.chunks(1), format, cfg, false),
            );
            let mut at = 0;
            for line in &lines {
                at += line.len();
                let (a, b) = body.split_at(at);
                same(
                    &format!("cut at {at}"),
                    walk_in_parts([a, b], format, cfg, false),
                );
            }
        }
        want
    }

    fn configs<'c>(target: &'c LabelSet, rules: &'c [relabel::Rule]) -> [WalkConfig<'c>; 2] {
        let plain = WalkConfig {
            target_labels: target,
            scrape_ts: 1000,
            honor_labels: false,
            honor_timestamps: true,
            label_limit: 0,
            label_name_length_limit: 0,
            label_value_length_limit: 0,
            metric_relabel: &[],
        };
        [
            plain,
            WalkConfig {
                metric_relabel: rules,
                ..plain
            },
        ]
    }

    #[test]
    fn corpus_files_walk_the_same_in_parts() {
        let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/data/exposition");
        let mut files: Vec<_> = std::fs::read_dir(&dir)
            .expect("corpus")
            .filter_map(|e| {
                let path = e.ok()?.path();
                let format = match path.extension()?.to_str()? {
                    "prom" => Format::PromText,
                    "om" => Format::OpenMetrics,
                    _ => return None,
                };
                Some((path, format))
            })
            .collect();
        files.sort_by(|a, b| a.0.cmp(&b.0));
        assert!(files.len() >= 30, "corpus has only {} files", files.len());
        let (target, rules) = (target_labels(), rules());
        let mut emitted = 0;
        for (path, format) in &files {
            let body = std::fs::read(path).expect("corpus file");
            for cfg in &configs(&target, &rules) {
                emitted += check(&path.display().to_string(), &body, *format, cfg, true)
                    .series
                    .len();
            }
        }
        assert!(emitted > 200, "only {emitted} series from the corpus");
    }

    #[test]
    fn a_generated_body_walks_the_same_in_parts() {
        let text = generator::realistic_exposition(300_000);
        let om = format!("{text}# EOF\n");
        let (target, rules) = (target_labels(), rules());
        for cfg in &configs(&target, &rules) {
            let a = check("text", text.as_bytes(), Format::PromText, cfg, false);
            let b = check(
                "openmetrics",
                om.as_bytes(),
                Format::OpenMetrics,
                cfg,
                false,
            );
            assert_eq!(a, b);
            assert!(a.series.len() > 2_000 && a.parse_error.is_none());
        }
    }

    #[test]
    fn hand_written_bodies_walk_the_same_in_parts() {
        let (target, rules) = (target_labels(), rules());
        let cfgs = configs(&target, &rules);
        let text = |body: &[u8]| -> Outcome {
            let want = check("text", body, Format::PromText, &cfgs[0], true);
            check("text, relabeled", body, Format::PromText, &cfgs[1], true);
            want
        };
        let om = |body: &[u8]| -> Outcome {
            let want = check("openmetrics", body, Format::OpenMetrics, &cfgs[0], true);
            check(
                "openmetrics, relabeled",
                body,
                Format::OpenMetrics,
                &cfgs[1],
                true,
            );
            want
        };
        let err = |o: &Outcome| {
            o.parse_error
                .as_ref()
                .map(|e| (e.line, e.column, e.kind.clone()))
        };
        let le_one = |o: &Outcome, name: &[u8]| {
            o.series
                .iter()
                .any(|s| s.0.windows(name.len()).any(|w| w == name))
        };

        // A TYPE line whose samples come many lines later: le/quantile still re-spelled.
        let mut body = b"# TYPE h histogram\n".to_vec();
        for i in 0..50 {
            body.extend_from_slice(format!("h_bucket{{x=\"{i}\",le=\"1\"}} {i}\n").as_bytes());
        }
        body.extend_from_slice(b"# TYPE s summary\n# HELP s x\n\ns{quantile=\"1\"} 1\n");
        body.extend_from_slice(b"# TYPE g gauge\ng{le=\"1\"} 1\n");
        let o = text(&body);
        assert!(le_one(&o, b"1.0") && le_one(&o, b"le\x12\x011"));
        assert_eq!(o.scraped, 52);

        // Quoted label values and names with raw line breaks, cut anywhere.
        let o = text(b"a 1\nm{x=\"one\ntwo\n\nfour\",y=\"z\"} 2\nb 3\n{\"quoted\nname\",l=\"v\"} 4\n# HELP \"multi\nline\" text\nc 5");
        assert_eq!((o.scraped, err(&o)), (5, None));
        // Errors in the middle, also after multi-line values: same line and column.
        let o = text(b"a 1\nb 2\nc{x=\"1\"} bad\nd 4\n");
        assert_eq!(err(&o).map(|e| (e.0, e.1)), Some((3, 10)));
        let o = text(b"m{x=\"a\nb\"} 1\nn{y=\"c\nd\"} 2 junk\nnever 3\n");
        assert_eq!(err(&o).map(|e| (e.0, e.1)), Some((4, 7)));
        assert_eq!(o.scraped, 1);
        let o = text(b"a 1\nm{x=\"never\nclosed\n\n");
        assert_eq!(err(&o), Some((2, 5, ParseErrorKind::UnterminatedString)));
        let o = text(b"a 1\nm{x=\"a\\\nb\"} 1\n");
        assert_eq!(err(&o), Some((2, 7, ParseErrorKind::InvalidEscape)));
        // A repeated label name counts as scraped, in parts too.
        let o = text(b"ok 1\nm{a=\"1\",a=\"2\"} 2\nnever 3\n");
        assert_eq!((o.scraped, o.series.len()), (2, 1));
        let o = text(b"a 1\n\nb{x=\"\xff\"} 2\n");
        assert_eq!(err(&o), Some((3, 6, ParseErrorKind::InvalidUtf8)));
        let o = text(b"\n\n  a 1\n\t\n b{x=\"1\"} 2 123\n\n");
        assert_eq!(o.series.len(), 2);
        assert!(text(b"").series.is_empty());

        // OpenMetrics with and without # EOF, and data after it.
        let o = om(b"# TYPE h histogram\nh_bucket{le=\"1\"} 1\n# EOF\n");
        assert!(le_one(&o, b"1.0") && err(&o).is_none());
        let o = om(b"# TYPE h histogram\nh_bucket{le=\"1\"} 1\n");
        assert_eq!(err(&o), Some((3, 1, ParseErrorKind::MissingEof)));
        assert_eq!(o.series.len(), 1);
        let o = om(b"a 1\n# EOF\nb 2\n");
        assert_eq!(err(&o), Some((3, 1, ParseErrorKind::DataAfterEof)));
        let o = om(b"a 1\n# EOF\n\n");
        assert_eq!(err(&o), Some((3, 1, ParseErrorKind::DataAfterEof)));
        let o = om(b"# EOF\n# EOF\n");
        assert_eq!(err(&o), Some((2, 1, ParseErrorKind::DataAfterEof)));
        let o = om(b"a 1\n# EOF ");
        assert_eq!(err(&o), Some((2, 6, ParseErrorKind::DataAfterEof)));
        assert!(err(&om(b"a 1\n# EOF")).is_none());
        let o = om(b"a 1\nb 2");
        assert_eq!(err(&o), Some((2, 4, ParseErrorKind::MissingEof)));
        let o = om(b"");
        assert_eq!(err(&o), Some((1, 1, ParseErrorKind::MissingEof)));
        let o = om(b"# HELP \"a\nb\" text\na 1\n{\"c\nd\",e=\"f\"} 2\n# EOF\n");
        assert_eq!((o.series.len(), err(&o)), (2, None));
        let o = om(b"a 1\nb{x=\"1\n\"} 1\n# EOF\n");
        assert_eq!(err(&o).map(|e| (e.0, e.1)), Some((2, 7)));

        // A limit hit in a later part fails the same way.
        let limited = WalkConfig {
            label_limit: 4,
            ..cfgs[0]
        };
        let o = check(
            "label limit",
            b"a 1\nb{x=\"1\"} 2\nc{x=\"1\",y=\"2\"} 3\nd 4\n",
            Format::PromText,
            &limited,
            true,
        );
        assert_eq!(o.series.len(), 2);
        assert!(o.other_error.is_some_and(|e| e.contains("label_limit")));
    }

    #[test]
    fn the_direct_path_encodes_as_the_general_path() {
        // Target labels before `__name__` (upper case), between and after scraped ones,
        // and some that clash with scraped names.
        let targets = [
            LabelSet::new(),
            target_labels(),
            LabelSet::from_pairs([("A", "1"), ("code", "t"), ("job", "j"), ("zz", "z")]),
        ];
        let mut histogram = b"# TYPE h histogram\n".to_vec();
        // More distinct bounds than the memo has slots, twice, so slots are replaced.
        for round in 0..2 {
            for i in 0..150 {
                let le = match i % 5 {
                    0 => format!("{i}"),
                    1 => format!("0.{i}"),
                    2 => format!("{i}e3"),
                    3 => format!("{i}.50"),
                    _ => "+Inf".to_string(),
                };
                // `le` last, as client libraries write it: out of order in round 1.
                let other = ["code", "method"][round];
                let line = format!("h_bucket{{{other}=\"{round}\",le=\"{le}\"}} {i}\n");
                histogram.extend_from_slice(line.as_bytes());
            }
        }
        let many: String = (0..40)
            .map(|i| format!("l{:02}=\"{i}\",", 39 - i))
            .collect();
        let many = format!("m{{{many}}} 1\nm{{{}}} 2\n", &many[..many.len() - 1]);
        let bodies: [&[u8]; 10] = [
            many.as_bytes(),
            // Alike names in a row (one plan) with values the direct path refuses, and
            // the same names again in a family whose `le` is not re-spelt.
            b"m{a=\"1\"} 1\nm{a=\"\"} 2\nm{a=\"x\\\"y\"} 3\nm{a=\"2\"} 4\n",
            b"# TYPE h histogram\nh_bucket{le=\"1\"} 1\n# TYPE g gauge\ng{le=\"1\"} 2\nh_bucket{le=\"1\"} 3\n",
            b"m{b=\"2\",a=\"1\"} 1\nn{a=\"1\",b=\"2\"} 2\no 3\n",
            b"m{code=\"x\",job=\"y\",zz=\"w\"} 1\nm{A=\"q\",a=\"\"} 2\n",
            b"m{a=\"x\\\"y\"} 1\n{\"esc\\\\name\",a=\"1\"} 2\nm{exported_code=\"e\",code=\"c\"} 3\n",
            b"# TYPE s summary\ns{quantile=\"0.50\"} 1\ns{quantile=\"1\",x=\"\"} 2\n# TYPE g gauge\ng{le=\"1\"} 3\n",
            b"m{__name__=\"n\"} 1\nm{_=\"1\",__a=\"2\",___=\"3\"} 4\n",
            // A sample the direct path refuses before checking its plan, between two
            // names that sort apart: the third sample has the second's names, not the
            // plan's.
            b"m{aaa=\"1\"} 1\nm{zzz=\"\"} 2\nm{zzz=\"3\"} 3\nm{zzz=\"4\"} 4\n",
            &histogram,
        ];
        // One walker throughout, as a worker's, walking each body for one configuration
        // after another: each walk must plan for its own target labels and honor_labels.
        let mut direct = Walker::default();
        for body in bodies {
            for target in &targets {
                for honor_labels in [false, true] {
                    for label_limit in [0, 4] {
                        let cfg = WalkConfig {
                            honor_labels,
                            label_limit,
                            ..configs(target, &[])[0]
                        };
                        let got = walk_whole_with(&mut direct, body, Format::PromText, &cfg);
                        let mut general = Walker {
                            general_only: true,
                            ..Walker::default()
                        };
                        let want = walk_whole_with(&mut general, body, Format::PromText, &cfg);
                        assert_eq!(got, want, "{}", String::from_utf8_lossy(body));
                        assert!(want.scraped > 0);
                        assert_eq!(general.direct, 0);
                    }
                }
            }
        }
        // Most of the samples above fit the direct path (the histogram has 300 per configuration).
        assert!(
            direct.direct > 2_000,
            "direct path used {} times",
            direct.direct
        );
    }

    #[test]
    fn a_part_returns_what_it_consumed() {
        let cfg = configs(&NO_TARGET, &[])[0];
        let mut w = Walker::default();
        let mut stream = WalkStream::new(Format::PromText);
        let mut n = 0;
        let mut walk = |part: &[u8], last, stream: &mut WalkStream| {
            w.walk_part(
                part,
                last,
                stream,
                &cfg,
                &mut HashKeyed::default(),
                &mut WalkStats::default(),
                &mut |_| {
                    n += 1;
                    Ok(())
                },
            )
        };
        let consumed = walk(b"# TYPE h histogram\na 1\nh{le=\"1\n", false, &mut stream);
        assert_eq!(consumed.ok(), Some(23));
        assert_eq!(
            (stream.family, stream.next_line, stream.saw_eof),
            (MetricType::Histogram, 3, false)
        );
        let consumed = walk(b"h{le=\"1\n\"} 2\n", true, &mut stream);
        assert_eq!(consumed.ok(), Some(13));
        assert_eq!(stream.next_line, 5);
        assert_eq!(n, 2);
    }

    static NO_TARGET: LabelSet = LabelSet::new();
}
