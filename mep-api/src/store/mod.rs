//! The store: every durable record of mep, in tables of JSON documents keyed by id.
//!
//! Two backends: an embedded redb file (the default, one host) and an etcd cluster (several mep
//! nodes acting as one platform). Reads of live state never come here: the control plane keeps
//! in-memory indexes, built with [`Store::load`] at start and, on etcd, kept in step with the
//! other nodes' commits by [`Store::take_changes`] (see `app::replication`).
//!
//! A commit may carry [`Check`]s: preconditions that must hold in the store itself when the
//! writes apply, so that two nodes cannot both win a create or an `If-Match` update.

#[cfg(feature = "etcd")]
pub mod etcd;
mod leadership;
mod redb;

pub use leadership::Leadership;

use std::path::{Path, PathBuf};

/// The tables of the store. Keys are ids; values are JSON documents owned by the module that writes them.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Table {
    /// Platform facts fixed at first start (such as the id of the platform's transport).
    Meta,
    Services,
    SerAvailabilitySubscriptions,
    /// Committed rule configuration per application instance.
    AppConfigs,
    /// Rule-change tasks (the journal of interrupted ones, the results of finished ones).
    Tasks,
    TerminationSubscriptions,
    Readiness,
    Registrations,
    /// Application credentials provisioned over Mm5 (secret keys sealed, see `auth::secrets`).
    AppCredentials,
    /// The last heartbeat of each service with a liveness interval, on stores shared by several
    /// nodes (a single node keeps heartbeats in memory only).
    Liveness,
    /// Notifications committed with the change they tell of, waiting for the leader to send
    /// them (stores shared by several nodes; see `notify::Outbox`).
    Outbox,
    /// Per service with a liveness interval, whether the leader last notified it SUSPENDED
    /// (stores shared by several nodes), so that a new leader notifies what its predecessor
    /// did not.
    NotifiedLiveness,
    /// Terminations in progress and whether the application confirmed (stores shared by
    /// several nodes: the application may confirm on another node than the one terminating).
    Terminations,
    /// Signed token requests already used, until their window ends (stores shared by several
    /// nodes; each record lives by a lease).
    SignedRequests,
    /// Token request locks set by one node, for every node to apply (stores shared by several
    /// nodes; each record lives by a lease for the lock's duration).
    Lockouts,
}

impl Table {
    pub const ALL: [Table; 15] = [
        Table::Meta,
        Table::Services,
        Table::SerAvailabilitySubscriptions,
        Table::AppConfigs,
        Table::Tasks,
        Table::TerminationSubscriptions,
        Table::Readiness,
        Table::Registrations,
        Table::AppCredentials,
        Table::Liveness,
        Table::Outbox,
        Table::NotifiedLiveness,
        Table::Terminations,
        Table::SignedRequests,
        Table::Lockouts,
    ];

    /// The table's name: a redb table, and a path segment of the etcd keys.
    pub const fn name(self) -> &'static str {
        match self {
            Table::Meta => "meta",
            Table::Services => "services",
            Table::SerAvailabilitySubscriptions => "ser_availability_subscriptions",
            Table::AppConfigs => "app_configs",
            Table::Tasks => "tasks",
            Table::TerminationSubscriptions => "termination_subscriptions",
            Table::Readiness => "readiness",
            Table::Registrations => "registrations",
            Table::AppCredentials => "app_credentials",
            Table::Liveness => "liveness",
            Table::Outbox => "outbox",
            Table::NotifiedLiveness => "notified_liveness",
            Table::Terminations => "terminations",
            Table::SignedRequests => "signed_requests",
            Table::Lockouts => "lockouts",
        }
    }

    pub fn from_name(name: &str) -> Option<Table> {
        Table::ALL.into_iter().find(|t| t.name() == name)
    }
}

/// One change to the store.
#[derive(Debug, Clone)]
pub enum Write {
    Put {
        table: Table,
        key: String,
        value: Vec<u8>,
    },
    Delete {
        table: Table,
        key: String,
    },
    /// A put that lives as long as a lease of the store (see [`Store::grant_lease`]): when
    /// nobody renews the lease, the store deletes the record, and every node sees the delete.
    PutLeased {
        table: Table,
        key: String,
        value: Vec<u8>,
        lease: i64,
    },
}

impl Write {
    pub fn target(&self) -> (Table, &str) {
        match self {
            Write::Put { table, key, .. }
            | Write::PutLeased { table, key, .. }
            | Write::Delete { table, key } => (*table, key),
        }
    }

    /// The value written; `None` for a delete.
    pub fn value(&self) -> Option<&[u8]> {
        match self {
            Write::Put { value, .. } | Write::PutLeased { value, .. } => Some(value),
            Write::Delete { .. } => None,
        }
    }
}

/// A precondition of a commit, checked by the store when the writes apply.
#[derive(Debug, Clone)]
pub enum Check {
    /// The key holds nothing (a create).
    Absent { table: Table, key: String },
    /// The key holds exactly `value` (what this node last saw: an update from a stale view fails).
    Holds {
        table: Table,
        key: String,
        value: Vec<u8>,
    },
}

