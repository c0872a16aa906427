//! A bounded many-to-many queue whose waits block without spinning, for the hand-overs
//! that sit idle most of the time: due scrapes from the wheel to the workers, blocks from
//! a remote-write dispatcher to its shards and their reports back.
//!
//! A general-purpose channel's receive spins and yields the CPU several times before it
//! blocks. These waits happen hundreds of times a second, on more threads than there are
//! cores, and the yields cost more CPU than the hand-over itself (and show up as
//! involuntary context switches); a mutex and a parked receiver hand an item over with
//! one futex wake and nothing else.
//!
//! Waiting receivers are woken last-in, first-out: the receiver that went idle most
//! recently takes the next item. Under light load the same one or two threads then do
//! all the work, and the others' buffers (and their malloc arenas) stay cold instead of
//! every thread of a pool touching its own in turn, which is what keeps an idle agent's
//! memory independent of the pool size.
//!
//! Disconnection works as in `std::sync::mpsc`: once every [`Sender`] is gone, receivers
//! drain what is left and then see the queue closed; once every [`Receiver`] is gone,
//! sends fail and give the item back. This module owns no thread.

use std::collections::VecDeque;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::thread::Thread;
use std::time::{Duration, Instant};

struct State<T> {
    items: VecDeque<T>,
    senders: usize,
    receivers: usize,
    /// Receivers waiting for an item, the most recent last.
    waiters: Vec<Arc<Waiter>>,
    /// Senders waiting for room: std's notify is a syscall even with no one to wake, so
    /// it is made only when someone waits.
    waiting_send: usize,
}

/// A receiving thread parked until a sender takes it off the waiter stack.
struct Waiter {
    thread: Thread,
    woken: AtomicBool,
}

thread_local! {
    /// A thread waits on one queue at a time, so one waiter per thread is reused.
    static WAITER: Arc<Waiter> = Arc::new(Waiter {
        thread: std::thread::current(),
        woken: AtomicBool::new(false),
    });
}

impl<T> State<T> {
    /// Takes the most recent waiter off the stack, marked woken; the caller unparks it
    /// once the lock is released.
    fn pop_waiter(&mut self) -> Option<Arc<Waiter>> {
        let w = self.waiters.pop()?;
        w.woken.store(true, Ordering::Release);
        Some(w)
    }
}

struct Shared<T> {
    /// std's mutex, not parking_lot's: its contended path spins briefly and then sleeps,
    /// where parking_lot's yields the CPU in between, the very cost this module avoids.
    state: Mutex<State<T>>,
    /// Signalled when an item leaves or the last receiver leaves.
    room: Condvar,
    capacity: usize,
}

impl<T> Shared<T> {
    fn lock(&self) -> MutexGuard<'_, State<T>> {
        // A panic while holding this lock leaves a valid queue: keep going.
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn item_added(&self, mut s: MutexGuard<'_, State<T>>) {
        let waiter = s.pop_waiter();
        drop(s);
        if let Some(w) = waiter {
            w.thread.unpark();
        }
    }
}

fn wait<'a, T>(cv: &Condvar, g: MutexGuard<'a, State<T>>) -> MutexGuard<'a, State<T>> {
    cv.wait(g).unwrap_or_else(|e| e.into_inner())
}

/// Creates a queue of at most `capacity` items (at least 1).
pub fn bounded<T>(capacity: usize) -> (Sender<T>, Receiver<T>) {
    let capacity = capacity.max(1);
    let shared = Arc::new(Shared {
        state: Mutex::new(State {
            items: VecDeque::with_capacity(capacity.min(4096)),
            senders: 1,
            receivers: 1,
            waiters: Vec::new(),
            waiting_send: 0,
        }),
        room: Condvar::new(),
        capacity,
    });
    (
        Sender {
            shared: shared.clone(),
        },
        Receiver { shared },
    )
}

/// Why [`Sender::try_send`] gave the item back.
#[derive(Debug, PartialEq, Eq)]
pub enum TrySendError<T> {
    Full(T),
    Disconnected(T),
}

/// Why a receive with a deadline returned nothing.
#[derive(Debug, PartialEq, Eq, Clone, Copy)]
pub enum RecvError {
    /// Nothing arrived in time (or, for `try_recv`, nothing was there).
    Empty,
    /// Every sender is gone and the queue is empty.
    Disconnected,
}

pub struct Sender<T> {
    shared: Arc<Shared<T>>,
}

