//! MEC service management API (`/mep/mec_service_mgmt/v1`, MEC 011 clause 8), also routed under
//! the bare root and as `v2` (see [`SERVICE_MGMT_PREFIXES`]); links always name the canonical URI.

use std::sync::Arc;

use axum::extract::{RawQuery, State};
use axum::response::{IntoResponse, Response};
use axum::Json;
use http::StatusCode;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use super::{created, json, with_etag};
use crate::auth::{AppScope, CallbackAllow, Caller, RegistrantScope, VisibleServices};
use crate::http::extract::{ApiJson, ApiPath as Path, IfMatch};
use crate::links::{nest_under, SERVICE_MGMT_PREFIXES};
use crate::model::common::ServiceState;
use crate::model::ids::AppInstanceId;
use crate::model::service::{
    ServiceInfoBody, ServiceInfoView, ServiceLivenessInfo, ServiceLivenessUpdate, ServiceRequest,
    TransportInfo,
};
use crate::model::subscription::{
    SerAvailabilitySubscriptionBody, SerAvailabilitySubscriptionView,
    ServiceAvailabilityNotification, SubscriptionLinkList,
};
use crate::openapi::params::{
    AppPath, DiscoveryFilters, IfMatchHeader, ServicePath, SubscriptionPath,
};
use crate::openapi::with_schema;
use crate::problem::ApiError;
use crate::problem::ProblemDetails;
use crate::registry::{DiscoveryQuery, Registry, Rendered};

/// The routes of the service management API, under every prefix it answers to.
pub fn router(registry: Arc<Registry>) -> OpenApiRouter {
    let api = OpenApiRouter::new()
        .routes(routes!(discover))
        .routes(routes!(get_service))
        .routes(routes!(transports))
        .routes(routes!(discover_app, register))
        .routes(routes!(get_app_service, update, deregister))
        .routes(routes!(get_liveness, heartbeat, heartbeat_put))
        .routes(routes!(list_subscriptions, subscribe))
        .routes(routes!(get_subscription, unsubscribe))
        .with_state(registry);
    nest_under(
        &SERVICE_MGMT_PREFIXES,
        with_schema::<ServiceAvailabilityNotification>(api),
    )
}

type Reg = State<Arc<Registry>>;

#[utoipa::path(
get, path = "/services", tag = "service management",
    summary = "Discover the services visible to the caller",
    params(DiscoveryFilters),
    responses((status = 200, description = "The matching services", body = [ServiceInfoView]))
)]
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

#[utoipa::path(
get, path = "/services/{serviceId}", tag = "service management",
    summary = "Read one service",
    params(ServicePath),
    responses((status = 200, description = "The service, with its ETag", body = ServiceInfoView), (status = 404, description = "No such resource", body = ProblemDetails, content_type = "application/problem+json"))
)]
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

#[utoipa::path(
get, path = "/transports", tag = "service management",
    summary = "The transports the platform offers",
    responses((status = 200, description = "The transports", body = [TransportInfo]))
)]
async fn transports(State(registry): Reg, _caller: Caller) -> Response {
    Json(registry.transports()).into_response()
}

#[utoipa::path(
get, path = "/applications/{appInstanceId}/services", tag = "service management",
    summary = "Discover the services an application registered",
    params(AppPath, DiscoveryFilters),
    responses((status = 200, description = "The matching services", body = [ServiceInfoView]))
)]
async fn discover_app(
    State(registry): Reg,
    AppScope(app): AppScope,
    RawQuery(q): RawQuery,
) -> Result<Response, ApiError> {
    let query = DiscoveryQuery::parse(q.as_deref()).map_err(ApiError::BadRequest)?;
    Ok(json(StatusCode::OK, registry.discover(&query, Some(&app))))
}

#[utoipa::path(
post, path = "/applications/{appInstanceId}/services", tag = "service management",
    summary = "Register a service",
    params(AppPath),
    request_body = ServiceInfoBody,
    responses((status = 201, description = "Registered; Location names the new service", body = ServiceInfoView))
)]
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

#[utoipa::path(
get, path = "/applications/{appInstanceId}/services/{serviceId}", tag = "service management",
    summary = "Read a service the application registered",
    params(AppPath, ServicePath),
    responses((status = 200, description = "The service, with its ETag", body = ServiceInfoView), (status = 404, description = "No such resource", body = ProblemDetails, content_type = "application/problem+json"))
)]
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

#[utoipa::path(
put, path = "/applications/{appInstanceId}/services/{serviceId}", tag = "service management",
    summary = "Replace a service",
    params(AppPath, ServicePath, IfMatchHeader),
    request_body = ServiceInfoBody,
    responses((status = 200, description = "The service as replaced", body = ServiceInfoView), (status = 404, description = "No such resource", body = ProblemDetails, content_type = "application/problem+json"), (status = 412, description = "If-Match does not hold the current ETag", body = ProblemDetails, content_type = "application/problem+json"))
)]
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

