//! Tokens and per-app authorization on Mp1: credentials provisioned over Mm5, `POST /mep/token` by
//! OAuth 2.0 client credentials and by EdgeGallery's signed request (checked here against an
//! independent HMAC-SHA256 implementation of the canonical request), the lockout, forged and
//! expired tokens, revocation, key rotation, and a matrix over every Mp1 route.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use base64::engine::general_purpose::URL_SAFE_NO_PAD as B64URL;
use base64::Engine as _;
use hmac::{Hmac, Mac};
use mep_api::auth::CallbackPolicy;
use mep_tests::{assert_problem, service_body, test_config, TestMep, APP_SUPPORT, SERVICE_MGMT};
use reqwest::Method;
use serde_json::{json, Value};
use sha2::{Digest, Sha256};

use mep_tests::apps::{AK_A, AK_B, APP_A, APP_B, SK_A, SK_B};

async fn start_with_auth(dir: &std::path::Path) -> TestMep {
    let mut config = test_config(dir);
    config.auth.enabled = true;
    TestMep::start_with(config).await
}

fn confs(ak: &str, sk: &str, required: &[&str]) -> Value {
    mep_tests::confs_body(ak, sk, required)
}

fn confs_url(mep: &TestMep, app: &str) -> String {
    mep.mm5_url(&format!("/mep/appMng/v1/applications/{app}/confs"))
}

async fn provision(mep: &TestMep, app: &str, ak: &str, sk: &str, required: &[&str]) {
    mep.provision(app, ak, sk, required).await
}

fn token_url(mep: &TestMep) -> String {
    mep.token_url()
}

async fn basic_token_response(mep: &TestMep, ak: &str, sk: &str) -> reqwest::Response {
    mep.http
        .post(token_url(mep))
        .basic_auth(ak, Some(sk))
        .form(&[("grant_type", "client_credentials")])
        .send()
        .await
        .unwrap()
}

async fn token(mep: &TestMep, ak: &str, sk: &str) -> String {
    mep.token(ak, sk).await
}

fn claims_of(token: &str) -> (Value, Value) {
    let mut parts = token.split('.');
    let header = B64URL.decode(parts.next().unwrap()).unwrap();
    let claims = B64URL.decode(parts.next().unwrap()).unwrap();
    (
        serde_json::from_slice(&header).unwrap(),
        serde_json::from_slice(&claims).unwrap(),
    )
}

async fn send(
    mep: &TestMep,
    method: Method,
    url: &str,
    token: Option<&str>,
    body: Option<&Value>,
) -> reqwest::Response {
    let mut request = mep.http.request(method, url);
    if let Some(token) = token {
        request = request.bearer_auth(token);
    }
    if let Some(body) = body {
        request = request.json(body);
    }
    request.send().await.unwrap()
}

fn challenge(r: &reqwest::Response) -> String {
    r.headers()
        .get("www-authenticate")
        .map(|v| v.to_str().unwrap().to_owned())
        .unwrap_or_default()
}

// ---- an independent implementation of EdgeGallery's AK/SK signature ----

