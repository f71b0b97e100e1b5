//! App instance termination, served on Mm5 only (EdgeGallery's path): notify, wait for
//! confirmation, remove everything the application instance had, its credentials last (which
//! also revokes its tokens).

use std::sync::Arc;

use axum::extract::State;
use axum::response::{IntoResponse, Response};
use axum::Json;

use crate::apps::Apps;
use crate::auth::Auth;
use crate::http::extract::ApiPath as Path;
use crate::model::ids::AppInstanceId;
use crate::problem::{ApiError, ProblemDetails};

pub fn router(apps: Arc<Apps>, auth: Arc<Auth>) -> utoipa_axum::router::OpenApiRouter {
    utoipa_axum::router::OpenApiRouter::new()
        .routes(utoipa_axum::routes!(terminate))
        .with_state((apps, auth))
}

#[utoipa::path(
delete, path = "/mep/mec_app_support/v1/applications/{appInstanceId}/AppInstanceTermination", tag = "termination", summary = "Terminate an application instance: notify, wait for confirmation, remove what it had", params(crate::openapi::params::AppPath), responses((status = 200, description = "What the termination did", body = crate::apps::termination::TerminationReport), (status = 404, description = "No such resource", body = ProblemDetails, content_type = "application/problem+json"))
)]
async fn terminate(
    State((apps, auth)): State<(Arc<Apps>, Arc<Auth>)>,
    Path(app): Path<String>,
) -> Result<Response, ApiError> {
    let app = AppInstanceId::parse(&app).map_err(ApiError::BadRequest)?;
    let mut report = apps.terminate(&app).await?;
    report.credentials_removed = auth.remove_credentials(&app).await?;
    Ok(Json(report).into_response())
}
