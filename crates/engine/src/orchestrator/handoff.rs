//! The bounded queue between the source thread and the engine.
//!
//! Like a bounded channel, but with hysteresis: a producer that found the
//! queue full is woken only once the engine has taken half of it, not for
//! every item. The source reads faster than the engine records, so with a
//! plain channel every row cost a wake-up of the reading thread (a futex
//! system call on each side); here it costs one per half a queue.

use std::collections::VecDeque;
use std::sync::{Arc, Condvar, Mutex, MutexGuard, PoisonError};
use std::time::Instant;

/// Which side has gone.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Ends {
    Both,
    /// The producer has gone (its last item, if any, is queued).
    ProducerGone,
    /// The consumer has gone; sending is pointless.
    ConsumerGone,
}

struct State<T> {
    items: VecDeque<T>,
    ends: Ends,
    producer_waiting: bool,
    consumer_waiting: bool,
}

struct Shared<T> {
    state: Mutex<State<T>>,
    items: Condvar,
    space: Condvar,
    capacity: usize,
}

impl<T> Shared<T> {
    fn lock(&self) -> MutexGuard<'_, State<T>> {
        // Nothing here can panic while holding the lock; a poisoned lock
        // still holds a consistent queue.
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

pub(crate) struct Sender<T>(Arc<Shared<T>>);
pub(crate) struct Receiver<T>(Arc<Shared<T>>);

/// What waiting for an item gave instead of one.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum RecvError {
    Timeout,
    Disconnected,
}

/// A queue of at most `capacity` items (at least 2).
pub(crate) fn queue<T>(capacity: usize) -> (Sender<T>, Receiver<T>) {
    let shared = Arc::new(Shared {
        state: Mutex::new(State { items: VecDeque::new(), ends: Ends::Both, producer_waiting: false, consumer_waiting: false }),
        items: Condvar::new(),
        space: Condvar::new(),
        capacity: capacity.max(2),
    });
    (Sender(Arc::clone(&shared)), Receiver(shared))
}

impl<T> Sender<T> {
    /// Queues `item`, waiting while the queue is full; gives it back when
    /// the receiver is gone.
    pub(crate) fn send(&self, item: T) -> Result<(), T> {
        let shared = &self.0;
        let mut state = shared.lock();
        while state.items.len() >= shared.capacity && state.ends != Ends::ConsumerGone {
            state.producer_waiting = true;
            state = shared.space.wait(state).unwrap_or_else(PoisonError::into_inner);
        }
        state.producer_waiting = false;
        if state.ends == Ends::ConsumerGone {
            return Err(item);
        }
        state.items.push_back(item);
        if state.consumer_waiting {
            shared.items.notify_one();
        }
        Ok(())
    }
}

impl<T> Drop for Sender<T> {
    fn drop(&mut self) {
        self.0.lock().ends = Ends::ProducerGone;
        self.0.items.notify_one();
    }
}

impl<T> Receiver<T> {
    /// The next item, waiting until `deadline` at most (forever without one).
    pub(crate) fn recv(&self, deadline: Option<Instant>) -> Result<T, RecvError> {
        let shared = &self.0;
        let mut state = shared.lock();
        loop {
            if let Some(item) = state.items.pop_front() {
                if state.producer_waiting && state.items.len() <= shared.capacity / 2 {
                    shared.space.notify_one();
                }
                return Ok(item);
            }
            if state.ends == Ends::ProducerGone {
                return Err(RecvError::Disconnected);
            }
            state.consumer_waiting = true;
            state = match deadline {
                None => shared.items.wait(state).unwrap_or_else(PoisonError::into_inner),
                Some(deadline) => {
                    let timeout = deadline.saturating_duration_since(Instant::now());
                    if timeout.is_zero() {
                        state.consumer_waiting = false;
                        return Err(RecvError::Timeout);
                    }
                    shared.items.wait_timeout(state, timeout).unwrap_or_else(PoisonError::into_inner).0
                }
            };
            state.consumer_waiting = false;
        }
    }
}

impl<T> Drop for Receiver<T> {
    fn drop(&mut self) {
        self.0.lock().ends = Ends::ConsumerGone;
        self.0.space.notify_one();
    }
}

#[cfg(test)]
mod tests;
