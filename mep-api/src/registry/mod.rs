//! The service registry: registered MEC services and service availability subscriptions.
//!
//! State lives in memory (an index kept in step with the store) so that reads never touch disk.
//! Every change follows one order: check against memory, commit to the store, then apply to memory
//! and emit notifications. Changes are serialized per application instance by striped async locks,
//! so checks and commits of one app never interleave while different apps proceed in parallel and
//! share group commits.

mod capabilities;
mod discovery;
mod liveness;
mod replication;
mod services;
mod subscriptions;

pub use capabilities::PlatformCapability;
pub use discovery::{DiscoveryQuery, Selector};
pub use liveness::{run_liveness_sweeper, LivenessPolicy};

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::hash::{DefaultHasher, Hash, Hasher};
use std::sync::Arc;
use std::time::SystemTime;

use bytes::Bytes;
use parking_lot::RwLock;

use crate::clock::Clock;
use crate::etag::etag_of;
pub(crate) use crate::etag::if_match_holds;
use crate::links::Links;
use crate::model::common::{LinkType, ServiceState};
use crate::model::ids::AppInstanceId;
use crate::model::service::{Service, ServiceInfoView, ServiceLinks, TransportInfo};
use crate::model::subscription::{
    ChangeType, NotificationLinks, SerAvailabilitySubscription, ServiceAvailabilityNotification,
    ServiceFacts, ServiceReference, SER_AVAILABILITY_NOTIFICATION_TYPE,
};
use crate::notify::{json_body, Notifier, Outbox, Outgoing};
use crate::store::{Store, StoreError, Table, Write};

/// Why a registry operation was refused.
#[derive(Debug, thiserror::Error)]
pub enum RegistryError {
    #[error("{0}")]
    Invalid(String),
    #[error("service {0} not found")]
    ServiceNotFound(String),
    #[error("subscription {0} not found")]
    SubscriptionNotFound(String),
    #[error("service {service} belongs to another application instance")]
    NotOwner { service: String },
    #[error("If-Match does not match the current ETag of the resource")]
    PreconditionFailed,
    #[error("{0}")]
    Quota(String),
    #[error("the store failed: {0}")]
    Store(#[from] StoreError),
    #[error("cannot encode a record for the store: {0}")]
    Encoding(String),
}

/// Per-application limits.
#[derive(Debug, Clone)]
pub struct Limits {
    pub services_per_app: usize,
    pub subscriptions_per_app: usize,
}

/// A resource representation rendered once per change: reads hand out the bytes as they are.
#[derive(Debug, Clone)]
pub struct Rendered {
    pub json: Bytes,
    pub etag: String,
}

impl Rendered {
    pub(crate) fn of(json: Vec<u8>) -> Self {
        Self {
            etag: etag_of(&json),
            json: Bytes::from(json),
        }
    }
}

/// Heartbeat bookkeeping of a service with `livenessInterval > 0`. A single node keeps it in
/// memory only (a restart starts every timer afresh); nodes sharing a store share the last
/// heartbeat and what the leader last notified.
#[derive(Debug, Clone, Copy)]
struct Liveness {
    last_heartbeat: SystemTime,
    suspended: bool,
    /// On a store shared by several nodes: whether the leader last notified the service
    /// SUSPENDED (`None`: it never notified a liveness change of it). The leader notifies
    /// wherever this differs from `suspended`.
    notified_suspended: Option<bool>,
    /// On a store shared by several nodes: the store lease the service's liveness record lives
    /// by. Heartbeats renew it; when it expires the store deletes the record and every node
    /// suspends the service at that revision.
    lease: Option<i64>,
}

impl Liveness {
    fn fresh(now: SystemTime) -> Self {
        Self {
            last_heartbeat: now,
            suspended: false,
            notified_suspended: None,
            lease: None,
        }
    }
}

struct Entry {
    service: Service,
    liveness: Option<Liveness>,
    rendered: Rendered,
}

impl Entry {
    fn effective_state(&self) -> ServiceState {
        match self.liveness {
            Some(Liveness {
                suspended: true, ..
            }) => ServiceState::Suspended,
            _ => self.service.state,
        }
    }

    fn facts(&self) -> ServiceFacts<'_> {
        ServiceFacts {
            ser_instance_id: &self.service.ser_instance_id,
            ser_name: &self.service.ser_name,
            ser_category: self.service.ser_category.as_ref(),
            state: self.effective_state(),
            is_local: self.service.is_local,
        }
    }
}

