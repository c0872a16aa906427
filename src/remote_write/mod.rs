//! Remote write: every spooled sample delivered to every `[[remote_write]]` receiver
//! (Prometheus remote-write 1.0), at least once, across outages, restarts and SIGTERM.
//!
//! **Owns** one dispatcher thread per receiver (`sw-rw-<i>`), its shard threads
//! (`sw-rw-<i>-<j>`) and cursor thread (`sw-rw-<i>-cursor`), its cursor file (`<storage.path>/remote_write/<name>.cursor`), its
//! HTTP client and its self-metrics. **Input**: the spool, through one
//! [`SpoolReader`](crate::spool::SpoolReader) per receiver. **Output**: POSTs of
//! snappy-compressed `WriteRequest`s.
//!
//! # Delivery
//!
//! The dispatcher reads blocks in spool order from the receiver's cursor and routes each
//! to shard `stripe % shards`. A shard sends its blocks one at a time and in order, so the
//! blocks of one append-buffer stripe (and all samples of a series are in one stripe)
//! reach the receiver in the order they were scraped, which receivers such as Prometheus
//! require per series; different stripes go in parallel. Blocks are sent exactly as the
//! spool holds them unless external labels or `write_relabel_configs` change labels, or a
//! block holds more than `max_samples_per_send` samples (see `encode`).
//!
//! Answers are handled as Prometheus does: 2xx delivers; 5xx, 429 (with
//! `retry_on_http_429`) and network errors are retried with exponential backoff from
//! `min_backoff` to `max_backoff`, waiting a `Retry-After` instead when the receiver sends
//! one; any other status drops the block's samples, counts them
//! (`..._samples_dropped_total{reason="rejected"}`) and logs the receiver's answer once
//! per distinct error. A receiver that rejects everything therefore never holds up the
//! spool or another receiver. Staleness markers are sent as the StaleNaN bit pattern the
//! spool stores.
//!
//! # Cursors
//!
//! The dispatcher keeps a window of blocks in flight in spool order and acknowledges only
//! its done prefix: the position after the last block of that prefix goes to the spool
//! (`SpoolReader::acknowledge`, which retention consults) and to the cursor file, written
//! atomically (tmp, fsync, rename, directory fsync) each time it moves, by a cursor
//! thread (`sw-rw-<i>-cursor`) so fsyncs never hold up sending. On start a
//! shipper resumes from its cursor file, or from the oldest spooled data when it has none
//! (a new receiver gets everything the spool still holds). Delivery is at-least-once: a
//! crash or kill -9 resends the blocks that were in flight or done but not yet
//! acknowledged, at most `3 × shards` blocks, and nothing before the cursor.
//!
//! # A lagging receiver and retention
//!
//! The spool never deletes data for being delivered; it deletes its oldest segments when
//! it outgrows `storage.retention_size` or their samples are older than
//! `storage.retention_time`. Those limits are hard: a full disk helps no one. So while a
//! receiver keeps up, segments are deleted only after every receiver has passed them
//! (retention consults every cursor and reports any segment it removed early). When a
//! receiver stays down longer than the limits allow, retention deletes segments it has not
//! acknowledged; its reader then reports the gap, and the shipper logs it and adds the
//! exact number of lost samples to `..._samples_dropped_total{reason="retention"}` for
//! that receiver alone, then continues with the oldest data left. Other receivers are not
//! affected, and nothing is dropped silently. To ride out longer outages, raise the
//! retention limits: the disk is the buffer.
//!
//! # Shards
//!
//! A receiver starts with `min_shards` senders. Every second the dispatcher looks back:
//! if requests had to be retried, the receiver is not keeping up and the count halves
//! (down to `min_shards`); if the dispatcher had blocks waiting for a free shard and never
//! caught up with the spool, it doubles, up to `max_shards` and never beyond
//! `engine.stripes` (more shards than stripes would have nothing to send); if it caught up
//! without waiting, it drops by one. A change waits until nothing is in flight, so a
//! stripe never has blocks on two shards at once. `batch_send_deadline` and `capacity`
//! have no role: the flusher cuts blocks every `storage.flush_interval` and the spool is
//! the queue.
//!
//! # Priority
//!
//! The dispatcher and shard threads run at nice +5 ([`crate::priority`]),
//! the scrape path at the nice value the agent was started with. Catching up on a full
//! spool after a restart or an outage takes seconds of CPU; at a lower priority it yields
//! to the workers, so the first scrapes after a restart stay on their phase on a busy
//! host, and it still ships at full speed while the workers leave CPU idle.
//!
//! # Shutdown
//!
//! The agent calls [`RemoteWrite::drain`] after the flusher has written and fsynced the
//! last samples: the shippers keep sending until they reach the spool's end or
//! `storage.drain_timeout` passes (no request outlives it; one already in flight gets a
//! second's grace), then stop. Whatever is left stays in the spool, behind the persisted
//! cursors, and is sent after the next start.

