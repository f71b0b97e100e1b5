//! Per-application rule configuration for the platform manager, in EdgeGallery's
//! `appd_configuration` shape, plus task queries and the readiness the application confirmed.

use std::sync::Arc;

use axum::extract::State;
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};

use crate::apps::{Apps, RuleChangeError};
use crate::http::extract::{ApiJson, ApiPath as Path};
use crate::model::appd::AppDConfig;
use crate::model::ids::AppInstanceId;
use crate::problem::ApiError;

const APPS: &str = "/mepcfg/app_lcm/v1/applications/{appInstanceId}";

pub fn router(apps: Arc<Apps>) -> Router {
    Router::new()
        .route("/mepcfg/app_lcm/v1/applications", get(list))
        .route(
            &format!("{APPS}/appd_configuration"),
            get(get_config).post(create).put(update).delete(remove),
        )
        .route(
            "/mepcfg/app_lcm/v1/tasks/{taskId}/appd_configuration",
            get(task),
        )
        .route(&format!("{APPS}/readiness"), get(readiness))
        .with_state(apps)
}

type St = State<Arc<Apps>>;

fn app_id(raw: &str) -> Result<AppInstanceId, ApiError> {
    AppInstanceId::parse(raw).map_err(ApiError::BadRequest)
}

/// Every configured application instance with its rule counts and readiness.
async fn list(State(apps): St) -> Response {
    Json(apps.summaries()).into_response()
}

async fn get_config(State(apps): St, Path(app): Path<String>) -> Result<Response, ApiError> {
    let app = app_id(&app)?;
    apps.config(&app)
        .map(|c| Json(c).into_response())
        .ok_or_else(|| {
            ApiError::NotFound(format!("application instance {app} has no configuration"))
        })
}

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

async fn task(State(apps): St, Path(task_id): Path<String>) -> Result<Response, ApiError> {
    apps.task(&task_id)
        .map(|t| Json(t).into_response())
        .ok_or_else(|| ApiError::NotFound(format!("task {task_id} not found")))
}

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
