//! MEC application support API (`/mep/mec_app_support/v1`, MEC 011 clause 7), also routed under
//! the bare root and as `v2` (see [`APP_SUPPORT_PREFIXES`]).

use std::sync::Arc;

use axum::extract::State;
use axum::response::{IntoResponse, Response};
use axum::Json;
use http::StatusCode;
use mep_rules::{DnsRule, TrafficRule};
use serde::{Deserialize, Serialize};
use serde_json::Value;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use super::timing::{current_time, NtpServer, PtpMaster, TimingCaps};
use super::{created, json, with_etag};
use crate::apps::registrations::AppInfoMembers;
use crate::apps::termination::{AppTerminationNotification, SubscriptionView};
use crate::apps::{Apps, RuleChangeError};
use crate::auth::{AppScope, CallbackAllow, Caller, RegistrantScope};
use crate::clock::{unix_parts, Clock};
use crate::etag::{etag_of, if_match_holds};
use crate::http::extract::{ApiJson, ApiPath as Path, IfMatch};
use crate::links::{nest_under, APP_SUPPORT_PREFIXES};
use crate::model::appd::AppDConfig;
use crate::model::confirmation::{
    AppReadyConfirmation, AppTerminationConfirmation, ReadyIndicationType,
};
use crate::model::ids::AppInstanceId;
use crate::model::service::TimeStamp;
use crate::model::subscription::SubscriptionLinkList;
use crate::mp1::timing::CurrentTime;
use crate::openapi::params::{
    AppPath, DnsRulePath, IfMatchHeader, SubscriptionPath, TrafficRulePath,
};
use crate::openapi::with_schema;
use crate::problem::ApiError;
use crate::problem::ProblemDetails;

/// What the application support handlers use.
#[derive(Clone)]
pub struct AppSupportState {
    pub apps: Arc<Apps>,
    pub clock: Arc<dyn Clock>,
    pub ntp_servers: Arc<[NtpServer]>,
    pub ptp_masters: Arc<[PtpMaster]>,
}

/// The routes of the application support API, under every prefix it answers to.
pub fn router(state: AppSupportState) -> OpenApiRouter {
    let api = OpenApiRouter::new()
        .routes(routes!(list_traffic_rules))
        .routes(routes!(get_traffic_rule, put_traffic_rule))
        .routes(routes!(list_dns_rules))
        .routes(routes!(get_dns_rule, put_dns_rule))
        .routes(routes!(list_subscriptions, subscribe))
        .routes(routes!(get_subscription, unsubscribe))
        .routes(routes!(confirm_termination, confirm_termination_put))
        .routes(routes!(confirm_ready, confirm_ready_put))
        .routes(routes!(timing_caps))
        .routes(routes!(get_current_time))
        .routes(routes!(register_app))
        .routes(routes!(
            get_registration,
            put_registration,
            delete_registration
        ))
        .with_state(state);
    nest_under(
        &APP_SUPPORT_PREFIXES,
        with_schema::<AppTerminationNotification>(api),
    )
}

type St = State<AppSupportState>;

/// A kind of rule an application reads and switches over Mp1: one code path serves both.
trait AppRule: Serialize + Clone + Send + 'static {
    const KIND: &'static str;
    fn id(&self) -> &str;
    fn set_id(&mut self, id: String);
    fn of(config: &AppDConfig) -> &Vec<Self>;
    fn of_mut(config: &mut AppDConfig) -> &mut Vec<Self>;
}

impl AppRule for TrafficRule {
    const KIND: &'static str = "traffic rule";
    fn id(&self) -> &str {
        &self.traffic_rule_id
    }
    fn set_id(&mut self, id: String) {
        self.traffic_rule_id = id;
    }
    fn of(config: &AppDConfig) -> &Vec<Self> {
        &config.app_traffic_rule
    }
    fn of_mut(config: &mut AppDConfig) -> &mut Vec<Self> {
        &mut config.app_traffic_rule
    }
}

impl AppRule for DnsRule {
    const KIND: &'static str = "DNS rule";
    fn id(&self) -> &str {
        &self.dns_rule_id
    }
    fn set_id(&mut self, id: String) {
        self.dns_rule_id = id;
    }
    fn of(config: &AppDConfig) -> &Vec<Self> {
        &config.app_dns_rule
    }
    fn of_mut(config: &mut AppDConfig) -> &mut Vec<Self> {
        &mut config.app_dns_rule
    }
}

