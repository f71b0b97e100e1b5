//! Serves kernel DNS answers on one interface for `benches/xdp-dns-veth.sh`: loads the XDP data
//! plane with `--dns-xdp`'s configuration on port 53, publishes the DNS benchmarks' rules
//! (`dns/examples/common/bench_rules.rs`, the names `benches/dns.sh` serves) and prints the
//! kernel's answered and passed counters every 200 ms until it is killed.
//! Usage: dns_xdp_serve IFACE native|generic COUNT ZONE   (as root)

use std::time::Duration;

use mep_ebpf::{AttachMode, XdpConfig, XdpDataPlane, XdpDnsConfig};
use mep_rules::{DataPlane, Snapshot};

#[path = "../../dns/examples/common/bench_rules.rs"]
mod bench_rules;
use bench_rules::bench_rules;

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
    let count: u32 = count.parse().map_err(|e| format!("COUNT: {e}"))?;
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
    let rules = bench_rules(count, zone);
    let snapshot = Snapshot::build(1, [], rules.iter().map(|r| ("bench", r)));
    plane.snapshot_published(&snapshot);
    loop {
        let c = plane.dns_counters();
        println!("answered {} passed {}", c.answered, c.passed);
        std::thread::sleep(Duration::from_millis(200));
    }
}
