//! Attaching the programs to the configured interfaces: XDP native with generic fallback, and the
//! TC duplicate program on ingress. Links belong to the loaded `Ebpf`; dropping it detaches them.

use aya::programs::{tc, SchedClassifier, TcAttachType, Xdp, XdpMode};
use aya::Ebpf;
use mep_ebpf_common::{MODE_GENERIC, MODE_NATIVE};

use crate::config::AttachMode;
use crate::error::XdpError;

pub(crate) const XDP_PROGRAM: &str = "mep_xdp";
pub(crate) const PASS_PROGRAM: &str = "mep_xdp_pass";
pub(crate) const DUP_PROGRAM: &str = "mep_dup";

/// How the XDP program ended up attached.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AttachedMode {
    /// In the driver.
    Native,
    /// In the kernel stack (`skb` mode): the driver has no XDP support.
    Generic,
}

impl AttachedMode {
    pub(crate) fn code(self) -> u32 {
        match self {
            Self::Native => MODE_NATIVE,
            Self::Generic => MODE_GENERIC,
        }
    }
}

impl std::fmt::Display for AttachedMode {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Self::Native => "native",
            Self::Generic => "generic",
        })
    }
}

/// An interface the programs run on.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Attached {
    pub iface: String,
    pub ifindex: u32,
    pub mode: AttachedMode,
}

pub(crate) fn ifindex(iface: &str) -> Result<u32, XdpError> {
    let c = std::ffi::CString::new(iface).map_err(|_| XdpError::Attach {
        iface: iface.to_owned(),
        reason: "invalid interface name".into(),
    })?;
    // SAFETY: `c` is a valid C string.
    let idx = unsafe { libc::if_nametoindex(c.as_ptr()) };
    if idx == 0 {
        return Err(XdpError::Attach {
            iface: iface.to_owned(),
            reason: "no such interface".into(),
        });
    }
    Ok(idx)
}

pub(crate) fn attach(ebpf: &mut Ebpf, iface: &str, mode: AttachMode) -> Result<Attached, XdpError> {
    let ifindex = ifindex(iface)?;
    let fail = |reason: String| XdpError::Attach {
        iface: iface.to_owned(),
        reason,
    };
    let xdp: &mut Xdp = ebpf
        .program_mut(XDP_PROGRAM)
        .ok_or_else(|| fail("program missing".into()))?
        .try_into()
        .map_err(|e: aya::programs::ProgramError| fail(e.to_string()))?;
    let native = if mode == AttachMode::Generic {
        Err("generic mode configured".to_string())
    } else {
        xdp.attach_to_if_index(ifindex, XdpMode::Driver)
            .map_err(|e| e.to_string())
    };
    let mode_used = match native {
        Ok(_) => AttachedMode::Native,
        Err(e) if mode == AttachMode::Native => return Err(fail(format!("native XDP: {e}"))),
        Err(e) => {
            if mode == AttachMode::Auto {
                tracing::warn!(iface, error = %e, "native XDP unavailable, attaching in generic mode");
            }
            xdp.attach_to_if_index(ifindex, XdpMode::Skb)
                .map_err(|e| fail(format!("generic XDP: {e}")))?;
            AttachedMode::Generic
        }
    };
    let dup: &mut SchedClassifier = ebpf
        .program_mut(DUP_PROGRAM)
        .ok_or_else(|| fail("program missing".into()))?
        .try_into()
        .map_err(|e: aya::programs::ProgramError| fail(e.to_string()))?;
    if dup.attach(iface, TcAttachType::Ingress).is_err() {
        // Kernels before TCX (6.6) need a clsact qdisc first; it may already exist.
        let _ = tc::qdisc_add_clsact(iface);
        dup.attach(iface, TcAttachType::Ingress)
            .map_err(|e| fail(format!("TC ingress: {e}")))?;
    }
    Ok(Attached {
        iface: iface.to_owned(),
        ifindex,
        mode: mode_used,
    })
}
