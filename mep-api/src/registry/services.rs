//! Registration, update, deregistration and discovery of MEC services.

use std::time::SystemTime;

use bytes::{BufMut, Bytes, BytesMut};

use super::{if_match_holds, Entry, Liveness, Registry, RegistryError, Rendered};
use crate::model::common::ServiceState;
use crate::model::ids::{new_id, AppInstanceId};
use crate::model::service::{Service, ServiceSpec, TransportChoice, TransportInfo};
use crate::model::subscription::ChangeType;
use crate::registry::discovery::{DiscoveryQuery, Selector};
use crate::store::{Check, Table, Write};

impl Registry {
    fn resolve_transport(&self, choice: TransportChoice) -> Result<TransportInfo, RegistryError> {
        match choice {
            TransportChoice::Own(info) => Ok(*info),
            TransportChoice::Platform(id) => self
                .transports
                .iter()
                .find(|t| t.id == id)
                .cloned()
                .ok_or_else(|| {
                    RegistryError::Invalid(format!(
                        "transportId {id} is not a transport of this platform (see GET /transports)"
                    ))
                }),
        }
    }

    fn build_service(
        &self,
        id: String,
        owner: AppInstanceId,
        spec: ServiceSpec,
    ) -> Result<Service, RegistryError> {
        Ok(Service {
            ser_instance_id: id,
            owner,
            transport_info: self.resolve_transport(spec.transport)?,
            ser_name: spec.ser_name,
            ser_category: spec.ser_category,
            version: spec.version,
            state: spec.state,
            serializer: spec.serializer,
            scope_of_locality: spec.scope_of_locality,
            consumed_local_only: spec.consumed_local_only,
            is_local: true,
            liveness_interval: self.liveness.choose_interval(spec.liveness_interval),
        })
    }

    fn put_service(service: &Service) -> Result<Write, RegistryError> {
        Ok(Write::Put {
            table: Table::Services,
            key: service.ser_instance_id.clone(),
            value: serde_json::to_vec(service)
                .map_err(|e| RegistryError::Encoding(e.to_string()))?,
        })
    }

    /// Registers a new service of `app`; answers its id and representation.
    pub async fn register(
        &self,
        app: AppInstanceId,
        spec: ServiceSpec,
    ) -> Result<(String, Rendered), RegistryError> {
        let service = self.build_service(new_id(), app.clone(), spec)?;
        let _serial = self.lock_app(&app).await;
        let owned = self.index.read().by_app.get(&app).map_or(0, |s| s.len());
        if owned >= self.limits.services_per_app {
            return Err(RegistryError::Quota(format!(
                "application instance {app} already has {owned} services, the limit"
            )));
        }
        let now = self.clock.now();
        let (lease, liveness_writes) = self.leased_liveness(&service, now).await?;
        let liveness = (service.liveness_interval > 0).then(|| Liveness {
            lease,
            ..Liveness::fresh(now)
        });
        let rendered = self.render(&service, liveness);
        let entry = Entry {
            service,
            liveness,
            rendered: rendered.clone(),
        };
        let mut writes = vec![Self::put_service(&entry.service)?];
        writes.extend(liveness_writes);
        writes.extend(self.outbox(&self.index.read(), &entry, ChangeType::Added));
        // A create: on a shared store no other node may hold the id (ids are random; this
        // makes it a guarantee).
        let checks = if self.store.is_shared() {
            vec![Check::Absent {
                table: Table::Services,
                key: entry.service.ser_instance_id.clone(),
            }]
        } else {
            Vec::new()
        };
        self.store.commit_checked(checks, writes).await?;
        let id = entry.service.ser_instance_id.clone();
        let mut index = self.index.write();
        self.emit(&index, &entry, ChangeType::Added);
        index.insert(entry);
        Ok((id, rendered))
    }

    /// One service by id, whoever owns it (`GET /services/{id}`).
    pub fn service(&self, id: &str) -> Result<Rendered, RegistryError> {
        self.index
            .read()
            .services
            .get(id)
            .map(|e| e.rendered.clone())
            .ok_or_else(|| RegistryError::ServiceNotFound(id.to_owned()))
    }

