//! The path and query parameters of the documented operations, as OpenAPI declares them. The
//! handlers parse these themselves (with the extractors of `crate::http::extract` and the
//! registry's query parser); these types only describe them.

use utoipa::IntoParams;

use crate::model::service::LocalityType;

/// `/applications/{appInstanceId}/...`.
#[derive(IntoParams)]
#[into_params(parameter_in = Path)]
pub struct AppPath {
    /// The application instance the resource belongs to.
    #[param(rename = "appInstanceId", pattern = r"^[A-Za-z0-9._~-]{1,128}$")]
    pub app_instance_id: String,
}

/// `/services/{serviceId}`.
#[derive(IntoParams)]
#[into_params(parameter_in = Path)]
pub struct ServicePath {
    /// The service instance (`serInstanceId`).
    #[param(rename = "serviceId")]
    pub service_id: String,
}

/// `/applications/{appInstanceId}/subscriptions/{subscriptionId}`.
#[derive(IntoParams)]
#[into_params(parameter_in = Path)]
pub struct SubscriptionPath {
    /// The subscription, as its `_links.self` names it.
    #[param(rename = "subscriptionId")]
    pub subscription_id: String,
}

/// `/applications/{appInstanceId}/traffic_rules/{trafficRuleId}`.
#[derive(IntoParams)]
#[into_params(parameter_in = Path)]
pub struct TrafficRulePath {
    #[param(rename = "trafficRuleId")]
    pub traffic_rule_id: String,
}

/// `/applications/{appInstanceId}/dns_rules/{dnsRuleId}`.
#[derive(IntoParams)]
#[into_params(parameter_in = Path)]
pub struct DnsRulePath {
    #[param(rename = "dnsRuleId")]
    pub dns_rule_id: String,
}

/// `/.../{taskId}` of an Mm5 task.
#[derive(IntoParams)]
#[into_params(parameter_in = Path)]
pub struct TaskPath {
    #[param(rename = "taskId")]
    pub task_id: String,
}

/// `If-Match` of a conditional update: 412 when the resource's `ETag` differs.
#[derive(IntoParams)]
#[into_params(parameter_in = Header)]
pub struct IfMatchHeader {
    /// The `ETag` the client last read; absent means unconditional.
    #[param(rename = "If-Match")]
    pub if_match: Option<String>,
}

/// The service discovery filters (MEC 011 clause 8.2.3.3.1); lists are comma-separated. At most
/// one of `ser_instance_id`, `ser_name` and `ser_category_id` may be given.
#[derive(IntoParams)]
#[into_params(parameter_in = Query)]
pub struct DiscoveryFilters {
    pub ser_instance_id: Option<Vec<String>>,
    pub ser_name: Option<Vec<String>>,
    pub ser_category_id: Option<String>,
    pub consumed_local_only: Option<bool>,
    pub is_local: Option<bool>,
    /// Inline: a parameter's schema reference would not bring the schema into the document.
    #[param(inline)]
    pub scope_of_locality: Option<LocalityType>,
}

/// The form of a client credentials token request (RFC 6749 4.4.2). The client authenticates
/// with HTTP Basic or with `client_id` and `client_secret`, not both.
#[derive(utoipa::ToSchema)]
#[schema(as = TokenRequest)]
pub struct TokenRequestForm {
    #[schema(pattern = "^client_credentials$")]
    pub grant_type: String,
    pub client_id: Option<String>,
    pub client_secret: Option<String>,
}
