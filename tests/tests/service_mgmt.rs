//! Mp1 service management against the real HTTP server: registration, discovery, update,
//! deregistration, ownership, ETags and the error model.

use mep_tests::{assert_problem, service_body, TestMep};
use serde_json::{json, Value};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

async fn mep() -> (TestMep, tempfile::TempDir) {
    let dir = tempfile::tempdir().unwrap();
    (TestMep::start(dir.path()).await, dir)
}

#[tokio::test]
async fn registration_answers_201_with_a_location_that_dereferences() {
    let (mep, _dir) = mep().await;
    let mut body = service_body("rnis");
    body["serInstanceId"] = json!("chosen-by-client");
    body["_links"] = json!({"self": {"href": "http://elsewhere/"}});
    let r = mep.post("/applications/app-1/services", &body).await;
    assert_eq!(r.status(), 201);
    let location = r.headers()["location"].to_str().unwrap().to_owned();
    let etag = r.headers()["etag"].to_str().unwrap().to_owned();
    let created: Value = r.json().await.unwrap();
    let id = created["serInstanceId"].as_str().unwrap();
    assert_ne!(id, "chosen-by-client", "serInstanceId in a POST is ignored");
    assert_eq!(id.len(), 36, "platform ids are UUIDs");
    assert_eq!(created["_links"]["self"]["href"], location);
    assert_eq!(created["transportInfo"], body["transportInfo"]);
    assert_eq!(created["isLocal"], true);
    assert_eq!(created["consumedLocalOnly"], true);
    assert_eq!(created["scopeOfLocality"], "MEC_HOST");
    assert!(created.get("livenessInterval").is_none());
    assert!(created["_links"].get("liveness").is_none());

    let fetched = mep.http.get(&location).send().await.unwrap();
    assert_eq!(fetched.status(), 200);
    assert_eq!(fetched.headers()["etag"].to_str().unwrap(), etag);
    assert_eq!(fetched.json::<Value>().await.unwrap(), created);

    let global = mep.get(&format!("/services/{id}")).await;
    assert_eq!(global.status(), 200);
    assert_eq!(global.headers()["etag"].to_str().unwrap(), etag);
    assert_eq!(global.json::<Value>().await.unwrap(), created);
    mep.stop().await;
}

#[tokio::test]
async fn exactly_one_of_transport_id_and_transport_info() {
    let (mep, _dir) = mep().await;
    let transports: Value = mep.get("/transports").await.json().await.unwrap();
    let platform = transports[0].clone();
    assert_eq!(platform["type"], "REST_HTTP");
    let transport_id = platform["id"].as_str().unwrap();

    let mut by_id = service_body("by-id");
    by_id.as_object_mut().unwrap().remove("transportInfo");
    by_id["transportId"] = json!(transport_id);
    let created = mep.register("app-1", &by_id).await;
    assert_eq!(
        created["transportInfo"], platform,
        "transportId resolves to transportInfo"
    );
    assert!(created.get("transportId").is_none());

    by_id["transportId"] = json!("no-such-transport");
    let r = mep.post("/applications/app-1/services", &by_id).await;
    assert!(assert_problem(r, 400).await["detail"]
        .as_str()
        .unwrap()
        .contains("transportId"));

    let mut both = service_body("both");
    both["transportId"] = json!(transport_id);
    assert_problem(mep.post("/applications/app-1/services", &both).await, 400).await;

    let mut neither = service_body("neither");
    neither.as_object_mut().unwrap().remove("transportInfo");
    assert_problem(
        mep.post("/applications/app-1/services", &neither).await,
        400,
    )
    .await;
    mep.stop().await;
}

