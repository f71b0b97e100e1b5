//! Tokens from `POST /mep/token` by OAuth 2.0 client credentials (Basic and form), the
//! token endpoint's RFC 6749 errors, forged, expired and foreign tokens, key rotation across
//! restarts, and the token endpoint in the transports list.

use std::time::Duration;

use base64::engine::general_purpose::URL_SAFE_NO_PAD as B64URL;
use base64::Engine as _;
use mep_tests::auth::*;
use mep_tests::{assert_problem, test_config, TestMep};
use reqwest::Method;
use serde_json::{json, Value};

use mep_tests::apps::{AK_A, AK_B, APP_A, APP_B, SK_A, SK_B};

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
