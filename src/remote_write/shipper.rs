//! One receiver's shipping: a dispatcher thread that reads the spool through the
//! receiver's cursor, and the shard threads that POST. See the module docs of
//! `remote_write` for the design; this file is the mechanism.
//!
//! The dispatcher (`sw-rw-<i>`) gives every block (and every gap the reader reports) a
//! sequence number and a slot in a window, routes the block to shard `stripe % shards`,
//! and, as shards report blocks done, pops the done prefix of the window: the position
//! after the last popped slot is acknowledged to the spool and written to the cursor
//! file. A block is therefore never acknowledged before every block read before it.
//!
//! Shards (`sw-rw-<i>-<j>`) each take blocks from a bounded queue, in order, and deliver
//! each one completely (all its parts, with retries) before taking the next, so the
//! blocks of one stripe (hence of one series) reach the receiver in spool order.

use std::collections::{HashSet, VecDeque};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use crate::queue::{self, RecvError, TrySendError};
use crossbeam_channel::TryRecvError;
use parking_lot::Mutex;

use super::client::{Client, Outcome};
use super::cursor::CursorWriter;
use super::encode::{Encoder, Rewrite};
use super::metrics::{DropReason, ReceiverMetrics};
use crate::config::QueueConfig;
use crate::spool::{BlockMeta, GapReason, Position, ReadEvent, SpoolReader};

/// Blocks queued per shard besides the one it is sending.
const SHARD_QUEUE: usize = 2;
/// How often the shard count is reconsidered and the lag gauges refreshed.
const POLICY_INTERVAL: Duration = Duration::from_secs(1);
/// How long the dispatcher waits for spool data when nothing is in flight.
const IDLE_WAIT: Duration = Duration::from_millis(200);
/// How long it waits for spool data or completions while blocks are in flight: the
/// longest a finished block waits to be acknowledged.
const BUSY_WAIT: Duration = Duration::from_millis(10);
/// After an abort, how long the dispatcher waits for requests in flight to answer.
const ABORT_GRACE: Duration = Duration::from_secs(1);
/// Distinct error messages remembered for "log once"; the memory is cleared when full.
const SEEN_ERRORS: usize = 256;

/// What one receiver's threads share.
pub(super) struct Shared {
    pub name: String,
    /// The URL without credentials.
    pub url: String,
    pub client: Client,
    pub rewrite: Rewrite,
    pub queue: QueueConfig,
    pub remote_timeout: Duration,
    pub metrics: ReceiverMetrics,
    /// Retry errors logged since the last success (each outage is logged once).
    retry_errors: Mutex<HashSet<String>>,
    /// Rejections and other permanent errors logged (each distinct one once).
    drop_errors: Mutex<HashSet<String>>,
    /// Set when shutdown starts draining: no request may outlive it.
    drain_deadline: Mutex<Option<Instant>>,
}

impl Shared {
    pub fn new(
        name: String,
        url: String,
        client: Client,
        rewrite: Rewrite,
        queue: QueueConfig,
        remote_timeout: Duration,
        metrics: ReceiverMetrics,
    ) -> Shared {
        Shared {
            name,
            url,
            client,
            rewrite,
            queue,
            remote_timeout,
            metrics,
            retry_errors: Mutex::new(HashSet::new()),
            drop_errors: Mutex::new(HashSet::new()),
            drain_deadline: Mutex::new(None),
        }
    }

    fn request_timeout(&self) -> Duration {
        match *self.drain_deadline.lock() {
            Some(d) => self
                .remote_timeout
                .min(d.saturating_duration_since(Instant::now()))
                .max(Duration::from_millis(1)),
            None => self.remote_timeout,
        }
    }

    /// True the first time `error` is seen in `set` (bounded memory).
    fn first_time(set: &Mutex<HashSet<String>>, error: &str) -> bool {
        let mut set = set.lock();
        if set.contains(error) {
            return false;
        }
        if set.len() >= SEEN_ERRORS {
            set.clear();
        }
        set.insert(error.to_owned());
        true
    }

    fn note_success(&self) {
        let mut errors = self.retry_errors.lock();
        if !errors.is_empty() {
            errors.clear();
            drop(errors);
            crate::info!(
                "remote write receiver is accepting again",
                remote_name = self.name,
                url = self.url
            );
        }
    }
}

