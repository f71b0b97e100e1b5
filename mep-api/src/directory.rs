//! The platform's directory of application instances: which `{appInstanceId}` an app-scoped Mp1
//! URI may name (see [`crate::auth::AppDirectory`]).

use std::sync::Arc;

use crate::apps::Apps;
use crate::auth::{AppDirectory, Auth};
use crate::model::ids::AppInstanceId;
use crate::registry::Registry;

/// Knows an application instance by what the platform holds for it, read from the in-memory
/// indexes (no store access per request).
pub struct KnownApps {
    pub auth: Arc<Auth>,
    pub apps: Arc<Apps>,
    pub registry: Arc<Registry>,
    /// Every caller is trusted (`--no-auth`): registering a service or a subscription makes an
    /// application instance known.
    pub trusting: bool,
}

impl AppDirectory for KnownApps {
    fn knows(&self, app: &AppInstanceId) -> bool {
        self.auth.credentials().by_app(app).is_some()
            || self.apps.is_configured_or_registered(app)
            || (self.trusting
                && (self.registry.holds_anything_of(app)
                    || self.apps.has_termination_subscriptions(app)))
    }

    fn admits_new_registrants(&self) -> bool {
        self.trusting
    }
}