/// `YYYYMMDDTHHMMSSZ` of `t`.
fn sdk_date(t: SystemTime) -> String {
    let secs = t.duration_since(UNIX_EPOCH).unwrap().as_secs() as i64;
    let (days, rem) = (secs.div_euclid(86_400), secs.rem_euclid(86_400));
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    format!(
        "{year:04}{month:02}{day:02}T{:02}{:02}{:02}Z",
        rem / 3600,
        rem % 3600 / 60,
        rem % 60
    )
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// The Authorization header mep-agent sends for `POST /mep/token` to `host` at `date`, signing
/// `content-type;host;x-sdk-date` over an empty body.
fn sdk_authorization(ak: &str, sk: &str, host: &str, date: &str) -> String {
    let empty_body = hex(&Sha256::digest(b""));
    let canonical = format!(
        "POST\n/mep/token/\n\ncontent-type:application/json\nhost:{host}\nx-sdk-date:{date}\n\ncontent-type;host;x-sdk-date\n{empty_body}"
    );
    let string_to_sign = format!(
        "SDK-HMAC-SHA256\n{date}\n{}",
        hex(&Sha256::digest(canonical.as_bytes()))
    );
    let mut mac = Hmac::<Sha256>::new_from_slice(sk.as_bytes()).unwrap();
    mac.update(string_to_sign.as_bytes());
    let signature = hex(&mac.finalize().into_bytes());
    format!(
        "SDK-HMAC-SHA256 Access={ak}, SignedHeaders=content-type;host;x-sdk-date, Signature={signature}"
    )
}

async fn signed_token_request(mep: &TestMep, authorization: &str, date: &str) -> reqwest::Response {
    mep.http
        .post(token_url(mep))
        .header("content-type", "application/json")
        .header("x-sdk-date", date)
        .header("authorization", authorization)
        .send()
        .await
        .unwrap()
}

fn mp1_host(mep: &TestMep) -> String {
    mep.mep.mp1_addr.to_string()
}

// ---- tests ----

#[tokio::test]
async fn client_credentials_issue_tokens_by_basic_and_form() {
    let dir = tempfile::tempdir().unwrap();
    let mep = start_with_auth(dir.path()).await;
    provision(&mep, APP_A, AK_A, SK_A, &[]).await;

    let r = basic_token_response(&mep, AK_A, SK_A).await;
    assert_eq!(r.status(), 200);
    assert_eq!(r.headers()["cache-control"], "no-store");
    assert_eq!(r.headers()["content-type"], "application/json");
    let body: Value = r.json().await.unwrap();
    assert_eq!(body["token_type"], "Bearer");
    assert_eq!(body["expires_in"], 3600);
    let basic_token = body["access_token"].as_str().unwrap().to_owned();
    let (header, claims) = claims_of(&basic_token);
    assert_eq!(header["alg"], "ES256");
    assert_eq!(claims["sub"], APP_A);
    assert_eq!(claims["iss"], "mep");
    assert_eq!(
        claims["exp"].as_u64().unwrap() - claims["iat"].as_u64().unwrap(),
        3600
    );
    let jwks: Value = mep.json_at(format!("{}/mep/token/jwks", mep.mp1)).await;
    assert!(jwks["keys"]
        .as_array()
        .unwrap()
        .iter()
        .any(|k| k["kid"] == header["kid"] && k["kty"] == "EC" && k["crv"] == "P-256"));

    // Secrets with '+', '/' and '=' work raw (curl -u) and form-encoded (RFC 6749 2.3.1).
    provision(&mep, APP_B, AK_B, SK_B, &[]).await;
    let r = mep
        .http
        .post(token_url(&mep))
        .form(&[
            ("grant_type", "client_credentials"),
            ("client_id", AK_B),
            ("client_secret", SK_B),
        ])
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let form_token = r.json::<Value>().await.unwrap()["access_token"]
        .as_str()
        .unwrap()
        .to_owned();
    assert_eq!(claims_of(&form_token).1["sub"], APP_B);
    let encoded: String = url_encode(SK_B);
    assert_eq!(
        basic_token_response(&mep, AK_B, &encoded).await.status(),
        200
    );

    let r = send(
        &mep,
        Method::GET,
        &mep.url("/services"),
        Some(&basic_token),
        None,
    )
    .await;
    assert_eq!(r.status(), 200);
    mep.stop().await;
}

fn url_encode(s: &str) -> String {
    s.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => {
                (b as char).to_string()
            }
            _ => format!("%{b:02X}"),
        })
        .collect()
}

