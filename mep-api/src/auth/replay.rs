//! One use per signed token request. A signed request stays valid for the clock-skew window, so
//! without this a captured one could be replayed within it; remembering each verified signature
//! until its window ends closes that. Nodes sharing a store also record each use there
//! ([`SignedUse::record`]), so a request used on one node is refused by the others.

use std::collections::HashMap;
use std::time::{Duration, SystemTime};

use parking_lot::Mutex;

use crate::store::{Check, Store, StoreError, Table, Write};

/// Signatures remembered at most; beyond this, new signed requests are refused until old ones
/// expire (memory stays bounded even under a flood of valid requests).
const MAX_REMEMBERED: usize = 100_000;

/// Signatures already used, each with the end of its validity.
#[derive(Default)]
pub struct ReplayGuard {
    seen: Mutex<HashMap<[u8; 32], SystemTime>>,
}

/// Why a signed request was refused.
#[derive(Debug, PartialEq, Eq)]
pub enum Replay {
    /// This exact signature was used before.
    Used,
    /// Too many signatures are still within their window.
    Full,
}

/// A verified signed request: its signature and the end of its window.
#[derive(Debug, Clone, Copy)]
pub struct SignedUse {
    pub signature: [u8; 32],
    pub valid_until: SystemTime,
}

/// Why the store refused to record a signed request's use.
#[derive(Debug, PartialEq, Eq)]
pub enum SharedReplay {
    /// Another node recorded it first.
    Used,
    /// The store cannot take writes now.
    Unavailable,
}

impl SignedUse {
    /// Records the use in a store shared by several nodes (nothing to do on one node), as a
    /// create-if-absent of a record that lives until the window ends.
    pub async fn record(&self, store: &Store, now: SystemTime) -> Result<(), SharedReplay> {
        if !store.is_shared() {
            return Ok(());
        }
        let key: String = self.signature.iter().map(|b| format!("{b:02x}")).collect();
        let ttl = self
            .valid_until
            .duration_since(now)
            .unwrap_or_default()
            .max(Duration::from_secs(1));
        let lease = store.grant_lease(ttl).await.map_err(unavailable)?;
        let recorded = store
            .commit_checked(
                vec![Check::Absent {
                    table: Table::SignedRequests,
                    key: key.clone(),
                }],
                vec![Write::PutLeased {
                    table: Table::SignedRequests,
                    key,
                    value: b"{}".to_vec(),
                    lease,
                }],
            )
            .await;
        match recorded {
            Ok(()) => Ok(()),
            Err(StoreError::Conflict) => Err(SharedReplay::Used),
            Err(e) => Err(unavailable(e)),
        }
    }
}

fn unavailable(e: StoreError) -> SharedReplay {
    tracing::warn!(error = %e, "cannot record a signed token request's use in the store");
    SharedReplay::Unavailable
}

impl ReplayGuard {
    /// Records `signature` (valid until `valid_until`) and says whether it was its first use.
    pub fn first_use(
        &self,
        signature: &[u8; 32],
        valid_until: SystemTime,
        now: SystemTime,
    ) -> Result<(), Replay> {
        let mut seen = self.seen.lock();
        if seen.get(signature).is_some_and(|until| *until >= now) {
            return Err(Replay::Used);
        }
        if seen.len() >= MAX_REMEMBERED {
            seen.retain(|_, until| *until >= now);
            if seen.len() >= MAX_REMEMBERED {
                return Err(Replay::Full);
            }
        }
        seen.insert(*signature, valid_until);
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_signature_works_once_within_its_window() {
        let guard = ReplayGuard::default();
        let now = SystemTime::now();
        let until = now + Duration::from_secs(300);
        let (sig, other) = ([1u8; 32], [2u8; 32]);
        assert_eq!(guard.first_use(&sig, until, now), Ok(()));
        assert_eq!(guard.first_use(&sig, until, now), Err(Replay::Used));
        assert_eq!(guard.first_use(&other, until, now), Ok(()));
        // Past its window the signature is refused by the skew check anyway; the guard forgets it.
        let later = until + Duration::from_secs(1);
        assert_eq!(
            guard.first_use(&sig, later + Duration::from_secs(300), later),
            Ok(())
        );
    }
}
