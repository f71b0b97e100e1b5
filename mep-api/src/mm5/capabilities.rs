//! Platform capabilities (`/mepcfg/mec_platform_config/v1/capabilities`): the services registered
//! on this platform and who consumes them.

use std::sync::Arc;

use axum::extract::{RawQuery, State};
use axum::response::{IntoResponse, Response};
use axum::Json;

use crate::http::extract::ApiPath as Path;
use crate::problem::{ApiError, ProblemDetails};
use crate::registry::{DiscoveryQuery, Registry};

pub fn router(registry: Arc<Registry>) -> utoipa_axum::router::OpenApiRouter {
    utoipa_axum::router::OpenApiRouter::new()
        .routes(utoipa_axum::routes!(list))
        .routes(utoipa_axum::routes!(one))
        .with_state(registry)
}

#[utoipa::path(
get, path = "/mepcfg/mec_platform_config/v1/capabilities", operation_id = "list_capabilities", tag = "capabilities", summary = "The services registered on the platform", params(crate::openapi::params::DiscoveryFilters), responses((status = 200, description = "The services", content_type = "application/json"))
)]
async fn list(
    State(registry): State<Arc<Registry>>,
    RawQuery(q): RawQuery,
) -> Result<Response, ApiError> {
    let query = DiscoveryQuery::parse(q.as_deref()).map_err(ApiError::BadRequest)?;
    Ok(Json(registry.capabilities(&query, None)).into_response())
}

#[utoipa::path(
get, path = "/mepcfg/mec_platform_config/v1/capabilities/{capabilityId}", operation_id = "get_capability", tag = "capabilities", summary = "One registered service", params(("capabilityId" = String, Path, description = "The service instance")), responses((status = 200, description = "The service", content_type = "application/json"), (status = 404, description = "No such resource", body = ProblemDetails, content_type = "application/problem+json"))
)]
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
