//! Rule changes as tasks: diff, journal, data-plane calls with revert, commit, publish.

use std::collections::HashMap;
use std::sync::atomic::Ordering;
use std::sync::Arc;

use mep_rules::{AppInfo, RuleChange, RuleState};

use super::{Apps, AppsError, TaskRecord};
use crate::model::appd::{AppDConfig, ConfigResult, TaskProgress};
use crate::model::ids::{new_id, AppInstanceId};
use crate::readiness::Part;
use crate::store::{StoreError, Table, Write};

/// Why a rule change was not even started.
#[derive(Debug, thiserror::Error)]
pub enum RuleChangeError {
    #[error("{0}")]
    Invalid(String),
    #[error("{0}")]
    Conflict(String),
    #[error("{0}")]
    NotFound(String),
    #[error("If-Match does not match the current ETag of the rule")]
    PreconditionFailed,
    #[error("the rule change task ended abnormally: {0}")]
    Interrupted(String),
    #[error("the store failed: {0}")]
    Store(#[from] StoreError),
    #[error("cannot encode a record for the store: {0}")]
    Encoding(String),
    #[error("the data plane is out of sync and cannot be resynchronized: {0}")]
    DataPlaneOutOfSync(String),
}

/// How a started rule change ended.
#[derive(Debug, Clone)]
pub struct ChangeOutcome {
    pub progress: TaskProgress,
}

impl ChangeOutcome {
    pub fn succeeded(&self) -> bool {
        self.progress.config_result == ConfigResult::Success
    }
}

/// Which rule changes turn `old` into `new`: DNS rules first, then traffic rules; only ACTIVE
/// rules live in the data plane.
pub(super) fn diff(old: Option<&AppDConfig>, new: Option<&AppDConfig>) -> Vec<RuleChange> {
    fn pairs<'a, R, K: Eq + std::hash::Hash + Ord + Clone>(
        old: &'a [R],
        new: &'a [R],
        key: impl Fn(&R) -> K,
    ) -> Vec<(Option<&'a R>, Option<&'a R>)> {
        let old_by: HashMap<K, &R> = old.iter().map(|r| (key(r), r)).collect();
        let new_by: HashMap<K, &R> = new.iter().map(|r| (key(r), r)).collect();
        let mut keys: Vec<K> = old_by.keys().chain(new_by.keys()).cloned().collect();
        keys.sort();
        keys.dedup();
        keys.into_iter()
            .map(|k| (old_by.get(&k).copied(), new_by.get(&k).copied()))
            .collect()
    }
    let empty = AppDConfig {
        app_traffic_rule: vec![],
        app_dns_rule: vec![],
        app_support_mp1: false,
        app_name: String::new(),
    };
    let (old, new) = (old.unwrap_or(&empty), new.unwrap_or(&empty));
    let mut ops = Vec::new();
    for (o, n) in pairs(&old.app_dns_rule, &new.app_dns_rule, |r| {
        r.dns_rule_id.clone()
    }) {
        let o = o.filter(|r| r.state == RuleState::Active);
        let n = n.filter(|r| r.state == RuleState::Active);
        match (o, n) {
            (None, Some(n)) => ops.push(RuleChange::AddDns(n.clone())),
            (Some(o), None) => ops.push(RuleChange::RemoveDns(o.clone())),
            (Some(o), Some(n)) if o != n => ops.push(RuleChange::UpdateDns {
                old: o.clone(),
                new: n.clone(),
            }),
            _ => {}
        }
    }
    for (o, n) in pairs(&old.app_traffic_rule, &new.app_traffic_rule, |r| {
        r.traffic_rule_id.clone()
    }) {
        let o = o.filter(|r| r.state == RuleState::Active);
        let n = n.filter(|r| r.state == RuleState::Active);
        match (o, n) {
            (None, Some(n)) => ops.push(RuleChange::AddTraffic(n.clone())),
            (Some(o), None) => ops.push(RuleChange::RemoveTraffic(o.clone())),
            (Some(o), Some(n)) if o != n => ops.push(RuleChange::UpdateTraffic {
                old: o.clone(),
                new: n.clone(),
            }),
            _ => {}
        }
    }
    ops
}