mod client;
mod cursor;
mod encode;
mod metrics;
mod shipper;
mod tls;

use std::path::Path;
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use crossbeam_channel::{bounded, Receiver, RecvTimeoutError, Sender};

pub use cursor::CursorError;

use crate::config::Config;
use crate::metrics::Registry;
use crate::spool::{Position, Spool};
use client::Client;
use cursor::{CursorFile, CursorWriter};
use encode::Rewrite;
use metrics::ReceiverMetrics;
use shipper::{Command, Dispatcher, Shared};

/// How long [`RemoteWrite::drain`] waits past the deadline for requests in flight.
const STOP_GRACE: Duration = Duration::from_secs(2);

/// Why remote write could not start. Each variant names the receiver.
#[derive(Debug, thiserror::Error)]
pub enum RemoteWriteError {
    #[error("remote_write {name:?}: {source}")]
    Cursor {
        name: String,
        #[source]
        source: CursorError,
    },
    #[error("remote_write {name:?} ({url}): {source}")]
    Client {
        name: String,
        url: String,
        #[source]
        source: client::ClientError,
    },
    #[error("remote_write {name:?}: starting thread: {source}")]
    Thread {
        name: String,
        #[source]
        source: std::io::Error,
    },
}

/// One running receiver.
struct Shipper {
    shared: Arc<Shared>,
    ctl: Sender<Command>,
    /// Disconnected when the dispatcher thread has returned.
    exited: Receiver<()>,
    thread: JoinHandle<()>,
}

/// Every receiver's shipper.
pub struct RemoteWrite {
    shippers: Vec<Shipper>,
}

impl RemoteWrite {
    /// Starts a shipper per `[[remote_write]]`, each resuming from its cursor file.
    /// Call it right after the spool opens, before retention can run.
    pub fn start(
        cfg: &Config,
        spool: &Spool,
        registry: &Registry,
    ) -> Result<RemoteWrite, RemoteWriteError> {
        let mut shippers = Vec::with_capacity(cfg.remote_write.len());
        let external: Vec<(String, String)> = cfg
            .global
            .external_labels
            .iter()
            .map(|l| (l.name.clone(), l.value.clone()))
            .collect();
        for (index, rw) in cfg.remote_write.iter().enumerate() {
            let name = rw.name.clone();
            let url = rw.redacted_url();
            let client = Client::new(rw).map_err(|source| RemoteWriteError::Client {
                name: name.clone(),
                url: url.clone(),
                source,
            })?;
            let cursor_err = |source| RemoteWriteError::Cursor {
                name: name.clone(),
                source,
            };
            let mut cursor = CursorFile::new(&cfg.storage.path, &name).map_err(cursor_err)?;
            let start = match cursor.load() {
                Ok(p) => p,
                Err(e @ CursorError::Malformed { .. }) => {
                    crate::warn!(
                        "remote write cursor unreadable",
                        remote_name = name,
                        err = e
                    );
                    None
                }
                Err(e) => return Err(cursor_err(e)),
            };
            let reader = spool.reader(start.unwrap_or_default());
            let acked = reader.position();
            crate::info!(
                "remote write starting",
                remote_name = name,
                url = url,
                from = start.map_or_else(|| "oldest spooled data".to_owned(), |p| p.to_string())
            );
            let metrics = ReceiverMetrics::new(registry, &name, &url);
            let shared = Arc::new(Shared::new(
                name.clone(),
                url,
                client,
                Rewrite {
                    external: external.clone(),
                    rules: rw.write_relabel_configs.clone(),
                    max_samples_per_send: rw.queue_config.max_samples_per_send,
                },
                rw.queue_config.clone(),
                rw.remote_timeout,
                metrics,
            ));
            let cursor = CursorWriter::start(cursor, name.clone(), format!("sw-rw-{index}-cursor"))
                .map_err(|source| RemoteWriteError::Thread {
                    name: name.clone(),
                    source,
                })?;
            let dispatcher = Dispatcher::new(
                Arc::clone(&shared),
                index,
                reader,
                cursor,
                acked,
                cfg.engine.stripes,
            );
            let (ctl, ctl_rx) = bounded(1);
            let (exit_tx, exited) = bounded::<()>(0);
            let thread = std::thread::Builder::new()
                .name(format!("sw-rw-{index}"))
                .spawn(move || {
                    // Dropped when the dispatcher returns, which `exited` observes.
                    let _exit = exit_tx;
                    dispatcher.run(ctl_rx);
                })
                .map_err(|source| RemoteWriteError::Thread {
                    name: name.clone(),
                    source,
                })?;
            shippers.push(Shipper {
                shared,
                ctl,
                exited,
                thread,
            });
        }
        Ok(RemoteWrite { shippers })
    }

