//! What a target remembers between scrapes, kept small on purpose (≤ 64 bytes per active
//! series is the budget):
//!
//! - the hashes of the series its last scrape exposed, as one sorted `Box<[u64]>`
//!   (8 bytes per series) — enough to tell which series vanished and which are new;
//! - the last body that introduced a new series, snappy-compressed, in a file of the
//!   agent's data directory (so it costs no memory at all) — re-parsed, in parts, only
//!   when a series vanishes, to recover its labels for the staleness marker, so no
//!   per-series label cache is needed;
//! - Prometheus's scrape cache as far as it shows in the output (`cache`): nothing beyond
//!   the list above while scrapes succeed;
//! - the newest timestamp committed for series exposed with explicit timestamps
//!   (`ts_floor`), so a sample older than that is dropped as out of order, as Prometheus
//!   drops it, rather than sent to receivers that would reject it;
//! - the report series' label bytes, encoded once per target;
//! - for jobs with metric_relabel_configs only, a cache of relabel results keyed by a
//!   hash of the raw series text (relabeling is the one step worth caching).

use super::cache::SeriesCache;
use crate::budget::Charge;
use crate::labels::{LabelSet, METRIC_NAME};
use crate::parse::Format;
use crate::wire;
use std::io::{self, Read, Write};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};

/// The report series Prometheus writes for every scrape, in the order their values are
/// passed to `Pipeline::report`.
pub const REPORT_NAMES: [&str; 5] = [
    "up",
    "scrape_duration_seconds",
    "scrape_samples_scraped",
    "scrape_samples_post_metric_relabeling",
    "scrape_series_added",
];

pub use crate::hash::HashKeyed;

/// A metric-relabel result for one raw series.
#[derive(Debug)]
pub enum Cached {
    /// Final labels, encoded, and their hash.
    Keep {
        labels: Box<[u8]>,
        hash: u64,
    },
    Drop,
}

/// A body kept to recover the labels of series that later vanish, in snappy's framed
/// format so it can be written and re-read in parts.
#[derive(Debug)]
pub struct StoredBody {
    place: Place,
    pub format: Format,
}

#[derive(Debug)]
enum Place {
    /// Without a body directory (benches, unit tests).
    Memory(Box<[u8]>),
    /// Removed when the body is replaced or its target dropped.
    File(PathBuf),
}

/// Names of body files: unique for the life of the process, so a replaced body's file
/// can be removed without racing its successor.
static NEXT_BODY_FILE: AtomicU64 = AtomicU64::new(0);

/// Where a scrape writes the body it may keep: a new file in `dir`, or memory.
pub struct BodyWriter {
    enc: snap::write::FrameEncoder<Sink>,
    format: Format,
}

enum Sink {
    Memory(Vec<u8>),
    File(io::BufWriter<std::fs::File>, PathBuf),
}

impl Write for Sink {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        match self {
            Sink::Memory(v) => v.write(buf),
            Sink::File(f, _) => f.write(buf),
        }
    }
    fn flush(&mut self) -> io::Result<()> {
        match self {
            Sink::Memory(_) => Ok(()),
            Sink::File(f, _) => f.flush(),
        }
    }
}

impl BodyWriter {
    /// Starts a body in `dir` (a new file) or, without one, in memory.
    pub fn create(dir: Option<&Path>, format: Format) -> io::Result<BodyWriter> {
        let sink = match dir {
            None => Sink::Memory(Vec::new()),
            Some(dir) => {
                let n = NEXT_BODY_FILE.fetch_add(1, Ordering::Relaxed);
                let path = dir.join(format!("{n:016x}.sz"));
                let f = std::fs::File::create(&path)?;
                Sink::File(io::BufWriter::with_capacity(64 * 1024, f), path)
            }
        };
        Ok(BodyWriter {
            enc: snap::write::FrameEncoder::new(sink),
            format,
        })
    }

    pub fn write(&mut self, part: &[u8]) -> io::Result<()> {
        self.enc.write_all(part)
    }

    /// The stored body. On error the file is removed.
    pub fn finish(self) -> io::Result<StoredBody> {
        let format = self.format;
        let sink = self.enc.into_inner().map_err(|e| e.into_error())?;
        let place = match sink {
            Sink::Memory(v) => Place::Memory(v.into_boxed_slice()),
            Sink::File(f, path) => match f.into_inner().map_err(|e| e.into_error()) {
                Ok(_) => Place::File(path),
                Err(e) => {
                    let _ = std::fs::remove_file(&path);
                    return Err(e);
                }
            },
        };
        Ok(StoredBody { place, format })
    }

    /// Drops a body that is not to be kept.
    pub fn discard(self) {
        if let Ok(Sink::File(_, path)) = self.enc.into_inner().map_err(|_| ()) {
            let _ = std::fs::remove_file(path);
        }
    }
}

