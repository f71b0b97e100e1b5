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

/// How many forwarded packets left one way (or were not delivered for one reason), for data
/// planes that forward packets themselves.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ForwardOutcome {
    /// `xdp_redirect`, `tc_redirect`, `no_route`, `tc_failed`, ...
    pub outcome: &'static str,
    pub packets: u64,
    pub bytes: u64,
}

/// DNS queries a data plane answered itself, and queries for the DNS service it left to the
/// DNS server.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct KernelDnsCounters {
    pub answered: u64,
    pub passed: u64,
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

/// One change of one rule, as a task hands it to the data plane. Only ACTIVE rules reach a data
/// plane: a rule switched INACTIVE is a removal, one switched ACTIVE an addition.
#[derive(Debug, Clone, PartialEq)]
pub enum RuleChange {
    AddTraffic(TrafficRule),
    /// An ACTIVE traffic rule changed; the data plane holds `old`.
    UpdateTraffic {
        old: TrafficRule,
        new: TrafficRule,
    },
    RemoveTraffic(TrafficRule),
    AddDns(DnsRule),
    /// An ACTIVE DNS rule changed; the data plane holds `old`.
    UpdateDns {
        old: DnsRule,
        new: DnsRule,
    },
    RemoveDns(DnsRule),
}

impl RuleChange {
    /// The change that undoes this one.
    pub fn inverse(&self) -> RuleChange {
        match self {
            RuleChange::AddTraffic(r) => RuleChange::RemoveTraffic(r.clone()),
            RuleChange::RemoveTraffic(r) => RuleChange::AddTraffic(r.clone()),
            RuleChange::UpdateTraffic { old, new } => RuleChange::UpdateTraffic {
                old: new.clone(),
                new: old.clone(),
            },
            RuleChange::AddDns(r) => RuleChange::RemoveDns(r.clone()),
            RuleChange::RemoveDns(r) => RuleChange::AddDns(r.clone()),
            RuleChange::UpdateDns { old, new } => RuleChange::UpdateDns {
                old: new.clone(),
                new: old.clone(),
            },
        }
    }

    /// The traffic rule the data plane holds after this change (`None`: it holds none under
    /// this id, or the change is of a DNS rule).
    pub fn traffic_after(&self) -> Option<&TrafficRule> {
        match self {
            RuleChange::AddTraffic(r) | RuleChange::UpdateTraffic { new: r, .. } => Some(r),
            _ => None,
        }
    }

    /// The id of the rule changed.
    pub fn rule_id(&self) -> &str {
        match self {
            RuleChange::AddTraffic(r) | RuleChange::RemoveTraffic(r) => &r.traffic_rule_id,
            RuleChange::UpdateTraffic { new, .. } => &new.traffic_rule_id,
            RuleChange::AddDns(r) | RuleChange::RemoveDns(r) => &r.dns_rule_id,
            RuleChange::UpdateDns { new, .. } => &new.dns_rule_id,
        }
    }
}

/// How a batch of changes failed: the first `applied` of them were applied (and must be taken
/// back by the caller), the next one failed with `error`, the rest were not tried.
#[derive(Debug, Clone, thiserror::Error)]
#[error("{error} (after {applied} of the changes were applied)")]
pub struct ApplyError {
    pub applied: usize,
    pub error: DataPlaneError,
}

impl ApplyError {
    /// A failure before anything was applied.
    pub fn nothing_applied(error: DataPlaneError) -> Self {
        Self { applied: 0, error }
    }
}

/// A data plane. Implementations are selected by name in the configuration (see the factory in
/// the `mep` binary); adding one is a new module plus one arm there.
#[async_trait]
pub trait DataPlane: Send + Sync + 'static {
    /// The configuration name of this kind (`none`, `upf-http`, `xdp`).
    fn kind(&self) -> &'static str;

    /// Whether every node of a site drives this one data plane (an external controller) rather
    /// than a data plane of its own. On a store shared by several nodes, a change then reaches
    /// it once, from the node that makes the change, and only the site's leader brings it in
    /// line with the committed rules.
    fn shared_by_site(&self) -> bool {
        false
    }

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

    /// Applies one task's changes of `app`'s rules, in order (DNS rules first). A data plane
    /// that can apply them as one step (the xdp one) does, and then reports `applied: 0` on
    /// failure; one that applies them one by one reports how far it got.
    async fn apply(&self, app: &AppInfo, changes: &[RuleChange]) -> Result<(), ApplyError>;

    /// Replaces everything the data plane holds with `snapshot`.
    async fn resync(&self, snapshot: &Snapshot) -> Result<(), DataPlaneError>;

    /// Per-rule counters, where the data plane keeps them (the xdp one does).
    fn counters(&self) -> Vec<RuleCounter> {
        Vec::new()
    }

    /// How forwarded packets left and which were not delivered, where the data plane forwards.
    fn forward_outcomes(&self) -> Vec<ForwardOutcome> {
        Vec::new()
    }

    /// Called after `snapshot` was published, in publication order: a data plane that keeps a
    /// copy of the local DNS answers (the xdp one, answering in the kernel) follows it here.
    fn snapshot_published(&self, _snapshot: &Snapshot) {}

    /// Queries answered in the data plane itself, where it answers DNS.
    fn dns_answers(&self) -> Option<KernelDnsCounters> {
        None
    }

    /// Releases what the data plane holds (detaches programs, closes connections).
    async fn shutdown(&self) {}
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{Action, FilterType, RuleState, TrafficFilter};

    fn traffic(id: &str, priority: u32) -> TrafficRule {
        TrafficRule {
            traffic_rule_id: id.into(),
            filter_type: FilterType::Flow,
            priority,
            traffic_filter: vec![TrafficFilter::default()],
            action: Action::Drop,
            dst_interface: vec![],
            state: RuleState::Active,
        }
    }

    #[test]
    fn inverses_undo() {
        let (a, b) = (traffic("t", 1), traffic("t", 2));
        let update = RuleChange::UpdateTraffic {
            old: a.clone(),
            new: b.clone(),
        };
        assert_eq!(
            update.inverse(),
            RuleChange::UpdateTraffic {
                old: b,
                new: a.clone()
            }
        );
        assert_eq!(update.inverse().inverse(), update);
        assert_eq!(
            RuleChange::AddTraffic(a.clone()).inverse(),
            RuleChange::RemoveTraffic(a.clone())
        );
        assert_eq!(RuleChange::RemoveTraffic(a.clone()).traffic_after(), None);
        assert_eq!(RuleChange::AddTraffic(a.clone()).traffic_after(), Some(&a));
        assert_eq!(update.rule_id(), "t");
    }
}
