//! Service liveness (MEC 011 v2.2.1 clause 8.2.10): services registered with a heartbeat interval
//! that stop sending heartbeats turn SUSPENDED, and a heartbeat revives them.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use super::{if_match_holds, Liveness, Registry, RegistryError, Rendered};
use crate::clock::unix_parts;
use crate::model::common::ServiceState;
use crate::model::ids::AppInstanceId;
use crate::model::service::{Service, ServiceLivenessInfo, TimeStamp};
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

    /// On a store shared by several nodes, the lease and the liveness record a service with a
    /// liveness interval starts with (committed with the service); none otherwise.
    pub(super) async fn leased_liveness(
        &self,
        service: &Service,
        now: SystemTime,
    ) -> Result<(Option<i64>, Vec<Write>), RegistryError> {
        if !self.store.is_shared() || service.liveness_interval == 0 {
            return Ok((None, Vec::new()));
        }
        let lease = self
            .store
            .grant_lease(LivenessPolicy::deadline(service.liveness_interval))
            .await?;
        let write = SharedHeartbeat::write(&service.ser_instance_id, now, lease)?;
        Ok((Some(lease), vec![write]))
    }

    /// On a store shared by several nodes, passes the heartbeat just taken for service `id` on
    /// to the store: it renews the service's lease, or, when the lease expired (the service was
    /// suspended), records the service again under a new lease, which revives it on every
    /// node. A failure is logged, not answered: the heartbeat counts here, and the next one
    /// tries again.
    pub async fn share_heartbeat(&self, id: &str) {
        if !self.store.is_shared() {
            return;
        }
        let Some((liveness, interval)) = self
            .index
            .read()
            .services
            .get(id)
            .and_then(|e| e.liveness.map(|l| (l, e.service.liveness_interval)))
        else {
            return;
        };
        let share = async {
            if let Some(lease) = liveness.lease {
                if self.store.renew_lease(lease).await? {
                    return Ok(());
                }
            }
            let lease = self
                .store
                .grant_lease(LivenessPolicy::deadline(interval))
                .await?;
            let write = SharedHeartbeat::write(id, liveness.last_heartbeat, lease)?;
            self.store.commit(vec![write]).await?;
            if let Some(l) = self
                .index
                .write()
                .services
                .get_mut(id)
                .and_then(|e| e.liveness.as_mut())
            {
                l.lease = Some(lease);
            }
            Ok::<(), RegistryError>(())
        };
        // Bounded well below any heartbeat interval: an etcd without quorum must not hold the
        // application's heartbeat for the store's whole write deadline.
        match tokio::time::timeout(SHARE_WITHIN, share).await {
            Ok(Ok(())) => {}
            Ok(Err(e)) => {
                tracing::warn!(service = %id, error = %e, "heartbeat not shared with the other nodes")
            }
            Err(_) => {
                tracing::warn!(service = %id, "heartbeat not shared with the other nodes in time")
            }
        }
    }

    /// A service's liveness record changed on the store: recorded (at registration or revival,
    /// on any node), the service is ACTIVE under the record's lease; deleted (its lease expired,
    /// nobody sent heartbeats), it is SUSPENDED, on every node at this same revision. The leader
    /// notifies both.
    pub fn apply_replicated_heartbeat(&self, change: &Replicated) {
        if !self.store.claim(change) {
            return;
        }
        let Ok(record) = change.decode::<SharedHeartbeat>() else {
            return;
        };
        let mut index = self.index.write();
        let Some(entry) = index.services.get_mut(&change.key) else {
            return;
        };
        let Some(liveness) = entry.liveness else {
            return;
        };
        let updated = match record {
            Some(record) => Liveness {
                last_heartbeat: liveness.last_heartbeat.max(record.at()),
                suspended: false,
                lease: record.lease.or(liveness.lease),
                ..liveness
            },
            None if entry.service.state == ServiceState::Active => {
                tracing::info!(service = %change.key, "missed heartbeats: service SUSPENDED");
                Liveness {
                    suspended: true,
                    lease: None,
                    ..liveness
                }
            }
            None => return,
        };
        let rerender = updated.suspended != liveness.suspended;
        entry.liveness = Some(updated);
        if rerender {
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
    shared: bool,
    heartbeats: HashMap<String, SharedHeartbeat>,
    notified: HashMap<String, bool>,
}

impl SharedLiveness {
    /// The shared records; none on a single node.
    pub(super) fn load(store: &Store) -> Result<Self, StoreError> {
        let mut shared = Self::default();
        if !store.is_shared() {
            return Ok(shared);
        }
        shared.shared = true;
        for (key, value) in store.load(Table::Liveness)? {
            if let Ok(record) = serde_json::from_slice::<SharedHeartbeat>(&value) {
                shared.heartbeats.insert(key, record);
            }
        }
        for (key, value) in store.load(Table::NotifiedLiveness)? {
            if let Ok(record) = serde_json::from_slice::<NotifiedLiveness>(&value) {
                shared.notified.insert(key, record.suspended);
            }
        }
        Ok(shared)
    }

    /// The liveness of service `id` at start. On a single node the timer starts now. On a
    /// shared store: ACTIVE under its lease while its liveness record exists, SUSPENDED when
    /// the record is gone (its lease expired), and what the leader notified of it.
    pub(super) fn take(&mut self, id: &str, now: SystemTime) -> Liveness {
        if !self.shared {
            return Liveness::fresh(now);
        }
        let record = self.heartbeats.remove(id);
        Liveness {
            last_heartbeat: record.as_ref().map_or(now, |r| r.at().min(now)),
            suspended: record.is_none(),
            notified_suspended: self.notified.remove(id),
            lease: record.and_then(|r| r.lease),
        }
    }
}

/// How long a heartbeat waits for the store before it is answered anyway.
const SHARE_WITHIN: Duration = Duration::from_millis(500);

/// A service's liveness record on a store shared by several nodes: it lives by the service's
/// lease.
#[derive(Debug, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "camelCase")]
struct SharedHeartbeat {
    /// When the lease was granted (registration or revival), Unix milliseconds.
    at_ms: u64,
    /// The lease heartbeats renew.
    #[serde(default)]
    lease: Option<i64>,
}

impl SharedHeartbeat {
    fn write(id: &str, at: SystemTime, lease: i64) -> Result<Write, RegistryError> {
        let record = SharedHeartbeat {
            at_ms: at
                .duration_since(UNIX_EPOCH)
                .map_or(0, |d| d.as_millis() as u64),
            lease: Some(lease),
        };
        Ok(Write::PutLeased {
            table: Table::Liveness,
            key: id.to_owned(),
            value: serde_json::to_vec(&record)
                .map_err(|e| RegistryError::Encoding(e.to_string()))?,
            lease,
        })
    }

    fn at(&self) -> SystemTime {
        UNIX_EPOCH + Duration::from_millis(self.at_ms)
    }
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

/// Checks liveness every `period` until `shutdown` fires; on a store shared by several nodes,
/// where the store's leases expire the services, the leader notifies the changes instead.
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
                // Nodes sharing a store suspend when the store deletes a liveness record.
                if !registry.store.is_shared() {
                    registry.sweep_liveness(registry.clock.now());
                } else if leadership.is_leader() {
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