#[derive(Default)]
struct Index {
    /// Ordered by id, so that listings are stable across restarts.
    services: BTreeMap<String, Entry>,
    by_name: HashMap<String, BTreeSet<String>>,
    by_app: HashMap<AppInstanceId, BTreeSet<String>>,
    subscriptions: BTreeMap<String, SerAvailabilitySubscription>,
}

impl Index {
    fn insert(&mut self, entry: Entry) {
        let id = entry.service.ser_instance_id.clone();
        self.by_name
            .entry(entry.service.ser_name.clone())
            .or_default()
            .insert(id.clone());
        self.by_app
            .entry(entry.service.owner.clone())
            .or_default()
            .insert(id.clone());
        self.services.insert(id, entry);
    }

    fn remove(&mut self, id: &str) -> Option<Entry> {
        let entry = self.services.remove(id)?;
        if let Some(ids) = self.by_name.get_mut(&entry.service.ser_name) {
            ids.remove(id);
            if ids.is_empty() {
                self.by_name.remove(&entry.service.ser_name);
            }
        }
        if let Some(ids) = self.by_app.get_mut(&entry.service.owner) {
            ids.remove(id);
            if ids.is_empty() {
                self.by_app.remove(&entry.service.owner);
            }
        }
        Some(entry)
    }
}

/// Number of striped per-app locks.
const APP_LOCK_STRIPES: usize = 64;

/// Counts for metrics.
#[derive(Debug, Clone, Copy)]
pub struct RegistryCounts {
    pub services: usize,
    pub subscriptions: usize,
}

/// The registry. Share it in an `Arc`.
pub struct Registry {
    index: RwLock<Index>,
    store: Store,
    clock: Arc<dyn Clock>,
    links: Links,
    notifier: Notifier,
    limits: Limits,
    liveness: LivenessPolicy,
    transports: Vec<TransportInfo>,
    app_locks: Vec<tokio::sync::Mutex<()>>,
}

/// What the registry is built from.
pub struct RegistryParts {
    pub store: Store,
    pub clock: Arc<dyn Clock>,
    pub links: Links,
    pub notifier: Notifier,
    pub limits: Limits,
    pub liveness: LivenessPolicy,
    pub transports: Vec<TransportInfo>,
}

impl Registry {
    /// Builds the registry from what the store holds. Liveness timers start now, or on a store
    /// shared by several nodes at the last heartbeat any node took.
    pub fn load(parts: RegistryParts) -> Result<Self, RegistryError> {
        let registry = Registry {
            index: RwLock::new(Index::default()),
            store: parts.store,
            clock: parts.clock,
            links: parts.links,
            notifier: parts.notifier,
            limits: parts.limits,
            liveness: parts.liveness,
            transports: parts.transports,
            app_locks: (0..APP_LOCK_STRIPES)
                .map(|_| tokio::sync::Mutex::new(()))
                .collect(),
        };
        let now = registry.clock.now();
        let mut index = Index::default();
        let mut shared = liveness::SharedLiveness::load(&registry.store)?;
        for (key, value) in registry.store.load(Table::Services)? {
            match serde_json::from_slice::<Service>(&value) {
                Ok(service) => {
                    let liveness = (service.liveness_interval > 0)
                        .then(|| shared.take(&service.ser_instance_id, now));
                    let rendered = registry.render(&service, liveness);
                    index.insert(Entry {
                        service,
                        liveness,
                        rendered,
                    });
                }
                Err(e) => tracing::error!(key, error = %e, "skipping unreadable service record"),
            }
        }
        for (key, value) in registry.store.load(Table::SerAvailabilitySubscriptions)? {
            match serde_json::from_slice::<SerAvailabilitySubscription>(&value) {
                Ok(sub) => {
                    index.subscriptions.insert(sub.id.clone(), sub);
                }
                Err(e) => {
                    tracing::error!(key, error = %e, "skipping unreadable subscription record")
                }
            }
        }
        *registry.index.write() = index;
        Ok(registry)
    }

    /// The transports the platform offers (`GET /transports`).
    pub fn transports(&self) -> &[TransportInfo] {
        &self.transports
    }

    pub fn links(&self) -> &Links {
        &self.links
    }

