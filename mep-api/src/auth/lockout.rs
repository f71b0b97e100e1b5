//! Brute-force protection of the token endpoint: after `max_failures` bad secrets or signatures for
//! one access key within `window`, that key is refused for `lock_for`. A success clears the count.
//!
//! Only provisioned access keys are tracked (unknown keys fail without state), so the table is
//! bounded by the number of applications. The state sits behind one mutex: it is touched once per
//! token request, which is rare next to ordinary API calls.

use std::collections::HashMap;
use std::time::{Duration, SystemTime};

use parking_lot::Mutex;

/// How many failures lock an access key, and for how long.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LockoutPolicy {
    pub max_failures: u32,
    pub window: Duration,
    pub lock_for: Duration,
}

impl Default for LockoutPolicy {
    /// EdgeGallery's numbers: 3 failures in 5 minutes lock for 15 minutes.
    fn default() -> Self {
        Self {
            max_failures: 3,
            window: Duration::from_secs(300),
            lock_for: Duration::from_secs(900),
        }
    }
}

#[derive(Debug, Clone, Copy)]
struct Entry {
    window_start: SystemTime,
    failures: u32,
    locked_until: Option<SystemTime>,
}

/// The failure counts of access keys.
#[derive(Debug)]
pub struct Lockout {
    policy: LockoutPolicy,
    entries: Mutex<HashMap<String, Entry>>,
}

impl Lockout {
    pub fn new(policy: LockoutPolicy) -> Self {
        Self {
            policy,
            entries: Mutex::new(HashMap::new()),
        }
    }

    /// `Err(remaining)` while `key` is locked.
    pub fn check(&self, key: &str, now: SystemTime) -> Result<(), Duration> {
        let entries = self.entries.lock();
        match entries.get(key).and_then(|e| e.locked_until) {
            Some(until) if until > now => Err(until.duration_since(now).unwrap_or_default()),
            _ => Ok(()),
        }
    }

    /// Counts a failure; answers the lock duration when this failure locked the key.
    pub fn record_failure(&self, key: &str, now: SystemTime) -> Option<Duration> {
        let mut entries = self.entries.lock();
        let entry = entries.entry(key.to_owned()).or_insert(Entry {
            window_start: now,
            failures: 0,
            locked_until: None,
        });
        let window_over = now
            .duration_since(entry.window_start)
            .map_or(true, |age| age >= self.policy.window);
        let lock_over = entry.locked_until.is_some_and(|until| until <= now);
        if window_over || lock_over {
            *entry = Entry {
                window_start: now,
                failures: 0,
                locked_until: None,
            };
        }
        entry.failures += 1;
        if entry.failures >= self.policy.max_failures {
            entry.locked_until = Some(now + self.policy.lock_for);
            return Some(self.policy.lock_for);
        }
        None
    }

    /// Clears the failures of `key`.
    pub fn record_success(&self, key: &str) {
        self.entries.lock().remove(key);
    }

    /// Forgets `key`, for when its credentials are removed.
    pub fn forget(&self, key: &str) {
        self.entries.lock().remove(key);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn three_failures_in_the_window_lock_and_the_lock_expires() {
        let lockout = Lockout::new(LockoutPolicy::default());
        let t0 = SystemTime::UNIX_EPOCH + Duration::from_secs(1_000_000);
        assert!(lockout.record_failure("ak", t0).is_none());
        assert!(lockout
            .record_failure("ak", t0 + Duration::from_secs(10))
            .is_none());
        assert!(lockout.check("ak", t0 + Duration::from_secs(11)).is_ok());
        assert_eq!(
            lockout.record_failure("ak", t0 + Duration::from_secs(20)),
            Some(Duration::from_secs(900))
        );
        let remaining = lockout
            .check("ak", t0 + Duration::from_secs(120))
            .unwrap_err();
        assert_eq!(remaining, Duration::from_secs(800));
        assert!(lockout.check("other", t0).is_ok());
        assert!(lockout.check("ak", t0 + Duration::from_secs(921)).is_ok());
    }

    #[test]
    fn failures_outside_the_window_and_successes_reset_the_count() {
        let lockout = Lockout::new(LockoutPolicy::default());
        let t0 = SystemTime::UNIX_EPOCH + Duration::from_secs(1_000_000);
        lockout.record_failure("ak", t0);
        lockout.record_failure("ak", t0 + Duration::from_secs(1));
        assert!(lockout
            .record_failure("ak", t0 + Duration::from_secs(301))
            .is_none());
        lockout.record_success("ak");
        lockout.record_failure("ak", t0 + Duration::from_secs(302));
        assert!(lockout
            .record_failure("ak", t0 + Duration::from_secs(303))
            .is_none());
    }

    #[test]
    fn concurrent_failures_are_all_counted() {
        let lockout = std::sync::Arc::new(Lockout::new(LockoutPolicy {
            max_failures: 400,
            ..LockoutPolicy::default()
        }));
        let t0 = SystemTime::UNIX_EPOCH + Duration::from_secs(1_000_000);
        let locked: usize = std::thread::scope(|s| {
            let handles: Vec<_> = (0..4)
                .map(|_| {
                    let lockout = lockout.clone();
                    s.spawn(move || {
                        (0..100)
                            .filter(|_| lockout.record_failure("ak", t0).is_some())
                            .count()
                    })
                })
                .collect();
            handles.into_iter().map(|h| h.join().unwrap()).sum()
        });
        assert_eq!(locked, 1, "exactly the 400th failure locks");
        assert!(lockout.check("ak", t0).is_err());
    }
}
