//! Service availability subscriptions and notifications (MEC 011 clauses 8.1.3 and 8.1.4).

use serde::{Deserialize, Serialize};

use super::common::{require_callback_uri, CallbackUri, CategoryRef, LinkType, ServiceState};
use super::ids::AppInstanceId;

pub const SER_AVAILABILITY_SUBSCRIPTION_TYPE: &str = "SerAvailabilityNotificationSubscription";
pub const SER_AVAILABILITY_NOTIFICATION_TYPE: &str = "SerAvailabilityNotification";

/// `filteringCriteria` of a `SerAvailabilityNotificationSubscription`; absent members match all.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
#[schema(as = SerAvailabilityNotificationSubscription::FilteringCriteria)]
#[serde(rename_all = "camelCase")]
pub struct FilteringCriteria {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ser_instance_ids: Option<Vec<String>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ser_names: Option<Vec<String>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ser_categories: Option<Vec<CategoryRef>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub states: Option<Vec<ServiceState>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub is_local: Option<bool>,
}

/// What a filter is matched against: the service as it is after the change.
#[derive(Debug, Clone, Copy)]
pub struct ServiceFacts<'a> {
    pub ser_instance_id: &'a str,
    pub ser_name: &'a str,
    pub ser_category: Option<&'a CategoryRef>,
    pub state: ServiceState,
    pub is_local: bool,
}

impl FilteringCriteria {
    fn validate(&self) -> Result<(), String> {
        let selectors = [
            self.ser_instance_ids.is_some(),
            self.ser_names.is_some(),
            self.ser_categories.is_some(),
        ];
        if selectors.iter().filter(|p| **p).count() > 1 {
            return Err("filteringCriteria: serInstanceIds, serNames and serCategories are mutually exclusive".into());
        }
        for category in self.ser_categories.iter().flatten() {
            category.validate("filteringCriteria.serCategories[]")?;
        }
        Ok(())
    }

    /// All present criteria must hold (AND); a list criterion holds when any member matches.
    /// Categories match by `id`.
    pub fn matches(&self, s: &ServiceFacts<'_>) -> bool {
        if let Some(ids) = &self.ser_instance_ids {
            if !ids.iter().any(|id| id == s.ser_instance_id) {
                return false;
            }
        }
        if let Some(names) = &self.ser_names {
            if !names.iter().any(|n| n == s.ser_name) {
                return false;
            }
        }
        if let Some(categories) = &self.ser_categories {
            let Some(cat) = s.ser_category else {
                return false;
            };
            if !categories.iter().any(|c| c.id == cat.id) {
                return false;
            }
        }
        if let Some(states) = &self.states {
            if !states.contains(&s.state) {
                return false;
            }
        }
        if let Some(is_local) = self.is_local {
            if is_local != s.is_local {
                return false;
            }
        }
        true
    }
}

/// `SerAvailabilityNotificationSubscription` as a client sends it.
#[derive(Debug, Clone, Deserialize, utoipa::ToSchema)]
#[schema(as = SerAvailabilityNotificationSubscription::Post)]
#[serde(rename_all = "camelCase")]
pub struct SerAvailabilitySubscriptionBody {
    #[schema(pattern = "^SerAvailabilityNotificationSubscription$")]
    pub subscription_type: String,
    #[schema(value_type = CallbackUri)]
    pub callback_reference: String,
    #[serde(default)]
    pub filtering_criteria: Option<FilteringCriteria>,
}

impl SerAvailabilitySubscriptionBody {
    pub fn validate(self, app: AppInstanceId) -> Result<SerAvailabilitySubscription, String> {
        if self.subscription_type != SER_AVAILABILITY_SUBSCRIPTION_TYPE {
            return Err(format!(
                "subscriptionType must be \"{SER_AVAILABILITY_SUBSCRIPTION_TYPE}\""
            ));
        }
        require_callback_uri(&self.callback_reference)?;
        let filtering_criteria = self.filtering_criteria.unwrap_or_default();
        filtering_criteria.validate()?;
        Ok(SerAvailabilitySubscription {
            id: String::new(),
            app,
            callback_reference: self.callback_reference,
            filtering_criteria,
        })
    }
}

/// A stored service availability subscription.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct SerAvailabilitySubscription {
    pub id: String,
    pub app: AppInstanceId,
    pub callback_reference: String,
    pub filtering_criteria: FilteringCriteria,
}

/// `_links` of a subscription.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct SelfLinks {
    #[serde(rename = "self")]
    pub self_link: LinkType,
}

/// `SerAvailabilityNotificationSubscription` as the platform returns it.
#[derive(Debug, Serialize, utoipa::ToSchema)]
#[schema(as = SerAvailabilityNotificationSubscription)]
#[serde(rename_all = "camelCase")]
pub struct SerAvailabilitySubscriptionView<'a> {
    pub subscription_type: &'static str,
    pub callback_reference: &'a str,
    #[serde(rename = "_links")]
    pub links: SelfLinks,
    #[serde(skip_serializing_if = "is_empty_filter")]
    pub filtering_criteria: &'a FilteringCriteria,
}

