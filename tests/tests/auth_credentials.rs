//! Credentials over Mm5 (`/mep/appMng/v1/applications/{id}/confs`): validation, the secret
//! never shown again, and revocation of tokens when credentials are deleted or replaced.

use mep_tests::assert_problem;
use mep_tests::auth::*;
use reqwest::Method;
use serde_json::{json, Value};

use mep_tests::apps::{AK_A, AK_B, APP_A, APP_B, SK_A, SK_B};

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
