//! Helpers of the auth tests: a mep with auth on, token requests by client credentials and by
//! an independent implementation of EdgeGallery's AK/SK signature, and JWT inspection.

use std::time::{SystemTime, UNIX_EPOCH};

use base64::engine::general_purpose::URL_SAFE_NO_PAD as B64URL;
use base64::Engine as _;
use hmac::{Hmac, Mac};
use reqwest::Method;
use serde_json::Value;
use sha2::{Digest, Sha256};

use crate::{test_config, TestMep};

pub async fn start_with_auth(dir: &std::path::Path) -> TestMep {
    let mut config = test_config(dir);
    config.auth.enabled = true;
    TestMep::start_with(config).await
}

pub fn confs(ak: &str, sk: &str, required: &[&str]) -> Value {
    crate::confs_body(ak, sk, required)
}

pub fn confs_url(mep: &TestMep, app: &str) -> String {
    mep.mm5_url(&format!("/mep/appMng/v1/applications/{app}/confs"))
}

pub async fn provision(mep: &TestMep, app: &str, ak: &str, sk: &str, required: &[&str]) {
    mep.provision(app, ak, sk, required).await
}

pub fn token_url(mep: &TestMep) -> String {
    mep.token_url()
}

pub async fn basic_token_response(mep: &TestMep, ak: &str, sk: &str) -> reqwest::Response {
    mep.http
        .post(token_url(mep))
        .basic_auth(ak, Some(sk))
        .form(&[("grant_type", "client_credentials")])
        .send()
        .await
        .unwrap()
}

pub async fn token(mep: &TestMep, ak: &str, sk: &str) -> String {
    mep.token(ak, sk).await
}

pub fn claims_of(token: &str) -> (Value, Value) {
    let mut parts = token.split('.');
    let header = B64URL.decode(parts.next().unwrap()).unwrap();
    let claims = B64URL.decode(parts.next().unwrap()).unwrap();
    (
        serde_json::from_slice(&header).unwrap(),
        serde_json::from_slice(&claims).unwrap(),
    )
}

pub async fn send(
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

pub fn challenge(r: &reqwest::Response) -> String {
    r.headers()
        .get("www-authenticate")
        .map(|v| v.to_str().unwrap().to_owned())
        .unwrap_or_default()
}

// ---- an independent implementation of EdgeGallery's AK/SK signature ----

/// `YYYYMMDDTHHMMSSZ` of `t`.
pub fn sdk_date(t: SystemTime) -> String {
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

pub fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// The Authorization header mep-agent sends for `POST /mep/token` to `host` at `date`, signing
/// `content-type;host;x-sdk-date` over an empty body.
pub fn sdk_authorization(ak: &str, sk: &str, host: &str, date: &str) -> String {
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

pub async fn signed_token_request(
    mep: &TestMep,
    authorization: &str,
    date: &str,
) -> reqwest::Response {
    mep.http
        .post(token_url(mep))
        .header("content-type", "application/json")
        .header("x-sdk-date", date)
        .header("authorization", authorization)
        .send()
        .await
        .unwrap()
}

pub fn mp1_host(mep: &TestMep) -> String {
    mep.mep.mp1_addr.to_string()
}

/// Every file under `dir`, recursively.
pub fn walk(dir: &std::path::Path) -> Vec<std::path::PathBuf> {
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