#[tokio::test]
async fn token_endpoint_errors_follow_rfc_6749() {
    let dir = tempfile::tempdir().unwrap();
    let mep = start_with_auth(dir.path()).await;
    provision(&mep, APP_A, AK_A, SK_A, &[]).await;
    let post = || mep.http.post(token_url(&mep));
    let error_of = |r: reqwest::Response| async move {
        let status = r.status().as_u16();
        let www = challenge(&r);
        let no_store = r.headers().get("cache-control").cloned();
        let body: Value = r.json().await.unwrap();
        assert_eq!(no_store.unwrap(), "no-store");
        (status, body["error"].as_str().unwrap().to_owned(), www)
    };

    let unknown = post()
        .basic_auth("cccccccccccccccccccc", Some(SK_A))
        .form(&[("grant_type", "client_credentials")])
        .send()
        .await
        .unwrap();
    let (status, error, www) = error_of(unknown).await;
    assert_eq!((status, error.as_str()), (401, "invalid_client"));
    assert!(www.starts_with("Basic"), "{www}");

    let none = post()
        .form(&[("grant_type", "client_credentials")])
        .send()
        .await
        .unwrap();
    assert_eq!(error_of(none).await.1, "invalid_client");

    let missing_grant = post()
        .basic_auth(AK_A, Some(SK_A))
        .form(&[("scope", "")])
        .send()
        .await
        .unwrap();
    assert_eq!(error_of(missing_grant).await.0, 400);

    let password = post()
        .basic_auth(AK_A, Some(SK_A))
        .form(&[("grant_type", "password")])
        .send()
        .await
        .unwrap();
    assert_eq!(
        error_of(password).await,
        (400, "unsupported_grant_type".into(), String::new())
    );

    let scoped = post()
        .basic_auth(AK_A, Some(SK_A))
        .form(&[("grant_type", "client_credentials"), ("scope", "admin")])
        .send()
        .await
        .unwrap();
    assert_eq!(error_of(scoped).await.1, "invalid_scope");

    let json_body = post()
        .basic_auth(AK_A, Some(SK_A))
        .json(&json!({"grant_type": "client_credentials"}))
        .send()
        .await
        .unwrap();
    assert_eq!(error_of(json_body).await.1, "invalid_request");

    let both = post()
        .basic_auth(AK_A, Some(SK_A))
        .form(&[
            ("grant_type", "client_credentials"),
            ("client_id", AK_A),
            ("client_secret", SK_A),
        ])
        .send()
        .await
        .unwrap();
    assert_eq!(error_of(both).await.1, "invalid_request");

    let repeated = post()
        .basic_auth(AK_A, Some(SK_A))
        .header("content-type", "application/x-www-form-urlencoded")
        .body("grant_type=client_credentials&grant_type=client_credentials")
        .send()
        .await
        .unwrap();
    assert_eq!(error_of(repeated).await.1, "invalid_request");
    mep.stop().await;
}

#[tokio::test]
async fn signed_requests_match_an_independent_hmac_and_replays_are_refused() {
    let dir = tempfile::tempdir().unwrap();
    let mep = start_with_auth(dir.path()).await;
    provision(&mep, APP_A, AK_A, SK_A, &[]).await;
    let host = mp1_host(&mep);

    let now = sdk_date(SystemTime::now());
    let r = signed_token_request(&mep, &sdk_authorization(AK_A, SK_A, &host, &now), &now).await;
    assert_eq!(r.status(), 200);
    assert_eq!(r.headers()["cache-control"], "no-store");
    let body: Value = r.json().await.unwrap();
    assert_eq!(body["token_type"], "Bearer");
    let token = body["access_token"].as_str().unwrap();
    assert_eq!(claims_of(token).1["sub"], APP_A);
    let r = send(
        &mep,
        Method::GET,
        &mep.url(&format!("/applications/{APP_A}/services")),
        Some(token),
        None,
    )
    .await;
    assert_eq!(r.status(), 200);

    // The same signed request again is a replay, even within the skew window.
    let r = signed_token_request(&mep, &sdk_authorization(AK_A, SK_A, &host, &now), &now).await;
    assert_eq!(r.status(), 401);
    let body: Value = r.json().await.unwrap();
    assert!(
        body["error_description"]
            .as_str()
            .unwrap()
            .contains("already used"),
        "{body}"
    );

    // A correctly signed request captured ten minutes ago is a replay.
    let old = sdk_date(SystemTime::now() - Duration::from_secs(600));
    let r = signed_token_request(&mep, &sdk_authorization(AK_A, SK_A, &host, &old), &old).await;
    assert_eq!(r.status(), 401);
    assert!(challenge(&r).starts_with("SDK-HMAC-SHA256"));
    let body: Value = r.json().await.unwrap();
    assert_eq!(body["error"], "invalid_client");
    assert!(body["error_description"].as_str().unwrap().contains("skew"));
    // So is one signed in the future beyond the skew.
    let ahead = sdk_date(SystemTime::now() + Duration::from_secs(600));
    let r = signed_token_request(&mep, &sdk_authorization(AK_A, SK_A, &host, &ahead), &ahead).await;
    assert_eq!(r.status(), 401);

    // The wrong secret, or a signature for another host, does not verify.
    let wrong = sdk_authorization(AK_A, &SK_A.replace('D', "E"), &host, &now);
    assert_eq!(signed_token_request(&mep, &wrong, &now).await.status(), 401);
    let other_host = sdk_authorization(AK_A, SK_A, "mep.example:8443", &now);
    assert_eq!(
        signed_token_request(&mep, &other_host, &now).await.status(),
        401
    );
    // The date must be signed and well-formed.
    let unsigned_date = sdk_authorization(AK_A, SK_A, &host, &now)
        .replace("content-type;host;x-sdk-date", "content-type;host");
    assert_eq!(
        signed_token_request(&mep, &unsigned_date, &now)
            .await
            .status(),
        400
    );
    let garbled = "2024-01-01T00:00:00Z";
    assert_eq!(
        signed_token_request(
            &mep,
            &sdk_authorization(AK_A, SK_A, &host, garbled),
            garbled
        )
        .await
        .status(),
        400
    );
    mep.stop().await;
}