/// The store write that leaves the app with `target` (or with no configuration).
fn config_write(
    app: &AppInstanceId,
    target: Option<&AppDConfig>,
) -> Result<Write, RuleChangeError> {
    Ok(match target {
        Some(config) => Write::Put {
            table: Table::AppConfigs,
            key: app.to_string(),
            value: serde_json::to_vec(config)
                .map_err(|e| RuleChangeError::Encoding(e.to_string()))?,
        },
        None => Write::Delete {
            table: Table::AppConfigs,
            key: app.to_string(),
        },
    })
}

/// What the data plane is told of the application a change is for: its name from the new
/// configuration, or the old one when it goes.
pub(super) fn app_info(
    app: &AppInstanceId,
    previous: Option<&AppDConfig>,
    target: Option<&AppDConfig>,
) -> AppInfo {
    AppInfo {
        app_instance_id: app.to_string(),
        app_name: target
            .or(previous)
            .map(|c| c.app_name.clone())
            .unwrap_or_default(),
    }
}

pub(super) fn put_task(task: &TaskRecord) -> Result<Write, RuleChangeError> {
    Ok(Write::Put {
        table: Table::Tasks,
        key: task.task_id.clone(),
        value: serde_json::to_vec(task).map_err(|e| RuleChangeError::Encoding(e.to_string()))?,
    })
}

impl Apps {
    /// Checks what a single configuration cannot: a domain name belongs to one application, and
    /// every ACTIVE traffic rule is one the data plane can honour.
    fn check_target(
        &self,
        app: &AppInstanceId,
        target: &AppDConfig,
    ) -> Result<(), RuleChangeError> {
        target
            .validate(self.config.rules_per_app)
            .map_err(RuleChangeError::Invalid)?;
        let index = self.index.read();
        for rule in &target.app_dns_rule {
            let name = rule.lookup_key();
            if let Some(other) = index.domain_owners.get(&name).filter(|owner| *owner != app) {
                return Err(RuleChangeError::Conflict(format!(
                    "domainName {} belongs to application instance {other}",
                    rule.domain_name
                )));
            }
        }
        for rule in target
            .app_traffic_rule
            .iter()
            .filter(|r| r.state == RuleState::Active)
        {
            let filters = rule
                .compile()
                .map_err(|e| RuleChangeError::Invalid(e.to_string()))?;
            self.dataplane
                .check_traffic_rule(rule, &filters)
                .map_err(|e| {
                    RuleChangeError::Invalid(format!(
                        "trafficRule {}: the {} data plane cannot apply it: {e}",
                        rule.traffic_rule_id,
                        self.dataplane.kind()
                    ))
                })?;
        }
        Ok(())
    }

    /// Replaces (`Some`) or removes (`None`) the configuration of `app` as one task.
    pub(super) async fn change_serially(
        &self,
        app: &AppInstanceId,
        target: Option<AppDConfig>,
    ) -> Result<ChangeOutcome, RuleChangeError> {
        self.edit_serially(app, move |_| Ok(target))
            .await
            .map(|(outcome, _)| outcome)
    }

    /// Changes the configuration of `app` to what `edit` makes of the current one (`None`
    /// removes it), as one task. `edit` runs under the change lock, so concurrent edits of one
    /// application never lose each other. The task runs on its own, so a client that goes away
    /// cannot cancel it half-way.
    pub async fn edit(
        self: &Arc<Self>,
        app: &AppInstanceId,
        edit: impl FnOnce(Option<&AppDConfig>) -> Result<Option<AppDConfig>, RuleChangeError>
            + Send
            + 'static,
    ) -> Result<(ChangeOutcome, Option<AppDConfig>), RuleChangeError> {
        let (apps, app) = (Arc::clone(self), app.clone());
        tokio::spawn(async move { apps.edit_serially(&app, edit).await })
            .await
            .map_err(|e| RuleChangeError::Interrupted(e.to_string()))?
    }

