//! Per-application rule configuration for the platform manager, in EdgeGallery's
//! `appd_configuration` shape, plus task queries and the readiness the application confirmed.

use std::sync::Arc;

use axum::extract::State;
use axum::response::{IntoResponse, Response};
use axum::Json;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use crate::apps::AppSummary;
use crate::apps::{Apps, RuleChangeError};
use crate::http::extract::{ApiJson, ApiPath as Path};
use crate::model::appd::{AppDConfig, TaskProgress};
use crate::model::ids::AppInstanceId;
use crate::openapi::params::{AppPath, TaskPath};
use crate::problem::{ApiError, ProblemDetails};

pub fn router(apps: Arc<Apps>) -> OpenApiRouter {
    OpenApiRouter::new()
        .routes(routes!(list))
        .routes(routes!(get_config, create, update, remove))
        .routes(routes!(task))
        .routes(routes!(readiness))
        .with_state(apps)
}

type St = State<Arc<Apps>>;

fn app_id(raw: &str) -> Result<AppInstanceId, ApiError> {
    AppInstanceId::parse(raw).map_err(ApiError::BadRequest)
}

/// Every configured application instance with its rule counts and readiness.
#[utoipa::path(
get, path = "/mepcfg/app_lcm/v1/applications", operation_id = "list_applications", tag = "app configuration", summary = "mep addition: every configured application instance", responses((status = 200, description = "Rule counts and readiness per instance", body = [AppSummary]))
)]
async fn list(State(apps): St) -> Response {
    Json(apps.summaries()).into_response()
}

#[utoipa::path(
get, path = "/mepcfg/app_lcm/v1/applications/{appInstanceId}/appd_configuration", tag = "app configuration", summary = "An instance's rule configuration", params(AppPath), responses((status = 200, description = "The configuration", body = AppDConfig), (status = 404, description = "No such resource", body = ProblemDetails, content_type = "application/problem+json"))
)]
async fn get_config(State(apps): St, Path(app): Path<String>) -> Result<Response, ApiError> {
    let app = app_id(&app)?;
    apps.config(&app)
        .map(|c| Json(c).into_response())
        .ok_or_else(|| {
            ApiError::NotFound(format!("application instance {app} has no configuration"))
        })
}

#[utoipa::path(
post, path = "/mepcfg/app_lcm/v1/applications/{appInstanceId}/appd_configuration", tag = "app configuration", summary = "Create an instance's rule configuration (a task)", params(AppPath), request_body = AppDConfig, responses((status = 200, description = "The task's progress", body = TaskProgress))
)]
async fn create(
    State(apps): St,
    Path(app): Path<String>,
    ApiJson(config): ApiJson<AppDConfig>,
) -> Result<Response, ApiError> {
    let app = app_id(&app)?;
    let who = app.clone();
    let (outcome, _) = apps
        .edit(&app, move |current| match current {
            Some(_) => Err(RuleChangeError::Conflict(format!(
                "application instance {who} is already configured; use PUT to change it"
            ))),
            None => Ok(Some(config)),
        })
        .await?;
    Ok(Json(outcome.progress).into_response())
}

#[utoipa::path(
put, path = "/mepcfg/app_lcm/v1/applications/{appInstanceId}/appd_configuration", tag = "app configuration", summary = "Replace an instance's rule configuration (a task)", params(AppPath), request_body = AppDConfig, responses((status = 200, description = "The task's progress", body = TaskProgress), (status = 404, description = "No such resource", body = ProblemDetails, content_type = "application/problem+json"))
)]
async fn update(
    State(apps): St,
    Path(app): Path<String>,
    ApiJson(config): ApiJson<AppDConfig>,
) -> Result<Response, ApiError> {
    let app = app_id(&app)?;
    let who = app.clone();
    let (outcome, _) = apps
        .edit(&app, move |current| match current {
            None => Err(RuleChangeError::NotFound(format!(
                "application instance {who} has no configuration; use POST to create it"
            ))),
            Some(c) if c.app_name != config.app_name => Err(RuleChangeError::Invalid(format!(
                "appName {} differs from the configured {}",
                config.app_name, c.app_name
            ))),
            Some(_) => Ok(Some(config)),
        })
        .await?;
    Ok(Json(outcome.progress).into_response())
}

#[utoipa::path(
delete, path = "/mepcfg/app_lcm/v1/applications/{appInstanceId}/appd_configuration", tag = "app configuration", summary = "Remove an instance's rule configuration (a task)", params(AppPath), responses((status = 200, description = "The task's progress", body = TaskProgress), (status = 404, description = "No such resource", body = ProblemDetails, content_type = "application/problem+json"))
)]
async fn remove(State(apps): St, Path(app): Path<String>) -> Result<Response, ApiError> {
    let app = app_id(&app)?;
    let who = app.clone();
    let (outcome, _) = apps
        .edit(&app, move |current| match current {
            None => Err(RuleChangeError::NotFound(format!(
                "application instance {who} has no configuration"
            ))),
            Some(_) => Ok(None),
        })
        .await?;
    Ok(Json(outcome.progress).into_response())
}

#[utoipa::path(
get, path = "/mepcfg/app_lcm/v1/tasks/{taskId}/appd_configuration", tag = "app configuration", summary = "A task's progress", params(TaskPath), responses((status = 200, description = "The task's progress", body = TaskProgress), (status = 404, description = "No such resource", body = ProblemDetails, content_type = "application/problem+json"))
)]
async fn task(State(apps): St, Path(task_id): Path<String>) -> Result<Response, ApiError> {
    apps.task(&task_id)
        .map(|t| Json(t).into_response())
        .ok_or_else(|| ApiError::NotFound(format!("task {task_id} not found")))
}

#[utoipa::path(
get, path = "/mepcfg/app_lcm/v1/applications/{appInstanceId}/readiness", tag = "app configuration", summary = "mep addition: whether the instance confirmed readiness", params(AppPath), responses((status = 200, description = "When it confirmed", content_type = "application/json"), (status = 404, description = "No such resource", body = ProblemDetails, content_type = "application/problem+json"))
)]
async fn readiness(State(apps): St, Path(app): Path<String>) -> Result<Response, ApiError> {
    let app = app_id(&app)?;
    let r = apps.readiness(&app).ok_or_else(|| {
        ApiError::NotFound(format!(
            "application instance {app} has not confirmed readiness"
        ))
    })?;
    Ok(Json(serde_json::json!({
        "appInstanceId": app.as_str(),
        "indication": "READY",
        "timeStamp": {"seconds": r.seconds, "nanoSeconds": r.nano_seconds},
    }))
    .into_response())
}