#[tokio::test]
async fn repeated_failures_lock_the_access_key_for_a_while() {
    let dir = tempfile::tempdir().unwrap();
    let mep = start_with_auth(dir.path()).await;
    provision(&mep, APP_A, AK_A, SK_A, &[]).await;
    provision(&mep, APP_B, AK_B, SK_B, &[]).await;
    let host = mp1_host(&mep);
    let now = sdk_date(SystemTime::now());

    assert_eq!(
        basic_token_response(&mep, AK_A, "wrong").await.status(),
        401
    );
    let bad_signature = sdk_authorization(AK_A, "wrong", &host, &now);
    assert_eq!(
        signed_token_request(&mep, &bad_signature, &now)
            .await
            .status(),
        401
    );
    let third = basic_token_response(&mep, AK_A, "wrong").await;
    assert_eq!(third.status(), 429, "the third failure in 5 minutes locks");

    // Now even the right secret and a valid signature are refused, with a clear message.
    let r = basic_token_response(&mep, AK_A, SK_A).await;
    assert_eq!(r.status(), 429);
    let retry_after: u64 = r.headers()["retry-after"]
        .to_str()
        .unwrap()
        .parse()
        .unwrap();
    assert!((1..=900).contains(&retry_after), "{retry_after}");
    let body: Value = r.json().await.unwrap();
    assert!(body["error_description"]
        .as_str()
        .unwrap()
        .contains("locked"));
    let good = sdk_authorization(AK_A, SK_A, &host, &now);
    assert_eq!(signed_token_request(&mep, &good, &now).await.status(), 429);
    // Other applications are not affected.
    assert_eq!(basic_token_response(&mep, AK_B, SK_B).await.status(), 200);

    // Concurrent failures of another key are all counted (no lost updates).
    let handles: Vec<_> = (0..6)
        .map(|_| {
            let (client, url) = (mep.http.clone(), token_url(&mep));
            tokio::spawn(async move {
                client
                    .post(url)
                    .basic_auth(AK_B, Some("wrong"))
                    .form(&[("grant_type", "client_credentials")])
                    .send()
                    .await
                    .unwrap()
                    .status()
                    .as_u16()
            })
        })
        .collect();
    let mut statuses = Vec::new();
    for h in handles {
        statuses.push(h.await.unwrap());
    }
    assert_eq!(
        statuses.iter().filter(|s| **s == 401).count(),
        2,
        "{statuses:?}"
    );
    assert_eq!(
        statuses.iter().filter(|s| **s == 429).count(),
        4,
        "{statuses:?}"
    );

    mep.clock.advance(Duration::from_secs(901));
    assert_eq!(basic_token_response(&mep, AK_A, SK_A).await.status(), 200);
    mep.stop().await;
}

