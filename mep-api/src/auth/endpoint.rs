//! `POST /mep/token` and `GET /mep/token/jwks` on the Mp1 listener.
//!
//! The token endpoint accepts two ways of proving an application's identity:
//! - OAuth 2.0 client credentials (RFC 6749 section 4.4): a form body with
//!   `grant_type=client_credentials`, the client authenticated by HTTP Basic `AK:SK` or by the form
//!   fields `client_id`/`client_secret`; errors are RFC 6749 section 5.2 JSON bodies;
//! - EdgeGallery's signed request, `Authorization: SDK-HMAC-SHA256 ...` with `x-sdk-date`
//!   (see [`super::signing`]), answered with the same token JSON.
//!
//! Both share the lockout: repeated bad secrets or signatures for one access key lock it.

use std::collections::HashMap;
use std::net::{IpAddr, Ipv4Addr};
use std::sync::Arc;
use std::time::Duration;

use axum::extract::rejection::BytesRejection;
use axum::extract::{OriginalUri, State};
use axum::response::{IntoResponse, Response};
use axum::Extension;
use base64::engine::general_purpose::STANDARD as B64;
use base64::Engine as _;
use bytes::Bytes;
use http::header::{
    AUTHORIZATION, CACHE_CONTROL, CONTENT_TYPE, HOST, PRAGMA, RETRY_AFTER, WWW_AUTHENTICATE,
};
use http::{HeaderMap, HeaderValue, StatusCode, Uri};
use subtle::ConstantTimeEq;

use super::credentials::AppCredential;
use super::replay::{Replay, SharedReplay, SignedUse};
use super::service::Auth;
use super::signing::{self, RequestParts};
use crate::http::serve::PeerAddr;

/// Path of the token endpoint.
pub const TOKEN_PATH: &str = "/mep/token";
/// Path of the JWKS document with the public keys that verify tokens.
pub const JWKS_PATH: &str = "/mep/token/jwks";

/// The unauthenticated routes of Mp1.
pub fn router(auth: Arc<Auth>) -> utoipa_axum::router::OpenApiRouter {
    utoipa_axum::router::OpenApiRouter::new()
        .routes(utoipa_axum::routes!(token))
        .routes(utoipa_axum::routes!(jwks))
        .with_state(auth)
}

/// Which authentication scheme a 401 challenges for.
#[derive(Debug, Clone, Copy)]
enum Challenge {
    Basic,
    Signed,
}

