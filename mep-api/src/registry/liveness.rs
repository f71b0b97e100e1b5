//! Service liveness (MEC 011 v2.2.1 clause 8.2.10): services registered with a heartbeat interval
//! that stop sending heartbeats turn SUSPENDED, and a heartbeat revives them.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use super::{if_match_holds, Liveness, Registry, RegistryError, Rendered};
use crate::clock::unix_parts;
use crate::model::common::ServiceState;
use crate::model::ids::AppInstanceId;
use crate::model::service::{ServiceLivenessInfo, TimeStamp};
use crate::model::subscription::ChangeType;
use crate::notify::Outbox;
use crate::store::{Check, Leadership, Replicated, Store, StoreError, Table, Write};

/// How the platform chooses heartbeat intervals.
#[derive(Debug, Clone, Copy)]
pub struct LivenessPolicy {
    /// Shortest interval granted, in seconds; shorter requests are raised to it.
    pub min_interval: u32,
    /// Longest interval granted, in seconds; longer requests are lowered to it.
    pub max_interval: u32,
}

impl LivenessPolicy {
    /// The interval granted for a requested one; 0 (no heartbeats) stays 0.
    pub fn choose_interval(&self, requested: u32) -> u32 {
        if requested == 0 {
            0
        } else {
            requested.clamp(self.min_interval.max(1), self.max_interval.max(1))
        }
    }

    /// How long after the last heartbeat a service is suspended: the interval plus 5% of it,
    /// at least one second and at most five.
    pub fn deadline(interval: u32) -> Duration {
        let grace = interval.div_ceil(20).clamp(1, 5);
        Duration::from_secs(u64::from(interval) + u64::from(grace))
    }
}

impl Registry {
    /// `GET` on the liveness resource of a service of `app`.
    pub fn liveness_info(&self, app: &AppInstanceId, id: &str) -> Result<Rendered, RegistryError> {
        let index = self.index.read();
        let entry = match index.services.get(id) {
            Some(e) if e.service.owner == *app => e,
            _ => return Err(RegistryError::ServiceNotFound(id.to_owned())),
        };
        let Some(liveness) = entry.liveness else {
            return Err(RegistryError::ServiceNotFound(format!(
                "{id} has no liveness resource (it was registered without livenessInterval)"
            )));
        };
        Ok(render_liveness(
            entry.effective_state(),
            liveness.last_heartbeat,
            entry.service.liveness_interval,
        ))
    }

    /// A heartbeat (`PATCH` with `{"state":"ACTIVE"}`) for a service of `app`; answers the
    /// liveness resource as it is after the heartbeat.
    pub fn heartbeat(
        &self,
        app: &AppInstanceId,
        id: &str,
        if_match: Option<&str>,
    ) -> Result<Rendered, RegistryError> {
        let now = self.clock.now();
        let mut index = self.index.write();
        let entry = match index.services.get(id) {
            None => return Err(RegistryError::ServiceNotFound(id.to_owned())),
            Some(e) if e.service.owner != *app => {
                return Err(RegistryError::NotOwner {
                    service: id.to_owned(),
                })
            }
            Some(e) => e,
        };
        let Some(liveness) = entry.liveness else {
            return Err(RegistryError::ServiceNotFound(format!(
                "{id} has no liveness resource (it was registered without livenessInterval)"
            )));
        };
        if if_match.is_some() {
            let current = render_liveness(
                entry.effective_state(),
                liveness.last_heartbeat,
                entry.service.liveness_interval,
            );
            if !if_match_holds(if_match, &current.etag) {
                return Err(RegistryError::PreconditionFailed);
            }
        }
        let revived = liveness.suspended;
        let new_liveness = Some(Liveness {
            last_heartbeat: now,
            suspended: false,
            ..liveness
        });
        let rendered = revived.then(|| self.render(&entry.service, new_liveness));
        let Some(entry) = index.services.get_mut(id) else {
            return Err(RegistryError::ServiceNotFound(id.to_owned()));
        };
        entry.liveness = new_liveness;
        let info = render_liveness(entry.service.state, now, entry.service.liveness_interval);
        if let Some(rendered) = rendered {
            entry.rendered = rendered;
            let index = &*index;
            if let Some(entry) = index.services.get(id) {
                self.emit(index, entry, ChangeType::StateChanged);
            }
        }
        Ok(info)
    }

    /// On a store shared by several nodes, records the heartbeat just taken for service `id`
    /// there, so that every node keeps the service ACTIVE. A failure is logged, not answered:
    /// the heartbeat counts here, and the next one tries again.
    pub async fn share_heartbeat(&self, id: &str) {
        if !self.store.is_shared() {
            return;
        }
        let Some(at) = self
            .index
            .read()
            .services
            .get(id)
            .and_then(|e| e.liveness)
            .map(|l| l.last_heartbeat)
        else {
            return;
        };
        let record = SharedHeartbeat {
            at_ms: at
                .duration_since(UNIX_EPOCH)
                .map_or(0, |d| d.as_millis() as u64),
        };
        let Ok(value) = serde_json::to_vec(&record) else {
            return;
        };
        let put = Write::Put {
            table: Table::Liveness,
            key: id.to_owned(),
            value,
        };
        // Bounded well below any heartbeat interval: an etcd without quorum must not hold the
        // application's heartbeat for the store's whole write deadline.
        match tokio::time::timeout(SHARE_WITHIN, self.store.commit(vec![put])).await {
            Ok(Ok(())) => {}
            Ok(Err(e)) => {
                tracing::warn!(service = %id, error = %e, "heartbeat not shared with the other nodes")
            }
            Err(_) => {
                tracing::warn!(service = %id, "heartbeat not shared with the other nodes in time")
            }
        }
    }

