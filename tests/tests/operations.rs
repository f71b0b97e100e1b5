//! Health and Prometheus metrics on the Mm5 listener.

use mep_tests::{service_body, TestMep};
use serde_json::Value;

#[tokio::test]
async fn health_and_metrics() {
    let dir = tempfile::tempdir().unwrap();
    let mep = TestMep::start(dir.path()).await;
    let health = mep
        .http
        .get(format!("{}/health", mep.mm5))
        .send()
        .await
        .unwrap();
    assert_eq!(health.status(), 200);
    assert_eq!(health.json::<Value>().await.unwrap()["status"], "ok");

    let created = mep.register("app-1", &service_body("rnis")).await;
    let id = created["serInstanceId"].as_str().unwrap();
    assert_eq!(mep.get(&format!("/services/{id}")).await.status(), 200);
    assert_eq!(mep.get("/services/unknown").await.status(), 404);

    let r = mep
        .http
        .get(format!("{}/metrics", mep.mm5))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    assert!(r.headers()["content-type"]
        .to_str()
        .unwrap()
        .starts_with("text/plain"));
    let text = r.text().await.unwrap();
    for expected in [
        r#"mep_http_requests_total{listener="mp1",method="POST",route="/mep/mec_service_mgmt/v1/applications/{appInstanceId}/services",status="201"} 1"#,
        r#"mep_http_requests_total{listener="mp1",method="GET",route="/mep/mec_service_mgmt/v1/services/{serviceId}",status="200"} 1"#,
        r#"mep_http_requests_total{listener="mp1",method="GET",route="/mep/mec_service_mgmt/v1/services/{serviceId}",status="404"} 1"#,
        "mep_http_request_duration_seconds_bucket",
        "mep_services 1",
        "mep_ser_availability_subscriptions 0",
        "mep_notifications_delivered_total 0",
        "mep_notifications_failed_total 0",
        "mep_notifications_dropped_total 0",
    ] {
        assert!(text.contains(expected), "missing {expected} in\n{text}");
    }
    let store_bytes: u64 = text
        .lines()
        .find_map(|l| l.strip_prefix("mep_store_bytes "))
        .expect("store size metric")
        .parse()
        .unwrap();
    assert!(store_bytes > 0);
    mep.stop().await;
}
