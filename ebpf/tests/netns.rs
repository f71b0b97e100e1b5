//! End to end through real interfaces: a "upf" namespace, the mep host namespace (the XDP program
//! on its UPF-facing veth) and an "app" namespace, joined by veth pairs:
//!
//! ```text
//!  upf: u0 10.201.1.1 ──── h0 10.201.1.2  host (mep, XDP)  h1 10.201.2.1 ──── a0 10.201.2.2 :app
//! ```
//!
//! Real UDP sockets send and receive. Needs root.

use std::net::UdpSocket;
use std::sync::Arc;
use std::time::Duration;

use mep_ebpf::{AttachMode, XdpDataPlane};
use mep_ebpf_testkit::topology::*;
use mep_ebpf_testkit::*;
use mep_rules::DataPlane;
use serde_json::{json, Value};

fn attach(host: &Netns, mode: AttachMode) -> Arc<XdpDataPlane> {
    host.run(move || Arc::new(plane_with(vec!["h0".into()], mode)))
}

#[test]
fn drop_rule_stops_a_flow_and_deleting_it_lets_the_next_packet_through() {
    let t = topology();
    let plane = attach(&t.host, AttachMode::Auto);
    let attached = plane.attached();
    assert_eq!(attached.len(), 1);
    assert_eq!(attached[0].iface, "h0");
    assert_eq!(
        attached[0].mode,
        mep_ebpf::AttachedMode::Native,
        "veth supports native XDP"
    );
    let sock = listen(&t.app, 5000);
    let r = rt();

    send_from_upf(&t.upf, "10.201.2.2", 5000, b"before".to_vec());
    assert_eq!(
        received(&sock).as_deref(),
        Some(&b"before"[..]),
        "routed without rules"
    );

    let drop = rule(
        "drop-5000",
        1,
        "DROP",
        json!({"dstAddress": ["10.201.2.2"], "dstPort": ["5000"], "protocol": ["UDP"]}),
        Value::Null,
    );
    r.block_on(add(&plane, &app("app-1"), &drop)).unwrap();
    send_from_upf(&t.upf, "10.201.2.2", 5000, b"dropped".to_vec());
    assert_eq!(received(&sock), None, "the DROP rule stops the flow");
    assert_eq!(plane.rule_counters()[0].packets, 1);

    let status = mep_ebpf::status_text(plane.pin_path()).unwrap();
    assert!(
        status.contains("h0") && status.contains("drop-5000"),
        "{status}"
    );

    r.block_on(remove(&plane, &app("app-1"), &drop)).unwrap();
    send_from_upf(&t.upf, "10.201.2.2", 5000, b"after".to_vec());
    assert_eq!(
        received(&sock).as_deref(),
        Some(&b"after"[..]),
        "the rule is gone"
    );

    r.block_on(plane.shutdown());
    assert!(
        mep_ebpf::read_status(plane.pin_path()).is_err(),
        "pins removed on shutdown"
    );
}

#[test]
fn forward_decapsulated_delivers_the_inner_packet_to_the_app() {
    let t = topology();
    // Generic mode: a native redirect into a veth needs an XDP program on its peer as well.
    let plane = attach(&t.host, AttachMode::Generic);
    assert_eq!(plane.attached()[0].mode, mep_ebpf::AttachedMode::Generic);
    let sock = listen(&t.app, 6000);
    let r = rt();
    let decap = rule(
        "to-app",
        1,
        "FORWARD_DECAPSULATED",
        json!({"tag": ["0x100"], "dstAddress": ["10.201.2.2"]}),
        json!([{"interfaceType": "MAC", "dstMacAddress": mac_str(t.a0_mac)}]),
    );
    r.block_on(add(&plane, &app("app-1"), &decap)).unwrap();

    // The UE's packet inside GTP-U, sent by the "UPF" to the host's N3/N6 address.
    let inner = ip(
        "10.60.0.7",
        "10.201.2.2",
        0,
        &udp(4000, 6000, b"from the UE"),
    );
    let mut gtp = gtpu_header(0x100, inner.len(), true);
    gtp.extend_from_slice(&inner);
    send_from_upf(&t.upf, "10.201.1.2", 2152, gtp);
    assert_eq!(received(&sock).as_deref(), Some(&b"from the UE"[..]));
    assert_eq!(plane.rule_counters()[0].packets, 1);

    // Another TEID is not steered: the host has nothing on port 2152 and the app sees nothing.
    let mut other = gtpu_header(0x200, inner.len(), false);
    other.extend_from_slice(&inner);
    send_from_upf(&t.upf, "10.201.1.2", 2152, other);
    assert_eq!(received(&sock), None);
    drop(t.host);
}