    /// A heartbeat another node took: the service's last heartbeat moves forward (a suspended
    /// service revives; the leader notifies that).
    pub fn apply_replicated_heartbeat(&self, change: &Replicated) {
        if !self.store.claim(change) {
            return;
        }
        let Ok(Some(record)) = change.decode::<SharedHeartbeat>() else {
            return;
        };
        let at = UNIX_EPOCH + Duration::from_millis(record.at_ms);
        let mut index = self.index.write();
        let Some(entry) = index.services.get_mut(&change.key) else {
            return;
        };
        let Some(liveness) = entry.liveness.filter(|l| l.last_heartbeat < at) else {
            return;
        };
        let revived = liveness.suspended;
        entry.liveness = Some(Liveness {
            last_heartbeat: at,
            suspended: false,
            ..liveness
        });
        if revived {
            entry.rendered = self.render(&entry.service, entry.liveness);
        }
    }

    /// Suspends every ACTIVE service whose heartbeat is overdue at `now`; answers how many.
    pub fn sweep_liveness(&self, now: SystemTime) -> usize {
        let overdue = |l: &Liveness, interval: u32| {
            !l.suspended
                && now
                    .duration_since(l.last_heartbeat)
                    .is_ok_and(|since| since > LivenessPolicy::deadline(interval))
        };
        let candidates: Vec<String> = {
            let index = self.index.read();
            index
                .services
                .values()
                .filter(|e| e.service.state == ServiceState::Active)
                .filter(|e| {
                    e.liveness
                        .is_some_and(|l| overdue(&l, e.service.liveness_interval))
                })
                .map(|e| e.service.ser_instance_id.clone())
                .collect()
        };
        if candidates.is_empty() {
            return 0;
        }
        let mut index = self.index.write();
        let mut suspended = 0;
        for id in candidates {
            let Some(entry) = index.services.get_mut(&id) else {
                continue;
            };
            // A heartbeat may have arrived between the two locks.
            let Some(mut liveness) = entry.liveness.filter(|l| {
                entry.service.state == ServiceState::Active
                    && overdue(l, entry.service.liveness_interval)
            }) else {
                continue;
            };
            liveness.suspended = true;
            entry.liveness = Some(liveness);
            entry.rendered = self.render(&entry.service, entry.liveness);
            tracing::info!(service = %id, "missed heartbeats: service SUSPENDED");
            suspended += 1;
            let index = &*index;
            if let Some(entry) = index.services.get(&id) {
                self.emit(index, entry, ChangeType::StateChanged);
            }
        }
        suspended
    }
}

impl Registry {
    /// The leader of nodes sharing a store: notifies every liveness change (suspension or
    /// revival) not notified yet, with the record of what it notified, in one commit per
    /// service. A new leader so notifies what its predecessor did not get to.
    pub async fn notify_liveness_changes(&self) {
        let due: Vec<(String, AppInstanceId)> = self
            .index
            .read()
            .services
            .values()
            .filter(|e| e.liveness.is_some_and(|l| l.notification_due()))
            .map(|e| (e.service.ser_instance_id.clone(), e.service.owner.clone()))
            .collect();
        for (id, owner) in due {
            let _serial = self.lock_app(&owner).await;
            let (checks, writes, suspended) = {
                let index = self.index.read();
                let Some(entry) = index.services.get(&id) else {
                    continue;
                };
                let Some(liveness) = entry.liveness.filter(|l| l.notification_due()) else {
                    continue;
                };
                let check = match liveness.notified_suspended {
                    None => Check::Absent {
                        table: Table::NotifiedLiveness,
                        key: id.clone(),
                    },
                    Some(before) => Check::Holds {
                        table: Table::NotifiedLiveness,
                        key: id.clone(),
                        value: NotifiedLiveness::encode(before),
                    },
                };
                let mut writes = vec![Write::Put {
                    table: Table::NotifiedLiveness,
                    key: id.clone(),
                    value: NotifiedLiveness::encode(liveness.suspended),
                }];
                writes.extend(
                    self.notifications(&index, entry, ChangeType::StateChanged)
                        .iter()
                        .map(Outbox::write),
                );
                (vec![check], writes, liveness.suspended)
            };
            match self.store.commit_checked(checks, writes).await {
                Ok(()) => {
                    let mut index = self.index.write();
                    if let Some(l) = index
                        .services
                        .get_mut(&id)
                        .and_then(|e| e.liveness.as_mut())
                    {
                        l.notified_suspended = Some(suspended);
                    }
                }
                // Another leader notified it; its record comes by the watch.
                Err(StoreError::Conflict) => {}
                Err(e) => {
                    tracing::warn!(service = %id, error = %e, "liveness change not notified yet");
                    return;
                }
            }
        }
    }

