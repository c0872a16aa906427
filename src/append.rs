//! The lock-striped append buffer between workers and the spool, and the flusher thread
//! that drains it.
//!
//! A worker commits one scrape's batch (already remote-write `TimeSeries` bytes) to one
//! stripe under one lock acquisition. The stripe is chosen by the target's key, so all of
//! a target's samples pass through one stripe in commit order and reach the spool in
//! timestamp order, which receivers require per series.
//!
//! Batches are snappy-compressed on the committing worker, before the lock is taken, in
//! runs of at most `max_block_samples` entries; a stripe holds the runs' snappy element
//! streams back to back. That keeps the buffer (about a second of samples) at a fifth of
//! its raw size, spreads compression over the workers, and leaves the flusher nothing to
//! compress: element streams of separate inputs concatenate into one valid snappy block
//! (see [`Spool::append_compressed`]), so a block is a contiguous slice of a stripe.
//!
//! The flusher ("sw-flusher") wakes every `flush_interval`, swaps each stripe's buffer for
//! an empty one (so workers wait only for a pointer swap), groups whole runs into blocks of
//! at most `max_block_samples` entries, appends them to the spool (each block tagged with
//! its stripe, so shippers can send stripes in parallel and each in order) and fsyncs
//! once.
//! It runs at the agent's own priority, not the shippers' lower one: workers wait on the
//! stripe locks it takes ([`crate::priority`]). It also flushes early when the memory
//! budget finds the buffer over its share ([`AppendBuffer::request_flush`]).
//! On stop it flushes whatever is left and fsyncs: that is the drain promise. A spool
//! error is logged and counted; the data of that flush is lost and the spool is poisoned,
//! which the readiness endpoint reports.

use crate::budget::{MemoryBudget, Part};
use crate::metrics::{Counter, Gauge, Registry};
use crate::spool::{BlockMeta, Spool};
use crossbeam_channel::{bounded, select, Receiver, Sender};
use parking_lot::Mutex;
use std::cell::RefCell;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::Duration;

/// One compressed run of whole entries in a stripe's buffer.
#[derive(Debug, Clone, Copy)]
struct Run {
    /// Bytes of its snappy elements in the stripe's buffer.
    len: u32,
    /// Its uncompressed length.
    raw: u32,
    entries: u32,
}

#[derive(Default)]
struct Stripe {
    /// Snappy element streams of `runs`, back to back.
    data: Vec<u8>,
    runs: Vec<Run>,
    min_ts: i64,
    max_ts: i64,
}

/// A commit's runs, compressed before the stripe lock is taken. One per thread.
#[derive(Default)]
struct Compressed {
    encoder: Option<snap::raw::Encoder>,
    /// `HEADROOM` bytes, then the runs' elements (`used` bytes), then scratch. It only
    /// grows, so compressing neither allocates nor zeroes in the steady state.
    buf: Vec<u8>,
    used: usize,
    runs: Vec<Run>,
}

/// Room for the longest length header snappy writes before a block's elements.
const HEADROOM: usize = 5;

thread_local! {
    static COMPRESSED: RefCell<Compressed> = RefCell::default();
}

impl Compressed {
    /// The elements of every run, back to back.
    fn elements(&self) -> &[u8] {
        &self.buf[HEADROOM..HEADROOM + self.used]
    }

    /// Compresses `batch`, which holds `entries` entries, in runs of at most
    /// `max_entries` whole entries.
    fn fill(&mut self, batch: &[u8], entries: u64, max_entries: usize) -> Result<(), String> {
        self.used = 0;
        self.runs.clear();
        if entries <= max_entries as u64 {
            // The usual case: one run, and no need to find where entries end.
            return self.push_run(batch, entries as usize);
        }
        let (mut start, mut at, mut n) = (0usize, 0usize, 0usize);
        let mut result = Ok(());
        crate::wire::for_each_entry(batch, |entry| {
            at += entry.len();
            n += 1;
            if n >= max_entries && result.is_ok() {
                result = self.push_run(&batch[start..at], n);
                start = at;
                n = 0;
            }
        })
        .map_err(|e| format!("corrupt batch: {e}"))?;
        result?;
        if n > 0 {
            self.push_run(&batch[start..], n)?;
        }
        Ok(())
    }

