//! Service availability subscriptions and notifications, delivered to a real HTTP receiver.

use std::time::{Duration, Instant};

use mep_tests::{assert_problem, service_body, CallbackReceiver, TestMep};
use serde_json::{json, Value};

const SUB_TYPE: &str = "SerAvailabilityNotificationSubscription";

async fn subscribe(mep: &TestMep, app: &str, callback: &str, criteria: Value) -> (String, Value) {
    let mut body = json!({"subscriptionType": SUB_TYPE, "callbackReference": callback});
    if !criteria.is_null() {
        body["filteringCriteria"] = criteria;
    }
    let r = mep
        .post(&format!("/applications/{app}/subscriptions"), &body)
        .await;
    assert_eq!(r.status(), 201);
    let location = r.headers()["location"].to_str().unwrap().to_owned();
    (location, r.json().await.unwrap())
}

#[tokio::test]
async fn subscription_resources() {
    let dir = tempfile::tempdir().unwrap();
    let mep = TestMep::start(dir.path()).await;
    let (location, created) = subscribe(
        &mep,
        "app-1",
        "http://127.0.0.1:9/cb",
        json!({"serNames": ["rnis"], "states": ["ACTIVE"]}),
    )
    .await;
    assert_eq!(created["subscriptionType"], SUB_TYPE);
    assert_eq!(created["callbackReference"], "http://127.0.0.1:9/cb");
    assert_eq!(created["_links"]["self"]["href"], location);
    assert_eq!(created["filteringCriteria"]["serNames"], json!(["rnis"]));

    let fetched = mep.http.get(&location).send().await.unwrap();
    assert_eq!(fetched.status(), 200);
    assert_eq!(fetched.json::<Value>().await.unwrap(), created);

    let list: Value = mep
        .get("/applications/app-1/subscriptions")
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(
        list["_links"]["self"]["href"],
        mep.url("/applications/app-1/subscriptions")
    );
    assert_eq!(list["_links"]["subscriptions"][0]["href"], location);
    assert_eq!(
        list["_links"]["subscriptions"][0]["subscriptionType"],
        SUB_TYPE
    );
    assert_problem(mep.get("/applications/app-2/subscriptions").await, 404).await;
    mep.register("app-2", &service_body("other")).await;
    let other: Value = mep
        .get("/applications/app-2/subscriptions")
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(other["_links"]["subscriptions"], json!([]));

    let sub_id = location.rsplit('/').next().unwrap();
    let r = mep
        .get(&format!("/applications/app-2/subscriptions/{sub_id}"))
        .await;
    assert_problem(r, 404).await;
    assert_problem(
        mep.delete(&format!("/applications/app-2/subscriptions/{sub_id}"))
            .await,
        404,
    )
    .await;

    let r = mep.http.delete(&location).send().await.unwrap();
    assert_eq!(r.status(), 204);
    assert_problem(mep.http.get(&location).send().await.unwrap(), 404).await;

    for bad in [
        json!({"subscriptionType": "Other", "callbackReference": "http://a/cb"}),
        json!({"subscriptionType": SUB_TYPE, "callbackReference": "not a url"}),
        json!({"subscriptionType": SUB_TYPE, "callbackReference": "ftp://a/cb"}),
        json!({"subscriptionType": SUB_TYPE}),
        json!({"subscriptionType": SUB_TYPE, "callbackReference": "http://a/cb",
               "filteringCriteria": {"serNames": ["a"], "serInstanceIds": ["b"]}}),
        json!({"subscriptionType": SUB_TYPE, "callbackReference": "http://a/cb",
               "filteringCriteria": {"states": ["SLEEPING"]}}),
    ] {
        assert_problem(
            mep.post("/applications/app-1/subscriptions", &bad).await,
            400,
        )
        .await;
    }
    mep.stop().await;
}

