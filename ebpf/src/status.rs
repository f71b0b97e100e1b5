//! `mep xdp status`: what a running data plane left in its pinned maps (interfaces, attach mode,
//! per-rule counters), readable from another process.

use std::fmt;
use std::path::Path;

use aya::maps::{Array, Map, MapData, PerCpuArray};
use mep_ebpf_common::{
    Counter, IfaceInfo, RuleId, DELIVERY_NO_ROUTE, DELIVERY_TC_FAILED, DELIVERY_TC_REDIRECT,
    DELIVERY_XDP_REDIRECT, MODE_GENERIC, MODE_NATIVE,
};

use crate::error::XdpError;

/// Pin names under the pin path.
pub(crate) const PIN_COUNTERS: &str = "counters";
pub(crate) const PIN_RULE_IDS: &str = "rule_ids";
pub(crate) const PIN_IFACES: &str = "ifaces";
pub(crate) const PIN_DELIVERY: &str = "delivery";
pub(crate) const PIN_DNS_STATS: &str = "dns_stats";

/// Packets and bytes one traffic rule matched since it became ACTIVE.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RuleCounters {
    pub app_instance_id: String,
    pub traffic_rule_id: String,
    pub packets: u64,
    pub bytes: u64,
}

/// An interface the programs are attached to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InterfaceStatus {
    pub name: String,
    pub ifindex: u32,
    /// `native` or `generic`.
    pub mode: &'static str,
}

/// How the packets matched by FORWARD rules left, or why they did not: never silent.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct DeliveryCounters {
    /// Redirected by the XDP program itself (to an interface that takes XDP frames).
    pub xdp_redirect: Counter,
    /// Handed to the TC program and redirected as an skb (a veth target in native mode, or a
    /// next hop whose MAC had to be resolved).
    pub tc_redirect: Counter,
    /// No route to the next hop: passed on to the kernel stack unsteered.
    pub no_route: Counter,
    /// The TC program could not redirect: passed on to the kernel stack.
    pub tc_failed: Counter,
}

impl DeliveryCounters {
    /// Each outcome by its metric label, with what `mep xdp status` calls it.
    pub fn outcomes(&self) -> [(&'static str, &'static str, Counter); 4] {
        [
            ("xdp_redirect", "redirected in XDP", self.xdp_redirect),
            (
                "tc_redirect",
                "redirected in TC (veth, unresolved MAC)",
                self.tc_redirect,
            ),
            (
                "no_route",
                "not delivered: no route (to the stack)",
                self.no_route,
            ),
            (
                "tc_failed",
                "not delivered: TC redirect failed",
                self.tc_failed,
            ),
        ]
    }

    pub(crate) fn read(map: &PerCpuArray<MapData, Counter>) -> Self {
        Self {
            xdp_redirect: slot_counter(map, DELIVERY_XDP_REDIRECT),
            tc_redirect: slot_counter(map, DELIVERY_TC_REDIRECT),
            no_route: slot_counter(map, DELIVERY_NO_ROUTE),
            tc_failed: slot_counter(map, DELIVERY_TC_FAILED),
        }
    }
}

/// What `mep xdp status` shows.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct XdpStatus {
    pub interfaces: Vec<InterfaceStatus>,
    pub rules: Vec<RuleCounters>,
    pub delivery: DeliveryCounters,
    /// DNS queries answered in XDP (`--dns-xdp`) and those for the DNS service passed on.
    pub dns: mep_rules::KernelDnsCounters,
}

fn text(bytes: &[u8]) -> String {
    let end = bytes.iter().position(|b| *b == 0).unwrap_or(bytes.len());
    String::from_utf8_lossy(&bytes[..end]).into_owned()
}

pub(crate) fn mode_name(mode: u32) -> &'static str {
    match mode {
        MODE_NATIVE => "native",
        MODE_GENERIC => "generic",
        _ => "unknown",
    }
}

/// Sums one slot's per-CPU counters.
pub(crate) fn slot_counter(map: &PerCpuArray<MapData, Counter>, slot: u32) -> Counter {
    map.get(&slot, 0)
        .map(|per_cpu| {
            per_cpu.iter().fold(Counter::default(), |acc, c| Counter {
                packets: acc.packets + c.packets,
                bytes: acc.bytes + c.bytes,
            })
        })
        .unwrap_or_default()
}