/// Native mode, the default: the app's veth peer runs no XDP program, so a native redirect would
/// be dropped by the kernel. The packet is handed to the TC program and arrives, with the MAC the
/// FIB found, and again once the neighbour entry is gone (TC resolves it); every packet is counted.
#[test]
fn forward_decapsulated_into_a_veth_arrives_in_native_mode() {
    let t = topology();
    let plane = attach(&t.host, AttachMode::Native);
    assert_eq!(plane.attached()[0].mode, mep_ebpf::AttachedMode::Native);
    let sock = listen(&t.app, 6001);
    let r = rt();
    let decap = rule(
        "to-app",
        1,
        "FORWARD_DECAPSULATED",
        json!({"tag": ["0x101"], "dstAddress": ["10.201.2.2"]}),
        json!([{"interfaceType": "IP", "dstIpAddress": "10.201.2.2"}]),
    );
    r.block_on(add(&plane, &app("app-1"), &decap)).unwrap();
    let inner = ip(
        "10.60.0.7",
        "10.201.2.2",
        0,
        &udp(4000, 6001, b"through TC"),
    );
    let mut gtp = gtpu_header(0x101, inner.len(), true);
    gtp.extend_from_slice(&inner);

    send_from_upf(&t.upf, "10.201.1.2", 2152, gtp.clone());
    assert_eq!(received(&sock).as_deref(), Some(&b"through TC"[..]));
    let d = plane.delivery_counters();
    assert_eq!(d.tc_redirect.packets, 1, "{d:?}");
    assert_eq!(d.xdp_redirect.packets, 0, "{d:?}");

    // No neighbour entry: TC resolves the next hop (ARP) and the packet still arrives.
    t.host.ip(&["neigh", "del", "10.201.2.2", "dev", "h1"]);
    send_from_upf(&t.upf, "10.201.1.2", 2152, gtp);
    assert_eq!(received(&sock).as_deref(), Some(&b"through TC"[..]));
    let d = plane.delivery_counters();
    assert_eq!(d.tc_redirect.packets, 2, "{d:?}");
    assert_eq!(d.no_route.packets + d.tc_failed.packets, 0, "{d:?}");
    assert_eq!(plane.rule_counters()[0].packets, 2);
    let status = mep_ebpf::status_text(plane.pin_path()).unwrap();
    assert!(
        status
            .lines()
            .any(|l| l.starts_with("redirected in TC")
                && l.split_whitespace().rev().nth(1) == Some("2")),
        "{status}"
    );
    drop(t.host);
}

