//! Interop of the MEC application support API (MEC 011 clause 7) with standard clients: every
//! request-body example of ETSI's OpenAPI files replayed against the real server, v3 clients'
//! wrapped bodies, the v3 `AppInfo` registration, bodies shaped like ETSI's conformance suites
//! (GS MEC 032-3), and the 2xx/400/403/404/412 answers of each resource.

use mep_tests::apps::{AK_A, AK_B, APP_A, APP_B, SK_A, SK_B};
use mep_tests::spec_examples::{load, request_examples, request_schemas};
use mep_tests::{appd_body, assert_problem, test_config, TestMep};
use reqwest::Method;
use serde_json::{json, Value};

const TERMINATION_SUB: &str = "AppTerminationNotificationSubscription";

/// A mep where `app` is configured over Mm5 with traffic rule `tr-1` and DNS rule `dns-1`.
async fn configured(app: &str) -> (TestMep, tempfile::TempDir) {
    let dir = tempfile::tempdir().unwrap();
    let mep = TestMep::start(dir.path()).await;
    configure(&mep, app).await;
    (mep, dir)
}

async fn configure(mep: &TestMep, app: &str) {
    let (status, progress) = mep
        .appd(
            Method::POST,
            app,
            Some(&appd_body("interop", "www.example.com")),
        )
        .await;
    assert_eq!(status, 200);
    assert_eq!(progress["configResult"], "SUCCESS", "{progress}");
}

#[tokio::test]
async fn every_spec_example_is_accepted() {
    let (mep, _dir) = configured("app-1").await;
    let traffic = mep.app_support("/applications/app-1/traffic_rules/tr-1");
    let dns = mep.app_support("/applications/app-1/dns_rules/dns-1");
    for file in [
        "v2.1.1/MecAppSupportApi.json",
        "v2.1.1-oas3.1/MecAppSupportApi.json",
        "v2.2.1-advantedge/app-support-swagger.yaml",
    ] {
        let examples = request_examples(file);
        assert!(!examples.is_empty(), "{file}: no request examples found");
        for example in examples {
            let what = format!("{file} {}", example.schema);
            match example.schema.as_str() {
                "TrafficRule" => {
                    let r = mep
                        .expect(Method::PUT, &traffic, None, Some(&example.body), 200)
                        .await;
                    assert_eq!(r["trafficRuleId"], "tr-1", "{what}: the URI names the rule");
                    assert_eq!(r["action"], example.body["action"], "{what}");
                    assert_eq!(
                        r["trafficFilter"][0]["srcAddress"],
                        example.body["trafficFilter"][0]["srcAddress"]
                    );
                }
                "DnsRule" => {
                    let r = mep
                        .expect(Method::PUT, &dns, None, Some(&example.body), 200)
                        .await;
                    assert_eq!(r["dnsRuleId"], "dns-1", "{what}");
                    assert_eq!(r["ipAddress"], example.body["ipAddress"], "{what}");
                    assert_eq!(r["state"], example.body["state"], "{what}");
                }
                other => panic!("{file}: no replay for an example of {other}"),
            }
        }
    }
    mep.stop().await;
}

