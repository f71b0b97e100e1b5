//! Mm5 handlers through the whole router with `Router::oneshot`.

use serde_json::json;

use crate::app::testing::{request, routers, send};

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
