//! Cuts each agent's stream into scrapes and compares them case by case.
//!
//! Both agents commit a scrape as one contiguous run — the samples, then staleness
//! markers, then the five report series, `scrape_series_added` last — and deliver runs in
//! commit order. So a stream splits into scrapes at each `scrape_series_added`, and the
//! report series name the target (its public labels) and the scrape time.
//!
//! Scrape k of one agent is compared with scrape k of the other: label sets exactly;
//! values exactly (StaleNaN, any other NaN, and the exact bits of every number); a
//! timestamp equal to its scrape's time as "scrape time", any other (an explicit
//! timestamp from the body) exactly; scrape times as offsets from the target's first
//! scrape, within a tolerance; `scrape_duration_seconds` for presence only.

use super::capture::Captured;
use super::model::{Case, Mode};
use scrapewheel::wire;
use std::collections::{BTreeMap, HashMap};
use std::fmt;

const REPORT: [&str; 5] = [
    "up",
    "scrape_duration_seconds",
    "scrape_samples_scraped",
    "scrape_samples_post_metric_relabeling",
    "scrape_series_added",
];

/// How far apart the two agents' scrape offsets may be.
const OFFSET_TOLERANCE_MS: i64 = 250;

/// A target's identity: its public labels (the report series' labels minus the name).
pub type TargetKey = Vec<(String, String)>;

/// One scrape as committed.
#[derive(Clone, Debug)]
pub struct Scrape {
    pub ts: i64,
    pub samples: Vec<Captured>,
}

/// Scrapes per job, per target, in commit order.
pub type Scrapes = HashMap<String, BTreeMap<TargetKey, Vec<Scrape>>>;

/// Splits an ordered stream into scrapes. A trailing partial scrape is left out.
pub fn segment(stream: &[Captured]) -> Scrapes {
    let mut out: Scrapes = HashMap::new();
    let mut pending: Vec<Captured> = Vec::new();
    let mut up_ts = None;
    for s in stream {
        let name = s.name();
        if name == "up" {
            up_ts = Some(s.ts);
        }
        pending.push(s.clone());
        if name != REPORT[4] {
            continue;
        }
        let key: TargetKey = s
            .labels
            .iter()
            .filter(|(n, _)| n != "__name__")
            .cloned()
            .collect();
        let job = key
            .iter()
            .find(|(n, _)| n == "job")
            .map(|(_, v)| v.clone())
            .unwrap_or_default();
        out.entry(job)
            .or_default()
            .entry(key)
            .or_default()
            .push(Scrape {
                ts: up_ts.take().unwrap_or(s.ts),
                samples: std::mem::take(&mut pending),
            });
    }
    out
}

/// True when `scrapes` holds everything `case` needs from one agent.
pub fn complete(case: &Case, scrapes: &Scrapes) -> bool {
    let Some(targets) = scrapes.get(case.name) else {
        return false;
    };
    targets.len() >= case.active_targets && targets.values().all(|s| s.len() >= case.scrapes)
}

#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord)]
enum Value {
    Stale,
    NaN,
    Bits(u64),
    /// scrape_duration_seconds: compared for presence only.
    Present,
}

#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord)]
enum Time {
    Scrape,
    At(i64),
}

#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord)]
struct Item {
    labels: Vec<(String, String)>,
    value: Value,
    time: Time,
}

/// Prints an item as `name{labels} value @time`, explicit times relative to the base,
/// leaving out the labels it shares with its target (`job`, `instance`, …).
struct Show<'a>(&'a Item, i64, &'a TargetKey);

impl fmt::Display for Show<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let Show(item, base, target) = self;
        let name = item
            .labels
            .iter()
            .find(|(n, _)| n == "__name__")
            .map_or("", |(_, v)| v.as_str());
        let rest: Vec<String> = item
            .labels
            .iter()
            .filter(|l| l.0 != "__name__" && !target.contains(l))
            .map(|(n, v)| format!("{n}={v:?}"))
            .collect();
        write!(f, "{name}{{{}}} ", rest.join(","))?;
        match item.value {
            Value::Stale => write!(f, "StaleNaN")?,
            Value::NaN => write!(f, "NaN")?,
            Value::Bits(b) => write!(f, "{:?}", f64::from_bits(b))?,
            Value::Present => write!(f, "<any>")?,
        }
        match item.time {
            Time::Scrape => Ok(()),
            Time::At(t) => write!(f, " @T{:+}", t - base),
        }
    }
}

fn items(scrape: &Scrape) -> Vec<Item> {
    let mut out: Vec<Item> = scrape
        .samples
        .iter()
        .map(|s| {
            let value = if s.name() == "scrape_duration_seconds" {
                Value::Present
            } else if wire::is_stale_nan(s.value) {
                Value::Stale
            } else if s.value.is_nan() {
                Value::NaN
            } else {
                Value::Bits(s.value.to_bits())
            };
            let time = if s.ts == scrape.ts {
                Time::Scrape
            } else {
                Time::At(s.ts)
            };
            Item {
                labels: s.labels.clone(),
                value,
                time,
            }
        })
        .collect();
    out.sort();
    out
}

/// Items of `a` missing from `b` (multiset difference of sorted lists).
fn missing(a: &[Item], b: &[Item]) -> Vec<Item> {
    let mut counts: BTreeMap<&Item, i64> = BTreeMap::new();
    for i in b {
        *counts.entry(i).or_default() += 1;
    }
    let mut out = Vec::new();
    for i in a {
        match counts.get_mut(i) {
            Some(n) if *n > 0 => *n -= 1,
            _ => out.push(i.clone()),
        }
    }
    out
}