/// A block handed to a shard.
struct Work {
    seq: u64,
    block: Vec<u8>,
    meta: BlockMeta,
}

/// A shard's report on one block.
struct Done {
    seq: u64,
    /// False: not delivered (the shard was aborted or panicked); the block stays
    /// unacknowledged and is sent again after the next start.
    delivered: bool,
}

/// Orders from the manager to a dispatcher. Dropping the sender means "abort now".
pub(super) enum Command {
    /// Deliver what is in the spool, then exit; requests end by `deadline`.
    Drain { deadline: Instant },
}

/// A window slot: one block or gap, in spool order.
struct Slot {
    /// The position after it.
    next: Position,
    min_ts: i64,
    max_ts: i64,
    done: bool,
}

/// The dispatcher's state; runs on its own thread.
pub(super) struct Dispatcher {
    shared: Arc<Shared>,
    index: usize,
    reader: SpoolReader,
    cursor: CursorWriter,
    /// Shard count bounds: min_shards and min(max_shards, stripes).
    min: usize,
    cap: usize,
    shards: Vec<queue::Sender<Work>>,
    shard_threads: Vec<JoinHandle<()>>,
    done_tx: Option<queue::Sender<Done>>,
    done_rx: queue::Receiver<Done>,
    /// Dropped to abort the shards' retries and backoff sleeps.
    abort_tx: Option<queue::Sender<()>>,
    abort_rx: queue::Receiver<()>,
    window: VecDeque<Slot>,
    /// Sequence number of `window[0]`.
    base_seq: u64,
    acked: Position,
    /// Newest sample timestamp acknowledged in this run.
    acked_ts: Option<i64>,
    /// A block read but not yet accepted by its shard's queue.
    pending: Option<Work>,
    want_shards: Option<usize>,
    draining: bool,
    /// The reader stood at the durable end on its last read.
    caught_up: bool,
    /// A shard could not take work: it panicked. Shipping stops until a restart.
    broken: bool,
    // Policy window.
    tick: Instant,
    blocked: bool,
    idle_seen: bool,
    retried_at_tick: u64,
}

impl Dispatcher {
    pub fn new(
        shared: Arc<Shared>,
        index: usize,
        reader: SpoolReader,
        cursor: CursorWriter,
        acked: Position,
        stripes: usize,
    ) -> Dispatcher {
        let cap = shared.queue.max_shards.min(stripes).max(1);
        let min = shared.queue.min_shards.clamp(1, cap);
        let (done_tx, done_rx) = queue::bounded(cap * (SHARD_QUEUE + 1) + 1);
        // Nothing is ever sent: dropping the sender is the signal.
        let (abort_tx, abort_rx) = queue::bounded(1);
        shared.metrics.shards_max.set(cap as f64);
        Dispatcher {
            shared,
            index,
            reader,
            cursor,
            min,
            cap,
            shards: Vec::new(),
            shard_threads: Vec::new(),
            done_tx: Some(done_tx),
            done_rx,
            abort_tx: Some(abort_tx),
            abort_rx,
            window: VecDeque::new(),
            base_seq: 0,
            acked,
            acked_ts: None,
            pending: None,
            want_shards: None,
            draining: false,
            caught_up: false,
            broken: false,
            tick: Instant::now(),
            blocked: false,
            idle_seen: false,
            retried_at_tick: 0,
        }
    }

    /// The dispatcher loop: returns when a drain finished or the manager aborted.
    pub fn run(mut self, ctl: crossbeam_channel::Receiver<Command>) {
        crate::priority::lower();
        if let Err(e) = self.set_shards(self.min) {
            crate::error!(
                "remote write cannot start its sender threads; nothing is sent to this receiver",
                remote_name = self.shared.name,
                err = e
            );
            return;
        }
        loop {
            self.collect(None);
            self.advance();
            match ctl.try_recv() {
                Ok(Command::Drain { deadline }) => {
                    *self.shared.drain_deadline.lock() = Some(deadline);
                    self.draining = true;
                }
                Err(TryRecvError::Disconnected) => return self.abort(),
                Err(TryRecvError::Empty) => {}
            }
            if self.tick.elapsed() >= POLICY_INTERVAL {
                self.policy();
            }
            if self.draining && self.caught_up && self.pending.is_none() && self.window.is_empty() {
                return self.finish();
            }
            if self.broken {
                self.collect(Some(IDLE_WAIT));
                continue;
            }
            if let Some(work) = self.pending.take() {
                if let Err(work) = self.route(work) {
                    self.pending = Some(work);
                    self.blocked = true;
                    self.collect(Some(BUSY_WAIT));
                    continue;
                }
            }
            if let Some(n) = self.want_shards {
                if !self.window.is_empty() {
                    self.collect(Some(BUSY_WAIT));
                    continue;
                }
                self.want_shards = None;
                if let Err(e) = self.set_shards(n) {
                    crate::warn!(
                        "remote write could not start another sender thread",
                        remote_name = self.shared.name,
                        err = e
                    );
                }
            }
            if self.window.len() >= self.shards.len() * (SHARD_QUEUE + 1) {
                self.blocked = true;
                self.collect(Some(BUSY_WAIT));
                continue;
            }
            self.read();
            if self.caught_up && !self.window.is_empty() {
                // Nothing to read: wait for completions instead of spinning.
                self.collect(Some(BUSY_WAIT));
            }
        }
    }

