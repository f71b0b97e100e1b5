//! Shared helpers of the XDP tests (those of `mep-ebpf` and the end-to-end ones of `mep-tests`):
//! root check, a data plane with its own pin path, rules from JSON, crafted packets
//! (Ethernet/VLAN, IPv4/IPv6, UDP/TCP, GTP-U) and network namespaces.

pub mod topology;

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::process::Command;
use std::sync::atomic::{AtomicU32, Ordering};

use mep_ebpf::{AttachMode, XdpConfig, XdpDataPlane, XdpDnsConfig};
use mep_rules::{
    ActiveTrafficRule, AppInfo, DataPlane, DataPlaneError, RuleChange, Snapshot, TrafficRule,
};

pub const XDP_ABORTED: u32 = 0;
pub const XDP_DROP: u32 = 1;
pub const XDP_PASS: u32 = 2;
pub const XDP_REDIRECT: u32 = 4;

/// These tests load BPF programs and build network namespaces: they need root. They fail
/// (rather than skip) without it, so that CI can never pass them vacuously.
pub fn require_root() {
    // SAFETY: geteuid has no preconditions.
    let uid = unsafe { libc::geteuid() };
    assert_eq!(
        uid, 0,
        "the mep-ebpf tests load XDP programs and create network namespaces: run them as root (CI does)"
    );
}

static SEQ: AtomicU32 = AtomicU32::new(0);

/// A short name unique to this process and call (interface names are limited to 15 bytes).
pub fn unique(prefix: &str) -> String {
    format!(
        "{prefix}{}x{}",
        std::process::id() % 10_000,
        SEQ.fetch_add(1, Ordering::Relaxed)
    )
}

pub fn plane_with(interfaces: Vec<String>, mode: AttachMode) -> XdpDataPlane {
    require_root();
    let pin_path = format!("/sys/fs/bpf/{}", unique("mept"));
    XdpDataPlane::new(XdpConfig {
        interfaces,
        pin_path: pin_path.into(),
        mode,
        ..XdpConfig::default()
    })
    .expect("load the XDP data plane")
}

/// A data plane that also answers local DNS names on UDP `port` of the interfaces' own
/// addresses (`--dns-xdp`).
pub fn dns_plane_with(interfaces: Vec<String>, mode: AttachMode, port: u16) -> XdpDataPlane {
    require_root();
    XdpDataPlane::new(XdpConfig {
        interfaces,
        pin_path: format!("/sys/fs/bpf/{}", unique("mepd")).into(),
        mode,
        dns: Some(XdpDnsConfig {
            port,
            addresses: Vec::new(),
            udp_payload: 1232,
            default_ttl: 300,
        }),
        ..XdpConfig::default()
    })
    .expect("load the XDP data plane")
}

pub fn plane() -> XdpDataPlane {
    plane_with(Vec::new(), AttachMode::Auto)
}

pub fn app(id: &str) -> AppInfo {
    AppInfo {
        app_instance_id: id.into(),
        app_name: id.into(),
    }
}

/// A rule from the fields that vary; `filter` is one TrafficFilter.
pub fn rule(
    id: &str,
    priority: u32,
    action: &str,
    filter: serde_json::Value,
    dst: serde_json::Value,
) -> TrafficRule {
    let mut r = serde_json::json!({
        "trafficRuleId": id, "filterType": "FLOW", "priority": priority, "action": action,
        "state": "ACTIVE", "trafficFilter": [filter],
    });
    if !dst.is_null() {
        r["dstInterface"] = dst;
    }
    serde_json::from_value(r).expect("rule JSON")
}

pub fn snapshot(rules: &[(&str, TrafficRule)]) -> Snapshot {
    Snapshot::build(1, rules.iter().map(|(a, r)| (*a, r)), [])
}

pub fn active(app: &str, rule: TrafficRule) -> ActiveTrafficRule {
    let filters = rule.compile().expect("valid rule");
    ActiveTrafficRule {
        app_instance_id: app.into(),
        rule,
        filters,
    }
}

pub fn rt() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .expect("runtime")
}

// ---- packets ----

pub const MAC_A: [u8; 6] = [0x02, 0, 0, 0, 0, 0x0a];
pub const MAC_B: [u8; 6] = [0x02, 0, 0, 0, 0, 0x0b];

fn csum(data: &[u8], init: u32) -> u16 {
    let mut sum = init;
    for chunk in data.chunks(2) {
        let word = u16::from_be_bytes([chunk[0], *chunk.get(1).unwrap_or(&0)]);
        sum += u32::from(word);
    }
    while sum > 0xffff {
        sum = (sum & 0xffff) + (sum >> 16);
    }
    !(sum as u16)
}

/// An L4 segment: protocol, header+payload bytes (checksum filled by `ip`).
pub struct L4 {
    pub proto: u8,
    pub bytes: Vec<u8>,
}

