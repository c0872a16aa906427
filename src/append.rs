//! The lock-striped append buffer between workers and the spool, and the flusher thread
//! that drains it.
//!
//! A worker commits one scrape's batch (already remote-write `TimeSeries` bytes) to one
//! stripe under one lock acquisition. The stripe is chosen by the target's key, so all of
//! a target's samples pass through one stripe in commit order and reach the spool in
//! timestamp order, which receivers require per series.
//!
//! The flusher ("sw-flusher") wakes every `flush_interval`, swaps each stripe's buffer for
//! an empty one (so workers wait only for a pointer swap), cuts the bytes into blocks of at
//! most `max_block_samples` series entries, appends them to the spool (each block tagged
//! with its stripe, so shippers can send stripes in parallel and each in order) and fsyncs
//! once.
//! It runs at the agent's own priority, not the shippers' lower one: workers wait on the
//! stripe locks it takes ([`crate::background`]). It also flushes early when the memory budget finds the buffer over its share
//! ([`AppendBuffer::request_flush`]).
//! On stop it flushes whatever is left and fsyncs: that is the drain promise. A spool
//! error is logged and counted; the data of that flush is lost and the spool is poisoned,
//! which the readiness endpoint reports.

use crate::budget::{MemoryBudget, Part};
use crate::metrics::{Counter, Gauge, Registry};
use crate::spool::{BlockMeta, Spool};
use crossbeam_channel::{bounded, select, Receiver, Sender};
use parking_lot::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::Duration;

#[derive(Default)]
struct Stripe {
    data: Vec<u8>,
    samples: u64,
    min_ts: i64,
    max_ts: i64,
}

/// The striped buffer. Shared by all workers and the flusher.
pub struct AppendBuffer {
    stripes: Box<[Mutex<Stripe>]>,
    buffered_bytes: AtomicU64,
    budget: Arc<MemoryBudget>,
    /// Early-flush requests to the flusher; one pending request is enough.
    flush_tx: Sender<()>,
    flush_rx: Receiver<()>,
}

impl AppendBuffer {
    pub fn new(stripes: usize, budget: Arc<MemoryBudget>) -> Arc<Self> {
        let n = stripes.max(1);
        let (flush_tx, flush_rx) = bounded(1);
        Arc::new(Self {
            stripes: (0..n).map(|_| Mutex::new(Stripe::default())).collect(),
            buffered_bytes: AtomicU64::new(0),
            budget,
            flush_tx,
            flush_rx,
        })
    }

    /// Asks the flusher to flush now rather than at its next interval.
    pub fn request_flush(&self) {
        // Full means a request is already pending.
        let _ = self.flush_tx.try_send(());
    }

    /// Appends one scrape's encoded series. `key` picks the stripe and must be stable per
    /// target.
    pub fn commit(&self, key: u64, batch: &[u8], samples: u64, min_ts: i64, max_ts: i64) {
        if samples == 0 {
            return;
        }
        let mut s = self.stripes[(key % self.stripes.len() as u64) as usize].lock();
        if s.samples == 0 {
            s.min_ts = min_ts;
            s.max_ts = max_ts;
        } else {
            s.min_ts = s.min_ts.min(min_ts);
            s.max_ts = s.max_ts.max(max_ts);
        }
        s.samples += samples;
        s.data.extend_from_slice(batch);
        drop(s);
        self.buffered_bytes
            .fetch_add(batch.len() as u64, Ordering::Relaxed);
        self.budget.add(Part::Append, batch.len() as i64);
        if self.budget.append_over_share() {
            self.request_flush();
        }
    }

    /// Bytes committed and not yet flushed.
    pub fn buffered_bytes(&self) -> u64 {
        self.buffered_bytes.load(Ordering::Relaxed)
    }

    /// Moves every stripe's content out, one stripe at a time, calling `each` with the
    /// stripe's index, bytes, sample count and time range. `spare` is swapped in so
    /// stripes keep a warm allocation.
    fn drain(&self, spare: &mut Vec<u8>, mut each: impl FnMut(u32, &[u8], u64, i64, i64)) {
        for (index, stripe) in self.stripes.iter().enumerate() {
            spare.clear();
            let (samples, min_ts, max_ts) = {
                let mut s = stripe.lock();
                if s.samples == 0 {
                    continue;
                }
                std::mem::swap(&mut s.data, spare);
                let r = (s.samples, s.min_ts, s.max_ts);
                s.samples = 0;
                r
            };
            self.buffered_bytes
                .fetch_sub(spare.len() as u64, Ordering::Relaxed);
            each(index as u32, spare, samples, min_ts, max_ts);
            // Released once the bytes are in the spool, so waiters see real room.
            self.budget.add(Part::Append, -(spare.len() as i64));
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
    pub max_block_samples: usize,
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
                "Bytes committed by workers and not yet flushed.",
                &[],
                move || b.buffered_bytes() as f64,
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
    let mut spare = Vec::new();
    let early = buffer.flush_rx.clone();
    loop {
        let last = select! {
            recv(stop) -> _ => true,
            recv(early) -> _ => false,
            default(cfg.interval) => false,
        };
        flush_once(&buffer, &spool, &cfg, &m, &mut spare);
        if last {
            break;
        }
    }
}

fn flush_once(
    buffer: &AppendBuffer,
    spool: &Mutex<Spool>,
    cfg: &FlushConfig,
    m: &FlushMetrics,
    spare: &mut Vec<u8>,
) {
    let mut spool = spool.lock();
    let mut failed: Option<String> = None;
    let mut wrote = false;
    buffer.drain(spare, |stripe, bytes, _samples, min_ts, max_ts| {
        if failed.is_some() {
            return;
        }
        let meta = |n: u32| BlockMeta {
            samples: n,
            stripe,
            min_ts,
            max_ts,
        };
        // Blocks are runs of whole entries of the drained buffer, compressed from where
        // they lie: no copy.
        let mut append = |block: &[u8], n: u32| -> Result<(), String> {
            spool.append(block, meta(n)).map_err(|e| e.to_string())?;
            m.blocks.inc();
            m.samples.add(u64::from(n));
            Ok(())
        };
        let (mut n, mut block_start, mut at) = (0u32, 0usize, 0usize);
        let walked = crate::wire::for_each_entry(bytes, |entry| {
            at += entry.len();
            if failed.is_some() {
                return;
            }
            n += 1;
            if n as usize >= cfg.max_block_samples {
                if let Err(e) = append(&bytes[block_start..at], n) {
                    failed = Some(e);
                }
                n = 0;
                block_start = at;
            }
        });
        if let Err(e) = walked {
            failed = Some(format!("corrupt batch in the append buffer: {e}"));
            return;
        }
        if n > 0 && failed.is_none() {
            if let Err(e) = append(&bytes[block_start..], n) {
                failed = Some(e);
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

    #[test]
    fn flush_cuts_blocks_and_keeps_per_key_order() {
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
        let spool = Arc::new(Mutex::new(spool));
        let buf = AppendBuffer::new(4, MemoryBudget::unlimited());
        for ts in 0..10 {
            let mut b = series("a", ts);
            b.extend(series("b", ts));
            buf.commit(7, &b, 2, ts, ts);
        }
        assert!(buf.buffered_bytes() > 0);
        let reg = Registry::default();
        let f = Flusher::start(
            buf.clone(),
            spool.clone(),
            FlushConfig {
                interval: Duration::from_secs(3600),
                max_block_samples: 3,
            },
            &reg,
        )
        .expect("start");
        f.stop();
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
