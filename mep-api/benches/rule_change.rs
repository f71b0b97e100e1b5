//! What one rule change over Mm5 costs with 100, 10,000 and 100,000 active traffic rules (100 per
//! application instance, the real store with fsync): p50/p99 of the Mm5 response, which returns
//! after the commit, the data plane and the new snapshot, and the CPU of this process (server and
//! client) per change. The peer in the same run: what rebuilding the whole snapshot for each
//! change (the way before) costs at that size.
//!
//! `cargo bench -p mep-api --bench rule_change` uses the `none` data plane; with `-- --xdp` (root,
//! `--features xdp`) the xdp data plane attached to a veth, so that every change also updates the
//! kernel maps before the response. Under `cargo test` it runs 100 rules as a smoke test.

use std::time::{Duration, Instant};

mod support;

use mep_api::config::DataPlaneChoice;
use mep_rules::{Snapshot, TrafficRule};
use serde_json::{json, Value};

const PER_APP: usize = 100;

fn appd(app: usize, changed: usize) -> Value {
    let rules: Vec<Value> = (0..PER_APP)
        .map(|i| {
            let port = if i == 0 { 1000 + changed % 50_000 } else { 1000 + i };
            json!({"trafficRuleId": format!("t{i}"), "filterType": "FLOW", "priority": (i % 8) as u32,
                   "action": "DROP", "state": "ACTIVE",
                   "trafficFilter": [{"dstAddress": [format!("10.{}.{}.{}/32", app / 250, app % 250, i % 250)],
                                      "dstPort": [port.to_string()]}]})
        })
        .collect();
    json!({"appName": format!("app-{app}"), "appTrafficRule": rules, "appDNSRule": []})
}

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    sorted[((sorted.len() - 1) as f64 * p).round() as usize]
}

fn cpu_time() -> Duration {
    // SAFETY: getrusage only fills the struct it is given.
    let usage = unsafe {
        let mut usage = std::mem::zeroed::<libc::rusage>();
        libc::getrusage(libc::RUSAGE_SELF, &mut usage);
        usage
    };
    let tv = |t: libc::timeval| Duration::new(t.tv_sec as u64, t.tv_usec as u32 * 1000);
    tv(usage.ru_utime) + tv(usage.ru_stime)
}

#[tokio::main]
async fn main() {
    let full = std::env::args().any(|a| a == "--bench");
    // `-- --rules N` measures one size only.
    let args: Vec<String> = std::env::args().collect();
    let only: Option<usize> = args
        .iter()
        .position(|a| a == "--rules")
        .and_then(|i| args.get(i + 1)?.parse().ok());
    let sizes: Vec<usize> = match (only, full) {
        (Some(n), _) => vec![n],
        (None, true) => vec![100, 10_000, 100_000],
        (None, false) => vec![100],
    };
    let changes = if full { 300 } else { 10 };
    let with_xdp = std::env::args().any(|a| a == "--xdp");
    println!(
        "data plane: {}",
        if with_xdp { "xdp on a veth" } else { "none" }
    );
    println!("| active traffic rules | Mm5 change p50 | p99 | CPU per change (process) | full snapshot rebuild (peer) |");
    println!("|---:|---:|---:|---:|---:|");
    for &rules in &sizes {
        let apps = rules / PER_APP;
        let veth = with_xdp.then(|| support::Veth::new("mepbench0"));
        let dataplane = match &veth {
            Some(v) => DataPlaneChoice::Xdp {
                interfaces: vec![v.0.clone()],
                native_targets: Vec::new(),
                dns: false,
            },
            None => DataPlaneChoice::None,
        };
        let (mep, _dir) = support::start_with(dataplane).await;
        let http = reqwest::Client::new();
        let url = |app: usize| support::appd_url(&mep, app);
        let loading = Instant::now();
        support::load(&mep, &http, apps, |app| appd(app, 0)).await;
        eprintln!(
            "loaded {rules} rules in {:.1} s",
            loading.elapsed().as_secs_f64()
        );
        assert_eq!(mep.snapshots().load().traffic_rule_count(), rules);

        let mut times = Vec::with_capacity(changes);
        let cpu_before = cpu_time();
        for c in 0..changes {
            let app = c * 7919 % apps;
            let body = appd(app, c + 1);
            let started = Instant::now();
            let r = http.put(url(app)).json(&body).send().await.unwrap();
            let took = started.elapsed();
            let progress: Value = r.json().await.unwrap();
            assert_eq!(progress["configResult"], "SUCCESS", "{progress}");
            times.push(took);
        }
        let cpu = (cpu_time() - cpu_before) / changes as u32;

        // The peer: a full rebuild of a snapshot of the same rules.
        let configs: Vec<(String, Vec<TrafficRule>)> = (0..apps)
            .map(|app| {
                let rules = serde_json::from_value(appd(app, 0)["appTrafficRule"].clone())
                    .expect("the rules parse");
                (format!("app-{app}"), rules)
            })
            .collect();
        let started = Instant::now();
        let rebuilt = Snapshot::build(
            0,
            configs
                .iter()
                .flat_map(|(a, t)| t.iter().map(move |r| (a.as_str(), r))),
            [],
        );
        let rebuild = started.elapsed();
        assert_eq!(rebuilt.traffic_rule_count(), rules);

        times.sort_unstable();
        println!(
            "| {rules} | {:.2} ms | {:.2} ms | {:.2} ms | {:.2} ms |",
            percentile(&times, 0.5).as_secs_f64() * 1e3,
            percentile(&times, 0.99).as_secs_f64() * 1e3,
            cpu.as_secs_f64() * 1e3,
            rebuild.as_secs_f64() * 1e3
        );
        mep.shutdown().await;
        drop(veth);
    }
}