pub fn udp(sport: u16, dport: u16, payload: &[u8]) -> L4 {
    let mut b = Vec::new();
    b.extend_from_slice(&sport.to_be_bytes());
    b.extend_from_slice(&dport.to_be_bytes());
    b.extend_from_slice(&((8 + payload.len()) as u16).to_be_bytes());
    b.extend_from_slice(&[0, 0]);
    b.extend_from_slice(payload);
    L4 {
        proto: 17,
        bytes: b,
    }
}

pub fn tcp(sport: u16, dport: u16) -> L4 {
    let mut b = Vec::new();
    b.extend_from_slice(&sport.to_be_bytes());
    b.extend_from_slice(&dport.to_be_bytes());
    b.extend_from_slice(&[0, 0, 0, 1, 0, 0, 0, 0, 0x50, 0x02, 0xff, 0xff, 0, 0, 0, 0]);
    L4 { proto: 6, bytes: b }
}

pub fn icmp() -> L4 {
    L4 {
        proto: 1,
        bytes: vec![8, 0, 0xf7, 0xff, 0, 0, 0, 0],
    }
}

fn l4_checksum(src: IpAddr, dst: IpAddr, l4: &L4) -> Vec<u8> {
    let mut bytes = l4.bytes.clone();
    let off = match l4.proto {
        17 => 6,
        6 => 16,
        _ => return bytes,
    };
    let mut pseudo = Vec::new();
    match (src, dst) {
        (IpAddr::V4(s), IpAddr::V4(d)) => {
            pseudo.extend_from_slice(&s.octets());
            pseudo.extend_from_slice(&d.octets());
            pseudo.extend_from_slice(&[0, l4.proto]);
            pseudo.extend_from_slice(&(bytes.len() as u16).to_be_bytes());
        }
        (IpAddr::V6(s), IpAddr::V6(d)) => {
            pseudo.extend_from_slice(&s.octets());
            pseudo.extend_from_slice(&d.octets());
            pseudo.extend_from_slice(&(bytes.len() as u32).to_be_bytes());
            pseudo.extend_from_slice(&[0, 0, 0, l4.proto]);
        }
        _ => panic!("mixed address families"),
    }
    pseudo.extend_from_slice(&bytes);
    let mut c = csum(&pseudo, 0);
    if c == 0 && l4.proto == 17 {
        c = 0xffff;
    }
    bytes[off..off + 2].copy_from_slice(&c.to_be_bytes());
    bytes
}

/// An IP packet (no L2) with traffic class / TOS `tos`.
pub fn ip(src: &str, dst: &str, tos: u8, l4: &L4) -> Vec<u8> {
    let (src, dst): (IpAddr, IpAddr) = (src.parse().unwrap(), dst.parse().unwrap());
    let payload = l4_checksum(src, dst, l4);
    let mut b = Vec::new();
    match (src, dst) {
        (IpAddr::V4(s), IpAddr::V4(d)) => {
            b.extend_from_slice(&[0x45, tos]);
            b.extend_from_slice(&((20 + payload.len()) as u16).to_be_bytes());
            b.extend_from_slice(&[0, 1, 0x40, 0, 64, l4.proto, 0, 0]);
            b.extend_from_slice(&s.octets());
            b.extend_from_slice(&d.octets());
            let c = csum(&b, 0);
            b[10..12].copy_from_slice(&c.to_be_bytes());
        }
        (IpAddr::V6(s), IpAddr::V6(d)) => {
            b.extend_from_slice(&[0x60 | (tos >> 4), tos << 4, 0, 0]);
            b.extend_from_slice(&(payload.len() as u16).to_be_bytes());
            b.extend_from_slice(&[l4.proto, 64]);
            b.extend_from_slice(&s.octets());
            b.extend_from_slice(&d.octets());
        }
        _ => panic!("mixed address families"),
    }
    b.extend_from_slice(&payload);
    b
}

/// The GTP-U G-PDU header for `teid` (with a PDU session container extension when `ext`).
pub fn gtpu_header(teid: u32, inner_len: usize, ext: bool) -> Vec<u8> {
    let mut b = Vec::new();
    let extra = if ext { 4 + 4 } else { 0 };
    b.push(if ext { 0x34 } else { 0x30 });
    b.push(0xff);
    b.extend_from_slice(&((inner_len + extra) as u16).to_be_bytes());
    b.extend_from_slice(&teid.to_be_bytes());
    if ext {
        // sequence number, N-PDU, next extension: PDU session container (1 unit, QFI 9).
        b.extend_from_slice(&[0, 0, 0, 0x85]);
        b.extend_from_slice(&[1, 0x10, 9, 0]);
    }
    b
}

/// An IP/UDP(2152)/GTP-U packet carrying `inner`.
pub fn gtpu(outer_src: &str, outer_dst: &str, teid: u32, inner: &[u8], ext: bool) -> Vec<u8> {
    let mut payload = gtpu_header(teid, inner.len(), ext);
    payload.extend_from_slice(inner);
    ip(outer_src, outer_dst, 0, &udp(2152, 2152, &payload))
}

