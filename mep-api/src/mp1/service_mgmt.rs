//! MEC service management API (`/mep/mec_service_mgmt/v1`, MEC 011 clause 8), also routed under
//! the bare root and as `v2` (see [`SERVICE_MGMT_PREFIXES`]); links always name the canonical URI.

use std::sync::Arc;

use axum::extract::{RawQuery, State};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};
use http::StatusCode;

use super::{created, json, with_etag};
use crate::auth::{AppScope, CallbackAllow, Caller, RegistrantScope, VisibleServices};
use crate::http::extract::{ApiJson, ApiPath as Path, IfMatch};
use crate::links::{nest_under, SERVICE_MGMT_PREFIXES};
use crate::model::common::ServiceState;
use crate::model::ids::AppInstanceId;
use crate::model::service::{ServiceInfoBody, ServiceLivenessUpdate, ServiceRequest};
use crate::model::subscription::SerAvailabilitySubscriptionBody;
use crate::problem::ApiError;
use crate::registry::{DiscoveryQuery, Registry, Rendered};

/// The routes of the service management API, under every prefix it answers to.
pub fn router(registry: Arc<Registry>) -> Router {
    let api = Router::new()
        .route("/services", get(discover))
        .route("/services/{serviceId}", get(get_service))
        .route("/transports", get(transports))
        .route(
            "/applications/{appInstanceId}/services",
            get(discover_app).post(register),
        )
        .route(
            "/applications/{appInstanceId}/services/{serviceId}",
            get(get_app_service).put(update).delete(deregister),
        )
        .route(
            "/applications/{appInstanceId}/services/{serviceId}/liveness",
            get(get_liveness).patch(heartbeat).put(heartbeat_put),
        )
        .route(
            "/applications/{appInstanceId}/subscriptions",
            get(list_subscriptions).post(subscribe),
        )
        .route(
            "/applications/{appInstanceId}/subscriptions/{subscriptionId}",
            get(get_subscription).delete(unsubscribe),
        )
        .with_state(registry);
    nest_under(&SERVICE_MGMT_PREFIXES, api)
}

type Reg = State<Arc<Registry>>;

async fn discover(
    State(registry): Reg,
    _caller: Caller,
    VisibleServices(visible): VisibleServices,
    RawQuery(q): RawQuery,
) -> Result<Response, ApiError> {
    let mut query = DiscoveryQuery::parse(q.as_deref()).map_err(ApiError::BadRequest)?;
    query.visible_names = visible;
    Ok(json(StatusCode::OK, registry.discover(&query, None)))
}

async fn get_service(
    State(registry): Reg,
    _caller: Caller,
    Path(service_id): Path<String>,
) -> Result<Response, ApiError> {
    let rendered = registry.service(&service_id)?;
    Ok(with_etag(
        json(StatusCode::OK, rendered.json),
        &rendered.etag,
    ))
}

async fn transports(State(registry): Reg, _caller: Caller) -> Response {
    Json(registry.transports()).into_response()
}

async fn discover_app(
    State(registry): Reg,
    AppScope(app): AppScope,
    RawQuery(q): RawQuery,
) -> Result<Response, ApiError> {
    let query = DiscoveryQuery::parse(q.as_deref()).map_err(ApiError::BadRequest)?;
    Ok(json(StatusCode::OK, registry.discover(&query, Some(&app))))
}

async fn register(
    State(registry): Reg,
    RegistrantScope(app): RegistrantScope,
    ApiJson(body): ApiJson<ServiceInfoBody>,
) -> Result<Response, ApiError> {
    let spec = body
        .validate(ServiceRequest::Register)
        .map_err(ApiError::BadRequest)?;
    let (id, rendered) = registry.register(app.clone(), spec).await?;
    let location = registry.links().app_service(app.as_str(), &id);
    Ok(with_etag(created(&location, rendered.json), &rendered.etag))
}

async fn get_app_service(
    State(registry): Reg,
    AppScope(app): AppScope,
    Path((_, service_id)): Path<(String, String)>,
) -> Result<Response, ApiError> {
    let rendered = registry.app_service(&app, &service_id)?;
    Ok(with_etag(
        json(StatusCode::OK, rendered.json),
        &rendered.etag,
    ))
}

