//! The wheel thread ("sw-wheel") and its handle: a [`Wheel`] behind a lock, a thread that
//! advances it to the clock's now and dispatches what is due, and a doorbell (a flag pair
//! under a condition variable) that wakes the thread early and stops it.
//!
//! The thread sleeps on the condition variable rather than on a channel's
//! `recv_timeout`: it wakes hundreds of times a second, and a channel's receive spins and
//! yields the CPU several times before it blocks, which cost more than the dispatch.

use std::io;
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::Duration;

use parking_lot::{Mutex, MutexGuard};

use super::clock::Clock;
use super::slots::{DueKind, Wheel};
use super::stats::WheelStats;

/// The default slot width: dispatch lag from bucketing stays under a millisecond.
pub const DEFAULT_TICK: Duration = Duration::from_millis(1);

/// What the dispatch callback did with a due slot.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Dispatch {
    /// Handed to a worker.
    Sent,
    /// Skipped: the target's previous scrape is still in flight.
    Busy,
    /// Skipped: the worker queue is full.
    QueueFull,
}

/// Called on the wheel thread, under the wheel's lock, for every due slot with the job,
/// the slot's due time (Unix ns) and its kind. It must not block and must not call the
/// [`Scheduler`].
pub type DispatchFn<J> = Box<dyn FnMut(&Arc<J>, u64, DueKind) -> Dispatch + Send>;

/// What the handle asks of the thread; both flags are sticky until the thread reads them.
#[derive(Default)]
struct Doorbell {
    flags: std::sync::Mutex<Flags>,
    rung: std::sync::Condvar,
}

#[derive(Default)]
struct Flags {
    /// Re-read the clock and the wheel: the earliest deadline may have moved forward.
    wake: bool,
    stop: bool,
}

impl Doorbell {
    fn ring(&self, stop: bool) {
        let mut f = self.flags.lock().unwrap_or_else(|e| e.into_inner());
        f.wake = true;
        f.stop |= stop;
        self.rung.notify_one();
    }

    /// Sleeps until rung or until `timeout` (`None`: until rung). Returns whether to stop.
    fn wait(&self, timeout: Option<Duration>) -> bool {
        let mut f = self.flags.lock().unwrap_or_else(|e| e.into_inner());
        if !f.wake {
            f = match timeout {
                None => self
                    .rung
                    .wait_while(f, |f| !f.wake)
                    .unwrap_or_else(|e| e.into_inner()),
                Some(t) => match self.rung.wait_timeout_while(f, t, |f| !f.wake) {
                    Ok((f, _)) => f,
                    Err(e) => e.into_inner().0,
                },
            };
        }
        f.wake = false;
        f.stop
    }
}

struct State<J> {
    wheel: Wheel<Arc<J>>,
    /// The deadline the thread is sleeping until (`u64::MAX`: until a message), so an add
    /// posts a wake-up only when it needs the thread sooner.
    wake_at: u64,
}

struct Shared<J> {
    state: Mutex<State<J>>,
    clock: Arc<dyn Clock>,
    stats: Arc<WheelStats>,
}

/// The handle of the wheel thread. Share it by reference or in an `Arc`; dropping it
/// stops the thread like [`Scheduler::stop`].
pub struct Scheduler<J: Send + Sync + 'static> {
    shared: Arc<Shared<J>>,
    doorbell: Arc<Doorbell>,
    thread: Option<JoinHandle<()>>,
}