#[test]
fn duplicate_sends_a_copy_and_the_original_goes_on() {
    let t = topology();
    let plane = attach(&t.host, AttachMode::Auto);
    let sock = listen(&t.app, 7000);
    let r = rt();
    // The original is routed to the app by the host; the copy is clone-redirected to the app's
    // MAC by the TC program: the app receives the datagram twice.
    let dup = rule(
        "dup",
        1,
        "DUPLICATE_AS_IS",
        json!({"dstAddress": ["10.201.2.2"], "dstPort": ["7000"]}),
        json!([{"interfaceType": "MAC", "dstMacAddress": mac_str(t.a0_mac)}]),
    );
    r.block_on(add(&plane, &app("app-1"), &dup)).unwrap();
    send_from_upf(&t.upf, "10.201.2.2", 7000, b"twice".to_vec());
    assert_eq!(received(&sock).as_deref(), Some(&b"twice"[..]));
    assert_eq!(received(&sock).as_deref(), Some(&b"twice"[..]), "the copy");
    assert_eq!(received(&sock), None);

    // Decapsulated duplicate: the original GTP-U packet reaches the host's socket on 2152, the
    // inner packet's copy reaches the app.
    let gtp_sink = t.host.run(|| {
        let s = UdpSocket::bind("10.201.1.2:2152").expect("bind 2152 in host namespace");
        s.set_read_timeout(Some(Duration::from_millis(700)))
            .unwrap();
        s
    });
    let dup_decap = rule(
        "dup-decap",
        1,
        "DUPLICATE_DECAPSULATED",
        json!({"tag": ["0x300"]}),
        json!([{"interfaceType": "MAC", "dstMacAddress": mac_str(t.a0_mac)}]),
    );
    r.block_on(remove(&plane, &app("app-1"), &dup)).unwrap();
    r.block_on(add(&plane, &app("app-1"), &dup_decap)).unwrap();
    let inner = ip(
        "10.60.0.7",
        "10.201.2.2",
        0,
        &udp(4000, 7000, b"inner copy"),
    );
    let mut gtp = gtpu_header(0x300, inner.len(), false);
    gtp.extend_from_slice(&inner);
    send_from_upf(&t.upf, "10.201.1.2", 2152, gtp.clone());
    assert_eq!(
        received(&sock).as_deref(),
        Some(&b"inner copy"[..]),
        "decapsulated copy"
    );
    assert_eq!(
        received(&gtp_sink),
        Some(gtp),
        "the original's payload, unchanged"
    );
}

/// DUPLICATE_DECAPSULATED with an IPv6 outer header: the sender's UDP checksum is still partial
/// (offloaded) when the packet crosses the veth, so the copy must leave the original's checksum
/// state intact: the original GTP-U datagram reaches the host's socket, the inner copy the app.
#[test]
fn duplicate_decapsulated_over_ipv6_keeps_the_original_intact() {
    let t = topology();
    let plane = attach(&t.host, AttachMode::Auto);
    let sock = listen(&t.app, 7100);
    let gtp_sink = t.host.run(|| {
        let s = UdpSocket::bind("[fd00:201:1::2]:2152").expect("bind [::]:2152 in host namespace");
        s.set_read_timeout(Some(Duration::from_millis(700)))
            .unwrap();
        s
    });
    let r = rt();
    let dup_decap = rule(
        "dup-decap6",
        1,
        "DUPLICATE_DECAPSULATED",
        json!({"tag": ["0x310"]}),
        json!([{"interfaceType": "MAC", "dstMacAddress": mac_str(t.a0_mac)}]),
    );
    r.block_on(add(&plane, &app("app-1"), &dup_decap)).unwrap();
    // Short datagrams with and without a GTP-U extension header, and one of odd length that spans
    // many checksum chunks.
    for (i, (ext, pad)) in [(false, 0), (true, 0), (true, 1001)]
        .into_iter()
        .enumerate()
    {
        let payload = format!("inner copy over IPv6 #{i}{}", "x".repeat(pad));
        let inner = ip(
            "10.60.0.7",
            "10.201.2.2",
            0,
            &udp(4000, 7100, payload.as_bytes()),
        );
        let mut gtp = gtpu_header(0x310, inner.len(), ext);
        gtp.extend_from_slice(&inner);
        send_from_upf6(&t.upf, "fd00:201:1::2", 2152, gtp.clone());
        assert_eq!(
            received(&sock).as_deref(),
            Some(payload.as_bytes()),
            "decapsulated copy (case {i})"
        );
        assert_eq!(
            received(&gtp_sink),
            Some(gtp),
            "the original's payload, unchanged (case {i})"
        );
    }
    assert_eq!(plane.rule_counters()[0].packets, 3);
}
