//! Interop of the MEC service management API (MEC 011 clause 8) with standard clients: every
//! request-body example of ETSI's OpenAPI files replayed against the real server, v3 clients'
//! wrapped bodies and `v2` prefix, bodies shaped like ETSI's conformance suites (GS MEC 032-3),
//! operator-provisioned transports, and the 2xx/400/403/404/412 answers of each resource.

use mep_tests::apps::{AK_A, AK_B, APP_A, APP_B, SK_A, SK_B};
use mep_tests::spec_examples::{load, request_examples, request_schemas};
use mep_tests::{assert_problem, service_body, test_config, TestMep, SERVICE_MGMT};
use reqwest::Method;
use serde_json::{json, Value};

const SUB_TYPE: &str = "SerAvailabilityNotificationSubscription";

async fn open_mep() -> (TestMep, tempfile::TempDir) {
    let dir = tempfile::tempdir().unwrap();
    (TestMep::start(dir.path()).await, dir)
}

/// Registers `body` for `app` under `prefix` and answers the representation.
async fn register_at(mep: &TestMep, prefix: &str, app: &str, body: &Value) -> Value {
    let url = format!("{}{prefix}/applications/{app}/services", mep.mp1);
    mep.expect(Method::POST, &url, None, Some(body), 201).await
}

#[tokio::test]
async fn every_spec_example_registers_replaces_and_subscribes() {
    let (mep, _dir) = open_mep().await;
    for file in [
        "v2.1.1/MecServiceMgmtApi.json",
        "v2.1.1-oas3.1/MecServiceMgmtApi.json",
        "v2.2.1-advantedge/service-mgmt-swagger.yaml",
    ] {
        let examples = request_examples(file);
        assert!(!examples.is_empty(), "{file}: no request examples found");
        for example in examples {
            let what = format!("{file} {}", example.schema);
            match example.schema.as_str() {
                "ServiceInfo" | "ServiceInfo.Post" | "ServiceInfoPost" => {
                    let created = register_at(&mep, SERVICE_MGMT, "app-1", &example.body).await;
                    assert_eq!(created["serName"], example.body["serName"], "{what}");
                    assert_ne!(
                        created["serInstanceId"], example.body["serInstanceId"],
                        "{what}: serInstanceId is the platform's"
                    );
                    if example.schema == "ServiceInfo" {
                        // The same representation as a PUT: the URI names the service.
                        let id = created["serInstanceId"].as_str().unwrap();
                        let url = mep.url(&format!("/applications/app-1/services/{id}"));
                        let replaced = mep
                            .expect(Method::PUT, &url, None, Some(&example.body), 200)
                            .await;
                        assert_eq!(replaced["serInstanceId"], id, "{what}");
                    }
                }
                "SerAvailabilityNotificationSubscription" => {
                    let url = mep.url("/applications/app-1/subscriptions");
                    let created = mep
                        .expect(Method::POST, &url, None, Some(&example.body), 201)
                        .await;
                    assert_eq!(
                        created["callbackReference"],
                        example.body["callbackReference"]
                    );
                }
                other => panic!("{file}: no replay for an example of {other}"),
            }
        }
    }
    mep.stop().await;
}

