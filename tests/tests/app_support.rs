//! Mp1 application support: rules read and switched by the app, termination, readiness, timing,
//! registrations, and the platform manager's capability view.

use std::sync::Arc;
use std::time::Duration;

use mep_tests::{
    appd_body, assert_problem, service_body, test_config, CallbackReceiver, ScriptedDataPlane,
    TestMep,
};
use reqwest::Method;
use serde_json::{json, Value};

async fn configured() -> (TestMep, Arc<ScriptedDataPlane>, tempfile::TempDir) {
    let dir = tempfile::tempdir().unwrap();
    let plane = ScriptedDataPlane::new();
    let mep = TestMep::start_with_dataplane(test_config(dir.path()), Some(plane.clone())).await;
    let (_, progress) = mep
        .appd(
            Method::POST,
            "app-1",
            Some(&appd_body("video", "video.edge.example")),
        )
        .await;
    assert_eq!(progress["configResult"], "SUCCESS");
    (mep, plane, dir)
}

#[tokio::test]
async fn apps_read_and_switch_their_rules() {
    let (mep, plane, _dir) = configured().await;
    let list: Value = mep
        .json_at(mep.app_support("/applications/app-1/traffic_rules"))
        .await;
    assert_eq!(list[0]["trafficRuleId"], "tr-1");
    // app-2 was never configured: its resources do not exist.
    let unknown = mep
        .http
        .get(mep.app_support("/applications/app-2/traffic_rules"))
        .send()
        .await
        .unwrap();
    assert_problem(unknown, 404).await;

    let url = mep.app_support("/applications/app-1/traffic_rules/tr-1");
    let r = mep.http.get(&url).send().await.unwrap();
    assert_eq!(r.status(), 200);
    let etag = r.headers()["etag"].to_str().unwrap().to_owned();
    let mut rule: Value = r.json().await.unwrap();

    rule["state"] = json!("INACTIVE");
    rule["trafficRuleId"] = json!("ignored-body-id");
    let stale = mep
        .http
        .put(&url)
        .header("if-match", "\"old\"")
        .json(&rule)
        .send()
        .await
        .unwrap();
    assert_problem(stale, 412).await;
    let r = mep
        .http
        .put(&url)
        .header("if-match", &etag)
        .json(&rule)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    assert_ne!(r.headers()["etag"].to_str().unwrap(), etag);
    let updated: Value = r.json().await.unwrap();
    assert_eq!(
        updated["trafficRuleId"], "tr-1",
        "the path id wins over the body id"
    );
    assert_eq!(updated["state"], "INACTIVE");
    assert_eq!(plane.calls().last().unwrap().op, "delete_traffic");
    assert!(mep.mep.snapshots().load().traffic_rule_count() == 0);
    let again = mep.http.get(&url).send().await.unwrap();
    assert_eq!(again.json::<Value>().await.unwrap(), updated);

    // Through v2 as well, and a data-plane failure leaves the rule as it was.
    let v2 = url.replace("/v1/", "/v2/");
    rule["state"] = json!("ACTIVE");
    plane.fail_nth_call(1);
    let r = mep.send_json(Method::PUT, &v2, &rule).await;
    let problem = assert_problem(r, 503).await;
    assert!(problem["detail"].as_str().unwrap().contains("told to fail"));
    assert_eq!(mep.json_at(&url).await["state"], "INACTIVE");
    let r = mep.send_json(Method::PUT, &v2, &rule).await;
    assert_eq!(r.status(), 200);
    assert_eq!(plane.calls().last().unwrap().op, "add_traffic");
    assert_eq!(mep.mep.snapshots().load().traffic_rule_count(), 1);

    assert_problem(
        mep.http
            .get(mep.app_support("/applications/app-1/traffic_rules/nope"))
            .send()
            .await
            .unwrap(),
        404,
    )
    .await;
    assert_problem(
        mep.send_json(
            Method::PUT,
            mep.app_support("/applications/app-1/traffic_rules/nope"),
            &rule,
        )
        .await,
        404,
    )
    .await;
    let mut bad = rule.clone();
    bad["priority"] = json!(999);
    assert_problem(mep.send_json(Method::PUT, &url, &bad).await, 400).await;
    mep.stop().await;
}

