//! Backing off after failed `accept` calls.

use std::time::{Duration, Instant};

const FIRST_PAUSE: Duration = Duration::from_millis(10);
const LONGEST_PAUSE: Duration = Duration::from_secs(1);
const LOG_EVERY: Duration = Duration::from_secs(1);

/// The state of one accept loop's backoff. A failed accept (typically `EMFILE`: the process is
/// out of descriptors) waits 10 ms, doubling up to 1 s while failures continue; the first success
/// resets it. Failures are logged at most once a second, with how many there were.
#[derive(Debug)]
pub struct AcceptBackoff {
    listener: &'static str,
    pause: Duration,
    failures_since_log: u64,
    last_log: Option<Instant>,
}

impl AcceptBackoff {
    pub fn new(listener: &'static str) -> Self {
        Self {
            listener,
            pause: FIRST_PAUSE,
            failures_since_log: 0,
            last_log: None,
        }
    }

    /// An accept succeeded.
    pub fn succeeded(&mut self) {
        self.pause = FIRST_PAUSE;
    }

    /// An accept failed with `error`: logs (rate-limited) and answers how long to wait.
    pub fn failed(&mut self, error: &std::io::Error) -> Duration {
        self.failures_since_log += 1;
        let now = Instant::now();
        if self
            .last_log
            .is_none_or(|at| now.duration_since(at) >= LOG_EVERY)
        {
            tracing::warn!(
                listener = self.listener,
                %error,
                failures = self.failures_since_log,
                pause_ms = self.pause.as_millis() as u64,
                "accept failed; backing off"
            );
            self.failures_since_log = 0;
            self.last_log = Some(now);
        }
        let pause = self.pause;
        self.pause = (self.pause * 2).min(LONGEST_PAUSE);
        pause
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pauses_double_up_to_a_second_and_reset_on_success() {
        let mut b = AcceptBackoff::new("test");
        let e = std::io::Error::from_raw_os_error(libc::EMFILE);
        let pauses: Vec<u128> = (0..9).map(|_| b.failed(&e).as_millis()).collect();
        assert_eq!(pauses, vec![10, 20, 40, 80, 160, 320, 640, 1000, 1000]);
        b.succeeded();
        assert_eq!(b.failed(&e), FIRST_PAUSE);
    }
}
