//! Admission: how many invocations of one agent run at once and how many may wait. Every path
//! out of [`Gate::enter`] — admitted, refused, or the caller dropped while it waited — gives
//! back what it took.

use std::sync::Arc;
use std::sync::atomic::{AtomicU32, Ordering};

use tokio::sync::{OwnedSemaphorePermit, Semaphore};

/// Bounds how many invocations of one agent run at once and how many may wait.
pub struct Gate {
    permits: Arc<Semaphore>,
    waiting: AtomicU32,
    concurrency: u32,
    queue: u32,
}

/// A place in the queue, given back when it is dropped, however the wait ends.
struct Waiting<'a>(&'a AtomicU32);

impl Drop for Waiting<'_> {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::AcqRel);
    }
}

impl Gate {
    pub fn new(concurrency: u32, queue: u32) -> Self {
        Gate {
            permits: Arc::new(Semaphore::new(concurrency as usize)),
            waiting: AtomicU32::new(0),
            concurrency,
            queue,
        }
    }

    /// A slot to run in, waiting in the queue if it has room; `None` when the queue is full.
    pub async fn enter(&self) -> Option<OwnedSemaphorePermit> {
        if let Ok(permit) = self.permits.clone().try_acquire_owned() {
            return Some(permit);
        }
        let taken = self.waiting.fetch_add(1, Ordering::AcqRel);
        let _place = Waiting(&self.waiting);
        if taken >= self.queue {
            return None;
        }
        self.permits.clone().acquire_owned().await.ok()
    }

    /// Whether this gate admits as the given limits would.
    pub fn admits(&self, concurrency: u32, queue: u32) -> bool {
        self.concurrency == concurrency && self.queue == queue
    }

    /// Invocations running now.
    pub fn running(&self) -> u32 {
        self.concurrency
            .saturating_sub(self.permits.available_permits() as u32)
    }

    /// Invocations waiting for a slot.
    pub fn waiting(&self) -> u32 {
        self.waiting.load(Ordering::Acquire)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn waiters_that_are_dropped_give_their_place_back() {
        let gate = Arc::new(Gate::new(1, 2));
        let running = gate.enter().await.unwrap();
        let waiters: Vec<_> = (0..2)
            .map(|_| {
                let gate = gate.clone();
                tokio::spawn(async move { gate.enter().await.is_some() })
            })
            .collect();
        while gate.waiting() < 2 {
            tokio::task::yield_now().await;
        }
        assert!(gate.enter().await.is_none(), "the queue is full");
        for waiter in &waiters {
            waiter.abort();
        }
        for waiter in waiters {
            assert!(waiter.await.unwrap_err().is_cancelled());
        }
        assert_eq!(gate.waiting(), 0, "aborted waiters leave the queue");
        drop(running);
        assert!(gate.enter().await.is_some());
        assert_eq!(gate.waiting(), 0);
    }

    #[tokio::test]
    async fn a_refused_caller_leaves_the_count_as_it_was() {
        let gate = Gate::new(1, 0);
        let _running = gate.enter().await.unwrap();
        for _ in 0..10 {
            assert!(gate.enter().await.is_none());
        }
        assert_eq!(gate.waiting(), 0);
        assert_eq!(gate.running(), 1);
    }
}
