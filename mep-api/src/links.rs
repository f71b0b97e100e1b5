//! The absolute URIs of mep's Mp1 resources. Every `_links` href and `Location` header is built here,
//! from the configured API root, so they always dereference.

use utoipa_axum::router::OpenApiRouter;

/// Path prefix of the service management API (EdgeGallery-compatible).
pub const SERVICE_MGMT: &str = "/mep/mec_service_mgmt/v1";

/// Every prefix the service management API answers under: EdgeGallery's `/mep` root and the
/// bare root that ETSI's conformance tooling uses by default, each as `v1` and as `v2` (where
/// MEC 011 v3.x clients look for it). Links always name [`SERVICE_MGMT`].
pub const SERVICE_MGMT_PREFIXES: [&str; 4] = [
    SERVICE_MGMT,
    "/mep/mec_service_mgmt/v2",
    "/mec_service_mgmt/v1",
    "/mec_service_mgmt/v2",
];

/// Path prefix of the application support API.
pub const APP_SUPPORT: &str = "/mep/mec_app_support/v1";

/// Every prefix the application support API answers under (see [`SERVICE_MGMT_PREFIXES`]).
pub const APP_SUPPORT_PREFIXES: [&str; 4] = [
    APP_SUPPORT,
    "/mep/mec_app_support/v2",
    "/mec_app_support/v1",
    "/mec_app_support/v2",
];

/// What an API's tag says about where it is served: `what` under the canonical prefix, and the
/// aliases.
pub fn served_under(what: &str, prefixes: &[&str]) -> String {
    match prefixes.split_first() {
        Some((canonical, aliases)) if !aliases.is_empty() => format!(
            "{what} under {canonical}; also served under {}.",
            aliases.join(", ")
        ),
        Some((canonical, _)) => format!("{what} under {canonical}."),
        None => format!("{what}."),
    }
}

/// `api` nested under every one of `prefixes`; the document names it under the first, the
/// canonical one (the others are aliases, listed in the API's tag).
pub fn nest_under(prefixes: &[&str], api: OpenApiRouter) -> OpenApiRouter {
    let Some((canonical, aliases)) = prefixes.split_first() else {
        return api;
    };
    let (routes, _) = api.clone().split_for_parts();
    aliases.iter().fold(
        OpenApiRouter::new().nest(canonical, api),
        |router, alias| {
            router.merge(OpenApiRouter::from(
                axum::Router::new().nest(alias, routes.clone()),
            ))
        },
    )
}

/// Builds resource URIs under an API root such as `https://mep.example:8443`.
#[derive(Debug, Clone)]
pub struct Links {
    root: String,
}

impl Links {
    pub fn new(api_root: &str) -> Self {
        Self {
            root: api_root.trim_end_matches('/').to_owned(),
        }
    }

    pub fn api_root(&self) -> &str {
        &self.root
    }

    pub fn app_service(&self, app: &str, service: &str) -> String {
        format!(
            "{}{SERVICE_MGMT}/applications/{app}/services/{service}",
            self.root
        )
    }

    pub fn liveness(&self, app: &str, service: &str) -> String {
        format!("{}/liveness", self.app_service(app, service))
    }

    pub fn ser_subscriptions(&self, app: &str) -> String {
        format!(
            "{}{SERVICE_MGMT}/applications/{app}/subscriptions",
            self.root
        )
    }

    pub fn ser_subscription(&self, app: &str, subscription: &str) -> String {
        format!("{}/{subscription}", self.ser_subscriptions(app))
    }

    pub fn termination_subscriptions(&self, app: &str) -> String {
        format!(
            "{}{APP_SUPPORT}/applications/{app}/subscriptions",
            self.root
        )
    }

    pub fn termination_subscription(&self, app: &str, subscription: &str) -> String {
        format!("{}/{subscription}", self.termination_subscriptions(app))
    }

    pub fn confirm_termination(&self, app: &str) -> String {
        format!(
            "{}{APP_SUPPORT}/applications/{app}/confirm_termination",
            self.root
        )
    }

    pub fn traffic_rule(&self, app: &str, rule: &str) -> String {
        format!(
            "{}{APP_SUPPORT}/applications/{app}/traffic_rules/{rule}",
            self.root
        )
    }

    pub fn dns_rule(&self, app: &str, rule: &str) -> String {
        format!(
            "{}{APP_SUPPORT}/applications/{app}/dns_rules/{rule}",
            self.root
        )
    }

    pub fn registration(&self, app: &str) -> String {
        format!("{}{APP_SUPPORT}/registrations/{app}", self.root)
    }
}