impl<T> Sender<T> {
    /// Queues `item` if there is room now.
    pub fn try_send(&self, item: T) -> Result<(), TrySendError<T>> {
        let mut s = self.shared.lock();
        if s.receivers == 0 {
            return Err(TrySendError::Disconnected(item));
        }
        if s.items.len() >= self.shared.capacity {
            return Err(TrySendError::Full(item));
        }
        s.items.push_back(item);
        self.shared.item_added(s);
        Ok(())
    }

    /// Queues `item`, waiting for room; gives it back when every receiver is gone.
    pub fn send(&self, item: T) -> Result<(), T> {
        let mut s = self.shared.lock();
        loop {
            if s.receivers == 0 {
                return Err(item);
            }
            if s.items.len() < self.shared.capacity {
                s.items.push_back(item);
                self.shared.item_added(s);
                return Ok(());
            }
            s.waiting_send += 1;
            s = wait(&self.shared.room, s);
            s.waiting_send -= 1;
        }
    }
}

impl<T> Clone for Sender<T> {
    fn clone(&self) -> Self {
        self.shared.lock().senders += 1;
        Sender {
            shared: self.shared.clone(),
        }
    }
}

impl<T> Drop for Sender<T> {
    fn drop(&mut self) {
        let mut s = self.shared.lock();
        s.senders -= 1;
        if s.senders == 0 {
            let mut waiters = Vec::new();
            while let Some(w) = s.pop_waiter() {
                waiters.push(w);
            }
            drop(s);
            for w in &waiters {
                w.thread.unpark();
            }
        }
    }
}

pub struct Receiver<T> {
    shared: Arc<Shared<T>>,
}

impl<T> Receiver<T> {
    /// The next item; `None` once every sender is gone and the queue is empty.
    pub fn recv(&self) -> Option<T> {
        self.wait_item(None).ok()
    }

    /// The next item if one is waiting now.
    pub fn try_recv(&self) -> Result<T, RecvError> {
        let mut s = self.shared.lock();
        match self.take(&mut s) {
            Some(item) => Ok(item),
            None if s.senders == 0 => Err(RecvError::Disconnected),
            None => Err(RecvError::Empty),
        }
    }

    /// The next item, waiting until `deadline` at most.
    pub fn recv_deadline(&self, deadline: Instant) -> Result<T, RecvError> {
        self.wait_item(Some(deadline))
    }

    /// The next item, waiting `timeout` at most.
    pub fn recv_timeout(&self, timeout: Duration) -> Result<T, RecvError> {
        self.wait_item(Instant::now().checked_add(timeout))
    }

    fn wait_item(&self, deadline: Option<Instant>) -> Result<T, RecvError> {
        let me = WAITER.with(Arc::clone);
        let mut s = self.shared.lock();
        loop {
            if let Some(item) = self.take(&mut s) {
                return Ok(item);
            }
            if s.senders == 0 {
                return Err(RecvError::Disconnected);
            }
            if deadline.is_some_and(|d| Instant::now() >= d) {
                return Err(RecvError::Empty);
            }
            me.woken.store(false, Ordering::Relaxed);
            s.waiters.push(me.clone());
            drop(s);
            // Parking can end early (a stale unpark, or spuriously): only `woken` counts.
            while !me.woken.load(Ordering::Acquire) {
                match deadline {
                    None => std::thread::park(),
                    Some(d) => {
                        let now = Instant::now();
                        if now >= d {
                            break;
                        }
                        std::thread::park_timeout(d - now);
                    }
                }
            }
            s = self.shared.lock();
            // Senders set `woken` under the lock as they take a waiter off the stack, so
            // a waiter not woken by now is still on it and must leave.
            if !me.woken.load(Ordering::Acquire) {
                if let Some(i) = s.waiters.iter().rposition(|w| Arc::ptr_eq(w, &me)) {
                    s.waiters.remove(i);
                }
            }
        }
    }

    fn take(&self, s: &mut State<T>) -> Option<T> {
        let item = s.items.pop_front()?;
        if s.waiting_send > 0 {
            self.shared.room.notify_one();
        }
        Some(item)
    }

