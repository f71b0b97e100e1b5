//! Serves kernel DNS answers on one interface for `benches/xdp-dns-veth.sh`: loads the XDP data
//! plane with `--dns-xdp`'s configuration on port 53, publishes `host<i>.<zone>` A records
//! (`198.18.<i / 256>.<i % 256>`, the addresses `benches/dns.sh` serves) and prints the kernel's
//! answered and passed counters every 200 ms until it is killed.
//! Usage: dns_xdp_serve IFACE native|generic COUNT ZONE   (as root)

use std::time::Duration;

use mep_ebpf::{AttachMode, XdpConfig, XdpDataPlane, XdpDnsConfig};
use mep_rules::{DataPlane, DnsRule, IpAddressType, RuleState, Snapshot};

fn main() -> Result<(), String> {
    let args: Vec<String> = std::env::args().collect();
    let [_, iface, mode, count, zone] = args.as_slice() else {
        return Err("usage: dns_xdp_serve IFACE native|generic COUNT ZONE".into());
    };
    let mode = match mode.as_str() {
        "native" => AttachMode::Native,
        "generic" => AttachMode::Generic,
        other => return Err(format!("unknown mode {other}")),
    };
    let count: usize = count.parse().map_err(|e| format!("COUNT: {e}"))?;
    let plane = XdpDataPlane::new(XdpConfig {
        interfaces: vec![iface.clone()],
        pin_path: format!("/sys/fs/bpf/mep-dns-bench-{}", std::process::id()).into(),
        mode,
        dns: Some(XdpDnsConfig {
            port: 53,
            addresses: Vec::new(),
            udp_payload: 1232,
            default_ttl: 300,
        }),
        ..XdpConfig::default()
    })
    .map_err(|e| format!("load the XDP data plane: {e}"))?;
    let rules: Vec<DnsRule> = (0..count)
        .map(|i| DnsRule {
            dns_rule_id: format!("r{i}"),
            domain_name: format!("host{i}.{zone}"),
            ip_address_type: IpAddressType::IpV4,
            ip_address: format!("198.18.{}.{}", i / 256, i % 256),
            ttl: Some(3600),
            state: RuleState::Active,
        })
        .collect();
    let snapshot = Snapshot::build(1, [], rules.iter().map(|r| ("bench", r)));
    plane.snapshot_published(&snapshot);
    loop {
        let c = plane.dns_counters();
        println!("answered {} passed {}", c.answered, c.passed);
        std::thread::sleep(Duration::from_millis(200));
    }
}
