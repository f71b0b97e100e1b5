//! Mm5 handlers through the whole router with `Router::oneshot`.

use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::extract::State;
use axum::routing::post;
use axum::Router;
use http::StatusCode;
use serde_json::{json, Value};
use tokio::sync::Mutex;

use crate::app::testing::{
    configure_dns_rule, request, routers, send, service, token_for, Routers,
};

const APP: &str = "5abe4782-2c70-4e47-9a4e-0ee3a1a0fd1f";

#[tokio::test]
async fn health_answers_while_ready_waits_for_every_part() {
    let r = routers(|_| {}).await;
    assert_eq!(
        send(&r.mm5, request("GET", "/health", None, None))
            .await
            .status,
        200
    );
    // These routers run no DNS server, so mep is not ready, and says why.
    let ready = send(&r.mm5, request("GET", "/ready", None, None)).await;
    ready.assert_problem(503);
    assert!(!ready.header("retry-after").is_empty());
    assert!(
        ready.json["detail"].to_string().contains("DNS"),
        "{}",
        ready.json
    );
}

#[tokio::test]
async fn an_appd_configuration_is_a_task_that_can_be_read_back() {
    let r = routers(|_| {}).await;
    let uri = format!("/mepcfg/app_lcm/v1/applications/{APP}/appd_configuration");
    let body = json!({"appName": "demo", "appDNSRule": [], "appTrafficRule": []});
    let task = send(&r.mm5, request("POST", &uri, None, Some(&body))).await;
    assert_eq!(task.status, 200, "{}", task.json);
    assert_eq!(task.json["configResult"], "SUCCESS");
    let id = task.json["taskId"].as_str().expect("a task id");
    let again = send(
        &r.mm5,
        request(
            "GET",
            &format!("/mepcfg/app_lcm/v1/tasks/{id}/appd_configuration"),
            None,
            None,
        ),
    )
    .await;
    assert_eq!(again.json, task.json);
    send(
        &r.mm5,
        request(
            "GET",
            "/mepcfg/app_lcm/v1/tasks/nope/appd_configuration",
            None,
            None,
        ),
    )
    .await
    .assert_problem(404);
}

#[tokio::test]
async fn a_bad_rule_is_a_400_problem_and_changes_nothing() {
    let r = routers(|_| {}).await;
    let uri = format!("/mepcfg/app_lcm/v1/applications/{APP}/appd_configuration");
    let body = json!({"appName": "demo", "appDNSRule": [{
        "dnsRuleId": "d", "domainName": "x.example", "ipAddressType": "IP_V4",
        "ipAddress": "not-an-address", "ttl": 30, "state": "ACTIVE"
    }]});
    send(&r.mm5, request("POST", &uri, None, Some(&body)))
        .await
        .assert_problem(400);
    send(&r.mm5, request("GET", &uri, None, None))
        .await
        .assert_problem(404);
}

#[tokio::test]
async fn unknown_capabilities_and_routes_are_404_problems() {
    let r = routers(|_| {}).await;
    let list = send(
        &r.mm5,
        request(
            "GET",
            "/mepcfg/mec_platform_config/v1/capabilities",
            None,
            None,
        ),
    )
    .await;
    assert_eq!(list.status, 200);
    assert!(list.json.is_array());
    send(
        &r.mm5,
        request(
            "GET",
            "/mepcfg/mec_platform_config/v1/capabilities/nope",
            None,
            None,
        ),
    )
    .await
    .assert_problem(404);
    send(&r.mm5, request("GET", "/nowhere", None, None))
        .await
        .assert_problem(404);
}

#[tokio::test]
async fn a_missing_or_repeated_query_parameter_is_a_400_problem() {
    let r = routers(|_| {}).await;
    for uri in [
        "/mepcfg/dns/v1/answers",
        "/mepcfg/dns/v1/answers?name=a.example&name=b.example",
    ] {
        send(&r.mm5, request("GET", uri, None, None))
            .await
            .assert_problem(400);
    }
    let answered = send(
        &r.mm5,
        request("GET", "/mepcfg/dns/v1/answers?name=a.example", None, None),
    )
    .await;
    assert_eq!(answered.status, 200, "{}", answered.json);
    assert_eq!(answered.json["source"], "upstream");
}

const TERMINATE: &str = "/mep/mec_app_support/v1/applications/5abe4782-2c70-4e47-9a4e-0ee3a1a0fd1f/AppInstanceTermination";