#[tokio::test]
async fn every_change_type_is_notified() {
    let dir = tempfile::tempdir().unwrap();
    let mep = TestMep::start(dir.path()).await;
    let mut rx = CallbackReceiver::start().await;
    let (sub, _) = subscribe(&mep, "app-9", &rx.url, Value::Null).await;

    let mut body = service_body("rnis");
    body["livenessInterval"] = json!(5);
    let created = mep.register("app-1", &body).await;
    let id = created["serInstanceId"].as_str().unwrap().to_owned();
    let link = created["_links"]["self"]["href"].clone();

    let n = rx.next().await;
    assert_eq!(n["notificationType"], "SerAvailabilityNotification");
    assert_eq!(n["_links"]["subscription"]["href"], sub);
    let r = &n["serviceReferences"][0];
    assert_eq!(r["changeType"], "ADDED");
    assert_eq!(r["serInstanceId"], id);
    assert_eq!(r["serName"], "rnis");
    assert_eq!(r["state"], "ACTIVE");
    assert_eq!(r["link"]["href"], link);

    let path = format!("/applications/app-1/services/{id}");
    let mut changed = body.clone();
    changed["version"] = json!("9.9");
    assert_eq!(mep.put(&path, &changed).await.status(), 200);
    let n = rx.next().await;
    assert_eq!(
        n["serviceReferences"][0]["changeType"],
        "ATTRIBUTES_CHANGED"
    );

    changed["state"] = json!("INACTIVE");
    assert_eq!(mep.put(&path, &changed).await.status(), 200);
    let n = rx.next().await;
    assert_eq!(n["serviceReferences"][0]["changeType"], "STATE_CHANGED");
    assert_eq!(n["serviceReferences"][0]["state"], "INACTIVE");

    changed["state"] = json!("ACTIVE");
    assert_eq!(mep.put(&path, &changed).await.status(), 200);
    assert_eq!(rx.next().await["serviceReferences"][0]["state"], "ACTIVE");

    // Suspension and revival through liveness are state changes too.
    mep.clock.advance(Duration::from_secs(7));
    let n = rx.next().await;
    assert_eq!(n["serviceReferences"][0]["changeType"], "STATE_CHANGED");
    assert_eq!(n["serviceReferences"][0]["state"], "SUSPENDED");
    let r = mep
        .send_json(
            reqwest::Method::PATCH,
            mep.url(&format!("{path}/liveness")),
            &json!({"state": "ACTIVE"}),
        )
        .await;
    assert_eq!(r.status(), 200);
    let n = rx.next().await;
    assert_eq!(n["serviceReferences"][0]["state"], "ACTIVE");

    // An unchanged PUT is not a change.
    assert_eq!(mep.put(&path, &changed).await.status(), 200);
    assert_eq!(mep.delete(&path).await.status(), 204);
    let n = rx.next().await;
    let r = &n["serviceReferences"][0];
    assert_eq!(r["changeType"], "REMOVED");
    assert!(r.get("link").is_none(), "a removed service has no link");
    rx.assert_quiet(Duration::from_millis(300)).await;

    // After unsubscribing, nothing more arrives.
    assert_eq!(mep.http.delete(&sub).send().await.unwrap().status(), 204);
    mep.register("app-1", &service_body("later")).await;
    rx.assert_quiet(Duration::from_millis(300)).await;
    mep.stop().await;
}