impl<J: Send + Sync + 'static> Scheduler<J> {
    /// Spawns the "sw-wheel" thread with an empty wheel of `tick`-wide slots.
    pub fn start(
        clock: Arc<dyn Clock>,
        tick: Duration,
        dispatch: DispatchFn<J>,
    ) -> io::Result<Self> {
        let shared = Arc::new(Shared {
            state: Mutex::new(State {
                wheel: Wheel::new(tick, clock.now_ns()),
                wake_at: u64::MAX,
            }),
            clock,
            stats: Arc::new(WheelStats::default()),
        });
        let doorbell = Arc::new(Doorbell::default());
        let thread = std::thread::Builder::new().name("sw-wheel".into()).spawn({
            let shared = Arc::clone(&shared);
            let doorbell = Arc::clone(&doorbell);
            move || {
                crate::priority::scrape_path();
                run(&shared, &doorbell, dispatch)
            }
        })?;
        Ok(Self {
            shared,
            doorbell,
            thread: Some(thread),
        })
    }

    /// Inserts or replaces `key`: due at every Unix time `t` with `t % interval == offset`,
    /// first at the first such `t` from now (see [`Wheel::insert`] for replacement).
    pub fn add(&self, key: u64, interval: Duration, offset: Duration, job: Arc<J>) {
        let now = self.shared.clock.now_ns();
        let mut state = self.shared.state.lock();
        state.wheel.insert(key, interval, offset, job, now);
        self.wake_if_sooner(state);
    }

    /// Removes `key`. Once this returns, no dispatch of `key` starts.
    pub fn remove(&self, key: u64) {
        self.shared.state.lock().wheel.remove(key);
    }

    /// Makes `key` fire once more, as [`DueKind::Final`], at its next due time, and then
    /// disappear. A later `add` of the same key cancels this.
    pub fn retire(&self, key: u64) {
        self.shared.state.lock().wheel.retire(key);
    }

    /// Entries in the wheel, retired ones included until their final slot.
    pub fn len(&self) -> usize {
        self.shared.state.lock().wheel.len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    pub fn stats(&self) -> Arc<WheelStats> {
        Arc::clone(&self.shared.stats)
    }

    /// Makes the thread re-read the clock now: needed after moving a
    /// [`ManualClock`](super::ManualClock), harmless otherwise.
    pub fn wake(&self) {
        self.signal();
    }

    /// False once the thread has exited: stopped, or killed by a panic in the dispatch
    /// callback (then nothing is scraped any more and the owner should stop the process).
    pub fn is_running(&self) -> bool {
        self.thread.as_ref().is_some_and(|t| !t.is_finished())
    }

    /// Stops the thread and waits for it: no dispatch happens after this returns. A panic
    /// of the wheel thread is re-raised here.
    pub fn stop(mut self) {
        if let Err(panic) = self.shutdown() {
            std::panic::resume_unwind(panic);
        }
    }

    fn wake_if_sooner(&self, mut state: MutexGuard<'_, State<J>>) {
        if let Some(deadline) = state.wheel.next_deadline() {
            if deadline < state.wake_at {
                state.wake_at = deadline;
                drop(state);
                self.signal();
            }
        }
    }

    fn signal(&self) {
        // One pending wake-up is as good as many; a thread that is gone ignores it, and
        // `is_running` says so.
        self.doorbell.ring(false);
    }

    fn shutdown(&mut self) -> std::thread::Result<()> {
        self.doorbell.ring(true);
        match self.thread.take() {
            // A dispatch callback that owned the last handle would drop it on the wheel
            // thread itself, which cannot join itself; it is exiting anyway.
            Some(t) if t.thread().id() != std::thread::current().id() => t.join(),
            _ => Ok(()),
        }
    }
}

impl<J: Send + Sync + 'static> Drop for Scheduler<J> {
    fn drop(&mut self) {
        // The panic (if any) was already reported by the panic hook of the wheel thread.
        let _ = self.shutdown();
    }
}