fn is_empty_filter(f: &&FilteringCriteria) -> bool {
    **f == FilteringCriteria::default()
}

/// One entry of a subscription link list. v2.1.1 names the type `rel`, v2.2.1 `subscriptionType`;
/// both are sent so that clients of either version find it.
#[derive(Debug, Serialize, utoipa::ToSchema)]
#[schema(as = MecServiceMgmtApiSubscriptionLinkList::Subscription)]
#[serde(rename_all = "camelCase")]
pub struct SubscriptionLink {
    pub href: String,
    /// Since MEC 011 v2.2.1: the subscription's type (v2.1.1's `rel`).
    pub subscription_type: &'static str,
    pub rel: &'static str,
}

/// `_links` of `MecServiceMgmtApiSubscriptionLinkList`.
#[derive(Debug, Serialize, utoipa::ToSchema)]
#[schema(as = MecServiceMgmtApiSubscriptionLinkList::Links)]
pub struct SubscriptionLinkListLinks {
    #[serde(rename = "self")]
    pub self_link: LinkType,
    pub subscriptions: Vec<SubscriptionLink>,
}

/// `MecServiceMgmtApiSubscriptionLinkList`.
#[derive(Debug, Serialize, utoipa::ToSchema)]
#[schema(as = MecServiceMgmtApiSubscriptionLinkList)]
pub struct SubscriptionLinkList {
    #[serde(rename = "_links")]
    pub links: SubscriptionLinkListLinks,
}

/// `ServiceAvailabilityNotification.serviceReferences[].changeType`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, utoipa::ToSchema)]
#[schema(as = ServiceAvailabilityNotification::ChangeType)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum ChangeType {
    Added,
    Removed,
    StateChanged,
    AttributesChanged,
}

/// One entry of `serviceReferences`.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
#[schema(as = ServiceAvailabilityNotification::ServiceReferences)]
#[serde(rename_all = "camelCase")]
pub struct ServiceReference {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub link: Option<LinkType>,
    pub ser_name: String,
    pub ser_instance_id: String,
    pub state: ServiceState,
    pub change_type: ChangeType,
}

/// `_links` of a notification.
#[derive(Debug, Serialize, utoipa::ToSchema)]
#[schema(as = Subscription)]
pub struct NotificationLinks {
    pub subscription: LinkType,
}

/// `ServiceAvailabilityNotification`.
#[derive(Debug, Serialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct ServiceAvailabilityNotification<'a> {
    pub notification_type: &'static str,
    pub service_references: &'a [ServiceReference],
    #[serde(rename = "_links")]
    pub links: NotificationLinks,
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cat(id: &str) -> CategoryRef {
        CategoryRef {
            href: "http://example.com/cat".into(),
            id: id.into(),
            name: "RNI".into(),
            version: "1".into(),
        }
    }

    #[test]
    fn criteria_combine_with_and() {
        let rni = cat("rni");
        let facts = ServiceFacts {
            ser_instance_id: "s1",
            ser_name: "rnis",
            ser_category: Some(&rni),
            state: ServiceState::Active,
            is_local: true,
        };
        assert!(FilteringCriteria::default().matches(&facts));
        let by_name = FilteringCriteria {
            ser_names: Some(vec!["rnis".into()]),
            states: Some(vec![ServiceState::Active]),
            ..Default::default()
        };
        assert!(by_name.matches(&facts));
        let wrong_state = FilteringCriteria {
            states: Some(vec![ServiceState::Inactive]),
            ..by_name.clone()
        };
        assert!(!wrong_state.matches(&facts));
        let only_remote = FilteringCriteria {
            is_local: Some(false),
            ..Default::default()
        };
        assert!(!only_remote.matches(&facts));
        let by_cat = FilteringCriteria {
            ser_categories: Some(vec![cat("other"), cat("rni")]),
            ..Default::default()
        };
        assert!(by_cat.matches(&facts));
        let by_id = FilteringCriteria {
            ser_instance_ids: Some(vec!["s2".into()]),
            ..Default::default()
        };
        assert!(!by_id.matches(&facts));
    }

    #[test]
    fn selectors_are_mutually_exclusive() {
        let body: SerAvailabilitySubscriptionBody = serde_json::from_value(serde_json::json!({
            "subscriptionType": SER_AVAILABILITY_SUBSCRIPTION_TYPE,
            "callbackReference": "http://127.0.0.1:9/cb",
            "filteringCriteria": {"serNames": ["a"], "serInstanceIds": ["b"]}
        }))
        .unwrap();
        assert!(body
            .validate(AppInstanceId::parse("app").unwrap())
            .unwrap_err()
            .contains("mutually exclusive"));
    }
}