/// The v3.1.1 files hold no examples; their request schemas wrap each body in an object named
/// after the schema. Every one of them is sent that way, under `mec_app_support/v2`.
#[tokio::test]
async fn v3_clients_send_wrapped_bodies_under_v2() {
    let (mep, _dir) = configured("app-1").await;
    let v2 = |path: &str| format!("{}/mep/mec_app_support/v2{path}", mep.mp1);
    let schemas = request_schemas(&load("v3.1.1/MecAppSupportApi.yaml"));
    assert_eq!(schemas.len(), 6, "{schemas:?}");
    for schema in &schemas {
        let (method, url, body, status) = match schema.as_str() {
            "AppInfo" => (
                Method::POST,
                v2("/registrations"),
                json!({"appName": "v3-app", "isInsByMec": true, "appInstanceId": "app-1"}),
                201,
            ),
            "AppReadyConfirmation" => (
                Method::POST,
                v2("/applications/app-1/confirm_ready"),
                json!({"indication": "READY"}),
                204,
            ),
            "AppTerminationConfirmation" => (
                Method::POST,
                v2("/applications/app-1/confirm_termination"),
                json!({"operationAction": "TERMINATING"}),
                204,
            ),
            "AppTerminationNotificationSubscription" => (
                Method::POST,
                v2("/applications/app-1/subscriptions"),
                json!({"subscriptionType": TERMINATION_SUB,
                       "callbackReference": "http://127.0.0.1:9/t", "appInstanceId": "app-1"}),
                201,
            ),
            "DnsRule" => (
                Method::PUT,
                v2("/applications/app-1/dns_rules/dns-1"),
                json!({"dnsRuleId": "dns-1", "domainName": "www.example.com",
                       "ipAddressType": "IP_V6", "ipAddress": "2001:db8::7", "state": "ACTIVE"}),
                200,
            ),
            "TrafficRule" => (
                Method::PUT,
                v2("/applications/app-1/traffic_rules/tr-1"),
                json!({"trafficRuleId": "tr-1", "filterType": "FLOW", "priority": 0,
                       "trafficFilter": [{"dstAddress": ["198.51.100.0/24"], "tag": ["4660"]}],
                       "action": "DROP", "state": "ACTIVE"}),
                200,
            ),
            other => panic!("v3.1.1: no request for {other}"),
        };
        let wrapped = json!({schema: body});
        let answer = mep.expect(method, &url, None, Some(&wrapped), status).await;
        if schema == "TrafficRule" {
            assert_eq!(answer["trafficFilter"][0]["tag"], json!(["4660"]));
            assert_eq!(answer["trafficFilter"][0]["token"], json!(["4660"]));
        }
    }
    mep.stop().await;
}

/// A v3 `AppInfo` with every member: stored and echoed as sent, the platform allocating the id.
#[tokio::test]
async fn v3_registrations_take_the_whole_app_info() {
    let dir = tempfile::tempdir().unwrap();
    let mep = TestMep::start(dir.path()).await;
    let info = json!({
        "appName": "video-analytics",
        "appProvider": "ACME",
        "appCategory": {"href": "catItem1", "id": "video", "name": "Video", "version": "1"},
        "appDId": "d-42",
        "endpoint": {"fqdn": ["video.edge.example"]},
        "appServiceRequired": [{"serName": "rnis", "version": "2.2.1",
            "serCategory": {"href": "/example/catalogue1", "id": "rni", "name": "RNI", "version": "1"},
            "serTransportDependencies": [{"transport": {"name": "REST", "type": "REST_HTTP",
                "protocol": "HTTP", "version": "2.0", "security": {}},
                "serializers": ["JSON"], "labels": ["l"]}],
            "requestedPermissions": {"any": "thing"}}],
        "appServiceOptional": [{"serName": "location", "version": "3.1.1"}],
        "appFeatureRequired": [{"featureName": "UserApps", "version": "1"}],
        "appFeatureOptional": [{"featureName": "UEIdentity", "version": "1"}],
        "isInsByMec": false,
        "appProfile": {"easId": "eas-1", "endPt": {"uris": ["https://video.edge.example"]}}
    });
    let url = mep.app_support("/registrations");
    let r = mep.call(Method::POST, &url, None, Some(&info)).await;
    assert_eq!(r.status(), 201);
    let location = r.headers()["location"].to_str().unwrap().to_owned();
    let created: Value = r.json().await.unwrap();
    let id = created["appInstanceId"].as_str().unwrap().to_owned();
    let mut expected = info.clone();
    expected["appInstanceId"] = json!(id);
    assert_eq!(created, expected);
    assert_eq!(mep.json_at(&location).await, expected);

    // The app is now known: its Mp1 resources exist.
    let list = mep.app_support(&format!("/applications/{id}/subscriptions"));
    mep.expect(Method::GET, &list, None, None, 200).await;

    // PUT: the URI names the registration.
    let mut changed = info.clone();
    changed["appProvider"] = json!("ACME Edge");
    changed["appInstanceId"] = json!("someone-else");
    mep.expect(Method::PUT, &location, None, Some(&changed), 204)
        .await;
    let stored = mep.json_at(&location).await;
    assert_eq!(stored["appProvider"], "ACME Edge");
    assert_eq!(stored["appInstanceId"], id);

    for bad in [
        json!({"appName": "x", "isInsByMec": false}),
        json!({"appName": "x", "isInsByMec": true, "appCategory": {"id": "only"}}),
        json!({"appName": "x", "isInsByMec": true, "appServiceRequired": [{"serName": "a"}]}),
        json!({"appName": "x", "isInsByMec": true, "endpoint": {"uris": [], "fqdn": ["a"]}}),
        json!({"isInsByMec": true}),
    ] {
        mep.expect(Method::POST, &url, None, Some(&bad), 400).await;
    }
    let caps: Value = mep.json_at(mep.app_support("/timing/timing_caps")).await;
    assert_eq!(caps["ntpServers"], json!([]));
    assert_eq!(caps["ptpMasters"], json!([]));
    mep.stop().await;
}