#[tokio::test]
async fn dns_rules_switch_and_the_snapshot_follows() {
    let (mep, _plane, _dir) = configured().await;
    let url = mep.app_support("/applications/app-1/dns_rules/dns-1");
    let list: Value = mep
        .json_at(mep.app_support("/applications/app-1/dns_rules"))
        .await;
    assert_eq!(list[0]["dnsRuleId"], "dns-1");
    let r = mep.http.get(&url).send().await.unwrap();
    let etag = r.headers()["etag"].to_str().unwrap().to_owned();
    let mut rule: Value = r.json().await.unwrap();
    rule["state"] = json!("INACTIVE");
    let r = mep
        .http
        .put(&url)
        .header("if-match", &etag)
        .json(&rule)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    assert!(mep
        .mep
        .snapshots()
        .load()
        .dns_answers("video.edge.example")
        .is_none());
    rule["state"] = json!("ACTIVE");
    rule["ipAddress"] = json!("192.0.2.99");
    assert_eq!(mep.send_json(Method::PUT, &url, &rule).await.status(), 200);
    let snap = mep.mep.snapshots().load_full();
    assert_eq!(
        snap.dns_answers("video.edge.example").unwrap()[0]
            .address
            .to_string(),
        "192.0.2.99"
    );
    rule["ipAddressType"] = json!("IP_V6");
    assert_problem(mep.send_json(Method::PUT, &url, &rule).await, 400).await;
    mep.stop().await;
}

#[tokio::test]
async fn termination_notifies_waits_for_confirmation_and_cleans_up() {
    let (mep, plane, _dir) = configured().await;
    let mut rx = CallbackReceiver::start().await;
    let subs = mep.app_support("/applications/app-1/subscriptions");
    let r = mep
        .send_json(
            Method::POST,
            &subs,
            &json!({"subscriptionType": "AppTerminationNotificationSubscription",
                      "callbackReference": rx.url, "appInstanceId": "app-1"}),
        )
        .await;
    assert_eq!(r.status(), 201);
    let location = r.headers()["location"].to_str().unwrap().to_owned();
    let sub: Value = r.json().await.unwrap();
    assert_eq!(sub["_links"]["self"]["href"], location);
    assert_eq!(mep.json_at(&location).await, sub);
    let list: Value = mep.json_at(&subs).await;
    assert_eq!(list["_links"]["subscriptions"][0]["href"], location);
    assert_eq!(
        list["_links"]["subscriptions"][0]["subscriptionType"],
        "AppTerminationNotificationSubscription"
    );
    // The URI names the instance: a body naming another one is not refused, and the
    // subscription still covers app-1.
    let other_name = mep
        .send_json(
            Method::POST,
            &subs,
            &json!({"subscriptionType": "AppTerminationNotificationSubscription",
                      "callbackReference": rx.url, "appInstanceId": "app-2"}),
        )
        .await;
    assert_eq!(other_name.status(), 201);
    let other: Value = other_name.json().await.unwrap();
    assert_eq!(other["appInstanceId"], "app-1");
    let other_location = other["_links"]["self"]["href"].as_str().unwrap().to_owned();
    assert_eq!(
        mep.http
            .delete(&other_location)
            .send()
            .await
            .unwrap()
            .status(),
        204
    );

    mep.register("app-1", &service_body("video-svc")).await;
    let confs = mep.mm5_url("/mep/appMng/v1/applications/app-1/confs");
    let r = mep.send_json(Method::PUT, &confs, &json!({"authInfo": {"credentials": {"accessKeyId": "A".repeat(20), "secretKey": "S".repeat(64)}},
                      "appInfo": {"appName": "video", "requiredServices": []}}))
.await;
    assert!(r.status().is_success(), "{}", r.status());
    let confirm = mep.app_support("/applications/app-1/confirm_termination");
    // Nothing to confirm yet: accepted, and nothing changes.
    let r = mep
        .send_json(
            Method::POST,
            &confirm,
            &json!({"operationAction": "TERMINATING"}),
        )
        .await;
    assert_eq!(r.status(), 204);

    let termination = {
        let http = mep.http.clone();
        let url = mep.mm5_url("/mep/mec_app_support/v1/applications/app-1/AppInstanceTermination");
        tokio::spawn(async move { http.delete(url).send().await.unwrap() })
    };
    let n = rx.next().await;
    assert_eq!(n["notificationType"], "AppTerminationNotification");
    assert_eq!(n["operationAction"], "TERMINATING");
    assert_eq!(n["maxGracefulTimeout"], 10);
    assert_eq!(n["_links"]["subscription"]["href"], location);
    assert_eq!(n["_links"]["confirmTermination"]["href"], confirm);
    let r = mep
        .send_json(
            Method::POST,
            &confirm,
            &json!({"operationAction": "STOPPING"}),
        )
        .await;
    assert_problem(r, 400).await;
    let r = mep
        .send_json(
            Method::POST,
            &confirm,
            &json!({"operationAction": "TERMINATING"}),
        )
        .await;
    assert_eq!(r.status(), 204);

    let report = tokio::time::timeout(Duration::from_secs(5), termination)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(report.status(), 200);
    let report: Value = report.json().await.unwrap();
    assert_eq!(report["confirmed"], true);
    assert_eq!(report["rulesRemoved"], true);
    assert_eq!(report["servicesRemoved"], 1);
    assert_eq!(report["credentialsRemoved"], true);
    assert_eq!(mep.http.get(&confs).send().await.unwrap().status(), 404);
    assert_eq!(mep.appd(Method::GET, "app-1", None).await.0, 404);
    assert_eq!(plane.calls().last().unwrap().op, "delete_traffic");
    // A terminated instance holds nothing: its resources are gone with it.
    assert_problem(mep.get("/applications/app-1/services").await, 404).await;
    assert_problem(mep.http.get(&location).send().await.unwrap(), 404).await;
    mep.stop().await;
}