fn open<T>(pin_path: &Path, name: &'static str) -> Result<T, XdpError>
where
    T: TryFrom<Map, Error = aya::maps::MapError>,
{
    let path = pin_path.join(name);
    if !path.exists() {
        return Err(XdpError::NotRunning(pin_path.display().to_string()));
    }
    let data = MapData::from_pin(&path).map_err(XdpError::map(name))?;
    let map = Map::from_map_data(data).map_err(XdpError::map(name))?;
    T::try_from(map).map_err(XdpError::map(name))
}

/// Reads the status of the data plane pinned at `pin_path` (usually `/sys/fs/bpf/mep`).
pub fn read_status(pin_path: &Path) -> Result<XdpStatus, XdpError> {
    let ifaces: Array<MapData, IfaceInfo> = open(pin_path, PIN_IFACES)?;
    let ids: Array<MapData, RuleId> = open(pin_path, PIN_RULE_IDS)?;
    let counters: PerCpuArray<MapData, Counter> = open(pin_path, PIN_COUNTERS)?;
    let delivery: PerCpuArray<MapData, Counter> = open(pin_path, PIN_DELIVERY)?;
    let delivery = DeliveryCounters::read(&delivery);
    let dns_stats: PerCpuArray<MapData, Counter> = open(pin_path, PIN_DNS_STATS)?;
    let dns = crate::dns::counters(&dns_stats);
    let interfaces = ifaces
        .iter()
        .filter_map(Result::ok)
        .filter(|i| i.ifindex != 0)
        .map(|i| InterfaceStatus {
            name: text(&i.name),
            ifindex: i.ifindex,
            mode: mode_name(i.mode),
        })
        .collect();
    let mut rules: Vec<RuleCounters> = ids
        .iter()
        .enumerate()
        .filter_map(|(slot, id)| Some((slot as u32, id.ok()?)))
        .filter(|(_, id)| id.used != 0)
        .map(|(slot, id)| {
            let c = slot_counter(&counters, slot);
            RuleCounters {
                app_instance_id: text(&id.app),
                traffic_rule_id: text(&id.rule),
                packets: c.packets,
                bytes: c.bytes,
            }
        })
        .collect();
    rules.sort_by(|a, b| {
        (&a.app_instance_id, &a.traffic_rule_id).cmp(&(&b.app_instance_id, &b.traffic_rule_id))
    });
    Ok(XdpStatus {
        interfaces,
        rules,
        delivery,
        dns,
    })
}

/// The text `mep xdp status` prints for the data plane pinned at `pin_path`.
pub fn status_text(pin_path: &Path) -> Result<String, XdpError> {
    Ok(read_status(pin_path)?.to_string())
}

impl fmt::Display for XdpStatus {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(f, "{:<16} {:>8} {:<8}", "INTERFACE", "IFINDEX", "MODE")?;
        for i in &self.interfaces {
            writeln!(f, "{:<16} {:>8} {:<8}", i.name, i.ifindex, i.mode)?;
        }
        if self.interfaces.is_empty() {
            writeln!(f, "(not attached to any interface)")?;
        }
        writeln!(f)?;
        writeln!(
            f,
            "{:<38} {:<24} {:>14} {:>16}",
            "APP INSTANCE", "TRAFFIC RULE", "PACKETS", "BYTES"
        )?;
        for r in &self.rules {
            writeln!(
                f,
                "{:<38} {:<24} {:>14} {:>16}",
                r.app_instance_id, r.traffic_rule_id, r.packets, r.bytes
            )?;
        }
        if self.rules.is_empty() {
            writeln!(f, "(no active traffic rules)")?;
        }
        writeln!(f)?;
        writeln!(
            f,
            "{:<40} {:>14} {:>16}",
            "FORWARDED PACKETS", "PACKETS", "BYTES"
        )?;
        for (_, what, c) in self.delivery.outcomes() {
            writeln!(f, "{:<40} {:>14} {:>16}", what, c.packets, c.bytes)?;
        }
        writeln!(f)?;
        writeln!(f, "{:<40} {:>14}", "DNS QUERIES (--dns-xdp)", "PACKETS")?;
        writeln!(f, "{:<40} {:>14}", "answered in XDP", self.dns.answered)?;
        writeln!(
            f,
            "{:<40} {:>14}",
            "passed to the DNS server", self.dns.passed
        )?;
        Ok(())
    }
}