    /// Reads the next block or gap into the window.
    fn read(&mut self) {
        let timeout = if self.draining {
            Duration::ZERO
        } else if self.window.is_empty() {
            IDLE_WAIT
        } else {
            BUSY_WAIT
        };
        let mut block = Vec::new();
        match self.reader.next(&mut block, timeout) {
            Ok(ReadEvent::Block { meta, next }) => {
                self.caught_up = false;
                let seq = self.base_seq + self.window.len() as u64;
                self.window.push_back(Slot {
                    next,
                    min_ts: meta.min_ts,
                    max_ts: meta.max_ts,
                    done: false,
                });
                self.pending = Some(Work { seq, block, meta });
            }
            Ok(ReadEvent::Gap {
                from,
                to,
                reason,
                lost_samples,
            }) => {
                self.gap(from, to, &reason, lost_samples);
                self.window.push_back(Slot {
                    next: to,
                    min_ts: i64::MIN,
                    max_ts: i64::MIN,
                    done: true,
                });
            }
            Ok(ReadEvent::Idle) => {
                self.caught_up = true;
                self.idle_seen = true;
            }
            Ok(ReadEvent::End) => {
                self.caught_up = true;
                self.idle_seen = true;
                if !self.draining {
                    // The writer is gone; only shutdown is left to wait for.
                    std::thread::sleep(IDLE_WAIT);
                }
            }
            Err(e) => {
                let msg = e.to_string();
                if Shared::first_time(&self.shared.drop_errors, &msg) {
                    crate::error!(
                        "remote write cannot read the spool; retrying",
                        remote_name = self.shared.name,
                        err = msg
                    );
                }
                self.caught_up = true;
                std::thread::sleep(IDLE_WAIT);
            }
        }
    }

    fn gap(&self, from: Position, to: Position, reason: &GapReason, lost: Option<u64>) {
        let (why, counter, detail) = match reason {
            GapReason::Deleted => (
                "retention deleted spooled data this receiver had not acknowledged",
                Some(DropReason::Retention),
                String::new(),
            ),
            GapReason::Missing => (
                "spool segments are missing",
                Some(DropReason::Corrupt),
                String::new(),
            ),
            GapReason::Corrupt { detail } => (
                "spooled data failed verification",
                Some(DropReason::Corrupt),
                detail.clone(),
            ),
            GapReason::InvalidPosition => (
                "the persisted cursor lies beyond the spool's end (was the spool replaced?); continuing from the spool",
                None,
                String::new(),
            ),
        };
        if let (Some(c), Some(n)) = (counter, lost) {
            self.shared.metrics.dropped(c).add(n);
        }
        let lost = lost.map_or_else(|| "unknown".to_owned(), |n| n.to_string());
        crate::warn!(
            why,
            remote_name = self.shared.name,
            from = from,
            to = to,
            lost_samples = lost,
            detail = detail
        );
    }

    /// Hands `work` to its shard; gives it back when that shard's queue is full.
    fn route(&mut self, work: Work) -> Result<(), Work> {
        let n = self.shards.len().max(1);
        let shard = work.meta.stripe as usize % n;
        let Some(tx) = self.shards.get(shard) else {
            return Err(work);
        };
        match tx.try_send(work) {
            Ok(()) => Ok(()),
            Err(TrySendError::Full(w)) => Err(w),
            Err(TrySendError::Disconnected(w)) => {
                self.broken = true;
                crate::error!(
                    "a remote write sender thread is gone; this receiver stops until restart",
                    remote_name = self.shared.name
                );
                Err(w)
            }
        }
    }