    pub fn counts(&self) -> RegistryCounts {
        let index = self.index.read();
        RegistryCounts {
            services: index.services.len(),
            subscriptions: index.subscriptions.len(),
        }
    }

    /// Whether `app` registered a service or a service availability subscription.
    pub fn holds_anything_of(&self, app: &AppInstanceId) -> bool {
        let index = self.index.read();
        index.by_app.contains_key(app) || index.subscriptions.values().any(|s| s.app == *app)
    }

    /// Serializes changes of one application instance.
    async fn lock_app(&self, app: &AppInstanceId) -> tokio::sync::MutexGuard<'_, ()> {
        let mut h = DefaultHasher::new();
        app.hash(&mut h);
        self.app_locks[(h.finish() as usize) % APP_LOCK_STRIPES]
            .lock()
            .await
    }

    fn render(&self, service: &Service, liveness: Option<Liveness>) -> Rendered {
        let owner = service.owner.as_str();
        let id = service.ser_instance_id.as_str();
        let state = match liveness {
            Some(Liveness {
                suspended: true, ..
            }) => ServiceState::Suspended,
            _ => service.state,
        };
        let view = ServiceInfoView {
            ser_instance_id: id,
            ser_name: &service.ser_name,
            ser_category: service.ser_category.as_ref(),
            version: &service.version,
            state,
            transport_info: &service.transport_info,
            serializer: service.serializer,
            scope_of_locality: service.scope_of_locality,
            consumed_local_only: service.consumed_local_only,
            is_local: service.is_local,
            liveness_interval: (service.liveness_interval > 0).then_some(service.liveness_interval),
            links: ServiceLinks {
                self_link: LinkType::new(self.links.app_service(owner, id)),
                liveness: (service.liveness_interval > 0)
                    .then(|| LinkType::new(self.links.liveness(owner, id))),
            },
        };
        Rendered::of(serde_json::to_vec(&view).unwrap_or_default())
    }

    /// The service availability notifications of a change of `entry`, one per subscription
    /// whose filter matches.
    fn notifications(&self, index: &Index, entry: &Entry, change: ChangeType) -> Vec<Outgoing> {
        let facts = entry.facts();
        let reference = [ServiceReference {
            link: (change != ChangeType::Removed).then(|| {
                LinkType::new(
                    self.links
                        .app_service(entry.service.owner.as_str(), facts.ser_instance_id),
                )
            }),
            ser_name: facts.ser_name.to_owned(),
            ser_instance_id: facts.ser_instance_id.to_owned(),
            state: facts.state,
            change_type: change,
        }];
        let mut out = Vec::new();
        let mut scratch = Vec::new();
        for sub in index.subscriptions.values() {
            if !sub.filtering_criteria.matches(&facts) {
                continue;
            }
            let notification = ServiceAvailabilityNotification {
                notification_type: SER_AVAILABILITY_NOTIFICATION_TYPE,
                service_references: &reference,
                links: NotificationLinks {
                    subscription: LinkType::new(
                        self.links.ser_subscription(sub.app.as_str(), &sub.id),
                    ),
                },
            };
            match json_body(&notification, &mut scratch) {
                Ok(body) => out.push(Outgoing {
                    subscription: sub.id.clone(),
                    callback: sub.callback_reference.clone(),
                    body,
                }),
                Err(e) => tracing::error!(error = %e, "cannot serialize notification"),
            }
        }
        out
    }

    /// On a single node, sends the notifications of a change just applied. Called with the
    /// index lock held so that notifications of one service leave in order. Nodes sharing a
    /// store committed them to the outbox with the change instead ([`Registry::outbox`]).
    fn emit(&self, index: &Index, entry: &Entry, change: ChangeType) {
        if self.store.is_shared() {
            return;
        }
        for n in self.notifications(index, entry, change) {
            self.notifier.deliver(&n.subscription, &n.callback, n.body);
        }
    }

    /// On a store shared by several nodes, the outbox writes of a change about to be
    /// committed (see `notify::Outbox`); nothing on a single node.
    fn outbox(&self, index: &Index, entry: &Entry, change: ChangeType) -> Vec<Write> {
        if !self.store.is_shared() {
            return Vec::new();
        }
        self.notifications(index, entry, change)
            .iter()
            .map(Outbox::write)
            .collect()
    }
}
