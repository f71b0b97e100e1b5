//! Mm5 application configuration: tasks, validation, data-plane calls, rollback and snapshots.

use std::sync::Arc;

use mep_tests::{appd_body, test_config, ScriptedDataPlane, TestMep};
use reqwest::Method;
use serde_json::{json, Value};

async fn mep_with_plane() -> (TestMep, Arc<ScriptedDataPlane>, tempfile::TempDir) {
    let dir = tempfile::tempdir().unwrap();
    let plane = ScriptedDataPlane::new();
    let mep = TestMep::start_with_dataplane(test_config(dir.path()), Some(plane.clone())).await;
    (mep, plane, dir)
}

#[tokio::test]
async fn create_read_update_delete_as_tasks() {
    let (mep, plane, _dir) = mep_with_plane().await;
    let body = appd_body("video", "video.edge.example");
    let (status, progress) = mep.appd(Method::POST, "app-1", Some(&body)).await;
    assert_eq!(status, 200);
    assert_eq!(progress["configResult"], "SUCCESS");
    assert_eq!(progress["configPhase"], "100");
    assert_eq!(progress["appInstanceId"], "app-1");
    let task_id = progress["taskId"].as_str().unwrap().to_owned();
    let task: Value = mep
        .json_at(mep.mm5_url(&format!(
            "/mepcfg/app_lcm/v1/tasks/{task_id}/appd_configuration"
        )))
        .await;
    assert_eq!(task, progress);

    let calls = plane.calls();
    assert_eq!(
        calls.iter().map(|c| c.op).collect::<Vec<_>>(),
        vec!["add_dns", "add_traffic"]
    );
    assert_eq!(
        calls[1].rule["dstInterface"][0]["dstIpAddress"], "10.10.0.2",
        "the whole rule reaches the data plane"
    );
    assert_eq!(calls[1].rule["state"], "ACTIVE");

    let (status, stored) = mep.appd(Method::GET, "app-1", None).await;
    assert_eq!(status, 200);
    assert_eq!(stored["appName"], "video");
    assert_eq!(stored["appDNSRule"][0]["domainName"], "video.edge.example");

    let (status, _) = mep.appd(Method::POST, "app-1", Some(&body)).await;
    assert_eq!(status, 409, "a second POST is refused; PUT changes");

    let mut changed = body.clone();
    changed["appDNSRule"][0]["ipAddress"] = json!("192.0.2.11");
    changed["appTrafficRule"][0]["state"] = json!("INACTIVE");
    let (status, progress) = mep.appd(Method::PUT, "app-1", Some(&changed)).await;
    assert_eq!(
        (status, progress["configResult"].as_str()),
        (200, Some("SUCCESS"))
    );
    let ops: Vec<&str> = plane.calls()[2..].iter().map(|c| c.op).collect();
    assert_eq!(ops, vec!["set_dns", "delete_traffic"]);

    let mut renamed = changed.clone();
    renamed["appName"] = json!("other");
    assert_eq!(mep.appd(Method::PUT, "app-1", Some(&renamed)).await.0, 400);

    let (status, progress) = mep.appd(Method::DELETE, "app-1", None).await;
    assert_eq!(
        (status, progress["configResult"].as_str()),
        (200, Some("SUCCESS"))
    );
    assert_eq!(
        plane.calls().last().unwrap().op,
        "delete_dns",
        "INACTIVE rules are not in the data plane"
    );
    assert_eq!(mep.appd(Method::GET, "app-1", None).await.0, 404);
    assert_eq!(mep.appd(Method::DELETE, "app-1", None).await.0, 404);
    assert_eq!(mep.appd(Method::PUT, "app-1", Some(&body)).await.0, 404);
    let r = mep
        .http
        .get(mep.mm5_url("/mepcfg/app_lcm/v1/tasks/nope/appd_configuration"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 404);
    mep.stop().await;
}

/// A change that makes a valid configuration invalid.
type Mutation = Box<dyn Fn(&mut Value)>;

#[tokio::test]
async fn validation_edgegallery_skipped() {
    let (mep, plane, _dir) = mep_with_plane().await;
    let base = appd_body("video", "video.edge.example");
    let cases: Vec<(&str, Mutation)> = vec![
        (
            "bad CIDR",
            Box::new(|b| {
                b["appTrafficRule"][0]["trafficFilter"][0]["dstAddress"] =
                    json!(["198.51.100.0/40"])
            }),
        ),
        (
            "bad IP",
            Box::new(|b| {
                b["appTrafficRule"][0]["trafficFilter"][0]["srcAddress"] = json!(["1.2.3"])
            }),
        ),
        (
            "bad FQDN",
            Box::new(|b| b["appDNSRule"][0]["domainName"] = json!("bad_name..example")),
        ),
        (
            "family mismatch",
            Box::new(|b| b["appDNSRule"][0]["ipAddress"] = json!("2001:db8::1")),
        ),
        (
            "port range",
            Box::new(|b| b["appTrafficRule"][0]["trafficFilter"][0]["dstPort"] = json!(["90-80"])),
        ),
        (
            "port number",
            Box::new(|b| b["appTrafficRule"][0]["trafficFilter"][0]["dstPort"] = json!(["70000"])),
        ),
        (
            "priority",
            Box::new(|b| b["appTrafficRule"][0]["priority"] = json!(256)),
        ),
        (
            "unknown action",
            Box::new(|b| b["appTrafficRule"][0]["action"] = json!("TELEPORT")),
        ),
        (
            "missing appName",
            Box::new(|b| {
                b.as_object_mut().unwrap().remove("appName");
            }),
        ),
        (
            "duplicate id",
            Box::new(|b| {
                let dup = b["appDNSRule"][0].clone();
                b["appDNSRule"].as_array_mut().unwrap().push(dup);
            }),
        ),
        (
            "forward without destination",
            Box::new(|b| b["appTrafficRule"][0]["dstInterface"] = json!([])),
        ),
        (
            "too many rules",
            Box::new(|b| {
                let rules: Vec<Value> = (0..1010)
                .map(|i| json!({"dnsRuleId": format!("d{i}"), "domainName": format!("n{i}.example"),
                                "ipAddressType": "IP_V4", "ipAddress": "192.0.2.1", "state": "ACTIVE"}))
                .collect();
                b["appDNSRule"] = json!(rules);
            }),
        ),
    ];
    for (name, mutate) in cases {
        let mut body = base.clone();
        mutate(&mut body);
        let (status, problem) = mep.appd(Method::POST, "app-1", Some(&body)).await;
        assert_eq!(status, 400, "{name}: {problem}");
        assert_eq!(problem["status"], 400, "{name}");
    }
    assert!(
        plane.calls().is_empty(),
        "invalid configurations never reach the data plane"
    );

    // ttl 0 is a valid TTL.
    let mut zero = base.clone();
    zero["appDNSRule"][0]["ttl"] = json!(0);
    assert_eq!(
        mep.appd(Method::POST, "app-1", Some(&zero)).await.1["configResult"],
        "SUCCESS"
    );

    // A domain name belongs to one application instance.
    let (status, problem) = mep
        .appd(
            Method::POST,
            "app-2",
            Some(&appd_body("other", "VIDEO.edge.example.")),
        )
        .await;
    assert_eq!(status, 409, "{problem}");
    mep.stop().await;
}

#[tokio::test]
async fn a_failing_data_plane_rolls_the_task_back() {
    let (mep, plane, _dir) = mep_with_plane().await;
    let cell = mep.mep.snapshots();
    plane.fail_nth_call(2); // the DNS rule goes in, the traffic rule fails
    let (status, progress) = mep
        .appd(
            Method::POST,
            "app-1",
            Some(&appd_body("video", "video.edge.example")),
        )
        .await;
    assert_eq!(status, 200);
    assert_eq!(progress["configResult"], "FAILURE");
    assert!(
        progress["Detailed"]
            .as_str()
            .unwrap()
            .contains("told to fail call 2"),
        "{progress}"
    );
    let ops: Vec<&str> = plane.calls().iter().map(|c| c.op).collect();
    assert_eq!(
        ops,
        vec!["add_dns", "add_traffic", "delete_dns"],
        "the applied DNS rule was reverted"
    );
    assert_eq!(
        mep.appd(Method::GET, "app-1", None).await.0,
        404,
        "nothing was committed"
    );
    assert!(
        cell.load().dns_answers("video.edge.example").is_none(),
        "nothing was published"
    );

    // The app is not left locked: the same change goes through now.
    let (_, progress) = mep
        .appd(
            Method::POST,
            "app-1",
            Some(&appd_body("video", "video.edge.example")),
        )
        .await;
    assert_eq!(progress["configResult"], "SUCCESS");
    assert!(cell.load().dns_answers("video.edge.example").is_some());
    mep.stop().await;
}

#[tokio::test]
async fn snapshots_follow_every_committed_change() {
    let (mep, _plane, _dir) = mep_with_plane().await;
    let cell = mep.mep.snapshots();
    let v0 = cell.load().version;
    let (_, progress) = mep
        .appd(
            Method::POST,
            "app-1",
            Some(&appd_body("video", "Video.Edge.Example")),
        )
        .await;
    assert_eq!(progress["configResult"], "SUCCESS");
    // Visible as soon as the write returned.
    let snap = cell.load_full();
    assert!(snap.version > v0);
    let answers = snap.dns_answers("video.edge.example").unwrap();
    assert_eq!(answers[0].address.to_string(), "192.0.2.10");
    assert_eq!(answers[0].ttl, Some(30));
    assert_eq!(snap.traffic_rule_count(), 1);
    assert_eq!(
        snap.traffic_rules().next().unwrap().app_instance_id,
        "app-1"
    );

    let (_, progress) = mep.appd(Method::DELETE, "app-1", None).await;
    assert_eq!(progress["configResult"], "SUCCESS");
    let snap = cell.load_full();
    assert!(snap.dns_answers("video.edge.example").is_none());
    assert!(snap.traffic_rule_count() == 0);
    mep.stop().await;
}

#[tokio::test]
async fn configuration_survives_restart() {
    let dir = tempfile::tempdir().unwrap();
    let mep = TestMep::start(dir.path()).await;
    let (_, progress) = mep
        .appd(
            Method::POST,
            "app-1",
            Some(&appd_body("video", "video.edge.example")),
        )
        .await;
    assert_eq!(progress["configResult"], "SUCCESS");
    let task_id = progress["taskId"].as_str().unwrap().to_owned();
    mep.stop().await;

    let mep = TestMep::start(dir.path()).await;
    assert_eq!(
        mep.appd(Method::GET, "app-1", None).await.1["appName"],
        "video"
    );
    assert!(mep
        .mep
        .snapshots()
        .load()
        .dns_answers("video.edge.example")
        .is_some());
    let task: Value = mep
        .json_at(mep.mm5_url(&format!(
            "/mepcfg/app_lcm/v1/tasks/{task_id}/appd_configuration"
        )))
        .await;
    assert_eq!(task["configResult"], "SUCCESS");
    mep.stop().await;
}

/// A platform manager that gives up waiting does not cancel the task half-way.
#[tokio::test]
async fn a_client_going_away_does_not_cancel_the_task() {
    let (mep, plane, _dir) = mep_with_plane().await;
    plane.delay_calls(std::time::Duration::from_millis(300));
    let impatient = reqwest::Client::builder()
        .timeout(std::time::Duration::from_millis(100))
        .build()
        .unwrap();
    let url = mep.mm5_url("/mepcfg/app_lcm/v1/applications/app-1/appd_configuration");
    let r = impatient
        .post(&url)
        .json(&appd_body("video", "video.edge.example"))
        .send()
        .await;
    assert!(r.is_err(), "the client timed out");
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(5);
    while mep.appd(Method::GET, "app-1", None).await.0 != 200 {
        assert!(
            std::time::Instant::now() < deadline,
            "the task was cancelled with the request"
        );
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    let ops: Vec<&str> = plane.calls().iter().map(|c| c.op).collect();
    assert_eq!(ops, vec!["add_dns", "add_traffic"]);
    assert!(mep
        .mep
        .snapshots()
        .load()
        .dns_answers("video.edge.example")
        .is_some());
    mep.stop().await;
}

/// A slow data plane for one app (a UPF controller that takes seconds) holds up only that app's
/// changes: another app's change is answered meanwhile.
#[tokio::test]
async fn a_slow_change_of_one_app_does_not_delay_another() {
    let (mep, plane, _dir) = mep_with_plane().await;
    let mep = Arc::new(mep);
    plane.delay_app("app-slow", std::time::Duration::from_secs(3));
    let slow = {
        let mep = Arc::clone(&mep);
        tokio::spawn(async move {
            let started = std::time::Instant::now();
            let body = appd_body("slow", "slow.edge.example");
            let (status, task) = mep.appd(Method::POST, "app-slow", Some(&body)).await;
            (status, task, started.elapsed())
        })
    };
    tokio::time::sleep(std::time::Duration::from_millis(300)).await;
    let started = std::time::Instant::now();
    let body = appd_body("quick", "quick.edge.example");
    let (status, task) = mep.appd(Method::POST, "app-quick", Some(&body)).await;
    let quick = started.elapsed();
    assert_eq!(status, 200, "{task}");
    assert_eq!(task["configResult"], "SUCCESS", "{task}");
    assert!(
        quick < std::time::Duration::from_secs(2),
        "app-quick waited {quick:?} for app-slow"
    );
    assert!(
        !slow.is_finished(),
        "app-slow is still in its data-plane call"
    );
    let (status, task, took) = slow.await.unwrap();
    assert_eq!(status, 200, "{task}");
    assert_eq!(task["configResult"], "SUCCESS", "{task}");
    assert!(took >= std::time::Duration::from_secs(3));
}

/// Two apps that claim one domain name at the same time: exactly one gets it, even when the
/// first is still in a slow data-plane call when the second asks.
#[tokio::test]
async fn two_apps_racing_for_one_domain_name_do_not_both_get_it() {
    let (mep, plane, _dir) = mep_with_plane().await;
    let mep = Arc::new(mep);
    plane.delay_app("app-first", std::time::Duration::from_secs(1));
    let first = {
        let mep = Arc::clone(&mep);
        tokio::spawn(async move {
            let body = appd_body("first", "shared.edge.example");
            mep.appd(Method::POST, "app-first", Some(&body)).await
        })
    };
    tokio::time::sleep(std::time::Duration::from_millis(200)).await;
    let body = appd_body("second", "shared.edge.example");
    let (second_status, second) = mep.appd(Method::POST, "app-second", Some(&body)).await;
    let (first_status, first) = first.await.unwrap();
    assert_eq!(first_status, 200, "{first}");
    assert_eq!(first["configResult"], "SUCCESS", "{first}");
    assert_eq!(second_status, 409, "{second}");
    let answers = mep
        .mep
        .snapshots()
        .load()
        .dns_answers("shared.edge.example")
        .map(<[_]>::len);
    assert_eq!(answers, Some(1));
    // Once the first lets the name go, the second may take it.
    assert_eq!(mep.appd(Method::DELETE, "app-first", None).await.0, 200);
    let (status, task) = mep.appd(Method::POST, "app-second", Some(&body)).await;
    assert_eq!(status, 200, "{task}");
    assert_eq!(task["configResult"], "SUCCESS", "{task}");
}
