//! Request extractors whose failures are `ProblemDetails`: malformed or mistyped JSON is 400,
//! a body over the limit is 413, a declared media type that cannot be JSON is 415.

use axum::extract::{FromRequest, FromRequestParts, Request};
use bytes::Bytes;
use http::header::{CONTENT_TYPE, IF_MATCH};
use http::request::Parts;
use http::{HeaderMap, StatusCode};
use serde::de::DeserializeOwned;
use serde_json::Value;

use crate::problem::ApiError;

/// Checks that a request's declared body type can be JSON. Absent, `application/json` (with any
/// parameters), `*/*`, `application/*`, `text/json` and every `+json` type are parsed as JSON:
/// ETSI's conformance tooling sends `*/*`. Anything else (`application/xml`, `text/plain`) is 415.
pub fn require_json_media_type(headers: &HeaderMap) -> Result<(), ApiError> {
    let Some(content_type) = headers.get(CONTENT_TYPE) else {
        return Ok(());
    };
    let mime = content_type
        .to_str()
        .ok()
        .and_then(|v| v.split(';').next())
        .map(|mime| mime.trim().to_ascii_lowercase());
    let ok = mime.is_some_and(|mime| {
        matches!(
            mime.as_str(),
            "" | "*/*" | "application/*" | "application/json" | "text/json"
        ) || mime.ends_with("+json")
    });
    if ok {
        Ok(())
    } else {
        Err(ApiError::UnsupportedMediaType(
            "the request body must be JSON (application/json)".into(),
        ))
    }
}

/// A JSON request body.
///
/// Clients generated from ETSI's v3.1.1 OpenAPI files send every body wrapped in an object named
/// after its schema (`{"ServiceInfo": {...}}`, an artefact of ETSI's doc2oas tool). MEC's own
/// members are lowerCamelCase, so a body that does not parse and is one object under one
/// capitalised key is parsed once more without the wrapper.
pub struct ApiJson<T>(pub T);

impl<S: Send + Sync, T: DeserializeOwned> FromRequest<S> for ApiJson<T> {
    type Rejection = ApiError;

    async fn from_request(req: Request, state: &S) -> Result<Self, Self::Rejection> {
        require_json_media_type(req.headers())?;
        let bytes = Bytes::from_request(req, state).await.map_err(|rejection| {
            match rejection.status() {
                StatusCode::PAYLOAD_TOO_LARGE => ApiError::PayloadTooLarge(
                    "request body is larger than the configured limit".into(),
                ),
                _ => ApiError::BadRequest(rejection.body_text()),
            }
        })?;
        match serde_json::from_slice(&bytes) {
            Ok(value) => Ok(ApiJson(value)),
            Err(e) => unwrap_schema_wrapper(&bytes)
                .map(ApiJson)
                .ok_or_else(|| ApiError::BadRequest(format!("invalid request body: {e}"))),
        }
    }
}

/// The body inside a doc2oas wrapper (`{"SchemaName": {...}}`), if that is what `bytes` is and
/// the inside parses.
fn unwrap_schema_wrapper<T: DeserializeOwned>(bytes: &[u8]) -> Option<T> {
    let outer: serde_json::Map<String, Value> = serde_json::from_slice(bytes).ok()?;
    let mut members = outer.into_iter();
    let (name, inner) = members.next()?;
    let is_wrapper = members.next().is_none()
        && name.starts_with(|c: char| c.is_ascii_uppercase())
        && inner.is_object();
    if !is_wrapper {
        return None;
    }
    serde_json::from_value(inner).ok()
}

/// The raw `If-Match` header, if any.
pub struct IfMatch(pub Option<String>);

impl<S: Send + Sync> FromRequestParts<S> for IfMatch {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, _: &S) -> Result<Self, Self::Rejection> {
        match parts.headers.get(IF_MATCH) {
            None => Ok(IfMatch(None)),
            Some(v) => v
                .to_str()
                .map(|s| IfMatch(Some(s.to_owned())))
                .map_err(|_| ApiError::BadRequest("If-Match is not valid text".into())),
        }
    }
}

/// Path parameters; a parameter that cannot be decoded is 400.
pub struct ApiPath<T>(pub T);

impl<S: Send + Sync, T: DeserializeOwned + Send> FromRequestParts<S> for ApiPath<T> {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, Self::Rejection> {
        axum::extract::Path::<T>::from_request_parts(parts, state)
            .await
            .map(|axum::extract::Path(v)| ApiPath(v))
            .map_err(|e| ApiError::BadRequest(e.body_text()))
    }
}

/// Query parameters; a missing, mistyped or repeated one is 400.
pub struct ApiQuery<T>(pub T);

impl<S: Send + Sync, T: DeserializeOwned + Send> FromRequestParts<S> for ApiQuery<T> {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, Self::Rejection> {
        axum::extract::Query::<T>::from_request_parts(parts, state)
            .await
            .map(|axum::extract::Query(v)| ApiQuery(v))
            .map_err(|e| ApiError::BadRequest(e.body_text()))
    }
}
