//! Benchmark of the XDP data plane. Per packet, through `BPF_PROG_TEST_RUN`: ns with 1, 100,
//! 10,000 and 100,000 ACTIVE rules, for a plain and a GTP-U packet that match a rule and a plain
//! packet that matches none (most traffic at a UPF), next to a program that only
//! returns XDP_PASS (the floor, measured in the same run). Per rule change: the time to add or
//! remove one rule at each of those sizes, with the map writes it made, and the time to publish
//! each rule set from empty; the kernel memory of mep's maps at the largest size. Run as root by
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

fn ipv4_udp(src: [u8; 4], dst: [u8; 4], sport: u16, dport: u16, payload: &[u8]) -> Vec<u8> {
    let mut ip = vec![0x45, 0];
    ip.extend_from_slice(&((28 + payload.len()) as u16).to_be_bytes());
    ip.extend_from_slice(&[0, 1, 0x40, 0, 64, 17, 0, 0]);
    ip.extend_from_slice(&src);
    ip.extend_from_slice(&dst);
    let c = !mep_ebpf::ones_complement_sum(&ip);
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
        "{:<8} {:>8} {:>8} {:>9} {:>8} {:>12} {:>12} {:>15}",
        "rules",
        "plain",
        "gtp-u",
        "no match",
        "floor",
        "plain/floor",
        "gtp-u/floor",
        "no match/floor"
    );
    let mut changes = Vec::new();
    // `--quick`: 100 rules only, for trying a change to the program.
    let sizes: &[u32] = if std::env::args().any(|a| a == "--quick") {
        &[100]
    } else {
        &SIZES
    };
    for &n in sizes {
        let rules: Vec<TrafficRule> = (0..n).map(rule).collect();
        let snapshot = Snapshot::build(1, rules.iter().map(|r| ("bench", r)), []);
        assert_eq!(snapshot.traffic_rule_count(), n as usize);
        rt.block_on(plane.resync(&Snapshot::default()))
            .expect("empty");
        let started = Instant::now();
        rt.block_on(plane.resync(&snapshot)).expect("resync");
        let publish = started.elapsed();
        changes.push((n, publish, one_rule_changes(&rt, &plane, &app, n)));
        let (plain, gtp) = packets(n / 2);
        let hit = plane.test_run(TestProgram::Steer, &plain, 1).expect("run");
        assert_eq!(hit.verdict, 2, "PASSTHROUGH");
        let before = plane.rule_counters().iter().map(|c| c.packets).sum::<u64>();
        let floor = median_ns(&plane, TestProgram::Pass, &plain);
        let g = median_ns(&plane, TestProgram::Steer, &gtp);
        let p = median_ns(&plane, TestProgram::Steer, &plain);
        let after = plane.rule_counters().iter().map(|c| c.packets).sum::<u64>();
        let (miss, _) = packets(n + 7);
        let m = median_ns(&plane, TestProgram::Steer, &miss);
        assert_eq!(
            after - before,
            2 * u64::from(REPEAT) * ROUNDS as u64,
            "every measured packet matched its rule"
        );
        println!(
            "{n:<8} {p:>8.1} {g:>8.1} {m:>9.1} {floor:>8.1} {:>12.1} {:>12.1} {:>15.1}",
            p / floor,
            g / floor,
            m / floor
        );
    }
    println!();
    println!(
        "rule changes: publish the whole set from empty; then {CHANGES} single-rule changes \
         (add or remove one rule, {} ms apart), p50/p99 and map writes per change",
        SPACING.as_millis()
    );
    println!(
        "{:<8} {:>12} {:>10} {:>10} {:>12}",
        "rules", "publish ms", "p50 us", "p99 us", "writes p50"
    );
    for (n, publish, c) in &changes {
        println!(
            "{n:<8} {:>12.1} {:>10.0} {:>10.0} {:>12}",
            publish.as_secs_f64() * 1e3,
            c.p50.as_secs_f64() * 1e6,
            c.p99.as_secs_f64() * 1e6,
            c.writes_p50
        );
    }
    let occ = plane.occupancy();
    println!();
    println!(
        "maps at {} rules: {} entries, {} list items reserved; kernel memory of mep's maps: {}",
        occ.rules,
        occ.entries,
        occ.list_items,
        map_memory().unwrap_or_else(|| "unknown (bpftool failed)".into())
    );
    rt.block_on(plane.shutdown());
}

const SIZES: [u32; 4] = [1, 100, 10_000, 100_000];
const CHANGES: usize = 200;
/// Changes arrive spaced like an operator's (the data plane waits out its grace period otherwise).
const SPACING: Duration = Duration::from_millis(3);

struct ChangeCost {
    p50: Duration,
    p99: Duration,
    writes_p50: usize,
}

/// Adds and removes one more rule, alternately, `CHANGES` times.
fn one_rule_changes(
    rt: &tokio::runtime::Runtime,
    plane: &XdpDataPlane,
    app: &AppInfo,
    n: u32,
) -> ChangeCost {
    let mut took = Vec::with_capacity(CHANGES);
    let mut writes = Vec::with_capacity(CHANGES);
    for i in 0..CHANGES {
        let extra = rule(n + (i / 2) as u32);
        let change = if i % 2 == 0 {
            RuleChange::AddTraffic(extra)
        } else {
            RuleChange::RemoveTraffic(extra)
        };
        std::thread::sleep(SPACING);
        let started = Instant::now();
        rt.block_on(plane.apply(app, &[change])).expect("change");
        took.push(started.elapsed());
        writes.push(plane.last_update().map_or(0, |u| u.map_writes));
    }
    took.sort();
    writes.sort();
    ChangeCost {
        p50: took[CHANGES / 2],
        p99: took[CHANGES * 99 / 100],
        writes_p50: writes[CHANGES / 2],
    }
}

/// The kernel memory of the maps named `MEP_*`, as bpftool reports it.
fn map_memory() -> Option<String> {
    let out = std::process::Command::new("bpftool")
        .args(["-j", "map", "show"])
        .output()
        .ok()?;
    let maps: Vec<serde_json::Value> = serde_json::from_slice(&out.stdout).ok()?;
    let mut total = 0u64;
    let mut biggest: Vec<(String, u64)> = Vec::new();
    for m in &maps {
        let name = m["name"].as_str().unwrap_or("");
        if !name.starts_with("MEP_") {
            continue;
        }
        let bytes = m["bytes_memlock"].as_u64().unwrap_or(0);
        total += bytes;
        biggest.push((name.to_owned(), bytes));
    }
    biggest.sort_by_key(|b| std::cmp::Reverse(b.1));
    let top: Vec<String> = biggest
        .iter()
        .take(4)
        .map(|(n, b)| format!("{n} {:.1} MiB", *b as f64 / 1048576.0))
        .collect();
    Some(format!(
        "{:.1} MiB ({})",
        total as f64 / 1048576.0,
        top.join(", ")
    ))
}
