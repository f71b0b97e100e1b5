//! EdgeGallery's signed token request, checked against an independent HMAC-SHA256
//! implementation of the canonical request, replays, and the lockout after repeated failures
//! (per access key and source).

use std::time::{Duration, SystemTime};

use mep_tests::auth::*;
use reqwest::Method;
use serde_json::Value;

use mep_tests::apps::{AK_A, AK_B, APP_A, APP_B, SK_A, SK_B};

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