/// A rule with its `ETag`.
fn rule_response<R: AppRule>(rule: &R) -> Response {
    let body = serde_json::to_vec(rule).unwrap_or_default();
    let etag = etag_of(&body);
    with_etag(json(StatusCode::OK, body), &etag)
}

fn list_rules<R: AppRule>(apps: &Apps, app: &AppInstanceId) -> Response {
    let rules = apps
        .config(app)
        .map(|c| R::of(&c).clone())
        .unwrap_or_default();
    Json(rules).into_response()
}

fn get_rule<R: AppRule>(apps: &Apps, app: &AppInstanceId, id: &str) -> Result<Response, ApiError> {
    apps.config(app)
        .and_then(|c| R::of(&c).iter().find(|r| r.id() == id).cloned())
        .map(|r| rule_response(&r))
        .ok_or_else(|| ApiError::NotFound(format!("{} {id} not found", R::KIND)))
}

/// Replaces one rule as a task; the path id wins over the body's. A data-plane failure is 503
/// and leaves the rule as it was.
async fn put_rule<R: AppRule>(
    apps: &Arc<Apps>,
    app: &AppInstanceId,
    id: String,
    if_match: Option<String>,
    mut rule: R,
) -> Result<Response, ApiError> {
    rule.set_id(id.clone());
    let response = rule_response(&rule);
    let who = app.clone();
    let (outcome, _) = apps
        .edit(app, move |current| {
            let mut config = current.cloned().ok_or_else(|| {
                RuleChangeError::NotFound(format!("application instance {who} has no rules"))
            })?;
            let slot = R::of_mut(&mut config)
                .iter_mut()
                .find(|r| r.id() == id)
                .ok_or_else(|| RuleChangeError::NotFound(format!("{} {id} not found", R::KIND)))?;
            let current_etag = etag_of(&serde_json::to_vec(slot).unwrap_or_default());
            if !if_match_holds(if_match.as_deref(), &current_etag) {
                return Err(RuleChangeError::PreconditionFailed);
            }
            *slot = rule;
            Ok(Some(config))
        })
        .await?;
    if !outcome.succeeded() {
        return Err(ApiError::ServiceUnavailable(outcome.progress.detailed));
    }
    Ok(response)
}

#[utoipa::path(
get, path = "/applications/{appInstanceId}/traffic_rules", tag = "application support",
    summary = "The application's traffic rules",
    params(AppPath),
    responses((status = 200, description = "The traffic rules", body = [TrafficRule]))
)]
async fn list_traffic_rules(State(s): St, AppScope(app): AppScope) -> Response {
    list_rules::<TrafficRule>(&s.apps, &app)
}

#[utoipa::path(
get, path = "/applications/{appInstanceId}/traffic_rules/{trafficRuleId}", tag = "application support",
    summary = "Read a traffic rule",
    params(AppPath, TrafficRulePath),
    responses((status = 200, description = "The rule, with its ETag", body = TrafficRule), (status = 404, description = "No such resource", body = ProblemDetails, content_type = "application/problem+json"))
)]
async fn get_traffic_rule(
    State(s): St,
    AppScope(app): AppScope,
    Path((_, id)): Path<(String, String)>,
) -> Result<Response, ApiError> {
    get_rule::<TrafficRule>(&s.apps, &app, &id)
}

#[utoipa::path(
put, path = "/applications/{appInstanceId}/traffic_rules/{trafficRuleId}", tag = "application support",
    summary = "Replace a traffic rule (activate or deactivate it)",
    params(AppPath, TrafficRulePath, IfMatchHeader),
    request_body = TrafficRule,
    responses((status = 200, description = "The rule as applied", body = TrafficRule), (status = 404, description = "No such resource", body = ProblemDetails, content_type = "application/problem+json"), (status = 412, description = "If-Match does not hold the current ETag", body = ProblemDetails, content_type = "application/problem+json"), (status = 503, description = "The data plane refused the change; the rule is as it was", body = ProblemDetails, content_type = "application/problem+json"))
)]
async fn put_traffic_rule(
    State(s): St,
    AppScope(app): AppScope,
    Path((_, id)): Path<(String, String)>,
    IfMatch(if_match): IfMatch,
    ApiJson(rule): ApiJson<TrafficRule>,
) -> Result<Response, ApiError> {
    put_rule(&s.apps, &app, id, if_match, rule).await
}

