//! Per-app authorization over every Mp1 route (a token is needed, app routes need the app's
//! own), discovery restricted to required services, and the callback allow list.

use mep_api::auth::CallbackPolicy;
use mep_tests::auth::*;
use mep_tests::{assert_problem, service_body, test_config, TestMep, APP_SUPPORT, SERVICE_MGMT};
use reqwest::Method;
use serde_json::{json, Value};

use mep_tests::apps::{AK_A, AK_B, APP_A, APP_B, SK_A, SK_B};

/// One Mp1 route: method, path, body, and whether it acts for one application instance.
struct Route {
    method: Method,
    path: String,
    body: Option<Value>,
    app_scoped: bool,
}

fn route(method: Method, path: String, body: Option<Value>, app_scoped: bool) -> Route {
    Route {
        method,
        path,
        body,
        app_scoped,
    }
}

/// Every Mp1 route, with ids of real resources of `APP_A`.
fn all_routes(service: &str, subscription: &str) -> Vec<Route> {
    let sm = |p: &str| format!("{SERVICE_MGMT}{p}");
    let a = format!("/applications/{APP_A}");
    let sub_body = json!({"subscriptionType": "SerAvailabilityNotificationSubscription",
                          "callbackReference": "http://127.0.0.1:9/notify"});
    let liveness = json!({"state": "ACTIVE"});
    let mut routes = vec![
        route(Method::GET, sm("/services"), None, false),
        route(
            Method::GET,
            sm(&format!("/services/{service}")),
            None,
            false,
        ),
        route(Method::GET, sm("/transports"), None, false),
        route(Method::GET, sm(&format!("{a}/services")), None, true),
        route(
            Method::POST,
            sm(&format!("{a}/services")),
            Some(service_body("new")),
            true,
        ),
        route(
            Method::GET,
            sm(&format!("{a}/services/{service}")),
            None,
            true,
        ),
        route(
            Method::PUT,
            sm(&format!("{a}/services/{service}")),
            Some(service_body("svc")),
            true,
        ),
        route(
            Method::DELETE,
            sm(&format!("{a}/services/{service}")),
            None,
            true,
        ),
        route(
            Method::GET,
            sm(&format!("{a}/services/{service}/liveness")),
            None,
            true,
        ),
        route(
            Method::PATCH,
            sm(&format!("{a}/services/{service}/liveness")),
            Some(liveness.clone()),
            true,
        ),
        route(
            Method::PUT,
            sm(&format!("{a}/services/{service}/liveness")),
            Some(liveness),
            true,
        ),
        route(Method::GET, sm(&format!("{a}/subscriptions")), None, true),
        route(
            Method::POST,
            sm(&format!("{a}/subscriptions")),
            Some(sub_body),
            true,
        ),
        route(
            Method::GET,
            sm(&format!("{a}/subscriptions/{subscription}")),
            None,
            true,
        ),
        route(
            Method::DELETE,
            sm(&format!("{a}/subscriptions/{subscription}")),
            None,
            true,
        ),
    ];
    for version in [APP_SUPPORT.to_owned(), APP_SUPPORT.replace("/v1", "/v2")] {
        let s = |p: &str| format!("{version}{p}");
        let term = json!({"subscriptionType": "AppTerminationNotificationSubscription",
                          "callbackReference": "http://127.0.0.1:9/notify", "appInstanceId": APP_A});
        routes.extend([
            route(Method::GET, s(&format!("{a}/traffic_rules")), None, true),
            route(
                Method::GET,
                s(&format!("{a}/traffic_rules/tr-1")),
                None,
                true,
            ),
            route(
                Method::PUT,
                s(&format!("{a}/traffic_rules/tr-1")),
                Some(json!({})),
                true,
            ),
            route(Method::GET, s(&format!("{a}/dns_rules")), None, true),
            route(Method::GET, s(&format!("{a}/dns_rules/dns-1")), None, true),
            route(
                Method::PUT,
                s(&format!("{a}/dns_rules/dns-1")),
                Some(json!({})),
                true,
            ),
            route(Method::GET, s(&format!("{a}/subscriptions")), None, true),
            route(
                Method::POST,
                s(&format!("{a}/subscriptions")),
                Some(term),
                true,
            ),
            route(
                Method::GET,
                s(&format!("{a}/subscriptions/sub-1")),
                None,
                true,
            ),
            route(
                Method::DELETE,
                s(&format!("{a}/subscriptions/sub-1")),
                None,
                true,
            ),
            route(
                Method::POST,
                s(&format!("{a}/confirm_termination")),
                Some(json!({"operationAction": "TERMINATING"})),
                true,
            ),
            route(
                Method::POST,
                s(&format!("{a}/confirm_ready")),
                Some(json!({"indication": "READY"})),
                true,
            ),
            route(Method::GET, s("/timing/timing_caps"), None, false),
            route(Method::GET, s("/timing/current_time"), None, false),
            route(
                Method::POST,
                s("/registrations"),
                Some(json!({"appInstanceId": APP_A})),
                true,
            ),
            route(
                Method::GET,
                s(&format!("/registrations/{APP_A}")),
                None,
                true,
            ),
            route(
                Method::PUT,
                s(&format!("/registrations/{APP_A}")),
                Some(json!({"appInstanceId": APP_A})),
                true,
            ),
            route(
                Method::DELETE,
                s(&format!("/registrations/{APP_A}")),
                None,
                true,
            ),
        ]);
    }
    routes
}