#[tokio::test]
async fn every_filtering_criterion_is_honoured() {
    let dir = tempfile::tempdir().unwrap();
    let mep = TestMep::start(dir.path()).await;
    let category =
        json!({"href": "http://cat.example/rni", "id": "rni", "name": "RNI", "version": "1"});
    let mut by_name = CallbackReceiver::start().await;
    let mut by_category = CallbackReceiver::start().await;
    let mut by_state = CallbackReceiver::start().await;
    let mut by_remote = CallbackReceiver::start().await;
    subscribe(&mep, "s", &by_name.url, json!({"serNames": ["wanted"]})).await;
    subscribe(
        &mep,
        "s",
        &by_category.url,
        json!({"serCategories": [category]}),
    )
    .await;
    subscribe(&mep, "s", &by_state.url, json!({"states": ["INACTIVE"]})).await;
    subscribe(&mep, "s", &by_remote.url, json!({"isLocal": false})).await;

    let plain = mep.register("app-1", &service_body("plain")).await;
    let wanted = mep.register("app-1", &service_body("wanted")).await;
    let mut categorized = service_body("categorized");
    categorized["serCategory"] = category.clone();
    let categorized = mep.register("app-1", &categorized).await;
    let mut inactive = service_body("sleepy");
    inactive["state"] = json!("INACTIVE");
    let inactive = mep.register("app-1", &inactive).await;
    // isLocal is read-only: every service registered here is local, so the isLocal=false
    // subscription hears of none of them.
    let mut remote = service_body("remote");
    remote["isLocal"] = json!(false);
    let remote = mep.register("app-1", &remote).await;
    assert_eq!(remote["isLocal"], true);

    let first = |n: Value| n["serviceReferences"][0]["serInstanceId"].clone();
    assert_eq!(first(by_name.next().await), wanted["serInstanceId"]);
    assert_eq!(
        first(by_category.next().await),
        categorized["serInstanceId"]
    );
    assert_eq!(first(by_state.next().await), inactive["serInstanceId"]);

    // serInstanceIds: subscribe to exactly one existing service.
    let mut by_id = CallbackReceiver::start().await;
    let id = plain["serInstanceId"].as_str().unwrap();
    subscribe(&mep, "s", &by_id.url, json!({"serInstanceIds": [id]})).await;
    let mut changed = service_body("plain");
    changed["version"] = json!("2");
    let r = mep
        .put(&format!("/applications/app-1/services/{id}"), &changed)
        .await;
    assert_eq!(r.status(), 200);
    assert_eq!(first(by_id.next().await), plain["serInstanceId"]);

    for rx in [
        &mut by_name,
        &mut by_category,
        &mut by_state,
        &mut by_remote,
        &mut by_id,
    ] {
        rx.assert_quiet(Duration::from_millis(200)).await;
    }
    mep.stop().await;
}

#[tokio::test]
async fn failed_deliveries_are_retried() {
    let dir = tempfile::tempdir().unwrap();
    let mep = TestMep::start(dir.path()).await;
    let mut rx = CallbackReceiver::start().await;
    subscribe(&mep, "s", &rx.url, Value::Null).await;
    rx.fail_next(2);
    mep.register("app-1", &service_body("rnis")).await;
    let n = rx.next().await;
    assert_eq!(n["serviceReferences"][0]["changeType"], "ADDED");
    assert_eq!(rx.attempts(), 3, "two refusals, then delivered");

    let metrics = mep.metrics_text().await;
    assert!(
        metrics.contains("mep_notifications_delivered_total 1"),
        "{metrics}"
    );
    assert!(
        metrics.contains("mep_notification_attempts_failed_total 2"),
        "{metrics}"
    );
    mep.stop().await;
}

/// A callback that accepts connections and never answers must not hold up the API.
#[tokio::test]
async fn a_dead_callback_never_slows_the_api() {
    let dir = tempfile::tempdir().unwrap();
    let mep = TestMep::start(dir.path()).await;
    let black_hole = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let hole = format!("http://{}/cb", black_hole.local_addr().unwrap());
    for _ in 0..5 {
        subscribe(&mep, "s", &hole, Value::Null).await;
    }
    let started = Instant::now();
    for i in 0..20 {
        mep.register("app-1", &service_body(&format!("svc-{i}")))
            .await;
    }
    // Each notification attempt waits 2 s for the black hole; were delivery on the request path,
    // 20 registrations times 5 subscribers would take minutes.
    assert!(
        started.elapsed() < Duration::from_secs(10),
        "{:?}",
        started.elapsed()
    );
    drop(black_hole);
    mep.stop().await;
}