    /// Items waiting now.
    pub fn len(&self) -> usize {
        self.shared.lock().items.len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

impl<T> Clone for Receiver<T> {
    fn clone(&self) -> Self {
        self.shared.lock().receivers += 1;
        Receiver {
            shared: self.shared.clone(),
        }
    }
}

impl<T> Drop for Receiver<T> {
    fn drop(&mut self) {
        let mut s = self.shared.lock();
        s.receivers -= 1;
        if s.receivers == 0 {
            drop(s);
            self.shared.room.notify_all();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn full_queues_give_the_item_back() {
        let (tx, rx) = bounded(2);
        assert_eq!(tx.try_send(1), Ok(()));
        assert_eq!(tx.try_send(2), Ok(()));
        assert_eq!(tx.try_send(3), Err(TrySendError::Full(3)));
        assert_eq!((rx.len(), rx.recv()), (2, Some(1)));
        assert_eq!(tx.try_send(3), Ok(()));
        drop(rx);
        assert_eq!(tx.try_send(4), Err(TrySendError::Disconnected(4)));
        assert_eq!(tx.send(4), Err(4));
    }

    #[test]
    fn receivers_drain_then_stop_when_the_last_sender_goes() {
        let (tx, rx) = bounded(100);
        let workers: Vec<_> = (0..4)
            .map(|_| {
                let rx = rx.clone();
                std::thread::spawn(move || {
                    let mut got = Vec::new();
                    while let Some(i) = rx.recv() {
                        got.push(i);
                    }
                    got
                })
            })
            .collect();
        let tx2 = tx.clone();
        for i in 0..50 {
            assert_eq!(tx.try_send(i), Ok(()));
        }
        drop(tx);
        std::thread::sleep(Duration::from_millis(20));
        for i in 50..100 {
            assert_eq!(tx2.try_send(i), Ok(()));
        }
        drop(tx2);
        let mut all: Vec<i32> = workers
            .into_iter()
            .flat_map(|w| w.join().unwrap_or_default())
            .collect();
        all.sort_unstable();
        assert_eq!(all, (0..100).collect::<Vec<_>>());
        assert_eq!(rx.recv(), None);
        assert_eq!(rx.try_recv(), Err(RecvError::Disconnected));
    }

    #[test]
    fn send_waits_for_room_and_deadlines_expire() {
        let (tx, rx) = bounded(1);
        assert_eq!(
            rx.recv_timeout(Duration::from_millis(5)),
            Err(RecvError::Empty)
        );
        assert_eq!(rx.try_recv(), Err(RecvError::Empty));
        tx.send(1).expect("room");
        let sender = std::thread::spawn(move || tx.send(2));
        // The second send waits until the first item is taken.
        std::thread::sleep(Duration::from_millis(20));
        assert_eq!(rx.len(), 1);
        assert_eq!(rx.recv_timeout(Duration::from_secs(5)), Ok(1));
        assert_eq!(rx.recv_timeout(Duration::from_secs(5)), Ok(2));
        assert_eq!(sender.join().ok(), Some(Ok(())));
        assert_eq!(
            rx.recv_deadline(Instant::now() + Duration::from_secs(5)),
            Err(RecvError::Disconnected)
        );
    }

    /// The receiver that went idle last gets the next item.
    #[test]
    fn the_most_recently_idle_receiver_is_woken_first() {
        let (tx, rx) = bounded::<u32>(8);
        let (got_tx, got_rx) = std::sync::mpsc::channel();
        let mut threads = Vec::new();
        for id in 0..3u32 {
            let rx = rx.clone();
            let got = got_tx.clone();
            threads.push(std::thread::spawn(move || {
                while let Some(item) = rx.recv() {
                    let _ = got.send((id, item));
                }
            }));
            // Let each one park before the next starts, so the order on the stack is
            // 0, 1, 2 (2 on top).
            let deadline = Instant::now() + Duration::from_secs(5);
            while tx.shared.lock().waiters.len() < id as usize + 1 {
                assert!(Instant::now() < deadline, "receiver {id} never parked");
                std::thread::sleep(Duration::from_millis(1));
            }
        }
        for item in 0..5 {
            tx.send(item).expect("send");
            let (id, got) = got_rx
                .recv_timeout(Duration::from_secs(5))
                .expect("an item");
            assert_eq!(
                (id, got),
                (2, item),
                "the last to park serves every item in turn"
            );
            // Wait until it parked again before sending the next.
            let deadline = Instant::now() + Duration::from_secs(5);
            while tx.shared.lock().waiters.len() < 3 {
                assert!(Instant::now() < deadline, "receiver 2 never parked again");
                std::thread::sleep(Duration::from_millis(1));
            }
        }
        drop(tx);
        for t in threads {
            t.join().expect("receiver exits when the sender is gone");
        }
    }

    #[test]
    fn a_blocked_send_fails_when_the_last_receiver_goes() {
        let (tx, rx) = bounded(1);
        tx.send(1).expect("room");
        let sender = std::thread::spawn(move || tx.send(2));
        std::thread::sleep(Duration::from_millis(20));
        drop(rx);
        assert_eq!(sender.join().ok(), Some(Err(2)));
    }
}
