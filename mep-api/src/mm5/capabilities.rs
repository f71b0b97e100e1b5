//! Platform capabilities (`/mepcfg/mec_platform_config/v1/capabilities`): the services registered
//! on this platform and who consumes them.

use std::sync::Arc;

use axum::extract::{RawQuery, State};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};

use crate::http::extract::ApiPath as Path;
use crate::problem::ApiError;
use crate::registry::{DiscoveryQuery, Registry};

pub fn router(registry: Arc<Registry>) -> Router {
    Router::new()
        .route("/mepcfg/mec_platform_config/v1/capabilities", get(list))
        .route(
            "/mepcfg/mec_platform_config/v1/capabilities/{capabilityId}",
            get(one),
        )
        .with_state(registry)
}

async fn list(
    State(registry): State<Arc<Registry>>,
    RawQuery(q): RawQuery,
) -> Result<Response, ApiError> {
    let query = DiscoveryQuery::parse(q.as_deref()).map_err(ApiError::BadRequest)?;
    Ok(Json(registry.capabilities(&query, None)).into_response())
}

async fn one(
    State(registry): State<Arc<Registry>>,
    Path(id): Path<String>,
) -> Result<Response, ApiError> {
    registry
        .capabilities(&DiscoveryQuery::default(), Some(&id))
        .into_iter()
        .next()
        .map(|c| Json(c).into_response())
        .ok_or_else(|| ApiError::NotFound(format!("capability {id} not found")))
}
