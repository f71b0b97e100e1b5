//! Who is calling. Every Mp1 request is attributed to a [`Caller`] by one extractor, and every
//! app-scoped route checks it through [`AppScope`]; token authentication plugs in by inserting
//! a `Caller` into the request extensions before routing.

use axum::extract::{FromRequestParts, RawPathParams};
use http::request::Parts;

use crate::model::ids::AppInstanceId;
use crate::problem::ApiError;

/// The identity a request was made with.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Caller {
    /// No authentication is configured: the application instance named in the URI is trusted.
    Trusted,
    /// An authenticated application instance.
    App(AppInstanceId),
}

impl<S: Send + Sync> FromRequestParts<S> for Caller {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, _: &S) -> Result<Self, Self::Rejection> {
        Ok(parts
            .extensions
            .get::<Caller>()
            .cloned()
            .unwrap_or(Caller::Trusted))
    }
}

/// The `{appInstanceId}` of an app-scoped route, after checking that the caller may act for it.
#[derive(Debug, Clone)]
pub struct AppScope(pub AppInstanceId);

impl<S: Send + Sync> FromRequestParts<S> for AppScope {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, Self::Rejection> {
        let params = RawPathParams::from_request_parts(parts, state)
            .await
            .map_err(|e| ApiError::BadRequest(e.body_text()))?;
        let raw = params
            .iter()
            .find(|(name, _)| *name == "appInstanceId")
            .map(|(_, value)| value)
            .ok_or_else(|| ApiError::Internal("route has no appInstanceId".into()))?;
        let app = AppInstanceId::parse(raw).map_err(ApiError::BadRequest)?;
        match Caller::from_request_parts(parts, state).await? {
            Caller::Trusted => Ok(AppScope(app)),
            Caller::App(caller) if caller == app => Ok(AppScope(app)),
            Caller::App(caller) => Err(ApiError::Forbidden(format!(
                "application instance {caller} may not act for {app}"
            ))),
        }
    }
}
