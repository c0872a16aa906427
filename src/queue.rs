//! A bounded many-to-many queue whose waits block without spinning, for the hand-overs
//! that sit idle most of the time: due scrapes from the wheel to the workers, blocks from
//! a remote-write dispatcher to its shards and their reports back.
//!
//! A general-purpose channel's receive spins and yields the CPU several times before it
//! blocks. These waits happen hundreds of times a second, on more threads than there are
//! cores, and the yields cost more CPU than the hand-over itself (and show up as
//! involuntary context switches); a mutex and two condition variables hand an item over
//! with one futex wake and nothing else.
//!
//! Disconnection works as in `std::sync::mpsc`: once every [`Sender`] is gone, receivers
//! drain what is left and then see the queue closed; once every [`Receiver`] is gone,
//! sends fail and give the item back. This module owns no thread.

use std::collections::VecDeque;
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::time::{Duration, Instant};

struct State<T> {
    items: VecDeque<T>,
    senders: usize,
    receivers: usize,
    /// Threads waiting in a receive or a send: std's notify is a syscall even with
    /// no one to wake, so it is made only when someone waits.
    waiting_recv: usize,
    waiting_send: usize,
}

struct Shared<T> {
    state: Mutex<State<T>>,
    /// Signalled when an item arrives or the last sender leaves.
    ready: Condvar,
    /// Signalled when an item leaves or the last receiver leaves.
    room: Condvar,
    capacity: usize,
}

impl<T> Shared<T> {
    fn lock(&self) -> MutexGuard<'_, State<T>> {
        // A panic while holding this lock leaves a valid queue: keep going.
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn item_added(&self, s: MutexGuard<'_, State<T>>) {
        let wake = s.waiting_recv > 0;
        drop(s);
        if wake {
            self.ready.notify_one();
        }
    }
}

/// std's mutex, not parking_lot's: its contended path spins briefly and then sleeps,
/// where parking_lot's yields the CPU in between, the very cost this module avoids.
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
            waiting_recv: 0,
            waiting_send: 0,
        }),
        ready: Condvar::new(),
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
            drop(s);
            self.shared.ready.notify_all();
        }
    }
}

pub struct Receiver<T> {
    shared: Arc<Shared<T>>,
}

impl<T> Receiver<T> {
    /// The next item; `None` once every sender is gone and the queue is empty.
    pub fn recv(&self) -> Option<T> {
        let mut s = self.shared.lock();
        loop {
            if let Some(item) = self.take(&mut s) {
                return Some(item);
            }
            if s.senders == 0 {
                return None;
            }
            s.waiting_recv += 1;
            s = wait(&self.shared.ready, s);
            s.waiting_recv -= 1;
        }
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
        let mut s = self.shared.lock();
        loop {
            if let Some(item) = self.take(&mut s) {
                return Ok(item);
            }
            if s.senders == 0 {
                return Err(RecvError::Disconnected);
            }
            let now = Instant::now();
            if now >= deadline {
                return match self.take(&mut s) {
                    Some(item) => Ok(item),
                    None if s.senders == 0 => Err(RecvError::Disconnected),
                    None => Err(RecvError::Empty),
                };
            }
            s.waiting_recv += 1;
            s = match self.shared.ready.wait_timeout(s, deadline - now) {
                Ok((g, _)) => g,
                Err(e) => e.into_inner().0,
            };
            s.waiting_recv -= 1;
        }
    }

    /// The next item, waiting `timeout` at most.
    pub fn recv_timeout(&self, timeout: Duration) -> Result<T, RecvError> {
        match Instant::now().checked_add(timeout) {
            Some(deadline) => self.recv_deadline(deadline),
            None => self.recv().ok_or(RecvError::Disconnected),
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