#[utoipa::path(
get, path = "/applications/{appInstanceId}/dns_rules", tag = "application support",
    summary = "The application's DNS rules",
    params(AppPath),
    responses((status = 200, description = "The DNS rules", body = [DnsRule]))
)]
async fn list_dns_rules(State(s): St, AppScope(app): AppScope) -> Response {
    list_rules::<DnsRule>(&s.apps, &app)
}

#[utoipa::path(
get, path = "/applications/{appInstanceId}/dns_rules/{dnsRuleId}", tag = "application support",
    summary = "Read a DNS rule",
    params(AppPath, DnsRulePath),
    responses((status = 200, description = "The rule, with its ETag", body = DnsRule), (status = 404, description = "No such resource", body = ProblemDetails, content_type = "application/problem+json"))
)]
async fn get_dns_rule(
    State(s): St,
    AppScope(app): AppScope,
    Path((_, id)): Path<(String, String)>,
) -> Result<Response, ApiError> {
    get_rule::<DnsRule>(&s.apps, &app, &id)
}

#[utoipa::path(
put, path = "/applications/{appInstanceId}/dns_rules/{dnsRuleId}", tag = "application support",
    summary = "Replace a DNS rule (activate or deactivate it)",
    params(AppPath, DnsRulePath, IfMatchHeader),
    request_body = DnsRule,
    responses((status = 200, description = "The rule as applied", body = DnsRule), (status = 404, description = "No such resource", body = ProblemDetails, content_type = "application/problem+json"), (status = 412, description = "If-Match does not hold the current ETag", body = ProblemDetails, content_type = "application/problem+json"), (status = 503, description = "The data plane refused the change; the rule is as it was", body = ProblemDetails, content_type = "application/problem+json"))
)]
async fn put_dns_rule(
    State(s): St,
    AppScope(app): AppScope,
    Path((_, id)): Path<(String, String)>,
    IfMatch(if_match): IfMatch,
    ApiJson(rule): ApiJson<DnsRule>,
) -> Result<Response, ApiError> {
    put_rule(&s.apps, &app, id, if_match, rule).await
}

/// `AppTerminationNotificationSubscription` as a client sends it.
#[derive(Deserialize, utoipa::ToSchema)]
#[schema(as = AppTerminationNotificationSubscription::Post)]
#[serde(rename_all = "camelCase")]
struct TerminationSubscriptionBody {
    #[schema(pattern = "^AppTerminationNotificationSubscription$")]
    subscription_type: String,
    #[schema(value_type = crate::model::common::CallbackUri)]
    callback_reference: String,
    /// Required by the spec, but the URI names the instance (ETSI's own test body names another).
    #[serde(default)]
    app_instance_id: Option<String>,
}

#[utoipa::path(
get, path = "/applications/{appInstanceId}/subscriptions", operation_id = "list_termination_subscriptions", tag = "application support",
    summary = "The application's termination subscriptions",
    params(AppPath),
    responses((status = 200, description = "Links to the subscriptions", body = SubscriptionLinkList))
)]
async fn list_subscriptions(State(s): St, AppScope(app): AppScope) -> Response {
    Json(s.apps.termination_subscription_list(&app)).into_response()
}

#[utoipa::path(
post, path = "/applications/{appInstanceId}/subscriptions", operation_id = "subscribe_to_termination", tag = "application support",
    summary = "Subscribe to termination notifications",
    description = "Notifications (`AppTerminationNotification`) are POSTed to `callbackReference`.",
    params(AppPath),
    request_body = TerminationSubscriptionBody,
    responses((status = 201, description = "Subscribed; Location names the subscription", body = SubscriptionView))
)]
async fn subscribe(
    State(s): St,
    RegistrantScope(app): RegistrantScope,
    callbacks: CallbackAllow,
    ApiJson(body): ApiJson<TerminationSubscriptionBody>,
) -> Result<Response, ApiError> {
    callbacks.check(&body.callback_reference)?;
    if let Some(named) = body
        .app_instance_id
        .as_deref()
        .filter(|id| *id != app.as_str())
    {
        tracing::debug!(app = %app, named, "termination subscription names another appInstanceId; the URI's applies");
    }
    let (id, representation) = s
        .apps
        .subscribe_termination(&app, &body.subscription_type, body.callback_reference)
        .await?;
    let location = s.apps.links().termination_subscription(app.as_str(), &id);
    Ok(created(&location, representation))
}

