//! App termination: termination subscriptions, the notification, the wait for
//! `confirm_termination`, and the removal of everything the application instance had.

use std::collections::HashMap;
use std::sync::Arc;

use serde::Serialize;

use super::{Apps, AppsError, TerminationSubscription};
use crate::model::common::{require_callback_uri, LinkType};
use crate::model::confirmation::OperationActionType;
use crate::model::ids::{new_id, AppInstanceId};
use crate::model::subscription::{
    SelfLinks, SubscriptionLink, SubscriptionLinkList, SubscriptionLinkListLinks,
};
use crate::notify::{json_body, Outbox, Outgoing};
use crate::store::{Check, Replicated, Table, Write};

pub const TERMINATION_SUBSCRIPTION_TYPE: &str = "AppTerminationNotificationSubscription";
const TERMINATION_NOTIFICATION_TYPE: &str = "AppTerminationNotification";
/// The only operation mep's termination performs.
const TERMINATING: OperationActionType = OperationActionType::Terminating;

/// Terminations in progress, each with the signal `confirm_termination` raises.
#[derive(Default)]
pub(super) struct Terminations {
    in_progress: parking_lot::Mutex<HashMap<AppInstanceId, Arc<tokio::sync::Notify>>>,
    /// On a store shared by several nodes, the terminations any node runs, as stored.
    shared: parking_lot::Mutex<HashMap<AppInstanceId, TerminationRecord>>,
}

/// A termination in progress as stored for the other nodes of a site.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, serde::Deserialize)]
#[serde(rename_all = "camelCase")]
pub(super) struct TerminationRecord {
    /// The node that terminates the application.
    node: String,
    /// Whether the application confirmed (on any node).
    confirmed: bool,
}

impl Terminations {
    /// The stored terminations (at load).
    pub(super) fn load(&self, app: AppInstanceId, record: TerminationRecord) {
        self.shared.lock().insert(app, record);
    }
}

/// `AppTerminationNotificationSubscription` as the platform returns it.
#[derive(Serialize, utoipa::ToSchema)]
#[schema(as = AppTerminationNotificationSubscription)]
#[serde(rename_all = "camelCase")]
pub(crate) struct SubscriptionView<'a> {
    subscription_type: &'static str,
    callback_reference: &'a str,
    #[serde(rename = "_links")]
    links: SelfLinks,
    app_instance_id: &'a str,
}

#[derive(Serialize, utoipa::ToSchema)]
#[schema(as = AppTerminationNotification::Links)]
#[serde(rename_all = "camelCase")]
pub(crate) struct NotificationLinks {
    subscription: LinkType,
    confirm_termination: LinkType,
}

/// What a termination subscription's callback receives.
#[derive(Serialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub(crate) struct AppTerminationNotification {
    notification_type: &'static str,
    operation_action: OperationActionType,
    max_graceful_timeout: u64,
    #[serde(rename = "_links")]
    links: NotificationLinks,
}

/// What a termination did.
#[derive(Debug, Serialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct TerminationReport {
    pub app_instance_id: String,
    /// Termination subscriptions notified.
    pub notified: usize,
    /// Whether the application confirmed before `maxGracefulTimeout`.
    pub confirmed: bool,
    /// Whether its traffic and DNS rules were removed (false: the data plane refused, see `detail`).
    pub rules_removed: bool,
    pub services_removed: usize,
    pub subscriptions_removed: usize,
    /// Whether the application's credentials were removed (set by the caller, which owns them).
    pub credentials_removed: bool,
    #[serde(skip_serializing_if = "String::is_empty")]
    pub detail: String,
}

impl Apps {
    fn render_termination_subscription(&self, sub: &TerminationSubscription) -> Vec<u8> {
        serde_json::to_vec(&SubscriptionView {
            subscription_type: TERMINATION_SUBSCRIPTION_TYPE,
            callback_reference: &sub.callback_reference,
            links: SelfLinks {
                self_link: LinkType::new(
                    self.links
                        .termination_subscription(sub.app.as_str(), &sub.id),
                ),
            },
            app_instance_id: sub.app.as_str(),
        })
        .unwrap_or_default()
    }