    /// Runs one task in `app`'s turn: changes of other apps go on meanwhile. A data plane left out
    /// of sync (before, or by this task's failed revert) is resynchronized with every change held
    /// back, before the task and before its answer.
    async fn edit_serially(
        &self,
        app: &AppInstanceId,
        edit: impl FnOnce(Option<&AppDConfig>) -> Result<Option<AppDConfig>, RuleChangeError>,
    ) -> Result<(ChangeOutcome, Option<AppDConfig>), RuleChangeError> {
        self.resync_if_needed().await?;
        let result = async {
            let _turn = self.changes.app(app).await;
            let previous = self.index.read().configs.get(app).cloned();
            let target = edit(previous.as_ref())?;
            let new_names = target
                .as_ref()
                .map(|t| self.new_domains(app, t))
                .unwrap_or_default();
            let _claimed = self.changes.claim(new_names).await;
            if let Some(target) = &target {
                self.check_target(app, target)?;
            }
            let outcome = self.run_task(app, previous, target.clone()).await?;
            Ok((outcome, target))
        }
        .await;
        if let Err(e) = self.resync_if_needed().await {
            tracing::error!(error = %e, "data plane still out of sync after a failed revert");
        }
        result
    }

    /// The domain names `target` gives `app` that its current configuration does not hold.
    fn new_domains(&self, app: &AppInstanceId, target: &AppDConfig) -> Vec<String> {
        let index = self.index.read();
        target
            .app_dns_rule
            .iter()
            .map(|rule| rule.lookup_key())
            .filter(|name| index.domain_owners.get(name) != Some(app))
            .collect()
    }

    /// Resynchronizes the data plane if it is out of sync, waiting for every change in progress.
    pub(super) async fn resync_if_needed(&self) -> Result<(), RuleChangeError> {
        if self.readiness.is_ready(Part::DataPlane) {
            return Ok(());
        }
        let _all = self.changes.everything().await;
        self.ensure_in_sync().await
    }

    async fn run_task(
        &self,
        app: &AppInstanceId,
        previous: Option<AppDConfig>,
        target: Option<AppDConfig>,
    ) -> Result<ChangeOutcome, RuleChangeError> {
        let ops = diff(previous.as_ref(), target.as_ref());
        // Encoded before the data plane is called, so nothing it applied can fail to be stored
        // for want of an encoding.
        let config_write = config_write(app, target.as_ref())?;
        // On a store shared by several nodes, the configuration must still be the one this
        // change was diffed against: two nodes changing one application cannot both win.
        let checks = match (&previous, self.store.is_shared()) {
            (_, false) => Vec::new(),
            (Some(p), true) => vec![crate::store::Check::Holds {
                table: Table::AppConfigs,
                key: app.to_string(),
                value: serde_json::to_vec(p)
                    .map_err(|e| RuleChangeError::Encoding(e.to_string()))?,
            }],
            (None, true) => vec![crate::store::Check::Absent {
                table: Table::AppConfigs,
                key: app.to_string(),
            }],
        };
        let mut task = self.open_task(app, ops.len()).await?;
        let info = app_info(app, previous.as_ref(), target.as_ref());
        let applied = self.apply_or_revert(app, &info, &ops, &mut task).await;
        let mut writes = Vec::new();
        if applied {
            writes.push(config_write);
        }
        writes.push(put_task(&task)?);
        writes.extend(self.expired_tasks());
        if let Err(e) = self.store.commit_checked(checks, writes).await {
            // The data plane holds a change the store does not: take it back. The journal entry
            // stays PROCESSING, so the next start reports the task as rolled back too.
            if applied {
                self.revert(app, &info, &ops).await;
            }
            return Err(e.into());
        }
        self.index_task(app, &task, applied.then_some(target.as_ref()));
        if applied && !ops.is_empty() {
            self.publish_app(app);
        }
        Ok(ChangeOutcome {
            progress: task.progress(),
        })
    }

