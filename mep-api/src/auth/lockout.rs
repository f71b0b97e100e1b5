//! Brute-force protection of the token endpoint: after `max_failures` bad secrets or signatures for
//! one access key *from one source* within `window`, that key is refused to that source for
//! `lock_for`. A success clears the count. Counting per source means that someone who knows an
//! access key (it is not a secret) can lock it only for themselves, never for its owner.
//!
//! A source is an IPv4 address or an IPv6 /64. Only provisioned access keys are tracked (unknown
//! keys fail without state), and the table holds at most [`MAX_TRACKED`] pairs: when full, pairs
//! whose window and lock are over are dropped first, and failures beyond that are refused without
//! being recorded. The state sits behind one mutex, touched once per token request.
//!
//! Nodes sharing a store count failures each on their own, and share the locks: a lock one node
//! sets is stored (living by a lease for its duration) and applied by every node
//! ([`Lockout::apply_lock`]), so a locked source is refused by all of them.

use std::collections::HashMap;
use std::net::IpAddr;
use std::time::{Duration, SystemTime};

use parking_lot::Mutex;

/// Most (access key, source) pairs tracked at once.
pub const MAX_TRACKED: usize = 65_536;

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

impl Entry {
    fn over(&self, now: SystemTime, policy: &LockoutPolicy) -> bool {
        let window_over = now
            .duration_since(self.window_start)
            .map_or(true, |age| age >= policy.window);
        window_over && self.locked_until.is_none_or(|until| until <= now)
    }
}

/// Where a token request came from: an IPv4 address or the /64 of an IPv6 address.
fn source_key(addr: IpAddr) -> IpAddr {
    match addr {
        IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
            Some(v4) => IpAddr::V4(v4),
            None => IpAddr::V6((u128::from(v6) & !((1u128 << 64) - 1)).into()),
        },
        v4 => v4,
    }
}

type Key = (String, IpAddr);

/// The failure counts of (access key, source) pairs.
#[derive(Debug)]
pub struct Lockout {
    policy: LockoutPolicy,
    entries: Mutex<HashMap<Key, Entry>>,
}

impl Lockout {
    pub fn new(policy: LockoutPolicy) -> Self {
        Self {
            policy,
            entries: Mutex::new(HashMap::new()),
        }
    }

    /// `Err(remaining)` while `key` is locked for `source`.
    pub fn check(&self, key: &str, source: IpAddr, now: SystemTime) -> Result<(), Duration> {
        let entries = self.entries.lock();
        match entries
            .get(&(key.to_owned(), source_key(source)))
            .and_then(|e| e.locked_until)
        {
            Some(until) if until > now => Err(until.duration_since(now).unwrap_or_default()),
            _ => Ok(()),
        }
    }

    /// Counts a failure; answers the lock duration when this failure locked the key for the
    /// source (or when the table is full of live pairs, in which case nothing is recorded and
    /// the request is refused as if locked for one window).
    pub fn record_failure(&self, key: &str, source: IpAddr, now: SystemTime) -> Option<Duration> {
        let mut entries = self.entries.lock();
        let id = (key.to_owned(), source_key(source));
        if !entries.contains_key(&id) && entries.len() >= MAX_TRACKED {
            let policy = self.policy;
            entries.retain(|_, e| !e.over(now, &policy));
            if entries.len() >= MAX_TRACKED {
                return Some(self.policy.window);
            }
        }
        let entry = entries.entry(id).or_insert(Entry {
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

    /// A lock another node set (stores shared by several nodes): `key` is refused to `source`
    /// until `until` here too.
    pub fn apply_lock(&self, key: &str, source: IpAddr, until: SystemTime) {
        let mut entries = self.entries.lock();
        let id = (key.to_owned(), source_key(source));
        if !entries.contains_key(&id) && entries.len() >= MAX_TRACKED {
            return;
        }
        let entry = entries.entry(id).or_insert(Entry {
            window_start: until,
            failures: 0,
            locked_until: None,
        });
        if entry.locked_until.is_none_or(|held| held < until) {
            entry.locked_until = Some(until);
        }
    }

    /// Clears the failures of `key` from `source`.
    pub fn record_success(&self, key: &str, source: IpAddr) {
        self.entries
            .lock()
            .remove(&(key.to_owned(), source_key(source)));
    }

    /// Forgets `key` for every source, for when its credentials are removed.
    pub fn forget(&self, key: &str) {
        self.entries.lock().retain(|(k, _), _| k != key);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const A: IpAddr = IpAddr::V4(std::net::Ipv4Addr::new(192, 0, 2, 1));

    #[test]
    fn three_failures_in_the_window_lock_and_the_lock_expires() {
        let lockout = Lockout::new(LockoutPolicy::default());
        let t0 = SystemTime::UNIX_EPOCH + Duration::from_secs(1_000_000);
        assert!(lockout.record_failure("ak", A, t0).is_none());
        assert!(lockout
            .record_failure("ak", A, t0 + Duration::from_secs(10))
            .is_none());
        assert!(lockout.check("ak", A, t0 + Duration::from_secs(11)).is_ok());
        assert_eq!(
            lockout.record_failure("ak", A, t0 + Duration::from_secs(20)),
            Some(Duration::from_secs(900))
        );
        let remaining = lockout
            .check("ak", A, t0 + Duration::from_secs(120))
            .unwrap_err();
        assert_eq!(remaining, Duration::from_secs(800));
        assert!(lockout.check("other", A, t0).is_ok());
        assert!(lockout
            .check("ak", A, t0 + Duration::from_secs(921))
            .is_ok());
    }

    #[test]
    fn failures_outside_the_window_and_successes_reset_the_count() {
        let lockout = Lockout::new(LockoutPolicy::default());
        let t0 = SystemTime::UNIX_EPOCH + Duration::from_secs(1_000_000);
        lockout.record_failure("ak", A, t0);
        lockout.record_failure("ak", A, t0 + Duration::from_secs(1));
        assert!(lockout
            .record_failure("ak", A, t0 + Duration::from_secs(301))
            .is_none());
        lockout.record_success("ak", A);
        lockout.record_failure("ak", A, t0 + Duration::from_secs(302));
        assert!(lockout
            .record_failure("ak", A, t0 + Duration::from_secs(303))
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
                            .filter(|_| lockout.record_failure("ak", A, t0).is_some())
                            .count()
                    })
                })
                .collect();
            handles.into_iter().map(|h| h.join().unwrap()).sum()
        });
        assert_eq!(locked, 1, "exactly the 400th failure locks");
        assert!(lockout.check("ak", A, t0).is_err());
    }

    #[test]
    fn a_lock_holds_only_for_the_source_that_failed() {
        let lockout = Lockout::new(LockoutPolicy::default());
        let t0 = SystemTime::UNIX_EPOCH + Duration::from_secs(1_000_000);
        let attacker: IpAddr = "2001:db8:1:2::66".parse().unwrap();
        for _ in 0..3 {
            lockout.record_failure("ak", attacker, t0);
        }
        assert!(lockout.check("ak", attacker, t0).is_err());
        let same_64: IpAddr = "2001:db8:1:2:ffff::1".parse().unwrap();
        assert!(
            lockout.check("ak", same_64, t0).is_err(),
            "one /64 is one source"
        );
        assert!(
            lockout.check("ak", A, t0).is_ok(),
            "the owner is not locked out"
        );
        lockout.forget("ak");
        assert!(lockout.check("ak", attacker, t0).is_ok());
    }
}
