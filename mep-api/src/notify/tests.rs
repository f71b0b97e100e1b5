//! Delivery against a local callback that fails on purpose: the retry schedule, recovery after
//! retries, giving up, and a failing subscriber's shrunken queue.

use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::Arc;
use std::time::Duration;

use axum::{extract::State, http::StatusCode, routing::post, Router};
use bytes::Bytes;
use tokio_util::sync::CancellationToken;

use super::{json_body, Notifier, NotifyConfig};
use crate::metrics::Metrics;

/// A callback that answers 503 to the first `fail_first` POSTs and 204 afterwards.
async fn callback(fail_first: u32) -> (String, Arc<AtomicU32>) {
    let hits = Arc::new(AtomicU32::new(0));
    let app = Router::new()
        .route(
            "/notify",
            post(
                |State((hits, fail_first)): State<(Arc<AtomicU32>, u32)>| async move {
                    if hits.fetch_add(1, Ordering::SeqCst) < fail_first {
                        StatusCode::SERVICE_UNAVAILABLE
                    } else {
                        StatusCode::NO_CONTENT
                    }
                },
            ),
        )
        .with_state((Arc::clone(&hits), fail_first));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}/notify", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, app).await });
    (url, hits)
}

fn config(retries: u32) -> NotifyConfig {
    NotifyConfig {
        retries,
        timeout: Duration::from_secs(2),
        initial_backoff: Duration::from_millis(10),
        max_backoff: Duration::from_millis(40),
        failing_after: 100,
        ..NotifyConfig::default()
    }
}

async fn until(what: &str, done: impl Fn() -> bool) {
    for _ in 0..500 {
        if done() {
            return;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    panic!("timed out waiting for {what}");
}

#[test]
fn retry_waits_double_up_to_the_cap_with_jitter() {
    let waits: Vec<Duration> = config(6).retry_waits().collect();
    assert_eq!(waits.len(), 6);
    for (i, wait) in waits.iter().enumerate() {
        let base = Duration::from_millis(10 << i.min(2));
        assert!(
            *wait >= base && *wait <= base * 2,
            "wait {i} was {wait:?}, base {base:?}"
        );
    }
    let spread: std::collections::HashSet<Duration> = (0..20)
        .filter_map(|_| config(1).retry_waits().next())
        .collect();
    assert!(spread.len() > 1, "no jitter: {spread:?}");
    assert_eq!(config(0).retry_waits().count(), 0);
}

#[tokio::test]
async fn a_notification_is_delivered_after_failed_attempts() {
    let (url, hits) = callback(2).await;
    let metrics = Arc::new(Metrics::new());
    let notifier =
        Notifier::new(config(4), Arc::clone(&metrics), CancellationToken::new()).unwrap();
    notifier.deliver("sub-1", &url, Bytes::from_static(b"{}"));
    until("delivery", || metrics.notifications_delivered.get() == 1).await;
    assert_eq!(hits.load(Ordering::SeqCst), 3);
    assert_eq!(metrics.notification_attempts_failed.get(), 2);
    assert_eq!(metrics.notifications_failed.get(), 0);
    assert_eq!(notifier.queued_bytes(), 0);
}

#[tokio::test]
async fn a_notification_is_given_up_after_the_retries() {
    let (url, hits) = callback(u32::MAX).await;
    let metrics = Arc::new(Metrics::new());
    let notifier =
        Notifier::new(config(2), Arc::clone(&metrics), CancellationToken::new()).unwrap();
    notifier.deliver("sub-1", &url, Bytes::from_static(b"{}"));
    until("giving up", || metrics.notifications_failed.get() == 1).await;
    assert_eq!(
        hits.load(Ordering::SeqCst),
        3,
        "one attempt and two retries"
    );
    assert_eq!(metrics.notifications_delivered.get(), 0);
}

#[tokio::test]
async fn a_failing_subscriber_keeps_a_short_queue_and_recovers() {
    let (url, hits) = callback(3).await;
    let metrics = Arc::new(Metrics::new());
    let config = NotifyConfig {
        failing_after: 3,
        failing_queue: 2,
        ..config(0)
    };
    let notifier = Notifier::new(config, Arc::clone(&metrics), CancellationToken::new()).unwrap();
    for _ in 0..3 {
        notifier.deliver("sub-1", &url, Bytes::from_static(b"{}"));
    }
    until("failing", || {
        metrics.notification_subscriptions_failing.get() == 1
    })
    .await;
    for _ in 0..10 {
        notifier.deliver("sub-1", &url, Bytes::from_static(b"{}"));
    }
    until("recovery", || {
        metrics.notification_subscriptions_failing.get() == 0
    })
    .await;
    until("the queue drained", || notifier.queued_bytes() == 0).await;
    assert!(
        metrics.notifications_dropped.get() >= 8,
        "a failing queue keeps 2 of 10, dropped {}",
        metrics.notifications_dropped.get()
    );
    assert!(hits.load(Ordering::SeqCst) <= 3 + 2 + 1);
    notifier.forget("sub-1");
}

/// The queue budget counts a body's length, so a body must hold no more memory than that: one
/// built with `Bytes::from(serde_json::to_vec(..))` keeps the vector's spare capacity (here 512
/// bytes for 323), which with many stuck subscribers put RSS far past the budget.
#[test]
fn a_json_body_holds_only_its_own_bytes() {
    let value = serde_json::json!({"notificationType": "x".repeat(300)});
    let exact = serde_json::to_vec(&value).unwrap();
    let mut scratch = Vec::new();
    for _ in 0..2 {
        let body = json_body(&value, &mut scratch).unwrap();
        assert_eq!(body, exact);
        let held = body.try_into_mut().expect("the only handle").capacity();
        assert_eq!(
            held,
            exact.len(),
            "bytes held by a {}-byte body",
            exact.len()
        );
    }
}