    /// One service of `app` (`GET /applications/{app}/services/{id}`).
    pub fn app_service(&self, app: &AppInstanceId, id: &str) -> Result<Rendered, RegistryError> {
        match self.index.read().services.get(id) {
            Some(e) if e.service.owner == *app => Ok(e.rendered.clone()),
            _ => Err(RegistryError::ServiceNotFound(id.to_owned())),
        }
    }

    /// Replaces a service of `app`. `if_match` is checked against the current ETag.
    pub async fn update(
        &self,
        app: &AppInstanceId,
        id: &str,
        spec: ServiceSpec,
        if_match: Option<&str>,
    ) -> Result<Rendered, RegistryError> {
        let new = self.build_service(id.to_owned(), app.clone(), spec)?;
        let _serial = self.lock_app(app).await;
        let (checks, outbox, old_interval) = {
            let index = self.index.read();
            let entry = self.owned_entry(&index, app, id)?;
            if !if_match_holds(if_match, &entry.rendered.etag) {
                return Err(RegistryError::PreconditionFailed);
            }
            if entry.service == new {
                return Ok(entry.rendered.clone());
            }
            // With If-Match on a store shared by several nodes, the store must still hold what
            // the ETag was computed from: another node may have changed it since this one heard.
            let checks = match if_match {
                Some(_) if self.store.is_shared() => vec![Check::Holds {
                    table: Table::Services,
                    key: id.to_owned(),
                    value: serde_json::to_vec(&entry.service)
                        .map_err(|e| RegistryError::Encoding(e.to_string()))?,
                }],
                _ => Vec::new(),
            };
            let outbox = if self.store.is_shared() {
                let (updated, change) = self.updated(entry, new.clone(), self.clock.now(), None);
                self.outbox(&index, &updated, change)
            } else {
                Vec::new()
            };
            (checks, outbox, entry.service.liveness_interval)
        };
        let mut writes = vec![Self::put_service(&new)?];
        writes.extend(outbox);
        // A new interval needs a lease of the new length (or none).
        let mut lease = None;
        if self.store.is_shared() && new.liveness_interval != old_interval {
            let (granted, liveness_writes) = self.leased_liveness(&new, self.clock.now()).await?;
            lease = granted;
            writes.extend(liveness_writes);
            if new.liveness_interval == 0 {
                writes.extend(self.removal(id).into_iter().skip(1));
            }
        }
        self.store
            .commit_checked(checks, writes)
            .await
            .map_err(|e| match e {
                crate::store::StoreError::Conflict => RegistryError::PreconditionFailed,
                other => other.into(),
            })?;
        let now = self.clock.now();
        let mut index = self.index.write();
        let Some(old) = index.remove(id) else {
            return Err(RegistryError::ServiceNotFound(id.to_owned()));
        };
        let (entry, change) = self.updated(&old, new, now, lease);
        let rendered = entry.rendered.clone();
        self.emit(&index, &entry, change);
        index.insert(entry);
        Ok(rendered)
    }

    /// The entry that replaces `old` with `new` at `now`, and the kind of change it is; `lease`
    /// is the one granted for a new liveness interval.
    fn updated(
        &self,
        old: &Entry,
        new: Service,
        now: SystemTime,
        lease: Option<i64>,
    ) -> (Entry, ChangeType) {
        let liveness = if new.liveness_interval == 0 {
            None
        } else if new.liveness_interval == old.service.liveness_interval {
            old.liveness
        } else {
            Some(Liveness {
                notified_suspended: old.liveness.and_then(|l| l.notified_suspended),
                lease,
                ..Liveness::fresh(now)
            })
        };
        let rendered = self.render(&new, liveness);
        let entry = Entry {
            service: new,
            liveness,
            rendered,
        };
        let change = if entry.effective_state() != old.effective_state() {
            ChangeType::StateChanged
        } else {
            ChangeType::AttributesChanged
        };
        (entry, change)
    }

    /// The deletes that deregister service `id`: its record, and on a store shared by several
    /// nodes its shared heartbeat.
    fn removal(&self, id: &str) -> Vec<Write> {
        let mut writes = vec![Write::Delete {
            table: Table::Services,
            key: id.to_owned(),
        }];
        if self.store.is_shared() {
            for table in [Table::Liveness, Table::NotifiedLiveness] {
                writes.push(Write::Delete {
                    table,
                    key: id.to_owned(),
                });
            }
        }
        writes
    }