#[tokio::test]
async fn bad_bodies_are_400_413_415() {
    let (mep, _dir) = mep().await;
    let url = mep.url("/applications/app-1/services");
    let send = |body: String, content_type: &'static str| {
        mep.http
            .post(&url)
            .header("content-type", content_type)
            .body(body)
            .send()
    };
    assert_problem(
        send("{not json".into(), "application/json").await.unwrap(),
        400,
    )
    .await;
    let mut wrong_type = service_body("x");
    wrong_type["version"] = json!(2);
    assert_problem(
        send(wrong_type.to_string(), "application/json")
            .await
            .unwrap(),
        400,
    )
    .await;
    let mut bad_enum = service_body("x");
    bad_enum["serializer"] = json!("YAML");
    let p = assert_problem(
        send(bad_enum.to_string(), "application/json")
            .await
            .unwrap(),
        400,
    )
    .await;
    assert!(p["detail"].as_str().unwrap().contains("YAML"));
    let mut missing = service_body("x");
    missing.as_object_mut().unwrap().remove("serName");
    let p = assert_problem(
        send(missing.to_string(), "application/json").await.unwrap(),
        400,
    )
    .await;
    assert!(p["detail"].as_str().unwrap().contains("serName"));
    let mut suspended = service_body("x");
    suspended["state"] = json!("SUSPENDED");
    assert_problem(
        send(suspended.to_string(), "application/json")
            .await
            .unwrap(),
        400,
    )
    .await;
    let mut bad_uri = service_body("x");
    bad_uri["transportInfo"]["endpoint"] = json!({"uris": [""]});
    assert_problem(
        send(bad_uri.to_string(), "application/json").await.unwrap(),
        400,
    )
    .await;

    let huge = json!({"serName": "x".repeat(100_000)}).to_string();
    assert_problem(send(huge, "application/json").await.unwrap(), 413).await;
    assert_problem(
        send(service_body("x").to_string(), "text/plain")
            .await
            .unwrap(),
        415,
    )
    .await;

    let r = mep
        .get(&format!("/services?ser_name={}", "a".repeat(9000)))
        .await;
    assert_problem(r, 414).await;
    assert_problem(mep.put("/services", &json!({})).await, 405).await;
    assert_problem(mep.get("/no/such/resource").await, 404).await;
    assert_problem(mep.get("/applications/bad%20id/services").await, 400).await;

    let listed: Value = mep.get("/services").await.json().await.unwrap();
    assert_eq!(listed, json!([]), "nothing was registered by bad requests");
    mep.stop().await;
}

