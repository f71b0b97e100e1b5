//! The `none` data plane: accepts every change and logs it. For hosts where another component
//! steers traffic, and for development.

use async_trait::async_trait;

use crate::plane::{AppInfo, ApplyError, DataPlane, DataPlaneError, RuleChange};
use crate::snapshot::Snapshot;

#[derive(Debug, Default)]
pub struct NoneDataPlane;

#[async_trait]
impl DataPlane for NoneDataPlane {
    fn kind(&self) -> &'static str {
        "none"
    }

    async fn init(&self, snapshot: &Snapshot) -> Result<(), DataPlaneError> {
        tracing::info!(
            traffic_rules = snapshot.traffic_rule_count(),
            dns_names = snapshot.dns_name_count(),
            "none data plane ready"
        );
        Ok(())
    }

    async fn apply(&self, app: &AppInfo, changes: &[RuleChange]) -> Result<(), ApplyError> {
        for change in changes {
            tracing::info!(app = %app.app_instance_id, rule = change.rule_id(), ?change, "rule change");
        }
        Ok(())
    }

    async fn resync(&self, snapshot: &Snapshot) -> Result<(), DataPlaneError> {
        tracing::info!(version = snapshot.version, "resync");
        Ok(())
    }
}
