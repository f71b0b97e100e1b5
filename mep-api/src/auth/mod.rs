//! Who is calling. Every Mp1 request is attributed to a [`Caller`] by one extractor, and every
//! app-scoped route checks it through [`AppScope`]; token authentication ([`middleware`]) inserts
//! the `Caller` into the request extensions before routing.
//!
//! The parts: [`credentials`] (AK/SK provisioned over Mm5, sealed by [`secrets`]), [`endpoint`]
//! (`POST /mep/token` by OAuth client credentials or EdgeGallery's [`signing`]), [`keys`] and
//! [`tokens`] (ES256 JWTs and their rotation), [`lockout`], and [`callbacks`] (the operator's
//! allow-list of notification destinations).

pub mod callbacks;
pub mod credentials;
pub mod endpoint;
pub mod keys;
pub mod lockout;
pub mod middleware;
mod replay;
pub mod secrets;
pub mod service;
pub mod shared_keys;
pub mod signing;
pub mod tokens;

pub use callbacks::CallbackPolicy;
pub use service::{Auth, AuthConfig};

use std::sync::Arc;

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

/// Which application instances the platform knows: an app-scoped URI naming any other is 404.
///
/// An application instance is known once the platform manager configured it over Mm5
/// (credentials or `appd_configuration`) or it registered itself (`/registrations`); where every
/// caller is trusted (`--no-auth`), also while it holds a service or a subscription.
pub trait AppDirectory: Send + Sync + 'static {
    fn knows(&self, app: &AppInstanceId) -> bool;

    /// Whether registering a service or a subscription may bring an unknown application
    /// instance into being (only where every caller is trusted, so that trying mep out needs no
    /// Mm5 step).
    fn admits_new_registrants(&self) -> bool;
}

/// The platform's [`AppDirectory`], for the app-scoped extractors.
#[derive(Clone)]
pub struct Directory(pub Arc<dyn AppDirectory>);

/// The `{appInstanceId}` of an app-scoped route, after checking that the application instance
/// exists (404 otherwise) and that the caller may act for it (403 otherwise). Existence is
/// decided first, so a caller learns nothing about instances it may not see.
#[derive(Debug, Clone)]
pub struct AppScope(pub AppInstanceId);

impl<S: Send + Sync> FromRequestParts<S> for AppScope {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, Self::Rejection> {
        scope(parts, state, false).await.map(AppScope)
    }
}

/// Like [`AppScope`], for the requests that register something (a service, a subscription):
/// where the directory admits new registrants, an unknown application instance may make them.
#[derive(Debug, Clone)]
pub struct RegistrantScope(pub AppInstanceId);

impl<S: Send + Sync> FromRequestParts<S> for RegistrantScope {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, Self::Rejection> {
        scope(parts, state, true).await.map(RegistrantScope)
    }
}

async fn scope<S: Send + Sync>(
    parts: &mut Parts,
    state: &S,
    registers: bool,
) -> Result<AppInstanceId, ApiError> {
    let params = RawPathParams::from_request_parts(parts, state)
        .await
        .map_err(|e| ApiError::BadRequest(e.body_text()))?;
    let raw = params
        .iter()
        .find(|(name, _)| *name == "appInstanceId")
        .map(|(_, value)| value)
        .ok_or_else(|| ApiError::Internal("route has no appInstanceId".into()))?;
    let app = AppInstanceId::parse(raw).map_err(ApiError::BadRequest)?;
    let caller = Caller::from_request_parts(parts, state).await?;
    if caller == Caller::App(app.clone()) {
        return Ok(app);
    }
    let directory = parts
        .extensions
        .get::<Directory>()
        .ok_or_else(|| ApiError::Internal("no application directory on this router".into()))?;
    match caller {
        _ if !directory.0.knows(&app) => {
            if caller == Caller::Trusted && registers && directory.0.admits_new_registrants() {
                Ok(app)
            } else {
                Err(ApiError::NotFound(format!(
                    "application instance {app} is not known to this platform"
                )))
            }
        }
        Caller::Trusted => Ok(app),
        Caller::App(caller) => Err(ApiError::Forbidden(format!(
            "application instance {caller} may not act for {app}"
        ))),
    }
}

/// The service names global discovery may show the caller; `None` shows all. Set by the bearer
/// middleware when discovery is restricted to `requiredServices`.
#[derive(Debug, Clone, Default)]
pub struct VisibleServices(pub Option<Arc<[String]>>);

impl<S: Send + Sync> FromRequestParts<S> for VisibleServices {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, _: &S) -> Result<Self, Self::Rejection> {
        Ok(parts
            .extensions
            .get::<VisibleServices>()
            .cloned()
            .unwrap_or_default())
    }
}

/// The operator's callback allow-list, for handlers that create subscriptions.
#[derive(Debug, Clone, Default)]
pub struct CallbackAllow(pub Arc<CallbackPolicy>);

impl<S: Send + Sync> FromRequestParts<S> for CallbackAllow {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, _: &S) -> Result<Self, Self::Rejection> {
        Ok(parts
            .extensions
            .get::<CallbackAllow>()
            .cloned()
            .unwrap_or_default())
    }
}

impl CallbackAllow {
    /// 400 when `callback` is not allowed.
    pub fn check(&self, callback: &str) -> Result<(), ApiError> {
        self.0.check(callback).map_err(ApiError::BadRequest)
    }
}

/// Puts the Mp1 API behind bearer authentication (unless auth is off) and gives its handlers the
/// callback allow-list and the application directory.
pub fn protect(
    api: axum::Router,
    auth: &Arc<Auth>,
    callbacks: &CallbackPolicy,
    directory: Arc<dyn AppDirectory>,
) -> axum::Router {
    let api = api
        .layer(axum::Extension(CallbackAllow(Arc::new(callbacks.clone()))))
        .layer(axum::Extension(Directory(directory)));
    if auth.config().enabled {
        api.layer(axum::middleware::from_fn_with_state(
            auth.clone(),
            middleware::require_bearer,
        ))
    } else {
        api
    }
}