    /// Creates a termination subscription; answers its id and representation. An application
    /// instance can only be told of its own termination, so the URI's instance is the filter
    /// whatever `appInstanceId` the body names.
    pub async fn subscribe_termination(
        &self,
        app: &AppInstanceId,
        subscription_type: &str,
        callback_reference: String,
    ) -> Result<(String, Vec<u8>), AppsError> {
        if subscription_type != TERMINATION_SUBSCRIPTION_TYPE {
            return Err(AppsError::Invalid(format!(
                "subscriptionType must be \"{TERMINATION_SUBSCRIPTION_TYPE}\""
            )));
        }
        require_callback_uri(&callback_reference).map_err(AppsError::Invalid)?;
        let sub = TerminationSubscription {
            id: new_id(),
            app: app.clone(),
            callback_reference,
        };
        let _turn = self.changes.app(app).await;
        let owned = self
            .index
            .read()
            .subscriptions
            .values()
            .filter(|s| s.app == *app)
            .count();
        if owned >= self.config.subscriptions_per_app {
            return Err(AppsError::Quota(format!(
                "application instance {app} already has {owned} termination subscriptions, the limit"
            )));
        }
        self.store
            .commit(vec![Write::Put {
                table: Table::TerminationSubscriptions,
                key: sub.id.clone(),
                value: super::encode(&sub)?,
            }])
            .await?;
        let body = self.render_termination_subscription(&sub);
        let id = sub.id.clone();
        self.index.write().subscriptions.insert(id.clone(), sub);
        Ok((id, body))
    }

    /// The link list of `app`'s termination subscriptions.
    pub fn termination_subscription_list(&self, app: &AppInstanceId) -> SubscriptionLinkList {
        let index = self.index.read();
        SubscriptionLinkList {
            links: SubscriptionLinkListLinks {
                self_link: LinkType::new(self.links.termination_subscriptions(app.as_str())),
                subscriptions: index
                    .subscriptions
                    .values()
                    .filter(|s| s.app == *app)
                    .map(|s| SubscriptionLink {
                        href: self.links.termination_subscription(app.as_str(), &s.id),
                        subscription_type: TERMINATION_SUBSCRIPTION_TYPE,
                        rel: TERMINATION_SUBSCRIPTION_TYPE,
                    })
                    .collect(),
            },
        }
    }

    pub fn termination_subscription(
        &self,
        app: &AppInstanceId,
        id: &str,
    ) -> Result<Vec<u8>, AppsError> {
        match self.index.read().subscriptions.get(id) {
            Some(s) if s.app == *app => Ok(self.render_termination_subscription(s)),
            _ => Err(AppsError::NotFound(format!("subscription {id} not found"))),
        }
    }

    pub async fn unsubscribe_termination(
        &self,
        app: &AppInstanceId,
        id: &str,
    ) -> Result<(), AppsError> {
        let _turn = self.changes.app(app).await;
        match self.index.read().subscriptions.get(id) {
            Some(s) if s.app == *app => {}
            _ => return Err(AppsError::NotFound(format!("subscription {id} not found"))),
        }
        self.store
            .commit(vec![Write::Delete {
                table: Table::TerminationSubscriptions,
                key: id.to_owned(),
            }])
            .await?;
        self.index.write().subscriptions.remove(id);
        self.notifier.forget(id);
        Ok(())
    }

