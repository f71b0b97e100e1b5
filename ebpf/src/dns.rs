//! Kernel DNS answers (`--dns-xdp`): the maps the XDP program answers from, kept equal to the
//! local answers of the published snapshot. Each snapshot derived from the one the maps hold
//! costs the names it touched (one map write per name and type); any other one is compared name
//! by name. The records come from the DNS server's own writer
//! ([`mep_dns::local_answer_records`]), so the kernel and userspace answers are the same bytes.

use std::collections::HashSet;
use std::net::IpAddr;
use std::sync::Arc;

use aya::maps::{Array, HashMap, MapData, PerCpuArray};
use aya::Ebpf;
use mep_ebpf_common::{
    Counter, DnsConfig, DnsKey, DnsRecords, DnsShortKey, DNS_ANSWERED, DNS_NAME_MAX, DNS_PASSED,
    DNS_RECORDS_CAP, DNS_RECORDS_MAX, DNS_SHORT_NAME_MAX,
};
use mep_rules::{DnsAnswer, KernelDnsCounters, Snapshot};

use crate::compile::addr_words;
use crate::error::XdpError;
use crate::generation::{absent, take};
use crate::status::slot_counter;

const TYPE_A: u16 = 1;
const TYPE_AAAA: u16 = 28;

/// What the kernel needs to answer as the DNS server does.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct XdpDnsConfig {
    /// The DNS server's UDP port.
    pub port: u16,
    /// The addresses queries are sent to. Empty: every address of the attached interfaces (for
    /// a server listening on the unspecified address).
    pub addresses: Vec<IpAddr>,
    /// The server's EDNS UDP payload size (its OPT record announces it).
    pub udp_payload: u16,
    /// The TTL of answers whose rule has none.
    pub default_ttl: u32,
}

/// The DNS maps and what they hold.
pub(crate) struct KernelDns {
    config: XdpDnsConfig,
    cfg: Array<MapData, DnsConfig>,
    answers: HashMap<MapData, DnsKey, DnsRecords>,
    /// The answers of names of at most `DNS_SHORT_NAME_MAX` wire bytes (not in `answers`).
    short_answers: HashMap<MapData, DnsShortKey, DnsRecords>,
    /// The snapshot version the answers map holds; None: unknown (compare every name).
    applied: Option<u64>,
    /// The names the answers map holds (either type).
    names: HashSet<Arc<str>>,
}

impl KernelDns {
    /// Takes the maps and fills in the service addresses; answering starts with the first
    /// [`follow`](Self::follow).
    pub(crate) fn load(
        ebpf: &mut Ebpf,
        config: XdpDnsConfig,
        interfaces: &[String],
    ) -> Result<Self, XdpError> {
        let cfg: Array<MapData, DnsConfig> = take(ebpf, "MEP_DNS_CFG")?;
        let answers: HashMap<MapData, DnsKey, DnsRecords> = take(ebpf, "MEP_DNS_ANSWERS")?;
        let short_answers: HashMap<MapData, DnsShortKey, DnsRecords> =
            take(ebpf, "MEP_DNS_ANSWERS_SHORT")?;
        let mut addrs: HashMap<MapData, [u32; 4], u32> = take(ebpf, "MEP_DNS_ADDRS")?;
        let addresses = if config.addresses.is_empty() {
            interface_addresses(interfaces)?
        } else {
            config.addresses.clone()
        };
        for a in &addresses {
            addrs
                .insert(addr_words(*a), 1, 0)
                .map_err(XdpError::map("MEP_DNS_ADDRS"))?;
        }
        tracing::info!(port = config.port, ?addresses, "xdp answers DNS");
        Ok(Self {
            config,
            cfg,
            answers,
            short_answers,
            applied: None,
            names: HashSet::new(),
        })
    }

    /// Brings the answers map to `snapshot`'s local answers and answering on. On failure
    /// answering stays off (every query goes to userspace) until a later call succeeds.
    pub(crate) fn follow(&mut self, snapshot: &Snapshot) {
        if let Err(e) = self.try_follow(snapshot) {
            tracing::error!(error = %e, "kernel DNS answers are off until the next rule change");
            self.applied = None;
            let _ = self.cfg.set(0, DnsConfig::default(), 0);
        }
    }

