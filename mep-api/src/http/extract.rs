//! Request extractors whose failures are `ProblemDetails`: malformed or mistyped JSON is 400,
//! a body over the limit is 413, a non-JSON media type is 415.

use axum::extract::{FromRequest, FromRequestParts, Request};
use bytes::Bytes;
use http::header::{CONTENT_TYPE, IF_MATCH};
use http::request::Parts;
use http::StatusCode;
use serde::de::DeserializeOwned;

use crate::problem::ApiError;

/// A JSON request body.
pub struct ApiJson<T>(pub T);

impl<S: Send + Sync, T: DeserializeOwned> FromRequest<S> for ApiJson<T> {
    type Rejection = ApiError;

    async fn from_request(req: Request, state: &S) -> Result<Self, Self::Rejection> {
        if let Some(content_type) = req.headers().get(CONTENT_TYPE) {
            let ok = content_type
                .to_str()
                .ok()
                .and_then(|v| v.split(';').next())
                .map(|mime| mime.trim().to_ascii_lowercase())
                .is_some_and(|mime| mime == "application/json" || mime.ends_with("+json"));
            if !ok {
                return Err(ApiError::UnsupportedMediaType(
                    "request body must be application/json".into(),
                ));
            }
        }
        let bytes = Bytes::from_request(req, state).await.map_err(|rejection| {
            match rejection.status() {
                StatusCode::PAYLOAD_TOO_LARGE => ApiError::PayloadTooLarge(
                    "request body is larger than the configured limit".into(),
                ),
                _ => ApiError::BadRequest(rejection.body_text()),
            }
        })?;
        let value = serde_json::from_slice(&bytes)
            .map_err(|e| ApiError::BadRequest(format!("invalid request body: {e}")))?;
        Ok(ApiJson(value))
    }
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
