//! The `none` data plane: accepts every change and logs it. For hosts where another component
//! steers traffic, and for development.

use async_trait::async_trait;

use crate::dns::DnsRule;
use crate::plane::{AppInfo, DataPlane, DataPlaneError};
use crate::snapshot::Snapshot;
use crate::traffic::TrafficRule;

#[derive(Debug, Default)]
pub struct NoneDataPlane;

#[async_trait]
impl DataPlane for NoneDataPlane {
    fn kind(&self) -> &'static str {
        "none"
    }

    async fn init(&self, snapshot: &Snapshot) -> Result<(), DataPlaneError> {
        tracing::info!(
            traffic_rules = snapshot.traffic_rules.len(),
            dns_names = snapshot.dns_name_count(),
            "none data plane ready"
        );
        Ok(())
    }

    async fn add_traffic_rule(
        &self,
        app: &AppInfo,
        rule: &TrafficRule,
    ) -> Result<(), DataPlaneError> {
        tracing::info!(app = %app.app_instance_id, rule = %rule.traffic_rule_id, "add traffic rule");
        Ok(())
    }

    async fn set_traffic_rule(
        &self,
        app: &AppInfo,
        rule: &TrafficRule,
    ) -> Result<(), DataPlaneError> {
        tracing::info!(app = %app.app_instance_id, rule = %rule.traffic_rule_id, "set traffic rule");
        Ok(())
    }

    async fn delete_traffic_rule(
        &self,
        app: &AppInfo,
        rule: &TrafficRule,
    ) -> Result<(), DataPlaneError> {
        tracing::info!(app = %app.app_instance_id, rule = %rule.traffic_rule_id, "delete traffic rule");
        Ok(())
    }

    async fn add_dns_rule(&self, app: &AppInfo, rule: &DnsRule) -> Result<(), DataPlaneError> {
        tracing::info!(app = %app.app_instance_id, rule = %rule.dns_rule_id, "add DNS rule");
        Ok(())
    }

    async fn set_dns_rule(&self, app: &AppInfo, rule: &DnsRule) -> Result<(), DataPlaneError> {
        tracing::info!(app = %app.app_instance_id, rule = %rule.dns_rule_id, "set DNS rule");
        Ok(())
    }

    async fn delete_dns_rule(&self, app: &AppInfo, rule: &DnsRule) -> Result<(), DataPlaneError> {
        tracing::info!(app = %app.app_instance_id, rule = %rule.dns_rule_id, "delete DNS rule");
        Ok(())
    }

    async fn resync(&self, snapshot: &Snapshot) -> Result<(), DataPlaneError> {
        tracing::info!(version = snapshot.version, "resync");
        Ok(())
    }
}