#[utoipa::path(
delete, path = "/applications/{appInstanceId}/services/{serviceId}", tag = "service management",
    summary = "Deregister a service",
    params(AppPath, ServicePath),
    responses((status = 204, description = "Deregistered"), (status = 404, description = "No such resource", body = ProblemDetails, content_type = "application/problem+json"))
)]
async fn deregister(
    State(registry): Reg,
    AppScope(app): AppScope,
    Path((_, service_id)): Path<(String, String)>,
) -> Result<StatusCode, ApiError> {
    registry.deregister(&app, &service_id).await?;
    Ok(StatusCode::NO_CONTENT)
}

#[utoipa::path(
get, path = "/applications/{appInstanceId}/services/{serviceId}/liveness", tag = "service management",
    summary = "Since MEC 011 v2.2.1: read a service's liveness",
    params(AppPath, ServicePath),
    responses((status = 200, description = "The liveness state", body = ServiceLivenessInfo), (status = 404, description = "No such resource", body = ProblemDetails, content_type = "application/problem+json"))
)]
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
#[utoipa::path(
patch, path = "/applications/{appInstanceId}/services/{serviceId}/liveness", tag = "service management",
    summary = "Since MEC 011 v2.2.1: a heartbeat",
    params(AppPath, ServicePath, IfMatchHeader),
    request_body = ServiceLivenessUpdate,
    responses((status = 200, description = "The liveness state after the heartbeat", body = ServiceLivenessInfo), (status = 404, description = "No such resource", body = ProblemDetails, content_type = "application/problem+json"), (status = 412, description = "If-Match does not hold the current ETag", body = ProblemDetails, content_type = "application/problem+json"))
)]
async fn heartbeat(
    State(registry): Reg,
    AppScope(app): AppScope,
    Path((_, service_id)): Path<(String, String)>,
    IfMatch(if_match): IfMatch,
    ApiJson(update): ApiJson<ServiceLivenessUpdate>,
) -> Result<Response, ApiError> {
    let rendered = beat(&registry, &app, &service_id, if_match, update).await?;
    Ok(with_etag(
        json(StatusCode::OK, rendered.json),
        &rendered.etag,
    ))
}

/// `PUT` of the liveness resource, as EdgeGallery's mep-agent sends it: 204.
#[utoipa::path(
put, path = "/applications/{appInstanceId}/services/{serviceId}/liveness", tag = "service management",
    summary = "mep addition: a heartbeat by PUT, for clients that cannot PATCH",
    params(AppPath, ServicePath, IfMatchHeader),
    request_body = ServiceLivenessUpdate,
    responses((status = 204, description = "Heartbeat recorded"), (status = 404, description = "No such resource", body = ProblemDetails, content_type = "application/problem+json"), (status = 412, description = "If-Match does not hold the current ETag", body = ProblemDetails, content_type = "application/problem+json"))
)]
async fn heartbeat_put(
    State(registry): Reg,
    AppScope(app): AppScope,
    Path((_, service_id)): Path<(String, String)>,
    IfMatch(if_match): IfMatch,
    ApiJson(update): ApiJson<ServiceLivenessUpdate>,
) -> Result<StatusCode, ApiError> {
    beat(&registry, &app, &service_id, if_match, update).await?;
    Ok(StatusCode::NO_CONTENT)
}

async fn beat(
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
    let rendered = registry.heartbeat(app, service_id, if_match.as_deref())?;
    registry.share_heartbeat(service_id).await;
    Ok(rendered)
}

#[utoipa::path(
get, path = "/applications/{appInstanceId}/subscriptions", tag = "service management",
    summary = "The application's service availability subscriptions",
    params(AppPath),
    responses((status = 200, description = "Links to the subscriptions", body = SubscriptionLinkList))
)]
async fn list_subscriptions(State(registry): Reg, AppScope(app): AppScope) -> Response {
    Json(registry.subscription_list(&app)).into_response()
}

#[utoipa::path(
post, path = "/applications/{appInstanceId}/subscriptions", tag = "service management",
    summary = "Subscribe to service availability notifications",
    description = "Notifications (`ServiceAvailabilityNotification`) are POSTed to `callbackReference`.",
    params(AppPath),
    request_body = SerAvailabilitySubscriptionBody,
    responses((status = 201, description = "Subscribed; Location names the subscription", body = SerAvailabilitySubscriptionView))
)]
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

#[utoipa::path(
get, path = "/applications/{appInstanceId}/subscriptions/{subscriptionId}", tag = "service management",
    summary = "Read a service availability subscription",
    params(AppPath, SubscriptionPath),
    responses((status = 200, description = "The subscription", body = SerAvailabilitySubscriptionView), (status = 404, description = "No such resource", body = ProblemDetails, content_type = "application/problem+json"))
)]
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

#[utoipa::path(
delete, path = "/applications/{appInstanceId}/subscriptions/{subscriptionId}", tag = "service management",
    summary = "Cancel a service availability subscription",
    params(AppPath, SubscriptionPath),
    responses((status = 204, description = "Cancelled"), (status = 404, description = "No such resource", body = ProblemDetails, content_type = "application/problem+json"))
)]
async fn unsubscribe(
    State(registry): Reg,
    AppScope(app): AppScope,
    Path((_, subscription_id)): Path<(String, String)>,
) -> Result<StatusCode, ApiError> {
    registry.unsubscribe(&app, &subscription_id).await?;
    Ok(StatusCode::NO_CONTENT)
}