/// MEC 011 v3.1.1's OpenAPI files hold no examples; clients generated from them wrap every body
/// in an object named after its schema and some use `v2`. Each v3 request schema is sent that way.
#[tokio::test]
async fn v3_clients_send_wrapped_bodies_under_v2() {
    let (mep, _dir) = open_mep().await;
    let v3 = load("v3.1.1/MecServiceMgmtApi.yaml");
    let v2 = "/mep/mec_service_mgmt/v2";
    let schemas = request_schemas(&v3);
    assert!(schemas.contains("ServiceInfo"), "{schemas:?}");
    let mut service = service_body("v3-svc");
    service["transportInfo"]["endpoint"] = json!({"fqdn": ["rnis.edge.example"]});
    service["livenessInterval"] = json!(30);
    let created = register_at(&mep, v2, "app-1", &json!({"ServiceInfo": service})).await;
    assert_eq!(
        created["transportInfo"]["endpoint"]["fqdn"],
        json!(["rnis.edge.example"]),
        "v3 fqdn endpoints are echoed"
    );
    let id = created["serInstanceId"].as_str().unwrap().to_owned();
    for schema in &schemas {
        match schema.as_str() {
            "ServiceInfo" => {
                let url = format!("{}{v2}/applications/app-1/services/{id}", mep.mp1);
                let mut changed = service.clone();
                changed["version"] = json!("3.1.1");
                let body = json!({"ServiceInfo": changed});
                let r = mep.expect(Method::PUT, &url, None, Some(&body), 200).await;
                assert_eq!(r["version"], "3.1.1");
            }
            "SerAvailabilityNotificationSubscription" => {
                let url = format!("{}{v2}/applications/app-1/subscriptions", mep.mp1);
                let body = json!({schema: {"subscriptionType": SUB_TYPE,
                    "callbackReference": "http://127.0.0.1:9/v3",
                    "filteringCriteria": {"serNames": ["v3-svc"]}}});
                mep.expect(Method::POST, &url, None, Some(&body), 201).await;
            }
            "ServiceLivenessUpdate" => {
                let url = format!("{}{v2}/applications/app-1/services/{id}/liveness", mep.mp1);
                let body = json!({schema: {"state": "ACTIVE"}});
                let info = mep
                    .expect(Method::PATCH, &url, None, Some(&body), 200)
                    .await;
                assert_eq!(info["interval"], 30);
            }
            other => panic!("v3.1.1: no request for {other}"),
        }
    }
    // Links name the canonical v1 URI, which serves the same resource.
    let self_link = created["_links"]["self"]["href"].as_str().unwrap();
    assert!(
        self_link.contains("/mep/mec_service_mgmt/v1/"),
        "{self_link}"
    );
    let fetched: Value = mep.json_at(self_link).await;
    assert_eq!(fetched["serInstanceId"], id);
    mep.stop().await;
}

/// ETSI's suites address the APIs from a bare apiRoot: `/mec_service_mgmt/v1/...`.
#[tokio::test]
async fn the_bare_root_prefix_serves_the_same_resources() {
    let (mep, _dir) = open_mep().await;
    let created = register_at(&mep, "/mec_service_mgmt/v1", "app-1", &service_body("bare")).await;
    let id = created["serInstanceId"].as_str().unwrap();
    let bare = format!("{}/mec_service_mgmt/v1/services/{id}", mep.mp1);
    assert_eq!(mep.json_at(&bare).await, created);
    assert_eq!(
        mep.json_at(mep.url(&format!("/services/{id}"))).await,
        created
    );
    let transports: Value = mep
        .json_at(format!("{}/mec_service_mgmt/v2/transports", mep.mp1))
        .await;
    assert_eq!(transports[0]["type"], "REST_HTTP");
    mep.stop().await;
}

