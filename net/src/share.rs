//! A per-client cap on something a server holds for its clients at once (forwarded DNS queries
//! waiting for an upstream), so that one client cannot take all of it. Kept without a lock and
//! without allocating: clients are hashed, with a key chosen at start, into a fixed array of
//! counters. Two clients that land in one counter share one client's cap; with [`BUCKETS`]
//! counters a well-behaved client shares a hostile one's counter with odds of 1 in 4,096.

use std::hash::BuildHasher;
use std::net::IpAddr;
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::Arc;

use crate::table::client_key;

/// Counters, whatever the number of clients.
pub const BUCKETS: usize = 4096;

/// The counters and the cap.
pub struct ClientShares {
    counters: Box<[AtomicU32]>,
    cap: u32,
    hasher: std::collections::hash_map::RandomState,
}

impl std::fmt::Debug for ClientShares {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ClientShares")
            .field("cap", &self.cap)
            .finish()
    }
}

/// One unit of a client's share, given back when dropped.
#[derive(Debug)]
pub struct ClientShare {
    shares: Arc<ClientShares>,
    bucket: usize,
}

impl ClientShares {
    /// Each client (an IPv4 address, or an IPv6 /64) may hold `cap` units at once.
    pub fn new(cap: usize) -> Arc<Self> {
        Arc::new(ClientShares {
            counters: (0..BUCKETS).map(|_| AtomicU32::new(0)).collect(),
            cap: u32::try_from(cap).unwrap_or(u32::MAX),
            hasher: Default::default(),
        })
    }

    /// A unit for `client`, unless it holds its cap already.
    pub fn try_take(self: &Arc<Self>, client: IpAddr) -> Option<ClientShare> {
        let bucket = self.bucket(client);
        let held = self.counters[bucket].fetch_add(1, Ordering::AcqRel);
        if held >= self.cap {
            self.counters[bucket].fetch_sub(1, Ordering::AcqRel);
            return None;
        }
        Some(ClientShare {
            shares: Arc::clone(self),
            bucket,
        })
    }

    /// Units `client` holds (with any client that shares its counter).
    pub fn held(&self, client: IpAddr) -> u32 {
        self.counters[self.bucket(client)].load(Ordering::Acquire)
    }

    fn bucket(&self, client: IpAddr) -> usize {
        (self.hasher.hash_one(client_key(client)) % BUCKETS as u64) as usize
    }
}

impl Drop for ClientShare {
    fn drop(&mut self) {
        self.shares.counters[self.bucket].fetch_sub(1, Ordering::AcqRel);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_client_holds_its_cap_and_no_more_until_it_gives_some_back() {
        let shares = ClientShares::new(3);
        let a: IpAddr = "192.0.2.1".parse().unwrap();
        let held: Vec<_> = (0..3).map(|_| shares.try_take(a).unwrap()).collect();
        assert!(shares.try_take(a).is_none());
        assert_eq!(shares.held(a), 3);
        drop(held);
        assert_eq!(shares.held(a), 0);
        assert!(shares.try_take(a).is_some());
    }

    #[test]
    fn other_clients_keep_their_share_and_an_ipv6_slash_64_is_one_client() {
        let shares = ClientShares::new(2);
        let hostile: IpAddr = "2001:db8:1:2::1".parse().unwrap();
        let same_64: IpAddr = "2001:db8:1:2:ffff::9".parse().unwrap();
        let _held = [shares.try_take(hostile), shares.try_take(hostile)];
        assert!(shares.try_take(same_64).is_none());
        // Of 200 other clients, those that do not share the hostile one's counter get theirs.
        let others = (0..200u8).map(|i| IpAddr::from([198, 51, 100, i]));
        let served = others.filter(|c| shares.try_take(*c).is_some()).count();
        assert!(served >= 190, "{served} of 200");
    }
}