/// An access key is no secret: whoever knows it may lock it, but only for themselves.
#[tokio::test]
async fn a_lock_holds_for_the_failing_source_only() {
    let dir = tempfile::tempdir().unwrap();
    let mep = start_with_auth(dir.path()).await;
    provision(&mep, APP_A, AK_A, SK_A, &[]).await;
    let attacker = reqwest::Client::builder()
        .local_address(Some("127.0.0.66".parse().unwrap()))
        .build()
        .unwrap();
    let from = |client: &reqwest::Client, sk: &'static str| {
        client
            .post(token_url(&mep))
            .basic_auth(AK_A, Some(sk))
            .form(&[("grant_type", "client_credentials")])
            .send()
    };
    for _ in 0..3 {
        from(&attacker, "wrong").await.unwrap();
    }
    assert_eq!(from(&attacker, SK_A).await.unwrap().status(), 429);
    // The owner, from its own address, is not locked out.
    assert_eq!(from(&mep.http, SK_A).await.unwrap().status(), 200);
    mep.stop().await;
}

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
async fn forged_expired_and_foreign_tokens_are_refused() {
    use jsonwebtoken::{encode, Algorithm, EncodingKey, Header};

    let dir = tempfile::tempdir().unwrap();
    let mep = start_with_auth(dir.path()).await;
    provision(&mep, APP_A, AK_A, SK_A, &[]).await;
    let good = token(&mep, AK_A, SK_A).await;
    let (header, claims) = claims_of(&good);
    let kid = header["kid"].as_str().unwrap().to_owned();
    let url = mep.url(&format!("/applications/{APP_A}/services"));
    let refused = |token: String, why: &'static str| {
        let mep = &mep;
        let url = url.clone();
        async move {
            let r = send(mep, Method::GET, &url, Some(&token), None).await;
            assert_eq!(r.status(), 401, "{why}");
            let www = challenge(&r);
            assert!(
                www.starts_with("Bearer realm=\"mep\", error=\"invalid_token\""),
                "{why}: {www}"
            );
            assert_problem(r, 401).await;
        }
    };

    // alg: none with the same claims.
    let none_header = B64URL.encode(br#"{"alg":"none","typ":"JWT"}"#);
    let body = B64URL.encode(claims.to_string());
    refused(format!("{none_header}.{body}."), "alg none").await;

    // HS256 keyed with the public key material (the JWKS document and the JWK's x coordinate).
    let jwks = mep
        .http
        .get(format!("{}/mep/token/jwks", mep.mp1))
        .send()
        .await
        .unwrap()
        .bytes()
        .await
        .unwrap();
    let mut hs = Header::new(Algorithm::HS256);
    hs.kid = Some(kid.clone());
    refused(
        encode(&hs, &claims, &EncodingKey::from_secret(&jwks)).unwrap(),
        "HS256 with the JWKS",
    )
    .await;

    // Signed with the real key (read from the data directory) but claiming another issuer.
    let pem = std::fs::read(dir.path().join(format!("auth/jwt/{kid}.pem"))).unwrap();
    let real_key = EncodingKey::from_ec_pem(&pem).unwrap();
    let mut es = Header::new(Algorithm::ES256);
    es.kid = Some(kid.clone());
    let sanity = encode(&es, &claims, &real_key).unwrap();
    let r = send(&mep, Method::GET, &url, Some(&sanity), None).await;
    assert_eq!(r.status(), 200, "the forging setup itself is right");
    let mut foreign = claims.clone();
    foreign["iss"] = json!("mepauth");
    refused(encode(&es, &foreign, &real_key).unwrap(), "wrong issuer").await;
    // An unknown key id, and a tampered subject.
    let mut unknown = es.clone();
    unknown.kid = Some("not-a-key".into());
    refused(encode(&unknown, &claims, &real_key).unwrap(), "unknown kid").await;
    let (h, rest) = good.split_once('.').unwrap();
    let sig = rest.split_once('.').unwrap().1;
    let mut other = claims.clone();
    other["sub"] = json!(APP_B);
    refused(
        format!("{h}.{}.{sig}", B64URL.encode(other.to_string())),
        "tampered claims",
    )
    .await;

    // Expiry follows the platform clock.
    let r = send(&mep, Method::GET, &url, Some(&good), None).await;
    assert_eq!(r.status(), 200);
    mep.clock.advance(Duration::from_secs(3600));
    refused(good, "expired").await;
    mep.stop().await;
}

