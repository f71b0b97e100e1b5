//! Configuration of the XDP data plane.

use std::path::PathBuf;

/// Where pinned maps live unless configured otherwise (`mep xdp status` reads them there).
pub const DEFAULT_PIN_PATH: &str = "/sys/fs/bpf/mep";

/// How the XDP program is attached.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum AttachMode {
    /// Native (driver) mode, generic (skb) mode where the driver has no XDP support.
    #[default]
    Auto,
    Native,
    Generic,
}

/// Configuration of [`crate::XdpDataPlane`].
#[derive(Debug, Clone)]
pub struct XdpConfig {
    /// Interfaces facing the UPF (N3/N6); may be empty (load only, e.g. for tests).
    pub interfaces: Vec<String>,
    /// bpffs directory for the pinned maps.
    pub pin_path: PathBuf,
    pub mode: AttachMode,
    /// Interfaces besides the attached ones that take native XDP redirects (NICs whose drivers
    /// implement `ndo_xdp_xmit`). Forwarding to any other interface goes through the TC program,
    /// since a native redirect into, say, a veth whose peer runs no XDP program is dropped.
    pub native_targets: Vec<String>,
    /// Answer the DNS server's local answers in the XDP program (`--dns-xdp`); None: off.
    pub dns: Option<crate::dns::XdpDnsConfig>,
}

impl Default for XdpConfig {
    fn default() -> Self {
        Self {
            interfaces: Vec::new(),
            pin_path: PathBuf::from(DEFAULT_PIN_PATH),
            mode: AttachMode::Auto,
            native_targets: Vec::new(),
            dns: None,
        }
    }
}