    fn try_follow(&mut self, snapshot: &Snapshot) -> Result<(), XdpError> {
        let changed = self.applied.and_then(|v| snapshot.dns_changes_since(v));
        match changed {
            Some(names) => {
                for name in names {
                    self.put_name(snapshot, name)?;
                }
            }
            None => {
                let gone: Vec<Arc<str>> = self
                    .names
                    .iter()
                    .filter(|n| snapshot.dns_answers(n).is_none())
                    .cloned()
                    .collect();
                for name in gone.iter().chain(snapshot.dns_names()) {
                    self.put_name(snapshot, name)?;
                }
            }
        }
        self.applied = Some(snapshot.version);
        let on = DnsConfig {
            enabled: 1,
            port: self.config.port,
            udp_payload: self.config.udp_payload,
        };
        self.cfg.set(0, on, 0).map_err(XdpError::map("MEP_DNS_CFG"))
    }

    /// Writes (or removes) both answers of `name`.
    fn put_name(&mut self, snapshot: &Snapshot, name: &Arc<str>) -> Result<(), XdpError> {
        let answers = snapshot.dns_answers(name).unwrap_or_default();
        let Some(wire) = wire_name(name) else {
            // Userspace does not answer it locally either (or the kernel cannot hold it).
            return Ok(());
        };
        let short = wire_len(&wire) <= DNS_SHORT_NAME_MAX;
        let mut held = false;
        for qtype in [TYPE_A, TYPE_AAAA] {
            let value = records(answers, qtype, self.config.default_ttl);
            held |= value.is_some();
            if short {
                let mut name = [0u8; DNS_SHORT_NAME_MAX];
                name.copy_from_slice(&wire[..DNS_SHORT_NAME_MAX]);
                let key = DnsShortKey { name, qtype };
                put(&mut self.short_answers, key, value, "MEP_DNS_ANSWERS_SHORT")?;
            } else {
                let key = DnsKey { name: wire, qtype };
                put(&mut self.answers, key, value, "MEP_DNS_ANSWERS")?;
            }
        }
        if held {
            self.names.insert(Arc::clone(name));
        } else {
            self.names.remove(name);
        }
        Ok(())
    }
}

/// Queries the kernel answered and passed, summed over CPUs.
pub(crate) fn counters(stats: &PerCpuArray<MapData, Counter>) -> KernelDnsCounters {
    KernelDnsCounters {
        answered: slot_counter(stats, DNS_ANSWERED).packets,
        passed: slot_counter(stats, DNS_PASSED).packets,
    }
}

/// Inserts `value` under `key`, or removes the key (absent or not) when there is none.
fn put<K: aya::Pod>(
    map: &mut HashMap<MapData, K, DnsRecords>,
    key: K,
    value: Option<DnsRecords>,
    name: &'static str,
) -> Result<(), XdpError> {
    match value {
        Some(value) => map.insert(key, value, 0).map_err(XdpError::map(name)),
        None => match map.remove(&key) {
            Ok(()) => Ok(()),
            Err(e) if absent(&e) => Ok(()),
            Err(e) => Err(XdpError::map(name)(e)),
        },
    }
}

/// The length of a wire name from [`wire_name`]: through its root label, the first zero.
fn wire_len(wire: &[u8; DNS_NAME_MAX]) -> usize {
    wire.iter()
        .position(|&b| b == 0)
        .map_or(DNS_NAME_MAX, |i| i + 1)
}

/// The lower-case wire form of a rule name, zero-padded; None for names the server never
/// answers locally (labels of other than letters, digits and hyphens) or the kernel cannot
/// hold.
fn wire_name(name: &str) -> Option<[u8; DNS_NAME_MAX]> {
    let mut out = [0u8; DNS_NAME_MAX];
    let mut at = 0;
    for label in name.split('.') {
        let ok = !label.is_empty()
            && label.len() < 64
            && label
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'-');
        // The label, and room for the root label after it.
        if !ok || at + 1 + label.len() + 1 > DNS_NAME_MAX {
            return None;
        }
        out[at] = label.len() as u8;
        for (o, b) in out[at + 1..].iter_mut().zip(label.bytes()) {
            *o = b.to_ascii_lowercase();
        }
        at += 1 + label.len();
    }
    Some(out)
}