async fn update(
    State(registry): Reg,
    AppScope(app): AppScope,
    Path((_, service_id)): Path<(String, String)>,
    IfMatch(if_match): IfMatch,
    ApiJson(body): ApiJson<ServiceInfoBody>,
) -> Result<Response, ApiError> {
    // serInstanceId is read-only: the URI names the service, whatever the body says.
    let spec = body
        .validate(ServiceRequest::Replace)
        .map_err(ApiError::BadRequest)?;
    let rendered = registry
        .update(&app, &service_id, spec, if_match.as_deref())
        .await?;
    Ok(with_etag(
        json(StatusCode::OK, rendered.json),
        &rendered.etag,
    ))
}

async fn deregister(
    State(registry): Reg,
    AppScope(app): AppScope,
    Path((_, service_id)): Path<(String, String)>,
) -> Result<StatusCode, ApiError> {
    registry.deregister(&app, &service_id).await?;
    Ok(StatusCode::NO_CONTENT)
}

async fn get_liveness(
    State(registry): Reg,
    AppScope(app): AppScope,
    Path((_, service_id)): Path<(String, String)>,
) -> Result<Response, ApiError> {
    let rendered = registry.liveness_info(&app, &service_id)?;
    Ok(with_etag(
        json(StatusCode::OK, rendered.json),
        &rendered.etag,
    ))
}

/// `PATCH` of the liveness resource: 200 with the `ServiceLivenessInfo` after the heartbeat
/// (MEC 011 v2.2.1 allows 204 or 200; ETSI's v2.2.1 tests expect the body).
async fn heartbeat(
    State(registry): Reg,
    AppScope(app): AppScope,
    Path((_, service_id)): Path<(String, String)>,
    IfMatch(if_match): IfMatch,
    ApiJson(update): ApiJson<ServiceLivenessUpdate>,
) -> Result<Response, ApiError> {
    let rendered = beat(&registry, &app, &service_id, if_match, update)?;
    Ok(with_etag(
        json(StatusCode::OK, rendered.json),
        &rendered.etag,
    ))
}

/// `PUT` of the liveness resource, as EdgeGallery's mep-agent sends it: 204.
async fn heartbeat_put(
    State(registry): Reg,
    AppScope(app): AppScope,
    Path((_, service_id)): Path<(String, String)>,
    IfMatch(if_match): IfMatch,
    ApiJson(update): ApiJson<ServiceLivenessUpdate>,
) -> Result<StatusCode, ApiError> {
    beat(&registry, &app, &service_id, if_match, update)?;
    Ok(StatusCode::NO_CONTENT)
}

fn beat(
    registry: &Registry,
    app: &AppInstanceId,
    service_id: &str,
    if_match: Option<String>,
    update: ServiceLivenessUpdate,
) -> Result<Rendered, ApiError> {
    if update.state != ServiceState::Active {
        return Err(ApiError::BadRequest(
            "a liveness update may only set state ACTIVE".into(),
        ));
    }
    Ok(registry.heartbeat(app, service_id, if_match.as_deref())?)
}

async fn list_subscriptions(State(registry): Reg, AppScope(app): AppScope) -> Response {
    Json(registry.subscription_list(&app)).into_response()
}

async fn subscribe(
    State(registry): Reg,
    RegistrantScope(app): RegistrantScope,
    callbacks: CallbackAllow,
    ApiJson(body): ApiJson<SerAvailabilitySubscriptionBody>,
) -> Result<Response, ApiError> {
    let sub = body.validate(app.clone()).map_err(ApiError::BadRequest)?;
    callbacks.check(&sub.callback_reference)?;
    let (id, body) = registry.subscribe(sub).await?;
    let location = registry.links().ser_subscription(app.as_str(), &id);
    Ok(created(&location, body))
}

async fn get_subscription(
    State(registry): Reg,
    AppScope(app): AppScope,
    Path((_, subscription_id)): Path<(String, String)>,
) -> Result<Response, ApiError> {
    Ok(json(
        StatusCode::OK,
        registry.subscription(&app, &subscription_id)?,
    ))
}

async fn unsubscribe(
    State(registry): Reg,
    AppScope(app): AppScope,
    Path((_, subscription_id)): Path<(String, String)>,
) -> Result<StatusCode, ApiError> {
    registry.unsubscribe(&app, &subscription_id).await?;
    Ok(StatusCode::NO_CONTENT)
}
