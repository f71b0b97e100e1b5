//! Middleware that authenticates requests before routing reaches a handler:
//! [`require_bearer`] on Mp1 (access tokens) and [`require_operator_token`] on Mm5.

use std::sync::Arc;

use axum::extract::{Request, State};
use axum::middleware::Next;
use axum::response::Response;
use http::header::{AUTHORIZATION, WWW_AUTHENTICATE};
use http::{HeaderMap, HeaderValue, StatusCode};
use ring::digest::{digest, SHA256};
use subtle::ConstantTimeEq;

use super::service::Auth;
use super::tokens::TokenError;
use super::{Caller, VisibleServices};
use crate::problem::problem_response;

/// Why a request carries no usable bearer token.
enum Rejection {
    Missing,
    Invalid(String),
}

impl From<TokenError> for Rejection {
    fn from(e: TokenError) -> Self {
        Rejection::Invalid(e.to_string())
    }
}

impl Rejection {
    /// 401 `ProblemDetails` with an RFC 6750 challenge.
    fn into_response(self) -> Response {
        let (challenge, detail) = match self {
            Rejection::Missing => (
                "Bearer realm=\"mep\"".to_owned(),
                "a bearer access token is required; get one with POST /mep/token".to_owned(),
            ),
            Rejection::Invalid(e) => (
                format!("Bearer realm=\"mep\", error=\"invalid_token\", error_description=\"{e}\""),
                e,
            ),
        };
        let mut response = problem_response(StatusCode::UNAUTHORIZED, detail);
        if let Ok(value) = HeaderValue::from_str(&challenge) {
            response.headers_mut().insert(WWW_AUTHENTICATE, value);
        }
        response
    }
}

/// The token of `Authorization: Bearer <token>`.
fn bearer(headers: &HeaderMap) -> Result<&str, Rejection> {
    let mut values = headers.get_all(AUTHORIZATION).iter();
    let Some(value) = values.next() else {
        return Err(Rejection::Missing);
    };
    if values.next().is_some() {
        return Err(TokenError::Malformed.into());
    }
    let value = value
        .to_str()
        .map_err(|_| Rejection::from(TokenError::Malformed))?;
    let (scheme, token) = value.split_once(' ').unwrap_or((value, ""));
    if !scheme.eq_ignore_ascii_case("bearer") {
        return Err(Rejection::Missing);
    }
    let token = token.trim();
    if token.is_empty() {
        return Err(TokenError::Malformed.into());
    }
    Ok(token)
}

/// Authenticates an Mp1 request by its access token and records the caller for the handlers.
pub async fn require_bearer(
    State(auth): State<Arc<Auth>>,
    mut req: Request,
    next: Next,
) -> Response {
    let grant =
        match bearer(req.headers()).and_then(|t| auth.authenticate(t).map_err(Rejection::from)) {
            Ok(grant) => grant,
            Err(rejection) => return rejection.into_response(),
        };
    req.extensions_mut()
        .insert(VisibleServices(grant.visible_services));
    req.extensions_mut().insert(Caller::App(grant.app));
    next.run(req).await
}

/// The operator's Mm5 bearer token, kept as a digest so comparisons take the same time whatever
/// the length or content of the presented token.
pub struct OperatorToken([u8; 32]);

impl OperatorToken {
    pub fn new(token: &str) -> Self {
        Self(sha256(token.as_bytes()))
    }

    fn matches(&self, presented: &str) -> bool {
        bool::from(self.0.ct_eq(&sha256(presented.as_bytes())))
    }
}

fn sha256(bytes: &[u8]) -> [u8; 32] {
    let mut out = [0u8; 32];
    out.copy_from_slice(digest(&SHA256, bytes).as_ref());
    out
}

/// Requires the operator token on every Mm5 route but the probes (`/health`, `/ready`).
pub async fn require_operator_token(
    State(token): State<Arc<OperatorToken>>,
    req: Request,
    next: Next,
) -> Response {
    if matches!(
        req.uri().path(),
        "/health" | "/ready" | crate::openapi::OPENAPI_PATH
    ) {
        return next.run(req).await;
    }
    match bearer(req.headers()) {
        Ok(presented) if token.matches(presented) => next.run(req).await,
        Ok(_) => Rejection::Invalid("the operator token is wrong".into()).into_response(),
        Err(rejection) => rejection.into_response(),
    }
}