/// Bodies with the traits of ETSI's MEC 032-3 application support suites.
#[tokio::test]
async fn conformance_suite_bodies_are_accepted() {
    let (mep, _dir) = configured("app-1").await;
    let traffic = mep.app_support("/applications/app-1/traffic_rules/tr-1");
    // DROP with a destination, protocols by name (HTTP among them), free-text tokens, and the
    // client's own rule id.
    let drop = json!({
        "trafficRuleId": "traffic_rule_01", "filterType": "FLOW", "priority": 1,
        "trafficFilter": [{
            "srcAddress": ["192.168.1.1", "192.168.2.1"], "dstAddress": ["192.168.1.2"],
            "srcPort": ["30078", "1029"], "dstPort": ["30099"],
            "protocol": ["TCP", "HTTP", "UDP"],
            "token": ["occaecat", "reprehenderit esse"],
            "srcTunnelAddress": ["159.10.1.1"], "tgtTunnelAddress": ["159.10.1.2"],
            "srcTunnelPort": ["5566"], "dstTunnelPort": ["5576"],
            "qCI": 1, "dSCP": 0, "tC": 1
        }],
        "action": "DROP", "state": "ACTIVE",
        "dstInterface": {"interfaceType": "TUNNEL",
            "tunnelInfo": {"tunnelType": "GTP_U", "tunnelDstAddress": "169.54.61.15",
                           "tunnelSrcAddress": "169.54.61.31"},
            "srcMacAddress": "fc:3f:2b:42:dc:ba", "dstMacAddress": "02:42:2c:58:6a:7d"}
    });
    let r = mep
        .http
        .put(&traffic)
        .header("content-type", "*/*")
        .body(drop.to_string())
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let stored: Value = r.json().await.unwrap();
    assert_eq!(stored["trafficRuleId"], "tr-1");
    assert_eq!(stored["action"], "DROP");
    let filter = &stored["trafficFilter"][0];
    assert_eq!(
        filter["protocol"],
        json!(["TCP", "HTTP", "UDP"]),
        "stored as sent"
    );
    assert_eq!(filter["token"], json!(["occaecat", "reprehenderit esse"]));
    assert_eq!(stored["dstInterface"][0]["interfaceType"], "TUNNEL");

    let mut unknown_action = drop.clone();
    unknown_action["action"] = json!("UNKNOWN_VALUE");
    mep.expect(Method::PUT, &traffic, None, Some(&unknown_action), 400)
        .await;
    let stale = mep
        .http
        .put(&traffic)
        .header("if-match", "INVALID_ETAG")
        .json(&drop)
        .send()
        .await
        .unwrap();
    assert_problem(stale, 412).await;
    let missing = mep.app_support("/applications/app-1/traffic_rules/NON_EXISTENT");
    mep.expect(Method::PUT, &missing, None, Some(&drop), 404)
        .await;

    let dns = mep.app_support("/applications/app-1/dns_rules/dns-1");
    let rule = json!({"dnsRuleId": "DnsRule1", "domainName": "www.example.com",
        "ipAddressType": "IP_V4", "ipAddress": "146.241.7.3", "ttl": 300, "state": "ACTIVE"});
    mep.expect(Method::PUT, &dns, None, Some(&rule), 200).await;
    let mut bad_state = rule.clone();
    bad_state["state"] = json!("UNKNOWN_VALUE");
    mep.expect(Method::PUT, &dns, None, Some(&bad_state), 400)
        .await;

    // A termination subscription naming an arbitrary instance, with _links.
    let subs = mep.app_support("/applications/app-1/subscriptions");
    let sub = json!({"subscriptionType": TERMINATION_SUB,
        "callbackReference": "https://somewhere.example/mecAppSuptApi/example",
        "_links": {"self": {"href": "https://somewhere.example/mecAppSuptApi/example"}},
        "appInstanceId": "est eiusmod nulla exercitation"});
    let created = mep.expect(Method::POST, &subs, None, Some(&sub), 201).await;
    assert_eq!(created["callbackReference"], sub["callbackReference"]);
    assert_eq!(created["appInstanceId"], "app-1");

    // Confirmations without anything pending, by POST and by the earlier suites' PUT.
    for method in [Method::POST, Method::PUT] {
        let ready = mep.app_support("/applications/app-1/confirm_ready");
        mep.expect(
            method.clone(),
            &ready,
            None,
            Some(&json!({"indication": "READY"})),
            204,
        )
        .await;
        let terminated = mep.app_support("/applications/app-1/confirm_termination");
        let body = json!({"operationAction": "TERMINATING"});
        mep.expect(method, &terminated, None, Some(&body), 204)
            .await;
    }

    // The unknown instance of the suites' NF cases.
    let nf = "NON_ESISTENT_APP_INSTANCE_ID";
    for (method, path, body) in [
        (Method::GET, "traffic_rules", None),
        (Method::GET, "traffic_rules/tr-1", None),
        (Method::PUT, "traffic_rules/tr-1", Some(drop.clone())),
        (Method::GET, "dns_rules", None),
        (Method::GET, "subscriptions", None),
        (
            Method::POST,
            "confirm_ready",
            Some(json!({"indication": "READY"})),
        ),
        (
            Method::POST,
            "confirm_termination",
            Some(json!({"operationAction": "TERMINATING"})),
        ),
    ] {
        let url = mep.app_support(&format!("/applications/{nf}/{path}"));
        mep.expect(method, &url, None, body.as_ref(), 404).await;
    }
    mep.stop().await;
}

