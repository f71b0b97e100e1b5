//! One subscription's queue of notifications waiting for delivery.

use std::collections::VecDeque;
use std::sync::atomic::{AtomicBool, AtomicU32, AtomicUsize, Ordering};
use std::sync::Arc;

use bytes::Bytes;
use parking_lot::Mutex;
use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;

/// One notification to deliver.
pub(super) struct Job {
    pub(super) body: Bytes,
    /// Runs when the job is dropped: once it is delivered, given up, or dropped unsent.
    pub(super) _settled: Option<Settled>,
}

/// What runs once a notification is settled (see `Notifier::deliver_then`).
pub struct Settled(Option<Box<dyn FnOnce() + Send + Sync>>);

impl Settled {
    pub fn new(then: impl FnOnce() + Send + Sync + 'static) -> Self {
        Self(Some(Box::new(then)))
    }
}

impl Drop for Settled {
    fn drop(&mut self) {
        if let Some(then) = self.0.take() {
            then();
        }
    }
}

/// What a queued notification costs besides its body: the queue slot, the `Bytes` header and
/// the allocator's bookkeeping. Counted with the body, so the budget bounds memory, not just
/// payload.
pub(super) const JOB_OVERHEAD: usize = 96;

impl Job {
    pub(super) fn cost(&self) -> usize {
        self.body.len() + JOB_OVERHEAD
    }
}

/// What was dropped from a queue.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub(super) struct Dropped {
    pub(super) count: usize,
    pub(super) bytes: usize,
}

impl Dropped {
    fn add(&mut self, job: &Job) {
        self.count += 1;
        self.bytes += job.cost();
    }
}

pub(super) struct Queue {
    /// Where this subscription's notifications go.
    pub(super) callback: Arc<str>,
    jobs: Mutex<VecDeque<Job>>,
    bytes: AtomicUsize,
    wake: Notify,
    pub(super) cancel: CancellationToken,
    failures: AtomicU32,
    failing: AtomicBool,
}

impl Queue {
    pub(super) fn new(callback: &str, cancel: CancellationToken) -> Self {
        Self {
            callback: Arc::from(callback),
            jobs: Mutex::new(VecDeque::new()),
            bytes: AtomicUsize::new(0),
            wake: Notify::new(),
            cancel,
            failures: AtomicU32::new(0),
            failing: AtomicBool::new(false),
        }
    }

    /// Appends `job`, first dropping the oldest so that at most `capacity` remain; answers the
    /// bytes added and what was dropped.
    pub(super) fn push(&self, job: Job, capacity: usize) -> (usize, Dropped) {
        let added = job.cost();
        let mut dropped = Dropped::default();
        {
            let mut jobs = self.jobs.lock();
            while jobs.len() >= capacity {
                match jobs.pop_front() {
                    Some(old) => dropped.add(&old),
                    None => break,
                }
            }
            jobs.push_back(job);
        }
        self.bytes.fetch_add(added, Ordering::Relaxed);
        self.bytes.fetch_sub(dropped.bytes, Ordering::Relaxed);
        self.wake.notify_one();
        (added, dropped)
    }

    /// The oldest notification, when there is one.
    pub(super) async fn next(&self) -> Job {
        loop {
            if let Some(job) = self.jobs.lock().pop_front() {
                self.bytes.fetch_sub(job.cost(), Ordering::Relaxed);
                return job;
            }
            // A push between the pop above and this wait leaves a permit: nothing is missed.
            self.wake.notified().await;
        }
    }

    /// Bytes waiting in this queue.
    pub(super) fn bytes(&self) -> usize {
        self.bytes.load(Ordering::Relaxed)
    }

    pub(super) fn drop_oldest(&self) -> Dropped {
        self.trim_to(|len| len > 0, 1)
    }

    /// Drops the oldest until at most `keep` remain.
    pub(super) fn trim(&self, keep: usize) -> Dropped {
        self.trim_to(|len| len > keep, usize::MAX)
    }

    /// Drops everything and releases the queue's buffer.
    pub(super) fn clear(&self) -> Dropped {
        let jobs = std::mem::take(&mut *self.jobs.lock());
        let mut dropped = Dropped::default();
        for job in &jobs {
            dropped.add(job);
        }
        self.bytes.fetch_sub(dropped.bytes, Ordering::Relaxed);
        dropped
    }

    fn trim_to(&self, more: impl Fn(usize) -> bool, at_most: usize) -> Dropped {
        let mut dropped = Dropped::default();
        let mut jobs = self.jobs.lock();
        while dropped.count < at_most && more(jobs.len()) {
            match jobs.pop_front() {
                Some(old) => dropped.add(&old),
                None => break,
            }
        }
        drop(jobs);
        self.bytes.fetch_sub(dropped.bytes, Ordering::Relaxed);
        dropped
    }

    pub(super) fn is_failing(&self) -> bool {
        self.failing.load(Ordering::Relaxed)
    }

    /// Whether the last attempt failed.
    pub(super) fn recently_failed(&self) -> bool {
        self.failures.load(Ordering::Relaxed) > 0
    }

    /// Counts a failed attempt; answers whether this one made the subscription failing.
    pub(super) fn record_failure(&self, threshold: u32) -> bool {
        let failures = self.failures.fetch_add(1, Ordering::Relaxed) + 1;
        failures >= threshold && !self.failing.swap(true, Ordering::Relaxed)
    }

    /// Counts a delivery; answers whether the subscription was failing until now.
    pub(super) fn record_success(&self) -> bool {
        self.failures.store(0, Ordering::Relaxed);
        self.failing.swap(false, Ordering::Relaxed)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn job(n: usize) -> Job {
        Job {
            body: Bytes::from(vec![b'x'; n]),
            _settled: None,
        }
    }

    fn queue() -> Queue {
        Queue::new("http://127.0.0.1:9/cb", CancellationToken::new())
    }

    #[tokio::test]
    async fn the_oldest_go_first_and_bytes_add_up() {
        const O: usize = JOB_OVERHEAD;
        let q = queue();
        for n in 1..=3 {
            assert_eq!(q.push(job(n * 10), 3).1, Dropped::default());
        }
        assert_eq!(q.bytes(), 60 + 3 * O);
        let (added, dropped) = q.push(job(40), 3);
        assert_eq!(
            (added, dropped),
            (
                40 + O,
                Dropped {
                    count: 1,
                    bytes: 10 + O
                }
            )
        );
        assert_eq!(
            q.drop_oldest(),
            Dropped {
                count: 1,
                bytes: 20 + O
            }
        );
        assert_eq!(q.next().await.body.len(), 30);
        assert_eq!(q.bytes(), 40 + O);
        assert_eq!(
            q.clear(),
            Dropped {
                count: 1,
                bytes: 40 + O
            }
        );
        assert_eq!(q.bytes(), 0);
    }

    #[test]
    fn failing_is_entered_once_and_left_on_success() {
        let q = queue();
        assert!(!q.record_failure(3));
        assert!(!q.record_failure(3));
        assert!(q.record_failure(3), "the third failure in a row");
        assert!(!q.record_failure(3), "already failing");
        for n in 0..20 {
            q.push(job(n), 100);
        }
        assert_eq!(q.trim(16).count, 4);
        assert!(q.record_success());
        assert!(!q.is_failing());
        assert!(!q.record_success());
    }
}
