//! What one rule change costs the snapshot, against rebuilding every rule (the way before
//! persistent maps), at 100, 10,000 and 100,000 active traffic rules (100 per app instance, plus
//! one DNS rule each); and what the persistent map costs a DNS lookup, against a std `HashMap`
//! of the same names in the same run.
//!
//! `cargo bench -p mep-rules --bench snapshot_change`; under `cargo test` it runs one small size
//! as a smoke test.

use std::collections::HashMap;
use std::hint::black_box;
use std::time::{Duration, Instant};

use mep_rules::{DnsRule, RuleState, Snapshot, TrafficRule};
use serde_json::json;

fn traffic(app: usize, i: usize) -> TrafficRule {
    serde_json::from_value(json!({
        "trafficRuleId": format!("t{i}"), "filterType": "FLOW", "priority": (i % 8) as u32,
        "action": "DROP", "state": "ACTIVE",
        "trafficFilter": [{"dstAddress": [format!("10.{}.{}.{}/32", app / 250, app % 250, i % 250)],
                           "dstPort": [format!("{}", 1000 + i)]}]
    }))
    .expect("a valid traffic rule")
}

fn dns(app: usize) -> DnsRule {
    serde_json::from_value(json!({
        "dnsRuleId": "d", "domainName": format!("app-{app}.edge.example"), "ipAddressType": "IP_V4",
        "ipAddress": format!("192.0.2.{}", app % 250 + 1), "ttl": 30, "state": "ACTIVE"
    }))
    .expect("a valid DNS rule")
}

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    sorted[((sorted.len() - 1) as f64 * p).round() as usize]
}

fn main() {
    let full = std::env::args().any(|a| a == "--bench");
    let sizes: &[usize] = if full {
        &[100, 10_000, 100_000]
    } else {
        &[1_000]
    };
    println!("| active traffic rules | full rebuild | one-rule change p50 | p99 | ratio (rebuild / p50) |");
    println!("|---:|---:|---:|---:|---:|");
    for &n in sizes {
        let apps = n.div_ceil(100);
        let per_app = n / apps;
        let rules: Vec<(String, Vec<TrafficRule>, Vec<DnsRule>)> = (0..apps)
            .map(|a| {
                let t = (0..per_app).map(|i| traffic(a, i)).collect();
                (format!("app-{a}"), t, vec![dns(a)])
            })
            .collect();
        let build = || {
            Snapshot::build(
                1,
                rules
                    .iter()
                    .flat_map(|(a, t, _)| t.iter().map(move |r| (a.as_str(), r))),
                rules
                    .iter()
                    .flat_map(|(a, _, d)| d.iter().map(move |r| (a.as_str(), r))),
            )
        };
        let started = Instant::now();
        let base = build();
        let rebuild = started.elapsed();
        assert_eq!(base.traffic_rule_count(), apps * per_app);

        let changes = if full { 200 } else { 20 };
        let mut current = base;
        let mut times = Vec::with_capacity(changes);
        for c in 0..changes {
            let (app, t, d) = &rules[c * 7919 % apps];
            let mut changed = t.clone();
            changed[c % per_app].state = if c % 2 == 0 {
                RuleState::Inactive
            } else {
                RuleState::Active
            };
            let started = Instant::now();
            let next = current.with_app_rules(c as u64 + 2, app, Some(app), &changed, d);
            times.push(started.elapsed());
            current = black_box(next);
        }
        times.sort_unstable();
        let p50 = percentile(&times, 0.5);
        println!(
            "| {} | {:.2} ms | {:.1} µs | {:.1} µs | {:.0}x |",
            apps * per_app,
            rebuild.as_secs_f64() * 1e3,
            p50.as_secs_f64() * 1e6,
            percentile(&times, 0.99).as_secs_f64() * 1e6,
            rebuild.as_secs_f64() / p50.as_secs_f64()
        );

        // DNS lookups: the snapshot's persistent map against a std HashMap of the same names.
        let names: Vec<String> = (0..apps).map(|a| format!("app-{a}.edge.example")).collect();
        let std_map: HashMap<&str, usize> = names
            .iter()
            .enumerate()
            .map(|(i, n)| (n.as_str(), i))
            .collect();
        let lookups = if full { 2_000_000 } else { 20_000 };
        let started = Instant::now();
        for i in 0..lookups {
            black_box(current.dns_answers(black_box(&names[i % apps])));
        }
        let persistent = started.elapsed();
        let started = Instant::now();
        for i in 0..lookups {
            black_box(std_map.get(black_box(names[i % apps].as_str())));
        }
        let std = started.elapsed();
        println!(
            "|   DNS lookup, {} names | persistent map {:.0} ns | std HashMap {:.0} ns | | {:.2}x |",
            apps,
            persistent.as_nanos() as f64 / lookups as f64,
            std.as_nanos() as f64 / lookups as f64,
            persistent.as_secs_f64() / std.as_secs_f64()
        );
    }
}
