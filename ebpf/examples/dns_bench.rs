//! Benchmark of the kernel DNS answers (`--dns-xdp`), through `BPF_PROG_TEST_RUN`: ns per query
//! answered with XDP_TX (A and AAAA, with and without EDNS) out of 1,000 names, and per query
//! passed on (a name without a rule), next to a program that only returns XDP_PASS (the floor,
//! measured in the same run). Also the time to publish the 1,000 names and to change one. Run
//! as root by `benches/xdp-dns.sh`.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::time::{Duration, Instant};

use mep_ebpf::{TestProgram, XdpConfig, XdpDataPlane, XdpDnsConfig};
use mep_rules::{DataPlane, DnsRule, Snapshot};

const NAMES: usize = 1_000;
const CALLS: u32 = 100_000;
const ROUNDS: usize = 5;
const PORT: u16 = 53;

fn rule(i: usize, v6: bool) -> DnsRule {
    let address: IpAddr = if v6 {
        Ipv6Addr::new(0x2001, 0xdb8, 0, 0, 0, 0, 0, i as u16).into()
    } else {
        Ipv4Addr::new(10, 1, (i / 256) as u8, (i % 256) as u8).into()
    };
    let id = format!("r{i}{}", if v6 { "v6" } else { "" });
    DnsRule::active(id, format!("app{i}.edge.example"), address, Some(30))
}

/// An Ethernet/IPv4/UDP frame to the DNS service with a query for `name` of type `qtype`.
fn query(name: &str, qtype: u16, edns: bool) -> Vec<u8> {
    let mut dns = vec![0x12, 0x34, 0x01, 0x00, 0, 1, 0, 0, 0, 0, 0, u8::from(edns)];
    for label in name.split('.') {
        dns.push(label.len() as u8);
        dns.extend_from_slice(label.as_bytes());
    }
    dns.push(0);
    dns.extend_from_slice(&qtype.to_be_bytes());
    dns.extend_from_slice(&[0, 1]);
    if edns {
        dns.extend_from_slice(&[0, 0, 41, 0x10, 0, 0, 0, 0, 0, 0, 0]);
    }
    let mut udp = 40000u16.to_be_bytes().to_vec();
    udp.extend_from_slice(&PORT.to_be_bytes());
    udp.extend_from_slice(&((8 + dns.len()) as u16).to_be_bytes());
    udp.extend_from_slice(&[0, 0]);
    udp.extend_from_slice(&dns);
    let mut ip = vec![0x45, 0];
    ip.extend_from_slice(&((20 + udp.len()) as u16).to_be_bytes());
    ip.extend_from_slice(&[0, 1, 0x40, 0, 64, 17, 0, 0, 10, 0, 0, 2, 10, 0, 0, 1]);
    let c = !mep_ebpf::ones_complement_sum(&ip);
    ip[10..12].copy_from_slice(&c.to_be_bytes());
    ip.extend_from_slice(&udp);
    let mut f = vec![2, 0, 0, 0, 0, 0xb, 2, 0, 0, 0, 0, 0xa, 0x08, 0x00];
    f.extend_from_slice(&ip);
    f
}

/// Mean ns per run over `CALLS` single runs. An XDP_TX answer rewrites the packet in place and
/// the kernel does not restore it between repeated runs, so every measured run is a fresh call
/// (the floor is measured the same way, so both carry the same per-call timing overhead).
fn mean_ns(plane: &XdpDataPlane, program: TestProgram, packet: &[u8], verdict: u32) -> f64 {
    let mut means: Vec<f64> = (0..ROUNDS)
        .map(|_| {
            let mut total = Duration::ZERO;
            for _ in 0..CALLS {
                let out = plane.test_run(program, packet, 1).expect("test run");
                assert_eq!(out.verdict, verdict, "unexpected verdict");
                total += out.per_run;
            }
            total.as_nanos() as f64 / f64::from(CALLS)
        })
        .collect();
    means.sort_by(f64::total_cmp);
    means[ROUNDS / 2]
}

fn main() {
    let plane = match XdpDataPlane::new(XdpConfig {
        pin_path: format!("/sys/fs/bpf/mep-dns-bench-{}", std::process::id()).into(),
        dns: Some(XdpDnsConfig {
            port: PORT,
            addresses: vec!["10.0.0.1".parse().expect("address")],
            udp_payload: 1232,
            default_ttl: 300,
        }),
        ..XdpConfig::default()
    }) {
        Ok(p) => p,
        Err(e) => {
            eprintln!("dns_bench: {e}");
            std::process::exit(1);
        }
    };
    let rules: Vec<DnsRule> = (0..NAMES)
        .flat_map(|i| [rule(i, false), rule(i, true)])
        .collect();
    let started = Instant::now();
    let snapshot = Snapshot::build(1, [], rules.iter().map(|r| ("bench", r)));
    plane.snapshot_published(&snapshot);
    let publish = started.elapsed();
    let mut changed = rules[..2].to_vec();
    changed[0].ip_address = "10.9.9.9".into();
    let next = snapshot.with_app_rules(2, "other", None, [], &changed);
    let started = Instant::now();
    plane.snapshot_published(&next);
    let change = started.elapsed();

    println!("kernel DNS answers, BPF_PROG_TEST_RUN, {CALLS} single runs x {ROUNDS} rounds (median of means), {NAMES} names");
    let floor = mean_ns(
        &plane,
        TestProgram::Pass,
        &query("app500.edge.example", 1, false),
        2,
    );
    println!("{:<34} {:>8} {:>10}", "query", "ns", "/floor");
    for (what, name, qtype, edns, verdict) in [
        ("A, answered", "app500.edge.example", 1, false, 3),
        ("A + EDNS, answered", "App500.Edge.Example", 1, true, 3),
        ("AAAA + EDNS, answered", "app999.edge.example", 28, true, 3),
        ("no rule, passed", "nothing.edge.example", 1, false, 2),
    ] {
        let ns = mean_ns(
            &plane,
            TestProgram::Steer,
            &query(name, qtype, edns),
            verdict,
        );
        println!("{what:<34} {ns:>8.1} {:>10.2}", ns / floor);
    }
    println!("{:<34} {floor:>8.1} {:>10.2}", "floor (XDP_PASS only)", 1.0);
    println!(
        "publish {NAMES} names (A and AAAA): {:.1} ms; one name changed: {:.1} us",
        publish.as_secs_f64() * 1e3,
        change.as_secs_f64() * 1e6
    );
}