/// Bodies with the traits of ETSI's MEC 032-3 service suites: a `serInstanceId` and `isLocal` in
/// POST, repeated grant types, a token endpoint and hosts that are no URL or host name, `_links`
/// in a subscription, `*/*` and missing media types.
#[tokio::test]
async fn conformance_suite_bodies_are_accepted() {
    let (mep, _dir) = open_mep().await;
    let body = json!({
        "serName": "NEW_SERVICE_NAME",
        "version": "lorem ipsum dolor sit",
        "state": "INACTIVE",
        "serInstanceId": "chosen by the client",
        "serCategory": {"href": "http://cat,alogue+example/x,1", "id": "cat id",
                        "name": "category name", "version": "v"},
        "transportInfo": {
            "id": "transport id with spaces", "name": "a name", "type": "MB_ROUTING",
            "protocol": "some protocol", "version": "some version",
            "endpoint": {"addresses": [{"host": "not a host name", "port": 10968}]},
            "security": {"oAuth2Info": {
                "grantTypes": ["OAUTH2_IMPLICIT_GRANT", "OAUTH2_IMPLICIT_GRANT",
                               "OAUTH2_CLIENT_CREDENTIALS"],
                "tokenEndpoint": "https://tokens,example+x/9"}},
            "description": "free text"
        },
        "serializer": "XML",
        "scopeOfLocality": "ZONE",
        "consumedLocalOnly": true,
        "isLocal": false
    });
    let url = mep.url("/applications/app-1/services");
    let r = mep
        .http
        .post(&url)
        .header("content-type", "*/*")
        .body(body.to_string())
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 201, "*/* is parsed as JSON");
    let created: Value = r.json().await.unwrap();
    assert_eq!(created["isLocal"], true, "isLocal is the platform's");
    assert_ne!(created["serInstanceId"], "chosen by the client");
    let id = created["serInstanceId"].as_str().unwrap().to_owned();

    let r = mep
        .http
        .post(&url)
        .body(body.to_string())
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 201, "no Content-Type is parsed as JSON");

    let mut updated = body.clone();
    updated["version"] = json!("v2.0");
    let r = mep
        .http
        .put(mep.url(&format!("/applications/app-1/services/{id}")))
        .header("content-type", "application/json; charset=utf-8")
        .body(updated.to_string())
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(r.json::<Value>().await.unwrap()["version"], "v2.0");

    let subscription = json!({"subscriptionType": SUB_TYPE,
        "callbackReference": "http://127.0.0.1/subscribe",
        "_links": {"self": {"href": "http://127.0.0.1/subscribe"}}});
    let r = mep
        .http
        .post(mep.url("/applications/app-1/subscriptions"))
        .header("content-type", "application/*")
        .body(subscription.to_string())
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 201, "_links in a request is ignored");

    // What the suites send as errors is still refused.
    let mut misnamed = body.clone();
    let name = misnamed.as_object_mut().unwrap().remove("serName").unwrap();
    misnamed["Name"] = name;
    mep.expect(Method::POST, &url, None, Some(&misnamed), 400)
        .await;
    let wrong = json!({"subscription": SUB_TYPE, "callbackReference": "http://127.0.0.1/s"});
    let subs = mep.url("/applications/app-1/subscriptions");
    mep.expect(Method::POST, &subs, None, Some(&wrong), 400)
        .await;
    let with_param = mep.url("/applications/app-1/services?instance_id=5");
    mep.expect(Method::GET, &with_param, None, None, 400).await;
    for declared in ["text/plain", "application/xml"] {
        let r = mep
            .http
            .post(&url)
            .header("content-type", declared)
            .body(body.to_string())
            .send()
            .await
            .unwrap();
        assert_problem(r, 415).await;
    }
    let unknown = mep.url("/applications/NON_EXISTENT_APP_INSTANCE_ID/services");
    mep.expect(Method::GET, &unknown, None, None, 404).await;
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
    let (a, b) = (mep.token(AK_A, SK_A).await, mep.token(AK_B, SK_B).await);
    let (a, b) = (Some(a.as_str()), Some(b.as_str()));
    let unknown = "0f0f0f0f-aaaa-bbbb-cccc-000000000000";
    let url = |path: String| mep.url(&path);

    // Collections of the platform.
    mep.expect(Method::GET, &url("/services".into()), a, None, 200)
        .await;
    mep.expect(Method::GET, &url("/services?bogus=1".into()), a, None, 400)
        .await;
    mep.expect(Method::GET, &url("/transports".into()), b, None, 200)
        .await;
    mep.expect(Method::GET, &url("/services/nope".into()), a, None, 404)
        .await;

    // An application's services.
    let services = url(format!("/applications/{APP_A}/services"));
    let mut with_liveness = service_body("rnis");
    with_liveness["livenessInterval"] = json!(60);
    let created = mep
        .expect(Method::POST, &services, a, Some(&with_liveness), 201)
        .await;
    let id = created["serInstanceId"].as_str().unwrap().to_owned();
    mep.expect(
        Method::POST,
        &services,
        a,
        Some(&json!({"serName": "x"})),
        400,
    )
    .await;
    mep.expect(Method::POST, &services, b, Some(&with_liveness), 403)
        .await;
    let unknown_services = url(format!("/applications/{unknown}/services"));
    mep.expect(
        Method::POST,
        &unknown_services,
        a,
        Some(&with_liveness),
        404,
    )
    .await;
    mep.expect(Method::GET, &services, a, None, 200).await;
    mep.expect(
        Method::GET,
        &format!("{services}?ser_name=a&ser_category_id=b"),
        a,
        None,
        400,
    )
    .await;
    mep.expect(Method::GET, &services, b, None, 403).await;
    mep.expect(Method::GET, &unknown_services, a, None, 404)
        .await;
    mep.expect(Method::GET, &unknown_services, None, None, 401)
        .await;

    // One service.
    let service = url(format!("/applications/{APP_A}/services/{id}"));
    let r = mep.call(Method::GET, &service, a, None).await;
    assert_eq!(r.status(), 200);
    let etag = r.headers()["etag"].to_str().unwrap().to_owned();
    mep.expect(Method::GET, &service, b, None, 403).await;
    mep.expect(
        Method::GET,
        &url(format!("/applications/{APP_A}/services/nope")),
        a,
        None,
        404,
    )
    .await;
    mep.expect(
        Method::GET,
        &url(format!("/applications/{unknown}/services/{id}")),
        a,
        None,
        404,
    )
    .await;
    let mut changed = with_liveness.clone();
    changed["version"] = json!("2.2.1");
    let stale = mep
        .http
        .put(&service)
        .bearer_auth(a.unwrap())
        .header("if-match", "INVALID_ETAG")
        .json(&changed)
        .send()
        .await
        .unwrap();
    assert_problem(stale, 412).await;
    let fresh = mep
        .http
        .put(&service)
        .bearer_auth(a.unwrap())
        .header("if-match", &etag)
        .json(&changed)
        .send()
        .await
        .unwrap();
    assert_eq!(fresh.status(), 200);
    let mut invalid = changed.clone();
    invalid["state"] = json!("UNKNOWN_VALUE");
    mep.expect(Method::PUT, &service, a, Some(&invalid), 400)
        .await;
    mep.expect(Method::PUT, &service, b, Some(&changed), 403)
        .await;
    mep.expect(
        Method::PUT,
        &url(format!("/applications/{APP_A}/services/nope")),
        a,
        Some(&changed),
        404,
    )
    .await;

    // Its liveness resource.
    let liveness = format!("{service}/liveness");
    let beat = json!({"state": "ACTIVE"});
    mep.expect(Method::GET, &liveness, a, None, 200).await;
    mep.expect(Method::GET, &liveness, b, None, 403).await;
    mep.expect(Method::PATCH, &liveness, a, Some(&beat), 200)
        .await;
    mep.expect(
        Method::PATCH,
        &liveness,
        a,
        Some(&json!({"state": "INACTIVE"})),
        400,
    )
    .await;
    mep.expect(Method::PATCH, &liveness, b, Some(&beat), 403)
        .await;
    mep.expect(
        Method::PATCH,
        &url(format!("/applications/{unknown}/services/{id}/liveness")),
        a,
        Some(&beat),
        404,
    )
    .await;
    let stale = mep
        .http
        .patch(&liveness)
        .bearer_auth(a.unwrap())
        .header("if-match", "\"stale\"")
        .json(&beat)
        .send()
        .await
        .unwrap();
    assert_problem(stale, 412).await;

    // Subscriptions.
    let subs = url(format!("/applications/{APP_A}/subscriptions"));
    let sub = json!({"subscriptionType": SUB_TYPE, "callbackReference": "http://127.0.0.1:9/cb"});
    let r = mep.call(Method::POST, &subs, a, Some(&sub)).await;
    assert_eq!(r.status(), 201);
    let location = r.headers()["location"].to_str().unwrap().to_owned();
    mep.expect(
        Method::POST,
        &subs,
        a,
        Some(&json!({"subscriptionType": SUB_TYPE})),
        400,
    )
    .await;
    mep.expect(Method::POST, &subs, b, Some(&sub), 403).await;
    mep.expect(
        Method::POST,
        &url(format!("/applications/{unknown}/subscriptions")),
        a,
        Some(&sub),
        404,
    )
    .await;
    mep.expect(Method::GET, &subs, a, None, 200).await;
    mep.expect(Method::GET, &subs, b, None, 403).await;
    mep.expect(Method::GET, &location, a, None, 200).await;
    mep.expect(Method::GET, &location, b, None, 403).await;
    mep.expect(Method::GET, &format!("{subs}/nope"), a, None, 404)
        .await;
    mep.expect(Method::DELETE, &location, b, None, 403).await;
    mep.expect(Method::DELETE, &location, a, None, 204).await;
    mep.expect(Method::DELETE, &location, a, None, 404).await;

    // Deregistration; the texts of refusals never name what another application holds.
    let refusal = mep.expect(Method::DELETE, &service, b, None, 403).await;
    assert!(
        !refusal["detail"].as_str().unwrap().contains("rnis"),
        "{refusal}"
    );
    mep.expect(Method::DELETE, &service, a, None, 204).await;
    mep.expect(Method::DELETE, &service, a, None, 404).await;
    mep.stop().await;
}

