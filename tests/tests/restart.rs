//! State survives a restart on the same data directory.

use mep_tests::{service_body, CallbackReceiver, TestMep};
use serde_json::{json, Value};

#[tokio::test]
async fn restart_serves_the_same_state() {
    let dir = tempfile::tempdir().unwrap();
    let mep = TestMep::start(dir.path()).await;
    let mut rx = CallbackReceiver::start().await;
    let mut with_liveness = service_body("rnis");
    with_liveness["livenessInterval"] = json!(30);
    let a = mep.register("app-1", &with_liveness).await;
    let b = mep.register("app-2", &service_body("location")).await;
    let gone = mep.register("app-2", &service_body("gone")).await;
    let gone_id = gone["serInstanceId"].as_str().unwrap();
    assert_eq!(
        mep.delete(&format!("/applications/app-2/services/{gone_id}"))
            .await
            .status(),
        204
    );
    let sub = mep
        .post(
            "/applications/app-9/subscriptions",
            &json!({"subscriptionType": "SerAvailabilityNotificationSubscription",
                    "callbackReference": rx.url, "filteringCriteria": {"serNames": ["new"]}}),
        )
        .await;
    assert_eq!(sub.status(), 201);
    let sub_location = sub.headers()["location"].to_str().unwrap().to_owned();
    let sub_body: Value = sub.json().await.unwrap();
    let transports: Value = mep.get("/transports").await.json().await.unwrap();
    let a_id = a["serInstanceId"].as_str().unwrap().to_owned();
    let etag_before = mep.get(&format!("/services/{a_id}")).await.headers()["etag"].clone();
    let everything_before: Value = mep.get("/services").await.json().await.unwrap();
    let mp1 = mep.mep.mp1_addr;
    mep.stop().await;

    let mut config = mep_tests::test_config(dir.path());
    config.mp1_addr = mp1; // same address, so stored links stay valid
    let mep = TestMep::start_with(config).await;
    let everything_after: Value = mep.get("/services").await.json().await.unwrap();
    assert_eq!(everything_after, everything_before);
    assert_eq!(everything_after.as_array().unwrap().len(), 2);
    assert_eq!(
        mep.get(&format!("/services/{a_id}")).await.headers()["etag"],
        etag_before
    );
    let b_id = b["serInstanceId"].as_str().unwrap();
    assert_eq!(
        mep.get(&format!("/applications/app-2/services/{b_id}"))
            .await
            .status(),
        200
    );
    assert_eq!(mep.get(&format!("/services/{gone_id}")).await.status(), 404);
    assert_eq!(
        mep.get("/transports").await.json::<Value>().await.unwrap(),
        transports,
        "transport id is stable"
    );
    let sub_after = mep.http.get(&sub_location).send().await.unwrap();
    assert_eq!(sub_after.json::<Value>().await.unwrap(), sub_body);

    // Liveness timers restart from the restart time: the service is ACTIVE and its
    // liveness resource answers.
    let live: Value = mep
        .get(&format!("/applications/app-1/services/{a_id}/liveness"))
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(live["state"], "ACTIVE");

    // The restored subscription still delivers.
    mep.register("app-3", &service_body("new")).await;
    assert_eq!(rx.next().await["serviceReferences"][0]["serName"], "new");
    mep.stop().await;
}