fn records(answers: &[DnsAnswer], qtype: u16, default_ttl: u32) -> Option<DnsRecords> {
    let (count, bytes) =
        mep_dns::local_answer_records(answers, qtype, default_ttl, DNS_RECORDS_MAX)?;
    let mut data = [0u8; DNS_RECORDS_CAP];
    data[..bytes.len()].copy_from_slice(&bytes);
    Some(DnsRecords {
        len: bytes.len() as u16,
        count,
        sum: u32::from(ones_complement_sum(&bytes)),
        data,
    })
}

/// The folded one's-complement sum of `bytes` as big-endian 16-bit words (RFC 1071).
pub fn ones_complement_sum(bytes: &[u8]) -> u16 {
    let mut sum: u32 = bytes
        .chunks(2)
        .map(|c| u32::from(u16::from_be_bytes([c[0], *c.get(1).unwrap_or(&0)])))
        .sum();
    while sum > 0xffff {
        sum = (sum & 0xffff) + (sum >> 16);
    }
    sum as u16
}

/// The IPv4 and IPv6 addresses of `interfaces` (in this network namespace).
fn interface_addresses(interfaces: &[String]) -> Result<Vec<IpAddr>, XdpError> {
    let mut out = Vec::new();
    let mut list: *mut libc::ifaddrs = std::ptr::null_mut();
    // SAFETY: getifaddrs fills `list` with a list we free below.
    if unsafe { libc::getifaddrs(&mut list) } != 0 {
        return Err(XdpError::Io(std::io::Error::last_os_error()));
    }
    let mut cur = list;
    while !cur.is_null() {
        // SAFETY: a node of the list getifaddrs returned, alive until freeifaddrs.
        let ifa = unsafe { &*cur };
        cur = ifa.ifa_next;
        if ifa.ifa_addr.is_null() || ifa.ifa_name.is_null() {
            continue;
        }
        // SAFETY: a NUL-terminated interface name.
        let name = unsafe { std::ffi::CStr::from_ptr(ifa.ifa_name) }.to_string_lossy();
        if !interfaces.iter().any(|i| *i == name) {
            continue;
        }
        // SAFETY: the family says which sockaddr this is.
        match i32::from(unsafe { (*ifa.ifa_addr).sa_family }) {
            libc::AF_INET => {
                let sa = unsafe { &*(ifa.ifa_addr as *const libc::sockaddr_in) };
                out.push(IpAddr::from(sa.sin_addr.s_addr.to_ne_bytes()));
            }
            libc::AF_INET6 => {
                let sa = unsafe { &*(ifa.ifa_addr as *const libc::sockaddr_in6) };
                out.push(IpAddr::from(sa.sin6_addr.s6_addr));
            }
            _ => {}
        }
    }
    // SAFETY: the list getifaddrs returned.
    unsafe { libc::freeifaddrs(list) };
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn wire_names_are_lower_case_and_bounded() {
        let w = wire_name("Edge.example").expect("valid");
        assert_eq!(&w[..14], b"\x04edge\x07example\x00");
        assert!(w[14..].iter().all(|b| *b == 0));
        assert_eq!(wire_name("_sip.example"), None);
        assert_eq!(wire_name(&"a".repeat(64)), None);
        // Wire lengths 128 (the most the kernel key holds) and 129.
        let longest = format!("{}.{}", "a".repeat(63), "b".repeat(62));
        assert_eq!(wire_name(&longest).expect("fits")[127], 0);
        let longer = format!("{}.{}", "a".repeat(63), "b".repeat(63));
        assert_eq!(wire_name(&longer), None);
    }

    #[test]
    fn checksum_sums_words_and_pads_odd_lengths() {
        assert_eq!(ones_complement_sum(&[0x12, 0x34, 0x56]), 0x1234 + 0x5600);
        assert_eq!(ones_complement_sum(&[0xff, 0xff, 0x00, 0x02]), 0x0002);
    }
}
