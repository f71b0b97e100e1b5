//! Application instances: their traffic and DNS rules (configured over Mm5, read and switched over
//! Mp1), the rule snapshot every reader uses, readiness, termination and v3 registrations.
//!
//! Every rule change runs as a task: the task is journalled, the data plane is called rule by rule,
//! and only when every call succeeded is the new configuration committed (with the task's result,
//! in one store transaction) and a new [`Snapshot`] published. On a data-plane failure what was
//! applied is reverted and the task records the reason. A task interrupted by a crash is found
//! PROCESSING at the next start, marked FAILURE, and the data plane is resynchronized from the last
//! committed state, so nothing is ever left half-applied or locked.

mod change;
pub(crate) mod registrations;
mod replication;
mod serial;
pub(crate) mod termination;

pub use change::{ChangeOutcome, RuleChangeError};
pub use registrations::AppRegistration;
pub use termination::{TerminationReport, TERMINATION_SUBSCRIPTION_TYPE};

use std::collections::{BTreeMap, HashMap};
use std::sync::atomic::AtomicU64;
use std::sync::Arc;
use std::time::Duration;

use mep_rules::{DataPlane, Snapshot, SnapshotPublisher, SnapshotReader};
use parking_lot::RwLock;
use serde::{Deserialize, Serialize};

use crate::clock::Clock;
use crate::links::Links;
use crate::model::appd::{AppDConfig, ConfigResult, TaskProgress};
use crate::model::ids::AppInstanceId;
use crate::notify::Notifier;
use crate::readiness::{Part, Readiness as PlatformReadiness};
use crate::registry::Registry;
use crate::store::{Leadership, Store, StoreError, Table};

/// Limits and timings of application support.
#[derive(Debug, Clone)]
pub struct AppsConfig {
    /// Traffic plus DNS rules one application instance may have.
    pub rules_per_app: usize,
    /// Termination subscriptions per application instance.
    pub subscriptions_per_app: usize,
    /// How long termination waits for `confirm_termination` (sent as `maxGracefulTimeout`).
    pub max_graceful_timeout: Duration,
    /// Finished task records kept for the platform manager to query.
    pub finished_tasks_kept: usize,
}

impl Default for AppsConfig {
    fn default() -> Self {
        Self {
            rules_per_app: 1000,
            subscriptions_per_app: 16,
            max_graceful_timeout: Duration::from_secs(10),
            finished_tasks_kept: 1024,
        }
    }
}

/// A task record as stored: what was asked, what it found, how it ended.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
struct TaskRecord {
    task_id: String,
    app_instance_id: AppInstanceId,
    /// Order of creation, to keep only the newest finished tasks.
    seq: u64,
    result: ConfigResult,
    /// The node that ran the task (stores shared by several nodes): only that node, restarted,
    /// may declare its PROCESSING tasks interrupted.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    node: Option<String>,
    /// Rule operations done of `total`.
    done: usize,
    total: usize,
    detail: String,
}

impl TaskRecord {
    fn progress(&self) -> TaskProgress {
        let phase = if self.result == ConfigResult::Success || self.total == 0 {
            if self.result == ConfigResult::Success {
                100
            } else {
                0
            }
        } else {
            self.done * 100 / self.total
        };
        TaskProgress {
            task_id: self.task_id.clone(),
            app_instance_id: self.app_instance_id.to_string(),
            config_result: self.result,
            config_phase: phase.to_string(),
            detailed: self.detail.clone(),
        }
    }
}

/// A termination subscription (`AppTerminationNotificationSubscription`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
struct TerminationSubscription {
    id: String,
    app: AppInstanceId,
    callback_reference: String,
}

/// When an application confirmed it is ready.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Readiness {
    pub seconds: u64,
    pub nano_seconds: u32,
}

#[derive(Default)]
struct AppsIndex {
    configs: HashMap<AppInstanceId, AppDConfig>,
    /// Which app instance's configuration holds each domain name (lookup form), so that the
    /// ownership check of a change costs that change's rules, not every app's.
    domain_owners: HashMap<String, AppInstanceId>,
    tasks: HashMap<String, TaskRecord>,
    subscriptions: BTreeMap<String, TerminationSubscription>,
    readiness: HashMap<AppInstanceId, Readiness>,
    registrations: HashMap<AppInstanceId, AppRegistration>,
}

