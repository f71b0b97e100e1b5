//! The `DataPlane` trait: what the control plane calls for every rule change, before the change is
//! committed. Unlike EdgeGallery's interface it receives whole rules, `dstInterface` and `state`
//! included.

use async_trait::async_trait;

use crate::dns::DnsRule;
use crate::snapshot::Snapshot;
use crate::traffic::{CompiledFilter, RuleError, TrafficRule};

/// The application instance a rule belongs to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AppInfo {
    pub app_instance_id: String,
    pub app_name: String,
}

/// Packets and bytes one ACTIVE traffic rule matched, for data planes that count.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "camelCase")]
pub struct RuleCounter {
    pub app_instance_id: String,
    pub traffic_rule_id: String,
    pub packets: u64,
    pub bytes: u64,
}

/// Why a data plane did not apply a change.
#[derive(Debug, Clone, thiserror::Error)]
pub enum DataPlaneError {
    /// The rule is valid MEC 011 but this data plane cannot honour it.
    #[error("the {plane} data plane cannot apply this rule: {reason}")]
    Unsupported { plane: &'static str, reason: String },
    /// The data plane failed (unreachable, refused, kernel error); the change may be retried.
    #[error("the {plane} data plane failed: {reason}")]
    Failed { plane: &'static str, reason: String },
}

/// A data plane. Implementations are selected by name in the configuration (see the factory in
/// the `mep` binary); adding one is a new module plus one line there.
#[async_trait]
pub trait DataPlane: Send + Sync + 'static {
    /// The configuration name of this kind (`none`, `upf-http`, `xdp`).
    fn kind(&self) -> &'static str;

    /// Checks, at configuration time, that this data plane can honour a rule.
    fn check_traffic_rule(
        &self,
        _rule: &TrafficRule,
        _filters: &[CompiledFilter],
    ) -> Result<(), RuleError> {
        Ok(())
    }

    /// Starts the data plane and brings it in line with `snapshot` (every ACTIVE rule).
    async fn init(&self, snapshot: &Snapshot) -> Result<(), DataPlaneError>;

    async fn add_traffic_rule(
        &self,
        app: &AppInfo,
        rule: &TrafficRule,
    ) -> Result<(), DataPlaneError>;
    async fn set_traffic_rule(
        &self,
        app: &AppInfo,
        rule: &TrafficRule,
    ) -> Result<(), DataPlaneError>;
    async fn delete_traffic_rule(
        &self,
        app: &AppInfo,
        rule: &TrafficRule,
    ) -> Result<(), DataPlaneError>;

    async fn add_dns_rule(&self, app: &AppInfo, rule: &DnsRule) -> Result<(), DataPlaneError>;
    async fn set_dns_rule(&self, app: &AppInfo, rule: &DnsRule) -> Result<(), DataPlaneError>;
    async fn delete_dns_rule(&self, app: &AppInfo, rule: &DnsRule) -> Result<(), DataPlaneError>;

    /// Replaces everything the data plane holds with `snapshot`.
    async fn resync(&self, snapshot: &Snapshot) -> Result<(), DataPlaneError>;

    /// Per-rule counters, where the data plane keeps them (the XDP data plane does).
    fn rule_counters(&self) -> Vec<RuleCounter> {
        Vec::new()
    }

    /// Releases what the data plane holds (detaches programs, closes connections).
    async fn shutdown(&self) {}
}