/// Transports the operator provisions in the configuration file, with ids of their choosing.
#[tokio::test]
async fn operator_transports_are_offered_and_can_be_referenced() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("mep.toml");
    std::fs::write(
        &file,
        r#"
[[transports]]
id = "mqtt-site-broker"
name = "MQTT"
description = "the site's MQTT broker"
type = "MB_TOPIC_BASED"
protocol = "MQTT"
version = "3.1.1"
endpoint = { addresses = [{ host = "10.0.0.7", port = 1883 }] }
security = {}
"#,
    )
    .unwrap();
    let resolved = mep_api::Config::resolve(mep_api::config::ServeArgs {
        config: Some(file.clone()),
        ..Default::default()
    })
    .unwrap();
    let mut config = test_config(dir.path());
    config.transports = resolved.transports;
    let mep = TestMep::start_with(config).await;

    let transports: Value = mep.json_at(mep.url("/transports")).await;
    let offered: Vec<&str> = transports
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t["id"].as_str().unwrap())
        .collect();
    assert_eq!(offered.len(), 2, "{transports}");
    assert!(offered.contains(&"mqtt-site-broker"));
    let mut body = service_body("telemetry");
    body.as_object_mut().unwrap().remove("transportInfo");
    body["transportId"] = json!("mqtt-site-broker");
    let created = mep.register("app-1", &body).await;
    assert_eq!(created["transportInfo"]["type"], "MB_TOPIC_BASED");
    assert_eq!(
        created["transportInfo"]["endpoint"]["addresses"][0]["port"],
        1883
    );
    body["transportId"] = json!("no-such-transport");
    let url = mep.url("/applications/app-1/services");
    mep.expect(Method::POST, &url, None, Some(&body), 400).await;
    mep.stop().await;

    std::fs::write(
        &file,
        "[[transports]]\nid = \"t\"\nname = \"a\"\ntype = \"RPC\"\nprotocol = \"GRPC\"\n\
         version = \"1\"\nendpoint = { uris = [\"grpc://10.0.0.8:50051\"] }\n\
         [[transports]]\nid = \"t\"\nname = \"b\"\ntype = \"RPC\"\nprotocol = \"GRPC\"\n\
         version = \"1\"\nendpoint = { uris = [\"grpc://10.0.0.9:50051\"] }\n",
    )
    .unwrap();
    let err = mep_api::Config::resolve(mep_api::config::ServeArgs {
        config: Some(file),
        ..Default::default()
    })
    .unwrap_err();
    assert!(err.to_string().contains("used twice"), "{err}");
}