    /// Journals a new PROCESSING task: if mep stops before the end, the next start finds it and
    /// reports it FAILURE. The entry is committed without an fsync (the task's own commit makes it
    /// durable), so a task costs one fsync; a power loss may take the entry, but never a change:
    /// every start resynchronizes the data plane from the committed configurations anyway.
    async fn open_task(
        &self,
        app: &AppInstanceId,
        total: usize,
    ) -> Result<TaskRecord, RuleChangeError> {
        let task = TaskRecord {
            task_id: new_id(),
            app_instance_id: app.clone(),
            seq: self.task_seq.fetch_add(1, Ordering::SeqCst) + 1,
            result: ConfigResult::Processing,
            node: self.store.node_id().map(str::to_owned),
            done: 0,
            total,
            detail: String::new(),
        };
        self.store.commit_volatile(vec![put_task(&task)?]).await?;
        self.index
            .write()
            .tasks
            .insert(task.task_id.clone(), task.clone());
        Ok(task)
    }

    /// Hands `ops` to the data plane as one batch (one step where it can). On failure takes back
    /// the part it applied and marks the task failed; answers whether all of it was applied.
    async fn apply_or_revert(
        &self,
        app: &AppInstanceId,
        info: &AppInfo,
        ops: &[RuleChange],
        task: &mut TaskRecord,
    ) -> bool {
        match self.dataplane.apply(info, ops).await {
            Ok(()) => {
                task.done = ops.len();
                task.result = ConfigResult::Success;
                true
            }
            Err(e) => {
                task.done = e.applied.min(ops.len());
                self.revert(app, info, &ops[..task.done]).await;
                task.result = ConfigResult::Failure;
                task.detail = e.error.to_string();
                tracing::warn!(app = %app, task = %task.task_id, reason = %e.error, "rule change failed and was reverted");
                false
            }
        }
    }

    /// Updates the in-memory index after the task's commit: the task, and the app's
    /// configuration when `config` is given (`Some(None)`: the app has none any more).
    fn index_task(
        &self,
        app: &AppInstanceId,
        task: &TaskRecord,
        config: Option<Option<&AppDConfig>>,
    ) {
        let mut index = self.index.write();
        if let Some(config) = config {
            index.set_config(app, config.cloned());
        }
        index.tasks.insert(task.task_id.clone(), task.clone());
    }

    /// A data plane left out of sync (a revert and the resync after it failed) is resynced
    /// before any further change reaches it; while that fails, changes fail.
    async fn ensure_in_sync(&self) -> Result<(), RuleChangeError> {
        if self.readiness.is_ready(Part::DataPlane) {
            return Ok(());
        }
        let snapshot = self.snapshot.current();
        match self.dataplane.resync(&snapshot).await {
            Ok(()) => {
                tracing::info!("data plane resynchronized");
                self.readiness.set(Part::DataPlane, true);
                Ok(())
            }
            Err(e) => Err(RuleChangeError::DataPlaneOutOfSync(e.to_string())),
        }
    }

    /// Undoes `applied` in reverse order; if an undo fails, marks the data plane out of sync, to
    /// be resynchronized from the published (committed) snapshot once no change is in progress.
    async fn revert(&self, app: &AppInstanceId, info: &AppInfo, applied: &[RuleChange]) {
        if applied.is_empty() {
            return;
        }
        let undo: Vec<RuleChange> = applied.iter().rev().map(RuleChange::inverse).collect();
        if let Err(e) = self.dataplane.apply(info, &undo).await {
            tracing::error!(app = %app, error = %e, "revert failed; the data plane will be resynchronized");
            self.readiness.set(Part::DataPlane, false);
        }
    }

