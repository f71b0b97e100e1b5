//! Service availability subscriptions of an application instance.

use super::{Registry, RegistryError};
use crate::model::common::LinkType;
use crate::model::ids::{new_id, AppInstanceId};
use crate::model::subscription::{
    SelfLinks, SerAvailabilitySubscription, SerAvailabilitySubscriptionView, SubscriptionLink,
    SubscriptionLinkList, SubscriptionLinkListLinks, SER_AVAILABILITY_SUBSCRIPTION_TYPE,
};
use crate::store::{Table, Write};

impl Registry {
    /// Creates a subscription; answers its id and representation.
    pub async fn subscribe(
        &self,
        mut sub: SerAvailabilitySubscription,
    ) -> Result<(String, Vec<u8>), RegistryError> {
        sub.id = new_id();
        let _serial = self.lock_app(&sub.app).await;
        let owned = self
            .index
            .read()
            .subscriptions
            .values()
            .filter(|s| s.app == sub.app)
            .count();
        if owned >= self.limits.subscriptions_per_app {
            return Err(RegistryError::Quota(format!(
                "application instance {} already has {owned} subscriptions, the limit",
                sub.app
            )));
        }
        let value = serde_json::to_vec(&sub).map_err(|e| RegistryError::Encoding(e.to_string()))?;
        self.store
            .commit(vec![Write::Put {
                table: Table::SerAvailabilitySubscriptions,
                key: sub.id.clone(),
                value,
            }])
            .await?;
        let body = self.render_subscription(&sub);
        let id = sub.id.clone();
        self.index.write().subscriptions.insert(id.clone(), sub);
        Ok((id, body))
    }

    /// The link list of `app`'s subscriptions.
    pub fn subscription_list(&self, app: &AppInstanceId) -> SubscriptionLinkList {
        let index = self.index.read();
        SubscriptionLinkList {
            links: SubscriptionLinkListLinks {
                self_link: LinkType::new(self.links.ser_subscriptions(app.as_str())),
                subscriptions: index
                    .subscriptions
                    .values()
                    .filter(|s| s.app == *app)
                    .map(|s| SubscriptionLink {
                        href: self.links.ser_subscription(app.as_str(), &s.id),
                        subscription_type: SER_AVAILABILITY_SUBSCRIPTION_TYPE,
                        rel: SER_AVAILABILITY_SUBSCRIPTION_TYPE,
                    })
                    .collect(),
            },
        }
    }

    /// One subscription of `app`.
    pub fn subscription(&self, app: &AppInstanceId, id: &str) -> Result<Vec<u8>, RegistryError> {
        match self.index.read().subscriptions.get(id) {
            Some(s) if s.app == *app => Ok(self.render_subscription(s)),
            _ => Err(RegistryError::SubscriptionNotFound(id.to_owned())),
        }
    }

    /// Deletes a subscription of `app` and drops its pending notifications.
    pub async fn unsubscribe(&self, app: &AppInstanceId, id: &str) -> Result<(), RegistryError> {
        let _serial = self.lock_app(app).await;
        match self.index.read().subscriptions.get(id) {
            Some(s) if s.app == *app => {}
            _ => return Err(RegistryError::SubscriptionNotFound(id.to_owned())),
        }
        self.store
            .commit(vec![Write::Delete {
                table: Table::SerAvailabilitySubscriptions,
                key: id.to_owned(),
            }])
            .await?;
        self.index.write().subscriptions.remove(id);
        self.notifier.forget(id);
        Ok(())
    }

    /// Deletes every subscription of `app` (app termination); answers how many.
    pub async fn unsubscribe_all(&self, app: &AppInstanceId) -> Result<usize, RegistryError> {
        let _serial = self.lock_app(app).await;
        let ids: Vec<String> = self
            .index
            .read()
            .subscriptions
            .values()
            .filter(|s| s.app == *app)
            .map(|s| s.id.clone())
            .collect();
        if ids.is_empty() {
            return Ok(0);
        }
        self.store
            .commit(
                ids.iter()
                    .map(|id| Write::Delete {
                        table: Table::SerAvailabilitySubscriptions,
                        key: id.clone(),
                    })
                    .collect(),
            )
            .await?;
        let mut index = self.index.write();
        for id in &ids {
            index.subscriptions.remove(id);
            self.notifier.forget(id);
        }
        Ok(ids.len())
    }

    fn render_subscription(&self, sub: &SerAvailabilitySubscription) -> Vec<u8> {
        let view = SerAvailabilitySubscriptionView {
            subscription_type: SER_AVAILABILITY_SUBSCRIPTION_TYPE,
            callback_reference: &sub.callback_reference,
            links: SelfLinks {
                self_link: LinkType::new(self.links.ser_subscription(sub.app.as_str(), &sub.id)),
            },
            filtering_criteria: &sub.filtering_criteria,
        };
        serde_json::to_vec(&view).unwrap_or_default()
    }
}