/// An app with credentials, one DNS rule and one registered service; answers its token.
async fn provisioned(r: &Routers) -> String {
    let token = token_for(r, APP).await;
    configure_dns_rule(r, APP).await;
    let uri = format!("/mep/mec_service_mgmt/v1/applications/{APP}/services");
    let created = send(
        &r.mp1,
        request("POST", &uri, Some(&token), Some(&service("cam"))),
    )
    .await;
    assert_eq!(created.status, 201, "{}", created.json);
    token
}

#[tokio::test]
async fn a_termination_without_subscribers_removes_everything_at_once() {
    let r = routers(|c| c.apps.max_graceful_timeout = Duration::from_secs(30)).await;
    let token = provisioned(&r).await;
    let started = Instant::now();
    let report = send(&r.mm5, request("DELETE", TERMINATE, None, None)).await;
    assert_eq!(report.status, 200, "{}", report.json);
    assert!(
        started.elapsed() < Duration::from_secs(10),
        "nobody to wait for"
    );
    assert_eq!(report.json["notified"], 0);
    assert_eq!(report.json["confirmed"], false);
    assert_eq!(report.json["rulesRemoved"], true);
    assert_eq!(report.json["servicesRemoved"], 1);
    assert_eq!(report.json["credentialsRemoved"], true);
    let uri = format!("/mepcfg/app_lcm/v1/applications/{APP}/appd_configuration");
    send(&r.mm5, request("GET", &uri, None, None))
        .await
        .assert_problem(404);
    let services = send(
        &r.mp1,
        request(
            "GET",
            "/mep/mec_service_mgmt/v1/services",
            Some(&token),
            None,
        ),
    )
    .await;
    services.assert_problem(401);
}

/// Notifications a test callback received.
type Seen = Arc<Mutex<Vec<Value>>>;

/// A callback that records each notification and confirms the termination over Mp1.
async fn confirming_callback(mp1: Router, token: String) -> (String, Seen) {
    let seen = Arc::new(Mutex::new(Vec::new()));
    let state = (mp1, token, Arc::clone(&seen));
    let app = Router::new()
        .route(
            "/terminating",
            post(
                |State((mp1, token, seen)): State<(Router, String, Seen)>,
                 body: axum::Json<Value>| async move {
                    seen.lock().await.push(body.0);
                    let uri =
                        format!("/mep/mec_app_support/v1/applications/{APP}/confirm_termination");
                    let confirm = json!({"operationAction": "TERMINATING"});
                    let answer =
                        send(&mp1, request("POST", &uri, Some(&token), Some(&confirm))).await;
                    assert_eq!(answer.status, 204, "{}", answer.json);
                    StatusCode::NO_CONTENT
                },
            ),
        )
        .with_state(state);
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}/terminating", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, app).await });
    (url, seen)
}

#[tokio::test]
async fn a_termination_notifies_and_ends_when_the_app_confirms() {
    let r = routers(|c| c.apps.max_graceful_timeout = Duration::from_secs(30)).await;
    let token = provisioned(&r).await;
    let (callback, seen) = confirming_callback(r.mp1.clone(), token.clone()).await;
    let uri = format!("/mep/mec_app_support/v1/applications/{APP}/subscriptions");
    let subscription = json!({
        "subscriptionType": "AppTerminationNotificationSubscription",
        "callbackReference": callback, "appInstanceId": APP
    });
    let created = send(
        &r.mp1,
        request("POST", &uri, Some(&token), Some(&subscription)),
    )
    .await;
    assert_eq!(created.status, 201, "{}", created.json);

    let started = Instant::now();
    let report = send(&r.mm5, request("DELETE", TERMINATE, None, None)).await;
    assert_eq!(report.status, 200, "{}", report.json);
    assert!(
        started.elapsed() < Duration::from_secs(20),
        "the confirmation ends the wait"
    );
    assert_eq!(report.json["notified"], 1);
    assert_eq!(report.json["confirmed"], true, "{}", report.json);
    assert_eq!(report.json["subscriptionsRemoved"], 1);
    let seen = seen.lock().await;
    assert_eq!(seen.len(), 1);
    assert_eq!(seen[0]["notificationType"], "AppTerminationNotification");
    assert_eq!(seen[0]["operationAction"], "TERMINATING");
    assert_eq!(seen[0]["maxGracefulTimeout"], 30);
    assert!(seen[0]["_links"]["confirmTermination"]["href"]
        .as_str()
        .is_some_and(|h| h.ends_with(&format!("/applications/{APP}/confirm_termination"))));
}