    /// Takes shard reports: all that are ready, or (with `wait`) waits up to that long
    /// for the first.
    fn collect(&mut self, wait: Option<Duration>) {
        let first = match wait {
            Some(d) => self.done_rx.recv_timeout(d).ok(),
            None => self.done_rx.try_recv().ok(),
        };
        let mut next = first;
        while let Some(done) = next {
            self.complete(done);
            next = self.done_rx.try_recv().ok();
        }
    }

    fn complete(&mut self, done: Done) {
        if !done.delivered {
            if self.abort_tx.is_some() {
                self.broken = true;
                crate::error!(
                    "a remote write sender thread failed; this receiver stops until restart",
                    remote_name = self.shared.name
                );
            }
            return;
        }
        let Some(i) = done.seq.checked_sub(self.base_seq) else {
            return;
        };
        if let Some(slot) = self.window.get_mut(i as usize) {
            slot.done = true;
        }
    }

    /// Acknowledges the done prefix of the window and persists the cursor.
    fn advance(&mut self) {
        let mut moved = false;
        while self.window.front().is_some_and(|s| s.done) {
            let Some(slot) = self.window.pop_front() else {
                break;
            };
            self.base_seq += 1;
            self.acked = slot.next;
            if slot.max_ts != i64::MIN {
                let ts = self.acked_ts.map_or(slot.max_ts, |t| t.max(slot.max_ts));
                self.acked_ts = Some(ts);
            }
            moved = true;
        }
        if !moved {
            return;
        }
        self.reader.acknowledge(self.acked);
        if let Some(ts) = self.acked_ts {
            self.shared
                .metrics
                .highest_sent_seconds
                .set(ts as f64 / 1000.0);
        }
        self.cursor.update(self.acked);
        if self.window.is_empty() && self.caught_up {
            self.update_lag();
        }
    }

    /// Reconsiders the shard count (see the module docs) and refreshes the lag gauges.
    fn policy(&mut self) {
        let retried = self.shared.metrics.retried_total();
        let cur = self.shards.len();
        let want = if retried > self.retried_at_tick {
            (cur / 2).max(self.min)
        } else if self.blocked && !self.idle_seen {
            (cur * 2).min(self.cap)
        } else if self.idle_seen && !self.blocked {
            cur.saturating_sub(1).max(self.min)
        } else {
            cur
        };
        if want != cur {
            self.want_shards = Some(want);
        }
        self.retried_at_tick = retried;
        self.blocked = false;
        self.idle_seen = false;
        self.tick = Instant::now();
        self.update_lag();
    }

    fn update_lag(&self) {
        let backlog = self.reader.backlog(self.acked);
        let m = &self.shared.metrics;
        m.lag_bytes.set(backlog.bytes as f64);
        let behind = match self.acked_ts.or(self.window.front().map(|s| s.min_ts)) {
            Some(ts) if backlog.bytes > 0 && ts != i64::MIN && backlog.newest_ts > ts => {
                (backlog.newest_ts - ts) as f64 / 1000.0
            }
            _ => 0.0,
        };
        m.lag_seconds.set(behind);
    }

    /// Grows or shrinks the shard set to `n`. Called only with an empty window, so no
    /// stripe has a block in flight on a shard it is about to leave.
    fn set_shards(&mut self, n: usize) -> std::io::Result<()> {
        while self.shards.len() > n {
            // The thread sees its queue close and exits; it is idle (the window is empty).
            self.shards.pop();
            if let Some(t) = self.shard_threads.pop() {
                let _ = t.join();
            }
        }
        while self.shards.len() < n {
            let Some(done) = self.done_tx.clone() else {
                break;
            };
            let (tx, rx) = queue::bounded(SHARD_QUEUE);
            let shared = Arc::clone(&self.shared);
            let abort = self.abort_rx.clone();
            let t = std::thread::Builder::new()
                .name(format!("sw-rw-{}-{}", self.index, self.shards.len()))
                .spawn(move || shard_loop(shared, rx, done, abort))?;
            self.shards.push(tx);
            self.shard_threads.push(t);
        }
        self.shared.metrics.shards.set(self.shards.len() as f64);
        Ok(())
    }

