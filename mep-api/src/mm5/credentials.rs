//! Mm5 routes that manage application credentials (EdgeGallery mepauth's confs API) and the token
//! signing keys.
//!
//! - `PUT /mep/appMng/v1/applications/{appInstanceId}/confs` creates (201) or replaces (200) the
//!   AK/SK and `appInfo`; the answer never contains the secret;
//! - `GET` of the same URI answers the credentials without the secret;
//! - `DELETE` removes them (204) and revokes every token the application holds;
//! - `POST /mep/auth/v1/keys/rotate` makes a new token signing key current.

use std::sync::Arc;

use axum::extract::State;
use axum::response::{IntoResponse, Response};
use bytes::Bytes;
use http::{HeaderMap, StatusCode};

use crate::auth::credentials::{ConfsBody, PutOutcome};
use crate::auth::Auth;
use crate::http::extract::{require_json_media_type, ApiPath as Path};
use crate::model::ids::AppInstanceId;
use crate::problem::{ApiError, ProblemDetails};

pub const CONFS_PATH: &str = "/mep/appMng/v1/applications/{appInstanceId}/confs";
pub const ROTATE_PATH: &str = "/mep/auth/v1/keys/rotate";

pub fn router(auth: Arc<Auth>) -> utoipa_axum::router::OpenApiRouter {
    utoipa_axum::router::OpenApiRouter::new()
        .routes(utoipa_axum::routes!(put_confs, get_confs, delete_confs))
        .routes(utoipa_axum::routes!(rotate))
        .with_state(auth)
}

fn app_id(raw: &str) -> Result<AppInstanceId, ApiError> {
    AppInstanceId::parse(raw).map_err(ApiError::BadRequest)
}

fn json(status: StatusCode, value: serde_json::Value) -> Response {
    (status, axum::Json(value)).into_response()
}

#[utoipa::path(
put, path = CONFS_PATH, tag = "credentials", summary = "Create (201) or replace (200) an instance's AK/SK (EdgeGallery mepauth)", params(crate::openapi::params::AppPath), request_body(content = ConfsBody, content_type = "application/json"), responses((status = 201, description = "Created; the answer never holds the secret", content_type = "application/json"), (status = 200, description = "Replaced", content_type = "application/json"))
)]
async fn put_confs(
    State(auth): State<Arc<Auth>>,
    Path(app): Path<String>,
    headers: HeaderMap,
    body: Bytes,
) -> Result<Response, ApiError> {
    let app = app_id(&app)?;
    require_json_media_type(&headers)?;
    // serde's messages can quote input values, and this input holds a secret: say only where.
    let parsed: ConfsBody = serde_json::from_slice(&body).map_err(|e| {
        ApiError::BadRequest(format!(
            "invalid request body ({:?} error at line {} column {}); expected \
             {{\"authInfo\":{{\"credentials\":{{\"accessKeyId\",\"secretKey\"}}}},\"appInfo\":{{..}}}}",
            e.classify(),
            e.line(),
            e.column()
        ))
    })?;
    let new = parsed.validate().map_err(ApiError::BadRequest)?;
    let (outcome, cred) = auth.credentials().put(app, new).await?;
    tracing::info!(app = %cred.app, access_key = %cred.access_key_id, ?outcome, "application credentials provisioned");
    let status = match outcome {
        PutOutcome::Created => StatusCode::CREATED,
        PutOutcome::Replaced => StatusCode::OK,
    };
    Ok(json(status, cred.view()))
}

#[utoipa::path(
get, path = CONFS_PATH, tag = "credentials", summary = "An instance's credentials, without the secret", params(crate::openapi::params::AppPath), responses((status = 200, description = "The credentials", content_type = "application/json"), (status = 404, description = "No such resource", body = ProblemDetails, content_type = "application/problem+json"))
)]
async fn get_confs(
    State(auth): State<Arc<Auth>>,
    Path(app): Path<String>,
) -> Result<Response, ApiError> {
    let app = app_id(&app)?;
    let cred = auth
        .credentials()
        .by_app(&app)
        .ok_or_else(|| ApiError::NotFound(format!("no credentials for {app}")))?;
    Ok(json(StatusCode::OK, cred.view()))
}

#[utoipa::path(
delete, path = CONFS_PATH, tag = "credentials", summary = "Remove an instance's credentials and revoke its tokens", params(crate::openapi::params::AppPath), responses((status = 204, description = "Removed"), (status = 404, description = "No such resource", body = ProblemDetails, content_type = "application/problem+json"))
)]
async fn delete_confs(
    State(auth): State<Arc<Auth>>,
    Path(app): Path<String>,
) -> Result<StatusCode, ApiError> {
    let app = app_id(&app)?;
    if !auth.remove_credentials(&app).await? {
        return Err(ApiError::NotFound(format!("no credentials for {app}")));
    }
    tracing::info!(%app, "application credentials removed; its tokens are revoked");
    Ok(StatusCode::NO_CONTENT)
}

#[utoipa::path(
post, path = ROTATE_PATH, tag = "credentials", summary = "mep addition: make a new token signing key current", responses((status = 200, description = "The new key id", content_type = "application/json"))
)]
async fn rotate(State(auth): State<Arc<Auth>>) -> Result<Response, ApiError> {
    let kid = tokio::task::spawn_blocking(move || auth.rotate_keys())
        .await
        .map_err(|e| ApiError::Internal(e.to_string()))?
        .map_err(|e| ApiError::Internal(e.to_string()))?;
    Ok(json(StatusCode::OK, serde_json::json!({"kid": kid})))
}