    /// `confirm_termination`: 400 when the operation does not match the notified one. With no
    /// termination of `app` in progress it changes nothing (ETSI's tests confirm unprompted and
    /// expect 204). On a store shared by several nodes, a confirmation of a termination another
    /// node runs is stored for that node.
    pub async fn confirm_termination(
        &self,
        app: &AppInstanceId,
        operation_action: OperationActionType,
    ) -> Result<(), AppsError> {
        let check_action = || {
            if operation_action != TERMINATING {
                return Err(AppsError::Invalid(format!(
                    "operationAction {} does not match the notified {}",
                    operation_action.as_str(),
                    TERMINATING.as_str()
                )));
            }
            Ok(())
        };
        if let Some(confirmed) = self.terminations.in_progress.lock().get(app) {
            check_action()?;
            confirmed.notify_one();
            return Ok(());
        }
        let elsewhere = self.terminations.shared.lock().get(app).cloned();
        let Some(record) = elsewhere.filter(|r| !r.confirmed) else {
            tracing::info!(app = %app, operation_action = operation_action.as_str(), "confirm_termination with no termination in progress; nothing to do");
            return Ok(());
        };
        check_action()?;
        let confirmed = TerminationRecord {
            confirmed: true,
            ..record.clone()
        };
        let stored = self
            .store
            .commit_checked(
                vec![Check::Holds {
                    table: Table::Terminations,
                    key: app.to_string(),
                    value: super::encode(&record)?,
                }],
                vec![Write::Put {
                    table: Table::Terminations,
                    key: app.to_string(),
                    value: super::encode(&confirmed)?,
                }],
            )
            .await;
        match stored {
            // Confirmed meanwhile, or over: either way nothing is left to confirm.
            Ok(()) | Err(crate::store::StoreError::Conflict) => Ok(()),
            Err(e) => Err(e.into()),
        }
    }

    /// A termination another node started, confirmed or finished.
    pub fn apply_replicated_termination(&self, change: &Replicated) {
        if !self.store.claim(change) {
            return;
        }
        let Ok(app) = AppInstanceId::parse(&change.key) else {
            return;
        };
        let Ok(record) = change.decode::<TerminationRecord>() else {
            return;
        };
        match record {
            Some(record) => {
                if record.confirmed {
                    if let Some(confirmed) = self.terminations.in_progress.lock().get(&app) {
                        confirmed.notify_one();
                    }
                }
                self.terminations.shared.lock().insert(app, record);
            }
            None => {
                self.terminations.shared.lock().remove(&app);
            }
        }
    }

    /// Terminates `app`: notifies its termination subscriptions, waits for confirmation up to
    /// `maxGracefulTimeout`, then removes its rules, services, subscriptions, readiness and
    /// registration.
    /// The termination runs on its own task, so a platform manager that goes away cannot stop it
    /// half-way.
    pub async fn terminate(
        self: &Arc<Self>,
        app: &AppInstanceId,
    ) -> Result<TerminationReport, AppsError> {
        let (apps, app) = (Arc::clone(self), app.clone());
        tokio::spawn(async move { apps.terminate_serially(&app).await })
            .await
            .map_err(|e| AppsError::Interrupted(e.to_string()))?
    }

    async fn terminate_serially(
        &self,
        app: &AppInstanceId,
    ) -> Result<TerminationReport, AppsError> {
        let confirmed_signal = {
            let mut in_progress = self.terminations.in_progress.lock();
            if in_progress.contains_key(app) {
                return Err(AppsError::Conflict(format!(
                    "a termination of application instance {app} is already in progress"
                )));
            }
            let signal = Arc::new(tokio::sync::Notify::new());
            in_progress.insert(app.clone(), signal.clone());
            signal
        };
        let result = self.terminate_in_progress(app, &confirmed_signal).await;
        self.terminations.in_progress.lock().remove(app);
        if self.store.is_shared() {
            let done = Write::Delete {
                table: Table::Terminations,
                key: app.to_string(),
            };
            if let Err(e) = self.store.commit(vec![done]).await {
                tracing::warn!(app = %app, error = %e, "the record of a finished termination stays");
            }
            self.terminations.shared.lock().remove(app);
        }
        result
    }