fn show_target(key: &TargetKey) -> String {
    let l: Vec<String> = key
        .iter()
        .filter(|(n, _)| n != "job")
        .map(|(n, v)| format!("{n}={v:?}"))
        .collect();
    format!("{{{}}}", l.join(","))
}

fn show_items(items: &[Item], base: i64, target: &TargetKey) -> String {
    const MAX: usize = 4;
    let mut s: Vec<String> = items
        .iter()
        .take(MAX)
        .map(|i| Show(i, base, target).to_string())
        .collect();
    if items.len() > MAX {
        s.push(format!("… {} more", items.len() - MAX));
    }
    s.join("; ")
}

fn diff_scrape(
    label: &str,
    p: &[Item],
    s: &[Item],
    (base, target): (i64, &TargetKey),
    out: &mut Vec<String>,
) {
    let only_p = missing(p, s);
    let only_s = missing(s, p);
    if only_p.is_empty() && only_s.is_empty() {
        return;
    }
    let mut d = label.to_string();
    if !only_p.is_empty() {
        d.push_str(&format!(
            " prometheus only: [{}]",
            show_items(&only_p, base, target)
        ));
    }
    if !only_s.is_empty() {
        d.push_str(&format!(
            " scrapewheel only: [{}]",
            show_items(&only_s, base, target)
        ));
    }
    out.push(d);
}

/// Every scrape of `case` from one agent, one line per sample (for PARITY_DUMP).
pub fn dump(case: &Case, scrapes: &Scrapes, base: i64) -> String {
    let mut out = String::new();
    for (key, list) in scrapes.get(case.name).into_iter().flatten() {
        out.push_str(&format!("  target {}\n", show_target(key)));
        for (k, s) in list.iter().enumerate() {
            out.push_str(&format!("    scrape {k} at +{}ms\n", s.ts - list[0].ts));
            for i in items(s) {
                out.push_str(&format!("      {}\n", Show(&i, base, key)));
            }
        }
    }
    out
}

/// Every difference between the agents for `case`; empty when they agree.
pub fn compare(case: &Case, p: &Scrapes, s: &Scrapes, base: i64) -> Vec<String> {
    let empty = BTreeMap::new();
    let pt = p.get(case.name).unwrap_or(&empty);
    let st = s.get(case.name).unwrap_or(&empty);
    let mut diffs = Vec::new();
    for (key, ps) in pt {
        if !st.contains_key(key) {
            diffs.push(format!(
                "target {} only in prometheus ({} scrapes)",
                show_target(key),
                ps.len()
            ));
        }
    }
    for (key, ss) in st {
        let Some(ps) = pt.get(key) else {
            diffs.push(format!(
                "target {} only in scrapewheel ({} scrapes)",
                show_target(key),
                ss.len()
            ));
            continue;
        };
        match case.mode {
            Mode::Exact => compare_exact(case, key, ps, ss, base, &mut diffs),
            Mode::Collapsed => compare_collapsed(key, ps, ss, base, &mut diffs),
        }
    }
    if pt.is_empty() && st.is_empty() {
        diffs.push("no scrapes from either agent".into());
    }
    diffs
}

fn compare_exact(
    case: &Case,
    key: &TargetKey,
    ps: &[Scrape],
    ss: &[Scrape],
    base: i64,
    diffs: &mut Vec<String>,
) {
    let n = case.scrapes;
    let target = show_target(key);
    for (agent, got) in [("prometheus", ps.len()), ("scrapewheel", ss.len())] {
        if got < n {
            diffs.push(format!(
                "target {target}: {got} of {n} scrapes from {agent}"
            ));
        }
    }
    for k in 0..n.min(ps.len()).min(ss.len()) {
        let (po, so) = (ps[k].ts - ps[0].ts, ss[k].ts - ss[0].ts);
        if (po - so).abs() > OFFSET_TOLERANCE_MS {
            diffs.push(format!(
                "target {target} scrape {k}: at +{po}ms in prometheus, +{so}ms in scrapewheel"
            ));
        }
        diff_scrape(
            &format!("scrape {k}:"),
            &items(&ps[k]),
            &items(&ss[k]),
            (base, key),
            diffs,
        );
    }
}

/// Consecutive identical scrapes (timestamps aside) collapse to one.
fn collapse(scrapes: &[Scrape]) -> Vec<Vec<Item>> {
    let mut out: Vec<Vec<Item>> = Vec::new();
    for s in scrapes {
        let i = items(s);
        if out.last() != Some(&i) {
            out.push(i);
        }
    }
    out
}

fn compare_collapsed(
    key: &TargetKey,
    ps: &[Scrape],
    ss: &[Scrape],
    base: i64,
    diffs: &mut Vec<String>,
) {
    let (pc, sc) = (collapse(ps), collapse(ss));
    let target = show_target(key);
    if pc.len() != sc.len() {
        diffs.push(format!(
            "target {target}: {} distinct phases in prometheus, {} in scrapewheel",
            pc.len(),
            sc.len()
        ));
    }
    for (k, (p, s)) in pc.iter().zip(&sc).enumerate() {
        diff_scrape(&format!("phase {k}:"), p, s, (base, key), diffs);
    }
}
