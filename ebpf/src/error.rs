//! The loader's error type.

use std::io;

/// Why the XDP data plane could not start or apply a change.
#[derive(Debug, thiserror::Error)]
pub enum XdpError {
    #[error(
        "the xdp data plane needs CAP_BPF and CAP_NET_ADMIN (root, or file capabilities on mep)"
    )]
    MissingCapabilities,
    #[error("bpffs at {path}: {source}")]
    Bpffs { path: String, source: io::Error },
    #[error("loading the eBPF object: {0}")]
    Load(#[from] aya::EbpfError),
    #[error("eBPF program {name}: {source}")]
    Program {
        name: &'static str,
        source: aya::programs::ProgramError,
    },
    #[error("eBPF map {name}: {source}")]
    Map {
        name: &'static str,
        source: aya::maps::MapError,
    },
    #[error("eBPF object has no map {0}")]
    MissingMap(&'static str),
    #[error("pinning {path}: {source}")]
    Pin {
        path: String,
        source: aya::pin::PinError,
    },
    #[error("interface {iface}: {reason}")]
    Attach { iface: String, reason: String },
    #[error(transparent)]
    Capacity(#[from] crate::compile::CapacityError),
    #[error("all {0} rule slots are in use")]
    SlotsFull(u32),
    #[error("{0}")]
    Io(#[from] io::Error),
    #[error("the xdp data plane was shut down")]
    Shutdown,
    #[error("no xdp data plane is running (nothing pinned at {0})")]
    NotRunning(String),
}

impl XdpError {
    pub(crate) fn map(name: &'static str) -> impl FnOnce(aya::maps::MapError) -> Self {
        move |source| Self::Map { name, source }
    }

    pub(crate) fn program(name: &'static str) -> impl FnOnce(aya::programs::ProgramError) -> Self {
        move |source| Self::Program { name, source }
    }
}
