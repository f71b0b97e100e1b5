//! The rule model of mep (MEC 011 traffic rules and DNS rules), the immutable [`Snapshot`] of every
//! ACTIVE rule that the control plane publishes after each committed change (through a
//! [`SnapshotPublisher`]; readers hold a [`SnapshotReader`]), and the [`DataPlane`] trait that
//! receives every task's [`RuleChange`]s before they are committed, with the `none` data plane.
//!
//! A lean crate on purpose: the DNS server and the data planes depend on it, and on nothing of
//! the control plane's.
//!
//! The wire types keep the spec's JSON names so that the control plane stores and returns them as
//! they came; [`TrafficRule::compile`] and [`DnsRule::validate`] turn them into the checked forms
//! that data planes and the DNS server use.

// Input and I/O paths never unwrap; tests may.
#![cfg_attr(not(test), warn(clippy::unwrap_used))]

mod dns;
mod plane;
mod snapshot;
mod traffic;

pub mod none;

pub use dns::{DnsAnswer, DnsRule, IpAddressType};
pub use plane::{
    AppInfo, ApplyError, DataPlane, DataPlaneError, ForwardOutcome, KernelDnsCounters, RuleChange,
    RuleCounter,
};
pub use snapshot::{ActiveDnsRule, ActiveTrafficRule, Snapshot, SnapshotPublisher, SnapshotReader};
pub use traffic::{
    Action, CompiledFilter, DestinationInterface, FilterType, InterfaceType, IpPrefix, PortRange,
    RuleError, TrafficFilter, TrafficRule, TunnelInfo, TunnelType,
};

use serde::{Deserialize, Serialize};

/// `state` of a traffic or DNS rule.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum RuleState {
    #[default]
    Active,
    Inactive,
}
