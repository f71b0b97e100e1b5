//! mep's XDP traffic-steering data plane (`--dataplane xdp`): loads the programs of
//! `mep-ebpf-ebpf` with aya, keeps the ACTIVE traffic rules in double-buffered BPF maps (updated
//! by what each change touches) and implements [`mep_rules::DataPlane`] on them.
//!
//! - [`XdpDataPlane`] is the data plane; [`XdpConfig`] configures it.
//! - [`status_text`] / [`read_status`] read what a running data plane pinned (for
//!   `mep xdp status`).
//!
//! What a filter matches, per packet (the inner packet for GTP-U traffic):
//! - `srcAddress`/`dstAddress` as CIDRs or ranges, IPv4 and IPv6 (IPv4 is held IPv4-mapped, so an
//!   IPv6 packet from `::ffff:a.b.c.d` counts as IPv4);
//! - ports and port ranges of TCP and UDP, on first fragments only; a port filter never matches
//!   other protocols;
//! - `protocol`; `dSCP` in either family; `tC` (the whole traffic class) on IPv6 only;
//! - tunnel fields (`tag` = TEID, tunnel addresses and ports) on GTP-U G-PDUs only: a filter that
//!   names any of them never matches plain packets.
//!
//! `qCI` is not in packets: rules that use it are refused, as are `dstInterface`s of type TUNNEL
//! (encapsulating into a new tunnel). Among matching rules the lowest `priority` wins, then the
//! snapshot order (app instance id, rule id); no match passes the packet.

// Input and I/O paths never unwrap; tests may.
#![cfg_attr(not(test), warn(clippy::unwrap_used))]

mod attach;
mod bpffs;
mod compile;
mod config;
mod dns;
mod error;
mod generation;
mod layout;
mod plane;
mod status;
mod testrun;

pub use attach::{Attached, AttachedMode};
pub use compile::CapacityError;
pub use config::{AttachMode, XdpConfig, DEFAULT_PIN_PATH};
pub use dns::{ones_complement_sum, XdpDnsConfig};
pub use error::XdpError;
pub use plane::{
    check as check_rule, Occupancy, TestProgram, TestRunOutput, UpdateStats, XdpDataPlane,
};
pub use status::{
    read_status, status_text, DeliveryCounters, InterfaceStatus, RuleCounters, XdpStatus,
};
pub use testrun::run_live_frames;
