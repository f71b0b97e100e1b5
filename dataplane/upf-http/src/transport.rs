//! Sends one change to the controller: per-attempt timeout, bounded retries with exponential
//! backoff on transport errors, 5xx and 429, and an immediate error with the controller's reason
//! on any other non-success answer.

use std::error::Error as _;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

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
        let attempts = self.retries.saturating_add(1);
        let mut attempt = 0;
        loop {
            attempt += 1;
            let reason = match self.attempt(&method, &url, body.as_ref(), sequence).await {
                Attempt::Done => return Ok(()),
                Attempt::Fatal(reason) => return Err(format!("{method} {url}: {reason}")),
                Attempt::Retry { reason, .. } if attempt >= attempts => reason,
                Attempt::Retry {
                    reason,
                    retry_after,
                } => {
                    let wait = self.wait_before(attempt, retry_after);
                    tracing::warn!(%method, %url, attempt, error = %reason, ?wait, "upf-http attempt failed, retrying");
                    tokio::time::sleep(wait).await;
                    continue;
                }
            };
            return Err(format!(
                "{method} {url}: gave up after {attempts} attempt(s): {reason}"
            ));
        }
    }

    /// Exponential backoff (`backoff`, `2 × backoff`, ...) or the controller's `Retry-After`,
    /// never more than `MAX_BACKOFF_FACTOR × backoff`.
    fn wait_before(&self, failed_attempts: u32, retry_after: Option<Duration>) -> Duration {
        let cap = self.backoff.saturating_mul(MAX_BACKOFF_FACTOR);
        let exponential = self
            .backoff
            .saturating_mul(1u32 << (failed_attempts - 1).min(16));
        retry_after.unwrap_or(exponential).min(cap)
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
    fn backoff_doubles_and_is_capped() {
        let t = Transport::new(
            Client::new(),
            Duration::from_secs(1),
            10,
            Duration::from_millis(10),
        );
        assert_eq!(t.wait_before(1, None), Duration::from_millis(10));
        assert_eq!(t.wait_before(3, None), Duration::from_millis(40));
        assert_eq!(t.wait_before(9, None), Duration::from_millis(160));
        assert_eq!(
            t.wait_before(1, Some(Duration::from_secs(60))),
            Duration::from_millis(160)
        );
        assert_eq!(
            t.wait_before(5, Some(Duration::from_millis(5))),
            Duration::from_millis(5)
        );
    }
}