#[tokio::test]
async fn every_mp1_route_needs_a_token_and_app_routes_need_the_apps_own() {
    let dir = tempfile::tempdir().unwrap();
    let mep = start_with_auth(dir.path()).await;
    provision(&mep, APP_A, AK_A, SK_A, &[]).await;
    provision(&mep, APP_B, AK_B, SK_B, &[]).await;
    let token_a = token(&mep, AK_A, SK_A).await;
    let token_b = token(&mep, AK_B, SK_B).await;
    let r = send(
        &mep,
        Method::POST,
        &mep.url(&format!("/applications/{APP_A}/services")),
        Some(&token_a),
        Some(&service_body("svc")),
    )
    .await;
    assert_eq!(r.status(), 201);
    let service = r.json::<Value>().await.unwrap()["serInstanceId"]
        .as_str()
        .unwrap()
        .to_owned();
    let r = send(
        &mep,
        Method::POST,
        &mep.url(&format!("/applications/{APP_A}/subscriptions")),
        Some(&token_a),
        Some(
            &json!({"subscriptionType": "SerAvailabilityNotificationSubscription",
                     "callbackReference": "http://127.0.0.1:9/notify"}),
        ),
    )
    .await;
    assert_eq!(r.status(), 201);
    let location = r.headers()["location"].to_str().unwrap().to_owned();
    let subscription = location.rsplit('/').next().unwrap().to_owned();

    let routes = all_routes(&service, &subscription);
    assert!(routes.len() >= 50, "{} routes", routes.len());
    for (i, rt) in routes.iter().enumerate() {
        let url = format!("{}{}", mep.mp1, rt.path);
        let what = format!("{} {}", rt.method, rt.path);

        let r = send(&mep, rt.method.clone(), &url, None, rt.body.as_ref()).await;
        assert_eq!(r.status(), 401, "no token: {what}");
        assert_eq!(challenge(&r), "Bearer realm=\"mep\"", "{what}");
        assert_problem(r, 401).await;

        let bad = format!("{token_a}x");
        let r = send(&mep, rt.method.clone(), &url, Some(&bad), rt.body.as_ref()).await;
        assert_eq!(r.status(), 401, "bad token: {what}");
        assert!(challenge(&r).contains("error=\"invalid_token\""), "{what}");

        let garbage = send(
            &mep,
            rt.method.clone(),
            &url,
            Some("garbage"),
            rt.body.as_ref(),
        )
        .await;
        assert_eq!(garbage.status(), 401, "garbage token: {what}");

        let r = send(
            &mep,
            rt.method.clone(),
            &url,
            Some(&token_b),
            rt.body.as_ref(),
        )
        .await;
        if rt.app_scoped {
            assert_problem(r, 403).await;
        } else {
            assert!(
                r.status().is_success(),
                "another app's token is fine on {what}: {}",
                r.status()
            );
        }
        // The owner gets past authentication (whatever the resource then says).
        if i < 3 || rt.method == Method::GET {
            let r = send(
                &mep,
                rt.method.clone(),
                &url,
                Some(&token_a),
                rt.body.as_ref(),
            )
            .await;
            assert!(
                ![401, 403].contains(&r.status().as_u16()),
                "owner refused on {what}: {}",
                r.status()
            );
        }
    }
    // The token endpoint and the JWKS need no token.
    let r = send(
        &mep,
        Method::GET,
        &format!("{}/mep/token/jwks", mep.mp1),
        None,
        None,
    )
    .await;
    assert_eq!(r.status(), 200);
    mep.stop().await;
}

