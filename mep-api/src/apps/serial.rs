//! Who may change what at once. Changes of one application instance run one at a time, in
//! order; changes of different instances run side by side, so a slow data-plane call for one app
//! does not delay another. A full resynchronization of the data plane waits for every change in
//! progress and holds new ones back. A change that gives its app domain names it did not hold
//! also holds those names, so two apps cannot both win the ownership check for one name.
//!
//! Lock order: everything (shared) → the app's turn → the claimed names, in sorted order.

use std::collections::HashMap;
use std::hash::Hash;
use std::sync::Arc;

use tokio::sync::{Mutex, OwnedMutexGuard, RwLock, RwLockReadGuard, RwLockWriteGuard};

use crate::model::ids::AppInstanceId;

/// One lock per key, made when first wanted and forgotten when nobody holds or waits for it.
struct KeyedLocks<K> {
    locks: parking_lot::Mutex<HashMap<K, Arc<Mutex<()>>>>,
}

impl<K> Default for KeyedLocks<K> {
    fn default() -> Self {
        Self {
            locks: parking_lot::Mutex::new(HashMap::new()),
        }
    }
}

/// A held key of a [`KeyedLocks`].
pub(super) struct Held<'a, K: Hash + Eq> {
    table: &'a KeyedLocks<K>,
    key: K,
    guard: Option<OwnedMutexGuard<()>>,
}

impl<K: Hash + Eq + Clone> KeyedLocks<K> {
    async fn lock(&self, key: &K) -> Held<'_, K> {
        let lock = Arc::clone(self.locks.lock().entry(key.clone()).or_default());
        Held {
            table: self,
            key: key.clone(),
            guard: Some(lock.lock_owned().await),
        }
    }

    #[cfg(test)]
    fn len(&self) -> usize {
        self.locks.lock().len()
    }
}

impl<K: Hash + Eq> Drop for Held<'_, K> {
    fn drop(&mut self) {
        drop(self.guard.take());
        let mut locks = self.table.locks.lock();
        // Only the table holds it now: nobody waits, and nobody can clone it without the table.
        if locks
            .get(&self.key)
            .is_some_and(|lock| Arc::strong_count(lock) == 1)
        {
            locks.remove(&self.key);
        }
    }
}

#[derive(Default)]
pub(super) struct Serials {
    everything: RwLock<()>,
    apps: KeyedLocks<AppInstanceId>,
    names: KeyedLocks<String>,
}

/// The right to change one application instance.
pub(super) struct AppTurn<'a> {
    _turn: Held<'a, AppInstanceId>,
    _shared: RwLockReadGuard<'a, ()>,
}

impl Serials {
    /// Waits for `app`'s turn (and for any resynchronization in progress).
    pub(super) async fn app(&self, app: &AppInstanceId) -> AppTurn<'_> {
        let shared = self.everything.read().await;
        AppTurn {
            _turn: self.apps.lock(app).await,
            _shared: shared,
        }
    }

    /// Waits until no change is in progress and holds every new one back.
    pub(super) async fn everything(&self) -> RwLockWriteGuard<'_, ()> {
        self.everything.write().await
    }

    /// Holds `names` (domain names being claimed) until the guards drop.
    pub(super) async fn claim(&self, mut names: Vec<String>) -> Vec<Held<'_, String>> {
        names.sort_unstable();
        names.dedup();
        let mut held = Vec::with_capacity(names.len());
        for name in &names {
            held.push(self.names.lock(name).await);
        }
        held
    }

    /// How many apps and names have a lock in the tables (for tests).
    #[cfg(test)]
    fn tracked(&self) -> usize {
        self.apps.len() + self.names.len()
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    fn id(s: &str) -> AppInstanceId {
        AppInstanceId::parse(s).unwrap()
    }

    #[tokio::test]
    async fn apps_take_turns_alone_and_side_by_side_with_others() {
        let serials = Arc::new(Serials::default());
        let a = serials.app(&id("app-a")).await;
        // Another app goes ahead at once.
        let b = tokio::time::timeout(Duration::from_secs(1), serials.app(&id("app-b")))
            .await
            .expect("app-b is not held up by app-a");
        drop(b);
        // The same app waits for its turn.
        let again = {
            let serials = Arc::clone(&serials);
            tokio::spawn(async move {
                let _turn = serials.app(&id("app-a")).await;
            })
        };
        tokio::time::sleep(Duration::from_millis(50)).await;
        assert!(!again.is_finished(), "app-a's second change waited");
        // A resync waits for the change in progress.
        let resync = {
            let serials = Arc::clone(&serials);
            tokio::spawn(async move {
                let _all = serials.everything().await;
            })
        };
        tokio::time::sleep(Duration::from_millis(50)).await;
        assert!(!resync.is_finished(), "the resync waited");
        drop(a);
        again.await.unwrap();
        resync.await.unwrap();
        // Names: one claim at a time per name, other names go ahead.
        let held = serials
            .claim(vec!["b.example".into(), "a.example".into()])
            .await;
        let other = tokio::time::timeout(
            Duration::from_secs(1),
            serials.claim(vec!["c.example".into()]),
        )
        .await
        .expect("another name is free");
        drop(other);
        let same = {
            let serials = Arc::clone(&serials);
            tokio::spawn(async move {
                let _held = serials.claim(vec!["a.example".into()]).await;
            })
        };
        tokio::time::sleep(Duration::from_millis(50)).await;
        assert!(!same.is_finished(), "a claimed name waits");
        drop(held);
        same.await.unwrap();
        assert_eq!(serials.tracked(), 0, "locks nobody waits for are forgotten");
    }
}