    /// Delivers what the spool holds for up to `timeout`, then stops every shipper.
    /// Call after the last flush: nothing new arrives while draining.
    pub fn drain(self, timeout: Duration) {
        let deadline = Instant::now() + timeout;
        for s in &self.shippers {
            // The queue has room for one command and this is the only one ever sent.
            let _ = s.ctl.try_send(Command::Drain { deadline });
        }
        let mut finished = Vec::with_capacity(self.shippers.len());
        for s in &self.shippers {
            finished.push(matches!(
                s.exited.recv_deadline(deadline),
                Err(RecvTimeoutError::Disconnected)
            ));
        }
        for (s, done) in self.shippers.into_iter().zip(finished) {
            let Shipper {
                shared,
                ctl,
                exited,
                thread,
            } = s;
            let left = shared.metrics.lag_bytes.get();
            if done {
                let _ = thread.join();
                crate::info!(
                    "remote write drained",
                    remote_name = shared.name,
                    unsent_bytes = left
                );
                continue;
            }
            drop(ctl);
            let stopped = matches!(
                exited.recv_deadline(deadline + STOP_GRACE),
                Err(RecvTimeoutError::Disconnected)
            );
            if stopped {
                let _ = thread.join();
            }
            crate::warn!(
                "remote write drain timeout: the rest stays in the spool and is sent after the next start",
                remote_name = shared.name,
                unsent_bytes = shared.metrics.lag_bytes.get()
            );
        }
    }
}

