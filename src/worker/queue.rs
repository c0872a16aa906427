//! The due-scrape queue between the wheel and the workers: bounded, many receivers,
//! and a receive that blocks without spinning.
//!
//! A general-purpose channel's receive spins and yields the CPU several times before it
//! blocks. Idle workers wait here hundreds of times a second, and with a fixed pool
//! larger than the core count those yields cost more CPU than the hand-over itself; a
//! mutex and a condition variable hand a job over with one futex wake and nothing else.
//!
//! The queue closes when the last [`Sender`] is dropped: receivers drain what is left,
//! then get `None`.

use std::collections::VecDeque;
use std::sync::{Arc, Condvar, Mutex, MutexGuard};

struct State<T> {
    items: VecDeque<T>,
    senders: usize,
}

struct Shared<T> {
    state: Mutex<State<T>>,
    ready: Condvar,
    capacity: usize,
}

impl<T> Shared<T> {
    fn lock(&self) -> MutexGuard<'_, State<T>> {
        // A panic while holding this lock leaves a valid queue: keep going.
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }
}

/// Creates a queue of at most `capacity` items (at least 1).
pub fn bounded<T>(capacity: usize) -> (Sender<T>, Receiver<T>) {
    let capacity = capacity.max(1);
    let shared = Arc::new(Shared {
        state: Mutex::new(State {
            items: VecDeque::with_capacity(capacity.min(4096)),
            senders: 1,
        }),
        ready: Condvar::new(),
        capacity,
    });
    (
        Sender {
            shared: shared.clone(),
        },
        Receiver { shared },
    )
}

pub struct Sender<T> {
    shared: Arc<Shared<T>>,
}

impl<T> Sender<T> {
    /// Queues `item`, or gives it back when the queue is full.
    pub fn try_send(&self, item: T) -> Result<(), T> {
        let mut s = self.shared.lock();
        if s.items.len() >= self.shared.capacity {
            return Err(item);
        }
        s.items.push_back(item);
        drop(s);
        self.shared.ready.notify_one();
        Ok(())
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
            if let Some(item) = s.items.pop_front() {
                return Some(item);
            }
            if s.senders == 0 {
                return None;
            }
            s = self.shared.ready.wait(s).unwrap_or_else(|e| e.into_inner());
        }
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
        Receiver {
            shared: self.shared.clone(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn full_queues_give_the_item_back() {
        let (tx, rx) = bounded(2);
        assert_eq!(tx.try_send(1), Ok(()));
        assert_eq!(tx.try_send(2), Ok(()));
        assert_eq!(tx.try_send(3), Err(3));
        assert_eq!((rx.len(), rx.recv()), (2, Some(1)));
        assert_eq!(tx.try_send(3), Ok(()));
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
    }
}
