//! The CPU cost of access tokens on one core, without HTTP: issuing a token (one ES256 signature
//! with the cached key), verifying one (one ES256 verification: what the first request with a new
//! token pays), and authenticating a request whose token was verified before (the cache hit every
//! later request takes).
//!
//! `cargo bench -p mep-api --bench tokens` measures 20,000 operations of each kind; under
//! `cargo test` it runs a few as a smoke test.

use std::sync::Arc;
use std::time::{Duration, Instant};

use mep_api::auth::credentials::ConfsBody;
use mep_api::auth::tokens::Verifier;
use mep_api::auth::{Auth, AuthConfig};
use mep_api::clock::SystemClock;
use mep_api::model::ids::AppInstanceId;
use mep_api::store::Store;

fn report(what: &str, n: usize, elapsed: Duration) {
    let per = elapsed.as_secs_f64() * 1e6 / n as f64;
    println!(
        "{what:<48} {per:>8.1} µs/op {:>10.0} op/s (one core)",
        1e6 / per
    );
}

#[tokio::main(flavor = "current_thread")]
async fn main() {
    let full = std::env::args().any(|a| a == "--bench");
    let n = if full { 20_000 } else { 50 };
    let dir = tempfile::tempdir().expect("temp dir");
    let store = Store::open(dir.path()).expect("store");
    let auth = Auth::open(
        AuthConfig::default(),
        dir.path(),
        None,
        store.clone(),
        Arc::new(SystemClock),
    )
    .expect("auth");
    let body: ConfsBody = serde_json::from_value(serde_json::json!({
        "authInfo": {"credentials": {"accessKeyId": "QVUJMSUMgS0VZLS0tLS0",
            "secretKey": "DXPb4sqElKhcHe07Kw5uorayETwId1JOjjOIRomRs5wyszoCR5R7AtVa28KT3lSc"}}
    }))
    .expect("body");
    let app = AppInstanceId::parse("app-1").expect("id");
    let (_, cred) = auth
        .credentials()
        .put(app, body.validate().expect("valid"))
        .await
        .expect("provisioned");

    let started = Instant::now();
    let tokens: Vec<String> = (0..n)
        .map(|_| auth.issue_for(&cred).expect("issued").access_token)
        .collect();
    report("issue (ES256 sign, cached key)", n, started.elapsed());

    let verifier = Verifier::new("mep");
    let keys = auth.keys().current();
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .expect("clock")
        .as_secs();
    let started = Instant::now();
    for token in &tokens {
        verifier.verify(&keys, token, now).expect("verifies");
    }
    report("verify (ES256, first use of a token)", n, started.elapsed());

    auth.authenticate(&tokens[0]).expect("authenticates");
    let started = Instant::now();
    for _ in 0..n {
        auth.authenticate(&tokens[0]).expect("authenticates");
    }
    report("authenticate (token seen before)", n, started.elapsed());
    drop(auth);
    store.close().await;
}
