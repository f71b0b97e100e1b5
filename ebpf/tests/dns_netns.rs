//! Kernel DNS answers end to end: `dig` in the UPF namespace asks the host's address over a veth
//! pair, where nothing listens on the DNS port, so every answer it gets is the XDP program's
//! (counted as such); a rule change is in the next answer. Needs root.
//!
//! AAAA answers and answers to queries without dig's cookie option grow the frame more than A
//! answers to dig's default query; an answer with twelve addresses grows it by more than a
//! native-mode veth frame's tailroom, and is built in its headroom instead.
//!
//! The benchmark's kernel load generator (`examples/common/gun.rs`) is checked here too: every
//! query it sends is a kernel answer it counts.

use std::process::Command;

use mep_ebpf::AttachMode;
use mep_ebpf_testkit::topology::*;
use mep_ebpf_testkit::*;
use mep_rules::{DataPlane, DnsRule, Snapshot};

#[path = "../examples/common/gun.rs"]
mod gun;

const PORT: u16 = 5300;

fn dns_rule(name: &str, ip: &str) -> DnsRule {
    // Rule ids are URI-safe: no colons.
    let id = format!("{name}-{}", ip.replace(':', "-"));
    DnsRule::active(id, name, ip.parse().expect("an IP address"), Some(30))
}

/// `dig +short` from `ns` (with its default EDNS cookie option unless `flags` say otherwise);
/// empty when no answer came.
fn dig(ns: &Netns, server: &str, name: &str, qtype: &str, flags: &[&str]) -> String {
    let out = Command::new("ip")
        .args([
            "netns", "exec", &ns.name, "dig", "+short", "+tries=1", "+time=1",
        ])
        .args(flags)
        .args(["-p", &PORT.to_string(), &format!("@{server}"), name, qtype])
        .output()
        .expect("run dig (Debian bind9-dnsutils)");
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter(|l| !l.starts_with(';'))
        .collect::<Vec<_>>()
        .join(" ")
}

fn answers_over_the_veth(mode: AttachMode) {
    let t = topology();
    let plane = t
        .host
        .run(move || dns_plane_with(vec!["h0".into()], mode, PORT));
    // XDP_TX into a veth in native mode needs the peer to run NAPI, as a NIC's peer does: any
    // XDP program on it does that (mep's, with no rules, passes everything).
    let _peer = (mode == AttachMode::Native).then(|| {
        t.upf
            .run(|| plane_with(vec!["u0".into()], AttachMode::Native))
    });
    let mut rules = vec![
        dns_rule("edge.mec", "192.0.2.10"),
        dns_rule("edge.mec", "2001:db8::10"),
    ];
    // Twelve addresses: 192 bytes more than the query, more than a native-mode veth frame's
    // tailroom, so the headers move into the headroom.
    let many: Vec<String> = (100..112).map(|i| format!("192.0.2.{i}")).collect();
    rules.extend(many.iter().map(|ip| dns_rule("many.mec", ip)));
    let v1 = Snapshot::build(1, [], rules.iter().map(|r| ("app", r)));
    plane.snapshot_published(&v1);
    assert_eq!(
        dig(&t.upf, "10.201.1.2", "edge.mec", "A", &[]),
        "192.0.2.10"
    );
    // Upper case in the question, answered in the question's case.
    assert_eq!(
        dig(&t.upf, "10.201.1.2", "EDGE.mec", "A", &[]),
        "192.0.2.10"
    );
    assert_eq!(
        dig(&t.upf, "fd00:201:1::2", "edge.mec", "A", &[]),
        "192.0.2.10",
        "over IPv6"
    );
    // Answers that grow the frame by more than its tailroom.
    assert_eq!(
        dig(&t.upf, "10.201.1.2", "edge.mec", "AAAA", &[]),
        "2001:db8::10"
    );
    assert_eq!(
        dig(&t.upf, "fd00:201:1::2", "edge.mec", "AAAA", &["+nocookie"]),
        "2001:db8::10"
    );
    assert_eq!(
        dig(&t.upf, "10.201.1.2", "edge.mec", "A", &["+noedns"]),
        "192.0.2.10"
    );
    assert_eq!(
        dig(&t.upf, "10.201.1.2", "many.mec", "A", &["+noedns"]),
        many.join(" ")
    );
    // No rule: passed to the (absent) DNS server, so no answer.
    assert_eq!(dig(&t.upf, "10.201.1.2", "other.mec", "A", &[]), "");

    let moved = [dns_rule("edge.mec", "192.0.2.20")];
    let v2 = v1.with_app_rules(2, "app", None, [], &moved);
    plane.snapshot_published(&v2);
    assert_eq!(
        dig(&t.upf, "10.201.1.2", "edge.mec", "A", &[]),
        "192.0.2.20"
    );

    let counters = plane.dns_counters();
    assert_eq!(counters.answered, 8, "{counters:?}");
    assert_eq!(
        counters.passed, 1,
        "the query for a name without a rule: {counters:?}"
    );
}

#[test]
fn dig_gets_kernel_answers_in_native_mode() {
    answers_over_the_veth(AttachMode::Native);
}

#[test]
fn dig_gets_kernel_answers_in_generic_mode() {
    answers_over_the_veth(AttachMode::Generic);
}

/// The generator of `CLIENT=gun benches/xdp-dns-veth.sh`, in the UPF namespace, against the
/// native-mode kernel answers: it sends what it is asked to, every query is answered by the XDP
/// program, and its sink counts every answer (nothing else is on the DNS port to answer).
#[test]
fn the_live_frame_generator_counts_a_kernel_answer_to_each_query() {
    const NAMES: u32 = 50;
    let t = topology();
    let plane = t
        .host
        .run(|| dns_plane_with(vec!["h0".into()], AttachMode::Native, PORT));
    let rules: Vec<DnsRule> = (0..NAMES)
        .map(|i| dns_rule(&format!("host{i}.gun.mec"), &format!("192.0.2.{i}")))
        .collect();
    plane.snapshot_published(&Snapshot::build(1, [], rules.iter().map(|r| ("app", r))));
    let (h0_mac, u0_mac) = (mac_of(&t.host, "h0"), mac_of(&t.upf, "u0"));
    let fired = t
        .upf
        .run(move || {
            gun::Gun {
                iface: "u0",
                own_mac: u0_mac,
                peer_mac: h0_mac,
                src: v4("10.201.1.1"),
                dst: v4("10.201.1.2"),
                port: PORT,
                count: NAMES,
                zone: "gun.mec",
                rate: 20_000.0,
                seconds: 0.5,
            }
            .fire()
        })
        .expect("the generator runs");
    assert!(
        (8_000..=12_000).contains(&fired.sent),
        "about 20,000 q/s for 0.5 s: {fired:?}"
    );
    assert!(
        fired.replies * 100 >= fired.sent * 99,
        "at least 99% answered: {fired:?}"
    );
    let counters = plane.dns_counters();
    assert!(
        counters.answered >= fired.replies && counters.answered <= fired.sent,
        "every answer is the kernel's: {counters:?}, {fired:?}"
    );
    assert_eq!(counters.passed, 0, "{counters:?}");
}
