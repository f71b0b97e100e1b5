//! Sends one change to the controller: per-attempt timeout, bounded retries with jittered
//! exponential backoff (backon) on transport errors, 5xx and 429, and an immediate error with the controller's reason
//! on any other non-success answer.

use std::error::Error as _;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use backon::{BackoffBuilder, ExponentialBackoff, ExponentialBuilder};
use reqwest::{header::RETRY_AFTER, Client, Method, Response, StatusCode};
use url::Url;

use super::schema::SEQUENCE_HEADER;

/// The longest wait between two attempts, as a multiple of the configured backoff; it also
/// bounds how long a controller's `Retry-After` can hold a change back.
const MAX_BACKOFF_FACTOR: u32 = 16;

/// How much of an error body is read to find the controller's reason.
const MAX_ERROR_BODY: usize = 4096;

/// How much of the controller's reason is kept in an error message.
const MAX_REASON_CHARS: usize = 512;

pub(crate) struct Transport {
    client: Client,
    timeout: Duration,
    retries: u32,
    backoff: Duration,
    /// The next change sequence number. Starting from the wall clock in microseconds keeps it
    /// increasing across restarts.
    sequence: AtomicU64,
}

/// What one attempt came to.
enum Attempt {
    Done,
    Retry {
        reason: String,
        retry_after: Option<Duration>,
    },
    Fatal(String),
}

impl Transport {
    pub fn new(client: Client, timeout: Duration, retries: u32, backoff: Duration) -> Self {
        let start = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| u64::try_from(d.as_micros()).unwrap_or(u64::MAX / 2));
        Transport {
            client,
            timeout,
            retries,
            backoff,
            sequence: AtomicU64::new(start),
        }
    }

    /// Sends `body` (JSON) with `method` to `url` until it succeeds, fails for good or the
    /// retries run out. A DELETE answered 404 is a success: the rule is absent either way.
    pub async fn send(
        &self,
        method: Method,
        url: Url,
        body: Option<Vec<u8>>,
    ) -> Result<(), String> {
        let sequence = self.sequence.fetch_add(1, Ordering::Relaxed);
        let mut waits = self.waits();
        let mut attempt = 0u32;
        loop {
            attempt += 1;
            let (reason, retry_after) =
                match self.attempt(&method, &url, body.as_ref(), sequence).await {
                    Attempt::Done => return Ok(()),
                    Attempt::Fatal(reason) => return Err(format!("{method} {url}: {reason}")),
                    Attempt::Retry {
                        reason,
                        retry_after,
                    } => (reason, retry_after),
                };
            let Some(backoff) = waits.next() else {
                return Err(format!(
                    "{method} {url}: gave up after {attempt} attempt(s): {reason}"
                ));
            };
            let wait = retry_after.unwrap_or(backoff).min(self.max_wait());
            tracing::warn!(%method, %url, attempt, error = %reason, ?wait, "upf-http attempt failed, retrying");
            tokio::time::sleep(wait).await;
        }
    }

    /// The waits between attempts: `backoff`, then doubling, each with up to as much again of
    /// random jitter (so that controllers restarted together are not hit in lockstep), at most
    /// `retries` of them.
    fn waits(&self) -> ExponentialBackoff {
        ExponentialBuilder::new()
            .with_min_delay(self.backoff)
            .with_max_delay(self.max_wait() / 2)
            .with_jitter()
            .with_max_times(self.retries as usize)
            .build()
    }

    /// The longest wait, whether from the backoff or from the controller's `Retry-After`.
    fn max_wait(&self) -> Duration {
        self.backoff.saturating_mul(MAX_BACKOFF_FACTOR)
    }

    async fn attempt(
        &self,
        method: &Method,
        url: &Url,
        body: Option<&Vec<u8>>,
        sequence: u64,
    ) -> Attempt {
        let mut request = self
            .client
            .request(method.clone(), url.clone())
            .header(SEQUENCE_HEADER, sequence);
        if let Some(body) = body {
            request = request
                .header(reqwest::header::CONTENT_TYPE, "application/json")
                .body(body.clone());
        }
        let response = match request.send().await {
            Ok(response) => response,
            Err(e) => {
                return Attempt::Retry {
                    reason: self.describe(e),
                    retry_after: None,
                }
            }
        };
        let status = response.status();
        if status.is_success() || (status == StatusCode::NOT_FOUND && method == Method::DELETE) {
            return Attempt::Done;
        }
        let retry_after = retry_after(&response);
        let reason = format!("answered {status}{}", controller_reason(response).await);
        if status.is_server_error() || status == StatusCode::TOO_MANY_REQUESTS {
            Attempt::Retry {
                reason,
                retry_after,
            }
        } else {
            Attempt::Fatal(reason)
        }
    }

    /// A transport error with its causes (reqwest's own message hides them), without the URL
    /// that the caller already names.
    fn describe(&self, e: reqwest::Error) -> String {
        if e.is_timeout() {
            return format!("no answer within {:?}", self.timeout);
        }
        let e = e.without_url();
        let mut text = e.to_string();
        let mut source = e.source();
        while let Some(cause) = source {
            text.push_str(": ");
            text.push_str(&cause.to_string());
            source = cause.source();
        }
        text
    }
}

/// `Retry-After` in seconds (the HTTP-date form is ignored).
fn retry_after(response: &Response) -> Option<Duration> {
    response
        .headers()
        .get(RETRY_AFTER)?
        .to_str()
        .ok()?
        .trim()
        .parse::<u64>()
        .ok()
        .map(Duration::from_secs)
}

/// `": <reason>"` from the start of the body: the `detail`, `reason`, `message`, `title` or
/// `error` member of a JSON object (ProblemDetails and the usual shapes), else the text itself.
async fn controller_reason(mut response: Response) -> String {
    let mut body = Vec::new();
    while body.len() < MAX_ERROR_BODY {
        match response.chunk().await {
            Ok(Some(chunk)) => body.extend_from_slice(&chunk),
            Ok(None) | Err(_) => break,
        }
    }
    body.truncate(MAX_ERROR_BODY);
    let from_json = serde_json::from_slice::<serde_json::Value>(&body)
        .ok()
        .and_then(|v| {
            ["detail", "reason", "message", "title", "error"]
                .iter()
                .find_map(|k| v.get(k).and_then(|m| m.as_str()).map(str::to_owned))
        });
    let text = from_json.unwrap_or_else(|| String::from_utf8_lossy(&body).into_owned());
    let text: String = text.trim().chars().take(MAX_REASON_CHARS).collect();
    if text.is_empty() {
        String::new()
    } else {
        format!(": {text}")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn waits_double_with_jitter_and_are_capped() {
        let t = Transport::new(
            Client::new(),
            Duration::from_secs(1),
            10,
            Duration::from_millis(10),
        );
        let waits: Vec<Duration> = t.waits().collect();
        assert_eq!(waits.len(), 10);
        for (i, wait) in waits.iter().enumerate() {
            let base = Duration::from_millis(10 << i.min(3));
            assert!(
                *wait >= base && *wait <= base * 2,
                "wait {i} was {wait:?}, base {base:?}"
            );
        }
        assert_eq!(t.max_wait(), Duration::from_millis(160));
        let firsts: std::collections::HashSet<Duration> =
            (0..20).filter_map(|_| t.waits().next()).collect();
        assert!(firsts.len() > 1, "no jitter: {firsts:?}");
        let zero = Transport::new(Client::new(), Duration::from_secs(1), 0, Duration::ZERO);
        assert_eq!(zero.waits().count(), 0);
    }
}