/// An Ethernet frame (with an 802.1Q tag when `vlan` is given) around an IP packet.
pub fn eth(ip_packet: &[u8], vlan: Option<u16>) -> Vec<u8> {
    let mut b = Vec::new();
    b.extend_from_slice(&MAC_B);
    b.extend_from_slice(&MAC_A);
    if let Some(id) = vlan {
        b.extend_from_slice(&[0x81, 0x00]);
        b.extend_from_slice(&id.to_be_bytes());
    }
    let ethertype: [u8; 2] = if ip_packet[0] >> 4 == 6 {
        [0x86, 0xdd]
    } else {
        [0x08, 0x00]
    };
    b.extend_from_slice(&ethertype);
    b.extend_from_slice(ip_packet);
    b
}

pub fn v4(s: &str) -> Ipv4Addr {
    s.parse().unwrap()
}

pub fn v6(s: &str) -> Ipv6Addr {
    s.parse().unwrap()
}

// ---- network namespaces ----

pub fn sh(args: &[&str]) {
    let out = Command::new(args[0])
        .args(&args[1..])
        .output()
        .unwrap_or_else(|e| panic!("run {args:?}: {e}"));
    assert!(
        out.status.success(),
        "{args:?} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// A named network namespace (`ip netns add`), deleted on drop.
pub struct Netns {
    pub name: String,
}

impl Netns {
    pub fn new(prefix: &str) -> Self {
        let name = unique(prefix);
        sh(&["ip", "netns", "add", &name]);
        let ns = Self { name };
        ns.ip(&["link", "set", "lo", "up"]);
        ns
    }

    /// `ip -n NAME ...`
    pub fn ip(&self, args: &[&str]) {
        let mut all = vec!["ip", "-n", &self.name];
        all.extend_from_slice(args);
        sh(&all);
    }

    /// Runs `cmd` inside the namespace.
    pub fn exec(&self, cmd: &[&str]) {
        let mut all = vec!["ip", "netns", "exec", &self.name];
        all.extend_from_slice(cmd);
        sh(&all);
    }

    /// Sets `/proc/sys/<key>` inside the namespace (the opener's namespace decides which one).
    pub fn sysctl(&self, key: &str, value: &str) {
        let path = format!("/proc/sys/{key}");
        let value = value.to_owned();
        self.run(move || std::fs::write(&path, value).unwrap_or_else(|e| panic!("{path}: {e}")));
    }

    /// Runs `f` on a thread that has entered the namespace.
    pub fn run<T: Send + 'static>(&self, f: impl FnOnce() -> T + Send + 'static) -> T {
        let path = format!("/var/run/netns/{}", self.name);
        std::thread::spawn(move || {
            enter_netns(&path);
            f()
        })
        .join()
        .expect("namespace thread")
    }
}

/// Moves the calling thread into the namespace at `path`.
pub fn enter_netns(path: &str) {
    let f = std::fs::File::open(path).expect("open netns");
    use std::os::fd::AsRawFd;
    // SAFETY: a valid namespace fd.
    let rc = unsafe { libc::setns(f.as_raw_fd(), libc::CLONE_NEWNET) };
    assert_eq!(rc, 0, "setns: {}", std::io::Error::last_os_error());
}

impl Drop for Netns {
    fn drop(&mut self) {
        let _ = Command::new("ip")
            .args(["netns", "del", &self.name])
            .output();
    }
}

/// Reads an interface's MAC address inside a namespace.
pub fn mac_of(ns: &Netns, iface: &str) -> [u8; 6] {
    let out = Command::new("ip")
        .args(["netns", "exec", &ns.name, "cat"])
        .arg(format!("/sys/class/net/{iface}/address"))
        .output()
        .expect("read mac");
    let s = String::from_utf8_lossy(&out.stdout);
    let mut mac = [0u8; 6];
    for (i, part) in s.trim().split(':').enumerate().take(6) {
        mac[i] = u8::from_str_radix(part, 16).expect("mac");
    }
    mac
}

pub fn mac_str(mac: [u8; 6]) -> String {
    mac.iter()
        .map(|b| format!("{b:02x}"))
        .collect::<Vec<_>>()
        .join(":")
}

/// One traffic rule change through `DataPlane::apply`, as most tests make them.
pub async fn change(
    plane: &XdpDataPlane,
    app: &AppInfo,
    change: RuleChange,
) -> Result<(), DataPlaneError> {
    plane.apply(app, &[change]).await.map_err(|e| e.error)
}

pub async fn add(
    plane: &XdpDataPlane,
    app: &AppInfo,
    rule: &TrafficRule,
) -> Result<(), DataPlaneError> {
    change(plane, app, RuleChange::AddTraffic(rule.clone())).await
}

pub async fn update(
    plane: &XdpDataPlane,
    app: &AppInfo,
    rule: &TrafficRule,
) -> Result<(), DataPlaneError> {
    let (old, new) = (rule.clone(), rule.clone());
    change(plane, app, RuleChange::UpdateTraffic { old, new }).await
}

pub async fn remove(
    plane: &XdpDataPlane,
    app: &AppInfo,
    rule: &TrafficRule,
) -> Result<(), DataPlaneError> {
    change(plane, app, RuleChange::RemoveTraffic(rule.clone())).await
}