/// The wheel thread's loop: advance, dispatch, sleep until the next deadline or a message.
fn run<J>(shared: &Shared<J>, doorbell: &Doorbell, mut dispatch: DispatchFn<J>) {
    loop {
        let deadline = {
            let mut guard = shared.state.lock();
            let state = &mut *guard;
            // Read under the lock so successive advances see non-decreasing times (an
            // add's earlier reading must not look like a clock step).
            let now = shared.clock.now_ns();
            let stats = &shared.stats;
            state.wheel.advance(now, |due, job| {
                let outcome = dispatch(job, due.due_ns, due.kind);
                stats.record(&due, now, outcome);
                outcome == Dispatch::Sent
            });
            stats.clock_resets.store(
                state.wheel.clock_resets(),
                std::sync::atomic::Ordering::Relaxed,
            );
            let deadline = state.wheel.next_deadline();
            state.wake_at = deadline.unwrap_or(u64::MAX);
            deadline
        };
        let timeout =
            deadline.map(|at| Duration::from_nanos(at.saturating_sub(shared.clock.now_ns())));
        if doorbell.wait(timeout) {
            return;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::wheel::{ManualClock, SystemClock};
    use crossbeam_channel::{bounded, unbounded, Receiver};
    use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
    use std::time::Instant;

    const MS: u64 = 1_000_000;
    const S: u64 = 1_000_000_000;
    const T0: u64 = 1_699_999_200 * S;
    /// Generous: the machine may be loaded; nothing here measures timing precision.
    const BOUND: Duration = Duration::from_secs(10);

    type Seen = (u64, u64, DueKind);

    /// A scheduler whose jobs are their keys; every dispatch is reported on the channel
    /// and answered with whatever `answer` holds.
    fn start(
        clock: Arc<dyn Clock>,
        answer: Arc<Mutex<Dispatch>>,
    ) -> (Scheduler<u64>, Receiver<Seen>) {
        let (tx, rx) = unbounded();
        let dispatch: DispatchFn<u64> = Box::new(move |job, due, kind| {
            // Read before reporting: a test that changes the answer once it has seen this
            // dispatch must not change this dispatch's answer.
            let answer = *answer.lock();
            let _ = tx.send((**job, due, kind));
            answer
        });
        let s = Scheduler::start(clock, DEFAULT_TICK, dispatch).expect("spawn sw-wheel");
        (s, rx)
    }

    fn manual() -> (
        Arc<ManualClock>,
        Scheduler<u64>,
        Receiver<Seen>,
        Arc<Mutex<Dispatch>>,
    ) {
        let clock = Arc::new(ManualClock::new(T0));
        let answer = Arc::new(Mutex::new(Dispatch::Sent));
        let (s, rx) = start(clock.clone(), answer.clone());
        (clock, s, rx, answer)
    }

    /// Waits until the thread has finished any advance in progress: it holds the lock
    /// while advancing, dispatching and recording stats.
    fn settle(s: &Scheduler<u64>) {
        let _ = s.len();
    }

    #[test]
    fn dispatches_due_time_and_kind_when_the_clock_reaches_the_phase() {
        let (clock, s, rx, _) = manual();
        s.add(
            7,
            Duration::from_secs(1),
            Duration::from_millis(100),
            Arc::new(7),
        );
        s.wake();
        // Not due yet: nothing may arrive before the clock moves.
        settle(&s);
        assert!(rx.try_recv().is_err());
        clock.set(T0 + 100 * MS + 300_000);
        s.wake();
        assert_eq!(
            rx.recv_timeout(BOUND),
            Ok((7, T0 + 100 * MS, DueKind::Scrape))
        );
        settle(&s);
        let stats = s.stats();
        assert_eq!(stats.dispatched.load(Relaxed), 1);
        let lag = stats.lag.snapshot();
        assert_eq!((lag.count, lag.max_ns), (1, 300_000));
        s.stop();
    }

    #[test]
    fn skipped_dispatches_are_counted_and_still_rescheduled() {
        let (clock, s, rx, answer) = manual();
        s.add(1, Duration::from_secs(1), Duration::ZERO, Arc::new(1));
        *answer.lock() = Dispatch::Busy;
        clock.set(T0 + S);
        s.wake();
        assert_eq!(rx.recv_timeout(BOUND), Ok((1, T0 + S, DueKind::Scrape)));
        *answer.lock() = Dispatch::QueueFull;
        clock.set(T0 + 2 * S);
        s.wake();
        assert_eq!(rx.recv_timeout(BOUND), Ok((1, T0 + 2 * S, DueKind::Scrape)));
        *answer.lock() = Dispatch::Sent;
        clock.set(T0 + 3 * S);
        s.wake();
        assert_eq!(rx.recv_timeout(BOUND), Ok((1, T0 + 3 * S, DueKind::Scrape)));
        settle(&s);
        let stats = s.stats();
        assert_eq!(stats.skipped_busy.load(Relaxed), 1);
        assert_eq!(stats.skipped_queue_full.load(Relaxed), 1);
        assert_eq!(stats.dispatched.load(Relaxed), 1);
    }

    #[test]
    fn late_thread_dispatches_once_and_counts_missed_slots() {
        let (clock, s, rx, _) = manual();
        s.add(
            1,
            Duration::from_secs(1),
            Duration::from_millis(500),
            Arc::new(1),
        );
        // The clock runs 5.2 s past the first slot before the thread gets to run.
        clock.set(T0 + 5 * S + 700 * MS);
        s.wake();
        assert_eq!(
            rx.recv_timeout(BOUND),
            Ok((1, T0 + 5 * S + 500 * MS, DueKind::Scrape))
        );
        settle(&s);
        assert!(rx.try_recv().is_err(), "no catch-up burst");
        assert_eq!(s.stats().missed_slots.load(Relaxed), 5);
    }

    #[test]
    fn no_dispatch_of_a_key_after_remove_returns() {
        let (clock, s, rx, _) = manual();
        s.add(
            1,
            Duration::from_secs(1),
            Duration::from_millis(10),
            Arc::new(1),
        );
        s.add(
            2,
            Duration::from_secs(1),
            Duration::from_millis(10),
            Arc::new(2),
        );
        assert_eq!(s.len(), 2);
        s.remove(1);
        assert_eq!(s.len(), 1);
        clock.set(T0 + 10 * MS);
        s.wake();
        // Key 2 shares the slot, so once it is seen key 1 would have been too.
        assert_eq!(
            rx.recv_timeout(BOUND),
            Ok((2, T0 + 10 * MS, DueKind::Scrape))
        );
        settle(&s);
        assert!(rx.try_recv().is_err());
    }

    #[test]
    fn retired_key_gets_one_final_dispatch_and_readd_cancels() {
        let (clock, s, rx, _) = manual();
        s.add(1, Duration::from_secs(1), Duration::ZERO, Arc::new(1));
        s.add(2, Duration::from_secs(1), Duration::ZERO, Arc::new(2));
        s.retire(1);
        s.retire(2);
        s.add(2, Duration::from_secs(1), Duration::ZERO, Arc::new(2));
        for n in 1..=3 {
            clock.set(T0 + n * S);
            s.wake();
            let expect_n = if n == 1 { 2 } else { 1 };
            let mut seen: Vec<_> = (0..expect_n).map(|_| rx.recv_timeout(BOUND)).collect();
            settle(&s);
            seen.sort_by_key(|r| r.map(|x| x.0).unwrap_or(0));
            let expected = if n == 1 {
                vec![
                    Ok((1, T0 + S, DueKind::Final)),
                    Ok((2, T0 + S, DueKind::Scrape)),
                ]
            } else {
                vec![Ok((2, T0 + n * S, DueKind::Scrape))]
            };
            assert_eq!(seen, expected);
            assert!(rx.try_recv().is_err());
        }
        assert_eq!(s.len(), 1);
    }

    /// Stops the scheduler on a helper thread so a hang fails the test instead of
    /// blocking it, then checks that the dispatch callback has been dropped.
    fn assert_stops_within_bound(stop: impl FnOnce() + Send + 'static, rx: Receiver<Seen>) {
        let (done_tx, done_rx) = bounded(1);
        std::thread::spawn(move || {
            stop();
            let _ = done_tx.send(());
        });
        assert_eq!(done_rx.recv_timeout(BOUND), Ok(()), "join within bound");
        // The thread exited and dropped its dispatch callback, so nothing can follow.
        while let Ok(seen) = rx.try_recv() {
            let _ = seen;
        }
        assert!(rx.try_recv().is_err_and(|e| e.is_disconnected()));
    }

    #[test]
    fn stop_joins_a_sleeping_thread() {
        let (_clock, s, rx, _) = manual();
        s.add(
            1,
            Duration::from_secs(3600),
            Duration::from_secs(1800),
            Arc::new(1),
        );
        assert!(s.is_running());
        assert_stops_within_bound(move || s.stop(), rx);
    }

    #[test]
    fn dropping_the_handle_disconnects_the_channel_and_stops_the_thread() {
        let (_clock, s, rx, _) = manual();
        s.add(1, Duration::from_secs(60), Duration::ZERO, Arc::new(1));
        assert_stops_within_bound(move || drop(s), rx);
    }

    #[test]
    fn stop_joins_an_idle_thread_with_an_empty_wheel() {
        let (_clock, s, rx, _) = manual();
        assert!(s.is_empty());
        assert_stops_within_bound(move || s.stop(), rx);
    }

    /// A wall-clock offset that comes round `ahead` from now, on a 1 s interval.
    fn offset_in(ahead: Duration) -> Duration {
        let at = SystemClock.now_ns() + ahead.as_nanos() as u64;
        Duration::from_nanos(at % S)
    }

    #[test]
    fn add_wakes_a_thread_idle_on_an_empty_wheel() {
        // An empty wheel sleeps until a message: without the wake-up this never fires.
        let answer = Arc::new(Mutex::new(Dispatch::Sent));
        let (s, rx) = start(Arc::new(SystemClock), answer);
        std::thread::sleep(Duration::from_millis(20));
        let offset = offset_in(Duration::from_millis(200));
        s.add(5, Duration::from_secs(1), offset, Arc::new(5));
        let (key, due, kind) = rx.recv_timeout(BOUND).expect("dispatched");
        assert_eq!(
            (key, due % S, kind),
            (5, offset.as_nanos() as u64, DueKind::Scrape)
        );
        assert!(SystemClock.now_ns() >= due, "never before its due time");
    }

    #[test]
    fn add_of_a_sooner_entry_wakes_a_thread_sleeping_on_a_far_one() {
        let answer = Arc::new(Mutex::new(Dispatch::Sent));
        let (s, rx) = start(Arc::new(SystemClock), answer);
        // Due in about half an hour: the thread goes to sleep until then.
        let far = (SystemClock.now_ns() + 1800 * S) % (3600 * S);
        s.add(
            1,
            Duration::from_secs(3600),
            Duration::from_nanos(far),
            Arc::new(1),
        );
        std::thread::sleep(Duration::from_millis(20));
        let offset = offset_in(Duration::from_millis(200));
        s.add(2, Duration::from_secs(1), offset, Arc::new(2));
        let started = Instant::now();
        let (key, ..) = rx.recv_timeout(BOUND).expect("woken for the sooner entry");
        assert_eq!(key, 2);
        assert!(started.elapsed() < BOUND);
    }

    /// Counts how often the thread looks at the time.
    struct CountingClock {
        inner: ManualClock,
        reads: AtomicU64,
    }

    impl Clock for CountingClock {
        fn now_ns(&self) -> u64 {
            self.reads.fetch_add(1, Relaxed);
            self.inner.now_ns()
        }
    }

    #[test]
    fn idle_thread_does_not_tick() {
        let clock = Arc::new(CountingClock {
            inner: ManualClock::new(T0),
            reads: AtomicU64::new(0),
        });
        let answer = Arc::new(Mutex::new(Dispatch::Sent));
        let (s, _rx) = start(clock.clone(), answer);
        s.add(
            1,
            Duration::from_secs(3600),
            Duration::from_secs(900),
            Arc::new(1),
        );
        std::thread::sleep(Duration::from_millis(300));
        // A 1 ms tick loop would read the clock hundreds of times by now; the sleeping
        // thread reads it a handful of times in all.
        let reads = clock.reads.load(Relaxed);
        assert!(reads <= 10, "{reads} clock reads while idle");
        s.stop();
    }
}