#[tokio::test]
async fn confs_delete_revokes_tokens_and_new_keys_start_a_new_generation() {
    let dir = tempfile::tempdir().unwrap();
    let mep = start_with_auth(dir.path()).await;
    provision(&mep, APP_A, AK_A, SK_A, &["rnis"]).await;
    let first = token(&mep, AK_A, SK_A).await;
    let url = mep.url(&format!("/applications/{APP_A}/services"));
    assert_eq!(
        send(&mep, Method::GET, &url, Some(&first), None)
            .await
            .status(),
        200
    );

    // Re-provisioning the same keys (say, new requiredServices) keeps tokens.
    provision(&mep, APP_A, AK_A, SK_A, &["rnis", "bwm"]).await;
    assert_eq!(
        send(&mep, Method::GET, &url, Some(&first), None)
            .await
            .status(),
        200
    );

    let r = mep
        .http
        .delete(confs_url(&mep, APP_A))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 204);
    let r = send(&mep, Method::GET, &url, Some(&first), None).await;
    assert_eq!(r.status(), 401);
    assert!(challenge(&r).contains("revoked"));
    assert_eq!(basic_token_response(&mep, AK_A, SK_A).await.status(), 401);

    // Provisioned again: the old token stays dead, a new one works.
    provision(&mep, APP_A, AK_A, SK_A, &[]).await;
    assert_eq!(
        send(&mep, Method::GET, &url, Some(&first), None)
            .await
            .status(),
        401
    );
    let second = token(&mep, AK_A, SK_A).await;
    assert_eq!(
        send(&mep, Method::GET, &url, Some(&second), None)
            .await
            .status(),
        200
    );
    // A new secret revokes the tokens issued under the old one.
    let new_sk = SK_A.replace('D', "E");
    provision(&mep, APP_A, AK_A, &new_sk, &[]).await;
    assert_eq!(
        send(&mep, Method::GET, &url, Some(&second), None)
            .await
            .status(),
        401
    );
    assert_eq!(basic_token_response(&mep, AK_A, SK_A).await.status(), 401);
    assert_eq!(
        basic_token_response(&mep, AK_A, &new_sk).await.status(),
        200
    );
    mep.stop().await;
}

#[tokio::test]
async fn confs_api_validates_and_never_reveals_the_secret() {
    let dir = tempfile::tempdir().unwrap();
    let mep = start_with_auth(dir.path()).await;
    let url = confs_url(&mep, APP_A);

    let r = mep
        .send_json(Method::PUT, &url, &confs(AK_A, SK_A, &["rnis"]))
        .await;
    assert_eq!(r.status(), 201);
    let text = r.text().await.unwrap();
    assert!(
        !text.contains(SK_A) && !text.contains("secretKey"),
        "{text}"
    );
    let body: Value = serde_json::from_str(&text).unwrap();
    assert_eq!(body["authInfo"]["credentials"]["accessKeyId"], AK_A);
    assert_eq!(body["appInfo"]["requiredServices"], json!(["rnis"]));

    let r = mep.http.get(&url).send().await.unwrap();
    assert_eq!(r.status(), 200);
    let text = r.text().await.unwrap();
    assert!(
        !text.contains(SK_A) && !text.contains("secretKey"),
        "{text}"
    );
    let r = mep
        .send_json(Method::PUT, &url, &confs(AK_A, SK_A, &[]))
        .await;
    assert_eq!(r.status(), 200, "replacing answers 200");

    let short_ak = mep
        .send_json(Method::PUT, &url, &confs("short", SK_A, &[]))
        .await;
    assert!(assert_problem(short_ak, 400).await["detail"]
        .as_str()
        .unwrap()
        .contains("accessKeyId"));
    let bad_sk = format!("{}!", &SK_A[..63]);
    let r = mep
        .send_json(Method::PUT, &url, &confs(AK_A, &bad_sk, &[]))
        .await;
    let problem = assert_problem(r, 400).await;
    assert!(!problem.to_string().contains(&SK_A[..63]));
    let r = mep
        .send_json(
            Method::PUT,
            &url,
            &json!({"authInfo": {"credentials": {"accessKeyId": AK_A, "secretKey": 42}}}),
        )
        .await;
    assert_problem(r, 400).await;
    let r = mep
        .send_json(Method::PUT, confs_url(&mep, APP_B), &confs(AK_A, SK_B, &[]))
        .await;
    assert_problem(r, 409).await;
    let r = mep
        .send_json(
            Method::PUT,
            confs_url(&mep, "bad id"),
            &confs(AK_B, SK_B, &[]),
        )
        .await;
    assert_problem(r, 400).await;
    assert_problem(
        mep.http.get(confs_url(&mep, APP_B)).send().await.unwrap(),
        404,
    )
    .await;
    assert_eq!(mep.http.delete(&url).send().await.unwrap().status(), 204);
    assert_problem(mep.http.delete(&url).send().await.unwrap(), 404).await;
    provision(&mep, APP_B, AK_B, SK_B, &[]).await;
    mep.stop().await;

    // Nothing in the data directory holds a secret key in plain text.
    for entry in walk(dir.path()) {
        let bytes = std::fs::read(&entry).unwrap();
        for secret in [SK_A, SK_B] {
            assert!(
                !bytes.windows(secret.len()).any(|w| w == secret.as_bytes()),
                "{} holds a secret",
                entry.display()
            );
        }
    }
    let master = dir.path().join("auth/master.key");
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(&master).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o600);
    }
}