#[tokio::test]
async fn discovery_filters_combine_with_and() {
    let (mep, _dir) = mep().await;
    let category = |id: &str| json!({"href": format!("http://cat.example/{id}"), "id": id, "name": id.to_uppercase(), "version": "1"});
    let mut a = service_body("rnis");
    a["serCategory"] = category("rni");
    let a = mep.register("app-1", &a).await;
    let mut b = service_body("rnis");
    b["serCategory"] = category("rni");
    b["consumedLocalOnly"] = json!(false);
    b["scopeOfLocality"] = json!("MEC_SYSTEM");
    let b = mep.register("app-2", &b).await;
    let mut c = service_body("location");
    c["serCategory"] = category("loc");
    // isLocal is read-only: every service registered here runs on this host.
    c["isLocal"] = json!(false);
    let c = mep.register("app-2", &c).await;
    assert_eq!(c["isLocal"], true);
    let id = |v: &Value| v["serInstanceId"].as_str().unwrap().to_owned();
    let ids = |v: Value| {
        let mut ids: Vec<String> = v.as_array().unwrap().iter().map(id).collect();
        ids.sort();
        ids
    };
    let sorted = |mut v: Vec<String>| {
        v.sort();
        v
    };
    let q = |query: String| {
        let mep = &mep;
        async move {
            let r = mep.get(&format!("/services{query}")).await;
            assert_eq!(r.status(), 200, "{query}");
            ids(r.json().await.unwrap())
        }
    };
    assert_eq!(q(String::new()).await, sorted(vec![id(&a), id(&b), id(&c)]));
    assert_eq!(
        q("?ser_name=rnis".into()).await,
        sorted(vec![id(&a), id(&b)])
    );
    assert_eq!(
        q("?ser_name=rnis&ser_name=location".into()).await,
        sorted(vec![id(&a), id(&b), id(&c)])
    );
    assert_eq!(q("?ser_name=rnis,location".into()).await.len(), 3);
    assert_eq!(
        q(format!("?ser_instance_id={}", id(&c))).await,
        vec![id(&c)]
    );
    assert_eq!(
        q(format!(
            "?ser_instance_id={}&ser_instance_id={}",
            id(&a),
            id(&c)
        ))
        .await,
        sorted(vec![id(&a), id(&c)])
    );
    assert_eq!(q("?ser_category_id=loc".into()).await, vec![id(&c)]);
    assert_eq!(q("?consumed_local_only=false".into()).await, vec![id(&b)]);
    assert_eq!(q("?is_local=false".into()).await, Vec::<String>::new());
    assert_eq!(q("?is_local=true".into()).await.len(), 3);
    assert_eq!(
        q("?scope_of_locality=MEC_SYSTEM".into()).await,
        vec![id(&b)]
    );
    assert_eq!(
        q("?ser_name=rnis&consumed_local_only=true".into()).await,
        vec![id(&a)]
    );
    assert_eq!(
        q("?ser_category_id=rni&scope_of_locality=MEC_HOST&is_local=true".into()).await,
        vec![id(&a)]
    );
    assert_eq!(q("?ser_name=nothing".into()).await, Vec::<String>::new());

    for bad in [
        "?ser_name=rnis&ser_category_id=rni",
        "?ser_instance_id=x&ser_name=rnis",
        "?colour=blue",
        "?is_local=yes",
        "?scope_of_locality=GALAXY",
    ] {
        assert_problem(mep.get(&format!("/services{bad}")).await, 400).await;
    }

    let r = mep.get("/applications/app-2/services").await;
    assert_eq!(ids(r.json().await.unwrap()), sorted(vec![id(&b), id(&c)]));
    let r = mep
        .get("/applications/app-2/services?ser_name=location")
        .await;
    assert_eq!(ids(r.json().await.unwrap()), vec![id(&c)]);
    assert_problem(mep.get("/applications/app-3/services").await, 404).await;
    let r = mep
        .get(&format!("/applications/app-1/services/{}", id(&b)))
        .await;
    assert_problem(r, 404).await;
    mep.stop().await;
}

#[tokio::test]
async fn put_replaces_and_honours_if_match() {
    let (mep, _dir) = mep().await;
    let created = mep.register("app-1", &service_body("rnis")).await;
    let id = created["serInstanceId"].as_str().unwrap();
    let path = format!("/applications/app-1/services/{id}");
    let etag = mep.get(&path).await.headers()["etag"]
        .to_str()
        .unwrap()
        .to_owned();

    let mut replacement = created.clone();
    replacement["version"] = json!("3.0.0");
    replacement["state"] = json!("INACTIVE");
    let stale = mep
        .http
        .put(mep.url(&path))
        .header("if-match", "\"not-the-etag\"")
        .json(&replacement)
        .send()
        .await
        .unwrap();
    assert_problem(stale, 412).await;

    let r = mep
        .http
        .put(mep.url(&path))
        .header("if-match", &etag)
        .json(&replacement)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let new_etag = r.headers()["etag"].to_str().unwrap().to_owned();
    assert_ne!(new_etag, etag);
    let updated: Value = r.json().await.unwrap();
    assert_eq!(updated["version"], "3.0.0");
    assert_eq!(updated["state"], "INACTIVE");
    assert_eq!(updated["serInstanceId"], id);
    assert_eq!(mep.get(&path).await.json::<Value>().await.unwrap(), updated);

    let reused = mep
        .http
        .put(mep.url(&path))
        .header("if-match", &etag)
        .json(&replacement)
        .send()
        .await
        .unwrap();
    assert_problem(reused, 412).await;

    // serInstanceId is read-only: the URI's id wins.
    let mut other_id = replacement.clone();
    other_id["serInstanceId"] = json!("another");
    other_id["version"] = json!("3.0.1");
    let r = mep.put(&path, &other_id).await;
    assert_eq!(r.status(), 200);
    assert_eq!(r.json::<Value>().await.unwrap()["serInstanceId"], id);
    assert_problem(
        mep.put("/applications/app-1/services/unknown", &service_body("x"))
            .await,
        404,
    )
    .await;

    let r = mep
        .http
        .get(mep.url(&path))
        .header("if-match", "\"whatever\"")
        .send()
        .await
        .unwrap();
    assert_eq!(
        r.status(),
        200,
        "If-Match is evaluated on PUT and PATCH only"
    );
    mep.stop().await;
}

