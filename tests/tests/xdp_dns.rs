//! `mep` with the xdp data plane answering DNS in the kernel (`--dns-xdp`) on a real veth: dig in
//! the UPF namespace asks the host's address; names with an ACTIVE rule are answered by the XDP
//! program while the DNS server's own counters stay where they were, a rule change over Mm5 is
//! the next answer, and a name without a rule reaches the server, which forwards it. Needs root
//! (CI runs as root).

#![cfg(feature = "xdp")]

use std::net::{SocketAddr, UdpSocket};
use std::process::Command;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use mep_ebpf::AttachMode;
use mep_ebpf_testkit::topology::*;
use mep_ebpf_testkit::*;
use mep_rules::DataPlane;
use mep_tests::{test_config, TestMep};
use reqwest::Method;
use serde_json::json;

/// The DNS port on the host's veth address.
const PORT: u16 = 5300;

/// `dig +short` from `ns`; the RCODE line when there is no answer (`+short` prints nothing).
fn dig(ns: &Netns, name: &str, qtype: &str) -> String {
    let out = Command::new("ip")
        .args(["netns", "exec", &ns.name, "dig", "+tries=1", "+time=2"])
        .args(["-p", &PORT.to_string(), "@10.201.1.2", name, qtype])
        .output()
        .expect("run dig (Debian bind9-dnsutils)");
    let text = String::from_utf8_lossy(&out.stdout);
    let status = text
        .lines()
        .find_map(|l| l.split("status: ").nth(1))
        .map(|s| s.split(',').next().unwrap_or(s).to_owned())
        .unwrap_or_else(|| "no answer".into());
    let answers: Vec<&str> = text
        .lines()
        .skip_while(|l| !l.starts_with(";; ANSWER SECTION"))
        .skip(1)
        .take_while(|l| !l.is_empty())
        .filter_map(|l| l.split_whitespace().last())
        .collect();
    if answers.is_empty() {
        status
    } else {
        answers.join(" ")
    }
}

/// Relays UDP queries from the host namespace's veth address to mep's DNS server (which the test
/// runs on loopback in its own namespace), as a server bound to that address would take them.
fn relay(t: &Topology, server: SocketAddr, stop: Arc<AtomicBool>) -> std::thread::JoinHandle<()> {
    let front = t
        .host
        .run(|| UdpSocket::bind(("10.201.1.2", PORT)))
        .expect("bind the relay in the host namespace");
    front
        .set_read_timeout(Some(Duration::from_millis(100)))
        .unwrap();
    let back = UdpSocket::bind("127.0.0.1:0").unwrap();
    back.connect(server).unwrap();
    back.set_read_timeout(Some(Duration::from_secs(3))).unwrap();
    std::thread::spawn(move || {
        let mut buf = [0u8; 4096];
        while !stop.load(Ordering::Relaxed) {
            let Ok((n, client)) = front.recv_from(&mut buf) else {
                continue;
            };
            if back.send(&buf[..n]).is_ok() {
                if let Ok(n) = back.recv(&mut buf) {
                    let _ = front.send_to(&buf[..n], client);
                }
            }
        }
    })
}

fn udp_queries(metrics: &str) -> u64 {
    metrics
        .lines()
        .find_map(|l| l.strip_prefix("mep_dns_queries_total{transport=\"udp\"} "))
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or(0)
}

fn dns_config(ip: &str) -> serde_json::Value {
    json!({
        "appName": "video",
        "appDNSRule": [{
            "dnsRuleId": "dns-1", "domainName": "video.edge.example", "ipAddressType": "IP_V4",
            "ipAddress": ip, "ttl": 30, "state": "ACTIVE"
        }]
    })
}

#[test]
fn kernel_answers_follow_mm5_while_other_names_reach_the_server() {
    let t = topology();
    let xdp = Arc::new(
        t.host
            .run(|| dns_plane_with(vec!["h0".into()], AttachMode::Generic, PORT)),
    );
    let plane: Arc<dyn DataPlane> = xdp.clone();
    let rt = rt();
    let dir = tempfile::tempdir().unwrap();
    let mep = rt.block_on(TestMep::start_with_dataplane(
        test_config(dir.path()),
        Some(plane),
    ));
    let stop = Arc::new(AtomicBool::new(false));
    let relay = relay(&t, mep.mep.dns_addr, stop.clone());

    let (status, progress) =
        rt.block_on(mep.appd(Method::POST, "app-1", Some(&dns_config("192.0.2.10"))));
    assert_eq!(
        (status, progress["configResult"].as_str()),
        (200, Some("SUCCESS")),
        "{progress}"
    );
    let served_before = udp_queries(&rt.block_on(mep.metrics_text()));
    assert_eq!(dig(&t.upf, "video.edge.example", "A"), "192.0.2.10");
    assert_eq!(dig(&t.upf, "Video.Edge.Example", "A"), "192.0.2.10");
    assert_eq!(
        udp_queries(&rt.block_on(mep.metrics_text())),
        served_before,
        "the server saw none of the kernel's answers"
    );

    // The platform manager moves the name: the next answer has the new address.
    let (status, _) = rt.block_on(mep.appd(Method::PUT, "app-1", Some(&dns_config("192.0.2.20"))));
    assert_eq!(status, 200);
    assert_eq!(dig(&t.upf, "video.edge.example", "A"), "192.0.2.20");

    // No rule: the server gets it and forwards it (to a dead upstream, hence SERVFAIL).
    assert_eq!(dig(&t.upf, "other.example", "A"), "SERVFAIL");
    assert_eq!(
        udp_queries(&rt.block_on(mep.metrics_text())),
        served_before + 1,
        "only the name without a rule reached the server"
    );
    let counters = xdp.dns_counters();
    assert_eq!((counters.answered, counters.passed), (3, 1), "{counters:?}");
    let metrics = rt.block_on(mep.metrics_text());
    assert!(
        metrics.contains("mep_dataplane_dns_queries{outcome=\"answered\"} 3"),
        "{metrics}"
    );

    stop.store(true, Ordering::Relaxed);
    relay.join().unwrap();
}