    /// What the leader notified of a service's liveness, as committed by any node.
    pub async fn apply_replicated_notified_liveness(&self, change: &Replicated) {
        let Ok(record) = change.decode::<NotifiedLiveness>() else {
            return;
        };
        let owner = self
            .index
            .read()
            .services
            .get(&change.key)
            .map(|e| e.service.owner.clone());
        let Some(_serial) = self.claim_replicated(change, owner).await else {
            return;
        };
        let mut index = self.index.write();
        if let Some(l) = index
            .services
            .get_mut(&change.key)
            .and_then(|e| e.liveness.as_mut())
        {
            l.notified_suspended = record.map(|r| r.suspended);
        }
    }
}

impl Liveness {
    /// Whether the leader has a liveness change of this service to notify.
    fn notification_due(&self) -> bool {
        self.suspended != self.notified_suspended.unwrap_or(false)
    }
}

/// What the leader last notified of a service's liveness.
#[derive(Debug, serde::Serialize, serde::Deserialize)]
struct NotifiedLiveness {
    suspended: bool,
}

impl NotifiedLiveness {
    fn encode(suspended: bool) -> Vec<u8> {
        if suspended {
            br#"{"suspended":true}"#.to_vec()
        } else {
            br#"{"suspended":false}"#.to_vec()
        }
    }
}

/// The liveness records of a store shared by several nodes, as loaded at start.
#[derive(Default)]
pub(super) struct SharedLiveness {
    heartbeats: HashMap<String, SystemTime>,
    notified: HashMap<String, bool>,
}

impl SharedLiveness {
    /// The shared records; none on a single node.
    pub(super) fn load(store: &Store) -> Result<Self, StoreError> {
        let mut shared = Self::default();
        if !store.is_shared() {
            return Ok(shared);
        }
        for (key, value) in store.load(Table::Liveness)? {
            if let Ok(record) = serde_json::from_slice::<SharedHeartbeat>(&value) {
                shared
                    .heartbeats
                    .insert(key, UNIX_EPOCH + Duration::from_millis(record.at_ms));
            }
        }
        for (key, value) in store.load(Table::NotifiedLiveness)? {
            if let Ok(record) = serde_json::from_slice::<NotifiedLiveness>(&value) {
                shared.notified.insert(key, record.suspended);
            }
        }
        Ok(shared)
    }

    /// The liveness of service `id` at start: its last shared heartbeat (else now) and what
    /// the leader notified of it. The sweeper suspends it if that heartbeat is overdue.
    pub(super) fn take(&mut self, id: &str, now: SystemTime) -> Liveness {
        Liveness {
            last_heartbeat: self.heartbeats.remove(id).map_or(now, |at| at.min(now)),
            suspended: false,
            notified_suspended: self.notified.remove(id),
        }
    }
}

/// How long a heartbeat waits for the store before it is answered anyway.
const SHARE_WITHIN: Duration = Duration::from_millis(500);

/// A heartbeat as stored for the other nodes.
#[derive(Debug, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "camelCase")]
struct SharedHeartbeat {
    /// When it was taken, Unix milliseconds.
    at_ms: u64,
}

fn render_liveness(state: ServiceState, last: SystemTime, interval: u32) -> Rendered {
    let (seconds, nano_seconds) = unix_parts(last);
    let info = ServiceLivenessInfo {
        state,
        time_stamp: TimeStamp {
            seconds,
            nano_seconds,
        },
        interval,
    };
    Rendered::of(serde_json::to_vec(&info).unwrap_or_default())
}

/// Checks liveness every `period` until `shutdown` fires; on a store shared by several nodes
/// the leader then notifies the changes.
pub async fn run_liveness_sweeper(
    registry: Arc<Registry>,
    period: Duration,
    leadership: Leadership,
    shutdown: tokio_util::sync::CancellationToken,
) {
    let mut tick = tokio::time::interval(period);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = shutdown.cancelled() => return,
            _ = tick.tick() => {
                registry.sweep_liveness(registry.clock.now());
                if registry.store.is_shared() && leadership.is_leader() {
                    registry.notify_liveness_changes().await;
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn intervals_are_clamped_and_zero_means_none() {
        let p = LivenessPolicy {
            min_interval: 5,
            max_interval: 600,
        };
        assert_eq!(p.choose_interval(0), 0);
        assert_eq!(p.choose_interval(1), 5);
        assert_eq!(p.choose_interval(60), 60);
        assert_eq!(p.choose_interval(100_000), 600);
    }

    #[test]
    fn grace_is_five_percent_bounded() {
        assert_eq!(LivenessPolicy::deadline(1), Duration::from_secs(2));
        assert_eq!(LivenessPolicy::deadline(60), Duration::from_secs(63));
        assert_eq!(LivenessPolicy::deadline(1000), Duration::from_secs(1005));
    }
}
