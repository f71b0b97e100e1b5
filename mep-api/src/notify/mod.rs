//! Asynchronous notification delivery. Each subscription gets a bounded queue and one worker that
//! POSTs in order with a timeout and retries with exponential backoff, so a slow or dead callback
//! delays only its own subscriber and never the API. Certificates are verified; redirects are not
//! followed (a notification never goes anywhere but the subscriber's callback).
//!
//! Memory and connections are bounded whatever the subscribers do:
//! - every queue holds at most `queue_capacity` notifications, and all queues together at most
//!   `queue_bytes` bytes; when either is exceeded the *oldest* queued notifications go first, from
//!   the queue that holds the most (a stuck receiver's), and each is counted as dropped;
//! - attempts of a subscription whose last attempt failed (retries, and everything a stuck
//!   receiver is sent) draw on a quarter of the connection budget, so stuck receivers never
//!   take the connections of working ones; after `failing_after` failed attempts in a row it is
//!   *failing*: it keeps only `failing_queue` notifications and gets one attempt per
//!   notification. A delivered notification makes it healthy again;
//! - deleting a subscription drops its queue at once; when the allocator holds more than
//!   [`RETURN_AFTER`] bytes free beyond what it held after the last look, the free memory is
//!   handed back to the operating system (glibc keeps freed small blocks otherwise, and the
//!   process's RSS would stay at its high-water mark: queues, connections and tasks of deleted
//!   subscribers all free memory, not only the queues).

mod memory;
mod outbox;
mod queue;