/// The xdp data plane refuses what it cannot match, with the reason; the others take it.
#[tokio::test]
async fn only_a_data_plane_that_cannot_match_a_member_refuses_it() {
    let (mep, _dir) = configured("app-1").await;
    let mut body = appd_body("interop", "www.example.com");
    body["appTrafficRule"][0]["trafficFilter"][0]["protocol"] = json!(["HTTP"]);
    let (status, progress) = mep.appd(Method::PUT, "app-1", Some(&body)).await;
    assert_eq!(
        status, 200,
        "the none data plane stores protocol HTTP: {progress}"
    );
    assert_eq!(progress["configResult"], "SUCCESS");
    let rule = mep
        .json_at(mep.app_support("/applications/app-1/traffic_rules/tr-1"))
        .await;
    assert_eq!(rule["trafficFilter"][0]["protocol"], json!(["HTTP"]));

    #[cfg(feature = "xdp")]
    {
        let rule =
            serde_json::from_value::<mep_rules::TrafficRule>(body["appTrafficRule"][0].clone())
                .unwrap();
        let compiled = rule.compile().unwrap();
        let xdp = mep_ebpf::check_rule(&rule, &compiled).unwrap_err();
        assert!(xdp.to_string().contains("protocol \"HTTP\""), "{xdp}");
    }
    mep.stop().await;
}