    /// The deletes and outbox writes that deregister service `id`, which `index` holds.
    fn deregistration(&self, index: &super::Index, id: &str) -> Vec<Write> {
        let mut writes = self.removal(id);
        if let Some(entry) = index.services.get(id) {
            writes.extend(self.outbox(index, entry, ChangeType::Removed));
        }
        writes
    }

    /// Deregisters a service of `app`.
    pub async fn deregister(&self, app: &AppInstanceId, id: &str) -> Result<(), RegistryError> {
        let _serial = self.lock_app(app).await;
        let writes = {
            let index = self.index.read();
            self.owned_entry(&index, app, id)?;
            self.deregistration(&index, id)
        };
        self.store.commit(writes).await?;
        let mut index = self.index.write();
        if let Some(entry) = index.remove(id) {
            self.emit(&index, &entry, ChangeType::Removed);
        }
        Ok(())
    }

    /// Deregisters every service of `app` (app termination); answers how many.
    pub async fn deregister_all(&self, app: &AppInstanceId) -> Result<usize, RegistryError> {
        let _serial = self.lock_app(app).await;
        let ids: Vec<String> = self
            .index
            .read()
            .by_app
            .get(app)
            .map(|ids| ids.iter().cloned().collect())
            .unwrap_or_default();
        if ids.is_empty() {
            return Ok(0);
        }
        let writes = {
            let index = self.index.read();
            ids.iter()
                .flat_map(|id| self.deregistration(&index, id))
                .collect()
        };
        self.store.commit(writes).await?;
        let mut index = self.index.write();
        for id in &ids {
            if let Some(entry) = index.remove(id) {
                self.emit(&index, &entry, ChangeType::Removed);
            }
        }
        Ok(ids.len())
    }

    /// The entry `id`, which must belong to `app`: 404 when it does not exist, 403 when another
    /// application instance registered it.
    fn owned_entry<'i>(
        &self,
        index: &'i super::Index,
        app: &AppInstanceId,
        id: &str,
    ) -> Result<&'i Entry, RegistryError> {
        match index.services.get(id) {
            None => Err(RegistryError::ServiceNotFound(id.to_owned())),
            Some(e) if e.service.owner != *app => Err(RegistryError::NotOwner {
                service: id.to_owned(),
            }),
            Some(e) => Ok(e),
        }
    }

    /// Runs a discovery query and answers the JSON array of matching services. `app` restricts
    /// the result to that application's services (and then includes SUSPENDED ones, which global
    /// discovery hides because their provider stopped sending heartbeats).
    pub fn discover(&self, query: &DiscoveryQuery, app: Option<&AppInstanceId>) -> Bytes {
        let index = self.index.read();
        let keep = |e: &Entry| {
            query.selector_matches(&e.service)
                && query.attributes_match(&e.service)
                && (app.is_some() || e.effective_state() != ServiceState::Suspended)
        };
        let mut out = BytesMut::with_capacity(1024);
        out.put_u8(b'[');
        let mut push = |e: &Entry| {
            if out.len() > 1 {
                out.put_u8(b',');
            }
            out.extend_from_slice(&e.rendered.json);
        };
        match (app, &query.selector) {
            (Some(app), _) => {
                for id in index.by_app.get(app).into_iter().flatten() {
                    if let Some(e) = index.services.get(id).filter(|e| keep(e)) {
                        push(e);
                    }
                }
            }
            (None, Selector::Names(names)) => {
                let mut ids: Vec<&String> = names
                    .iter()
                    .filter_map(|n| index.by_name.get(n))
                    .flatten()
                    .collect();
                if names.len() > 1 {
                    ids.sort();
                    ids.dedup();
                }
                for id in ids {
                    if let Some(e) = index.services.get(id).filter(|e| keep(e)) {
                        push(e);
                    }
                }
            }
            (None, Selector::InstanceIds(ids)) => {
                let mut ids: Vec<&String> = ids.iter().collect();
                ids.sort();
                ids.dedup();
                for id in ids {
                    if let Some(e) = index.services.get(id.as_str()).filter(|e| keep(e)) {
                        push(e);
                    }
                }
            }
            (None, _) => {
                for e in index.services.values().filter(|e| keep(e)) {
                    push(e);
                }
            }
        }
        out.put_u8(b']');
        out.freeze()
    }
}