    /// Drain done: everything durable was delivered (or dropped and counted).
    fn finish(mut self) {
        self.shards.clear();
        for t in self.shard_threads.drain(..) {
            let _ = t.join();
        }
        self.update_lag();
        self.cursor.finish();
    }

    /// Abort: stop retries, give requests in flight a moment, keep what they delivered.
    fn abort(mut self) {
        self.abort_tx = None;
        self.shards.clear();
        self.pending = None;
        self.done_tx = None;
        let deadline = Instant::now() + ABORT_GRACE;
        loop {
            match self.done_rx.recv_deadline(deadline) {
                Ok(done) => self.complete(done),
                // Every shard has exited.
                Err(RecvError::Disconnected) => {
                    for t in self.shard_threads.drain(..) {
                        let _ = t.join();
                    }
                    break;
                }
                // A request is still in flight: leave its thread behind (the process is
                // exiting); its block stays unacknowledged and is sent after restart.
                Err(RecvError::Empty) => break,
            }
        }
        self.advance();
        self.update_lag();
        self.cursor.finish();
    }
}

fn shard_loop(
    shared: Arc<Shared>,
    rx: queue::Receiver<Work>,
    done: queue::Sender<Done>,
    abort: queue::Receiver<()>,
) {
    let mut encoder = Encoder::new(shared.rewrite.clone());
    while let Some(work) = rx.recv() {
        let seq = work.seq;
        let delivered = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
            deliver(&shared, &mut encoder, work, &abort)
        }))
        .unwrap_or_else(|_| {
            crate::error!(
                "remote write sender thread panicked",
                remote_name = shared.name
            );
            false
        });
        if done.send(Done { seq, delivered }).is_err() || !delivered {
            return;
        }
    }
}

/// True once the dispatcher dropped the abort sender.
fn aborted(abort: &queue::Receiver<()>) -> bool {
    matches!(abort.try_recv(), Err(RecvError::Disconnected))
}

/// Sends one block completely. False when aborted before it was delivered.
fn deliver(
    shared: &Shared,
    encoder: &mut Encoder,
    work: Work,
    abort: &queue::Receiver<()>,
) -> bool {
    let m = &shared.metrics;
    let prepared = match encoder.prepare(work.block, work.meta.samples) {
        Ok(p) => p,
        Err(e) => {
            m.dropped(DropReason::Corrupt)
                .add(u64::from(work.meta.samples));
            crate::error!(
                "a spooled block cannot be decoded; dropped",
                remote_name = shared.name,
                samples = work.meta.samples,
                err = e
            );
            return true;
        }
    };
    m.dropped(DropReason::WriteRelabel)
        .add(prepared.relabel_dropped);
    for part in &prepared.parts {
        // A floor, so a configured min_backoff of 0 cannot spin.
        let mut backoff = shared.queue.min_backoff.max(Duration::from_millis(10));
        loop {
            if aborted(abort) {
                return false;
            }
            match shared.client.send(&part.body, shared.request_timeout()) {
                Outcome::Sent => {
                    m.samples_sent.add(part.samples);
                    m.bytes_sent.add(part.body.len() as u64);
                    m.requests_sent.inc();
                    shared.note_success();
                    break;
                }
                Outcome::Drop {
                    class,
                    status,
                    error,
                } => {
                    m.failed(class).inc();
                    m.dropped(DropReason::Rejected).add(part.samples);
                    if Shared::first_time(&shared.drop_errors, &error) {
                        crate::error!(
                            "remote write receiver rejected samples; they are dropped (logged once per distinct error)",
                            remote_name = shared.name,
                            url = shared.url,
                            status = status,
                            samples = part.samples,
                            err = error
                        );
                    }
                    break;
                }
                Outcome::Retry {
                    class,
                    retry_after,
                    error,
                } => {
                    m.failed(class).inc();
                    m.retried(class).inc();
                    if Shared::first_time(&shared.retry_errors, &error) {
                        crate::warn!(
                            "remote write failed; retrying with backoff until the receiver accepts",
                            remote_name = shared.name,
                            url = shared.url,
                            err = error
                        );
                    }
                    let wait = retry_after.unwrap_or(backoff);
                    backoff = (backoff * 2).min(shared.queue.max_backoff);
                    if matches!(abort.recv_timeout(wait), Err(RecvError::Disconnected)) {
                        return false;
                    }
                }
            }
        }
    }
    true
}
