//! Benchmark of the XDP program through `BPF_PROG_TEST_RUN`: ns per packet with 1, 100 and 10,000
//! ACTIVE rules, for a plain and a GTP-U packet, next to a program that only returns XDP_PASS
//! (the floor, measured in the same run), plus the time to publish 10,000 rules. Run as root by
//! `benches/xdp.sh`.

use std::time::{Duration, Instant};

use mep_ebpf::{TestProgram, XdpConfig, XdpDataPlane};
use mep_rules::{AppInfo, DataPlane, RuleChange, Snapshot, TrafficRule};

const REPEAT: u32 = 2_000_000;
const ROUNDS: usize = 5;

fn rule(i: u32) -> TrafficRule {
    let dst = format!("10.{}.{}.{}", 100 + (i >> 16), (i >> 8) & 255, i & 255);
    serde_json::from_value(serde_json::json!({
        "trafficRuleId": format!("r{i}"), "filterType": "FLOW", "priority": i % 256,
        "action": "PASSTHROUGH", "state": "ACTIVE",
        "trafficFilter": [{"dstAddress": [dst], "protocol": ["UDP"], "dstPort": ["5000-5100"]}]
    }))
    .expect("rule")
}

fn csum(b: &[u8]) -> u16 {
    let mut s: u32 = b
        .chunks(2)
        .map(|c| u32::from(u16::from_be_bytes([c[0], *c.get(1).unwrap_or(&0)])))
        .sum();
    while s > 0xffff {
        s = (s & 0xffff) + (s >> 16);
    }
    !(s as u16)
}

fn ipv4_udp(src: [u8; 4], dst: [u8; 4], sport: u16, dport: u16, payload: &[u8]) -> Vec<u8> {
    let mut ip = vec![0x45, 0];
    ip.extend_from_slice(&((28 + payload.len()) as u16).to_be_bytes());
    ip.extend_from_slice(&[0, 1, 0x40, 0, 64, 17, 0, 0]);
    ip.extend_from_slice(&src);
    ip.extend_from_slice(&dst);
    let c = csum(&ip);
    ip[10..12].copy_from_slice(&c.to_be_bytes());
    ip.extend_from_slice(&sport.to_be_bytes());
    ip.extend_from_slice(&dport.to_be_bytes());
    ip.extend_from_slice(&((8 + payload.len()) as u16).to_be_bytes());
    ip.extend_from_slice(&[0, 0]);
    ip.extend_from_slice(payload);
    ip
}

fn frame(ip: &[u8]) -> Vec<u8> {
    let mut f = vec![2, 0, 0, 0, 0, 0xb, 2, 0, 0, 0, 0, 0xa, 0x08, 0x00];
    f.extend_from_slice(ip);
    f
}

/// A plain UDP packet and the same packet inside GTP-U, both aimed at rule `target`.
fn packets(target: u32) -> (Vec<u8>, Vec<u8>) {
    let dst = [
        10,
        100 + (target >> 16) as u8,
        (target >> 8) as u8,
        target as u8,
    ];
    let inner = ipv4_udp([10, 60, 0, 7], dst, 40000, 5050, &[0u8; 64]);
    let mut gtp = vec![0x30, 0xff];
    gtp.extend_from_slice(&(inner.len() as u16).to_be_bytes());
    gtp.extend_from_slice(&0x1234u32.to_be_bytes());
    gtp.extend_from_slice(&inner);
    let outer = ipv4_udp([192, 0, 2, 1], [192, 0, 2, 2], 2152, 2152, &gtp);
    (frame(&inner), frame(&outer))
}

fn median_ns(plane: &XdpDataPlane, program: TestProgram, packet: &[u8]) -> f64 {
    let mut runs: Vec<Duration> = (0..ROUNDS)
        .map(|_| {
            plane
                .test_run(program, packet, REPEAT)
                .expect("BPF_PROG_TEST_RUN")
                .per_run
        })
        .collect();
    runs.sort();
    runs[ROUNDS / 2].as_secs_f64() * 1e9
}

fn main() {
    let plane = match XdpDataPlane::new(XdpConfig {
        pin_path: format!("/sys/fs/bpf/mep-bench-{}", std::process::id()).into(),
        ..XdpConfig::default()
    }) {
        Ok(p) => p,
        Err(e) => {
            eprintln!("xdp_bench: {e}");
            std::process::exit(1);
        }
    };
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime");
    let app = AppInfo {
        app_instance_id: "bench".into(),
        app_name: "bench".into(),
    };
    println!("XDP steering program, BPF_PROG_TEST_RUN, {REPEAT} runs x {ROUNDS} rounds (median), ns per packet");
    println!(
        "{:<8} {:>8} {:>8} {:>8} {:>12} {:>12}",
        "rules", "plain", "gtp-u", "floor", "plain/floor", "gtp-u/floor"
    );
    let mut publish_10k = Duration::ZERO;
    let mut one_more = Duration::ZERO;
    for n in [1u32, 100, 10_000] {
        let rules: Vec<TrafficRule> = (0..n).map(rule).collect();
        let snapshot = Snapshot::build(1, rules.iter().map(|r| ("bench", r)), []);
        assert_eq!(snapshot.traffic_rule_count(), n as usize);
        rt.block_on(plane.resync(&Snapshot::default()))
            .expect("empty");
        let started = Instant::now();
        rt.block_on(plane.resync(&snapshot)).expect("resync");
        if n == 10_000 {
            publish_10k = started.elapsed();
            let extra = rule(n);
            let started = Instant::now();
            rt.block_on(plane.apply(&app, &[RuleChange::AddTraffic(extra.clone())]))
                .expect("add");
            one_more = started.elapsed();
            rt.block_on(plane.apply(&app, &[RuleChange::RemoveTraffic(extra.clone())]))
                .expect("delete");
        }
        let (plain, gtp) = packets(n / 2);
        let hit = plane.test_run(TestProgram::Steer, &plain, 1).expect("run");
        assert_eq!(hit.verdict, 2, "PASSTHROUGH");
        let before = plane.rule_counters().iter().map(|c| c.packets).sum::<u64>();
        let floor = median_ns(&plane, TestProgram::Pass, &plain);
        let g = median_ns(&plane, TestProgram::Steer, &gtp);
        let p = median_ns(&plane, TestProgram::Steer, &plain);
        let after = plane.rule_counters().iter().map(|c| c.packets).sum::<u64>();
        assert_eq!(
            after - before,
            2 * u64::from(REPEAT) * ROUNDS as u64,
            "every measured packet matched its rule"
        );
        println!(
            "{n:<8} {p:>8.1} {g:>8.1} {floor:>8.1} {:>12.1} {:>12.1}",
            p / floor,
            g / floor
        );
    }
    println!();
    println!(
        "publish 10,000 rules (compile + map writes + generation flip, from empty): {:.1} ms",
        publish_10k.as_secs_f64() * 1e3
    );
    println!(
        "add one rule on top of 10,000 (full recompile, changed elements written): {:.1} ms",
        one_more.as_secs_f64() * 1e3
    );
    rt.block_on(plane.shutdown());
}