fn walk(dir: &std::path::Path) -> Vec<std::path::PathBuf> {
    let mut out = Vec::new();
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() {
            out.extend(walk(&path));
        } else {
            out.push(path);
        }
    }
    out
}

#[tokio::test]
async fn key_rotation_keeps_unexpired_tokens_valid_across_restarts() {
    let dir = tempfile::tempdir().unwrap();
    let mut config = test_config(dir.path());
    config.auth.enabled = true;
    let mep = TestMep::start_with(config.clone()).await;
    provision(&mep, APP_A, AK_A, SK_A, &[]).await;
    let before = token(&mep, AK_A, SK_A).await;
    let old_kid = claims_of(&before).0["kid"].as_str().unwrap().to_owned();

    let r = mep
        .http
        .post(mep.mm5_url("/mep/auth/v1/keys/rotate"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let new_kid = r.json::<Value>().await.unwrap()["kid"]
        .as_str()
        .unwrap()
        .to_owned();
    assert_ne!(new_kid, old_kid);
    let after = token(&mep, AK_A, SK_A).await;
    assert_eq!(claims_of(&after).0["kid"], new_kid);
    let jwks: Value = mep.json_at(format!("{}/mep/token/jwks", mep.mp1)).await;
    let kids: Vec<&str> = jwks["keys"]
        .as_array()
        .unwrap()
        .iter()
        .map(|k| k["kid"].as_str().unwrap())
        .collect();
    assert!(kids.contains(&old_kid.as_str()) && kids.contains(&new_kid.as_str()));
    let url = mep.url("/services");
    for t in [&before, &after] {
        assert_eq!(
            send(&mep, Method::GET, &url, Some(t), None).await.status(),
            200
        );
    }
    mep.stop().await;

    let mep = TestMep::start_with(config).await;
    let url = mep.url("/services");
    for t in [&before, &after] {
        assert_eq!(
            send(&mep, Method::GET, &url, Some(t), None).await.status(),
            200,
            "tokens survive a restart"
        );
    }
    mep.stop().await;
}

#[tokio::test]
async fn transports_advertise_the_token_endpoint() {
    let dir = tempfile::tempdir().unwrap();
    let mep = start_with_auth(dir.path()).await;
    provision(&mep, APP_A, AK_A, SK_A, &[]).await;
    let t = token(&mep, AK_A, SK_A).await;
    let transports: Value = send(&mep, Method::GET, &mep.url("/transports"), Some(&t), None)
        .await
        .json()
        .await
        .unwrap();
    let oauth = &transports[0]["security"]["oAuth2Info"];
    assert_eq!(oauth["grantTypes"], json!(["OAUTH2_CLIENT_CREDENTIALS"]));
    assert_eq!(oauth["tokenEndpoint"], format!("{}/mep/token", mep.mp1));
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
