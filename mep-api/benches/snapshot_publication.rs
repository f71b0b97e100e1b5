//! How soon a rule change made over Mm5 is visible to snapshot readers (the DNS server, the XDP
//! data plane). A reader thread spins on the snapshot cell and timestamps every new version; each
//! Mm5 write is timed from send to response. Reported: write latency, the delay from the write
//! returning to a spinning reader seeing the new snapshot (negative: seen before the response),
//! and whether a reader loading the cell when the write returns already gets the new snapshot.
//!
//! `cargo bench -p mep-api --bench snapshot_publication` runs 10,000 changes over 100
//! applications; under `cargo test` it runs a few changes as a smoke test.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Instant;

mod support;

use parking_lot::Mutex;
use serde_json::json;

fn appd(app: usize, octet: usize) -> serde_json::Value {
    json!({
        "appName": format!("app-{app}"),
        "appDNSRule": [{"dnsRuleId": "d", "domainName": format!("app-{app}.edge.example"),
                        "ipAddressType": "IP_V4", "ipAddress": format!("192.0.2.{}", octet % 250 + 1),
                        "ttl": 30, "state": "ACTIVE"}],
        "appTrafficRule": [{"trafficRuleId": "t", "filterType": "FLOW", "priority": 1, "action": "DROP",
                            "state": "ACTIVE", "trafficFilter": [{"dstPort": [format!("{}", 1000 + app)]}]}]
    })
}

fn percentile(sorted: &[f64], p: f64) -> f64 {
    sorted[((sorted.len() - 1) as f64 * p).round() as usize]
}

#[tokio::main]
async fn main() {
    let full = std::env::args().any(|a| a == "--bench");
    let (apps, changes) = if full { (100, 10_000) } else { (3, 20) };
    let (mep, _dir) = support::start().await;
    let http = reqwest::Client::new();
    let url = |app: usize| support::appd_url(&mep, app);
    support::load(&mep, &http, apps, |app| appd(app, 0)).await;

    // The reader: records when each snapshot version first became visible.
    let cell = mep.snapshots();
    let seen: Arc<Mutex<Vec<(u64, Instant)>>> = Arc::default();
    let stop = Arc::new(AtomicBool::new(false));
    let reader = {
        let (cell, seen, stop) = (cell.clone(), seen.clone(), stop.clone());
        std::thread::spawn(move || {
            let mut last = 0;
            while !stop.load(Ordering::Relaxed) {
                let v = cell.load().version;
                if v != last {
                    seen.lock().push((v, Instant::now()));
                    last = v;
                }
            }
        })
    };

    let mut writes = Vec::with_capacity(changes);
    let mut visible_at_return = 0;
    for i in 0..changes {
        let app = i % apps;
        let before = cell.load().version;
        let started = Instant::now();
        let r = http
            .put(url(app))
            .json(&appd(app, i + 1))
            .send()
            .await
            .unwrap();
        let returned = Instant::now();
        // What any reader loading the cell right now gets.
        if cell.load().version > before {
            visible_at_return += 1;
        }
        let progress: serde_json::Value = r.json().await.unwrap();
        assert_eq!(progress["configResult"], "SUCCESS");
        writes.push((before, started, returned));
    }
    std::thread::sleep(std::time::Duration::from_millis(20));
    stop.store(true, Ordering::Relaxed);
    reader.join().unwrap();
    let seen = seen.lock().clone();

    let mut latency_ms = Vec::new();
    let mut visible_after_return_us = Vec::new();
    let mut seen_before_return = 0;
    for (before, started, returned) in &writes {
        let Some((_, at)) = seen.iter().find(|(v, _)| *v > *before) else {
            panic!("a change never became visible");
        };
        latency_ms.push(returned.duration_since(*started).as_secs_f64() * 1e3);
        let delay = if *at <= *returned {
            seen_before_return += 1;
            -(returned.duration_since(*at).as_secs_f64() * 1e6)
        } else {
            at.duration_since(*returned).as_secs_f64() * 1e6
        };
        visible_after_return_us.push(delay);
    }
    latency_ms.sort_by(f64::total_cmp);
    visible_after_return_us.sort_by(f64::total_cmp);
    println!(
        "snapshot publication: {changes} Mm5 changes over {apps} applications ({} rules in every snapshot)",
        apps * 2
    );
    println!(
        "  Mm5 write latency          p50 {:8.3} ms   p99 {:8.3} ms",
        percentile(&latency_ms, 0.5),
        percentile(&latency_ms, 0.99)
    );
    println!(
        "  return -> seen by reader    p50 {:8.1} us   p99 {:8.1} us   (negative: visible before the response)",
        percentile(&visible_after_return_us, 0.5),
        percentile(&visible_after_return_us, 0.99)
    );
    println!(
        "  new snapshot loaded by a reader at the moment the write returned: {visible_at_return} of {changes}"
    );
    println!(
        "  spinning reader saw it before the response arrived: {seen_before_return} of {changes}"
    );
    assert_eq!(
        visible_at_return, changes,
        "every snapshot is published before the write returns"
    );
    mep.shutdown().await;
}