    async fn terminate_in_progress(
        &self,
        app: &AppInstanceId,
        confirmed_signal: &tokio::sync::Notify,
    ) -> Result<TerminationReport, AppsError> {
        let subscriptions: Vec<TerminationSubscription> = self
            .index
            .read()
            .subscriptions
            .values()
            .filter(|s| s.app == *app)
            .cloned()
            .collect();
        self.notify_termination(app, &subscriptions).await?;
        let confirmed = !subscriptions.is_empty()
            && tokio::time::timeout(
                self.config.max_graceful_timeout,
                confirmed_signal.notified(),
            )
            .await
            .is_ok();
        let mut report = TerminationReport {
            app_instance_id: app.to_string(),
            notified: subscriptions.len(),
            confirmed,
            rules_removed: true,
            services_removed: 0,
            subscriptions_removed: 0,
            credentials_removed: false,
            detail: String::new(),
        };
        if let Err(detail) = self.remove_rules(app).await {
            report.rules_removed = false;
            report.detail = detail;
        }
        report.services_removed = self.registry.deregister_all(app).await?;
        report.subscriptions_removed = self.registry.unsubscribe_all(app).await?;
        self.forget_app_state(app, &subscriptions).await?;
        report.subscriptions_removed += subscriptions.len();
        tracing::info!(app = %app, confirmed, "application instance terminated");
        Ok(report)
    }

    /// Sends every termination subscription of `app` its AppTerminationNotification; on a
    /// store shared by several nodes, commits them to the outbox for the leader to send, with
    /// the record of the termination.
    async fn notify_termination(
        &self,
        app: &AppInstanceId,
        subscriptions: &[TerminationSubscription],
    ) -> Result<(), AppsError> {
        let mut scratch = Vec::new();
        let notifications: Vec<Outgoing> = subscriptions
            .iter()
            .map(|sub| {
                let notification = AppTerminationNotification {
                    notification_type: TERMINATION_NOTIFICATION_TYPE,
                    operation_action: TERMINATING,
                    max_graceful_timeout: self.config.max_graceful_timeout.as_secs(),
                    links: NotificationLinks {
                        subscription: LinkType::new(
                            self.links.termination_subscription(app.as_str(), &sub.id),
                        ),
                        confirm_termination: LinkType::new(
                            self.links.confirm_termination(app.as_str()),
                        ),
                    },
                };
                Outgoing {
                    subscription: sub.id.clone(),
                    callback: sub.callback_reference.clone(),
                    body: json_body(&notification, &mut scratch).unwrap_or_default(),
                }
            })
            .collect();
        if let Some(node) = self.store.node_id() {
            // The record tells the other nodes that this one waits for a confirmation.
            let record = TerminationRecord {
                node: node.to_owned(),
                confirmed: false,
            };
            let mut writes = vec![Write::Put {
                table: Table::Terminations,
                key: app.to_string(),
                value: super::encode(&record)?,
            }];
            writes.extend(notifications.iter().map(Outbox::write));
            self.store.commit(writes).await?;
            self.terminations.shared.lock().insert(app.clone(), record);
            return Ok(());
        }
        for n in notifications {
            self.notifier.deliver(&n.subscription, &n.callback, n.body);
        }
        Ok(())
    }

    /// Removes the app's traffic and DNS rules; answers why not when that failed.
    async fn remove_rules(&self, app: &AppInstanceId) -> Result<(), String> {
        if self.config(app).is_none() {
            return Ok(());
        }
        match self.change_serially(app, None).await {
            Ok(outcome) if outcome.succeeded() => Ok(()),
            Ok(outcome) => Err(outcome.progress.detailed),
            Err(e) => Err(e.to_string()),
        }
    }

    /// Deletes the app's termination subscriptions, readiness and registration, in the store
    /// and then in memory, and stops their notifications.
    async fn forget_app_state(
        &self,
        app: &AppInstanceId,
        subscriptions: &[TerminationSubscription],
    ) -> Result<(), AppsError> {
        let _turn = self.changes.app(app).await;
        let mut writes: Vec<Write> = subscriptions
            .iter()
            .map(|s| Write::Delete {
                table: Table::TerminationSubscriptions,
                key: s.id.clone(),
            })
            .collect();
        writes.push(Write::Delete {
            table: Table::Readiness,
            key: app.to_string(),
        });
        writes.push(Write::Delete {
            table: Table::Registrations,
            key: app.to_string(),
        });
        self.store.commit(writes).await?;
        {
            let mut index = self.index.write();
            for s in subscriptions {
                index.subscriptions.remove(&s.id);
            }
            index.readiness.remove(app);
            index.registrations.remove(app);
        }
        for s in subscriptions {
            self.notifier.forget(&s.id);
        }
        Ok(())
    }
}
