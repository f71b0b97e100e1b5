//! Service liveness (MEC 011 v2.2.1): heartbeats, suspension and revival, moved by a manual clock.

use std::time::Duration;

use mep_tests::{assert_problem, service_body, TestMep};
use serde_json::{json, Value};

async fn with_heartbeat(mep: &TestMep, app: &str, interval: u32) -> (String, String) {
    let mut body = service_body("rnis");
    body["livenessInterval"] = json!(interval);
    let created = mep.register(app, &body).await;
    assert_eq!(created["livenessInterval"], interval);
    let id = created["serInstanceId"].as_str().unwrap().to_owned();
    let liveness = created["_links"]["liveness"]["href"]
        .as_str()
        .unwrap()
        .to_owned();
    (id, liveness)
}

#[tokio::test]
async fn missed_heartbeats_suspend_and_a_heartbeat_revives() {
    let dir = tempfile::tempdir().unwrap();
    let mep = TestMep::start(dir.path()).await;
    let (id, liveness) = with_heartbeat(&mep, "app-1", 10).await;
    assert!(liveness.ends_with(&format!("/applications/app-1/services/{id}/liveness")));

    let info: Value = mep.json_at(&liveness).await;
    assert_eq!(info["state"], "ACTIVE");
    assert_eq!(info["interval"], 10);
    assert!(info["timeStamp"]["seconds"].as_u64().unwrap() > 1_700_000_000);
    assert!(info["timeStamp"]["nanoSeconds"].is_u64());

    // Within interval plus grace (10 s + 1 s) nothing happens.
    mep.clock.advance(Duration::from_secs(10));
    mep.let_sweeper_run().await;
    let one: Value = mep
        .get(&format!("/services/{id}"))
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(one["state"], "ACTIVE");

    mep.clock.advance(Duration::from_secs(2));
    mep.let_sweeper_run().await;
    let one: Value = mep
        .get(&format!("/services/{id}"))
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(one["state"], "SUSPENDED");
    let global: Value = mep
        .get("/services?ser_name=rnis")
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(global, json!([]), "suspended services are not discoverable");
    let own: Value = mep
        .get("/applications/app-1/services")
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(
        own[0]["state"], "SUSPENDED",
        "the provider still sees its service"
    );
    let info: Value = mep.json_at(&liveness).await;
    assert_eq!(info["state"], "SUSPENDED");

    let r = mep
        .http
        .patch(&liveness)
        .header("content-type", "application/merge-patch+json")
        .body(r#"{"state":"ACTIVE"}"#)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200, "PATCH answers the ServiceLivenessInfo");
    let after: Value = r.json().await.unwrap();
    assert_eq!(after["state"], "ACTIVE");
    assert_eq!(after["interval"], 10);
    let one: Value = mep
        .get(&format!("/services/{id}"))
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(one["state"], "ACTIVE");
    assert_eq!(
        mep.get("/services?ser_name=rnis")
            .await
            .json::<Value>()
            .await
            .unwrap()
            .as_array()
            .unwrap()
            .len(),
        1
    );

    // Heartbeats keep it alive: 8 s steps with a heartbeat in between never reach 11 s.
    for _ in 0..3 {
        mep.clock.advance(Duration::from_secs(8));
        mep.let_sweeper_run().await;
        let r = mep
            .send_json(
                reqwest::Method::PATCH,
                &liveness,
                &json!({"state": "ACTIVE"}),
            )
            .await;
        assert_eq!(r.status(), 200);
    }
    let info: Value = mep.json_at(&liveness).await;
    assert_eq!(info["state"], "ACTIVE");
    mep.stop().await;
}

#[tokio::test]
async fn liveness_update_rules() {
    let dir = tempfile::tempdir().unwrap();
    let mep = TestMep::start(dir.path()).await;
    let (id, liveness) = with_heartbeat(&mep, "app-1", 30).await;

    for state in ["INACTIVE", "SUSPENDED"] {
        let r = mep
            .send_json(reqwest::Method::PATCH, &liveness, &json!({"state": state}))
            .await;
        assert_problem(r, 400).await;
    }
    let r = mep
        .send_json(
            reqwest::Method::PATCH,
            &liveness,
            &json!({"state": "asleep"}),
        )
        .await;
    assert_problem(r, 400).await;

    // EdgeGallery apps heartbeat with PUT.
    let r = mep
        .send_json(reqwest::Method::PUT, &liveness, &json!({"state": "ACTIVE"}))
        .await;
    assert_eq!(r.status(), 204);

    let etag = mep.http.get(&liveness).send().await.unwrap().headers()["etag"]
        .to_str()
        .unwrap()
        .to_owned();
    let stale = mep
        .http
        .patch(&liveness)
        .header("if-match", "\"stale\"")
        .json(&json!({"state": "ACTIVE"}))
        .send()
        .await
        .unwrap();
    assert_problem(stale, 412).await;
    let fresh = mep
        .http
        .patch(&liveness)
        .header("if-match", &etag)
        .json(&json!({"state": "ACTIVE"}))
        .send()
        .await
        .unwrap();
    assert_eq!(fresh.status(), 200);
    assert!(fresh.headers().contains_key("etag"));

    // An unknown instance's URI does not exist; a known one's is not the caller's.
    let foreign = mep.url(&format!("/applications/app-2/services/{id}/liveness"));
    let patch = json!({"state": "ACTIVE"});
    let r = mep
        .send_json(reqwest::Method::PATCH, &foreign, &patch)
        .await;
    assert_problem(r, 404).await;
    mep.register("app-2", &service_body("other")).await;
    let r = mep
        .send_json(reqwest::Method::PATCH, &foreign, &patch)
        .await;
    assert_problem(r, 403).await;

    let plain = mep.register("app-1", &service_body("no-heartbeat")).await;
    let plain_id = plain["serInstanceId"].as_str().unwrap();
    let r = mep
        .get(&format!("/applications/app-1/services/{plain_id}/liveness"))
        .await;
    assert_problem(r, 404).await;

    // The platform chooses the interval within its bounds.
    let mut long = service_body("long");
    long["livenessInterval"] = json!(1_000_000);
    let created = mep.register("app-1", &long).await;
    assert_eq!(created["livenessInterval"], 3600);
    mep.stop().await;
}

#[tokio::test]
async fn inactive_services_are_not_suspended() {
    let dir = tempfile::tempdir().unwrap();
    let mep = TestMep::start(dir.path()).await;
    let mut body = service_body("idle");
    body["livenessInterval"] = json!(1);
    body["state"] = json!("INACTIVE");
    let created = mep.register("app-1", &body).await;
    mep.clock.advance(Duration::from_secs(60));
    mep.let_sweeper_run().await;
    let id = created["serInstanceId"].as_str().unwrap();
    let one: Value = mep
        .get(&format!("/services/{id}"))
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(one["state"], "INACTIVE");
    mep.stop().await;
}
