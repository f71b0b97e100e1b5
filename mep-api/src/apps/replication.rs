//! Application records another node committed (etcd store), applied to this node's index, its
//! rule snapshot and its own data plane.
//!
//! A configuration change takes the application's turn, the one this node's own rule changes
//! hold from the diff to the publication, so the watch's copy of an own change is recognised
//! (`Store::claim`) and finds nothing left to do. Another node's change is diffed against what
//! this node holds and handed to this node's data plane; if the data plane refuses, it is marked
//! out of sync and resynchronized from the snapshot (which follows the committed rules). A data
//! plane the whole site shares (an external controller) is left alone: the node that made the
//! change applied it there.

use super::change::{app_info, diff};
use super::{decode, Apps, Readiness, TaskRecord, TerminationSubscription};
use crate::apps::registrations::AppRegistration;
use crate::model::appd::AppDConfig;
use crate::model::ids::AppInstanceId;
use crate::readiness::Part;
use crate::store::{Replicated, Table};

impl Apps {
    /// The committed configuration of an application, changed on another node.
    pub async fn apply_replicated_config(&self, change: &Replicated) {
        let Ok(app) = AppInstanceId::parse(&change.key) else {
            return;
        };
        let target: Option<AppDConfig> = match &change.value {
            Some(v) => match decode("app_configs", &change.key, v) {
                Some(config) => Some(config),
                None => return,
            },
            None => None,
        };
        {
            let _turn = self.changes.app(&app).await;
            if !self.store.claim(change) {
                return;
            }
            let previous = self.index.read().configs.get(&app).cloned();
            let ops = diff(previous.as_ref(), target.as_ref());
            if ops.is_empty() && previous == target {
                return;
            }
            let info = app_info(&app, previous.as_ref(), target.as_ref());
            // A data plane the whole site shares got the change from the node that made it.
            if self.readiness.is_ready(Part::DataPlane)
                && !ops.is_empty()
                && !self.dataplane.shared_by_site()
            {
                if let Err(e) = self.dataplane.apply(&info, &ops).await {
                    tracing::error!(app = %app, error = %e.error, "the data plane refused a replicated rule change; resynchronizing");
                    self.readiness.set(Part::DataPlane, false);
                }
            }
            self.index.write().set_config(&app, target);
            self.publish_app(&app);
        }
        if let Err(e) = self.resync_if_needed().await {
            tracing::error!(error = %e, "data plane out of sync after a replicated rule change");
        }
    }

    /// A task, readiness, registration or termination subscription changed on another node.
    pub fn apply_replicated_record(&self, change: &Replicated) {
        if !self.store.claim(change) {
            return;
        }
        let key = change.key.as_str();
        let value = change.value.as_deref();
        let mut index = self.index.write();
        match change.table {
            Table::Tasks => match value.and_then(|v| decode::<TaskRecord>("tasks", key, v)) {
                Some(task) => {
                    index.tasks.insert(key.to_owned(), task);
                }
                None => {
                    index.tasks.remove(key);
                }
            },
            Table::TerminationSubscriptions => {
                match value.and_then(|v| {
                    decode::<TerminationSubscription>("termination_subscriptions", key, v)
                }) {
                    Some(sub) => {
                        index.subscriptions.insert(key.to_owned(), sub);
                    }
                    None => {
                        index.subscriptions.remove(key);
                    }
                }
            }
            Table::Readiness | Table::Registrations => {
                let Ok(app) = AppInstanceId::parse(key) else {
                    return;
                };
                if change.table == Table::Readiness {
                    match value.and_then(|v| decode::<Readiness>("readiness", key, v)) {
                        Some(r) => index.readiness.insert(app, r),
                        None => index.readiness.remove(&app),
                    };
                } else {
                    match value.and_then(|v| decode::<AppRegistration>("registrations", key, v)) {
                        Some(r) => index.registrations.insert(app, r),
                        None => index.registrations.remove(&app),
                    };
                }
            }
            _ => {}
        }
    }
}
