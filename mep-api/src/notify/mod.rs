//! Asynchronous notification delivery. Each subscription gets a bounded queue and one worker that
//! POSTs in order with a timeout and retries with exponential backoff, so a slow or dead callback
//! delays only its own subscriber and never the API. Certificates are verified; redirects are not
//! followed (a notification never goes anywhere but the subscriber's callback).

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use parking_lot::Mutex;
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

use crate::metrics::Metrics;

/// Delivery settings.
#[derive(Debug, Clone)]
pub struct NotifyConfig {
    /// Notifications waiting per subscription before new ones are dropped.
    pub queue_capacity: usize,
    /// Timeout of one delivery attempt.
    pub timeout: Duration,
    /// Attempts after the first one.
    pub retries: u32,
    /// Wait before the first retry; doubles each time up to `max_backoff`.
    pub initial_backoff: Duration,
    pub max_backoff: Duration,
    /// Deliveries in flight at once, over all subscriptions (each holds a connection).
    pub max_in_flight: usize,
}

impl Default for NotifyConfig {
    fn default() -> Self {
        Self {
            queue_capacity: 1024,
            timeout: Duration::from_secs(5),
            retries: 4,
            initial_backoff: Duration::from_millis(500),
            max_backoff: Duration::from_secs(30),
            max_in_flight: 256,
        }
    }
}

struct Job {
    callback: Arc<str>,
    body: Bytes,
}

struct Queue {
    jobs: mpsc::Sender<Job>,
    cancel: CancellationToken,
}

struct Inner {
    client: reqwest::Client,
    config: NotifyConfig,
    metrics: Arc<Metrics>,
    queues: Mutex<HashMap<String, Queue>>,
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
            .user_agent(concat!("mep/", env!("CARGO_PKG_VERSION")))
            .build()?;
        Ok(Self {
            inner: Arc::new(Inner {
                client,
                config,
                metrics,
                queues: Mutex::new(HashMap::new()),
                shutdown,
            }),
        })
    }

    /// Queues `body` for the subscription's callback. Never waits: a full queue drops the
    /// notification and counts it.
    pub fn deliver(&self, subscription_id: &str, callback: &str, body: Bytes) {
        let mut queues = self.inner.queues.lock();
        let queue = queues
            .entry(subscription_id.to_owned())
            .or_insert_with(|| self.spawn_worker(subscription_id));
        let job = Job {
            callback: Arc::from(callback),
            body,
        };
        match queue.jobs.try_send(job) {
            Ok(()) => {}
            Err(mpsc::error::TrySendError::Full(_)) => {
                self.inner.metrics.notifications_dropped.inc();
                tracing::warn!(
                    subscription = subscription_id,
                    "notification queue full; dropped"
                );
            }
            Err(mpsc::error::TrySendError::Closed(job)) => {
                let fresh = self.spawn_worker(subscription_id);
                let _ = fresh.jobs.try_send(job);
                queues.insert(subscription_id.to_owned(), fresh);
            }
        }
    }

    /// Stops delivering to a subscription and drops what it still had queued.
    pub fn forget(&self, subscription_id: &str) {
        if let Some(queue) = self.inner.queues.lock().remove(subscription_id) {
            queue.cancel.cancel();
        }
    }

    fn spawn_worker(&self, subscription_id: &str) -> Queue {
        let (jobs, rx) = mpsc::channel(self.inner.config.queue_capacity.max(1));
        let cancel = self.inner.shutdown.child_token();
        tokio::spawn(run_worker(
            self.inner.clone(),
            subscription_id.to_owned(),
            rx,
            cancel.clone(),
        ));
        Queue { jobs, cancel }
    }
}

async fn run_worker(
    inner: Arc<Inner>,
    subscription: String,
    mut jobs: mpsc::Receiver<Job>,
    cancel: CancellationToken,
) {
    loop {
        let job = tokio::select! {
            _ = cancel.cancelled() => return,
            job = jobs.recv() => match job {
                Some(job) => job,
                None => return,
            },
        };
        tokio::select! {
            _ = cancel.cancelled() => return,
            _ = deliver_with_retries(&inner, &subscription, &job) => {}
        }
    }
}

async fn deliver_with_retries(inner: &Inner, subscription: &str, job: &Job) {
    let mut backoff = inner.config.initial_backoff;
    for attempt in 0..=inner.config.retries {
        if attempt > 0 {
            tokio::time::sleep(backoff).await;
            backoff = (backoff * 2).min(inner.config.max_backoff);
        }
        let outcome = inner
            .client
            .post(&*job.callback)
            .header(http::header::CONTENT_TYPE, "application/json")
            .body(job.body.clone())
            .send()
            .await;
        match outcome {
            Ok(response) if response.status().is_success() => {
                inner.metrics.notifications_delivered.inc();
                return;
            }
            Ok(response) => {
                inner.metrics.notification_attempts_failed.inc();
                tracing::debug!(subscription, status = %response.status(), attempt, "callback refused notification");
            }
            Err(e) => {
                inner.metrics.notification_attempts_failed.inc();
                tracing::debug!(subscription, error = %e, attempt, "callback unreachable");
            }
        }
    }
    inner.metrics.notifications_failed.inc();
    tracing::warn!(
        subscription,
        callback = %job.callback,
        "notification not delivered after {} attempts",
        inner.config.retries + 1
    );
}