/// Errors of application support outside rule changes.
#[derive(Debug, thiserror::Error)]
pub enum AppsError {
    #[error("{0}")]
    Invalid(String),
    #[error("{0}")]
    NotFound(String),
    #[error("{0}")]
    Conflict(String),
    #[error("{0}")]
    Quota(String),
    #[error("the store failed: {0}")]
    Store(#[from] StoreError),
    #[error("the task ended abnormally: {0}")]
    Interrupted(String),
    #[error("cannot encode a record for the store: {0}")]
    Encoding(String),
}

impl From<crate::registry::RegistryError> for AppsError {
    /// A registry failure inside an application-support operation (termination) is the
    /// platform's, never the caller's.
    fn from(e: crate::registry::RegistryError) -> Self {
        match e {
            crate::registry::RegistryError::Store(s) => AppsError::Store(s),
            other => AppsError::Interrupted(other.to_string()),
        }
    }
}

/// A record as the store keeps it (JSON); failing to encode one is an internal error.
pub(crate) fn encode<T: Serialize>(record: &T) -> Result<Vec<u8>, AppsError> {
    serde_json::to_vec(record).map_err(|e| AppsError::Encoding(e.to_string()))
}

/// What the application-support part of the control plane is built from.
pub struct AppsParts {
    pub store: Store,
    pub clock: Arc<dyn Clock>,
    pub links: Links,
    pub notifier: Notifier,
    pub dataplane: Arc<dyn DataPlane>,
    pub registry: Arc<Registry>,
    pub config: AppsConfig,
    /// Where the data plane's sync state is reported.
    pub readiness: Arc<PlatformReadiness>,
}

/// Application support state. Share it in an `Arc`.
pub struct Apps {
    index: RwLock<AppsIndex>,
    store: Store,
    clock: Arc<dyn Clock>,
    links: Links,
    notifier: Notifier,
    dataplane: Arc<dyn DataPlane>,
    registry: Arc<Registry>,
    config: AppsConfig,
    snapshot: SnapshotPublisher,
    /// Serializes publication (read the current snapshot, derive the next, store it), which costs
    /// what one change touches; also the source of snapshot versions.
    snapshot_version: parking_lot::Mutex<u64>,
    task_seq: AtomicU64,
    /// Changes of one app one at a time, of different apps side by side (see `serial`).
    changes: serial::Serials,
    terminations: termination::Terminations,
    readiness: Arc<PlatformReadiness>,
}

impl AppsIndex {
    /// Sets (`Some`) or removes (`None`) the configuration of `app`, with its domain names.
    fn set_config(&mut self, app: &AppInstanceId, config: Option<AppDConfig>) {
        if let Some(old) = self.configs.remove(app) {
            for rule in &old.app_dns_rule {
                let name = rule.lookup_key();
                if self.domain_owners.get(&name) == Some(app) {
                    self.domain_owners.remove(&name);
                }
            }
        }
        if let Some(config) = config {
            for rule in &config.app_dns_rule {
                self.domain_owners.insert(rule.lookup_key(), app.clone());
            }
            self.configs.insert(app.clone(), config);
        }
    }
}

fn decode<T: serde::de::DeserializeOwned>(table: &str, key: &str, value: &[u8]) -> Option<T> {
    match serde_json::from_slice(value) {
        Ok(v) => Some(v),
        Err(e) => {
            tracing::error!(table, key, error = %e, "skipping unreadable record");
            None
        }
    }
}

impl Apps {
    /// Loads the committed state, finishes interrupted tasks (as FAILURE: their changes were never
    /// committed) and publishes the first snapshot. The data plane is brought in line by
    /// [`Apps::sync_dataplane`].
    pub async fn load(parts: AppsParts) -> Result<Self, AppsError> {
        let mut index = AppsIndex::default();
        for (key, value) in parts.store.load(Table::AppConfigs)? {
            if let (Ok(app), Some(config)) = (
                AppInstanceId::parse(&key),
                decode::<AppDConfig>("app_configs", &key, &value),
            ) {
                index.set_config(&app, Some(config));
            }
        }
        let mut interrupted = Vec::new();
        let mut max_seq = 0;
        for (key, value) in parts.store.load(Table::Tasks)? {
            if let Some(mut task) = decode::<TaskRecord>("tasks", &key, &value) {
                max_seq = max_seq.max(task.seq);
                if task.result == ConfigResult::Processing
                    && task.node.as_deref() == parts.store.node_id()
                {
                    task.result = ConfigResult::Failure;
                    task.detail = "interrupted by a stop of mep before it finished; the configuration was rolled back to the last committed state".into();
                    interrupted.push(task.clone());
                }
                index.tasks.insert(task.task_id.clone(), task);
            }
        }
        for (key, value) in parts.store.load(Table::TerminationSubscriptions)? {
            if let Some(sub) =
                decode::<TerminationSubscription>("termination_subscriptions", &key, &value)
            {
                index.subscriptions.insert(sub.id.clone(), sub);
            }
        }
        let terminations = termination::Terminations::default();
        for (key, value) in parts.store.load(Table::Terminations)? {
            if let (Ok(app), Some(record)) = (
                AppInstanceId::parse(&key),
                decode::<termination::TerminationRecord>("terminations", &key, &value),
            ) {
                terminations.load(app, record);
            }
        }
        for (key, value) in parts.store.load(Table::Readiness)? {
            if let (Ok(app), Some(r)) = (
                AppInstanceId::parse(&key),
                decode::<Readiness>("readiness", &key, &value),
            ) {
                index.readiness.insert(app, r);
            }
        }
        for (key, value) in parts.store.load(Table::Registrations)? {
            if let (Ok(app), Some(r)) = (
                AppInstanceId::parse(&key),
                decode::<AppRegistration>("registrations", &key, &value),
            ) {
                index.registrations.insert(app, r);
            }
        }
        if !interrupted.is_empty() {
            tracing::warn!(
                tasks = interrupted.len(),
                "rolled back tasks interrupted by the last stop"
            );
            parts
                .store
                .commit(
                    interrupted
                        .iter()
                        .map(change::put_task)
                        .collect::<Result<_, _>>()
                        .map_err(|e| AppsError::Encoding(e.to_string()))?,
                )
                .await?;
        }
        let apps = Apps {
            index: RwLock::new(index),
            store: parts.store,
            clock: parts.clock,
            links: parts.links,
            notifier: parts.notifier,
            dataplane: parts.dataplane,
            registry: parts.registry,
            config: parts.config,
            snapshot: SnapshotPublisher::new(),
            snapshot_version: parking_lot::Mutex::new(0),
            task_seq: AtomicU64::new(max_seq),
            changes: serial::Serials::default(),
            terminations,
            readiness: parts.readiness,
        };
        apps.publish();
        Ok(apps)
    }