#[tokio::test]
async fn termination_without_confirmation_waits_max_graceful_timeout() {
    let dir = tempfile::tempdir().unwrap();
    let mut config = test_config(dir.path());
    config.apps.max_graceful_timeout = Duration::from_secs(1);
    let mep = TestMep::start_with(config).await;
    let mut rx = CallbackReceiver::start().await;
    let r = mep
        .send_json(
            Method::POST,
            mep.app_support("/applications/app-1/subscriptions"),
            &json!({"subscriptionType": "AppTerminationNotificationSubscription",
                      "callbackReference": rx.url, "appInstanceId": "app-1"}),
        )
        .await;
    assert_eq!(r.status(), 201);
    let r = mep
        .http
        .delete(mep.mm5_url("/mep/mec_app_support/v1/applications/app-1/AppInstanceTermination"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let report: Value = r.json().await.unwrap();
    assert_eq!(report["confirmed"], false);
    assert_eq!(report["notified"], 1);
    assert_eq!(rx.next().await["maxGracefulTimeout"], 1);
    mep.stop().await;
}

#[tokio::test]
async fn confirm_ready_is_recorded_for_the_platform_manager() {
    let dir = tempfile::tempdir().unwrap();
    let mep = TestMep::start(dir.path()).await;
    let readiness = mep.mm5_url("/mepcfg/app_lcm/v1/applications/app-1/readiness");
    assert_eq!(mep.http.get(&readiness).send().await.unwrap().status(), 404);
    let url = mep.app_support("/applications/app-1/confirm_ready");
    assert_problem(
        mep.send_json(Method::POST, &url, &json!({"indication": "READY"}))
            .await,
        404,
    )
    .await;
    let (status, _) = mep
        .appd(Method::POST, "app-1", Some(&appd_body("a1", "a1.example")))
        .await;
    assert_eq!(status, 200, "app-1 is now known to the platform");
    assert_problem(
        mep.send_json(Method::POST, &url, &json!({"indication": "NOT_READY"}))
            .await,
        400,
    )
    .await;
    let r = mep
        .send_json(Method::POST, &url, &json!({"indication": "READY"}))
        .await;
    assert_eq!(r.status(), 204);
    let seen: Value = mep.json_at(&readiness).await;
    assert_eq!(seen["indication"], "READY");
    assert!(seen["timeStamp"]["seconds"].as_u64().unwrap() > 1_700_000_000);
    mep.stop().await;
}

#[tokio::test]
async fn timing_from_the_host_clock() {
    let dir = tempfile::tempdir().unwrap();
    let mut config = test_config(dir.path());
    config.ntp_servers = vec!["ntp.edge.example".into(), "192.0.2.123".into()];
    let mep = TestMep::start_with(config).await;
    let now: Value = mep.json_at(mep.app_support("/timing/current_time")).await;
    let host = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs();
    assert!(now["seconds"].as_u64().unwrap().abs_diff(host) < 5);
    assert!(now["nanoSeconds"].as_u64().unwrap() < 1_000_000_000);
    assert!(matches!(
        now["timeSourceStatus"].as_str(),
        Some("TRACEABLE" | "NONTRACEABLE")
    ));
    let caps: Value = mep.json_at(mep.app_support("/timing/timing_caps")).await;
    assert!(caps["timeStamp"]["seconds"].is_u64());
    assert_eq!(caps["ntpServers"][0]["ntpServerAddrType"], "DNS_NAME");
    assert_eq!(caps["ntpServers"][1]["ntpServerAddrType"], "IP_ADDRESS");
    assert_eq!(caps["ntpServers"][1]["ntpServerAddr"], "192.0.2.123");
    mep.stop().await;
}

#[tokio::test]
async fn v3_registrations() {
    let dir = tempfile::tempdir().unwrap();
    let mep = TestMep::start(dir.path()).await;
    let url = mep.app_support("/registrations");
    let info = json!({"appName": "iot-gw", "appProvider": "acme", "isInsByMec": false,
                      "endpoint": {"uris": ["http://10.0.0.7/"]}});
    let r = mep.send_json(Method::POST, &url, &info).await;
    assert_eq!(r.status(), 201);
    let location = r.headers()["location"].to_str().unwrap().to_owned();
    let created: Value = r.json().await.unwrap();
    let id = created["appInstanceId"].as_str().unwrap();
    assert!(location.ends_with(&format!("/registrations/{id}")));
    assert_eq!(mep.json_at(&location).await, created);
    let mut changed = created.clone();
    changed["appProvider"] = json!("acme-2");
    assert_eq!(
        mep.send_json(Method::PUT, &location, &changed)
            .await
            .status(),
        204
    );
    assert_eq!(mep.json_at(&location).await["appProvider"], "acme-2");
    assert_eq!(
        mep.http.delete(&location).send().await.unwrap().status(),
        204
    );
    assert_problem(mep.http.get(&location).send().await.unwrap(), 404).await;
    let no_endpoint = json!({"appName": "x", "isInsByMec": false});
    assert_problem(mep.send_json(Method::POST, &url, &no_endpoint).await, 400).await;
    let by_mec = json!({"appName": "x", "isInsByMec": true, "appInstanceId": "fixed-id"});
    let r = mep.send_json(Method::POST, &url, &by_mec).await;
    assert_eq!(r.status(), 201);
    assert_problem(mep.send_json(Method::POST, &url, &by_mec).await, 409).await;
    mep.stop().await;
}

#[tokio::test]
async fn capabilities_list_services_and_their_consumers() {
    let dir = tempfile::tempdir().unwrap();
    let mep = TestMep::start(dir.path()).await;
    let svc = mep.register("app-1", &service_body("rnis")).await;
    mep.register("app-1", &service_body("location")).await;
    let r = mep
        .post(
            "/applications/app-2/subscriptions",
            &json!({
            "subscriptionType": "SerAvailabilityNotificationSubscription",
            "callbackReference": "http://127.0.0.1:9/cb",
            "filteringCriteria": {"serNames": ["rnis"]}}),
        )
        .await;
    assert_eq!(r.status(), 201);
    let caps: Value = mep
        .json_at(mep.mm5_url("/mepcfg/mec_platform_config/v1/capabilities?ser_name=rnis"))
        .await;
    assert_eq!(caps.as_array().unwrap().len(), 1);
    assert_eq!(caps[0]["capabilityId"], svc["serInstanceId"]);
    assert_eq!(caps[0]["capabilityName"], "rnis");
    assert_eq!(caps[0]["status"], "ACTIVE");
    assert_eq!(
        caps[0]["consumers"],
        json!([{"applicationInstanceId": "app-2"}])
    );
    let all: Value = mep
        .json_at(mep.mm5_url("/mepcfg/mec_platform_config/v1/capabilities"))
        .await;
    assert_eq!(all.as_array().unwrap().len(), 2);
    let id = svc["serInstanceId"].as_str().unwrap();
    let one = mep
        .http
        .get(mep.mm5_url(&format!("/mepcfg/mec_platform_config/v1/capabilities/{id}")))
        .send()
        .await
        .unwrap();
    assert_eq!(one.json::<Value>().await.unwrap()["capabilityName"], "rnis");
    let none = mep
        .http
        .get(mep.mm5_url("/mepcfg/mec_platform_config/v1/capabilities/nope"))
        .send()
        .await
        .unwrap();
    assert_problem(none, 404).await;
    mep.stop().await;
}