/// The cursor a receiver called `name` would resume from (for tools and tests).
pub fn persisted_cursor(data: &Path, name: &str) -> Result<Option<Position>, CursorError> {
    CursorFile::new(data, name)?.load()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::spool::{BlockMeta, SpoolOptions};
    use std::collections::BTreeMap;
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::sync::Mutex;

    /// A loopback receiver that takes `delay` per request on 4 threads and records, per
    /// `stripe` label, the values in arrival order, and the most requests at once.
    struct Recorder {
        url: String,
        server: Arc<tiny_http::Server>,
        seen: Arc<Mutex<BTreeMap<String, Vec<i64>>>>,
        max_parallel: Arc<AtomicUsize>,
        threads: Vec<std::thread::JoinHandle<()>>,
    }

    impl Recorder {
        fn start(delay: Duration) -> Recorder {
            let server = Arc::new(tiny_http::Server::http("127.0.0.1:0").expect("listen"));
            let url = format!("http://{}/write", server.server_addr());
            let seen = Arc::new(Mutex::new(BTreeMap::new()));
            let max_parallel = Arc::new(AtomicUsize::new(0));
            let now = Arc::new(AtomicUsize::new(0));
            let threads = (0..4)
                .map(|_| {
                    let (s, seen, max, now) = (
                        server.clone(),
                        seen.clone(),
                        max_parallel.clone(),
                        now.clone(),
                    );
                    std::thread::spawn(move || {
                        while let Ok(mut req) = s.recv() {
                            let n = now.fetch_add(1, Ordering::SeqCst) + 1;
                            max.fetch_max(n, Ordering::SeqCst);
                            let mut body = Vec::new();
                            let _ = std::io::Read::read_to_end(req.as_reader(), &mut body);
                            let plain = snap::raw::Decoder::new()
                                .decompress_vec(&body)
                                .expect("snappy");
                            std::thread::sleep(delay);
                            let mut seen = seen.lock().expect("lock");
                            crate::wire::decode_write_request(&plain, |s| {
                                let stripe = s
                                    .labels
                                    .iter()
                                    .find(|l| l.0 == "stripe")
                                    .map_or("", |l| l.1)
                                    .to_owned();
                                seen.entry(stripe)
                                    .or_insert_with(Vec::new)
                                    .push(s.samples[0].1);
                            })
                            .expect("decodes");
                            drop(seen);
                            now.fetch_sub(1, Ordering::SeqCst);
                            let _ = req.respond(tiny_http::Response::empty(204));
                        }
                    })
                })
                .collect();
            Recorder {
                url,
                server,
                seen,
                max_parallel,
                threads,
            }
        }
    }

    impl Drop for Recorder {
        fn drop(&mut self) {
            for _ in &self.threads {
                self.server.unblock();
            }
            for t in self.threads.drain(..) {
                let _ = t.join();
            }
        }
    }

    /// `blocks` blocks round-robin over `stripes` stripes; block k holds one sample of
    /// series {stripe="k % stripes"} at timestamp k.
    fn spool_with(dir: &Path, blocks: i64, stripes: i64) -> Spool {
        let (mut spool, _) = Spool::open(
            dir,
            SpoolOptions {
                segment_size: 4096,
                retention_size: 0,
                retention_time_ms: 0,
            },
        )
        .expect("open");
        for k in 0..blocks {
            let mut labels = Vec::new();
            crate::wire::put_label(&mut labels, b"__name__", b"m");
            crate::wire::put_label(&mut labels, b"stripe", (k % stripes).to_string().as_bytes());
            let mut wr = Vec::new();
            crate::wire::put_series(&mut wr, &labels, k as f64, k + 1);
            let meta = BlockMeta {
                samples: 1,
                stripe: (k % stripes) as u32,
                min_ts: k + 1,
                max_ts: k + 1,
            };
            spool.append(&wr, meta).expect("append");
        }
        spool.sync().expect("sync");
        spool
    }

    fn config(data: &Path, url: &str, queue: &str) -> Config {
        let text = format!(
            "[storage]\npath = \"{}\"\n[[remote_write]]\nname = \"r\"\nurl = \"{url}\"\n\
             [remote_write.queue_config]\n{queue}\n",
            data.display()
        );
        Config::from_str(&text, Path::new("test.toml")).expect("config")
    }

    #[test]
    fn shards_grow_under_backlog_and_keep_each_stripe_in_order() {
        let dir = tempfile::tempdir().expect("tempdir");
        let spool = spool_with(&dir.path().join("spool"), 240, 8);
        let rec = Recorder::start(Duration::from_millis(8));
        let cfg = config(dir.path(), &rec.url, "max_shards = 4");
        let reg = Registry::new();
        let rw = RemoteWrite::start(&cfg, &spool, &reg).expect("start");
        let end = spool.durable_end();
        rw.drain(Duration::from_secs(30));

        let seen = rec.seen.lock().expect("lock").clone();
        assert_eq!(seen.len(), 8);
        for (stripe, ts) in &seen {
            let s: i64 = stripe.parse().expect("stripe");
            let want: Vec<i64> = (0..240).filter(|k| k % 8 == s).map(|k| k + 1).collect();
            assert_eq!(ts, &want, "stripe {stripe} arrives complete and in order");
        }
        assert!(
            rec.max_parallel.load(Ordering::SeqCst) >= 2,
            "a backlog of {} blocks at 8 ms each got more than one shard",
            240
        );
        assert_eq!(
            persisted_cursor(dir.path(), "r").expect("cursor"),
            Some(end)
        );
        let text = reg.render();
        assert!(
            text.contains("scrapewheel_remote_write_samples_sent_total{remote_name=\"r\""),
            "{text}"
        );
    }

    #[test]
    fn a_restart_resumes_at_the_cursor() {
        let dir = tempfile::tempdir().expect("tempdir");
        let spool = spool_with(&dir.path().join("spool"), 10, 2);
        let rec = Recorder::start(Duration::ZERO);
        let cfg = config(dir.path(), &rec.url, "");
        let first = RemoteWrite::start(&cfg, &spool, &Registry::new()).expect("start");
        first.drain(Duration::from_secs(10));
        let total = |r: &Recorder| {
            r.seen
                .lock()
                .expect("lock")
                .values()
                .map(Vec::len)
                .sum::<usize>()
        };
        assert_eq!(total(&rec), 10);
        // Nothing new: a second shipper from the persisted cursor sends nothing again.
        let second = RemoteWrite::start(&cfg, &spool, &Registry::new()).expect("start");
        second.drain(Duration::from_secs(10));
        assert_eq!(total(&rec), 10);
    }
}
