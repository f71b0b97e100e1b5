//! App instance termination, served on Mm5 only (EdgeGallery's path): notify, wait for
//! confirmation, remove everything the application instance had.

use std::sync::Arc;

use axum::extract::State;
use axum::response::{IntoResponse, Response};
use axum::routing::delete;
use axum::{Json, Router};

use crate::apps::Apps;
use crate::http::extract::ApiPath as Path;
use crate::model::ids::AppInstanceId;
use crate::problem::ApiError;

pub fn router(apps: Arc<Apps>) -> Router {
    Router::new()
        .route(
            "/mep/mec_app_support/v1/applications/{appInstanceId}/AppInstanceTermination",
            delete(terminate),
        )
        .with_state(apps)
}

async fn terminate(
    State(apps): State<Arc<Apps>>,
    Path(app): Path<String>,
) -> Result<Response, ApiError> {
    let app = AppInstanceId::parse(&app).map_err(ApiError::BadRequest)?;
    Ok(Json(apps.terminate(&app).await?).into_response())
}
