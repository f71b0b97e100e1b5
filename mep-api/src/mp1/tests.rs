//! Mp1 handlers through the whole router (auth, extractors, problems) with `Router::oneshot`.

use axum::body::Body;
use serde_json::Value;

use crate::app::testing::{configure_dns_rule, request, routers, send, service, token_for};

const APP: &str = "5abe4782-2c70-4e47-9a4e-0ee3a1a0fd1f";
const OTHER: &str = "8c2a1f3e-6b7d-4c1e-9f0a-2d3b4c5e6f70";
const SERVICES: &str = "/mep/mec_service_mgmt/v1/applications";

#[tokio::test]
async fn an_app_registers_finds_and_deregisters_its_service() {
    let r = routers(|_| {}).await;
    let token = token_for(&r, APP).await;
    let uri = format!("{SERVICES}/{APP}/services");
    let created = send(
        &r.mp1,
        request("POST", &uri, Some(&token), Some(&service("cam"))),
    )
    .await;
    assert_eq!(created.status, 201, "{}", created.json);
    let id = created.json["serInstanceId"]
        .as_str()
        .expect("an id")
        .to_owned();
    assert!(created
        .header("location")
        .ends_with(&format!("/services/{id}")));
    assert!(!created.header("etag").is_empty());

    let found = send(
        &r.mp1,
        request(
            "GET",
            "/mep/mec_service_mgmt/v1/services?ser_name=cam",
            Some(&token),
            None,
        ),
    )
    .await;
    assert_eq!(found.status, 200);
    assert_eq!(
        found.json.as_array().map(Vec::len),
        Some(1),
        "{}",
        found.json
    );

    let one = format!("{uri}/{id}");
    let gone = send(&r.mp1, request("DELETE", &one, Some(&token), None)).await;
    assert_eq!(gone.status, 204);
    send(&r.mp1, request("GET", &one, Some(&token), None))
        .await
        .assert_problem(404);
}

#[tokio::test]
async fn a_request_without_a_valid_token_is_a_401_problem() {
    let r = routers(|_| {}).await;
    let uri = format!("{SERVICES}/{APP}/services");
    let missing = send(&r.mp1, request("GET", &uri, None, None)).await;
    missing.assert_problem(401);
    assert!(missing.header("www-authenticate").starts_with("Bearer"));
    send(&r.mp1, request("GET", &uri, Some("not-a-token"), None))
        .await
        .assert_problem(401);
}

#[tokio::test]
async fn an_app_touches_only_its_own_resources() {
    let r = routers(|_| {}).await;
    let token = token_for(&r, APP).await;
    token_for(&r, OTHER).await;
    let others = format!("{SERVICES}/{OTHER}/services");
    send(
        &r.mp1,
        request("POST", &others, Some(&token), Some(&service("x"))),
    )
    .await
    .assert_problem(403);
    let unknown = format!("{SERVICES}/00000000-0000-4000-8000-000000000000/services");
    send(&r.mp1, request("GET", &unknown, Some(&token), None))
        .await
        .assert_problem(404);
}

#[tokio::test]
async fn malformed_and_mistyped_bodies_are_400_and_415_problems() {
    let r = routers(|_| {}).await;
    let token = token_for(&r, APP).await;
    let uri = format!("{SERVICES}/{APP}/services");
    let mut broken = request("POST", &uri, Some(&token), None);
    broken.headers_mut().insert(
        "content-type",
        http::HeaderValue::from_static("application/json"),
    );
    *broken.body_mut() = Body::from("{\"serName\": ");
    send(&r.mp1, broken).await.assert_problem(400);

    let mut xml = request("POST", &uri, Some(&token), Some(&service("cam")));
    xml.headers_mut().insert(
        "content-type",
        http::HeaderValue::from_static("application/xml"),
    );
    send(&r.mp1, xml).await.assert_problem(415);

    let mut nameless = service("cam");
    nameless["serName"] = Value::Null;
    send(&r.mp1, request("POST", &uri, Some(&token), Some(&nameless)))
        .await
        .assert_problem(400);
}

#[tokio::test]
async fn dns_rules_configured_on_mm5_are_read_on_mp1() {
    let r = routers(|_| {}).await;
    let token = token_for(&r, APP).await;
    configure_dns_rule(&r, APP).await;

    let rules = format!("/mep/mec_app_support/v1/applications/{APP}/dns_rules");
    let read = send(&r.mp1, request("GET", &rules, Some(&token), None)).await;
    assert_eq!(read.status, 200);
    assert_eq!(
        read.json[0]["domainName"], "cam.edge.example",
        "{}",
        read.json
    );
    assert_eq!(read.json[0]["state"], "ACTIVE");
}