#[tokio::test]
async fn only_the_owner_may_update_or_delete() {
    let (mep, _dir) = mep().await;
    let created = mep.register("app-1", &service_body("rnis")).await;
    let id = created["serInstanceId"].as_str().unwrap();
    let foreign = format!("/applications/app-2/services/{id}");
    assert_problem(mep.put(&foreign, &service_body("stolen")).await, 404).await;
    mep.register("app-2", &service_body("own")).await;
    assert_problem(mep.put(&foreign, &service_body("stolen")).await, 403).await;
    assert_problem(mep.delete(&foreign).await, 403).await;
    assert_eq!(
        mep.get(&format!("/services/{id}"))
            .await
            .json::<Value>()
            .await
            .unwrap(),
        created
    );

    let own = format!("/applications/app-1/services/{id}");
    let r = mep.delete(&own).await;
    assert_eq!(r.status(), 204);
    assert!(r.bytes().await.unwrap().is_empty());
    assert_problem(mep.get(&own).await, 404).await;
    assert_problem(mep.get(&format!("/services/{id}")).await, 404).await;
    assert_problem(mep.delete(&own).await, 404).await;
    mep.stop().await;
}

#[tokio::test]
async fn quota_per_app_is_enforced() {
    let dir = tempfile::tempdir().unwrap();
    let mut config = mep_tests::test_config(dir.path());
    config.limits.services_per_app = 2;
    let mep = TestMep::start_with(config).await;
    mep.register("app-1", &service_body("a")).await;
    mep.register("app-1", &service_body("b")).await;
    let r = mep
        .post("/applications/app-1/services", &service_body("c"))
        .await;
    assert_problem(r, 403).await;
    mep.register("app-2", &service_body("c")).await;
    mep.stop().await;
}

/// Harnesses that read headers case-sensitively need the exact spellings on the wire.
#[tokio::test]
async fn http1_header_names_are_spelled_exactly() {
    let (mep, _dir) = mep().await;
    let body = service_body("rnis").to_string();
    let addr = mep.mp1.trim_start_matches("http://").to_owned();
    let mut stream = tokio::net::TcpStream::connect(&addr).await.unwrap();
    let request = format!(
        "POST /mep/mec_service_mgmt/v1/applications/app-1/services HTTP/1.1\r\nhost: {addr}\r\ncontent-type: application/json\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{body}",
        body.len()
    );
    stream.write_all(request.as_bytes()).await.unwrap();
    let mut response = String::new();
    stream.read_to_string(&mut response).await.unwrap();
    let head = response.split("\r\n\r\n").next().unwrap();
    assert!(head.starts_with("HTTP/1.1 201"), "{head}");
    for name in [
        "\r\nContent-Type: ",
        "\r\nLocation: ",
        "\r\nETag: ",
        "\r\nContent-Length: ",
    ] {
        assert!(head.contains(name), "{name:?} missing in {head}");
    }
    mep.stop().await;
}