#[utoipa::path(
get, path = "/applications/{appInstanceId}/subscriptions/{subscriptionId}", operation_id = "get_termination_subscription", tag = "application support",
    summary = "Read a termination subscription",
    params(AppPath, SubscriptionPath),
    responses((status = 200, description = "The subscription", body = SubscriptionView), (status = 404, description = "No such resource", body = ProblemDetails, content_type = "application/problem+json"))
)]
async fn get_subscription(
    State(s): St,
    AppScope(app): AppScope,
    Path((_, id)): Path<(String, String)>,
) -> Result<Response, ApiError> {
    Ok(json(
        StatusCode::OK,
        s.apps.termination_subscription(&app, &id)?,
    ))
}

#[utoipa::path(
delete, path = "/applications/{appInstanceId}/subscriptions/{subscriptionId}", operation_id = "unsubscribe_from_termination", tag = "application support",
    summary = "Cancel a termination subscription",
    params(AppPath, SubscriptionPath),
    responses((status = 204, description = "Cancelled"), (status = 404, description = "No such resource", body = ProblemDetails, content_type = "application/problem+json"))
)]
async fn unsubscribe(
    State(s): St,
    AppScope(app): AppScope,
    Path((_, id)): Path<(String, String)>,
) -> Result<StatusCode, ApiError> {
    s.apps.unsubscribe_termination(&app, &id).await?;
    Ok(StatusCode::NO_CONTENT)
}

#[utoipa::path(
post, path = "/applications/{appInstanceId}/confirm_termination", tag = "application support",
    summary = "Confirm that the application is ready to be terminated",
    params(AppPath),
    request_body = AppTerminationConfirmation,
    responses((status = 204, description = "Confirmed"))
)]
async fn confirm_termination(
    State(s): St,
    AppScope(app): AppScope,
    ApiJson(body): ApiJson<AppTerminationConfirmation>,
) -> Result<StatusCode, ApiError> {
    s.apps
        .confirm_termination(&app, body.operation_action)
        .await?;
    Ok(StatusCode::NO_CONTENT)
}

#[utoipa::path(
post, path = "/applications/{appInstanceId}/confirm_ready", tag = "application support",
    summary = "Confirm that the application is up and running",
    params(AppPath),
    request_body = AppReadyConfirmation,
    responses((status = 204, description = "Confirmed"))
)]
async fn confirm_ready(
    State(s): St,
    AppScope(app): AppScope,
    ApiJson(body): ApiJson<AppReadyConfirmation>,
) -> Result<StatusCode, ApiError> {
    let ReadyIndicationType::Ready = body.indication;
    s.apps.confirm_ready(&app).await?;
    Ok(StatusCode::NO_CONTENT)
}

#[utoipa::path(
    put, path = "/applications/{appInstanceId}/confirm_termination", tag = "application support",
    operation_id = "confirm_termination_by_put",
    summary = "mep addition: confirm_termination by PUT, as ETSI's earlier conformance suites send it",
    params(AppPath),
    request_body = AppTerminationConfirmation,
    responses((status = 204, description = "Confirmed"))
)]
async fn confirm_termination_put(
    state: St,
    scope: AppScope,
    body: ApiJson<AppTerminationConfirmation>,
) -> Result<StatusCode, ApiError> {
    confirm_termination(state, scope, body).await
}

#[utoipa::path(
    put, path = "/applications/{appInstanceId}/confirm_ready", tag = "application support",
    operation_id = "confirm_ready_by_put",
    summary = "mep addition: confirm_ready by PUT, as ETSI's earlier conformance suites send it",
    params(AppPath),
    request_body = AppReadyConfirmation,
    responses((status = 204, description = "Confirmed"))
)]
async fn confirm_ready_put(
    state: St,
    scope: AppScope,
    body: ApiJson<AppReadyConfirmation>,
) -> Result<StatusCode, ApiError> {
    confirm_ready(state, scope, body).await
}