    /// Deletes of the oldest finished tasks beyond the number kept; applied to memory at once
    /// (the caller commits them with its own writes).
    fn expired_tasks(&self) -> Vec<Write> {
        let mut index = self.index.write();
        let finished: Vec<(u64, String)> = index
            .tasks
            .values()
            .filter(|t| t.result != ConfigResult::Processing)
            .map(|t| (t.seq, t.task_id.clone()))
            .collect();
        if finished.len() <= self.config.finished_tasks_kept {
            return Vec::new();
        }
        let mut finished = finished;
        finished.sort();
        let excess = finished.len() - self.config.finished_tasks_kept;
        finished
            .into_iter()
            .take(excess)
            .map(|(_, id)| {
                index.tasks.remove(&id);
                Write::Delete {
                    table: Table::Tasks,
                    key: id,
                }
            })
            .collect()
    }
}

impl From<AppsError> for RuleChangeError {
    fn from(e: AppsError) -> Self {
        match e {
            AppsError::Invalid(m) | AppsError::Quota(m) => RuleChangeError::Invalid(m),
            AppsError::NotFound(m) => RuleChangeError::NotFound(m),
            AppsError::Conflict(m) => RuleChangeError::Conflict(m),
            AppsError::Store(s) => RuleChangeError::Store(s),
            AppsError::Interrupted(m) => RuleChangeError::Interrupted(m),
            AppsError::Encoding(m) => RuleChangeError::Encoding(m),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use mep_rules::{Action, DnsRule, FilterType, IpAddressType, TrafficFilter, TrafficRule};

    fn dns(id: &str, ip: &str, state: RuleState) -> DnsRule {
        DnsRule {
            dns_rule_id: id.into(),
            domain_name: "a.example".into(),
            ip_address_type: IpAddressType::IpV4,
            ip_address: ip.into(),
            ttl: None,
            state,
        }
    }

    fn traffic(id: &str, state: RuleState) -> TrafficRule {
        TrafficRule {
            traffic_rule_id: id.into(),
            filter_type: FilterType::Flow,
            priority: 1,
            traffic_filter: vec![TrafficFilter::default()],
            action: Action::Drop,
            dst_interface: vec![],
            state,
        }
    }

    fn config(dns: Vec<DnsRule>, traffic: Vec<TrafficRule>) -> AppDConfig {
        AppDConfig {
            app_traffic_rule: traffic,
            app_dns_rule: dns,
            app_support_mp1: true,
            app_name: "a".into(),
        }
    }

    fn kinds(ops: &[RuleChange]) -> Vec<&'static str> {
        ops.iter()
            .map(|o| match o {
                RuleChange::AddDns(_) => "add-dns",
                RuleChange::UpdateDns { .. } => "set-dns",
                RuleChange::RemoveDns(_) => "del-dns",
                RuleChange::AddTraffic(_) => "add-traffic",
                RuleChange::UpdateTraffic { .. } => "set-traffic",
                RuleChange::RemoveTraffic(_) => "del-traffic",
            })
            .collect()
    }

    #[test]
    fn diff_touches_only_active_rules_dns_first() {
        let new = config(
            vec![
                dns("d1", "192.0.2.1", RuleState::Active),
                dns("d2", "192.0.2.2", RuleState::Inactive),
            ],
            vec![traffic("t1", RuleState::Active)],
        );
        assert_eq!(
            kinds(&diff(None, Some(&new))),
            vec!["add-dns", "add-traffic"]
        );
        let changed = config(
            vec![
                dns("d1", "192.0.2.9", RuleState::Active),
                dns("d2", "192.0.2.2", RuleState::Active),
            ],
            vec![traffic("t1", RuleState::Inactive)],
        );
        assert_eq!(
            kinds(&diff(Some(&new), Some(&changed))),
            vec!["set-dns", "add-dns", "del-traffic"]
        );
        assert_eq!(
            kinds(&diff(Some(&changed), None)),
            vec!["del-dns", "del-dns"]
        );
        assert!(diff(Some(&new), Some(&new)).is_empty());
    }
}