use std::collections::HashMap;
use std::sync::atomic::{AtomicI64, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use backon::{BackoffBuilder, ExponentialBackoff, ExponentialBuilder};
use bytes::Bytes;
use parking_lot::Mutex;
use tokio::sync::Semaphore;
use tokio_util::sync::CancellationToken;

use crate::metrics::Metrics;
pub use outbox::Outbox;
pub use queue::Settled;
use queue::{Job, Queue};

/// A notification for one subscription, ready to be delivered.
#[derive(Debug, Clone)]
pub struct Outgoing {
    pub subscription: String,
    pub callback: String,
    pub body: Bytes,
}

/// `value` as a JSON notification body holding just its own bytes. `Bytes::from(Vec)` keeps a
/// vector's spare capacity (and a header of its own), and serde_json grows its vector by
/// doubling: the queue budget counted less than the bodies held (300 stuck subscribers and a
/// 32 MiB budget raised RSS by 83 MiB; 48 MiB with exact bodies). `scratch` is the reusable
/// buffer the value is written to first.
pub fn json_body(
    value: &impl serde::Serialize,
    scratch: &mut Vec<u8>,
) -> serde_json::Result<Bytes> {
    scratch.clear();
    serde_json::to_writer(&mut *scratch, value)?;
    Ok(Bytes::copy_from_slice(scratch))
}

/// Delivery settings.
#[derive(Debug, Clone)]
pub struct NotifyConfig {
    /// Notifications waiting per subscription; beyond that the oldest is dropped.
    pub queue_capacity: usize,
    /// Bytes of notifications waiting in all queues together; beyond that the oldest of the
    /// fullest queue are dropped.
    pub queue_bytes: usize,
    /// Timeout of one delivery attempt.
    pub timeout: Duration,
    /// Attempts after the first one.
    pub retries: u32,
    /// Wait before the first retry; doubles each time up to `max_backoff`, each wait with up
    /// to as much again of random jitter.
    pub initial_backoff: Duration,
    pub max_backoff: Duration,
    /// Deliveries in flight at once, over all subscriptions (each holds a connection).
    pub max_in_flight: usize,
    /// Failed attempts in a row after which a subscription is failing.
    pub failing_after: u32,
    /// Notifications a failing subscription keeps queued.
    pub failing_queue: usize,
}

impl Default for NotifyConfig {
    fn default() -> Self {
        Self {
            queue_capacity: 1024,
            queue_bytes: 32 << 20,
            timeout: Duration::from_secs(5),
            retries: 4,
            initial_backoff: Duration::from_millis(500),
            max_backoff: Duration::from_secs(30),
            max_in_flight: 256,
            failing_after: 5,
            failing_queue: 16,
        }
    }
}

impl NotifyConfig {
    /// The waits before the retries of one notification: jittered so that the subscribers of
    /// one callback host that failed together are not retried in lockstep.
    fn retry_waits(&self) -> ExponentialBackoff {
        ExponentialBuilder::new()
            .with_min_delay(self.initial_backoff)
            .with_max_delay(self.max_backoff)
            .with_jitter()
            .with_max_times(self.retries as usize)
            .build()
    }
}

/// Free bytes the allocator may gain before they are returned to the system.
pub const RETURN_AFTER: usize = 8 << 20;

/// How often the allocator's free memory is looked at.
const MAINTENANCE_PERIOD: Duration = Duration::from_secs(2);

struct Inner {
    client: reqwest::Client,
    config: NotifyConfig,
    metrics: Arc<Metrics>,
    queues: Mutex<HashMap<String, Arc<Queue>>>,
    /// Bytes queued in all queues.
    queued_bytes: AtomicUsize,
    failing: AtomicI64,
    /// Connections for the attempts of subscriptions whose last attempt succeeded, and for the
    /// others'.
    healthy_slots: Semaphore,
    failing_slots: Semaphore,
    shutdown: CancellationToken,
}

/// Handle to the delivery machinery; cheap to clone.
#[derive(Clone)]
pub struct Notifier {
    inner: Arc<Inner>,
}

impl Notifier {
    pub fn new(
        config: NotifyConfig,
        metrics: Arc<Metrics>,
        shutdown: CancellationToken,
    ) -> Result<Self, reqwest::Error> {
        let client = reqwest::Client::builder()
            .timeout(config.timeout)
            .connect_timeout(config.timeout)
            .redirect(reqwest::redirect::Policy::none())
            .pool_max_idle_per_host(2)
            .pool_idle_timeout(Duration::from_secs(30))
            .user_agent(concat!("mep/", env!("CARGO_PKG_VERSION")))
            .build()?;
        let slots = config.max_in_flight.max(2);
        let failing_slots = (slots / 4).max(1);
        let notifier = Self {
            inner: Arc::new(Inner {
                client,
                metrics,
                queues: Mutex::new(HashMap::new()),
                queued_bytes: AtomicUsize::new(0),
                failing: AtomicI64::new(0),
                healthy_slots: Semaphore::new(slots - failing_slots),
                failing_slots: Semaphore::new(failing_slots),
                shutdown,
                config,
            }),
        };
        tokio::spawn(notifier.clone().return_memory());
        Ok(notifier)
    }

    /// Hands free memory back to the system whenever the allocator gained much of it.
    async fn return_memory(self) {
        let mut tick = tokio::time::interval(MAINTENANCE_PERIOD);
        let mut held = 0;
        loop {
            tokio::select! {
                _ = self.inner.shutdown.cancelled() => return,
                _ = tick.tick() => {}
            }
            let Ok(now) =
                tokio::task::spawn_blocking(move || memory::release_beyond(held, RETURN_AFTER))
                    .await
            else {
                return;
            };
            held = now;
        }
    }

    /// Queues `body` for the subscription's callback. Never waits: a full queue (or a full
    /// budget) drops the oldest waiting notification and counts it.
    pub fn deliver(&self, subscription_id: &str, callback: &str, body: Bytes) {
        self.queue(
            subscription_id,
            callback,
            Job {
                body,
                _settled: None,
            },
        );
    }

    /// Queues `outgoing` like [`Notifier::deliver`] and runs `settled` once it is delivered,
    /// given up or dropped (not when the process stops first).
    pub fn deliver_then(&self, outgoing: Outgoing, settled: Settled) {
        let job = Job {
            body: outgoing.body,
            _settled: Some(settled),
        };
        self.queue(&outgoing.subscription, &outgoing.callback, job);
    }

    fn queue(&self, subscription_id: &str, callback: &str, job: Job) {
        let inner = &self.inner;
        let queue = Arc::clone(
            inner
                .queues
                .lock()
                .entry(subscription_id.to_owned())
                .or_insert_with(|| self.spawn_worker(subscription_id, callback)),
        );
        let capacity = if queue.is_failing() {
            inner.config.failing_queue
        } else {
            inner.config.queue_capacity
        };
        let (added, dropped) = queue.push(job, capacity.max(1));
        self.account(added as isize - dropped.bytes as isize, dropped.count);
        if inner.queued_bytes.load(Ordering::Relaxed) > inner.config.queue_bytes {
            self.shed();
        }
    }

    /// Stops delivering to a subscription and drops (and frees) what it still had queued.
    pub fn forget(&self, subscription_id: &str) {
        let Some(queue) = self.inner.queues.lock().remove(subscription_id) else {
            return;
        };
        queue.cancel.cancel();
        let freed = queue.clear();
        self.account(-(freed.bytes as isize), 0);
        if queue.is_failing() {
            self.set_failing_delta(-1);
        }
    }

    /// Bytes waiting in all queues.
    pub fn queued_bytes(&self) -> usize {
        self.inner.queued_bytes.load(Ordering::Relaxed)
    }

    /// Adds `bytes` (which may be negative) to the global count, and counts `dropped`.
    fn account(&self, bytes: isize, dropped: usize) {
        let inner = &self.inner;
        if bytes >= 0 {
            inner
                .queued_bytes
                .fetch_add(bytes as usize, Ordering::Relaxed);
        } else {
            inner
                .queued_bytes
                .fetch_sub(bytes.unsigned_abs(), Ordering::Relaxed);
        }
        inner
            .metrics
            .notification_queue_bytes
            .set(inner.queued_bytes.load(Ordering::Relaxed) as i64);
        if dropped > 0 {
            inner.metrics.notifications_dropped.inc_by(dropped as u64);
        }
    }

    /// Drops the oldest notifications of the fullest queues until all queues fit the budget.
    fn shed(&self) {
        let inner = &self.inner;
        let queues = inner.queues.lock();
        while inner.queued_bytes.load(Ordering::Relaxed) > inner.config.queue_bytes {
            let Some(fullest) = queues.values().max_by_key(|q| q.bytes()) else {
                return;
            };
            let dropped = fullest.drop_oldest();
            if dropped.count == 0 {
                return;
            }
            self.account(-(dropped.bytes as isize), dropped.count);
        }
    }

    fn set_failing_delta(&self, delta: i64) {
        let now = self.inner.failing.fetch_add(delta, Ordering::Relaxed) + delta;
        self.inner
            .metrics
            .notification_subscriptions_failing
            .set(now);
    }

    fn spawn_worker(&self, subscription_id: &str, callback: &str) -> Arc<Queue> {
        let queue = Arc::new(Queue::new(callback, self.inner.shutdown.child_token()));
        tokio::spawn(run_worker(
            self.clone(),
            subscription_id.to_owned(),
            Arc::clone(&queue),
        ));
        queue
    }
}

async fn run_worker(notifier: Notifier, subscription: String, queue: Arc<Queue>) {
    let inner = &notifier.inner;
    loop {
        let job = tokio::select! {
            _ = queue.cancel.cancelled() => return,
            job = queue.next() => job,
        };
        notifier.account(-(job.cost() as isize), 0);
        let delivered = tokio::select! {
            _ = queue.cancel.cancelled() => return,
            delivered = deliver_with_retries(&notifier, &subscription, &queue, &job) => delivered,
        };
        if delivered {
            if queue.record_success() {
                notifier.set_failing_delta(-1);
                tracing::info!(subscription, "callback answers again; subscription healthy");
            }
        } else {
            inner.metrics.notifications_failed.inc();
            tracing::warn!(subscription, callback = %queue.callback, "notification not delivered");
        }
    }
}

/// Delivers one notification; answers whether it was acknowledged. A failing subscription gets
/// one attempt; a healthy one the configured retries with backoff.
async fn deliver_with_retries(
    notifier: &Notifier,
    subscription: &str,
    queue: &Queue,
    job: &Job,
) -> bool {
    let inner = &notifier.inner;
    let mut waits = inner.config.retry_waits();
    let mut attempt = 0;
    loop {
        let failing = queue.is_failing();
        let slots = if queue.recently_failed() {
            &inner.failing_slots
        } else {
            &inner.healthy_slots
        };
        let Ok(slot) = slots.acquire().await else {
            return false;
        };
        let outcome = inner
            .client
            .post(&*queue.callback)
            .header(http::header::CONTENT_TYPE, "application/json")
            .body(job.body.clone())
            .send()
            .await;
        match outcome {
            Ok(response) if response.status().is_success() => {
                inner.metrics.notifications_delivered.inc();
                return true;
            }
            Ok(response) => {
                tracing::debug!(subscription, status = %response.status(), attempt, "callback refused notification");
            }
            Err(e) => {
                tracing::debug!(subscription, error = %e, attempt, "callback unreachable");
            }
        }
        inner.metrics.notification_attempts_failed.inc();
        if queue.record_failure(inner.config.failing_after) {
            notifier.set_failing_delta(1);
            let dropped = queue.trim(inner.config.failing_queue.max(1));
            notifier.account(-(dropped.bytes as isize), dropped.count);
            tracing::warn!(
                subscription,
                callback = %queue.callback,
                failures = inner.config.failing_after,
                "callback keeps failing; subscription marked failing"
            );
        }
        // The connection slot is for the attempt, not for the wait before the next one.
        drop(slot);
        if failing {
            return false;
        }
        let Some(wait) = waits.next() else {
            return false;
        };
        attempt += 1;
        tokio::time::sleep(wait).await;
    }
}

#[cfg(test)]
mod tests;
