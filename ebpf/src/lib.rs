//! mep's XDP traffic-steering data plane (`--dataplane xdp`): loads the programs of
//! `mep-ebpf-ebpf` with aya, compiles the ACTIVE traffic rules into double-buffered BPF maps and
//! implements [`mep_dataplane::DataPlane`] on them.
//!
//! - [`XdpDataPlane`] is the data plane; [`XdpConfig`] configures it.
//! - [`status_text`] / [`read_status`] read what a running data plane pinned (for
//!   `mep xdp status`).

mod attach;
mod bpffs;
mod compile;
mod config;
mod error;
mod generation;
mod plane;
mod slots;
mod status;
mod testrun;

pub use attach::{Attached, AttachedMode};
pub use compile::CapacityError;
pub use config::{AttachMode, XdpConfig, DEFAULT_PIN_PATH};
pub use error::XdpError;
pub use plane::{TestProgram, TestRunOutput, XdpDataPlane};
pub use status::{read_status, status_text, InterfaceStatus, RuleCounters, XdpStatus};