    fn push_run(&mut self, raw: &[u8], entries: usize) -> Result<(), String> {
        let too_large = || format!("a run of {} bytes is too large to compress", raw.len());
        let max = snap::raw::max_compress_len(raw.len());
        if max == 0 || raw.len() > u32::MAX as usize {
            return Err(too_large());
        }
        // The block's length header is written over the last bytes before the run
        // (the previous run's tail, or the headroom) and those bytes are put back, so
        // the elements land right after the previous run's without a copy.
        let header = crate::wire::varint_len(raw.len() as u64);
        let end = HEADROOM + self.used;
        if self.buf.len() < end + max {
            self.buf.resize(end + max, 0);
        }
        let mut saved = [0u8; HEADROOM];
        saved[..header].copy_from_slice(&self.buf[end - header..end]);
        let encoder = self.encoder.get_or_insert_with(snap::raw::Encoder::new);
        let n = encoder
            .compress(raw, &mut self.buf[end - header..])
            .map_err(|_| too_large())?;
        self.buf[end - header..end].copy_from_slice(&saved[..header]);
        self.used += n - header;
        self.runs.push(Run {
            len: (n - header) as u32,
            raw: raw.len() as u32,
            entries: entries as u32,
        });
        Ok(())
    }
}

/// The striped buffer. Shared by all workers and the flusher.
pub struct AppendBuffer {
    stripes: Box<[Mutex<Stripe>]>,
    max_block_samples: usize,
    buffered_bytes: AtomicU64,
    budget: Arc<MemoryBudget>,
    /// Early-flush requests to the flusher; one pending request is enough.
    flush_tx: Sender<()>,
    flush_rx: Receiver<()>,
    /// Batches refused because they did not decode (a bug, never expected).
    rejected: AtomicU64,
}

impl AppendBuffer {
    /// A buffer of `stripes` stripes whose blocks hold at most `max_block_samples`
    /// entries (a single run may not be split, so that is also the largest run).
    pub fn new(stripes: usize, max_block_samples: usize, budget: Arc<MemoryBudget>) -> Arc<Self> {
        let n = stripes.max(1);
        let (flush_tx, flush_rx) = bounded(1);
        Arc::new(Self {
            stripes: (0..n).map(|_| Mutex::new(Stripe::default())).collect(),
            max_block_samples: max_block_samples.max(1),
            buffered_bytes: AtomicU64::new(0),
            budget,
            flush_tx,
            flush_rx,
            rejected: AtomicU64::new(0),
        })
    }

    /// Asks the flusher to flush now rather than at its next interval.
    pub fn request_flush(&self) {
        // Full means a request is already pending.
        let _ = self.flush_tx.try_send(());
    }

    /// Appends one scrape's encoded series. `key` picks the stripe and must be stable per
    /// target. `samples` is the number of entries in `batch`; a batch with none is
    /// ignored.
    pub fn commit(&self, key: u64, batch: &[u8], samples: u64, min_ts: i64, max_ts: i64) {
        if samples == 0 || batch.is_empty() {
            return;
        }
        // Block headers take their counts from `samples`, so a caller that miscounts
        // would mislabel blocks: the tests catch that here.
        debug_assert!({
            let mut n = 0u64;
            crate::wire::for_each_entry(batch, |_| n += 1).map_or(true, |()| n == samples)
        });
        COMPRESSED.with(|c| {
            let mut c = c.borrow_mut();
            if let Err(e) = c.fill(batch, samples, self.max_block_samples) {
                // Workers encode batches themselves, so this is a bug: log it, count it,
                // and keep the other stripes going.
                self.rejected.fetch_add(1, Ordering::Relaxed);
                crate::error!(
                    "append buffer refused a batch; its samples are lost",
                    err = e
                );
                return;
            }
            let mut s = self.stripes[(key % self.stripes.len() as u64) as usize].lock();
            if s.runs.is_empty() {
                s.min_ts = min_ts;
                s.max_ts = max_ts;
            } else {
                s.min_ts = s.min_ts.min(min_ts);
                s.max_ts = s.max_ts.max(max_ts);
            }
            s.data.extend_from_slice(c.elements());
            s.runs.extend_from_slice(&c.runs);
            drop(s);
            self.buffered_bytes
                .fetch_add(c.used as u64, Ordering::Relaxed);
            self.budget.add(Part::Append, c.used as i64);
        });
        if self.budget.append_over_share() {
            self.request_flush();
        }
    }

