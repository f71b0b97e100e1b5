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

/// A data plane whose first sync waits until the test lets it through.
struct GatedDataPlane {
    gate: tokio::sync::Semaphore,
}

#[async_trait::async_trait]
impl mep_rules::DataPlane for GatedDataPlane {
    fn kind(&self) -> &'static str {
        "gated"
    }
    async fn init(&self, _: &mep_rules::Snapshot) -> Result<(), mep_rules::DataPlaneError> {
        let _ = self.gate.acquire().await;
        Ok(())
    }
    async fn apply(
        &self,
        _: &mep_rules::AppInfo,
        _: &[mep_rules::RuleChange],
    ) -> Result<(), mep_rules::ApplyError> {
        Ok(())
    }
    async fn resync(&self, _: &mep_rules::Snapshot) -> Result<(), mep_rules::DataPlaneError> {
        Ok(())
    }
}

/// `/ready` is 503, saying what is missing, until the data plane holds the committed rules;
/// `/health` answers all along.
#[tokio::test]
async fn ready_waits_for_the_data_plane() {
    let dir = tempfile::tempdir().unwrap();
    let plane = std::sync::Arc::new(GatedDataPlane {
        gate: tokio::sync::Semaphore::new(0),
    });
    let mep =
        TestMep::start_with_dataplane(mep_tests::test_config(dir.path()), Some(plane.clone()))
            .await;
    let ready = format!("{}/ready", mep.mm5);
    let r = mep.http.get(&ready).send().await.unwrap();
    assert_eq!(r.status(), 503);
    assert!(r.headers().contains_key("retry-after"));
    let problem = mep_tests::assert_problem(r, 503).await;
    assert!(
        problem["detail"].as_str().unwrap().contains("data plane"),
        "{problem}"
    );
    let health = mep
        .http
        .get(format!("{}/health", mep.mm5))
        .send()
        .await
        .unwrap();
    assert_eq!(health.status(), 200);

    plane.gate.add_permits(1);
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(5);
    loop {
        let r = mep.http.get(&ready).send().await.unwrap();
        if r.status() == 200 {
            assert_eq!(r.json::<Value>().await.unwrap()["status"], "ready");
            break;
        }
        assert!(std::time::Instant::now() < deadline, "never ready");
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
    mep.stop().await;
}

/// The metric names a PromQL expression refers to (`mep_...` tokens).
fn metric_names(expr: &str) -> Vec<String> {
    let mut out = Vec::new();
    let bytes = expr.as_bytes();
    let mut i = 0;
    while let Some(at) = expr[i..].find("mep_") {
        let start = i + at;
        let mut end = start;
        while end < bytes.len() && (bytes[end].is_ascii_alphanumeric() || bytes[end] == b'_') {
            end += 1;
        }
        out.push(expr[start..end].to_owned());
        i = end;
    }
    out
}

#[tokio::test]
async fn the_grafana_dashboard_queries_only_metrics_mep_exports() {
    let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../deploy/grafana/mep.json");
    let dashboard: Value = serde_json::from_str(&std::fs::read_to_string(&path).unwrap()).unwrap();
    let panels = dashboard["panels"].as_array().unwrap();
    let mut ids: Vec<u64> = panels.iter().map(|p| p["id"].as_u64().unwrap()).collect();
    ids.sort_unstable();
    ids.dedup();
    assert_eq!(ids.len(), panels.len(), "panel ids are unique");
    let exprs: Vec<&str> = panels
        .iter()
        .filter(|p| p["type"] != "row")
        .flat_map(|p| {
            let targets = p["targets"].as_array().expect("a panel has targets");
            assert!(!targets.is_empty(), "{}", p["title"]);
            targets.iter().map(|t| {
                assert_eq!(t["datasource"]["uid"], "${DS_PROMETHEUS}", "{}", p["title"]);
                t["expr"].as_str().unwrap()
            })
        })
        .collect();

    let dir = tempfile::tempdir().unwrap();
    let mep = TestMep::start(dir.path()).await;
    let text = mep.metrics_text().await;
    let exported: std::collections::HashSet<&str> = text
        .lines()
        .filter_map(|l| l.strip_prefix("# TYPE "))
        .filter_map(|l| l.split(' ').next())
        .collect();
    let mut used = std::collections::HashSet::new();
    for expr in &exprs {
        for name in metric_names(expr) {
            let family = ["_total", "_bucket", "_sum", "_count"]
                .iter()
                .find_map(|s| name.strip_suffix(s))
                .filter(|base| exported.contains(base))
                .unwrap_or(&name)
                .to_owned();
            assert!(
                exported.contains(family.as_str()),
                "the dashboard queries {name}, which /metrics does not export"
            );
            used.insert(family);
        }
    }
    for wanted in [
        "mep_http_requests",
        "mep_http_request_duration_seconds",
        "mep_dns_responses",
        "mep_dns_queries",
        "mep_notifications_delivered",
        "mep_notifications_failed",
        "mep_active_traffic_rules",
        "mep_active_dns_rules",
        "mep_traffic_rule_packets",
    ] {
        assert!(used.contains(wanted), "the dashboard shows {wanted}");
    }
}