    /// Brings the data plane in line with the committed rules, retrying until it succeeds or
    /// `shutdown` fires. Rule changes wait meanwhile, so the data plane never misses one.
    ///
    /// A data plane the nodes of a site share is brought in line by the site's leader only,
    /// each time a node takes the lead (a new leader cannot know what its predecessor
    /// finished); the other nodes only apply their own changes to it.
    pub async fn sync_dataplane(
        &self,
        leadership: Leadership,
        shutdown: tokio_util::sync::CancellationToken,
    ) {
        if self.store.is_shared() && self.dataplane.shared_by_site() {
            self.readiness.set(Part::DataPlane, true);
            let mut leads = leadership.subscribe();
            loop {
                if *leads.borrow_and_update() {
                    self.init_dataplane(&shutdown).await;
                }
                tokio::select! {
                    _ = shutdown.cancelled() => return,
                    changed = leads.changed() => if changed.is_err() { return },
                }
            }
        }
        self.init_dataplane(&shutdown).await;
    }

    async fn init_dataplane(&self, shutdown: &tokio_util::sync::CancellationToken) {
        let mut wait = Duration::from_millis(500);
        loop {
            let result = {
                let _all = self.changes.everything().await;
                let snapshot = self.snapshot.current();
                self.dataplane.init(&snapshot).await
            };
            match result {
                Ok(()) => {
                    tracing::info!(kind = self.dataplane.kind(), "data plane in sync");
                    self.readiness.set(Part::DataPlane, true);
                    return;
                }
                Err(e) => {
                    tracing::error!(error = %e, retry_in = ?wait, "data plane initialisation failed")
                }
            }
            tokio::select! {
                _ = shutdown.cancelled() => return,
                _ = tokio::time::sleep(wait) => {}
            }
            wait = (wait * 2).min(Duration::from_secs(30));
        }
    }

    /// A reader of the newest rule snapshot.
    pub fn snapshots(&self) -> SnapshotReader {
        self.snapshot.reader()
    }

    pub fn links(&self) -> &Links {
        &self.links
    }

    pub fn dataplane(&self) -> &Arc<dyn DataPlane> {
        &self.dataplane
    }