    /// Compressed bytes committed and not yet flushed.
    pub fn buffered_bytes(&self) -> u64 {
        self.buffered_bytes.load(Ordering::Relaxed)
    }

    /// Moves every stripe's content out, one stripe at a time, calling `each` with the
    /// stripe's index, its runs and their elements, and its time range. `spare` is swapped
    /// in so stripes keep a warm allocation.
    fn drain(&self, spare: &mut Stripe, mut each: impl FnMut(u32, &Stripe)) {
        for (index, stripe) in self.stripes.iter().enumerate() {
            spare.data.clear();
            spare.runs.clear();
            {
                let mut s = stripe.lock();
                if s.runs.is_empty() {
                    continue;
                }
                std::mem::swap(&mut *s, spare);
            }
            let bytes = spare.data.len();
            self.buffered_bytes
                .fetch_sub(bytes as u64, Ordering::Relaxed);
            each(index as u32, spare);
            // Released once the bytes are in the spool, so waiters see real room.
            self.budget.add(Part::Append, -(bytes as i64));
        }
    }
}

/// Flusher metrics.
struct FlushMetrics {
    flushes: Arc<Counter>,
    blocks: Arc<Counter>,
    samples: Arc<Counter>,
    errors: Arc<Counter>,
    spool_bytes: Arc<Gauge>,
    retention_removed_bytes: Arc<Counter>,
}

/// The flusher thread handle.
pub struct Flusher {
    stop: Sender<()>,
    handle: JoinHandle<()>,
}

/// Everything the flusher needs.
pub struct FlushConfig {
    pub interval: Duration,
}

impl Flusher {
    pub fn start(
        buffer: Arc<AppendBuffer>,
        spool: Arc<Mutex<Spool>>,
        cfg: FlushConfig,
        reg: &Registry,
    ) -> std::io::Result<Self> {
        let m = FlushMetrics {
            flushes: reg.counter(
                "scrapewheel_flushes_total",
                "Flushes of the append buffer.",
                &[],
            ),
            blocks: reg.counter(
                "scrapewheel_spool_blocks_written_total",
                "Blocks written to the spool.",
                &[],
            ),
            samples: reg.counter(
                "scrapewheel_spool_samples_written_total",
                "Samples written to the spool.",
                &[],
            ),
            errors: reg.counter(
                "scrapewheel_spool_write_errors_total",
                "Flushes that failed to reach the spool (their samples are lost).",
                &[],
            ),
            spool_bytes: reg.gauge(
                "scrapewheel_spool_bytes",
                "Bytes on disk in the spool.",
                &[],
            ),
            retention_removed_bytes: reg.counter(
                "scrapewheel_spool_retention_removed_bytes_total",
                "Bytes removed from the spool by retention.",
                &[],
            ),
        };
        {
            let b = buffer.clone();
            reg.gauge_fn(
                "scrapewheel_append_buffer_bytes",
                "Bytes committed by workers and not yet flushed (snappy-compressed).",
                &[],
                move || b.buffered_bytes() as f64,
            );
            let b = buffer.clone();
            reg.counter_fn(
                "scrapewheel_append_rejected_batches_total",
                "Batches the append buffer could not decode (their samples are lost; a bug).",
                &[],
                move || b.rejected.load(Ordering::Relaxed) as f64,
            );
        }
        let (stop, stop_rx) = bounded(1);
        let handle = std::thread::Builder::new()
            .name("sw-flusher".into())
            .spawn(move || flush_loop(buffer, spool, cfg, m, stop_rx))?;
        Ok(Self { stop, handle })
    }

