//! Services and subscriptions another node committed (etcd store), applied to this node's index.
//!
//! Each change is applied under the lock of the owning application, the lock this node's own
//! writes of that application hold from check to index update, so the watch's copy of an own
//! write is recognised (`Store::claim`) and an older change never overwrites a newer one. The
//! node that made a change committed its notifications to the outbox; the others only update
//! their index.

use super::{Entry, Liveness, Registry};
use crate::model::ids::AppInstanceId;
use crate::model::service::Service;
use crate::model::subscription::SerAvailabilitySubscription;
use crate::store::Replicated;

impl Registry {
    /// Takes `owner`'s turn for a replicated change and claims the change: `None` when there is
    /// nothing to apply (a delete of a record this node never had, or a change it already
    /// applied, or one older than what it holds).
    pub(super) async fn claim_replicated(
        &self,
        change: &Replicated,
        owner: Option<AppInstanceId>,
    ) -> Option<tokio::sync::MutexGuard<'_, ()>> {
        let Some(owner) = owner else {
            self.store.claim(change);
            return None;
        };
        let serial = self.lock_app(&owner).await;
        self.store.claim(change).then_some(serial)
    }

    /// A service registered, updated or deregistered on another node.
    pub async fn apply_replicated_service(&self, change: &Replicated) {
        let Ok(service) = change.decode::<Service>() else {
            return;
        };
        let owner = match &service {
            Some(s) => Some(s.owner.clone()),
            None => self
                .index
                .read()
                .services
                .get(&change.key)
                .map(|e| e.service.owner.clone()),
        };
        let Some(_serial) = self.claim_replicated(change, owner).await else {
            return;
        };
        let mut index = self.index.write();
        let old = index.remove(&change.key);
        let Some(service) = service else { return };
        let liveness = (service.liveness_interval > 0).then(|| match old.as_ref() {
            Some(Entry {
                liveness: Some(l),
                service: s,
                ..
            }) if s.liveness_interval == service.liveness_interval => *l,
            _ => Liveness {
                notified_suspended: old
                    .as_ref()
                    .and_then(|e| e.liveness)
                    .and_then(|l| l.notified_suspended),
                ..Liveness::fresh(self.clock.now())
            },
        });
        let rendered = self.render(&service, liveness);
        index.insert(Entry {
            service,
            liveness,
            rendered,
        });
    }

    /// A service availability subscription made or removed on another node.
    pub async fn apply_replicated_subscription(&self, change: &Replicated) {
        let Ok(sub) = change.decode::<SerAvailabilitySubscription>() else {
            return;
        };
        let owner: Option<AppInstanceId> = match &sub {
            Some(s) => Some(s.app.clone()),
            None => self
                .index
                .read()
                .subscriptions
                .get(&change.key)
                .map(|s| s.app.clone()),
        };
        let Some(_serial) = self.claim_replicated(change, owner).await else {
            return;
        };
        let mut index = self.index.write();
        match sub {
            Some(sub) => {
                index.subscriptions.insert(change.key.clone(), sub);
            }
            None => {
                index.subscriptions.remove(&change.key);
                self.notifier.forget(&change.key);
            }
        }
    }
}