#[tokio::test]
async fn discovery_can_be_restricted_to_required_services() {
    let dir = tempfile::tempdir().unwrap();
    let mut config = test_config(dir.path());
    config.auth.enabled = true;
    config.auth.restrict_discovery = true;
    let mep = TestMep::start_with(config).await;
    provision(&mep, APP_A, AK_A, SK_A, &["rnis"]).await;
    provision(&mep, APP_B, AK_B, SK_B, &["*"]).await;
    let (a, b) = (token(&mep, AK_A, SK_A).await, token(&mep, AK_B, SK_B).await);
    for name in ["rnis", "bwm"] {
        let r = send(
            &mep,
            Method::POST,
            &mep.url(&format!("/applications/{APP_B}/services")),
            Some(&b),
            Some(&service_body(name)),
        )
        .await;
        assert_eq!(r.status(), 201);
    }
    let names = |v: Value| -> Vec<String> {
        let mut n: Vec<String> = v
            .as_array()
            .unwrap()
            .iter()
            .map(|s| s["serName"].as_str().unwrap().to_owned())
            .collect();
        n.sort();
        n
    };
    let seen_by_a = send(&mep, Method::GET, &mep.url("/services"), Some(&a), None).await;
    assert_eq!(names(seen_by_a.json().await.unwrap()), ["rnis"]);
    let filtered = send(
        &mep,
        Method::GET,
        &mep.url("/services?ser_name=bwm"),
        Some(&a),
        None,
    )
    .await;
    assert_eq!(filtered.json::<Value>().await.unwrap(), json!([]));
    let seen_by_b = send(&mep, Method::GET, &mep.url("/services"), Some(&b), None).await;
    assert_eq!(names(seen_by_b.json().await.unwrap()), ["bwm", "rnis"]);
    mep.stop().await;
}

#[tokio::test]
async fn callbacks_outside_the_operators_allow_list_are_refused() {
    let dir = tempfile::tempdir().unwrap();
    let mut config = test_config(dir.path());
    config.callback_allow = CallbackPolicy::parse(&["127.0.0.0/8", "*.apps.example"]).unwrap();
    let mep = TestMep::start_with(config).await;
    let subscription = |callback: &str| json!({"subscriptionType": "SerAvailabilityNotificationSubscription", "callbackReference": callback});
    let path = format!("/applications/{APP_A}/subscriptions");
    let r = mep
        .post(&path, &subscription("http://169.254.169.254/latest"))
        .await;
    let problem = assert_problem(r, 400).await;
    assert!(problem["detail"].as_str().unwrap().contains("allow-list"));
    assert_problem(
        mep.post(&path, &subscription("http://internal.example/x"))
            .await,
        400,
    )
    .await;
    assert_eq!(
        mep.post(&path, &subscription("http://127.0.0.1:9/n"))
            .await
            .status(),
        201
    );
    assert_eq!(
        mep.post(&path, &subscription("https://n.apps.example/n"))
            .await
            .status(),
        201
    );

    let termination = json!({"subscriptionType": "AppTerminationNotificationSubscription",
                             "callbackReference": "http://10.0.0.1/n", "appInstanceId": APP_A});
    let r = mep
        .send_json(Method::POST, mep.app_support(&path), &termination)
        .await;
    assert_problem(r, 400).await;
    mep.stop().await;
}