    /// Flushes what is left, fsyncs and joins the thread.
    pub fn stop(self) {
        let _ = self.stop.send(());
        let _ = self.handle.join();
    }
}

fn flush_loop(
    buffer: Arc<AppendBuffer>,
    spool: Arc<Mutex<Spool>>,
    cfg: FlushConfig,
    m: FlushMetrics,
    stop: Receiver<()>,
) {
    let mut spare = Stripe::default();
    let early = buffer.flush_rx.clone();
    loop {
        let last = select! {
            recv(stop) -> _ => true,
            recv(early) -> _ => false,
            default(cfg.interval) => false,
        };
        flush_once(&buffer, &spool, &m, &mut spare);
        if last {
            break;
        }
    }
}

fn flush_once(buffer: &AppendBuffer, spool: &Mutex<Spool>, m: &FlushMetrics, spare: &mut Stripe) {
    let mut spool = spool.lock();
    let mut failed: Option<String> = None;
    let mut wrote = false;
    let max = buffer.max_block_samples;
    buffer.drain(spare, |stripe, s| {
        if failed.is_some() {
            return;
        }
        // A block is a run of whole runs: a contiguous slice of the stripe's elements.
        let (mut at, mut start, mut raw, mut entries) = (0usize, 0usize, 0usize, 0u32);
        let mut append = |start: usize, end: usize, raw: usize, n: u32| {
            let meta = BlockMeta {
                samples: n,
                stripe,
                min_ts: s.min_ts,
                max_ts: s.max_ts,
            };
            match spool.append_compressed(raw, &s.data[start..end], meta) {
                Ok(()) => {
                    m.blocks.inc();
                    m.samples.add(u64::from(n));
                    Ok(())
                }
                Err(e) => Err(e.to_string()),
            }
        };
        for run in &s.runs {
            if entries > 0 && (entries + run.entries) as usize > max {
                if let Err(e) = append(start, at, raw, entries) {
                    failed = Some(e);
                    return;
                }
                (start, raw, entries) = (at, 0, 0);
            }
            at += run.len as usize;
            raw += run.raw as usize;
            entries += run.entries;
        }
        if entries > 0 {
            if let Err(e) = append(start, at, raw, entries) {
                failed = Some(e);
                return;
            }
        }
        wrote = true;
    });
    if wrote && failed.is_none() {
        if let Err(e) = spool.sync() {
            failed = Some(e.to_string());
        }
    }
    if let Some(e) = failed {
        m.errors.inc();
        crate::error!(
            "spool write failed; samples of this flush are lost",
            err = e
        );
    }
    match spool.enforce_retention(crate::time::unix_ms()) {
        Ok(r) => m.retention_removed_bytes.add(r.removed_bytes),
        Err(e) => crate::error!("spool retention failed", err = e),
    }
    m.flushes.inc();
    m.spool_bytes.set(spool.disk_bytes() as f64);
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::spool::SpoolOptions;

    fn series(name: &str, ts: i64) -> Vec<u8> {
        let mut l = Vec::new();
        crate::wire::put_label(&mut l, b"__name__", name.as_bytes());
        let mut b = Vec::new();
        crate::wire::put_series(&mut b, &l, 1.0, ts);
        b
    }

    /// A spool in a fresh temp dir (kept alive by the returned guard).
    fn open_spool() -> (tempfile::TempDir, Arc<Mutex<Spool>>) {
        let dir = tempfile::tempdir().expect("tempdir");
        let (spool, _) = Spool::open(
            dir.path(),
            SpoolOptions {
                segment_size: 1 << 20,
                retention_size: 0,
                retention_time_ms: 0,
            },
        )
        .expect("open");
        (dir, Arc::new(Mutex::new(spool)))
    }

    /// Starts a real flusher that would not flush on its own for an hour and stops it,
    /// which flushes everything committed.
    fn flush_by_stopping(buf: &Arc<AppendBuffer>, spool: &Arc<Mutex<Spool>>) {
        let reg = Registry::default();
        Flusher::start(
            buf.clone(),
            spool.clone(),
            FlushConfig {
                interval: Duration::from_secs(3600),
            },
            &reg,
        )
        .expect("start")
        .stop();
    }

    /// A batch that does not decode (only a bug could make one) is refused and
    /// counted, and leaves the buffer as it was.
    #[test]
    fn an_undecodable_batch_is_refused_and_counted() {
        let buf = AppendBuffer::new(2, 2, MemoryBudget::unlimited());
        let mut b = series("a", 1);
        b.extend(series("b", 1));
        b.extend(series("c", 1));
        // Cut inside the last entry; three entries are over the limit of two, so the
        // batch is walked entry by entry and the cut is found.
        b.truncate(b.len() - 3);
        buf.commit(1, &b, 3, 1, 1);
        assert_eq!(buf.rejected.load(Ordering::Relaxed), 1);
        assert_eq!(buf.buffered_bytes(), 0);
        buf.commit(1, &series("d", 2), 1, 2, 2);
        assert_eq!(buf.rejected.load(Ordering::Relaxed), 1);
        assert!(buf.buffered_bytes() > 0, "the next batch goes in");
    }

    /// Batches of every size around the block limit, to one stripe and to several:
    /// every block is one valid snappy block holding whole entries, at most the limit
    /// unless one commit's run alone is that large, and the spool holds exactly what
    /// was committed, in commit order per stripe.
    #[test]
    fn compressed_runs_join_into_valid_blocks() {
        let (dir, spool) = open_spool();
        let max = 7;
        let buf = AppendBuffer::new(3, max, MemoryBudget::unlimited());
        let mut want: Vec<Vec<(String, i64)>> = vec![Vec::new(); 3];
        let mut ts = 0;
        for (i, size) in [1usize, 6, 7, 8, 15, 2, 3, 1, 21, 5].iter().enumerate() {
            for key in 0..3u64 {
                let mut b = Vec::new();
                for j in 0..*size {
                    ts += 1;
                    let name = format!("m{key}_{i}_{j}_{}", "x".repeat(j % 5 * 40));
                    b.extend(series(&name, ts));
                    want[key as usize].push((name, ts));
                }
                buf.commit(key, &b, *size as u64, ts, ts);
            }
        }
        flush_by_stopping(&buf, &spool);
        assert_eq!(buf.buffered_bytes(), 0);
        let mut got: Vec<Vec<(String, i64)>> = vec![Vec::new(); 3];
        crate::spool::read_all(dir.path(), |meta, wr| {
            let mut n = 0;
            crate::wire::decode_write_request(wr, |s| {
                n += 1;
                got[meta.stripe as usize].push((s.labels[0].1.to_string(), s.samples[0].1));
            })
            .expect("decodes");
            assert_eq!(n, meta.samples, "block header counts its entries");
            // 21 entries in one commit are cut into runs of 7 before compression.
            assert!(n as usize <= max, "block of {n} entries over {max}");
            Ok(())
        })
        .expect("reads");
        assert_eq!(got, want);
    }

    #[test]
    fn flush_cuts_blocks_and_keeps_per_key_order() {
        let (dir, spool) = open_spool();
        let buf = AppendBuffer::new(4, 3, MemoryBudget::unlimited());
        for ts in 0..10 {
            let mut b = series("a", ts);
            b.extend(series("b", ts));
            buf.commit(7, &b, 2, ts, ts);
        }
        assert!(buf.buffered_bytes() > 0);
        flush_by_stopping(&buf, &spool);
        assert_eq!(buf.buffered_bytes(), 0);
        let mut blocks = Vec::new();
        let mut ts_a = Vec::new();
        crate::spool::read_all(dir.path(), |meta, wr| {
            blocks.push(meta.samples);
            crate::wire::decode_write_request(wr, |s| {
                if s.labels[0].1 == "a" {
                    ts_a.push(s.samples[0].1);
                }
            })
            .expect("decodes");
            Ok(())
        })
        .expect("reads");
        assert_eq!(blocks.iter().sum::<u32>(), 20);
        assert!(blocks.iter().all(|n| *n <= 3));
        assert_eq!(ts_a, (0..10).collect::<Vec<_>>());
    }
}