#[utoipa::path(
get, path = "/timing/timing_caps", tag = "application support",
    summary = "The platform's time sources",
    responses((status = 200, description = "NTP servers and PTP masters", body = TimingCaps))
)]
async fn timing_caps(State(s): St, _caller: Caller) -> Response {
    let (seconds, nano_seconds) = unix_parts(s.clock.now());
    Json(TimingCaps {
        time_stamp: TimeStamp {
            seconds,
            nano_seconds,
        },
        ntp_servers: &s.ntp_servers,
        ptp_masters: &s.ptp_masters,
    })
    .into_response()
}

#[utoipa::path(
get, path = "/timing/current_time", tag = "application support",
    summary = "The platform's current time",
    responses((status = 200, description = "The time and whether it is traceable", body = CurrentTime))
)]
async fn get_current_time(State(s): St, _caller: Caller) -> Response {
    Json(current_time(s.clock.now())).into_response()
}

/// An `AppInfo` body, without the `{"AppInfo": {..}}` wrapper of v3.1.1-generated clients (the
/// body is kept as JSON, so [`ApiJson`]'s unwrapping on parse errors never applies to it).
fn app_info(body: Value) -> Value {
    match body {
        Value::Object(mut outer)
            if outer.len() == 1 && outer.get("AppInfo").is_some_and(Value::is_object) =>
        {
            outer.remove("AppInfo").unwrap_or_default()
        }
        other => other,
    }
}

#[utoipa::path(
post, path = "/registrations", tag = "application support",
    summary = "Since MEC 011 v3.1.1: register an application not instantiated by MEC management",
    request_body = AppInfoMembers,
    responses((status = 201, description = "Registered; Location names the registration", body = AppInfoMembers))
)]
async fn register_app(
    State(s): St,
    caller: Caller,
    ApiJson(info): ApiJson<Value>,
) -> Result<Response, ApiError> {
    let mut info = app_info(info);
    if let (Caller::App(me), Some(obj)) = (&caller, info.as_object_mut()) {
        match obj.get("appInstanceId").and_then(Value::as_str) {
            Some(id) if id != me.as_str() => {
                return Err(ApiError::Forbidden(format!(
                    "application instance {me} may not register {id}"
                )))
            }
            _ => {
                obj.insert("appInstanceId".into(), Value::String(me.to_string()));
            }
        }
    }
    let (app, info) = s.apps.register_app(info).await?;
    let location = s.apps.links().registration(app.as_str());
    Ok(created(
        &location,
        serde_json::to_vec(&info).unwrap_or_default(),
    ))
}

#[utoipa::path(
get, path = "/registrations/{appInstanceId}", tag = "application support",
    summary = "Since MEC 011 v3.1.1: read a registration",
    params(AppPath),
    responses((status = 200, description = "The AppInfo as registered", body = AppInfoMembers), (status = 404, description = "No such resource", body = ProblemDetails, content_type = "application/problem+json"))
)]
async fn get_registration(State(s): St, AppScope(app): AppScope) -> Result<Response, ApiError> {
    Ok(Json(s.apps.registration(&app)?).into_response())
}

#[utoipa::path(
put, path = "/registrations/{appInstanceId}", tag = "application support",
    summary = "Since MEC 011 v3.1.1: replace a registration",
    params(AppPath),
    request_body = AppInfoMembers,
    responses((status = 204, description = "Replaced"), (status = 404, description = "No such resource", body = ProblemDetails, content_type = "application/problem+json"))
)]
async fn put_registration(
    State(s): St,
    AppScope(app): AppScope,
    ApiJson(info): ApiJson<Value>,
) -> Result<StatusCode, ApiError> {
    s.apps.update_registration(&app, app_info(info)).await?;
    Ok(StatusCode::NO_CONTENT)
}

#[utoipa::path(
delete, path = "/registrations/{appInstanceId}", tag = "application support",
    summary = "Since MEC 011 v3.1.1: deregister",
    params(AppPath),
    responses((status = 204, description = "Deregistered"), (status = 404, description = "No such resource", body = ProblemDetails, content_type = "application/problem+json"))
)]
async fn delete_registration(
    State(s): St,
    AppScope(app): AppScope,
) -> Result<StatusCode, ApiError> {
    s.apps.deregister_app(&app).await?;
    Ok(StatusCode::NO_CONTENT)
}