impl StoredBody {
    /// The decompressed body, to be read in parts.
    pub fn reader(&self) -> io::Result<Box<dyn Read + '_>> {
        Ok(match &self.place {
            Place::Memory(b) => Box::new(snap::read::FrameDecoder::new(&b[..])),
            Place::File(p) => Box::new(snap::read::FrameDecoder::new(std::fs::File::open(p)?)),
        })
    }

    /// Heap bytes held (none for a body in a file).
    pub fn heap_bytes(&self) -> usize {
        match &self.place {
            Place::Memory(b) => b.len(),
            Place::File(_) => 0,
        }
    }
}

impl Drop for StoredBody {
    fn drop(&mut self) {
        if let Place::File(p) = &self.place {
            // A leftover file is only disk, and the directory is cleared at start.
            let _ = std::fs::remove_file(p);
        }
    }
}

#[derive(Debug)]
pub struct ScrapeState {
    /// Hashes of the series the last scrape tracked: sorted, or in the order its body
    /// exposed them (`prev_in_body_order`), which the next scrape follows.
    pub prev: Box<[u64]>,
    pub prev_in_body_order: bool,
    /// Covers at least every series in `prev`.
    pub body: Option<StoredBody>,
    /// Which series Prometheus's scrape cache would hold (for `scrape_series_added`).
    pub cache: SeriesCache,
    /// Series that carried explicit timestamps: the newest timestamp committed. Entries
    /// leave with their series' cache entry.
    pub ts_floor: HashKeyed<i64>,
    pub report_labels: [Box<[u8]>; 5],
    pub relabel_cache: HashKeyed<Cached>,
    /// Size of the last body, to presize the next read.
    pub body_hint: usize,
    /// Unix ns at which the last scrape started (0: never), for the interval-length
    /// summary.
    pub last_start_ns: u64,
    /// This state's bytes in the memory budget.
    pub charge: Charge,
}

impl ScrapeState {
    pub fn new(series_labels: &LabelSet) -> Self {
        let report_labels = REPORT_NAMES.map(|name| {
            let mut set = series_labels.clone();
            set.set(METRIC_NAME, name);
            let mut buf = Vec::new();
            for l in &set {
                wire::put_label(&mut buf, l.name.as_bytes(), l.value.as_bytes());
            }
            buf.into_boxed_slice()
        });
        ScrapeState {
            prev: Box::new([]),
            prev_in_body_order: false,
            body: None,
            cache: SeriesCache::default(),
            ts_floor: HashKeyed::default(),
            report_labels,
            relabel_cache: HashKeyed::default(),
            body_hint: 0,
            last_start_ns: 0,
            charge: Charge::default(),
        }
    }

    /// Approximate heap bytes held, for the series-memory gauge.
    pub fn heap_bytes(&self) -> usize {
        let cache: usize = self
            .relabel_cache
            .values()
            .map(|c| match c {
                Cached::Keep { labels, .. } => labels.len() + 40,
                Cached::Drop => 24,
            })
            .sum();
        self.prev.len() * 8
            + self.cache.heap_bytes()
            + self.ts_floor.len() * 24
            + self.body.as_ref().map_or(0, StoredBody::heap_bytes)
            + self.report_labels.iter().map(|l| l.len()).sum::<usize>()
            + cache
    }
}

/// Walks two sorted, deduplicated hash lists: returns how many of `cur` are not in
/// `prev` and pushes the ones of `prev` missing from `cur` onto `vanished`.
pub fn diff_sorted(prev: &[u64], cur: &[u64], vanished: &mut Vec<u64>) -> u64 {
    let (mut i, mut j, mut added) = (0, 0, 0u64);
    while i < prev.len() && j < cur.len() {
        match prev[i].cmp(&cur[j]) {
            std::cmp::Ordering::Less => {
                vanished.push(prev[i]);
                i += 1;
            }
            std::cmp::Ordering::Greater => {
                added += 1;
                j += 1;
            }
            std::cmp::Ordering::Equal => {
                i += 1;
                j += 1;
            }
        }
    }
    vanished.extend_from_slice(&prev[i..]);
    added + (cur.len() - j) as u64
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn diff_finds_added_and_vanished() {
        let mut v = Vec::new();
        assert_eq!(diff_sorted(&[1, 3, 5, 7], &[2, 3, 7, 8, 9], &mut v), 3);
        assert_eq!(v, vec![1, 5]);
        v.clear();
        assert_eq!(diff_sorted(&[], &[1], &mut v), 1);
        assert!(v.is_empty());
        assert_eq!(diff_sorted(&[4], &[], &mut v), 0);
        assert_eq!(v, vec![4]);
    }

    #[test]
    fn report_labels_are_sorted_with_name() {
        let s = ScrapeState::new(&LabelSet::from_pairs([("job", "j"), ("Zone", "z")]));
        let mut buf = Vec::new();
        wire::put_series(&mut buf, &s.report_labels[0], 1.0, 1);
        let mut names = Vec::new();
        wire::decode_write_request(&buf, |d| {
            names = d.labels.iter().map(|(n, v)| format!("{n}={v}")).collect()
        })
        .expect("decodes");
        assert_eq!(names, ["Zone=z", "__name__=up", "job=j"]);
    }
}