impl Check {
    pub fn target(&self) -> (Table, &str) {
        match self {
            Check::Absent { table, key } | Check::Holds { table, key, .. } => (*table, key),
        }
    }
}

/// A change another node committed, in commit order (see [`Store::take_changes`]).
#[derive(Debug, Clone)]
pub struct Replicated {
    pub table: Table,
    pub key: String,
    /// The new value; `None` for a delete.
    pub value: Option<Vec<u8>>,
    /// The store's revision of this change; changes of one key come in increasing revisions.
    pub revision: i64,
}

/// A replicated value that does not decode (logged where it was found).
#[derive(Debug)]
pub struct Undecodable;

impl Replicated {
    /// The new value as a `T` (`None` for a delete); an undecodable value is logged and skipped.
    pub fn decode<T: serde::de::DeserializeOwned>(&self) -> Result<Option<T>, Undecodable> {
        match self.value.as_deref().map(serde_json::from_slice::<T>) {
            Some(Ok(v)) => Ok(Some(v)),
            None => Ok(None),
            Some(Err(e)) => {
                tracing::error!(table = self.table.name(), key = self.key, error = %e, "skipping an unreadable replicated record");
                Err(Undecodable)
            }
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("cannot create data directory {path}: {source}")]
    DataDir {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("embedded store: {0}")]
    Redb(Box<::redb::Error>),
    #[error("the store writer has stopped")]
    WriterGone,
    /// A [`Check`] did not hold: another writer changed the record first.
    #[error("the record was changed concurrently (by this or another mep node)")]
    Conflict,
    /// The store cannot take writes now (etcd unreachable or without quorum); reads go on from
    /// memory and writes succeed again once it is back.
    #[error("the store is unavailable: {0}")]
    Unavailable(String),
    #[error("the store's configuration is invalid: {0}")]
    Config(String),
}

/// Handle to the store. Cheap to clone.
#[derive(Clone)]
pub struct Store {
    backend: Backend,
}

#[derive(Clone)]
enum Backend {
    Redb(redb::RedbStore),
    #[cfg(feature = "etcd")]
    Etcd(std::sync::Arc<etcd::EtcdStore>),
}

impl Store {
    /// Opens (or creates) the embedded store `mep.redb` in `data_dir`.
    pub fn open(data_dir: &Path) -> Result<Self, StoreError> {
        Ok(Self {
            backend: Backend::Redb(redb::RedbStore::open(data_dir)?),
        })
    }

    /// Connects to etcd and lists everything under the prefix (what [`Store::load`] answers).
    #[cfg(feature = "etcd")]
    pub async fn open_etcd(config: etcd::EtcdConfig) -> Result<Self, StoreError> {
        Ok(Self {
            backend: Backend::Etcd(etcd::EtcdStore::open(config).await?),
        })
    }

    /// Applies `writes` atomically and returns once they are durable.
    pub async fn commit(&self, writes: Vec<Write>) -> Result<(), StoreError> {
        self.commit_checked(Vec::new(), writes).await
    }

    /// Applies `writes` atomically if every check holds (else [`StoreError::Conflict`]).
    pub async fn commit_checked(
        &self,
        checks: Vec<Check>,
        writes: Vec<Write>,
    ) -> Result<(), StoreError> {
        match &self.backend {
            Backend::Redb(s) => s.commit(checks, writes, true).await,
            #[cfg(feature = "etcd")]
            Backend::Etcd(s) => s.commit(checks, writes).await,
        }
    }

    /// Applies `writes` atomically without waiting for the disk: they survive a process crash
    /// only once a later durable commit is done, and a power loss may take them. For records
    /// whose loss costs nothing but a report (the journal entry of a task about to commit).
    /// On etcd every commit is durable.
    pub async fn commit_volatile(&self, writes: Vec<Write>) -> Result<(), StoreError> {
        match &self.backend {
            Backend::Redb(s) => s.commit(Vec::new(), writes, false).await,
            #[cfg(feature = "etcd")]
            Backend::Etcd(s) => s.commit(Vec::new(), writes).await,
        }
    }

    /// Every `(key, value)` of a table, in key order: what the store held when it was opened
    /// (on etcd, the list the node's replication continues from). Used to build the in-memory
    /// indexes at start.
    pub fn load(&self, table: Table) -> Result<Vec<(String, Vec<u8>)>, StoreError> {
        match &self.backend {
            Backend::Redb(s) => s.load(table),
            #[cfg(feature = "etcd")]
            Backend::Etcd(s) => Ok(s.loaded(table)),
        }
    }

    /// One record as the store holds it now (not as it was at open).
    pub async fn get(&self, table: Table, key: &str) -> Result<Option<Vec<u8>>, StoreError> {
        match &self.backend {
            Backend::Redb(s) => s.get(table, key),
            #[cfg(feature = "etcd")]
            Backend::Etcd(s) => s.get(table, key).await,
        }
    }