/// An RFC 6749 section 5.2 error.
#[derive(Debug)]
enum TokenRequestError {
    InvalidRequest(String),
    InvalidClient(Challenge, &'static str),
    UnsupportedGrantType,
    InvalidScope,
    Locked(Duration),
    Server,
    /// The store could not record a signed request's use (etcd without quorum).
    Unavailable,
}

impl IntoResponse for TokenRequestError {
    fn into_response(self) -> Response {
        let (status, code, description) = match &self {
            Self::InvalidRequest(d) => (StatusCode::BAD_REQUEST, "invalid_request", d.clone()),
            Self::InvalidClient(_, d) => (StatusCode::UNAUTHORIZED, "invalid_client", (*d).into()),
            Self::UnsupportedGrantType => (
                StatusCode::BAD_REQUEST,
                "unsupported_grant_type",
                "only grant_type=client_credentials is supported".into(),
            ),
            Self::InvalidScope => (
                StatusCode::BAD_REQUEST,
                "invalid_scope",
                "mep defines no scopes; omit scope".into(),
            ),
            Self::Locked(remaining) => (
                StatusCode::TOO_MANY_REQUESTS,
                "invalid_client",
                format!(
                    "access is locked after repeated failed attempts; retry in {} s",
                    remaining.as_secs().max(1)
                ),
            ),
            Self::Server => (
                StatusCode::INTERNAL_SERVER_ERROR,
                "server_error",
                "the token could not be issued".into(),
            ),
            Self::Unavailable => (
                StatusCode::SERVICE_UNAVAILABLE,
                "temporarily_unavailable",
                "the platform's store is unavailable; retry with a newly signed request".into(),
            ),
        };
        let body = serde_json::json!({"error": code, "error_description": description});
        let mut response = token_json(status, body);
        match self {
            Self::InvalidClient(Challenge::Basic, _) => {
                response.headers_mut().insert(
                    WWW_AUTHENTICATE,
                    HeaderValue::from_static("Basic realm=\"mep\""),
                );
            }
            Self::InvalidClient(Challenge::Signed, _) => {
                response.headers_mut().insert(
                    WWW_AUTHENTICATE,
                    HeaderValue::from_static("SDK-HMAC-SHA256 realm=\"mep\""),
                );
            }
            Self::Locked(remaining) => {
                response
                    .headers_mut()
                    .insert(RETRY_AFTER, HeaderValue::from(remaining.as_secs().max(1)));
            }
            _ => {}
        }
        response
    }
}

/// A JSON response that no cache may keep (RFC 6749 section 5.1).
fn token_json(status: StatusCode, body: serde_json::Value) -> Response {
    let mut response = (status, body.to_string()).into_response();
    let h = response.headers_mut();
    h.insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
    h.insert(CACHE_CONTROL, HeaderValue::from_static("no-store"));
    h.insert(PRAGMA, HeaderValue::from_static("no-cache"));
    response
}

#[utoipa::path(
post, path = TOKEN_PATH, tag = "token", summary = "An access token: OAuth 2.0 client credentials (RFC 6749 4.4) or EdgeGallery's signed request", security(()), request_body(content = crate::openapi::params::TokenRequestForm, content_type = "application/x-www-form-urlencoded"), responses((status = 200, description = "`{access_token, token_type, expires_in}`", content_type = "application/json"), (status = 400, description = "An RFC 6749 5.2 error", content_type = "application/json"), (status = 401, description = "Bad credentials (RFC 6749 5.2 error)", content_type = "application/json"))
)]
async fn token(
    State(auth): State<Arc<Auth>>,
    OriginalUri(uri): OriginalUri,
    peer: Option<Extension<PeerAddr>>,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> Response {
    // The lockout counts per source; a request without a peer (in-process) is one source.
    let source = peer.map_or(IpAddr::V4(Ipv4Addr::UNSPECIFIED), |Extension(p)| p.0.ip());
    let signed = headers
        .get(AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.starts_with(signing::SCHEME));
    let result = if signed {
        match signed_request(&auth, source, &uri, &headers) {
            Ok((cred, used)) => share_use(&auth, used).await.map(|()| cred),
            Err(e) => Err(e),
        }
    } else {
        client_credentials(&auth, source, &headers, body)
    };
    let cred = match result {
        Ok(cred) => cred,
        Err(e) => return e.into_response(),
    };
    match auth.issue_for(&cred) {
        Ok(issued) => {
            tracing::debug!(app = %cred.app, "access token issued");
            token_json(
                StatusCode::OK,
                serde_json::json!({
                    "access_token": issued.access_token,
                    "token_type": "Bearer",
                    "expires_in": issued.expires_in,
                }),
            )
        }
        Err(e) => {
            tracing::error!(error = %e, "cannot issue a token");
            TokenRequestError::Server.into_response()
        }
    }
}

/// RFC 6749 section 4.4.
fn client_credentials(
    auth: &Auth,
    source: IpAddr,
    headers: &HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> Result<Arc<AppCredential>, TokenRequestError> {
    let form_type = headers
        .get(CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.split(';').next())
        .is_some_and(|m| {
            m.trim()
                .eq_ignore_ascii_case("application/x-www-form-urlencoded")
        });
    if !form_type {
        return Err(TokenRequestError::InvalidRequest(
            "the request body must be application/x-www-form-urlencoded".into(),
        ));
    }
    let body = body.map_err(|e| TokenRequestError::InvalidRequest(e.body_text()))?;
    let mut form: HashMap<String, String> = HashMap::new();
    for (key, value) in url::form_urlencoded::parse(&body) {
        if form.insert(key.to_string(), value.into_owned()).is_some() {
            return Err(TokenRequestError::InvalidRequest(format!(
                "parameter {key} is given more than once"
            )));
        }
    }
    let grant_type = form
        .get("grant_type")
        .ok_or_else(|| TokenRequestError::InvalidRequest("grant_type is required".into()))?;

    let basic = headers.get(AUTHORIZATION);
    let form_client = form.get("client_id");
    let (client_id, secret, challenge) = match (basic, form_client) {
        (Some(_), Some(_)) => {
            return Err(TokenRequestError::InvalidRequest(
                "authenticate the client with HTTP Basic or form fields, not both".into(),
            ))
        }
        (Some(header), None) => {
            let (id, secret) = parse_basic(header).ok_or(TokenRequestError::InvalidClient(
                Challenge::Basic,
                "the Authorization header is not valid HTTP Basic",
            ))?;
            (id, secret, Challenge::Basic)
        }
        (None, Some(id)) => {
            let secret =
                form.get("client_secret")
                    .cloned()
                    .ok_or(TokenRequestError::InvalidClient(
                        Challenge::Basic,
                        "client_secret is required",
                    ))?;
            (id.clone(), secret, Challenge::Basic)
        }
        (None, None) => {
            return Err(TokenRequestError::InvalidClient(
                Challenge::Basic,
                "client authentication is required (HTTP Basic AK:SK)",
            ))
        }
    };
    let cred = authenticate_secret(auth, source, &client_id, &secret, challenge)?;
    if grant_type != "client_credentials" {
        return Err(TokenRequestError::UnsupportedGrantType);
    }
    if form.get("scope").is_some_and(|s| !s.trim().is_empty()) {
        return Err(TokenRequestError::InvalidScope);
    }
    Ok(cred)
}

/// `Basic base64(id:secret)`; RFC 6749 section 2.3.1 form-encodes both parts first, which most
/// clients (`curl -u`) do not, so both readings are tried when they differ.
fn parse_basic(header: &HeaderValue) -> Option<(String, String)> {
    let value = header.to_str().ok()?;
    let (scheme, encoded) = value.split_once(' ')?;
    if !scheme.eq_ignore_ascii_case("basic") {
        return None;
    }
    let decoded = B64.decode(encoded.trim()).ok()?;
    let text = String::from_utf8(decoded).ok()?;
    let (id, secret) = text.split_once(':')?;
    Some((id.to_owned(), secret.to_owned()))
}

fn form_decode(s: &str) -> String {
    url::form_urlencoded::parse(format!("x={s}").as_bytes())
        .next()
        .map(|(_, v)| v.into_owned())
        .unwrap_or_default()
}

/// Checks a client secret against the stored secret key, in constant time, under the lockout.
fn authenticate_secret(
    auth: &Auth,
    source: IpAddr,
    client_id: &str,
    secret: &str,
    challenge: Challenge,
) -> Result<Arc<AppCredential>, TokenRequestError> {
    let unknown = TokenRequestError::InvalidClient(challenge, "unknown client or wrong secret");
    let cred = auth
        .credentials()
        .by_access_key(client_id)
        .or_else(|| auth.credentials().by_access_key(&form_decode(client_id)))
        .ok_or(unknown)?;
    let now = auth.now();
    auth.lockout()
        .check(&cred.access_key_id, source, now)
        .map_err(TokenRequestError::Locked)?;
    let stored = auth.credentials().secret_key(&cred).map_err(|e| {
        tracing::error!(error = %e, app = %cred.app, "cannot open a stored secret key");
        TokenRequestError::Server
    })?;
    let decoded = form_decode(secret);
    let matches = bool::from(stored.as_slice().ct_eq(secret.as_bytes()))
        || (decoded != secret && bool::from(stored.as_slice().ct_eq(decoded.as_bytes())));
    if !matches {
        return Err(failure(auth, source, &cred, challenge));
    }
    auth.lockout().record_success(&cred.access_key_id, source);
    Ok(cred)
}

/// Counts a failed attempt and answers the error for it.
fn failure(
    auth: &Auth,
    source: IpAddr,
    cred: &AppCredential,
    challenge: Challenge,
) -> TokenRequestError {
    match auth
        .lockout()
        .record_failure(&cred.access_key_id, source, auth.now())
    {
        Some(locked_for) => {
            tracing::warn!(app = %cred.app, access_key = %cred.access_key_id, %source,
                "token requests from this source locked after repeated failures");
            auth.share_lock(&cred.access_key_id, source, locked_for);
            TokenRequestError::Locked(locked_for)
        }
        None => {
            tracing::info!(app = %cred.app, access_key = %cred.access_key_id,
                "token request refused: wrong secret or signature");
            TokenRequestError::InvalidClient(challenge, "unknown client or wrong secret")
        }
    }
}

/// EdgeGallery's `SDK-HMAC-SHA256` signed request.
/// On a store shared by several nodes, records the use of a signed request there, so that it
/// is not accepted again by another node within its window.
async fn share_use(auth: &Auth, used: SignedUse) -> Result<(), TokenRequestError> {
    match auth.record_shared_use(&used).await {
        Ok(()) => Ok(()),
        Err(SharedReplay::Used) => Err(TokenRequestError::InvalidClient(
            Challenge::Signed,
            "this signed request was already used; sign a new one",
        )),
        Err(SharedReplay::Unavailable) => Err(TokenRequestError::Unavailable),
    }
}

fn signed_request(
    auth: &Auth,
    source: IpAddr,
    uri: &Uri,
    headers: &HeaderMap,
) -> Result<(Arc<AppCredential>, SignedUse), TokenRequestError> {
    let value = headers
        .get(AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default();
    let parsed = signing::parse_authorization(value)
        .map_err(|e| TokenRequestError::InvalidRequest(e.to_string()))?;
    let date = headers
        .get(signing::DATE_HEADER)
        .and_then(|v| v.to_str().ok())
        .ok_or_else(|| {
            TokenRequestError::InvalidRequest(signing::SigningError::BadDate.to_string())
        })
        .and_then(|v| {
            signing::parse_sdk_date(v.trim())
                .map_err(|e| TokenRequestError::InvalidRequest(e.to_string()))
        })?;
    let now = auth.now();
    signing::check_skew(date, now, auth.config().max_clock_skew).map_err(|_| {
        TokenRequestError::InvalidClient(
            Challenge::Signed,
            "x-sdk-date is outside the allowed clock skew; sign the request again",
        )
    })?;
    let cred = auth.credentials().by_access_key(&parsed.access_key).ok_or(
        TokenRequestError::InvalidClient(
            Challenge::Signed,
            "unknown access key or wrong signature",
        ),
    )?;
    auth.lockout()
        .check(&cred.access_key_id, source, now)
        .map_err(TokenRequestError::Locked)?;
    let host = headers
        .get(HOST)
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned)
        .or_else(|| uri.authority().map(|a| a.as_str().to_owned()))
        .ok_or_else(|| TokenRequestError::InvalidRequest("the request has no Host".into()))?;
    let header = |name: &str| {
        headers
            .get(name)
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned)
    };
    let string_to_sign = signing::string_to_sign(
        &RequestParts {
            method: "POST",
            path: uri.path(),
            query: uri.query(),
            host: &host,
            header: &header,
        },
        &parsed.signed_headers,
    );
    let secret = auth.credentials().secret_key(&cred).map_err(|e| {
        tracing::error!(error = %e, app = %cred.app, "cannot open a stored secret key");
        TokenRequestError::Server
    })?;
    if !signing::verify(&secret, &string_to_sign, &parsed.signature) {
        return Err(match failure(auth, source, &cred, Challenge::Signed) {
            TokenRequestError::InvalidClient(c, _) => {
                TokenRequestError::InvalidClient(c, "unknown access key or wrong signature")
            }
            other => other,
        });
    }
    let used = SignedUse {
        signature: parsed.signature,
        valid_until: date + auth.config().max_clock_skew,
    };
    auth.replays()
        .first_use(&used.signature, used.valid_until, now)
        .map_err(|replay| match replay {
            Replay::Used => TokenRequestError::InvalidClient(
                Challenge::Signed,
                "this signed request was already used; sign a new one",
            ),
            Replay::Full => TokenRequestError::Server,
        })?;
    auth.lockout().record_success(&cred.access_key_id, source);
    Ok((cred, used))
}

#[utoipa::path(
get, path = JWKS_PATH, tag = "token", summary = "mep addition: the public keys that verify tokens", security(()), responses((status = 200, description = "A JWK set", content_type = "application/jwk-set+json"))
)]
async fn jwks(State(auth): State<Arc<Auth>>) -> Response {
    let mut response = (StatusCode::OK, auth.keys().current().jwks.clone()).into_response();
    let h = response.headers_mut();
    h.insert(
        CONTENT_TYPE,
        HeaderValue::from_static("application/jwk-set+json"),
    );
    h.insert(CACHE_CONTROL, HeaderValue::from_static("max-age=60"));
    response
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn basic_credentials_parse() {
        let header = HeaderValue::from_str(&format!("Basic {}", B64.encode("ak:s+k:x"))).unwrap();
        assert_eq!(parse_basic(&header), Some(("ak".into(), "s+k:x".into())));
        assert_eq!(form_decode("a%2Bb+c"), "a+b c");
        assert!(parse_basic(&HeaderValue::from_static("Bearer abc")).is_none());
        assert!(parse_basic(&HeaderValue::from_static("Basic !!!")).is_none());
    }
}