/// Every resource with authentication on: the owner's nominal answer, 400 for a bad request,
/// 403 for another known application, 404 for an unknown application or resource, 412 for a
/// stale `If-Match`.
#[tokio::test]
async fn each_resource_answers_2xx_400_403_404_412() {
    let dir = tempfile::tempdir().unwrap();
    let mut config = test_config(dir.path());
    config.auth.enabled = true;
    let mep = TestMep::start_with(config).await;
    mep.provision(APP_A, AK_A, SK_A, &[]).await;
    mep.provision(APP_B, AK_B, SK_B, &[]).await;
    configure(&mep, APP_A).await;
    let (a, b) = (mep.token(AK_A, SK_A).await, mep.token(AK_B, SK_B).await);
    let (a, b) = (Some(a.as_str()), Some(b.as_str()));
    let unknown = "0f0f0f0f-aaaa-bbbb-cccc-000000000000";
    let at = |app: &str, path: &str| mep.app_support(&format!("/applications/{app}/{path}"));

    for (kind, id, valid, invalid) in [
        (
            "traffic_rules",
            "tr-1",
            appd_body("interop", "www.example.com")["appTrafficRule"][0].clone(),
            json!({"trafficRuleId": "tr-1", "filterType": "FLOW", "priority": 300,
                   "trafficFilter": [{}], "action": "DROP", "state": "ACTIVE"}),
        ),
        (
            "dns_rules",
            "dns-1",
            appd_body("interop", "www.example.com")["appDNSRule"][0].clone(),
            json!({"dnsRuleId": "dns-1", "domainName": "www.example.com",
                   "ipAddressType": "IP_V6", "ipAddress": "192.0.2.1", "state": "ACTIVE"}),
        ),
    ] {
        mep.expect(Method::GET, &at(APP_A, kind), a, None, 200)
            .await;
        mep.expect(Method::GET, &at(APP_A, kind), b, None, 403)
            .await;
        mep.expect(Method::GET, &at(unknown, kind), a, None, 404)
            .await;
        let one = at(APP_A, &format!("{kind}/{id}"));
        let r = mep.call(Method::GET, &one, a, None).await;
        assert_eq!(r.status(), 200);
        let etag = r.headers()["etag"].to_str().unwrap().to_owned();
        mep.expect(Method::GET, &one, b, None, 403).await;
        mep.expect(
            Method::GET,
            &at(APP_A, &format!("{kind}/nope")),
            a,
            None,
            404,
        )
        .await;
        mep.expect(Method::PUT, &one, a, Some(&invalid), 400).await;
        mep.expect(Method::PUT, &one, b, Some(&valid), 403).await;
        mep.expect(
            Method::PUT,
            &at(unknown, &format!("{kind}/{id}")),
            a,
            Some(&valid),
            404,
        )
        .await;
        let stale = mep
            .http
            .put(&one)
            .bearer_auth(a.unwrap())
            .header("if-match", "\"stale\"")
            .json(&valid)
            .send()
            .await
            .unwrap();
        assert_problem(stale, 412).await;
        let fresh = mep
            .http
            .put(&one)
            .bearer_auth(a.unwrap())
            .header("if-match", &etag)
            .json(&valid)
            .send()
            .await
            .unwrap();
        assert_eq!(fresh.status(), 200, "{kind}");
    }

    let subs = at(APP_A, "subscriptions");
    let sub = json!({"subscriptionType": TERMINATION_SUB,
        "callbackReference": "http://127.0.0.1:9/t", "appInstanceId": APP_A});
    let r = mep.call(Method::POST, &subs, a, Some(&sub)).await;
    assert_eq!(r.status(), 201);
    let location = r.headers()["location"].to_str().unwrap().to_owned();
    let wrong_type =
        json!({"subscriptionType": "Other", "callbackReference": "http://127.0.0.1:9/t"});
    mep.expect(Method::POST, &subs, a, Some(&wrong_type), 400)
        .await;
    mep.expect(Method::POST, &subs, b, Some(&sub), 403).await;
    mep.expect(
        Method::POST,
        &at(unknown, "subscriptions"),
        a,
        Some(&sub),
        404,
    )
    .await;
    mep.expect(Method::GET, &subs, a, None, 200).await;
    mep.expect(Method::GET, &subs, b, None, 403).await;
    mep.expect(Method::GET, &location, a, None, 200).await;
    mep.expect(Method::GET, &location, b, None, 403).await;
    mep.expect(Method::GET, &at(APP_A, "subscriptions/nope"), a, None, 404)
        .await;
    mep.expect(Method::DELETE, &location, b, None, 403).await;
    mep.expect(Method::DELETE, &location, a, None, 204).await;
    mep.expect(Method::DELETE, &location, a, None, 404).await;

    for (task, valid, invalid) in [
        (
            "confirm_ready",
            json!({"indication": "READY"}),
            json!({"indication": "LATER"}),
        ),
        (
            "confirm_termination",
            json!({"operationAction": "TERMINATING"}),
            json!({"operationAction": "PAUSING"}),
        ),
    ] {
        mep.expect(Method::POST, &at(APP_A, task), a, Some(&valid), 204)
            .await;
        mep.expect(Method::POST, &at(APP_A, task), a, Some(&invalid), 400)
            .await;
        mep.expect(Method::POST, &at(APP_A, task), b, Some(&valid), 403)
            .await;
        mep.expect(Method::POST, &at(unknown, task), a, Some(&valid), 404)
            .await;
    }

    let registrations = mep.app_support("/registrations");
    let info = json!({"appName": "a", "isInsByMec": true});
    let created = mep
        .expect(Method::POST, &registrations, a, Some(&info), 201)
        .await;
    assert_eq!(
        created["appInstanceId"], APP_A,
        "the caller registers itself"
    );
    let foreign = json!({"appName": "a", "isInsByMec": true, "appInstanceId": APP_B});
    mep.expect(Method::POST, &registrations, a, Some(&foreign), 403)
        .await;
    mep.expect(
        Method::POST,
        &registrations,
        a,
        Some(&json!({"appName": ""})),
        400,
    )
    .await;
    let mine = mep.app_support(&format!("/registrations/{APP_A}"));
    mep.expect(Method::GET, &mine, a, None, 200).await;
    mep.expect(Method::GET, &mine, b, None, 403).await;
    let unknown_registration = mep.app_support(&format!("/registrations/{unknown}"));
    mep.expect(Method::GET, &unknown_registration, a, None, 404)
        .await;
    mep.expect(Method::PUT, &mine, a, Some(&info), 204).await;
    mep.expect(Method::PUT, &mine, a, Some(&json!({"appName": 7})), 400)
        .await;
    mep.expect(Method::PUT, &mine, b, Some(&info), 403).await;
    mep.expect(Method::DELETE, &mine, b, None, 403).await;
    mep.expect(Method::DELETE, &mine, a, None, 204).await;
    mep.expect(Method::DELETE, &mine, a, None, 404).await;

    mep.expect(
        Method::GET,
        &mep.app_support("/timing/current_time"),
        b,
        None,
        200,
    )
    .await;
    mep.expect(
        Method::GET,
        &mep.app_support("/timing/timing_caps"),
        a,
        None,
        200,
    )
    .await;
    mep.stop().await;
}