    /// Every record of `table` as the store holds it now, oldest change first (on etcd, with
    /// the revision of each record's last change).
    pub async fn list_now(&self, table: Table) -> Result<Vec<Replicated>, StoreError> {
        match &self.backend {
            Backend::Redb(s) => Ok(s
                .load(table)?
                .into_iter()
                .map(|(key, value)| Replicated {
                    table,
                    key,
                    value: Some(value),
                    revision: 0,
                })
                .collect()),
            #[cfg(feature = "etcd")]
            Backend::Etcd(s) => s.list_table(table).await,
        }
    }

    /// A lease of `ttl` (whole seconds, rounded up) for [`Write::PutLeased`] records; only
    /// stores shared by several nodes have leases.
    // Only the etcd backend, a cargo feature, reads the argument.
    #[cfg_attr(not(feature = "etcd"), allow(unused_variables))]
    pub async fn grant_lease(&self, ttl: std::time::Duration) -> Result<i64, StoreError> {
        match &self.backend {
            Backend::Redb(_) => Err(StoreError::Config(
                "the embedded store has no leases".into(),
            )),
            #[cfg(feature = "etcd")]
            Backend::Etcd(s) => s.grant_lease(ttl).await,
        }
    }

    /// Renews `lease` for its whole time to live; `Ok(false)` when it expired (its records
    /// are gone).
    // Only the etcd backend, a cargo feature, reads the argument.
    #[cfg_attr(not(feature = "etcd"), allow(unused_variables))]
    pub async fn renew_lease(&self, lease: i64) -> Result<bool, StoreError> {
        match &self.backend {
            Backend::Redb(_) => Err(StoreError::Config(
                "the embedded store has no leases".into(),
            )),
            #[cfg(feature = "etcd")]
            Backend::Etcd(s) => s.renew(lease).await,
        }
    }

    /// Starts this node's campaign to lead the nodes sharing the store (the leader sends the
    /// site's notifications); a store of one node leads at once.
    pub fn campaign(&self) -> Leadership {
        match &self.backend {
            Backend::Redb(_) => Leadership::always(),
            #[cfg(feature = "etcd")]
            Backend::Etcd(s) => {
                let leadership = Leadership::follower();
                s.start_campaign(leadership.clone());
                leadership
            }
        }
    }

    /// The stream of other nodes' commits, from right after what [`Store::load`] answered;
    /// `None` for a store of one node (redb), or once taken.
    pub fn take_changes(&self) -> Option<tokio::sync::mpsc::Receiver<Replicated>> {
        match &self.backend {
            Backend::Redb(_) => None,
            #[cfg(feature = "etcd")]
            Backend::Etcd(s) => s.take_changes(),
        }
    }

    /// Whether a replicated change is newer than what this node applied for its key, recording
    /// it if so. Callers hold the lock their own writes of that record hold from check to
    /// memory update, so a node's own commit and the watch's copy of it apply once, and an
    /// older change never overwrites a newer one.
    pub fn claim(&self, change: &Replicated) -> bool {
        match &self.backend {
            Backend::Redb(_) => {
                let _ = change;
                true
            }
            #[cfg(feature = "etcd")]
            Backend::Etcd(s) => s.claim(change),
        }
    }

    /// Whether other nodes share this store (their commits reach this node as replicated
    /// changes, and records they may change concurrently need checked commits).
    pub fn is_shared(&self) -> bool {
        self.node_id().is_some()
    }

    /// This node's id among the nodes sharing the store; `None` for a store of one node.
    pub fn node_id(&self) -> Option<&str> {
        match &self.backend {
            Backend::Redb(_) => None,
            #[cfg(feature = "etcd")]
            Backend::Etcd(s) => Some(s.node_id()),
        }
    }

    /// The newest store revision this node has applied (0 for redb).
    pub fn applied_revision(&self) -> i64 {
        match &self.backend {
            Backend::Redb(_) => 0,
            #[cfg(feature = "etcd")]
            Backend::Etcd(s) => s.applied_revision(),
        }
    }

    /// The backend's name, for logs and metrics.
    pub fn kind(&self) -> &'static str {
        match &self.backend {
            Backend::Redb(_) => "redb",
            #[cfg(feature = "etcd")]
            Backend::Etcd(_) => "etcd",
        }
    }

    /// Drops this handle and waits until the store is closed, which happens once every other
    /// handle is gone too. Lets a process reopen the same data directory (a restart in tests).
    pub async fn close(self) {
        match self.backend {
            Backend::Redb(s) => s.close().await,
            #[cfg(feature = "etcd")]
            Backend::Etcd(s) => s.close().await,
        }
    }

    /// Size of the store file in bytes (0 for etcd).
    pub fn file_size(&self) -> u64 {
        match &self.backend {
            Backend::Redb(s) => s.file_size(),
            #[cfg(feature = "etcd")]
            Backend::Etcd(_) => 0,
        }
    }
}