    /// Builds a snapshot of every ACTIVE rule of every application and publishes it (at load).
    fn publish(&self) {
        let mut version = self.snapshot_version.lock();
        *version += 1;
        let snapshot = {
            let index = self.index.read();
            Snapshot::build(
                *version,
                index
                    .configs
                    .iter()
                    .flat_map(|(app, c)| c.app_traffic_rule.iter().map(move |r| (app.as_str(), r))),
                index
                    .configs
                    .iter()
                    .flat_map(|(app, c)| c.app_dns_rule.iter().map(move |r| (app.as_str(), r))),
            )
            .with_app_names(
                index
                    .configs
                    .iter()
                    .map(|(app, c)| (app.as_str(), c.app_name.as_str())),
            )
        };
        self.publish_snapshot(snapshot);
    }

    /// Publishes the current snapshot with `app`'s rules replaced by those the index holds now:
    /// the cost of the change, not of every rule.
    fn publish_app(&self, app: &AppInstanceId) {
        let mut version = self.snapshot_version.lock();
        *version += 1;
        let current = self.snapshot.current();
        let next = {
            let index = self.index.read();
            match index.configs.get(app) {
                Some(c) => current.with_app_rules(
                    *version,
                    app.as_str(),
                    Some(&c.app_name),
                    &c.app_traffic_rule,
                    &c.app_dns_rule,
                ),
                None => current.with_app_rules(*version, app.as_str(), None, [], []),
            }
        };
        self.publish_snapshot(next);
    }

    /// Publishes `snapshot` to the readers and then to the data plane (which may keep its own
    /// copy of the DNS answers); callers hold the version lock, so both see publication order.
    fn publish_snapshot(&self, snapshot: Snapshot) {
        let snapshot = Arc::new(snapshot);
        self.snapshot.publish(Arc::clone(&snapshot));
        self.dataplane.snapshot_published(&snapshot);
    }

    /// The stored configuration of an application instance.
    pub fn config(&self, app: &AppInstanceId) -> Option<AppDConfig> {
        self.index.read().configs.get(app).cloned()
    }

    /// The progress of a task.
    pub fn task(&self, task_id: &str) -> Option<TaskProgress> {
        self.index
            .read()
            .tasks
            .get(task_id)
            .map(TaskRecord::progress)
    }

    /// Records `confirm_ready`.
    pub async fn confirm_ready(&self, app: &AppInstanceId) -> Result<Readiness, AppsError> {
        let (seconds, nano_seconds) = crate::clock::unix_parts(self.clock.now());
        let readiness = Readiness {
            seconds,
            nano_seconds,
        };
        self.store
            .commit(vec![crate::store::Write::Put {
                table: Table::Readiness,
                key: app.to_string(),
                value: encode(&readiness)?,
            }])
            .await?;
        self.index.write().readiness.insert(app.clone(), readiness);
        Ok(readiness)
    }

    /// Whether the platform manager configured `app` or it registered itself.
    pub fn is_configured_or_registered(&self, app: &AppInstanceId) -> bool {
        let index = self.index.read();
        index.configs.contains_key(app) || index.registrations.contains_key(app)
    }

    /// Whether `app` holds a termination subscription.
    pub fn has_termination_subscriptions(&self, app: &AppInstanceId) -> bool {
        self.index
            .read()
            .subscriptions
            .values()
            .any(|s| s.app == *app)
    }

    /// When `app` confirmed readiness, if it did.
    pub fn readiness(&self, app: &AppInstanceId) -> Option<Readiness> {
        self.index.read().readiness.get(app).copied()
    }

    /// Every configured application instance with its rule counts, sorted by id.
    pub fn summaries(&self) -> Vec<AppSummary> {
        let index = self.index.read();
        let mut out: Vec<AppSummary> = index
            .configs
            .iter()
            .map(|(app, c)| AppSummary {
                app_instance_id: app.as_str().to_owned(),
                app_name: c.app_name.clone(),
                traffic_rules: c.app_traffic_rule.len(),
                dns_rules: c.app_dns_rule.len(),
                ready: index.readiness.contains_key(app),
            })
            .collect();
        out.sort_by(|a, b| a.app_instance_id.cmp(&b.app_instance_id));
        out
    }
}

/// One configured application instance, for the platform manager's list.
#[derive(Debug, Clone, serde::Serialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct AppSummary {
    pub app_instance_id: String,
    pub app_name: String,
    pub traffic_rules: usize,
    pub dns_rules: usize,
    /// The application confirmed readiness (`confirm_ready`).
    pub ready: bool,
}
