//! `mep` with the XDP data plane on a real veth in a network namespace: a rule change made over
//! Mm5 or Mp1 changes what happens to the very next packet. Needs root (CI runs as root).

#![cfg(feature = "xdp")]

use std::sync::Arc;

use mep_ebpf::AttachMode;
use mep_ebpf_testkit::topology::*;
use mep_ebpf_testkit::*;
use mep_rules::DataPlane;
use mep_tests::{test_config, TestMep};
use reqwest::Method;
use serde_json::{json, Value};

#[test]
fn mm5_and_mp1_rule_changes_steer_the_next_packet() {
    let t = topology();
    let plane: Arc<dyn DataPlane> = t
        .host
        .run(|| Arc::new(plane_with(vec!["h0".into()], AttachMode::Auto)));
    let sock = listen(&t.app, 5000);
    let rt = rt();
    let dir = tempfile::tempdir().unwrap();
    let mep = rt.block_on(TestMep::start_with_dataplane(
        test_config(dir.path()),
        Some(plane.clone()),
    ));

    send_from_upf(&t.upf, "10.201.2.2", 5000, b"before".to_vec());
    assert_eq!(
        received(&sock).as_deref(),
        Some(&b"before"[..]),
        "routed without rules"
    );

    // The platform manager configures a DROP rule over Mm5.
    let config = json!({
        "appName": "blocker",
        "appTrafficRule": [{
            "trafficRuleId": "drop-5000", "filterType": "FLOW", "priority": 1, "action": "DROP",
            "state": "ACTIVE",
            "trafficFilter": [{"dstAddress": ["10.201.2.2/32"], "dstPort": ["5000"], "protocol": ["UDP"]}]
        }]
    });
    let (status, progress) = rt.block_on(mep.appd(Method::POST, "app-1", Some(&config)));
    assert_eq!(
        (status, progress["configResult"].as_str()),
        (200, Some("SUCCESS")),
        "{progress}"
    );
    send_from_upf(&t.upf, "10.201.2.2", 5000, b"dropped".to_vec());
    assert_eq!(received(&sock), None, "the next packet is dropped");

    let counters: Value = rt.block_on(async {
        mep.json_at(mep.mm5_url("/mepcfg/dataplane/v1/traffic_rule_counters"))
            .await
    });
    assert_eq!(counters[0]["trafficRuleId"], "drop-5000");
    assert_eq!(counters[0]["appInstanceId"], "app-1");
    assert_eq!(counters[0]["packets"], 1);

    // The application switches its rule off over Mp1.
    let url = mep.app_support("/applications/app-1/traffic_rules/drop-5000");
    let status = rt.block_on(async {
        let mut rule: Value = mep.json_at(&url).await;
        rule["state"] = json!("INACTIVE");
        mep.send_json(Method::PUT, &url, &rule).await.status()
    });
    assert_eq!(status, 200);
    send_from_upf(&t.upf, "10.201.2.2", 5000, b"after".to_vec());
    assert_eq!(
        received(&sock).as_deref(),
        Some(&b"after"[..]),
        "the next packet passes again"
    );

    // A FORWARD rule towards the app's veth: the XDP program hands the packet to TC, it arrives,
    // and /metrics says how it left.
    let forward = json!({
        "appName": "blocker",
        "appTrafficRule": [{
            "trafficRuleId": "to-app", "filterType": "FLOW", "priority": 1, "action": "FORWARD_AS_IS",
            "state": "ACTIVE",
            "trafficFilter": [{"dstAddress": ["10.201.2.2/32"], "dstPort": ["5000"], "protocol": ["UDP"]}],
            "dstInterface": [{"interfaceType": "IP", "dstIpAddress": "10.201.2.2"}]
        }]
    });
    let (status, progress) = rt.block_on(mep.appd(Method::PUT, "app-1", Some(&forward)));
    assert_eq!(status, 200, "{progress}");
    assert_eq!(progress["configResult"], "SUCCESS", "{progress}");
    send_from_upf(&t.upf, "10.201.2.2", 5000, b"forwarded".to_vec());
    assert_eq!(received(&sock).as_deref(), Some(&b"forwarded"[..]));
    let metrics = rt.block_on(mep.metrics_text());
    assert!(
        metrics.contains("mep_dataplane_forwarded_packets{outcome=\"tc_redirect\"} 1"),
        "{metrics}"
    );
    assert!(metrics.contains("mep_dataplane_forwarded_packets{outcome=\"no_route\"} 0"));

    rt.block_on(mep.stop());
}
